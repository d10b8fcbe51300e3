//! The target conformance suite, one test per rule, against the testbed's key-minting API
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
    only_key_alive(&api, &end);
}

type HttpTargetBox = std::sync::Arc<rekey_http::HttpTarget>;

/// Nothing minted is left alive but the returned key.
fn only_key_alive(api: &KeyApi, after: &SecretDoc) {
    let live: Vec<String> = api.live_keys().into_iter().map(|k| k.id).collect();
    assert_eq!(live, vec![after.get_str("key_id").unwrap().to_owned()], "{live:?}");
}

rekey_api::target_conformance_tests! {
    setup = async {
        let api = KeyApi::start().unwrap();
        let first = api.mint("initial");
        let t = target(minting_json(&api), Strategy::Dual);
        (api, t, doc_of(&first))
    },
    check = |api: &KeyApi, _: &rekey_http::HttpTarget, _: &SecretDoc, after: &SecretDoc| only_key_alive(api, after),
    skip = [alternating_uses_the_idle_user => "a key-minting API rotates under dual: no idle user"],
}

/// Every rule chained on one target.
#[tokio::test]
async fn run_all() {
    check(|t, d| async move { suite::run_all(t.as_ref(), d).await }).await;
}
