//! Fault mechanics of the doubles: each [`Fault`] variant on store and target
//! operations, the FIFO queue, outages, and the [`Crash`] handle.

use super::*;
use crate::conformance::random_password;
use crate::error::ErrorKind;
use crate::{RevokeOptions, SecretDoc, Stage, Store, Strategy, Target};
use std::future::Future;
use std::time::{Duration, SystemTime};

const KEY: &str = "orders/db";

fn doc(user: &str) -> SecretDoc {
    let mut d = SecretDoc::new();
    d.set("username", user);
    d.set_password(&random_password(24));
    d
}

/// Runs `call` until it completes or the crash fires; `None` when it crashed. A crashed
/// call must never complete, so the crash winning is the only acceptable crash outcome.
async fn until_crash<T>(crash: &Crash, call: impl Future<Output = T>) -> Option<T> {
    tokio::select! {
        biased;
        out = call => Some(out),
        _ = crash.wait() => None,
    }
}

/// Asserts that `call` does not complete within a short while (a dead process).
async fn assert_hangs<T>(call: impl Future<Output = T>) {
    assert!(
        tokio::time::timeout(Duration::from_millis(50), call).await.is_err(),
        "a call on a crashed double must never return"
    );
}

/// A store with `v1` current and `v2` pending.
async fn store_with_pending() -> (MemoryStore, SecretDoc) {
    let store = MemoryStore::new();
    store.put_current(KEY, "v1", &doc("app")).await.unwrap();
    let pending = doc("app");
    store.stage_pending(KEY, "v2", &pending).await.unwrap();
    (store, pending)
}

// ---- store ----

#[tokio::test]
async fn store_fail_changes_nothing() {
    let store = MemoryStore::new();
    store.put_current(KEY, "v1", &doc("app")).await.unwrap();
    store.fault(StoreOp::StagePending, Fault::Fail(ErrorKind::Unreachable));
    let err = store.stage_pending(KEY, "v2", &doc("app")).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Unreachable);
    assert!(err.is_retryable(), "retryability follows the kind");
    assert!(err.message().contains("injected"), "{err}");
    assert!(store.snapshot(KEY).unwrap().pending().is_none(), "nothing staged");
    // One-shot: the next call goes through.
    store.stage_pending(KEY, "v2", &doc("app")).await.unwrap();
    assert_eq!(store.snapshot(KEY).unwrap().pending().unwrap().id, "v2");
}

#[tokio::test]
async fn store_fail_after_effect_lands_the_write() {
    let (store, _) = store_with_pending().await;
    store.fault(StoreOp::Promote, Fault::FailAfterEffect(ErrorKind::Unreachable));
    let err = store.promote(KEY, "v2", false).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Unreachable);
    assert!(err.message().contains("took effect"), "{err}");
    let state = store.snapshot(KEY).unwrap();
    assert_eq!(state.current().unwrap().id, "v2", "the promote landed");
    assert_eq!(state.previous().unwrap().id, "v1");
    // The retry is idempotent.
    store.promote(KEY, "v2", false).await.unwrap();
}

#[tokio::test]
async fn store_read_fault_is_an_error_only() {
    let (store, _) = store_with_pending().await;
    store.fault(StoreOp::Read, Fault::FailAfterEffect(ErrorKind::Other));
    assert_eq!(store.read(KEY).await.unwrap_err().kind(), ErrorKind::Other);
    assert_eq!(store.read(KEY).await.unwrap().pending().unwrap().id, "v2");
}

