//! One test per engine bug found, named after it (ripgrep's `regression.rs` style).
//! Each runs on the in-memory store and the scripted fake target: no server needed.

use super::harness::{failure, Harness, KEY};
use crate::engine::rotation::INCIDENT_VERSION_PREFIX;
use crate::engine::{Interrupt, RotateOptions, Status};
use crate::exit;
use rekey_api::testing::{Fault, ScriptedTargetConfig, StoreOp, TargetOp};
use rekey_api::{ErrorKind, SecretDoc, Store, Strategy};

fn incident() -> RotateOptions {
    RotateOptions {
        incident: true,
        ..Default::default()
    }
}

/// Issue: with an admin that may change passwords but not end other roles' sessions,
/// `leaked --rotate` on a `single` credential failed to end sessions *before*
/// promotion: the store's current version was the dead leaked password.
#[tokio::test(start_paused = true)]
async fn incident_single_without_session_privilege_keeps_a_working_current() {
    let config = ScriptedTargetConfig {
        deny_terminate_sessions: true,
        ..ScriptedTargetConfig::for_strategy(Strategy::Single)
    };
    let (h, leaked) = Harness::imported(config).await;
    h.target.open_session(&leaked).unwrap();

    let run = h.rotate(incident()).await.unwrap();
    assert_eq!(run.exit_code(), exit::CREDENTIAL_FAILED);
    assert_eq!(failure(&run), Some("sessions_not_ended"));
    let message = &run.credentials[0].error.as_ref().unwrap().message;
    assert!(message.contains("rotated and promoted"), "{message}");

    let state = h.state();
    assert!(state.pending().is_none(), "nothing left pending");
    let current = state.current().expect("current");
    assert!(current.id.starts_with(INCIDENT_VERSION_PREFIX));
    assert!(h.target.accepts(&current.doc), "applications read a working secret");
    assert!(!h.target.accepts(&leaked), "the leaked secret is dead");
    assert_eq!(
        state.previous().unwrap().revoked,
        None,
        "sessions are left: not recorded as done"
    );
}

/// The rerun of an incident whose sessions could not be ended finishes only that part:
/// no second rotation.
#[tokio::test(start_paused = true)]
async fn incident_rerun_finishes_only_what_was_left() {
    let config = ScriptedTargetConfig::for_strategy(Strategy::Single);
    let (h, leaked) = Harness::imported(config).await;
    h.target.open_session(&leaked).unwrap();
    // First run: ending sessions fails (after the password was already replaced).
    h.target
        .fault(TargetOp::Revoke, Fault::Fail(ErrorKind::PermissionDenied));
    let first = h.rotate(incident()).await.unwrap();
    assert_eq!(failure(&first), Some("sessions_not_ended"));
    let promoted = h.state().current().unwrap().id.clone();

    let rerun = h.rotate(incident()).await.unwrap();
    assert_eq!(rerun.exit_code(), exit::SUCCESS, "{:?}", rerun.credentials[0].error);
    assert_eq!(rerun.credentials[0].status, Status::Revoked);
    let state = h.state();
    assert_eq!(state.current().unwrap().id, promoted, "no second rotation");
    assert!(state.previous().unwrap().revoked.is_some(), "now recorded as revoked");
    assert_eq!(
        h.target.open_sessions(&leaked),
        0,
        "the leaked secret's sessions are gone"
    );
}

/// Issue: a `single` verify that failed for a reason other than authentication after
/// apply left the old, now dead, secret as current.
#[tokio::test(start_paused = true)]
async fn single_verify_failure_after_apply_never_leaves_a_dead_current() {
    let (h, old) = Harness::imported(ScriptedTargetConfig::for_strategy(Strategy::Single)).await;
    for _ in 0..3 {
        h.target.fault(TargetOp::Verify, Fault::Fail(ErrorKind::Unreachable));
    }
    let run = h.rotate(RotateOptions::default()).await.unwrap();
    assert_eq!(run.exit_code(), exit::CREDENTIAL_FAILED);
    let state = h.state();
    assert!(!h.target.accepts(&old));
    assert!(
        h.target.accepts(&state.current().unwrap().doc),
        "the store's current secret works"
    );
    assert!(state.pending().is_none());
    let error = run.credentials[0].error.as_ref().expect("reported as failed");
    assert!(
        error.message.ends_with(
            "; the applied secret was promoted (the target refuses the old one): fix the cause, then check with `rekey verify`"
        ) && !error.message.contains("next run finishes"),
        "the message says what happened, not that a next run would finish it: {}",
        error.message
    );
}

