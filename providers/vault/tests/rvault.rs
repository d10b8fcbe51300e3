//! The store (KV version 1) and the AppRole target against a real rvault server
//! (crates.io `rusty_vault`), started by `rekey_testbed::VaultServer` with token
//! authentication enforced.
//!
//! rvault facts that shape these tests: `secret/` is KV version 1; there is no KV v2
//! (see `kv2.rs` and its fake) and no ACL policies (any valid token may do anything, so
//! `PermissionDenied` for a limited token is tested against the fake too); there is no
//! `sys/capabilities-self` (preflight says "not checked").

use rekey_api::conformance::{random_password, store as suite, unique_name};
use rekey_api::{ErrorKind, RevokeOptions, SecretDoc, Store, Strategy, Target};
use rekey_testbed::VaultServer;
use rekey_vault::{
    AppRoleLogin, ConfigSecret, VaultAppRoleConfig, VaultAppRoleTarget, VaultKvConfig, VaultKvStore, VaultProvider,
};
use serde_json::{json, Value};
use std::sync::Arc;

fn kv_config(vault: &VaultServer) -> VaultKvConfig {
    let mut config = VaultKvConfig::new(vault.address());
    config.kv_version = 1;
    config.token = Some(ConfigSecret::new(vault.root_token()));
    config
}

fn kv_store(vault: &VaultServer) -> VaultKvStore {
    VaultProvider::new().vault_kv_store(&kv_config(vault)).unwrap()
}

fn doc(tag: &str) -> SecretDoc {
    let mut d = SecretDoc::new();
    d.set("engine", "postgres");
    d.set("username", tag);
    d.set_password(&random_password(24));
    d
}

/// What an ordinary application reads at `secret/<key>` with a plain HTTP GET (the
/// `data` of `vault kv get`), or `None` when there is nothing.
fn plain_read(vault: &VaultServer, path: &str) -> Option<Value> {
    let r = vault.api("GET", path, None).unwrap();
    if r.status == 404 {
        return None;
    }
    assert!(r.is_success(), "GET {path}: {} {}", r.status, r.body);
    let body: Value = serde_json::from_str(&r.body).unwrap();
    Some(body["data"].clone())
}

fn json_body(r: &rekey_testbed::VaultResponse) -> Value {
    serde_json::from_str(&r.body).unwrap_or_else(|e| panic!("not JSON ({e}): {}", r.body))
}

// ---------------------------------------------------------------------------------
// Store, KV version 1
// ---------------------------------------------------------------------------------

/// The store suite on KV v1; each `open()` is a new provider (nothing survives in
/// memory).
mod kv1_conformance {
    use super::*;

    rekey_api::store_conformance_tests! {
        setup = async {
            let config = kv_config(VaultServer::shared());
            let open = move || {
                let config = config.clone();
                async move { VaultProvider::new().kv_store(&config).unwrap() }
            };
            ((), open)
        },
        skip = [concurrent_writer_detected => "KV v1 has no check-and-set: two machines cannot be told apart (kv1_concurrent_writers_in_one_process checks one process)"],
    }
}

#[test]
fn kv1_declares_no_check_and_set() {
    let store = kv_store(VaultServer::shared());
    assert!(!store.capabilities().compare_and_set, "KV v1 has no check-and-set");
    assert!(!store.capabilities().write_check_is_a_read);
}

/// KV v1 has no check-and-set, so two machines cannot be told apart. Two handles of one
/// provider (one process) share its per-key lock, and for them the rule holds.
#[tokio::test(flavor = "multi_thread")]
async fn kv1_concurrent_writers_in_one_process() {
    let vault = VaultServer::shared();
    let provider = VaultProvider::new();
    let a: Arc<dyn Store> = provider.kv_store(&kv_config(vault)).unwrap();
    let b: Arc<dyn Store> = provider.kv_store(&kv_config(vault)).unwrap();
    for round in 0..10 {
        suite::concurrent_writer_detected(a.clone(), b.clone(), &unique_name(&format!("race{round}"))).await;
    }
    assert_eq!(provider.http_clients(), 1, "one HTTP client per address");
}

