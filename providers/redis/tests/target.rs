//! The Redis target against a real Redis server with ACL authentication enforced (the
//! machine's on 127.0.0.1:6379, or a throwaway one): the conformance suite for both
//! strategies, with and without an admin, error kinds, session termination, the shared
//! admin connection and zero downtime under `dual`.

mod common;

use common::*;
use rekey_api::conformance::{random_password, target::run_all, unique_name};
use rekey_api::{ErrorKind, RevokeOptions, SecretDoc, Strategy, Target};
use rekey_redis::{acl_password_hash, RedisProvider};
use rekey_testbed::RedisServer;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// A server and the users of one conformance test, deleted when the test ends (an owned
/// counterpart of `TestUser`, which borrows its server).
struct Fixture {
    server: RedisServer,
    provider: RedisProvider,
    users: Vec<String>,
}

impl Fixture {
    fn new() -> Self {
        Fixture {
            server: RedisServer::machine(),
            provider: RedisProvider::new(),
            users: Vec::new(),
        }
    }

    /// A user with `on ~* &* +@all` and a random password: (name, password).
    fn user(&mut self, prefix: &str) -> (String, rekey_api::Secret) {
        let name = unique_name(prefix);
        let password = random_password(24);
        let hash = format!("#{}", acl_password_hash(&password));
        self.server
            .cmd(&["ACL", "SETUSER", &name, "reset", "on", &hash, "~*", "&*", "+@all"]);
        self.users.push(name.clone());
        (name, password)
    }

    /// A conformance fixture: the app user's target with `strategy`, administered by a
    /// second user when `admin`, and the app user's document.
    fn conformance(strategy: Strategy, admin: bool) -> (Fixture, rekey_redis::RedisTarget, SecretDoc) {
        let mut f = Fixture::new();
        let port = f.server.port();
        let admin = admin.then(|| {
            let (name, password) = f.user("rk_admin");
            rekey_api::RedactedDsn::new(format!("redis://{name}:{}@127.0.0.1:{port}", password.expose()))
        });
        let has_admin = admin.is_some();
        let (user, password) = f.user(if has_admin { "rk_app" } else { "rk_self" });
        let t = target(&f.provider, &config(port, &user, admin), strategy);
        assert_eq!(t.has_admin(), has_admin);
        assert_eq!(
            t.capabilities().apply_invalidates_previous,
            strategy == Strategy::Single
        );
        (f, t, doc(&user, &password))
    }

    /// After a rule: exactly one password is left, the returned one, stored by hash; the
    /// provider opened at most `admin` admin connections.
    fn check(&self, after: &SecretDoc, admin: u64) {
        let user = after.username().expect("the document names its user");
        assert_eq!(
            self.server.passwords(user).expect("the user exists"),
            vec![acl_password_hash(&after.password().unwrap())]
        );
        assert!(self.provider.admin_connections_opened() <= admin);
    }
}

impl Drop for Fixture {
    fn drop(&mut self) {
        // ACL DELUSER also closes the user's connections.
        for user in &self.users {
            let _ = self.server.try_cmd(&["ACL", "DELUSER", user]);
        }
    }
}

mod conformance_dual_with_admin {
    use super::*;

    rekey_api::target_conformance_tests! {
        setup = async { Fixture::conformance(Strategy::Dual, true) },
        check = |f: &Fixture, _: &rekey_redis::RedisTarget, _: &SecretDoc, after: &SecretDoc| f.check(after, 1),
        skip = [alternating_uses_the_idle_user => "Redis targets rotate one user (single or dual), never alternating"],
    }
}

mod conformance_single_with_admin {
    use super::*;

    rekey_api::target_conformance_tests! {
        setup = async { Fixture::conformance(Strategy::Single, true) },
        check = |f: &Fixture, _: &rekey_redis::RedisTarget, _: &SecretDoc, after: &SecretDoc| f.check(after, 1),
        skip = [
            dual_holds_both_until_revoke => "single: apply leaves only the new password (apply_invalidates_previous)",
            alternating_uses_the_idle_user => "Redis targets rotate one user (single or dual), never alternating",
        ],
    }
}

mod conformance_dual_without_admin {
    use super::*;

    rekey_api::target_conformance_tests! {
        setup = async { Fixture::conformance(Strategy::Dual, false) },
        check = |f: &Fixture, _: &rekey_redis::RedisTarget, _: &SecretDoc, after: &SecretDoc| f.check(after, 0),
        skip = [alternating_uses_the_idle_user => "Redis targets rotate one user (single or dual), never alternating"],
    }
}

mod conformance_single_without_admin {
    use super::*;

