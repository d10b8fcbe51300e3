//! Every deployment recipe in `examples/deploy` invokes rekey with a command line that
//! the real CLI accepts, and the shipped example configuration loads.

use clap::Parser;
use rekey::cli::Cli;

/// Command lines in a recipe: from each `rekey ` (or `rekey"`, for argument arrays) to
/// the end of the line.
fn invocations(text: &str) -> Vec<Vec<String>> {
    let mut found = Vec::new();
    for line in text.lines().filter(|l| !l.trim_start().starts_with('#')) {
        if let Some(pos) = line.find("[\"rekey\"") {
            let args: Vec<String> = line[pos..]
                .trim_matches(|c| c == '[' || c == ']')
                .split(',')
                .map(|a| a.trim().trim_matches('"').to_owned())
                .collect();
            found.push(args);
        } else if let Some(pos) = line
            .find("rekey ")
            .filter(|p| *p == 0 || line[..*p].ends_with("bin/") || line[..*p].ends_with([' ', '\t']))
        {
            found.push(line[pos..].split_whitespace().map(str::to_owned).collect());
        }
    }
    found
}

#[test]
fn every_recipe_uses_a_valid_command_line() {
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/examples/deploy");
    let mut checked = 0;
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        let text = std::fs::read_to_string(&path).unwrap();
        if path.extension().is_some_and(|e| e == "timer") {
            let service = path.with_extension("service");
            assert!(
                service.exists(),
                "{} has its service unit {}",
                path.display(),
                service.display()
            );
            continue;
        }
        let calls = invocations(&text);
        assert!(!calls.is_empty(), "{} invokes rekey", path.display());
        for args in calls {
            if let Err(e) = Cli::try_parse_from(&args) {
                panic!(
                    "{}: `{}` is not a valid rekey command line: {e}",
                    path.display(),
                    args.join(" ")
                );
            }
            checked += 1;
        }
    }
    assert!(checked >= 5, "found {checked} invocations");
}

#[test]
fn a_wrong_flag_would_be_caught() {
    let calls = invocations("17 * * * * rekey rotate --overdue\n");
    assert!(Cli::try_parse_from(&calls[0]).is_err());
}