#[tokio::test]
async fn store_crash_before_hangs_and_changes_nothing() {
    let crash = Crash::new();
    let store = MemoryStore::new().with_crash(crash.clone());
    store.put_current(KEY, "v1", &doc("app")).await.unwrap();
    store.fault(StoreOp::StagePending, Fault::CrashBefore);
    let out = until_crash(&crash, store.stage_pending(KEY, "v2", &doc("app"))).await;
    assert!(out.is_none(), "a crashed call never returns");
    assert!(crash.crashed());
    assert!(
        store.snapshot(KEY).unwrap().pending().is_none(),
        "crashed before the write"
    );

    // The dead process does nothing more, and its calls are not recorded.
    let calls = store.calls().len();
    assert_hangs(store.read(KEY)).await;
    assert_hangs(store.check_writable(KEY)).await;
    assert_eq!(store.calls().len(), calls);

    crash.reset();
    assert!(!crash.crashed());
    store.stage_pending(KEY, "v2", &doc("app")).await.unwrap();
    assert_eq!(store.snapshot(KEY).unwrap().pending().unwrap().id, "v2");
}

#[tokio::test]
async fn store_crash_after_lands_the_write() {
    let crash = Crash::new();
    let clock = ManualClock::new();
    let store = MemoryStore::new().with_crash(crash.clone()).with_clock(clock.clone());
    store.put_current(KEY, "v1", &doc("app")).await.unwrap();
    clock.advance(Duration::from_secs(60));
    store.fault(StoreOp::MarkRevoked, Fault::CrashAfter);
    assert!(until_crash(&crash, store.mark_revoked(KEY, "v1")).await.is_none());
    assert!(crash.crashed());
    let state = store.snapshot(KEY).unwrap();
    assert_eq!(
        state.version("v1").unwrap().revoked,
        Some(clock.now()),
        "revoked at the injected clock's time"
    );
    crash.reset();
    store.mark_revoked(KEY, "v1").await.unwrap();
}

#[tokio::test]
async fn store_faults_are_fifo_per_op_and_nth_skips() {
    let (store, _) = store_with_pending().await;
    store.fault(StoreOp::Read, Fault::Fail(ErrorKind::Unreachable));
    store.fault(StoreOp::Read, Fault::Fail(ErrorKind::PermissionDenied));
    store.fault_nth(StoreOp::Read, 1, Fault::Fail(ErrorKind::Other));
    store.fault(StoreOp::Promote, Fault::Fail(ErrorKind::Conflict));
    assert_eq!(store.queued_faults(), 4);

    assert_eq!(store.read(KEY).await.unwrap_err().kind(), ErrorKind::Unreachable);
    assert_eq!(store.read(KEY).await.unwrap_err().kind(), ErrorKind::PermissionDenied);
    store.read(KEY).await.expect("the skipped call goes through");
    assert_eq!(store.read(KEY).await.unwrap_err().kind(), ErrorKind::Other);
    store.read(KEY).await.unwrap();
    assert_eq!(store.queued_faults(), 1, "the promote fault is still queued");

    store.clear_faults();
    assert_eq!(store.queued_faults(), 0);
    store.promote(KEY, "v2", false).await.unwrap();
    assert_eq!(
        store.calls(),
        [
            StoreOp::PutCurrent,
            StoreOp::StagePending,
            StoreOp::Read,
            StoreOp::Read,
            StoreOp::Read,
            StoreOp::Read,
            StoreOp::Read,
            StoreOp::Promote
        ]
    );
    store.clear_calls();
    assert!(store.calls().is_empty());
}

#[tokio::test]
async fn store_outage_fails_everything_and_keeps_the_queue() {
    let (store, _) = store_with_pending().await;
    store.fault(StoreOp::Promote, Fault::Fail(ErrorKind::Conflict));
    store.set_outage(Some(ErrorKind::Unreachable));
    assert_eq!(store.read(KEY).await.unwrap_err().kind(), ErrorKind::Unreachable);
    assert_eq!(
        store.check_writable(KEY).await.unwrap_err().kind(),
        ErrorKind::Unreachable
    );
    assert_eq!(
        store.promote(KEY, "v2", false).await.unwrap_err().kind(),
        ErrorKind::Unreachable
    );
    assert!(store.snapshot(KEY).unwrap().pending().is_some(), "nothing changed");
    store.set_outage(None);
    assert_eq!(
        store.promote(KEY, "v2", false).await.unwrap_err().kind(),
        ErrorKind::Conflict,
        "the queued fault survived the outage"
    );
    store.promote(KEY, "v2", false).await.unwrap();
}

