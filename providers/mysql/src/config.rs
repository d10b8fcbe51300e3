//! The `target = { type = "mysql", ... }` configuration.

use crate::sql::quote_account;
use rekey_api::{ProviderError, ProviderResult, RedactedDsn, Strategy};
use serde::de::{self, Deserializer, Visitor};
use serde::Deserialize;
use std::fmt;
use std::path::PathBuf;
use std::time::Duration;

/// A MySQL or MariaDB account whose password rekey rotates (or, for
/// `strategy = "alternating"`, a pair of accounts that take turns). The field names are
/// part of the configuration file's contract.
///
/// ```toml
/// target = { type = "mysql", host = "db.internal", port = 3306, username = "orders_app",
///            admin = "${ORDERS_MYSQL_ADMIN_URL}", tls = "verify-full" }
/// # alternating users:
/// target = { type = "mysql", host = "db.internal", usernames = ["orders_a", "orders_b"],
///            admin = "${ORDERS_MYSQL_ADMIN_URL}" }
/// ```
#[derive(Deserialize, Clone)]
#[serde(deny_unknown_fields)]
pub struct MysqlTargetConfig {
    /// Host name or IP address rekey connects to (for logins and, unless the admin URL
    /// names another host, for the admin connection).
    pub host: String,
    /// TCP port, default 3306.
    #[serde(default = "default_port")]
    pub port: u16,
    /// The user whose password is rotated (strategies `single` and `dual`). Exactly one
    /// of `username` and `usernames` must be set.
    #[serde(default)]
    pub username: Option<String>,
    /// The two users that take turns (strategy `alternating`): each rotation gives the
    /// new password to the one not in use and retires the other. Both must exist with
    /// identical privileges.
    #[serde(default, deserialize_with = "two_users")]
    pub usernames: Option<[String; 2]>,
    /// The host part of the account (`'user'@'user_host'`), default `%`.
    #[serde(default = "default_user_host")]
    pub user_host: String,
    /// URL of an administrator allowed to `ALTER USER` the user(s):
    /// `mysql://admin:pw@host:3306/` (user and password percent-encoded). Optional query
    /// parameters: `tls` and `tls_ca` (default: this target's), `socket` (a Unix socket
    /// path, instead of TCP). Host and port default to this target's. Without it the
    /// user changes its own password, logged in with its current one (`single` only).
    #[serde(default)]
    pub admin: Option<RedactedDsn>,
    /// TLS: `disable`, `prefer` (default), `require` or `verify-full`; `true` means
    /// `require` and `false` means `disable`.
    #[serde(default)]
    pub tls: TlsMode,
    /// PEM file of the CA certificates to trust. With `verify-full` it replaces the
    /// system and Mozilla roots; with `require` or `prefer` the server certificate must
    /// chain to it (its host name is not checked).
    #[serde(default)]
    pub tls_ca: Option<PathBuf>,
    /// A query `verify` runs on the fresh connection after logging in, such as
    /// `SELECT 1 FROM orders.items LIMIT 1`; it must succeed.
    #[serde(default)]
    pub check_query: Option<String>,
    /// Seconds allowed for connecting and authenticating, default 10.
    #[serde(default = "default_connect_timeout")]
    pub connect_timeout_secs: u64,
    /// End the retired user's sessions at revoke even outside incident mode.
    #[serde(default)]
    pub terminate_sessions: bool,
    /// Allow a rotation to move an authentication method whose hash rekey cannot compute
    /// on its side (MySQL's `caching_sha2_password` and `sha256_password`, MariaDB's
    /// `parsec`) to `mysql_native_password`. Default `false`: such accounts are refused
    /// before anything changes, since the switch changes more than the password.
    #[serde(default)]
    pub switch_plugin: bool,
    /// What a rotation does to the lifetime of the password it installs (the account's
    /// `PASSWORD EXPIRE INTERVAL`): `"keep"` (default: the account's own policy stays, as
    /// `ALTER USER … IDENTIFIED` leaves it), `"clear"` (or `"never"`: `PASSWORD EXPIRE
    /// NEVER`) or a whole number of days such as `"90d"` (`PASSWORD EXPIRE INTERVAL 90
    /// DAY`, counted from the rotation). Anything but `"keep"` needs `admin`.
    #[serde(default)]
    pub password_lifetime: PasswordLifetime,
}