/// An application reading `secret/<key>` only ever sees the current credential: while a
/// rotation is pending it still reads the old one, and the new one only after promote.
#[tokio::test(flavor = "multi_thread")]
async fn kv1_ordinary_readers_see_only_current() {
    let vault = VaultServer::shared();
    let store = kv_store(vault);
    let key = unique_name("orders/db");
    let (first, second) = (doc("first"), doc("second"));
    assert_eq!(plain_read(vault, &format!("secret/{key}")), None);
    store.put_current(&key, "v1", &first).await.unwrap();
    assert_eq!(plain_read(vault, &format!("secret/{key}")), Some(first.to_value()));

    store.stage_pending(&key, "v2", &second).await.unwrap();
    assert_eq!(
        plain_read(vault, &format!("secret/{key}")),
        Some(first.to_value()),
        "a reader still gets the old current while v2 is pending"
    );
    let versions = plain_read(vault, &format!("secret/.rekey/{key}")).expect("versions document");
    assert_eq!(versions["format"], 1);
    let stages: Vec<Value> = versions["versions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| json!([v["id"], v["stages"]]))
        .collect();
    assert_eq!(stages, vec![json!(["v1", ["current"]]), json!(["v2", ["pending"]])]);

    store.promote(&key, "v2", false).await.unwrap();
    assert_eq!(plain_read(vault, &format!("secret/{key}")), Some(second.to_value()));
    store.mark_revoked(&key, "v1").await.unwrap();
    assert_eq!(plain_read(vault, &format!("secret/{key}")), Some(second.to_value()));
}

/// A promote stopped after the versions document was written: readers keep the old
/// secret, the store reports the new version as pending, promote again repairs the key.
#[tokio::test(flavor = "multi_thread")]
async fn kv1_interrupted_promote_is_repaired() {
    let vault = VaultServer::shared();
    let store = kv_store(vault);
    let key = unique_name("resume");
    let (first, second) = (doc("first"), doc("second"));
    store.put_current(&key, "v1", &first).await.unwrap();
    store.stage_pending(&key, "v2", &second).await.unwrap();
    // Do the first of promote's two writes by hand, as a run killed in between would.
    let mut versions = plain_read(vault, &format!("secret/.rekey/{key}")).unwrap();
    for v in versions["versions"].as_array_mut().unwrap() {
        v["stages"] = if v["id"] == "v2" {
            json!(["current"])
        } else {
            json!(["previous"])
        };
    }
    vault.api_ok("PUT", &format!("secret/.rekey/{key}"), Some(&versions.to_string()));

    assert_eq!(plain_read(vault, &format!("secret/{key}")), Some(first.to_value()));
    let state = store.read(&key).await.unwrap();
    assert_eq!(
        state.pending().expect("the unfinished promote shows as pending").id,
        "v2"
    );
    assert_eq!(state.current().unwrap().id, "v1");

    store.promote(&key, "v2", false).await.unwrap();
    assert_eq!(plain_read(vault, &format!("secret/{key}")), Some(second.to_value()));
    let state = store.read(&key).await.unwrap();
    assert_eq!(state.current().unwrap().id, "v2");
    assert_eq!(state.previous().unwrap().id, "v1");
}

/// Discarding the pending version: readers of `secret/<key>` never saw it and still read
/// the current secret; the versions document keeps it without a stage.
#[tokio::test(flavor = "multi_thread")]
async fn kv1_discard_pending_keeps_it_in_the_versions_document() {
    let vault = VaultServer::shared();
    let store = kv_store(vault);
    let key = unique_name("abandon");
    let (first, abandoned) = (doc("first"), doc("abandoned"));
    store.put_current(&key, "v1", &first).await.unwrap();
    store.stage_pending(&key, "v2", &abandoned).await.unwrap();
    store.discard_pending(&key, "v2").await.unwrap();
    assert_eq!(plain_read(vault, &format!("secret/{key}")), Some(first.to_value()));
    let versions = plain_read(vault, &format!("secret/.rekey/{key}")).unwrap();
    let list = versions["versions"].as_array().unwrap();
    assert_eq!(list.len(), 2);
    assert_eq!(list[1]["id"], "v2");
    assert_eq!(list[1]["stages"], json!([]));
    assert_eq!(list[1]["value"], abandoned.to_value());
}

/// A promote stopped after the versions document was written reads as pending; a
/// discard of it (`--abandon-pending`) keeps what readers see current.
#[tokio::test(flavor = "multi_thread")]
async fn kv1_discard_of_an_interrupted_promote() {
    let vault = VaultServer::shared();
    let store = kv_store(vault);
    let key = unique_name("abandon_resume");
    let (first, second) = (doc("first"), doc("second"));
    store.put_current(&key, "v1", &first).await.unwrap();
    store.stage_pending(&key, "v2", &second).await.unwrap();
    let mut versions = plain_read(vault, &format!("secret/.rekey/{key}")).unwrap();
    for v in versions["versions"].as_array_mut().unwrap() {
        v["stages"] = if v["id"] == "v2" {
            json!(["current"])
        } else {
            json!(["previous"])
        };
    }
    vault.api_ok("PUT", &format!("secret/.rekey/{key}"), Some(&versions.to_string()));
    assert_eq!(store.read(&key).await.unwrap().pending().unwrap().id, "v2");

    store.discard_pending(&key, "v2").await.unwrap();
    assert_eq!(plain_read(vault, &format!("secret/{key}")), Some(first.to_value()));
    let state = store.read(&key).await.unwrap();
    assert!(state.pending().is_none());
    assert_eq!(state.current().unwrap().id, "v1");
    assert!(state.version("v2").unwrap().stages.is_empty());
    let stored = plain_read(vault, &format!("secret/.rekey/{key}")).unwrap();
    let stages: Vec<(Value, Value)> = stored["versions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| (v["id"].clone(), v["stages"].clone()))
        .collect();
    assert_eq!(
        stages,
        vec![(json!("v1"), json!(["current"])), (json!("v2"), json!([]))],
        "the document now agrees with what readers see"
    );
}

/// A secret written by hand (before rekey, or outside it) is adopted as current.
#[tokio::test(flavor = "multi_thread")]
async fn kv1_hand_written_secret_is_adopted() {
    let vault = VaultServer::shared();
    let store = kv_store(vault);
    let key = unique_name("adopt");
    vault.api_ok(
        "PUT",
        &format!("secret/{key}"),
        Some(r#"{"username":"app","password":"by-hand-pw"}"#),
    );
    let state = store.read(&key).await.unwrap();
    assert_eq!(state.current().unwrap().id, "adopted");
    assert_eq!(state.current().unwrap().doc.get_str("password"), Some("by-hand-pw"));
    store.stage_pending(&key, "v2", &doc("new")).await.unwrap();
    store.promote(&key, "v2", false).await.unwrap();
    // Changed by hand again: the hand-written value becomes current, the rotation's
    // version keeps no stage.
    vault.api_ok(
        "PUT",
        &format!("secret/{key}"),
        Some(r#"{"username":"app","password":"by-hand-2"}"#),
    );
    let state = store.read(&key).await.unwrap();
    assert_eq!(state.current().unwrap().id, "adopted-2");
    assert!(state.version("v2").unwrap().stages.is_empty());
}

#[tokio::test(flavor = "multi_thread")]
async fn kv1_wrong_token_is_refused() {
    let vault = VaultServer::shared();
    let key = unique_name("k");
    kv_store(vault).put_current(&key, "v1", &doc("first")).await.unwrap();
    let mut config = kv_config(vault);
    config.token = Some(ConfigSecret::new("s3cr3t-wrong-token"));
    let store = VaultProvider::new().vault_kv_store(&config).unwrap();
    let err = store.read(&key).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::PermissionDenied, "{err}");
    assert!(err.message().contains(&format!("secret/{key}")), "{err}");
    assert!(err.message().contains(&vault.address()), "{err}");
    let err = store.put_current(&key, "v9", &doc("x")).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::PermissionDenied, "{err}");
    let err = store.preflight(&key).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::PermissionDenied, "{err}");
    assert!(err.message().contains("invalid, expired or revoked token"), "{err}");
    for shown in [err.to_string(), format!("{store:?}"), format!("{config:?}")] {
        assert!(!shown.contains("s3cr3t"), "{shown}");
    }
    assert_eq!(kv_store(vault).read(&key).await.unwrap().current().unwrap().id, "v1");
}

#[tokio::test(flavor = "multi_thread")]
async fn kv1_preflight() {
    let vault = VaultServer::shared();
    let store = kv_store(vault);
    let key = unique_name("pre");
    let text = store.preflight(&key).await.unwrap().join("\n");
    assert!(text.contains("reachable and unsealed"), "{text}");
    assert!(text.contains("token is valid (policies: root"), "{text}");
    assert!(text.contains("mount secret/ is KV version 1"), "{text}");
    assert!(
        text.contains("not checked (the server does not answer sys/capabilities-self)"),
        "{text}"
    );
    assert!(text.contains("does not exist yet"), "{text}");
    store.check_writable(&key).await.unwrap();

    // A KV v2 configuration against rvault's KV v1 mount is caught before any write.
    let mut v2 = kv_config(vault);
    v2.kv_version = 2;
    let err = VaultProvider::new()
        .vault_kv_store(&v2)
        .unwrap()
        .preflight(&key)
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::InvalidInput, "{err}");
    assert!(err.message().contains("is KV version 1"), "{err}");
}

