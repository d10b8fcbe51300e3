//! What incident mode needs beyond rotation: ending the user's connections.
//! `incident_preflight` and `revoke` with `terminate_sessions` against a real Redis with
//! ACL authentication enforced, with admin users that may and may not run `CLIENT KILL`
//! (asked with `ACL DRYRUN`, or with a `CLIENT KILL ID 0` that matches nothing).

mod common;

use common::*;
use rekey_api::conformance::random_password;
use rekey_api::{ErrorKind, RevokeOptions, Strategy, Target};
use rekey_redis::{acl_password_hash, RedisProvider, RedisTarget};
use rekey_testbed::RedisServer;

const TERMINATE: RevokeOptions = RevokeOptions {
    terminate_sessions: true,
};

fn administered(server: &RedisServer, user: &TestUser, admin: Option<&TestUser>, strategy: Strategy) -> RedisTarget {
    target(
        &RedisProvider::new(),
        &config(server.port(), &user.name, admin.map(|a| a.url(server.port()))),
        strategy,
    )
}

/// A connection authenticated as `user`, answering a command.
fn session(server: &RedisServer, user: &TestUser) -> redis::Connection {
    let url = format!(
        "redis://{}:{}@127.0.0.1:{}",
        user.name,
        user.password.expose(),
        server.port()
    );
    let mut conn = redis::Client::open(url).unwrap().get_connection().unwrap();
    assert!(alive(&mut conn));
    conn
}

fn alive(conn: &mut redis::Connection) -> bool {
    redis::cmd("ACL").arg("WHOAMI").query::<String>(conn).is_ok()
}

#[tokio::test]
async fn admin_that_may_run_client_kill() {
    let server = RedisServer::machine();
    let admin = TestUser::admin(&server);
    let user = TestUser::app(&server, "rk_ip_ok");
    let t = administered(&server, &user, Some(&admin), Strategy::Dual);
    let lines = t.incident_preflight().await.unwrap();
    let text = lines.join("\n");
    assert!(
        text.contains(&format!(
            "admin \"{}\" on 127.0.0.1:{} may end the connections of user \"{}\" (CLIENT KILL USER allowed; \
             checked with ACL DRYRUN)",
            admin.name,
            server.port(),
            user.name
        )),
        "{text}"
    );
    assert!(text.contains("every connection of user"), "{text}");
    assert!(!text.contains(admin.password.expose()));
}

#[tokio::test]
async fn dual_with_an_admin_without_client_kill_until_allowed() {
    let server = RedisServer::machine();
    let admin = TestUser::new(&server, "rk_nokill", &["~*", "&*", "+@all", "-client|kill"]);
    let user = TestUser::app(&server, "rk_ip_dual");
    let t = administered(&server, &user, Some(&admin), Strategy::Dual);
    let expected = format!(
        "admin user \"{a}\" may change the passwords of user \"{u}\" on 127.0.0.1:{p} but not end its connections: \
         it may not run CLIENT KILL (ACL SETUSER \"{a}\" +client|kill)",
        a = admin.name,
        u = user.name,
        p = server.port()
    );
    let err = t.incident_preflight().await.unwrap_err();
    assert_error(
        &err,
        ErrorKind::PermissionDenied,
        &[&expected],
        &[&admin.password, &user.password],
    );
    // A routine preflight is unaffected (terminate_sessions is off).
    t.preflight(Some(&user.doc())).await.unwrap();

    // The rotation works, the old password is removed; ending the connections is refused
    // with the same reason, and the connection opened with the old password stays.
    let mut open = session(&server, &user);
    let old = user.doc();
    let new = t.prepare(Some(&old), random_password(32)).await.unwrap();
    t.apply(&new, Some(&old)).await.unwrap();
    t.verify(&new).await.unwrap();
    let err = t.revoke(&old, &new, TERMINATE).await.unwrap_err();
    assert_error(
        &err,
        ErrorKind::PermissionDenied,
        &[&expected, "NOPERM"],
        &[&admin.password, &user.password, &new.password().unwrap()],
    );
    assert_eq!(
        user.passwords(),
        vec![acl_password_hash(&new.password().unwrap())],
        "the old password was removed"
    );
    assert_eq!(t.login(&old).await.unwrap_err().kind(), ErrorKind::AuthRejected);
    assert!(alive(&mut open), "the connection is still open");

    // ACL changes apply to the admin's open connection at once.
    server.cmd(&["ACL", "SETUSER", &admin.name, "+client|kill"]);
    t.incident_preflight().await.unwrap();
    let report = t.revoke(&old, &new, TERMINATE).await.unwrap();
    assert_eq!(report.sessions_terminated, 1);
    assert!(!alive(&mut open), "the connection was ended");
    t.login(&new).await.unwrap();
}

