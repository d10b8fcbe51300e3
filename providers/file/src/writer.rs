//! Group commit: one writer thread per [`crate::FileStore`] drains every queued write,
//! takes the lock once, re-reads the file once, applies each write in arrival order
//! (each with its own result), persists once and then answers every waiter.

use crate::format::{Op, StoreFile};
use crate::fsio::{self, Paths};
use rekey_api::{ProviderError, ProviderResult};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{self, Receiver};
use std::sync::Arc;
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
    /// Batches processed (lock taken, file re-read).
    pub batches: AtomicU64,
    /// Batches that replaced the file.
    pub commits: AtomicU64,
}

/// What a store handle and its writer thread share.
pub(crate) struct Shared {
    pub paths: Paths,
    pub stats: Stats,
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
    // Writes queued while this thread waited for the lock join the same batch.
    batch.extend(rx.try_iter());
    shared.stats.batches.fetch_add(1, Ordering::Relaxed);
    let (ops, replies): (Vec<Op>, Vec<_>) = batch.into_iter().map(|r| (r.op, r.reply)).unzip();
    let results = match &lock {
        Ok(_) => apply_all(shared, ops),
        Err(e) => vec![Err(e.clone()); ops.len()],
    };
    // Release the lock before answering: the change is durable already.
    drop(lock);
    for (reply, result) in replies.into_iter().zip(results) {
        // A waiter that gave up is not an error: its write took effect all the same.
        let _ = reply.send(result);
    }
}

/// With the lock held: re-read, apply every op in order, persist once if anything changed.
fn apply_all(shared: &Shared, ops: Vec<Op>) -> Vec<ProviderResult<()>> {
    let count = ops.len();
    let (model, size) = match fsio::load(&shared.paths) {
        Ok((model, size)) => (model, size),
        Err(e) => return vec![Err(e); count],
    };
    let mut model = model.unwrap_or_default();
    let now = SystemTime::now();
    let mut changed = false;
    let mut results = Vec::with_capacity(count);
    for op in ops {
        results.push(model.apply(op, now).map(|did_change| changed |= did_change));
    }
    if changed {
        match persist(shared, &model, size) {
            Ok(()) => {
                shared.stats.commits.fetch_add(1, Ordering::Relaxed);
            }
            Err(e) => {
                // Nothing of this batch is known to be durable; even a write that was
                // already in effect may have depended on an earlier one in the batch.
                for result in results.iter_mut().filter(|r| r.is_ok()) {
                    *result = Err(e.clone());
                }
            }
        }
    }
    results
}

fn persist(shared: &Shared, model: &StoreFile, size: usize) -> ProviderResult<()> {
    fsio::persist(&shared.paths, model, size + size / 4)
}
