//! Issue 12's invariant on real servers: the store's current secret is never one the
//! target refuses. With `single`, apply replaces the password at once; when verify then
//! fails for a reason other than authentication, rekey proves the old password refused
//! and promotes the applied one, and reports the credential as failed (exit 1) with the
//! reason. One test per target that supports `single`, each failing verify its own way
//! after a precondition shown to hold at import: a configured check query that starts
//! failing (PostgreSQL, MariaDB), the login connection cut after the server accepted
//! `AUTH` (Redis, through a relay: the only non-password failure its login can have), a
//! login request RabbitMQ's management API answers 404 once a vhost is gone (http), and
//! a plugin whose post-login check fails (exec, the example RabbitMQ plugin wrapped).

use crate::http_target::rekey;
use crate::redis::{redis_cli, redis_login, RedisUser, REDIS};
use crate::util::{random_password, run, unique, Run, Workspace};
use rekey_testbed::keyapi::{basic_auth, request, RabbitMq};
use rekey_testbed::{quote_ident, MariaDb, PgCluster};
use std::io::{Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::process::Command;
use std::sync::atomic::{AtomicUsize, Ordering::SeqCst};
use std::sync::Arc;

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
    // The old password is dead at the server: the store's current must be the new one.
    let current = ws.stored_password("app", "current");
    let logs_in = |password: &str| ws.can_login(&role, password);
    assert_applied_promoted(&r, "division by zero", &initial, &current, logs_in, |p| !logs_in(p));
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
    let current = stored(rekey(&["get", "app", "--field", "password"], ""));
    let logs_in = |password: &str| db.can_login(&user, password);
    assert_applied_promoted(&r, "more than 1 row", &initial, &current, logs_in, |p| !logs_in(p));
    drop(cleanup);
}

/// Root SQL run at the end of a test, even a failing one.
struct Cleanup(String);

impl Drop for Cleanup {
    fn drop(&mut self) {
        let _ = MariaDb::machine().try_root_sql(&self.0);
    }
}

/// Redis (the machine's server): verify is `AUTH` then `ACL WHOAMI`, and a `NOPERM` there
/// still counts as logged in, so no ACL rule makes it fail for a reason other than the
/// password, and preflight (with an admin) never logs in as the user. What can is the
/// network: the user's logins go through a [`CuttingRelay`], armed after import, that cuts
/// the next connection right after the server's answer to `AUTH` (the real server accepted
/// the new password; `ACL WHOAMI` then finds the connection gone). Apply and the admin's
/// checks go straight to the server.
#[test]
fn redis_single_login_cut_after_apply_never_leaves_a_dead_current() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let user = RedisUser(unique("rk_aa_redis"));
    let initial = random_password();
    redis_cli(&["ACL", "SETUSER", &user.0, "on", &format!(">{initial}"), "~*", "+@all"]);
    let relay = CuttingRelay::start(REDIS.0, REDIS.1);
    std::fs::write(
        d.join("rekey.toml"),
        format!(
            "[defaults]\naudit_log = \"audit.jsonl\"\n[stores.local]\ntype = \"file\"\npath = \"secrets.json\"\n\
             [[credentials]]\nname = \"cache\"\nstore = \"local\"\nkey = \"cache\"\nstrategy = \"single\"\n\
             verify_attempts = 1\n\
             target = {{ type = \"redis\", host = \"127.0.0.1\", port = {relay}, username = \"{user}\", \
             admin = \"redis://{host}:{port}\" }}\n",
            relay = relay.port,
            user = user.0,
            host = REDIS.0,
            port = REDIS.1
        ),
    )
    .unwrap();
    rekey(d, &[], &["import", "cache"], &initial).assert_code(0);
    assert!(redis_login(&user.0, &initial), "precondition");
    assert!(!redis_login(&user.0, "not-the-password"), "the server checks passwords");
    assert_eq!(relay.cut(), 0, "import's login went through uncut");

    relay.cut_next(1);
    let r = rekey(d, &[], &["rotate", "cache"], "");
    assert_eq!(relay.cut(), 1, "verify's login was cut: {}{}", r.stdout, r.stderr);
    let current = stored(rekey(d, &[], &["get", "cache", "--field", "password"], ""));
    let logs_in = |password: &str| redis_login(&user.0, password);
    assert_applied_promoted(&r, "ACL WHOAMI", &initial, &current, logs_in, |p| !logs_in(p));
}