#[tokio::test]
async fn store_discard_pending_semantics() {
    let store = MemoryStore::new();
    assert_eq!(
        store.discard_pending(KEY, "v2").await.unwrap_err().kind(),
        ErrorKind::NotFound
    );
    store.put_current(KEY, "v1", &doc("app")).await.unwrap();
    store
        .discard_pending(KEY, "v2")
        .await
        .expect("nothing pending: no change");
    store.stage_pending(KEY, "v2", &doc("app")).await.unwrap();
    assert_eq!(
        store.discard_pending(KEY, "v3").await.unwrap_err().kind(),
        ErrorKind::Conflict,
        "another version is pending"
    );
    store.fault(StoreOp::DiscardPending, Fault::FailAfterEffect(ErrorKind::Unreachable));
    assert!(store.discard_pending(KEY, "v2").await.is_err());
    let state = store.snapshot(KEY).unwrap();
    assert!(state.pending().is_none(), "the discard landed");
    assert!(
        state.version("v2").unwrap().stages.is_empty(),
        "kept in history, no stage"
    );
    assert_eq!(state.current().unwrap().id, "v1");
    store.discard_pending(KEY, "v2").await.expect("idempotent");
    // A new rotation can start.
    store.stage_pending(KEY, "v3", &doc("app")).await.unwrap();
}

#[tokio::test]
async fn store_clock_and_state_helpers() {
    let start = SystemTime::UNIX_EPOCH + Duration::from_secs(1_767_225_600);
    let clock = ManualClock::at(start);
    let store = MemoryStore::new();
    store.set_clock(clock.clone());
    store.put_current(KEY, "v1", &doc("app")).await.unwrap();
    clock.advance(Duration::from_secs(3600));
    store.stage_pending(KEY, "v2", &doc("app")).await.unwrap();
    clock.set(start + Duration::from_secs(7200));
    store.promote(KEY, "v2", true).await.unwrap();
    let state = store.snapshot(KEY).unwrap();
    assert_eq!(state.version("v1").unwrap().created, start);
    assert_eq!(state.version("v2").unwrap().created, start + Duration::from_secs(3600));
    assert_eq!(
        state.previous().unwrap().revoked,
        Some(start + Duration::from_secs(7200))
    );
    assert_eq!(state.version("v2").unwrap().stages, [Stage::Current]);

    let fixed = Clock::from_fn(move || start);
    store.set_clock(fixed);
    store.mark_revoked(KEY, "v2").await.unwrap();
    assert_eq!(store.snapshot(KEY).unwrap().current().unwrap().revoked, Some(start));

    assert_eq!(store.keys(), [KEY]);
    store.set_state("other", state.clone());
    assert_eq!(store.read("other").await.unwrap().versions.len(), 2);
    store.set_state("other", crate::KeyState::default());
    assert!(store.snapshot("other").is_none());
    assert_eq!(store.read("other").await.unwrap_err().kind(), ErrorKind::NotFound);
}

// ---- target ----

fn target(strategy: Strategy) -> (ScriptedTarget, SecretDoc) {
    let target = ScriptedTarget::new(ScriptedTargetConfig::for_strategy(strategy));
    let current = target.seed_new();
    (target, current)
}

async fn prepared(target: &ScriptedTarget, current: &SecretDoc) -> SecretDoc {
    target.prepare(Some(current), random_password(32)).await.unwrap()
}

