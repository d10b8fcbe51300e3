//! The Secrets Manager store beyond the conformance suite: what lands in AWS (JSON
//! shape, labels, tags), secrets left by AWS's own rotation protocol, outages, and
//! errors.

mod common;

use common::{admin_provider, assert_clean, db_doc, fast_timeouts, labels, labels_of, moto, raw_sm, sm_config, uuid};
use rekey_api::conformance::unique_name;
use rekey_api::{ErrorKind, Secret, Stage, Store};
use rekey_aws::{
    AwsProvider, AwsSecretsManagerConfig, SecretsManagerStore, CAS_LABEL, REVOKED_TAG_PREFIX, WRITE_LABEL,
};
use rekey_testbed::MotoServer;
use serde_json::Value;

fn store() -> SecretsManagerStore {
    let server = moto();
    admin_provider(server)
        .aws_secrets_manager_store(&sm_config(server))
        .unwrap()
}

async fn raw_value(server: &MotoServer, secret: &str, stage: &str) -> (String, Value) {
    let out = raw_sm(server)
        .await
        .get_secret_value()
        .secret_id(secret)
        .version_stage(stage)
        .send()
        .await
        .unwrap_or_else(|e| panic!("GetSecretValue {stage}: {e:?}"));
    let value = serde_json::from_str(out.secret_string().unwrap()).unwrap();
    (out.version_id().unwrap().to_owned(), value)
}

#[tokio::test(flavor = "multi_thread")]
async fn rekey_writes_the_aws_rotation_shape_and_labels() {
    let server = moto();
    let store = store();
    let key = unique_name("orders/db");
    let (v1, v2, v3) = (uuid(), uuid(), uuid());

    store.put_current(&key, &v1, &db_doc("first-password")).await.unwrap();
    let (id, value) = raw_value(server, &key, "AWSCURRENT").await;
    assert_eq!(id, v1, "the version id is the ClientRequestToken");
    assert_eq!(
        value,
        serde_json::json!({"engine": "postgres", "host": "db.internal", "port": 5432,
                           "username": "orders_app", "password": "first-password", "dbname": "orders"}),
        "applications read exactly the rotation JSON object"
    );

    store
        .stage_pending(&key, &v2, &db_doc("second-password"))
        .await
        .unwrap();
    assert_eq!(
        labels_of(server, &key, &v1).await,
        vec!["AWSCURRENT"],
        "AWSPENDING was taken from where it was parked"
    );
    assert_eq!(labels_of(server, &key, &v2).await, vec!["AWSPENDING", WRITE_LABEL]);
    let (id, value) = raw_value(server, &key, "AWSPENDING").await;
    assert_eq!(id, v2);
    assert_eq!(value["password"], "second-password");
    let (id, _) = raw_value(server, &key, "AWSCURRENT").await;
    assert_eq!(
        id, v1,
        "readers of AWSCURRENT still get the old secret while one is pending"
    );

    store.promote(&key, &v2, false).await.unwrap();
    assert_eq!(
        labels_of(server, &key, &v2).await,
        vec!["AWSCURRENT", "AWSPENDING", WRITE_LABEL],
        "AWSPENDING stays parked on the new current"
    );
    assert_eq!(
        labels_of(server, &key, &v1).await,
        vec!["AWSPREVIOUS"],
        "AWS moved AWSPREVIOUS to the old current"
    );

    store.stage_pending(&key, &v3, &db_doc("third-password")).await.unwrap();
    store.promote(&key, &v3, true).await.unwrap();
    assert_eq!(
        labels_of(server, &key, &v3).await,
        vec!["AWSCURRENT", "AWSPENDING", WRITE_LABEL]
    );
    assert_eq!(labels_of(server, &key, &v2).await, vec!["AWSPREVIOUS"]);
    assert!(
        labels_of(server, &key, &v1).await.is_empty(),
        "the old previous keeps no label"
    );
    let all = labels(server, &key).await;
    assert!(
        all.iter().filter(|(v, _)| v != &v3).all(|(_, l)| !l
            .iter()
            .any(|x| x == "AWSPENDING" || x == WRITE_LABEL || x == CAS_LABEL)),
        "AWSPENDING and the write label only on the current version: {all:?}"
    );

    // The revocation is a tag naming the version, holding the time.
    let described = raw_sm(server)
        .await
        .describe_secret()
        .secret_id(&key)
        .send()
        .await
        .unwrap();
    let tags: Vec<(String, String)> = described
        .tags()
        .iter()
        .map(|t| (t.key().unwrap().to_owned(), t.value().unwrap().to_owned()))
        .collect();
    let revoked: Vec<&(String, String)> = tags.iter().filter(|(k, _)| k.starts_with(REVOKED_TAG_PREFIX)).collect();
    assert_eq!(revoked.len(), 1, "{tags:?}");
    assert_eq!(revoked[0].0, format!("{REVOKED_TAG_PREFIX}{v2}"));
    assert!(revoked[0].1.ends_with('Z'), "RFC 3339 UTC: {}", revoked[0].1);

    let state = store.read(&key).await.unwrap();
    let ids: Vec<&str> = state.versions.iter().map(|v| v.id.as_str()).collect();
    assert_eq!(
        ids,
        vec![v2.as_str(), v3.as_str()],
        "staged versions only, oldest first"
    );
    assert!(state.previous().unwrap().revoked.is_some());
    assert!(state.current().unwrap().doc == db_doc("third-password"));
}