    rekey_api::target_conformance_tests! {
        setup = async { Fixture::conformance(Strategy::Single, false) },
        check = |f: &Fixture, _: &rekey_redis::RedisTarget, _: &SecretDoc, after: &SecretDoc| f.check(after, 0),
        skip = [
            dual_holds_both_until_revoke => "single: apply leaves only the new password (apply_invalidates_previous)",
            alternating_uses_the_idle_user => "Redis targets rotate one user (single or dual), never alternating",
        ],
    }
}

#[tokio::test]
async fn single_apply_leaves_only_the_new_password() {
    let server = RedisServer::machine();
    let admin = TestUser::admin(&server);
    let provider = RedisProvider::new();

    // A user with two passwords.
    let user = TestUser::app(&server, "rk_two");
    let second = random_password(24);
    server.cmd(&[
        "ACL",
        "SETUSER",
        &user.name,
        &format!("#{}", acl_password_hash(&second)),
    ]);
    assert_eq!(user.passwords().len(), 2);
    let t = target(
        &provider,
        &config(server.port(), &user.name, Some(admin.url(server.port()))),
        Strategy::Single,
    );
    let new = t.prepare(Some(&user.doc()), random_password(32)).await.unwrap();
    t.apply(&new, Some(&user.doc())).await.unwrap();
    assert_eq!(user.passwords(), vec![acl_password_hash(&new.password().unwrap())]);
    t.verify(&new).await.unwrap();
    for old in [user.doc(), doc(&user.name, &second)] {
        assert_eq!(t.login(&old).await.unwrap_err().kind(), ErrorKind::AuthRejected);
    }

    // A nopass user, with `clear_nopass = true` (without it: tests/rules.rs): after apply,
    // a wrong password is refused (resetpass clears nopass).
    let open = TestUser::new(&server, "rk_nopass", &["nopass", "~*", "+@all"]);
    let mut allowed = config(server.port(), &open.name, Some(admin.url(server.port())));
    allowed.clear_nopass = true;
    let t = target(&provider, &allowed, Strategy::Single);
    let wrong = doc(&open.name, &random_password(20));
    t.login(&wrong).await.expect("nopass accepts any password");
    let lines = t.preflight(None).await.unwrap();
    assert!(lines.iter().any(|l| l.contains("nopass")), "{lines:?}");
    let new = t.prepare(Some(&open.doc()), random_password(32)).await.unwrap();
    t.apply(&new, None).await.unwrap();
    t.verify(&new).await.unwrap();
    assert_eq!(t.login(&wrong).await.unwrap_err().kind(), ErrorKind::AuthRejected);
    assert_eq!(open.passwords(), vec![acl_password_hash(&new.password().unwrap())]);
}

#[tokio::test]
async fn wrong_password_is_auth_rejected_and_whoami_matters() {
    let server = RedisServer::machine();
    let user = TestUser::app(&server, "rk_wrong");
    let t = target(
        &RedisProvider::new(),
        &config(server.port(), &user.name, None),
        Strategy::Dual,
    );
    t.login(&user.doc()).await.expect("the right password logs in");
    let wrong = random_password(24);
    let err = t.login(&doc(&user.name, &wrong)).await.unwrap_err();
    assert_error(
        &err,
        ErrorKind::AuthRejected,
        &[&user.name, &format!("127.0.0.1:{}", server.port()), "WRONGPASS"],
        &[&wrong, &user.password],
    );
    assert!(!err.is_retryable());

    // Control: a client that ignores the refused AUTH goes on as `default` on this
    // server, so a login "proved" by any command but a checked AUTH would pass.
    let mut raw = connect_sync(server.port()).unwrap();
    let auth: redis::RedisResult<()> = redis::cmd("AUTH").arg(&user.name).arg(wrong.expose()).query(&mut raw);
    assert_eq!(auth.unwrap_err().code(), Some("WRONGPASS"));
    let who: String = redis::cmd("ACL").arg("WHOAMI").query(&mut raw).unwrap();
    assert_eq!(
        who, "default",
        "after a refused AUTH the connection is the default user"
    );
    let pong: String = redis::cmd("PING").query(&mut raw).unwrap();
    assert_eq!(pong, "PONG", "PING would have 'proved' the wrong password");
}

