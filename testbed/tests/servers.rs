//! The throwaway Redis and MariaDB servers start as asked, answer their admin, and are
//! cleaned up on drop or, when the test process dies, by their watchdogs.

mod common;

use common::{listening, run_child, wait_until};
use rekey_testbed::{KeyType, MariaDbServer, RedisOptions, RedisServer, RedisTls, RespValue, TestCa};
use std::path::PathBuf;

#[test]
fn redis_with_an_acl_file_and_tls() {
    let certs = tempfile::tempdir().unwrap();
    let ca = TestCa::new(certs.path(), "ca", KeyType::EcP256).unwrap();
    let server = RedisServer::start(RedisOptions {
        acl_file: Some("user default on nopass ~* &* +@all\nuser tb_app on #5e884898da28047151d0e56f8dc6292773603d0d6aabbdd62a11ef721d1542d8 ~* +@all\n".into()),
        tls: Some(RedisTls {
            server: ca.issue_server("redis").unwrap(),
            ca: ca.cert(),
        }),
    })
    .unwrap();
    let (port, tls_port) = (server.port(), server.tls_port().unwrap());
    assert!(listening(tls_port));
    assert_eq!(server.cmd(&["PING"]), RespValue::Simple("PONG".into()));
    assert_eq!(
        server.passwords("tb_app").unwrap(),
        ["5e884898da28047151d0e56f8dc6292773603d0d6aabbdd62a11ef721d1542d8"]
    );
    assert_eq!(server.passwords("tb_nobody"), None);
    // Error replies are errors, with Redis's text.
    let err = server.try_cmd(&["ACL", "SETUSER", "tb_x", "bogus-rule"]).unwrap_err();
    assert!(err.message().starts_with("ERR"), "{err}");
    server.cmd(&["ACL", "SAVE"]);
    assert!(server.acl_file().contains("user tb_app on"), "{}", server.acl_file());

    let dir = server.dir().unwrap().to_owned();
    drop(server);
    assert!(!dir.exists());
    assert!(!listening(port) && !listening(tls_port));
}

#[test]
fn mariadb_with_tls() {
    let server = MariaDbServer::start().unwrap();
    assert_eq!(server.root_sql("SELECT @@have_ssl"), "YES");
    assert_eq!(server.root_sql("SELECT @@port"), server.port().to_string());
    assert!(server.ca().is_file() && server.wrong_ca().is_file());
    let err = server.try_root_sql("SELECT * FROM no_such_db.t").unwrap_err();
    assert!(err.message().contains("no_such_db"), "{err}");
    let (dir, port) = (server.dir().to_owned(), server.port());
    drop(server);
    assert!(!dir.exists());
    assert!(!listening(port));
}

const CHILD_ENV: &str = "REKEY_TESTBED_SERVERS_WATCHDOG_CHILD";

/// Not a test of its own: run by `watchdogs_clean_up_after_a_dead_process` in a child
/// process, which starts both servers and exits without dropping them.
#[test]
fn watchdog_child() {
    let Some(out) = std::env::var_os(CHILD_ENV) else { return };
    let redis = RedisServer::start(RedisOptions::default()).unwrap();
    let mariadb = MariaDbServer::start().unwrap();
    std::fs::write(
        out,
        format!(
            "{}\n{}\n{}\n{}",
            redis.dir().unwrap().display(),
            redis.port(),
            mariadb.dir().display(),
            mariadb.port()
        ),
    )
    .unwrap();
    std::process::exit(0);
}

#[test]
fn watchdogs_clean_up_after_a_dead_process() {
    let text = run_child("watchdog_child", CHILD_ENV);
    let lines: Vec<&str> = text.lines().collect();
    let servers: [(PathBuf, u16); 2] = [
        (lines[0].into(), lines[1].parse().unwrap()),
        (lines[2].into(), lines[3].parse().unwrap()),
    ];
    for (dir, port) in servers {
        wait_until(&format!("the watchdog removed {}", dir.display()), || !dir.exists());
        wait_until(&format!("the server on port {port} stopped"), || !listening(port));
    }
}
