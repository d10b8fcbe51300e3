//! Group commit: one writer thread per [`crate::FileStore`] drains every queued write,
//! takes the lock once, brings its view of the file up to date once, applies each write
//! in arrival order (each with its own result), persists once (one journal append, or a
//! compaction) and then answers every waiter. While it waits for the disk, this handle's
//! readers answer from the state before the batch (see [`Cache::committing`]) instead of
//! waiting too. When the handle is dropped the writer compacts a journal it leaves
//! behind, so the store file is whole between runs.

use crate::fsio::{self, JournalFile, Paths, SecureBuf, Snapshot};
use crate::model::{KeyEntry, StoreFile};
use crate::state::Op;
use rekey_api::{KeyState, ProviderError, ProviderResult};
use std::collections::{BTreeMap, BTreeSet};
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
    /// Tests: called by the writer just before a batch's file system work, with the lock
    /// held (the state before the batch published to readers, unless the store is new).
    #[cfg(test)]
    pub before_write: Mutex<Option<Box<dyn FnMut() + Send>>>,
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
    /// Shared with the writer only while it writes a snapshot from it (streamed to the
    /// file, see [`fsio::replace`]) and readers may answer from it; the writer has the
    /// only reference again when it next changes it.
    model: Arc<StoreFile>,
    snapshot: Snapshot,
    /// The journal as last read or appended (`None`: there was none).
    journal: Option<JournalFile>,
    size: usize,
    /// Set while the writer, holding the lock, makes a batch durable: the entries of the
    /// keys the batch changed as they were before it (`None`: the key did not exist).
    /// The model already holds the batch's changes, the files may hold part of them, and
    /// they are durable only once the writer clears this. Until then readers answer from
    /// the model with these entries in place of the changed ones: exactly the state made
    /// durable before the batch, as a read that came just before the commit would, and
    /// never a change that is not durable yet. Nobody else changes the files meanwhile:
    /// the writer holds the lock.
    committing: Option<BTreeMap<String, Option<KeyEntry>>>,
}

impl Cache {
    /// The state of files just read (identities taken before reading, see [`fsio::load`]).
    pub(crate) fn loaded(loaded: fsio::Loaded) -> Cache {
        Cache {
            model: Arc::new(loaded.model),
            snapshot: loaded.snapshot,
            journal: loaded.journal,
            size: loaded.size,
            committing: None,
        }
    }

    /// Whether the store file and journal are still what this state was read from or
    /// written as (see above).
    pub(crate) fn unchanged(&self, paths: &Paths) -> ProviderResult<bool> {
        fsio::unchanged(paths, &self.snapshot, self.journal.as_ref())
    }

    /// Whether a reader may answer from this state: while a batch is being made durable
    /// (see [`Cache::committing`]), or when the files are unchanged since.
    pub(crate) fn current_for_readers(&self, paths: &Paths) -> ProviderResult<bool> {
        if self.committing.is_some() {
            return Ok(true);
        }
        self.unchanged(paths)
    }

    /// `key`'s durable state, for a reader: as before the batch being made durable, if
    /// any. `None` when the key is absent.
    pub(crate) fn key_state(&self, key: &str) -> ProviderResult<Option<KeyState>> {
        if let Some(before) = self.committing.as_ref().and_then(|c| c.get(key)) {
            return before.as_ref().map(KeyEntry::state).transpose();
        }
        self.model.key_state(key)
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
            let model = Arc::make_mut(&mut cache.model);
            model.next_snapshot(model.generation + 1);
            if compact(&shared.paths, model).is_ok() {
                shared.stats.compactions.fetch_add(1, Ordering::Relaxed);
            }
        }
    }
}

