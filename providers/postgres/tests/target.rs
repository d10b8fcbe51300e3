//! The PostgreSQL target against real clusters with SCRAM authentication enforced
//! (rekey-testbed): the conformance suite, error kinds, privilege checks, the shared
//! admin connection, session termination, TLS modes and the server log.

use rekey_api::conformance::{random_password, target::run_all, unique_name};
use rekey_api::{ErrorKind, RedactedDsn, RevokeOptions, Secret, SecretDoc, Strategy, Target};
use rekey_postgres::{PostgresProvider, PostgresTarget, PostgresTargetConfig, SslMode};
use rekey_testbed::{quote_literal, PgCluster, PgOptions};
use std::time::{Duration, Instant};

mod common;
use common::*;

fn target(provider: &PostgresProvider, config: &PostgresTargetConfig) -> PostgresTarget {
    target_with(provider, config, Strategy::Single)
}

async fn raw_session(pg: &PgCluster, user: &str, password: &Secret) -> tokio_postgres::Client {
    let mut c = tokio_postgres::Config::new();
    c.host(pg.host())
        .port(pg.port())
        .user(user)
        .password(password.expose())
        .dbname("postgres");
    let (client, connection) = c.connect(tokio_postgres::NoTls).await.expect("raw session connects");
    tokio::spawn(async move {
        let _ = connection.await;
    });
    client
}

/// After each conformance rule: the server stores what rekey computed (a SCRAM
/// verifier) and the provider opened at most `admin` admin connections.
fn check_stored(role: &TestRole, provider: &PostgresProvider, before: &SecretDoc, after: &SecretDoc, admin: u64) {
    if after != before {
        let stored = role.pg.psql(&format!(
            "SELECT rolpassword FROM pg_authid WHERE rolname = {}",
            quote_literal(&role.name)
        ));
        assert!(stored.starts_with("SCRAM-SHA-256$4096:"), "{stored}");
    }
    assert!(
        provider.admin_connections_opened() <= admin,
        "rotations share one admin connection"
    );
}

/// The conformance suite with the superuser as admin (`single`: one password per role).
mod conformance_with_admin {
    use super::*;

    rekey_api::target_conformance_tests! {
        setup = async {
            let pg = PgCluster::shared();
            let role = TestRole::new(pg, "conf_admin");
            let provider = PostgresProvider::new();
            let t = target(&provider, &config(pg, &role.name, true));
            let doc = role.doc();
            ((role, provider), t, doc)
        },
        check = |(role, provider): &(TestRole, PostgresProvider), _: &PostgresTarget, before: &SecretDoc, after: &SecretDoc| {
            check_stored(role, provider, before, after, 1)
        },
        skip = [
            dual_holds_both_until_revoke => "a PostgreSQL role holds one password: apply replaces it (single)",
            alternating_uses_the_idle_user => "single: only alternating targets have an idle user (tests/alternating.rs)",
        ],
    }
}

/// The conformance suite without admin: the role changes its own password.
mod conformance_without_admin {
    use super::*;

    rekey_api::target_conformance_tests! {
        setup = async {
            let pg = PgCluster::shared();
            let role = TestRole::new(pg, "conf_self");
            let provider = PostgresProvider::new();
            let t = target(&provider, &config(pg, &role.name, false));
            assert!(!t.has_admin());
            let doc = role.doc();
            ((role, provider), t, doc)
        },
        check = |(role, provider): &(TestRole, PostgresProvider), _: &PostgresTarget, before: &SecretDoc, after: &SecretDoc| {
            check_stored(role, provider, before, after, 0)
        },
        skip = [
            dual_holds_both_until_revoke => "a PostgreSQL role holds one password: apply replaces it (single)",
            alternating_uses_the_idle_user => "single: only alternating targets have an idle user (tests/alternating.rs)",
        ],
    }
}

#[tokio::test]
async fn wrong_password_is_auth_rejected() {
    let pg = PgCluster::shared();
    let role = TestRole::new(pg, "wrong_pw");
    let t = target(&PostgresProvider::new(), &config(pg, &role.name, false));
    t.login(&role.doc()).await.expect("the right password logs in");
    let wrong = random_password(24);
    let err = t.login(&doc(&role.name, &wrong)).await.unwrap_err();
    assert_error(
        &err,
        ErrorKind::AuthRejected,
        &[&role.name, &format!("127.0.0.1:{}", pg.port()), "28P01"],
        &[&wrong, &role.password],
    );
    assert!(!err.is_retryable());
}

