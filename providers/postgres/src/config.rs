//! The `target = { type = "postgres", ... }` configuration.

use rekey_api::{ProviderError, ProviderResult, RedactedDsn};
use serde::de::{self, Deserializer, Visitor};
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
    /// What a rotation does to the role's `VALID UNTIL`: `"keep"` (default: the new
    /// password expires when the old one would have; a rotation is refused when that
    /// is past or less than an hour away), `"clear"` (`VALID UNTIL 'infinity'`) or a
    /// duration such as `"90d"` (valid for that long from the rotation, by the
    /// server's clock). `"clear"` and a duration need an admin.
    #[serde(default)]
    pub valid_until: ValidUntil,
    /// The verifier the new password is stored as: `"scram-sha-256"` (default: a role
    /// whose password was stored as md5 moves to SCRAM, which `plan` shows) or
    /// `"keep"` (an md5 role gets an md5 verifier computed by rekey, a SCRAM role a
    /// SCRAM one; reading the role's verifier type in `pg_authid` needs a superuser
    /// admin, so `"keep"` is refused otherwise).
    #[serde(default)]
    pub verifier: VerifierPolicy,
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
            valid_until: ValidUntil::default(),
            verifier: VerifierPolicy::default(),
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
        if let ValidUntil::For(d) = self.valid_until {
            if d < MIN_VALIDITY {
                return Err(ProviderError::invalid_input(
                    "postgres target: `valid_until` must be at least 1h (or \"keep\" or \"clear\")",
                ));
            }
        }
        if self.verifier == VerifierPolicy::Keep && self.admin.is_none() {
            return Err(ProviderError::invalid_input(
                "postgres target: `verifier = \"keep\"` needs `admin` (a superuser, to read the role's verifier type)",
            ));
        }
        if self.valid_until != ValidUntil::Keep && self.admin.is_none() {
            return Err(ProviderError::invalid_input(format!(
                "postgres target: `valid_until = \"{}\"` needs `admin`: a role cannot change its own VALID UNTIL",
                self.valid_until
            )));
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
            .field("valid_until", &self.valid_until)
            .field("verifier", &self.verifier)
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

/// The shortest `valid_until` duration: anything shorter would be refused by the next
/// rotation's precheck as about to expire.
pub const MIN_VALIDITY: Duration = Duration::from_secs(3600);

/// What a rotation does to a role's `VALID UNTIL` (`valid_until = ...`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ValidUntil {
    /// Leave it as it is (the default). A rotation is refused when it is past or less
    /// than an hour away: the new password would die with it.
    #[default]
    Keep,
    /// Remove it (`VALID UNTIL 'infinity'`).
    Clear,
    /// Set it to this long after the rotation, by the server's clock.
    For(Duration),
}

impl fmt::Display for ValidUntil {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ValidUntil::Keep => f.write_str("keep"),
            ValidUntil::Clear => f.write_str("clear"),
            ValidUntil::For(d) => f.write_str(&format_duration(*d)),
        }
    }
}

/// `90d`, `12h`, `30m`, `45s` (the largest unit that divides it), as `valid_until` is
/// written.
pub fn format_duration(d: Duration) -> String {
    let secs = d.as_secs();
    for (unit, size) in [("w", 604_800), ("d", 86_400), ("h", 3_600), ("m", 60)] {
        if secs >= size && secs.is_multiple_of(size) {
            return format!("{}{unit}", secs / size);
        }
    }
    format!("{secs}s")
}

/// Parses `90d`, `12h`, `30m`, `45s`, `2w` (one number and one unit).
pub fn parse_duration(text: &str) -> Option<Duration> {
    let text = text.trim();
    let digits = text.find(|c: char| !c.is_ascii_digit())?;
    let (number, unit) = text.split_at(digits);
    let number: u64 = number.parse().ok()?;
    let size = match unit.trim() {
        "s" => 1,
        "m" => 60,
        "h" => 3_600,
        "d" => 86_400,
        "w" => 604_800,
        _ => return None,
    };
    number.checked_mul(size).map(Duration::from_secs)
}

impl<'de> Deserialize<'de> for ValidUntil {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct ValidUntilVisitor;
        impl Visitor<'_> for ValidUntilVisitor {
            type Value = ValidUntil;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("\"keep\", \"clear\" or a duration such as \"90d\"")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<ValidUntil, E> {
                match v {
                    "keep" => Ok(ValidUntil::Keep),
                    "clear" => Ok(ValidUntil::Clear),
                    other => parse_duration(other).map(ValidUntil::For).ok_or_else(|| {
                        E::invalid_value(
                            de::Unexpected::Str(other),
                            &"\"keep\", \"clear\" or a duration such as \"90d\", \"12h\", \"2w\"",
                        )
                    }),
                }
            }
        }
        deserializer.deserialize_str(ValidUntilVisitor)
    }
}

/// Which verifier a rotation stores (`verifier = ...`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum VerifierPolicy {
    /// Always a SCRAM-SHA-256 verifier computed by rekey (the default).
    #[default]
    ScramSha256,
    /// The role's current type: md5 stays md5 (a verifier computed by rekey), SCRAM
    /// stays SCRAM.
    Keep,
}

impl VerifierPolicy {
    /// The configuration spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            VerifierPolicy::ScramSha256 => "scram-sha-256",
            VerifierPolicy::Keep => "keep",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn valid_until_spellings() {
        #[derive(Deserialize)]
        struct T {
            valid_until: ValidUntil,
            #[serde(default)]
            verifier: VerifierPolicy,
        }
        let parse =
            |v: &str| serde_json::from_str::<T>(&format!("{{\"valid_until\": \"{v}\"}}")).map(|t| t.valid_until);
        assert_eq!(parse("keep").unwrap(), ValidUntil::Keep);
        assert_eq!(parse("clear").unwrap(), ValidUntil::Clear);
        assert_eq!(parse("90d").unwrap(), ValidUntil::For(Duration::from_secs(90 * 86_400)));
        assert!(parse("soon").is_err());
        assert!(parse("90x").is_err());
        assert_eq!(ValidUntil::For(Duration::from_secs(90 * 86_400)).to_string(), "90d");
        assert_eq!(format_duration(Duration::from_secs(5400)), "90m");
        let t: T = serde_json::from_str(r#"{"valid_until": "keep", "verifier": "keep"}"#).unwrap();
        assert_eq!(t.verifier, VerifierPolicy::Keep);
        assert!(serde_json::from_str::<T>(r#"{"valid_until": "keep", "verifier": "md5"}"#).is_err());
    }

    #[test]
    fn config_rules() {
        let mut c: PostgresTargetConfig =
            serde_json::from_str(r#"{"host": "db", "username": "app", "valid_until": "clear"}"#).unwrap();
        assert!(c.validate().unwrap_err().to_string().contains("needs `admin`"));
        c.admin = Some(RedactedDsn::new("postgres://a:b@db/postgres".into()));
        c.validate().unwrap();
        c.valid_until = ValidUntil::For(Duration::from_secs(60));
        assert!(c.validate().unwrap_err().to_string().contains("at least 1h"));
        let err =
            serde_json::from_str::<PostgresTargetConfig>(r#"{"host": "db", "username": "app", "valid_for": "1d"}"#)
                .err()
                .unwrap();
        assert!(err.to_string().contains("unknown field `valid_for`"), "{err}");
        let d: PostgresTargetConfig = serde_json::from_str(r#"{"host": "db", "username": "app"}"#).unwrap();
        assert_eq!(
            (d.valid_until, d.verifier),
            (ValidUntil::Keep, VerifierPolicy::ScramSha256)
        );
    }
}
