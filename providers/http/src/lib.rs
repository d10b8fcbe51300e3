//! rekey's declarative `http` target: the API keys and passwords of any service, rotated
//! through HTTP requests described in configuration.
//!
//! Each protocol step is one request: `create` mints a key (strategy `dual`: the
//! service holds the old and the new key until `revoke` deletes the old one), `apply`
//! sets a generated password (strategy `single`), `login` proves a secret works (or is
//! dead) and `revoke` removes the old secret. `{{FIELD}}` placeholders take values from
//! the document the step works on (the new one in `create`/`apply`, the checked one in
//! `login`, the old one in `revoke`) plus `{{credential}}`.
//!
//! ```no_run
//! # async fn demo() -> rekey_api::ProviderResult<()> {
//! use rekey_http::{HttpProvider, HttpTargetConfig};
//! let config: HttpTargetConfig = serde_json::from_value(serde_json::json!({
//!     "base_url": "https://api.example.com",
//!     "headers": {"Authorization": "Bearer admin-token"},
//!     "secret_fields": ["api_key"],
//!     "create": {"method": "POST", "path": "/v1/keys", "ok": [201],
//!                "fields": {"api_key": "/data/secret", "key_id": "/data/id"}},
//!     "login": {"method": "GET", "path": "/v1/me", "headers": {"Authorization": "Bearer {{api_key}}"}},
//!     "revoke": {"method": "DELETE", "path": "/v1/keys/{{key_id}}", "ok": [204, 404]}
//! })).unwrap();
//! let target = HttpProvider::new().target(&config, "billing-api", rekey_api::Strategy::Dual)?;
//! println!("{}", target.describe());
//! # Ok(()) }
//! ```
//!
//! Errors name the step, the method, the base URL and the path *template* (never the
//! URL as sent, which may hold a secret) and carry a [`rekey_api::ErrorKind`]: a
//! `rejected` login status is `AuthRejected`; no answer, a timeout, TLS, 429 or 5xx after
//! the retries is `Unreachable`; 401/403 on a management step `PermissionDenied`; 404
//! `NotFound`; 409 `Conflict`; 400/422 and unusable configuration `InvalidInput`; a
//! redirect to another host, a missing field or a non-JSON answer `Other`.

#![warn(missing_docs)]

mod client;
mod config;
mod plan;
mod provider;
mod target;
mod template;

pub use config::{BasicConfig, HttpTargetConfig, StepConfig};
pub use provider::HttpProvider;
pub use target::HttpTarget;
