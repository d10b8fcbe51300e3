//! The MySQL/MariaDB target against the machine's real server (MariaDB 10.11 here), with
//! passwords really checked over TCP: the conformance suite for each strategy, error
//! kinds, privilege checks, the general log, zero downtime with alternating users,
//! session termination, the shared admin connection and TLS modes.
//!
//! MySQL 8 paths (`dual`, `IDENTIFIED WITH mysql_native_password AS`) are covered by
//! the crate's unit tests for the SQL they produce only: no MySQL 8 server here.

mod common;

use common::*;
use mysql_async::prelude::Queryable;
use rekey_api::conformance::{random_password, target::run_all, unique_name};
use rekey_api::{ErrorKind, RevokeOptions, SecretDoc, Strategy, Target};
use rekey_mysql::{native_password_hash, MysqlProvider, MysqlTarget, MysqlTargetConfig, TlsMode};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

fn config(user: &str, admin: Option<&TestAdmin>) -> MysqlTargetConfig {
    let mut c = MysqlTargetConfig::new(host(), user);
    c.port = port();
    c.admin = admin.map(TestAdmin::url);
    c
}

fn alternating_config(a: &str, b: &str, admin: &TestAdmin) -> MysqlTargetConfig {
    let mut c = MysqlTargetConfig::new_alternating(host(), a, b);
    c.port = port();
    c.admin = Some(admin.url());
    c
}

fn target(provider: &MysqlProvider, config: &MysqlTargetConfig, strategy: Strategy) -> MysqlTarget {
    provider.mysql_target(config, strategy).expect("target builds")
}

async fn assert_logs_in(t: &dyn Target, doc: &SecretDoc) {
    t.login(doc).await.unwrap_or_else(|e| panic!("must log in: {e}"));
}

async fn assert_refused(t: &dyn Target, doc: &SecretDoc) {
    match t.login(doc).await {
        Ok(()) => panic!("must be refused, but logged in"),
        Err(e) => assert_eq!(e.kind(), ErrorKind::AuthRejected, "{e}"),
    }
}

#[tokio::test]
async fn preflight_and_capabilities_single_with_admin() {
    let admin = TestAdmin::new();
    let user = TestUser::new("rk_single");
    let provider = MysqlProvider::new();
    let t = target(&provider, &config(&user.name, Some(&admin)), Strategy::Single);
    let lines = t.preflight(Some(&user.doc())).await.unwrap();
    let text = lines.join("\n");
    for needle in [
        "admin may alter users",
        "exists",
        "MariaDB",
        "the current secret logs in",
        "may end sessions",
    ] {
        let needle = needle.replace("admin may", &format!("admin {}@% may", admin.user.name));
        assert!(text.contains(&needle), "preflight should say `{needle}`:\n{text}");
    }
    let caps = t.capabilities();
    assert!(caps.apply_invalidates_previous && caps.terminate_sessions && !caps.mints_own_secret);
    assert_eq!(
        caps.strategies,
        vec![Strategy::Single, Strategy::Alternating, Strategy::Dual]
    );
}

#[tokio::test]
async fn preflight_single_without_admin() {
    let user = TestUser::new("rk_self");
    let provider = MysqlProvider::new();
    let t = target(&provider, &config(&user.name, None), Strategy::Single);
    assert!(!t.has_admin());
    let lines = t.preflight(Some(&user.doc())).await.unwrap();
    assert!(
        lines.iter().any(|l| l.contains("will change its own password")),
        "{lines:?}"
    );
    // Without a current secret and no admin, preflight says why it cannot work.
    let err = t.preflight(None).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::InvalidInput, "{err}");
}

#[tokio::test]
async fn preflight_and_turns_alternating() {
    let admin = TestAdmin::new();
    let grants = ["SELECT, INSERT ON `rekey_test_orders`.*"];
    let a = TestUser::with_grants("rk_alt_a", &grants);
    let b = TestUser::with_grants("rk_alt_b", &grants);
    let provider = MysqlProvider::new();
    let t = target(
        &provider,
        &alternating_config(&a.name, &b.name, &admin),
        Strategy::Alternating,
    );
    let caps = t.capabilities();
    assert!(!caps.apply_invalidates_previous);
    assert_eq!(caps.strategy, Strategy::Alternating);
    let lines = t.preflight(Some(&a.doc())).await.unwrap();
    assert!(lines.iter().any(|l| l.contains("identical privileges")), "{lines:?}");
    // complete() names the first user; prepare() picks the other one.
    let mut bare = SecretDoc::new();
    bare.set_password(&a.password);
    t.complete(&mut bare);
    assert_eq!(bare.username(), Some(a.name.as_str()));
    assert_eq!(bare.get_str("engine"), Some("mysql"));
    assert_eq!(bare.get_u64("port"), Some(u64::from(port())));
    let next = t.prepare(Some(&bare), random_password(32)).await.unwrap();
    assert_eq!(next.username(), Some(b.name.as_str()));
}

