//! The engine acts on what targets declare (issue 15): a strategy the target's
//! capabilities do not list is a configuration error before anything runs.

use super::harness::Harness;
use crate::engine::{RotateOptions, RunError};
use rekey_api::testing::{ScriptedTargetConfig, TargetOp};
use rekey_api::{Strategy, Target};

#[tokio::test(start_paused = true)]
async fn a_strategy_the_target_does_not_declare_is_refused_before_anything_runs() {
    // A target that mints its keys declares `dual` only.
    let (mut h, old) = Harness::imported(ScriptedTargetConfig::minting()).await;
    h.credential.strategy = Strategy::Single;
    h.target.clear_calls();
    let refused = h
        .engine()
        .rotate(vec![h.credential.clone()], RotateOptions::default())
        .await;
    match refused {
        Err(RunError::Config(message)) => assert!(
            message.contains("strategy \"single\" is not supported") && message.contains("supported: dual"),
            "{message}"
        ),
        other => panic!("expected a configuration error, got {other:?}"),
    }
    for refused in [
        h.engine()
            .plan(vec![h.credential.clone()], RotateOptions::default())
            .await,
        h.engine().verify(vec![h.credential.clone()]).await,
    ] {
        assert!(matches!(refused, Err(RunError::Config(_))), "{refused:?}");
    }
    assert!(
        h.target
            .calls()
            .iter()
            .all(|op| *op != TargetOp::Prepare && *op != TargetOp::Apply),
        "{:?}",
        h.target.calls()
    );
    assert_eq!(h.state().current().map(|c| &c.doc), Some(&old));

    // The declared one runs.
    h.credential.strategy = Strategy::Dual;
    let run = h.rotate(RotateOptions::default()).await.unwrap();
    assert_eq!(run.exit_code(), crate::exit::SUCCESS, "{:?}", run.credentials[0].error);
}

/// In an incident, only a target that declares it can end sessions is asked to (the fake
/// refuses to be asked otherwise); the leaked secret still dies.
#[tokio::test(start_paused = true)]
async fn an_incident_asks_only_targets_that_can_end_sessions() {
    for config in [
        ScriptedTargetConfig::minting(),
        ScriptedTargetConfig {
            terminate_sessions: false,
            ..ScriptedTargetConfig::for_strategy(Strategy::Single)
        },
    ] {
        let (h, leaked) = Harness::imported(config).await;
        assert!(!h.target.capabilities().terminate_sessions);
        let options = RotateOptions {
            incident: true,
            ..Default::default()
        };
        let run = h.rotate(options).await.unwrap();
        assert_eq!(run.exit_code(), crate::exit::SUCCESS, "{:?}", run.credentials[0].error);
        assert!(!h.target.accepts(&leaked), "the leaked secret is dead");
    }
    // A target that can is asked, and ends the leaked secret's session.
    let (h, leaked) = Harness::imported(ScriptedTargetConfig::for_strategy(Strategy::Single)).await;
    h.target.open_session(&leaked).unwrap();
    let options = RotateOptions {
        incident: true,
        ..Default::default()
    };
    let run = h.rotate(options).await.unwrap();
    assert_eq!(run.exit_code(), crate::exit::SUCCESS, "{:?}", run.credentials[0].error);
    assert_eq!(h.target.sessions_terminated(), 1);
}

/// `retire` (IAM's deactivation at the start of a grace period) is called only for a
/// target that declares it does something.
#[tokio::test(start_paused = true)]
async fn retire_is_called_only_for_targets_that_declare_it() {
    for (config, retires) in [
        (ScriptedTargetConfig::for_strategy(Strategy::Dual), false),
        (ScriptedTargetConfig::minting(), true),
    ] {
        let (h, _) = Harness::imported(config).await;
        assert_eq!(h.target.capabilities().retires_previous, retires);
        h.target.clear_calls();
        let options = RotateOptions {
            grace: Some(std::time::Duration::from_secs(3600)),
            ..Default::default()
        };
        let run = h.rotate(options).await.unwrap();
        assert_eq!(run.exit_code(), crate::exit::SUCCESS, "{:?}", run.credentials[0].error);
        assert_eq!(
            h.target.calls().contains(&TargetOp::Retire),
            retires,
            "{:?}",
            h.target.calls()
        );
    }
}
