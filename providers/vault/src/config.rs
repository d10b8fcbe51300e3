//! The `type = "vault-kv"` store and `type = "vault-approle"` target configurations, and
//! how their connection settings fall back to the vault CLI's environment variables.

use rekey_api::{ProviderError, ProviderResult, Secret};
use serde::{Deserialize, Deserializer};
use std::fmt;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// Environment variable naming the Vault address when `address` is absent.
pub const ENV_ADDR: &str = "VAULT_ADDR";
/// Environment variable holding the token when neither `token` nor `approle` is set.
pub const ENV_TOKEN: &str = "VAULT_TOKEN";
/// Environment variable naming the namespace when `namespace` is absent.
pub const ENV_NAMESPACE: &str = "VAULT_NAMESPACE";
/// Environment variable naming the CA certificate file when `ca_cert` is absent.
pub const ENV_CACERT: &str = "VAULT_CACERT";
/// Environment variable naming the client certificate file when `client_cert` is absent.
pub const ENV_CLIENT_CERT: &str = "VAULT_CLIENT_CERT";
/// Environment variable naming the client key file when `client_key` is absent.
pub const ENV_CLIENT_KEY: &str = "VAULT_CLIENT_KEY";

/// A secret string from the configuration (a Vault token, an AppRole secret-id). It
/// deserializes from a plain string, prints as `ConfigSecret(***)` and is zeroized on
/// drop; [`ConfigSecret::expose`] is the only way to read it.
#[derive(Clone, PartialEq, Eq)]
pub struct ConfigSecret(Secret);

impl ConfigSecret {
    /// Wraps a value.
    pub fn new(value: impl Into<String>) -> Self {
        ConfigSecret(Secret::new(value.into()))
    }

    /// The plain value.
    pub fn expose(&self) -> &str {
        self.0.expose()
    }

    /// The value as a [`Secret`].
    pub fn secret(&self) -> &Secret {
        &self.0
    }
}

impl fmt::Debug for ConfigSecret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("ConfigSecret(***)")
    }
}

impl<'de> Deserialize<'de> for ConfigSecret {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        String::deserialize(deserializer).map(ConfigSecret::new)
    }
}

/// How the KV store logs in with AppRole instead of a fixed token: rekey logs in on its
/// first request and again when Vault refuses the token it got (expired).
///
/// ```toml
/// approle = { role_id = "${REKEY_ROLE_ID}", secret_id = "${REKEY_SECRET_ID}" }
/// ```
#[derive(Deserialize, Clone)]
#[serde(deny_unknown_fields)]
pub struct AppRoleLogin {
    /// The role's role-id.
    pub role_id: String,
    /// A secret-id of the role.
    pub secret_id: ConfigSecret,
    /// Where the AppRole auth method is mounted, default `approle`.
    #[serde(default = "default_approle_mount")]
    pub mount: String,
}

impl fmt::Debug for AppRoleLogin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AppRoleLogin")
            .field("role_id", &self.role_id)
            .field("secret_id", &self.secret_id)
            .field("mount", &self.mount)
            .finish()
    }
}