#[tokio::test]
async fn server_log_never_sees_the_plaintext() {
    let pg = PgCluster::start_with(PgOptions::new().log_statement_all(true)).unwrap();
    let role = TestRole::new(&pg, "logged");
    let provider = PostgresProvider::new();

    // Control: a plaintext ALTER ROLE does land in this log, so the check below can fail.
    let canary = random_password(24);
    pg.psql(&format!(
        "ALTER ROLE {} PASSWORD {}",
        rekey_testbed::quote_ident(&role.name),
        quote_literal(canary.expose())
    ));
    assert!(
        pg.log_contents().contains(canary.expose()),
        "log_statement=all must record statements"
    );

    for admin in [true, false] {
        let t = target(&provider, &config(&pg, &role.name, admin));
        let current = doc(&role.name, &canary);
        let marker = "PASSWORD 'SCRAM-SHA-256$4096:";
        let verifiers_before = pg.log_contents().matches(marker).count();
        let new = t.prepare(Some(&current), random_password(32)).await.unwrap();
        t.apply(&new, Some(&current)).await.unwrap();
        t.verify(&new).await.unwrap();
        let log = pg.log_contents();
        let plaintext = new.password().unwrap();
        assert!(
            !log.contains(plaintext.expose()),
            "the new password reached the server log"
        );
        assert_eq!(
            log.matches(marker).count(),
            verifiers_before + 1,
            "the server saw the verifier (admin={admin})"
        );
        // Next round starts from the new password.
        pg.psql(&format!(
            "ALTER ROLE {} PASSWORD {}",
            rekey_testbed::quote_ident(&role.name),
            quote_literal(canary.expose())
        ));
    }
    drop(role);
    drop(provider);
}

#[tokio::test]
async fn odd_role_name_rotates() {
    let pg = PgCluster::shared();
    let role = TestRole::new(pg, "q\"; x' ü é 日");
    for admin in [true, false] {
        let provider = PostgresProvider::new();
        let t = target(&provider, &config(pg, &role.name, admin));
        let current = role.doc();
        t.login(&current).await.expect("the starting secret logs in");
        t.preflight(Some(&current)).await.unwrap();
        let new = t.prepare(Some(&current), random_password(32)).await.unwrap();
        t.apply(&new, Some(&current)).await.unwrap();
        t.verify(&new).await.unwrap();
        assert_eq!(t.login(&current).await.unwrap_err().kind(), ErrorKind::AuthRejected);
        // Put the test role's password back for the next round.
        let back = doc(&role.name, &role.password);
        t.apply(&back, Some(&new)).await.unwrap();
        assert!(
            t.describe()
                .contains(&format!("\"{}\"", role.name.replace('"', "\"\""))),
            "{}",
            t.describe()
        );
    }
}

#[tokio::test]
async fn missing_role_is_not_found() {
    let pg = PgCluster::shared();
    let name = unique_name("ghost");
    let provider = PostgresProvider::new();
    let t = target(&provider, &config(pg, &name, true));
    let err = t.preflight(None).await.unwrap_err();
    assert_error(
        &err,
        ErrorKind::NotFound,
        &[&format!("role \"{name}\" does not exist on 127.0.0.1:{}", pg.port())],
        &[],
    );
    let new = t.prepare(None, random_password(32)).await.unwrap();
    let err = t.apply(&new, None).await.unwrap_err();
    assert_error(
        &err,
        ErrorKind::NotFound,
        &[&name, "does not exist", "42704"],
        &[&new.password().unwrap()],
    );
}

#[tokio::test]
async fn missing_database_is_not_found() {
    let pg = PgCluster::shared();
    let role = TestRole::new(pg, "nodb");
    let mut c = config(pg, &role.name, true);
    c.dbname = unique_name("no_such_db");
    let t = target(&PostgresProvider::new(), &c);
    let err = t.login(&role.doc()).await.unwrap_err();
    assert_error(&err, ErrorKind::NotFound, &[&c.dbname, "3D000"], &[&role.password]);
    let err = t.preflight(Some(&role.doc())).await.unwrap_err();
    assert_error(&err, ErrorKind::NotFound, &[&c.dbname, "does not exist"], &[]);
}

