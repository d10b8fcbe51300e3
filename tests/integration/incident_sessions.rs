//! Incident mode with an admin that may change the password but not end the sessions
//! using it: the leaked secret is still replaced, promoted and proved dead; the run
//! exits 1 naming the sessions it could not end; the current secret works; once the
//! privilege is granted, a rerun of `rotate --leaked` ends the sessions without rotating
//! again. PostgreSQL (a throwaway cluster, SCRAM enforced) with a `CREATEROLE` admin
//! lacking `pg_signal_backend`, and Redis `dual` with an ACL admin lacking `+client|kill`.

use crate::redis::redis;
use crate::util::{random_password, run, unique, Run, Workspace, ADMIN_ENV};
use rekey_api::{ErrorKind, SecretDoc, Strategy, Target};
use rekey_testbed::{quote_ident, quote_literal, PgCluster};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A role created for the test (an admin), dropped with its sessions at the end.
struct AdminRole {
    pg: &'static PgCluster,
    name: String,
    password: String,
}

impl AdminRole {
    /// A `CREATEROLE` role that may change `role`'s password but has no
    /// `pg_signal_backend` (on PostgreSQL 16+ `CREATEROLE` also needs `ADMIN OPTION` on
    /// the role, given without its privileges).
    fn createrole_for(pg: &'static PgCluster, role: &str) -> AdminRole {
        let name = unique("rk_is_admin");
        let password = random_password();
        pg.create_role_with(&name, &password, "CREATEROLE");
        if pg.server_version_num() >= 160000 {
            pg.psql(&format!(
                "GRANT {} TO {} WITH ADMIN OPTION, INHERIT FALSE, SET FALSE",
                quote_ident(role),
                quote_ident(&name)
            ));
        }
        AdminRole { pg, name, password }
    }

    fn url(&self) -> String {
        format!(
            "postgres://{}:{}@127.0.0.1:{}/postgres",
            self.name,
            self.password,
            self.pg.port()
        )
    }
}

impl Drop for AdminRole {
    fn drop(&mut self) {
        let _ = self.pg.try_psql(&format!(
            "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity WHERE usename = {};\nDROP ROLE IF EXISTS {};",
            quote_literal(&self.name),
            quote_ident(&self.name)
        ));
    }
}

/// `rekey ARGS` in the workspace with `admin_url` as the admin connection string (from
/// the environment, never argv).
fn rekey_as(ws: &Workspace, admin_url: &str, args: &[&str]) -> Run {
    let mut cmd = ws.command();
    cmd.env(ADMIN_ENV, admin_url).args(args);
    run(cmd, "")
}

/// An application session logged in as `role` with `password`, idling in a long query
/// (psql; the password through the environment).
fn open_session(pg: &PgCluster, role: &str, password: &str) -> Child {
    let child = Command::new("psql")
        .args([
            "-h",
            "127.0.0.1",
            "-p",
            &pg.port().to_string(),
            "-d",
            "postgres",
            "-U",
            role,
            "-w",
            "-Atc",
            "SELECT pg_sleep(300)",
        ])
        .env("PGPASSWORD", password)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("psql");
    let deadline = Instant::now() + Duration::from_secs(20);
    while backends(pg, role) == 0 {
        assert!(Instant::now() < deadline, "the session never appeared");
        std::thread::sleep(Duration::from_millis(50));
    }
    child
}

/// How many backends `role` has.
fn backends(pg: &PgCluster, role: &str) -> u32 {
    pg.psql(&format!(
        "SELECT count(*) FROM pg_stat_activity WHERE usename = {}",
        quote_literal(role)
    ))
    .parse()
    .unwrap()
}