/// After a rule on one user: the server stores exactly what rekey computed, and the
/// provider opened at most `admin` admin connections.
fn check_single(user: &TestUser, provider: &MysqlProvider, after: &SecretDoc, admin: u64) {
    assert_eq!(user.stored_hash(), *native_password_hash(&after.password().unwrap()));
    assert!(provider.admin_connections_opened() <= admin);
}

/// The conformance suite with an admin (`single`).
mod conformance_single_with_admin {
    use super::*;

    rekey_api::target_conformance_tests! {
        setup = async {
            let admin = TestAdmin::new();
            let user = TestUser::new("rk_single");
            let provider = MysqlProvider::new();
            let t = target(&provider, &config(&user.name, Some(&admin)), Strategy::Single);
            let doc = user.doc();
            ((admin, user, provider), t, doc)
        },
        check = |(_, user, provider): &(TestAdmin, TestUser, MysqlProvider), _: &MysqlTarget, _: &SecretDoc, after: &SecretDoc| {
            check_single(user, provider, after, 1)
        },
        skip = [
            dual_holds_both_until_revoke => "single: apply replaces the account's password (apply_invalidates_previous)",
            alternating_uses_the_idle_user => "single: only alternating targets have an idle user (conformance_alternating)",
        ],
    }
}

/// The conformance suite without admin: the user changes its own password.
mod conformance_single_without_admin {
    use super::*;

    rekey_api::target_conformance_tests! {
        setup = async {
            let user = TestUser::new("rk_self");
            let provider = MysqlProvider::new();
            let t = target(&provider, &config(&user.name, None), Strategy::Single);
            assert!(!t.has_admin());
            let doc = user.doc();
            ((user, provider), t, doc)
        },
        check = |(user, provider): &(TestUser, MysqlProvider), _: &MysqlTarget, _: &SecretDoc, after: &SecretDoc| {
            check_single(user, provider, after, 0)
        },
        skip = [
            dual_holds_both_until_revoke => "single: apply replaces the account's password (apply_invalidates_previous)",
            alternating_uses_the_idle_user => "single: only alternating targets have an idle user (conformance_alternating)",
        ],
    }
}

/// The conformance suite on two users taking turns (every rule applies).
mod conformance_alternating {
    use super::*;

    rekey_api::target_conformance_tests! {
        setup = async {
            let admin = TestAdmin::new();
            let grants = ["SELECT, INSERT ON `rekey_test_orders`.*"];
            let a = TestUser::with_grants("rk_alt_a", &grants);
            let b = TestUser::with_grants("rk_alt_b", &grants);
            let provider = MysqlProvider::new();
            let t = target(
                &provider,
                &alternating_config(&a.name, &b.name, &admin),
                Strategy::Alternating,
            );
            let doc = a.doc();
            ((admin, a, b, provider), t, doc)
        },
        // The retired user kept its privileges for its next turn; one admin connection.
        check = |(_, a, b, provider): &(TestAdmin, TestUser, TestUser, MysqlProvider), _: &MysqlTarget, _: &SecretDoc, after: &SecretDoc| {
            let retired = if after.username() == Some(a.name.as_str()) { b } else { a };
            let grants_of_retired = root_sql(&format!("SHOW GRANTS FOR {}", account(&retired.name)));
            assert!(grants_of_retired.contains("rekey_test_orders"), "{grants_of_retired}");
            assert!(provider.admin_connections_opened() <= 1);
        },
    }
}

#[tokio::test]
async fn wrong_password_is_auth_rejected() {
    let user = TestUser::new("rk_wrong");
    let t = target(&MysqlProvider::new(), &config(&user.name, None), Strategy::Single);
    assert_logs_in(&t, &user.doc()).await;
    let wrong = random_password(24);
    let err = t.login(&doc(&user.name, &wrong)).await.unwrap_err();
    assert_error(
        &err,
        ErrorKind::AuthRejected,
        &[&user.name, &endpoint(), "1045"],
        &[&wrong, &user.password],
    );
    assert!(!err.is_retryable());
}

