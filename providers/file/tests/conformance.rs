//! The store conformance suite from `rekey-api`, run against real files.

use rekey_api::conformance::{store as suite, unique_name};
use rekey_api::Store;
use rekey_file::FileStore;
use std::path::PathBuf;
use std::sync::Arc;

fn store_path(dir: &tempfile::TempDir) -> PathBuf {
    dir.path().join("secrets.json")
}

#[tokio::test(flavor = "multi_thread")]
async fn missing_key_is_not_found() {
    let dir = tempfile::tempdir().unwrap();
    let store = FileStore::open_or_create(store_path(&dir)).unwrap();
    // The file does not exist yet.
    suite::missing_key_is_not_found(&store, &unique_name("missing")).await;
    // The file exists and holds other keys.
    suite::stage_promote_previous(&store, &unique_name("other")).await;
    suite::missing_key_is_not_found(&store, &unique_name("missing")).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn stage_promote_previous() {
    let dir = tempfile::tempdir().unwrap();
    let store = FileStore::open_or_create(store_path(&dir)).unwrap();
    suite::stage_promote_previous(&store, &unique_name("promote")).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn stage_is_idempotent_and_guarded() {
    let dir = tempfile::tempdir().unwrap();
    let store = FileStore::open_or_create(store_path(&dir)).unwrap();
    suite::stage_is_idempotent_and_guarded(&store, &unique_name("guarded")).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn pending_survives_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let path = store_path(&dir);
    let open = || {
        let path = path.clone();
        async move { Arc::new(FileStore::open_or_create(path).unwrap()) as Arc<dyn Store> }
    };
    suite::pending_survives_reopen(open, &unique_name("durable")).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn concurrent_writer_detected() {
    let dir = tempfile::tempdir().unwrap();
    let path = store_path(&dir);
    let a: Arc<dyn Store> = Arc::new(FileStore::open_or_create(&path).unwrap());
    let b: Arc<dyn Store> = Arc::new(FileStore::open_or_create(&path).unwrap());
    // Race repeatedly: one round could pass by luck of scheduling.
    for round in 0..20 {
        suite::concurrent_writer_detected(a.clone(), b.clone(), &unique_name(&format!("race{round}"))).await;
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn discard_pending_keeps_history() {
    let dir = tempfile::tempdir().unwrap();
    let store = FileStore::open_or_create(store_path(&dir)).unwrap();
    suite::discard_pending_keeps_history(&store, &unique_name("discard")).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn discard_pending_is_idempotent() {
    let dir = tempfile::tempdir().unwrap();
    let store = FileStore::open_or_create(store_path(&dir)).unwrap();
    suite::discard_pending_is_idempotent(&store, &unique_name("discard_twice")).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn discard_of_another_version_is_a_conflict() {
    let dir = tempfile::tempdir().unwrap();
    let store = FileStore::open_or_create(store_path(&dir)).unwrap();
    suite::discard_of_another_version_is_a_conflict(&store, &unique_name("discard_other")).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn discard_on_missing_key_is_not_found() {
    let dir = tempfile::tempdir().unwrap();
    let store = FileStore::open_or_create(store_path(&dir)).unwrap();
    // The file does not exist yet.
    suite::discard_on_missing_key_is_not_found(&store, &unique_name("missing")).await;
    // The file exists and holds other keys.
    suite::stage_after_discard(&store, &unique_name("other")).await;
    suite::discard_on_missing_key_is_not_found(&store, &unique_name("missing")).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn stage_after_discard() {
    let dir = tempfile::tempdir().unwrap();
    let store = FileStore::open_or_create(store_path(&dir)).unwrap();
    suite::stage_after_discard(&store, &unique_name("restage")).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn read_many_matches_read() {
    let dir = tempfile::tempdir().unwrap();
    let store = FileStore::open_or_create(store_path(&dir)).unwrap();
    suite::read_many_matches_read(&store, &unique_name("many")).await;
    // A second handle (no cached state) parses the file once for all keys.
    let other = FileStore::open(store_path(&dir)).unwrap();
    suite::read_many_matches_read(&other, &unique_name("many")).await;
}
