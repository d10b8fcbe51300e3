//! The AppRole target's recovery and incident behaviour against a real rvault server:
//! the sweep of minted secret-ids stored nowhere, the metadata that tells rekey's
//! secret-ids from others, and what incident mode can say about tokens already issued.
//!
//! rvault facts: `LIST auth/<mount>/role/<role>/secret-id` answers the accessors and
//! `secret-id-accessor/lookup` their `creation_time` (whole seconds) and `metadata`; the
//! token store has no accessor listing, `lookup-accessor` or `revoke-accessor`, and
//! tokens carry only `role_name` and the secret-id's metadata, so tokens issued with a
//! secret-id cannot be found from it (nor can they on Vault).

use rekey_api::conformance::{random_password, unique_name};
use rekey_api::{ErrorKind, RevokeOptions, SecretDoc, Strategy, Target};
use rekey_testbed::VaultServer;
use rekey_vault::{ConfigSecret, VaultAppRoleConfig, VaultAppRoleTarget, VaultProvider, REPLACES_METADATA};
use serde_json::{json, Value};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

fn json_body(r: &rekey_testbed::VaultResponse) -> Value {
    serde_json::from_str(&r.body).unwrap_or_else(|e| panic!("not JSON ({e}): {}", r.body))
}

/// A fresh AppRole auth mount and role (`role_body` configures the role).
struct AppRole {
    mount: String,
    role: String,
    role_id: String,
}

