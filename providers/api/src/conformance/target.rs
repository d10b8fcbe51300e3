//! Rules every [`Target`] must follow. Each function takes a target and a document
//! that currently works against it, and returns the document that works afterwards,
//! so the calls can be chained and the caller can clean up.

use super::random_password;
use crate::document::SecretDoc;
use crate::error::ErrorKind;
use crate::target::{RevokeOptions, Target};

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
/// revoke. Targets that do not hold two secrets skip this rule.
pub async fn dual_holds_both_until_revoke(target: &dyn Target, current: SecretDoc) -> SecretDoc {
    if target.capabilities().apply_invalidates_previous {
        return current;
    }
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
/// Targets with another strategy skip this rule.
pub async fn alternating_uses_the_idle_user(target: &dyn Target, current: SecretDoc) -> SecretDoc {
    if target.capabilities().strategy != crate::Strategy::Alternating {
        return current;
    }
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

/// Every rule in order; returns the document that works at the end.
pub async fn run_all(target: &dyn Target, current: SecretDoc) -> SecretDoc {
    let doc = current_works(target, current).await;
    let doc = wrong_secret_is_auth_rejected(target, doc).await;
    let doc = apply_then_verify(target, doc).await;
    let doc = apply_is_idempotent(target, doc).await;
    let doc = revoked_secret_is_rejected(target, doc).await;
    let doc = dual_holds_both_until_revoke(target, doc).await;
    alternating_uses_the_idle_user(target, doc).await
}
