//! The `target = { type = "http", ... }` configuration.
//!
//! Field names are part of the configuration file's contract. Values may hold `${ENV}`
//! references, resolved when the file is loaded (so header values hold the management
//! token itself): `Debug` shows header names, never their values.

use serde::Deserialize;
use serde_json::Value;
use std::collections::BTreeMap;
use std::fmt;
use std::path::PathBuf;

/// An HTTP API on which a credential (an API key, a user's password) is rotated with
/// requests described here.
///
/// ```toml
/// target = { type = "http", base_url = "${BILLING_URL}", timeout_secs = 10,
///   headers = { Authorization = "Bearer ${BILLING_ADMIN_TOKEN}" },
///   secret_fields = ["api_key"],
///   create = { method = "POST", path = "/v1/keys", json = { name = "rekey {{credential}}" }, ok = [200, 201],
///              fields = { api_key = "/data/secret", key_id = "/data/id" } },
///   login  = { method = "GET", path = "/v1/me", headers = { Authorization = "Bearer {{api_key}}" },
///              ok = [200], rejected = [401, 403] },
///   revoke = { method = "DELETE", path = "/v1/keys/{{key_id}}", ok = [200, 204, 404] } }
/// ```
#[derive(Deserialize, Clone)]
#[serde(deny_unknown_fields)]
pub struct HttpTargetConfig {
    /// `https://api.example.com` (optionally with a path prefix). No user info, query or
    /// fragment: credentials go in `headers` or `basic`.
    pub base_url: String,
    /// Bound on each request (connect, send, answer), default 10.
    #[serde(default = "default_timeout")]
    pub timeout_secs: u64,
    /// The management credential and other headers sent with `create`, `apply`, `revoke`
    /// and `preflight` — never with `login`, which must prove the document's own secret.
    #[serde(default)]
    pub headers: BTreeMap<String, String>,
    /// The management credential as HTTP basic authentication (instead of an
    /// `Authorization` header), for the management steps without a `basic` of their own.
    #[serde(default)]
    pub basic: Option<BasicConfig>,
    /// PEM file of the CA certificates to trust instead of the system's and Mozilla's.
    #[serde(default)]
    pub ca_cert: Option<PathBuf>,
    /// Fields of the stored document that are secret. `password` always is. Placeholders
    /// naming them are refused in paths unless the step says `path_secret = true`.
    /// (Named after the credential-level key of issue 14; it lives in the http target
    /// until the engine reads it for every target.)
    #[serde(default)]
    pub secret_fields: Vec<String>,
    /// Mints the new secret (`strategy = "dual"`): `fields` maps document fields to JSON
    /// pointers into the answer.
    #[serde(default)]
    pub create: Option<StepConfig>,
    /// Installs the generated password (`strategy = "single"`), or activates a minted
    /// key (`dual`). Works on the new document.
    #[serde(default)]
    pub apply: Option<StepConfig>,
    /// A request authenticated with the checked document's secret only. `rejected`
    /// statuses (default 401 and 403) mean the secret is refused.
    pub login: StepConfig,
    /// Removes the old secret (required with `dual`). Works on the old document.
    #[serde(default)]
    pub revoke: Option<StepConfig>,
    /// An optional read-only request with the management headers that `plan` and every
    /// rotation run first (does the admin token work, does the user exist).
    #[serde(default)]
    pub preflight: Option<StepConfig>,
    /// Lists the keys of the service (with the management credential), so that a key
    /// minted by a run that crashed before storing it is found and revoked before the
    /// next mint. Keys count as this credential's when their `mine` fields match, and as
    /// stored when a stored document has the same values for `fields`.
    #[serde(default)]
    pub list: Option<StepConfig>,
    /// After `revoke`, keep trying `login` with the old document for up to this many
    /// seconds until the service refuses it (services that take a moment to forget a
    /// deleted key). Default 0: revoke returns at once.
    #[serde(default)]
    pub revoke_settle_secs: u64,
    /// Retries of a request answered 429 or 5xx (default 3). `create` is retried only on
    /// 429 and 503, which say the request was not processed.
    #[serde(default = "default_retries")]
    pub retries: u32,
    /// Longest wait before a retry, `Retry-After` included (default 30). A `Retry-After`
    /// beyond it fails the step at once.
    #[serde(default = "default_retry_max_wait")]
    pub retry_max_wait_secs: u64,
    /// Allow `http://` to a host other than the loopback interface (secrets would cross
    /// the network unencrypted). Default false.
    #[serde(default)]
    pub allow_plain_http: bool,
}

/// One request.
#[derive(Deserialize, Clone)]
#[serde(deny_unknown_fields)]
pub struct StepConfig {
    /// `GET`, `POST`, `PUT`, `PATCH` or `DELETE` (any case).
    pub method: String,
    /// Path (and query) after `base_url`, starting with `/`. Placeholders are
    /// percent-encoded; those naming a secret field need `path_secret = true`.
    pub path: String,
    /// Allow placeholders of secret fields in `path` (they will reach access logs).
    #[serde(default)]
    pub path_secret: bool,
    /// Headers of this step (over the target's for management steps).
    #[serde(default)]
    pub headers: BTreeMap<String, String>,
    /// HTTP basic authentication.
    #[serde(default)]
    pub basic: Option<BasicConfig>,
    /// A JSON body; its strings may hold placeholders.
    #[serde(default)]
    pub json: Option<Value>,
    /// A form body (`application/x-www-form-urlencoded`), instead of `json`.
    #[serde(default)]
    pub form: Option<BTreeMap<String, String>>,
    /// Statuses that mean success (default: any 2xx).
    #[serde(default)]
    pub ok: Vec<u16>,
    /// `login` only: statuses that mean the secret was refused (default 401, 403).
    #[serde(default)]
    pub rejected: Vec<u16>,
    /// `create`: stored document fields from JSON pointers into the answer. `list`:
    /// fields of each listed key from JSON pointers into the item (the ids that
    /// `revoke` needs, e.g. `{ key_id = "/id" }`).
    #[serde(default)]
    pub fields: BTreeMap<String, String>,
    /// `list` only: JSON pointer to the array of keys in the answer (default: the answer
    /// itself).
    #[serde(default)]
    pub items: Option<String>,
    /// `list` only: item fields (after `fields`) that must equal these templates for a
    /// key to be this credential's, e.g. `{ name = "rekey {{credential}}" }`.
    #[serde(default)]
    pub mine: BTreeMap<String, String>,
}

