//! Catalog reads of many targets on one admin connection, coalesced (issue 11).
//!
//! `plan` over 1,000 roles on one server asked the shared admin connection the same
//! catalog question 1,000 times, one role each, and the server answered them one after
//! the other: each answer costs about the same whatever the number of roles it covers,
//! so the run was as long as 1,000 answers. [`Coalesce`] groups the questions the way a
//! group commit groups writes: while one read is in flight on the connection, the
//! questions asked meanwhile wait, and the next read answers all of them at once (the
//! roles of every waiting target). A question asked alone is read at once; no read waits
//! for company, and every answer is read after its question was asked, so it is as
//! fresh as a read of its own.
//!
//! A coalesced read that fails answers nobody: each target then reads alone, as before,
//! so that errors name the target's own roles exactly as they did.

use std::collections::HashMap;
use std::future::Future;
use std::sync::{Arc, Mutex};
use tokio::sync::oneshot;

/// One target's question, waiting for a read.
struct Waiter<T> {
    names: Vec<String>,
    reply: oneshot::Sender<Option<Arc<T>>>,
}

/// Coalesces reads about sets of names (roles), per key (the database asked about).
pub(crate) struct Coalesce<T> {
    /// Questions not yet taken by a read, by key.
    queue: Mutex<HashMap<String, Vec<Waiter<T>>>>,
    /// Held by the read in flight: one at a time per admin connection.
    turn: tokio::sync::Mutex<()>,
}

impl<T> Default for Coalesce<T> {
    fn default() -> Self {
        Coalesce {
            queue: Mutex::new(HashMap::new()),
            turn: tokio::sync::Mutex::new(()),
        }
    }
}

impl<T> Coalesce<T> {
    /// The answer about `names` (under `key`): read by `read` over the names of every
    /// question waiting under `key` (each name once, in the order asked), by this call
    /// or by a concurrent one. `None` when that read failed (`read` gave `None`) or
    /// was abandoned: the caller then reads alone.
    pub(crate) async fn read<F, Fut>(&self, key: &str, names: &[String], read: F) -> Option<Arc<T>>
    where
        F: FnOnce(Vec<String>) -> Fut,
        Fut: Future<Output = Option<T>>,
    {
        let (reply, answer) = oneshot::channel();
        self.queue
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .entry(key.to_owned())
            .or_default()
            .push(Waiter {
                names: names.to_vec(),
                reply,
            });
        {
            let _turn = self.turn.lock().await;
            // Unless a read that started after this question was asked took it already.
            let waiting = self.queue.lock().unwrap_or_else(|p| p.into_inner()).remove(key);
            if let Some(waiting) = waiting {
                let mut all: Vec<String> = Vec::new();
                let mut seen = std::collections::HashSet::new();
                for name in waiting.iter().flat_map(|w| &w.names) {
                    if seen.insert(name.as_str()) {
                        all.push(name.clone());
                    }
                }
                let result = read(all).await.map(Arc::new);
                for waiter in waiting {
                    let _ = waiter.reply.send(result.clone());
                }
            }
        }
        answer.await.ok().flatten()
    }
}

/// The coalesced catalog reads of one admin connection.
#[derive(Default)]
pub(crate) struct PreflightBatch {
    /// The rows of `PRECHECK_SQL` (the admin's and the roles' facts), by database.
    pub(crate) views: Coalesce<Vec<tokio_postgres::Row>>,
    /// Role name and verifier type, from `pg_authid`.
    pub(crate) verifier_types: Coalesce<Vec<(String, String)>>,
    /// Role name and stored verifier (`plan`'s check of current secrets), from `pg_authid`.
    pub(crate) verifiers: Coalesce<StoredVerifiers>,
}

/// Role names and their `pg_authid.rolpassword` (wiped from memory when dropped).
pub(crate) type StoredVerifiers = Vec<(String, Option<zeroize::Zeroizing<String>>)>;

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::time::Duration;

    fn names(list: &[&str]) -> Vec<String> {
        list.iter().map(|s| (*s).to_owned()).collect()
    }

    /// Questions asked while a read is in flight are answered by one next read, over
    /// every name asked once; a question asked alone is read at once.
    #[tokio::test]
    async fn questions_asked_during_a_read_share_the_next_one() {
        let batch: Arc<Coalesce<Vec<String>>> = Arc::default();
        let reads = Arc::new(Mutex::new(Vec::<Vec<String>>::new()));
        let (release, hold) = tokio::sync::oneshot::channel::<()>();
        let hold = Arc::new(tokio::sync::Mutex::new(Some(hold)));
        let ask = |who: &'static [&'static str]| {
            let (batch, reads, hold) = (batch.clone(), reads.clone(), hold.clone());
            tokio::spawn(async move {
                batch
                    .read("db", &names(who), |all| async move {
                        reads.lock().unwrap().push(all.clone());
                        // The first read waits until the test lets it finish.
                        if let Some(hold) = hold.lock().await.take() {
                            let _ = hold.await;
                        }
                        Some(all)
                    })
                    .await
            })
        };
        let first = ask(&["a"]);
        while reads.lock().unwrap().is_empty() {
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        let second = ask(&["b", "c"]);
        let third = ask(&["c", "d"]);
        // Both wait on the read in flight; then one read answers both.
        while batch.queue.lock().unwrap().get("db").map_or(0, Vec::len) < 2 {
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        release.send(()).unwrap();
        assert_eq!(*first.await.unwrap().unwrap(), names(&["a"]));
        assert_eq!(*second.await.unwrap().unwrap(), names(&["b", "c", "d"]));
        assert_eq!(*third.await.unwrap().unwrap(), names(&["b", "c", "d"]));
        assert_eq!(*reads.lock().unwrap(), vec![names(&["a"]), names(&["b", "c", "d"])]);
    }

    /// A failed read answers `None` to every question it took (each then reads alone);
    /// the next question is read again.
    #[tokio::test]
    async fn a_failed_read_answers_none() {
        let batch: Coalesce<()> = Coalesce::default();
        let calls = AtomicUsize::new(0);
        let failed = batch
            .read("db", &names(&["a"]), |_| async {
                calls.fetch_add(1, Ordering::Relaxed);
                None
            })
            .await;
        assert!(failed.is_none());
        let ok = batch
            .read("db", &names(&["a"]), |_| async {
                calls.fetch_add(1, Ordering::Relaxed);
                Some(())
            })
            .await;
        assert!(ok.is_some());
        assert_eq!(calls.load(Ordering::Relaxed), 2);
    }
}