#[tokio::test(flavor = "multi_thread")]
async fn a_rotation_left_by_aws_is_read_as_pending() {
    let server = moto();
    let sm = raw_sm(server).await;
    let key = unique_name("lambda/rotated");
    let (first, pending) = (uuid(), uuid());
    sm.create_secret()
        .name(&key)
        .client_request_token(&first)
        .secret_string(r#"{"engine":"mysql","username":"app","password":"old"}"#)
        .send()
        .await
        .unwrap();
    // What a rotation Lambda's createSecret step does.
    sm.put_secret_value()
        .secret_id(&key)
        .client_request_token(&pending)
        .secret_string(r#"{"engine":"mysql","username":"app","password":"new"}"#)
        .version_stages("AWSPENDING")
        .send()
        .await
        .unwrap();

    let store = store();
    let state = store.read(&key).await.unwrap();
    let p = state
        .pending()
        .expect("AWSPENDING on another version is a pending rotation");
    assert_eq!(p.id, pending, "its ClientRequestToken is the version id");
    assert_eq!(p.doc.password().unwrap().expose(), "new");
    assert_eq!(state.current().unwrap().id, first);

    // rekey refuses to start another rotation over it, and finishes it.
    let err = store.stage_pending(&key, &uuid(), &db_doc("x")).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Conflict, "{err}");
    assert_clean(&err, &key, None);
    store.promote(&key, &pending, false).await.unwrap();
    let state = store.read(&key).await.unwrap();
    assert_eq!(state.current().unwrap().id, pending);
    assert_eq!(state.previous().unwrap().id, first);
    assert!(state.pending().is_none());
}

#[tokio::test(flavor = "multi_thread")]
async fn pending_on_the_current_version_is_a_finished_rotation() {
    let server = moto();
    let sm = raw_sm(server).await;
    let key = unique_name("leftover");
    let first = uuid();
    sm.create_secret()
        .name(&key)
        .client_request_token(&first)
        .secret_string(r#"{"username":"app","password":"p1"}"#)
        .send()
        .await
        .unwrap();
    // A rotation function that moved AWSCURRENT and left AWSPENDING behind.
    sm.update_secret_version_stage()
        .secret_id(&key)
        .version_stage("AWSPENDING")
        .move_to_version_id(&first)
        .send()
        .await
        .unwrap();
    assert_eq!(labels_of(server, &key, &first).await, vec!["AWSCURRENT", "AWSPENDING"]);

    let store = store();
    let state = store.read(&key).await.unwrap();
    assert!(state.pending().is_none(), "AWSPENDING with AWSCURRENT is not pending");
    assert_eq!(state.current().unwrap().stages, vec![Stage::Current]);

    // A new rotation takes AWSPENDING from it (compare-and-set on that version).
    let next = uuid();
    store.stage_pending(&key, &next, &db_doc("p2")).await.unwrap();
    assert_eq!(labels_of(server, &key, &first).await, vec!["AWSCURRENT"]);
    assert_eq!(store.read(&key).await.unwrap().pending().unwrap().id, next);
    store.promote(&key, &next, false).await.unwrap();
    assert_eq!(store.read(&key).await.unwrap().current().unwrap().id, next);
}

#[tokio::test(flavor = "multi_thread")]
async fn staging_is_idempotent_per_client_request_token() {
    let store = store();
    let key = unique_name("tokens");
    let (v1, v2) = (uuid(), uuid());
    store.put_current(&key, &v1, &db_doc("one")).await.unwrap();
    store.put_current(&key, &v1, &db_doc("one")).await.unwrap();
    let err = store.put_current(&key, &v1, &db_doc("zz-other-pw")).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Conflict, "{err}");
    assert_clean(&err, &key, Some("zz-other-pw"));

    store.stage_pending(&key, &v2, &db_doc("two")).await.unwrap();
    store.stage_pending(&key, &v2, &db_doc("two")).await.unwrap();
    let err = store.stage_pending(&key, &v2, &db_doc("changed")).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Conflict, "same token, another value: {err}");
    assert!(!err.is_retryable(), "{err}");
    assert_clean(&err, &key, Some("changed"));
    let state = store.read(&key).await.unwrap();
    assert_eq!(state.pending().unwrap().doc.password().unwrap().expose(), "two");
}

