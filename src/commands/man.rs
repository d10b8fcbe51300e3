//! `rekey man`: the manual page, in roff, generated from the command-line definition
//! (so it cannot drift from `--help`): global options, then every command with its
//! usage, options and examples, then the exit codes.

use clap::CommandFactory;
use clap_mangen::roff::{bold, italic, roman, Inline, Roff};

/// `man` options.
#[derive(Debug, clap::Args)]
#[command(after_help = "Examples:\n  \
rekey man | man -l -\n  \
rekey man > /usr/local/share/man/man1/rekey.1")]
pub struct ManArgs {}

/// The manual page of `cmd` (the whole CLI) as roff text.
pub fn render(cmd: clap::Command) -> String {
    let mut cmd = cmd;
    cmd.build();
    let man = clap_mangen::Man::new(cmd.clone()).date(env!("REKEY_GIT_DATE"));
    let mut out = Vec::new();
    for section in [
        clap_mangen::Man::render_title,
        clap_mangen::Man::render_name_section,
        clap_mangen::Man::render_synopsis_section,
        clap_mangen::Man::render_description_section,
        clap_mangen::Man::render_options_section,
    ] {
        section(&man, &mut out).expect("writing to memory");
    }
    let mut roff = Roff::new();
    commands(&mut roff, &cmd);
    exit_status(&mut roff);
    if let Some(after) = cmd.get_after_help() {
        let text = after.to_string();
        if let Some(examples) = text.split("Examples:\n").nth(1) {
            roff.control("SH", ["EXAMPLES"]);
            preformatted(&mut roff, examples);
        }
    }
    roff.to_writer(&mut out).expect("writing to memory");
    man.render_version_section(&mut out).expect("writing to memory");
    title_first(&String::from_utf8(out).expect("roff is text"))
}

/// The roff writer starts every chunk with the lines that define `\*(Aq` (a plain
/// apostrophe); the page keeps one copy of them, right after `.TH`, so that it starts
/// with `.TH` as man pages do.
fn title_first(page: &str) -> String {
    const PREAMBLE: [&str; 2] = [".ie \\n(.g .ds Aq \\(aq", ".el .ds Aq '"];
    let mut out = String::with_capacity(page.len());
    let mut body = String::new();
    for line in page.lines().filter(|l| !PREAMBLE.contains(l)) {
        if line.starts_with(".TH ") && out.is_empty() {
            out.push_str(line);
            out.push('\n');
            for p in PREAMBLE {
                out.push_str(p);
                out.push('\n');
            }
        } else {
            body.push_str(line);
            body.push('\n');
        }
    }
    out.push_str(&body);
    out
}

/// Runs `man`: the page on stdout.
pub fn run(_args: &ManArgs) -> i32 {
    print!("{}", render(crate::cli::Cli::command()));
    crate::exit::SUCCESS
}

fn commands(roff: &mut Roff, cmd: &clap::Command) {
    let globals: Vec<&str> = cmd
        .get_arguments()
        .filter(|a| a.is_global_set())
        .map(|a| a.get_id().as_str())
        .collect();
    roff.control("SH", ["COMMANDS"]);
    for sub in cmd
        .get_subcommands()
        .filter(|s| !s.is_hide_set() && s.get_name() != "help")
    {
        let name = format!("{} {}", cmd.get_name(), sub.get_name());
        roff.control("SS", [name.as_str()]);
        let usage = sub
            .clone()
            .bin_name(&name)
            .render_usage()
            .to_string()
            .trim_start_matches("Usage: ")
            .to_owned();
        roff.text([bold(usage)]);
        roff.control("PP", []);
        if let Some(about) = sub.get_long_about().or_else(|| sub.get_about()) {
            paragraphs(roff, &about.to_string());
        }
        for arg in sub.get_arguments().filter(|a| {
            !a.is_hide_set()
                && !globals.contains(&a.get_id().as_str())
                && !matches!(a.get_id().as_str(), "help" | "version")
        }) {
            roff.control("TP", []);
            roff.text(argument_label(arg));
            if let Some(help) = arg.get_long_help().or_else(|| arg.get_help()) {
                roff.text([roman(help.to_string())]);
            }
            let values: Vec<String> = arg
                .get_possible_values()
                .iter()
                .filter(|v| !v.is_hide_set())
                .map(|v| v.get_name().to_owned())
                .collect();
            if !values.is_empty() && values.len() <= 12 {
                roff.text([roman(format!(" [possible values: {}]", values.join(", ")))]);
            }
        }
        if let Some(after) = sub.get_after_help() {
            roff.control("PP", []);
            preformatted(roff, &after.to_string());
        }
    }
}

/// `-c, --config FILE` or `NAME...`, in bold and italics.
fn argument_label(arg: &clap::Arg) -> Vec<Inline> {
    let value = arg
        .get_value_names()
        .map(|names| names.iter().map(|n| n.to_string()).collect::<Vec<_>>().join(" "))
        .unwrap_or_else(|| arg.get_id().as_str().to_uppercase());
    let takes_value = arg.get_action().takes_values();
    if arg.is_positional() {
        let dots = if matches!(arg.get_num_args(), Some(r) if r.max_values() > 1) {
            "..."
        } else {
            ""
        };
        return vec![italic(format!("{value}{dots}"))];
    }
    let mut label = Vec::new();
    if let Some(short) = arg.get_short() {
        label.push(bold(format!("-{short}")));
    }
    if let Some(long) = arg.get_long() {
        if !label.is_empty() {
            label.push(roman(", "));
        }
        label.push(bold(format!("--{long}")));
    }
    if takes_value {
        label.push(roman(" "));
        label.push(italic(value));
    }
    label
}

fn exit_status(roff: &mut Roff) {
    roff.control("SH", ["EXIT STATUS"]);
    for (code, meaning) in [
        (crate::exit::SUCCESS, "success"),
        (
            crate::exit::CREDENTIAL_FAILED,
            "at least one credential failed: a rotation failed, verification found a problem, a revoked secret still works",
        ),
        (crate::exit::USAGE, "usage or configuration error; nothing changed"),
        (
            crate::exit::LOCKED,
            "another run holds the lock or is rotating the credential (also on another machine); nothing changed",
        ),
        (
            crate::exit::INTERRUPTED,
            "interrupted (SIGINT/SIGTERM); the next run finishes an unfinished rotation",
        ),
    ] {
        roff.control("TP", []);
        roff.text([bold(code.to_string())]);
        roff.text([roman(meaning)]);
    }
}

fn paragraphs(roff: &mut Roff, text: &str) {
    for line in text.lines() {
        if line.trim().is_empty() {
            roff.control("PP", []);
        } else {
            roff.text([roman(line)]);
        }
    }
}

/// Text kept line for line (examples).
fn preformatted(roff: &mut Roff, text: &str) {
    roff.control("nf", []);
    for line in text.lines() {
        roff.text([roman(line)]);
    }
    roff.control("fi", []);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_page_is_roff_and_names_every_command() {
        let page = render(crate::cli::Cli::command());
        assert!(page.starts_with(".TH"), "{}", &page[..page.len().min(200)]);
        for sub in crate::cli::Cli::command()
            .get_subcommands()
            .filter(|s| !s.is_hide_set())
        {
            assert!(
                page.contains(&format!(".SS \"rekey {}\"", sub.get_name()))
                    || page.contains(&format!(".SS rekey {}", sub.get_name())),
                "no section for {}",
                sub.get_name()
            );
        }
        assert!(page.contains(".SH \"EXIT STATUS\"") || page.contains(".SH EXIT STATUS"));
    }
}
