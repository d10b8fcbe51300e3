//! Roles as production has them, against real clusters (rekey-testbed): every test first
//! shows the role's state (read as the superuser from `pg_roles`, `pg_authid`,
//! `pg_stat_activity`), then rotates and shows what was kept, or shows that precheck
//! refused before anything changed, naming the reason and the option that allows it.
//!
//! - `VALID UNTIL`: kept by default and shown by `plan`; refused when past or less than
//!   an hour away; `valid_until = "clear"` or a duration renews it in the same statement;
//! - md5 verifiers: `plan` shows the move to SCRAM (`password_encryption` and the role's
//!   verifier type); `verifier = "keep"` keeps md5 with a verifier computed by rekey;
//! - `CONNECTION LIMIT` with every slot taken: precheck refuses before apply;
//! - pg_hba.conf turning the role away without TLS: precheck's probe refuses before apply;
//! - a `VALID UNTIL` just past: `verify` says the password expired, and when.

use rekey_api::conformance::random_password;
use rekey_api::{ErrorKind, Secret, SecretDoc, Strategy, Target};
use rekey_postgres::{PostgresProvider, PostgresTarget, PostgresTargetConfig, SslMode, ValidUntil, VerifierPolicy};
use rekey_testbed::{quote_ident, PgCluster, PgOptions};
use std::time::Duration;

mod common;
use common::*;

fn target(config: &PostgresTargetConfig) -> PostgresTarget {
    target_with(&PostgresProvider::new(), config, Strategy::Single)
}

/// `rolvaliduntil` as text (empty when unset).
fn valid_until(pg: &PgCluster, role: &str) -> String {
    pg.psql(&format!(
        "SELECT coalesce(rolvaliduntil::text, '') FROM pg_roles WHERE rolname = {}",
        rekey_testbed::quote_literal(role)
    ))
}

/// The stored verifier's type: `md5`, `SCRAM` or `none`.
fn verifier_type(pg: &PgCluster, role: &str) -> String {
    pg.psql(&format!(
        "SELECT CASE WHEN rolpassword LIKE 'md5%' THEN 'md5' WHEN rolpassword LIKE 'SCRAM-SHA-256$%' THEN 'SCRAM' \
         ELSE 'none' END FROM pg_authid WHERE rolname = {}",
        rekey_testbed::quote_literal(role)
    ))
}

/// Gives `role` the md5 verifier of `password` (as a server with `password_encryption =
/// md5` would have stored it).
fn make_md5(pg: &PgCluster, role: &str, password: &Secret) {
    pg.psql(&format!(
        "SET log_statement = 'none'; SET password_encryption = 'md5'; ALTER ROLE {} PASSWORD {}",
        quote_ident(role),
        rekey_testbed::quote_literal(password.expose())
    ));
}

/// A session as `user`, outside the code under test.
async fn open_session(pg: &PgCluster, user: &str, password: &Secret) -> tokio_postgres::Client {
    open_session_on(pg, user, password, "postgres").await
}

/// [`open_session`] on database `dbname`.
async fn open_session_on(pg: &PgCluster, user: &str, password: &Secret, dbname: &str) -> tokio_postgres::Client {
    let mut c = tokio_postgres::Config::new();
    c.host(pg.host())
        .port(pg.port())
        .user(user)
        .password(password.expose())
        .dbname(dbname);
    let (client, connection) = c.connect(tokio_postgres::NoTls).await.expect("session connects");
    tokio::spawn(async move {
        let _ = connection.await;
    });
    client
}

/// Runs a rotation by hand: prepare, apply, verify, the old secret refused.
async fn rotate(t: &PostgresTarget, current: &SecretDoc) -> SecretDoc {
    t.precheck(Some(current)).await.expect("precheck passes");
    let new = t.prepare(Some(current), random_password(24)).await.unwrap();
    t.apply(&new, Some(current)).await.expect("apply");
    t.verify(&new).await.expect("the new secret logs in");
    assert_eq!(
        t.login(current).await.expect_err("the old secret is refused").kind(),
        ErrorKind::AuthRejected
    );
    new
}

#[tokio::test]
async fn valid_until_ahead_is_kept_and_shown() {
    let pg = PgCluster::shared();
    let role = TestRole::with_options(pg, "pu_keep", "VALID UNTIL '2999-01-01 00:00:00+00'");
    let before = valid_until(pg, &role.name);
    assert!(before.starts_with("2999-01-01"), "{before}");
    let t = target(&config(pg, &role.name, true));
    let plan = t.preflight(Some(&role.doc())).await.unwrap().join("\n");
    assert!(
        plan.contains("has VALID UNTIL '2999-01-01") && plan.contains("kept (valid_until = \"keep\")"),
        "{plan}"
    );
    rotate(&t, &role.doc()).await;
    assert_eq!(valid_until(pg, &role.name), before, "VALID UNTIL unchanged");
}

