//! A throwaway server that keeps its users in an ACL file: every change is saved with
//! ACL SAVE, so it survives ACL LOAD (and restarts). The machine's server has no ACL
//! file: there ACL SAVE is not called (it would fail), see target.rs.

mod common;

use common::*;
use rekey_api::conformance::{random_password, target::run_all, unique_name};
use rekey_api::{ErrorKind, RevokeOptions, Secret, Strategy, Target};
use rekey_redis::{acl_password_hash, RedisProvider};
use rekey_testbed::{RedisOptions, RedisServer};

struct Fixture {
    server: RedisServer,
    admin: (String, Secret),
    /// May run ACL commands but not CONFIG GET: cannot tell whether there is a file.
    acl_only: (String, Secret),
    app: (String, Secret),
}

fn start() -> Fixture {
    let admin = (unique_name("rk_admin"), random_password(24));
    let acl_only = (unique_name("rk_aclonly"), random_password(24));
    let app = (unique_name("rk_app"), random_password(24));
    let line =
        |(name, pw): &(String, Secret), rules: &str| format!("user {name} on #{} {rules}\n", acl_password_hash(pw));
    let file = format!(
        "user default on nopass ~* &* +@all\n{}{}{}",
        line(&admin, "~* &* +@all"),
        line(&acl_only, "~* resetchannels -@all +acl"),
        line(&app, "~* &* +@all"),
    );
    let server = RedisServer::start(RedisOptions {
        acl_file: Some(file),
        ..Default::default()
    })
    .unwrap_or_else(|e| panic!("{e}"));
    Fixture {
        server,
        admin,
        acl_only,
        app,
    }
}

fn url((name, pw): &(String, Secret), port: u16) -> rekey_api::RedactedDsn {
    rekey_api::RedactedDsn::new(format!("redis://{name}:{}@127.0.0.1:{port}", pw.expose()))
}

/// The hashes on the app user's line of the ACL file.
fn file_hashes(server: &RedisServer, user: &str) -> Vec<String> {
    let file = server.acl_file();
    let line = file
        .lines()
        .find(|l| l.starts_with(&format!("user {user} ")))
        .unwrap_or_else(|| panic!("no line for {user} in:\n{file}"));
    line.split_whitespace()
        .filter_map(|w| w.strip_prefix('#'))
        .map(str::to_owned)
        .collect()
}

#[tokio::test]
async fn changes_are_saved_to_the_acl_file() {
    let f = start();
    let port = f.server.port();
    let (user, password) = &f.app;
    let provider = RedisProvider::new();
    let t = provider
        .redis_target(&config(port, user, Some(url(&f.admin, port))), Strategy::Dual)
        .unwrap();
    let lines = t.preflight(None).await.unwrap();
    let path = f.server.acl_file_path().unwrap();
    assert!(
        lines
            .iter()
            .any(|l| l.contains(&format!("ACL file {}", path.display())) && l.contains("ACL SAVE")),
        "{lines:?}"
    );
    assert!(lines.iter().any(|l| l.contains("may run ACL SAVE")), "{lines:?}");

    let old = doc(user, password);
    let new = t.prepare(Some(&old), random_password(32)).await.unwrap();
    let (old_hash, new_hash) = (acl_password_hash(password), acl_password_hash(&new.password().unwrap()));
    assert_eq!(file_hashes(&f.server, user), vec![old_hash.clone()]);

    t.apply(&new, Some(&old)).await.unwrap();
    let saved = file_hashes(&f.server, user);
    assert!(saved.contains(&new_hash) && saved.contains(&old_hash), "{saved:?}");
    assert!(!f.server.acl_file().contains(new.password().unwrap().expose()));

    t.verify(&new).await.unwrap();
    t.revoke(&old, &new, RevokeOptions::default()).await.unwrap();
    assert_eq!(file_hashes(&f.server, user), vec![new_hash.clone()]);

    // What the file says is what the server runs with after reloading it.
    f.server.cmd(&["ACL", "LOAD"]);
    t.login(&new).await.unwrap();
    assert_eq!(t.login(&old).await.unwrap_err().kind(), ErrorKind::AuthRejected);

    // Single: resetpass is saved too.
    let t = provider
        .redis_target(&config(port, user, Some(url(&f.admin, port))), Strategy::Single)
        .unwrap();
    let end = run_all(&t, new.clone()).await;
    assert_eq!(
        file_hashes(&f.server, user),
        vec![acl_password_hash(&end.password().unwrap())]
    );
}

#[tokio::test]
async fn an_admin_that_cannot_read_the_config_still_saves() {
    let f = start();
    let port = f.server.port();
    let (user, password) = &f.app;
    let t = RedisProvider::new()
        .redis_target(&config(port, user, Some(url(&f.acl_only, port))), Strategy::Dual)
        .unwrap();
    let lines = t.preflight(None).await.unwrap();
    assert!(
        lines.iter().any(|l| l.contains("may not run CONFIG GET aclfile")),
        "{lines:?}"
    );
    let old = doc(user, password);
    let new = t.prepare(Some(&old), random_password(32)).await.unwrap();
    t.apply(&new, Some(&old)).await.unwrap();
    assert!(file_hashes(&f.server, user).contains(&acl_password_hash(&new.password().unwrap())));
    t.revoke(&old, &new, RevokeOptions::default()).await.unwrap();
    assert_eq!(
        file_hashes(&f.server, user),
        vec![acl_password_hash(&new.password().unwrap())]
    );
}

#[tokio::test]
async fn without_an_acl_file_save_is_skipped_or_tolerated() {
    // The machine's server (no ACL file): ACL SAVE fails there, rotations must not.
    let server = RedisServer::machine();
    assert!(server.try_cmd(&["ACL", "SAVE"]).is_err(), "this server has an ACL file");
    let user = TestUser::app(&server, "rk_nofile");
    // One admin that reads the config (ACL SAVE skipped), one that cannot (tried, the
    // refusal is accepted).
    let full = TestUser::admin(&server);
    let acl_only = TestUser::new(&server, "rk_aclonly", &["~*", "-@all", "+acl"]);
    let mut current = user.doc();
    for admin in [&full, &acl_only] {
        let t = RedisProvider::new()
            .redis_target(
                &config(server.port(), &user.name, Some(admin.url(server.port()))),
                Strategy::Dual,
            )
            .unwrap();
        let lines = t.preflight(Some(&current)).await.unwrap();
        assert!(
            lines
                .iter()
                .any(|l| l.contains("no ACL file") || l.contains("may not run CONFIG GET")),
            "{lines:?}"
        );
        current = run_all(&t, current).await;
    }
}
