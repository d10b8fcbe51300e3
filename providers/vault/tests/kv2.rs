//! The KV version 2 code path, against `fake_kv2`: a small HTTP **fake** of Vault's
//! documented KV v2 API written for these tests (see `fake_kv2/mod.rs`). No installable
//! server implements KV v2: rvault's `version: 2` mounts behave as version 1. The store
//! code is the same as against rvault; only the mount's version differs.

mod fake_kv2;

use fake_kv2::{FakeKv2, Policy, ROOT_TOKEN};
use rekey_api::conformance::{random_password, unique_name};
use rekey_api::{ErrorKind, SecretDoc, Store};
use rekey_vault::{ConfigSecret, VaultKvConfig, VaultKvStore, VaultProvider};
use serde_json::{json, Value};

fn config(fake: &FakeKv2, token: &str) -> VaultKvConfig {
    let mut config = VaultKvConfig::new(fake.address());
    config.kv_version = 2;
    config.token = Some(ConfigSecret::new(token));
    config
}

fn store(fake: &FakeKv2) -> VaultKvStore {
    VaultProvider::new().vault_kv_store(&config(fake, ROOT_TOKEN)).unwrap()
}

fn doc(tag: &str) -> SecretDoc {
    let mut d = SecretDoc::new();
    d.set("engine", "postgres");
    d.set("username", tag);
    d.set_password(&random_password(24));
    d
}

fn value(d: &SecretDoc) -> Value {
    d.to_value()
}

/// The store suite: each `open()` is a new provider (another machine: no shared lock or
/// memory), so a reopen keeps only what is in the fake, and only check-and-set can tell
/// two writers apart.
mod conformance {
    use super::*;

    rekey_api::store_conformance_tests! {
        setup = async {
            let fake = FakeKv2::start().await;
            let config = config(&fake, ROOT_TOKEN);
            let open = move || {
                let config = config.clone();
                async move { VaultProvider::new().kv_store(&config).unwrap() }
            };
            (fake, open)
        },
    }
}

#[test]
fn declares_check_and_set_and_hidden_pending() {
    let mut config = VaultKvConfig::new("http://127.0.0.1:1");
    config.kv_version = 2;
    config.token = Some(ConfigSecret::new(ROOT_TOKEN));
    let store = VaultProvider::new().vault_kv_store(&config).unwrap();
    assert!(store.capabilities().compare_and_set);
    assert!(!store.capabilities().write_check_is_a_read);
}

/// Discarding changes only the versions document, check-and-set: the key applications
/// read is not written, and a discard racing another writer of the document overwrites
/// nothing.
#[tokio::test(flavor = "multi_thread")]
async fn discard_pending_writes_only_the_versions_document() {
    let fake = FakeKv2::start().await;
    let store = store(&fake);
    let key = unique_name("discard");
    let (first, abandoned) = (doc("first"), doc("abandoned"));
    store.put_current(&key, "v1", &first).await.unwrap();
    store.stage_pending(&key, "v2", &abandoned).await.unwrap();
    let (_, doc_version) = fake.get_raw("secret", &format!(".rekey/{key}")).unwrap();

    // Another runner rewrites the document first: check-and-set refuses the discard.
    let (mut theirs, _) = fake.get_raw("secret", &format!(".rekey/{key}")).unwrap();
    theirs["about"] = json!("written by another runner");
    fake.inject_before_next_write("secret", &format!(".rekey/{key}"), theirs.clone());
    let err = store.discard_pending(&key, "v2").await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Conflict, "{err}");
    assert!(err.message().contains("check-and-set"), "{err}");
    assert_eq!(fake.get_raw("secret", &format!(".rekey/{key}")).unwrap().0, theirs);
    assert_eq!(store.read(&key).await.unwrap().pending().unwrap().id, "v2");

    store.discard_pending(&key, "v2").await.unwrap();
    let (versions, version) = fake.get_raw("secret", &format!(".rekey/{key}")).unwrap();
    assert_eq!(version, doc_version + 2, "the other runner's write, then the discard");
    let list = versions["versions"].as_array().unwrap();
    assert_eq!(list[1]["id"], "v2");
    assert_eq!(list[1]["stages"], json!([]), "kept as history");
    assert_eq!(list[1]["value"], value(&abandoned));
    assert_eq!(
        fake.history("secret", &key),
        vec![value(&first)],
        "the key applications read was not written"
    );
    // A repeated discard writes nothing.
    store.discard_pending(&key, "v2").await.unwrap();
    assert_eq!(fake.get_raw("secret", &format!(".rekey/{key}")).unwrap().1, version);

    // A key holding only a hand-written value has nothing pending: no document is
    // written for it.
    let hand = unique_name("hand");
    fake.put_raw("secret", &hand, json!({"username": "app", "password": "by-hand-pw"}));
    store.discard_pending(&hand, "v1").await.unwrap();
    assert!(fake.get_raw("secret", &format!(".rekey/{hand}")).is_none());
}

