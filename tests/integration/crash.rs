//! Crashes and races: SIGKILL mid-rotation is finished by the next run; two runs on
//! one credential never both rotate.

use crate::util::{Held, Workspace};

fn pending_id(ws: &Workspace, name: &str) -> Option<String> {
    let status = ws.status_json(name);
    status["versions"]
        .as_array()
        .unwrap()
        .iter()
        .find(|v| v["stages"].as_array().unwrap().iter().any(|s| s == "pending"))
        .map(|v| v["id"].as_str().unwrap().to_owned())
}

fn killed_then_rerun(failpoint: &str) {
    let mut ws = Workspace::new();
    let (role, initial) = ws.role("rk_kill");
    ws.write_config(&[ws.credential("app-db", &role)]);
    ws.import("app-db", &initial);

    Held::start(&ws, &["rotate", "app-db"], failpoint).kill();
    let staged = pending_id(&ws, "app-db").expect("the killed run left its pending version");
    let pending_password = ws.stored_password("app-db", "pending");
    let applied = ws.can_login(&role, &pending_password);
    assert_eq!(
        applied,
        failpoint != "after-stage",
        "apply happened exactly when the failpoint says"
    );
    assert_eq!(
        ws.can_login(&role, &initial),
        failpoint == "after-stage",
        "a stored secret works at every instant"
    );

    let r = ws.rekey(&["rotate", "app-db"]);
    r.assert_code(0);
    assert!(r.stdout.contains("finished a pending rotation"), "{}", r.stdout);

    let status = ws.status_json("app-db");
    let versions = status["versions"].as_array().unwrap();
    assert_eq!(versions.len(), 2, "no second pending version was created: {status}");
    assert!(pending_id(&ws, "app-db").is_none());
    assert_eq!(
        status["versions"][0]["id"],
        staged.as_str(),
        "the staged version became current"
    );
    let current = ws.stored_password("app-db", "current");
    assert_eq!(current, pending_password);
    assert!(ws.can_login(&role, &current));
    assert!(!ws.can_login(&role, &initial));
    ws.rekey(&["verify", "app-db"]).assert_code(0);
}

#[test]
fn sigkill_after_stage_is_finished_by_the_next_run() {
    killed_then_rerun("after-stage");
}

#[test]
fn sigkill_after_apply_is_finished_by_the_next_run() {
    killed_then_rerun("after-apply");
}

#[test]
fn sigkill_after_verify_is_finished_by_the_next_run() {
    killed_then_rerun("after-verify");
}

#[test]
fn a_leaked_pending_secret_is_not_left_current() {
    let mut ws = Workspace::new();
    let (role, initial) = ws.role("rk_leakpend");
    ws.write_config(&[ws.credential("app-db", &role)]);
    ws.import("app-db", &initial);
    Held::start(&ws, &["rotate", "app-db"], "after-apply").kill();
    let leaked = ws.stored_password("app-db", "pending");
    let r = ws.rekey_stdin(&["leaked", "--rotate"], &leaked);
    r.assert_code(0);
    let current = ws.stored_password("app-db", "current");
    assert_ne!(current, leaked, "the leaked pending secret was not made current");
    assert!(!ws.can_login(&role, &leaked), "the leaked pending secret is dead");
    assert!(ws.can_login(&role, &current));
    assert!(pending_id(&ws, "app-db").is_none());
}

#[test]
fn verify_reports_a_half_done_rotation() {
    let mut ws = Workspace::new();
    let (role, initial) = ws.role("rk_half");
    ws.write_config(&[ws.credential("app-db", &role)]);
    ws.import("app-db", &initial);
    Held::start(&ws, &["rotate", "app-db"], "after-apply").kill();
    let r = ws.rekey(&["verify", "app-db"]);
    r.assert_code(1);
    assert!(r.stderr.contains("half done"), "{}", r.stderr);
    ws.rekey(&["rotate", "app-db"]).assert_code(0);
    ws.rekey(&["verify", "app-db"]).assert_code(0);
}

#[test]
fn concurrent_runs_one_rotates_the_other_exits_3() {
    let mut ws = Workspace::new();
    let (role, initial) = ws.role("rk_lock");
    ws.write_config(&[ws.credential("app-db", &role)]);
    ws.import("app-db", &initial);

    let first = Held::start(&ws, &["rotate", "app-db"], "after-stage");
    let before = ws.store_bytes();
    let second = ws.rekey(&["rotate", "app-db"]);
    second.assert_code(3);
    second.assert_one_error(&["app-db", "lock", "another rekey run"]);
    assert_eq!(ws.store_bytes(), before, "the refused run changed nothing");
    let import = ws.rekey_stdin(&["import", "app-db"], &initial);
    import.assert_code(3);

    let staged = pending_id(&ws, "app-db").unwrap();
    first.kill();
    ws.rekey(&["rotate", "app-db"]).assert_code(0);
    let status = ws.status_json("app-db");
    assert_eq!(
        status["versions"][0]["id"],
        staged.as_str(),
        "nothing lost: the first run's version won"
    );
    assert!(ws.can_login(&role, &ws.stored_password("app-db", "current")));
}

#[test]
fn sigint_exits_130_and_the_next_run_finishes() {
    let mut ws = Workspace::new();
    let (role, initial) = ws.role("rk_sigint");
    ws.write_config(&[ws.credential("app-db", &role)]);
    ws.import("app-db", &initial);
    let mut held = Held::start(&ws, &["rotate", "app-db"], "after-apply");
    let status = std::process::Command::new("kill")
        .args(["-INT", &held.child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    let code = held.child.wait().unwrap().code();
    assert_eq!(code, Some(130), "interrupted runs exit 130");
    ws.rekey(&["rotate", "app-db"]).assert_code(0);
    assert!(ws.can_login(&role, &ws.stored_password("app-db", "current")));
    assert!(!ws.can_login(&role, &initial));
}

#[test]
fn sigkill_after_promote_leaves_a_finished_rotation() {
    let mut ws = Workspace::new();
    let (role, initial) = ws.role("rk_kill_promote");
    ws.write_config(&[ws.credential("app-db", &role)]);
    ws.import("app-db", &initial);
    Held::start(&ws, &["rotate", "app-db"], "after-promote").kill();
    assert!(
        pending_id(&ws, "app-db").is_none(),
        "promotion happened before the kill"
    );
    let current = ws.stored_password("app-db", "current");
    assert!(ws.can_login(&role, &current));
    assert!(!ws.can_login(&role, &initial));
    ws.rekey(&["verify", "app-db"]).assert_code(0);
}