#[tokio::test(flavor = "multi_thread")]
async fn racing_writers_leave_one_pending_and_no_stray_labels() {
    let server = moto();
    // Two providers: separate connections and caches, like two hosts running rekey.
    let a = store();
    let b = store();
    for round in 0..5 {
        let key = unique_name(&format!("race{round}"));
        a.put_current(&key, &uuid(), &db_doc("first")).await.unwrap();
        let (va, vb) = (uuid(), uuid());
        let (da, db) = (db_doc("from-a"), db_doc("from-b"));
        let (ra, rb) = tokio::join!(a.stage_pending(&key, &va, &da), b.stage_pending(&key, &vb, &db));
        assert!(ra.is_ok() != rb.is_ok(), "exactly one wins: {ra:?} {rb:?}");
        let (winner, loser, err) = match (&ra, &rb) {
            (Ok(()), Err(e)) => (&va, &vb, e),
            (Err(e), Ok(())) => (&vb, &va, e),
            _ => unreachable!(),
        };
        assert_eq!(err.kind(), ErrorKind::Conflict, "{err}");
        assert_clean(err, &key, Some("from-"));
        let won = labels_of(server, &key, winner).await;
        assert!(won.iter().any(|l| l == "AWSPENDING"), "{won:?}");
        let lost = labels_of(server, &key, loser).await;
        assert!(
            lost.iter().all(|l| l == WRITE_LABEL),
            "the loser's version holds no stage (at most the write label, until the next write; \
             AWS deprecates it then): {lost:?}"
        );
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn import_over_a_secret_leaves_the_replaced_version_without_stage() {
    let server = moto();
    let store = store();
    let key = unique_name("import");
    let (v1, v2) = (uuid(), uuid());
    store.put_current(&key, &v1, &db_doc("one")).await.unwrap();
    store.put_current(&key, &v2, &db_doc("two")).await.unwrap();
    let state = store.read(&key).await.unwrap();
    assert_eq!(state.current().unwrap().id, v2);
    assert!(
        state.previous().is_none(),
        "an import leaves the replaced version no stage"
    );
    assert!(labels_of(server, &key, &v1).await.is_empty());
}

#[tokio::test(flavor = "multi_thread")]
async fn discard_pending_removes_awspending_and_keeps_the_version() {
    let server = moto();
    let store = store();
    let key = unique_name("abandon");
    let (v1, v2, v3) = (uuid(), uuid(), uuid());
    store.put_current(&key, &v1, &db_doc("first-password")).await.unwrap();
    store
        .stage_pending(&key, &v2, &db_doc("abandoned-password"))
        .await
        .unwrap();
    store.discard_pending(&key, &v2).await.unwrap();

    assert_eq!(
        labels_of(server, &key, &v1).await,
        vec!["AWSCURRENT", "AWSPENDING"],
        "current untouched; AWSPENDING parked on it again"
    );
    assert_eq!(
        labels_of(server, &key, &v2).await,
        vec![WRITE_LABEL],
        "AWSPENDING removed; the write label stays until the next write"
    );
    let sm = raw_sm(server).await;
    let (id, _) = raw_value(server, &key, "AWSPENDING").await;
    assert_eq!(id, v1, "AWSPENDING names the current version, not the discarded one");
    // The version itself is still in AWS, value unchanged: the audit trail keeps it.
    let out = sm
        .get_secret_value()
        .secret_id(&key)
        .version_id(&v2)
        .send()
        .await
        .expect("the discarded version is still readable by its id");
    let value: Value = serde_json::from_str(out.secret_string().unwrap()).unwrap();
    assert_eq!(value["password"], "abandoned-password");
    let (_, value) = raw_value(server, &key, "AWSCURRENT").await;
    assert_eq!(value["password"], "first-password");

    // The next rotation moves the write label on; the discarded version then holds no label
    // and AWS keeps it as deprecated.
    store.stage_pending(&key, &v3, &db_doc("third")).await.unwrap();
    store.promote(&key, &v3, false).await.unwrap();
    assert!(labels_of(server, &key, &v2).await.is_empty());
    let listed = sm
        .list_secret_version_ids()
        .secret_id(&key)
        .include_deprecated(true)
        .send()
        .await
        .unwrap();
    assert!(
        listed.versions().iter().any(|v| v.version_id() == Some(v2.as_str())),
        "the discarded version is still listed (deprecated)"
    );
    let state = store.read(&key).await.unwrap();
    assert_eq!(state.current().unwrap().id, v3);
    assert_eq!(
        state.previous().unwrap().id,
        v1,
        "the discarded version never became previous"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn discard_pending_of_a_rotation_left_by_aws() {
    // A rotation Lambda's createSecret step staged a version and stopped.
    let server = moto();
    let sm = raw_sm(server).await;
    let key = unique_name("lambda/abandoned");
    let (first, pending) = (uuid(), uuid());
    sm.create_secret()
        .name(&key)
        .client_request_token(&first)
        .secret_string(r#"{"engine":"mysql","username":"app","password":"old"}"#)
        .send()
        .await
        .unwrap();
    sm.put_secret_value()
        .secret_id(&key)
        .client_request_token(&pending)
        .secret_string(r#"{"engine":"mysql","username":"app","password":"new"}"#)
        .version_stages("AWSPENDING")
        .send()
        .await
        .unwrap();
    let store = store();
    let err = store.discard_pending(&key, &first).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Conflict, "{err}");
    assert!(
        !err.is_retryable(),
        "another version pending is not worth retrying: {err}"
    );
    assert_clean(&err, &pending, Some("new"));
    store.discard_pending(&key, &pending).await.unwrap();
    store.discard_pending(&key, &pending).await.unwrap();
    let state = store.read(&key).await.unwrap();
    assert!(state.pending().is_none());
    assert_eq!(state.current().unwrap().id, first);
    assert!(!labels_of(server, &key, &pending)
        .await
        .iter()
        .any(|l| l == "AWSPENDING"));

    // A finished rotation's AWSPENDING left on the current version is not pending:
    // discarding it changes nothing.
    let key = unique_name("lambda/finished");
    let only = uuid();
    sm.create_secret()
        .name(&key)
        .client_request_token(&only)
        .secret_string(r#"{"engine":"mysql","username":"app","password":"old"}"#)
        .send()
        .await
        .unwrap();
    sm.update_secret_version_stage()
        .secret_id(&key)
        .version_stage("AWSPENDING")
        .move_to_version_id(&only)
        .send()
        .await
        .unwrap();
    store.discard_pending(&key, &only).await.unwrap();
    assert_eq!(labels_of(server, &key, &only).await, vec!["AWSCURRENT", "AWSPENDING"]);
}

#[tokio::test(flavor = "multi_thread")]
async fn concurrent_discards_both_succeed() {
    let server = moto();
    let (a, b) = (store(), store());
    for _ in 0..5 {
        let key = unique_name("discard_race");
        let (v1, v2) = (uuid(), uuid());
        a.put_current(&key, &v1, &db_doc("one")).await.unwrap();
        a.stage_pending(&key, &v2, &db_doc("two")).await.unwrap();
        let (ra, rb) = tokio::join!(a.discard_pending(&key, &v2), b.discard_pending(&key, &v2));
        ra.unwrap();
        rb.unwrap();
        assert!(!labels_of(server, &key, &v2).await.iter().any(|l| l == "AWSPENDING"));
        assert!(a.read(&key).await.unwrap().pending().is_none());
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn staging_a_new_secret_makes_it_current() {
    // AWS makes a secret's first version AWSCURRENT whatever is asked; rekey says so.
    let server = moto();
    let store = store();
    let key = unique_name("fresh");
    let v1 = uuid();
    store.stage_pending(&key, &v1, &db_doc("first")).await.unwrap();
    let state = store.read(&key).await.unwrap();
    assert_eq!(state.current().unwrap().id, v1);
    assert!(state.pending().is_none());
    store.stage_pending(&key, &v1, &db_doc("first")).await.unwrap();
    store.promote(&key, &v1, false).await.unwrap();
    assert_eq!(labels_of(server, &key, &v1).await, vec!["AWSCURRENT", "AWSPENDING"]);
}

#[tokio::test(flavor = "multi_thread")]
async fn mark_revoked_is_recorded_and_bounded() {
    let store = store();
    let key = unique_name("revoked");
    // 12 revocations: more than the 8 stale tags the store keeps before pruning.
    let ids: Vec<String> = (0..13).map(|_| uuid()).collect();
    store.put_current(&key, &ids[0], &db_doc("p0")).await.unwrap();
    for pair in ids.windows(2) {
        store.stage_pending(&key, &pair[1], &db_doc(&pair[1])).await.unwrap();
        store.promote(&key, &pair[1], false).await.unwrap();
        store.mark_revoked(&key, &pair[0]).await.unwrap();
        store.mark_revoked(&key, &pair[0]).await.unwrap();
    }
    let state = store.read(&key).await.unwrap();
    assert!(state.previous().unwrap().revoked.is_some());
    let described = raw_sm(moto())
        .await
        .describe_secret()
        .secret_id(&key)
        .send()
        .await
        .unwrap();
    let count = described
        .tags()
        .iter()
        .filter(|t| t.key().unwrap().starts_with(REVOKED_TAG_PREFIX))
        .count();
    assert!(
        (1..=10).contains(&count),
        "stale revocation tags are pruned once there are more than 8 (12 recorded): {count}"
    );
    let err = store.mark_revoked(&key, &uuid()).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::NotFound, "{err}");
    assert_clean(&err, &key, None);
}

#[tokio::test(flavor = "multi_thread")]
async fn one_sdk_config_per_endpoint() {
    let server = moto();
    let provider = admin_provider(server);
    let a = provider.aws_secrets_manager_store(&sm_config(server)).unwrap();
    let b = provider.aws_secrets_manager_store(&sm_config(server)).unwrap();
    let key = unique_name("shared");
    a.put_current(&key, &uuid(), &db_doc("x")).await.unwrap();
    b.read(&key).await.unwrap();
    a.check_writable(&key).await.unwrap();
    assert_eq!(provider.sdk_config_loads(), 1, "one configuration load for both stores");
    assert!(a.check_writable_report(&key).await.unwrap().contains("exists"));
    let missing = unique_name("missing");
    let report = a.check_writable_report(&missing).await.unwrap();
    assert!(
        report.contains("does not exist") && report.contains("creates it"),
        "{report}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_hung_store_between_stage_and_promote() {
    // Own server: it is frozen with SIGSTOP (moto keeps state in memory, so it cannot be
    // restarted without losing it). The kernel still accepts connections; nothing is
    // answered until SIGCONT, as with a hung backend or a black-holed network.
    let server = MotoServer::start().unwrap();
    let provider = admin_provider(&server).with_timeouts(fast_timeouts());
    let store = provider.aws_secrets_manager_store(&sm_config(&server)).unwrap();
    let key = unique_name("outage");
    let (v1, v2) = (uuid(), uuid());
    store.put_current(&key, &v1, &db_doc("one")).await.unwrap();
    store.stage_pending(&key, &v2, &db_doc("two")).await.unwrap();

    server.pause().unwrap();
    let started = std::time::Instant::now();
    let err = store.promote(&key, &v2, false).await.unwrap_err();
    server.resume().unwrap();
    assert_eq!(err.kind(), ErrorKind::Unreachable, "{err}");
    assert!(err.is_retryable(), "{err}");
    assert_clean(&err, &key, None);
    assert!(
        started.elapsed() < std::time::Duration::from_secs(10),
        "bounded by the timeouts"
    );

    // Nothing was lost: the request that timed out may still land once the server
    // answers again (the SDK's attempts were queued), so the version is pending or
    // already current; either way the retry finishes.
    let state = store.read(&key).await.unwrap();
    let v2_state = state.version(&v2).expect("the staged version is still there");
    assert!(
        v2_state.has(Stage::Pending) || v2_state.has(Stage::Current),
        "{:?}",
        v2_state.stages
    );
    store.promote(&key, &v2, false).await.unwrap();
    let state = store.read(&key).await.unwrap();
    assert_eq!(state.current().unwrap().id, v2);
    assert_eq!(state.previous().unwrap().id, v1);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_closed_port_is_unreachable() {
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let config = AwsSecretsManagerConfig {
        region: Some("us-east-1".into()),
        endpoint_url: Some(format!("http://127.0.0.1:{port}")),
        profile: None,
    };
    let provider =
        AwsProvider::with_static_credentials("AKIAEXAMPLE", Secret::from("x")).with_timeouts(fast_timeouts());
    let store = provider.aws_secrets_manager_store(&config).unwrap();
    let err = store.read("some/key").await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Unreachable, "{err}");
    assert!(err.is_retryable());
    assert_clean(&err, "some/key", None);
    let err = store.put_current("some/key", &uuid(), &db_doc("pw")).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Unreachable, "{err}");
}

#[tokio::test(flavor = "multi_thread")]
async fn errors_name_the_secret_and_never_the_value() {
    let server = moto();
    let store = store();

    let missing = unique_name("nope");
    let err = store.read(&missing).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::NotFound, "{err}");
    assert_clean(&err, &missing, None);
    let err = store.promote(&missing, &uuid(), false).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Conflict, "{err}");

    let not_json = unique_name("notjson");
    raw_sm(server)
        .await
        .create_secret()
        .name(&not_json)
        .secret_string("password=s3cr3t-value")
        .send()
        .await
        .unwrap();
    let err = store.read(&not_json).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::InvalidInput, "{err}");
    assert_clean(&err, &not_json, Some("s3cr3t-value"));
    assert!(err.to_string().contains("not valid JSON"), "{err}");

    let not_object = unique_name("notobject");
    raw_sm(server)
        .await
        .create_secret()
        .name(&not_object)
        .secret_string("\"s3cr3t-value\"")
        .send()
        .await
        .unwrap();
    let err = store.read(&not_object).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::InvalidInput, "{err}");
    assert_clean(&err, &not_object, Some("s3cr3t-value"));

    let err = store
        .put_current(&unique_name("k"), &"x".repeat(70), &db_doc("pw"))
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::InvalidInput, "{err}");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_user_without_permissions_is_denied() {
    let server = moto();
    let user = unique_name("nobody");
    let doc = common::create_user_with_key(server, &user).await;
    let provider = AwsProvider::with_static_credentials(
        doc.get_str("access_key_id").unwrap(),
        Secret::from(doc.get_str("secret_access_key").unwrap()),
    );
    let key = unique_name("guarded");
    store()
        .put_current(&key, &uuid(), &db_doc("admin-wrote-this"))
        .await
        .unwrap();
    let store = provider.aws_secrets_manager_store(&sm_config(server)).unwrap();
    let err = store.read(&key).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::PermissionDenied, "{err}");
    assert_clean(&err, &key, None);
    let err = store
        .put_current(&unique_name("k"), &uuid(), &db_doc("pw"))
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::PermissionDenied, "{err}");
    let err = store.check_writable(&key).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::PermissionDenied, "{err}");

    // A wrong secret access key is the store's own credential refused.
    let provider = AwsProvider::with_static_credentials(
        doc.get_str("access_key_id").unwrap(),
        Secret::from("wrong-secret-access-key"),
    );
    let err = provider
        .aws_secrets_manager_store(&sm_config(server))
        .unwrap()
        .read(&key)
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::AuthRejected, "{err}");
    assert_clean(&err, &key, Some("wrong-secret-access-key"));
}