/// Another writer writes the versions document between this store's read and its write:
/// check-and-set refuses the write, the store reports a conflict, and the other writer's
/// document stays as it was.
#[tokio::test(flavor = "multi_thread")]
async fn check_and_set_conflict_overwrites_nothing() {
    let fake = FakeKv2::start().await;
    let store = store(&fake);
    let key = unique_name("cas");
    let first = doc("first");
    store.put_current(&key, "v1", &first).await.unwrap();
    let (theirs, their_version) = fake.get_raw("secret", &format!(".rekey/{key}")).unwrap();
    let mut theirs = theirs;
    theirs["about"] = json!("written by another runner");
    fake.inject_before_next_write("secret", &format!(".rekey/{key}"), theirs.clone());

    let err = store.stage_pending(&key, "v2", &doc("mine")).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Conflict, "{err}");
    assert!(err.message().contains("check-and-set"), "{err}");
    assert!(err.message().contains(&format!("secret/data/.rekey/{key}")), "{err}");
    let (stored, version) = fake.get_raw("secret", &format!(".rekey/{key}")).unwrap();
    assert_eq!(stored, theirs, "the other writer's document is not overwritten");
    assert_eq!(version, their_version + 1, "exactly the other writer's write landed");
    let state = store.read(&key).await.unwrap();
    assert!(state.pending().is_none());
    assert!(state.current().unwrap().doc == first);
    assert_eq!(fake.history("secret", &key).len(), 1, "the key itself was not touched");
}

/// Applications reading `secret/data/<key>` see only the current secret: a pending
/// version is never written there, in any KV version of the key.
#[tokio::test(flavor = "multi_thread")]
async fn readers_never_see_pending() {
    let fake = FakeKv2::start().await;
    let store = store(&fake);
    let key = unique_name("reader");
    let (first, second) = (doc("first"), doc("second"));
    store.put_current(&key, "v1", &first).await.unwrap();
    store.stage_pending(&key, "v2", &second).await.unwrap();
    assert_eq!(fake.get_raw("secret", &key).unwrap().0, value(&first));
    assert!(
        !fake.history("secret", &key).contains(&value(&second)),
        "pending is in no version of the key"
    );
    let (versions, _) = fake.get_raw("secret", &format!(".rekey/{key}")).unwrap();
    assert_eq!(versions["format"], 1);
    assert_eq!(versions["versions"].as_array().unwrap().len(), 2);
    store.promote(&key, "v2", false).await.unwrap();
    assert_eq!(fake.get_raw("secret", &key).unwrap().0, value(&second));
    assert_eq!(fake.history("secret", &key), vec![value(&first), value(&second)]);
}

/// A promote interrupted after the versions document was written (the key's write
/// failed): readers still get the old secret, the store reports the new version as
/// pending, and promoting again finishes the job.
#[tokio::test(flavor = "multi_thread")]
async fn interrupted_promote_is_resumed() {
    let fake = FakeKv2::start().await;
    let store = store(&fake);
    let key = unique_name("resume");
    let (first, second) = (doc("first"), doc("second"));
    store.put_current(&key, "v1", &first).await.unwrap();
    store.stage_pending(&key, "v2", &second).await.unwrap();
    fake.fail_next_write("secret", &key);
    let err = store.promote(&key, "v2", true).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Other, "{err}");

    let (versions, _) = fake.get_raw("secret", &format!(".rekey/{key}")).unwrap();
    let promoted = versions["versions"]
        .as_array()
        .and_then(|all| all.iter().find(|v| v["id"] == "v2"))
        .map(|v| v["stages"].clone());
    assert_eq!(
        promoted,
        Some(serde_json::json!(["current"])),
        "the versions document was promoted first: {versions}"
    );
    assert_eq!(
        fake.get_raw("secret", &key).unwrap().0,
        value(&first),
        "readers keep the old secret"
    );
    let state = store.read(&key).await.unwrap();
    assert_eq!(state.pending().expect("reported as pending").id, "v2");
    assert_eq!(state.current().unwrap().id, "v1");

    store.promote(&key, "v2", true).await.unwrap();
    assert_eq!(fake.get_raw("secret", &key).unwrap().0, value(&second));
    let state = store.read(&key).await.unwrap();
    assert_eq!(state.current().unwrap().id, "v2");
    assert_eq!(state.previous().unwrap().id, "v1");
    assert!(state.previous().unwrap().revoked.is_some());
    assert!(state.pending().is_none());
}

