//! rekey's local file store: every key's versions, with stages and timestamps, in one
//! JSON file.
//!
//! - **Explicit creation**: [`FileStore::open`] needs the store file to exist (a typo
//!   in the path or an unmounted file system must not start a second store that no
//!   application reads); only [`FileStore::open_or_create`] creates it, on the first
//!   write. Neither creates a directory.
//! - **Private**: the file and its sidecar lock file are created with mode 0600; a store
//!   file or lock file that group or others can access is refused on open and on every
//!   read and write, with the `chmod` that fixes it.
//! - **Ownership kept**: the file replacing the store file on every write gets the
//!   replaced file's owner, group and mode (0600 or 0400, say); a write that cannot give
//!   it back its owner (not running as root or as that owner) is refused.
//! - **Cost of a write is what it changed**: past [`JOURNAL_FROM`] bytes, a commit appends
//!   the changed keys' entries to `<path>.journal` (one `fdatasync`) instead of rewriting
//!   the file; the journal is compacted into the file when it would outgrow it, and when
//!   the handle is dropped, so between runs the store file alone is whole.
//! - **Atomic and durable**: a compaction writes a 0600 temp file in the same directory,
//!   fsyncs it, renames it over the store file and fsyncs the directory before dropping
//!   the journal; an append that a crash tears is ignored by every reader. All under an
//!   exclusive `flock` on `<path>.lock`. A call returns only once its change is durable.
//! - **Compare-and-set**: under the lock, every write checks its precondition against
//!   what is in the file now (re-read unless its identity shows it is still the one this
//!   handle last read or wrote), so a second handle or a second process is detected
//!   ([`rekey_api::ErrorKind::Conflict`]) and never silently overwritten.
//! - **Group commit**: concurrent writes through one [`FileStore`] are batched by a
//!   writer thread: one lock, at most one re-read, one fsync for the whole batch, each write
//!   still getting its own result. Reads through the same handle meanwhile do not wait for
//!   the fsync: they answer from the state made durable before the batch.
//! - **Bounded**: each key keeps its staged versions plus at most [`HISTORY_LIMIT`]
//!   stage-less ones.
//!
//! Unix only (file modes, `flock`). See the crate's README for the file format.

#![forbid(unsafe_code)]
#![warn(missing_docs)]

mod fsio;
mod model;
mod state;
mod writer;

pub use model::HISTORY_LIMIT;

use async_trait::async_trait;
use fsio::Paths;
use model::{Journal, SecretValue, StoreFile};
use rekey_api::{KeyState, ProviderError, ProviderResult, SecretDoc, Store, StoreCapabilities};
use serde::Deserialize;
use state::Op;
use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::{mpsc, Arc, Mutex, PoisonError};
use tokio::sync::oneshot;
use writer::{Request, Shared};

/// Configuration of a file store: `[stores.NAME]` with `type = "file"`.
///
/// ```toml
/// [stores.local]
/// type = "file"
/// path = "secrets.json"
/// ```
#[derive(Deserialize, Debug, Clone)]
#[serde(deny_unknown_fields)]
pub struct FileStoreConfig {
    /// The store file. The binary resolves a relative path before opening it.
    pub path: PathBuf,
}

/// A store kept in one local JSON file. See the crate documentation for its guarantees.
///
/// Writes through one handle are queued to a writer thread of its own, started on the
/// first write and ended when the handle is dropped (after finishing queued writes). A
/// write whose caller stops waiting still takes effect.
pub struct FileStore {
    shared: Arc<Shared>,
    writer: Mutex<Option<(mpsc::Sender<Request>, std::thread::JoinHandle<()>)>>,
}

/// Below this snapshot size a commit rewrites the whole file (as cheap as an append);
/// above it, commits append to the journal.
pub const JOURNAL_FROM: u64 = 64 * 1024;

/// How long writes may stay in the journal only: the first commit after this folds them
/// into the snapshot, so a program that reads the JSON file directly is never more than
/// about this far behind during a run (and sees everything once the run ends).
pub const FOLD_AFTER: std::time::Duration = std::time::Duration::from_secs(2);