fn commit(shared: &Shared, rx: &Receiver<Request>, mut batch: Vec<Request>) {
    let lock = fsio::lock(&shared.paths);
    // This handle's readers wait while the batch is applied and then, while it is made
    // durable, answer from the state before it (see `Cache::committing`), rather than
    // each reading and parsing the files meanwhile (at 16 parallel reads of a 5 MB
    // store, 160 MB of buffers).
    let mut held = shared.cache();
    // Writes queued while this thread waited for the lock join the same batch.
    batch.extend(rx.try_iter());
    shared.stats.batches.fetch_add(1, Ordering::Relaxed);
    let (ops, replies): (Vec<Op>, Vec<_>) = batch.into_iter().map(|r| (r.op, r.reply)).unzip();
    let results = match &lock {
        Ok(_) => apply_all(shared, ops, held),
        Err(e) => {
            *held = None;
            vec![Err(e.clone()); ops.len()]
        }
    };
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
/// if anything changed, and leave in `held` the state to keep for the next batch (none
/// after an error). `held` is released while the batch is made durable (readers then see
/// the state before it: [`Cache::committing`]) and taken again before returning, so the
/// results are sent only once the state they describe is published.
fn apply_all<'a>(shared: &'a Shared, ops: Vec<Op>, mut held: MutexGuard<'a, Option<Cache>>) -> Vec<ProviderResult<()>> {
    let count = ops.len();
    let (mut model, old) = match current(shared, held.take()) {
        Ok(Some(cache)) => {
            let Cache {
                model,
                snapshot,
                journal,
                size,
                committing: _,
            } = cache;
            // Nobody else holds the model between batches: this takes it without a copy.
            let model = Arc::try_unwrap(model).unwrap_or_else(|shared| StoreFile::clone(&shared));
            (model, Some((snapshot, journal, size)))
        }
        Ok(None) => match fsio::check_creatable(&shared.paths, shared.create) {
            Ok(()) => (StoreFile::default(), None),
            Err(e) => return vec![Err(e); count],
        },
        Err(e) => return vec![Err(e); count],
    };
    let now = SystemTime::now();
    let mut before = BTreeMap::new();
    let mut changed = BTreeSet::new();
    let mut results = Vec::with_capacity(count);
    for op in ops {
        let key = op.key().to_owned();
        if !before.contains_key(&key) {
            before.insert(key.clone(), model.keys.get(&key).cloned());
        }
        results.push(model.apply(op, now).map(|did_change| {
            if did_change {
                changed.insert(key);
            }
        }));
    }
    let keep = |model, (snapshot, journal, size)| Cache {
        model: Arc::new(model),
        snapshot,
        journal,
        size,
        committing: None,
    };
    if changed.is_empty() {
        // A refused write leaves the model as it was: it still matches the file.
        *held = old.map(|files| keep(model, files));
        return results;
    }
    before.retain(|key, _| changed.contains(key));
    let written = match plan(shared, &mut model, &changed, old.as_ref()) {
        Err(e) => Err(e),
        // A new store: no state to answer readers from meanwhile; they wait.
        Ok(plan) if old.is_none() => write(shared, plan, &model).map(|written| {
            let Written::Snapshot(snapshot, size) = written else {
                unreachable!("a new store is written whole")
            };
            *held = Some(keep(model, (snapshot, None, size)));
            true
        }),
        Ok(plan) => {
            let model = Arc::new(model);
            *held = old.map(|(snapshot, journal, size)| Cache {
                model: Arc::clone(&model),
                snapshot,
                journal,
                size,
                committing: Some(before),
            });
            drop(held);
            let written = write(shared, plan, &model);
            // The cache holds the only reference again.
            drop(model);
            held = shared.cache();
            match (written, held.as_mut().filter(|c| c.committing.is_some())) {
                (Ok(written), Some(cache)) => {
                    cache.committing = None;
                    match written {
                        Written::Journal(journal) => cache.journal = Some(journal),
                        Written::Snapshot(snapshot, size) => {
                            cache.snapshot = snapshot;
                            cache.journal = None;
                            cache.size = size;
                        }
                    }
                    Ok(true)
                }
                // The state was replaced meanwhile (never by this crate): read the files
                // again next time. The batch is durable all the same.
                (Ok(_), None) => Ok(false),
                (Err(e), _) => Err(e),
            }
        }
    };
    match written {
        Ok(true) => {}
        Ok(false) => *held = None,
        Err(e) => {
            *held = None;
            // Nothing of this batch is known to be durable; even a write that was
            // already in effect may have depended on an earlier one in the batch.
            for result in results.iter_mut().filter(|r| r.is_ok()) {
                *result = Err(e.clone());
            }
            return results;
        }
    }
    shared.stats.commits.fetch_add(1, Ordering::Relaxed);
    results
}