#[tokio::test]
async fn restricted_user_logs_in_without_acl_whoami() {
    // An application user that may only GET: ACL WHOAMI is NOPERM for it, yet its login
    // is proven by the AUTH reply.
    let server = RedisServer::machine();
    let admin = TestUser::admin(&server);
    let user = TestUser::new(&server, "rk_getonly", &["~app:*", "+get"]);
    let mut raw = redis::Client::open(format!(
        "redis://{}:{}@127.0.0.1:{}",
        user.name,
        user.password.expose(),
        server.port()
    ))
    .unwrap()
    .get_connection()
    .unwrap();
    let whoami: redis::RedisResult<String> = redis::cmd("ACL").arg("WHOAMI").query(&mut raw);
    assert_eq!(whoami.unwrap_err().code(), Some("NOPERM"));
    drop(raw);

    let t = target(
        &RedisProvider::new(),
        &config(server.port(), &user.name, Some(admin.url(server.port()))),
        Strategy::Dual,
    );
    let end = run_all(&t, user.doc()).await;
    t.login(&end).await.unwrap();
    assert_eq!(
        t.login(&doc(&user.name, &random_password(20)))
            .await
            .unwrap_err()
            .kind(),
        ErrorKind::AuthRejected
    );
}

#[tokio::test]
async fn odd_user_names() {
    let server = RedisServer::machine();
    let admin = TestUser::admin(&server);
    // Quotes, a semicolon and non-ASCII: Redis accepts them as one argument.
    let user = TestUser::app(&server, "q\"';ü日");
    let provider = RedisProvider::new();
    for strategy in [Strategy::Dual, Strategy::Single] {
        let t = target(
            &provider,
            &config(server.port(), &user.name, Some(admin.url(server.port()))),
            strategy,
        );
        t.preflight(Some(&user.doc())).await.unwrap();
        let end = run_all(&t, user.doc()).await;
        // Back to the fixture's password for the next round.
        let back = user.doc();
        t.apply(&back, Some(&end)).await.unwrap();
        t.revoke(&end, &back, RevokeOptions::default()).await.unwrap();
        t.login(&back).await.unwrap();
        assert!(t.describe().contains(&format!("{:?}", user.name)), "{}", t.describe());
    }
    // Names Redis cannot hold are refused before anything is sent.
    for bad in ["has space", "tab\there", "nul\0", ""] {
        let err = provider
            .redis_target(&config(server.port(), bad, None), Strategy::Dual)
            .unwrap_err();
        assert_eq!(err.kind(), ErrorKind::InvalidInput, "{bad:?}: {err}");
    }
}

#[tokio::test]
async fn missing_user_is_not_found_and_not_created() {
    let server = RedisServer::machine();
    let admin = TestUser::admin(&server);
    let name = unique_name("rk_ghost");
    let t = target(
        &RedisProvider::new(),
        &config(server.port(), &name, Some(admin.url(server.port()))),
        Strategy::Dual,
    );
    let err = t.preflight(None).await.unwrap_err();
    assert_error(
        &err,
        ErrorKind::NotFound,
        &[&format!(
            "user \"{name}\" does not exist on 127.0.0.1:{}",
            server.port()
        )],
        &[&admin.password],
    );
    let new = t.prepare(None, random_password(32)).await.unwrap();
    let err = t.apply(&new, None).await.unwrap_err();
    assert_error(&err, ErrorKind::NotFound, &[&name], &[&new.password().unwrap()]);
    // ACL SETUSER would have created it: it must not exist.
    assert_eq!(server.passwords(&name), None, "apply created the missing user");
    let err = t.revoke(&new, &new, RevokeOptions::default()).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::NotFound);
    assert_eq!(server.passwords(&name), None);
}

#[tokio::test]
async fn admin_without_acl_permission_is_permission_denied() {
    let server = RedisServer::machine();
    let user = TestUser::app(&server, "rk_guarded");
    let before = user.passwords();
    let provider = RedisProvider::new();

    // Read-only admin: no ACL command at all.
    let reader = TestUser::new(&server, "rk_reader", &["~*", "+@read"]);
    // May look (GETUSER, DRYRUN) but not touch (SETUSER).
    let looker = TestUser::new(
        &server,
        "rk_looker",
        &[
            "~*",
            "+acl|getuser",
            "+acl|dryrun",
            "+acl|whoami",
            "+config|get",
            "+info",
        ],
    );
    for (weak, needle) in [(&reader, "NOPERM"), (&looker, "acl|setuser")] {
        for strategy in [Strategy::Dual, Strategy::Single] {
            let t = target(
                &provider,
                &config(server.port(), &user.name, Some(weak.url(server.port()))),
                strategy,
            );
            let err = t.preflight(Some(&user.doc())).await.unwrap_err();
            assert_error(
                &err,
                ErrorKind::PermissionDenied,
                &[&format!("admin \"{}\"", weak.name), needle],
                &[&weak.password],
            );
            let new = t.prepare(Some(&user.doc()), random_password(32)).await.unwrap();
            let err = t.apply(&new, Some(&user.doc())).await.unwrap_err();
            assert_error(
                &err,
                ErrorKind::PermissionDenied,
                &["NOPERM"],
                &[&weak.password, &new.password().unwrap()],
            );
            // Nothing changed.
            assert_eq!(user.passwords(), before);
            t.login(&user.doc()).await.expect("the old password still works");
            assert_eq!(t.login(&new).await.unwrap_err().kind(), ErrorKind::AuthRejected);
        }
    }
}

