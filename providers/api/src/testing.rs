//! Test doubles for the engine's unit tests and its crash/fault simulation. **Not for
//! production**: nothing here is durable, and [`ScriptedTarget`] is a *fake* target (no
//! real system behind it), named as such in everything it prints.
//!
//! - [`MemoryStore`]: a [`crate::Store`] held in memory, with the exact semantics the
//!   trait documents (it passes [`crate::conformance::store`]).
//! - [`ScriptedTarget`]: a fake [`crate::Target`] that really checks secrets (a wrong
//!   password is [`ErrorKind::AuthRejected`]) under each strategy (it passes
//!   [`crate::conformance::target`]).
//! - [`assert_error`] and [`assert_error_hiding`]: the providers' tests' check of an
//!   error's kind, words, single line and absence of secrets (and their hashes).
//!
//! Both take one-shot [`Fault`]s per operation ([`StoreOp`], [`TargetOp`]), queued
//! first in, first out, so a harness can break any step boundary of a rotation: fail
//! without effect, fail after the effect landed (a timeout after the write), or "crash"
//! the process before or after the effect. A crash signals a shared [`Crash`] handle and
//! the call never returns, so the harness can drop the whole engine future, reset the
//! handle and start a fresh engine on the same doubles:
//!
//! ```
//! # use rekey_api::testing::*;
//! # use rekey_api::{Store, SecretDoc};
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() {
//! let crash = Crash::default();
//! let store = MemoryStore::new().with_crash(crash.clone());
//! store.fault(StoreOp::StagePending, Fault::CrashAfter);
//!
//! let engine = {
//!     let store = store.clone();
//!     async move { store.stage_pending("k", "v2", &SecretDoc::new()).await }
//! };
//! tokio::select! {
//!     _ = engine => panic!("a crashed call never returns"),
//!     _ = crash.wait() => {}
//! }
//! assert!(store.snapshot("k").unwrap().pending().is_some(), "the write landed");
//! crash.reset(); // the "restarted process" may use the doubles again
//! # }
//! ```
//!
//! Timestamps come from a [`Clock`]: the system clock by default, or a [`ManualClock`]
//! the test moves by hand.

mod assertions;
mod memory_store;
mod plan;
mod scripted_target;
#[cfg(test)]
mod tests;

pub use assertions::{assert_error, assert_error_hiding};
pub use memory_store::MemoryStore;
pub use scripted_target::{ScriptedTarget, ScriptedTargetConfig, ACCESS_KEY_ID, FAKE_ENGINE};

use crate::error::ErrorKind;
use std::fmt;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, SystemTime};
use tokio::sync::Notify;

/// A one-shot fault injected into the next call of one operation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Fault {
    /// The operation returns an error of this kind and changes nothing.
    Fail(ErrorKind),
    /// The operation takes effect, then returns an error of this kind (a timeout after
    /// the write landed). For operations without an effect (reads, logins) this is the
    /// same as [`Fault::Fail`]. When the operation itself fails (a conflict), nothing
    /// changes and the caller still sees only this error.
    FailAfterEffect(ErrorKind),
    /// The process "dies" before the operation takes effect: the call signals the
    /// double's [`Crash`] handle and never returns.
    CrashBefore,
    /// The process "dies" right after the operation took effect: the call applies it,
    /// signals the double's [`Crash`] handle and never returns.
    CrashAfter,
}

impl Fault {
    /// Whether this fault crashes the process.
    pub fn is_crash(self) -> bool {
        matches!(self, Fault::CrashBefore | Fault::CrashAfter)
    }
}

impl fmt::Display for Fault {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Fault::Fail(kind) => write!(f, "fail ({})", kind.as_str()),
            Fault::FailAfterEffect(kind) => write!(f, "fail after effect ({})", kind.as_str()),
            Fault::CrashBefore => f.write_str("crash before"),
            Fault::CrashAfter => f.write_str("crash after"),
        }
    }
}

/// A [`MemoryStore`] operation a [`Fault`] can target, as recorded by
/// [`MemoryStore::calls`]. `check_writable` is not one: it never fails on a fault.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum StoreOp {
    /// [`crate::Store::read`].
    Read,
    /// [`crate::Store::put_current`].
    PutCurrent,
    /// [`crate::Store::stage_pending`].
    StagePending,
    /// [`crate::Store::promote`].
    Promote,
    /// [`crate::Store::mark_revoked`].
    MarkRevoked,
    /// [`crate::Store::discard_pending`].
    DiscardPending,
}

impl StoreOp {
    /// Every store operation, in declaration order.
    pub const ALL: [StoreOp; 6] = [
        StoreOp::Read,
        StoreOp::PutCurrent,
        StoreOp::StagePending,
        StoreOp::Promote,
        StoreOp::MarkRevoked,
        StoreOp::DiscardPending,
    ];

    /// The trait method's name.
    pub fn as_str(self) -> &'static str {
        match self {
            StoreOp::Read => "read",
            StoreOp::PutCurrent => "put_current",
            StoreOp::StagePending => "stage_pending",
            StoreOp::Promote => "promote",
            StoreOp::MarkRevoked => "mark_revoked",
            StoreOp::DiscardPending => "discard_pending",
        }
    }

    /// Whether the operation writes (has an effect a fault can land before or after).
    pub fn writes(self) -> bool {
        self != StoreOp::Read
    }
}

