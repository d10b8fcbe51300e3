//! Shared fixtures: the issue's `billing-api` configuration against the testbed's key API.

#![allow(dead_code)]

use rekey_api::{SecretDoc, Strategy};
use rekey_http::{HttpProvider, HttpTarget, HttpTargetConfig};
use rekey_testbed::keyapi::{ApiKey, KeyApi};
use serde_json::{json, Value};

/// The configuration of issue 14's example, pointed at `api`.
pub fn minting_json(api: &KeyApi) -> Value {
    json!({
        "base_url": api.url(),
        "timeout_secs": 10,
        "headers": {"Authorization": format!("Bearer {}", api.admin_token())},
        "secret_fields": ["api_key"],
        "create": {"method": "POST", "path": "/v1/keys", "json": {"name": "rekey {{credential}}"}, "ok": [200, 201],
                   "fields": {"api_key": "/data/secret", "key_id": "/data/id"}},
        "login": {"method": "GET", "path": "/v1/me", "headers": {"Authorization": "Bearer {{api_key}}"},
                  "ok": [200], "rejected": [401, 403]},
        "revoke": {"method": "DELETE", "path": "/v1/keys/{{key_id}}", "ok": [200, 204, 404]},
        "revoke_settle_secs": 3
    })
}

pub fn config(value: Value) -> HttpTargetConfig {
    serde_json::from_value(value).expect("config")
}

pub fn target(value: Value, strategy: Strategy) -> HttpTarget {
    HttpProvider::new()
        .http_target(&config(value), "billing-api", strategy)
        .expect("target")
}

/// The stored document of a key.
pub fn doc_of(key: &ApiKey) -> SecretDoc {
    SecretDoc::from_value(json!({"api_key": key.secret, "key_id": key.id})).unwrap()
}

/// Asserts an error message is one line, holds every `needles` and none of `secrets`.
pub fn assert_message(message: &str, needles: &[&str], secrets: &[&str]) {
    assert!(!message.contains('\n'), "more than one line: {message}");
    for n in needles {
        assert!(message.contains(n), "{message:?} should mention {n:?}");
    }
    for s in secrets {
        assert!(!message.contains(s), "{message:?} leaks a secret");
    }
}
