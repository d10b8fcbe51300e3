//! The composition root: turns configuration into stores and targets. This is the one
//! place that names the provider crates; the engine sees only [`Backends`].
//!
//! Adding a provider means: one crate under `providers/`, one arm in
//! [`crate::config::StoreConfig`] or [`crate::config::TargetConfig`], and one arm here.

use crate::config::{Config, Credential, StoreConfig, TargetConfig};
use crate::engine::Backends;
use rekey_api::{ProviderError, ProviderResult, Store, Target};
use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

/// A store opened once per run, or the error that opening it gave.
type OpenedStore = Result<Arc<dyn Store>, ProviderError>;

/// Run-wide choices that reach providers.
#[derive(Debug, Clone, Copy, Default)]
pub struct ProviderOptions {
    /// `rotate --delete-inactive`: an IAM user's extra *inactive* key that is stored
    /// nowhere may be deleted to make room for the new one.
    pub delete_inactive: bool,
    /// `import` and `rotate --create-store`: a file store that does not exist yet may be
    /// created. Otherwise a missing store file is an error, so that a typo in its path
    /// cannot make a rotation write fresh secrets where no application reads them.
    pub create_store: bool,
}

/// The providers of one run, built from the configuration.
pub struct ConfiguredBackends {
    stores: BTreeMap<String, StoreConfig>,
    targets: BTreeMap<String, TargetConfig>,
    admin_errors: BTreeMap<String, String>,
    /// Credentials whose target uses an unset variable: their configuration error.
    unresolved: BTreeMap<String, String>,
    opened: Mutex<BTreeMap<String, OpenedStore>>,
    options: ProviderOptions,
    aws: rekey_aws::AwsProvider,
    mysql: rekey_mysql::MysqlProvider,
    postgres: rekey_postgres::PostgresProvider,
    redis: rekey_redis::RedisProvider,
    vault: rekey_vault::VaultProvider,
    http: rekey_http::HttpProvider,
    exec: rekey_exec::ExecProvider,
}

impl ConfiguredBackends {
    /// Providers for this configuration; nothing is opened or connected yet.
    pub fn new(config: &Config, options: ProviderOptions) -> Self {
        ConfiguredBackends {
            stores: config.stores.clone(),
            targets: config.targets.clone(),
            admin_errors: BTreeMap::new(),
            unresolved: config.unresolved.clone(),
            options,
            opened: Mutex::new(BTreeMap::new()),
            aws: rekey_aws::AwsProvider::new(),
            mysql: rekey_mysql::MysqlProvider::new(),
            postgres: rekey_postgres::PostgresProvider::new(),
            redis: rekey_redis::RedisProvider::new(),
            vault: rekey_vault::VaultProvider::new(),
            http: rekey_http::HttpProvider::new(),
            exec: rekey_exec::ExecProvider::new(),
        }
    }

    /// Fills in the admin of every target whose configuration says
    /// `admin = { credential = "NAME" }`: an admin URL built from that credential's
    /// current secret in its store. Call it again after rotating the admin credential.
    ///
    /// A reference that cannot be resolved (no current secret yet, an unreadable store)
    /// fails only the credentials that use it, when their target is asked for.
    pub async fn resolve_admins(&mut self, config: &Config) {
        for name in config.admin_refs.keys() {
            if let Err(message) = self.resolve_admin(config, name).await {
                self.admin_errors.insert(name.clone(), message);
            }
        }
    }