impl FileStore {
    /// Opens the existing store at `path`. Fails with [`rekey_api::ErrorKind::NotFound`]
    /// when the file does not exist (a typo in the path, or a file system that is not
    /// mounted, must not make a rotation create a second store that no application
    /// reads); [`FileStore::open_or_create`] is the way to start a new store. Refused
    /// when the file or its lock file `<path>.lock` is accessible by group or others, or
    /// is not a regular file (symbolic links included).
    ///
    /// A write never creates the file either: when it has vanished since (deleted, or its
    /// file system unmounted), writes fail with `NotFound` and reads find no key.
    pub fn open(path: impl Into<PathBuf>) -> ProviderResult<FileStore> {
        FileStore::open_with(path.into(), false)
    }

    /// Opens the store at `path`, creating it if needed: the file need not exist, and is
    /// created (mode 0600, owned by this process) by the first write; until then every
    /// key reads as not found. Its directory must exist (never created:
    /// [`rekey_api::ErrorKind::NotFound`] otherwise). Refused, like [`FileStore::open`],
    /// when the file or its lock file is accessible by group or others, or is not a
    /// regular file.
    pub fn open_or_create(path: impl Into<PathBuf>) -> ProviderResult<FileStore> {
        FileStore::open_with(path.into(), true)
    }

    fn open_with(path: PathBuf, create: bool) -> ProviderResult<FileStore> {
        if path.as_os_str().is_empty() {
            return Err(ProviderError::invalid_input("store file path is empty"));
        }
        let paths = Paths::new(path)?;
        fsio::check_open(&paths, create)?;
        Ok(FileStore {
            shared: Arc::new(Shared {
                paths,
                create,
                journal_from: JOURNAL_FROM,
                journal_since: Mutex::new(None),
                fold_after: FOLD_AFTER,
                stats: Default::default(),
                cache: Mutex::new(None),
                #[cfg(test)]
                before_write: Mutex::new(None),
            }),
            writer: Mutex::new(None),
        })
    }

    /// Opens the existing store a configuration names, as [`FileStore::open`] does.
    pub fn from_config(config: &FileStoreConfig) -> ProviderResult<FileStore> {
        FileStore::from_config_with(config, false)
    }

    /// Opens the store a configuration names: with `create`, as
    /// [`FileStore::open_or_create`] does (`rekey import`, `rekey rotate --create-store`),
    /// else as [`FileStore::open`] does.
    pub fn from_config_with(config: &FileStoreConfig, create: bool) -> ProviderResult<FileStore> {
        FileStore::open_with(config.path.clone(), create)
    }

    /// Sets the snapshot size from which commits append to the journal instead of
    /// rewriting the file ([`JOURNAL_FROM`] by default; 0 journals every commit after
    /// the first). Takes effect for writes made after the call, before the first write.
    pub fn with_journal_from(mut self, bytes: u64) -> FileStore {
        if let Some(shared) = Arc::get_mut(&mut self.shared) {
            shared.journal_from = bytes;
        }
        self
    }

    /// Sets how long writes may stay in the journal only ([`FOLD_AFTER`] by default).
    /// Takes effect before the first write, like [`FileStore::with_journal_from`].
    pub fn with_fold_after(mut self, after: std::time::Duration) -> FileStore {
        if let Some(shared) = Arc::get_mut(&mut self.shared) {
            shared.fold_after = after;
        }
        self
    }

    /// Whether this handle may create the store file ([`FileStore::open_or_create`]).
    pub fn creates(&self) -> bool {
        self.shared.create
    }

    /// The store file's path.
    pub fn path(&self) -> &Path {
        &self.shared.paths.file
    }

    /// Queues a write and waits until it is durable (or refused).
    async fn write(&self, op: Op) -> ProviderResult<()> {
        let (reply, answer) = oneshot::channel();
        self.submit(Request { op, reply })?;
        answer.await.unwrap_or_else(|_| {
            Err(ProviderError::other(format!(
                "the writer of store file {} stopped before answering; the write may or may not have taken effect",
                self.path().display()
            )))
        })
    }

