//! A simulation of every crash and fault: for each strategy, each operation of the
//! store and the target, the first few calls of it, and each fault (crash before or
//! after the effect, failure, failure after the effect, unreachable, login rejected),
//! one run with the fault, then a restart without it. After each run the invariants of
//! the protocol are checked:
//!
//! 1. at least one stored version (current or pending) works at the target;
//! 2. a run exits 0 only if the stored current works and the previous is dead;
//! 3. no minted secret is alive at the target unless the store holds it;
//! 4. the restart converges: exit 0, current works, nothing pending, previous dead.
//!
//! Runs in plain `cargo test` in seconds (paused tokio time, no servers) and prints how
//! many cases it ran.

use super::harness::{Harness, KEY};
use crate::engine::{RotateOptions, RunReport};
use crate::exit;
use rekey_api::testing::{Fault, ScriptedTargetConfig, StoreOp, TargetOp};
use rekey_api::{ErrorKind, KeyState, Strategy};

/// An operation a fault is injected into.
#[derive(Debug, Clone, Copy)]
enum Op {
    Store(StoreOp),
    Target(TargetOp),
}

const STORE_OPS: [StoreOp; 4] = [
    StoreOp::Read,
    StoreOp::StagePending,
    StoreOp::Promote,
    StoreOp::MarkRevoked,
];
const TARGET_OPS: [TargetOp; 7] = [
    TargetOp::Precheck,
    TargetOp::Prepare,
    TargetOp::Apply,
    TargetOp::Login,
    TargetOp::Verify,
    TargetOp::Retire,
    TargetOp::Revoke,
];

fn faults(op: Op) -> Vec<Fault> {
    let mut all = vec![
        Fault::CrashBefore,
        Fault::CrashAfter,
        Fault::Fail(ErrorKind::Unreachable),
        Fault::FailAfterEffect(ErrorKind::Unreachable),
        Fault::Fail(ErrorKind::Other),
    ];
    if let Op::Target(TargetOp::Login | TargetOp::Verify) = op {
        all.push(Fault::Fail(ErrorKind::AuthRejected));
    }
    if let Op::Store(StoreOp::StagePending | StoreOp::Promote) = op {
        all.push(Fault::Fail(ErrorKind::Conflict));
    }
    all
}

fn configs() -> Vec<(&'static str, ScriptedTargetConfig)> {
    vec![
        ("single", ScriptedTargetConfig::for_strategy(Strategy::Single)),
        ("dual", ScriptedTargetConfig::for_strategy(Strategy::Dual)),
        ("alternating", ScriptedTargetConfig::for_strategy(Strategy::Alternating)),
        ("dual-minted", ScriptedTargetConfig::minting()),
    ]
}

/// What one case found wrong, or nothing.
fn check_after_run(h: &Harness, report: Option<&RunReport>, final_run: bool) -> Result<(), String> {
    let state: KeyState = h.state();
    let current_works = state.current().is_some_and(|c| h.target.accepts(&c.doc));
    let pending_works = state.pending().is_some_and(|p| h.target.accepts(&p.doc));
    if !current_works && !pending_works {
        return Err("no stored version works at the target".into());
    }
    let stored_keys: Vec<String> = state
        .versions
        .iter()
        .filter_map(|v| v.doc.get_str("access_key_id").map(str::to_owned))
        .collect();
    // A crash between minting and staging (or a mint whose answer was lost) leaves a key
    // no store holds; the restart must clean it up.
    for id in h.target.live_minted().into_iter().filter(|_| final_run) {
        if !stored_keys.contains(&id) {
            return Err(format!("minted key {id} is alive but stored nowhere"));
        }
    }
    let exited_ok = report.is_some_and(|r| r.exit_code() == exit::SUCCESS);
    if exited_ok {
        if !current_works {
            return Err("exit 0 but the stored current secret does not work".into());
        }
        if let Some(previous) = state.previous() {
            if h.target.accepts(&previous.doc) {
                return Err("exit 0 but the previous secret still works".into());
            }
        }
    }
    if final_run {
        let Some(report) = report else {
            return Err("the restart crashed".into());
        };
        if report.exit_code() != exit::SUCCESS {
            let error = report.credentials[0].error_line().unwrap_or_default();
            return Err(format!("the restart did not converge: {error}"));
        }
        if state.pending().is_some() {
            return Err("the restart left a pending version".into());
        }
    }
    Ok(())
}

async fn one_case(
    config: ScriptedTargetConfig,
    op: Op,
    skip: usize,
    fault: Fault,
    incident: bool,
) -> Option<Result<(), String>> {
    let (h, _) = Harness::imported(config).await;
    match op {
        Op::Store(op) => h.store.fault_nth(op, skip, fault),
        Op::Target(op) => h.target.fault_nth(op, skip, fault),
    }
    let options = || RotateOptions {
        incident,
        ..Default::default()
    };
    let first = h.rotate(options()).await;
    let fired = h.store.queued_faults() + h.target.queued_faults() == 0;
    h.store.clear_faults();
    h.target.clear_faults();
    if !fired {
        // This call never happens on this path: not a case.
        return None;
    }
    if let Err(e) = check_after_run(&h, first.as_ref(), false) {
        return Some(Err(format!("after the faulty run: {e}")));
    }
    let restart = h.rotate(options()).await;
    if let Err(e) = check_after_run(&h, restart.as_ref(), true) {
        return Some(Err(format!("after the restart: {e}")));
    }
    let verify = h.verify().await;
    if verify.exit_code() != exit::SUCCESS {
        let error = verify.credentials[0].error_line().unwrap_or_default();
        return Some(Err(format!("verify after the restart: {error}")));
    }
    let _ = KEY;
    Some(Ok(()))
}

#[tokio::test(start_paused = true)]
async fn every_crash_and_fault_at_every_step_recovers() {
    let mut ran = 0;
    let mut failures = Vec::new();
    let ops: Vec<Op> = STORE_OPS
        .iter()
        .map(|&o| Op::Store(o))
        .chain(TARGET_OPS.iter().map(|&o| Op::Target(o)))
        .collect();
    for (name, config) in configs() {
        for incident in [false, true] {
            for &op in &ops {
                for skip in 0..3 {
                    for fault in faults(op) {
                        match one_case(config.clone(), op, skip, fault, incident).await {
                            None => {}
                            Some(Ok(())) => ran += 1,
                            Some(Err(e)) => {
                                ran += 1;
                                failures.push(format!(
                                    "{name}{}: {op:?} call #{} {fault}: {e}",
                                    if incident { " (incident)" } else { "" },
                                    skip + 1
                                ));
                            }
                        }
                    }
                }
            }
        }
    }
    println!("simulation: {ran} crash/fault cases ran, {} failed", failures.len());
    assert!(ran >= 200, "only {ran} cases reached their fault");
    assert!(
        failures.is_empty(),
        "{} cases broke an invariant:\n{}",
        failures.len(),
        failures.join("\n")
    );
}
