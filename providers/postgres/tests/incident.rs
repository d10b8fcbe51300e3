//! What incident mode needs beyond rotation: ending the sessions of the role.
//! `incident_preflight` and `revoke` with `terminate_sessions` against a real cluster
//! (SCRAM enforced), with admins that may and may not end the role's backends under
//! PostgreSQL's rule: superuser, or the privileges of `pg_signal_backend` or of the role.

use rekey_api::conformance::random_password;
use rekey_api::{ErrorKind, RevokeOptions, Secret, Strategy, Target};
use rekey_postgres::{PostgresProvider, PostgresTarget, PostgresTargetConfig};
use rekey_testbed::{quote_ident, PgCluster};
use std::time::{Duration, Instant};

mod common;
use common::*;

const TERMINATE: RevokeOptions = RevokeOptions {
    terminate_sessions: true,
};

fn target(config: &PostgresTargetConfig) -> PostgresTarget {
    target_with(&PostgresProvider::new(), config, Strategy::Single)
}

/// `role`'s target administered by `admin`.
fn administered_by(pg: &PgCluster, role: &TestRole, admin: &TestRole) -> PostgresTarget {
    let mut c = config(pg, &role.name, false);
    c.admin = Some(admin.dsn());
    target(&c)
}

/// A `CREATEROLE` admin that may change `role`'s password (on PostgreSQL 16+ that also
/// takes `ADMIN OPTION` on the role, granted without its privileges) and nothing more.
fn createrole_admin<'a>(pg: &'a PgCluster, role: &TestRole) -> TestRole<'a> {
    let admin = TestRole::with_options(pg, "inc_admin", "CREATEROLE");
    if pg.server_version_num() >= 160000 {
        pg.psql(&format!(
            "GRANT {} TO {} WITH ADMIN OPTION, INHERIT FALSE, SET FALSE",
            quote_ident(&role.name),
            quote_ident(&admin.name)
        ));
    }
    admin
}

async fn open_session(pg: &PgCluster, user: &str, password: &Secret) -> tokio_postgres::Client {
    let mut c = tokio_postgres::Config::new();
    c.host(pg.host())
        .port(pg.port())
        .user(user)
        .password(password.expose())
        .dbname("postgres");
    let (client, connection) = c.connect(tokio_postgres::NoTls).await.expect("session connects");
    tokio::spawn(async move {
        let _ = connection.await;
    });
    client
}

/// A session as `user` that shows `application_name` in `pg_stat_activity`.
async fn open_named_session(
    pg: &PgCluster,
    user: &str,
    password: &Secret,
    application_name: &str,
) -> tokio_postgres::Client {
    let mut c = tokio_postgres::Config::new();
    c.host(pg.host())
        .port(pg.port())
        .user(user)
        .password(password.expose())
        .dbname("postgres")
        .application_name(application_name);
    let (client, connection) = c.connect(tokio_postgres::NoTls).await.expect("session connects");
    tokio::spawn(async move {
        let _ = connection.await;
    });
    client
}

async fn backend_pid(session: &tokio_postgres::Client) -> i32 {
    session
        .query_one("SELECT pg_backend_pid()", &[])
        .await
        .expect("pid")
        .get(0)
}

/// Waits (bounded) until no session of `role` named `rekey` (rekey's own logins) is left.
fn wait_for_no_rekey_session(pg: &PgCluster, role: &str) {
    wait_for_no_session_where(pg, role, "AND application_name = 'rekey'");
}

/// Waits (bounded) until the server has no session of `role` left: a terminated
/// backend stays in `pg_stat_activity` for a moment after its client saw the end.
fn wait_for_no_session(pg: &PgCluster, role: &str) {
    wait_for_no_session_where(pg, role, "");
}

