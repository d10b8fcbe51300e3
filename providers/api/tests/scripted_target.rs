//! The target conformance suite from `rekey-api`, run against the scripted FAKE target
//! under each strategy, plus the fake's own strategy semantics.
//!
//! A rule that does not apply to a configuration is an ignored test whose reason says
//! why (reported as skipped, never as passed); run with `--ignored` it checks that the
//! capabilities agree that the rule does not apply.

use rekey_api::conformance::{random_password, target as suite};
use rekey_api::testing::{ScriptedTarget, ScriptedTargetConfig};
use rekey_api::{ErrorKind, RevokeOptions, SecretDoc, Strategy, Target};

fn setup(config: ScriptedTargetConfig) -> (ScriptedTarget, SecretDoc) {
    let target = ScriptedTarget::new(config);
    let current = target.seed_new();
    (target, current)
}

/// After a rule: the returned document works, and when a rotation happened, the old
/// one is dead and nothing else is left accepted (no leaked password or key).
fn check_after(target: &ScriptedTarget, before: &SecretDoc, after: &SecretDoc) {
    assert!(target.accepts(after), "the returned document must work");
    if after == before {
        return;
    }
    assert!(
        !target.accepts(before),
        "the starting document must be dead after a rotation"
    );
    let config = target.config();
    if config.mints_own_secret {
        assert_eq!(
            target.live_keys(),
            [after.get_str("access_key_id").unwrap()],
            "only the returned key is left"
        );
    } else {
        let held: usize = config.usernames.iter().map(|u| target.passwords_held(u)).sum();
        assert_eq!(held, 1, "only the returned password is left");
    }
}

fn setup_for(config: ScriptedTargetConfig) -> ((), ScriptedTarget, SecretDoc) {
    let (target, current) = setup(config);
    ((), target, current)
}

mod single {
    use super::*;

    fn config() -> ScriptedTargetConfig {
        ScriptedTargetConfig::for_strategy(Strategy::Single)
    }

    rekey_api::target_conformance_tests! {
        setup = async { setup_for(config()) },
        check = |_, target, before, after| check_after(target, before, after),
        skip = [
            dual_holds_both_until_revoke => "single: apply replaces the old password, so both cannot work at once",
            alternating_uses_the_idle_user => "single: only alternating targets have an idle user",
        ],
    }

    #[tokio::test]
    async fn run_all() {
        let (target, current) = setup(config());
        let after = suite::run_all(&target, current.clone()).await;
        check_after(&target, &current, &after);
    }
}

mod dual {
    use super::*;

    fn config() -> ScriptedTargetConfig {
        ScriptedTargetConfig::for_strategy(Strategy::Dual)
    }

    rekey_api::target_conformance_tests! {
        setup = async { setup_for(config()) },
        check = |_, target, before, after| check_after(target, before, after),
        skip = [
            alternating_uses_the_idle_user => "dual: only alternating targets have an idle user",
        ],
    }

    #[tokio::test]
    async fn run_all() {
        let (target, current) = setup(config());
        let after = suite::run_all(&target, current.clone()).await;
        check_after(&target, &current, &after);
    }
}

mod dual_minting {
    use super::*;

    fn config() -> ScriptedTargetConfig {
        ScriptedTargetConfig::minting()
    }

    rekey_api::target_conformance_tests! {
        setup = async { setup_for(config()) },
        check = |_, target, before, after| check_after(target, before, after),
        skip = [
            alternating_uses_the_idle_user => "minted keys (dual): only alternating targets have an idle user",
        ],
    }

    #[tokio::test]
    async fn run_all_mints_one_key_per_rotation() {
        let (target, current) = setup(config());
        let after = suite::run_all(&target, current.clone()).await;
        check_after(&target, &current, &after);
        // apply_then_verify, prepare_uses_the_declared_secret, apply_is_idempotent,
        // revoked_secret_is_rejected and dual_holds_both_until_revoke each rotate once.
        assert_eq!(target.minted_count(), 5);
        assert_eq!(target.live_minted(), [after.get_str("access_key_id").unwrap()]);
    }
}

