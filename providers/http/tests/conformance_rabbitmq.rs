//! The target conformance suite against the machine's RabbitMQ management API, strategy
//! `single`: `PUT /api/users/NAME` sets the generated password, `GET /api/whoami` with
//! basic authentication proves it. Real users, real password checks (the old password
//! gets 401 from RabbitMQ itself).

mod common;

use common::assert_message;
use rekey_api::conformance::{random_password, target as suite, unique_name};
use rekey_api::{ErrorKind, RevokeOptions, SecretDoc, Strategy, Target};
use rekey_http::{HttpProvider, HttpTarget};
use rekey_testbed::keyapi::{RabbitMq, RabbitUser};
use serde_json::json;

fn setup() -> (RabbitMq, RabbitUser, String) {
    let api = RabbitMq::management().expect("RabbitMQ management API");
    let password = random_password(24).expose().to_owned();
    let user = api.create_user(&unique_name("rk_http"), &password).unwrap();
    (api, user, password)
}

fn rabbit_config(api: &RabbitMq, user: &str) -> serde_json::Value {
    let (admin, admin_password) = api.admin();
    json!({
        "base_url": api.url(),
        "basic": {"username": admin, "password": admin_password},
        "apply": {"method": "PUT", "path": format!("/api/users/{user}"),
                  "json": {"password": "{{password}}", "tags": "management"}, "ok": [201, 204]},
        "login": {"method": "GET", "path": "/api/whoami",
                  "basic": {"username": user, "password": "{{password}}"}, "ok": [200], "rejected": [401]},
    })
}

fn rabbit_target(api: &RabbitMq, user: &str) -> HttpTarget {
    let config = serde_json::from_value(rabbit_config(api, user)).unwrap();
    HttpProvider::new()
        .http_target(&config, "rabbit-app", Strategy::Single)
        .unwrap()
}

fn doc(password: &str) -> SecretDoc {
    SecretDoc::from_value(json!({"password": password})).unwrap()
}

#[tokio::test]
async fn run_all_single() {
    let (api, user, password) = setup();
    let t = rabbit_target(&api, &user.name);
    assert!(t.capabilities().apply_invalidates_previous);
    assert!(!t.capabilities().mints_own_secret);
    let end = suite::run_all(&t, doc(&password)).await;
    let last = end.password().unwrap();
    assert_eq!(api.login_status(&user.name, last.expose()), Ok(200));
    assert_eq!(api.login_status(&user.name, &password), Ok(401));
}

rekey_api::target_conformance_tests! {
    setup = async {
        let (api, user, password) = setup();
        let t = rabbit_target(&api, &user.name);
        ((api, user), t, doc(&password))
    },
    // RabbitMQ itself takes the returned password.
    check = |(api, user): &(RabbitMq, RabbitUser), _: &HttpTarget, _: &SecretDoc, after: &SecretDoc| {
        assert_eq!(api.login_status(&user.name, after.password().unwrap().expose()), Ok(200));
    },
    skip = [
        dual_holds_both_until_revoke => "a RabbitMQ user holds one password: apply replaces it (single)",
        alternating_uses_the_idle_user => "single: only alternating targets have an idle user",
    ],
}

#[tokio::test]
async fn old_password_is_refused_by_rabbitmq_right_after_apply() {
    let (api, user, password) = setup();
    let t = rabbit_target(&api, &user.name);
    let old = doc(&password);
    let new = t.prepare(Some(&old), random_password(32)).await.unwrap();
    t.apply(&new, Some(&old)).await.unwrap();
    t.verify(&new).await.unwrap();
    let e = t.login(&old).await.unwrap_err();
    assert_eq!(e.kind(), ErrorKind::AuthRejected);
    let new_password = new.password().unwrap();
    assert_message(
        e.message(),
        &["login GET", "/api/whoami", "HTTP 401"],
        &[&password, new_password.expose()],
    );
    // Revoke (no revoke step under single) changes nothing.
    t.revoke(&old, &new, RevokeOptions::default()).await.unwrap();
    assert_eq!(api.login_status(&user.name, new_password.expose()), Ok(200));
}

#[tokio::test]
async fn a_refused_admin_is_permission_denied_and_an_empty_password_refused() {
    let (api, user, password) = setup();
    // The admin's password is wrong: permission denied, naming the step; nothing changed.
    let mut v = rabbit_config(&api, &user.name);
    v["basic"]["password"] = json!("wrong-admin-password");
    let config = serde_json::from_value(v).unwrap();
    let t = HttpProvider::new()
        .http_target(&config, "rabbit-app", Strategy::Single)
        .unwrap();
    let new = t.prepare(Some(&doc(&password)), random_password(32)).await.unwrap();
    let e = t.apply(&new, None).await.unwrap_err();
    assert_eq!(e.kind(), ErrorKind::PermissionDenied);
    assert_message(
        e.message(),
        &[
            "apply PUT",
            &format!("/api/users/{}", user.name),
            "HTTP 401",
            "management credential",
        ],
        &["wrong-admin-password", new.password().unwrap().expose()],
    );
    assert_eq!(api.login_status(&user.name, &password), Ok(200));

    // An empty password is RabbitMQ's refusal too, not a generic error.
    let t = rabbit_target(&api, &user.name);
    let e = t.login(&doc("")).await.unwrap_err();
    assert_eq!(e.kind(), ErrorKind::AuthRejected, "{e}");
}