    /// Hands a request to the writer thread, starting one if there is none or the last
    /// one died.
    fn submit(&self, mut request: Request) -> ProviderResult<()> {
        let mut writer = self.writer.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some((tx, _)) = writer.as_ref() {
            match tx.send(request) {
                Ok(()) => {
                    self.count_submitted();
                    return Ok(());
                }
                // The writer thread died (it only ends on a bug); start another.
                Err(mpsc::SendError(back)) => request = back,
            }
        }
        let (tx, handle) = writer::spawn(self.shared.clone())?;
        let sent = tx.send(request);
        *writer = Some((tx, handle));
        sent.map_err(|_| {
            ProviderError::other(format!(
                "the writer of store file {} stopped at once",
                self.path().display()
            ))
        })?;
        self.count_submitted();
        Ok(())
    }

    fn count_submitted(&self) {
        self.shared
            .stats
            .submitted
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    }
}

/// Ends the writer thread: it finishes queued writes, compacts a journal it leaves
/// behind (so the store file alone is whole between runs), and is waited for.
impl Drop for FileStore {
    fn drop(&mut self) {
        let writer = self.writer.get_mut().unwrap_or_else(PoisonError::into_inner).take();
        if let Some((tx, handle)) = writer {
            drop(tx);
            let _ = handle.join();
        }
    }
}

impl fmt::Debug for FileStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("FileStore").field("path", &self.path()).finish()
    }
}

fn check_key(key: &str) -> ProviderResult<()> {
    if key.is_empty() {
        return Err(ProviderError::invalid_input("store key is empty"));
    }
    Ok(())
}

fn check_key_and_id(key: &str, version_id: &str) -> ProviderResult<()> {
    check_key(key)?;
    if version_id.is_empty() {
        return Err(ProviderError::invalid_input(format!(
            "key {key:?}: version id is empty"
        )));
    }
    Ok(())
}

/// Runs blocking file work off the async runtime.
async fn blocking<T: Send + 'static>(work: impl FnOnce() -> ProviderResult<T> + Send + 'static) -> ProviderResult<T> {
    tokio::task::spawn_blocking(work)
        .await
        .unwrap_or_else(|_| Err(ProviderError::other("file store task failed")))
}

#[async_trait]
impl Store for FileStore {
    fn capabilities(&self) -> StoreCapabilities {
        StoreCapabilities {
            compare_and_set: true,
            write_check_is_a_read: false,
        }
    }

    fn describe(&self) -> String {
        format!("file {}", self.path().display())
    }

    async fn read(&self, key: &str) -> ProviderResult<KeyState> {
        check_key(key)?;
        let shared = self.shared.clone();
        let key = key.to_owned();
        blocking(move || {
            let path = &shared.paths.file;
            let not_found =
                || ProviderError::not_found(format!("key {key:?} not found in store file {}", path.display()));
            // The state this handle's writer last read or wrote (or is making durable, see
            // `writer::Cache::committing`), if the file is still that.
            if let Some(cache) = shared.cache().as_ref() {
                if cache.current_for_readers(&shared.paths)? {
                    return cache.key_state(&key)?.ok_or_else(not_found);
                }
            }
            // The journal first: see `fsio::read_journal`.
            let journal_raw = fsio::read_journal(&shared.paths)?;
            match fsio::read_raw(&shared.paths)? {
                None if shared.create => Err(ProviderError::not_found(format!(
                    "key {key:?} not found: store file {} does not exist yet",
                    path.display()
                ))),
                None => Err(fsio::missing(&shared.paths).context(format_args!("key {key:?} not found"))),
                Some(raw) => {
                    let journal = journal_raw
                        .as_ref()
                        .map(|j| Journal::parse(&shared.paths.journal, &j.bytes))
                        .transpose()?;
                    StoreFile::read_key(path, &raw.bytes, journal.as_ref(), &key)?.ok_or_else(not_found)
                }
            }
        })
        .await
    }