/// Starts the general log into a fresh file and restores the previous settings on drop.
struct GeneralLog {
    path: String,
    previous_file: String,
    previous_on: String,
}

impl GeneralLog {
    fn start() -> GeneralLog {
        let previous_file = root_sql("SELECT @@GLOBAL.general_log_file");
        let previous_on = root_sql("SELECT @@GLOBAL.general_log");
        let path = format!("/tmp/{}.log", unique_name("rekey_mysql_general"));
        root_sql(&format!(
            "SET GLOBAL general_log_file = {}; SET GLOBAL general_log = 1",
            lit(&path)
        ));
        GeneralLog {
            path,
            previous_file,
            previous_on,
        }
    }

    /// The log so far (root may read the server's file), waiting up to 2 s for
    /// `marker`, since the server writes it as it goes.
    fn contents_with(&self, marker: &str) -> String {
        let deadline = Instant::now() + Duration::from_secs(2);
        loop {
            let text = std::fs::read_to_string(&self.path).unwrap_or_default();
            if text.contains(marker) || Instant::now() > deadline {
                return text;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for GeneralLog {
    fn drop(&mut self) {
        let _ = try_root_sql(&format!(
            "SET GLOBAL general_log = {}; SET GLOBAL general_log_file = {}",
            self.previous_on,
            lit(&self.previous_file)
        ));
        let _ = std::fs::remove_file(&self.path);
    }
}

#[tokio::test]
async fn general_log_never_sees_the_plaintext() {
    let admin = TestAdmin::new();
    let user = TestUser::new("rk_logged");
    let log = GeneralLog::start();

    // Control: a plaintext password change does land in this log, so the checks below
    // can fail.
    let canary = random_password(24);
    root_sql(&format!(
        "ALTER USER {} IDENTIFIED BY {}",
        account(&user.name),
        lit(canary.expose())
    ));
    assert!(
        log.contents_with(canary.expose()).contains(canary.expose()),
        "the general log must record statements"
    );

    let provider = MysqlProvider::new();
    let mut current = doc(&user.name, &canary);
    for (admin, statement) in [(Some(&admin), "IDENTIFIED BY PASSWORD '"), (None, "SET PASSWORD = '")] {
        let t = target(&provider, &config(&user.name, admin), Strategy::Single);
        let new = t.prepare(Some(&current), random_password(32)).await.unwrap();
        t.apply(&new, Some(&current)).await.unwrap();
        t.verify(&new).await.unwrap();
        let plaintext = new.password().unwrap();
        let marker = format!("{statement}{}'", &*native_password_hash(&plaintext));
        let text = log.contents_with(&marker);
        assert!(
            text.contains(&marker),
            "the server saw the hash (admin={})",
            admin.is_some()
        );
        assert!(
            !text.contains(plaintext.expose()),
            "the new password reached the general log (admin={})",
            admin.is_some()
        );
        current = new;
    }
}

#[tokio::test]
async fn dual_on_mariadb_is_unsupported_and_changes_nothing() {
    let admin = TestAdmin::new();
    let user = TestUser::new("rk_dual");
    let provider = MysqlProvider::new();
    let t = target(&provider, &config(&user.name, Some(&admin)), Strategy::Dual);
    let caps = t.capabilities();
    assert_eq!(caps.strategy, Strategy::Dual);
    assert!(!caps.apply_invalidates_previous);
    let server = t.server_info().await.unwrap().unwrap();
    if server.dual_unsupported().is_none() {
        eprintln!("skipped: {} supports dual passwords", server.label());
        return;
    }
    let err = t.preflight(Some(&user.doc())).await.unwrap_err();
    assert_error(
        &err,
        ErrorKind::Unsupported,
        &[
            "MariaDB has no RETAIN CURRENT PASSWORD",
            "use strategy = \"alternating\"",
        ],
        &[&user.password],
    );
    let before = user.stored_hash();
    let new = t.prepare(Some(&user.doc()), random_password(32)).await.unwrap();
    let err = t.apply(&new, Some(&user.doc())).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Unsupported, "{err}");
    let err = t.revoke(&user.doc(), &new, RevokeOptions::default()).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Unsupported, "{err}");
    assert_eq!(user.stored_hash(), before, "nothing changed");
    assert_logs_in(&t, &user.doc()).await;
    assert_refused(&t, &new).await;
    // dual without an admin is refused when the target is built.
    let err = provider
        .mysql_target(&config(&user.name, None), Strategy::Dual)
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::InvalidInput, "{err}");
}

#[tokio::test]
async fn alternating_users_with_different_privileges_are_refused() {
    let admin = TestAdmin::new();
    let a = TestUser::with_grants("rk_diff_a", &["SELECT ON `rekey_test_orders`.*"]);
    let b = TestUser::with_grants(
        "rk_diff_b",
        &[
            "SELECT, DELETE ON `rekey_test_orders`.*",
            "SELECT ON `rekey_test_extra`.*",
        ],
    );
    let t = target(
        &MysqlProvider::new(),
        &alternating_config(&a.name, &b.name, &admin),
        Strategy::Alternating,
    );
    let err = t.preflight(Some(&a.doc())).await.unwrap_err();
    assert_error(
        &err,
        ErrorKind::InvalidInput,
        &[
            &format!("users '{}' and '{}' have different privileges", a.name, b.name),
            "only '",
            "DELETE",
            "rekey_test_extra",
        ],
        &[&a.password, &b.password],
    );
    assert!(!err.to_string().contains("IDENTIFIED"), "{err}");
}

#[tokio::test]
async fn odd_user_names_are_quoted() {
    let admin = TestAdmin::new();
    let user = TestUser::new("rk_o'q\"; ü\\x");
    assert!(user.name.contains('\'') && user.name.contains(';') && user.name.contains('ü'));
    let provider = MysqlProvider::new();
    let t = target(&provider, &config(&user.name, Some(&admin)), Strategy::Single);
    t.preflight(Some(&user.doc())).await.unwrap();
    let end = run_all(&t, user.doc()).await;
    assert_eq!(user.stored_hash(), *native_password_hash(&end.password().unwrap()));
    // The user changing its own password, from where the admin rounds ended.
    let t = target(&provider, &config(&user.name, None), Strategy::Single);
    t.preflight(Some(&end)).await.unwrap();
    let end = run_all(&t, end).await;
    assert_logs_in(&t, &end).await;
    let mut open = raw_session(&user.name, &end.password().unwrap()).await;
    let report = t
        .revoke(
            &end,
            &end,
            RevokeOptions {
                terminate_sessions: true,
            },
        )
        .await
        .unwrap();
    // At least the open session; logins of the suite just closed may still be leaving.
    assert!(report.sessions_terminated >= 1, "{report:?}");
    assert!(session_is_dead(&mut open).await);
}

#[tokio::test]
async fn missing_user_is_not_found() {
    let admin = TestAdmin::new();
    let missing = unique_name("rk_missing");
    let t = target(&MysqlProvider::new(), &config(&missing, Some(&admin)), Strategy::Single);
    let err = t.preflight(None).await.unwrap_err();
    assert_error(&err, ErrorKind::NotFound, &[&missing, "does not exist"], &[]);
    let new = t.prepare(None, random_password(32)).await.unwrap();
    let err = t.apply(&new, None).await.unwrap_err();
    // Apply reads the account first: nothing to change.
    assert_error(
        &err,
        ErrorKind::NotFound,
        &[&missing, "does not exist"],
        &[&new.password().unwrap()],
    );
}

#[tokio::test]
async fn admin_without_privilege_is_permission_denied_and_changes_nothing() {
    // May read grants, may not alter users.
    let weak = TestAdmin::with_grants(&["SELECT ON mysql.*"]);
    let user = TestUser::new("rk_guarded");
    let t = target(
        &MysqlProvider::new(),
        &config(&user.name, Some(&weak)),
        Strategy::Single,
    );
    let err = t.preflight(Some(&user.doc())).await.unwrap_err();
    assert_error(
        &err,
        ErrorKind::PermissionDenied,
        &[&weak.user.name, "CREATE USER"],
        &[&weak.user.password, &user.password],
    );
    let before = user.stored_hash();
    let new = t.prepare(Some(&user.doc()), random_password(32)).await.unwrap();
    let err = t.apply(&new, Some(&user.doc())).await.unwrap_err();
    assert_error(
        &err,
        ErrorKind::PermissionDenied,
        &["1227", &user.name],
        &[&weak.user.password, &user.password, &new.password().unwrap()],
    );
    assert_eq!(user.stored_hash(), before);
    assert_logs_in(&t, &user.doc()).await;
    assert_refused(&t, &new).await;
    // Without PROCESS, ending sessions is refused rather than silently finding none.
    let err = t
        .revoke(
            &user.doc(),
            &user.doc(),
            RevokeOptions {
                terminate_sessions: true,
            },
        )
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::PermissionDenied, "{err}");
}

