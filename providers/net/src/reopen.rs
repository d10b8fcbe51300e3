//! A connection opened on first use, shared by concurrent callers, and reopened once
//! when an operation finds it lost: the shape of the postgres, redis and mysql admin
//! connections (one per admin endpoint per run). A connection that must be used
//! exclusively (mysql_async's takes `&mut`) sits behind a lock inside `C`; each
//! operation holds that lock while it runs.

use std::future::Future;
use std::sync::Arc;
use tokio::sync::Mutex;

/// A lazily opened connection shared as an `Arc`: concurrent callers wait for one open
/// rather than opening several, and [`Reopening::run`] reopens it once when an
/// operation reports it lost (every operation run through it must be idempotent).
pub struct Reopening<C> {
    slot: Mutex<Option<Arc<C>>>,
}

impl<C> Default for Reopening<C> {
    fn default() -> Self {
        Reopening { slot: Mutex::new(None) }
    }
}

impl<C> std::fmt::Debug for Reopening<C> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Reopening").finish_non_exhaustive()
    }
}

impl<C> Reopening<C> {
    /// Nothing opened yet.
    pub fn new() -> Self {
        Self::default()
    }

    /// The cached connection if there is one and `alive` says it is usable, else a new
    /// one from `open` (cached for the next callers).
    pub async fn get<E, Fut>(&self, alive: impl Fn(&C) -> bool, open: impl FnOnce() -> Fut) -> Result<Arc<C>, E>
    where
        Fut: Future<Output = Result<C, E>>,
    {
        let mut slot = self.slot.lock().await;
        if let Some(conn) = slot.as_ref() {
            if alive(conn) {
                return Ok(conn.clone());
            }
        }
        let conn = Arc::new(open().await?);
        *slot = Some(conn.clone());
        Ok(conn)
    }

    /// Forgets `lost` if it is still the cached connection (another caller may have
    /// reopened it already).
    pub async fn forget(&self, lost: &Arc<C>) {
        let mut slot = self.slot.lock().await;
        if slot.as_ref().is_some_and(|c| Arc::ptr_eq(c, lost)) {
            *slot = None;
        }
    }

    /// Runs `op` on the connection (opening it if needed). When `op` fails with an error
    /// `lost` says means the connection is gone, forgets it, opens a new one and runs
    /// `op` once more. The outer error is `open`'s; the inner result is `op`'s last.
    pub async fn run<T, E, OE, OpenFut, OpFut>(
        &self,
        alive: impl Fn(&C) -> bool,
        open: impl Fn() -> OpenFut,
        op: impl Fn(Arc<C>) -> OpFut,
        lost: impl Fn(&OE) -> bool,
    ) -> Result<Result<T, OE>, E>
    where
        OpenFut: Future<Output = Result<C, E>>,
        OpFut: Future<Output = Result<T, OE>>,
    {
        let conn = self.get(&alive, &open).await?;
        match op(conn.clone()).await {
            Err(e) if lost(&e) => {
                self.forget(&conn).await;
                let conn = self.get(&alive, &open).await?;
                Ok(op(conn).await)
            }
            other => Ok(other),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

    /// A fake connection: its number, and whether it still works.
    struct Conn(usize, AtomicBool);

    #[derive(Debug, PartialEq)]
    enum OpError {
        Lost,
        Refused,
    }

    struct Fixture {
        conn: Reopening<Conn>,
        opened: AtomicUsize,
    }

    impl Fixture {
        fn new() -> Self {
            Fixture {
                conn: Reopening::new(),
                opened: AtomicUsize::new(0),
            }
        }

        async fn open(&self) -> Result<Conn, &'static str> {
            let n = self.opened.fetch_add(1, Ordering::SeqCst) + 1;
            tokio::task::yield_now().await;
            Ok(Conn(n, AtomicBool::new(true)))
        }

        /// Runs an operation that answers the connection's number, or `Lost` when the
        /// connection was broken.
        async fn number(&self) -> Result<Result<usize, OpError>, &'static str> {
            self.conn
                .run(
                    |_| true,
                    || self.open(),
                    |c: Arc<Conn>| async move {
                        if c.1.load(Ordering::SeqCst) {
                            Ok(c.0)
                        } else {
                            Err(OpError::Lost)
                        }
                    },
                    |e| *e == OpError::Lost,
                )
                .await
        }
    }