    async fn read_many(&self, keys: &[String]) -> Vec<ProviderResult<KeyState>> {
        let shared = self.shared.clone();
        let keys = keys.to_vec();
        let count = keys.len();
        let result = blocking(move || {
            let path = &shared.paths.file;
            let not_found =
                |key: &str| ProviderError::not_found(format!("key {key:?} not found in store file {}", path.display()));
            let for_each = |state: &dyn Fn(&str) -> ProviderResult<Option<KeyState>>| {
                keys.iter()
                    .map(|key| {
                        check_key(key)?;
                        state(key)?.ok_or_else(|| not_found(key))
                    })
                    .collect::<Vec<_>>()
            };
            if let Some(cache) = shared.cache().as_ref() {
                if cache.current_for_readers(&shared.paths)? {
                    return Ok(for_each(&|key| cache.key_state(key)));
                }
            }
            match fsio::load(&shared.paths)? {
                None if shared.create => Ok(keys.iter().map(|key| Err(not_found(key))).collect()),
                None => Err(fsio::missing(&shared.paths)),
                // One parse of the file (and journal) for every key, kept for the next
                // reads and writes when this handle has no state yet.
                Some(loaded) => {
                    let answers = Ok(for_each(&|key| loaded.model.key_state(key)));
                    let mut cache = shared.cache();
                    if cache.is_none() {
                        *cache = Some(writer::Cache::loaded(loaded));
                    }
                    answers
                }
            }
        })
        .await;
        match result {
            Ok(states) => states,
            Err(e) => (0..count).map(|_| Err(e.clone())).collect(),
        }
    }

    async fn check_writable(&self, key: &str) -> ProviderResult<()> {
        check_key(key)?;
        let shared = self.shared.clone();
        blocking(move || {
            fsio::check_writable_paths(&shared.paths)?;
            // The store parses: known when the writer's state is still the files'; else
            // loaded once, under the state's mutex, and kept as that state, so that a
            // plan over many credentials parses the store once, not once per credential.
            let mut cache = shared.cache();
            if let Some(state) = cache.as_ref() {
                if state.current_for_readers(&shared.paths)? {
                    return Ok(());
                }
            }
            shared.stats.loads.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            match fsio::load(&shared.paths)? {
                None if !shared.create => Err(fsio::missing_file(&shared.paths)),
                None => Ok(()),
                Some(loaded) => {
                    *cache = Some(writer::Cache::loaded(loaded));
                    Ok(())
                }
            }
        })
        .await
    }

    async fn put_current(&self, key: &str, version_id: &str, doc: &SecretDoc) -> ProviderResult<()> {
        check_key_and_id(key, version_id)?;
        self.write(Op::PutCurrent {
            key: key.to_owned(),
            id: version_id.to_owned(),
            value: SecretValue::from_doc(doc),
        })
        .await
    }

    async fn stage_pending(&self, key: &str, version_id: &str, doc: &SecretDoc) -> ProviderResult<()> {
        check_key_and_id(key, version_id)?;
        self.write(Op::StagePending {
            key: key.to_owned(),
            id: version_id.to_owned(),
            value: SecretValue::from_doc(doc),
        })
        .await
    }

    async fn promote(&self, key: &str, version_id: &str, previous_revoked: bool) -> ProviderResult<()> {
        check_key_and_id(key, version_id)?;
        self.write(Op::Promote {
            key: key.to_owned(),
            id: version_id.to_owned(),
            previous_revoked,
        })
        .await
    }

    async fn mark_revoked(&self, key: &str, version_id: &str) -> ProviderResult<()> {
        check_key_and_id(key, version_id)?;
        self.write(Op::MarkRevoked {
            key: key.to_owned(),
            id: version_id.to_owned(),
        })
        .await
    }