/// `usernames`: a list of exactly two names (serde's arrays would drop extra ones).
fn two_users<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Option<[String; 2]>, D::Error> {
    let names = Vec::<String>::deserialize(deserializer)?;
    match <[String; 2]>::try_from(names) {
        Ok(pair) => Ok(Some(pair)),
        Err(names) => Err(de::Error::invalid_length(names.len(), &"exactly two user names")),
    }
}

fn default_port() -> u16 {
    3306
}

fn default_user_host() -> String {
    "%".to_owned()
}

fn default_connect_timeout() -> u64 {
    10
}

impl MysqlTargetConfig {
    /// A single-user configuration with the defaults for everything but host and user.
    pub fn new(host: impl Into<String>, username: impl Into<String>) -> Self {
        MysqlTargetConfig {
            host: host.into(),
            port: default_port(),
            username: Some(username.into()),
            usernames: None,
            user_host: default_user_host(),
            admin: None,
            tls: TlsMode::default(),
            tls_ca: None,
            check_query: None,
            connect_timeout_secs: default_connect_timeout(),
            terminate_sessions: false,
            switch_plugin: false,
            password_lifetime: PasswordLifetime::Keep,
        }
    }

    /// An alternating-users configuration (`usernames = [a, b]`) with the defaults for
    /// everything else. An alternating target also needs [`MysqlTargetConfig::admin`].
    pub fn new_alternating(host: impl Into<String>, first: impl Into<String>, second: impl Into<String>) -> Self {
        let mut config = Self::new(host, "");
        config.username = None;
        config.usernames = Some([first.into(), second.into()]);
        config
    }

    /// Checks what deserialization cannot: exactly one of `username` and `usernames`,
    /// non-empty and distinct names, a usable port and timeout.
    pub fn validate(&self) -> ProviderResult<()> {
        let bad = |msg: &str| Err(ProviderError::invalid_input(format!("mysql target: {msg}")));
        if self.host.trim().is_empty() {
            return bad("`host` is empty");
        }
        if self.port == 0 {
            return bad("`port` is 0");
        }
        match (&self.username, &self.usernames) {
            (Some(_), Some(_)) => {
                return bad(
                    "set either `username` (strategies single and dual) or `usernames = [\"a\", \"b\"]` \
                     (strategy alternating), not both",
                )
            }
            (None, None) => {
                return bad(
                    "no user: set `username` (strategies single and dual) or `usernames = [\"a\", \"b\"]` \
                     (strategy alternating)",
                )
            }
            (Some(user), None) => {
                if user.is_empty() {
                    return bad("`username` is empty");
                }
            }
            (None, Some([a, b])) => {
                if a.is_empty() || b.is_empty() {
                    return bad("`usernames` holds an empty name");
                }
                if a == b {
                    return bad("the two `usernames` must differ");
                }
            }
        }
        let names = self.username.iter().chain(self.usernames.iter().flatten());
        for name in names.chain(std::iter::once(&self.user_host)) {
            if name.contains('\0') {
                return bad("user and host names cannot contain NUL");
            }
        }
        if self.connect_timeout_secs == 0 {
            return bad("`connect_timeout_secs` must be at least 1");
        }
        if self.check_query.as_deref().is_some_and(|q| q.trim().is_empty()) {
            return bad("`check_query` is empty");
        }
        if self.password_lifetime != PasswordLifetime::Keep && self.admin.is_none() {
            return Err(ProviderError::invalid_input(format!(
                "mysql target: `password_lifetime = \"{}\"` needs `admin`: a user cannot change its own \
                 PASSWORD EXPIRE policy (SET PASSWORD keeps it)",
                self.password_lifetime
            )));
        }
        Ok(())
    }

    /// [`MysqlTargetConfig::validate`] plus the rules that depend on the strategy:
    /// `alternating` needs `usernames` and an admin, `single` and `dual` need `username`,
    /// `dual` needs an admin.
    pub fn validate_for(&self, strategy: Strategy) -> ProviderResult<()> {
        self.validate()?;
        let bad = |msg: String| Err(ProviderError::invalid_input(format!("mysql target: {msg}")));
        match strategy {
            Strategy::Alternating => {
                if self.usernames.is_none() {
                    return bad(
                        "strategy \"alternating\" needs `usernames = [\"a\", \"b\"]` instead of `username`".into(),
                    );
                }
                if self.admin.is_none() {
                    return bad(
                        "strategy \"alternating\" needs `admin`: one user cannot change the other's password".into(),
                    );
                }
            }
            Strategy::Single | Strategy::Dual => {
                if self.username.is_none() {
                    return bad(format!(
                        "strategy \"{strategy}\" needs `username`; `usernames` is for strategy \"alternating\""
                    ));
                }
                if strategy == Strategy::Dual && self.admin.is_none() {
                    return bad("strategy \"dual\" needs `admin` (ALTER USER ... RETAIN CURRENT PASSWORD)".into());
                }
            }
        }
        Ok(())
    }

