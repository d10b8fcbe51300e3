//! [`Registry`]: one shared value per key, made on first request: the providers' "one
//! admin connection per (host, port, admin URL, TLS setting) per run".

use std::sync::{Arc, Mutex, MutexGuard};

/// Values shared by key, made on first request and kept for the registry's life.
/// Lookups are linear: a run has a handful of keys (admin endpoints), not thousands.
pub struct Registry<K, V> {
    entries: Mutex<Vec<(K, Arc<V>)>>,
}

impl<K, V> Default for Registry<K, V> {
    fn default() -> Self {
        Registry {
            entries: Mutex::new(Vec::new()),
        }
    }
}

impl<K, V> std::fmt::Debug for Registry<K, V> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Registry").field("len", &self.len()).finish()
    }
}

impl<K, V> Registry<K, V> {
    /// How many values were made.
    pub fn len(&self) -> usize {
        self.lock().len()
    }

    /// Whether no value was made yet.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn lock(&self) -> MutexGuard<'_, Vec<(K, Arc<V>)>> {
        // A panic while making a value leaves the list as it was: keep using it.
        self.entries.lock().unwrap_or_else(|p| p.into_inner())
    }
}

impl<K: PartialEq, V> Registry<K, V> {
    /// The value for `key`, made by `make` (and kept) when there is none yet. `make`
    /// runs under the registry's lock, so concurrent callers never make two; its error
    /// is returned and nothing is kept.
    pub fn get_or_try_insert<E>(&self, key: K, make: impl FnOnce() -> Result<V, E>) -> Result<Arc<V>, E> {
        let mut entries = self.lock();
        if let Some((_, value)) = entries.iter().find(|(k, _)| *k == key) {
            return Ok(value.clone());
        }
        let value = Arc::new(make()?);
        entries.push((key, value.clone()));
        Ok(value)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_value_per_key_and_errors_keep_nothing() {
        let registry: Registry<&str, String> = Registry::default();
        let a = registry
            .get_or_try_insert("a", || Ok::<_, ()>("first".to_owned()))
            .unwrap();
        let again = registry
            .get_or_try_insert("a", || -> Result<String, ()> { panic!("made twice") })
            .unwrap();
        assert!(Arc::ptr_eq(&a, &again));
        assert_eq!(
            registry.get_or_try_insert("b", || Err::<String, _>("refused")),
            Err("refused")
        );
        assert_eq!(registry.len(), 1, "the failed make kept nothing");
        let b = registry
            .get_or_try_insert("b", || Ok::<_, ()>("second".to_owned()))
            .unwrap();
        assert_eq!((a.as_str(), b.as_str(), registry.len()), ("first", "second", 2));
    }
}
