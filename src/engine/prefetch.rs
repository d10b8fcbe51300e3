//! Read-only commands over many credentials (`status`, `verify`, `plan`) read every
//! key of a store in one batch ([`rekey_api::Store::read_many`]: one file parse for a
//! file store) instead of one read per credential. [`Prefetched`] hands each credential
//! its state from that batch and passes everything else through to the real store.

use async_trait::async_trait;
use rekey_api::{KeyState, ProviderResult, SecretDoc, Store, StoreCapabilities};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};

/// A store whose reads of some keys were done ahead, in one batch. Each prefetched
/// answer is used once; later reads go to the store.
pub struct Prefetched {
    inner: Arc<dyn Store>,
    ahead: Mutex<HashMap<String, ProviderResult<KeyState>>>,
}

impl Prefetched {
    /// Reads `keys` from `inner` in one batch.
    pub async fn read_ahead(inner: Arc<dyn Store>, keys: Vec<String>) -> Prefetched {
        let answers = inner.read_many(&keys).await;
        Prefetched {
            inner,
            ahead: Mutex::new(keys.into_iter().zip(answers).collect()),
        }
    }
}

#[async_trait]
impl Store for Prefetched {
    fn capabilities(&self) -> StoreCapabilities {
        self.inner.capabilities()
    }
    fn describe(&self) -> String {
        self.inner.describe()
    }
    async fn read(&self, key: &str) -> ProviderResult<KeyState> {
        let ahead = self.ahead.lock().unwrap_or_else(|p| p.into_inner()).remove(key);
        match ahead {
            Some(answer) => answer,
            None => self.inner.read(key).await,
        }
    }
    async fn read_many(&self, keys: &[String]) -> Vec<ProviderResult<KeyState>> {
        self.inner.read_many(keys).await
    }
    async fn check_writable(&self, key: &str) -> ProviderResult<()> {
        self.inner.check_writable(key).await
    }
    async fn plan_notes(&self, key: &str) -> ProviderResult<Vec<String>> {
        self.inner.plan_notes(key).await
    }
    async fn put_current(&self, key: &str, version_id: &str, doc: &SecretDoc) -> ProviderResult<()> {
        self.inner.put_current(key, version_id, doc).await
    }
    async fn stage_pending(&self, key: &str, version_id: &str, doc: &SecretDoc) -> ProviderResult<()> {
        self.inner.stage_pending(key, version_id, doc).await
    }
    async fn promote(&self, key: &str, version_id: &str, previous_revoked: bool) -> ProviderResult<()> {
        self.inner.promote(key, version_id, previous_revoked).await
    }
    async fn mark_revoked(&self, key: &str, version_id: &str) -> ProviderResult<()> {
        self.inner.mark_revoked(key, version_id).await
    }
    async fn discard_pending(&self, key: &str, version_id: &str) -> ProviderResult<()> {
        self.inner.discard_pending(key, version_id).await
    }
    async fn discard_unreadable_pending(&self, key: &str) -> ProviderResult<Option<String>> {
        self.inner.discard_unreadable_pending(key).await
    }
}
