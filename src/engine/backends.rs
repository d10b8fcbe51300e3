//! Builds stores and targets from configuration, once per run, so that connections
//! are shared: one admin connection per target host, one handle per store.

use crate::config::{Credential, StoreConfig, TargetConfig};
use rekey_api::{ProviderError, ProviderResult, Store, Target};
use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

/// A store opened once per run, or the error that opening it gave.
type OpenedStore = Result<Arc<dyn Store>, ProviderError>;

/// Run-wide choices that reach providers.
#[derive(Debug, Clone, Copy, Default)]
pub struct BackendOptions {
    /// `rotate --delete-inactive`: an IAM user's extra *inactive* key that is stored
    /// nowhere may be deleted to make room for the new one.
    pub delete_inactive: bool,
}

/// The providers of one run.
pub struct Backends {
    stores: BTreeMap<String, StoreConfig>,
    opened: Mutex<BTreeMap<String, OpenedStore>>,
    options: BackendOptions,
    aws: rekey_aws::AwsProvider,
    mysql: rekey_mysql::MysqlProvider,
    postgres: rekey_postgres::PostgresProvider,
    redis: rekey_redis::RedisProvider,
    vault: rekey_vault::VaultProvider,
}

impl Backends {
    /// Providers for these store definitions; nothing is opened yet.
    pub fn new(stores: BTreeMap<String, StoreConfig>, options: BackendOptions) -> Self {
        Backends {
            stores,
            options,
            aws: rekey_aws::AwsProvider::new(),
            opened: Mutex::new(BTreeMap::new()),
            mysql: rekey_mysql::MysqlProvider::new(),
            postgres: rekey_postgres::PostgresProvider::new(),
            redis: rekey_redis::RedisProvider::new(),
            vault: rekey_vault::VaultProvider::new(),
        }
    }

    /// The named store, opened on first use; an opening error is remembered and
    /// returned to every credential that uses the store.
    pub fn store(&self, name: &str) -> ProviderResult<Arc<dyn Store>> {
        let mut opened = self.opened.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(result) = opened.get(name) {
            return result.clone();
        }
        let result = match self.stores.get(name) {
            None => Err(ProviderError::invalid_input(format!("unknown store `{name}`"))),
            Some(StoreConfig::File(c)) => {
                rekey_file::FileStore::open(c.path.clone()).map(|s| Arc::new(s) as Arc<dyn Store>)
            }
            Some(StoreConfig::AwsSecretsmanager(c)) => self.aws.secrets_manager_store(c),
            Some(StoreConfig::VaultKv(c)) => self.vault.kv_store(c),
        };
        let result = result.map_err(|e| e.context(format_args!("store `{name}`")));
        opened.insert(name.to_owned(), result.clone());
        result
    }

    /// The credential's target (no connection is made until a step needs one).
    pub fn target(&self, credential: &Credential) -> ProviderResult<Arc<dyn Target>> {
        match &credential.target {
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
        }
    }
}