/// A secret that was in Vault before rekey is adopted as current, with its KV v2
/// creation time; the first write records it in the versions document.
#[tokio::test(flavor = "multi_thread")]
async fn existing_secret_is_adopted() {
    let fake = FakeKv2::start().await;
    let store = store(&fake);
    let key = unique_name("adopt");
    let before = doc("before");
    fake.put_raw("secret", &key, value(&before));
    let state = store.read(&key).await.unwrap();
    let current = state.current().unwrap();
    assert_eq!(current.id, "adopted");
    assert!(current.doc == before);
    assert!(current.created > std::time::UNIX_EPOCH);
    assert!(
        fake.get_raw("secret", &format!(".rekey/{key}")).is_none(),
        "reading writes nothing"
    );

    store.stage_pending(&key, "v2", &doc("new")).await.unwrap();
    store.promote(&key, "v2", false).await.unwrap();
    let state = store.read(&key).await.unwrap();
    assert_eq!(state.previous().unwrap().id, "adopted");
    assert!(state.previous().unwrap().doc == before);
}

/// A token that may only read: the write is refused with `PermissionDenied` naming the
/// path, nothing changes, and preflight names the missing capability.
#[tokio::test(flavor = "multi_thread")]
async fn read_only_token_is_permission_denied() {
    let fake = FakeKv2::start().await;
    let key = unique_name("ro");
    store(&fake).put_current(&key, "v1", &doc("first")).await.unwrap();
    fake.add_token(
        "read-only-token",
        Policy::Rules(vec![("secret/".into(), vec!["read".into(), "list".into()])]),
    );
    let ro = VaultProvider::new()
        .vault_kv_store(&config(&fake, "read-only-token"))
        .unwrap();
    assert_eq!(ro.read(&key).await.unwrap().current().unwrap().id, "v1");
    let err = ro.stage_pending(&key, "v2", &doc("second")).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::PermissionDenied, "{err}");
    assert!(err.message().contains(&format!("secret/data/.rekey/{key}")), "{err}");
    assert!(!err.message().contains("read-only-token"), "{err}");
    assert!(ro.read(&key).await.unwrap().pending().is_none());

    let err = ro.preflight(&key).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::PermissionDenied, "{err}");
    assert!(err.message().contains("lacks create, update on secret/data/"), "{err}");
    let err = ro.check_writable(&key).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::PermissionDenied, "{err}");
}

/// rotate's write check asks what the writes need: `update` on a path that exists,
/// `create` on one that does not (KV's rules), so a least-privilege token that may
/// update an existing key passes, and one that may only create is refused there.
#[tokio::test(flavor = "multi_thread")]
async fn write_check_asks_update_for_existing_paths_and_create_for_new_ones() {
    let fake = FakeKv2::start().await;
    let existing = unique_name("wc");
    store(&fake).put_current(&existing, "v1", &doc("first")).await.unwrap();
    let missing = unique_name("wc_new");
    let rules = |caps: &[&str]| Policy::Rules(vec![("secret/".into(), caps.iter().map(|c| c.to_string()).collect())]);
    fake.add_token("update-token", rules(&["read", "update"]));
    fake.add_token("create-token", rules(&["read", "create"]));
    fake.add_token("both-token", rules(&["read", "create", "update"]));
    let with = |token: &str| VaultProvider::new().vault_kv_store(&config(&fake, token)).unwrap();

    with("update-token").check_writable(&existing).await.unwrap();
    let err = with("update-token").check_writable(&missing).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::PermissionDenied, "{err}");
    assert!(err.message().contains("lacks create on secret/data/"), "{err}");

    with("create-token").check_writable(&missing).await.unwrap();
    let err = with("create-token").check_writable(&existing).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::PermissionDenied, "{err}");
    assert!(err.message().contains("lacks update on secret/data/"), "{err}");

    for key in [&existing, &missing] {
        with("both-token").check_writable(key).await.unwrap();
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn preflight_reports_what_it_checked() {
    let fake = FakeKv2::start().await;
    let store = store(&fake);
    let key = unique_name("pre");
    store.put_current(&key, "v1", &doc("first")).await.unwrap();
    let lines = store.preflight(&key).await.unwrap();
    let text = lines.join("\n");
    assert!(text.contains("reachable and unsealed"), "{text}");
    assert!(text.contains("token is valid"), "{text}");
    assert!(text.contains("mount secret/ is KV version 2"), "{text}");
    assert!(
        text.contains(&format!("read+create+update on secret/data/.rekey/{key}")),
        "{text}"
    );
    assert!(text.contains("current \"v1\""), "{text}");
    store.check_writable(&key).await.unwrap();

    // Configured as KV v1 on a KV v2 mount: refused before anything is written.
    let mut v1 = config(&fake, ROOT_TOKEN);
    v1.kv_version = 1;
    let wrong = VaultProvider::new().vault_kv_store(&v1).unwrap();
    let err = wrong.preflight(&key).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::InvalidInput, "{err}");
    assert!(err.message().contains("KV version 2"), "{err}");
}

