//! The store conformance suite from `rekey-api`, run against the in-memory test double.

use rekey_api::conformance::{store as suite, unique_name};
use rekey_api::testing::MemoryStore;
use rekey_api::Store;
use std::sync::Arc;

#[tokio::test(flavor = "multi_thread")]
async fn missing_key_is_not_found() {
    let store = MemoryStore::new();
    // An empty store.
    suite::missing_key_is_not_found(&store, &unique_name("missing")).await;
    // A store holding other keys.
    suite::stage_promote_previous(&store, &unique_name("other")).await;
    suite::missing_key_is_not_found(&store, &unique_name("missing")).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn stage_promote_previous() {
    let store = MemoryStore::new();
    suite::stage_promote_previous(&store, &unique_name("promote")).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn stage_is_idempotent_and_guarded() {
    let store = MemoryStore::new();
    suite::stage_is_idempotent_and_guarded(&store, &unique_name("guarded")).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn discard_pending_keeps_history() {
    let store = MemoryStore::new();
    suite::discard_pending_keeps_history(&store, &unique_name("discard")).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn discard_pending_is_idempotent() {
    let store = MemoryStore::new();
    suite::discard_pending_is_idempotent(&store, &unique_name("discard")).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn discard_of_another_version_is_a_conflict() {
    let store = MemoryStore::new();
    suite::discard_of_another_version_is_a_conflict(&store, &unique_name("discard")).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn discard_on_missing_key_is_not_found() {
    let store = MemoryStore::new();
    suite::discard_on_missing_key_is_not_found(&store, &unique_name("discard")).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn stage_after_discard() {
    let store = MemoryStore::new();
    suite::stage_after_discard(&store, &unique_name("discard")).await;
}

/// "Reopening" a memory store is taking another clone of it: clones share the state,
/// which is what the engine's restarted process sees in the crash simulation.
#[tokio::test(flavor = "multi_thread")]
async fn pending_survives_reopen() {
    let backend = MemoryStore::new();
    let open = || {
        let store = backend.clone();
        async move { Arc::new(store) as Arc<dyn Store> }
    };
    suite::pending_survives_reopen(open, &unique_name("durable")).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn concurrent_writer_detected() {
    let backend = MemoryStore::new();
    let a: Arc<dyn Store> = Arc::new(backend.clone());
    let b: Arc<dyn Store> = Arc::new(backend.clone());
    for round in 0..20 {
        suite::concurrent_writer_detected(a.clone(), b.clone(), &unique_name(&format!("race{round}"))).await;
    }
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
    assert!(caps.compare_and_set && caps.hides_pending_from_readers);
    assert!(MemoryStore::new().describe().contains("memory store"));
}
