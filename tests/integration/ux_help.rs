//! Help keeps a command's own options apart from the global ones, and every command
//! shows an example.

use crate::ux_support::Dir;

/// Every command a user can type (the hidden `__complete` helper aside).
const COMMANDS: &[&str] = &[
    "init",
    "validate",
    "list",
    "plan",
    "rotate",
    "verify",
    "status",
    "import",
    "get",
    "leaked",
    "man",
    "completions",
];

#[test]
fn command_options_come_first_and_global_options_apart() {
    let d = Dir::new();
    for command in COMMANDS {
        for args in [vec!["help", command], vec![command, "--help"]] {
            let r = d.rekey(&args);
            r.assert_code(0);
            let help = &r.stdout;
            let own = help
                .find("\nOptions:\n")
                .unwrap_or_else(|| panic!("{args:?}: no Options:\n{help}"));
            let global = help
                .find("\nGlobal options:\n")
                .unwrap_or_else(|| panic!("{args:?}: no Global options:\n{help}"));
            assert!(own < global, "{args:?}: global options before the command's:\n{help}");
            let (commands_part, global_part) = help.split_at(global);
            for flag in ["--config", "--output", "--verbose", "--quiet", "--color"] {
                assert!(
                    global_part.contains(flag),
                    "{args:?}: {flag} not under Global options:\n{help}"
                );
                assert!(
                    !commands_part.contains(&format!(" {flag} ")),
                    "{args:?}: {flag} among the command's options:\n{help}"
                );
            }
            assert!(
                help.contains("Examples:\n  rekey ")
                    || help.contains("Examples:\n  printf")
                    || help.contains("Examples:\n  pbpaste"),
                "{args:?}: no example:\n{help}"
            );
        }
    }
    // The rotate options stay under Options.
    let help = d.rekey(&["help", "rotate"]).stdout;
    let global = help.find("\nGlobal options:\n").unwrap();
    assert!(
        help[..global].contains("--parallel") && help[..global].contains("--dry-run"),
        "{help}"
    );
}
