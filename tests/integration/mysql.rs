//! MariaDB through the CLI (the machine's server, [`MariaDb::machine`]: 127.0.0.1:3306
//! unless `REKEY_MYSQL_HOST`/`REKEY_MYSQL_PORT` say otherwise): alternating users, and
//! the general log never holds a password.

use crate::util::{run, unique, Run};
use rekey_testbed::MariaDb;
use std::process::Command;

/// Users (on host `'%'`) created for a test, dropped (as root) at the end, even of a
/// failing test.
pub(crate) struct Users(pub(crate) Vec<String>);

impl Drop for Users {
    fn drop(&mut self) {
        let db = MariaDb::machine();
        for u in &self.0 {
            let _ = db.try_root_sql(&format!("DROP USER IF EXISTS '{u}'@'%'"));
        }
    }
}

fn rekey(dir: &std::path::Path, admin_url: &str, args: &[&str], stdin: &str) -> Run {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_rekey"));
    cmd.current_dir(dir)
        .env_remove("REKEY_CONFIG")
        .env("REKEY_TEST_MYSQL_ADMIN", admin_url)
        .arg("-c")
        .arg(dir.join("rekey.toml"))
        .args(args);
    run(cmd, stdin)
}

#[test]
fn alternating_users_on_mariadb() {
    let db = MariaDb::machine();
    let (host, port) = (db.host(), db.port());
    let dir = tempfile::tempdir().unwrap();
    let (admin, a, b) = (unique("rk_my_admin"), unique("rk_my_a"), unique("rk_my_b"));
    let _users = Users(vec![admin.clone(), a.clone(), b.clone()]);
    let (admin_pw, a_pw, b_pw) = (
        crate::util::random_password(),
        crate::util::random_password(),
        crate::util::random_password(),
    );
    db.root_sql(&format!(
        "CREATE USER '{admin}'@'%' IDENTIFIED BY '{admin_pw}'; \
         GRANT CREATE USER, PROCESS, CONNECTION ADMIN ON *.* TO '{admin}'@'%'; GRANT SELECT ON mysql.* TO '{admin}'@'%'; \
         CREATE USER '{a}'@'%' IDENTIFIED BY '{a_pw}'; CREATE USER '{b}'@'%' IDENTIFIED BY '{b_pw}'; \
         GRANT SELECT ON test.* TO '{a}'@'%'; GRANT SELECT ON test.* TO '{b}'@'%';"
    ));
    let admin_url = format!("mysql://{admin}:{admin_pw}@{}/", db.endpoint());
    let log = dir.path().join("general.log");
    std::fs::write(
        dir.path().join("rekey.toml"),
        format!(
            "[defaults]\naudit_log = \"audit.jsonl\"\n[stores.local]\ntype = \"file\"\npath = \"secrets.json\"\n\
             [[credentials]]\nname = \"shop-db\"\nstore = \"local\"\nkey = \"shop/db\"\nstrategy = \"alternating\"\ngrace = \"0s\"\n\
             target = {{ type = \"mysql\", host = \"{host}\", port = {port}, usernames = [\"{a}\", \"{b}\"], \
             admin = \"${{REKEY_TEST_MYSQL_ADMIN}}\", tls = \"disable\" }}\n"
        ),
    )
    .unwrap();
    rekey(
        dir.path(),
        &admin_url,
        &["import", "shop-db"],
        &format!("{{\"username\":\"{a}\",\"password\":\"{a_pw}\"}}"),
    )
    .assert_code(0);
    rekey(dir.path(), &admin_url, &["plan"], "").assert_code(0);

    // Record every statement the server receives during the rotations.
    std::fs::set_permissions(dir.path(), std::os::unix::fs::PermissionsExt::from_mode(0o777)).unwrap();
    let previous_log = db.root_sql("SELECT @@general_log_file");
    db.root_sql(&format!(
        "SET GLOBAL general_log_file = '{}'; SET GLOBAL general_log = 1",
        log.display()
    ));
    let first = rekey(dir.path(), &admin_url, &["rotate"], "");
    let second = rekey(dir.path(), &admin_url, &["rotate"], "");
    db.root_sql(&format!(
        "SET GLOBAL general_log = 0; SET GLOBAL general_log_file = '{previous_log}'"
    ));
    first.assert_code(0);
    second.assert_code(0);

    let current = rekey(dir.path(), &admin_url, &["get", "shop-db"], "");
    let doc: serde_json::Value = serde_json::from_str(current.stdout.trim()).unwrap();
    assert_eq!(doc["username"], a.as_str(), "two rotations: a → b → a");
    let new_pw = doc["password"].as_str().unwrap();
    assert!(db.can_login(&a, new_pw));
    assert!(!db.can_login(&a, &a_pw), "the imported password is gone");
    let previous = rekey(
        dir.path(),
        &admin_url,
        &["get", "shop-db", "--stage", "previous", "--field", "password"],
        "",
    );
    assert!(
        !db.can_login(&b, previous.stdout.trim()),
        "the previous user's password was revoked"
    );
    rekey(dir.path(), &admin_url, &["verify"], "").assert_code(0);

    let general = std::fs::read_to_string(&log).unwrap_or_default();
    assert!(
        general.contains("IDENTIFIED BY PASSWORD '*"),
        "the general log captured the rotation"
    );
    assert!(
        !general.contains(new_pw) && !general.contains(previous.stdout.trim()),
        "no plaintext in the general log"
    );
}

