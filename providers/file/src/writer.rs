//! Group commit: one writer thread per [`crate::FileStore`] drains every queued write,
//! takes the lock once, brings its view of the file up to date once, applies each write
//! in arrival order (each with its own result), persists once (one journal append, or a
//! compaction) and then answers every waiter. When the handle is dropped the writer
//! compacts a journal it leaves behind, so the store file is whole between runs.

use crate::fsio::{self, JournalFile, Paths, SecureBuf, Snapshot};
use crate::model::StoreFile;
use crate::state::Op;
use rekey_api::{ProviderError, ProviderResult};
use std::collections::BTreeSet;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{self, Receiver};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::thread;
use std::time::{Duration, Instant, SystemTime};
use tokio::sync::oneshot;

/// One queued write and where to send its result.
pub(crate) struct Request {
    pub op: Op,
    pub reply: oneshot::Sender<ProviderResult<()>>,
}

/// Counters, for tests of the batching.
#[derive(Default)]
pub(crate) struct Stats {
    /// Requests handed to the writer.
    pub submitted: AtomicU64,
    /// Batches processed (lock taken, file checked).
    pub batches: AtomicU64,
    /// Batches that made a change durable (journal append or compaction).
    pub commits: AtomicU64,
    /// Of those, the ones that rewrote the snapshot (compactions).
    pub compactions: AtomicU64,
    /// Batches that read and parsed the file (the others reused the cached state).
    pub loads: AtomicU64,
}

/// What a store handle and its writer thread share.
pub(crate) struct Shared {
    pub paths: Paths,
    /// Whether the first write may create the store file ([`crate::FileStore::open_or_create`]).
    pub create: bool,
    /// Snapshots smaller than this are rewritten whole on every commit; the journal of a
    /// larger one is compacted when it would outgrow the snapshot (or this, if larger).
    pub journal_from: u64,
    /// When this writer first appended to the live journal (none since the last
    /// compaction): past `fold_after` the next commit compacts, so a program reading the
    /// snapshot directly is never more than about that far behind during a run.
    pub journal_since: Mutex<Option<Instant>>,
    /// [`crate::FOLD_AFTER`] unless a test says otherwise.
    pub fold_after: Duration,
    pub stats: Stats,
    /// The writer's view of the file between batches; readers use it too (see [`Cache`]).
    /// Taken out by the writer for the length of a batch.
    pub cache: Mutex<Option<Cache>>,
}

impl Shared {
    pub(crate) fn cache(&self) -> MutexGuard<'_, Option<Cache>> {
        self.cache.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// The store as this writer last read or wrote it, kept between batches so that a batch
/// need not re-read and re-parse a file nobody else has changed since.
///
/// Why checking the file's identity under the lock is enough: every writer (this crate,
/// in any process, through any handle) changes the file only while holding the lock, and
/// only by renaming a new file over it, which gives the path a new inode. The snapshot
/// keeps the file it describes open, so its inode number cannot be freed and reused by
/// such a new file (see [`Snapshot`]). So, under the lock, a store path that still has
/// the snapshot's `st_dev`/`st_ino` (and size, mtime and ctime, which also catch an edit
/// in place by hand) holds exactly the bytes this writer last read or wrote, and the
/// cached model is what a re-read would give. Anything else, or any doubt (an error,
/// a failed persist), drops the cache and the next batch reads the file again.
///
/// A reader may answer from the cache on the same grounds: a store path with the
/// snapshot's identity holds exactly the bytes the model was read from or written as, so
/// the answer is the one reading the file at that instant would give (a change made
/// after the `stat` is as unseen as it would be by a read that opened the file then).
///
/// Secrets in the model are zeroized when it drops.
pub(crate) struct Cache {
    pub model: StoreFile,
    pub snapshot: Snapshot,
    /// The journal as last read or appended (`None`: there was none).
    pub journal: Option<JournalFile>,
    size: usize,
}

impl Cache {
    /// The state of files just read (identities taken before reading, see [`fsio::load`]).
    pub(crate) fn loaded(loaded: fsio::Loaded) -> Cache {
        Cache {
            model: loaded.model,
            snapshot: loaded.snapshot,
            journal: loaded.journal,
            size: loaded.size,
        }
    }

