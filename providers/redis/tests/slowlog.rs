//! SLOWLOG, with every command logged (`slowlog-log-slower-than 0`), never holds the
//! new password after a rotation. Redis 7 leaves ACL SETUSER and AUTH out of SLOWLOG
//! anyway, so this test guards against a leak through any *other* command (the
//! recording proxy in leaks.rs is the real proof). Its own binary: it changes a
//! server-wide setting (restored on drop).

mod common;

use common::*;
use rekey_api::conformance::random_password;
use rekey_api::{RevokeOptions, Strategy, Target};
use rekey_redis::RedisProvider;
use rekey_testbed::{RedisServer, RespValue};

/// Sets `slowlog-log-slower-than` to 0 and `slowlog-max-len` to 10000, restoring both
/// when dropped.
struct LogEverything<'a> {
    server: &'a RedisServer,
    saved: Vec<(String, String)>,
}

impl<'a> LogEverything<'a> {
    fn new(server: &'a RedisServer) -> Self {
        let mut saved = Vec::new();
        for name in ["slowlog-log-slower-than", "slowlog-max-len"] {
            if let RespValue::Array(kv) = server.cmd(&["CONFIG", "GET", name]) {
                saved.push((name.to_owned(), kv[1].text()));
            }
        }
        server.cmd(&["CONFIG", "SET", "slowlog-max-len", "10000"]);
        server.cmd(&["CONFIG", "SET", "slowlog-log-slower-than", "0"]);
        server.cmd(&["SLOWLOG", "RESET"]);
        LogEverything { server, saved }
    }

    /// Every argument of every entry, as text.
    fn entries(&self) -> Vec<String> {
        let RespValue::Array(entries) = self.server.cmd(&["SLOWLOG", "GET", "-1"]) else {
            return Vec::new();
        };
        entries
            .iter()
            .map(|e| match e {
                RespValue::Array(fields) => match fields.get(3) {
                    Some(RespValue::Array(args)) => args.iter().map(RespValue::text).collect::<Vec<_>>().join(" "),
                    _ => String::new(),
                },
                _ => String::new(),
            })
            .collect()
    }
}

impl Drop for LogEverything<'_> {
    fn drop(&mut self) {
        for (name, value) in &self.saved {
            let _ = self.server.try_cmd(&["CONFIG", "SET", name, value]);
        }
        let _ = self.server.try_cmd(&["SLOWLOG", "RESET"]);
    }
}

#[tokio::test]
async fn slowlog_never_holds_the_new_password() {
    let server = RedisServer::machine();
    let admin = TestUser::admin(&server);
    let user = TestUser::app(&server, "rk_slow");
    let log = LogEverything::new(&server);

    // Control: SLOWLOG records arguments verbatim, so a password sent in any ordinary
    // command would be seen.
    let canary = random_password(24);
    server.cmd(&["ECHO", canary.expose()]);
    assert!(
        log.entries().iter().any(|e| e.contains(canary.expose())),
        "SLOWLOG is not recording"
    );

    for strategy in [Strategy::Dual, Strategy::Single] {
        let t = RedisProvider::new()
            .redis_target(
                &config(server.port(), &user.name, Some(admin.url(server.port()))),
                strategy,
            )
            .unwrap();
        let old = user.doc();
        let new = t.prepare(Some(&old), random_password(32)).await.unwrap();
        t.preflight(Some(&old)).await.unwrap();
        t.apply(&new, Some(&old)).await.unwrap();
        t.verify(&new).await.unwrap();
        t.revoke(
            &old,
            &new,
            RevokeOptions {
                terminate_sessions: true,
            },
        )
        .await
        .unwrap();

        let entries = log.entries();
        // rekey's commands are being logged (GETUSER names the user)...
        assert!(
            entries.iter().any(|e| e.contains("GETUSER") && e.contains(&user.name)),
            "{strategy}: rekey's commands are not in SLOWLOG: {entries:?}"
        );
        // ... and none of them holds the new password.
        let plaintext = new.password().unwrap();
        assert!(
            entries.iter().all(|e| !e.contains(plaintext.expose())),
            "{strategy}: the new password is in SLOWLOG"
        );
        // Back to the fixture's password for the next round.
        t.apply(&old, Some(&new)).await.unwrap();
        t.revoke(&new, &old, RevokeOptions::default()).await.unwrap();
    }
}