/// Issue: losing a store compare-and-set to another runner exited 1 (failure).
#[tokio::test(start_paused = true)]
async fn lost_compare_and_set_is_busy_exit_3() {
    let (h, old) = Harness::imported(ScriptedTargetConfig::for_strategy(Strategy::Dual)).await;
    h.store.fault(StoreOp::StagePending, Fault::Fail(ErrorKind::Conflict));
    let run = h.rotate(RotateOptions::default()).await.unwrap();
    assert_eq!(failure(&run), Some("busy"));
    assert_eq!(run.exit_code(), exit::LOCKED);
    assert!(h.target.accepts(&old), "nothing changed at the target");
}

/// Issue: a store whose state kept changing while it was read (another runner's
/// rotation moving Secrets Manager labels) exited 1 (failure) instead of 3 (busy).
#[tokio::test(start_paused = true)]
async fn a_store_changing_while_read_is_busy_exit_3() {
    let (h, old) = Harness::imported(ScriptedTargetConfig::for_strategy(Strategy::Dual)).await;
    h.store.fault(StoreOp::Read, Fault::Fail(ErrorKind::Conflict));
    let run = h.rotate(RotateOptions::default()).await.unwrap();
    assert_eq!(failure(&run), Some("busy"));
    assert_eq!(run.exit_code(), exit::LOCKED);
    assert!(h.target.accepts(&old), "nothing changed at the target");
    assert_eq!(h.state().current().unwrap().doc, old, "nor in the store");
}

/// Issue: a pending version that can never be applied blocked the credential forever.
#[tokio::test(start_paused = true)]
async fn abandon_pending_gets_out_of_a_stuck_rotation() {
    let (h, _) = Harness::imported(ScriptedTargetConfig::minting()).await;
    // A minted key stored as pending, then deleted by hand at the target.
    let mut stuck = SecretDoc::new();
    stuck.set("access_key_id", "AKIADELETEDBYHAND00");
    stuck.set("password", "gone-gone-gone-gone");
    stuck.set("username", "app");
    h.store.stage_pending(KEY, "stuck", &stuck).await.unwrap();

    let blocked = h.rotate(RotateOptions::default()).await.unwrap();
    assert_eq!(blocked.exit_code(), exit::CREDENTIAL_FAILED, "resume cannot finish it");
    assert!(h.state().pending().is_some());

    let options = RotateOptions {
        abandon_pending: true,
        ..Default::default()
    };
    let run = h.rotate(options).await.unwrap();
    assert_eq!(run.exit_code(), exit::SUCCESS, "{:?}", run.credentials[0].error);
    let state = h.state();
    assert!(state.pending().is_none());
    let kept = state.version("stuck").expect("kept in history");
    assert!(kept.stages.is_empty(), "with no stage");
    assert!(h.target.accepts(&state.current().unwrap().doc));
}

/// Issue (review): `--abandon-pending` on a `single` credential whose pending password
/// had been applied (the current one is dead) took the pending version out of the store:
/// the store's current was then a password the target refuses. Now refused, unchanged.
#[tokio::test(start_paused = true)]
async fn abandon_pending_never_leaves_a_dead_current() {
    let (h, old) = Harness::imported(ScriptedTargetConfig::for_strategy(Strategy::Single)).await;
    // A crash after apply: the target holds the pending password, the current is dead.
    let applied = h.target.seed_new();
    h.store.stage_pending(KEY, "applied", &applied).await.unwrap();
    assert!(!h.target.accepts(&old) && h.target.accepts(&applied));

    let options = RotateOptions {
        abandon_pending: true,
        ..Default::default()
    };
    let run = h.rotate(options).await.unwrap();
    assert_eq!(run.exit_code(), exit::CREDENTIAL_FAILED);
    let message = &run.credentials[0].error.as_ref().unwrap().message;
    assert!(
        message.contains("not abandoning") && message.contains("refuses the current"),
        "{message}"
    );
    assert_eq!(
        h.state().pending().map(|p| p.id.as_str()),
        Some("applied"),
        "still pending"
    );
    // The plain rerun the message names finishes it.
    let run = h.rotate(RotateOptions::default()).await.unwrap();
    assert_eq!(run.exit_code(), exit::SUCCESS, "{:?}", run.credentials[0].error);
    assert!(h.target.accepts(&h.state().current().unwrap().doc));
}