#[tokio::test]
async fn closed_port_is_unreachable() {
    let port = rekey_testbed::free_port().expect("a free port");
    let mut c = config(
        port,
        "nobody",
        Some(rekey_api::RedactedDsn::new(format!(
            "redis://ops:s3cret-admin@127.0.0.1:{port}"
        ))),
    );
    c.connect_timeout_secs = 2;
    let t = target(&RedisProvider::new(), &c, Strategy::Dual);
    let pw = random_password(20);
    let err = t.login(&doc("nobody", &pw)).await.unwrap_err();
    assert_error(&err, ErrorKind::Unreachable, &[&format!("127.0.0.1:{port}")], &[&pw]);
    assert!(err.is_retryable());
    let err = t.preflight(None).await.unwrap_err();
    assert_error(
        &err,
        ErrorKind::Unreachable,
        &[&format!("127.0.0.1:{port}"), "admin \"ops\""],
        &[],
    );
    assert!(!err.to_string().contains("s3cret-admin"));
    let new = t.prepare(None, pw.clone()).await.unwrap();
    let err = t.apply(&new, None).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Unreachable);
    assert!(!err.to_string().contains("s3cret-admin"));
}

#[tokio::test]
async fn tls_against_a_plain_server_is_a_clear_unreachable() {
    let server = RedisServer::machine();
    let admin = TestUser::admin(&server);
    let user = TestUser::app(&server, "rk_tls");
    let mut c = config(server.port(), &user.name, Some(admin.url(server.port())));
    c.tls = true;
    c.connect_timeout_secs = 3;
    let t = target(&RedisProvider::new(), &c, Strategy::Dual);
    let started = Instant::now();
    let err = t.login(&user.doc()).await.unwrap_err();
    assert_error(
        &err,
        ErrorKind::Unreachable,
        &["TLS handshake failed", &format!("127.0.0.1:{} (TLS)", server.port())],
        &[&user.password],
    );
    assert!(started.elapsed() < Duration::from_secs(5), "{:?}", started.elapsed());
    // The admin URL says redis://, but tls = true: the admin uses TLS too.
    let err = t.preflight(Some(&user.doc())).await.unwrap_err();
    assert_error(
        &err,
        ErrorKind::Unreachable,
        &["TLS handshake failed"],
        &[&admin.password],
    );
}

#[tokio::test]
async fn a_server_that_never_answers_times_out() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let held = tokio::spawn(async move {
        let mut open = Vec::new();
        while let Ok((socket, _)) = listener.accept().await {
            open.push(socket); // accept, never answer
        }
    });
    for tls in [false, true] {
        // An admin that never hears back from its AUTH gives up in time too.
        let mut c = config(
            port,
            "app",
            Some(rekey_api::RedactedDsn::new(format!("redis://ops:pw@127.0.0.1:{port}"))),
        );
        c.connect_timeout_secs = 1;
        c.tls = tls;
        let t = target(&RedisProvider::new(), &c, Strategy::Dual);
        let started = Instant::now();
        let err = t.preflight(None).await.unwrap_err();
        assert_eq!(err.kind(), ErrorKind::Unreachable, "tls={tls}: {err}");
        assert!(err.to_string().contains("admin \"ops\""), "{err}");
        assert!(
            started.elapsed() < Duration::from_secs(4),
            "tls={tls}: {:?}",
            started.elapsed()
        );

        let mut c = config(port, "app", None);
        c.connect_timeout_secs = 1;
        c.tls = tls;
        let t = target(&RedisProvider::new(), &c, Strategy::Dual);
        let started = Instant::now();
        let err = t.login(&doc("app", &random_password(20))).await.unwrap_err();
        assert_eq!(err.kind(), ErrorKind::Unreachable, "tls={tls}: {err}");
        assert!(
            started.elapsed() < Duration::from_secs(4),
            "tls={tls}: {:?}",
            started.elapsed()
        );
    }
    held.abort();
}