#[tokio::test]
async fn without_acl_dryrun_a_kill_that_matches_nothing_answers() {
    let server = RedisServer::machine();
    let user = TestUser::app(&server, "rk_ip_probe");
    let mut bystander = session(&server, &user);
    // May change users and kill, may not ACL DRYRUN.
    let killer = TestUser::new(
        &server,
        "rk_probe_kill",
        &["~*", "+acl|setuser", "+acl|getuser", "+client|kill"],
    );
    let t = administered(&server, &user, Some(&killer), Strategy::Single);
    let lines = t.incident_preflight().await.unwrap();
    assert!(lines[0].contains("checked with CLIENT KILL ID 0"), "{lines:?}");
    assert!(alive(&mut bystander), "the probe ended no connection");
    // Neither: refused, without claiming it may change the passwords (unknown).
    let neither = TestUser::new(&server, "rk_probe_none", &["~*", "+acl|setuser", "+acl|getuser"]);
    let t = administered(&server, &user, Some(&neither), Strategy::Single);
    let err = t.incident_preflight().await.unwrap_err();
    assert_error(
        &err,
        ErrorKind::PermissionDenied,
        &[
            &format!(
                "admin user \"{}\" may not end the connections of user \"{}\"",
                neither.name, user.name
            ),
            "+client|kill",
        ],
        &[&neither.password],
    );
    assert!(alive(&mut bystander));
}

#[tokio::test]
async fn without_admin_it_is_said_what_is_needed() {
    let server = RedisServer::machine();
    let user = TestUser::app(&server, "rk_ip_self");
    let t = administered(&server, &user, None, Strategy::Single);
    let lines = t.incident_preflight().await.unwrap();
    assert!(lines[0].contains("will end its own connections"), "{lines:?}");
    assert!(lines[0].contains("+client|kill"), "{lines:?}");
}

#[tokio::test]
async fn user_without_client_kill_ending_its_own_connections() {
    let server = RedisServer::machine();
    let user = TestUser::new(&server, "rk_ip_ownkill", &["~*", "&*", "+@all", "-client|kill"]);
    let t = administered(&server, &user, None, Strategy::Single);
    let mut open = session(&server, &user);
    let old = user.doc();
    let new = t.prepare(Some(&old), random_password(32)).await.unwrap();
    t.apply(&new, Some(&old)).await.unwrap();
    let err = t.revoke(&old, &new, TERMINATE).await.unwrap_err();
    assert_error(
        &err,
        ErrorKind::PermissionDenied,
        &[&format!(
            "user \"{u}\" on 127.0.0.1:{p} may change its own passwords but not end its connections: it may not run \
             CLIENT KILL (ACL SETUSER \"{u}\" +client|kill)",
            u = user.name,
            p = server.port()
        )],
        &[&user.password, &new.password().unwrap()],
    );
    assert!(alive(&mut open));
}

#[tokio::test]
async fn preflight_with_terminate_sessions_needs_client_kill() {
    let server = RedisServer::machine();
    let admin = TestUser::new(&server, "rk_nokill_cfg", &["~*", "&*", "+@all", "-client|kill"]);
    let user = TestUser::app(&server, "rk_ip_cfg");
    let mut c = config(server.port(), &user.name, Some(admin.url(server.port())));
    c.terminate_sessions = true;
    let t = target(&RedisProvider::new(), &c, Strategy::Dual);
    let err = t.preflight(Some(&user.doc())).await.unwrap_err();
    assert_error(
        &err,
        ErrorKind::PermissionDenied,
        &["but not end its connections", "+client|kill"],
        &[&admin.password, &user.password],
    );
}

/// A connection as `user` named `name` (`CLIENT SETNAME`); its server id.
fn named_session(server: &RedisServer, user: &TestUser, name: &str) -> (redis::Connection, i64) {
    let mut conn = session(server, user);
    redis::cmd("CLIENT")
        .arg("SETNAME")
        .arg(name)
        .query::<()>(&mut conn)
        .unwrap();
    let id: i64 = redis::cmd("CLIENT").arg("ID").query(&mut conn).unwrap();
    (conn, id)
}

/// The one note naming connection `id`; every note one line, without a secret or its hash.
fn note_of(notes: &[String], id: i64, secrets: &[&rekey_api::Secret]) -> String {
    for note in notes {
        assert!(!note.contains('\n'), "one line: {note:?}");
        for s in secrets {
            assert!(!note.contains(s.expose()), "a note shows a secret: {note}");
            assert!(!note.contains(&acl_password_hash(s)), "a note shows a hash: {note}");
        }
    }
    let needle = format!("connection id {id} ");
    let found: Vec<&String> = notes.iter().filter(|n| n.starts_with(&needle)).collect();
    assert_eq!(found.len(), 1, "one note for connection {id}: {notes:?}");
    found[0].clone()
}

