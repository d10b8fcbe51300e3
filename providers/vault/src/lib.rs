//! rekey's HashiCorp Vault providers.
//!
//! - **Store `vault-kv`** ([`VaultKvStore`]): a KV mount, version 2 (default) or 1.
//!   Applications read the current secret at the key itself (`vault kv get
//!   secret/orders/db`) and only ever see the current credential: rekey keeps every
//!   version with its stage (`current`, `pending`, `previous`) in a *versions document*
//!   beside it, at `<mount>/.rekey/<key>`, where ordinary readers do not look. Staging
//!   writes only the versions document; promoting writes the versions document first and
//!   the key second, and a read that finds them disagreeing (a run stopped between the
//!   two writes) reports the new version as still pending, so the next run promotes it
//!   again and so repairs the key. On KV v2 every write is check-and-set (`options.cas`):
//!   two runners on different machines can never both stage or promote; the loser gets
//!   [`rekey_api::ErrorKind::Conflict`] and nothing is overwritten. KV v1 has no
//!   check-and-set: the store declares `compare_and_set = false` and the local lock is
//!   the only guard.
//! - **Target `vault-approle`** ([`VaultAppRoleTarget`]): rotates an AppRole role's
//!   secret-id (strategy `dual`): `prepare` creates a new secret-id, `login` proves one
//!   with a real AppRole login, `revoke` destroys the old one by its accessor.
//!
//! ```no_run
//! # async fn demo() -> rekey_api::ProviderResult<()> {
//! use rekey_vault::{VaultKvConfig, VaultProvider};
//! let mut config = VaultKvConfig::new("https://vault.internal:8200");
//! config.token = Some(rekey_vault::ConfigSecret::new("hvs.example"));
//! let provider = VaultProvider::new();
//! let store = provider.vault_kv_store(&config)?;
//! for line in store.preflight("orders/db").await? {
//!     println!("{line}");
//! }
//! # Ok(()) }
//! ```
//!
//! Errors carry a [`rekey_api::ErrorKind`]: a sealed Vault (503) or a connection that
//! fails is `Unreachable` ("Vault is sealed"); 403 is `PermissionDenied`, except for an
//! AppRole login with the credential under test, where it (and 400 "invalid secret id")
//! is `AuthRejected`; 404 is `NotFound`; a failed check-and-set is `Conflict`. Messages
//! are one line naming the address, the method and the API path, never a secret: the
//! token is sent only in a header marked sensitive, and Vault's own error text is quoted
//! with every secret of the request masked.

#![forbid(unsafe_code)]
#![warn(missing_docs)]

mod approle;
mod client;
mod config;
mod http;
mod kv;
mod model;
mod provider;

pub use approle::{
    VaultAppRoleTarget, ENGINE, MOUNT, REPLACES_METADATA, ROLE_ID, ROLE_NAME, SECRET_ID, SECRET_ID_ACCESSOR,
};
pub use config::{
    AppRoleLogin, ConfigSecret, VaultAppRoleConfig, VaultKvConfig, ENV_ADDR, ENV_CACERT, ENV_CLIENT_CERT,
    ENV_CLIENT_KEY, ENV_NAMESPACE, ENV_TOKEN,
};
pub use kv::VaultKvStore;
pub use model::HISTORY_LIMIT;
pub use provider::VaultProvider;