fn wait_for_no_session_where(pg: &PgCluster, role: &str, extra: &str) {
    let query = format!(
        "SELECT count(*) FROM pg_stat_activity WHERE usename = {} {extra}",
        rekey_testbed::quote_literal(role)
    );
    let deadline = Instant::now() + Duration::from_secs(10);
    while pg.psql(&query).trim() != "0" {
        assert!(Instant::now() < deadline, "sessions of {role} ({extra}) did not end");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// The one note naming backend `pid`.
fn note_of(notes: &[String], pid: i32) -> String {
    let needle = format!("session pid {pid} ");
    let found: Vec<&String> = notes.iter().filter(|n| n.starts_with(&needle)).collect();
    assert_eq!(found.len(), 1, "one note for pid {pid}: {notes:?}");
    found[0].clone()
}

fn assert_no_secret(notes: &[String], secrets: &[&Secret]) {
    for note in notes {
        assert!(!note.contains('\n'), "one line: {note:?}");
        for s in secrets {
            assert!(!note.contains(s.expose()), "a note shows a secret: {note}");
        }
    }
}

async fn wait_closed(session: &tokio_postgres::Client) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while session.simple_query("SELECT 1").await.is_ok() {
        assert!(Instant::now() < deadline, "the session survived");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn superuser_admin_may_end_sessions() {
    let pg = PgCluster::shared();
    let role = TestRole::new(pg, "inc_su");
    let t = target(&config(pg, &role.name, true));
    let lines = t.incident_preflight().await.unwrap();
    let text = lines.join("\n");
    assert!(
        text.contains(&format!(
            "admin \"postgres\" may end the sessions of role \"{}\" (superuser)",
            role.name
        )),
        "{text}"
    );
    assert!(text.contains("every session of role"), "{text}");
    assert!(!text.contains(pg.admin_password()));
}

#[tokio::test]
async fn createrole_admin_without_pg_signal_backend_cannot_until_granted() {
    let pg = PgCluster::shared();
    let role = TestRole::new(pg, "inc_app");
    let admin = createrole_admin(pg, &role);
    let t = administered_by(pg, &role, &admin);
    let expected = format!(
        "admin role \"{}\" may change the password of role \"{}\" on 127.0.0.1:{} but not end its sessions: it \
         lacks pg_signal_backend (GRANT pg_signal_backend TO \"{}\")",
        admin.name,
        role.name,
        pg.port(),
        admin.name
    );

    // Read-only: the preflight says so before anything changes.
    let err = t.incident_preflight().await.unwrap_err();
    assert_error(
        &err,
        ErrorKind::PermissionDenied,
        &[&expected],
        &[&admin.password, &role.password],
    );
    // A routine preflight is unaffected (terminate_sessions is off).
    t.preflight(Some(&role.doc())).await.unwrap();

    // The rotation itself works; ending the sessions is refused with the same reason.
    let session = open_session(pg, &role.name, &role.password).await;
    let current = role.doc();
    let new = t.prepare(Some(&current), random_password(32)).await.unwrap();
    t.apply(&new, Some(&current)).await.unwrap();
    t.verify(&new).await.unwrap();
    let err = t.revoke(&current, &new, TERMINATE).await.unwrap_err();
    assert_error(
        &err,
        ErrorKind::PermissionDenied,
        &[&expected, "42501"],
        &[&admin.password, &role.password, &new.password().unwrap()],
    );
    assert!(!err.is_retryable());
    session
        .simple_query("SELECT 1")
        .await
        .expect("the session is still open");
    // A plain revoke has nothing to do for `single`.
    t.revoke(&current, &new, RevokeOptions::default()).await.unwrap();

    pg.psql(&format!("GRANT pg_signal_backend TO {}", quote_ident(&admin.name)));
    let lines = t.incident_preflight().await.unwrap();
    assert!(
        lines[0].contains(&format!(
            "admin \"{}\" may end the sessions of role \"{}\" (member of pg_signal_backend)",
            admin.name, role.name
        )),
        "{lines:?}"
    );
    let pid = backend_pid(&session).await;
    let report = t.revoke(&current, &new, TERMINATE).await.unwrap();
    assert!(report.sessions_terminated >= 1, "{report:?}");
    // Without pg_read_all_stats the admin sees the pid, not the address.
    let note = note_of(&report.notes, pid);
    assert!(note.contains("hidden from the admin"), "{note}");
    assert_no_secret(
        &report.notes,
        &[&role.password, &new.password().unwrap(), &admin.password],
    );
    wait_closed(&session).await;
    t.login(&new).await.expect("the new password still logs in");
}

#[tokio::test]
async fn membership_in_the_role_counts_only_when_it_inherits() {
    let pg = PgCluster::shared();
    let role = TestRole::new(pg, "inc_member");
    let admin = createrole_admin(pg, &role);
    let t = administered_by(pg, &role, &admin);

    // A member that does not inherit the role's privileges may not signal its backends.
    pg.psql(&format!(
        "ALTER ROLE {admin} NOINHERIT; GRANT {role} TO {admin}",
        admin = quote_ident(&admin.name),
        role = quote_ident(&role.name)
    ));
    let err = t.incident_preflight().await.unwrap_err();
    assert_error(
        &err,
        ErrorKind::PermissionDenied,
        &["GRANT pg_signal_backend TO", "does not inherit"],
        &[&admin.password],
    );
    let session = open_session(pg, &role.name, &role.password).await;
    let err = t.revoke(&role.doc(), &role.doc(), TERMINATE).await.unwrap_err();
    assert_error(&err, ErrorKind::PermissionDenied, &["does not inherit", "42501"], &[]);
    session.simple_query("SELECT 1").await.expect("still open");

    // An inheriting member may.
    pg.psql(&format!("ALTER ROLE {} INHERIT", quote_ident(&admin.name)));
    let lines = t.incident_preflight().await.unwrap();
    assert!(lines[0].contains("(it has the privileges of the role)"), "{lines:?}");
    let report = t.revoke(&role.doc(), &role.doc(), TERMINATE).await.unwrap();
    assert!(report.sessions_terminated >= 1, "{report:?}");
    wait_closed(&session).await;
}

#[tokio::test]
async fn only_a_superuser_may_end_a_superusers_sessions() {
    let pg = PgCluster::shared();
    let boss = TestRole::with_options(pg, "inc_boss", "SUPERUSER");
    let admin = TestRole::with_options(pg, "inc_sig", "CREATEROLE");
    pg.psql(&format!("GRANT pg_signal_backend TO {}", quote_ident(&admin.name)));
    let t = administered_by(pg, &boss, &admin);
    let err = t.incident_preflight().await.unwrap_err();
    assert_error(
        &err,
        ErrorKind::PermissionDenied,
        &[
            &format!(
                "admin role \"{}\" may not end the sessions of role \"{}\"",
                admin.name, boss.name
            ),
            "only a superuser",
        ],
        &[&admin.password, &boss.password],
    );
}

#[tokio::test]
async fn without_admin_the_role_ends_its_own_sessions() {
    let pg = PgCluster::shared();
    let role = TestRole::new(pg, "inc_self");
    let t = target(&config(pg, &role.name, false));
    let lines = t.incident_preflight().await.unwrap();
    assert!(lines[0].contains("will end its own sessions"), "{lines:?}");
}

#[tokio::test]
async fn missing_role_is_not_found() {
    let pg = PgCluster::shared();
    let t = target(&config(pg, "inc_nobody_here", true));
    let err = t.incident_preflight().await.unwrap_err();
    assert_error(&err, ErrorKind::NotFound, &["inc_nobody_here", "does not exist"], &[]);
}

#[tokio::test]
async fn alternating_checks_both_roles() {
    let pg = PgCluster::shared();
    let a = TestRole::new(pg, "inc_alt_a");
    let b = TestRole::new(pg, "inc_alt_b");
    let admin = TestRole::with_options(pg, "inc_alt_admin", "CREATEROLE");
    // May end a's sessions (inheriting member), not b's.
    pg.psql(&format!(
        "GRANT {} TO {}",
        quote_ident(&a.name),
        quote_ident(&admin.name)
    ));
    let mut c = PostgresTargetConfig::new_alternating(pg.host(), &a.name, &b.name);
    c.port = pg.port();
    c.admin = Some(admin.dsn());
    let t = target_with(&PostgresProvider::new(), &c, Strategy::Alternating);
    let err = t.incident_preflight().await.unwrap_err();
    assert_error(
        &err,
        ErrorKind::PermissionDenied,
        &[&format!("role \"{}\"", b.name), "GRANT pg_signal_backend TO"],
        &[&admin.password],
    );
    pg.psql(&format!("GRANT pg_signal_backend TO {}", quote_ident(&admin.name)));
    let lines = t.incident_preflight().await.unwrap();
    assert_eq!(lines.len(), 3, "{lines:?}");
    assert!(lines[2].contains("previous role"), "{lines:?}");
}

#[tokio::test]
async fn preflight_with_terminate_sessions_needs_the_privilege() {
    let pg = PgCluster::shared();
    let role = TestRole::new(pg, "inc_cfg");
    let admin = createrole_admin(pg, &role);
    let mut c = config(pg, &role.name, false);
    c.admin = Some(admin.dsn());
    c.terminate_sessions = true;
    let t = target(&c);
    let err = t.preflight(Some(&role.doc())).await.unwrap_err();
    assert_error(
        &err,
        ErrorKind::PermissionDenied,
        &["but not end its sessions", "GRANT pg_signal_backend TO"],
        &[&admin.password, &role.password],
    );
    pg.psql(&format!("GRANT pg_signal_backend TO {}", quote_ident(&admin.name)));
    let lines = t.preflight(Some(&role.doc())).await.unwrap();
    assert!(
        lines.iter().any(|l| l.contains("(member of pg_signal_backend)")),
        "{lines:?}"
    );
}

#[tokio::test]
async fn revoke_notes_name_the_sessions_it_ended() {
    let pg = PgCluster::shared();
    let role = TestRole::new(pg, "inc_notes");
    let t = target(&config(pg, &role.name, true));
    let tcp = open_named_session(pg, &role.name, &role.password, "billing-worker").await;
    let tcp_pid = backend_pid(&tcp).await;
    // A client name holding the password is not repeated.
    let sneaky = open_named_session(pg, &role.name, &role.password, &format!("x{}", role.password.expose())).await;
    let sneaky_pid = backend_pid(&sneaky).await;
    let current = role.doc();
    let new = t.prepare(Some(&current), random_password(32)).await.unwrap();
    t.apply(&new, Some(&current)).await.unwrap();
    t.verify(&new).await.unwrap();
    // verify's own login has closed, but on a busy machine its server process may still
    // be ending: wait until it is gone, so that only the two sessions above remain.
    wait_for_no_rekey_session(pg, &role.name);

    let report = t.revoke(&current, &new, TERMINATE).await.unwrap();
    assert_eq!(report.sessions_terminated, 2, "{report:?}");
    assert_eq!(report.notes.len(), 2, "{report:?}");
    let note = note_of(&report.notes, tcp_pid);
    assert!(
        note.starts_with(&format!(
            "session pid {tcp_pid} from 127.0.0.1 (billing-worker) since 20"
        )),
        "{note}"
    );
    assert!(note.ends_with("Z ended"), "{note}");
    let note = note_of(&report.notes, sneaky_pid);
    assert!(note.contains("(name withheld: it contains a secret)"), "{note}");
    assert_no_secret(&report.notes, &[&role.password, &new.password().unwrap()]);
    wait_closed(&tcp).await;
    wait_closed(&sneaky).await;
    // The ended backends may still be exiting on the server: wait until they are gone.
    wait_for_no_session(pg, &role.name);

    // Nothing left to end: no notes.
    let report = t.revoke(&current, &new, TERMINATE).await.unwrap();
    assert_eq!((report.sessions_terminated, report.notes.len()), (0, 0), "{report:?}");
}

#[tokio::test]
async fn revoke_notes_stop_at_twenty_sessions() {
    let pg = PgCluster::shared();
    let role = TestRole::new(pg, "inc_many");
    let t = target(&config(pg, &role.name, true));
    let mut sessions = Vec::new();
    for i in 0..23 {
        sessions.push(open_named_session(pg, &role.name, &role.password, &format!("worker-{i}")).await);
    }
    let report = t.revoke(&role.doc(), &role.doc(), TERMINATE).await.unwrap();
    assert_eq!(report.sessions_terminated, 23, "{report:?}");
    assert_eq!(report.notes.len(), 21, "{report:?}");
    assert!(
        report.notes[..20].iter().all(|n| n.starts_with("session pid ")),
        "{report:?}"
    );
    assert_eq!(report.notes[20], "... and 3 more sessions ended");
    for s in &sessions {
        wait_closed(s).await;
    }
}

#[tokio::test]
async fn without_admin_the_notes_show_the_roles_own_sessions() {
    let pg = PgCluster::shared();
    let role = TestRole::new(pg, "inc_self_notes");
    let t = target(&config(pg, &role.name, false));
    let session = open_named_session(pg, &role.name, &role.password, "cron-job").await;
    let pid = backend_pid(&session).await;
    let current = role.doc();
    let new = t.prepare(Some(&current), random_password(32)).await.unwrap();
    t.apply(&new, Some(&current)).await.unwrap();
    // apply logged in as the role itself: wait until that session has ended.
    wait_for_no_rekey_session(pg, &role.name);
    let report = t.revoke(&current, &new, TERMINATE).await.unwrap();
    assert_eq!(report.sessions_terminated, 1, "{report:?}");
    let note = note_of(&report.notes, pid);
    assert!(note.contains("from 127.0.0.1 (cron-job) since "), "{note}");
    assert_no_secret(&report.notes, &[&role.password, &new.password().unwrap()]);
    wait_closed(&session).await;
}
