//! The store conformance suite from `rekey-api`, run against the in-memory test double.

use rekey_api::conformance::unique_name;
use rekey_api::testing::MemoryStore;
use rekey_api::Store;
use std::sync::Arc;

// "Reopening" a memory store is taking another clone of it: clones share the state,
// which is what the engine's restarted process sees in the crash simulation.
rekey_api::store_conformance_tests! {
    setup = async {
        let backend = MemoryStore::new();
        let open = move || {
            let store = backend.clone();
            async move { Arc::new(store) as Arc<dyn Store> }
        };
        ((), open)
    },
}

/// The same race with the two writers on different worker threads.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_writers_on_threads() {
    let backend = MemoryStore::new();
    for round in 0..50 {
        let key = unique_name(&format!("threads{round}"));
        backend
            .put_current(&key, "v1", &rekey_api::SecretDoc::new())
            .await
            .unwrap();
        let tasks: Vec<_> = (0..2)
            .map(|i| {
                let (store, key) = (backend.clone(), key.clone());
                tokio::spawn(async move {
                    let mut doc = rekey_api::SecretDoc::new();
                    doc.set("writer", i);
                    store.stage_pending(&key, &format!("v{i}"), &doc).await
                })
            })
            .collect();
        let mut won = 0;
        for task in tasks {
            match task.await.unwrap() {
                Ok(()) => won += 1,
                Err(e) => assert_eq!(e.kind(), rekey_api::ErrorKind::Conflict, "{e}"),
            }
        }
        assert_eq!(won, 1, "exactly one writer wins");
    }
}

#[test]
fn declares_compare_and_set() {
    let caps = MemoryStore::new().capabilities();
    assert!(caps.compare_and_set && !caps.write_check_is_a_read);
    assert!(MemoryStore::new().describe().contains("memory store"));
}