#[tokio::test]
async fn valid_until_within_the_hour_is_refused_then_renewed_by_the_option() {
    let pg = PgCluster::shared();
    let role = TestRole::new(pg, "pu_soon");
    pg.psql(&format!(
        "ALTER ROLE {} VALID UNTIL {}",
        quote_ident(&role.name),
        rekey_testbed::quote_literal(&pg.psql("SELECT (now() + interval '10 minutes')::text"))
    ));
    let before = valid_until(pg, &role.name);
    assert!(!before.is_empty());
    for admin in [true, false] {
        let t = target(&config(pg, &role.name, admin));
        for err in [
            t.precheck(Some(&role.doc())).await.unwrap_err(),
            t.preflight(Some(&role.doc())).await.unwrap_err(),
        ] {
            assert_error(
                &err,
                ErrorKind::PermissionDenied,
                &[
                    &format!("role \"{}\"", role.name),
                    "has VALID UNTIL",
                    "less than an hour",
                    "valid_until = \"clear\"",
                ],
                &[&role.password],
            );
        }
    }
    assert_eq!(valid_until(pg, &role.name), before, "nothing changed");
    t_login_ok(pg, &role).await;

    // valid_until = "clear": the same statement removes it.
    let mut c = config(pg, &role.name, true);
    c.valid_until = ValidUntil::Clear;
    let t = target(&c);
    let plan = t.preflight(Some(&role.doc())).await.unwrap().join("\n");
    assert!(
        plan.contains("the rotation removes it (valid_until = \"clear\")"),
        "{plan}"
    );
    let new = rotate(&t, &role.doc()).await;
    assert_eq!(valid_until(pg, &role.name), "infinity");

    // A duration: valid for that long from the rotation, by the server's clock.
    c.valid_until = ValidUntil::For(Duration::from_secs(90 * 86_400));
    rotate(&target(&c), &new).await;
    let in_range = pg.psql(&format!(
        "SELECT rolvaliduntil BETWEEN now() + interval '89 days' AND now() + interval '91 days' FROM pg_roles \
         WHERE rolname = {}",
        rekey_testbed::quote_literal(&role.name)
    ));
    assert_eq!(in_range, "t");
}

async fn t_login_ok(pg: &PgCluster, role: &TestRole<'_>) {
    target(&config(pg, &role.name, false))
        .login(&role.doc())
        .await
        .expect("the current secret still logs in");
}

#[tokio::test]
async fn past_valid_until_is_refused_naming_the_option_and_renewed_with_it() {
    let pg = PgCluster::shared();
    let role = TestRole::with_options(pg, "pu_past", "VALID UNTIL '2001-01-01 00:00:00+00'");
    let t = target(&config(pg, &role.name, true));
    let err = t.precheck(Some(&role.doc())).await.unwrap_err();
    assert_error(
        &err,
        ErrorKind::PermissionDenied,
        &["past its VALID UNTIL date (2001-01-01", "valid_until = \"clear\""],
        &[&role.password],
    );
    let mut c = config(pg, &role.name, true);
    c.valid_until = ValidUntil::For(Duration::from_secs(7 * 86_400));
    let t = target(&c);
    t.precheck(Some(&role.doc())).await.expect("the rotation renews it");
    let new = t.prepare(Some(&role.doc()), random_password(24)).await.unwrap();
    t.apply(&new, Some(&role.doc())).await.unwrap();
    t.verify(&new).await.expect("valid again");
    assert!(valid_until(pg, &role.name).as_str() > "2020");
}

