//! The `target = { type = "redis", ... }` configuration.

use crate::acl::{quote_name, validate_username};
use rekey_api::{ProviderError, ProviderResult, RedactedDsn};
use serde::Deserialize;
use std::fmt;
use std::path::PathBuf;
use std::time::Duration;

/// A Redis ACL user whose password rekey rotates. The field names are part of the
/// configuration file's contract.
///
/// ```toml
/// target = { type = "redis", host = "cache.internal", port = 6379, username = "orders_app",
///            admin = "${REDIS_ADMIN_URL}", tls = true }
/// ```
#[derive(Deserialize, Clone)]
#[serde(deny_unknown_fields)]
pub struct RedisTargetConfig {
    /// Host name or IP address logins connect to.
    pub host: String,
    /// TCP port, default 6379.
    #[serde(default = "default_port")]
    pub port: u16,
    /// The ACL user whose password is rotated. Redis user names cannot contain
    /// whitespace or NUL; such names are refused rather than quoted.
    pub username: String,
    /// URL of an administrator allowed to run `ACL SETUSER` on the user:
    /// `redis://admin:pw@host:6379`, `rediss://...` for TLS, or `redis://127.0.0.1:6379`
    /// for the `default` user without a password. User name and password are
    /// percent-decoded; a database number in the path is ignored (ACLs are server-wide).
    /// Without it the user changes its own password, logged in with its current one
    /// (it then needs the `acl|setuser` permission itself).
    #[serde(default)]
    pub admin: Option<RedactedDsn>,
    /// Connect with TLS (rustls), checking the certificate and host name. Also forces
    /// TLS for an admin URL written `redis://`.
    #[serde(default)]
    pub tls: bool,
    /// PEM file of the CA certificates to trust for TLS, instead of the system and
    /// Mozilla roots.
    #[serde(default)]
    pub tls_ca: Option<PathBuf>,
    /// Seconds allowed for connecting, the TLS handshake and each reply of a login,
    /// default 10.
    #[serde(default = "default_connect_timeout")]
    pub connect_timeout_secs: u64,
    /// End the user's connections (`CLIENT KILL USER`) at revoke even outside incident
    /// mode.
    #[serde(default)]
    pub terminate_sessions: bool,
    /// Allow a rotation to end `nopass` on a user that has it. A `nopass` user logs in
    /// with any password; a rotation gives it a password, after which only that password
    /// works. Without this option such a user is refused by `preflight` (and `apply`)
    /// before anything changes: rekey changes the password and nothing else unless told.
    #[serde(default)]
    pub clear_nopass: bool,
}

fn default_port() -> u16 {
    6379
}

fn default_connect_timeout() -> u64 {
    10
}

impl RedisTargetConfig {
    /// A configuration with the defaults for everything but host and user.
    pub fn new(host: impl Into<String>, username: impl Into<String>) -> Self {
        RedisTargetConfig {
            host: host.into(),
            port: default_port(),
            username: username.into(),
            admin: None,
            tls: false,
            tls_ca: None,
            connect_timeout_secs: default_connect_timeout(),
            terminate_sessions: false,
            clear_nopass: false,
        }
    }

    /// Checks the values that deserialization cannot (empty host, invalid user name,
    /// zero port or timeout, a CA file without TLS).
    pub fn validate(&self) -> ProviderResult<()> {
        if self.host.trim().is_empty() {
            return Err(ProviderError::invalid_input("redis target: `host` is empty"));
        }
        validate_username(&self.username).map_err(|why| {
            ProviderError::invalid_input(format!(
                "redis target: `username` {} is not a valid Redis user name: {why}",
                quote_name(&self.username)
            ))
        })?;
        if self.port == 0 {
            return Err(ProviderError::invalid_input("redis target: `port` is 0"));
        }
        if self.connect_timeout_secs == 0 {
            return Err(ProviderError::invalid_input(
                "redis target: `connect_timeout_secs` must be at least 1",
            ));
        }
        if self.tls_ca.is_some() && !self.tls && !self.admin_uses_tls_scheme() {
            return Err(ProviderError::invalid_input(
                "redis target: `tls_ca` is set but TLS is not (set `tls = true`)",
            ));
        }
        Ok(())
    }

    /// The connect (and per-reply) timeout of logins.
    pub fn connect_timeout(&self) -> Duration {
        Duration::from_secs(self.connect_timeout_secs)
    }

    fn admin_uses_tls_scheme(&self) -> bool {
        self.admin
            .as_ref()
            .is_some_and(|dsn| dsn.expose().trim_start().to_ascii_lowercase().starts_with("rediss://"))
    }
}

impl fmt::Debug for RedisTargetConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RedisTargetConfig")
            .field("host", &self.host)
            .field("port", &self.port)
            .field("username", &self.username)
            // RedactedDsn's Debug masks the password.
            .field("admin", &self.admin)
            .field("tls", &self.tls)
            .field("tls_ca", &self.tls_ca)
            .field("connect_timeout_secs", &self.connect_timeout_secs)
            .field("terminate_sessions", &self.terminate_sessions)
            .field("clear_nopass", &self.clear_nopass)
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(json: &str) -> Result<RedisTargetConfig, String> {
        serde_json::from_str(json).map_err(|e| e.to_string())
    }

    #[test]
    fn defaults_and_unknown_keys() {
        let c = parse(r#"{"host":"h","username":"app"}"#).unwrap();
        assert_eq!(c.port, 6379);
        assert!(!c.tls && !c.terminate_sessions && !c.clear_nopass);
        assert!(
            parse(r#"{"host":"h","username":"app","clear_nopass":true}"#)
                .unwrap()
                .clear_nopass
        );
        assert_eq!(c.connect_timeout_secs, 10);
        assert!(c.admin.is_none() && c.tls_ca.is_none());
        c.validate().unwrap();
        let err = parse(r#"{"host":"h","username":"app","sslmode":"require"}"#).unwrap_err();
        assert!(err.contains("sslmode"), "{err}");
        assert!(parse(r#"{"host":"h"}"#).unwrap_err().contains("username"));
    }

    #[test]
    fn debug_hides_the_admin_password() {
        let c = parse(r#"{"host":"h","username":"app","admin":"redis://admin:s3cr3t-pw@h:6379"}"#).unwrap();
        let shown = format!("{c:?}");
        assert!(!shown.contains("s3cr3t-pw"), "{shown}");
        assert!(shown.contains("redis://admin:****@h:6379"), "{shown}");
    }

    #[test]
    fn validation() {
        let ok = RedisTargetConfig::new("h", "app");
        ok.validate().unwrap();
        for bad in ["", "a b", "a\tb", "a\0b", "a\nb"] {
            let c = RedisTargetConfig::new("h", bad);
            let err = c.validate().unwrap_err();
            assert_eq!(err.kind(), rekey_api::ErrorKind::InvalidInput, "{bad:?}");
            assert!(!err.to_string().contains('\n'));
        }
        let mut c = RedisTargetConfig::new("h", "app");
        c.port = 0;
        assert!(c.validate().is_err());
        let mut c = RedisTargetConfig::new("h", "app");
        c.connect_timeout_secs = 0;
        assert!(c.validate().is_err());
        let mut c = RedisTargetConfig::new("h", "app");
        c.tls_ca = Some("ca.pem".into());
        assert!(c.validate().is_err());
        c.tls = true;
        c.validate().unwrap();
        let mut c = RedisTargetConfig::new(" ", "app");
        c.tls = true;
        assert!(c.validate().is_err());
    }
}
