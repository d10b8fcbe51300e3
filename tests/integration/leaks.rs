//! Generated passwords never appear in rekey's output, logs, audit log, traces, or the
//! PostgreSQL server log with `log_statement = all`.

use crate::util::{Run, Workspace};
use rekey_testbed::{PgCluster, PgOptions};
use std::sync::OnceLock;

fn logging_cluster() -> &'static PgCluster {
    static CLUSTER: OnceLock<PgCluster> = OnceLock::new();
    CLUSTER
        .get_or_init(|| PgCluster::start_with(PgOptions::new().log_statement_all(true)).expect("start logging cluster"))
}

#[test]
fn generated_passwords_never_leak() {
    let pg = logging_cluster();
    let mut ws = Workspace::on(pg);
    let (role, initial) = ws.role("rk_leak");
    ws.write_config(&[ws.credential("app-db", &role)]);
    ws.import("app-db", &initial);

    let mut runs: Vec<Run> = Vec::new();
    for args in [
        &["plan"][..],
        &["-vv", "rotate", "app-db"],
        &["-v", "rotate", "--leaked", "app-db"],
        &["-o", "json", "rotate", "app-db"],
        &["verify", "app-db"],
        &["-o", "json", "status"],
    ] {
        let mut cmd = ws.command();
        cmd.args(args).env("RUST_LOG", "trace");
        let r = crate::util::run(cmd, "");
        r.assert_code(0);
        runs.push(r);
    }
    // Every password the rotations generated: the store file keeps a short history.
    let store: serde_json::Value = serde_json::from_slice(&ws.store_bytes()).unwrap();
    let generated: Vec<String> = store["keys"]["app/app-db"]["versions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v["value"]["password"].as_str().unwrap().to_owned())
        .filter(|p| *p != initial)
        .collect();
    assert_eq!(generated.len(), 3, "three rotations, three generated passwords");
    let server_log = pg.log_contents();
    assert!(
        server_log.contains("ALTER ROLE"),
        "the server logs statements, so this test can fail"
    );
    assert!(
        server_log.contains("SCRAM-SHA-256$"),
        "the password reached the server as a verifier"
    );
    let trace_seen = runs
        .iter()
        .any(|r| r.stderr.contains("TRACE") || r.stderr.contains("DEBUG"));
    assert!(trace_seen, "RUST_LOG=trace produced log output, so this test can fail");

    for r in &runs {
        assert!(
            !r.stderr.contains("SCRAM-SHA-256$"),
            "a password verifier leaked to the logs"
        );
    }
    assert!(
        runs[1].stderr.contains("step finished"),
        "rekey's own trace events were on, so this test can fail"
    );
    for secret in &generated {
        for r in &runs {
            assert!(
                !r.stdout.contains(secret.as_str()),
                "a generated password leaked to stdout"
            );
            assert!(
                !r.stderr.contains(secret.as_str()),
                "a generated password leaked to stderr"
            );
        }
        assert!(
            !ws.audit_log().contains(secret.as_str()),
            "a generated password leaked to the audit log"
        );
        assert!(
            !server_log.contains(secret.as_str()),
            "a generated password reached the server log"
        );
        assert!(!std::fs::read_to_string(ws.config_path())
            .unwrap()
            .contains(secret.as_str()));
    }
}