#[tokio::test]
async fn md5_to_scram_is_shown_by_plan() {
    let pg = PgCluster::shared();
    let role = TestRole::new(pg, "pu_md5");
    make_md5(pg, &role.name, &role.password);
    assert_eq!(verifier_type(pg, &role.name), "md5", "md5 before");
    let t = target(&config(pg, &role.name, true));
    let plan = t.preflight(Some(&role.doc())).await.unwrap().join("\n");
    for needle in [
        "password_encryption = scram-sha-256",
        &format!("role \"{}\"'s password is stored as md5", role.name),
        "installs a SCRAM-SHA-256 verifier (verifier = \"scram-sha-256\")",
        "set verifier = \"keep\" to keep md5",
    ] {
        assert!(plan.contains(needle), "plan should say `{needle}`:\n{plan}");
    }
    // This cluster's pg_hba asks for scram-sha-256, so the md5 role cannot log in
    // now; the rotation (the default) moves it to SCRAM and it can.
    let new = t.prepare(Some(&role.doc()), random_password(24)).await.unwrap();
    t.apply(&new, Some(&role.doc())).await.unwrap();
    t.verify(&new).await.unwrap();
    assert_eq!(verifier_type(pg, &role.name), "SCRAM");

    // A CREATEROLE admin cannot read pg_authid: plan says unknown, and "keep" is refused.
    let admin = TestRole::with_options(pg, "pu_cr_admin", "CREATEROLE");
    if pg.server_version_num() >= 160000 {
        pg.psql(&format!(
            "GRANT {} TO {} WITH ADMIN OPTION",
            quote_ident(&role.name),
            quote_ident(&admin.name)
        ));
    }
    let mut c = config(pg, &role.name, false);
    c.admin = Some(admin.dsn());
    let plan = target(&c).preflight(Some(&new)).await.unwrap().join("\n");
    assert!(
        plan.contains("stored as unknown (pg_authid is readable by superusers only)"),
        "{plan}"
    );
    c.verifier = VerifierPolicy::Keep;
    let err = target(&c).precheck(Some(&new)).await.unwrap_err();
    assert_error(
        &err,
        ErrorKind::InvalidInput,
        &["verifier = \"keep\"", "pg_authid", "verifier = \"scram-sha-256\""],
        &[&new.password().unwrap(), &admin.password],
    );
}

/// A throwaway cluster whose pg_hba.conf asks for `md5` over TCP: md5 roles log in
/// with md5, SCRAM roles with SCRAM (PostgreSQL's rule for the md5 method).
fn md5_cluster() -> (PgCluster, std::path::PathBuf) {
    cluster_with_hba("local all all trust\nhost all all 127.0.0.1/32 md5\n")
}

/// A throwaway cluster with `hba` as its pg_hba.conf, and the directory that holds it.
fn cluster_with_hba(hba: &str) -> (PgCluster, std::path::PathBuf) {
    let dir = std::env::temp_dir().join(rekey_api::conformance::unique_name("rekey_pg_hba"));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("pg_hba.conf");
    std::fs::write(&file, hba).unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o755)).unwrap();
    std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o644)).unwrap();
    let pg = PgCluster::start_with(PgOptions::new().setting("hba_file", format!("'{}'", file.display())))
        .expect("cluster starts");
    (pg, dir)
}

/// pg_hba.conf admits the admin without TLS but turns the role away without it (a
/// `hostnossl ... reject` line for a group, as for accounts that must use TLS): with
/// `sslmode = "disable"` apply through the admin would succeed and verify fail, so
/// precheck (its probe of the role's route) and plan refuse first, naming the cause.
#[tokio::test]
async fn a_role_pg_hba_admits_only_over_tls_is_refused_before_apply() {
    let (pg, dir) = cluster_with_hba(
        "local all all trust\nhostnossl all +rekey_tls_only 127.0.0.1/32 reject\nhost all all 127.0.0.1/32 scram-sha-256\n",
    );
    {
        pg.psql("CREATE ROLE rekey_tls_only NOLOGIN");
        let role = TestRole::new(&pg, "pu_tlsonly");
        pg.psql(&format!("GRANT rekey_tls_only TO {}", quote_ident(&role.name)));
        let mut c = config(&pg, &role.name, true);
        c.sslmode = SslMode::Disable;
        let t = target(&c);
        // The precondition: the admin logs in over this route, the role does not.
        t.admin_backend_pid().await.expect("the admin connects without TLS");
        let refused = t.login(&role.doc()).await.unwrap_err();
        assert!(
            refused.to_string().contains("pg_hba.conf rejects connection"),
            "{refused}"
        );
        let before = pg.psql(&format!(
            "SELECT rolpassword FROM pg_authid WHERE rolname = {}",
            rekey_testbed::quote_literal(&role.name)
        ));
        for err in [
            t.precheck(Some(&role.doc())).await.unwrap_err(),
            t.precheck(None).await.unwrap_err(),
            t.preflight(Some(&role.doc())).await.unwrap_err(),
            t.preflight(None).await.unwrap_err(),
        ] {
            assert_error(
                &err,
                ErrorKind::AuthRejected,
                &[
                    &format!(
                        "role \"{}\" on 127.0.0.1:{}/postgres (sslmode=disable)",
                        role.name,
                        pg.port()
                    ),
                    "pg_hba.conf rejects connection",
                    "set sslmode = \"require\"",
                ],
                &[&role.password, &Secret::from(pg.admin_password())],
            );
        }
        let after = pg.psql(&format!(
            "SELECT rolpassword FROM pg_authid WHERE rolname = {}",
            rekey_testbed::quote_literal(&role.name)
        ));
        assert_eq!(before, after, "nothing changed");
    }
    drop(pg);
    let _ = std::fs::remove_dir_all(dir);
}