#[tokio::test]
async fn one_admin_connection_per_host_and_reconnect() {
    let server = RedisServer::machine();
    let admin = TestUser::admin(&server);
    let a = TestUser::app(&server, "rk_share_a");
    let b = TestUser::app(&server, "rk_share_b");
    let provider = RedisProvider::new();
    let ta = target(
        &provider,
        &config(server.port(), &a.name, Some(admin.url(server.port()))),
        Strategy::Dual,
    );
    let tb = target(
        &provider,
        &config(server.port(), &b.name, Some(admin.url(server.port()))),
        Strategy::Single,
    );

    let (da, db) = (a.doc(), b.doc());
    let (ra, rb) = tokio::join!(ta.preflight(Some(&da)), tb.preflight(Some(&db)));
    ra.unwrap();
    rb.unwrap();
    let id = ta.admin_client_id().await.unwrap().unwrap();
    assert_eq!(tb.admin_client_id().await.unwrap(), Some(id));
    assert_eq!(provider.admin_connections_opened(), 1);
    assert_eq!(server.clients_of(&admin.name).len(), 1);
    assert!(server.clients_of(&admin.name)[0].contains(" name=rekey-admin "));

    // Rotations in parallel pipeline on the one connection.
    let (na, nb) = (
        ta.prepare(Some(&da), random_password(32)).await.unwrap(),
        tb.prepare(Some(&db), random_password(32)).await.unwrap(),
    );
    let (ra, rb) = tokio::join!(ta.apply(&na, Some(&da)), tb.apply(&nb, Some(&db)));
    ra.unwrap();
    rb.unwrap();
    assert_eq!(provider.admin_connections_opened(), 1);

    // The connection is killed: the next step reconnects once and succeeds.
    server.cmd(&["CLIENT", "KILL", "ID", &id.to_string()]);
    ta.revoke(&da, &na, RevokeOptions::default()).await.unwrap();
    assert_eq!(provider.admin_connections_opened(), 2);
    assert_ne!(ta.admin_client_id().await.unwrap(), Some(id));
    assert_eq!(ta.login(&da).await.unwrap_err().kind(), ErrorKind::AuthRejected);
    ta.login(&na).await.unwrap();
    tb.login(&nb).await.unwrap();

    // Another admin URL means another connection.
    let other = TestUser::admin(&server);
    let tc = target(
        &provider,
        &config(server.port(), &a.name, Some(other.url(server.port()))),
        Strategy::Dual,
    );
    assert_ne!(tc.admin_client_id().await.unwrap(), ta.admin_client_id().await.unwrap());
    assert_eq!(provider.admin_connections_opened(), 3);
}

#[tokio::test]
async fn incident_revoke_ends_the_users_connections() {
    let server = RedisServer::machine();
    let admin = TestUser::admin(&server);
    for (strategy, by_config) in [(Strategy::Dual, false), (Strategy::Single, true)] {
        let user = TestUser::app(&server, "rk_leaked");
        let mut c = config(server.port(), &user.name, Some(admin.url(server.port())));
        c.terminate_sessions = by_config;
        let t = target(&RedisProvider::new(), &c, strategy);
        let lines = t.preflight(Some(&user.doc())).await.unwrap();
        if by_config {
            assert!(lines.iter().any(|l| l.contains("will be ended at revoke")), "{lines:?}");
        }

        // Two connections authenticated with the leaked password.
        let url = format!(
            "redis://{}:{}@127.0.0.1:{}",
            user.name,
            user.password.expose(),
            server.port()
        );
        let mut sessions: Vec<redis::Connection> = (0..2)
            .map(|_| redis::Client::open(url.as_str()).unwrap().get_connection().unwrap())
            .collect();
        for s in &mut sessions {
            let _: Option<String> = redis::cmd("GET").arg("rekey-test").query(s).unwrap();
        }

        let old = user.doc();
        let new = t.prepare(Some(&old), random_password(32)).await.unwrap();
        t.apply(&new, Some(&old)).await.unwrap();
        t.verify(&new).await.unwrap();
        server.wait_for_clients(&user.name, 2);
        let options = RevokeOptions {
            terminate_sessions: !by_config,
        };
        let report = t.revoke(&old, &new, options).await.unwrap();
        assert_eq!(report.sessions_terminated, 2, "{strategy}");
        for s in &mut sessions {
            let next: redis::RedisResult<Option<String>> = redis::cmd("GET").arg("rekey-test").query(s);
            assert!(next.is_err(), "{strategy}: a killed connection still answers");
        }
        assert_eq!(t.login(&old).await.unwrap_err().kind(), ErrorKind::AuthRejected);
        t.login(&new).await.unwrap();
        assert!(server.clients_of(&user.name).is_empty());
        // Nothing left to end: revoke again reports 0 and succeeds.
        let report = t.revoke(&old, &new, options).await.unwrap();
        assert_eq!(report.sessions_terminated, 0);
    }
}

