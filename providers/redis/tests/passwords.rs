//! Users holding several passwords, against the machine's Redis with ACL authentication
//! enforced: each test first shows that the extra passwords exist and log in, then that
//! the rotation accounts for every one of them.
//!
//! - `plan` (preflight) counts them and says what `dual` and `single` will do;
//! - `dual`: apply adds the new password and removes the extras (the user holds the
//!   current and the new one), revoke leaves only the new one;
//! - incident revoke (`rotate --leaked`: dual with sessions ended) leaves only the new one;
//! - an extra that appears after apply is gone after revoke too.

mod common;

use common::*;
use rekey_api::conformance::random_password;
use rekey_api::{ErrorKind, RevokeOptions, Secret, Strategy, Target};
use rekey_redis::{acl_password_hash, RedisProvider, RedisTarget};
use rekey_testbed::RedisServer;

fn administered(server: &RedisServer, user: &TestUser, admin: &TestUser, strategy: Strategy) -> RedisTarget {
    target(
        &RedisProvider::new(),
        &config(server.port(), &user.name, Some(admin.url(server.port()))),
        strategy,
    )
}

/// Adds `n` random passwords to `user` (outside rekey), returning them.
fn add_extras(server: &RedisServer, user: &TestUser, n: usize) -> Vec<Secret> {
    (0..n)
        .map(|_| {
            let extra = random_password(24);
            let hash = format!("#{}", acl_password_hash(&extra));
            server.cmd(&["ACL", "SETUSER", &user.name, &hash]);
            extra
        })
        .collect()
}

async fn assert_refused(t: &RedisTarget, user: &str, password: &Secret) {
    let err = t.login(&doc(user, password)).await.expect_err("must be refused");
    assert_eq!(err.kind(), ErrorKind::AuthRejected, "{err}");
}

fn sorted(mut v: Vec<String>) -> Vec<String> {
    v.sort();
    v
}

#[tokio::test]
async fn plan_counts_the_extra_passwords() {
    let server = RedisServer::machine();
    let admin = TestUser::admin(&server);
    let user = TestUser::app(&server, "rk_multi_plan");
    add_extras(&server, &user, 2);
    assert_eq!(user.passwords().len(), 3, "three passwords before");
    let dual = administered(&server, &user, &admin, Strategy::Dual);
    let plan = dual.preflight(Some(&user.doc())).await.unwrap().join("\n");
    for needle in [
        format!("user \"{}\" exists, is enabled and holds 3 password(s)", user.name),
        format!(
            "user \"{}\" holds 2 other password(s) besides the current secret, which no stored version holds: apply \
             removes them",
            user.name
        ),
        "revoke leaves only the new one".to_owned(),
    ] {
        assert!(plan.contains(&needle), "plan should say `{needle}`:\n{plan}");
    }
    let single = administered(&server, &user, &admin, Strategy::Single);
    let plan = single.preflight(Some(&user.doc())).await.unwrap().join("\n");
    assert!(plan.contains("apply replaces them with the new password"), "{plan}");
    assert_eq!(user.passwords().len(), 3, "plan changed nothing");
}

#[tokio::test]
async fn dual_keeps_at_most_the_current_and_the_new_password() {
    let server = RedisServer::machine();
    let admin = TestUser::admin(&server);
    let user = TestUser::app(&server, "rk_multi_dual");
    let extras = add_extras(&server, &user, 2);
    let t = administered(&server, &user, &admin, Strategy::Dual);
    // Before: every extra logs in.
    for extra in &extras {
        t.login(&doc(&user.name, extra))
            .await
            .expect("an extra password logs in");
    }
    let current = user.doc();
    let new = t.prepare(Some(&current), random_password(24)).await.unwrap();
    t.apply(&new, Some(&current)).await.unwrap();
    let new_password = new.password().unwrap();
    // After apply: the current and the new one, nothing else.
    assert_eq!(
        sorted(user.passwords()),
        sorted(vec![
            acl_password_hash(&user.password),
            acl_password_hash(&new_password)
        ])
    );
    t.login(&current)
        .await
        .expect("the current password still works (grace)");
    t.verify(&new).await.unwrap();
    for extra in &extras {
        assert_refused(&t, &user.name, extra).await;
    }
    // An extra added meanwhile (outside rekey) does not survive revoke either.
    let late = add_extras(&server, &user, 1);
    t.revoke(&current, &new, RevokeOptions::default()).await.unwrap();
    assert_eq!(
        user.passwords(),
        vec![acl_password_hash(&new_password)],
        "only the new one"
    );
    assert_refused(&t, &user.name, &user.password).await;
    assert_refused(&t, &user.name, &late[0]).await;
    // Idempotent.
    t.apply(&new, Some(&current)).await.unwrap();
    t.revoke(&current, &new, RevokeOptions::default()).await.unwrap();
    assert_eq!(user.passwords(), vec![acl_password_hash(&new_password)]);
}

#[tokio::test]
async fn incident_revoke_leaves_only_the_new_password() {
    let server = RedisServer::machine();
    let admin = TestUser::admin(&server);
    let user = TestUser::app(&server, "rk_multi_leak");
    let extras = add_extras(&server, &user, 2);
    let t = administered(&server, &user, &admin, Strategy::Dual);
    // The imported (leaked) secret is not among the passwords apply knows as current:
    // apply keeps every password, revoke must still remove them all.
    let unknown_current = doc(&user.name, &random_password(24));
    let plan = t.preflight(Some(&unknown_current)).await.unwrap().join("\n");
    assert!(
        plan.contains("holds 3 password(s), none of them the current secret: apply keeps them"),
        "{plan}"
    );
    let new = t.prepare(Some(&user.doc()), random_password(24)).await.unwrap();
    t.apply(&new, Some(&unknown_current)).await.unwrap();
    assert_eq!(user.passwords().len(), 4, "apply could not tell which to keep");
    t.revoke(
        &user.doc(),
        &new,
        RevokeOptions {
            terminate_sessions: true,
        },
    )
    .await
    .unwrap();
    assert_eq!(
        user.passwords(),
        vec![acl_password_hash(&new.password().unwrap())],
        "only the new one after an incident revoke"
    );
    assert_refused(&t, &user.name, &user.password).await;
    for extra in &extras {
        assert_refused(&t, &user.name, extra).await;
    }
}

#[tokio::test]
async fn revoke_refuses_when_the_new_password_is_missing() {
    let server = RedisServer::machine();
    let admin = TestUser::admin(&server);
    let user = TestUser::app(&server, "rk_multi_guard");
    add_extras(&server, &user, 1);
    let t = administered(&server, &user, &admin, Strategy::Dual);
    let new = t.prepare(Some(&user.doc()), random_password(24)).await.unwrap();
    // Never applied: removing the others would leave no working password.
    let before = sorted(user.passwords());
    let err = t.revoke(&user.doc(), &new, RevokeOptions::default()).await.unwrap_err();
    assert_error(
        &err,
        ErrorKind::Conflict,
        &["does not hold the new password", "2 other password(s)"],
        &[&user.password],
    );
    assert_eq!(sorted(user.passwords()), before, "nothing removed");
}
