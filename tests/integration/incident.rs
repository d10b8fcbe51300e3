//! Incident mode and scheduling: `leaked`, `rotate --leaked`, `rotate --due`.

use crate::util::Workspace;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// An open session of `role`, idling in a long query.
fn open_session(ws: &Workspace, role: &str, password: &str) -> std::process::Child {
    let child = Command::new("psql")
        .args([
            "-h",
            "127.0.0.1",
            "-p",
            &ws.pg.port().to_string(),
            "-d",
            "postgres",
            "-U",
            role,
            "-w",
            "-Atc",
            "SELECT pg_sleep(120)",
        ])
        .env("PGPASSWORD", password)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("psql");
    let deadline = Instant::now() + Duration::from_secs(20);
    let count = |ws: &Workspace| {
        ws.pg.psql(&format!(
            "SELECT count(*) FROM pg_stat_activity WHERE usename = {}",
            rekey_testbed::quote_literal(role)
        ))
    };
    while count(ws) == "0" {
        assert!(Instant::now() < deadline, "the session never appeared");
        std::thread::sleep(Duration::from_millis(50));
    }
    child
}

fn wait_exit(child: &mut std::process::Child) -> bool {
    let deadline = Instant::now() + Duration::from_secs(20);
    while Instant::now() < deadline {
        if child.try_wait().unwrap().is_some() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let _ = child.kill();
    false
}

#[test]
fn leaked_names_the_holder_and_rotate_ends_its_sessions() {
    let mut ws = Workspace::new();
    let (role, leaked) = ws.role("rk_leaked");
    let (other_role, other_password) = ws.role("rk_bystander");
    ws.write_config(&[
        ws.credential("orders-db", &role),
        ws.credential("other-db", &other_role),
    ]);
    ws.import("orders-db", &leaked);
    ws.import("other-db", &other_password);

    let r = ws.rekey_stdin(&["leaked"], &format!("{leaked}\n"));
    r.assert_code(0);
    let fields: Vec<&str> = r.stdout.trim().split('\t').collect();
    assert_eq!(fields[..2], ["orders-db", "current"], "{}", r.stdout);
    assert!(!r.stdout.contains(&leaked) && !r.stderr.contains(&leaked));
    let r = ws.rekey_stdin(&["leaked"], "a-value-nobody-holds");
    r.assert_code(1);

    let mut session = open_session(&ws, &role, &leaked);
    let report = ws.path("incident.json");
    let r = ws.rekey_stdin(&["leaked", "--rotate", "--report", report.to_str().unwrap()], &leaked);
    r.assert_code(0);
    assert!(
        wait_exit(&mut session),
        "the session using the leaked password was ended"
    );
    assert!(!ws.can_login(&role, &leaked), "the leaked password is refused");
    assert!(
        ws.can_login(&other_role, &other_password),
        "other credentials are untouched"
    );

    let record: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(report).unwrap()).unwrap();
    let c = &record["credentials"][0];
    assert_eq!(c["name"], "orders-db");
    assert_eq!(c["status"], "rotated");
    assert!(c["sessions_terminated"].as_u64().unwrap() >= 1, "{record}");
    assert!(!record.to_string().contains(&leaked));
    assert_eq!(record["credentials"].as_array().unwrap().len(), 1);
}

#[test]
fn due_rotates_only_what_is_due() {
    let mut ws = Workspace::new();
    let (fresh_role, fresh_pw) = ws.role("rk_due_fresh");
    let (stale_role, stale_pw) = ws.role("rk_due_stale");
    let stale = ws
        .credential("stale-db", &stale_role)
        .replace("tags = [\"test\"]", "tags = [\"test\"]\nevery = \"1s\"");
    ws.write_config(&[ws.credential("fresh-db", &fresh_role), stale]);
    ws.import("fresh-db", &fresh_pw);
    ws.import("stale-db", &stale_pw);
    // `every` is at least 1s: wait it out (a lower bound only; no upper bound is assumed).
    std::thread::sleep(std::time::Duration::from_millis(1100));

    let r = ws.rekey(&["-o", "json", "rotate", "--due"]);
    r.assert_code(0);
    let doc: serde_json::Value = serde_json::from_str(&r.stdout).unwrap();
    assert_eq!(doc["credentials"][0]["status"], "not-due");
    assert_eq!(doc["credentials"][1]["status"], "rotated");
    assert_eq!(ws.stored_password("fresh-db", "current"), fresh_pw);
    assert_ne!(ws.stored_password("stale-db", "current"), stale_pw);
    assert!(ws.can_login(&fresh_role, &fresh_pw));

    // verify flags the credential older than its policy (1s: wait it out again).
    std::thread::sleep(std::time::Duration::from_millis(1100));
    let r = ws.rekey(&["verify", "stale-db"]);
    r.assert_code(1);
    assert!(r.stderr.contains("check-age"), "{}", r.stderr);
    ws.rekey(&["-q", "verify", "fresh-db"]).assert_code(0);
}

