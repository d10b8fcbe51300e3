//! `VAULT_ADDR`, `VAULT_TOKEN` and `~/.vault-token` stand in for a missing `address` and
//! `token`, as for the vault CLI. One test in its own binary: it changes the process
//! environment.

use rekey_api::conformance::unique_name;
use rekey_api::{ErrorKind, SecretDoc, Strategy};
use rekey_testbed::VaultServer;
use rekey_vault::{VaultAppRoleConfig, VaultKvConfig, VaultProvider, ENV_ADDR, ENV_TOKEN};

#[tokio::test(flavor = "multi_thread")]
async fn environment_fills_address_and_token() {
    let vault = tokio::task::spawn_blocking(VaultServer::start).await.unwrap().unwrap();
    let home = tempfile::tempdir().unwrap();
    std::env::set_var("HOME", home.path());
    std::env::remove_var(ENV_TOKEN);
    std::env::remove_var(ENV_ADDR);

    let config: VaultKvConfig = serde_json::from_str(r#"{"kv_version": 1}"#).unwrap();
    let err = VaultProvider::new().kv_store(&config).err().unwrap();
    assert_eq!(err.kind(), ErrorKind::InvalidInput, "{err}");
    assert!(err.message().contains(ENV_ADDR), "{err}");

    std::env::set_var(ENV_ADDR, vault.address());
    let err = VaultProvider::new().kv_store(&config).err().unwrap();
    assert!(err.message().contains(ENV_TOKEN), "{err}");

    std::env::set_var(ENV_TOKEN, vault.root_token());
    let store = VaultProvider::new().kv_store(&config).unwrap();
    let key = unique_name("env");
    let mut doc = SecretDoc::new();
    doc.set("password", "pw-from-env-test");
    store.put_current(&key, "v1", &doc).await.unwrap();
    assert!(store.describe().contains(&vault.address()), "{}", store.describe());

    // Without VAULT_TOKEN, the token file the vault CLI's `login` writes.
    std::env::remove_var(ENV_TOKEN);
    std::fs::write(home.path().join(".vault-token"), format!("{}\n", vault.root_token())).unwrap();
    let store = VaultProvider::new().kv_store(&config).unwrap();
    assert_eq!(store.read(&key).await.unwrap().current().unwrap().id, "v1");

    // The target too.
    vault.api_ok("POST", "sys/auth/approle", Some(r#"{"type":"approle"}"#));
    vault.api_ok("POST", "auth/approle/role/env-role", Some("{}"));
    let target: VaultAppRoleConfig = serde_json::from_str(r#"{"role": "env-role"}"#).unwrap();
    let target = VaultProvider::new().approle_target(&target, Strategy::Dual).unwrap();
    target.preflight(None).await.unwrap();
}