/// The `http` target with `single` on the machine's RabbitMQ management API: the login
/// request reads an exchange of a vhost the user may access,
/// `GET /api/exchanges/<vhost>/amq.direct` (200 at import). Once the vhost is deleted
/// RabbitMQ still checks the password first (401 for a wrong one, which is `rejected`)
/// and answers the right one 404, which is neither `ok` nor `rejected`: verify fails for
/// that reason after apply. Preflight runs only the admin's request, never the login.
#[test]
fn http_single_login_failing_after_apply_never_leaves_a_dead_current() {
    let api = RabbitMq::management().expect("RabbitMQ management API");
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let initial = random_password();
    let user = api.create_user(&unique("rk_aa_http"), &initial).unwrap();
    let vhost = Vhost::create(&api, &unique("rk_aa_vh"));
    let granted = vhost.admin(
        "PUT",
        &format!("/api/permissions/{}/{}", vhost.name, user.name),
        Some(r#"{"configure":".*","write":".*","read":".*"}"#),
    );
    assert!(
        matches!(granted, 201 | 204),
        "granting {} on the vhost: HTTP {granted}",
        user.name
    );
    let (admin, admin_password) = api.admin();
    std::fs::write(
        d.join("rekey.toml"),
        format!(
            r#"[defaults]
audit_log = "audit.jsonl"
[stores.local]
type = "file"
path = "secrets.json"
[[credentials]]
name = "broker"
store = "local"
key = "broker"
strategy = "single"
target = {{ type = "http", base_url = "{url}", timeout_secs = 10,
  basic = {{ username = "${{RABBITMQ_ADMIN_USER}}", password = "${{RABBITMQ_ADMIN_PASSWORD}}" }},
  preflight = {{ method = "GET", path = "/api/users/{user}", ok = [200] }},
  apply = {{ method = "PUT", path = "/api/users/{user}", json = {{ password = "{{{{password}}}}", tags = "management" }},
            ok = [201, 204] }},
  login = {{ method = "GET", path = "/api/exchanges/{vhost}/amq.direct", basic = {{ username = "{user}", password = "{{{{password}}}}" }},
            ok = [200], rejected = [401] }} }}
"#,
            url = api.url(),
            user = user.name,
            vhost = vhost.name
        ),
    )
    .unwrap();
    let env = [
        ("RABBITMQ_ADMIN_USER", admin),
        ("RABBITMQ_ADMIN_PASSWORD", admin_password),
    ];
    rekey(d, &env, &["import", "broker"], &initial).assert_code(0);
    let as_user = |password: &str| {
        request(
            "GET",
            &format!("{}/api/exchanges/{}/amq.direct", api.url(), vhost.name),
            &[("Authorization", &basic_auth(&user.name, password))],
            None,
        )
        .map(|r| r.status)
    };
    assert_eq!(as_user(&initial), Ok(200), "precondition");
    assert_eq!(vhost.admin("DELETE", &format!("/api/vhosts/{}", vhost.name), None), 204);
    assert_eq!(
        as_user(&initial),
        Ok(404),
        "the login request now fails for another reason"
    );
    assert_eq!(
        as_user("not-the-password"),
        Ok(401),
        "RabbitMQ checks the password first"
    );

    let r = rekey(d, &env, &["rotate", "broker"], "");
    let current = stored(rekey(d, &env, &["get", "broker", "--field", "password"], ""));
    assert_applied_promoted(
        &r,
        "404",
        &initial,
        &current,
        |p| api.login_status(&user.name, p) == Ok(200),
        |p| api.login_status(&user.name, p) == Ok(401),
    );
}

/// The `exec` target with `single`: the example plugin (examples/plugins/rabbitmq-user,
/// rabbitmqctl against the machine's RabbitMQ) behind a wrapper written here whose
/// `login`, once the password is accepted, runs a post-login check that answers
/// `unreachable` when a marker file exists (created after import). A refused password
/// stays the plugin's `rejected`. Preflight asks the plugin's `preflight`, never `login`.
#[test]
fn exec_single_login_failing_after_apply_never_leaves_a_dead_current() {
    let api = RabbitMq::management().expect("RabbitMQ management API");
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let initial = random_password();
    let user = api.create_user(&unique("rk_aa_exec"), &initial).unwrap();
    let marker = d.join("check-fails");
    let plugin = d.join("checked-rabbitmq-user");
    std::fs::write(
        &plugin,
        format!(
            r#"#!/usr/bin/env python3
# Test plugin: examples/plugins/rabbitmq-user, plus a check after a successful login
# that fails (kind unreachable) while settings.marker exists.
import json, os, subprocess, sys
raw = sys.stdin.read()
request = json.loads(raw)
done = subprocess.run([{example:?}], input=raw, capture_output=True, text=True)
sys.stderr.write(done.stderr)
answer = done.stdout
if request.get("operation") == "login" and json.loads(answer).get("ok") \
        and os.path.exists(request["settings"]["marker"]):
    answer = json.dumps({{"protocol": 1, "ok": False, "error": {{"kind": "unreachable",
        "message": "post-login check: the broker's health endpoint is down"}}}})
sys.stdout.write(answer)
"#,
            example = concat!(env!("CARGO_MANIFEST_DIR"), "/examples/plugins/rabbitmq-user")
        ),
    )
    .unwrap();
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&plugin, std::fs::Permissions::from_mode(0o755)).unwrap();
    }
    std::fs::write(
        d.join("rekey.toml"),
        format!(
            "[defaults]\naudit_log = \"audit.jsonl\"\n[stores.local]\ntype = \"file\"\npath = \"secrets.json\"\n\
             [[credentials]]\nname = \"broker\"\nstore = \"local\"\nkey = \"broker\"\nstrategy = \"single\"\n\
             target = {{ type = \"exec\", command = [{plugin:?}], timeout_secs = 60, \
             settings = {{ user = \"{user}\", marker = {marker:?} }} }}\n",
            plugin = plugin.display().to_string(),
            user = user.name,
            marker = marker.display().to_string()
        ),
    )
    .unwrap();
    rekey(d, &[], &["import", "broker"], &initial).assert_code(0);
    assert_eq!(api.login_status(&user.name, &initial), Ok(200), "precondition");
    std::fs::write(&marker, "").unwrap();

    let r = rekey(d, &[], &["rotate", "broker"], "");
    let current = stored(rekey(d, &[], &["get", "broker", "--field", "password"], ""));
    assert_applied_promoted(
        &r,
        "health endpoint is down",
        &initial,
        &current,
        |p| api.login_status(&user.name, p) == Ok(200),
        |p| api.login_status(&user.name, p) == Ok(401),
    );
}

