//! What incident mode needs beyond rotation: ending the user's sessions.
//! `incident_preflight` and `revoke` with `terminate_sessions` against the machine's
//! MariaDB, with admins that may and may not end other users' connections under the
//! rule the crate applies: global `PROCESS` (to see them) and `CONNECTION ADMIN` or
//! `SUPER` (to `KILL` them), as the admin's own `SHOW GRANTS` lists them.

mod common;

use common::*;
use mysql_async::prelude::Queryable;
use rekey_api::conformance::{random_password, unique_name};
use rekey_api::{ErrorKind, RevokeOptions, Secret, Strategy, Target};
use rekey_mysql::{native_password_hash, MysqlProvider, MysqlTarget, MysqlTargetConfig};

const TERMINATE: RevokeOptions = RevokeOptions {
    terminate_sessions: true,
};

fn target(user: &str, admin: Option<&TestAdmin>) -> MysqlTarget {
    let mut c = MysqlTargetConfig::new(host(), user);
    c.port = port();
    c.admin = admin.map(TestAdmin::url);
    MysqlProvider::new()
        .mysql_target(&c, Strategy::Single)
        .expect("target builds")
}

async fn alive(conn: &mut mysql_async::Conn) -> bool {
    conn.query_drop("SELECT 1").await.is_ok()
}

/// `'name'@'%'` as the admin's CURRENT_USER() is quoted in messages.
fn admin_account(admin: &TestAdmin) -> String {
    format!("'{}'@'%'", admin.user.name)
}

#[tokio::test]
async fn admin_with_process_and_connection_admin_may_end_sessions() {
    let admin = TestAdmin::new();
    let user = TestUser::new("rk_ip_ok");
    let t = target(&user.name, Some(&admin));
    let lines = t.incident_preflight().await.unwrap();
    let text = lines.join("\n");
    assert!(
        text.contains(&format!(
            "may end the sessions of user '{}'@'%' (PROCESS to see them, CONNECTION ADMIN or SUPER to end them)",
            user.name
        )),
        "{text}"
    );
    assert!(!text.contains(admin.user.password.expose()));
}

#[tokio::test]
async fn admin_without_them_cannot_until_granted() {
    // Enough to change passwords; nothing to see or end other users' sessions.
    let admin = TestAdmin::with_grants(&["CREATE USER ON *.*", "SELECT ON mysql.*"]);
    let user = TestUser::new("rk_ip_no");
    let t = target(&user.name, Some(&admin));
    let expected = format!(
        "admin {a} may change the password of user '{u}'@'%' on {e} but not end its sessions: it lacks PROCESS \
         (to see them) and CONNECTION ADMIN or SUPER (to end them) (GRANT PROCESS, CONNECTION ADMIN ON *.* TO {a})",
        a = admin_account(&admin),
        u = user.name,
        e = endpoint()
    );
    let err = t.incident_preflight().await.unwrap_err();
    assert_error(
        &err,
        ErrorKind::PermissionDenied,
        &[&expected],
        &[&admin.user.password, &user.password],
    );
    // A routine preflight only notes it.
    let lines = t.preflight(Some(&user.doc())).await.unwrap();
    assert!(
        lines
            .iter()
            .any(|l| l.contains("ending sessions (incident mode) would fail")),
        "{lines:?}"
    );

    // The rotation works; ending the sessions is refused with the same reason.
    let mut open = raw_session(&user.name, &user.password).await;
    let current = user.doc();
    let new = t.prepare(Some(&current), random_password(32)).await.unwrap();
    t.apply(&new, Some(&current)).await.unwrap();
    t.verify(&new).await.unwrap();
    let err = t.revoke(&current, &new, TERMINATE).await.unwrap_err();
    assert_error(
        &err,
        ErrorKind::PermissionDenied,
        &[&expected],
        &[&admin.user.password, &user.password, &new.password().unwrap()],
    );
    assert!(alive(&mut open).await, "the session is still open");

    // PROCESS alone: the sessions are found, KILL is refused (error 1095).
    root_sql(&format!("GRANT PROCESS ON *.* TO {}", account(&admin.user.name)));
    // Global grants reach new connections only: a new target opens a new admin connection.
    let t = target(&user.name, Some(&admin));
    let expected_kill = format!(
        "admin {a} may change the password of user '{u}'@'%' on {e} but not end its sessions: it lacks CONNECTION \
         ADMIN or SUPER (GRANT CONNECTION ADMIN ON *.* TO {a})",
        a = admin_account(&admin),
        u = user.name,
        e = endpoint()
    );
    let err = t.incident_preflight().await.unwrap_err();
    assert_error(&err, ErrorKind::PermissionDenied, &[&expected_kill], &[]);
    let err = t.revoke(&current, &new, TERMINATE).await.unwrap_err();
    assert_error(&err, ErrorKind::PermissionDenied, &[&expected_kill, "1095"], &[]);
    assert!(alive(&mut open).await, "the session is still open");

    root_sql(&format!(
        "GRANT CONNECTION ADMIN ON *.* TO {}",
        account(&admin.user.name)
    ));
    let t = target(&user.name, Some(&admin));
    t.incident_preflight().await.unwrap();
    let report = t.revoke(&current, &new, TERMINATE).await.unwrap();
    assert_eq!(report.sessions_terminated, 1);
    assert!(!alive(&mut open).await, "the session was ended");
    t.login(&new).await.unwrap();
}

