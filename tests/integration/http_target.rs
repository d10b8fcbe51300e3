//! The `http` target through the CLI: `examples/rabbitmq.toml` against the machine's
//! RabbitMQ management API (import, plan, rotate, verify; the old password gets 401 from
//! RabbitMQ), and a minted API key against the testbed's key API, including a `create`
//! answer without the secret (one error line; the minted key revoked again; the next run
//! finishes). Crashes of minting runs (SIGKILL after the mint, after the store) are in
//! `crash.rs`.

use crate::util::{random_password, run, unique, Run};
use rekey_testbed::keyapi::{Fault, KeyApi, KeyApiOptions, RabbitMq};
use std::path::Path;
use std::process::Command;

pub(crate) fn rekey(dir: &Path, env: &[(&str, &str)], args: &[&str], stdin: &str) -> Run {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_rekey"));
    cmd.current_dir(dir)
        .env_remove("REKEY_CONFIG")
        .arg("-c")
        .arg(dir.join("rekey.toml"))
        .args(args);
    for (k, v) in env {
        cmd.env(k, v);
    }
    run(cmd, stdin)
}

fn stored(dir: &Path, env: &[(&str, &str)], name: &str, field: &str) -> String {
    let got = rekey(dir, env, &["get", name, "--field", field], "");
    got.assert_code(0);
    got.stdout.trim().to_owned()
}

#[track_caller]
fn assert_no_secret(texts: &[&str], secrets: &[&str]) {
    for text in texts {
        for secret in secrets {
            assert!(!text.contains(secret), "a secret leaked into:\n{text}");
        }
    }
}

#[test]
fn rabbitmq_example_rotates_and_the_old_password_gets_401() {
    let api = RabbitMq::management().expect("RabbitMQ management API");
    let dir = tempfile::tempdir().unwrap();
    std::fs::copy(
        concat!(env!("CARGO_MANIFEST_DIR"), "/examples/rabbitmq.toml"),
        dir.path().join("rekey.toml"),
    )
    .unwrap();
    let initial = random_password();
    let user = api.create_user(&unique("rk_cli"), &initial).unwrap();
    let (admin, admin_password) = api.admin();
    let env = [
        ("RABBITMQ_USER", user.name.as_str()),
        ("RABBITMQ_ADMIN_USER", admin),
        ("RABBITMQ_ADMIN_PASSWORD", admin_password),
    ];
    let d = dir.path();

    let import = rekey(d, &env, &["import", "rabbitmq-app"], &initial);
    import.assert_code(0);
    let plan = rekey(d, &env, &["plan", "rabbitmq-app"], "");
    plan.assert_code(0);
    assert!(plan.stdout.contains("the current secret logs in"), "{}", plan.stdout);

    let rotate = rekey(d, &env, &["rotate", "rabbitmq-app"], "");
    rotate.assert_code(0);
    let current = stored(d, &env, "rabbitmq-app", "password");
    assert_ne!(current, initial);
    assert_eq!(api.login_status(&user.name, &current), Ok(200));
    assert_eq!(
        api.login_status(&user.name, &initial),
        Ok(401),
        "the old password is refused"
    );

    let verify = rekey(d, &env, &["verify", "rabbitmq-app"], "");
    verify.assert_code(0);

    // A second rotation, then the one before is dead too.
    rekey(d, &env, &["rotate", "rabbitmq-app"], "").assert_code(0);
    let newer = stored(d, &env, "rabbitmq-app", "password");
    assert_eq!(api.login_status(&user.name, &current), Ok(401));
    assert_eq!(api.login_status(&user.name, &newer), Ok(200));

    let audit = std::fs::read_to_string(d.join("rekey-audit.jsonl")).unwrap();
    assert_no_secret(
        &[
            &plan.stdout,
            &plan.stderr,
            &rotate.stdout,
            &rotate.stderr,
            &verify.stdout,
            &audit,
        ],
        &[&initial, &current, &newer],
    );
}

pub(crate) fn minting_config(api: &KeyApi) -> String {
    r#"
[defaults]
audit_log = "rekey-audit.jsonl"

[stores.local]
type = "file"
path = "secrets.json"

[[credentials]]
name = "billing-api"
store = "local"
key = "billing/api"
strategy = "dual"
grace = "0s"
target = { type = "http", base_url = "${BILLING_URL}", timeout_secs = 10,
  headers = { Authorization = "Bearer ${BILLING_ADMIN_TOKEN}" },
  secret_fields = ["api_key"],
  create = { method = "POST", path = "/v1/keys", json = { name = "rekey {{credential}}" }, ok = [200, 201],
             fields = { api_key = "/data/secret", key_id = "/data/id" } },
  login  = { method = "GET", path = "/v1/me", headers = { Authorization = "Bearer {{api_key}}" }, ok = [200], rejected = [401, 403] },
  revoke = { method = "DELETE", path = "/v1/keys/{{key_id}}", ok = [200, 204, 404] },
  list   = { method = "GET", path = "/v1/keys", items = "/data", fields = { key_id = "/id", name = "/name" },
             mine = { name = "rekey {{credential}}" } },
  revoke_settle_secs = 5 }
"#
        .replace("${BILLING_URL}", &api.url())
}