#[tokio::test(flavor = "multi_thread")]
async fn wrong_token_and_missing_mount() {
    let fake = FakeKv2::start().await;
    let bad = VaultProvider::new()
        .vault_kv_store(&config(&fake, "not-a-token-s3cr3t"))
        .unwrap();
    let err = bad.read(&unique_name("k")).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::PermissionDenied, "{err}");
    assert!(!err.to_string().contains("s3cr3t"), "{err}");
    let err = bad.preflight(&unique_name("k")).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::PermissionDenied, "{err}");
    assert!(err.message().contains("invalid, expired or revoked token"), "{err}");

    let mut missing = config(&fake, ROOT_TOKEN);
    missing.mount = "nope".into();
    let store = VaultProvider::new().vault_kv_store(&missing).unwrap();
    let err = store.read(&unique_name("k")).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::NotFound, "{err}");
    assert!(err.message().contains("mount nope/ not found"), "{err}");
    let err = store.put_current(&unique_name("k"), "v1", &doc("x")).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::NotFound, "{err}");
}

/// Values of an unexpected shape at the key or in the versions document are
/// `InvalidInput`, and the message never quotes them.
#[tokio::test(flavor = "multi_thread")]
async fn unexpected_shapes_are_invalid_input_without_the_value() {
    let fake = FakeKv2::start().await;
    let store = store(&fake);
    let key = unique_name("shape");
    fake.put_raw("secret", &key, json!("s3cr3t-not-an-object"));
    let err = store.read(&key).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::InvalidInput, "{err}");
    assert!(!err.to_string().contains("s3cr3t"), "{err}");

    let key = unique_name("shape");
    store.put_current(&key, "v1", &doc("first")).await.unwrap();
    for bad in [
        json!({ "password": "s3cr3t-pw" }),
        json!({ "format": 1, "versions": "s3cr3t-versions" }),
        json!({ "format": 1, "versions": [{ "id": "v1", "stages": ["current"], "created": "2026-01-01T00:00:00Z",
                                             "value": "s3cr3t-value" }] }),
    ] {
        fake.put_raw("secret", &format!(".rekey/{key}"), bad);
        let err = store.read(&key).await.unwrap_err();
        assert_eq!(err.kind(), ErrorKind::InvalidInput, "{err}");
        assert!(!err.to_string().contains("s3cr3t"), "{err}");
        assert!(err.message().contains(&format!("secret/data/.rekey/{key}")), "{err}");
        let err = store.stage_pending(&key, "v2", &doc("second")).await.unwrap_err();
        assert_eq!(
            err.kind(),
            ErrorKind::InvalidInput,
            "a write over a malformed document is refused: {err}"
        );
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn keys_under_the_versions_prefix_are_refused() {
    let fake = FakeKv2::start().await;
    let store = store(&fake);
    for key in [".rekey/x", ".rekey", "a//b", "/a", "a/", "a/../b", ""] {
        let err = store.read(key).await.unwrap_err();
        assert_eq!(err.kind(), ErrorKind::InvalidInput, "{key}: {err}");
    }
    assert_eq!(store.read("a").await.unwrap_err().kind(), ErrorKind::NotFound);
    assert_eq!(store.live_path("orders/db"), "secret/data/orders/db");
    assert_eq!(store.versions_path("orders/db"), "secret/data/.rekey/orders/db");
    assert!(store.describe().contains("KV v2"));
}
