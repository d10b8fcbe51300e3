//! The engine acts on what targets declare (issue 15): a strategy the target's
//! capabilities do not list is a configuration error before anything runs.

use super::harness::Harness;
use crate::engine::{RotateOptions, RunError};
use rekey_api::testing::{ScriptedTargetConfig, TargetOp};
use rekey_api::Strategy;

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
