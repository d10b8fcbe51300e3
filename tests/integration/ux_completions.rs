//! Completions complete credential names and tags from the configuration: the bash
//! script is run by bash with COMP_WORDS/COMP_CWORD, as bash's completion would.

use crate::ux_support::{Dir, OFFLINE_CONFIG};

/// What bash's completion offers for `words` (the last one being completed), with the
/// script `rekey completions bash` printed, in `d`.
fn complete(d: &Dir, words: &[&str]) -> Vec<String> {
    let script = d.rekey(&["completions", "bash"]);
    script.assert_code(0);
    d.write("rekey.bash", &script.stdout);
    let bin = env!("CARGO_BIN_EXE_rekey");
    let quoted: Vec<String> = words.iter().map(|w| format!("'{w}'")).collect();
    let program = format!(
        "source ./rekey.bash\nCOMP_WORDS=('{bin}' {words})\nCOMP_CWORD={cword}\n\
         _rekey_dynamic '{bin}' '{cur}' '{prev}'\nprintf '%s\\n' \"${{COMPREPLY[@]}}\"",
        words = quoted.join(" "),
        cword = words.len(),
        cur = words.last().copied().unwrap_or(""),
        prev = if words.len() > 1 { words[words.len() - 2] } else { bin },
    );
    let out = std::process::Command::new("bash")
        .current_dir(d.dir.path())
        .env_remove("REKEY_CONFIG")
        .env(crate::ux_support::UX_ADMIN_ENV, crate::ux_support::UX_ADMIN_URL)
        .args(["--norc", "--noprofile", "-c", &program])
        .output()
        .expect("run bash");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter(|l| !l.is_empty())
        .map(str::to_owned)
        .collect()
}

#[test]
fn bash_completes_credential_names_and_tags() {
    let d = Dir::with_config(OFFLINE_CONFIG);
    assert_eq!(complete(&d, &["rotate", ""]), ["billing-db", "orders-db"]);
    assert_eq!(complete(&d, &["status", "or"]), ["orders-db"]);
    assert_eq!(complete(&d, &["get", "b"]), ["billing-db"]);
    assert_eq!(complete(&d, &["plan", "--tag", ""]), ["orders", "prod", "staging"]);
    assert_eq!(complete(&d, &["verify", "--tag", "st"]), ["staging"]);
    // After a value-taking option, the name is still completed.
    assert_eq!(
        complete(&d, &["rotate", "--parallel", "2", "orders-db", "bi"]),
        ["billing-db"]
    );
    // Everything else is clap's: commands and options.
    assert!(complete(&d, &["rot"]).contains(&"rotate".to_owned()));
    assert!(complete(&d, &["rotate", "--par"]).contains(&"--parallel".to_owned()));
}

#[test]
fn names_come_from_the_config_named_on_the_line_even_when_it_does_not_fully_load() {
    let d = Dir::new();
    // No ./rekey.toml: nothing offered, nothing printed.
    assert!(complete(&d, &["rotate", ""]).is_empty());
    let other = OFFLINE_CONFIG
        .replace("orders-db", "payments-db")
        .replace("${REKEY_UX_ADMIN_URL}", "${REKEY_UX_UNSET_VARIABLE}");
    d.write("other.toml", &other);
    assert_eq!(complete(&d, &["-c", "other.toml", "rotate", "pa"]), ["payments-db"]);
    // The helper itself: one a line, exit 0, no error output.
    let r = d.rekey(&["-c", "other.toml", "__complete", "names"]);
    r.assert_code(0);
    assert_eq!(r.stdout, "billing-db\npayments-db\n");
    assert!(r.stderr.is_empty(), "{}", r.stderr);
    let r = d.rekey(&["-c", "missing.toml", "__complete", "tags"]);
    r.assert_code(0);
    assert!(r.stdout.is_empty() && r.stderr.is_empty());
}

#[test]
fn zsh_and_fish_scripts_call_the_helper_for_names_and_tags() {
    let d = Dir::with_config(OFFLINE_CONFIG);
    let zsh = d.rekey(&["completions", "zsh"]).stdout;
    assert!(
        zsh.contains("_rekey_names() {") && zsh.contains("rekey __complete names"),
        "{zsh}"
    );
    assert!(
        zsh.contains(":_rekey_names'") && zsh.contains(":T:_rekey_tags'"),
        "{zsh}"
    );
    assert!(
        !zsh.contains("'*::names -- Credential names (default\\: all):_default'"),
        "{zsh}"
    );
    let fish = d.rekey(&["completions", "fish"]).stdout;
    assert!(
        fish.contains("__fish_rekey_using_subcommand rotate\" -f -a \"(rekey __complete names"),
        "{fish}"
    );
    assert!(
        fish.contains("-l tag") && fish.contains("(rekey __complete tags"),
        "{fish}"
    );
    // The hidden helper stays out of help and the man page.
    assert!(!d.rekey(&["--help"]).stdout.contains("__complete"));
    assert!(!d.rekey(&["man"]).stdout.contains("__complete"));
}