/// Issue (review): `--abandon-pending` dropped a pending secret it could not revoke (the
/// target unreachable, or its configuration broken): a live secret no store version
/// held. Now refused; a secret already gone at the target is still abandoned.
#[tokio::test(start_paused = true)]
async fn abandon_pending_keeps_a_secret_it_could_not_revoke() {
    let (h, _) = Harness::imported(ScriptedTargetConfig::for_strategy(Strategy::Dual)).await;
    let live = h.target.seed_new();
    h.store.stage_pending(KEY, "live", &live).await.unwrap();
    h.target.fault(TargetOp::Revoke, Fault::Fail(ErrorKind::Unreachable));
    let options = || RotateOptions {
        abandon_pending: true,
        ..Default::default()
    };
    let run = h.rotate(options()).await.unwrap();
    assert_eq!(run.exit_code(), exit::CREDENTIAL_FAILED);
    assert!(h.target.accepts(&live));
    assert_eq!(
        h.state().pending().map(|p| p.id.as_str()),
        Some("live"),
        "still pending"
    );
    // Once the target answers, abandoning revokes it and rotates.
    let run = h.rotate(options()).await.unwrap();
    assert_eq!(run.exit_code(), exit::SUCCESS, "{:?}", run.credentials[0].error);
    assert!(!h.target.accepts(&live), "revoked at the target");
    assert!(h.state().version("live").is_some_and(|v| v.stages.is_empty()));
}

/// Issue 12: a leftover pending version the target cannot use for this credential (an
/// AWSPENDING staged for another user) made `rotate` fail with the way out, but `plan`
/// said only "apply it". Now plan warns, naming `--abandon-pending`; a pending version
/// that is merely not applied yet gets no warning.
#[tokio::test(start_paused = true)]
async fn plan_names_abandon_pending_for_a_pending_version_of_another_credential() {
    let (h, _) = Harness::imported(ScriptedTargetConfig::for_strategy(Strategy::Single)).await;
    let mut foreign = SecretDoc::new();
    foreign.set("username", "someone-else");
    foreign.set("password", "not-for-this-credential-0123");
    h.store.stage_pending(KEY, "foreign", &foreign).await.unwrap();
    // A key of another account logs in; the target's verify check is what refuses it.
    h.target.fault(TargetOp::Verify, Fault::Fail(ErrorKind::InvalidInput));
    let report = h.plan().await;
    let warnings: Vec<String> = report.credentials[0]
        .plan
        .iter()
        .filter(|item| item.warning)
        .map(|item| item.to_string())
        .collect();
    assert_eq!(warnings.len(), 1, "{:?}", report.credentials[0].plan);
    assert!(
        warnings[0].contains("--abandon-pending") && warnings[0].contains("foreign"),
        "{warnings:?}"
    );

    // A pending version not applied yet (refused as a login): no warning.
    h.target.clear_faults();
    let report = h.plan().await;
    assert!(
        report.credentials[0].plan.iter().all(|item| !item.warning),
        "{:?}",
        report.credentials[0].plan
    );
}

/// Issue 12: `rotate` resuming a pending version that logs in but fails the target's own
/// check (an IAM key of another user, left in AWSPENDING) said "the next run finishes the
/// rotation", which no run would. Now it names `--abandon-pending`; nothing is promoted.
#[tokio::test(start_paused = true)]
async fn resume_of_a_pending_version_of_another_credential_names_abandon_pending() {
    let (h, old) = Harness::imported(ScriptedTargetConfig::for_strategy(Strategy::Dual)).await;
    let foreign = h.target.seed_new();
    h.store.stage_pending(KEY, "foreign", &foreign).await.unwrap();
    h.target.fault(TargetOp::Verify, Fault::Fail(ErrorKind::InvalidInput));
    let run = h.rotate(RotateOptions::default()).await.unwrap();
    assert_eq!(run.exit_code(), exit::CREDENTIAL_FAILED);
    let message = &run.credentials[0].error.as_ref().unwrap().message;
    assert!(
        message.contains("--abandon-pending")
            && message.contains("foreign")
            && !message.contains("the next run finishes"),
        "{message}"
    );
    assert_eq!(h.state().current().map(|c| &c.doc), Some(&old), "nothing promoted");
    assert_eq!(h.state().pending().map(|p| p.id.as_str()), Some("foreign"));
}