#[tokio::test(flavor = "multi_thread")]
async fn kv1_missing_mount_is_not_found() {
    let vault = VaultServer::shared();
    let mut config = kv_config(vault);
    config.mount = "no-such-mount".into();
    let store = VaultProvider::new().vault_kv_store(&config).unwrap();
    let key = unique_name("k");
    for err in [
        store.read(&key).await.unwrap_err(),
        store.put_current(&key, "v1", &doc("x")).await.unwrap_err(),
        store.preflight(&key).await.unwrap_err(),
    ] {
        assert_eq!(err.kind(), ErrorKind::NotFound, "{err}");
        assert!(err.message().contains("no-such-mount"), "{err}");
    }
}

/// A versions document of the wrong shape is `InvalidInput`, never quoted, and not
/// overwritten by a write.
#[tokio::test(flavor = "multi_thread")]
async fn kv1_unexpected_shape_is_invalid_input() {
    let vault = VaultServer::shared();
    let store = kv_store(vault);
    let key = unique_name("shape");
    store.put_current(&key, "v1", &doc("first")).await.unwrap();
    for bad in [
        json!({ "username": "app", "password": "s3cr3t-pw" }),
        json!({ "format": 1, "versions": "s3cr3t-versions" }),
        json!({ "format": 1, "versions": [{ "id": "v1", "stages": ["current"], "created": "2026-01-01T00:00:00Z" }] }),
        json!({ "format": 1, "versions": [{ "id": "v1", "stages": ["s3cr3t-stage"], "created": "2026-01-01T00:00:00Z",
                                             "value": {} }] }),
    ] {
        vault.api_ok("PUT", &format!("secret/.rekey/{key}"), Some(&bad.to_string()));
        let err = store.read(&key).await.unwrap_err();
        assert_eq!(err.kind(), ErrorKind::InvalidInput, "{err}");
        assert!(!err.to_string().contains("s3cr3t"), "{err}");
        assert!(err.message().contains(&format!("secret/.rekey/{key}")), "{err}");
        let err = store.stage_pending(&key, "v2", &doc("second")).await.unwrap_err();
        assert_eq!(err.kind(), ErrorKind::InvalidInput, "{err}");
        assert_eq!(
            plain_read(vault, &format!("secret/.rekey/{key}")),
            Some(bad),
            "left as it was"
        );
    }
}

