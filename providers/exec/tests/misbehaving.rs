//! Plugins that misbehave: each failure is one line naming the plugin and the operation,
//! with secrets masked, never a panic.

use rekey_api::conformance::random_password;
use rekey_api::{ErrorKind, ProviderError, SecretDoc, Strategy, Target};
use rekey_exec::{ExecProvider, ExecTarget, ExecTargetConfig};
use serde_json::json;
use std::time::{Duration, Instant};

const MISBEHAVE: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/plugins/misbehave");

fn target(args: &[&str], timeout_secs: u64) -> Result<ExecTarget, ProviderError> {
    let mut command = vec![MISBEHAVE.to_owned()];
    command.extend(args.iter().map(|s| s.to_string()));
    let config: ExecTargetConfig = serde_json::from_value(json!({
        "command": command, "timeout_secs": timeout_secs,
        "settings": {"admin_token": "adm-s3cr3t-token", "user": "app"}
    }))
    .unwrap();
    ExecProvider::new().exec_target(&config, "odd", Strategy::Single)
}

fn secret_doc() -> (SecretDoc, String) {
    let pw = random_password(24).expose().to_owned();
    (
        SecretDoc::from_value(json!({"password": pw, "username": "app"})).unwrap(),
        pw,
    )
}

#[track_caller]
fn check(e: &ProviderError, needles: &[&str], secrets: &[&str]) {
    let m = e.to_string();
    assert!(!m.contains('\n'), "{m}");
    assert!(m.contains(&format!("exec plugin {MISBEHAVE}")), "{m}");
    for n in needles {
        assert!(m.contains(n), "{m:?} should mention {n:?}");
    }
    for s in secrets {
        assert!(!m.contains(s), "{m:?} leaks a secret");
    }
}

async fn login_error(mode: &str) -> (ProviderError, String) {
    let (doc, pw) = secret_doc();
    let e = target(&[mode], 10).unwrap().login(&doc).await.unwrap_err();
    (e, pw)
}

#[tokio::test]
async fn garbage_on_stdout() {
    let (e, pw) = login_error("garbage").await;
    assert_eq!(e.kind(), ErrorKind::Other);
    check(&e, &["login: printed something that is not a JSON answer"], &[&pw]);
}

#[tokio::test]
async fn non_zero_exit_without_answer_quotes_stderr_masked() {
    let (e, pw) = login_error("exit3").await;
    check(
        &e,
        &["login: exited with status 3 without an answer; stderr: ", "****"],
        &[&pw, "adm-s3cr3t-token"],
    );
    // Settings that are not secret stay readable.
    assert!(e.message().contains("\"user\":\"app\""), "{e}");
}

#[tokio::test]
async fn a_hanging_plugin_is_killed_with_its_children() {
    let dir = tempfile::tempdir().unwrap();
    let pidfile = dir.path().join("child.pid");
    let (doc, pw) = secret_doc();
    let t = target(&["hang", pidfile.to_str().unwrap()], 1).unwrap();
    let started = Instant::now();
    let e = t.login(&doc).await.unwrap_err();
    assert!(started.elapsed() < Duration::from_secs(3), "{:?}", started.elapsed());
    assert_eq!(e.kind(), ErrorKind::Unreachable);
    check(
        &e,
        &["login: no answer within 1s", "killed with its process group"],
        &[&pw],
    );
    // The plugin's own child (a background `sleep`) is gone too.
    let pid: i32 = std::fs::read_to_string(&pidfile).unwrap().trim().parse().unwrap();
    std::thread::sleep(Duration::from_millis(100));
    let alive = std::path::Path::new(&format!("/proc/{pid}")).exists()
        && !std::fs::read_to_string(format!("/proc/{pid}/stat"))
            .unwrap_or_default()
            .contains(") Z ");
    assert!(!alive, "the plugin's child {pid} survived");
}

