//! Read-only commands over many credentials (`status`, `verify`, `plan`) read the keys
//! of a store in batches ([`rekey_api::Store::read_many`]: one file parse for a file
//! store) instead of one read per credential. [`Prefetched`] hands each credential its
//! state from its batch and passes everything else through to the real store.
//!
//! The batches are [`CHUNK`] keys each, read when a credential first asks for one of
//! their keys: the commands work through the credentials in order, a few at a time, so
//! what is held ahead stays about one batch (before, every key's state was read at the
//! start and held until its credential came: 10,000 states, secrets included).

use async_trait::async_trait;
use rekey_api::{KeyState, ProviderResult, SecretDoc, Store, StoreCapabilities};
use std::collections::HashMap;
use std::sync::Arc;
use tokio::sync::Mutex;

/// Keys read in one batch.
pub const CHUNK: usize = 512;

/// A store whose reads of some keys are done ahead, in batches. Each prefetched answer
/// is used once; later reads go to the store.
pub struct Prefetched {
    inner: Arc<dyn Store>,
    /// An async lock: a credential whose batch is being read waits for it rather than
    /// reading the batch again.
    ahead: Mutex<Ahead>,
}

/// The batches not read yet, and the answers read and not yet used.
#[derive(Default)]
struct Ahead {
    /// Each batch's keys; emptied when it is read.
    batches: Vec<Vec<String>>,
    /// Key -> its batch, for the keys of batches not read yet.
    batch_of: HashMap<String, usize>,
    answers: HashMap<String, ProviderResult<KeyState>>,
}

impl Prefetched {
    /// Reads `keys` from `inner` in batches of [`CHUNK`], each when first needed.
    pub async fn read_ahead(inner: Arc<dyn Store>, keys: Vec<String>) -> Prefetched {
        let mut ahead = Ahead::default();
        for (index, key) in keys.into_iter().enumerate() {
            let batch = index / CHUNK;
            if batch == ahead.batches.len() {
                ahead.batches.push(Vec::with_capacity(CHUNK));
            }
            ahead.batch_of.entry(key.clone()).or_insert(batch);
            ahead.batches[batch].push(key);
        }
        Prefetched {
            inner,
            ahead: Mutex::new(ahead),
        }
    }

    /// Answers read ahead and not used yet.
    #[cfg(test)]
    async fn held(&self) -> usize {
        self.ahead.lock().await.answers.len()
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
        let mut ahead = self.ahead.lock().await;
        if let Some(answer) = ahead.answers.remove(key) {
            return answer;
        }
        let Some(batch) = ahead.batch_of.get(key).copied() else {
            drop(ahead);
            return self.inner.read(key).await;
        };
        let keys = std::mem::take(&mut ahead.batches[batch]);
        for k in &keys {
            ahead.batch_of.remove(k);
        }
        let answers = self.inner.read_many(&keys).await;
        ahead.answers.extend(keys.into_iter().zip(answers));
        match ahead.answers.remove(key) {
            Some(answer) => answer,
            None => {
                drop(ahead);
                self.inner.read(key).await
            }
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

#[cfg(test)]
mod tests {
    use super::*;
    use rekey_api::testing::MemoryStore;

    fn doc(i: usize) -> SecretDoc {
        let mut doc = SecretDoc::new();
        doc.set("password", format!("pw-{i}"));
        doc
    }

    /// Every credential gets its own state, read in batches of [`CHUNK`] as they are
    /// needed; what is held ahead never exceeds a batch or two.
    #[tokio::test]
    async fn reads_ahead_one_batch_at_a_time() {
        let store = MemoryStore::new();
        let n = 2 * CHUNK + 7;
        for i in 0..n {
            store.put_current(&format!("k{i}"), "v1", &doc(i)).await.unwrap();
        }
        let keys: Vec<String> = (0..n).map(|i| format!("k{i}")).collect();
        let ahead = Prefetched::read_ahead(Arc::new(store.clone()), keys).await;
        assert_eq!(ahead.held().await, 0, "nothing is read before it is needed");
        let mut most = 0;
        // Out of order across a batch boundary too.
        let order: Vec<usize> = (0..n)
            .map(|i| {
                if i == 3 {
                    CHUNK + 1
                } else if i == CHUNK + 1 {
                    3
                } else {
                    i
                }
            })
            .collect();
        for i in order {
            let state = ahead.read(&format!("k{i}")).await.unwrap();
            let current = state.current().expect("a current version");
            assert_eq!(current.doc.get_str("password"), Some(format!("pw-{i}").as_str()));
            most = most.max(ahead.held().await);
        }
        assert!(most <= 2 * CHUNK, "held {most} answers ahead");
        assert_eq!(ahead.held().await, 0);
        // An answer is used once: a later read of the key, or of a key never read
        // ahead, goes to the store.
        store.put_current("k0", "v2", &doc(1000)).await.unwrap();
        let again = ahead.read("k0").await.unwrap();
        assert_eq!(again.current().unwrap().doc.get_str("password"), Some("pw-1000"));
        assert!(ahead.read("missing").await.is_err());
    }
}