#[test]
fn config_refuses_unknown_keys_and_debug_is_safe() {
    let parsed: Result<AwsSecretsManagerConfig, _> = serde_json::from_value(serde_json::json!({
        "region": "eu-west-1", "secret_access_key": "x"
    }));
    assert!(parsed.is_err(), "deny_unknown_fields");
    let config: AwsSecretsManagerConfig =
        serde_json::from_value(serde_json::json!({"region": "eu-west-1", "profile": "ops"})).unwrap();
    assert_eq!(config.profile.as_deref(), Some("ops"));
    let provider = AwsProvider::with_static_credentials("AKIASHOWN", Secret::from("hidden-secret-key"));
    let shown = format!(
        "{provider:?} {:?}",
        provider.aws_secrets_manager_store(&config).unwrap()
    );
    assert!(
        shown.contains("AKIASHOWN") && !shown.contains("hidden-secret-key"),
        "{shown}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn an_application_label_follows_awscurrent() {
    let server = moto();
    let store = store();
    let key = unique_name("custom-label");
    let (v1, v2) = (uuid(), uuid());
    store.put_current(&key, &v1, &db_doc("one")).await.unwrap();
    raw_sm(server)
        .await
        .update_secret_version_stage()
        .secret_id(&key)
        .version_stage("MYAPP_LIVE")
        .move_to_version_id(&v1)
        .send()
        .await
        .unwrap();
    // Precondition: the label is on the current version, and plan says what will happen.
    assert!(labels_of(server, &key, &v1).await.contains(&"MYAPP_LIVE".to_owned()));
    let notes = Store::plan_notes(&store, &key).await.unwrap();
    assert_eq!(notes.len(), 1, "{notes:?}");
    assert!(
        notes[0].contains("MYAPP_LIVE") && notes[0].contains("follows AWSCURRENT"),
        "{notes:?}"
    );

    store.read(&key).await.unwrap();
    store.stage_pending(&key, &v2, &db_doc("two")).await.unwrap();
    assert!(
        labels_of(server, &key, &v1).await.contains(&"MYAPP_LIVE".to_owned()),
        "staging moves nothing applications read"
    );
    store.promote(&key, &v2, true).await.unwrap();
    let (id, value) = raw_value(server, &key, "MYAPP_LIVE").await;
    assert_eq!(id, v2, "the label moved with AWSCURRENT");
    assert_eq!(value["password"], "two");
    assert_eq!(labels_of(server, &key, &v1).await, vec!["AWSPREVIOUS"]);
    // A secret without such labels has nothing to note.
    let plain = unique_name("plain");
    store.put_current(&plain, &uuid(), &db_doc("x")).await.unwrap();
    assert!(Store::plan_notes(&store, &plain).await.unwrap().is_empty());
}

#[tokio::test(flavor = "multi_thread")]
async fn a_pending_version_that_is_not_json_is_refused_with_the_way_out() {
    let server = moto();
    let store = store();
    let sm = raw_sm(server).await;
    for (name, bad) in [
        ("not-json", Some("hunter2 not json")),
        ("array", Some("[1,2]")),
        ("binary", None),
    ] {
        let key = unique_name(&format!("foreign-{name}"));
        let v1 = uuid();
        store.put_current(&key, &v1, &db_doc("good")).await.unwrap();
        let put = sm
            .put_secret_value()
            .secret_id(&key)
            .client_request_token(uuid())
            .version_stages("AWSPENDING");
        let put = match bad {
            Some(text) => put.secret_string(text),
            None => put.secret_binary(aws_sdk_secretsmanager::primitives::Blob::new(vec![0u8, 159, 146])),
        };
        put.send().await.unwrap();
        // Precondition: AWSPENDING is on a version that is not current.
        assert!(!labels_of(server, &key, &v1).await.contains(&"AWSPENDING".to_owned()));

        let err = store.read(&key).await.unwrap_err();
        assert_eq!(err.kind(), ErrorKind::InvalidInput, "{err}");
        let text = err.to_string();
        assert!(
            text.contains(&key) && text.contains("AWSPENDING") && text.contains("--abandon-pending"),
            "{text}"
        );
        assert!(!text.contains("hunter2"), "never the value: {text}");

        let discarded = store.discard_unreadable_pending(&key).await.unwrap();
        assert!(discarded.is_some());
        assert!(
            store.discard_unreadable_pending(&key).await.unwrap().is_none(),
            "nothing left to discard"
        );
        let state = store.read(&key).await.unwrap();
        assert!(state.pending().is_none());
        assert_eq!(state.current().unwrap().id, v1);
        let v2 = uuid();
        store.stage_pending(&key, &v2, &db_doc("next")).await.unwrap();
        store.promote(&key, &v2, true).await.unwrap();
        assert_eq!(store.read(&key).await.unwrap().current().unwrap().id, v2);
    }
    // A readable pending version is not "unreadable": nothing is discarded.
    let key = unique_name("foreign-ok");
    store.put_current(&key, &uuid(), &db_doc("good")).await.unwrap();
    store.stage_pending(&key, &uuid(), &db_doc("pending")).await.unwrap();
    assert!(store.discard_unreadable_pending(&key).await.unwrap().is_none());
    assert!(store.read(&key).await.unwrap().pending().is_some());
}

#[tokio::test(flavor = "multi_thread")]
async fn secrets_written_by_the_previous_format_rotate_and_race_safely() {
    // Earlier releases left REKEY_CAS on the version they wrote last and removed
    // AWSPENDING after each rotation. Written here with the raw SDK as they were.
    let server = moto();
    let sm = raw_sm(server).await;
    for round in 0..3 {
        let key = unique_name(&format!("legacy{round}"));
        let v1 = uuid();
        sm.create_secret()
            .name(&key)
            .client_request_token(&v1)
            .secret_string(db_doc("legacy").to_json().as_str())
            .send()
            .await
            .unwrap();
        sm.update_secret_version_stage()
            .secret_id(&key)
            .version_stage(CAS_LABEL)
            .move_to_version_id(&v1)
            .send()
            .await
            .unwrap();
        assert_eq!(labels_of(server, &key, &v1).await, vec!["AWSCURRENT", CAS_LABEL]);
        let (a, b) = (store(), store());
        let state = a.read(&key).await.unwrap();
        assert!(state.current().unwrap().doc == db_doc("legacy"), "readable as it is");
        let (va, vb) = (uuid(), uuid());
        let (da, db) = (db_doc("from-a"), db_doc("from-b"));
        let (ra, rb) = tokio::join!(a.stage_pending(&key, &va, &da), b.stage_pending(&key, &vb, &db));
        assert!(ra.is_ok() != rb.is_ok(), "exactly one wins: {ra:?} {rb:?}");
        let winner = if ra.is_ok() { &va } else { &vb };
        let store = if ra.is_ok() { &a } else { &b };
        store.promote(&key, winner, true).await.unwrap();
        let all = labels(server, &key).await;
        assert!(
            all.iter().all(|(_, l)| !l.iter().any(|x| x == CAS_LABEL)),
            "the old claim label is gone: {all:?}"
        );
        let won = labels_of(server, &key, winner).await;
        assert_eq!(won[..2], ["AWSCURRENT", "AWSPENDING"], "{won:?}");
        assert_eq!(labels_of(server, &key, &v1).await, vec!["AWSPREVIOUS"]);
        let loser = if ra.is_ok() { &vb } else { &va };
        let lost = labels_of(server, &key, loser).await;
        assert!(lost.iter().all(|l| l == WRITE_LABEL), "{lost:?}");
    }
}

/// A secret no rekey release wrote (no AWSPENDING anywhere, no REKEY_CAS) is claimed by
/// attaching AWSPENDING without `RemoveFromVersionId`. moto, unlike AWS, lets two
/// writers both attach it; the store reads the labels back and a writer that finds
/// another holder backs off. Of racing writers at most one wins, and AWSPENDING is
/// left on at most one version.
#[tokio::test(flavor = "multi_thread")]
async fn racing_first_writes_of_a_foreign_secret_leave_at_most_one_winner() {
    let server = moto();
    let sm = raw_sm(server).await;
    // Alone, a writer claims such a secret.
    let solo = unique_name("foreign-solo");
    let v1 = uuid();
    sm.create_secret()
        .name(&solo)
        .client_request_token(&v1)
        .secret_string(db_doc("foreign").to_json().as_str())
        .send()
        .await
        .unwrap();
    let v2 = uuid();
    store().stage_pending(&solo, &v2, &db_doc("next")).await.unwrap();
    assert_eq!(store().read(&solo).await.unwrap().pending().unwrap().id, v2);
    let mut winners = 0;
    for round in 0..6 {
        let key = unique_name(&format!("foreign-race{round}"));
        let v1 = uuid();
        sm.create_secret()
            .name(&key)
            .client_request_token(&v1)
            .secret_string(db_doc("foreign").to_json().as_str())
            .send()
            .await
            .unwrap();
        assert_eq!(labels_of(server, &key, &v1).await, vec!["AWSCURRENT"], "precondition");
        let (a, b) = (store(), store());
        let (va, vb) = (uuid(), uuid());
        let (da, db) = (db_doc("from-a"), db_doc("from-b"));
        let (ra, rb) = tokio::join!(a.stage_pending(&key, &va, &da), b.stage_pending(&key, &vb, &db));
        assert!(!(ra.is_ok() && rb.is_ok()), "round {round}: both won: {ra:?} {rb:?}");
        for r in [&ra, &rb] {
            if let Err(e) = r {
                assert_eq!(e.kind(), ErrorKind::Conflict, "{e}");
            }
        }
        let holders: Vec<String> = labels(server, &key)
            .await
            .into_iter()
            .filter(|(_, l)| l.iter().any(|x| x == "AWSPENDING"))
            .map(|(v, _)| v)
            .collect();
        assert!(holders.len() <= 1, "round {round}: AWSPENDING on {holders:?}");
        if let Some(winner) = [(&ra, &va), (&rb, &vb)]
            .iter()
            .find(|(r, _)| r.is_ok())
            .map(|(_, v)| *v)
        {
            winners += 1;
            assert_eq!(holders, vec![winner.clone()], "the winner holds AWSPENDING");
            let state = a.read(&key).await.unwrap();
            assert_eq!(state.pending().unwrap().id, *winner);
        }
    }
    eprintln!("{winners} of 6 rounds had a winner (the others: both backed off)");
}
