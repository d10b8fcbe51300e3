//! Command lines clap refuses (an unknown flag, a missing argument): with `-o json`
//! they are reported in the same JSON envelope as every other error, on stdout, while
//! clap's own message still goes to stderr; exit 2.

use clap::error::ErrorKind;
use std::ffi::OsString;

/// Whether the raw arguments ask for JSON output (`-o json`, `-ojson`, `-o=json`,
/// `--output json`, `--output=json`), as far as they can be read without clap.
pub fn wants_json(args: &[OsString]) -> bool {
    let args: Vec<String> = args.iter().map(|a| a.to_string_lossy().into_owned()).collect();
    let mut json = false;
    for (i, arg) in args.iter().enumerate().skip(1) {
        if arg == "--" {
            break;
        }
        let value = match arg.as_str() {
            "-o" | "--output" => args.get(i + 1).map(String::as_str),
            a if a.starts_with("--output=") => Some(&a["--output=".len()..]),
            a if a.starts_with("-o=") => Some(&a[3..]),
            a if a.starts_with("-o") && !a.starts_with("--") => Some(&a[2..]),
            _ => None,
        };
        if let Some(v) = value {
            json = v == "json";
        }
    }
    json
}

/// The subcommand the arguments name, for the envelope's `command` (`rekey` if none).
pub fn command_name(args: &[OsString]) -> String {
    use clap::CommandFactory;
    let cmd = crate::cli::Cli::command();
    let names: Vec<String> = cmd.get_subcommands().map(|s| s.get_name().to_owned()).collect();
    args.iter()
        .skip(1)
        .map(|a| a.to_string_lossy().into_owned())
        .find(|a| names.contains(a))
        .unwrap_or_else(|| "rekey".to_owned())
}

/// Handles a parse error of the command line `args`: help and version requests print
/// as usual and exit 0; errors print clap's message on stderr and, when JSON output was
/// asked for, the error envelope on stdout; the process exits 2.
pub fn parse_failed(error: clap::Error, args: &[OsString]) -> ! {
    let informational = matches!(
        error.kind(),
        ErrorKind::DisplayHelp | ErrorKind::DisplayVersion | ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand
    );
    if informational || !wants_json(args) {
        error.exit();
    }
    let rendered = error.render().to_string();
    let message = rendered
        .lines()
        .find(|l| !l.trim().is_empty())
        .unwrap_or("invalid command line")
        .trim_start_matches("error: ")
        .to_owned();
    println!(
        "{}",
        crate::report::json::render_error(&command_name(args), &message, crate::exit::USAGE)
    );
    let _ = error.print();
    std::process::exit(crate::exit::USAGE);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(list: &[&str]) -> Vec<OsString> {
        list.iter().map(OsString::from).collect()
    }

    #[test]
    fn finds_json_output_however_written() {
        for line in [
            &["rekey", "-o", "json", "rotate"][..],
            &["rekey", "rotate", "--output=json"],
            &["rekey", "-ojson", "list"],
            &["rekey", "--output", "json", "x"],
        ] {
            assert!(wants_json(&args(line)), "{line:?}");
        }
        assert!(!wants_json(&args(&["rekey", "rotate"])));
        assert!(!wants_json(&args(&["rekey", "-o", "json", "-o", "human", "list"])));
        assert!(!wants_json(&args(&["rekey", "get", "--", "-o", "json"])));
        assert_eq!(
            command_name(&args(&["rekey", "-o", "json", "rotate", "--bogus"])),
            "rotate"
        );
        assert_eq!(command_name(&args(&["rekey", "--bogus"])), "rekey");
    }
}