/// Issue 12: a store that may write rekey's pending versions but not the value
/// applications read (a Vault token without write on the application's key) passed
/// `rotate`'s preflight; the rotation staged, applied, verified and then failed at
/// promote, and with `single` the stored current was a password the target no longer
/// took. Now `rotate` checks the store before the target, for every strategy, and the
/// incident path too; nothing is staged or applied.
#[tokio::test(start_paused = true)]
async fn a_store_that_refuses_the_promote_fails_the_rotation_before_the_target_is_touched() {
    for strategy in [Strategy::Single, Strategy::Dual, Strategy::Alternating] {
        for options in [RotateOptions::default(), incident()] {
            let (h, old) = Harness::imported(ScriptedTargetConfig::for_strategy(strategy)).await;
            h.store.set_current_read_only(true);
            h.target.clear_calls();
            let run = h.rotate(options.clone()).await.unwrap();
            assert_eq!(run.exit_code(), exit::CREDENTIAL_FAILED, "{strategy:?}");
            assert_eq!(failure(&run), Some("permission_denied"), "{strategy:?}");
            let error = run.credentials[0].error.as_ref().unwrap();
            assert_eq!(error.step.as_str(), "preflight", "{strategy:?}: {error:?}");
            assert!(error.message.contains("may not write"), "{}", error.message);
            assert!(
                !h.target
                    .calls()
                    .iter()
                    .any(|op| matches!(op, TargetOp::Prepare | TargetOp::Apply)),
                "{strategy:?}: the target was changed: {:?}",
                h.target.calls()
            );
            assert!(h.target.accepts(&old), "{strategy:?}");
            assert!(h.state().pending().is_none(), "{strategy:?}: nothing staged");
            assert_eq!(h.state().current().map(|c| &c.doc), Some(&old));
        }
    }
}

/// Review: the store's write check ran only before a fresh rotation; resuming a pending
/// version the target did not take yet applied it first, and with `single` the failed
/// promote left the stored current dead. Now the resume checks the store before apply.
#[tokio::test(start_paused = true)]
async fn resume_checks_the_store_before_applying_a_pending_version() {
    let (h, old) = Harness::imported(ScriptedTargetConfig::for_strategy(Strategy::Single)).await;
    // Staged by an earlier run that stopped before apply: the target does not take it yet.
    let mut staged = SecretDoc::new();
    staged.set("username", "app");
    staged.set("password", "staged-not-applied-0123456789abcdef");
    assert!(!h.target.accepts(&staged), "precondition");
    h.store.stage_pending(KEY, "staged", &staged).await.unwrap();
    h.store.set_current_read_only(true);
    h.target.clear_calls();
    let run = h.rotate(RotateOptions::default()).await.unwrap();
    assert_eq!(run.exit_code(), exit::CREDENTIAL_FAILED);
    assert_eq!(failure(&run), Some("permission_denied"));
    assert!(!h.target.calls().contains(&TargetOp::Apply), "{:?}", h.target.calls());
    assert!(h.target.accepts(&old), "the stored current still logs in");
    assert_eq!(h.state().pending().map(|p| p.id.as_str()), Some("staged"));
    // Once the store allows it, the next run finishes the rotation.
    h.store.set_current_read_only(false);
    let run = h.rotate(RotateOptions::default()).await.unwrap();
    assert_eq!(run.exit_code(), exit::SUCCESS, "{:?}", run.credentials[0].error);
    assert!(h.target.accepts(&h.state().current().unwrap().doc));
}

/// Signals stop at a step boundary: nothing starts once a stop is asked for.
#[tokio::test(start_paused = true)]
async fn interrupted_run_starts_no_step_and_exits_130() {
    let (h, old) = Harness::imported(ScriptedTargetConfig::for_strategy(Strategy::Single)).await;
    let interrupt = Interrupt::default();
    interrupt.request();
    let run = h.rotate_with_interrupt(RotateOptions::default(), interrupt).await;
    assert_eq!(failure(&run), Some("interrupted"));
    assert_eq!(run.exit_code(), exit::INTERRUPTED);
    assert!(h.target.accepts(&old));
    assert!(h.state().pending().is_none());
}

/// A crash after staging is finished by the next run, never duplicated.
#[tokio::test(start_paused = true)]
async fn crash_after_stage_is_resumed_not_duplicated() {
    let (h, old) = Harness::imported(ScriptedTargetConfig::for_strategy(Strategy::Single)).await;
    h.target.fault(TargetOp::Apply, Fault::CrashBefore);
    assert!(h.rotate(RotateOptions::default()).await.is_none(), "crashed");
    let pending = h.state().pending().expect("staged before the crash").id.clone();
    let run = h.rotate(RotateOptions::default()).await.unwrap();
    assert_eq!(run.exit_code(), exit::SUCCESS);
    assert!(run.credentials[0].resumed);
    let state = h.state();
    assert_eq!(state.current().unwrap().id, pending);
    assert!(!h.target.accepts(&old));
}

