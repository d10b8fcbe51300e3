//! The main path: import, plan, rotate, get, verify, status.

use crate::util::Workspace;

#[test]
fn import_rotate_get_verify() {
    let mut ws = Workspace::new();
    let (role, initial) = ws.role("rk_full");
    ws.write_config(&[ws.credential("app-db", &role)]);

    ws.import("app-db", &format!("{initial}\n"));
    assert_eq!(ws.stored_password("app-db", "current"), initial);

    let r = ws.rekey(&["rotate", "app-db"]);
    r.assert_code(0);
    assert!(
        r.stdout.contains("rotated") && r.stdout.contains("app-db"),
        "{}",
        r.stdout
    );

    let new = ws.stored_password("app-db", "current");
    assert_ne!(new, initial);
    assert_eq!(new.len(), 32);
    assert_eq!(ws.stored_password("app-db", "previous"), initial);
    assert!(ws.can_login(&role, &new), "the new password logs in");
    assert!(!ws.can_login(&role, &initial), "the old password is refused");

    // The stored document has the AWS rotation shape.
    let r = ws.rekey(&["get", "app-db"]);
    let doc: serde_json::Value = serde_json::from_str(r.stdout.trim()).unwrap();
    assert_eq!(doc["engine"], "postgres");
    assert_eq!(doc["username"], role.as_str());
    assert_eq!(doc["host"], "127.0.0.1");
    assert_eq!(doc["port"], ws.pg.port());
    assert_eq!(doc["dbname"], "postgres");

    ws.rekey(&["verify", "app-db"]).assert_code(0);

    let status = ws.status_json("app-db");
    let versions = status["versions"].as_array().unwrap();
    assert_eq!(versions.len(), 2);
    assert!(
        versions[1]["revoked"].is_string(),
        "the previous version is recorded as revoked: {status}"
    );

    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(ws.path("audit.jsonl")).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600, "the audit log is private");
    let mode = std::fs::metadata(ws.path("secrets.json")).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600, "the store file is private");

    // Audit: one line per step with run id, step, outcome, timestamp and duration.
    let audit = ws.audit_log();
    let steps: Vec<serde_json::Value> = audit.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    let rotate_steps: Vec<&str> = steps
        .iter()
        .filter(|s| s["command"] == "rotate")
        .map(|s| s["step"].as_str().unwrap())
        .collect();
    assert_eq!(
        rotate_steps,
        [
            "read",
            "preflight",
            "generate",
            "stage",
            "apply",
            "verify",
            "prove-dead",
            "promote",
            "revoke"
        ]
    );
    for s in &steps {
        assert!(s["run_id"].is_string() && s["ts"].as_str().unwrap().ends_with('Z') && s["duration_ms"].is_number());
    }
}

#[test]
fn dry_run_and_plan_change_nothing() {
    let mut ws = Workspace::new();
    let (role, initial) = ws.role("rk_dry");
    ws.write_config(&[ws.credential("app-db", &role)]);
    ws.import("app-db", &initial);
    let before_store = ws.store_bytes();
    let before_verifier = ws.verifier(&role);

    let r = ws.rekey(&["rotate", "--dry-run", "app-db"]);
    r.assert_code(0);
    assert!(
        r.stdout.contains("may alter role"),
        "the plan shows the privilege check: {}",
        r.stdout
    );
    assert!(
        r.stdout.contains("stage:") && r.stdout.contains("apply:"),
        "{}",
        r.stdout
    );
    let r = ws.rekey(&["plan"]);
    r.assert_code(0);
    assert!(r.stdout.contains("nothing was changed"), "{}", r.stdout);

    assert_eq!(
        ws.store_bytes(),
        before_store,
        "dry run left the store file's bytes unchanged"
    );
    assert_eq!(
        ws.verifier(&role),
        before_verifier,
        "dry run left the role's password unchanged"
    );
    assert!(ws.can_login(&role, &initial));
}

