//! Vault through the CLI, against rvault: an AppRole secret-id rotated with its
//! secret kept in Vault KV; an ordinary reader only ever sees the current one.

use crate::util::{run, unique, Run};
use rekey_testbed::VaultServer;
use std::process::Command;

struct VaultWorkspace {
    dir: tempfile::TempDir,
    vault: &'static VaultServer,
}

impl VaultWorkspace {
    fn rekey(&self, args: &[&str], stdin: &str) -> Run {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_rekey"));
        cmd.current_dir(self.dir.path())
            .env_remove("REKEY_CONFIG")
            .env_remove("VAULT_ADDR")
            .env("REKEY_TEST_VAULT_TOKEN", self.vault.root_token())
            .arg("-c")
            .arg(self.dir.path().join("rekey.toml"))
            .args(args);
        run(cmd, stdin)
    }

    fn body(&self, method: &str, path: &str, body: Option<&str>) -> serde_json::Value {
        let r = self.vault.api_ok(method, path, body);
        serde_json::from_str(&r.body).unwrap_or(serde_json::Value::Null)
    }

    fn login_status(&self, mount: &str, role_id: &str, secret_id: &str) -> u16 {
        let body = serde_json::json!({ "role_id": role_id, "secret_id": secret_id }).to_string();
        self.vault
            .request("POST", &format!("auth/{mount}/login"), None, Some(&body))
            .unwrap()
            .status
    }
}

#[test]
fn approle_secret_id_rotation_with_the_vault_kv_store() {
    let vault = VaultServer::shared();
    let ws = VaultWorkspace {
        dir: tempfile::tempdir().unwrap(),
        vault,
    };
    let mount = unique("approle").replace('_', "-");
    let role = unique("ci");
    ws.body("POST", &format!("sys/auth/{mount}"), Some(r#"{"type":"approle"}"#));
    ws.body("POST", &format!("auth/{mount}/role/{role}"), Some("{}"));
    let role_id = ws.body("GET", &format!("auth/{mount}/role/{role}/role-id"), None)["data"]["role_id"]
        .as_str()
        .unwrap()
        .to_owned();
    let minted = ws.body("POST", &format!("auth/{mount}/role/{role}/secret-id"), Some("{}"));
    let old_secret = minted["data"]["secret_id"].as_str().unwrap().to_owned();
    let old_accessor = minted["data"]["secret_id_accessor"].as_str().unwrap().to_owned();
    let key = format!("ci/{}", unique("deploy"));
    std::fs::write(
        ws.dir.path().join("rekey.toml"),
        format!(
            "[defaults]\naudit_log = \"audit.jsonl\"\n\n[stores.vault]\ntype = \"vault-kv\"\naddress = \"{addr}\"\nmount = \"secret\"\n\
             kv_version = 1\ntoken = \"${{REKEY_TEST_VAULT_TOKEN}}\"\n\n[[credentials]]\nname = \"ci-deploy\"\nstore = \"vault\"\n\
             key = \"{key}\"\nstrategy = \"dual\"\ngrace = \"0s\"\ntarget = {{ type = \"vault-approle\", address = \"{addr}\", mount = \"{mount}\", \
             role = \"{role}\", token = \"${{REKEY_TEST_VAULT_TOKEN}}\" }}\n",
            addr = vault.address()
        ),
    )
    .unwrap();

    let import = serde_json::json!({"role_id": role_id, "secret_id": old_secret, "secret_id_accessor": old_accessor});
    ws.rekey(&["import", "ci-deploy"], &import.to_string()).assert_code(0);
    ws.rekey(&["plan"], "").assert_code(0);
    let r = ws.rekey(&["rotate", "ci-deploy"], "");
    r.assert_code(0);
    assert!(!r.stdout.contains(&old_secret) && !r.stderr.contains(&old_secret));

    let new_secret = ws.rekey(&["get", "ci-deploy", "--field", "secret_id"], "");
    new_secret.assert_code(0);
    let new_secret = new_secret.stdout.trim().to_owned();
    assert_ne!(new_secret, old_secret);
    assert_eq!(
        ws.login_status(&mount, &role_id, &new_secret),
        200,
        "the new secret-id logs in"
    );
    assert_ne!(
        ws.login_status(&mount, &role_id, &old_secret),
        200,
        "the old secret-id is destroyed"
    );

    // An ordinary Vault reader of the key sees exactly the current document.
    let read = ws.body("GET", &format!("secret/{key}"), None);
    assert_eq!(read["data"]["secret_id"], new_secret.as_str());
    ws.rekey(&["verify", "ci-deploy"], "").assert_code(0);
    assert!(!std::fs::read_to_string(ws.dir.path().join("audit.jsonl"))
        .unwrap()
        .contains(&new_secret));

    // A wrong token is refused: a clear one-line error, nothing changed.
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_rekey"));
    cmd.current_dir(ws.dir.path())
        .env("REKEY_TEST_VAULT_TOKEN", "not-a-token")
        .arg("-c")
        .arg(ws.dir.path().join("rekey.toml"))
        .args(["rotate", "ci-deploy"]);
    let r = run(cmd, "");
    r.assert_code(1);
    r.assert_one_error(&["ci-deploy"]);
    assert!(!r.stderr.contains("not-a-token"));
    assert_eq!(
        ws.body("GET", &format!("secret/{key}"), None)["data"]["secret_id"],
        new_secret.as_str()
    );
}