/// A Vault KV secrets engine used as a rekey store: `[stores.NAME]` with
/// `type = "vault-kv"`.
///
/// ```toml
/// [stores.vault]
/// type = "vault-kv"
/// address = "https://vault.internal:8200"   # or VAULT_ADDR
/// mount = "secret"
/// kv_version = 2
/// token = "${REKEY_VAULT_TOKEN}"            # or approle = {...}, or VAULT_TOKEN
/// ```
///
/// Applications read the current secret at `<mount>/<key>` as usual; rekey keeps every
/// version with its stage in `<mount>/<versions_prefix>/<key>` (see the crate README).
#[derive(Deserialize, Clone)]
#[serde(deny_unknown_fields)]
pub struct VaultKvConfig {
    /// `https://host:8200`; default `$VAULT_ADDR`.
    #[serde(default)]
    pub address: Option<String>,
    /// The KV mount path, default `secret`.
    #[serde(default = "default_kv_mount")]
    pub mount: String,
    /// The mount's KV version: `2` (default: versioned KV, every write check-and-set) or
    /// `1` (no check-and-set: the local lock is the only guard). rvault and Vault's
    /// `kv` (v1) mounts need `1`.
    #[serde(default = "default_kv_version")]
    pub kv_version: u8,
    /// The token; default: `approle` login, else `$VAULT_TOKEN`, else `~/.vault-token`.
    #[serde(default)]
    pub token: Option<ConfigSecret>,
    /// Log in with AppRole instead of a fixed token.
    #[serde(default)]
    pub approle: Option<AppRoleLogin>,
    /// Vault Enterprise namespace; default `$VAULT_NAMESPACE`.
    #[serde(default)]
    pub namespace: Option<String>,
    /// PEM file of the CA certificates to trust (replacing the system and Mozilla
    /// roots); default `$VAULT_CACERT`.
    #[serde(default)]
    pub ca_cert: Option<PathBuf>,
    /// PEM client certificate for TLS client authentication; default `$VAULT_CLIENT_CERT`.
    #[serde(default)]
    pub client_cert: Option<PathBuf>,
    /// PEM private key of `client_cert`; default `$VAULT_CLIENT_KEY`.
    #[serde(default)]
    pub client_key: Option<PathBuf>,
    /// Where, inside the mount, rekey keeps its versions documents, default `.rekey`:
    /// the versions of key `orders/db` live at `<mount>/.rekey/orders/db`.
    #[serde(default = "default_versions_prefix")]
    pub versions_prefix: String,
    /// Seconds one HTTP request may take, default 30.
    #[serde(default = "default_timeout")]
    pub timeout_secs: u64,
}

impl fmt::Debug for VaultKvConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("VaultKvConfig")
            .field("address", &self.address)
            .field("mount", &self.mount)
            .field("kv_version", &self.kv_version)
            // ConfigSecret's Debug prints `***`.
            .field("token", &self.token)
            .field("approle", &self.approle)
            .field("namespace", &self.namespace)
            .field("ca_cert", &self.ca_cert)
            .field("client_cert", &self.client_cert)
            .field("client_key", &self.client_key)
            .field("versions_prefix", &self.versions_prefix)
            .field("timeout_secs", &self.timeout_secs)
            .finish()
    }
}

impl VaultKvConfig {
    /// A configuration with the defaults for everything but the address.
    pub fn new(address: impl Into<String>) -> Self {
        VaultKvConfig {
            address: Some(address.into()),
            mount: default_kv_mount(),
            kv_version: default_kv_version(),
            token: None,
            approle: None,
            namespace: None,
            ca_cert: None,
            client_cert: None,
            client_key: None,
            versions_prefix: default_versions_prefix(),
            timeout_secs: default_timeout(),
        }
    }

    /// Checks the values that deserialization cannot.
    pub fn validate(&self) -> ProviderResult<()> {
        let what = "vault-kv store";
        normalize_mount(&self.mount, what, "mount")?;
        if !matches!(self.kv_version, 1 | 2) {
            return Err(ProviderError::invalid_input(format!(
                "{what}: `kv_version` must be 1 or 2, not {}",
                self.kv_version
            )));
        }
        normalize_mount(&self.versions_prefix, what, "versions_prefix")?;
        if let Some(approle) = &self.approle {
            if approle.role_id.trim().is_empty() {
                return Err(ProviderError::invalid_input(format!(
                    "{what}: `approle.role_id` is empty"
                )));
            }
            if approle.secret_id.expose().is_empty() {
                return Err(ProviderError::invalid_input(format!(
                    "{what}: `approle.secret_id` is empty"
                )));
            }
            normalize_mount(&approle.mount, what, "approle.mount")?;
            if self.token.is_some() {
                return Err(ProviderError::invalid_input(format!(
                    "{what}: set either `token` or `approle`, not both"
                )));
            }
        }
        if self.timeout_secs == 0 {
            return Err(ProviderError::invalid_input(format!(
                "{what}: `timeout_secs` must be at least 1"
            )));
        }
        Ok(())
    }
}

