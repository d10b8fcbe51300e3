//! rekey's Redis target: rotates the password of a Redis ACL user (Redis 6 or later).
//!
//! New passwords reach the server only as SHA-256 hashes (`ACL SETUSER user #<hash>`),
//! never as `>plaintext`, so the plaintext stays out of SLOWLOG, MONITOR, ACL LOG, the
//! ACL file and replication. A Redis user may hold several passwords, so the `dual`
//! strategy adds the new one at `apply` and removes the old one at `revoke`, and both
//! work in between; `single` replaces them all at `apply` (`resetpass #<hash>`).
//! Logins that prove a secret works (or is dead) are fresh connections that send
//! `AUTH user password`, check its reply and ask `ACL WHOAMI`.
//!
//! ```no_run
//! # async fn demo() -> rekey_api::ProviderResult<()> {
//! use rekey_redis::{RedisProvider, RedisTargetConfig};
//! let mut config = RedisTargetConfig::new("127.0.0.1", "orders_app");
//! config.admin = Some(rekey_api::RedactedDsn::new("redis://ops:pw@127.0.0.1:6379".into()));
//! let provider = RedisProvider::new();
//! let target = provider.target(&config, rekey_api::Strategy::Dual)?;
//! for line in target.preflight(None).await? {
//!     println!("{line}");
//! }
//! # Ok(()) }
//! ```
//!
//! Errors carry a [`rekey_api::ErrorKind`]: a refused login (`WRONGPASS`) is
//! `AuthRejected`; a refused connection, timeout or TLS failure is `Unreachable`; a
//! missing permission (`NOPERM`, or `ACL DRYRUN` saying no) is `PermissionDenied`; a
//! missing user is `NotFound`; a server without ACLs is `Unsupported`. Messages name the
//! user, host and port and the server's error code, never a password (nor its hash).

#![warn(missing_docs)]

mod acl;
mod admin;
mod config;
mod conn;
mod dsn;
mod error;
use rekey_api::session_notes as notes;
mod provider;
mod target;
mod tls;

pub use acl::{acl_password_hash, validate_username};
pub use config::RedisTargetConfig;
pub use provider::RedisProvider;
pub use target::RedisTarget;
