//! The `target = { type = "postgres", ... }` configuration.

use rekey_api::{ProviderError, ProviderResult, RedactedDsn};
use serde::Deserialize;
use std::fmt;
use std::path::PathBuf;
use std::time::Duration;

/// A PostgreSQL role whose password rekey rotates. The field names are part of the
/// configuration file's contract.
///
/// ```toml
/// target = { type = "postgres", host = "db.internal", port = 5432, dbname = "orders",
///            username = "orders_app", admin = "${ORDERS_ADMIN_URL}", sslmode = "verify-full" }
/// ```
#[derive(Deserialize, Clone)]
#[serde(deny_unknown_fields)]
pub struct PostgresTargetConfig {
    /// Host name or IP address rekey connects to (for logins and, unless the admin
    /// connection string names another host, for the admin connection).
    pub host: String,
    /// TCP port, default 5432.
    #[serde(default = "default_port")]
    pub port: u16,
    /// Database logins connect to, default `postgres`.
    #[serde(default = "default_dbname")]
    pub dbname: String,
    /// The role whose password is rotated.
    pub username: String,
    /// Connection string of an administrator allowed to `ALTER ROLE` the user, as a URL
    /// (`postgres://admin:pw@host:5432/postgres?sslmode=verify-full`) or key=value
    /// conninfo (`host=h user=admin password=pw`). Host, port, `sslmode` and
    /// `sslrootcert` default to this target's; the database defaults to `postgres`.
    /// Without it the role changes its own password, logged in with its current one.
    #[serde(default)]
    pub admin: Option<RedactedDsn>,
    /// TLS: `disable`, `prefer` (default), `require` or `verify-full`.
    #[serde(default)]
    pub sslmode: SslMode,
    /// PEM file of the CA certificates to trust. With `verify-full` it replaces the
    /// system and Mozilla roots; with `require` or `prefer` the server certificate must
    /// chain to it (its host name is not checked), as libpq does when a root file exists.
    #[serde(default)]
    pub sslrootcert: Option<PathBuf>,
    /// A query run by `verify` on the fresh connection after logging in, such as
    /// `SELECT 1 FROM orders LIMIT 1`; it must succeed.
    #[serde(default)]
    pub check_query: Option<String>,
    /// Seconds allowed for connecting and authenticating, default 10.
    #[serde(default = "default_connect_timeout")]
    pub connect_timeout_secs: u64,
    /// End the role's sessions at revoke even outside incident mode.
    #[serde(default)]
    pub terminate_sessions: bool,
}

fn default_port() -> u16 {
    5432
}

fn default_dbname() -> String {
    "postgres".to_owned()
}

fn default_connect_timeout() -> u64 {
    10
}

impl PostgresTargetConfig {
    /// A configuration with the defaults for everything but host and role.
    pub fn new(host: impl Into<String>, username: impl Into<String>) -> Self {
        PostgresTargetConfig {
            host: host.into(),
            port: default_port(),
            dbname: default_dbname(),
            username: username.into(),
            admin: None,
            sslmode: SslMode::default(),
            sslrootcert: None,
            check_query: None,
            connect_timeout_secs: default_connect_timeout(),
            terminate_sessions: false,
        }
    }

    /// Checks the values that deserialization cannot (empty names, zero timeout).
    pub fn validate(&self) -> ProviderResult<()> {
        if self.host.trim().is_empty() {
            return Err(ProviderError::invalid_input("postgres target: `host` is empty"));
        }
        if self.username.is_empty() {
            return Err(ProviderError::invalid_input("postgres target: `username` is empty"));
        }
        if self.username.contains('\0') || self.dbname.contains('\0') {
            return Err(ProviderError::invalid_input(
                "postgres target: names cannot contain NUL",
            ));
        }
        if self.dbname.is_empty() {
            return Err(ProviderError::invalid_input("postgres target: `dbname` is empty"));
        }
        if self.port == 0 {
            return Err(ProviderError::invalid_input("postgres target: `port` is 0"));
        }
        if self.connect_timeout_secs == 0 {
            return Err(ProviderError::invalid_input(
                "postgres target: `connect_timeout_secs` must be at least 1",
            ));
        }
        if self.check_query.as_deref().is_some_and(|q| q.trim().is_empty()) {
            return Err(ProviderError::invalid_input("postgres target: `check_query` is empty"));
        }
        Ok(())
    }

    /// The connect (and authenticate) timeout.
    pub fn connect_timeout(&self) -> Duration {
        Duration::from_secs(self.connect_timeout_secs)
    }
}

impl fmt::Debug for PostgresTargetConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PostgresTargetConfig")
            .field("host", &self.host)
            .field("port", &self.port)
            .field("dbname", &self.dbname)
            .field("username", &self.username)
            // RedactedDsn's Debug masks the password.
            .field("admin", &self.admin)
            .field("sslmode", &self.sslmode)
            .field("sslrootcert", &self.sslrootcert)
            .field("check_query", &self.check_query)
            .field("connect_timeout_secs", &self.connect_timeout_secs)
            .field("terminate_sessions", &self.terminate_sessions)
            .finish()
    }
}

/// How a connection uses TLS, with libpq's names and meanings.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum SslMode {
    /// Plain TCP.
    Disable,
    /// TLS when the server offers it, plain TCP otherwise; the certificate is not
    /// checked unless `sslrootcert` is set.
    #[default]
    Prefer,
    /// TLS or fail; the certificate is not checked unless `sslrootcert` is set (then it
    /// must chain to it).
    Require,
    /// TLS with the certificate chained to a trusted root and valid for `host`.
    VerifyFull,
}

impl SslMode {
    /// The configuration spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            SslMode::Disable => "disable",
            SslMode::Prefer => "prefer",
            SslMode::Require => "require",
            SslMode::VerifyFull => "verify-full",
        }
    }

    /// Parses the configuration spelling.
    pub fn parse(value: &str) -> Option<SslMode> {
        Some(match value {
            "disable" => SslMode::Disable,
            "prefer" => SslMode::Prefer,
            "require" => SslMode::Require,
            "verify-full" => SslMode::VerifyFull,
            _ => return None,
        })
    }
}

impl fmt::Display for SslMode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}