/// Issue: `rotate --grace 1h` printed "revocation deferred until T", but the next `--due`
/// run used the configured grace (0s) and revoked at once.
#[tokio::test(start_paused = true)]
async fn grace_given_on_the_command_line_is_kept_by_later_runs() {
    let (h, old) = Harness::imported(ScriptedTargetConfig::for_strategy(Strategy::Dual)).await;
    let with_grace = RotateOptions {
        grace: Some(std::time::Duration::from_secs(3600)),
        ..Default::default()
    };
    let run = h.rotate(with_grace).await.unwrap();
    assert_eq!(run.exit_code(), exit::SUCCESS, "{:?}", run.credentials[0].error);
    assert!(h.target.accepts(&old), "inside its grace period");
    let due = RotateOptions {
        due_only: true,
        ..Default::default()
    };
    let run = h.rotate(due).await.unwrap();
    assert_eq!(run.credentials[0].status, Status::NotDue);
    assert!(h.target.accepts(&old), "the promised hour is kept");
    assert!(h.state().previous().unwrap().revoked.is_none());
    let verify = h.verify().await;
    assert_eq!(verify.exit_code(), exit::SUCCESS, "inside grace is not a failure");
}

/// Due dates are judged from the store's timestamps: a secret made 31 days ago (the
/// store's clock set back) is due, and `--due` rotates it.
#[tokio::test(start_paused = true)]
async fn due_is_judged_from_stored_age() {
    use rekey_api::testing::ManualClock;
    let clock = ManualClock::at(std::time::SystemTime::now() - std::time::Duration::from_secs(31 * 86_400));
    let h = Harness::new(ScriptedTargetConfig::for_strategy(Strategy::Single));
    h.store.set_clock(clock.clone());
    let doc = h.target.seed_new();
    h.store.put_current(KEY, "old", &doc).await.unwrap();
    clock.set(std::time::SystemTime::now());
    let due = RotateOptions {
        due_only: true,
        ..Default::default()
    };
    let run = h.rotate(due).await.unwrap();
    assert_eq!(run.credentials[0].status, Status::Rotated);
    assert!(!h.target.accepts(&doc));
    // Now fresh: the next --due run does nothing.
    let due = RotateOptions {
        due_only: true,
        ..Default::default()
    };
    assert_eq!(h.rotate(due).await.unwrap().credentials[0].status, Status::NotDue);
}

/// Consumers reload after promotion while both secrets still work; a failing hook makes
/// the result "rotated; hook failed" (exit 1) and the rotation still completes.
#[tokio::test]
async fn hooks_run_after_promotion_and_a_failing_one_fails_the_credential_not_the_rotation() {
    let dir = tempfile::tempdir().unwrap();
    let seen = dir.path().join("seen");
    let (mut h, old) = Harness::imported(ScriptedTargetConfig::for_strategy(Strategy::Dual)).await;
    h.credential.on_rotate = vec![
        vec![
            "sh".into(),
            "-c".into(),
            format!("echo \"$REKEY_CREDENTIAL $REKEY_VERSION\" > {}", seen.display()),
        ],
        vec!["sh".into(), "-c".into(), "echo reload refused >&2; exit 4".into()],
    ];
    let run = h.rotate(RotateOptions::default()).await.unwrap();
    assert_eq!(run.exit_code(), exit::CREDENTIAL_FAILED);
    assert_eq!(failure(&run), Some("hook_failed"));
    let message = &run.credentials[0].error.as_ref().unwrap().message;
    assert!(
        message.contains("rotated and promoted") && message.contains("exit 4: reload refused"),
        "{message}"
    );
    let state = h.state();
    let current = state.current().unwrap();
    assert_eq!(
        std::fs::read_to_string(&seen).unwrap().trim(),
        format!("app-db {}", current.id),
        "the first hook ran with the new version"
    );
    assert!(h.target.accepts(&current.doc));
    assert!(
        !h.target.accepts(&old),
        "the rotation completed: the old secret is revoked"
    );
    assert!(state.previous().unwrap().revoked.is_some());
}

/// Routine `--due` rotation waits for the credential's window; incidents do not.
#[tokio::test(start_paused = true)]
async fn due_rotation_waits_for_its_window_and_incidents_do_not() {
    use crate::engine::schedule::Window;
    use rekey_api::testing::ManualClock;
    let clock = ManualClock::at(std::time::SystemTime::now() - std::time::Duration::from_secs(40 * 86_400));
    let mut h = Harness::new(ScriptedTargetConfig::for_strategy(Strategy::Single));
    h.store.set_clock(clock.clone());
    let doc = h.target.seed_new();
    h.store.put_current(KEY, "old", &doc).await.unwrap();
    clock.set(std::time::SystemTime::now());
    // A window that is never now: open only in the hour that is not this one.
    let now = std::time::SystemTime::now();
    let mut window = Window::parse(&[], Some("00-01")).unwrap();
    if window.contains(now) {
        window = Window::parse(&[], Some("12-13")).unwrap();
    }
    h.credential.window = Some(window);
    let due = || RotateOptions {
        due_only: true,
        ..Default::default()
    };
    let run = h.rotate(due()).await.unwrap();
    assert_eq!(run.credentials[0].status, Status::NotDue);
    assert!(h.target.accepts(&doc), "nothing changed outside the window");
    let run = h.rotate(incident()).await.unwrap();
    assert_eq!(run.exit_code(), exit::SUCCESS);
    assert!(!h.target.accepts(&doc), "an incident ignores the window");
}