#[tokio::test]
async fn super_counts_as_connection_admin() {
    let admin = TestAdmin::with_grants(&["CREATE USER, PROCESS, SUPER ON *.*"]);
    let user = TestUser::new("rk_ip_super");
    let t = target(&user.name, Some(&admin));
    t.incident_preflight().await.unwrap();
    let mut open = raw_session(&user.name, &user.password).await;
    let report = t.revoke(&user.doc(), &user.doc(), TERMINATE).await.unwrap();
    assert_eq!(report.sessions_terminated, 1);
    assert!(!alive(&mut open).await);
}

/// A MariaDB role, dropped at the end of the test.
struct TestRole(String);

impl Drop for TestRole {
    fn drop(&mut self) {
        let _ = try_root_sql(&format!("DROP ROLE IF EXISTS {}", lit(&self.0)));
    }
}

#[tokio::test]
async fn privileges_of_the_admins_default_role_count() {
    let admin = TestAdmin::with_grants(&["CREATE USER ON *.*"]);
    let role = TestRole(unique_name("rk_ip_role"));
    root_sql(&format!(
        "CREATE ROLE {r}; GRANT PROCESS, CONNECTION ADMIN ON *.* TO {r}; GRANT {r} TO {a}; SET DEFAULT ROLE {r} FOR {a}",
        r = lit(&role.0),
        a = account(&admin.user.name)
    ));
    let user = TestUser::new("rk_ip_viarole");
    let t = target(&user.name, Some(&admin));
    t.incident_preflight().await.unwrap();
    let mut open = raw_session(&user.name, &user.password).await;
    let report = t.revoke(&user.doc(), &user.doc(), TERMINATE).await.unwrap();
    assert_eq!(report.sessions_terminated, 1);
    assert!(!alive(&mut open).await);
}

#[tokio::test]
async fn admin_that_may_not_alter_users_is_named_so() {
    let admin = TestAdmin::with_grants(&["SELECT ON mysql.*"]);
    let user = TestUser::new("rk_ip_weak");
    let err = target(&user.name, Some(&admin)).incident_preflight().await.unwrap_err();
    assert_error(
        &err,
        ErrorKind::PermissionDenied,
        &[&format!(
            "admin {} may not end the sessions of user '{}'@'%'",
            admin_account(&admin),
            user.name
        )],
        &[&admin.user.password],
    );
}

#[tokio::test]
async fn without_admin_the_user_ends_its_own_sessions() {
    let user = TestUser::new("rk_ip_self");
    let lines = target(&user.name, None).incident_preflight().await.unwrap();
    assert!(lines[0].contains("will end its own sessions"), "{lines:?}");
}