#[tokio::test]
async fn admin_without_privilege_is_permission_denied() {
    let pg = PgCluster::shared();
    let weak = TestRole::new(pg, "weak_admin");
    let role = TestRole::new(pg, "guarded");
    let mut c = config(pg, &role.name, false);
    c.admin = Some(weak.dsn());
    let t = target(&PostgresProvider::new(), &c);

    let err = t.preflight(Some(&role.doc())).await.unwrap_err();
    assert_error(
        &err,
        ErrorKind::PermissionDenied,
        &[
            &format!("admin \"{}\"", weak.name),
            &format!("role \"{}\"", role.name),
            "CREATEROLE",
        ],
        &[&weak.password],
    );
    let new = t.prepare(Some(&role.doc()), random_password(32)).await.unwrap();
    let err = t.apply(&new, Some(&role.doc())).await.unwrap_err();
    assert_error(
        &err,
        ErrorKind::PermissionDenied,
        &[&role.name, "42501"],
        &[&weak.password, &new.password().unwrap()],
    );
    // Nothing changed.
    t.login(&role.doc()).await.expect("the old password still works");
    assert_eq!(t.login(&new).await.unwrap_err().kind(), ErrorKind::AuthRejected);
}

#[tokio::test]
async fn createrole_admin_may_alter_ordinary_roles_only() {
    let pg = PgCluster::shared();
    if pg.server_version_num() >= 160000 {
        // Since PostgreSQL 16 CREATEROLE also needs ADMIN OPTION; covered by unit tests.
        return;
    }
    let admin = TestRole::with_options(pg, "cr_admin", "CREATEROLE");
    let role = TestRole::new(pg, "cr_role");
    let boss = TestRole::with_options(pg, "cr_super", "SUPERUSER");
    let provider = PostgresProvider::new();

    let mut c = config(pg, &role.name, false);
    c.admin = Some(admin.dsn());
    let t = target(&provider, &c);
    let lines = t.preflight(Some(&role.doc())).await.unwrap();
    assert!(lines.iter().any(|l| l.contains("(CREATEROLE)")), "{lines:?}");
    let end = run_all(&t, role.doc()).await;
    t.login(&end).await.unwrap();

    let mut c = config(pg, &boss.name, false);
    c.admin = Some(admin.dsn());
    let t = target(&provider, &c);
    let err = t.preflight(Some(&boss.doc())).await.unwrap_err();
    assert_error(&err, ErrorKind::PermissionDenied, &["superuser"], &[]);
    let new = t.prepare(Some(&boss.doc()), random_password(32)).await.unwrap();
    assert_eq!(
        t.apply(&new, Some(&boss.doc())).await.unwrap_err().kind(),
        ErrorKind::PermissionDenied
    );
    t.login(&boss.doc()).await.expect("unchanged");
}