#[tokio::test]
async fn verifier_keep_keeps_md5() {
    let (pg, dir) = md5_cluster();
    {
        let role = TestRole::new(&pg, "pu_keepmd5");
        make_md5(&pg, &role.name, &role.password);
        assert_eq!(verifier_type(&pg, &role.name), "md5", "md5 before");
        let mut c = config(&pg, &role.name, true);
        c.verifier = VerifierPolicy::Keep;
        let t = target(&c);
        t.login(&role.doc()).await.expect("md5 login works on this cluster");
        let plan = t.preflight(Some(&role.doc())).await.unwrap().join("\n");
        assert!(plan.contains("stored as md5: kept (verifier = \"keep\")"), "{plan}");
        let new = rotate(&t, &role.doc()).await;
        assert_eq!(verifier_type(&pg, &role.name), "md5", "still md5");
        let stored = pg.psql(&format!(
            "SELECT rolpassword FROM pg_authid WHERE rolname = {}",
            rekey_testbed::quote_literal(&role.name)
        ));
        assert_eq!(
            stored,
            *rekey_postgres::md5_verifier(&new.password().unwrap(), &role.name)
        );
        // The default moves it to SCRAM, which this md5 method also accepts.
        let t = target(&config(&pg, &role.name, true));
        rotate(&t, &new).await;
        assert_eq!(verifier_type(&pg, &role.name), "SCRAM");
    }
    drop(pg);
    let _ = std::fs::remove_dir_all(dir);
}

