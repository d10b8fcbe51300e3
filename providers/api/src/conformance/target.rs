//! Rules every [`Target`] must follow. Each function takes a target and a document
//! that currently works against it, and returns the document that works afterwards,
//! so the calls can be chained and the caller can clean up.
//!
//! Whether a rule applies is decided from the target's declared
//! [`TargetCapabilities`] by [`applicability`]; a rule called on a target it does not
//! apply to panics (it is never counted as passed). Provider tests expand the rules
//! with [`crate::target_conformance_tests!`], listing the rules that do not apply in
//! its `skip`.

use super::random_password;
use crate::capability::TargetCapabilities;
use crate::document::SecretDoc;
use crate::error::ErrorKind;
use crate::strategy::Strategy;
use crate::target::{RevokeOptions, Target};
use std::future::Future;
use std::pin::Pin;

/// Every target rule, in the order [`run_all`] runs them.
pub const RULES: &[&str] = &[
    "capabilities_are_consistent",
    "current_works",
    "wrong_secret_is_auth_rejected",
    "apply_then_verify",
    "prepare_uses_the_declared_secret",
    "apply_is_idempotent",
    "revoked_secret_is_rejected",
    "dual_holds_both_until_revoke",
    "alternating_uses_the_idle_user",
];

/// Whether `rule` applies to a target declaring `caps`: `Err` carries the reason it
/// does not. Panics on a name that is not in [`RULES`].
pub fn applicability(rule: &str, caps: &TargetCapabilities) -> Result<(), &'static str> {
    match rule {
        "capabilities_are_consistent"
        | "current_works"
        | "wrong_secret_is_auth_rejected"
        | "apply_then_verify"
        | "prepare_uses_the_declared_secret"
        | "apply_is_idempotent"
        | "revoked_secret_is_rejected" => Ok(()),
        "dual_holds_both_until_revoke" if caps.apply_invalidates_previous => {
            Err("apply replaces the old secret under the configured strategy \
             (capabilities: apply_invalidates_previous)")
        }
        "dual_holds_both_until_revoke" => Ok(()),
        "alternating_uses_the_idle_user" if caps.strategy != Strategy::Alternating => Err(
            "only a target configured with the alternating strategy has an idle user \
             (capabilities: strategy)",
        ),
        "alternating_uses_the_idle_user" => Ok(()),
        other => panic!("`{other}` is not a target conformance rule (see RULES)"),
    }
}

/// Panics, naming the rule and the reason, when `rule` does not apply to `target`.
fn require(rule: &str, target: &dyn Target) {
    if let Err(why) = applicability(rule, target.capabilities()) {
        panic!(
            "conformance rule `{rule}` does not apply to {}: {why}. It is not counted as \
             passed: list it in the test's `skip = [{rule} => \"<reason>\"]` \
             (rekey_api::target_conformance_tests!)",
            target.describe()
        );
    }
}

async fn rotate_once(target: &dyn Target, current: &SecretDoc) -> SecretDoc {
    let new = target
        .prepare(Some(current), random_password(32))
        .await
        .unwrap_or_else(|e| panic!("prepare failed: {e}"));
    assert!(!new.same_password(current), "prepare must produce a new secret");
    target
        .apply(&new, Some(current))
        .await
        .unwrap_or_else(|e| panic!("apply failed: {e}"));
    new
}

/// The declared capabilities agree with each other: the configured strategy is one the
/// target implements, and under `dual` or `alternating` (two secrets work at once) apply
/// does not invalidate the previous secret. The other rules are gated on these fields.
pub async fn capabilities_are_consistent(target: &dyn Target, current: SecretDoc) -> SecretDoc {
    let caps = target.capabilities();
    assert!(
        caps.strategies.contains(&caps.strategy),
        "the configured strategy {:?} must be one the target implements ({:?})",
        caps.strategy,
        caps.strategies
    );
    if caps.strategy != Strategy::Single {
        assert!(
            !caps.apply_invalidates_previous,
            "under {:?} two secrets work at once: apply must not invalidate the previous one",
            caps.strategy
        );
    }
    current
}

/// The current document works before anything else is tried.
pub async fn current_works(target: &dyn Target, current: SecretDoc) -> SecretDoc {
    target
        .login(&current)
        .await
        .unwrap_or_else(|e| panic!("the starting secret must log in: {e}"));
    current
}