/// How a batch is made durable, prepared with the model at hand.
enum Plan {
    /// Append these records to the journal extending snapshot `generation`
    /// (`live_len`: the live journal's valid length; `None`: start a new one).
    Append {
        records: SecureBuf,
        live_len: Option<u64>,
        generation: u64,
    },
    /// Replace the store file with a snapshot of the model (dropping the journal); the
    /// model has taken on the snapshot's generation ([`StoreFile::next_snapshot`]).
    Compact,
}

/// What a [`Plan`] left on disk.
enum Written {
    Journal(JournalFile),
    Snapshot(Snapshot, usize),
}

type Files = (Snapshot, Option<JournalFile>, usize);

/// How to make the changed keys durable: append their records to the journal, or compact
/// (rewrite the snapshot, dropping the journal) when the store is new, in format 1,
/// smaller than [`Shared::journal_from`], when the journal would outgrow the snapshot, or
/// when it has held writes for [`Shared::fold_after`]. So a commit costs what changed,
/// and compaction, amortized over the appends that filled the journal, adds at most
/// about as much again.
fn plan(
    shared: &Shared,
    model: &mut StoreFile,
    changed: &BTreeSet<String>,
    old: Option<&Files>,
) -> ProviderResult<Plan> {
    let paths = &shared.paths;
    let (journal, size) = match old {
        Some((_, journal, size)) if !model.needs_upgrade() && *size as u64 >= shared.journal_from => {
            (journal.as_ref().filter(|j| j.live()), *size)
        }
        _ => return Ok(next_snapshot(model)),
    };
    let mut records = SecureBuf::with_capacity(2048 * changed.len());
    for key in changed {
        model.write_record(key, &mut records).map_err(|_| {
            ProviderError::other(format!("cannot serialize a journal record of {}", paths.file.display()))
        })?;
    }
    let journal_len = journal.map_or(0, JournalFile::len);
    let bound = (size as u64).max(shared.journal_from);
    let since = *shared.journal_since.lock().unwrap_or_else(PoisonError::into_inner);
    let stale = since.is_some_and(|t| t.elapsed() >= shared.fold_after);
    if journal_len + records.as_slice().len() as u64 > bound || stale {
        return Ok(next_snapshot(model));
    }
    Ok(Plan::Append {
        records,
        live_len: journal.map(JournalFile::len),
        generation: model.generation,
    })
}

/// A compaction: the model takes on the next snapshot generation.
fn next_snapshot(model: &mut StoreFile) -> Plan {
    model.next_snapshot(model.generation + 1);
    Plan::Compact
}

/// Replaces the store file with a snapshot of `model`, streamed to the file.
fn compact(paths: &Paths, model: &StoreFile) -> ProviderResult<(Snapshot, usize)> {
    fsio::replace(paths, |out| model.write_snapshot_as_is(out))
}

/// Carries out a [`Plan`]; `model` (the state after the batch, which readers may be
/// reading meanwhile) is only read, to write a snapshot.
fn write(shared: &Shared, plan: Plan, model: &StoreFile) -> ProviderResult<Written> {
    #[cfg(test)]
    if let Some(hook) = shared
        .before_write
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .as_mut()
    {
        hook();
    }
    match plan {
        Plan::Append {
            records,
            live_len,
            generation,
        } => {
            let journal = fsio::append(&shared.paths, live_len, generation, records.as_slice())?;
            shared
                .journal_since
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .get_or_insert_with(Instant::now);
            Ok(Written::Journal(journal))
        }
        Plan::Compact => {
            let (snapshot, size) = compact(&shared.paths, model)?;
            shared.stats.compactions.fetch_add(1, Ordering::Relaxed);
            *shared.journal_since.lock().unwrap_or_else(PoisonError::into_inner) = None;
            Ok(Written::Snapshot(snapshot, size))
        }
    }
}