#[tokio::test]
async fn connection_limit_with_the_slot_taken_is_refused_before_apply() {
    let pg = PgCluster::shared();
    let role = TestRole::with_options(pg, "pu_limit", "CONNECTION LIMIT 1");
    let session = open_session(pg, &role.name, &role.password).await;
    let sessions = pg.psql(&format!(
        "SELECT count(*) FROM pg_stat_activity WHERE usename = {}",
        rekey_testbed::quote_literal(&role.name)
    ));
    assert_eq!(sessions, "1", "the one slot is taken");
    let verifier_before = pg.psql(&format!(
        "SELECT rolpassword FROM pg_authid WHERE rolname = {}",
        rekey_testbed::quote_literal(&role.name)
    ));
    let t = target(&config(pg, &role.name, true));
    for err in [
        t.precheck(Some(&role.doc())).await.unwrap_err(),
        t.preflight(Some(&role.doc())).await.unwrap_err(),
    ] {
        assert_error(
            &err,
            ErrorKind::Conflict,
            &[
                &format!("role \"{}\"", role.name),
                "CONNECTION LIMIT 1 and 1 session(s) open",
                "nothing was changed",
            ],
            &[&role.password],
        );
        assert!(!err.is_retryable());
    }
    let verifier_after = pg.psql(&format!(
        "SELECT rolpassword FROM pg_authid WHERE rolname = {}",
        rekey_testbed::quote_literal(&role.name)
    ));
    assert_eq!(verifier_before, verifier_after, "nothing changed");
    drop(session);
    // Once the session ends there is a slot, and plan says so.
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while t.precheck(Some(&role.doc())).await.is_err() {
        assert!(std::time::Instant::now() < deadline, "the session did not end");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let plan = t.preflight(None).await.unwrap().join("\n");
    assert!(plan.contains("has CONNECTION LIMIT 1 with 0 session(s) open"), "{plan}");
    rotate(&t, &role.doc()).await;
}

/// The same for the database's `CONNECTION LIMIT` (`datconnlimit`): with its one slot
/// taken by another role's session, precheck and preflight refuse before anything
/// changes, naming the database; once the slot is free the rotation goes through.
#[tokio::test]
async fn database_connection_limit_with_the_slot_taken_is_refused_before_apply() {
    let pg = PgCluster::shared();
    let db = rekey_api::conformance::unique_name("pu_limitdb");
    pg.psql(&format!("CREATE DATABASE {} CONNECTION LIMIT 1", quote_ident(&db)));
    let role = TestRole::new(pg, "pu_dblimit");
    let other = TestRole::new(pg, "pu_dbother");
    pg.psql(&format!(
        "GRANT CONNECT ON DATABASE {d} TO {r}, {o}",
        d = quote_ident(&db),
        r = quote_ident(&role.name),
        o = quote_ident(&other.name)
    ));
    let session = open_session_on(pg, &other.name, &other.password, &db).await;
    let sessions = pg.psql(&format!(
        "SELECT count(*) FROM pg_stat_activity WHERE datname = {}",
        rekey_testbed::quote_literal(&db)
    ));
    assert_eq!(sessions, "1", "precondition: the database's one slot is taken");
    let verifier = || {
        pg.psql(&format!(
            "SELECT rolpassword FROM pg_authid WHERE rolname = {}",
            rekey_testbed::quote_literal(&role.name)
        ))
    };
    let before = verifier();
    let mut c = config(pg, &role.name, true);
    c.dbname = db.clone();
    let t = target(&c);
    let mut doc = role.doc();
    doc.set("dbname", db.as_str());
    for err in [
        t.precheck(Some(&doc)).await.unwrap_err(),
        t.preflight(Some(&doc)).await.unwrap_err(),
    ] {
        assert_error(
            &err,
            ErrorKind::Conflict,
            &[
                &format!("database \"{db}\""),
                "CONNECTION LIMIT 1 and 1 session(s) open",
                "nothing was changed",
            ],
            &[&role.password],
        );
    }
    assert_eq!(before, verifier(), "nothing changed");
    drop(session);
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while t.precheck(Some(&doc)).await.is_err() {
        assert!(std::time::Instant::now() < deadline, "the session did not end");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    rotate(&t, &doc).await;
    drop(t);
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while pg.try_psql(&format!("DROP DATABASE {}", quote_ident(&db))).is_err() {
        assert!(
            std::time::Instant::now() < deadline,
            "the test database could not be dropped"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// A role past its `VALID UNTIL`: the server answers 28P01 as for a wrong password;
/// `verify` with an admin says the password expired and when, the kind staying
/// `auth_rejected` (every password of the role is refused). Without an admin, and from
/// `login` (prove-dead's check, which expects a refusal), the server's answer alone. A
/// wrong password of a role that has not expired says nothing of expiry.
#[tokio::test]
async fn an_expired_password_is_reported_as_expired_by_verify() {
    let pg = PgCluster::shared();
    let role = TestRole::new(pg, "pu_lapsed");
    let with_admin = target(&config(pg, &role.name, true));
    let without_admin = target(&config(pg, &role.name, false));
    with_admin
        .verify(&role.doc())
        .await
        .expect("the password works before it expires");

    // A wrong password of a live role: refused, nothing about expiry.
    let err = with_admin.verify(&role.wrong_doc()).await.unwrap_err();
    assert_error(&err, ErrorKind::AuthRejected, &["SQLSTATE 28P01"], &[&role.password]);
    assert!(!err.to_string().contains("expired"), "{err}");
    assert!(!err.to_string().contains("VALID UNTIL"), "{err}");

    // VALID UNTIL a moment in the past, by the server's clock.
    pg.psql(&format!(
        "ALTER ROLE {} VALID UNTIL {}",
        quote_ident(&role.name),
        rekey_testbed::quote_literal(&pg.psql("SELECT (now() - interval '1 minute')::text"))
    ));
    let until = valid_until(pg, &role.name);
    let past = pg.psql(&format!(
        "SELECT rolvaliduntil < now() FROM pg_roles WHERE rolname = {}",
        rekey_testbed::quote_literal(&role.name)
    ));
    assert_eq!(past, "t", "VALID UNTIL {until} is past");

    let expired = format!("role \"{}\" is past its VALID UNTIL '{until}' (", role.name);
    for doc in [role.doc(), role.wrong_doc()] {
        let err = with_admin.verify(&doc).await.unwrap_err();
        assert_error(
            &err,
            ErrorKind::AuthRejected,
            &[
                "password expired: ",
                &expired,
                " ago)",
                "right or wrong",
                "SQLSTATE 28P01",
            ],
            &[&role.password, &doc.password().unwrap()],
        );
        assert_eq!(err.code(), Some(&rekey_api::ErrorCode::Sqlstate("28P01".into())));
    }
    for err in [
        without_admin.verify(&role.doc()).await.unwrap_err(),
        with_admin.login(&role.doc()).await.unwrap_err(),
    ] {
        assert_error(&err, ErrorKind::AuthRejected, &["SQLSTATE 28P01"], &[&role.password]);
        assert!(!err.to_string().contains("expired"), "{err}");
    }

    // The password itself was right all along: renewed, it works again.
    pg.psql(&format!(
        "ALTER ROLE {} VALID UNTIL 'infinity'",
        quote_ident(&role.name)
    ));
    with_admin
        .verify(&role.doc())
        .await
        .expect("renewed, the password works");
}