/// `plan` checks a current secret against the role's stored verifier where that gives a
/// login's answer, without a login (the server logs every connection here: none is the
/// role's); where it cannot (an admin who may not read `pg_authid`), it logs in.
#[tokio::test]
async fn plan_checks_the_current_secret_against_the_stored_verifier_without_a_login() {
    let pg = PgCluster::start_with(PgOptions::new().setting("log_connections", "on")).unwrap();
    let role = TestRole::new(&pg, "pv");
    let md5 = unique_name("pv_md5");
    let md5_password = random_password(24);
    pg.psql(&format!(
        "SET password_encryption = 'md5'; CREATE ROLE {md5} LOGIN PASSWORD {}",
        quote_literal(md5_password.expose())
    ));
    let provider = PostgresProvider::new();
    let t = target(&provider, &config(&pg, &role.name, true));
    let role_logins = |pg: &PgCluster, name: &str| {
        pg.log_contents()
            .lines()
            .filter(|l| l.contains(&format!("user={name} ")) || l.contains(&format!("user \"{name}\"")))
            .count()
    };

    let lines = t.preflight(Some(&role.doc())).await.unwrap();
    assert!(
        lines.iter().any(|l| l.starts_with(&format!(
            "the current secret is the password of role \"{}\" on 127.0.0.1:{}/postgres (checked against its \
             stored verifier, which pg_hba.conf's scram-sha-256 line checks every login here against; no login made)",
            role.name,
            pg.port()
        ))),
        "{lines:?}"
    );
    let lines = t.preflight(Some(&role.wrong_doc())).await.unwrap();
    assert!(
        lines
            .iter()
            .any(|l| l.contains("is refused as") && l.contains("does not match the stored verifier")),
        "{lines:?}"
    );
    assert_eq!(
        role_logins(&pg, &role.name),
        0,
        "no login as the role:\n{}",
        pg.log_contents()
    );
    // The check is real: the password it accepted logs in, the other is refused.
    t.login(&role.doc()).await.unwrap();
    assert_eq!(
        t.login(&role.wrong_doc()).await.unwrap_err().kind(),
        ErrorKind::AuthRejected
    );
    assert!(role_logins(&pg, &role.name) >= 1, "the server logs logins");

    // An md5 verifier under a `scram-sha-256` line: every login is refused whatever the
    // password, which only a login says (as it did).
    let t = target(&provider, &config(&pg, &md5, true));
    let lines = t.preflight(Some(&doc(&md5, &md5_password))).await.unwrap();
    assert!(role_logins(&pg, &md5) >= 1, "a login was made for the md5 role");
    assert!(
        lines.iter().any(|l| l.starts_with("the current secret is refused as")),
        "{lines:?}"
    );

    // An admin who may not read pg_authid: the login, as before.
    let admin = TestRole::with_options(&pg, "pv_admin", "CREATEROLE");
    let plain = TestRole::new(&pg, "pv_plain");
    pg.psql(&format!("GRANT {} TO {} WITH ADMIN OPTION", plain.name, admin.name));
    let mut c = config(&pg, &plain.name, false);
    c.admin = Some(admin.dsn());
    let t = target(&provider, &c);
    let lines = t.preflight(Some(&plain.doc())).await.unwrap();
    assert!(
        lines.iter().any(|l| l.starts_with("the current secret logs in as")),
        "{lines:?}"
    );
    assert!(role_logins(&pg, &plain.name) >= 1);
    pg.psql(&format!("DROP ROLE {md5}"));
}

#[tokio::test]
async fn preflight_reports_what_it_checked() {
    let pg = PgCluster::shared();
    let role = TestRole::new(pg, "pf");
    let provider = PostgresProvider::new();
    let mut c = config(pg, &role.name, true);
    c.terminate_sessions = true;
    let t = target(&provider, &c);
    let lines = t.preflight(Some(&role.doc())).await.unwrap();
    let text = lines.join("\n");
    assert!(
        text.contains(&format!(
            "admin \"postgres\" may alter role \"{}\" (superuser)",
            role.name
        )),
        "{text}"
    );
    // A superuser admin on the route logins take, pg_hba.conf asking every role for a
    // SCRAM password: checked against the stored verifier.
    assert!(
        text.contains(&format!("the current secret is the password of role \"{}\"", role.name)),
        "{text}"
    );
    assert!(text.contains("will be ended at revoke"), "{text}");
    assert!(!text.contains(role.password.expose()) && !text.contains(pg.admin_password()));

    // Read-only: the password is unchanged.
    t.login(&role.doc()).await.unwrap();
    // A wrong current secret is reported, not fatal, with an admin.
    let wrong = doc(&role.name, &random_password(20));
    let lines = t.preflight(Some(&wrong)).await.unwrap();
    assert!(lines.iter().any(|l| l.contains("refused")), "{lines:?}");

    // Without an admin the current secret must work.
    let t = target(&provider, &config(pg, &role.name, false));
    assert_eq!(
        t.preflight(Some(&wrong)).await.unwrap_err().kind(),
        ErrorKind::AuthRejected
    );
    assert_eq!(t.preflight(None).await.unwrap_err().kind(), ErrorKind::InvalidInput);
    assert!(t
        .preflight(Some(&role.doc()))
        .await
        .unwrap()
        .iter()
        .any(|l| l.contains("its own password")));
}

#[tokio::test]
async fn closed_port_is_unreachable() {
    let pg = PgCluster::shared();
    let port = closed_port();
    let mut c = config(pg, "nobody", true);
    c.port = port;
    c.admin = Some(RedactedDsn::new(format!(
        "postgres://postgres:{}@127.0.0.1:{port}/postgres",
        pg.admin_password()
    )));
    let t = target(&PostgresProvider::new(), &c);
    let pw = random_password(20);
    let err = t.login(&doc("nobody", &pw)).await.unwrap_err();
    assert_error(&err, ErrorKind::Unreachable, &[&format!("127.0.0.1:{port}")], &[&pw]);
    assert!(err.is_retryable());
    let err = t.preflight(None).await.unwrap_err();
    assert_error(
        &err,
        ErrorKind::Unreachable,
        &[&format!("127.0.0.1:{port}"), "admin \"postgres\""],
        &[],
    );
    let new = t.prepare(None, pw.clone()).await.unwrap();
    let err = t.apply(&new, None).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Unreachable);
    assert!(!err.to_string().contains(pg.admin_password()));
}