#[tokio::test]
async fn revoke_without_the_new_password_in_place_is_refused() {
    let server = RedisServer::machine();
    let admin = TestUser::admin(&server);
    let user = TestUser::app(&server, "rk_guard");
    let t = target(
        &RedisProvider::new(),
        &config(server.port(), &user.name, Some(admin.url(server.port()))),
        Strategy::Dual,
    );
    let new = t.prepare(Some(&user.doc()), random_password(32)).await.unwrap();
    // apply never ran: removing the old password would lock the user out.
    let err = t.revoke(&user.doc(), &new, RevokeOptions::default()).await.unwrap_err();
    assert_error(
        &err,
        ErrorKind::Conflict,
        &["does not hold the new password"],
        &[&user.password],
    );
    assert!(!err.is_retryable());
    t.login(&user.doc()).await.expect("the old password still works");
    // Same password as old and new: nothing is removed.
    t.revoke(&user.doc(), &user.doc(), RevokeOptions::default())
        .await
        .unwrap();
    t.login(&user.doc()).await.unwrap();
}

#[tokio::test]
async fn preflight_reports_what_it_checked() {
    let server = RedisServer::machine();
    let admin = TestUser::admin(&server);
    let user = TestUser::app(&server, "rk_pf");
    let provider = RedisProvider::new();
    let mut c = config(server.port(), &user.name, Some(admin.url(server.port())));
    c.terminate_sessions = true;
    let t = target(&provider, &c, Strategy::Dual);
    let lines = t.preflight(Some(&user.doc())).await.unwrap();
    let text = lines.join("\n");
    for needle in [
        format!("connected to 127.0.0.1:{} as \"{}\" (Redis ", server.port(), admin.name),
        format!(
            "admin \"{}\" on 127.0.0.1:{} may run ACL SETUSER",
            admin.name,
            server.port()
        ),
        format!("user \"{}\" exists, is enabled and holds 1 password(s)", user.name),
        "the current secret is one of the user's passwords".to_owned(),
        "CLIENT KILL USER".to_owned(),
        "strategy dual".to_owned(),
    ] {
        assert!(text.contains(&needle), "missing `{needle}` in:\n{text}");
    }
    assert!(!text.contains(user.password.expose()) && !text.contains(admin.password.expose()));
    assert!(!text.contains(&acl_password_hash(&user.password)));
    // Read-only: nothing changed.
    assert_eq!(user.passwords(), vec![acl_password_hash(&user.password)]);

    // A current secret the server does not hold is reported, not fatal, with an admin.
    let wrong = doc(&user.name, &random_password(20));
    let lines = t.preflight(Some(&wrong)).await.unwrap();
    assert!(lines.iter().any(|l| l.contains("NOT among")), "{lines:?}");

    // Without an admin the current secret must log in.
    let t = target(&provider, &config(server.port(), &user.name, None), Strategy::Single);
    assert_eq!(
        t.preflight(Some(&wrong)).await.unwrap_err().kind(),
        ErrorKind::AuthRejected
    );
    assert_eq!(t.preflight(None).await.unwrap_err().kind(), ErrorKind::InvalidInput);
    let lines = t.preflight(Some(&user.doc())).await.unwrap();
    assert!(lines.iter().any(|l| l.contains("its own passwords")), "{lines:?}");
    assert!(lines.iter().any(|l| l.contains("strategy single")), "{lines:?}");

    // A disabled user cannot use any password.
    server.cmd(&["ACL", "SETUSER", &user.name, "off"]);
    let t = target(
        &provider,
        &config(server.port(), &user.name, Some(admin.url(server.port()))),
        Strategy::Dual,
    );
    let err = t.preflight(Some(&user.doc())).await.unwrap_err();
    assert_error(&err, ErrorKind::PermissionDenied, &["disabled"], &[]);
    // ... and its refused login is auth_rejected (Redis answers WRONGPASS).
    assert_eq!(t.login(&user.doc()).await.unwrap_err().kind(), ErrorKind::AuthRejected);
}

