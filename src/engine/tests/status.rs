//! `status` states as time passes, judged by the injected clock (nothing sleeps): no
//! secret, ok, pending, stuck, revocation due and overdue, each failing the run (exit 1)
//! with the problem and the way out, and `ok` again once it is dealt with.

use super::harness::{Harness, KEY};
use crate::engine::inspection::{status_state, STUCK_AFTER};
use crate::engine::{RotateOptions, RunReport, Status};
use crate::exit;
use rekey_api::testing::ScriptedTargetConfig;
use rekey_api::{Store, Strategy};
use std::time::Duration;

const DAY: Duration = Duration::from_secs(86_400);

/// The state of the run's only credential, after checking the run's exit code agrees.
fn state(report: &RunReport) -> &'static str {
    let state = status_state(&report.credentials[0]);
    let expected = if state == "ok" {
        exit::SUCCESS
    } else {
        exit::CREDENTIAL_FAILED
    };
    assert_eq!(
        report.exit_code(),
        expected,
        "{state}: {:?}",
        report.credentials[0].error
    );
    state
}

/// The message of the run's only credential's problem.
fn problem(report: &RunReport) -> String {
    report.credentials[0]
        .error
        .as_ref()
        .map(|e| e.message.clone())
        .unwrap_or_default()
}

#[tokio::test(start_paused = true)]
async fn no_secret_then_ok() {
    let h = Harness::new(ScriptedTargetConfig::for_strategy(Strategy::Single));
    let report = h.status().await;
    assert_eq!(state(&report), "no secret");
    let doc = h.target.seed_new();
    h.store.put_current(KEY, "initial", &doc).await.unwrap();
    assert_eq!(state(&h.status().await), "ok");
}

#[tokio::test(start_paused = true)]
async fn a_pending_version_is_pending_then_stuck_then_finished() {
    let (h, _) = Harness::imported(ScriptedTargetConfig::for_strategy(Strategy::Single)).await;
    let staged = h.target.seed_new();
    h.store.stage_pending(KEY, "half-done", &staged).await.unwrap();
    let report = h.status().await;
    assert_eq!(state(&report), "pending");
    h.clock.advance(STUCK_AFTER + Duration::from_secs(1));
    let report = h.status().await;
    assert_eq!(state(&report), "stuck");
    let message = problem(&report);
    assert!(message.contains("rekey rotate app-db"), "the way out: {message}");
    let run = h.rotate(RotateOptions::default()).await.unwrap();
    assert_eq!(
        run.credentials[0].status,
        Status::Rotated,
        "{:?}",
        run.credentials[0].error
    );
    assert_eq!(state(&h.status().await), "ok");
}

#[tokio::test(start_paused = true)]
async fn a_previous_secret_past_its_grace_is_a_revocation_due() {
    let (mut h, old) = Harness::imported(ScriptedTargetConfig::for_strategy(Strategy::Dual)).await;
    h.credential.grace = Duration::from_secs(3600);
    let run = h.rotate(RotateOptions::default()).await.unwrap();
    assert_eq!(run.credentials[0].status, Status::Rotated);
    assert!(h.target.accepts(&old), "inside the grace period");
    assert_eq!(state(&h.status().await), "ok", "inside the grace period nothing is due");
    h.clock.advance(Duration::from_secs(3601));
    let report = h.status().await;
    assert_eq!(state(&report), "revocation due");
    let message = problem(&report);
    assert!(message.contains("rekey rotate --due"), "the way out: {message}");
    let due = RotateOptions {
        due_only: true,
        ..Default::default()
    };
    assert_eq!(h.rotate(due).await.unwrap().credentials[0].status, Status::Revoked);
    assert!(!h.target.accepts(&old));
    assert_eq!(state(&h.status().await), "ok");
}

#[tokio::test(start_paused = true)]
async fn a_current_secret_older_than_every_is_overdue() {
    let (h, _) = Harness::imported(ScriptedTargetConfig::for_strategy(Strategy::Single)).await;
    h.clock.advance(29 * DAY);
    assert_eq!(state(&h.status().await), "ok");
    h.clock.advance(2 * DAY);
    let report = h.status().await;
    assert_eq!(state(&report), "overdue");
    let run = h
        .rotate(RotateOptions {
            due_only: true,
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(run.credentials[0].status, Status::Rotated);
    assert_eq!(state(&h.status().await), "ok");
}