impl fmt::Display for StoreOp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A [`ScriptedTarget`] operation a [`Fault`] can target, as recorded by
/// [`ScriptedTarget::calls`]. `preflight` counts as [`TargetOp::Precheck`] (both are the
/// read-only check); `capabilities`, `describe` and `complete` are not operations.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum TargetOp {
    /// [`crate::Target::precheck`] and [`crate::Target::preflight`].
    Precheck,
    /// [`crate::Target::prepare`] (mints a key when the target mints its own secrets).
    Prepare,
    /// [`crate::Target::apply`].
    Apply,
    /// [`crate::Target::login`].
    Login,
    /// [`crate::Target::verify`].
    Verify,
    /// [`crate::Target::retire`].
    Retire,
    /// [`crate::Target::revoke`].
    Revoke,
}

impl TargetOp {
    /// Every target operation, in protocol order.
    pub const ALL: [TargetOp; 7] = [
        TargetOp::Precheck,
        TargetOp::Prepare,
        TargetOp::Apply,
        TargetOp::Login,
        TargetOp::Verify,
        TargetOp::Retire,
        TargetOp::Revoke,
    ];

    /// The trait method's name.
    pub fn as_str(self) -> &'static str {
        match self {
            TargetOp::Precheck => "precheck",
            TargetOp::Prepare => "prepare",
            TargetOp::Apply => "apply",
            TargetOp::Login => "login",
            TargetOp::Verify => "verify",
            TargetOp::Retire => "retire",
            TargetOp::Revoke => "revoke",
        }
    }
}

impl fmt::Display for TargetOp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The shared "the process died" signal. Clones share one flag.
///
/// A [`Fault::CrashBefore`] or [`Fault::CrashAfter`] sets it and wakes [`Crash::wait`].
/// While it is set, every call on a double holding this handle never returns and has
/// no effect (a dead process does nothing more), so call [`Crash::reset`] before
/// starting the "restarted" engine on the same doubles.
#[derive(Clone, Default)]
pub struct Crash {
    inner: Arc<CrashInner>,
}

#[derive(Default)]
struct CrashInner {
    crashed: AtomicBool,
    count: AtomicU64,
    notify: Notify,
}

impl Crash {
    /// A handle that has not crashed.
    pub fn new() -> Self {
        Self::default()
    }

    /// Whether a crash fault fired since the last [`Crash::reset`].
    pub fn crashed(&self) -> bool {
        self.inner.crashed.load(Ordering::SeqCst)
    }

    /// Returns once a crash fault has fired, at once when it fired before this call.
    pub async fn wait(&self) {
        loop {
            let notified = self.inner.notify.notified();
            let mut notified = std::pin::pin!(notified);
            // Register before checking the flag, so a crash between the check and the
            // await still wakes this waiter.
            notified.as_mut().enable();
            if self.crashed() {
                return;
            }
            notified.await;
        }
    }

    /// Clears the flag: doubles holding this handle work again (the "restarted"
    /// process). The fault that crashed is not re-armed.
    pub fn reset(&self) {
        self.inner.crashed.store(false, Ordering::SeqCst);
    }

    /// Signals a crash by hand, as a kill between two calls would. Waiters wake up.
    pub fn fire(&self) {
        self.inner.count.fetch_add(1, Ordering::SeqCst);
        self.inner.crashed.store(true, Ordering::SeqCst);
        self.inner.notify.notify_waiters();
    }

    /// How many crashes fired on this handle, resets included.
    pub fn count(&self) -> u64 {
        self.inner.count.load(Ordering::SeqCst)
    }
}

impl fmt::Debug for Crash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Crash")
            .field("crashed", &self.crashed())
            .field("count", &self.count())
            .finish()
    }
}

/// Where a double's timestamps come from: the system clock ([`Clock::default`]), a
/// [`ManualClock`], or any function.
#[derive(Clone)]
pub struct Clock(Arc<dyn Fn() -> SystemTime + Send + Sync>);

impl Clock {
    /// [`SystemTime::now`].
    pub fn system() -> Self {
        Clock(Arc::new(SystemTime::now))
    }

    /// Calls `now` for every timestamp.
    pub fn from_fn(now: impl Fn() -> SystemTime + Send + Sync + 'static) -> Self {
        Clock(Arc::new(now))
    }

    /// The time now, by this clock.
    pub fn now(&self) -> SystemTime {
        (self.0)()
    }
}

impl Default for Clock {
    fn default() -> Self {
        Self::system()
    }
}

impl fmt::Debug for Clock {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Clock")
    }
}

impl From<ManualClock> for Clock {
    fn from(clock: ManualClock) -> Self {
        Clock::from_fn(move || clock.now())
    }
}

impl From<Arc<dyn Fn() -> SystemTime + Send + Sync>> for Clock {
    fn from(now: Arc<dyn Fn() -> SystemTime + Send + Sync>) -> Self {
        Clock(now)
    }
}

/// A clock that stands still until the test moves it. Clones share one time.
#[derive(Clone, Debug)]
pub struct ManualClock {
    now: Arc<Mutex<SystemTime>>,
}

impl ManualClock {
    /// A clock stopped at the current system time.
    pub fn new() -> Self {
        Self::at(SystemTime::now())
    }

    /// A clock stopped at `time`.
    pub fn at(time: SystemTime) -> Self {
        ManualClock {
            now: Arc::new(Mutex::new(time)),
        }
    }

    /// The clock's time.
    pub fn now(&self) -> SystemTime {
        *self.now.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Moves the clock forward by `by`.
    pub fn advance(&self, by: Duration) {
        let mut now = self.now.lock().unwrap_or_else(PoisonError::into_inner);
        *now += by;
    }

    /// Sets the clock to `time` (which may be earlier).
    pub fn set(&self, time: SystemTime) {
        *self.now.lock().unwrap_or_else(PoisonError::into_inner) = time;
    }
}

impl Default for ManualClock {
    fn default() -> Self {
        Self::new()
    }
}