/// Runs `rounds` rotations while a background task logs in continuously with whatever
/// the simulated store holds as current. Returns (successful logins, failures).
async fn rotate_under_load(
    t: Arc<dyn Target>,
    first: SecretDoc,
    rounds: usize,
    delay_before_promote: Duration,
    grace: Duration,
) -> (u64, Vec<String>) {
    let store = Arc::new(Mutex::new(first));
    let stop = Arc::new(AtomicBool::new(false));
    let logins = Arc::new(AtomicU64::new(0));
    let reader = {
        let (t, store, stop, logins) = (t.clone(), store.clone(), stop.clone(), logins.clone());
        tokio::spawn(async move {
            let mut failures = Vec::new();
            while !stop.load(Ordering::Relaxed) {
                let doc = store.lock().unwrap().clone();
                match t.login(&doc).await {
                    Ok(()) => {
                        logins.fetch_add(1, Ordering::Relaxed);
                    }
                    Err(e) => failures.push(e.to_string()),
                }
            }
            failures
        })
    };
    for _ in 0..rounds {
        let current = store.lock().unwrap().clone();
        let new = t.prepare(Some(&current), random_password(32)).await.unwrap();
        t.apply(&new, Some(&current)).await.unwrap();
        t.verify(&new).await.unwrap();
        tokio::time::sleep(delay_before_promote).await;
        *store.lock().unwrap() = new.clone(); // promote
        tokio::time::sleep(grace).await;
        t.revoke(&current, &new, RevokeOptions::default()).await.unwrap();
        assert_refused(t.as_ref(), &current).await;
    }
    // Let the reader run a little with the final secret.
    tokio::time::sleep(Duration::from_millis(100)).await;
    stop.store(true, Ordering::Relaxed);
    let failures = reader.await.unwrap();
    (logins.load(Ordering::Relaxed), failures)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn alternating_rotation_has_zero_downtime() {
    let admin = TestAdmin::new();
    let a = TestUser::with_grants("rk_zd_a", &["SELECT ON `rekey_test_orders`.*"]);
    let b = TestUser::with_grants("rk_zd_b", &["SELECT ON `rekey_test_orders`.*"]);
    let provider = MysqlProvider::new();
    let t = provider
        .target(&alternating_config(&a.name, &b.name, &admin), Strategy::Alternating)
        .unwrap();
    let started = Instant::now();
    // Readers hold a secret for one login (about a millisecond); the grace period
    // between promote and revoke (1 s here) covers that with a wide margin.
    let (logins, failures) = rotate_under_load(
        t.clone(),
        a.doc(),
        3,
        Duration::from_millis(100),
        Duration::from_secs(1),
    )
    .await;
    eprintln!(
        "alternating: 3 rotations in {:?}, {logins} logins, {} failures",
        started.elapsed(),
        failures.len()
    );
    assert!(logins > 20, "the reader must have run: {logins}");
    assert!(failures.is_empty(), "logins failed during rotation: {failures:?}");

    // Control: the same loop against `single`, where apply replaces the password
    // before the store is promoted, does see failures, so the loop can detect downtime.
    let user = TestUser::new("rk_zd_single");
    let single = provider
        .target(&config(&user.name, Some(&admin)), Strategy::Single)
        .unwrap();
    let (_, single_failures) = rotate_under_load(
        single,
        user.doc(),
        1,
        Duration::from_millis(200),
        Duration::from_millis(0),
    )
    .await;
    assert!(
        single_failures.iter().any(|f| f.contains("1045")),
        "single must show a refused window: {single_failures:?}"
    );
}

async fn session_is_dead(conn: &mut mysql_async::Conn) -> bool {
    conn.query_drop("SELECT 1").await.is_err()
}

#[tokio::test]
async fn incident_revocation_ends_the_old_users_sessions() {
    let admin = TestAdmin::new();
    let a = TestUser::with_grants("rk_inc_a", &["SELECT ON `rekey_test_orders`.*"]);
    let b = TestUser::with_grants("rk_inc_b", &["SELECT ON `rekey_test_orders`.*"]);
    let t = target(
        &MysqlProvider::new(),
        &alternating_config(&a.name, &b.name, &admin),
        Strategy::Alternating,
    );
    let current = a.doc();
    let new = t.prepare(Some(&current), random_password(32)).await.unwrap();
    t.apply(&new, Some(&current)).await.unwrap();
    t.verify(&new).await.unwrap();
    // Two sessions opened with the leaked secret, one with the new one.
    let mut leaked_1 = raw_session(&a.name, &a.password).await;
    let mut leaked_2 = raw_session(&a.name, &a.password).await;
    let mut fresh = raw_session(&b.name, &new.password().unwrap()).await;
    let report = t
        .revoke(
            &current,
            &new,
            RevokeOptions {
                terminate_sessions: true,
            },
        )
        .await
        .unwrap();
    assert_eq!(report.sessions_terminated, 2);
    assert!(
        session_is_dead(&mut leaked_1).await,
        "the old user's session must be ended"
    );
    assert!(session_is_dead(&mut leaked_2).await);
    assert!(!session_is_dead(&mut fresh).await, "the new user's session stays");
    assert_refused(&t, &current).await;
    // Idempotent: nothing left to end.
    let again = t
        .revoke(
            &current,
            &new,
            RevokeOptions {
                terminate_sessions: true,
            },
        )
        .await
        .unwrap();
    assert_eq!(again.sessions_terminated, 0);
    let _ = fresh.disconnect().await;
}

#[tokio::test]
async fn single_revocation_ends_sessions_with_and_without_admin() {
    let admin = TestAdmin::new();
    let user = TestUser::new("rk_inc_single");
    let provider = MysqlProvider::new();
    let mut current = user.doc();
    for with_admin in [true, false] {
        let mut c = config(&user.name, with_admin.then_some(&admin));
        c.terminate_sessions = !with_admin; // the config flag works as well as the option
        let t = target(&provider, &c, Strategy::Single);
        let mut open = raw_session(&user.name, &current.password().unwrap()).await;
        let new = t.prepare(Some(&current), random_password(32)).await.unwrap();
        t.apply(&new, Some(&current)).await.unwrap();
        let options = RevokeOptions {
            terminate_sessions: with_admin,
        };
        let report = t.revoke(&current, &new, options).await.unwrap();
        if with_admin {
            assert_eq!(report.sessions_terminated, 1);
        } else {
            // The user's own apply session, just closed, may still be on its way out.
            assert!(report.sessions_terminated >= 1, "{report:?}");
        }
        assert!(session_is_dead(&mut open).await, "admin={with_admin}");
        current = new;
    }
    // Without the option or the flag, sessions stay.
    let t = target(&provider, &config(&user.name, Some(&admin)), Strategy::Single);
    let mut open = raw_session(&user.name, &current.password().unwrap()).await;
    let new = t.prepare(Some(&current), random_password(32)).await.unwrap();
    t.apply(&new, Some(&current)).await.unwrap();
    let report = t.revoke(&current, &new, RevokeOptions::default()).await.unwrap();
    assert_eq!(report.sessions_terminated, 0);
    assert!(!session_is_dead(&mut open).await);
    let _ = open.disconnect().await;
}

#[tokio::test]
async fn closed_port_is_unreachable() {
    let admin = TestAdmin::new();
    let user = TestUser::new("rk_closed");
    let mut c = config(&user.name, None);
    c.port = closed_port();
    c.connect_timeout_secs = 3;
    let t = target(&MysqlProvider::new(), &c, Strategy::Single);
    let err = t.login(&user.doc()).await.unwrap_err();
    assert_error(
        &err,
        ErrorKind::Unreachable,
        &[&user.name, &format!("127.0.0.1:{}", c.port)],
        &[&user.password],
    );
    assert!(err.is_retryable());
    // The admin URL names the real port, so only logins are unreachable; a URL without
    // host and port follows the target's.
    let mut c = config(&user.name, None);
    c.port = closed_port();
    c.admin = Some(rekey_api::RedactedDsn::new(format!(
        "mysql://{}:{}@/",
        admin.user.name,
        admin.user.password.expose()
    )));
    let t = target(&MysqlProvider::new(), &c, Strategy::Single);
    let err = t.preflight(None).await.unwrap_err();
    assert_error(&err, ErrorKind::Unreachable, &["admin"], &[&admin.user.password]);
}

#[tokio::test]
async fn tls_modes_against_a_server_without_tls() {
    let have_ssl = root_sql("SELECT @@have_ssl");
    let user = TestUser::new("rk_tls");
    let provider = MysqlProvider::new();
    let with = |mode: TlsMode| {
        let mut c = config(&user.name, None);
        c.tls = mode;
        target(&provider, &c, Strategy::Single)
    };
    // disable and prefer log in either way.
    assert_logs_in(&with(TlsMode::Disable), &user.doc()).await;
    assert_logs_in(&with(TlsMode::Prefer), &user.doc()).await;
    if have_ssl == "YES" {
        eprintln!("skipped the refusal checks: this server offers TLS");
        return;
    }
    for mode in [TlsMode::Require, TlsMode::VerifyFull] {
        let err = with(mode).login(&user.doc()).await.unwrap_err();
        assert_error(
            &err,
            ErrorKind::Unreachable,
            &["does not offer TLS", &format!("tls={mode}")],
            &[&user.password],
        );
        assert!(!err.is_retryable(), "{err}");
    }
    // A CA file that does not exist is a configuration error, caught before connecting.
    let mut c = config(&user.name, None);
    c.tls = TlsMode::VerifyFull;
    c.tls_ca = Some("/nonexistent/rekey-ca.pem".into());
    let err = provider.mysql_target(&c, Strategy::Single).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::InvalidInput, "{err}");
}

