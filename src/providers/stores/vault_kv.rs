//! `type = "vault-kv"`: a Vault KV (v1 or v2) mount ([`rekey_vault`]).

use crate::providers::store_kind::{StoreContext, StoreKind};
use rekey_api::{ProviderResult, Store};
use rekey_vault::{VaultKvConfig, VaultProvider};
use std::fmt;
use std::sync::Arc;

/// Boxed in [`crate::config::StoreConfig`]: the section is large.
impl StoreKind for Box<VaultKvConfig> {
    const TYPE: &'static str = "vault-kv";

    fn describe(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "vault-kv mount {}", self.mount)
    }

    fn open(&self, ctx: &StoreContext<'_>) -> ProviderResult<Arc<dyn Store>> {
        ctx.provider::<VaultProvider>().kv_store(self)
    }
}