/// rekey's own AppRole login (lazy, on the first request) for the store.
#[tokio::test(flavor = "multi_thread")]
async fn kv1_with_approle_login() {
    let vault = VaultServer::shared();
    let role = AppRole::create(vault);
    let (secret_id, _) = role.new_secret_id(vault);
    let mut config = kv_config(vault);
    config.token = None;
    config.approle = Some(AppRoleLogin {
        role_id: role.role_id.clone(),
        secret_id: ConfigSecret::new(secret_id),
        mount: role.mount.clone(),
    });
    let provider = VaultProvider::new();
    let store = provider.vault_kv_store(&config).unwrap();
    let key = unique_name("approle");
    store.put_current(&key, "v1", &doc("first")).await.unwrap();
    assert_eq!(store.read(&key).await.unwrap().current().unwrap().id, "v1");
    let text = store.preflight(&key).await.unwrap().join("\n");
    assert!(
        text.contains(&format!("AppRole login on auth/{}", role.mount)),
        "{text}"
    );

    config.approle.as_mut().unwrap().secret_id = ConfigSecret::new("s3cr3t-not-a-secret-id");
    let bad = provider.vault_kv_store(&config).unwrap();
    let err = bad.read(&key).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::AuthRejected, "{err}");
    assert!(err.message().contains("rekey's own AppRole login failed"), "{err}");
    assert!(!err.to_string().contains("s3cr3t"), "{err}");
}