/// Issue 10: for every strategy, an incident whose sessions cannot be ended still leaves
/// a working current secret in the store, the leaked one dead, nothing pending, and says
/// exactly what is left.
#[tokio::test(start_paused = true)]
async fn incident_without_session_privilege_never_leaves_a_dead_current_for_any_strategy() {
    for strategy in [Strategy::Single, Strategy::Dual, Strategy::Alternating] {
        let config = ScriptedTargetConfig {
            deny_terminate_sessions: true,
            ..ScriptedTargetConfig::for_strategy(strategy)
        };
        let (h, leaked) = Harness::imported(config).await;
        h.target.open_session(&leaked).unwrap();
        let run = h.rotate(incident()).await.unwrap();
        assert_eq!(run.exit_code(), exit::CREDENTIAL_FAILED, "{strategy}");
        assert_eq!(
            failure(&run),
            Some("sessions_not_ended"),
            "{strategy}: {:?}",
            run.credentials[0].error
        );
        let state = h.state();
        assert!(state.pending().is_none(), "{strategy}");
        assert!(
            h.target.accepts(&state.current().unwrap().doc),
            "{strategy}: current works"
        );
        assert!(!h.target.accepts(&leaked), "{strategy}: the leaked secret is dead");
        assert_eq!(
            h.target.open_sessions(&leaked),
            1,
            "{strategy}: its session stays, as reported"
        );
    }
}

/// Issue 13: a fresh pending version another machine staged is that runner's work in
/// progress: exit 3 for the credential; once it is stale, a rerun finishes it.
#[tokio::test(start_paused = true)]
async fn another_runners_fresh_pending_is_busy_and_a_stale_one_is_finished() {
    use rekey_api::testing::ManualClock;
    let (h, _) = Harness::imported(ScriptedTargetConfig::for_strategy(Strategy::Dual)).await;
    let other = if crate::engine::version::host_tag() == "00000000" {
        "h00000001"
    } else {
        "h00000000"
    };
    let mut doc = h.state().current().unwrap().doc.clone();
    doc.set("password", "staged-by-another-runner-123");
    let clock = ManualClock::new();
    h.store.set_clock(clock.clone());
    let id = format!("{other}-{}", uuid::Uuid::new_v4());
    h.store.stage_pending(KEY, &id, &doc).await.unwrap();
    let run = h.rotate(RotateOptions::default()).await.unwrap();
    assert_eq!(failure(&run), Some("busy"));
    assert_eq!(run.exit_code(), exit::LOCKED);
    assert_eq!(h.state().pending().unwrap().id, id, "left to its runner");
    // Stale: staged long ago (the store's clock says so), so this run finishes it.
    let mut state = h.state();
    for v in &mut state.versions {
        if v.id == id {
            v.created -= std::time::Duration::from_secs(600);
        }
    }
    h.store.set_state(KEY, state);
    let run = h.rotate(RotateOptions::default()).await.unwrap();
    assert_eq!(run.exit_code(), exit::SUCCESS, "{:?}", run.credentials[0].error);
    assert_eq!(h.state().current().unwrap().id, id);
}

/// Time is injected: grace, revocation due and rotation due, judged by the engine's clock,
/// move with the test's clock and nothing sleeps.
#[tokio::test(start_paused = true)]
async fn grace_and_due_follow_the_injected_clock_without_sleeping() {
    use std::time::Duration;
    let (mut h, old) = Harness::imported(ScriptedTargetConfig::for_strategy(Strategy::Dual)).await;
    h.credential.grace = Duration::from_secs(3600);
    let due = || RotateOptions {
        due_only: true,
        ..Default::default()
    };
    h.clock.advance(Duration::from_secs(31 * 86_400));
    let run = h.rotate(due()).await.unwrap();
    assert_eq!(run.credentials[0].status, Status::Rotated);
    assert!(h.target.accepts(&old), "inside the grace period");
    h.clock.advance(Duration::from_secs(1800));
    assert_eq!(h.rotate(due()).await.unwrap().credentials[0].status, Status::NotDue);
    assert!(h.target.accepts(&old), "still inside the grace period");
    h.clock.advance(Duration::from_secs(1801));
    assert_eq!(h.rotate(due()).await.unwrap().credentials[0].status, Status::Revoked);
    assert!(!h.target.accepts(&old), "revoked once the grace period is over");
    h.clock.advance(Duration::from_secs(31 * 86_400));
    assert_eq!(h.rotate(due()).await.unwrap().credentials[0].status, Status::Rotated);
}

