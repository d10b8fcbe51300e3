//! rekey's MySQL/MariaDB target: rotates a user's password, or alternates two users.
//!
//! The new password reaches the server only as its mysql_native_password hash, computed
//! here (`*` + uppercase hex of SHA1(SHA1(password))): MariaDB gets
//! `ALTER USER 'u'@'%' IDENTIFIED BY PASSWORD '*…'`, MySQL
//! `ALTER USER 'u'@'%' IDENTIFIED WITH mysql_native_password AS '*…'`. So the plaintext
//! never lands in the general log, the slow log, the binary log or the process list.
//! MariaDB `ed25519` accounts get the Ed25519 public key of the password, computed here
//! too. Only the password changes: the account's other authentication methods
//! (`IDENTIFIED VIA unix_socket OR …`), its TLS requirement and its password lifetime
//! (unless [`MysqlTargetConfig::password_lifetime`] says otherwise) are kept, the
//! other host entries of the user that store the same password change with it, and
//! accounts that cannot be rotated that way are refused before anything changes (see
//! the crate README).
//! Logins that prove a secret works (or is dead) are fresh TCP connections that really
//! authenticate, honouring `tls`.
//!
//! Strategies: `single` (the user's password is replaced), `alternating` (two users
//! with identical privileges take turns; the retired one gets an unknown password) and
//! `dual` (MySQL 8.0.14+: `RETAIN CURRENT PASSWORD`, then `DISCARD OLD PASSWORD` at
//! revoke; refused on MariaDB, which has no dual passwords).
//!
//! ```no_run
//! # async fn demo() -> rekey_api::ProviderResult<()> {
//! use rekey_mysql::{MysqlProvider, MysqlTargetConfig};
//! let mut config = MysqlTargetConfig::new("127.0.0.1", "orders_app");
//! config.admin = Some(rekey_api::RedactedDsn::new("mysql://rekey:pw@127.0.0.1:3306/".into()));
//! let provider = MysqlProvider::new();
//! let target = provider.target(&config, rekey_api::Strategy::Single)?;
//! for line in target.preflight(None).await? {
//!     println!("{line}");
//! }
//! # Ok(()) }
//! ```
//!
//! Errors carry a [`rekey_api::ErrorKind`]: a refused password (error 1045) is
//! `AuthRejected`; a refused connection, timeout or TLS failure is `Unreachable`; a
//! missing privilege (1044, 1142, 1227) is `PermissionDenied`; a missing user (1396,
//! 1141) is `NotFound`; `dual` on MariaDB is `Unsupported`. Messages name the user,
//! host, port and error code, never a password or a password hash.

#![warn(missing_docs)]

mod account;
mod admin;
mod config;
mod conn;
mod dsn;
mod error;
use rekey_api::session_notes as notes;
mod provider;
mod sql;
mod target;

pub use config::{MysqlTargetConfig, PasswordLifetime, TlsMode, MAX_LIFETIME_DAYS};
pub use provider::MysqlProvider;
pub use sql::{
    alter_user_hash, discard_old_password, ed25519_password_hash, native_password_hash, normalize_grants,
    quote_account, quote_literal, set_own_password_hash, AdminGrants, Flavor, ServerInfo,
};
pub use target::MysqlTarget;