#[tokio::test]
async fn an_abandoned_operation_kills_the_plugin() {
    let dir = tempfile::tempdir().unwrap();
    let pidfile = dir.path().join("child.pid");
    let (doc, _) = secret_doc();
    let t = target(&["hang", pidfile.to_str().unwrap()], 30).unwrap();
    // As when rekey is interrupted: the operation's future is dropped.
    let _ = tokio::time::timeout(Duration::from_millis(500), t.login(&doc)).await;
    std::thread::sleep(Duration::from_millis(100));
    let pid: i32 = std::fs::read_to_string(&pidfile).unwrap().trim().parse().unwrap();
    let alive = std::path::Path::new(&format!("/proc/{pid}")).exists()
        && !std::fs::read_to_string(format!("/proc/{pid}/stat"))
            .unwrap_or_default()
            .contains(") Z ");
    assert!(!alive, "the plugin's child {pid} survived");
}

#[tokio::test]
async fn other_protocol_versions_are_refused() {
    let (e, _) = login_error("protocol2").await;
    check(
        &e,
        &["login: it speaks protocol 2; rekey speaks protocol 1 (refused)"],
        &[],
    );
    let (e, _) = login_error("noprotocol").await;
    check(&e, &["login: its answer has no \"protocol\": 1"], &[]);
    let e = target(&["describe-protocol2"], 10).unwrap_err();
    check(&e, &["describe: it speaks protocol 2"], &[]);
    let e = target(&["describe-garbage"], 10).unwrap_err();
    check(
        &e,
        &[
            "describe: printed something that is not a JSON answer",
            "exited with status 2",
        ],
        &[],
    );
}

#[tokio::test]
async fn an_answer_over_1_mib_is_refused() {
    let (e, _) = login_error("big").await;
    check(
        &e,
        &["login: its answer is over 1 MiB (refused; the plugin was killed)"],
        &[],
    );
}

#[tokio::test]
async fn ok_with_a_failing_exit_status_is_not_ok() {
    let (e, _) = login_error("okexit1").await;
    check(&e, &["login: answered ok but exited with status 1"], &[]);
}

#[tokio::test]
async fn plugin_messages_are_masked_and_kinds_mapped() {
    let (e, pw) = login_error("leaky").await;
    assert_eq!(e.kind(), ErrorKind::AuthRejected);
    check(&e, &["login: bad password ****"], &[&pw]);
    let (e, _) = login_error("unknownkind").await;
    check(&e, &["unknown error kind"], &[]);
}

#[tokio::test]
async fn no_secret_in_argv_or_environment() {
    std::env::set_var("REKEY_TEST_LEAK_CANARY", "canary-value");
    let (e, pw) = login_error("env").await;
    let names = e.message().to_owned();
    assert!(
        names.contains("REKEY_OPERATION") && names.contains("REKEY_CREDENTIAL"),
        "{names}"
    );
    assert!(
        !names.contains("REKEY_TEST_LEAK_CANARY"),
        "the environment is cleared: {names}"
    );
    assert!(!names.contains(&pw));
    let (e, pw) = login_error("argv").await;
    assert!(e.message().ends_with("argv: argv"), "{e}");
    assert!(!e.message().contains(&pw));
}

#[tokio::test]
async fn a_missing_program_is_invalid_input() {
    let config: ExecTargetConfig = serde_json::from_value(json!({"command": ["/nonexistent/plugin"]})).unwrap();
    let e = ExecProvider::new()
        .exec_target(&config, "c", Strategy::Single)
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::InvalidInput);
    assert_eq!(
        e.message(),
        "exec plugin /nonexistent/plugin: describe: cannot run it: No such file or directory"
    );
    let config: ExecTargetConfig = serde_json::from_value(json!({"command": []})).unwrap();
    assert!(ExecProvider::new().exec_target(&config, "c", Strategy::Single).is_err());
}

#[tokio::test]
async fn describe_runs_once_per_plugin() {
    let provider = ExecProvider::new();
    let config: ExecTargetConfig = serde_json::from_value(json!({"command": [MISBEHAVE, "ok"]})).unwrap();
    let a = provider.exec_target(&config, "a", Strategy::Dual).unwrap();
    let b = provider.exec_target(&config, "b", Strategy::Single).unwrap();
    assert_eq!(a.capabilities().strategy, Strategy::Dual);
    assert_eq!(b.capabilities().strategy, Strategy::Single);
    assert!(format!("{provider:?}").contains("plugins: 1"));
    let (doc, _) = secret_doc();
    a.login(&doc).await.unwrap();
    assert!(!format!("{a:?}").contains("adm-s3cr3t"));
}
