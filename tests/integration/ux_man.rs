//! `rekey man`: a roff manual page generated from the CLI definition.

use crate::ux_support::Dir;

/// The subcommands `rekey --help` lists.
fn subcommands(help: &str) -> Vec<String> {
    help.lines()
        .skip_while(|l| !l.starts_with("Commands:"))
        .skip(1)
        .take_while(|l| l.starts_with("  "))
        // Wrapped descriptions continue on lines indented further.
        .filter(|l| !l.starts_with("   "))
        .filter_map(|l| l.split_whitespace().next())
        .filter(|name| *name != "help")
        .map(str::to_owned)
        .collect()
}

#[test]
fn man_is_roff_and_covers_every_command() {
    let d = Dir::new();
    let help = d.rekey(&["--help"]);
    help.assert_code(0);
    let names = subcommands(&help.stdout);
    for expected in [
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
    ] {
        assert!(
            names.iter().any(|n| n == expected),
            "--help lacks {expected}: {names:?}"
        );
    }
    let r = d.rekey(&["man"]);
    r.assert_code(0);
    assert!(r.stdout.starts_with(".TH "), "{}", &r.stdout[..r.stdout.len().min(200)]);
    for name in &names {
        assert!(
            r.stdout.contains(&format!("rekey {name}")),
            "the page lacks `rekey {name}`"
        );
    }
    for section in [".SH NAME", ".SH SYNOPSIS", ".SH OPTIONS", ".SH COMMANDS", "EXIT STATUS"] {
        assert!(r.stdout.contains(section), "the page lacks {section}");
    }
    assert!(r.stdout.contains("\\-\\-color"), "global options are on the page");
    assert!(
        r.stdout.contains("\\-\\-abandon\\-pending"),
        "command options are on the page"
    );
}
