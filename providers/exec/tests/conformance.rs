//! The target conformance suite through the exec protocol: the example plugin
//! (`examples/plugins/rabbitmq-user`, strategy `single`) against the machine's real
//! RabbitMQ, a minting test plugin (`tests/plugins/file-keys`, strategy `dual`), and the
//! minting example plugin (`examples/plugins/keyapi-keys`, `dual`, `sweeps`) against the
//! testbed's key API.

use rekey_api::conformance::{random_password, target as suite, unique_name};
use rekey_api::{ErrorKind, RevokeOptions, SecretDoc, Strategy, Target};
use rekey_exec::{ExecProvider, ExecTargetConfig};
use rekey_testbed::keyapi::{KeyApi, RabbitMq};
use serde_json::json;

const EXAMPLE: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../../examples/plugins/rabbitmq-user");
const FILE_KEYS: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/plugins/file-keys");

fn config(value: serde_json::Value) -> ExecTargetConfig {
    serde_json::from_value(value).unwrap()
}

fn doc(value: serde_json::Value) -> SecretDoc {
    SecretDoc::from_value(value).unwrap()
}

#[tokio::test(flavor = "multi_thread")]
async fn example_plugin_preflight_rotation_and_incident_revoke() {
    let api = RabbitMq::management().expect("RabbitMQ");
    let initial = random_password(24).expose().to_owned();
    let user = api.create_user(&unique_name("rk_exec"), &initial).unwrap();
    let t = ExecProvider::new()
        .exec_target(
            &config(json!({"command": [EXAMPLE], "settings": {"user": user.name}})),
            "rabbit-exec",
            Strategy::Single,
        )
        .unwrap();
    assert!(t.capabilities().terminate_sessions && t.capabilities().apply_invalidates_previous);
    let lines = t.preflight(None).await.unwrap();
    assert!(
        lines.iter().any(|l| l.contains(&user.name) && l.contains("exists")),
        "{lines:?}"
    );
    // One rotation (every rule runs as its own test in `example_plugin_conformance`).
    let end = suite::apply_then_verify(&t, doc(json!({"password": initial}))).await;
    let last = end.password().unwrap();
    assert_eq!(api.login_status(&user.name, last.expose()), Ok(200));
    assert_eq!(api.login_status(&user.name, &initial), Ok(401));
    // Incident revoke ends the user's sessions (none open here) and reports the count.
    let report = t
        .revoke(
            &doc(json!({"password": initial})),
            &end,
            RevokeOptions {
                terminate_sessions: true,
            },
        )
        .await
        .unwrap();
    assert_eq!(report.sessions_terminated, 0);
}

#[tokio::test(flavor = "multi_thread")]
async fn example_plugin_errors_are_typed() {
    let t = ExecProvider::new()
        .exec_target(
            &config(json!({"command": [EXAMPLE], "settings": {"user": unique_name("rk_missing")}})),
            "rabbit-exec",
            Strategy::Single,
        )
        .unwrap();
    let new = doc(json!({"password": random_password(24).expose()}));
    let e = t.apply(&new, None).await.unwrap_err();
    assert_eq!(e.kind(), ErrorKind::NotFound, "{e}");
    assert!(
        e.message().starts_with(&format!("exec plugin {EXAMPLE}: apply: ")),
        "{e}"
    );
    assert_eq!(t.login(&new).await.unwrap_err().kind(), ErrorKind::AuthRejected);
    assert_eq!(t.preflight(None).await.unwrap_err().kind(), ErrorKind::NotFound);
    // The plugin implements single only.
    let e = ExecProvider::new()
        .exec_target(
            &config(json!({"command": [EXAMPLE], "settings": {"user": "x"}})),
            "c",
            Strategy::Dual,
        )
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Unsupported);
    assert!(
        e.message()
            .contains("\"dual\" is not one the plugin implements (single)"),
        "{e}"
    );
}