/// Issue 12's invariant after a `single` rotation `r` whose verify failed after apply
/// for a reason other than the password: exit 1 naming `reason`, the `initial` password
/// refused by the real server (`refuses`), and the store's current (`current`, read
/// after the run) the applied one, which the server accepts (`accepts`).
fn assert_applied_promoted(
    r: &Run,
    reason: &str,
    initial: &str,
    current: &str,
    accepts: impl Fn(&str) -> bool,
    refuses: impl Fn(&str) -> bool,
) {
    r.assert_code(1);
    let all = format!("{}{}", r.stdout, r.stderr);
    assert!(all.contains(reason), "the reason is reported: {all}");
    assert!(refuses(initial), "apply replaced the old password");
    assert_ne!(current, initial, "the applied password was promoted: {all}");
    assert!(accepts(current), "the stored current logs in");
}

/// The password `rekey get ... --field password` printed.
fn stored(get: Run) -> String {
    get.assert_code(0);
    get.stdout.trim_end_matches('\n').to_owned()
}

/// A RabbitMQ vhost created for a test (through the management API as its admin),
/// deleted at the end.
struct Vhost {
    api: RabbitMq,
    name: String,
}

impl Vhost {
    fn create(api: &RabbitMq, name: &str) -> Vhost {
        let vhost = Vhost {
            api: api.clone(),
            name: name.to_owned(),
        };
        let status = vhost.admin("PUT", &format!("/api/vhosts/{name}"), None);
        assert!(matches!(status, 201 | 204), "creating vhost {name}: HTTP {status}");
        vhost
    }