#[tokio::test]
async fn target_fail_changes_nothing() {
    let (target, current) = target(Strategy::Dual);
    let new = prepared(&target, &current).await;
    target.fault(TargetOp::Apply, Fault::Fail(ErrorKind::PermissionDenied));
    let err = target.apply(&new, Some(&current)).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::PermissionDenied);
    assert!(!target.accepts(&new), "not applied");
    assert!(target.accepts(&current));
    target.apply(&new, Some(&current)).await.unwrap();
    assert!(target.accepts(&new));
}

#[tokio::test]
async fn target_fail_after_effect_on_apply_and_revoke() {
    let (target, current) = target(Strategy::Single);
    let new = prepared(&target, &current).await;
    target.fault(TargetOp::Apply, Fault::FailAfterEffect(ErrorKind::Unreachable));
    assert_eq!(
        target.apply(&new, Some(&current)).await.unwrap_err().kind(),
        ErrorKind::Unreachable
    );
    assert!(target.accepts(&new), "applied before the error");
    assert!(!target.accepts(&current), "single: apply replaced the old password");

    let (target, current) = self::target(Strategy::Dual);
    let new = prepared(&target, &current).await;
    target.apply(&new, Some(&current)).await.unwrap();
    target.fault(TargetOp::Revoke, Fault::FailAfterEffect(ErrorKind::Unreachable));
    assert!(target.revoke(&current, &new, RevokeOptions::default()).await.is_err());
    assert!(!target.accepts(&current), "revoked before the error");
    assert!(target.accepts(&new));
    target
        .revoke(&current, &new, RevokeOptions::default())
        .await
        .expect("a repeated revoke succeeds");
}

#[tokio::test]
async fn target_fail_after_effect_on_login_is_an_error_only() {
    let (target, current) = target(Strategy::Single);
    target.fault(TargetOp::Login, Fault::FailAfterEffect(ErrorKind::Unreachable));
    target.fault(TargetOp::Verify, Fault::Fail(ErrorKind::AuthRejected));
    assert_eq!(target.login(&current).await.unwrap_err().kind(), ErrorKind::Unreachable);
    assert_eq!(
        target.verify(&current).await.unwrap_err().kind(),
        ErrorKind::AuthRejected
    );
    target.login(&current).await.unwrap();
    target.verify(&current).await.unwrap();
    assert_eq!(
        target.calls(),
        [TargetOp::Login, TargetOp::Verify, TargetOp::Login, TargetOp::Verify]
    );
}

#[tokio::test]
async fn target_crash_before_apply_changes_nothing() {
    let crash = Crash::new();
    let target = ScriptedTarget::new(ScriptedTargetConfig::default()).with_crash(crash.clone());
    let current = target.seed_new();
    let new = prepared(&target, &current).await;
    target.fault(TargetOp::Apply, Fault::CrashBefore);
    assert!(until_crash(&crash, target.apply(&new, Some(&current))).await.is_none());
    assert!(crash.crashed());
    assert!(!target.accepts(&new) && target.accepts(&current));
    assert_hangs(target.login(&current)).await;
    crash.reset();
    target.login(&current).await.unwrap();
}

#[tokio::test]
async fn target_crash_after_revoke_revoked() {
    let crash = Crash::new();
    let target =
        ScriptedTarget::new(ScriptedTargetConfig::for_strategy(Strategy::Alternating)).with_crash(crash.clone());
    let current = target.seed_new();
    let new = prepared(&target, &current).await;
    target.apply(&new, Some(&current)).await.unwrap();
    target.fault(TargetOp::Revoke, Fault::CrashAfter);
    let revoke = target.revoke(&current, &new, RevokeOptions::default());
    assert!(until_crash(&crash, revoke).await.is_none());
    assert!(
        !target.accepts(&current),
        "the old user was invalidated before the crash"
    );
    assert!(target.accepts(&new));
}

