//! The `target = { type = "postgres", ... }` configuration.

use rekey_api::{ProviderError, ProviderResult, RedactedDsn};
use serde::Deserialize;
use std::fmt;
use std::path::PathBuf;
use std::time::Duration;

/// A PostgreSQL role (or, with strategy `alternating`, a pair of roles) whose password
/// rekey rotates. The field names are part of the configuration file's contract.
///
/// ```toml
/// # strategy = "single": one role, its password replaced at apply
/// target = { type = "postgres", host = "db.internal", port = 5432, dbname = "orders",
///            username = "orders_app", admin = "${ORDERS_ADMIN_URL}", sslmode = "verify-full" }
/// # strategy = "alternating": two roles taking turns, the idle one gets the new password
/// target = { type = "postgres", host = "db.internal", dbname = "orders",
///            usernames = ["orders_app_a", "orders_app_b"], admin = "${ORDERS_ADMIN_URL}" }
/// ```
///
/// Exactly one of `username` and `usernames` is set: `username` with strategy `single`,
/// `usernames` with strategy `alternating` ([`PostgresTargetConfig::validate`] checks the
/// first rule, [`crate::PostgresProvider::target`] the second).
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
    /// The role whose password is rotated (strategy `single`).
    #[serde(default)]
    pub username: Option<String>,
    /// The two roles that take turns (strategy `alternating`), such as
    /// `["orders_app_a", "orders_app_b"]`: each rotation sets the password of the one
    /// that is not live, and revoke invalidates the previous one's. Both should have
    /// identical privileges, typically as members of one group role; `preflight`
    /// checks that they do.
    #[serde(default)]
    pub usernames: Option<Vec<String>>,
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
    /// A configuration with the defaults for everything but host and role (strategy
    /// `single`).
    pub fn new(host: impl Into<String>, username: impl Into<String>) -> Self {
        PostgresTargetConfig {
            host: host.into(),
            port: default_port(),
            dbname: default_dbname(),
            username: Some(username.into()),
            usernames: None,
            admin: None,
            sslmode: SslMode::default(),
            sslrootcert: None,
            check_query: None,
            connect_timeout_secs: default_connect_timeout(),
            terminate_sessions: false,
        }
    }

    /// A configuration with the defaults for everything but host and the two roles that
    /// take turns (strategy `alternating`; it also needs [`PostgresTargetConfig::admin`]).
    pub fn new_alternating(host: impl Into<String>, first: impl Into<String>, second: impl Into<String>) -> Self {
        let mut config = PostgresTargetConfig::new(host, "");
        config.username = None;
        config.usernames = Some(vec![first.into(), second.into()]);
        config
    }

    /// The configured roles in order: the one `username`, or the two `usernames`
    /// (empty when neither is set, which [`PostgresTargetConfig::validate`] refuses).
    pub fn roles(&self) -> Vec<&str> {
        match (&self.username, &self.usernames) {
            (Some(one), None) => vec![one.as_str()],
            (None, Some(two)) => two.iter().map(String::as_str).collect(),
            (Some(one), Some(two)) => std::iter::once(one.as_str())
                .chain(two.iter().map(String::as_str))
                .collect(),
            (None, None) => Vec::new(),
        }
    }

    /// Checks the values that deserialization cannot: exactly one of `username` and
    /// `usernames`, two distinct non-empty names in `usernames`, no empty host or
    /// database, no zero port or timeout.
    pub fn validate(&self) -> ProviderResult<()> {
        if self.host.trim().is_empty() {
            return Err(ProviderError::invalid_input("postgres target: `host` is empty"));
        }
        match (&self.username, &self.usernames) {
            (Some(_), Some(_)) => {
                return Err(ProviderError::invalid_input(
                    "postgres target: set either `username` (strategy \"single\") or `usernames` \
                     (strategy \"alternating\"), not both",
                ))
            }
            (None, None) => {
                return Err(ProviderError::invalid_input(
                    "postgres target: missing `username` (strategy \"single\") or `usernames = [\"a\", \"b\"]` \
                     (strategy \"alternating\")",
                ))
            }
            (Some(one), None) if one.is_empty() => {
                return Err(ProviderError::invalid_input("postgres target: `username` is empty"));
            }
            (None, Some(two)) => {
                if two.len() != 2 {
                    return Err(ProviderError::invalid_input(format!(
                        "postgres target: `usernames` must name exactly two roles, it names {}",
                        two.len()
                    )));
                }
                if two.iter().any(String::is_empty) {
                    return Err(ProviderError::invalid_input(
                        "postgres target: `usernames` holds an empty name",
                    ));
                }
                if two[0] == two[1] {
                    return Err(ProviderError::invalid_input(format!(
                        "postgres target: `usernames` names role {} twice; alternating needs two distinct roles",
                        crate::sql::quote_ident(&two[0])
                    )));
                }
            }
            _ => {}
        }
        if self.roles().iter().any(|r| r.contains('\0')) || self.dbname.contains('\0') {
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
            .field("usernames", &self.usernames)
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
