//! [`VaultProvider`]: builds stores and targets, sharing one HTTP client per address.

use crate::approle::VaultAppRoleTarget;
use crate::client::Client;
use crate::config::{
    normalize_mount, resolve_from_process, ConnectionFields, Endpoint, VaultAppRoleConfig, VaultKvConfig,
};
use crate::http::{build_client, Conn};
use crate::kv::{KeyLocks, KvVersion, VaultKvStore};
use rekey_api::{ProviderError, ProviderResult, Store, Strategy, Target};
use std::fmt;
use std::sync::{Arc, Mutex, PoisonError};

/// The Vault provider of one run. It builds [`VaultKvStore`]s and
/// [`VaultAppRoleTarget`]s and keeps **one HTTP client per Vault address** (and TLS
/// setting), so every store and target on one Vault shares its connection pool. KV
/// stores of one provider also share per-key write locks (on KV v1, the only guard
/// against two writers of one key).
///
/// Constructors are synchronous and do not contact Vault; the first request of each
/// store or target does (and logs in first, with AppRole auth).
#[derive(Clone, Default)]
pub struct VaultProvider {
    inner: Arc<Inner>,
}

#[derive(Default)]
struct Inner {
    clients: Mutex<Vec<(Endpoint, reqwest::Client)>>,
    locks: Arc<KeyLocks>,
}

impl fmt::Debug for VaultProvider {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("VaultProvider")
            .field("http_clients", &self.http_clients())
            .finish()
    }
}

impl VaultProvider {
    /// A provider with no client built yet.
    pub fn new() -> Self {
        Self::default()
    }

    /// How many HTTP clients (distinct addresses and TLS settings) this provider built.
    pub fn http_clients(&self) -> usize {
        self.inner.clients.lock().map(|c| c.len()).unwrap_or(0)
    }

    fn http_client(&self, endpoint: &Endpoint) -> ProviderResult<reqwest::Client> {
        let mut clients = self.inner.clients.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some((_, client)) = clients.iter().find(|(e, _)| e == endpoint) {
            return Ok(client.clone());
        }
        let client = build_client(endpoint)?;
        clients.push((endpoint.clone(), client.clone()));
        Ok(client)
    }

    /// The store for `config`, as the engine uses it. Missing `address` and `token` fall
    /// back to `VAULT_ADDR` and `VAULT_TOKEN` (then `~/.vault-token`), as for the vault CLI.
    pub fn kv_store(&self, config: &VaultKvConfig) -> ProviderResult<Arc<dyn Store>> {
        Ok(Arc::new(self.vault_kv_store(config)?))
    }

    /// [`VaultProvider::kv_store`] returning the concrete type (for its `preflight`).
    pub fn vault_kv_store(&self, config: &VaultKvConfig) -> ProviderResult<VaultKvStore> {
        config.validate()?;
        let resolved = resolve_from_process(&ConnectionFields {
            what: "vault-kv store",
            address: config.address.as_deref(),
            token: config.token.as_ref(),
            approle: config.approle.as_ref(),
            namespace: config.namespace.as_deref(),
            ca_cert: config.ca_cert.as_deref(),
            client_cert: config.client_cert.as_deref(),
            client_key: config.client_key.as_deref(),
            timeout_secs: config.timeout_secs,
        })?;
        let http = self.http_client(&resolved.endpoint)?;
        let conn = Conn::new(http, &resolved.endpoint.address, resolved.namespace.as_deref());
        let client = Client::new(conn, resolved.token)?;
        let mount = normalize_mount(&config.mount, "vault-kv store", "mount")?;
        let prefix = normalize_mount(&config.versions_prefix, "vault-kv store", "versions_prefix")?;
        let version = if config.kv_version == 1 {
            KvVersion::V1
        } else {
            KvVersion::V2
        };
        Ok(VaultKvStore::new(
            client,
            mount,
            version,
            prefix,
            self.inner.locks.clone(),
        ))
    }

    /// The target for `config` under `strategy`, as the engine uses it. Only
    /// [`Strategy::Dual`] is supported: a role holds many secret-ids at once.
    pub fn approle_target(&self, config: &VaultAppRoleConfig, strategy: Strategy) -> ProviderResult<Arc<dyn Target>> {
        Ok(Arc::new(self.vault_approle_target(config, strategy)?))
    }

    /// [`VaultProvider::approle_target`] returning the concrete type.
    pub fn vault_approle_target(
        &self,
        config: &VaultAppRoleConfig,
        strategy: Strategy,
    ) -> ProviderResult<VaultAppRoleTarget> {
        if strategy != Strategy::Dual {
            return Err(ProviderError::unsupported(format!(
                "vault-approle target: strategy {strategy:?} is not supported; use \"dual\" (a role holds several \
                 secret-ids, the old one is destroyed at revoke)",
                strategy = strategy.as_str()
            )));
        }
        config.validate()?;
        let resolved = resolve_from_process(&ConnectionFields {
            what: "vault-approle target",
            address: config.address.as_deref(),
            token: config.token.as_ref(),
            approle: None,
            namespace: config.namespace.as_deref(),
            ca_cert: config.ca_cert.as_deref(),
            client_cert: None,
            client_key: None,
            timeout_secs: config.timeout_secs,
        })?;
        let http = self.http_client(&resolved.endpoint)?;
        let conn = Conn::new(http, &resolved.endpoint.address, resolved.namespace.as_deref());
        let client = Client::new(conn, resolved.token)?;
        let mount = normalize_mount(&config.mount, "vault-approle target", "mount")?;
        Ok(VaultAppRoleTarget::new(client, mount, config.role.clone(), strategy))
    }
}