/// A Vault AppRole role whose secret-id rekey rotates: `target = { type =
/// "vault-approle", ... }`. The token must be allowed to create, look up and destroy
/// the role's secret-ids.
///
/// ```toml
/// target = { type = "vault-approle", address = "https://vault.internal:8200",
///            role = "orders-app", token = "${REKEY_VAULT_TOKEN}" }
/// ```
#[derive(Deserialize, Clone)]
#[serde(deny_unknown_fields)]
pub struct VaultAppRoleConfig {
    /// `https://host:8200`; default `$VAULT_ADDR`.
    #[serde(default)]
    pub address: Option<String>,
    /// Where the AppRole auth method is mounted, default `approle`.
    #[serde(default = "default_approle_mount")]
    pub mount: String,
    /// The role whose secret-ids are rotated.
    pub role: String,
    /// The token managing the role; default `$VAULT_TOKEN`, else `~/.vault-token`.
    #[serde(default)]
    pub token: Option<ConfigSecret>,
    /// Vault Enterprise namespace; default `$VAULT_NAMESPACE`.
    #[serde(default)]
    pub namespace: Option<String>,
    /// PEM file of the CA certificates to trust; default `$VAULT_CACERT`.
    #[serde(default)]
    pub ca_cert: Option<PathBuf>,
    /// Seconds one HTTP request may take, default 30.
    #[serde(default = "default_timeout")]
    pub timeout_secs: u64,
}

impl fmt::Debug for VaultAppRoleConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("VaultAppRoleConfig")
            .field("address", &self.address)
            .field("mount", &self.mount)
            .field("role", &self.role)
            .field("token", &self.token)
            .field("namespace", &self.namespace)
            .field("ca_cert", &self.ca_cert)
            .field("timeout_secs", &self.timeout_secs)
            .finish()
    }
}

impl VaultAppRoleConfig {
    /// A configuration with the defaults for everything but address and role.
    pub fn new(address: impl Into<String>, role: impl Into<String>) -> Self {
        VaultAppRoleConfig {
            address: Some(address.into()),
            mount: default_approle_mount(),
            role: role.into(),
            token: None,
            namespace: None,
            ca_cert: None,
            timeout_secs: default_timeout(),
        }
    }

    /// Checks the values that deserialization cannot.
    pub fn validate(&self) -> ProviderResult<()> {
        let what = "vault-approle target";
        normalize_mount(&self.mount, what, "mount")?;
        let role = self.role.as_str();
        if role.is_empty() {
            return Err(ProviderError::invalid_input(format!("{what}: `role` is empty")));
        }
        if !role
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.' | '@'))
        {
            return Err(ProviderError::invalid_input(format!(
                "{what}: `role` {role:?} may hold only letters, digits, `_`, `-`, `.` and `@`"
            )));
        }
        if self.timeout_secs == 0 {
            return Err(ProviderError::invalid_input(format!(
                "{what}: `timeout_secs` must be at least 1"
            )));
        }
        Ok(())
    }
}

fn default_kv_mount() -> String {
    "secret".to_owned()
}

fn default_kv_version() -> u8 {
    2
}

fn default_approle_mount() -> String {
    "approle".to_owned()
}

fn default_versions_prefix() -> String {
    ".rekey".to_owned()
}

fn default_timeout() -> u64 {
    30
}

/// `secret/` and `/secret` become `secret`; empty, `.`/`..` segments and control
/// characters are refused.
pub(crate) fn normalize_mount(mount: &str, what: &str, field: &str) -> ProviderResult<String> {
    let trimmed = mount.trim_matches('/');
    let bad = trimmed.is_empty()
        || trimmed.split('/').any(|s| s.is_empty() || s == "." || s == "..")
        || trimmed.chars().any(|c| c.is_control() || c == '?' || c == '#');
    if bad {
        return Err(ProviderError::invalid_input(format!(
            "{what}: `{field}` {mount:?} is not a valid Vault path"
        )));
    }
    Ok(trimmed.to_owned())
}

/// Connection settings after the environment fallbacks: what identifies one HTTP client
/// (address and TLS files) plus the namespace.
#[derive(Clone, PartialEq, Eq, Hash, Debug)]
pub(crate) struct Endpoint {
    /// `scheme://host:port` without a trailing slash.
    pub address: String,
    pub ca_cert: Option<PathBuf>,
    pub client_cert: Option<PathBuf>,
    pub client_key: Option<PathBuf>,
    pub timeout: Duration,
}

/// Where the token comes from, after the environment fallbacks.
pub(crate) enum TokenSource {
    Token(Secret),
    AppRole(AppRoleLogin),
}

/// Everything a store or target needs to talk to Vault.
pub(crate) struct Resolved {
    pub endpoint: Endpoint,
    pub namespace: Option<String>,
    pub token: TokenSource,
}

