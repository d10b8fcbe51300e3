//! rekey's PostgreSQL target: rotates a role's password (strategy `single`), or the
//! passwords of two roles that take turns (strategy `alternating`, zero downtime: the
//! live role is never touched while the idle one gets the new password).
//!
//! The new password reaches the server only as a SCRAM-SHA-256 verifier computed here
//! (`ALTER ROLE "role" PASSWORD 'SCRAM-SHA-256$4096:…'`), so the plaintext never lands
//! in the server's statement log, `pg_stat_activity` or `pg_stat_statements`. Logins
//! that prove a secret works (or is dead) are fresh TCP connections with real SCRAM
//! authentication, honouring `sslmode`.
//!
//! ```no_run
//! # async fn demo() -> rekey_api::ProviderResult<()> {
//! use rekey_postgres::{PostgresProvider, PostgresTargetConfig};
//! let mut config = PostgresTargetConfig::new("127.0.0.1", "orders_app");
//! config.admin = Some(rekey_api::RedactedDsn::new("postgres://postgres:pw@127.0.0.1/postgres".into()));
//! let provider = PostgresProvider::new();
//! let target = provider.target(&config, rekey_api::Strategy::Single)?;
//! for line in target.preflight(None).await? {
//!     println!("{line}");
//! }
//! # Ok(()) }
//! ```
//!
//! Alternating roles (`usernames` instead of `username`; needs `admin`):
//!
//! ```no_run
//! # async fn demo() -> rekey_api::ProviderResult<()> {
//! use rekey_postgres::{PostgresProvider, PostgresTargetConfig};
//! let mut config = PostgresTargetConfig::new_alternating("127.0.0.1", "orders_app_a", "orders_app_b");
//! config.admin = Some(rekey_api::RedactedDsn::new("postgres://postgres:pw@127.0.0.1/postgres".into()));
//! let target = PostgresProvider::new().target(&config, rekey_api::Strategy::Alternating)?;
//! // Fails with `invalid_input` naming every difference if the two roles' privileges drifted.
//! target.preflight(None).await?;
//! # Ok(()) }
//! ```
//!
//! Errors carry a [`rekey_api::ErrorKind`]: a refused password (SQLSTATE 28P01 or
//! 28000) is `AuthRejected`; a refused connection, timeout, DNS or TLS failure is
//! `Unreachable`; a missing role (42704) or database (3D000) is `NotFound`; a missing
//! privilege (42501) is `PermissionDenied`. Messages name the role, host, port and
//! SQLSTATE, never a password.

#![warn(missing_docs)]

mod admin;
mod alternating;
mod config;
mod conn;
mod dsn;
mod error;
mod hba;
mod preflight_batch;
use rekey_api::session_notes as notes;
mod provider;
mod sql;
mod stored_verifier;
mod target;
mod tls;

pub use config::{
    format_duration, parse_duration, PostgresTargetConfig, SslMode, ValidUntil, VerifierPolicy, MIN_VALIDITY,
};
pub use provider::PostgresProvider;
pub use sql::{md5_verifier, quote_ident, quote_literal, scram_verifier};
pub use target::PostgresTarget;