#[tokio::test]
async fn preflight_with_terminate_sessions_needs_them() {
    let admin = TestAdmin::with_grants(&["CREATE USER ON *.*", "SELECT ON mysql.*"]);
    let user = TestUser::new("rk_ip_cfg");
    let mut c = MysqlTargetConfig::new(host(), &user.name);
    c.port = port();
    c.admin = Some(admin.url());
    c.terminate_sessions = true;
    let t = MysqlProvider::new().mysql_target(&c, Strategy::Single).unwrap();
    let err = t.preflight(Some(&user.doc())).await.unwrap_err();
    assert_error(
        &err,
        ErrorKind::PermissionDenied,
        &[
            "terminate_sessions is set but admin",
            "GRANT PROCESS, CONNECTION ADMIN ON *.*",
        ],
        &[&admin.user.password, &user.password],
    );
}

async fn connection_id(conn: &mut mysql_async::Conn) -> u64 {
    conn.query_first("SELECT CONNECTION_ID()")
        .await
        .expect("connection id")
        .expect("a row")
}

/// The one note naming thread `id`; every note one line, without a secret or its hash.
fn note_of(notes: &[String], id: u64, secrets: &[&Secret]) -> String {
    for note in notes {
        assert!(!note.contains('\n'), "one line: {note:?}");
        for s in secrets {
            assert!(!note.contains(s.expose()), "a note shows a secret: {note}");
            assert!(
                !note.contains(&native_password_hash(s)[1..]),
                "a note shows a hash: {note}"
            );
        }
    }
    let needle = format!("session id {id} ");
    let found: Vec<&String> = notes.iter().filter(|n| n.starts_with(&needle)).collect();
    assert_eq!(found.len(), 1, "one note for thread {id}: {notes:?}");
    found[0].clone()
}

#[tokio::test]
async fn revoke_notes_name_the_sessions_it_ended() {
    let admin = TestAdmin::new();
    let user = TestUser::new("rk_ip_notes");
    let t = target(&user.name, Some(&admin));
    let opts = mysql_async::OptsBuilder::default()
        .ip_or_hostname(host())
        .tcp_port(port())
        .user(Some(&user.name))
        .pass(Some(user.password.expose()))
        .db_name(Some("information_schema"))
        .prefer_socket(false);
    let mut in_db = mysql_async::Conn::new(opts).await.expect("session connects");
    let in_db_id = connection_id(&mut in_db).await;
    let mut plain = raw_session(&user.name, &user.password).await;
    let plain_id = connection_id(&mut plain).await;
    let current = user.doc();
    let new = t.prepare(Some(&current), random_password(32)).await.unwrap();
    t.apply(&new, Some(&current)).await.unwrap();

    let report = t.revoke(&current, &new, TERMINATE).await.unwrap();
    assert_eq!(report.sessions_terminated, 2, "{report:?}");
    assert_eq!(report.notes.len(), 2, "{report:?}");
    let secrets = [&user.password, &new.password().unwrap(), &admin.user.password];
    let note = note_of(&report.notes, in_db_id, &secrets);
    assert!(
        note.starts_with(&format!("session id {in_db_id} from 127.0.0.1:")),
        "{note}"
    );
    assert!(note.contains("(db information_schema, Sleep for "), "{note}");
    assert!(note.ends_with(" s) ended"), "{note}");
    let note = note_of(&report.notes, plain_id, &secrets);
    assert!(note.contains("(Sleep for "), "{note}");
    assert!(!alive(&mut in_db).await && !alive(&mut plain).await);

    // Nothing left: no notes.
    let report = t.revoke(&current, &new, TERMINATE).await.unwrap();
    assert_eq!((report.sessions_terminated, report.notes.len()), (0, 0), "{report:?}");
}

#[tokio::test]
async fn without_admin_the_notes_name_the_users_own_sessions() {
    let user = TestUser::new("rk_ip_self_notes");
    let t = target(&user.name, None);
    let mut open = raw_session(&user.name, &user.password).await;
    let id = connection_id(&mut open).await;
    let current = user.doc();
    let new = t.prepare(Some(&current), random_password(32)).await.unwrap();
    t.apply(&new, Some(&current)).await.unwrap();
    let report = t.revoke(&current, &new, TERMINATE).await.unwrap();
    assert_eq!(report.sessions_terminated, 1, "{report:?}");
    let note = note_of(&report.notes, id, &[&user.password, &new.password().unwrap()]);
    assert!(note.starts_with(&format!("session id {id} from 127.0.0.1:")), "{note}");
    assert!(!alive(&mut open).await);
}
