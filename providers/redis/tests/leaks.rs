//! The plaintext of a new password never leaves rekey except inside the AUTH of a
//! login: every byte rekey sends to Redis goes through a recording TCP proxy and is
//! searched. (Redis 7 already hides ACL SETUSER and AUTH from SLOWLOG and MONITOR, so
//! the server's own views cannot show a leak; the wire can.)

mod common;

use common::*;
use rekey_api::conformance::random_password;
use rekey_api::{RevokeOptions, Secret, Strategy, Target};
use rekey_redis::{acl_password_hash, RedisProvider};
use rekey_testbed::RedisServer;

/// What was wrong with the captured traffic for `password` (empty when all is well):
/// the plaintext may appear only as the password argument of an `AUTH <user> <pw>`.
/// Also returns how many such AUTH frames carried it.
fn audit(connections: &[Vec<u8>], user: &str, password: &Secret) -> (Vec<String>, usize) {
    let plain = password.expose().as_bytes();
    let mut problems = Vec::new();
    let mut auths = 0;
    for (i, bytes) in connections.iter().enumerate() {
        let (frames, complete) = parse_frames(bytes);
        if !complete {
            problems.push(format!("connection {i}: bytes that are not RESP command frames"));
        }
        let mut in_frames = 0;
        for frame in &frames {
            let carrying = frame.iter().filter(|a| contains(a, plain)).count();
            if carrying == 0 {
                continue;
            }
            in_frames += frame.iter().map(|a| count(a, plain)).sum::<usize>();
            let name = String::from_utf8_lossy(&frame[0]).to_ascii_uppercase();
            let is_login = name == "AUTH" && frame.len() == 3 && frame[1] == user.as_bytes() && frame[2] == plain;
            if is_login {
                auths += 1;
            } else {
                let shown: Vec<String> = frame
                    .iter()
                    .take(3)
                    .map(|a| String::from_utf8_lossy(a).into_owned())
                    .collect();
                problems.push(format!(
                    "connection {i}: the plaintext was sent in a {} frame ({} args)",
                    shown.join(" ").replace(password.expose(), "<PLAINTEXT>"),
                    frame.len()
                ));
            }
        }
        // Every occurrence on the wire is inside a parsed frame (nothing slipped past
        // the parser).
        if count(bytes, plain) != in_frames {
            problems.push(format!("connection {i}: plaintext outside the parsed frames"));
        }
    }
    (problems, auths)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_hashes_leave_rekey() {
    let server = RedisServer::machine();
    let admin = TestUser::admin(&server);
    let proxy = RecordingProxy::start(server.port()).await;

    for strategy in [Strategy::Dual, Strategy::Single] {
        let user = TestUser::app(&server, "rk_wire");
        // Logins and the admin both go through the proxy.
        let c = config(proxy.port(), &user.name, Some(admin.url(proxy.port())));
        let t = RedisProvider::new().redis_target(&c, strategy).unwrap();
        proxy.clear();

        let old = user.doc();
        let new = t.prepare(Some(&old), random_password(32)).await.unwrap();
        let plaintext = new.password().unwrap();
        let hash = acl_password_hash(&plaintext);
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
        t.login(&new).await.unwrap();

        let connections = proxy.connections();
        let (problems, auths) = audit(&connections, &user.name, &plaintext);
        assert!(problems.is_empty(), "{strategy}: {problems:?}");
        // The proxy did see the logins with the new password (verify and login)...
        assert_eq!(auths, 2, "{strategy}: logins with the new password on the wire");
        // ... and the change, as a hash in an ACL SETUSER frame on the admin connection.
        let setuser_with_hash = connections.iter().flat_map(|c| parse_frames(c).0).any(|f| {
            f.len() >= 3
                && f[0].eq_ignore_ascii_case(b"ACL")
                && f[1].eq_ignore_ascii_case(b"SETUSER")
                && f[2] == user.name.as_bytes()
                && f.iter().any(|a| a == format!("#{hash}").as_bytes())
        });
        assert!(setuser_with_hash, "{strategy}: no ACL SETUSER #<hash> seen");
        // The admin's connection never carries the new password in any form but the hash.
        for bytes in connections.iter().filter(|c| contains(c, b"SETUSER")) {
            assert!(!contains(bytes, plaintext.expose().as_bytes()), "{strategy}");
            assert!(!contains(bytes, format!(">{}", plaintext.expose()).as_bytes()));
        }
    }

    // Control: a client that sends `>plaintext` through the same proxy is caught.
    let user = TestUser::app(&server, "rk_ctrl");
    proxy.clear();
    let canary = random_password(32);
    let mut raw = redis::Client::open(format!("redis://127.0.0.1:{}", proxy.port()))
        .unwrap()
        .get_connection()
        .unwrap();
    let _: () = redis::cmd("ACL")
        .arg("SETUSER")
        .arg(&user.name)
        .arg(format!(">{}", canary.expose()))
        .query(&mut raw)
        .unwrap();
    drop(raw);
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
    let (problems, _) = loop {
        let found = audit(&proxy.connections(), &user.name, &canary);
        if !found.0.is_empty() || std::time::Instant::now() > deadline {
            break found;
        }
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    };
    assert!(
        problems.iter().any(|p| p.contains("ACL SETUSER")),
        "the audit must catch a plaintext SETUSER: {problems:?}"
    );
    assert!(
        problems.iter().all(|p| !p.contains(canary.expose())),
        "problems quote no secret"
    );
}