    /// A management request as the admin; its status.
    fn admin(&self, method: &str, path: &str, body: Option<&str>) -> u16 {
        let (user, password) = self.api.admin();
        request(
            method,
            &format!("{}{path}", self.api.url()),
            &[
                ("Authorization", &basic_auth(user, password)),
                ("Content-Type", "application/json"),
            ],
            body,
        )
        .unwrap_or_else(|e| panic!("RabbitMQ {method} {path}: {e}"))
        .status
    }
}

impl Drop for Vhost {
    fn drop(&mut self) {
        let _ = self.admin("DELETE", &format!("/api/vhosts/{}", self.name), None);
    }
}

/// A network fault between rekey and a server, not a fake server: a TCP relay to
/// `host:port` that forwards every connection, except that the next [`Self::cut_next`]
/// ones are cut right after the server's first reply line (for Redis, its answer to
/// `AUTH`).
struct CuttingRelay {
    port: u16,
    to_cut: Arc<AtomicUsize>,
    was_cut: Arc<AtomicUsize>,
}

impl CuttingRelay {
    fn start(host: &str, port: u16) -> CuttingRelay {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let relay = CuttingRelay {
            port: listener.local_addr().unwrap().port(),
            to_cut: Arc::new(AtomicUsize::new(0)),
            was_cut: Arc::new(AtomicUsize::new(0)),
        };
        let upstream = format!("{host}:{port}");
        let (to_cut, was_cut) = (relay.to_cut.clone(), relay.was_cut.clone());
        // Lives as long as the test process (a blocked accept holds nothing else).
        std::thread::spawn(move || {
            for client in listener.incoming().flatten() {
                let cut = to_cut.fetch_update(SeqCst, SeqCst, |n| n.checked_sub(1)).is_ok();
                let (upstream, was_cut) = (upstream.clone(), was_cut.clone());
                std::thread::spawn(move || {
                    if let Ok(server) = TcpStream::connect(&upstream) {
                        relay_one(client, server, cut.then_some(&*was_cut));
                    }
                });
            }
        });
        relay
    }

    /// Cuts the next `n` connections.
    fn cut_next(&self, n: usize) {
        self.to_cut.store(n, SeqCst);
    }

    /// How many connections were cut.
    fn cut(&self) -> usize {
        self.was_cut.load(SeqCst)
    }
}

/// Forwards both ways; with `cut`, closes both sides once the server's first line is
/// through, and counts it.
fn relay_one(client: TcpStream, server: TcpStream, cut: Option<&AtomicUsize>) {
    let (Ok(mut from_client), Ok(mut to_server)) = (client.try_clone(), server.try_clone()) else {
        return;
    };
    std::thread::spawn(move || {
        let _ = std::io::copy(&mut from_client, &mut to_server);
        let _ = to_server.shutdown(Shutdown::Write);
    });
    let (mut from_server, mut to_client) = (server, client);
    match cut {
        None => {
            let _ = std::io::copy(&mut from_server, &mut to_client);
            let _ = to_client.shutdown(Shutdown::Write);
        }
        Some(was_cut) => {
            let mut line = Vec::new();
            let mut byte = [0u8; 1];
            while !line.ends_with(b"\r\n") {
                match from_server.read(&mut byte) {
                    Ok(1) => line.push(byte[0]),
                    _ => break,
                }
            }
            let _ = to_client.write_all(&line);
            let _ = to_client.shutdown(Shutdown::Both);
            let _ = from_server.shutdown(Shutdown::Both);
            was_cut.fetch_add(1, SeqCst);
        }
    }
}