/// Whether `child` exits within 20 s.
fn exits(child: &mut Child) -> bool {
    let deadline = Instant::now() + Duration::from_secs(20);
    while Instant::now() < deadline {
        if child.try_wait().unwrap().is_some() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    false
}

/// A fresh login as `role` with `password` through rekey-postgres (tokio-postgres, real
/// SCRAM): `Ok` or the error, whose message carries the SQLSTATE.
fn pg_login(pg: &PgCluster, role: &str, password: &str) -> Result<(), rekey_api::ProviderError> {
    let mut config = rekey_postgres::PostgresTargetConfig::new(pg.host(), role);
    config.port = pg.port();
    config.sslmode = rekey_postgres::SslMode::Disable;
    let target = rekey_postgres::PostgresProvider::new()
        .postgres_target(&config, Strategy::Single)
        .expect("target");
    let mut doc = SecretDoc::new();
    doc.set("username", role);
    doc.set_password(&rekey_api::Secret::new(password.to_owned()));
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
        .block_on(target.login(&doc))
}

#[test]
fn rotate_leaked_without_pg_signal_backend_then_rerun_after_grant() {
    let mut ws = Workspace::new();
    let pg = ws.pg;
    let (role, leaked) = ws.role("rk_is_app");
    let admin = AdminRole::createrole_for(pg, &role);
    ws.write_config(&[ws.credential("app-db", &role)]);
    ws.import("app-db", &leaked);
    assert!(
        !ws.can_login(&role, "not-the-password"),
        "the cluster really checks passwords"
    );

    let mut session = open_session(pg, &role, &leaked);
    let first = rekey_as(&ws, &admin.url(), &["rotate", "--leaked", "app-db"]);
    first.assert_code(1);
    let stderr = first.stderr.to_lowercase();
    assert!(
        stderr.contains("sessions") && stderr.contains("not ended"),
        "stderr must say the sessions were not ended:\n{}",
        first.stderr
    );
    assert!(
        first.stderr.contains("GRANT pg_signal_backend TO"),
        "and how to fix it:\n{}",
        first.stderr
    );
    for secret in [&leaked, &admin.password] {
        assert!(
            !first.stdout.contains(secret.as_str()) && !first.stderr.contains(secret.as_str()),
            "a secret in rekey's output"
        );
    }

    // The store's current secret works; the leaked one is refused by SCRAM (28P01).
    let current = ws.stored_password("app-db", "current");
    assert_ne!(current, leaked);
    assert!(ws.can_login(&role, &current), "the current secret logs in");
    pg_login(pg, &role, &current).expect("the current secret logs in (tokio-postgres)");
    let refused = pg_login(pg, &role, &leaked).unwrap_err();
    assert_eq!(refused.kind(), ErrorKind::AuthRejected, "{refused}");
    assert!(refused.message().contains("28P01"), "{refused}");
    // ... while the session opened with it is still there.
    assert!(session.try_wait().unwrap().is_none(), "the session is still open");
    assert!(backends(pg, &role) >= 1);

    pg.psql(&format!("GRANT pg_signal_backend TO {}", quote_ident(&admin.name)));
    let second = rekey_as(&ws, &admin.url(), &["rotate", "--leaked", "app-db"]);
    second.assert_code(0);
    assert!(exits(&mut session), "the rerun ended the session");
    let deadline = Instant::now() + Duration::from_secs(10);
    while backends(pg, &role) != 0 {
        assert!(Instant::now() < deadline, "a backend of the role lingers");
        std::thread::sleep(Duration::from_millis(50));
    }
    assert_eq!(
        ws.stored_password("app-db", "current"),
        current,
        "the rerun did not rotate again"
    );
    assert!(ws.can_login(&role, &current));
    assert!(!ws.can_login(&role, &leaked));
}

#[test]
fn plan_leaked_says_sessions_will_not_be_ended() {
    let mut ws = Workspace::new();
    let pg = ws.pg;
    let (role, password) = ws.role("rk_is_plan");
    let admin = AdminRole::createrole_for(pg, &role);
    ws.write_config(&[ws.credential("app-db", &role)]);
    ws.import("app-db", &password);
    let verifier = ws.verifier(&role);

    let r = rekey_as(&ws, &admin.url(), &["plan", "--leaked", "app-db"]);
    r.assert_code(0);
    let out = format!("{}\n{}", r.stdout, r.stderr);
    assert!(
        out.contains("sessions will NOT be ended"),
        "plan --leaked must say the sessions will not be ended:\n{out}"
    );
    assert!(out.contains("GRANT pg_signal_backend TO"), "{out}");
    assert!(!out.contains(&password) && !out.contains(&admin.password));
    // Read-only.
    assert_eq!(ws.verifier(&role), verifier);

    // With the privilege the warning is gone.
    pg.psql(&format!("GRANT pg_signal_backend TO {}", quote_ident(&admin.name)));
    let r = rekey_as(&ws, &admin.url(), &["plan", "--leaked", "app-db"]);
    r.assert_code(0);
    let out = format!("{}\n{}", r.stdout, r.stderr);
    assert!(!out.contains("will NOT be ended"), "{out}");
    assert!(out.contains("pg_signal_backend"), "{out}");
}

// Redis `dual`: an ACL admin without `+client|kill`.

const REDIS_ADMIN_ENV: &str = "REKEY_TEST_REDIS_ADMIN_URL";

/// An ACL user with a random password (installed by hash), deleted at the end.
struct RedisUser {
    name: String,
    password: String,
}

impl RedisUser {
    fn new(prefix: &str, rules: &[&str]) -> RedisUser {
        let name = unique(prefix);
        let password = random_password();
        let hash = format!(
            "#{}",
            rekey_redis::acl_password_hash(&rekey_api::Secret::new(password.clone()))
        );
        let mut args = vec!["ACL", "SETUSER", &name, "reset", "on", &hash];
        args.extend_from_slice(rules);
        redis().cmd(&args);
        RedisUser { name, password }
    }
}

impl Drop for RedisUser {
    fn drop(&mut self) {
        let _ = redis().try_cmd(&["ACL", "DELUSER", &self.name]);
    }
}

/// `rekey ARGS` with `admin` as the Redis admin URL (from the environment, never argv).
fn redis_rekey(dir: &std::path::Path, admin: &RedisUser, args: &[&str]) -> Run {
    redis_rekey_stdin(dir, admin, args, "")
}

fn redis_rekey_stdin(dir: &std::path::Path, admin: &RedisUser, args: &[&str], stdin: &str) -> Run {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_rekey"));
    cmd.current_dir(dir)
        .env_remove("REKEY_CONFIG")
        .env_remove("RUST_LOG")
        .env("NO_COLOR", "1")
        .env(
            REDIS_ADMIN_ENV,
            format!("redis://{}:{}@127.0.0.1:{}", admin.name, admin.password, redis().port()),
        )
        .arg("-c")
        .arg(dir.join("rekey.toml"))
        .args(args);
    run(cmd, stdin)
}

#[test]
fn redis_dual_rotate_leaked_without_client_kill_then_rerun() {
    let dir = tempfile::tempdir().unwrap();
    let user = RedisUser::new("rk_is_cache", &["~*", "&*", "+@all"]);
    let admin = RedisUser::new("rk_is_nokill", &["~*", "&*", "+@all", "-client|kill"]);
    assert!(
        !redis().can_login(&user.name, "not-the-password"),
        "the server really checks passwords"
    );
    std::fs::write(
        dir.path().join("rekey.toml"),
        format!(
            "[defaults]\naudit_log = \"audit.jsonl\"\n[stores.local]\ntype = \"file\"\npath = \"secrets.json\"\n\
             [[credentials]]\nname = \"cache\"\nstore = \"local\"\nkey = \"cache\"\nstrategy = \"dual\"\n\
             target = {{ type = \"redis\", host = \"127.0.0.1\", port = {}, username = \"{}\", \
             admin = \"${{{REDIS_ADMIN_ENV}}}\" }}\n",
            redis().port(),
            user.name
        ),
    )
    .unwrap();
    redis_rekey_stdin(dir.path(), &admin, &["import", "cache"], &user.password).assert_code(0);

    let plan = redis_rekey(dir.path(), &admin, &["plan", "--leaked", "cache"]);
    plan.assert_code(0);
    let out = format!("{}\n{}", plan.stdout, plan.stderr);
    assert!(out.contains("will NOT be ended"), "{out}");
    assert!(out.contains("+client|kill"), "{out}");

    let mut session = redis()
        .login(&user.name, &user.password)
        .expect("the leaked password logs in");
    let first = redis_rekey(dir.path(), &admin, &["rotate", "--leaked", "cache"]);
    first.assert_code(1);
    let stderr = first.stderr.to_lowercase();
    assert!(
        stderr.contains("not end") || stderr.contains("not ended"),
        "stderr must say the connections were not ended:\n{}",
        first.stderr
    );
    assert!(first.stderr.contains("+client|kill"), "{}", first.stderr);
    for secret in [&user.password, &admin.password] {
        assert!(!first.stdout.contains(secret.as_str()) && !first.stderr.contains(secret.as_str()));
    }
    let get = |stage: &str| {
        let r = redis_rekey(
            dir.path(),
            &admin,
            &["get", "cache", "--stage", stage, "--field", "password"],
        );
        r.assert_code(0);
        r.stdout.trim_end_matches('\n').to_owned()
    };
    let current = get("current");
    assert_ne!(current, user.password);
    redis().login(&user.name, &current).expect("the current secret logs in");
    let Err(refused) = redis().login(&user.name, &user.password) else {
        panic!("the leaked one is refused");
    };
    assert!(refused.message().contains("WRONGPASS"), "{refused}");
    assert!(
        session.alive(),
        "the connection opened with the leaked password is still open"
    );

    redis().cmd(&["ACL", "SETUSER", &admin.name, "+client|kill"]);
    let second = redis_rekey(dir.path(), &admin, &["rotate", "--leaked", "cache"]);
    second.assert_code(0);
    assert!(!session.alive(), "the rerun ended the connection");
    assert_eq!(get("current"), current, "the rerun did not rotate again");
    redis()
        .login(&user.name, &current)
        .expect("the current secret still logs in");
}