fn file_keys(dir: &std::path::Path, extra: serde_json::Value) -> (rekey_exec::ExecTarget, SecretDoc) {
    let path = dir.join("keys.json");
    let mut settings = json!({"path": path});
    settings
        .as_object_mut()
        .unwrap()
        .extend(extra.as_object().unwrap().clone());
    std::fs::write(&path, r#"{"k_first": "ak_first-key-0123456789"}"#).unwrap();
    let t = ExecProvider::new()
        .exec_target(
            &config(json!({"command": [FILE_KEYS], "settings": settings, "secret_fields": ["api_key"]})),
            "file-keys",
            Strategy::Dual,
        )
        .unwrap();
    (
        t,
        doc(json!({"key_id": "k_first", "api_key": "ak_first-key-0123456789"})),
    )
}

fn keys_in(dir: &std::path::Path) -> serde_json::Map<String, serde_json::Value> {
    serde_json::from_str(&std::fs::read_to_string(dir.join("keys.json")).unwrap()).unwrap()
}

/// The suite through the example plugin against RabbitMQ (`single`).
mod example_plugin_conformance {
    use super::*;
    use rekey_testbed::keyapi::RabbitUser;

    rekey_api::target_conformance_tests! {
        setup = async {
            let api = RabbitMq::management().expect("RabbitMQ");
            let initial = random_password(24).expose().to_owned();
            let user = api.create_user(&unique_name("rk_exec"), &initial).unwrap();
            let t = ExecProvider::new()
                .exec_target(
                    &config(json!({"command": [EXAMPLE], "settings": {"user": user.name}})),
                    "rabbit-exec",
                    Strategy::Single,
                )
                .unwrap();
            ((api, user), t, doc(json!({"password": initial})))
        },
        // RabbitMQ itself takes the returned password.
        check = |(api, user): &(RabbitMq, RabbitUser), _: &rekey_exec::ExecTarget, _: &SecretDoc, after: &SecretDoc| {
            assert_eq!(api.login_status(&user.name, after.password().unwrap().expose()), Ok(200));
        },
        skip = [
            dual_holds_both_until_revoke => "the example plugin implements single: apply replaces the password",
            alternating_uses_the_idle_user => "the example plugin implements single: no idle user",
        ],
    }
}

/// The suite through the minting test plugin (`dual`).
mod minting_plugin_conformance {
    use super::*;

    rekey_api::target_conformance_tests! {
        setup = async {
            let dir = tempfile::tempdir().unwrap();
            let (t, first) = file_keys(dir.path(), json!({}));
            assert!(t.capabilities().mints_own_secret && !t.capabilities().apply_invalidates_previous);
            (dir, t, first)
        },
        check = |dir: &tempfile::TempDir, _: &rekey_exec::ExecTarget, _: &SecretDoc, after: &SecretDoc| {
            let keys = keys_in(dir.path());
            assert_eq!(keys.len(), 1, "only the last key is left: {keys:?}");
            assert_eq!(keys.keys().next().map(String::as_str), after.get_str("key_id"));
            // The minted document is the plugin's, without the generated password.
            assert!(after.get("password").is_none());
        },
        skip = [alternating_uses_the_idle_user => "a minting plugin rotates under dual: no idle user"],
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_create_answer_without_doc_is_a_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    let (t, first) = file_keys(dir.path(), json!({"fail_create": true}));
    let e = t.prepare(Some(&first), random_password(8)).await.unwrap_err();
    assert!(!e.is_retryable());
    assert!(
        e.message()
            .contains("create: its answer has no \"doc\" object; the plugin may have minted"),
        "{e}"
    );
}

const KEYAPI_KEYS: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../../examples/plugins/keyapi-keys");

/// The minting example plugin on a fresh testbed key API (a deleted key works 300 ms
/// more; the plugin's revoke waits until it is refused), and the imported first key.
fn keyapi_keys(options: rekey_testbed::keyapi::KeyApiOptions) -> (KeyApi, rekey_exec::ExecTarget, SecretDoc) {
    let api = KeyApi::start_with(options).unwrap();
    let first = api.mint("rekey keyapi-exec");
    let t = ExecProvider::new()
        .exec_target(
            &config(json!({
                "command": [KEYAPI_KEYS],
                "settings": {"base_url": api.url(), "admin_token": api.admin_token()},
                "secret_fields": ["api_key"],
            })),
            "keyapi-exec",
            Strategy::Dual,
        )
        .unwrap();
    (api, t, doc(json!({"key_id": first.id, "api_key": first.secret})))
}

fn live_ids(api: &KeyApi) -> Vec<String> {
    let mut ids: Vec<String> = api.live_keys().into_iter().map(|k| k.id).collect();
    ids.sort();
    ids
}

/// The suite through the minting example plugin against the testbed key API (`dual`).
mod keyapi_plugin_conformance {
    use super::*;
    use rekey_testbed::keyapi::KeyApiOptions;

    rekey_api::target_conformance_tests! {
        setup = async {
            keyapi_keys(KeyApiOptions { rate_limit_every: None, ..KeyApiOptions::default() })
        },
        check = |api: &KeyApi, _: &rekey_exec::ExecTarget, _: &SecretDoc, after: &SecretDoc| {
            let live = live_ids(api);
            assert_eq!(live.len(), 1, "only the last key is alive: {live:?}");
            assert_eq!(Some(live[0].as_str()), after.get_str("key_id"));
            assert!(api.accepts(after.get_str("api_key").unwrap()));
        },
        skip = [alternating_uses_the_idle_user => "a minting plugin rotates under dual: no idle user"],
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn keyapi_plugin_sweeps_only_its_unstored_keys() {
    // The default server: a 429 with Retry-After now and then, a revocation delay.
    let (api, t, first) = keyapi_keys(rekey_testbed::keyapi::KeyApiOptions::default());
    let pending = t.prepare(Some(&first), random_password(8)).await.unwrap();
    let orphan = api.mint("rekey keyapi-exec");
    let other = api.mint("someone else's key");
    let before = live_ids(&api);
    assert_eq!(before.len(), 4, "{before:?}");
    let removed = t
        .sweep_unstored(&[&first, &pending], std::time::UNIX_EPOCH)
        .await
        .unwrap();
    assert_eq!(removed, vec![orphan.id.clone()]);
    let mut expected = vec![
        first.get_str("key_id").unwrap().to_owned(),
        pending.get_str("key_id").unwrap().to_owned(),
        other.id,
    ];
    expected.sort();
    assert_eq!(live_ids(&api), expected, "stored keys and another's key are kept");
    assert!(t
        .sweep_unstored(&[&first, &pending], std::time::UNIX_EPOCH)
        .await
        .unwrap()
        .is_empty());
    // A plugin that does not declare `sweeps` is never asked.
    let dir = tempfile::tempdir().unwrap();
    let (file_target, file_first) = file_keys(dir.path(), json!({}));
    assert!(file_target
        .sweep_unstored(&[&file_first], std::time::UNIX_EPOCH)
        .await
        .unwrap()
        .is_empty());
}