#[test]
fn json_output_is_one_document() {
    let mut ws = Workspace::new();
    let (role, initial) = ws.role("rk_json");
    ws.write_config(&[ws.credential("app-db", &role)]);
    ws.import("app-db", &initial);
    let r = ws.rekey(&["-o", "json", "rotate", "--tag", "test"]);
    r.assert_code(0);
    let doc: serde_json::Value = serde_json::from_str(&r.stdout).expect("stdout is one JSON document");
    assert_eq!(doc["command"], "rotate");
    assert_eq!(doc["exit_code"], 0);
    assert_eq!(doc["summary"]["rotated"], 1);
    assert_eq!(doc["credentials"][0]["status"], "rotated");
    assert!(doc["credentials"][0]["version"].is_string());
}

#[test]
fn one_failing_credential_does_not_stop_the_others() {
    let mut ws = Workspace::new();
    let (good_a, pa) = ws.role("rk_iso_a");
    let (good_b, pb) = ws.role("rk_iso_b");
    let missing = crate::util::unique("rk_iso_missing");
    ws.write_config(&[
        ws.credential("a", &good_a),
        ws.credential("gone", &missing),
        ws.credential("b", &good_b),
    ]);
    ws.import("a", &pa);
    ws.import("b", &pb);
    ws.rekey_stdin(&["import", "--no-verify", "gone"], "whatever-password")
        .assert_code(0);

    let r = ws.rekey(&["rotate", "--parallel", "3"]);
    r.assert_code(1);
    r.assert_one_error(&["gone", "preflight", "does not exist"]);
    assert!(ws.can_login(&good_a, &ws.stored_password("a", "current")));
    assert!(ws.can_login(&good_b, &ws.stored_password("b", "current")));
    assert!(!ws.can_login(&good_a, &pa));
}

#[test]
fn verify_fails_when_the_current_secret_no_longer_works() {
    let mut ws = Workspace::new();
    let (role, initial) = ws.role("rk_ver");
    ws.write_config(&[ws.credential("app-db", &role)]);
    ws.import("app-db", &initial);
    ws.rekey(&["verify"]).assert_code(0);

    // Someone changes the password behind rekey's back.
    ws.pg.psql(&format!(
        "SET log_statement='none'; ALTER ROLE {} PASSWORD 'changed-elsewhere-123'",
        rekey_testbed::quote_ident(&role)
    ));
    let junit = ws.path("verify.xml");
    let r = ws.rekey(&["verify", "--junit", junit.to_str().unwrap()]);
    r.assert_code(1);
    r.assert_one_error(&["app-db", "check-current", "authentication rejected"]);
    let xml = std::fs::read_to_string(junit).unwrap();
    assert!(xml.contains("<failure") && xml.contains("app-db"), "{xml}");
}

#[test]
fn rotating_twice_keeps_one_current_and_revokes_each_previous() {
    let mut ws = Workspace::new();
    let (role, initial) = ws.role("rk_twice");
    ws.write_config(&[ws.credential("app-db", &role)]);
    ws.import("app-db", &initial);
    ws.rekey(&["rotate"]).assert_code(0);
    let first = ws.stored_password("app-db", "current");
    ws.rekey(&["rotate"]).assert_code(0);
    let second = ws.stored_password("app-db", "current");
    assert_ne!(first, second);
    assert_eq!(ws.stored_password("app-db", "previous"), first);
    assert!(ws.can_login(&role, &second));
    assert!(!ws.can_login(&role, &first));
    ws.rekey(&["verify"]).assert_code(0);
}

#[test]
fn version_is_quick_to_print() {
    let ws = Workspace::new();
    let r = crate::util::run(
        {
            let mut c = std::process::Command::new(env!("CARGO_BIN_EXE_rekey"));
            c.arg("--version").current_dir(ws.dir.path());
            c
        },
        "",
    );
    r.assert_code(0);
    assert!(r.stdout.starts_with("rekey "));
}