#[tokio::test]
async fn revoke_notes_name_the_connections_it_ended() {
    let server = RedisServer::machine();
    let admin = TestUser::admin(&server);
    let user = TestUser::app(&server, "rk_ip_notes");
    let t = administered(&server, &user, Some(&admin), Strategy::Dual);
    let (mut worker, worker_id) = named_session(&server, &user, "billing-worker");
    let (mut sneaky, sneaky_id) = named_session(&server, &user, &format!("x{}", user.password.expose()));
    let old = user.doc();
    let new = t.prepare(Some(&old), random_password(32)).await.unwrap();
    t.apply(&new, Some(&old)).await.unwrap();

    let report = t.revoke(&old, &new, TERMINATE).await.unwrap();
    assert_eq!(report.sessions_terminated, 2, "{report:?}");
    let secrets = [&user.password, &new.password().unwrap(), &admin.password];
    let note = note_of(&report.notes, worker_id, &secrets);
    assert!(
        note.starts_with(&format!("connection id {worker_id} from 127.0.0.1:")),
        "{note}"
    );
    assert!(note.contains(" (billing-worker), open "), "{note}");
    assert!(note.ends_with(" s, ended"), "{note}");
    let note = note_of(&report.notes, sneaky_id, &secrets);
    assert!(note.contains("(name withheld: it contains a secret)"), "{note}");
    assert_eq!(report.notes.len(), 2, "{report:?}");
    assert!(!alive(&mut worker) && !alive(&mut sneaky));
}

#[tokio::test]
async fn revoke_notes_stop_at_twenty_connections() {
    let server = RedisServer::machine();
    let admin = TestUser::admin(&server);
    let user = TestUser::app(&server, "rk_ip_many");
    let t = administered(&server, &user, Some(&admin), Strategy::Single);
    let open: Vec<_> = (0..22)
        .map(|i| named_session(&server, &user, &format!("worker-{i}")))
        .collect();
    let report = t.revoke(&user.doc(), &user.doc(), TERMINATE).await.unwrap();
    assert_eq!(report.sessions_terminated, 22, "{report:?}");
    assert_eq!(report.notes.len(), 21, "{report:?}");
    assert!(
        report.notes[..20].iter().all(|n| n.starts_with("connection id ")),
        "{report:?}"
    );
    assert_eq!(report.notes[20], "... and 2 more sessions ended");
    drop(open);
}

#[tokio::test]
async fn without_admin_the_notes_leave_out_the_asking_connection() {
    let server = RedisServer::machine();
    let user = TestUser::app(&server, "rk_ip_self_notes");
    let t = administered(&server, &user, None, Strategy::Single);
    let (mut open, id) = named_session(&server, &user, "cron-job");
    let old = user.doc();
    let new = t.prepare(Some(&old), random_password(32)).await.unwrap();
    t.apply(&new, Some(&old)).await.unwrap();
    let report = t.revoke(&old, &new, TERMINATE).await.unwrap();
    assert_eq!(report.sessions_terminated, 1, "{report:?}");
    assert_eq!(report.notes.len(), 1, "{report:?}");
    let note = note_of(&report.notes, id, &[&user.password, &new.password().unwrap()]);
    assert!(note.contains("(cron-job)"), "{note}");
    assert!(!alive(&mut open));
}

#[tokio::test]
async fn an_admin_that_may_not_list_clients_still_ends_them_and_says_so() {
    let server = RedisServer::machine();
    let admin = TestUser::new(&server, "rk_nolist", &["~*", "&*", "+@all", "-client|list"]);
    let user = TestUser::app(&server, "rk_ip_nolist");
    let t = administered(&server, &user, Some(&admin), Strategy::Single);
    let mut open = session(&server, &user);
    let report = t.revoke(&user.doc(), &user.doc(), TERMINATE).await.unwrap();
    assert_eq!(report.sessions_terminated, 1, "{report:?}");
    assert_eq!(report.notes.len(), 1, "{report:?}");
    assert!(
        report.notes[0].starts_with(&format!(
            "1 connection(s) of user \"{}\" ended; who held them is unknown: listing them failed (",
            user.name
        )),
        "{report:?}"
    );
    assert!(!report.notes[0].contains(admin.password.expose()));
    assert!(!alive(&mut open));
}
