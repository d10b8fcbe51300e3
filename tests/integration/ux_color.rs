//! `--color auto|always|never` with NO_COLOR honoured, colour on a real terminal,
//! `--version` with commit and date, human durations.

use crate::ux_support::{run_on_terminal, Dir, OFFLINE_CONFIG};

const GREEN_OK: &str = "\x1b[32mok\x1b[0m";

#[test]
fn color_flag_and_no_color() {
    let d = Dir::with_config(OFFLINE_CONFIG);
    // Piped: auto means no colour.
    let r = d.rekey(&["validate"]);
    assert!(!r.stdout.contains('\x1b'), "{:?}", r.stdout);
    // always: colour even piped, and over NO_COLOR (set by Dir::command).
    let r = d.rekey(&["--color", "always", "validate"]);
    r.assert_code(0);
    assert!(r.stdout.starts_with(GREEN_OK), "{:?}", r.stdout);
    assert!(r.stderr.contains("\x1b[33mwarning\x1b[0m:"), "{:?}", r.stderr);
    let r = d.rekey(&["validate", "--color=never"]);
    assert!(!r.stdout.contains('\x1b') && !r.stderr.contains('\x1b'));
    let r = d.rekey(&["--color", "always", "list", "--tag", "nope"]);
    r.assert_code(2);
    assert!(r.stderr.starts_with("\x1b[1;31merror\x1b[0m: "), "{:?}", r.stderr);
    let r = d.rekey(&["--color", "sometimes", "validate"]);
    r.assert_code(2);
}

#[test]
fn on_a_terminal_auto_colours_unless_no_color() {
    let d = Dir::with_config(OFFLINE_CONFIG);
    let mut cmd = d.command();
    cmd.env_remove("NO_COLOR").arg("validate");
    let (code, out) = run_on_terminal(cmd);
    assert_eq!(code, 0, "{out}");
    assert!(out.contains(GREEN_OK), "{out:?}");
    let mut cmd = d.command();
    cmd.env("NO_COLOR", "1").arg("validate");
    let (code, out) = run_on_terminal(cmd);
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("ok: 2 credentials") && !out.contains('\x1b'), "{out:?}");
    let mut cmd = d.command();
    cmd.env_remove("NO_COLOR").args(["--color", "never", "validate"]);
    let (_, out) = run_on_terminal(cmd);
    assert!(!out.contains('\x1b'), "{out:?}");
}

#[test]
fn version_names_the_commit_and_its_date() {
    let r = Dir::new().rekey(&["--version"]);
    r.assert_code(0);
    let line = r.stdout.trim();
    let prefix = format!("rekey {} (", env!("CARGO_PKG_VERSION"));
    assert!(line.starts_with(&prefix) && line.ends_with(')'), "{line}");
    let inner = &line[prefix.len()..line.len() - 1];
    let (commit, date) = inner.split_once(' ').expect("commit and date");
    let is_hex = commit.len() >= 7 && commit.chars().all(|c| c.is_ascii_hexdigit());
    assert!(is_hex || commit == "unknown", "{line}");
    let is_date = date.len() == 10 && date.chars().filter(|c| *c == '-').count() == 2;
    assert!(is_date || date == "unknown", "{line}");
    // CI and developers build from a git checkout: the commit is known there.
    if std::path::Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/.git")).exists() {
        assert!(is_hex && is_date, "built from a checkout but: {line}");
    }
}

#[test]
fn durations_read_like_people_write_them() {
    for (every, grace, shown_every, shown_grace) in [("192s", "0s", "3m 12s", "0s"), ("40d", "1h", "40d", "1h")] {
        let config = OFFLINE_CONFIG.replace("every = \"40d\"", &format!("every = \"{every}\"\ngrace = \"{grace}\""));
        let r = Dir::with_config(&config).rekey(&["-o", "json", "list"]);
        r.assert_code(0);
        let doc: serde_json::Value = serde_json::from_str(&r.stdout).unwrap();
        assert_eq!(doc["credentials"][0]["every"], shown_every);
        assert_eq!(doc["credentials"][0]["grace"], shown_grace);
    }
    // Errors about durations use the same form, not humantime's `1month 9days 13h`.
    let config = OFFLINE_CONFIG.replace("every = \"40d\"", "every = \"40d\"\ngrace = \"41d\"");
    let r = Dir::with_config(&config).rekey(&["validate"]);
    r.assert_code(2);
    r.assert_one_error(&["grace (41d)", "every (40d)"]);
    assert!(
        !r.stderr.contains("month") && !r.stderr.contains("days"),
        "{}",
        r.stderr
    );
}