/// A sealed Vault: preflight and every call are `Unreachable` saying so; after unseal
/// everything works again. (Its own server: sealing the shared one would break others.)
#[tokio::test(flavor = "multi_thread")]
async fn sealed_vault_is_unreachable() {
    let vault = tokio::task::spawn_blocking(VaultServer::start).await.unwrap().unwrap();
    let store = kv_store(&vault);
    let role = AppRole::create(&vault);
    let target = role.target(&vault);
    let key = unique_name("sealed");
    store.put_current(&key, "v1", &doc("first")).await.unwrap();
    vault.seal().unwrap();
    for err in [
        store.preflight(&key).await.unwrap_err(),
        store.read(&key).await.unwrap_err(),
        store.stage_pending(&key, "v2", &doc("x")).await.unwrap_err(),
        target.preflight(None).await.unwrap_err(),
        target.prepare(None, random_password(8)).await.unwrap_err(),
    ] {
        assert_eq!(err.kind(), ErrorKind::Unreachable, "{err}");
        assert!(err.message().contains("Vault is sealed"), "{err}");
        assert!(err.message().contains(&vault.address()), "{err}");
        assert!(err.is_retryable());
    }
    vault.unseal().unwrap();
    assert_eq!(store.read(&key).await.unwrap().current().unwrap().id, "v1");
    drop(vault);
    // Stopped: refused connections are `Unreachable` too.
    let err = store.read(&key).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Unreachable, "{err}");
    assert!(err.message().contains("cannot connect"), "{err}");
}

// ---------------------------------------------------------------------------------
// AppRole target
// ---------------------------------------------------------------------------------

/// A fresh AppRole auth mount and role on the server.
struct AppRole {
    mount: String,
    role: String,
    role_id: String,
}

impl AppRole {
    fn create(vault: &VaultServer) -> AppRole {
        let mount = unique_name("approle").replace('_', "-");
        let role = unique_name("app");
        vault.api_ok("POST", &format!("sys/auth/{mount}"), Some(r#"{"type":"approle"}"#));
        vault.api_ok("POST", &format!("auth/{mount}/role/{role}"), Some("{}"));
        let r = vault.api_ok("GET", &format!("auth/{mount}/role/{role}/role-id"), None);
        let role_id = json_body(&r)["data"]["role_id"].as_str().unwrap().to_owned();
        AppRole { mount, role, role_id }
    }

    /// A secret-id made outside rekey: (secret_id, accessor).
    fn new_secret_id(&self, vault: &VaultServer) -> (String, String) {
        let r = vault.api_ok(
            "POST",
            &format!("auth/{}/role/{}/secret-id", self.mount, self.role),
            Some("{}"),
        );
        let data = &json_body(&r)["data"];
        (
            data["secret_id"].as_str().unwrap().to_owned(),
            data["secret_id_accessor"].as_str().unwrap().to_owned(),
        )
    }

    fn config(&self, vault: &VaultServer) -> VaultAppRoleConfig {
        let mut config = VaultAppRoleConfig::new(vault.address(), &self.role);
        config.mount = self.mount.clone();
        config.token = Some(ConfigSecret::new(vault.root_token()));
        config
    }

    fn target(&self, vault: &VaultServer) -> VaultAppRoleTarget {
        VaultProvider::new()
            .vault_approle_target(&self.config(vault), Strategy::Dual)
            .unwrap()
    }

    /// A current document as `rekey import` would store it: the secret-id only.
    fn imported_doc(&self, vault: &VaultServer) -> SecretDoc {
        let (secret_id, accessor) = self.new_secret_id(vault);
        let mut d = SecretDoc::new();
        d.set("role_id", self.role_id.as_str());
        d.set("secret_id", secret_id);
        d.set("secret_id_accessor", accessor);
        d
    }

    /// A plain AppRole login, as an application would do it.
    fn login_status(&self, vault: &VaultServer, secret_id: &str) -> u16 {
        let body = json!({ "role_id": self.role_id, "secret_id": secret_id }).to_string();
        vault
            .request("POST", &format!("auth/{}/login", self.mount), None, Some(&body))
            .unwrap()
            .status
    }
}

/// The target suite on an AppRole's secret-ids (minted, `dual`).
mod approle_conformance {
    use super::*;

    rekey_api::target_conformance_tests! {
        setup = async {
            let vault = VaultServer::shared();
            let role = AppRole::create(vault);
            let target = role.target(vault);
            let mut current = role.imported_doc(vault);
            target.complete(&mut current);
            (role, target, current)
        },
        // Vault itself takes the returned secret-id.
        check = |role: &AppRole, _: &VaultAppRoleTarget, _: &SecretDoc, after: &SecretDoc| {
            assert_eq!(after.get_str("engine"), Some("vault-approle"));
            assert_eq!(role.login_status(VaultServer::shared(), after.get_str("secret_id").unwrap()), 200);
        },
        skip = [alternating_uses_the_idle_user => "AppRole secret-ids rotate under dual only: no idle user"],
    }
}

#[test]
fn approle_capabilities() {
    let vault = VaultServer::shared();
    let role = AppRole::create(vault);
    let caps = role.target(vault).capabilities().clone();
    assert_eq!(caps.strategies, vec![Strategy::Dual]);
    assert!(caps.mints_own_secret && !caps.apply_invalidates_previous && !caps.terminate_sessions);
}

/// A destroyed secret-id is refused by Vault: `login` says `AuthRejected`, `apply` of a
/// destroyed new secret-id says `NotFound`, and revoking twice is harmless.
#[tokio::test(flavor = "multi_thread")]
async fn approle_destroyed_secret_id_is_refused() {
    let vault = VaultServer::shared();
    let role = AppRole::create(vault);
    let target = role.target(vault);
    let old = role.imported_doc(vault);
    let new = target.prepare(Some(&old), random_password(8)).await.unwrap();
    assert_eq!(new.get_str("role_id"), Some(role.role_id.as_str()));
    assert_eq!(new.get_str("secret_id"), new.password().as_ref().map(|p| p.expose()));
    assert_ne!(new.get_str("secret_id_accessor"), old.get_str("secret_id_accessor"));
    target.apply(&new, Some(&old)).await.unwrap();
    target.login(&new).await.unwrap();
    target.login(&old).await.unwrap();

    target.revoke(&old, &new, RevokeOptions::default()).await.unwrap();
    target.revoke(&old, &new, RevokeOptions::default()).await.unwrap();
    let err = target.login(&old).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::AuthRejected, "{err}");
    let old_secret = old.get_str("secret_id").unwrap();
    assert!(!err.to_string().contains(old_secret), "{err}");
    assert_eq!(
        role.login_status(vault, old_secret),
        400,
        "an application is refused too"
    );
    target.login(&new).await.unwrap();

    // The new secret-id destroyed behind rekey's back: apply notices.
    let newer = target.prepare(Some(&new), random_password(8)).await.unwrap();
    let accessor = newer.get_str("secret_id_accessor").unwrap();
    vault.api_ok(
        "POST",
        &format!("auth/{}/role/{}/secret-id-accessor/destroy", role.mount, role.role),
        Some(&json!({ "secret_id_accessor": accessor }).to_string()),
    );
    let err = target.apply(&newer, Some(&new)).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::NotFound, "{err}");