impl AppRole {
    fn create(vault: &VaultServer, role_body: &str) -> AppRole {
        let mount = unique_name("approle").replace('_', "-");
        let role = unique_name("app");
        vault.api_ok("POST", &format!("sys/auth/{mount}"), Some(r#"{"type":"approle"}"#));
        vault.api_ok("POST", &format!("auth/{mount}/role/{role}"), Some(role_body));
        let r = vault.api_ok("GET", &format!("auth/{mount}/role/{role}/role-id"), None);
        let role_id = json_body(&r)["data"]["role_id"].as_str().unwrap().to_owned();
        AppRole { mount, role, role_id }
    }

    fn role_path(&self) -> String {
        format!("auth/{}/role/{}", self.mount, self.role)
    }

    /// A secret-id made outside rekey, as a document: (doc, accessor).
    fn hand_made(&self, vault: &VaultServer) -> (SecretDoc, String) {
        let r = vault.api_ok("POST", &format!("{}/secret-id", self.role_path()), Some("{}"));
        let data = &json_body(&r)["data"];
        let accessor = data["secret_id_accessor"].as_str().unwrap().to_owned();
        let mut d = SecretDoc::new();
        d.set("role_id", self.role_id.as_str());
        d.set("secret_id", data["secret_id"].as_str().unwrap());
        d.set("password", data["secret_id"].as_str().unwrap());
        d.set("secret_id_accessor", accessor.as_str());
        (d, accessor)
    }

    fn target(&self, vault: &VaultServer) -> VaultAppRoleTarget {
        let mut config = VaultAppRoleConfig::new(vault.address(), &self.role);
        config.mount = self.mount.clone();
        config.token = Some(ConfigSecret::new(vault.root_token()));
        VaultProvider::new()
            .vault_approle_target(&config, Strategy::Dual)
            .unwrap()
    }

    /// The role's secret-id accessors, sorted (`LIST`).
    fn accessors(&self, vault: &VaultServer) -> Vec<String> {
        let r = vault
            .api("LIST", &format!("{}/secret-id", self.role_path()), None)
            .unwrap();
        if r.status == 404 {
            return Vec::new();
        }
        assert!(r.is_success(), "LIST: {} {}", r.status, r.body);
        let mut keys: Vec<String> = json_body(&r)["data"]["keys"]
            .as_array()
            .unwrap()
            .iter()
            .map(|k| k.as_str().unwrap().to_owned())
            .collect();
        keys.sort();
        keys
    }

    fn lookup(&self, vault: &VaultServer, accessor: &str) -> Value {
        let r = vault.api_ok(
            "POST",
            &format!("{}/secret-id-accessor/lookup", self.role_path()),
            Some(&json!({ "secret_id_accessor": accessor }).to_string()),
        );
        json_body(&r)["data"].clone()
    }

    /// An application's login: the token.
    fn login(&self, vault: &VaultServer, doc: &SecretDoc) -> String {
        let body = json!({ "role_id": self.role_id, "secret_id": doc.get_str("secret_id").unwrap() }).to_string();
        let r = vault
            .request("POST", &format!("auth/{}/login", self.mount), None, Some(&body))
            .unwrap();
        assert!(r.is_success(), "login: {} {}", r.status, r.body);
        json_body(&r)["auth"]["client_token"].as_str().unwrap().to_owned()
    }
}

fn accessor(doc: &SecretDoc) -> String {
    doc.get_str("secret_id_accessor").unwrap().to_owned()
}

fn sorted(mut v: Vec<String>) -> Vec<String> {
    v.sort();
    v
}

/// prepare names the secret-id the new one replaces in its metadata; Vault copies it
/// into the tokens issued with the new one.
#[tokio::test(flavor = "multi_thread")]
async fn minted_secret_ids_name_their_predecessor() {
    let vault = VaultServer::shared();
    let role = AppRole::create(vault, "{}");
    let t = role.target(vault);
    let (current, current_accessor) = role.hand_made(vault);
    let new = t.prepare(Some(&current), random_password(8)).await.unwrap();
    let entry = role.lookup(vault, &accessor(&new));
    assert_eq!(entry["metadata"][REPLACES_METADATA], json!(current_accessor), "{entry}");

    let token = role.login(vault, &new);
    let r = vault
        .request("GET", "auth/token/lookup-self", Some(&token), None)
        .unwrap();
    assert_eq!(
        json_body(&r)["data"]["meta"][REPLACES_METADATA],
        json!(current_accessor),
        "{}",
        r.body
    );

    // Without a current accessor (first rotation, bare import): no metadata.
    let first = t.prepare(None, random_password(8)).await.unwrap();
    let entry = role.lookup(vault, &accessor(&first));
    assert!(entry["metadata"].get(REPLACES_METADATA).is_none(), "{entry}");
}

/// An interrupted rotation (minted, never stored) leaves a secret-id alive; the sweep
/// destroys it and nothing else.
#[tokio::test(flavor = "multi_thread")]
async fn sweep_destroys_a_minted_secret_id_stored_nowhere() {
    let vault = VaultServer::shared();
    let role = AppRole::create(vault, "{}");
    let t = role.target(vault);
    let (current, _) = role.hand_made(vault);
    let since = SystemTime::now();
    let lost = t.prepare(Some(&current), random_password(8)).await.unwrap();
    // Not this credential's: a secret-id made by hand, and one rekey minted for another
    // credential on the same role.
    let (by_hand, by_hand_accessor) = role.hand_made(vault);
    let (other_current, other_accessor) = role.hand_made(vault);
    let other_new = t.prepare(Some(&other_current), random_password(8)).await.unwrap();
    assert_eq!(role.accessors(vault).len(), 5);

    let removed = t.sweep_unstored(&[&current], since).await.unwrap();
    assert_eq!(removed, vec![accessor(&lost)]);
    assert_eq!(
        role.accessors(vault),
        sorted(vec![
            accessor(&current),
            by_hand_accessor,
            other_accessor,
            accessor(&other_new)
        ])
    );
    let err = t.login(&lost).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::AuthRejected, "{err}");
    for kept in [&current, &by_hand, &other_current, &other_new] {
        t.login(kept).await.unwrap();
    }
    assert!(
        t.sweep_unstored(&[&current], since).await.unwrap().is_empty(),
        "idempotent"
    );

    // A pending version is stored: kept.
    let pending = t.prepare(Some(&current), random_password(8)).await.unwrap();
    assert!(t.sweep_unstored(&[&current, &pending], since).await.unwrap().is_empty());
    t.login(&pending).await.unwrap();
}

/// Secret-ids created before `since` are kept, and so is everything when no stored
/// document has an accessor.
#[tokio::test(flavor = "multi_thread")]
async fn sweep_keeps_older_secret_ids_and_needs_stored_accessors() {
    let vault = VaultServer::shared();
    let role = AppRole::create(vault, "{}");
    let t = role.target(vault);
    let (current, _) = role.hand_made(vault);
    let lost = t.prepare(Some(&current), random_password(8)).await.unwrap();
    let all = role.accessors(vault);

    // The newest stored version is 10 s younger than the lost secret-id (beyond the 2 s
    // of clock skew allowed): the secret-id is older, so it is kept.
    let later = SystemTime::now() + Duration::from_secs(10);
    assert!(t.sweep_unstored(&[&current], later).await.unwrap().is_empty());
    // Nothing stored, or no accessor stored: nothing can be told apart.
    assert!(t.sweep_unstored(&[], UNIX_EPOCH).await.unwrap().is_empty());
    let mut bare = SecretDoc::new();
    bare.set("secret_id", current.get_str("secret_id").unwrap());
    assert!(t.sweep_unstored(&[&bare], UNIX_EPOCH).await.unwrap().is_empty());
    assert_eq!(role.accessors(vault), all);
    t.login(&lost).await.unwrap();

    // With `since` before it, it goes.
    assert_eq!(
        t.sweep_unstored(&[&current], UNIX_EPOCH).await.unwrap(),
        vec![accessor(&lost)]
    );
}

/// Tokens issued with a secret-id outlive its destruction (rvault, like Vault): the
/// incident preflight says so, with the role's token TTLs.
#[tokio::test(flavor = "multi_thread")]
async fn incident_preflight_says_tokens_live_until_their_ttl() {
    let vault = VaultServer::shared();
    let role = AppRole::create(vault, r#"{"token_ttl": 3600, "token_max_ttl": 14400}"#);
    let t = role.target(vault);
    assert!(!t.capabilities().terminate_sessions);
    let lines = t.incident_preflight().await.unwrap();
    assert_eq!(lines.len(), 2, "{lines:?}");
    assert!(
        lines[0].contains(&format!(
            "AppRole role {:?} on auth/{}/: tokens already issued with the leaked secret-id stay valid until they \
             expire",
            role.role, role.mount
        )),
        "{lines:?}"
    );
    assert_eq!(lines[1], "the role's tokens live 1h after login, renewable up to 4h");

    // What the line warns about: destroying the secret-id leaves its token working.
    let (old, _) = role.hand_made(vault);
    let token = role.login(vault, &old);
    let new = t.prepare(Some(&old), random_password(8)).await.unwrap();
    t.revoke(
        &old,
        &new,
        RevokeOptions {
            terminate_sessions: true,
        },
    )
    .await
    .unwrap();
    assert_eq!(t.login(&old).await.unwrap_err().kind(), ErrorKind::AuthRejected);
    let r = vault
        .request("GET", "auth/token/lookup-self", Some(&token), None)
        .unwrap();
    assert_eq!(r.status, 200, "the token outlives its secret-id: {}", r.body);

    // A role without TTLs: the defaults apply.
    let plain = AppRole::create(vault, "{}");
    let lines = plain.target(vault).incident_preflight().await.unwrap();
    assert!(lines[1].contains("token_ttl is not set"), "{lines:?}");

    // A role that does not exist: still facts, naming what could not be read.
    let mut config = VaultAppRoleConfig::new(vault.address(), "no-such-role");
    config.mount = role.mount.clone();
    config.token = Some(ConfigSecret::new(vault.root_token()));
    let missing = VaultProvider::new()
        .vault_approle_target(&config, Strategy::Dual)
        .unwrap();
    let lines = missing.incident_preflight().await.unwrap();
    assert!(
        lines[1].starts_with("the role's token TTLs could not be read"),
        "{lines:?}"
    );
    assert!(!lines.join(" ").contains(vault.root_token()));
}