#[tokio::test]
async fn one_admin_connection_per_host() {
    let pg = PgCluster::shared();
    let a = TestRole::new(pg, "share_a");
    let b = TestRole::new(pg, "share_b");
    let provider = PostgresProvider::new();
    let ta = target(&provider, &config(pg, &a.name, true));
    let mut cb = config(pg, &b.name, true);
    cb.dbname = "template1".into(); // another database, same host: still one admin connection
    let tb = target(&provider, &cb);

    let (da, db) = (a.doc(), b.doc());
    let (ra, rb) = tokio::join!(ta.preflight(Some(&da)), tb.preflight(Some(&db)));
    ra.unwrap();
    rb.unwrap();
    let na = ta.prepare(Some(&a.doc()), random_password(32)).await.unwrap();
    let nb = tb.prepare(Some(&b.doc()), random_password(32)).await.unwrap();
    let (ra, rb) = tokio::join!(ta.apply(&na, None), tb.apply(&nb, None));
    ra.unwrap();
    rb.unwrap();
    assert_eq!(provider.admin_connections_opened(), 1);
    let pid_a = ta.admin_backend_pid().await.unwrap().unwrap();
    let pid_b = tb.admin_backend_pid().await.unwrap().unwrap();
    assert_eq!(pid_a, pid_b, "both targets use the same admin backend");
    let backends = pg.psql(&format!(
        "SELECT count(*) FROM pg_stat_activity WHERE pid = {pid_a} AND application_name = 'rekey admin'"
    ));
    assert_eq!(backends, "1");

    // A lost admin connection is reopened once, transparently.
    pg.psql(&format!("SELECT pg_terminate_backend({pid_a})"));
    tokio::time::sleep(Duration::from_millis(200)).await;
    let na2 = ta.prepare(Some(&na), random_password(32)).await.unwrap();
    ta.apply(&na2, Some(&na)).await.expect("apply reconnects");
    ta.verify(&na2).await.unwrap();
    assert_eq!(provider.admin_connections_opened(), 2);
    assert_ne!(ta.admin_backend_pid().await.unwrap().unwrap(), pid_a);
}