    async fn discard_pending(&self, key: &str, version_id: &str) -> ProviderResult<()> {
        check_key_and_id(key, version_id)?;
        self.write(Op::DiscardPending {
            key: key.to_owned(),
            id: version_id.to_owned(),
        })
        .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::Ordering;
    use std::time::Duration;

    fn doc(password: &str) -> SecretDoc {
        let mut d = SecretDoc::new();
        d.set("username", "app");
        d.set("password", password);
        d
    }

    /// Waits until the writer has been handed `count` requests.
    async fn wait_submitted(store: &FileStore, count: u64) {
        for _ in 0..6000 {
            if store.shared.stats.submitted.load(Ordering::Relaxed) >= count {
                return;
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        panic!("requests were not submitted");
    }

    #[tokio::test(flavor = "multi_thread")]
    async fn concurrent_writes_share_one_lock_and_one_fsync() {
        let dir = tempfile::tempdir().unwrap();
        let store = Arc::new(FileStore::open_or_create(dir.path().join("s.json")).unwrap());
        // Hold the lock so the writer's first batch waits while the others queue up.
        let holder = fsio::lock(&store.shared.paths).unwrap();
        let mut tasks = Vec::new();
        for i in 0..50 {
            let store = store.clone();
            tasks.push(tokio::spawn(async move {
                store.put_current(&format!("k{i}"), "v1", &doc("pw")).await
            }));
        }
        wait_submitted(&store, 50).await;
        drop(holder);
        for task in tasks {
            task.await.unwrap().unwrap();
        }
        assert_eq!(store.shared.stats.batches.load(Ordering::Relaxed), 1, "one batch");
        assert_eq!(
            store.shared.stats.commits.load(Ordering::Relaxed),
            1,
            "one fsynced replace"
        );
        for i in 0..50 {
            assert_eq!(store.read(&format!("k{i}")).await.unwrap().current().unwrap().id, "v1");
        }
    }

    /// Pauses the writer before the file system work of each batch: the receiver gets a
    /// message when it pauses; dropping the sender resumes it for good.
    fn pause_writer(store: &FileStore) -> (std::sync::mpsc::Receiver<()>, std::sync::mpsc::Sender<()>) {
        let (paused_tx, paused) = std::sync::mpsc::channel();
        let (resume, resume_rx) = std::sync::mpsc::channel::<()>();
        *store.shared.before_write.lock().unwrap() = Some(Box::new(move || {
            let _ = paused_tx.send(());
            let _ = resume_rx.recv();
        }));
        (paused, resume)
    }

    /// `f`'s output; panics when it does not come within a minute (a read that waits for
    /// a paused writer would never come: the test fails instead of hanging).
    async fn bounded<T>(f: impl std::future::Future<Output = T>) -> T {
        tokio::time::timeout(Duration::from_secs(60), f)
            .await
            .expect("the read waited for the commit")
    }

    /// A read while a batch is being made durable answers at once, with the state before
    /// the batch for the keys it changes (never a change that is not durable yet), for a
    /// rewrite of a small store and for a journal append alike.
    #[tokio::test(flavor = "multi_thread")]
    async fn reads_during_a_commit_answer_from_the_state_before_it() {
        for journal_from in [JOURNAL_FROM, 0] {
            let dir = tempfile::tempdir().unwrap();
            let path = dir.path().join("s.json");
            let store = Arc::new(
                FileStore::open_or_create(&path)
                    .unwrap()
                    .with_journal_from(journal_from),
            );
            store.put_current("k", "v1", &doc("one")).await.unwrap();
            store.put_current("other", "o1", &doc("other")).await.unwrap();
            let (paused, resume) = pause_writer(&store);
            let writing = {
                let store = store.clone();
                tokio::spawn(async move { store.stage_pending("k", "v2", &doc("two")).await })
            };
            tokio::task::spawn_blocking(move || paused.recv().unwrap())
                .await
                .unwrap();
            let state = bounded(store.read("k")).await.unwrap();
            assert_eq!(state.current().unwrap().id, "v1");
            assert!(state.pending().is_none(), "a change not yet durable was visible");
            let keys = ["k".to_owned(), "other".to_owned(), "new".to_owned()];
            let many = bounded(store.read_many(&keys)).await;
            assert!(many[0].as_ref().unwrap().pending().is_none());
            assert_eq!(many[1].as_ref().unwrap().current().unwrap().id, "o1");
            assert_eq!(many[2].as_ref().unwrap_err().kind(), rekey_api::ErrorKind::NotFound);
            bounded(store.check_writable("k")).await.unwrap();
            assert!(!writing.is_finished(), "the write answered before it was durable");
            // Resumes this batch, and lets every later one pass.
            drop(resume);
            writing.await.unwrap().unwrap();
            let state = store.read("k").await.unwrap();
            assert_eq!(state.pending().unwrap().id, "v2", "journal_from {journal_from}");
            assert_eq!(loads(&store), 1, "no read parsed the files");
            // A new store: nothing to answer from yet, so readers wait for the first commit.
            let fresh = Arc::new(FileStore::open_or_create(dir.path().join("fresh.json")).unwrap());
            let (paused, resume) = pause_writer(&fresh);
            let writing = {
                let fresh = fresh.clone();
                tokio::spawn(async move { fresh.put_current("k", "v1", &doc("one")).await })
            };
            tokio::task::spawn_blocking(move || paused.recv().unwrap())
                .await
                .unwrap();
            let reading = {
                let fresh = fresh.clone();
                tokio::spawn(async move { fresh.read("k").await })
            };
            drop(resume);
            writing.await.unwrap().unwrap();
            assert_eq!(reading.await.unwrap().unwrap().current().unwrap().id, "v1");
        }
    }

    #[tokio::test(flavor = "multi_thread")]
    async fn a_refused_write_in_a_batch_does_not_affect_the_others() {
        let dir = tempfile::tempdir().unwrap();
        let store = FileStore::open_or_create(dir.path().join("s.json")).unwrap();
        let holder = fsio::lock(&store.shared.paths).unwrap();
        let ops = vec![
            Op::PutCurrent {
                key: "k".into(),
                id: "v1".into(),
                value: SecretValue::from_doc(&doc("one")),
            },
            Op::StagePending {
                key: "k".into(),
                id: "v2".into(),
                value: SecretValue::from_doc(&doc("two")),
            },
            Op::StagePending {
                key: "k".into(),
                id: "v3".into(),
                value: SecretValue::from_doc(&doc("three")),
            },
            Op::Promote {
                key: "k".into(),
                id: "v2".into(),
                previous_revoked: false,
            },
            Op::MarkRevoked {
                key: "k".into(),
                id: "nope".into(),
            },
        ];
        let mut answers = Vec::new();
        for op in ops {
            let (reply, answer) = oneshot::channel();
            store.submit(Request { op, reply }).unwrap();
            answers.push(answer);
        }
        drop(holder);
        let mut results = Vec::new();
        for answer in answers {
            results.push(answer.await.unwrap().map_err(|e| e.kind()));
        }
        use rekey_api::ErrorKind;
        assert_eq!(
            results,
            vec![
                Ok(()),
                Ok(()),
                Err(ErrorKind::Conflict),
                Ok(()),
                Err(ErrorKind::NotFound)
            ]
        );
        assert_eq!(store.shared.stats.commits.load(Ordering::Relaxed), 1);
        let state = store.read("k").await.unwrap();
        assert_eq!(state.current().unwrap().id, "v2");
        assert_eq!(state.previous().unwrap().id, "v1");
        assert!(state.version("v3").is_none());
    }

    #[tokio::test(flavor = "multi_thread")]
    async fn writes_that_change_nothing_do_not_rewrite_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let store = FileStore::open_or_create(dir.path().join("s.json")).unwrap();
        store.put_current("k", "v1", &doc("one")).await.unwrap();
        store.put_current("k", "v1", &doc("one")).await.unwrap();
        store.mark_revoked("k", "v1").await.unwrap();
        store.mark_revoked("k", "v1").await.unwrap();
        assert_eq!(store.shared.stats.commits.load(Ordering::Relaxed), 2);
        store.stage_pending("k", "v2", &doc("two")).await.unwrap();
        store.discard_pending("k", "v2").await.unwrap();
        store.discard_pending("k", "v2").await.unwrap();
        store.discard_pending("k", "other").await.unwrap();
        assert_eq!(
            store.shared.stats.commits.load(Ordering::Relaxed),
            4,
            "a discard with nothing pending changes nothing"
        );
    }

    fn loads(store: &FileStore) -> u64 {
        store.shared.stats.loads.load(Ordering::Relaxed)
    }

    /// Replaces the store file by hand (a new inode, as any writer's rename gives),
    /// changing version `id` of `key` to stage `to`.
    fn restage_by_hand(path: &Path, key: &str, id: &str, to: &str) {
        let mut file: serde_json::Value = serde_json::from_slice(&std::fs::read(path).unwrap()).unwrap();
        for v in file["keys"][key]["versions"].as_array_mut().unwrap() {
            if v["id"] == id {
                v["stages"] = serde_json::json!([to]);
            }
        }
        let tmp = path.with_extension("by-hand");
        std::fs::write(&tmp, serde_json::to_vec(&file).unwrap()).unwrap();
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&tmp, std::fs::Permissions::from_mode(0o600)).unwrap();
        std::fs::rename(&tmp, path).unwrap();
    }

    #[tokio::test(flavor = "multi_thread")]
    async fn a_writer_reuses_its_own_state_while_the_file_is_unchanged() {
        let dir = tempfile::tempdir().unwrap();
        let store = FileStore::open_or_create(dir.path().join("s.json")).unwrap();
        store.put_current("k", "v1", &doc("one")).await.unwrap();
        assert_eq!(loads(&store), 1, "the first batch looks for the file");
        for i in 0..10 {
            let key = format!("k{i}");
            store.put_current(&key, "v1", &doc("one")).await.unwrap();
            store.stage_pending(&key, "v2", &doc("two")).await.unwrap();
            assert_eq!(
                store.stage_pending(&key, "v3", &doc("three")).await.unwrap_err().kind(),
                rekey_api::ErrorKind::Conflict
            );
            store.promote(&key, "v2", true).await.unwrap();
        }
        assert_eq!(loads(&store), 1, "the file was not read again");
        assert_eq!(store.shared.stats.commits.load(Ordering::Relaxed), 31);
        let on_disk = model::StoreFile::parse(store.path(), &std::fs::read(store.path()).unwrap()).unwrap();
        assert_eq!(on_disk.key_state("k9").unwrap().unwrap().current().unwrap().id, "v2");
    }

    #[tokio::test(flavor = "multi_thread")]
    async fn preflight_of_many_keys_parses_the_store_once() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("s.json");
        let writer = FileStore::open_or_create(&path).unwrap();
        for i in 0..20 {
            writer.put_current(&format!("k{i}"), "v1", &doc("one")).await.unwrap();
        }
        let store = Arc::new(FileStore::open(&path).unwrap());
        let mut tasks = Vec::new();
        for i in 0..20 {
            let store = store.clone();
            tasks.push(tokio::spawn(
                async move { store.check_writable(&format!("k{i}")).await },
            ));
        }
        for task in tasks {
            task.await.unwrap().unwrap();
        }
        assert_eq!(loads(&store), 1, "one parse for 20 preflights");
        // A change by another handle is seen: the next preflight parses again, and a
        // file that no longer parses is reported.
        writer.put_current("k0", "v2", &doc("two")).await.unwrap();
        store.check_writable("k0").await.unwrap();
        assert_eq!(loads(&store), 2);
        drop(writer);
        std::fs::write(&path, b"{not json").unwrap();
        let err = store.check_writable("k0").await.unwrap_err();
        assert_eq!(err.kind(), rekey_api::ErrorKind::InvalidInput, "{err}");
    }