    async fn resolve_admin(&mut self, config: &Config, name: &str) -> Result<(), String> {
        let admin_name = &config.admin_refs[name];
        let Some(admin) = config.credential(admin_name) else {
            return Err(format!("{name}: admin credential `{admin_name}` is not defined"));
        };
        let store = self
            .store(&admin.store)
            .map_err(|e| format!("{name}: admin credential `{admin_name}`: {e}"))?;
        let state = store
            .read(&admin.key)
            .await
            .map_err(|e| format!("{name}: admin credential `{admin_name}`: read: {e}"))?;
        let Some(current) = state.current() else {
            return Err(format!(
                "{name}: admin credential `{admin_name}` has no current secret; import it with `rekey import {admin_name}`"
            ));
        };
        let doc = &current.doc;
        let field = |f: &str| doc.get_str(f).map(str::to_owned);
        let (Some(user), Some(password), Some(host)) = (field("username"), doc.password(), field("host")) else {
            return Err(format!(
                "{name}: admin credential `{admin_name}`: its stored secret lacks username, password or host"
            ));
        };
        let port = doc.get_u64("port");
        let encoded_password = zeroize::Zeroizing::new(userinfo_encode(password.expose()));
        let userinfo = zeroize::Zeroizing::new(format!("{}:{}", userinfo_encode(&user), encoded_password.as_str()));
        let authority = match port {
            Some(p) => format!("{host}:{p}"),
            None => host,
        };
        let dsn = |scheme: &str, path: &str| {
            rekey_api::RedactedDsn::new(format!("{scheme}://{}@{authority}{path}", userinfo.as_str()))
        };
        match self.targets.get_mut(name) {
            Some(TargetConfig::Postgres(c)) => {
                let db = field("dbname").unwrap_or_else(|| "postgres".to_owned());
                c.admin = Some(dsn("postgres", &format!("/{}", userinfo_encode(&db))));
            }
            Some(TargetConfig::Mysql(c)) => c.admin = Some(dsn("mysql", "")),
            Some(TargetConfig::Redis(c)) => c.admin = Some(dsn("redis", "")),
            Some(other) => {
                return Err(format!(
                    "{name}: `admin = {{ credential = ... }}` is for postgres, mysql and redis targets, not {}",
                    other.type_name()
                ))
            }
            None => return Err(format!("{name}: no target configured")),
        }
        Ok(())
    }

    fn open_store(&self, config: &StoreConfig) -> ProviderResult<Arc<dyn Store>> {
        match config {
            StoreConfig::File(c) if self.options.create_store => {
                rekey_file::FileStore::open_or_create(c.path.clone()).map(|s| Arc::new(s) as Arc<dyn Store>)
            }
            StoreConfig::File(c) => rekey_file::FileStore::open(c.path.clone()).map(|s| Arc::new(s) as Arc<dyn Store>),
            StoreConfig::AwsSecretsmanager(c) => self.aws.secrets_manager_store(c),
            StoreConfig::VaultKv(c) => self.vault.kv_store(c),
        }
    }
}

/// Percent-encodes everything but RFC 3986's unreserved characters (for URL user info
/// and paths).
fn userinfo_encode(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for b in text.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

impl Backends for ConfiguredBackends {
    fn store(&self, name: &str) -> ProviderResult<Arc<dyn Store>> {
        let mut opened = self.opened.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(result) = opened.get(name) {
            return result.clone();
        }
        let result = match self.stores.get(name) {
            None => Err(ProviderError::invalid_input(format!("unknown store `{name}`"))),
            Some(config) => self.open_store(config),
        };
        let result = result.map_err(|e| e.context(format_args!("store `{name}`")));
        opened.insert(name.to_owned(), result.clone());
        result
    }

    fn endpoint(&self, credential: &Credential) -> Option<String> {
        let (host, port) = match self.targets.get(&credential.name)? {
            TargetConfig::Postgres(c) => (&c.host, c.port),
            TargetConfig::Mysql(c) => (&c.host, c.port),
            TargetConfig::Redis(c) => (&c.host, c.port),
            _ => return None,
        };
        Some(format!("{}:{port}", host.to_ascii_lowercase()))
    }

    fn target(&self, credential: &Credential) -> ProviderResult<Arc<dyn Target>> {
        if let Some(message) = self.admin_errors.get(&credential.name) {
            return Err(ProviderError::invalid_input(message.clone()));
        }
        if let Some(message) = self.unresolved.get(&credential.name) {
            return Ok(Arc::new(crate::config::UnresolvedTarget::new(
                message.clone(),
                credential.strategy,
            )));
        }
        let Some(config) = self.targets.get(&credential.name) else {
            return Err(ProviderError::invalid_input(format!(
                "credential `{}` has no target configured",
                credential.name
            )));
        };
        match config {
            TargetConfig::Postgres(c) => self.postgres.target(c, credential.strategy),
            TargetConfig::AwsIam(c) => self.aws.iam_target(
                c,
                credential.strategy,
                rekey_aws::IamOptions {
                    delete_inactive: self.options.delete_inactive,
                },
            ),
            TargetConfig::Mysql(c) => self.mysql.target(c, credential.strategy),
            TargetConfig::Redis(c) => self.redis.target(c, credential.strategy),
            TargetConfig::VaultApprole(c) => self.vault.approle_target(c, credential.strategy),
            TargetConfig::Http(c) => self.http.target(c, &credential.name, credential.strategy),
            TargetConfig::Exec(c) => self.exec.target(c, &credential.name, credential.strategy),
        }
    }
}