fn due() -> RotateOptions {
    RotateOptions {
        due_only: true,
        ..Default::default()
    }
}

/// Found trying an incident as users would: after an incident rotation could not end
/// the leaked secret's sessions, `status` said `rekey rotate --due` would finish it,
/// `verify` passed, and that `--due` run recorded the leaked secret revoked without
/// ending a session. A run that finishes an incident's version ends its sessions (and
/// fails as loudly as the incident run when it still may not); until then `verify` and
/// `status` report the incident as open.
#[tokio::test(start_paused = true)]
async fn a_routine_run_never_closes_an_incident_whose_sessions_survive() {
    let config = ScriptedTargetConfig {
        deny_terminate_sessions: true,
        ..ScriptedTargetConfig::for_strategy(Strategy::Single)
    };
    let (h, leaked) = Harness::imported(config).await;
    h.target.open_session(&leaked).unwrap();
    let first = h.rotate(incident()).await.unwrap();
    assert_eq!(failure(&first), Some("sessions_not_ended"));

    let verify = h.verify().await;
    assert_eq!(
        verify.exit_code(),
        exit::CREDENTIAL_FAILED,
        "verify reports the open incident"
    );
    let problems = verify.credentials[0].problems.join("; ");
    assert!(problems.contains("`rekey rotate --leaked app-db`"), "{problems}");
    let status = h.status().await;
    assert_eq!(status.exit_code(), exit::CREDENTIAL_FAILED);
    let problems = status.credentials[0].problems.join("; ");
    assert!(
        problems.contains("incident version") && problems.contains("`rekey rotate --leaked app-db`"),
        "{problems}"
    );

    for options in [due(), RotateOptions::default()] {
        let run = h.rotate(options).await.unwrap();
        assert_eq!(
            failure(&run),
            Some("sessions_not_ended"),
            "{:?}",
            run.credentials[0].error
        );
        assert_eq!(h.target.open_sessions(&leaked), 1, "the session is still there");
        assert_eq!(h.state().previous().unwrap().revoked, None, "not recorded as revoked");
    }
}

/// The same, once the admin may end sessions: a plain `--due` run finishes the incident
/// with its sessions ended, not just its revocation recorded.
#[tokio::test(start_paused = true)]
async fn a_due_run_finishing_an_incident_ends_its_sessions() {
    let (h, leaked) = Harness::imported(ScriptedTargetConfig::for_strategy(Strategy::Single)).await;
    h.target.open_session(&leaked).unwrap();
    h.target
        .fault(TargetOp::Revoke, Fault::Fail(ErrorKind::PermissionDenied));
    let first = h.rotate(incident()).await.unwrap();
    assert_eq!(failure(&first), Some("sessions_not_ended"));
    let promoted = h.state().current().unwrap().id.clone();

    let run = h.rotate(due()).await.unwrap();
    assert_eq!(run.exit_code(), exit::SUCCESS, "{:?}", run.credentials[0].error);
    assert_eq!(
        h.target.open_sessions(&leaked),
        0,
        "the leaked secret's sessions are gone"
    );
    let state = h.state();
    assert_eq!(state.current().unwrap().id, promoted, "no new rotation");
    assert!(state.previous().unwrap().revoked.is_some());
    assert_eq!(h.verify().await.exit_code(), exit::SUCCESS);
}

/// With a configured grace period (`dual`), a failed incident revocation was taken for
/// a routine one inside its grace: `status` said ok and `--due` said not due. A leaked
/// secret gets no grace, whoever finishes it.
#[tokio::test(start_paused = true)]
async fn a_leaked_secret_left_valid_gets_no_grace() {
    let (mut h, leaked) = Harness::imported(ScriptedTargetConfig::for_strategy(Strategy::Dual)).await;
    h.credential.grace = std::time::Duration::from_secs(3600);
    h.target.open_session(&leaked).unwrap();
    h.target.fault(TargetOp::Revoke, Fault::Fail(ErrorKind::Unreachable));
    let first = h.rotate(incident()).await.unwrap();
    assert_eq!(first.exit_code(), exit::CREDENTIAL_FAILED);
    assert!(h.target.accepts(&leaked), "the failed revoke left it valid");

    let status = h.status().await;
    assert_eq!(
        status.exit_code(),
        exit::CREDENTIAL_FAILED,
        "not ok inside a grace period"
    );
    let verify = h.verify().await;
    assert_eq!(verify.exit_code(), exit::CREDENTIAL_FAILED);
    assert_eq!(
        verify.credentials[0].error.as_ref().unwrap().kind.as_str(),
        "still_valid"
    );

    let run = h.rotate(due()).await.unwrap();
    assert_eq!(run.exit_code(), exit::SUCCESS, "{:?}", run.credentials[0].error);
    assert!(!h.target.accepts(&leaked), "revoked now, not after the grace");
    assert_eq!(h.target.open_sessions(&leaked), 0, "and its sessions ended");
}