    /// The users this target rotates: one, or the alternating pair.
    pub fn users(&self) -> Vec<&str> {
        match (&self.username, &self.usernames) {
            (Some(user), _) => vec![user.as_str()],
            (None, Some([a, b])) => vec![a.as_str(), b.as_str()],
            (None, None) => vec![],
        }
    }

    /// The user a document without a `username` belongs to: `username`, or the first of
    /// `usernames`.
    pub fn default_user(&self) -> &str {
        self.users().first().copied().unwrap_or("")
    }

    /// `'user'@'user_host'` for `user`.
    pub fn account(&self, user: &str) -> String {
        quote_account(user, &self.user_host)
    }

    /// The connect (and authenticate) timeout.
    pub fn connect_timeout(&self) -> Duration {
        Duration::from_secs(self.connect_timeout_secs)
    }
}

impl fmt::Debug for MysqlTargetConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MysqlTargetConfig")
            .field("host", &self.host)
            .field("port", &self.port)
            .field("username", &self.username)
            .field("usernames", &self.usernames)
            .field("user_host", &self.user_host)
            // RedactedDsn's Debug masks the password.
            .field("admin", &self.admin)
            .field("tls", &self.tls)
            .field("tls_ca", &self.tls_ca)
            .field("check_query", &self.check_query)
            .field("connect_timeout_secs", &self.connect_timeout_secs)
            .field("terminate_sessions", &self.terminate_sessions)
            .field("switch_plugin", &self.switch_plugin)
            .field("password_lifetime", &self.password_lifetime)
            .finish()
    }
}

/// The longest `PASSWORD EXPIRE INTERVAL` MySQL and MariaDB accept, in days.
pub const MAX_LIFETIME_DAYS: u32 = 65_535;

/// What a rotation does to the lifetime of the password it installs
/// (`password_lifetime = ...`), as the PostgreSQL target's `valid_until` does for
/// `VALID UNTIL`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum PasswordLifetime {
    /// Leave the account's policy as it is (the default): `PASSWORD EXPIRE DEFAULT`,
    /// `NEVER` or `INTERVAL n DAY` all survive the rotation's `ALTER USER … IDENTIFIED`.
    #[default]
    Keep,
    /// `PASSWORD EXPIRE NEVER` (spelled `"clear"` or `"never"`).
    Clear,
    /// `PASSWORD EXPIRE INTERVAL n DAY`: the new password expires n days after the
    /// rotation (1 to [`MAX_LIFETIME_DAYS`]).
    Days(u32),
}

impl PasswordLifetime {
    /// The `PASSWORD EXPIRE …` option a rotation adds to its `ALTER USER`, or `None` for
    /// [`PasswordLifetime::Keep`].
    pub fn clause(self) -> Option<String> {
        match self {
            PasswordLifetime::Keep => None,
            PasswordLifetime::Clear => Some("PASSWORD EXPIRE NEVER".to_owned()),
            PasswordLifetime::Days(days) => Some(format!("PASSWORD EXPIRE INTERVAL {days} DAY")),
        }
    }

    /// Parses the configuration spelling: `keep`, `clear`, `never`, or a whole number of
    /// days as `90d`, `12w` or `2160h`.
    pub fn parse(text: &str) -> Option<PasswordLifetime> {
        let text = text.trim();
        match text {
            "keep" => return Some(PasswordLifetime::Keep),
            "clear" | "never" => return Some(PasswordLifetime::Clear),
            _ => {}
        }
        let digits = text.find(|c: char| !c.is_ascii_digit())?;
        let (number, unit) = text.split_at(digits);
        let number: u64 = number.parse().ok()?;
        let hours = match unit.trim() {
            "h" => number,
            "d" => number.checked_mul(24)?,
            "w" => number.checked_mul(24 * 7)?,
            _ => return None,
        };
        if hours == 0 || hours % 24 != 0 {
            return None;
        }
        let days = u32::try_from(hours / 24).ok()?;
        (days <= MAX_LIFETIME_DAYS).then_some(PasswordLifetime::Days(days))
    }
}