#[tokio::test]
async fn target_outage_is_unreachable() {
    let (target, current) = target(Strategy::Dual);
    target.set_outage(Some(ErrorKind::Unreachable));
    for _ in 0..3 {
        assert_eq!(target.login(&current).await.unwrap_err().kind(), ErrorKind::Unreachable);
    }
    assert_eq!(
        target.precheck(Some(&current)).await.unwrap_err().kind(),
        ErrorKind::Unreachable
    );
    target.set_outage(None);
    target.login(&current).await.unwrap();
}

#[tokio::test]
async fn target_fault_nth_hits_the_second_call() {
    let (target, current) = target(Strategy::Single);
    target.fault_nth(TargetOp::Login, 1, Fault::Fail(ErrorKind::AuthRejected));
    target.login(&current).await.unwrap();
    assert_eq!(
        target.login(&current).await.unwrap_err().kind(),
        ErrorKind::AuthRejected
    );
    target.login(&current).await.unwrap();
    assert_eq!(target.queued_faults(), 0);
}

#[tokio::test]
async fn minting_prepare_after_effect_leaks_a_key() {
    let target = ScriptedTarget::new(ScriptedTargetConfig::minting());
    let current = target.seed_new();
    assert!(target.live_minted().is_empty(), "seeded keys are not minted");
    target.fault(TargetOp::Prepare, Fault::FailAfterEffect(ErrorKind::Unreachable));
    assert!(target.prepare(Some(&current), random_password(8)).await.is_err());
    assert_eq!(target.minted_count(), 1);
    assert_eq!(target.live_minted().len(), 1, "the key exists though prepare failed");
    assert_eq!(target.live_keys().len(), 2);
    // Two keys: the next prepare is refused, as IAM's limit does.
    let err = target.prepare(Some(&current), random_password(8)).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Conflict);
    assert!(!err.is_retryable());
    assert_eq!(
        target.precheck(Some(&current)).await.unwrap_err().kind(),
        ErrorKind::Conflict
    );
    let leaked = target.live_minted().pop().unwrap();
    assert!(target.delete_key(&leaked));
    let new = prepared(&target, &current).await;
    assert_eq!(target.minted_count(), 2);
    assert!(target.accepts(&new) && target.accepts(&current));
}

#[tokio::test]
async fn deny_terminate_sessions_fails_after_invalidating() {
    let config = ScriptedTargetConfig {
        deny_terminate_sessions: true,
        ..ScriptedTargetConfig::for_strategy(Strategy::Dual)
    };
    let target = ScriptedTarget::new(config);
    let current = target.seed_new();
    target.open_session(&current).unwrap();
    let new = prepared(&target, &current).await;
    target.apply(&new, Some(&current)).await.unwrap();
    let terminate = RevokeOptions {
        terminate_sessions: true,
    };
    let err = target.revoke(&current, &new, terminate).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::PermissionDenied);
    assert!(!target.accepts(&current), "the old secret was invalidated first");
    assert_eq!(target.open_sessions(&current), 1, "its session lives on");
    assert_eq!(target.sessions_terminated(), 0);
    // Without ending sessions the revoke succeeds.
    target.revoke(&current, &new, RevokeOptions::default()).await.unwrap();
}

