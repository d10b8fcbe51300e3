//! `plan` output: one `preflight` step per credential (it used to be recorded once per
//! check), plan items as typed values, and what applications experience per strategy.

use crate::util::Workspace;
use crate::ux_support::{assert_envelope, Dir, OFFLINE_CONFIG};

/// How many of a credential's recorded steps are `step`.
fn count_steps(credential: &serde_json::Value, step: &str) -> usize {
    credential["steps"]
        .as_array()
        .expect("steps")
        .iter()
        .filter(|s| s["step"] == step)
        .count()
}

#[test]
fn preflight_is_recorded_once_per_credential() {
    let mut ws = Workspace::new();
    let (role, password) = ws.role("rk_uxplan");
    ws.write_config(&[ws.credential("app-db", &role)]);
    ws.import("app-db", &password);
    for args in [
        &["-o", "json", "plan", "app-db"][..],
        &["-o", "json", "plan", "--leaked", "app-db"][..],
        &["-o", "json", "rotate", "--dry-run", "app-db"][..],
    ] {
        let r = ws.rekey(args);
        r.assert_code(0);
        let doc = assert_envelope(&args.join(" "), &r.stdout);
        let credential = &doc["credentials"][0];
        assert_eq!(count_steps(credential, "preflight"), 1, "{args:?}: {}", r.stdout);
    }
    // An incident rotation: its incident checks and the target's precheck, one step.
    let r = ws.rekey(&["-o", "json", "rotate", "--leaked", "app-db"]);
    r.assert_code(0);
    let doc = assert_envelope("rotate --leaked", &r.stdout);
    assert_eq!(count_steps(&doc["credentials"][0], "preflight"), 1, "{}", r.stdout);
    // -v prints each step as it ends: preflight once.
    let r = ws.rekey(&["-v", "plan", "app-db"]);
    r.assert_code(0);
    assert_eq!(r.stderr.matches("app-db: preflight:").count(), 1, "{}", r.stderr);
}

#[test]
fn a_failed_preflight_is_recorded_once() {
    // Nothing listens on the targets' port: the store check passes, the target's fails.
    let d = Dir::with_config(OFFLINE_CONFIG);
    d.rekey_stdin(&["import", "--no-verify", "orders-db"], "some-pw-for-plan")
        .assert_code(0);
    let r = d.rekey(&["-o", "json", "plan", "orders-db"]);
    r.assert_code(1);
    let doc = assert_envelope("plan (unreachable)", &r.stdout);
    let credential = &doc["credentials"][0];
    assert_eq!(credential["error"]["step"], "preflight", "{}", r.stdout);
    assert_eq!(count_steps(credential, "preflight"), 1, "{}", r.stdout);
}

/// `plan --parallel N`, as `rotate` and `verify` take it: accepted in range, the same
/// plan as without it; out of range a usage error (exit 2) naming the flag.
#[test]
fn plan_takes_parallel_like_rotate_and_verify() {
    let d = Dir::with_config(OFFLINE_CONFIG);
    let default = d.rekey(&["-o", "json", "plan"]);
    let one = d.rekey(&["-o", "json", "plan", "--parallel", "1"]);
    assert_eq!(one.code, default.code, "{}{}", one.stdout, one.stderr);
    let names = |stdout: &str| -> Vec<String> {
        let doc: serde_json::Value = serde_json::from_str(stdout).expect("json");
        doc["credentials"]
            .as_array()
            .expect("credentials")
            .iter()
            .map(|c| format!("{} {}", c["name"], c["status"]))
            .collect()
    };
    assert!(!names(&one.stdout).is_empty());
    assert_eq!(names(&one.stdout), names(&default.stdout));
    let r = d.rekey(&["plan", "--parallel", "0"]);
    r.assert_code(2);
    assert!(r.stderr.contains("--parallel"), "{}", r.stderr);
}