/// Apply then verify: the new secret logs in and passes the configured check.
pub async fn apply_then_verify(target: &dyn Target, current: SecretDoc) -> SecretDoc {
    let new = rotate_once(target, &current).await;
    target
        .verify(&new)
        .await
        .unwrap_or_else(|e| panic!("verify after apply failed: {e}"));
    let report = target.revoke(&current, &new, RevokeOptions::default()).await;
    report.unwrap_or_else(|e| panic!("revoke failed: {e}"));
    new
}

/// `prepare` uses the secret the capabilities declare: a target that does not mint its
/// own secret (`mints_own_secret` false) stores the generated password as the
/// document's password; one that mints it never keeps the generated password anywhere
/// in the document. The rotation is then finished (apply, verify, revoke).
pub async fn prepare_uses_the_declared_secret(target: &dyn Target, current: SecretDoc) -> SecretDoc {
    let generated = random_password(32);
    let new = target
        .prepare(Some(&current), generated.clone())
        .await
        .unwrap_or_else(|e| panic!("prepare failed: {e}"));
    if target.capabilities().mints_own_secret {
        fn holds(value: &serde_json::Value, needle: &str) -> bool {
            match value {
                serde_json::Value::String(s) => s.contains(needle),
                serde_json::Value::Array(items) => items.iter().any(|v| holds(v, needle)),
                serde_json::Value::Object(map) => map.values().any(|v| holds(v, needle)),
                _ => false,
            }
        }
        assert!(
            !holds(&new.to_value(), generated.expose()),
            "a target that mints its own secret (mints_own_secret) must not keep the generated password"
        );
    } else {
        let password = new
            .password()
            .expect("a password target's prepared document holds a password");
        assert!(
            password.expose() == generated.expose(),
            "a password target (mints_own_secret false) must set the generated password"
        );
    }
    target
        .apply(&new, Some(&current))
        .await
        .unwrap_or_else(|e| panic!("apply failed: {e}"));
    target
        .verify(&new)
        .await
        .unwrap_or_else(|e| panic!("verify after apply failed: {e}"));
    target
        .revoke(&current, &new, RevokeOptions::default())
        .await
        .unwrap_or_else(|e| panic!("revoke failed: {e}"));
    new
}

/// A wrong secret is refused with [`ErrorKind::AuthRejected`], not a generic error.
pub async fn wrong_secret_is_auth_rejected(target: &dyn Target, current: SecretDoc) -> SecretDoc {
    let mut wrong = current.clone();
    wrong.set_password(&random_password(32));
    match target.login(&wrong).await {
        Ok(()) => panic!("a wrong secret logged in: the target does not check secrets"),
        Err(e) => assert_eq!(
            e.kind(),
            ErrorKind::AuthRejected,
            "a wrong secret must be auth_rejected, got: {e}"
        ),
    }
    current
}

/// Applying the same document twice is harmless: it still verifies afterwards.
pub async fn apply_is_idempotent(target: &dyn Target, current: SecretDoc) -> SecretDoc {
    let new = rotate_once(target, &current).await;
    target
        .apply(&new, Some(&current))
        .await
        .unwrap_or_else(|e| panic!("a repeated apply must succeed: {e}"));
    target
        .verify(&new)
        .await
        .unwrap_or_else(|e| panic!("verify after a repeated apply failed: {e}"));
    target
        .revoke(&current, &new, RevokeOptions::default())
        .await
        .unwrap_or_else(|e| panic!("revoke failed: {e}"));
    target
        .revoke(&current, &new, RevokeOptions::default())
        .await
        .unwrap_or_else(|e| panic!("a repeated revoke must succeed: {e}"));
    new
}

/// After revoke, the old secret is refused with [`ErrorKind::AuthRejected`] and the new
/// one still works.
pub async fn revoked_secret_is_rejected(target: &dyn Target, current: SecretDoc) -> SecretDoc {
    let new = rotate_once(target, &current).await;
    target
        .verify(&new)
        .await
        .unwrap_or_else(|e| panic!("verify failed: {e}"));
    target
        .revoke(&current, &new, RevokeOptions::default())
        .await
        .unwrap_or_else(|e| panic!("revoke failed: {e}"));
    match target.login(&current).await {
        Ok(()) => panic!("the revoked secret still logs in"),
        Err(e) => assert_eq!(
            e.kind(),
            ErrorKind::AuthRejected,
            "a revoked secret must be auth_rejected, got: {e}"
        ),
    }
    target
        .login(&new)
        .await
        .unwrap_or_else(|e| panic!("the new secret must still log in after revoke: {e}"));
    new
}

