//! Live progress on a terminal: one status line redrawn in place (in-flight names,
//! done/failed/total, elapsed), removed before the final output; each failure printed
//! once with its reason; nothing of it when stderr is not a terminal.

use crate::util::Workspace;
use crate::ux_support::run_on_terminal;

const CLEAR: &str = "\r\x1b[2K";

/// Three credentials: two that rotate, one whose role does not exist (fails at preflight).
fn three(ws: &mut Workspace) {
    let (a, pa) = ws.role("rk_uxprog_a");
    let (b, pb) = ws.role("rk_uxprog_b");
    ws.write_config(&[
        ws.credential("a-db", &a),
        ws.credential("b-db", &b),
        ws.credential("bad-db", "rk_uxprog_no_such_role"),
    ]);
    ws.import("a-db", &pa);
    ws.import("b-db", &pb);
}

#[test]
fn a_status_line_while_running_gone_before_the_summary_and_each_failure_once() {
    let mut ws = Workspace::new();
    three(&mut ws);
    // The failure's reason, as the engine words it.
    let piped = ws.rekey(&["-o", "json", "rotate", "bad-db"]);
    piped.assert_code(1);
    let doc: serde_json::Value = serde_json::from_str(&piped.stdout).unwrap();
    let reason = doc["credentials"][0]["error"]["message"].as_str().unwrap().to_owned();
    assert!(!reason.is_empty());

    let mut cmd = ws.command();
    cmd.args(["rotate", "--parallel", "1", "a-db", "b-db", "bad-db"]);
    let (code, out) = run_on_terminal(cmd);
    assert_eq!(code, 1, "{out:?}");
    // Drawn in place, with counts, elapsed time and the credential in flight.
    assert!(out.contains(&format!("{CLEAR}[0/3 done, 0s] a-db")), "{out:?}");
    assert!(out.contains(&format!("{CLEAR}[2/3 done, ")), "{out:?}");
    // Gone before the final output: after the last clear comes the summary, no status line.
    let last = out.rfind(CLEAR).expect("the line was cleared");
    let after = &out[last + CLEAR.len()..];
    assert!(!after.contains(" done, "), "status line left behind: {after:?}");
    assert!(after.contains("3 credentials: 2 rotated, 1 failed"), "{after:?}");
    // Each failure once, with its reason.
    assert_eq!(out.matches(reason.as_str()).count(), 1, "{reason}\n{out}");
    assert!(after.contains("bad-db"), "{after:?}");
}

#[test]
fn nothing_live_when_stderr_is_not_a_terminal() {
    let mut ws = Workspace::new();
    three(&mut ws);
    let r = ws.rekey(&["rotate", "--parallel", "1", "a-db", "b-db", "bad-db"]);
    r.assert_code(1);
    assert!(
        !r.stderr.contains('\r') && !r.stderr.contains("\x1b[2K"),
        "{:?}",
        r.stderr
    );
    assert!(!r.stderr.contains(" done, "), "{:?}", r.stderr);
    // As before: the failure on stderr (for logs), the rows on stdout.
    assert_eq!(r.error_lines().len(), 1, "{}", r.stderr);
    assert!(r.stdout.contains("3 credentials: 2 rotated, 1 failed"), "{}", r.stdout);
}