/// `basic = { username = "...", password = "..." }`.
#[derive(Deserialize, Clone)]
#[serde(deny_unknown_fields)]
pub struct BasicConfig {
    /// User name (placeholders allowed).
    pub username: String,
    /// Password (placeholders allowed), usually `{{password}}`.
    pub password: String,
}

fn default_timeout() -> u64 {
    10
}

fn default_retries() -> u32 {
    3
}

fn default_retry_max_wait() -> u64 {
    30
}

impl HttpTargetConfig {
    /// A configuration with defaults and only a login step.
    pub fn new(base_url: impl Into<String>, login: StepConfig) -> Self {
        HttpTargetConfig {
            base_url: base_url.into(),
            timeout_secs: default_timeout(),
            headers: BTreeMap::new(),
            basic: None,
            ca_cert: None,
            secret_fields: Vec::new(),
            create: None,
            apply: None,
            login,
            revoke: None,
            preflight: None,
            list: None,
            revoke_settle_secs: 0,
            retries: default_retries(),
            retry_max_wait_secs: default_retry_max_wait(),
            allow_plain_http: false,
        }
    }
}

impl StepConfig {
    /// A step with only a method and a path.
    pub fn new(method: &str, path: &str) -> Self {
        StepConfig {
            method: method.to_owned(),
            path: path.to_owned(),
            path_secret: false,
            headers: BTreeMap::new(),
            basic: None,
            json: None,
            form: None,
            ok: Vec::new(),
            rejected: Vec::new(),
            fields: BTreeMap::new(),
            items: None,
            mine: BTreeMap::new(),
        }
    }
}

/// Header names only.
struct Names<'a>(&'a BTreeMap<String, String>);

impl fmt::Debug for Names<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_list().entries(self.0.keys()).finish()
    }
}

impl fmt::Debug for HttpTargetConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("HttpTargetConfig")
            .field("base_url", &crate::plan::shown_base(&self.base_url))
            .field("timeout_secs", &self.timeout_secs)
            .field("headers", &Names(&self.headers))
            .field("basic", &self.basic)
            .field("ca_cert", &self.ca_cert)
            .field("secret_fields", &self.secret_fields)
            .field("create", &self.create)
            .field("apply", &self.apply)
            .field("login", &self.login)
            .field("revoke", &self.revoke)
            .field("preflight", &self.preflight)
            .field("list", &self.list)
            .field("revoke_settle_secs", &self.revoke_settle_secs)
            .field("retries", &self.retries)
            .field("retry_max_wait_secs", &self.retry_max_wait_secs)
            .field("allow_plain_http", &self.allow_plain_http)
            .finish()
    }
}

impl fmt::Debug for StepConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let json_keys: Option<Vec<&String>> = self.json.as_ref().map(|v| match v {
            Value::Object(m) => m.keys().collect(),
            _ => Vec::new(),
        });
        f.debug_struct("StepConfig")
            .field("method", &self.method)
            // A path with secret placeholders may hold `${ENV}` literals too.
            .field("path", &if self.path_secret { "…" } else { self.path.as_str() })
            .field("path_secret", &self.path_secret)
            .field("headers", &Names(&self.headers))
            .field("basic", &self.basic)
            .field("json_keys", &json_keys)
            .field("form_keys", &self.form.as_ref().map(|m| m.keys().collect::<Vec<_>>()))
            .field("ok", &self.ok)
            .field("rejected", &self.rejected)
            .field("fields", &self.fields)
            .field("items", &self.items)
            .field("mine", &self.mine.keys().collect::<Vec<_>>())
            .finish()
    }
}

impl fmt::Debug for BasicConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("BasicConfig")
            .field("username", &self.username)
            .field("password", &"***")
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_hides_header_values_and_passwords() {
        let c: HttpTargetConfig = serde_json::from_value(serde_json::json!({
            "base_url": "https://api.example.com/v1",
            "headers": {"Authorization": "Bearer s3cr3t-admin-token"},
            "login": {"method": "GET", "path": "/me", "basic": {"username": "app", "password": "lit-s3cr3t-pw"},
                      "json": {"token": "body-s3cr3t"}},
        }))
        .unwrap();
        let shown = format!("{c:?}");
        for secret in ["s3cr3t-admin-token", "lit-s3cr3t-pw", "body-s3cr3t"] {
            assert!(!shown.contains(secret), "{shown}");
        }
        assert!(shown.contains("Authorization") && shown.contains("app"), "{shown}");
    }

    #[test]
    fn unknown_keys_are_refused() {
        let err = serde_json::from_value::<HttpTargetConfig>(serde_json::json!({
            "base_url": "https://x", "login": {"method": "GET", "path": "/", "okk": [200]}
        }))
        .unwrap_err();
        assert!(err.to_string().contains("okk"), "{err}");
    }
}