#[tokio::test]
async fn revoke_terminates_sessions() {
    let pg = PgCluster::shared();
    for admin in [true, false] {
        let role = TestRole::new(pg, "sessions");
        let provider = PostgresProvider::new();
        let t = target(&provider, &config(pg, &role.name, admin));
        let s1 = raw_session(pg, &role.name, &role.password).await;
        let s2 = raw_session(pg, &role.name, &role.password).await;
        s1.simple_query("SELECT 1").await.unwrap();

        let current = role.doc();
        let new = t.prepare(Some(&current), random_password(32)).await.unwrap();
        t.apply(&new, Some(&current)).await.unwrap();
        // Applying does not end sessions; a plain revoke does not either.
        let report = t.revoke(&current, &new, RevokeOptions::default()).await.unwrap();
        assert_eq!(report.sessions_terminated, 0);
        s1.simple_query("SELECT 1")
            .await
            .expect("still open after a plain revoke");

        let report = t
            .revoke(
                &current,
                &new,
                RevokeOptions {
                    terminate_sessions: true,
                },
            )
            .await
            .unwrap();
        // Two open sessions; a backend of rekey's own closed login may still be exiting.
        assert!(
            (2..=3).contains(&report.sessions_terminated),
            "admin={admin}: {report:?}"
        );
        let deadline = Instant::now() + Duration::from_secs(10);
        for s in [&s1, &s2] {
            loop {
                if s.simple_query("SELECT 1").await.is_err() {
                    break;
                }
                assert!(Instant::now() < deadline, "session survived termination");
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
        // Idempotent: once the ended backends are gone, nothing is left to end.
        let count = format!(
            "SELECT count(*) FROM pg_stat_activity WHERE usename = {}",
            quote_literal(&role.name)
        );
        while pg.psql(&count) != "0" {
            assert!(Instant::now() < deadline, "backends of the role linger");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let report = t
            .revoke(
                &current,
                &new,
                RevokeOptions {
                    terminate_sessions: true,
                },
            )
            .await
            .unwrap();
        assert_eq!(report.sessions_terminated, 0);
        t.login(&new).await.unwrap();
    }
}

#[tokio::test]
async fn sslmodes_against_a_plain_server() {
    let pg = PgCluster::shared();
    let role = TestRole::new(pg, "ssl_plain");
    let provider = PostgresProvider::new();
    for mode in [SslMode::Disable, SslMode::Prefer] {
        let mut c = config(pg, &role.name, true);
        c.sslmode = mode;
        let t = target(&provider, &c);
        t.login(&role.doc()).await.unwrap_or_else(|e| panic!("{mode}: {e}"));
        t.preflight(Some(&role.doc()))
            .await
            .unwrap_or_else(|e| panic!("{mode}: {e}"));
    }
    for mode in [SslMode::Require, SslMode::VerifyFull] {
        let mut c = config(pg, &role.name, false);
        c.sslmode = mode;
        let t = target(&provider, &c);
        let err = t.login(&role.doc()).await.unwrap_err();
        assert_error(
            &err,
            ErrorKind::Unreachable,
            &["TLS", &format!("sslmode={mode}"), "server does not support TLS"],
            &[&role.password],
        );
    }
}

#[tokio::test]
async fn sslmodes_against_a_tls_server() {
    let pg = PgCluster::start_with(PgOptions::new().tls(true)).unwrap();
    let role = TestRole::new(&pg, "ssl_tls");
    let ca = pg.tls_root_cert().unwrap().to_owned();
    let provider = PostgresProvider::new();
    let cases: [(SslMode, Option<&std::path::Path>, &str, bool); 6] = [
        (SslMode::Prefer, None, "127.0.0.1", true),
        (SslMode::Require, None, "127.0.0.1", true),
        (SslMode::Require, Some(&ca), "localhost", true),
        (SslMode::VerifyFull, Some(&ca), "127.0.0.1", true),
        (SslMode::VerifyFull, Some(&ca), "localhost", true),
        (SslMode::VerifyFull, None, "127.0.0.1", false),
    ];
    for (mode, root, host, ok) in cases {
        let mut c = config(&pg, &role.name, false);
        c.host = host.into();
        c.sslmode = mode;
        c.sslrootcert = root.map(Into::into);
        let t = target(&provider, &c);
        match t.login(&role.doc()).await {
            Ok(()) => assert!(ok, "{mode} {root:?} {host} should fail"),
            Err(e) => {
                assert!(!ok, "{mode} {root:?} {host}: {e}");
                assert_error(&e, ErrorKind::Unreachable, &["TLS", "certificate"], &[&role.password]);
            }
        }
    }
    // The admin connection inherits the target's TLS setting and really uses TLS.
    let mut c = config(&pg, &role.name, true);
    c.sslmode = SslMode::VerifyFull;
    c.sslrootcert = Some(ca.clone());
    let t = target(&provider, &c);
    let pid = t.admin_backend_pid().await.unwrap().unwrap();
    assert_eq!(pg.psql(&format!("SELECT ssl FROM pg_stat_ssl WHERE pid = {pid}")), "t");
    let end = run_all(&t, role.doc()).await;
    t.login(&end).await.unwrap();
    drop(t);
    drop(provider);
}

#[tokio::test]
async fn check_query_runs_on_verify() {
    let pg = PgCluster::shared();
    let role = TestRole::new(pg, "checked");
    let provider = PostgresProvider::new();
    let mut c = config(pg, &role.name, false);
    c.check_query = Some("SELECT 1".into());
    target(&provider, &c).verify(&role.doc()).await.unwrap();

    let table = unique_name("private");
    pg.psql(&format!(
        "CREATE TABLE {table} (x int); REVOKE ALL ON {table} FROM PUBLIC"
    ));
    c.check_query = Some(format!("SELECT * FROM {table}"));
    let t = target(&provider, &c);
    let err = t.verify(&role.doc()).await.unwrap_err();
    assert_error(
        &err,
        ErrorKind::PermissionDenied,
        &["check query", "42501"],
        &[&role.password],
    );
    t.login(&role.doc()).await.expect("login alone ignores the check query");
    pg.psql(&format!("DROP TABLE {table}"));
}

#[tokio::test]
async fn unsupported_strategies_and_bad_config() {
    let provider = PostgresProvider::new();
    let c = PostgresTargetConfig::new("127.0.0.1", "app");
    let err = provider.target(&c, Strategy::Dual).err().unwrap();
    assert_eq!(err.kind(), ErrorKind::Unsupported);
    assert!(err.to_string().contains("dual"), "{err}");
    // Alternating takes `usernames`, not `username` (tests/alternating.rs has the rest).
    let err = provider.target(&c, Strategy::Alternating).err().unwrap();
    assert_eq!(err.kind(), ErrorKind::InvalidInput);
    assert!(err.to_string().contains("takes `usernames"), "{err}");
    let mut bad = c.clone();
    bad.admin = Some(RedactedDsn::new(
        "postgres://admin:s3cr3t-pw@h/db?sslmode=verify-ca".into(),
    ));
    let err = provider.target(&bad, Strategy::Single).err().unwrap();
    assert_eq!(err.kind(), ErrorKind::InvalidInput);
    assert!(!err.to_string().contains("s3cr3t"));
    let mut bad = c.clone();
    bad.username = Some(String::new());
    assert_eq!(
        provider.target(&bad, Strategy::Single).err().unwrap().kind(),
        ErrorKind::InvalidInput
    );
    let mut bad = c.clone();
    bad.sslrootcert = Some("/nonexistent/ca.pem".into());
    assert_eq!(
        provider.target(&bad, Strategy::Single).err().unwrap().kind(),
        ErrorKind::InvalidInput
    );

    let t = provider.target(&c, Strategy::Single).unwrap();
    let caps = t.capabilities();
    assert_eq!(caps.strategies, vec![Strategy::Single, Strategy::Alternating]);
    assert_eq!(caps.strategy, Strategy::Single);
    assert!(caps.terminate_sessions && caps.apply_invalidates_previous && !caps.mints_own_secret);

    // complete() fills what is missing and keeps what is there.
    let mut d = SecretDoc::new();
    d.set("host", "pgbouncer.internal");
    t.complete(&mut d);
    assert_eq!(d.get_str("engine"), Some("postgres"));
    assert_eq!(d.get_str("host"), Some("pgbouncer.internal"));
    assert_eq!(d.get_u64("port"), Some(5432));
    assert_eq!(d.username(), Some("app"));
    assert_eq!(d.get_str("dbname"), Some("postgres"));

    // A secret for another user is refused rather than installed.
    let other = doc("someone_else", &random_password(10));
    assert_eq!(
        t.prepare(Some(&other), random_password(10)).await.unwrap_err().kind(),
        ErrorKind::InvalidInput
    );
}

#[test]
fn config_deserializes_with_defaults_and_hides_the_admin_password() {
    let c: PostgresTargetConfig = serde_json::from_value(serde_json::json!({
        "host": "db", "username": "orders_app", "admin": "postgres://root:hunter2-secret@db/postgres"
    }))
    .unwrap();
    assert_eq!(
        (c.port, c.dbname.as_str(), c.sslmode, c.connect_timeout_secs),
        (5432, "postgres", SslMode::Prefer, 10)
    );
    assert!(!c.terminate_sessions && c.check_query.is_none() && c.sslrootcert.is_none());
    let shown = format!("{c:?}");
    assert!(
        !shown.contains("hunter2-secret") && shown.contains("root:****@db"),
        "{shown}"
    );

    let c: PostgresTargetConfig = serde_json::from_value(serde_json::json!({
        "host": "db", "port": 6432, "dbname": "orders", "username": "u", "sslmode": "verify-full",
        "sslrootcert": "/etc/ca.pem", "check_query": "SELECT 1", "connect_timeout_secs": 3, "terminate_sessions": true
    }))
    .unwrap();
    assert_eq!(c.sslmode, SslMode::VerifyFull);
    assert_eq!(c.port, 6432);

    let err = serde_json::from_value::<PostgresTargetConfig>(serde_json::json!({
        "host": "db", "username": "u", "strategy": "single"
    }))
    .unwrap_err();
    assert!(err.to_string().contains("unknown field `strategy`"), "{err}");
    let err = serde_json::from_value::<PostgresTargetConfig>(serde_json::json!({
        "host": "db", "username": "u", "sslmode": "verify-ca"
    }))
    .unwrap_err();
    assert!(err.to_string().contains("unknown variant"), "{err}");
}