#[tokio::test]
async fn shape_of_the_target() {
    let server = RedisServer::machine();
    let provider = RedisProvider::new();
    let c = config(server.port(), "orders_app", None);
    let err = provider.redis_target(&c, Strategy::Alternating).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Unsupported);
    for strategy in [Strategy::Dual, Strategy::Single] {
        let t = provider.target(&c, strategy).unwrap();
        let caps = t.capabilities();
        assert_eq!(caps.strategies, vec![Strategy::Dual, Strategy::Single]);
        assert_eq!(caps.strategy, strategy);
        assert!(caps.terminate_sessions && !caps.mints_own_secret);
        assert_eq!(caps.apply_invalidates_previous, strategy == Strategy::Single);
        assert_eq!(
            t.describe(),
            format!("redis ACL user \"orders_app\" on 127.0.0.1:{}", server.port())
        );
        let mut d = SecretDoc::new();
        t.complete(&mut d);
        assert_eq!(d.get_str("engine"), Some("redis"));
        assert_eq!(d.get_str("host"), Some("127.0.0.1"));
        assert_eq!(d.get_u64("port"), Some(u64::from(server.port())));
        assert_eq!(d.username(), Some("orders_app"));
        let p = t.prepare(Some(&d), random_password(20)).await.unwrap();
        assert!(p.password().is_some() && p.username() == Some("orders_app"));
        let mut other = d.clone();
        other.set("username", "someone_else");
        assert_eq!(
            t.prepare(Some(&other), random_password(20)).await.unwrap_err().kind(),
            ErrorKind::InvalidInput
        );
    }
    // An admin URL naming the user itself would go stale after the rotation.
    let own = config(
        server.port(),
        "orders_app",
        Some(rekey_api::RedactedDsn::new(format!(
            "redis://orders_app:pw@127.0.0.1:{}",
            server.port()
        ))),
    );
    let err = provider.redis_target(&own, Strategy::Dual).unwrap_err();
    assert_error(&err, ErrorKind::InvalidInput, &["leave `admin` unset"], &[]);
    assert_eq!(
        provider
            .redis_target(&config(server.port(), "a b", None), Strategy::Dual)
            .unwrap_err()
            .kind(),
        ErrorKind::InvalidInput
    );
}

/// Applications log in with whatever the store says is current, in a loop, while a
/// dual rotation runs apply → verify → promote → revoke. No login may fail.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dual_rotation_has_zero_downtime() {
    const WORKERS: usize = 2;
    let server = RedisServer::machine();
    let admin = TestUser::admin(&server);
    let user = TestUser::app(&server, "rk_live");
    let provider = RedisProvider::new();
    let t = provider
        .target(
            &config(server.port(), &user.name, Some(admin.url(server.port()))),
            Strategy::Dual,
        )
        .unwrap();

    // The store: (generation, current document).
    let store = Arc::new(Mutex::new((0u64, user.doc())));
    let stop = Arc::new(AtomicBool::new(false));
    let ok = Arc::new(AtomicU64::new(0));
    let failures = Arc::new(Mutex::new(Vec::<String>::new()));
    // Per worker: the generation of its last finished login.
    let last_done: Arc<Vec<AtomicU64>> = Arc::new((0..WORKERS).map(|_| AtomicU64::new(u64::MAX)).collect());
    let per_generation = Arc::new([AtomicU64::new(0), AtomicU64::new(0)]);
    let mut workers = Vec::new();
    for w in 0..WORKERS {
        let (t, store, stop, ok, failures, last_done, per_generation) = (
            t.clone(),
            store.clone(),
            stop.clone(),
            ok.clone(),
            failures.clone(),
            last_done.clone(),
            per_generation.clone(),
        );
        workers.push(tokio::spawn(async move {
            while !stop.load(Ordering::SeqCst) {
                let (generation, doc) = store.lock().unwrap().clone();
                match t.login(&doc).await {
                    Ok(()) => {
                        ok.fetch_add(1, Ordering::SeqCst);
                        per_generation[generation as usize].fetch_add(1, Ordering::SeqCst);
                    }
                    Err(e) => failures.lock().unwrap().push(format!("generation {generation}: {e}")),
                }
                last_done[w].store(generation, Ordering::SeqCst);
            }
        }));
    }
    let wait_for = |target: u64| {
        let (ok, failures) = (ok.clone(), failures.clone());
        async move {
            let deadline = Instant::now() + Duration::from_secs(20);
            while ok.load(Ordering::SeqCst) < target {
                let failed = failures.lock().unwrap().clone();
                assert!(failed.is_empty(), "logins failed during the rotation: {failed:?}");
                assert!(Instant::now() < deadline, "the login loop stalled");
                tokio::time::sleep(Duration::from_millis(2)).await;
            }
        }
    };

    wait_for(10).await;
    let old = user.doc();
    let new = t.prepare(Some(&old), random_password(32)).await.unwrap();
    t.apply(&new, Some(&old)).await.unwrap();
    let after_apply = per_generation[0].load(Ordering::SeqCst);
    wait_for(ok.load(Ordering::SeqCst) + 10).await;
    t.verify(&new).await.unwrap();
    // Promote: the store now hands out the new secret.
    *store.lock().unwrap() = (1, new.clone());
    // Grace: every worker has finished a login with the new secret (no login that read
    // the old one is still in flight), then revoke.
    let deadline = Instant::now() + Duration::from_secs(20);
    while last_done.iter().any(|g| g.load(Ordering::SeqCst) != 1) {
        assert!(Instant::now() < deadline, "workers did not pick up the new secret");
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    t.revoke(&old, &new, RevokeOptions::default()).await.unwrap();
    wait_for(ok.load(Ordering::SeqCst) + 10).await;
    stop.store(true, Ordering::SeqCst);
    for w in workers {
        w.await.unwrap();
    }

    let failures = failures.lock().unwrap().clone();
    assert!(failures.is_empty(), "logins failed during the rotation: {failures:?}");
    assert!(
        per_generation[0].load(Ordering::SeqCst) > after_apply,
        "the old secret kept working after apply"
    );
    assert!(per_generation[1].load(Ordering::SeqCst) >= 10);
    eprintln!(
        "zero downtime: {} logins ({} old, {} new), 0 failed",
        ok.load(Ordering::SeqCst),
        per_generation[0].load(Ordering::SeqCst),
        per_generation[1].load(Ordering::SeqCst)
    );
    assert_eq!(t.login(&old).await.unwrap_err().kind(), ErrorKind::AuthRejected);
}

