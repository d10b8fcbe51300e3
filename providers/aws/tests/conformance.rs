//! The store and target conformance suites from `rekey-api`, against moto's server with
//! signatures checked.

mod common;

use common::{admin_provider, create_user_with_key, iam_config, moto, sm_config};
use rekey_api::conformance::{store as store_suite, target as target_suite, unique_name};
use rekey_api::{Store, Strategy};
use rekey_aws::IamOptions;
use std::sync::Arc;

fn store() -> Arc<dyn Store> {
    let server = moto();
    admin_provider(server)
        .secrets_manager_store(&sm_config(server))
        .unwrap()
}

#[tokio::test(flavor = "multi_thread")]
async fn missing_key_is_not_found() {
    store_suite::missing_key_is_not_found(store().as_ref(), &unique_name("missing")).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn stage_promote_previous() {
    store_suite::stage_promote_previous(store().as_ref(), &unique_name("promote")).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn stage_is_idempotent_and_guarded() {
    store_suite::stage_is_idempotent_and_guarded(store().as_ref(), &unique_name("guarded")).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn pending_survives_reopen() {
    // A fresh provider each time: nothing cached survives but what is in Secrets Manager.
    let open = || async { store() };
    store_suite::pending_survives_reopen(open, &unique_name("durable")).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn concurrent_writer_detected() {
    // Two providers: separate clients, connections and credential caches, as two hosts.
    let a = store();
    let b = store();
    // Race repeatedly: one round could pass by luck of scheduling.
    for round in 0..10 {
        store_suite::concurrent_writer_detected(a.clone(), b.clone(), &unique_name(&format!("race{round}"))).await;
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn discard_pending_keeps_history() {
    store_suite::discard_pending_keeps_history(store().as_ref(), &unique_name("discard")).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn discard_pending_is_idempotent() {
    store_suite::discard_pending_is_idempotent(store().as_ref(), &unique_name("discard_twice")).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn discard_of_another_version_is_a_conflict() {
    store_suite::discard_of_another_version_is_a_conflict(store().as_ref(), &unique_name("discard_other")).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn discard_on_missing_key_is_not_found() {
    store_suite::discard_on_missing_key_is_not_found(store().as_ref(), &unique_name("missing")).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn stage_after_discard() {
    store_suite::stage_after_discard(store().as_ref(), &unique_name("restage")).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn iam_target_conformance() {
    let server = moto();
    let user = unique_name("app");
    let first = create_user_with_key(server, &user).await;
    let target = admin_provider(server)
        .iam_target(&iam_config(server, &user), Strategy::Dual, IamOptions::default())
        .unwrap();
    let last = target_suite::run_all(target.as_ref(), first).await;
    // IAM holds only the last key: every rotation's revoke deleted the key before it.
    let keys = common::list_keys(server, &user).await;
    assert_eq!(keys.len(), 1, "{keys:?}");
    assert_eq!(Some(keys[0].0.as_str()), last.get_str("access_key_id"));
}