    // Revoking with the new secret-id as "old" is refused rather than self-destructive.
    let err = target.revoke(&new, &new, RevokeOptions::default()).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::InvalidInput, "{err}");
    target.login(&new).await.unwrap();
}

/// An imported secret-id without its accessor is destroyed by value.
#[tokio::test(flavor = "multi_thread")]
async fn approle_revoke_without_accessor() {
    let vault = VaultServer::shared();
    let role = AppRole::create(vault);
    let target = role.target(vault);
    let (secret_id, _) = role.new_secret_id(vault);
    let mut old = SecretDoc::new();
    old.set("secret_id", secret_id.as_str());
    target.complete(&mut old);
    assert_eq!(old.password().unwrap().expose(), secret_id);
    target.login(&old).await.unwrap();
    let new = target.prepare(Some(&old), random_password(8)).await.unwrap();
    target.revoke(&old, &new, RevokeOptions::default()).await.unwrap();
    assert_eq!(target.login(&old).await.unwrap_err().kind(), ErrorKind::AuthRejected);
    target.login(&new).await.unwrap();
}

#[tokio::test(flavor = "multi_thread")]
async fn approle_preflight_and_complete() {
    let vault = VaultServer::shared();
    let role = AppRole::create(vault);
    let target = role.target(vault);
    let current = role.imported_doc(vault);
    let text = target.preflight(Some(&current)).await.unwrap().join("\n");
    assert!(text.contains("reachable and unsealed"), "{text}");
    assert!(text.contains("token is valid"), "{text}");
    assert!(
        text.contains(&format!(
            "AppRole role \"{}\" on auth/{}/ exists",
            role.role, role.mount
        )),
        "{text}"
    );
    assert!(text.contains("not checked"), "{text}");
    assert!(text.contains("the current secret-id (accessor"), "{text}");
    assert!(text.contains(") exists"), "{text}");

    // complete() fills the non-secret fields, the role-id from the server once known.
    let mut bare = SecretDoc::new();
    bare.set("password", "some-secret-id");
    target.complete(&mut bare);
    assert_eq!(bare.get_str("engine"), Some("vault-approle"));
    assert_eq!(bare.get_str("role_name"), Some(role.role.as_str()));
    assert_eq!(bare.get_str("mount"), Some(role.mount.as_str()));
    assert_eq!(bare.get_str("role_id"), Some(role.role_id.as_str()));
    assert_eq!(bare.get_str("secret_id"), Some("some-secret-id"));

    // A role that does not exist, or a mount that does not.
    let mut missing = role.config(vault);
    missing.role = unique_name("nope");
    let t = VaultProvider::new()
        .vault_approle_target(&missing, Strategy::Dual)
        .unwrap();
    let err = t.preflight(None).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::NotFound, "{err}");
    assert!(err.message().contains(&missing.role), "{err}");
    let mut no_mount = role.config(vault);
    no_mount.mount = "no-such-approle".into();
    let t = VaultProvider::new()
        .vault_approle_target(&no_mount, Strategy::Dual)
        .unwrap();
    assert_eq!(t.preflight(None).await.unwrap_err().kind(), ErrorKind::NotFound);
    assert_eq!(
        t.prepare(None, random_password(8)).await.unwrap_err().kind(),
        ErrorKind::NotFound
    );

    // A wrong token.
    let mut wrong = role.config(vault);
    wrong.token = Some(ConfigSecret::new("s3cr3t-wrong"));
    let t = VaultProvider::new()
        .vault_approle_target(&wrong, Strategy::Dual)
        .unwrap();
    let err = t.prepare(None, random_password(8)).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::PermissionDenied, "{err}");
    assert!(!err.to_string().contains("s3cr3t"), "{err}");
    assert!(!format!("{t:?}").contains("s3cr3t"));

    // Only `dual`.
    let err = VaultProvider::new()
        .vault_approle_target(&role.config(vault), Strategy::Single)
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Unsupported, "{err}");
}

