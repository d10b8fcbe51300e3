//! The store conformance suite again, with every commit after a store's first going to the
//! journal (`with_journal_from(0)`), so the suite runs on snapshot + journal: one test per
//! rule, each on its own file in a fresh directory; `open` opens another handle on the
//! same file (a reopen, or a second writer).

use rekey_api::Store;
use rekey_file::FileStore;
use std::sync::Arc;

rekey_api::store_conformance_tests! {
    setup = async {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("secrets.json");
        let open = move || {
            let path = path.clone();
            async move { Arc::new(FileStore::open_or_create(path).unwrap().with_journal_from(0)) as Arc<dyn Store> }
        };
        (dir, open)
    },
}