/// When the target declares two secrets at once (`dual`), both work between apply and
/// revoke. Does not apply to targets whose apply invalidates the previous secret
/// (panics there).
pub async fn dual_holds_both_until_revoke(target: &dyn Target, current: SecretDoc) -> SecretDoc {
    require("dual_holds_both_until_revoke", target);
    let new = rotate_once(target, &current).await;
    target
        .login(&new)
        .await
        .unwrap_or_else(|e| panic!("new secret must log in after apply: {e}"));
    target
        .login(&current)
        .await
        .unwrap_or_else(|e| panic!("old secret must keep working until revoke: {e}"));
    target
        .revoke(&current, &new, RevokeOptions::default())
        .await
        .unwrap_or_else(|e| panic!("revoke failed: {e}"));
    new
}

/// With alternating users, the new secret always belongs to the idle user (never the
/// live one), both users work between apply and revoke, and the users take turns.
/// Does not apply to targets with another strategy (panics there).
pub async fn alternating_uses_the_idle_user(target: &dyn Target, current: SecretDoc) -> SecretDoc {
    require("alternating_uses_the_idle_user", target);
    let live = current
        .username()
        .expect("an alternating document names its user")
        .to_owned();
    let new = rotate_once(target, &current).await;
    let idle = new.username().expect("prepare names the idle user").to_owned();
    assert_ne!(idle, live, "the new secret must go to the idle user, not the live one");
    target
        .verify(&new)
        .await
        .unwrap_or_else(|e| panic!("the idle user's new secret must verify: {e}"));
    target
        .login(&current)
        .await
        .unwrap_or_else(|e| panic!("the live user must keep working until revoke: {e}"));
    target
        .revoke(&current, &new, RevokeOptions::default())
        .await
        .unwrap_or_else(|e| panic!("revoke failed: {e}"));
    match target.login(&current).await {
        Ok(()) => panic!("the previous user's secret still logs in after revoke"),
        Err(e) => assert_eq!(e.kind(), ErrorKind::AuthRejected, "got: {e}"),
    }
    let newer = rotate_once(target, &new).await;
    assert_eq!(newer.username(), Some(live.as_str()), "the users take turns");
    target
        .verify(&newer)
        .await
        .unwrap_or_else(|e| panic!("verify failed: {e}"));
    target
        .revoke(&new, &newer, RevokeOptions::default())
        .await
        .unwrap_or_else(|e| panic!("revoke failed: {e}"));
    newer
}

type Run<'a> = Pin<Box<dyn Future<Output = SecretDoc> + Send + 'a>>;

fn start<'a>(rule: &str, target: &'a dyn Target, doc: SecretDoc) -> Run<'a> {
    match rule {
        "capabilities_are_consistent" => Box::pin(capabilities_are_consistent(target, doc)),
        "current_works" => Box::pin(current_works(target, doc)),
        "wrong_secret_is_auth_rejected" => Box::pin(wrong_secret_is_auth_rejected(target, doc)),
        "apply_then_verify" => Box::pin(apply_then_verify(target, doc)),
        "prepare_uses_the_declared_secret" => Box::pin(prepare_uses_the_declared_secret(target, doc)),
        "apply_is_idempotent" => Box::pin(apply_is_idempotent(target, doc)),
        "revoked_secret_is_rejected" => Box::pin(revoked_secret_is_rejected(target, doc)),
        "dual_holds_both_until_revoke" => Box::pin(dual_holds_both_until_revoke(target, doc)),
        "alternating_uses_the_idle_user" => Box::pin(alternating_uses_the_idle_user(target, doc)),
        other => panic!("`{other}` is not a target conformance rule (see RULES)"),
    }
}

/// Every rule that applies to `target`, in order, chained on one document; returns the
/// document that works at the end. Rules that do not apply are named on stderr as
/// skipped (never counted as passed). A failing rule does not stop the run: the next
/// rule starts from the last document that worked, and at the end one panic lists
/// every failure (later failures may follow from an earlier one).
///
/// Prefer [`crate::target_conformance_tests!`], which reports each rule as a test.
pub async fn run_all(target: &dyn Target, current: SecretDoc) -> SecretDoc {
    let mut doc = current;
    let mut failures = Vec::new();
    for rule in RULES {
        if let Err(why) = applicability(rule, target.capabilities()) {
            eprintln!("conformance: {rule} skipped (not applicable: {why})");
            continue;
        }
        match super::catch_unwind(start(rule, target, doc.clone())).await {
            Ok(next) => doc = next,
            Err(message) => failures.push(format!("{rule}: {message}")),
        }
    }
    if !failures.is_empty() {
        panic!(
            "{} target conformance rule(s) failed against {}:\n{}",
            failures.len(),
            target.describe(),
            failures.join("\n")
        );
    }
    doc
}