mod alternating {
    use super::*;

    fn config() -> ScriptedTargetConfig {
        ScriptedTargetConfig::for_strategy(Strategy::Alternating)
    }

    rekey_api::target_conformance_tests! {
        setup = async { setup_for(config()) },
        check = |_, target, before, after| check_after(target, before, after),
    }

    #[tokio::test]
    async fn run_all() {
        let (target, current) = setup(config());
        let after = suite::run_all(&target, current.clone()).await;
        check_after(&target, &current, &after);
    }
}

/// A rule called on a target it does not apply to panics and says how to skip it.
#[tokio::test]
#[should_panic(expected = "list it in the test's `skip = [dual_holds_both_until_revoke")]
async fn an_inapplicable_rule_panics_instead_of_passing() {
    let (target, current) = setup(ScriptedTargetConfig::for_strategy(Strategy::Single));
    suite::dual_holds_both_until_revoke(&target, current).await;
}

/// `run_all` goes on after a failing rule and reports every failure at the end.
#[tokio::test]
async fn run_all_goes_on_after_a_failure() {
    let (target, _) = setup(ScriptedTargetConfig::for_strategy(Strategy::Dual));
    let target = std::sync::Arc::new(target);
    let mut wrong = target.seed_new();
    wrong.set_password(&random_password(32));
    let shared = target.clone();
    let result = tokio::spawn(async move { suite::run_all(&*shared, wrong).await }).await;
    let panic = result.expect_err("run_all must fail").into_panic();
    let message = panic.downcast_ref::<String>().expect("a message");
    assert!(message.contains("1 target conformance rule(s) failed"), "{message}");
    assert!(
        message.contains("current_works: the starting secret must log in"),
        "{message}"
    );
    // The rules after current_works ran (they rotated).
    assert!(target.calls().len() > 1, "{:?}", target.calls());
}

// ---- the fake's own semantics ----

#[test]
fn capabilities_follow_the_config() {
    let single = ScriptedTarget::new(ScriptedTargetConfig::default());
    let caps = single.capabilities();
    assert_eq!(caps.strategy, Strategy::Single);
    assert_eq!(
        caps.strategies,
        [Strategy::Single, Strategy::Dual, Strategy::Alternating]
    );
    assert!(caps.apply_invalidates_previous && caps.terminate_sessions && !caps.mints_own_secret);
    assert_eq!(single.describe(), "fake target user \"app\"");

    let minting = ScriptedTarget::new(ScriptedTargetConfig::minting());
    let caps = minting.capabilities();
    assert_eq!(caps.strategies, [Strategy::Dual]);
    assert!(caps.mints_own_secret && !caps.apply_invalidates_previous && !caps.terminate_sessions);

    let alternating = ScriptedTarget::new(ScriptedTargetConfig::for_strategy(Strategy::Alternating));
    assert!(!alternating.capabilities().apply_invalidates_previous);
    assert!(alternating.describe().contains("\"app_a\" and \"app_b\""));
    assert!(alternating.describe().starts_with("fake target"));
}

#[test]
fn complete_fills_engine_and_username_only_when_missing() {
    let target = ScriptedTarget::new(ScriptedTargetConfig::default());
    let mut doc = SecretDoc::new();
    target.complete(&mut doc);
    assert_eq!(doc.get_str("engine"), Some("fake"));
    assert_eq!(doc.username(), Some("app"));
    let mut doc = SecretDoc::new();
    doc.set("engine", "mine");
    doc.set("username", "other");
    target.complete(&mut doc);
    assert_eq!((doc.get_str("engine"), doc.username()), (Some("mine"), Some("other")));
}

