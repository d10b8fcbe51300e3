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
    opened: Mutex<BTreeMap<String, OpenedStore>>,
    options: ProviderOptions,
    aws: rekey_aws::AwsProvider,
    mysql: rekey_mysql::MysqlProvider,
    postgres: rekey_postgres::PostgresProvider,
    redis: rekey_redis::RedisProvider,
    vault: rekey_vault::VaultProvider,
    http: rekey_http::HttpProvider,
}

impl ConfiguredBackends {
    /// Providers for this configuration; nothing is opened or connected yet.
    pub fn new(config: &Config, options: ProviderOptions) -> Self {
        ConfiguredBackends {
            stores: config.stores.clone(),
            targets: config.targets.clone(),
            options,
            opened: Mutex::new(BTreeMap::new()),
            aws: rekey_aws::AwsProvider::new(),
            mysql: rekey_mysql::MysqlProvider::new(),
            postgres: rekey_postgres::PostgresProvider::new(),
            redis: rekey_redis::RedisProvider::new(),
            vault: rekey_vault::VaultProvider::new(),
            http: rekey_http::HttpProvider::new(),
        }
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

    fn target(&self, credential: &Credential) -> ProviderResult<Arc<dyn Target>> {
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
        }
    }
}
