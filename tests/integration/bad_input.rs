//! Bad input: a clear one-line error naming the credential and step, the documented
//! exit code, and nothing changed in the store or on the target.

use crate::util::{Workspace, ADMIN_ENV};
use std::os::unix::fs::PermissionsExt;

/// A workspace with one imported credential, and a snapshot to compare against.
struct Fixture {
    ws: Workspace,
    role: String,
    password: String,
    store: Vec<u8>,
    verifier: String,
}

impl Fixture {
    fn new() -> Fixture {
        let mut ws = Workspace::new();
        let (role, password) = ws.role("rk_bad");
        ws.write_config(&[ws.credential("app-db", &role)]);
        ws.import("app-db", &password);
        let store = ws.store_bytes();
        let verifier = ws.verifier(&role);
        Fixture {
            ws,
            role,
            password,
            store,
            verifier,
        }
    }

    #[track_caller]
    fn assert_unchanged(&self) {
        assert_eq!(self.ws.store_bytes(), self.store, "the store file changed");
        assert_eq!(
            self.ws.verifier(&self.role),
            self.verifier,
            "the role's password changed"
        );
        assert!(self.ws.can_login(&self.role, &self.password));
    }

    fn config_text(&self) -> String {
        std::fs::read_to_string(self.ws.config_path()).unwrap()
    }
}

#[test]
fn malformed_toml() {
    let f = Fixture::new();
    f.ws.write_raw_config(&f.config_text().replace("[stores.local]", "[stores.local"));
    let r = f.ws.rekey(&["rotate"]);
    r.assert_code(2);
    r.assert_one_error(&["rekey.toml:5:"]);
    f.assert_unchanged();
}

#[test]
fn unknown_key_names_file_line_and_key() {
    let f = Fixture::new();
    f.ws.write_raw_config(&f.config_text().replace("parallel = 4", "parallel = 4\nparalell = 8"));
    let r = f.ws.rekey(&["rotate"]);
    r.assert_code(2);
    r.assert_one_error(&["rekey.toml:4:", "paralell"]);
    f.assert_unchanged();
}

#[test]
fn unknown_store() {
    let f = Fixture::new();
    f.ws.write_raw_config(&f.config_text().replace("store = \"local\"", "store = \"nowhere\""));
    let r = f.ws.rekey(&["rotate"]);
    r.assert_code(2);
    r.assert_one_error(&["credential `app-db`", "unknown store `nowhere`"]);
    f.assert_unchanged();
}

#[test]
fn unknown_credential_name() {
    let f = Fixture::new();
    let r = f.ws.rekey(&["rotate", "no-such-db"]);
    r.assert_code(2);
    r.assert_one_error(&["unknown credential `no-such-db`", "app-db"]);
    f.assert_unchanged();
}

/// A variable missing in a credential's target fails that credential (exit 1, naming
/// it) before anything of it changes; `validate` still calls the config invalid (exit 2).
#[test]
fn missing_environment_variable() {
    let f = Fixture::new();
    let mut cmd = f.ws.command();
    cmd.env_remove(ADMIN_ENV).arg("rotate");
    let r = crate::util::run(cmd, "");
    r.assert_code(1);
    r.assert_one_error(&["app-db: preflight:", "credential `app-db`", ADMIN_ENV, "not set"]);
    f.assert_unchanged();
    let mut cmd = f.ws.command();
    cmd.env_remove(ADMIN_ENV).arg("validate");
    let r = crate::util::run(cmd, "");
    r.assert_code(2);
    r.assert_one_error(&["credential `app-db`", ADMIN_ENV, "not set"]);
}

#[test]
fn unreachable_host() {
    let f = Fixture::new();
    let closed = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    f.ws.write_raw_config(
        &f.config_text()
            .replace(&format!("port = {}", f.ws.pg.port()), &format!("port = {closed}")),
    );
    let r = f.ws.rekey(&["rotate"]);
    r.assert_code(1);
    r.assert_one_error(&["app-db: preflight:", "unreachable"]);
    f.assert_unchanged();
}

#[test]
fn wrong_admin_password() {
    let f = Fixture::new();
    let wrong =
        f.ws.pg
            .admin_url()
            .replace(f.ws.pg.admin_password(), "not-the-password");
    let mut cmd = f.ws.command();
    cmd.env(ADMIN_ENV, &wrong).arg("rotate");
    let r = crate::util::run(cmd, "");
    r.assert_code(1);
    r.assert_one_error(&["app-db: preflight:", "authentication rejected"]);
    assert!(
        !r.stderr.contains("not-the-password"),
        "the admin password is not echoed"
    );
    f.assert_unchanged();
}