#[test]
fn completions_are_printed() {
    let ws = Workspace::new();
    let r = ws.rekey(&["completions", "bash"]);
    r.assert_code(0);
    assert!(r.stdout.contains("rekey") && r.stdout.contains("rotate"));
}

#[test]
fn terminate_sessions_in_config_ends_sessions_on_a_routine_rotation() {
    let mut ws = Workspace::new();
    let (role, initial) = ws.role("rk_term");
    let credential = ws.credential("app-db", &role).replace(
        "sslmode = \"disable\" }",
        "sslmode = \"disable\", terminate_sessions = true }",
    );
    ws.write_config(&[credential]);
    ws.import("app-db", &initial);
    let mut session = open_session(&ws, &role, &initial);
    let r = ws.rekey(&["-o", "json", "rotate"]);
    r.assert_code(0);
    let doc: serde_json::Value = serde_json::from_str(&r.stdout).unwrap();
    assert!(
        doc["credentials"][0]["sessions_terminated"].as_u64().unwrap() >= 1,
        "{doc}"
    );
    assert!(wait_exit(&mut session), "the session was ended");
}

#[test]
fn routine_rotation_leaves_sessions_alone() {
    let mut ws = Workspace::new();
    let (role, initial) = ws.role("rk_keep");
    ws.write_config(&[ws.credential("app-db", &role)]);
    ws.import("app-db", &initial);
    let mut session = open_session(&ws, &role, &initial);
    ws.rekey(&["rotate"]).assert_code(0);
    std::thread::sleep(Duration::from_millis(300));
    assert!(
        session.try_wait().unwrap().is_none(),
        "a routine rotation does not end sessions"
    );
    let _ = session.kill();
    let _ = session.wait();
}

/// `admin = { credential = "pg-admin" }`: the admin secret lives in the store as another
/// credential, which can itself be rotated (when it leaked: first), and the credentials
/// that use it keep rotating with its new secret.
#[test]
fn a_leaked_admin_credential_is_rotated_and_its_dependents_use_the_new_one() {
    let mut ws = Workspace::new();
    let admin_role = crate::util::unique("rk_adm");
    let admin_pw = crate::util::random_password();
    ws.pg.create_role_with(&admin_role, &admin_pw, "CREATEROLE");
    let (app_role, app_pw) = ws.role("rk_adm_app");
    let port = ws.pg.port();
    let config = format!(
        "[defaults]\naudit_log = \"audit.jsonl\"\n[stores.local]\ntype = \"file\"\npath = \"secrets.json\"\n\n\
         [[credentials]]\nname = \"pg-admin\"\nstore = \"local\"\nkey = \"admin\"\nstrategy = \"single\"\n\
         target = {{ type = \"postgres\", host = \"127.0.0.1\", port = {port}, dbname = \"postgres\", username = \"{admin_role}\", sslmode = \"disable\" }}\n\n\
         [[credentials]]\nname = \"app-db\"\nstore = \"local\"\nkey = \"app\"\nstrategy = \"single\"\n\
         target = {{ type = \"postgres\", host = \"127.0.0.1\", port = {port}, dbname = \"postgres\", username = \"{app_role}\", sslmode = \"disable\", admin = {{ credential = \"pg-admin\" }} }}\n"
    );
    ws.write_raw_config(&config);
    ws.import("pg-admin", &admin_pw);
    ws.import("app-db", &app_pw);
    ws.rekey(&["rotate", "app-db"]).assert_code(0);
    assert!(!ws.can_login(&app_role, &app_pw), "rotated through the stored admin");

    // The admin password leaks: it is found and rotated first.
    let r = ws.rekey_stdin(&["leaked", "--rotate"], &format!("PGPASSWORD={admin_pw}\n"));
    r.assert_code(0);
    assert!(
        !ws.can_login(&admin_role, &admin_pw),
        "the leaked admin password is dead"
    );
    let new_admin = ws.stored_password("pg-admin", "current");
    assert!(ws.can_login(&admin_role, &new_admin));

    // Both in one run: the admin first, then the app with the admin's new secret.
    ws.rekey(&["rotate", "pg-admin", "app-db"]).assert_code(0);
    let app_now = ws.stored_password("app-db", "current");
    assert!(ws.can_login(&app_role, &app_now));
    assert!(!ws.can_login(&admin_role, &new_admin));
    ws.rekey(&["verify"]).assert_code(0);
    ws.pg.drop_role(&admin_role);
}