#[tokio::test]
async fn one_admin_connection_per_host_reopened_once_when_lost() {
    let admin = TestAdmin::new();
    let u1 = TestUser::new("rk_share_1");
    let u2 = TestUser::new("rk_share_2");
    let provider = MysqlProvider::new();
    let t1 = target(&provider, &config(&u1.name, Some(&admin)), Strategy::Single);
    let t2 = target(&provider, &config(&u2.name, Some(&admin)), Strategy::Single);
    let id1 = t1.admin_connection_id().await.unwrap().unwrap();
    let id2 = t2.admin_connection_id().await.unwrap().unwrap();
    assert_eq!(id1, id2, "targets on one host share the admin connection");
    // Concurrent rotations on the shared connection.
    let (r1, r2) = tokio::join!(run_all(&t1, u1.doc()), run_all(&t2, u2.doc()));
    assert_logs_in(&t1, &r1).await;
    assert_logs_in(&t2, &r2).await;
    assert_eq!(provider.admin_connections_opened(), 1);

    // Kill the admin session behind rekey's back: the next step reconnects once.
    root_sql(&format!("KILL CONNECTION {id1}"));
    let new = t1.prepare(Some(&r1), random_password(32)).await.unwrap();
    t1.apply(&new, Some(&r1)).await.unwrap();
    assert_logs_in(&t1, &new).await;
    assert_eq!(provider.admin_connections_opened(), 2);
    assert_ne!(t1.admin_connection_id().await.unwrap().unwrap(), id1);
}