#[test]
fn role_that_does_not_exist() {
    let ws = Workspace::new();
    let missing = crate::util::unique("rk_nobody");
    ws.write_config(&[ws.credential("app-db", &missing)]);
    ws.rekey_stdin(&["import", "--no-verify", "app-db"], "some-password-123")
        .assert_code(0);
    let before = ws.store_bytes();
    let r = ws.rekey(&["rotate"]);
    r.assert_code(1);
    r.assert_one_error(&["app-db: preflight:", "not found", "does not exist"]);
    assert_eq!(ws.store_bytes(), before, "the store file changed");
    let exists = ws.pg.psql(&format!(
        "SELECT count(*) FROM pg_roles WHERE rolname = {}",
        rekey_testbed::quote_literal(&missing)
    ));
    assert_eq!(exists, "0", "nothing was created on the target");
}

#[test]
fn configured_role_differs_from_the_stored_secret() {
    let f = Fixture::new();
    let other = crate::util::unique("rk_other");
    f.ws.write_raw_config(&f.config_text().replace(
        &format!("username = \"{}\"", f.role),
        &format!("username = \"{other}\""),
    ));
    let r = f.ws.rekey(&["rotate"]);
    r.assert_code(1);
    r.assert_one_error(&["app-db: preflight:", "is not the configured role"]);
    f.assert_unchanged();
}

#[test]
fn admin_without_privilege() {
    let mut f = Fixture::new();
    let (weak, weak_password) = f.ws.role("rk_weak_admin");
    let url = format!(
        "postgres://{weak}:{weak_password}@127.0.0.1:{}/postgres",
        f.ws.pg.port()
    );
    let mut cmd = f.ws.command();
    cmd.env(ADMIN_ENV, &url).arg("rotate");
    let r = crate::util::run(cmd, "");
    r.assert_code(1);
    r.assert_one_error(&["app-db: preflight:", "permission denied"]);
    let plan = {
        let mut cmd = f.ws.command();
        cmd.env(ADMIN_ENV, &url).arg("plan");
        crate::util::run(cmd, "")
    };
    plan.assert_code(1);
    f.assert_unchanged();
}

#[test]
fn store_file_with_loose_permissions() {
    let f = Fixture::new();
    let path = f.ws.path("secrets.json");
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
    let r = f.ws.rekey(&["rotate"]);
    r.assert_code(1);
    r.assert_one_error(&["app-db", "chmod 600"]);
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
    f.assert_unchanged();
}

#[test]
fn empty_stdin_for_import() {
    let f = Fixture::new();
    let r = f.ws.rekey_stdin(&["import", "app-db"], "");
    r.assert_code(2);
    r.assert_one_error(&["app-db: import:", "empty"]);
    f.assert_unchanged();
}

#[test]
fn import_of_a_wrong_password_is_refused() {
    let f = Fixture::new();
    let r = f.ws.rekey_stdin(&["import", "app-db"], "definitely-not-the-password");
    r.assert_code(1);
    r.assert_one_error(&["app-db: verify:", "authentication rejected"]);
    assert!(!r.stderr.contains("definitely-not-the-password"));
    f.assert_unchanged();
}

#[test]
fn strategy_the_target_does_not_support_is_a_configuration_error() {
    let f = Fixture::new();
    f.ws.write_raw_config(
        &f.config_text()
            .replace("tags = [\"test\"]", "tags = [\"test\"]\nstrategy = \"dual\""),
    );
    let r = f.ws.rekey(&["rotate"]);
    r.assert_code(2);
    r.assert_one_error(&["app-db: configure target:", "dual"]);
    f.assert_unchanged();
}

#[test]
fn leaked_says_when_a_store_cannot_be_searched() {
    let f = Fixture::new();
    let path = f.ws.path("secrets.json");
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
    let r = f.ws.rekey_stdin(&["leaked"], &f.password);
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
    r.assert_code(1);
    assert!(
        r.stderr.contains("app-db: read:") && r.stderr.contains("may be among them"),
        "{}",
        r.stderr
    );
    assert!(!r.stderr.contains(&f.password));
    f.assert_unchanged();
}
