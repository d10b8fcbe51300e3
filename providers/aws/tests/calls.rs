//! How many Secrets Manager API calls a rotation costs, counted by a TCP proxy between
//! the store and moto (`rekey_testbed::CountingProxy`: one entry per HTTP request, named
//! by its `X-Amz-Target`). Each rotation runs on a fresh provider (new connections, no
//! remembered labels), as a new `rekey rotate` process would, and calls the store as the
//! engine does.

mod common;

use common::{admin_provider, db_doc, moto, sm_config, uuid};
use rekey_api::conformance::unique_name;
use rekey_api::{Stage, Store};
use rekey_aws::SecretsManagerStore;
use rekey_testbed::CountingProxy;

fn store_via(proxy: &CountingProxy) -> SecretsManagerStore {
    let server = moto();
    let mut config = sm_config(server);
    config.endpoint_url = Some(proxy.endpoint());
    admin_provider(server).aws_secrets_manager_store(&config).unwrap()
}

/// The operation names without the service prefix.
fn ops(calls: Vec<String>) -> Vec<String> {
    calls
        .into_iter()
        .map(|c| c.trim_start_matches("secretsmanager.").to_owned())
        .collect()
}

/// The engine's `single` rotation: read, stage, promote recording the old current as
/// revoked (apply replaced it).
async fn single_rotation(store: &dyn Store, key: &str, password: &str) -> String {
    let state = store.read_for_rotation(key).await.unwrap();
    let version = uuid();
    store.stage_pending(key, &version, &db_doc(password)).await.unwrap();
    store.promote(key, &version, state.current().is_some()).await.unwrap();
    version
}

/// The engine's `dual` rotation with no grace: read, stage, promote, then record the
/// old current's revocation once the target removed it.
async fn dual_rotation(store: &dyn Store, key: &str, password: &str) -> String {
    let state = store.read_for_rotation(key).await.unwrap();
    let old = state.current().unwrap().id.clone();
    let version = uuid();
    store.stage_pending(key, &version, &db_doc(password)).await.unwrap();
    store.promote(key, &version, false).await.unwrap();
    store.mark_revoked(key, &old).await.unwrap();
    version
}

/// A rotation's calls: read the labels and the current value, write the version, take
/// AWSPENDING (compare-and-set), move AWSCURRENT (compare-and-set), record the revocation.
const SIX_CALLS: [&str; 6] = [
    "DescribeSecret",
    "GetSecretValue",
    "PutSecretValue",
    "UpdateSecretVersionStage",
    "UpdateSecretVersionStage",
    "TagResource",
];

#[tokio::test(flavor = "multi_thread")]
async fn a_rotation_costs_six_calls() {
    let proxy = CountingProxy::start(moto().port()).unwrap();
    let key = unique_name("calls/single");
    store_via(&proxy)
        .put_current(&key, &uuid(), &db_doc("imported"))
        .await
        .unwrap();
    proxy.take();

    // First rotation after the import: no previous version.
    let v1 = single_rotation(&store_via(&proxy), &key, "first").await;
    assert_eq!(ops(proxy.take()), SIX_CALLS, "first rotation");

    // Later rotations: the previous version is recorded revoked, so a rotation's read
    // leaves its value unread.
    let mut last = v1;
    for round in 0..3 {
        last = single_rotation(&store_via(&proxy), &key, &format!("round-{round}")).await;
        assert_eq!(ops(proxy.take()), SIX_CALLS, "round {round}");
    }
    let state = store_via(&proxy).read(&key).await.unwrap();
    assert_eq!(state.current().unwrap().id, last);
    assert!(state.previous().unwrap().revoked.is_some());
    assert!(state.pending().is_none());
    // A full read (verify, status) still reads the previous version's value: two
    // GetSecretValue.
    proxy.take();
    store_via(&proxy).read(&key).await.unwrap();
    assert_eq!(
        ops(proxy.take()),
        ["DescribeSecret", "GetSecretValue", "GetSecretValue"]
    );
}

/// A previous version that is not recorded revoked yet (a `dual` rotation still in its
/// grace period) is read: its revocation is outstanding and the rotation needs its value.
#[tokio::test(flavor = "multi_thread")]
async fn an_unrevoked_previous_version_is_read() {
    let proxy = CountingProxy::start(moto().port()).unwrap();
    let key = unique_name("calls/grace");
    let store = store_via(&proxy);
    store.put_current(&key, &uuid(), &db_doc("imported")).await.unwrap();
    let version = uuid();
    store.stage_pending(&key, &version, &db_doc("next")).await.unwrap();
    store.promote(&key, &version, false).await.unwrap();
    proxy.take();
    let state = store_via(&proxy).read_for_rotation(&key).await.unwrap();
    assert_eq!(
        ops(proxy.take()),
        ["DescribeSecret", "GetSecretValue", "GetSecretValue"]
    );
    let previous = state.previous().expect("the previous version is there");
    assert!(previous.revoked.is_none() && previous.doc == db_doc("imported"));
}

#[tokio::test(flavor = "multi_thread")]
async fn a_dual_rotation_costs_the_same() {
    let proxy = CountingProxy::start(moto().port()).unwrap();
    let key = unique_name("calls/dual");
    store_via(&proxy)
        .put_current(&key, &uuid(), &db_doc("imported"))
        .await
        .unwrap();
    dual_rotation(&store_via(&proxy), &key, "first").await;
    proxy.take();
    dual_rotation(&store_via(&proxy), &key, "second").await;
    assert_eq!(ops(proxy.take()), SIX_CALLS);
}

#[tokio::test(flavor = "multi_thread")]
async fn the_proxy_counts_every_request() {
    // The counter itself can fail: a read of a missing secret is one DescribeSecret.
    let proxy = CountingProxy::start(moto().port()).unwrap();
    let store = store_via(&proxy);
    let missing = unique_name("calls/missing");
    assert!(store.read(&missing).await.is_err());
    assert_eq!(ops(proxy.take()), ["DescribeSecret"]);
    let key = unique_name("calls/stages");
    store.put_current(&key, &uuid(), &db_doc("x")).await.unwrap();
    let state = store.read(&key).await.unwrap();
    assert_eq!(state.current().unwrap().stages, vec![Stage::Current]);
    assert!(proxy.calls().len() >= 3, "{:?}", proxy.calls());
}
