//! Issue 12's invariant on a real server: the store's current secret is never one the
//! target refuses. With `single`, apply replaces the password at once; when verify then
//! fails for a reason other than authentication (here the configured check query starts
//! failing), rekey proves the old password refused and promotes the applied one, and
//! reports the credential as failed (exit 1) with the reason.

use crate::util::{random_password, run, unique, Workspace};
use rekey_testbed::{quote_ident, MariaDb, PgCluster};
use std::process::Command;

#[test]
fn postgres_single_check_failing_after_apply_never_leaves_a_dead_current() {
    let pg = PgCluster::shared();
    let mut ws = Workspace::new();
    let (role, initial) = ws.role("rk_after");
    // The check query passes while the sequence is at 1 and divides by zero after: it
    // passes at import, and once the sequence is moved on, fails at rotate's verify
    // (after apply: preflight does not run it).
    let seq = unique("rk_after_seq");
    pg.psql(&format!(
        "CREATE SEQUENCE {s}; GRANT USAGE ON SEQUENCE {s} TO {r}",
        s = quote_ident(&seq),
        r = quote_ident(&role)
    ));
    let credential = ws.credential("app", &role).replace(
        "sslmode = \"disable\" }",
        &format!(
            "sslmode = \"disable\", check_query = \"SELECT 1 / (CASE WHEN nextval('{seq}') > 1 THEN 0 ELSE 1 END)\" }}"
        ),
    );
    ws.write_config(&[credential.replace("[[credentials]]\n", "[[credentials]]\nstrategy = \"single\"\n")]);
    ws.import("app", &initial);
    pg.psql(&format!("SELECT setval({}, 1)", rekey_testbed::quote_literal(&seq)));

    let r = ws.rekey(&["rotate", "app"]);
    r.assert_code(1);
    let all = format!("{}{}", r.stdout, r.stderr);
    assert!(all.contains("division by zero"), "the reason is reported: {all}");
    // The old password is dead at the server: the store's current must be the new one.
    assert!(!ws.can_login(&role, &initial), "apply replaced the old password");
    let current = ws.stored_password("app", "current");
    assert_ne!(current, initial, "the applied password was promoted: {all}");
    assert!(ws.can_login(&role, &current), "the stored current logs in");
    pg.psql(&format!("DROP SEQUENCE {}", quote_ident(&seq)));
}

/// The same on MariaDB (the machine's server): a check query that fails once the
/// sequence has moved on ("Subquery returns more than 1 row", evaluated lazily by CASE).
#[test]
fn mariadb_single_check_failing_after_apply_never_leaves_a_dead_current() {
    let db = MariaDb::machine();
    let dir = tempfile::tempdir().unwrap();
    let (admin, user, seq) = (unique("rk_aa_admin"), unique("rk_aa_app"), unique("rk_aa_seq"));
    let (admin_pw, initial) = (random_password(), random_password());
    db.root_sql(&format!(
        "CREATE USER '{admin}'@'%' IDENTIFIED BY '{admin_pw}'; \
         GRANT CREATE USER ON *.* TO '{admin}'@'%'; GRANT SELECT ON mysql.* TO '{admin}'@'%'; \
         CREATE USER '{user}'@'%' IDENTIFIED BY '{initial}'; \
         CREATE SEQUENCE test.{seq}; GRANT SELECT, INSERT ON test.{seq} TO '{user}'@'%';"
    ));
    let cleanup = Cleanup(format!(
        "DROP USER IF EXISTS '{admin}'@'%'; DROP USER IF EXISTS '{user}'@'%'; DROP SEQUENCE IF EXISTS test.{seq};"
    ));
    std::fs::write(
        dir.path().join("rekey.toml"),
        format!(
            "[defaults]\naudit_log = \"audit.jsonl\"\n[stores.local]\ntype = \"file\"\npath = \"secrets.json\"\n\
             [[credentials]]\nname = \"app\"\nstore = \"local\"\nkey = \"app/db\"\nstrategy = \"single\"\n\
             target = {{ type = \"mysql\", host = \"{host}\", port = {port}, username = \"{user}\", \
             admin = \"${{REKEY_TEST_MYSQL_ADMIN}}\", tls = \"disable\", \
             check_query = \"SELECT CASE WHEN NEXTVAL(test.{seq}) > 1 THEN (SELECT 1 UNION SELECT 2) ELSE 1 END\" }}\n",
            host = db.host(),
            port = db.port()
        ),
    )
    .unwrap();
    let admin_url = format!("mysql://{admin}:{admin_pw}@{}/", db.endpoint());
    let rekey = |args: &[&str], stdin: &str| {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_rekey"));
        cmd.current_dir(dir.path())
            .env_remove("REKEY_CONFIG")
            .env("REKEY_TEST_MYSQL_ADMIN", &admin_url)
            .arg("-c")
            .arg(dir.path().join("rekey.toml"))
            .args(args);
        run(cmd, stdin)
    };
    rekey(&["import", "app"], &initial).assert_code(0);
    db.root_sql(&format!("SELECT SETVAL(test.{seq}, 1)"));
    assert!(db.can_login(&user, &initial), "precondition");

    let r = rekey(&["rotate", "app"], "");
    r.assert_code(1);
    let all = format!("{}{}", r.stdout, r.stderr);
    assert!(all.contains("more than 1 row"), "the reason is reported: {all}");
    assert!(!db.can_login(&user, &initial), "apply replaced the old password");
    let current = rekey(&["get", "app", "--field", "password"], "");
    current.assert_code(0);
    let current = current.stdout.trim_end_matches('\n');
    assert_ne!(current, initial, "the applied password was promoted: {all}");
    assert!(db.can_login(&user, current), "the stored current logs in");
    drop(cleanup);
}

/// Root SQL run at the end of a test, even a failing one.
struct Cleanup(String);

impl Drop for Cleanup {
    fn drop(&mut self) {
        let _ = MariaDb::machine().try_root_sql(&self.0);
    }
}