impl fmt::Display for PasswordLifetime {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PasswordLifetime::Keep => f.write_str("keep"),
            PasswordLifetime::Clear => f.write_str("clear"),
            PasswordLifetime::Days(days) => write!(f, "{days}d"),
        }
    }
}

impl<'de> Deserialize<'de> for PasswordLifetime {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct LifetimeVisitor;
        impl Visitor<'_> for LifetimeVisitor {
            type Value = PasswordLifetime;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("\"keep\", \"clear\" (or \"never\") or a whole number of days such as \"90d\"")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<PasswordLifetime, E> {
                PasswordLifetime::parse(v).ok_or_else(|| {
                    E::invalid_value(
                        de::Unexpected::Str(v),
                        &"\"keep\", \"clear\" (or \"never\") or a whole number of days from 1d to 65535d, such \
                          as \"90d\" or \"12w\"",
                    )
                })
            }
        }
        deserializer.deserialize_str(LifetimeVisitor)
    }
}

/// How a connection uses TLS, with the names of the PostgreSQL target's `sslmode`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum TlsMode {
    /// Plain TCP.
    Disable,
    /// TLS when the server offers it, plain TCP otherwise; the certificate is not
    /// checked unless `tls_ca` is set.
    #[default]
    Prefer,
    /// TLS or fail; the certificate is not checked unless `tls_ca` is set (then it must
    /// chain to it).
    Require,
    /// TLS with the certificate chained to a trusted root and valid for `host`.
    VerifyFull,
}

impl TlsMode {
    /// The configuration spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            TlsMode::Disable => "disable",
            TlsMode::Prefer => "prefer",
            TlsMode::Require => "require",
            TlsMode::VerifyFull => "verify-full",
        }
    }

    /// Parses the configuration spelling (also `true`/`false`).
    pub fn parse(value: &str) -> Option<TlsMode> {
        Some(match value {
            "disable" | "false" => TlsMode::Disable,
            "prefer" => TlsMode::Prefer,
            "require" | "true" => TlsMode::Require,
            "verify-full" => TlsMode::VerifyFull,
            _ => return None,
        })
    }
}