/// The fields common to both configurations.
pub(crate) struct ConnectionFields<'a> {
    pub what: &'a str,
    pub address: Option<&'a str>,
    pub token: Option<&'a ConfigSecret>,
    pub approle: Option<&'a AppRoleLogin>,
    pub namespace: Option<&'a str>,
    pub ca_cert: Option<&'a Path>,
    pub client_cert: Option<&'a Path>,
    pub client_key: Option<&'a Path>,
    pub timeout_secs: u64,
}

/// Applies the vault CLI's fallbacks: `VAULT_ADDR`, `VAULT_TOKEN` then `~/.vault-token`,
/// `VAULT_NAMESPACE`, `VAULT_CACERT`, `VAULT_CLIENT_CERT`, `VAULT_CLIENT_KEY`.
/// `env` looks a variable up; `home_token` reads `~/.vault-token`.
pub(crate) fn resolve(
    fields: &ConnectionFields<'_>,
    env: &dyn Fn(&str) -> Option<String>,
    home_token: &dyn Fn() -> Option<String>,
) -> ProviderResult<Resolved> {
    let what = fields.what;
    let env_nonempty = |name: &str| env(name).filter(|v| !v.trim().is_empty());
    let address = match fields.address {
        Some(a) => a.to_owned(),
        None => env_nonempty(ENV_ADDR).ok_or_else(|| {
            ProviderError::invalid_input(format!(
                "{what}: no Vault address: set `address` or the {ENV_ADDR} environment variable"
            ))
        })?,
    };
    let address = normalize_address(&address, what)?;
    let token = match (fields.token, fields.approle) {
        (Some(t), _) if t.expose().is_empty() => {
            return Err(ProviderError::invalid_input(format!("{what}: `token` is empty")))
        }
        (Some(t), _) => TokenSource::Token(t.secret().clone()),
        (None, Some(a)) => TokenSource::AppRole(a.clone()),
        (None, None) => match env_nonempty(ENV_TOKEN).or_else(home_token) {
            Some(t) => TokenSource::Token(Secret::new(t.trim().to_owned())),
            None => {
                return Err(ProviderError::invalid_input(format!(
                    "{what}: no Vault token: set `token`, `approle`, the {ENV_TOKEN} environment variable \
                     or ~/.vault-token"
                )))
            }
        },
    };
    let path_or_env = |p: Option<&Path>, var: &str| {
        p.map(Path::to_path_buf)
            .or_else(|| env_nonempty(var).map(PathBuf::from))
    };
    let endpoint = Endpoint {
        address,
        ca_cert: path_or_env(fields.ca_cert, ENV_CACERT),
        client_cert: path_or_env(fields.client_cert, ENV_CLIENT_CERT),
        client_key: path_or_env(fields.client_key, ENV_CLIENT_KEY),
        timeout: Duration::from_secs(fields.timeout_secs.max(1)),
    };
    if endpoint.client_cert.is_some() != endpoint.client_key.is_some() {
        return Err(ProviderError::invalid_input(format!(
            "{what}: `client_cert` and `client_key` go together: set both or neither"
        )));
    }
    let namespace = fields
        .namespace
        .map(str::to_owned)
        .or_else(|| env_nonempty(ENV_NAMESPACE))
        .map(|n| n.trim_matches('/').to_owned())
        .filter(|n| !n.is_empty());
    Ok(Resolved {
        endpoint,
        namespace,
        token,
    })
}

/// The process environment and `~/.vault-token`, as the vault CLI reads them.
pub(crate) fn resolve_from_process(fields: &ConnectionFields<'_>) -> ProviderResult<Resolved> {
    resolve(fields, &|name| std::env::var(name).ok(), &|| {
        let home = std::env::var_os("HOME")?;
        let text = std::fs::read_to_string(Path::new(&home).join(".vault-token")).ok()?;
        let token = text.trim().to_owned();
        (!token.is_empty()).then_some(token)
    })
}