    #[tokio::test(flavor = "multi_thread")]
    async fn a_write_by_another_handle_is_seen_by_the_next_write() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("s.json");
        let a = FileStore::open_or_create(&path).unwrap();
        let b = FileStore::open_or_create(&path).unwrap();
        a.put_current("k", "v1", &doc("one")).await.unwrap();
        a.put_current("other", "v1", &doc("one")).await.unwrap();
        let before = loads(&a);
        b.stage_pending("k", "theirs", &doc("theirs")).await.unwrap();
        // a's reader does not answer from a's stale state.
        assert_eq!(a.read("k").await.unwrap().pending().unwrap().id, "theirs");
        let err = a.stage_pending("k", "mine", &doc("mine")).await.unwrap_err();
        assert_eq!(err.kind(), rekey_api::ErrorKind::Conflict, "{err}");
        assert!(err.message().contains("theirs"), "{err}");
        assert_eq!(loads(&a), before + 1, "the changed file was read again");
        // a's next write keeps b's change.
        a.put_current("other", "v2", &doc("two")).await.unwrap();
        b.promote("k", "theirs", false).await.unwrap();
        a.mark_revoked("k", "v1").await.unwrap();
        let state = a.read("k").await.unwrap();
        assert_eq!(state.current().unwrap().id, "theirs");
        assert!(state.previous().unwrap().revoked.is_some());
        assert_eq!(a.read("other").await.unwrap().current().unwrap().id, "v2");
    }

    #[tokio::test(flavor = "multi_thread")]
    async fn a_file_replaced_by_hand_is_read_again() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("s.json");
        let store = FileStore::open_or_create(&path).unwrap();
        store.put_current("k", "v1", &doc("one")).await.unwrap();
        store.stage_pending("k", "v2", &doc("two")).await.unwrap();
        let before = loads(&store);
        // Same content size, new inode: "v2" is no longer pending but history.
        restage_by_hand(&path, "k", "v2", "previous");
        assert!(store.read("k").await.unwrap().pending().is_none());
        let err = store.promote("k", "v2", false).await.unwrap_err();
        assert_eq!(err.kind(), rekey_api::ErrorKind::Conflict, "{err}");
        assert_eq!(loads(&store), before + 1);

        // Deleted by hand: a handle that must not create the store refuses to write...
        let existing = FileStore::open(&path).unwrap();
        std::fs::remove_file(&path).unwrap();
        let err = existing.put_current("fresh", "v1", &doc("one")).await.unwrap_err();
        assert_eq!(err.kind(), rekey_api::ErrorKind::NotFound, "{err}");
        assert!(err.message().contains("does not exist"), "{err}");
        assert!(!path.exists());
        // ...and one that may create it starts an empty store again.
        store.put_current("fresh", "v1", &doc("one")).await.unwrap();
        assert_eq!(
            store.read("k").await.unwrap_err().kind(),
            rekey_api::ErrorKind::NotFound
        );
    }

    #[tokio::test(flavor = "multi_thread")]
    async fn a_file_edited_in_place_is_read_again() {
        use std::os::unix::fs::MetadataExt;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("s.json");
        let store = FileStore::open_or_create(&path).unwrap();
        store.put_current("k", "v1", &doc("one")).await.unwrap();
        let inode = std::fs::metadata(&path).unwrap().ino();
        // Past any coarse timestamp granularity, then the same bytes but one stage
        // (same length), written into the same inode.
        tokio::time::sleep(Duration::from_millis(50)).await;
        let text = std::fs::read_to_string(&path).unwrap();
        let edited = text.replace("\"current\"", "\"pending\"");
        assert_eq!(edited.len(), text.len());
        std::fs::write(&path, edited).unwrap();
        assert_eq!(std::fs::metadata(&path).unwrap().ino(), inode, "edited in place");
        assert_eq!(store.read("k").await.unwrap().pending().unwrap().id, "v1");
        let err = store.put_current("k", "v2", &doc("two")).await.unwrap_err();
        assert_eq!(err.kind(), rekey_api::ErrorKind::Conflict, "{err}");
        assert!(err.message().contains("pending rotation"), "{err}");
    }

    #[tokio::test(flavor = "multi_thread")]
    async fn a_file_made_group_readable_is_refused_on_the_next_write() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("s.json");
        let store = FileStore::open_or_create(&path).unwrap();
        store.put_current("k", "v1", &doc("one")).await.unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o640)).unwrap();
        let err = store.put_current("k", "v2", &doc("two")).await.unwrap_err();
        assert_eq!(err.kind(), rekey_api::ErrorKind::PermissionDenied, "{err}");
        assert!(err.message().contains("chmod 600"), "{err}");
    }
}