#[tokio::test]
async fn the_documented_minimal_admin_suffices() {
    let server = RedisServer::machine();
    // The README's example: -@all +acl +client|kill +config|get +info.
    let admin = TestUser::new(
        &server,
        "rk_minimal",
        &["-@all", "+acl", "+client|kill", "+config|get", "+info"],
    );
    let user = TestUser::app(&server, "rk_app");
    let mut c = config(server.port(), &user.name, Some(admin.url(server.port())));
    c.terminate_sessions = true;
    for strategy in [Strategy::Dual, Strategy::Single] {
        let t = target(&RedisProvider::new(), &c, strategy);
        let lines = t.preflight(Some(&user.doc())).await.unwrap();
        assert!(lines.iter().all(|l| !l.contains("cannot check")), "{lines:?}");
        assert!(lines[0].contains("(Redis "), "{lines:?}");
        let end = run_all(&t, user.doc()).await;
        // Back to the fixture's password, ending sessions on the way.
        t.apply(&user.doc(), Some(&end)).await.unwrap();
        t.revoke(
            &end,
            &user.doc(),
            RevokeOptions {
                terminate_sessions: true,
            },
        )
        .await
        .unwrap();
        t.login(&user.doc()).await.unwrap();
    }
}

/// A FAKE server answering as Redis 5 does (no ACL: AUTH takes one argument, ACL is an
/// unknown command). No Redis older than 6 is installed here, so this is a fake, named
/// as such; it checks only how rekey reads those two replies.
#[tokio::test]
async fn redis_without_acl_is_unsupported() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let fake = tokio::spawn(async move {
        while let Ok((mut socket, _)) = listener.accept().await {
            tokio::spawn(async move {
                let mut seen = Vec::new();
                let mut buf = [0u8; 4096];
                while let Ok(n) = socket.read(&mut buf).await {
                    if n == 0 {
                        break;
                    }
                    seen.extend_from_slice(&buf[..n]);
                    let (frames, complete) = parse_frames(&seen);
                    if !complete {
                        continue;
                    }
                    seen.clear();
                    for frame in frames {
                        let reply: &[u8] = match frame[0].to_ascii_uppercase().as_slice() {
                            b"AUTH" if frame.len() == 3 => b"-ERR wrong number of arguments for 'auth' command\r\n",
                            b"ACL" => b"-ERR unknown command `ACL`, with args beginning with: `WHOAMI`, \r\n",
                            _ => b"-ERR unknown command\r\n",
                        };
                        if socket.write_all(reply).await.is_err() {
                            return;
                        }
                    }
                }
            });
        }
    });
    let c = config(
        port,
        "app",
        Some(rekey_api::RedactedDsn::new(format!("redis://127.0.0.1:{port}"))),
    );
    let t = target(&RedisProvider::new(), &c, Strategy::Dual);
    let err = t.login(&doc("app", &random_password(20))).await.unwrap_err();
    assert_error(&err, ErrorKind::Unsupported, &["Redis without ACL support"], &[]);
    let err = t.preflight(None).await.unwrap_err();
    assert_error(
        &err,
        ErrorKind::Unsupported,
        &["Redis without ACL support", "ACL WHOAMI"],
        &[],
    );
    fake.abort();
}