fn normalize_address(address: &str, what: &str) -> ProviderResult<String> {
    let address = address.trim().trim_end_matches('/');
    let rest = address
        .strip_prefix("https://")
        .or_else(|| address.strip_prefix("http://"));
    match rest {
        Some(host) if !host.is_empty() && !host.contains(['/', '?', '#', '@', ' ']) => Ok(address.to_owned()),
        _ => Err(ProviderError::invalid_input(format!(
            "{what}: Vault address {address:?} must look like https://host:8200"
        ))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rekey_api::ErrorKind;
    use std::collections::HashMap;

    fn fields(address: Option<&str>) -> ConnectionFields<'_> {
        ConnectionFields {
            what: "test",
            address,
            token: None,
            approle: None,
            namespace: None,
            ca_cert: None,
            client_cert: None,
            client_key: None,
            timeout_secs: 30,
        }
    }

    #[test]
    fn environment_fallbacks() {
        let env: HashMap<&str, &str> = [
            (ENV_ADDR, "http://127.0.0.1:8200/"),
            (ENV_TOKEN, "env-token"),
            (ENV_NAMESPACE, "team/"),
            (ENV_CACERT, "/ca.pem"),
        ]
        .into();
        let lookup = |n: &str| env.get(n).map(|v| v.to_string());
        let r = resolve(&fields(None), &lookup, &|| None).unwrap();
        assert_eq!(r.endpoint.address, "http://127.0.0.1:8200");
        assert_eq!(r.namespace.as_deref(), Some("team"));
        assert_eq!(r.endpoint.ca_cert.as_deref(), Some(Path::new("/ca.pem")));
        assert!(matches!(r.token, TokenSource::Token(ref t) if t.expose() == "env-token"));

        let token = ConfigSecret::new("config-token");
        let mut f = fields(Some("https://vault:8200"));
        f.token = Some(&token);
        let r = resolve(&f, &lookup, &|| None).unwrap();
        assert_eq!(r.endpoint.address, "https://vault:8200");
        assert!(matches!(r.token, TokenSource::Token(ref t) if t.expose() == "config-token"));

        let r = resolve(&fields(Some("http://h:1")), &|_| None, &|| Some("home-token\n".into())).unwrap();
        assert!(matches!(r.token, TokenSource::Token(ref t) if t.expose() == "home-token"));
    }

    #[test]
    fn missing_address_or_token_is_invalid_input() {
        let e = resolve(&fields(None), &|_| None, &|| None).err().unwrap();
        assert_eq!(e.kind(), ErrorKind::InvalidInput);
        assert!(e.message().contains(ENV_ADDR), "{e}");
        let e = resolve(&fields(Some("http://h:1")), &|_| None, &|| None).err().unwrap();
        assert!(e.message().contains(ENV_TOKEN), "{e}");
        let e = resolve(&fields(Some("vault:8200")), &|_| Some("t".into()), &|| None)
            .err()
            .unwrap();
        assert_eq!(e.kind(), ErrorKind::InvalidInput);
    }

    #[test]
    fn debug_hides_secrets() {
        let config: VaultKvConfig =
            serde_json::from_str(r#"{"address":"http://h:1","token":"s3cr3t-token","namespace":"ns"}"#).unwrap();
        let shown = format!("{config:?}");
        assert!(!shown.contains("s3cr3t-token"), "{shown}");
        assert!(shown.contains("ConfigSecret(***)"));
        let config: VaultKvConfig =
            serde_json::from_str(r#"{"address":"http://h:1","approle":{"role_id":"r","secret_id":"s3cr3t-sid"}}"#)
                .unwrap();
        assert!(!format!("{config:?}").contains("s3cr3t-sid"));
        let target: VaultAppRoleConfig = serde_json::from_str(r#"{"role":"app","token":"s3cr3t-token"}"#).unwrap();
        assert!(!format!("{target:?}").contains("s3cr3t-token"));
    }

    #[test]
    fn defaults_and_unknown_fields() {
        let config: VaultKvConfig = serde_json::from_str("{}").unwrap();
        assert_eq!(config.mount, "secret");
        assert_eq!(config.kv_version, 2);
        assert_eq!(config.versions_prefix, ".rekey");
        assert!(serde_json::from_str::<VaultKvConfig>(r#"{"mount_path":"x"}"#).is_err());
        assert!(serde_json::from_str::<VaultAppRoleConfig>(r#"{"role":"a","extra":1}"#).is_err());
        let mut bad = VaultKvConfig::new("http://h:1");
        bad.kv_version = 3;
        assert_eq!(bad.validate().unwrap_err().kind(), ErrorKind::InvalidInput);
        bad.kv_version = 1;
        bad.mount = "a/../b".into();
        assert!(bad.validate().is_err());
        assert_eq!(normalize_mount("/secret/", "t", "mount").unwrap(), "secret");
    }
}
