//! Configurations that would break rotations are refused at load through the CLI: exit 2,
//! one error line naming both places, nothing changed in the store or on the target.
//! One test per finding; each run is bounded so that a regression fails, never hangs.

use crate::util::{Run, Workspace, ADMIN_ENV};
use std::io::{Read, Write};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// Runs `cmd` feeding `stdin`; kills it and fails the test after `limit`.
fn run_bounded(mut cmd: Command, stdin: &str, limit: Duration) -> Run {
    cmd.stdin(Stdio::piped()).stdout(Stdio::piped()).stderr(Stdio::piped());
    let mut child = cmd.spawn().expect("spawn rekey");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(stdin.as_bytes())
        .expect("write stdin");
    let mut stdout = child.stdout.take().expect("stdout");
    let mut stderr = child.stderr.take().expect("stderr");
    let out = std::thread::spawn(move || {
        let mut text = String::new();
        let _ = stdout.read_to_string(&mut text);
        text
    });
    let err = std::thread::spawn(move || {
        let mut text = String::new();
        let _ = stderr.read_to_string(&mut text);
        text
    });
    let started = Instant::now();
    let status = loop {
        if let Some(status) = child.try_wait().expect("wait rekey") {
            break status;
        }
        if started.elapsed() > limit {
            let _ = child.kill();
            let _ = child.wait();
            panic!(
                "rekey did not finish within {limit:?} (hung); stderr so far: {}",
                err.join().unwrap_or_default()
            );
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    Run {
        code: status.code().unwrap_or(-1),
        stdout: out.join().unwrap_or_default(),
        stderr: err.join().unwrap_or_default(),
    }
}

const LIMIT: Duration = Duration::from_secs(120);

fn rekey(ws: &Workspace, args: &[&str], stdin: &str) -> Run {
    let mut cmd = ws.command();
    cmd.args(args);
    run_bounded(cmd, stdin, LIMIT)
}

/// The default header (as [`Workspace::write_config`] writes it) with `extra` lines in
/// `[defaults]`, and these credential tables.
fn write_config(ws: &Workspace, extra: &str, credentials: &[String]) {
    let mut text = format!(
        "[defaults]\naudit_log = \"audit.jsonl\"\nparallel = 4\n{extra}\n\n[stores.local]\ntype = \"file\"\n\
         path = \"secrets.json\"\n\n"
    );
    for c in credentials {
        text.push_str(c);
        text.push('\n');
    }
    ws.write_raw_config(&text);
}

#[test]
fn two_credentials_on_one_target_identity_are_refused() {
    let mut ws = Workspace::new();
    let (role, password) = ws.role("rk_twice");
    let verifier = ws.verifier(&role);
    // The second spells the host differently; it is the same server and role.
    let second = ws.credential("app-db-copy", &role).replace("127.0.0.1", "localhost");
    ws.write_config(&[ws.credential("app-db", &role), second]);
    for args in [&["rotate"][..], &["plan"], &["status"]] {
        let r = rekey(&ws, args, "");
        r.assert_code(2);
        r.assert_one_error(&[
            "credential `app-db-copy`",
            "credential `app-db`",
            &format!("postgres role `{role}`"),
        ]);
    }
    let r = rekey(&ws, &["import", "app-db"], &password);
    r.assert_code(2);
    assert!(ws.store_bytes().is_empty(), "nothing was stored");
    assert_eq!(ws.verifier(&role), verifier, "the role's password is unchanged");
    assert!(ws.can_login(&role, &password));
}

#[test]
fn an_admin_that_is_the_rotated_user_is_refused() {
    let mut ws = Workspace::new();
    let (role, password) = ws.role("rk_selfadmin");
    let verifier = ws.verifier(&role);
    ws.write_config(&[ws.credential("app-db", &role)]);
    let own = format!("postgres://{role}:{password}@127.0.0.1:{}/postgres", ws.pg.port());
    let mut cmd = ws.command();
    cmd.env(ADMIN_ENV, &own).arg("rotate");
    let r = run_bounded(cmd, "", LIMIT);
    r.assert_code(2);
    r.assert_one_error(&[
        "credential `app-db`",
        &format!("`admin` logs in as postgres role `{role}`"),
        "locked out",
    ]);
    assert!(
        !r.stderr.contains(&password) && !r.stdout.contains(&password),
        "the admin URL's password is not shown"
    );
    assert!(
        !r.stderr.contains("postgres://"),
        "the admin URL is not shown: {}",
        r.stderr
    );
    assert_eq!(ws.verifier(&role), verifier, "the role's password is unchanged");
    assert!(ws.can_login(&role, &password));
}

#[test]
fn a_credential_named_like_the_store_file_does_not_wait_on_its_own_lock() {
    let mut ws = Workspace::new();
    let (role, password) = ws.role("rk_lockname");
    // lock_dir = "." puts the credential's lock next to the store file; with the old
    // `<name>.lock` naming it was the store's own sidecar lock `secrets.json.lock`.
    write_config(&ws, "lock_dir = \".\"", &[ws.credential("secrets.json", &role)]);
    rekey(&ws, &["import", "secrets.json"], &password).assert_code(0);
    let r = rekey(&ws, &["rotate"], "");
    r.assert_code(0);
    let new = ws.stored_password("secrets.json", "current");
    assert_ne!(new, password);
    assert!(ws.can_login(&role, &new));
    assert!(
        ws.path("secrets.json.rekey-lock").exists(),
        "the credential's own lock file"
    );
}

#[test]
fn files_that_coincide_are_refused() {
    let mut ws = Workspace::new();
    let (role, password) = ws.role("rk_files");
    ws.write_config(&[ws.credential("app-db", &role)]);
    ws.import("app-db", &password);
    let store = ws.store_bytes();
    let config = std::fs::read_to_string(ws.config_path()).unwrap();
    for (from, to, parts) in [
        (
            "audit_log = \"audit.jsonl\"",
            "audit_log = \"secrets.json\"",
            &["[defaults] audit_log", "store `local`"][..],
        ),
        (
            "audit_log = \"audit.jsonl\"",
            "audit_log = \"rekey.toml\"",
            &["[defaults] audit_log", "configuration file"],
        ),
        (
            "audit_log = \"audit.jsonl\"",
            "audit_log = \"audit.jsonl\"\nlock_dir = \"secrets.json\"",
            &["[defaults] lock_dir", "store `local`"],
        ),
        (
            "path = \"secrets.json\"",
            "path = \"rekey.toml\"",
            &["store `local`", "configuration file"],
        ),
    ] {
        ws.write_raw_config(&config.replace(from, to));
        let r = rekey(&ws, &["rotate"], "");
        r.assert_code(2);
        r.assert_one_error(parts);
        ws.write_raw_config(&config);
        assert_eq!(ws.store_bytes(), store, "the store file is unchanged");
    }
    assert!(ws.can_login(&role, &password));
}

#[test]
fn durations_out_of_range_are_refused() {
    let mut ws = Workspace::new();
    let (role, password) = ws.role("rk_every");
    ws.write_config(&[ws.credential("app-db", &role)]);
    ws.import("app-db", &password);
    let store = ws.store_bytes();
    let config = std::fs::read_to_string(ws.config_path()).unwrap();
    ws.write_raw_config(&config.replace("parallel = 4", "parallel = 4\nevery = \"8000y\""));
    // These used to panic on the overflow of `created + every`.
    for args in [&["status"][..], &["verify"], &["rotate", "--due"], &["plan", "--due"]] {
        let r = rekey(&ws, args, "");
        r.assert_code(2);
        r.assert_one_error(&["[defaults]", "`every = \"8000y\"` is out of range", "100y"]);
        assert!(!r.stderr.contains("panicked"), "{}", r.stderr);
    }
    ws.write_raw_config(&config.replace("tags = [\"test\"]", "tags = [\"test\"]\ngrace = \"200y\""));
    let r = rekey(&ws, &["rotate"], "");
    r.assert_code(2);
    r.assert_one_error(&["credential `app-db`", "grace", "out of range"]);
    assert_eq!(ws.store_bytes(), store, "the store file is unchanged");
    assert!(ws.can_login(&role, &password));
}

#[test]
fn impossible_password_policies_are_refused() {
    let mut ws = Workspace::new();
    let (role, password) = ws.role("rk_policy");
    ws.write_config(&[ws.credential("app-db", &role)]);
    ws.import("app-db", &password);
    let store = ws.store_bytes();
    let config = std::fs::read_to_string(ws.config_path()).unwrap();
    for (policy, reason) in [
        ("{ length = 0 }", "password length 0 is out of range"),
        ("{ length = 100000 }", "out of range 8..=1024"),
        (
            "{ exclude = \"0123456789\" }",
            "class digit is required but every character of it is excluded",
        ),
        ("{ require = [\"symbol\"], symbols = \"\" }", "`symbols` is empty"),
    ] {
        ws.write_raw_config(&config.replace("tags = [\"test\"]", &format!("tags = [\"test\"]\npassword = {policy}")));
        let r = rekey(&ws, &["rotate"], "");
        r.assert_code(2);
        r.assert_one_error(&["credential `app-db`", reason]);
    }
    assert_eq!(ws.store_bytes(), store, "the store file is unchanged");
    assert!(ws.can_login(&role, &password));
}

#[test]
fn environment_references_defaults_typed_values_and_bare_names() {
    let mut ws = Workspace::new();
    let (role, password) = ws.role("rk_envref");
    let port = ws.pg.port().to_string();
    let credential = ws
        .credential("app-db", &role)
        .replace(&format!("port = {port}"), "port = \"${REKEY_TEST_PG_PORT}\"")
        .replace("host = \"127.0.0.1\"", "host = \"${REKEY_TEST_UNSET_HOST:-127.0.0.1}\"")
        .replace(
            "sslmode = \"disable\"",
            "sslmode = \"disable\", terminate_sessions = \"${REKEY_TEST_TERMINATE}\"",
        );
    ws.write_config(&[credential]);
    let with_env = |args: &[&str], stdin: &str| {
        let mut cmd = ws.command();
        cmd.env("REKEY_TEST_PG_PORT", &port)
            .env("REKEY_TEST_TERMINATE", "true")
            .env_remove("REKEY_TEST_UNSET_HOST")
            .args(args);
        run_bounded(cmd, stdin, LIMIT)
    };
    with_env(&["import", "app-db"], &password).assert_code(0);
    with_env(&["rotate"], "").assert_code(0);
    let new = {
        let r = with_env(&["get", "app-db", "--field", "password"], "");
        r.assert_code(0);
        r.stdout.trim_end().to_owned()
    };
    assert!(ws.can_login(&role, &new));

    // Not a number: the reference is shown, with the line, never the value.
    let mut cmd = ws.command();
    cmd.env("REKEY_TEST_PG_PORT", "s3cr3t-not-a-port")
        .env("REKEY_TEST_TERMINATE", "true")
        .arg("status");
    let r = run_bounded(cmd, "", LIMIT);
    r.assert_code(2);
    r.assert_one_error(&["rekey.toml:", "`port`", "${REKEY_TEST_PG_PORT}", "integer"]);
    assert!(!r.stderr.contains("s3cr3t"), "{}", r.stderr);

    // `$NAME` without braces: an error that shows the `${NAME}` form.
    let before = ws.store_bytes();
    let config = std::fs::read_to_string(ws.config_path()).unwrap();
    ws.write_raw_config(&config.replace(&format!("username = \"{role}\""), "username = \"$REKEY_TEST_ROLE\""));
    let r = with_env(&["rotate"], "");
    r.assert_code(2);
    r.assert_one_error(&[
        "credential `app-db`",
        "`target.username`",
        "`$REKEY_TEST_ROLE` is not expanded",
        "`${REKEY_TEST_ROLE}`",
    ]);
    assert_eq!(ws.store_bytes(), before, "the store file is unchanged");
    assert!(ws.can_login(&role, &new));
}

#[test]
fn imported_fields_that_contradict_the_target_are_refused() {
    let mut ws = Workspace::new();
    let (role, password) = ws.role("rk_importid");
    ws.write_config(&[ws.credential("app-db", &role)]);
    let port = ws.pg.port();
    let doc = serde_json::json!({
        "engine": "postgres",
        "host": "db.elsewhere",
        "port": port + 1,
        "username": role,
        "password": password,
    });
    let r = rekey(&ws, &["import", "app-db"], &doc.to_string());
    r.assert_code(2);
    r.assert_one_error(&[
        "app-db: import:",
        "host \"db.elsewhere\" (configured \"127.0.0.1\")",
        &format!("port {} (configured {port})", port + 1),
    ]);
    assert!(!r.stderr.contains(&password), "{}", r.stderr);
    assert!(ws.store_bytes().is_empty(), "nothing was stored");
    // Fields that agree (localhost is 127.0.0.1) and missing ones are fine.
    let doc = serde_json::json!({ "host": "localhost", "username": role, "password": password });
    rekey(&ws, &["import", "app-db"], &doc.to_string()).assert_code(0);
    assert_eq!(ws.stored_password("app-db", "current"), password);
}

/// Issue 9: one missing variable (another credential's admin URL) fails only the
/// credentials whose target uses it, with exit 1 naming the variable; commands on the
/// other credentials work; `validate` still refuses the file.
#[test]
fn a_missing_variable_fails_only_the_credentials_that_use_it() {
    let mut ws = Workspace::new();
    let (role, password) = ws.role("rk_envok");
    let (other_role, other_password) = ws.role("rk_envmissing");
    let broken = ws
        .credential("other-db", &other_role)
        .replace(&format!("${{{ADMIN_ENV}}}"), "${REKEY_TEST_NEVER_SET_ADMIN}");
    ws.write_config(&[ws.credential("app-db", &role), broken]);
    let run = |args: &[&str], stdin: &str| {
        let mut cmd = ws.command();
        cmd.env_remove("REKEY_TEST_NEVER_SET_ADMIN").args(args);
        run_bounded(cmd, stdin, LIMIT)
    };
    run(&["import", "app-db"], &password).assert_code(0);
    run(&["status", "app-db"], "").assert_code(0);
    run(&["verify", "app-db"], "").assert_code(0);
    run(&["rotate", "app-db"], "").assert_code(0);
    let new = run(&["get", "app-db", "--field", "password"], "");
    new.assert_code(0);
    assert!(ws.can_login(&role, new.stdout.trim_end()));

    // Importing into it needs its target (the document is checked against it): refused,
    // naming the variable. Imported while the variable is set.
    let r = run(&["import", "other-db"], &other_password);
    assert_ne!(r.code, 0);
    assert!(r.stderr.contains("REKEY_TEST_NEVER_SET_ADMIN"), "{}", r.stderr);
    let mut cmd = ws.command();
    cmd.env("REKEY_TEST_NEVER_SET_ADMIN", ws.pg.admin_url())
        .args(["import", "other-db"]);
    run_bounded(cmd, &other_password, LIMIT).assert_code(0);

    // Runs that select it fail it (exit 1), naming the variable, before anything of it
    // changes; the other credential is rotated in the same run.
    let before = ws.store_bytes();
    for args in [
        &["rotate", "other-db"][..],
        &["verify", "other-db"],
        &["plan", "other-db"],
    ] {
        let r = run(args, "");
        r.assert_code(1);
        let all = format!("{}{}", r.stdout, r.stderr);
        assert!(
            all.contains("other-db") && all.contains("REKEY_TEST_NEVER_SET_ADMIN"),
            "{all}"
        );
    }
    assert_eq!(ws.store_bytes(), before, "nothing of it changed in the store");
    assert!(ws.can_login(&other_role, &other_password), "its password is unchanged");
    let r = run(&["rotate"], "");
    r.assert_code(1);
    let newer = run(&["get", "app-db", "--field", "password"], "");
    newer.assert_code(0);
    assert_ne!(newer.stdout, new.stdout, "app-db was rotated in the same run");
    assert!(ws.can_login(&role, newer.stdout.trim_end()));
    assert!(ws.can_login(&other_role, &other_password));
    // Read-only commands over all credentials work.
    let r = run(&["status"], "");
    assert!(
        r.stdout.contains("app-db") && r.stdout.contains("other-db"),
        "{} {}{}",
        r.code,
        r.stdout,
        r.stderr
    );

    // `validate` checks the whole file: the variable is an error there.
    let r = run(&["validate"], "");
    r.assert_code(2);
    r.assert_one_error(&["credential `other-db`", "REKEY_TEST_NEVER_SET_ADMIN", "not set"]);
}