/// A whole rotation as the engine drives it, with the AppRole target and the KV store
/// together: an application reading the key sees the old secret-id until promote.
#[tokio::test(flavor = "multi_thread")]
async fn rotation_through_store_and_target() {
    let vault = VaultServer::shared();
    let provider = VaultProvider::new();
    let store = provider.vault_kv_store(&kv_config(vault)).unwrap();
    let role = AppRole::create(vault);
    let target = provider.approle_target(&role.config(vault), Strategy::Dual).unwrap();
    assert_eq!(provider.http_clients(), 1, "store and target share one HTTP client");
    let key = unique_name("apps/orders/approle");

    let mut current = role.imported_doc(vault);
    target.complete(&mut current);
    store.put_current(&key, "run-0", &current).await.unwrap();

    let state = store.read(&key).await.unwrap();
    let current = state.current().unwrap().doc.clone();
    let new = target.prepare(Some(&current), random_password(8)).await.unwrap();
    store.stage_pending(&key, "run-1", &new).await.unwrap();
    let seen = plain_read(vault, &format!("secret/{key}")).unwrap();
    assert_eq!(
        seen["secret_id"],
        current.get_str("secret_id").unwrap(),
        "readers keep the old secret-id"
    );
    target.apply(&new, Some(&current)).await.unwrap();
    target.verify(&new).await.unwrap();
    store.promote(&key, "run-1", false).await.unwrap();
    let seen = plain_read(vault, &format!("secret/{key}")).unwrap();
    assert_eq!(seen["secret_id"], new.get_str("secret_id").unwrap());
    assert_eq!(role.login_status(vault, seen["secret_id"].as_str().unwrap()), 200);

    let old = store.read(&key).await.unwrap().previous().unwrap().doc.clone();
    target.revoke(&old, &new, RevokeOptions::default()).await.unwrap();
    assert_eq!(target.login(&old).await.unwrap_err().kind(), ErrorKind::AuthRejected);
    store.mark_revoked(&key, "run-0").await.unwrap();
    assert!(store.read(&key).await.unwrap().previous().unwrap().revoked.is_some());
}