#[test]
fn dual_on_mariadb_is_refused_before_anything_changes() {
    let db = MariaDb::machine();
    let (host, port) = (db.host(), db.port());
    let dir = tempfile::tempdir().unwrap();
    let (admin, app) = (unique("rk_my_admin"), unique("rk_my_dual"));
    let _users = Users(vec![admin.clone(), app.clone()]);
    let (admin_pw, app_pw) = (crate::util::random_password(), crate::util::random_password());
    db.root_sql(&format!(
        "CREATE USER '{admin}'@'%' IDENTIFIED BY '{admin_pw}'; \
         GRANT CREATE USER, PROCESS, CONNECTION ADMIN ON *.* TO '{admin}'@'%'; GRANT SELECT ON mysql.* TO '{admin}'@'%'; \
         CREATE USER '{app}'@'%' IDENTIFIED BY '{app_pw}';"
    ));
    let admin_url = format!("mysql://{admin}:{admin_pw}@{}/", db.endpoint());
    std::fs::write(
        dir.path().join("rekey.toml"),
        format!(
            "[stores.local]\ntype = \"file\"\npath = \"secrets.json\"\n[[credentials]]\nname = \"shop-db\"\nstore = \"local\"\n\
             key = \"shop/db\"\nstrategy = \"dual\"\ntarget = {{ type = \"mysql\", host = \"{host}\", port = {port}, \
             username = \"{app}\", admin = \"${{REKEY_TEST_MYSQL_ADMIN}}\", tls = \"disable\" }}\n"
        ),
    )
    .unwrap();
    rekey(dir.path(), &admin_url, &["import", "shop-db"], &app_pw).assert_code(0);
    let before = std::fs::read(dir.path().join("secrets.json")).unwrap();
    let r = rekey(dir.path(), &admin_url, &["rotate"], "");
    r.assert_code(1);
    r.assert_one_error(&["shop-db: preflight: unsupported", "MariaDB"]);
    assert_eq!(std::fs::read(dir.path().join("secrets.json")).unwrap(), before);
    assert!(db.can_login(&app, &app_pw), "the password is unchanged");
}

