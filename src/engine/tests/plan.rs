//! What `plan` tells about a rotation's effect on applications (issue 12): one `effect`
//! line per credential, by strategy, grace and incident.

use super::harness::Harness;
use crate::engine::inspection::PlanStep;
use crate::engine::RotateOptions;
use rekey_api::testing::ScriptedTargetConfig;
use rekey_api::Strategy;
use std::time::Duration;

/// The plan's `effect` lines for one credential of `strategy` under `options`.
async fn effect(strategy: Strategy, options: RotateOptions) -> Vec<String> {
    let (h, _) = Harness::imported(ScriptedTargetConfig::for_strategy(strategy)).await;
    let report = h.plan_with(options).await;
    report.credentials[0]
        .plan
        .iter()
        .filter(|item| item.step == PlanStep::Effect)
        .map(ToString::to_string)
        .collect()
}

fn grace(seconds: u64) -> RotateOptions {
    RotateOptions {
        grace: Some(Duration::from_secs(seconds)),
        ..Default::default()
    }
}

#[tokio::test(start_paused = true)]
async fn single_says_applications_holding_the_old_secret_fail_until_they_re_read_it() {
    let lines = effect(Strategy::Single, grace(3600)).await;
    assert_eq!(lines.len(), 1, "{lines:?}");
    assert!(
        lines[0].contains("applications still holding the old secret fail until they re-read it"),
        "{lines:?}"
    );
}

#[tokio::test(start_paused = true)]
async fn dual_and_alternating_say_both_secrets_work_for_the_grace() {
    for strategy in [Strategy::Dual, Strategy::Alternating] {
        let lines = effect(strategy, grace(3600)).await;
        assert_eq!(lines.len(), 1, "{strategy:?}: {lines:?}");
        assert!(lines[0].contains("both secrets work for 1h"), "{strategy:?}: {lines:?}");
        // Without a grace, plan says the old secret dies at promote, and how to avoid it.
        let lines = effect(strategy, grace(0)).await;
        assert!(
            lines[0].contains("revoked right after promote") && lines[0].contains("set a grace"),
            "{strategy:?}: {lines:?}"
        );
    }
}

#[tokio::test(start_paused = true)]
async fn an_incident_says_the_leaked_secret_stops_working_now() {
    for strategy in [Strategy::Single, Strategy::Dual, Strategy::Alternating] {
        let options = RotateOptions {
            incident: true,
            ..grace(3600)
        };
        let lines = effect(strategy, options).await;
        assert_eq!(lines.len(), 1, "{strategy:?}: {lines:?}");
        assert!(
            lines[0].contains("the leaked secret stops working"),
            "{strategy:?}: {lines:?}"
        );
    }
}