#[tokio::test]
async fn revoke_ends_sessions_only_when_asked_and_able() {
    let (target, current) = target(Strategy::Single);
    target.open_session(&current).unwrap();
    target.open_session(&current).unwrap();
    let new = prepared(&target, &current).await;
    target.open_session(&new).expect_err("not applied yet");
    target.apply(&new, Some(&current)).await.unwrap();
    target.open_session(&new).unwrap();
    assert_eq!(
        target.open_sessions(&current),
        2,
        "sessions outlive the password change"
    );
    let report = target.revoke(&current, &new, RevokeOptions::default()).await.unwrap();
    assert_eq!(report.sessions_terminated, 0);
    let terminate = RevokeOptions {
        terminate_sessions: true,
    };
    let report = target.revoke(&current, &new, terminate).await.unwrap();
    assert_eq!(report.sessions_terminated, 2);
    assert_eq!(target.sessions_terminated(), 2);
    assert_eq!(target.open_sessions(&current), 0);
    assert_eq!(target.open_sessions(&new), 1, "the new secret's session is kept");

    // A target that declares it cannot end sessions refuses to be asked: the engine
    // reads the capability and never asks it, and this fake makes a caller that does fail.
    let target = ScriptedTarget::new(ScriptedTargetConfig::minting());
    assert!(!target.capabilities().terminate_sessions);
    let current = target.seed_new();
    target.open_session(&current).unwrap();
    let new = prepared(&target, &current).await;
    target.apply(&new, Some(&current)).await.unwrap();
    let err = target.revoke(&current, &new, terminate).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::InvalidInput, "{err}");
    assert_eq!(target.open_sessions(&current), 1);
    let report = target.revoke(&current, &new, RevokeOptions::default()).await.unwrap();
    assert_eq!(report.sessions_terminated, 0);
}

// ---- crash handle ----

#[tokio::test]
async fn crash_wait_returns_when_fired_before() {
    let crash = Crash::new();
    crash.fire();
    tokio::time::timeout(Duration::from_secs(5), crash.wait())
        .await
        .expect("wait returns at once after an earlier crash");
    crash.reset();
    assert!(!crash.crashed());
    assert!(
        tokio::time::timeout(Duration::from_millis(30), crash.wait())
            .await
            .is_err(),
        "after reset, wait waits for the next crash"
    );
    assert_eq!(crash.count(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn crash_wait_wakes_waiters_on_other_tasks() {
    let crash = Crash::new();
    let waiters: Vec<_> = (0..4)
        .map(|_| {
            let crash = crash.clone();
            tokio::spawn(async move { crash.wait().await })
        })
        .collect();
    tokio::time::sleep(Duration::from_millis(20)).await;
    // The crash comes from a shared store's fault, on yet another task.
    let store = MemoryStore::new().with_crash(crash.clone());
    store.fault(StoreOp::Read, Fault::CrashBefore);
    let reader = {
        let store = store.clone();
        tokio::spawn(async move { store.read(KEY).await })
    };
    for waiter in waiters {
        tokio::time::timeout(Duration::from_secs(5), waiter)
            .await
            .expect("every waiter wakes up")
            .unwrap();
    }
    assert!(!reader.is_finished(), "the crashed read never returns");
    reader.abort();
}

#[tokio::test]
async fn one_crash_handle_stops_store_and_target() {
    let crash = Crash::new();
    let store = MemoryStore::new().with_crash(crash.clone());
    let target = ScriptedTarget::new(ScriptedTargetConfig::default()).with_crash(crash.clone());
    let current = target.seed_new();
    store.put_current(KEY, "v1", &current).await.unwrap();
    target.fault(TargetOp::Verify, Fault::CrashBefore);
    assert!(until_crash(&crash, target.verify(&current)).await.is_none());
    assert_hangs(store.read(KEY)).await;
    crash.reset();
    store.read(KEY).await.unwrap();
    target.verify(&current).await.unwrap();
    assert!(format!("{crash:?}").contains("count: 1"));
}

#[test]
fn fault_and_op_names() {
    assert_eq!(Fault::Fail(ErrorKind::Unreachable).to_string(), "fail (unreachable)");
    assert_eq!(Fault::CrashAfter.to_string(), "crash after");
    assert!(Fault::CrashBefore.is_crash() && !Fault::Fail(ErrorKind::Other).is_crash());
    assert_eq!(StoreOp::ALL.map(StoreOp::as_str)[5], "discard_pending");
    assert!(!StoreOp::Read.writes() && StoreOp::Promote.writes());
    assert_eq!(TargetOp::Revoke.to_string(), "revoke");
    assert_eq!(TargetOp::ALL.len(), 7);
}