    /// Whether the store file and journal are still what this state was read from or
    /// written as (see above).
    pub(crate) fn unchanged(&self, paths: &Paths) -> ProviderResult<bool> {
        fsio::unchanged(paths, &self.snapshot, self.journal.as_ref())
    }
}

/// Starts a writer thread; it ends once every sender is dropped and the queue is empty.
pub(crate) fn spawn(shared: Arc<Shared>) -> ProviderResult<(mpsc::Sender<Request>, thread::JoinHandle<()>)> {
    let (tx, rx) = mpsc::channel();
    let handle = thread::Builder::new()
        .name("rekey-file-writer".into())
        .spawn(move || run(&shared, &rx))
        .map_err(|e| ProviderError::other(format!("cannot start the file store writer thread: {e}")))?;
    Ok((tx, handle))
}

fn run(shared: &Shared, rx: &Receiver<Request>) {
    while let Ok(first) = rx.recv() {
        let mut batch = vec![first];
        batch.extend(rx.try_iter());
        commit(shared, rx, batch);
    }
    compact_on_exit(shared);
}

/// The handle is gone: fold a journal this writer leaves into the snapshot, so that the
/// store file alone is whole again. Failure changes nothing (the journal stays valid).
fn compact_on_exit(shared: &Shared) {
    let journal_left = shared
        .cache()
        .as_ref()
        .is_some_and(|c| c.journal.as_ref().is_some_and(JournalFile::live));
    if !journal_left {
        return;
    }
    let Ok(_lock) = fsio::lock(&shared.paths) else {
        return;
    };
    let cache = shared.cache().take();
    if let Ok(Some(mut cache)) = current(shared, cache) {
        if cache.journal.is_some() {
            let generation = cache.model.generation + 1;
            if fsio::persist(&shared.paths, &mut cache.model, generation, cache.size).is_ok() {
                shared.stats.compactions.fetch_add(1, Ordering::Relaxed);
            }
        }
    }
}

fn commit(shared: &Shared, rx: &Receiver<Request>, mut batch: Vec<Request>) {
    let lock = fsio::lock(&shared.paths);
    // This handle's readers wait for the batch (one commit) and then answer from its
    // state, rather than each reading and parsing the files meanwhile (at 16 parallel
    // reads of a 5 MB store, 160 MB of buffers).
    let mut held = shared.cache();
    let cache = held.take();
    // Writes queued while this thread waited for the lock join the same batch.
    batch.extend(rx.try_iter());
    shared.stats.batches.fetch_add(1, Ordering::Relaxed);
    let (ops, replies): (Vec<Op>, Vec<_>) = batch.into_iter().map(|r| (r.op, r.reply)).unzip();
    let (results, cache) = match &lock {
        Ok(_) => apply_all(shared, ops, cache),
        Err(e) => (vec![Err(e.clone()); ops.len()], None),
    };
    *held = cache;
    drop(held);
    // Release the lock before answering: the change is durable already.
    drop(lock);
    for (reply, result) in replies.into_iter().zip(results) {
        // A waiter that gave up is not an error: its write took effect all the same.
        let _ = reply.send(result);
    }
}

/// The store as it is on disk now, from the cache when the file is unchanged since (see
/// [`Cache`]), else read and parsed. `None` when there is no file. Call with the lock held.
fn current(shared: &Shared, cache: Option<Cache>) -> ProviderResult<Option<Cache>> {
    if let Some(cache) = cache {
        if cache.unchanged(&shared.paths)? {
            return Ok(Some(cache));
        }
    }
    shared.stats.loads.fetch_add(1, Ordering::Relaxed);
    Ok(fsio::load(&shared.paths)?.map(Cache::loaded))
}

/// With the lock held: bring the state up to date, apply every op in order, persist once
/// if anything changed. Returns the results and the state to keep for the next batch.
fn apply_all(shared: &Shared, ops: Vec<Op>, cache: Option<Cache>) -> (Vec<ProviderResult<()>>, Option<Cache>) {
    let count = ops.len();
    let (mut model, old) = match current(shared, cache) {
        Ok(Some(Cache {
            model,
            snapshot,
            journal,
            size,
        })) => (model, Some((snapshot, journal, size))),
        Ok(None) => match fsio::check_creatable(&shared.paths, shared.create) {
            Ok(()) => (StoreFile::default(), None),
            Err(e) => return (vec![Err(e); count], None),
        },
        Err(e) => return (vec![Err(e); count], None),
    };
    let now = SystemTime::now();
    let mut changed = BTreeSet::new();
    let mut results = Vec::with_capacity(count);
    for op in ops {
        let key = op.key().to_owned();
        results.push(model.apply(op, now).map(|did_change| {
            if did_change {
                changed.insert(key);
            }
        }));
    }
    if changed.is_empty() {
        // A refused write leaves the model as it was: it still matches the file.
        let cache = old.map(|(snapshot, journal, size)| Cache {
            model,
            snapshot,
            journal,
            size,
        });
        return (results, cache);
    }
    match persist(shared, &mut model, &changed, old) {
        Ok((snapshot, journal, size)) => {
            shared.stats.commits.fetch_add(1, Ordering::Relaxed);
            (
                results,
                Some(Cache {
                    model,
                    snapshot,
                    journal,
                    size,
                }),
            )
        }
        Err(e) => {
            // Nothing of this batch is known to be durable; even a write that was
            // already in effect may have depended on an earlier one in the batch.
            for result in results.iter_mut().filter(|r| r.is_ok()) {
                *result = Err(e.clone());
            }
            (results, None)
        }
    }
}

type Persisted = (Snapshot, Option<JournalFile>, usize);

/// Makes the changed keys durable: appends their records to the journal, or compacts
/// (rewrites the snapshot, dropping the journal) when the store is new, in format 1,
/// smaller than [`Shared::journal_from`], or when the journal would outgrow the snapshot.
/// So a commit costs what changed, and compaction, amortized over the appends that
/// filled the journal, adds at most about as much again.
fn persist(
    shared: &Shared,
    model: &mut StoreFile,
    changed: &BTreeSet<String>,
    old: Option<(Snapshot, Option<JournalFile>, usize)>,
) -> ProviderResult<Persisted> {
    let paths = &shared.paths;
    let (snapshot, journal, size) = match old {
        Some((snapshot, journal, size)) if !model.needs_upgrade() && size as u64 >= shared.journal_from => {
            (snapshot, journal, size)
        }
        old => return compact(shared, model, old.map_or(0, |(_, _, size)| size)),
    };
    let mut records = SecureBuf::with_capacity(2048 * changed.len());
    for key in changed {
        model.write_record(key, &mut records).map_err(|_| {
            ProviderError::other(format!("cannot serialize a journal record of {}", paths.file.display()))
        })?;
    }
    let journal_len = journal.as_ref().filter(|j| j.live()).map_or(0, JournalFile::len);
    let bound = (size as u64).max(shared.journal_from);
    let since = *shared.journal_since.lock().unwrap_or_else(PoisonError::into_inner);
    let stale = since.is_some_and(|t| t.elapsed() >= shared.fold_after);
    if journal_len + records.as_slice().len() as u64 > bound || stale {
        drop(journal);
        drop(snapshot);
        return compact(shared, model, size);
    }
    let journal = fsio::append(paths, journal, model.generation, records.as_slice())?;
    shared
        .journal_since
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .get_or_insert_with(Instant::now);
    Ok((snapshot, Some(journal), size))
}

fn compact(shared: &Shared, model: &mut StoreFile, size: usize) -> ProviderResult<Persisted> {
    let generation = model.generation + 1;
    let (snapshot, size) = fsio::persist(&shared.paths, model, generation, size + size / 4)?;
    shared.stats.compactions.fetch_add(1, Ordering::Relaxed);
    *shared.journal_since.lock().unwrap_or_else(PoisonError::into_inner) = None;
    Ok((snapshot, None, size))
}
