//! The target conformance suite, rule by rule, against the testbed's key-minting API
//! (strategy `dual` with `create`): admin token enforced, keys minted with ids in nested
//! JSON, a deleted key still accepted for 300 ms, a 429 with `Retry-After: 1` on every
//! 9th request.

mod common;

use common::*;
use rekey_api::conformance::target as suite;
use rekey_api::{SecretDoc, Strategy, Target};
use rekey_testbed::keyapi::KeyApi;

async fn check<F, Fut>(rule: F)
where
    F: FnOnce(HttpTargetBox, SecretDoc) -> Fut,
    Fut: std::future::Future<Output = SecretDoc>,
{
    let api = KeyApi::start().unwrap();
    let first = api.mint("initial");
    let t = std::sync::Arc::new(target(minting_json(&api), Strategy::Dual));
    let end = rule(t.clone(), doc_of(&first)).await;
    t.login(&end).await.expect("the last document works");
    // Nothing minted is left alive but the last key.
    let live: Vec<String> = api.live_keys().into_iter().map(|k| k.id).collect();
    assert_eq!(live, vec![end.get_str("key_id").unwrap().to_owned()], "{live:?}");
}

type HttpTargetBox = std::sync::Arc<rekey_http::HttpTarget>;

#[tokio::test]
async fn current_works() {
    check(|t, d| async move { suite::current_works(t.as_ref(), d).await }).await;
}

#[tokio::test]
async fn wrong_secret_is_auth_rejected() {
    check(|t, d| async move { suite::wrong_secret_is_auth_rejected(t.as_ref(), d).await }).await;
}

#[tokio::test]
async fn apply_then_verify() {
    check(|t, d| async move { suite::apply_then_verify(t.as_ref(), d).await }).await;
}

#[tokio::test]
async fn apply_is_idempotent() {
    check(|t, d| async move { suite::apply_is_idempotent(t.as_ref(), d).await }).await;
}

#[tokio::test]
async fn revoked_secret_is_rejected() {
    check(|t, d| async move { suite::revoked_secret_is_rejected(t.as_ref(), d).await }).await;
}

#[tokio::test]
async fn dual_holds_both_until_revoke() {
    check(|t, d| async move { suite::dual_holds_both_until_revoke(t.as_ref(), d).await }).await;
}

#[tokio::test]
async fn alternating_uses_the_idle_user_is_skipped() {
    // Not an alternating target: the rule returns the document untouched.
    check(|t, d| async move {
        assert_ne!(t.capabilities().strategy, Strategy::Alternating);
        suite::alternating_uses_the_idle_user(t.as_ref(), d).await
    })
    .await;
}

#[tokio::test]
async fn run_all() {
    check(|t, d| async move { suite::run_all(t.as_ref(), d).await }).await;
}