/// Issue 10 on MariaDB `single`: an admin that may change the password but not end other
/// users' sessions (no CONNECTION ADMIN) — `leaked --rotate` exits 1 saying sessions were
/// NOT ended, the store's current works, the leaked password is refused, the session
/// stays; after the grant, a rerun of `rotate --leaked` ends it without rotating again.
#[test]
fn mysql_single_leak_without_connection_admin_then_rerun_after_grant() {
    let db = MariaDb::machine();
    let (host, port) = (db.host(), db.port());
    let dir = tempfile::tempdir().unwrap();
    let (admin, app) = (unique("rk_myi_admin"), unique("rk_myi_app"));
    let _users = Users(vec![admin.clone(), app.clone()]);
    let (admin_pw, leaked) = (crate::util::random_password(), crate::util::random_password());
    db.root_sql(&format!(
        "CREATE USER '{admin}'@'%' IDENTIFIED BY '{admin_pw}'; \
         GRANT CREATE USER, PROCESS ON *.* TO '{admin}'@'%'; GRANT SELECT ON mysql.* TO '{admin}'@'%'; \
         CREATE USER '{app}'@'%' IDENTIFIED BY '{leaked}'; GRANT SELECT ON test.* TO '{app}'@'%';"
    ));
    let admin_url = format!("mysql://{admin}:{admin_pw}@{}/", db.endpoint());
    std::fs::write(
        dir.path().join("rekey.toml"),
        format!(
            "[defaults]\naudit_log = \"audit.jsonl\"\n[stores.local]\ntype = \"file\"\npath = \"secrets.json\"\n\
             [[credentials]]\nname = \"shop-db\"\nstore = \"local\"\nkey = \"shop/db\"\nstrategy = \"single\"\n\
             target = {{ type = \"mysql\", host = \"{host}\", port = {port}, username = \"{app}\", \
             admin = \"${{REKEY_TEST_MYSQL_ADMIN}}\", tls = \"disable\" }}\n"
        ),
    )
    .unwrap();
    rekey(dir.path(), &admin_url, &["import", "shop-db"], &leaked).assert_code(0);
    // An application session holding the leaked password.
    let mut session = db
        .spawn_sql_as(&app, &leaked, "SELECT SLEEP(60)")
        .expect("the mysql client runs");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    while db.root_sql(&format!(
        "SELECT COUNT(*) FROM information_schema.PROCESSLIST WHERE USER = '{app}'"
    )) == "0"
    {
        assert!(std::time::Instant::now() < deadline, "the session never appeared");
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    let report = dir.path().join("incident.md");
    let r = rekey(
        dir.path(),
        &admin_url,
        &["leaked", "--rotate", "--report", report.to_str().unwrap()],
        &format!("DB_PASSWORD={leaked}\n"),
    );
    assert_eq!(r.code, 1, "{}", r.stderr);
    assert!(r.stderr.contains("sessions were NOT ended"), "{}", r.stderr);
    let current = rekey(dir.path(), &admin_url, &["get", "shop-db", "--field", "password"], "")
        .stdout
        .trim()
        .to_owned();
    assert!(db.can_login(&app, &current), "the store's current secret works");
    assert!(!db.can_login(&app, &leaked), "the leaked password is refused");
    assert!(
        session.try_wait().unwrap().is_none(),
        "the session is still open, as reported"
    );
    let md = std::fs::read_to_string(&report).unwrap();
    assert!(
        md.contains("NOT") && !md.contains(&leaked) && !md.contains(&current),
        "{md}"
    );

    db.root_sql(&format!("GRANT CONNECTION ADMIN ON *.* TO '{admin}'@'%'"));
    let r = rekey(dir.path(), &admin_url, &["rotate", "--leaked", "shop-db"], "");
    assert_eq!(r.code, 0, "{}", r.stderr);
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    while session.try_wait().unwrap().is_none() {
        assert!(std::time::Instant::now() < deadline, "the session was ended");
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    let after = rekey(dir.path(), &admin_url, &["get", "shop-db", "--field", "password"], "");
    assert_eq!(after.stdout.trim(), current, "no second rotation");
}
