//! The fault queue both doubles share: one FIFO of one-shot faults per operation, the
//! call history, and an optional outage.

use super::{Crash, Fault};
use crate::error::{ErrorKind, ProviderError, ProviderResult};
use std::collections::{HashMap, VecDeque};
use std::fmt::Display;
use std::hash::Hash;
use std::sync::{Mutex, MutexGuard, PoisonError};

/// Locks a mutex, ignoring poisoning: a panicking test must not cascade into others.
pub(crate) fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

/// What the next call of an operation must do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Decision {
    Run,
    Fail(ErrorKind),
    RunThenFail(ErrorKind),
    CrashBefore,
    CrashAfter,
}

/// The faults queued for a double, and its call history.
pub(crate) struct Plan<Op> {
    /// `None` entries let one call through (queued by `fault_nth`).
    queues: HashMap<Op, VecDeque<Option<Fault>>>,
    calls: Vec<Op>,
    outage: Option<ErrorKind>,
}

impl<Op> Default for Plan<Op> {
    fn default() -> Self {
        Plan {
            queues: HashMap::new(),
            calls: Vec::new(),
            outage: None,
        }
    }
}

impl<Op: Copy + Eq + Hash> Plan<Op> {
    pub(crate) fn push(&mut self, op: Op, skip: usize, fault: Fault) {
        let queue = self.queues.entry(op).or_default();
        queue.extend(std::iter::repeat_n(None, skip));
        queue.push_back(Some(fault));
    }

    pub(crate) fn clear_faults(&mut self) {
        self.queues.clear();
    }

    pub(crate) fn queued(&self) -> usize {
        self.queues.values().flatten().filter(|f| f.is_some()).count()
    }

    pub(crate) fn calls(&self) -> Vec<Op> {
        self.calls.clone()
    }

    pub(crate) fn clear_calls(&mut self) {
        self.calls.clear();
    }

    pub(crate) fn set_outage(&mut self, kind: Option<ErrorKind>) {
        self.outage = kind;
    }

    /// Records a call of `op` (when it is a faultable operation) and decides its fate.
    /// An outage fails the call without consuming a queued fault.
    pub(crate) fn next(&mut self, op: Option<Op>) -> Decision {
        if let Some(op) = op {
            self.calls.push(op);
        }
        if let Some(kind) = self.outage {
            return Decision::Fail(kind);
        }
        let Some(op) = op else {
            return Decision::Run;
        };
        let fault = self.queues.get_mut(&op).and_then(VecDeque::pop_front).flatten();
        match fault {
            None => Decision::Run,
            Some(Fault::Fail(kind)) => Decision::Fail(kind),
            Some(Fault::FailAfterEffect(kind)) => Decision::RunThenFail(kind),
            Some(Fault::CrashBefore) => Decision::CrashBefore,
            Some(Fault::CrashAfter) => Decision::CrashAfter,
        }
    }
}

/// The outcome of a call: a result, or "the process died" (the call must never return).
pub(crate) enum Outcome<T> {
    Return(ProviderResult<T>),
    Hang,
}

/// Runs one call of a double: checks the crash flag, asks the plan, and runs `effect`
/// (the operation's real semantics) when the decision says so. Synchronous, so no lock
/// is ever held across an await.
pub(crate) fn execute<Op, T>(
    crash: &Crash,
    plan: &Mutex<Plan<Op>>,
    op: Option<Op>,
    who: &str,
    name: impl Display,
    effect: impl FnOnce() -> ProviderResult<T>,
) -> Outcome<T>
where
    Op: Copy + Eq + Hash,
{
    if crash.crashed() {
        return Outcome::Hang;
    }
    let decision = lock(plan).next(op);
    match decision {
        Decision::Run => Outcome::Return(effect()),
        Decision::Fail(kind) => Outcome::Return(Err(ProviderError::new(
            kind,
            format!("{who}: injected fault: {name} failed without effect"),
        ))),
        Decision::RunThenFail(kind) => {
            // The client only sees the injected error, whatever the effect returned.
            let _ = effect();
            Outcome::Return(Err(ProviderError::new(
                kind,
                format!("{who}: injected fault: {name} took effect, then failed"),
            )))
        }
        Decision::CrashBefore => {
            crash.fire();
            Outcome::Hang
        }
        Decision::CrashAfter => {
            let _ = effect();
            crash.fire();
            Outcome::Hang
        }
    }
}

/// Turns an [`Outcome`] into the call's result; a crashed call never completes.
pub(crate) async fn settle<T>(outcome: Outcome<T>) -> ProviderResult<T> {
    match outcome {
        Outcome::Return(result) => result,
        Outcome::Hang => std::future::pending().await,
    }
}