#[tokio::test]
async fn verify_runs_the_check_query() {
    let user = TestUser::new("rk_check");
    let provider = MysqlProvider::new();
    let mut c = config(&user.name, None);
    c.check_query = Some("SELECT CURRENT_USER()".into());
    target(&provider, &c, Strategy::Single)
        .verify(&user.doc())
        .await
        .unwrap();
    c.check_query = Some("SELECT * FROM mysql.user".into());
    let err = target(&provider, &c, Strategy::Single)
        .verify(&user.doc())
        .await
        .unwrap_err();
    assert_error(
        &err,
        ErrorKind::PermissionDenied,
        &["check query", "1142"],
        &[&user.password],
    );
}

#[tokio::test]
async fn documents_for_other_users_are_refused() {
    let admin = TestAdmin::new();
    let user = TestUser::new("rk_owner");
    let other = TestUser::new("rk_other");
    let t = target(
        &MysqlProvider::new(),
        &config(&user.name, Some(&admin)),
        Strategy::Single,
    );
    let err = t.apply(&other.doc(), Some(&user.doc())).await.unwrap_err();
    assert_error(
        &err,
        ErrorKind::InvalidInput,
        &[&other.name, &user.name],
        &[&other.password],
    );
    let err = t.login(&other.doc()).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::InvalidInput, "{err}");
    assert_eq!(other.stored_hash(), *native_password_hash(&other.password));
}