    /// An exclusive fake connection (used through `&mut`, like mysql_async's): its
    /// number, and whether it still works, behind the lock an operation holds.
    type Exclusive = (usize, tokio::sync::Mutex<bool>);

    async fn open_exclusive(opened: &AtomicUsize) -> Result<Exclusive, &'static str> {
        let n = opened.fetch_add(1, Ordering::SeqCst) + 1;
        tokio::task::yield_now().await;
        Ok((n, tokio::sync::Mutex::new(true)))
    }

    /// The connection's number, holding its lock across an await as a statement does.
    async fn exclusive_number(
        conn: &Reopening<Exclusive>,
        opened: &AtomicUsize,
    ) -> Result<Result<usize, OpError>, &'static str> {
        conn.run(
            |_| true,
            || open_exclusive(opened),
            |c: Arc<Exclusive>| async move {
                let works = c.1.lock().await;
                tokio::task::yield_now().await;
                if *works {
                    Ok(c.0)
                } else {
                    Err(OpError::Lost)
                }
            },
            |e| *e == OpError::Lost,
        )
        .await
    }

    #[tokio::test]
    async fn exclusive_connections_take_turns_and_are_reopened_once() {
        let (conn, opened) = (Reopening::new(), AtomicUsize::new(0));
        let both = tokio::join!(exclusive_number(&conn, &opened), exclusive_number(&conn, &opened));
        assert_eq!(both, (Ok(Ok(1)), Ok(Ok(1))));
        assert_eq!(opened.load(Ordering::SeqCst), 1);
        // Lost while both callers hold it: the first to notice reopens, the other
        // finds the new connection instead of opening a third.
        let first = conn.get(|_| true, || open_exclusive(&opened)).await.unwrap();
        *first.1.lock().await = false;
        let both = tokio::join!(exclusive_number(&conn, &opened), exclusive_number(&conn, &opened));
        assert_eq!(both, (Ok(Ok(2)), Ok(Ok(2))));
        assert_eq!(opened.load(Ordering::SeqCst), 2);
    }

    #[tokio::test]
    async fn opens_once_and_shares() {
        let f = Fixture::new();
        let (a, b) = tokio::join!(f.number(), f.number());
        assert_eq!((a, b), (Ok(Ok(1)), Ok(Ok(1))));
        assert_eq!(f.opened.load(Ordering::SeqCst), 1);
    }

    #[tokio::test]
    async fn a_lost_connection_is_reopened_once() {
        let f = Fixture::new();
        let first = f.conn.get(|_| true, || f.open()).await.unwrap();
        first.1.store(false, Ordering::SeqCst);
        assert_eq!(f.number().await, Ok(Ok(2)));
        assert_eq!(f.opened.load(Ordering::SeqCst), 2);
        // Lost again on the retry: the operation's error is returned, no third open.
        let f = Fixture::new();
        let lost_every_time = f
            .conn
            .run(
                |_| true,
                || f.open(),
                |_c: Arc<Conn>| async { Err::<usize, _>(OpError::Lost) },
                |e| *e == OpError::Lost,
            )
            .await;
        assert_eq!(lost_every_time, Ok(Err(OpError::Lost)));
        assert_eq!(f.opened.load(Ordering::SeqCst), 2);
    }

    #[tokio::test]
    async fn other_errors_are_not_retried_and_dead_connections_are_replaced() {
        let f = Fixture::new();
        let refused = f
            .conn
            .run(
                |_| true,
                || f.open(),
                |_c: Arc<Conn>| async { Err::<usize, _>(OpError::Refused) },
                |e| *e == OpError::Lost,
            )
            .await;
        assert_eq!(refused, Ok(Err(OpError::Refused)));
        assert_eq!(f.opened.load(Ordering::SeqCst), 1);
        // `alive` false: a new connection without running anything first.
        let c = f.conn.get(|_| false, || f.open()).await.unwrap();
        assert_eq!(c.0, 2);
        let failing: Result<Arc<Conn>, &str> = Reopening::new().get(|_| true, || async { Err("refused") }).await;
        assert_eq!(failing.err(), Some("refused"));
    }
}