impl fmt::Display for TlsMode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl<'de> Deserialize<'de> for TlsMode {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct ModeVisitor;
        impl Visitor<'_> for ModeVisitor {
            type Value = TlsMode;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("\"disable\", \"prefer\", \"require\", \"verify-full\", true or false")
            }
            fn visit_bool<E: de::Error>(self, v: bool) -> Result<TlsMode, E> {
                Ok(if v { TlsMode::Require } else { TlsMode::Disable })
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<TlsMode, E> {
                TlsMode::parse(v).ok_or_else(|| {
                    E::unknown_variant(v, &["disable", "prefer", "require", "verify-full", "true", "false"])
                })
            }
        }
        deserializer.deserialize_any(ModeVisitor)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_of_username_or_usernames() {
        let mut c = MysqlTargetConfig::new("h", "app");
        c.validate().unwrap();
        c.usernames = Some(["a".into(), "b".into()]);
        assert!(c.validate().unwrap_err().to_string().contains("not both"));
        c.username = None;
        c.validate().unwrap();
        c.usernames = None;
        assert!(c.validate().unwrap_err().to_string().contains("no user"));
        c.usernames = Some(["a".into(), "a".into()]);
        assert!(c.validate().unwrap_err().to_string().contains("must differ"));
    }

    #[test]
    fn strategy_rules() {
        let c = MysqlTargetConfig::new("h", "app");
        c.validate_for(Strategy::Single).unwrap();
        assert!(c.validate_for(Strategy::Alternating).is_err());
        let err = c.validate_for(Strategy::Dual).unwrap_err();
        assert!(err.to_string().contains("needs `admin`"), "{err}");
        let mut alt = MysqlTargetConfig::new_alternating("h", "a", "b");
        assert!(alt.validate_for(Strategy::Alternating).is_err(), "no admin");
        alt.admin = Some(RedactedDsn::new("mysql://root:pw@h/".into()));
        alt.validate_for(Strategy::Alternating).unwrap();
        assert!(alt.validate_for(Strategy::Single).is_err());
        assert_eq!(alt.default_user(), "a");
        assert_eq!(alt.account("a"), "'a'@'%'");
    }

    #[test]
    fn parses_with_defaults_and_rejects_unknown_keys() {
        let c: MysqlTargetConfig = toml::from_str(
            r#"
            host = "db"
            username = "app"
            admin = "mysql://rekey:s3cr3t-admin@db:3306/"
            "#,
        )
        .unwrap();
        assert_eq!((c.port, c.user_host.as_str(), c.tls), (3306, "%", TlsMode::Prefer));
        assert_eq!(
            (c.connect_timeout_secs, c.terminate_sessions, c.switch_plugin),
            (10, false, false)
        );
        c.validate_for(Strategy::Single).unwrap();
        let shown = format!("{c:?}");
        assert!(!shown.contains("s3cr3t-admin"), "{shown}");
        assert!(shown.contains("rekey:****@db"), "{shown}");

        let alt: MysqlTargetConfig =
            toml::from_str("host = \"db\"\nusernames = [\"a\", \"b\"]\nuser_host = \"10.0.%\"").unwrap();
        assert_eq!(alt.users(), vec!["a", "b"]);
        assert_eq!(alt.account("a"), "'a'@'10.0.%'");
        let err = toml::from_str::<MysqlTargetConfig>("host = \"db\"\nusernames = [\"a\", \"b\", \"c\"]")
            .err()
            .unwrap();
        assert!(err.to_string().contains("length"), "{err}");
        let err = toml::from_str::<MysqlTargetConfig>("host = \"db\"\nusername = \"a\"\ndbname = \"x\"")
            .err()
            .unwrap();
        assert!(err.to_string().contains("unknown field `dbname`"), "{err}");
    }

    #[test]
    fn password_lifetime_spellings() {
        #[derive(Deserialize)]
        struct T {
            password_lifetime: PasswordLifetime,
        }
        let parse = |s: &str| toml::from_str::<T>(&format!("password_lifetime = \"{s}\"")).map(|t| t.password_lifetime);
        assert_eq!(parse("keep").unwrap(), PasswordLifetime::Keep);
        assert_eq!(parse("clear").unwrap(), PasswordLifetime::Clear);
        assert_eq!(parse("never").unwrap(), PasswordLifetime::Clear);
        assert_eq!(parse("90d").unwrap(), PasswordLifetime::Days(90));
        assert_eq!(parse("2w").unwrap(), PasswordLifetime::Days(14));
        assert_eq!(parse("48h").unwrap(), PasswordLifetime::Days(2));
        assert_eq!(parse("65535d").unwrap(), PasswordLifetime::Days(65_535));
        for bad in ["0d", "36h", "65536d", "90", "90s", "1m", "forever", ""] {
            let err = parse(bad).err().unwrap_or_else(|| panic!("{bad} accepted"));
            assert!(err.to_string().contains("whole number of days"), "{err}");
        }
        assert_eq!(PasswordLifetime::Days(90).to_string(), "90d");
        assert_eq!(
            PasswordLifetime::Days(90).clause().unwrap(),
            "PASSWORD EXPIRE INTERVAL 90 DAY"
        );
        assert_eq!(PasswordLifetime::Clear.clause().unwrap(), "PASSWORD EXPIRE NEVER");
        assert_eq!(PasswordLifetime::Keep.clause(), None);

        let mut c = MysqlTargetConfig::new("h", "app");
        assert_eq!(c.password_lifetime, PasswordLifetime::Keep, "the default");
        c.password_lifetime = PasswordLifetime::Days(30);
        let err = c.validate().unwrap_err();
        assert!(
            err.to_string().contains("`password_lifetime = \"30d\"` needs `admin`"),
            "{err}"
        );
        c.admin = Some(RedactedDsn::new("mysql://root:pw@h/".into()));
        c.validate().unwrap();
    }

    #[test]
    fn tls_mode_spellings() {
        #[derive(Deserialize)]
        struct T {
            tls: TlsMode,
        }
        let parse = |s: &str| toml::from_str::<T>(s).map(|t| t.tls);
        assert_eq!(parse("tls = true").unwrap(), TlsMode::Require);
        assert_eq!(parse("tls = false").unwrap(), TlsMode::Disable);
        assert_eq!(parse("tls = \"verify-full\"").unwrap(), TlsMode::VerifyFull);
        assert!(parse("tls = \"verify-ca\"").is_err());
    }
}