#[test]
fn a_minted_key_rotates_and_a_bad_answer_is_one_clear_line() {
    // The default test server: 300 ms revocation delay, a 429 now and then.
    let api = KeyApi::start().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    std::fs::write(d.join("rekey.toml"), minting_config(&api)).unwrap();
    let token = api.admin_token().to_owned();
    let env = [("BILLING_ADMIN_TOKEN", token.as_str())];
    let first = api.mint("by hand");
    let import = rekey(
        d,
        &env,
        &["import", "billing-api"],
        &format!(r#"{{"api_key": "{}", "key_id": "{}"}}"#, first.secret, first.id),
    );
    import.assert_code(0);

    let rotate = rekey(d, &env, &["rotate", "billing-api"], "");
    rotate.assert_code(0);
    let key_id = stored(d, &env, "billing-api", "key_id");
    let live: Vec<String> = api.live_keys().into_iter().map(|k| k.id).collect();
    assert_eq!(live, vec![key_id.clone()], "only the new key is alive");
    assert!(!api.accepts(&first.secret), "the old key is refused");
    rekey(d, &env, &["verify", "billing-api"], "").assert_code(0);

    // The service mints a key but answers without its secret: exit 1, one line naming
    // the credential and the step; the minted key is revoked again; the current key
    // still works and the next run rotates.
    api.fail_next("POST", "/v1/keys", Fault::MintWithoutSecret, 1);
    let failed = rekey(d, &env, &["rotate", "billing-api"], "");
    failed.assert_code(1);
    failed.assert_one_error(&["billing-api", "create POST", "/data/secret", "was revoked again"]);
    assert_eq!(
        api.live_keys().into_iter().map(|k| k.id).collect::<Vec<_>>(),
        vec![key_id.clone()]
    );
    rekey(d, &env, &["verify", "billing-api"], "").assert_code(0);
    rekey(d, &env, &["rotate", "billing-api"], "").assert_code(0);
    let newest = stored(d, &env, "billing-api", "key_id");
    assert_ne!(newest, key_id);
    assert_eq!(
        api.live_keys().into_iter().map(|k| k.id).collect::<Vec<_>>(),
        vec![newest]
    );

    let secrets: Vec<String> = api
        .keys()
        .into_iter()
        .map(|k| k.secret)
        .chain([token.clone()])
        .collect();
    let secrets: Vec<&str> = secrets.iter().map(String::as_str).collect();
    let audit = std::fs::read_to_string(d.join("rekey-audit.jsonl")).unwrap_or_default();
    assert_no_secret(
        &[&rotate.stdout, &rotate.stderr, &failed.stdout, &failed.stderr, &audit],
        &secrets,
    );
}

#[test]
fn an_unreachable_service_changes_nothing() {
    let api = KeyApi::start_with(KeyApiOptions::quiet()).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let first = api.mint("by hand");
    std::fs::write(d.join("rekey.toml"), minting_config(&api)).unwrap();
    let token = api.admin_token().to_owned();
    let env = [("BILLING_ADMIN_TOKEN", token.as_str())];
    rekey(
        d,
        &env,
        &["import", "billing-api"],
        &format!(r#"{{"api_key": "{}", "key_id": "{}"}}"#, first.secret, first.id),
    )
    .assert_code(0);
    let before = std::fs::read(d.join("secrets.json")).unwrap();
    // Every create is answered 500: not retried (it may have minted), one line, exit 1.
    api.fail_next(
        "POST",
        "/v1/keys",
        Fault::Answer {
            status: 500,
            content_type: "application/json".into(),
            body: r#"{"error":{"message":"database down"}}"#.into(),
        },
        100,
    );
    let failed = rekey(d, &env, &["rotate", "billing-api"], "");
    failed.assert_code(1);
    failed.assert_one_error(&["billing-api", "create POST", "HTTP 500", "database down"]);
    assert_eq!(api.live_keys(), vec![first.clone()]);
    let after = std::fs::read(d.join("secrets.json")).unwrap();
    assert_eq!(before, after, "the store is unchanged");
}

pub(crate) fn live_ids(api: &KeyApi) -> Vec<String> {
    let mut ids: Vec<String> = api.live_keys().into_iter().map(|k| k.id).collect();
    ids.sort();
    ids
}