/// An incident run killed after apply left its version pending; `status` said `rekey
/// rotate NAME` finishes it, and that plain run finished it without ending the leaked
/// secret's sessions. A `--leaked` rerun, on the other hand, finished it and then rotated
/// a second time, although the pending version was made after the leak.
#[tokio::test(start_paused = true)]
async fn an_interrupted_incident_is_finished_as_an_incident_and_only_once() {
    for rerun_options in [RotateOptions::default(), incident()] {
        let (h, leaked) = Harness::imported(ScriptedTargetConfig::for_strategy(Strategy::Single)).await;
        h.target.open_session(&leaked).unwrap();
        h.target.fault(TargetOp::Apply, Fault::CrashAfter);
        assert!(h.rotate(incident()).await.is_none(), "killed after apply");
        h.crash.reset();
        let pending = h.state().pending().unwrap().id.clone();
        assert!(pending.starts_with(INCIDENT_VERSION_PREFIX));
        let status = h.status().await;
        let problems = status.credentials[0].problems.join("; ");
        assert!(
            problems.contains("`rekey rotate --leaked app-db` finishes it"),
            "{problems}"
        );

        let run = h.rotate(rerun_options.clone()).await.unwrap();
        assert_eq!(run.exit_code(), exit::SUCCESS, "{:?}", run.credentials[0].error);
        let state = h.state();
        assert_eq!(state.current().unwrap().id, pending, "finished once, not rotated again");
        assert!(state.previous().unwrap().revoked.is_some());
        assert_eq!(
            h.target.open_sessions(&leaked),
            0,
            "the leaked secret's sessions are gone"
        );
    }
}

/// `plan --leaked` for an incident whose sessions survived listed a new rotation
/// (generate, stage, apply...), while `rotate --leaked` only finishes the revocation.
#[tokio::test(start_paused = true)]
async fn plan_leaked_shows_that_only_the_revocation_is_left() {
    use crate::engine::inspection::PlanStep;
    let (h, leaked) = Harness::imported(ScriptedTargetConfig::for_strategy(Strategy::Single)).await;
    h.target.open_session(&leaked).unwrap();
    h.target
        .fault(TargetOp::Revoke, Fault::Fail(ErrorKind::PermissionDenied));
    assert_eq!(
        failure(&h.rotate(incident()).await.unwrap()),
        Some("sessions_not_ended")
    );

    let plan = h.plan_with(incident()).await;
    let steps: Vec<PlanStep> = plan.credentials[0].plan.iter().map(|i| i.step).collect();
    assert!(!steps.contains(&PlanStep::Generate), "{:?}", plan.credentials[0].plan);
    assert!(!steps.contains(&PlanStep::Apply), "{:?}", plan.credentials[0].plan);
    let revoke = plan.credentials[0]
        .plan
        .iter()
        .find(|i| i.step == PlanStep::Revoke)
        .expect("a revoke item");
    assert!(revoke.action.contains("end its sessions"), "{}", revoke.action);

    let routine = h.plan().await;
    let revoke = routine.credentials[0]
        .plan
        .iter()
        .find(|i| i.step == PlanStep::Revoke)
        .expect("a revoke item");
    assert!(revoke.action.contains("ending its sessions"), "{}", revoke.action);
}

/// `verify` said "the current secret does not work" when the service could not be
/// reached at all: only a refusal says that.
#[tokio::test(start_paused = true)]
async fn verify_tells_an_unreachable_service_from_a_refused_secret() {
    let (h, _) = Harness::imported(ScriptedTargetConfig::for_strategy(Strategy::Dual)).await;
    h.target.fault(TargetOp::Verify, Fault::Fail(ErrorKind::Unreachable));
    let run = h.verify().await;
    assert_eq!(run.exit_code(), exit::CREDENTIAL_FAILED);
    let problems = run.credentials[0].problems.join("; ");
    assert!(problems.contains("could not check the current secret"), "{problems}");
    assert!(!problems.contains("does not work"), "{problems}");

    h.target.fault(TargetOp::Verify, Fault::Fail(ErrorKind::AuthRejected));
    let problems = h.verify().await.credentials[0].problems.join("; ");
    assert!(problems.contains("the current secret does not work"), "{problems}");
}
