//! Group commit: one writer thread per [`crate::FileStore`] drains every queued write,
//! takes the lock once, brings its view of the file up to date once, applies each write
//! in arrival order (each with its own result), persists once and then answers every
//! waiter.

use crate::format::{Op, StoreFile};
use crate::fsio::{self, Paths, Snapshot};
use rekey_api::{ProviderError, ProviderResult};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{self, Receiver};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::thread;
use std::time::SystemTime;
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
    /// Batches that replaced the file.
    pub commits: AtomicU64,
    /// Batches that read and parsed the file (the others reused the cached state).
    pub loads: AtomicU64,
}

/// What a store handle and its writer thread share.
pub(crate) struct Shared {
    pub paths: Paths,
    /// Whether the first write may create the store file ([`crate::FileStore::open_or_create`]).
    pub create: bool,
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
    size: usize,
}

/// Starts a writer thread; it ends once every sender is dropped and the queue is empty.
pub(crate) fn spawn(shared: Arc<Shared>) -> ProviderResult<mpsc::Sender<Request>> {
    let (tx, rx) = mpsc::channel();
    thread::Builder::new()
        .name("rekey-file-writer".into())
        .spawn(move || run(&shared, &rx))
        .map_err(|e| ProviderError::other(format!("cannot start the file store writer thread: {e}")))?;
    Ok(tx)
}

fn run(shared: &Shared, rx: &Receiver<Request>) {
    while let Ok(first) = rx.recv() {
        let mut batch = vec![first];
        batch.extend(rx.try_iter());
        commit(shared, rx, batch);
    }
}

fn commit(shared: &Shared, rx: &Receiver<Request>, mut batch: Vec<Request>) {
    let lock = fsio::lock(&shared.paths);
    // Readers fall back to the file while the batch runs.
    let cache = shared.cache().take();
    // Writes queued while this thread waited for the lock join the same batch.
    batch.extend(rx.try_iter());
    shared.stats.batches.fetch_add(1, Ordering::Relaxed);
    let (ops, replies): (Vec<Op>, Vec<_>) = batch.into_iter().map(|r| (r.op, r.reply)).unzip();
    let (results, cache) = match &lock {
        Ok(_) => apply_all(shared, ops, cache),
        Err(e) => (vec![Err(e.clone()); ops.len()], None),
    };
    *shared.cache() = cache;
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
        if fsio::unchanged(&shared.paths, &cache.snapshot)? {
            return Ok(Some(cache));
        }
    }
    shared.stats.loads.fetch_add(1, Ordering::Relaxed);
    Ok(fsio::load(&shared.paths)?.map(|loaded| Cache {
        model: loaded.model,
        snapshot: loaded.snapshot,
        size: loaded.size,
    }))
}

/// With the lock held: bring the state up to date, apply every op in order, persist once
/// if anything changed. Returns the results and the state to keep for the next batch.
fn apply_all(shared: &Shared, ops: Vec<Op>, cache: Option<Cache>) -> (Vec<ProviderResult<()>>, Option<Cache>) {
    let count = ops.len();
    let (mut model, old) = match current(shared, cache) {
        Ok(Some(Cache { model, snapshot, size })) => (model, Some((snapshot, size))),
        Ok(None) => match fsio::check_creatable(&shared.paths, shared.create) {
            Ok(()) => (StoreFile::default(), None),
            Err(e) => return (vec![Err(e); count], None),
        },
        Err(e) => return (vec![Err(e); count], None),
    };
    let now = SystemTime::now();
    let mut changed = false;
    let mut results = Vec::with_capacity(count);
    for op in ops {
        results.push(model.apply(op, now).map(|did_change| changed |= did_change));
    }
    if !changed {
        // A refused write leaves the model as it was: it still matches the file.
        let cache = old.map(|(snapshot, size)| Cache { model, snapshot, size });
        return (results, cache);
    }
    let size = old.map_or(0, |(_, size)| size);
    match fsio::persist(&shared.paths, &mut model, size + size / 4) {
        Ok((snapshot, size)) => {
            shared.stats.commits.fetch_add(1, Ordering::Relaxed);
            (results, Some(Cache { model, snapshot, size }))
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