#[test]
#[should_panic(expected = "two distinct usernames")]
fn alternating_needs_two_users() {
    ScriptedTarget::new(ScriptedTargetConfig {
        strategy: Strategy::Alternating,
        ..ScriptedTargetConfig::default()
    });
}

#[test]
#[should_panic(expected = "use strategy dual")]
fn minting_needs_dual() {
    ScriptedTarget::new(ScriptedTargetConfig {
        mints_own_secret: true,
        ..ScriptedTargetConfig::default()
    });
}

#[tokio::test]
async fn wrong_username_is_rejected() {
    let (target, current) = setup(ScriptedTargetConfig::default());
    let mut other = current.clone();
    other.set("username", "intruder");
    assert_eq!(target.login(&other).await.unwrap_err().kind(), ErrorKind::AuthRejected);
    assert_eq!(
        target.apply(&other, Some(&current)).await.unwrap_err().kind(),
        ErrorKind::InvalidInput,
        "apply refuses a document for another user"
    );
}

#[tokio::test]
async fn dual_holds_at_most_two() {
    let (target, first) = setup(ScriptedTargetConfig::for_strategy(Strategy::Dual));
    let second = target.prepare(Some(&first), random_password(16)).await.unwrap();
    target.apply(&second, Some(&first)).await.unwrap();
    let third = target.prepare(Some(&second), random_password(16)).await.unwrap();
    target.apply(&third, Some(&second)).await.unwrap();
    assert_eq!(target.passwords_held("app"), 2);
    assert!(!target.accepts(&first), "the oldest was dropped");
    assert!(target.accepts(&second) && target.accepts(&third));
}

#[tokio::test]
async fn alternating_never_touches_the_live_user() {
    let (target, current) = setup(ScriptedTargetConfig::for_strategy(Strategy::Alternating));
    assert_eq!(current.username(), Some("app_a"));
    let mut wrong = current.clone();
    wrong.set_password(&random_password(16));
    let err = target.apply(&wrong, Some(&current)).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::InvalidInput);
    assert!(target.accepts(&current), "the live user is untouched");
    let new = target.prepare(Some(&current), random_password(16)).await.unwrap();
    assert_eq!(new.username(), Some("app_b"));
    assert!(!target.accepts(&new), "prepare changes nothing");
}

#[tokio::test]
async fn minting_retire_deactivates_and_apply_reactivates() {
    let (target, current) = setup(ScriptedTargetConfig::minting());
    let new = target.prepare(Some(&current), random_password(16)).await.unwrap();
    assert!(target.accepts(&new), "a minted key works at once");
    assert_ne!(new.get_str("access_key_id"), current.get_str("access_key_id"));
    target.apply(&new, Some(&current)).await.unwrap();
    let done = target.retire(&current, &new).await.unwrap();
    assert!(done.unwrap().starts_with("deactivated access key"));
    assert!(!target.accepts(&current));
    assert_eq!(target.existing_keys().len(), 2, "a deactivated key still counts");
    // Retire is reversible: applying the old key again reactivates it.
    target.apply(&current, None).await.unwrap();
    assert!(target.accepts(&current));
    target.revoke(&current, &new, RevokeOptions::default()).await.unwrap();
    assert_eq!(target.existing_keys().len(), 1);
    assert_eq!(
        target.apply(&current, None).await.unwrap_err().kind(),
        ErrorKind::NotFound,
        "a deleted key cannot come back"
    );
    assert!(target.key_created(new.get_str("access_key_id").unwrap()).is_some());
}

#[tokio::test]
async fn password_targets_do_not_retire() {
    let (target, current) = setup(ScriptedTargetConfig::for_strategy(Strategy::Dual));
    let new = target.prepare(Some(&current), random_password(16)).await.unwrap();
    assert_eq!(target.retire(&current, &new).await.unwrap(), None);
    let lines = target.preflight(Some(&current)).await.unwrap();
    assert!(lines.iter().any(|l| l.contains("\"app\" exists")), "{lines:?}");
}
