//! Accounts as production has them, against the machine's MariaDB: every test first
//! shows the account's state (read as root from `mysql.global_priv`), then rotates, then
//! shows the state kept — or that the rotation was refused before anything changed, with
//! a message that names the reason and what would allow it.
//!
//! - `IDENTIFIED VIA unix_socket OR mysql_native_password` keeps `unix_socket`;
//!   a socket-only account is refused, never given a password;
//! - `ed25519` accounts: refused before anything changes, and a login as one is
//!   `unsupported` (never a refusal);
//! - a user with several host entries: the entries sharing the password all change;
//! - `PASSWORD EXPIRE`: reported as expired, fixed by a rotation through the admin;
//! - `PASSWORD EXPIRE INTERVAL 30 DAY`: kept by default, replaced as `password_lifetime`
//!   says, and `plan` says which;
//! - `REQUIRE SSL` against a server without TLS: refused before anything changes;
//! - `ACCOUNT LOCK`: refused before anything changes;
//! - `MAX_USER_CONNECTIONS 1` with the slot taken: refused before anything changes;
//! - no limit of its own but the server's `max_user_connections` reached (on a throwaway
//!   server: the global setting would limit every other test's users): likewise.

mod common;

use common::*;
use mysql_async::prelude::Queryable;
use rekey_api::conformance::{random_password, target::run_all, unique_name};
use rekey_api::{ErrorKind, Secret, SecretDoc, Strategy, Target};
use rekey_mysql::{
    ed25519_password_hash, native_password_hash, MysqlProvider, MysqlTarget, MysqlTargetConfig, PasswordLifetime,
    TlsMode,
};

fn config(user: &str, admin: Option<&TestAdmin>) -> MysqlTargetConfig {
    let mut c = MysqlTargetConfig::new(host(), user);
    c.port = port();
    c.admin = admin.map(TestAdmin::url);
    c
}

fn target(config: &MysqlTargetConfig) -> MysqlTarget {
    MysqlProvider::new()
        .mysql_target(config, Strategy::Single)
        .expect("target builds")
}

/// The `Priv` JSON of `'user'@'host'`, as root reads it.
fn priv_json(user: &str, host: &str) -> serde_json::Value {
    let text = root_sql(&format!(
        "SELECT Priv FROM mysql.global_priv WHERE User = {} AND Host = {}",
        lit(user),
        lit(host)
    ));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("Priv of {user}@{host}: {e}: {text}"))
}

/// The plugins of `auth_or` (`{}` standing for the top-level one), or the top-level plugin.
fn methods(json: &serde_json::Value) -> Vec<String> {
    let top = json["plugin"].as_str().unwrap_or("").to_owned();
    match json["auth_or"].as_array() {
        Some(chain) => chain
            .iter()
            .map(|m| m["plugin"].as_str().map(str::to_owned).unwrap_or_else(|| top.clone()))
            .collect(),
        None => vec![top],
    }
}

/// The authentication string of the `plugin` method.
fn auth_string(json: &serde_json::Value, plugin: &str) -> String {
    if json["plugin"] == plugin {
        return json["authentication_string"].as_str().unwrap_or("").to_owned();
    }
    json["auth_or"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|m| m["plugin"] == plugin)
        .and_then(|m| m["authentication_string"].as_str())
        .unwrap_or("")
        .to_owned()
}

/// An account created by `CREATE USER 'name'@'host' <spec>` as root, dropped at the end.
struct Account {
    name: String,
    host: String,
}

impl Account {
    fn create(name: &str, host: &str, spec: &str) -> Account {
        root_sql(&format!("CREATE USER {}@{} {spec}", lit(name), lit(host)));
        Account {
            name: name.to_owned(),
            host: host.to_owned(),
        }
    }

    fn json(&self) -> serde_json::Value {
        priv_json(&self.name, &self.host)
    }
}

impl Drop for Account {
    fn drop(&mut self) {
        let _ = try_root_sql(&format!("DROP USER IF EXISTS {}@{}", lit(&self.name), lit(&self.host)));
    }
}

/// MariaDB's ed25519 plugin, installed once (it stays installed: harmless).
fn ensure_ed25519() {
    root_sql("INSTALL PLUGIN IF NOT EXISTS ed25519 SONAME 'auth_ed25519'");
}

/// A login through the server's Unix socket, where `'user'@'localhost'` entries apply.
async fn socket_login(user: &str, password: &Secret) -> Result<String, mysql_async::Error> {
    let socket = root_sql("SELECT @@socket");
    let opts = mysql_async::OptsBuilder::default()
        .socket(Some(socket))
        .user(Some(user))
        .pass(Some(password.expose()));
    let mut conn = mysql_async::Conn::new(opts).await?;
    let who: Option<String> = conn.query_first("SELECT CURRENT_USER()").await?;
    let _ = conn.disconnect().await;
    Ok(who.unwrap_or_default())
}

#[tokio::test]
async fn unix_socket_alternative_is_kept() {
    let admin = TestAdmin::new();
    let name = unique_name("rk_sockor");
    let password = random_password(24);
    let account = Account::create(
        &name,
        "%",
        &format!(
            "IDENTIFIED VIA unix_socket OR mysql_native_password USING PASSWORD({})",
            lit(password.expose())
        ),
    );
    // Before: unix_socket, then the password.
    assert_eq!(methods(&account.json()), ["unix_socket", "mysql_native_password"]);

    let t = target(&config(&name, Some(&admin)));
    let current = doc(&name, &password);
    let plan = t.preflight(Some(&current)).await.unwrap().join("\n");
    assert!(
        plan.contains("authenticates via unix_socket OR mysql_native_password") && plan.contains("keeps unix_socket"),
        "{plan}"
    );
    let end = run_all(&t, current).await;
    // After: the same chain, the new password's hash in it.
    let after = account.json();
    assert_eq!(methods(&after), ["unix_socket", "mysql_native_password"]);
    assert_eq!(
        auth_string(&after, "mysql_native_password"),
        *native_password_hash(&end.password().unwrap())
    );

    // Without an admin, SET PASSWORD cannot keep the chain: refused, nothing changed.
    let t = target(&config(&name, None));
    let before = account.json();
    let err = t.preflight(Some(&end)).await.unwrap_err();
    assert_error(
        &err,
        ErrorKind::Unsupported,
        &["unix_socket OR mysql_native_password", "configure `admin`"],
        &[&end.password().unwrap()],
    );
    let new = t.prepare(Some(&end), random_password(24)).await.unwrap();
    let err = t.apply(&new, Some(&end)).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Unsupported, "{err}");
    assert_eq!(account.json(), before, "nothing changed");
}

#[tokio::test]
async fn socket_only_account_is_refused_never_given_a_password() {
    let admin = TestAdmin::new();
    let name = unique_name("rk_sockonly");
    let account = Account::create(&name, "%", "IDENTIFIED VIA unix_socket");
    let before = account.json();
    assert_eq!(methods(&before), ["unix_socket"]);
    let t = target(&config(&name, Some(&admin)));
    for err in [
        t.preflight(None).await.unwrap_err(),
        t.precheck(None).await.unwrap_err(),
    ] {
        assert_error(
            &err,
            ErrorKind::Unsupported,
            &[
                &format!("'{name}'@'%' authenticates via unix_socket only and has no password"),
                "never gives",
            ],
            &[],
        );
    }
    let new = t.prepare(None, random_password(24)).await.unwrap();
    let err = t.apply(&new, None).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Unsupported, "{err}");
    assert_eq!(account.json(), before, "still socket-only, no password");
}

/// ed25519 accounts: rekey computes the same public key as the server (so it could set
/// one without sending the plaintext), but the client library's ed25519 login was seen
/// refusing some correctly stored passwords here, so a rotation could not be verified.
/// Such accounts are refused cleanly before anything changes: never a panic, never an
/// unverifiable password.
#[tokio::test]
async fn ed25519_accounts_are_refused_before_anything_changes() {
    ensure_ed25519();
    let admin = TestAdmin::new();
    for (prefix, clause) in [
        ("rk_ed", "IDENTIFIED VIA ed25519 USING PASSWORD({p})"),
        (
            "rk_ednat",
            "IDENTIFIED VIA ed25519 USING PASSWORD({p}) OR mysql_native_password USING PASSWORD({p})",
        ),
    ] {
        let name = unique_name(prefix);
        let password = random_password(24);
        let account = Account::create(&name, "%", &clause.replace("{p}", &lit(password.expose())));
        let before = account.json();
        assert_eq!(methods(&before)[0], "ed25519");
        // The server's own computation and rekey's agree.
        assert_eq!(auth_string(&before, "ed25519"), *ed25519_password_hash(&password));
        let t = target(&config(&name, Some(&admin)));
        for err in [
            t.preflight(Some(&doc(&name, &password))).await.unwrap_err(),
            t.precheck(Some(&doc(&name, &password))).await.unwrap_err(),
        ] {
            assert_error(
                &err,
                ErrorKind::Unsupported,
                &[
                    &format!("'{name}'@'%' authenticates via ed25519"),
                    "mysql_native_password",
                ],
                &[&password],
            );
        }
        let new = t
            .prepare(Some(&doc(&name, &password)), random_password(24))
            .await
            .unwrap();
        let err = t.apply(&new, Some(&doc(&name, &password))).await.unwrap_err();
        assert_eq!(err.kind(), ErrorKind::Unsupported, "{err}");
        // A login as the account (`import`, `verify`, `leaked`'s re-check) is a clear
        // `unsupported`, never a refusal: mysql_async's ed25519 signing was seen refusing
        // a correct password for about 1 in 40 passwords, which would make a live
        // password look dead; rekey's client does not offer ed25519 at all.
        // The client library panics when the server's authentication switch asks for
        // ed25519; that panic is caught, silenced (no message on stderr: the CLI test
        // tests/integration/mysql_ed25519.rs checks the process's output) and reported
        // naming the plugin the server asked for.
        for err in [
            t.login(&doc(&name, &password)).await.unwrap_err(),
            t.verify(&doc(&name, &password)).await.unwrap_err(),
        ] {
            assert_error(
                &err,
                ErrorKind::Unsupported,
                &[&name, "authenticates with the `ed25519` plugin", "cannot answer"],
                &[&password],
            );
            assert!(!err.to_string().contains("panicked"), "{err}");
        }
        assert_eq!(account.json(), before, "nothing changed");
    }
}

#[tokio::test]
async fn every_host_entry_with_the_password_gets_the_new_one() {
    let admin = TestAdmin::new();
    let name = unique_name("rk_hosts");
    let password = random_password(24);
    let other = random_password(24);
    let by = |p: &Secret| format!("IDENTIFIED BY {}", lit(p.expose()));
    let any = Account::create(&name, "%", &by(&password));
    let local = Account::create(&name, "localhost", &by(&password));
    let subnet = Account::create(&name, "10.9.%", &by(&other));
    let socket = Account::create(&name, "192.0.2.1", "IDENTIFIED VIA unix_socket");
    // Before: the password works through '%' (TCP) and through 'localhost' (the socket).
    assert_eq!(
        socket_login(&name, &password).await.unwrap(),
        format!("{name}@localhost")
    );

    let t = target(&config(&name, Some(&admin)));
    let current = doc(&name, &password);
    let plan = t.preflight(Some(&current)).await.unwrap().join("\n");
    for needle in [
        format!("'{name}'@'localhost' stores the same password: it gets the new password too"),
        format!("'{name}'@'10.9.%' has another password: left as it is"),
        format!("'{name}'@'192.0.2.1' authenticates via unix_socket without a password: left as it is"),
    ] {
        assert!(plan.contains(&needle), "plan should say `{needle}`:\n{plan}");
    }
    let (subnet_before, socket_before) = (subnet.json(), socket.json());
    let end = run_all(&t, current).await;
    let new = end.password().unwrap();
    // After: the old password is dead through every entry, the new one works through both.
    let err = socket_login(&name, &password).await.unwrap_err();
    assert!(
        err.to_string().contains("1045") || err.to_string().contains("Access denied"),
        "{err}"
    );
    assert_eq!(socket_login(&name, &new).await.unwrap(), format!("{name}@localhost"));
    let hash = native_password_hash(&new);
    assert_eq!(auth_string(&any.json(), "mysql_native_password"), *hash);
    assert_eq!(auth_string(&local.json(), "mysql_native_password"), *hash);
    // The entries with another password, or none, are as they were.
    assert_eq!(subnet.json(), subnet_before);
    assert_eq!(socket.json(), socket_before);
}

#[tokio::test]
async fn expired_password_is_reported_and_rotation_through_the_admin_fixes_it() {
    let admin = TestAdmin::new();
    let user = TestUser::new("rk_expired");
    root_sql(&format!("ALTER USER {} PASSWORD EXPIRE", account(&user.name)));
    let expired = || {
        root_sql(&format!(
            "SELECT password_expired FROM mysql.user WHERE User = {} AND Host = '%'",
            lit(&user.name)
        ))
    };
    assert_eq!(expired(), "Y");

    let t = target(&config(&user.name, Some(&admin)));
    // login and verify say "expired", not ok.
    for err in [
        t.login(&user.doc()).await.unwrap_err(),
        t.verify(&user.doc()).await.unwrap_err(),
    ] {
        assert_error(
            &err,
            ErrorKind::PermissionDenied,
            &[
                &user.name,
                "has expired",
                "1820",
                "`rekey rotate` with `admin`",
                "`rekey import --no-verify`",
            ],
            &[&user.password],
        );
    }
    // plan says so and passes; the rotation through the admin works.
    let plan = t.preflight(Some(&user.doc())).await.unwrap().join("\n");
    assert!(plan.contains("has expired (PASSWORD EXPIRE)"), "{plan}");
    let new = t.prepare(Some(&user.doc()), random_password(24)).await.unwrap();
    t.apply(&new, Some(&user.doc())).await.unwrap();
    t.verify(&new).await.unwrap();
    assert_eq!(t.login(&user.doc()).await.unwrap_err().kind(), ErrorKind::AuthRejected);
    assert_eq!(expired(), "N", "the expiry is cleared");

    // Without an admin an expired password is refused with the fix.
    root_sql(&format!("ALTER USER {} PASSWORD EXPIRE", account(&user.name)));
    let t = target(&config(&user.name, None));
    let err = t.preflight(Some(&new)).await.unwrap_err();
    assert_error(
        &err,
        ErrorKind::PermissionDenied,
        &["has expired", "configure `admin`"],
        &[&new.password().unwrap()],
    );
}

/// One rotation through `t`: prepare, apply, verify the new secret, the old one refused.
async fn rotate(t: &MysqlTarget, current: &mut SecretDoc) {
    let new = t.prepare(Some(current), random_password(24)).await.unwrap();
    t.apply(&new, Some(current)).await.unwrap();
    t.verify(&new).await.unwrap();
    assert_eq!(t.login(current).await.unwrap_err().kind(), ErrorKind::AuthRejected);
    *current = new;
}

#[tokio::test]
async fn password_lifetime_is_kept_by_default_and_set_when_configured() {
    let admin = TestAdmin::new();
    let name = unique_name("rk_life");
    let password = random_password(24);
    let spec = format!(
        "IDENTIFIED BY {} PASSWORD EXPIRE INTERVAL 30 DAY",
        lit(password.expose())
    );
    // Two entries storing the same password: both get the new one, and the same policy.
    let any = Account::create(&name, "%", &spec);
    let local = Account::create(&name, "localhost", &spec);
    let lifetimes = || {
        (
            any.json()["password_lifetime"].as_i64(),
            local.json()["password_lifetime"].as_i64(),
        )
    };
    assert_eq!(
        lifetimes(),
        (Some(30), Some(30)),
        "PASSWORD EXPIRE INTERVAL 30 DAY before"
    );
    let mut current = doc(&name, &password);

    // Default: "keep". The plan says so, and the interval survives the rotation.
    let t = target(&config(&name, Some(&admin)));
    let plan = t.preflight(Some(&current)).await.unwrap().join("\n");
    let says = format!(
        "'{name}'@'%' has PASSWORD EXPIRE INTERVAL 30 DAY: kept (password_lifetime = \"keep\"), the new password \
         expires 30 days after the rotation"
    );
    assert!(plan.contains(&says), "plan should say `{says}`:\n{plan}");
    rotate(&t, &mut current).await;
    assert_eq!(lifetimes(), (Some(30), Some(30)), "kept by default");

    for (setting, stored, says) in [
        (
            PasswordLifetime::Clear,
            0,
            "has PASSWORD EXPIRE INTERVAL 30 DAY: the rotation sets PASSWORD EXPIRE NEVER (password_lifetime = \
             \"clear\"), the new password never expires",
        ),
        (
            PasswordLifetime::Days(90),
            90,
            "has PASSWORD EXPIRE NEVER: the rotation sets PASSWORD EXPIRE INTERVAL 90 DAY (password_lifetime = \
             \"90d\"), the new password expires 90 days after the rotation",
        ),
        (
            PasswordLifetime::Days(90),
            90,
            "has PASSWORD EXPIRE INTERVAL 90 DAY: kept (password_lifetime = \"90d\" sets the same)",
        ),
    ] {
        let mut c = config(&name, Some(&admin));
        c.password_lifetime = setting;
        let t = target(&c);
        let plan = t.preflight(Some(&current)).await.unwrap().join("\n");
        let says = format!("'{name}'@'%' {says}");
        assert!(plan.contains(&says), "plan should say `{says}`:\n{plan}");
        rotate(&t, &mut current).await;
        assert_eq!(
            lifetimes(),
            (Some(stored), Some(stored)),
            "password_lifetime = {setting}"
        );
    }

    // Without an admin the user cannot change its own policy: refused when built.
    let mut c = config(&name, None);
    c.password_lifetime = PasswordLifetime::Days(90);
    let err = MysqlProvider::new().mysql_target(&c, Strategy::Single).unwrap_err();
    assert_error(
        &err,
        ErrorKind::InvalidInput,
        &["password_lifetime = \"90d\"", "needs `admin`"],
        &[],
    );
}

#[tokio::test]
async fn require_ssl_without_server_tls_is_refused_before_anything_changes() {
    let have_ssl = root_sql("SELECT @@have_ssl");
    if have_ssl == "YES" {
        eprintln!("skipped: this server offers TLS (tests/tls.rs covers REQUIRE SSL with TLS)");
        return;
    }
    let admin = TestAdmin::new();
    let user = TestUser::new("rk_reqssl");
    root_sql(&format!("ALTER USER {} REQUIRE SSL", account(&user.name)));
    assert_eq!(priv_json(&user.name, "%")["ssl_type"], 1, "REQUIRE SSL before");
    let before = user.stored_hash();
    for mode in [TlsMode::Prefer, TlsMode::Disable] {
        let mut c = config(&user.name, Some(&admin));
        c.tls = mode;
        let t = target(&c);
        // What the rotation would have run into: the login is refused.
        assert_eq!(t.login(&user.doc()).await.unwrap_err().kind(), ErrorKind::AuthRejected);
        let err = t.precheck(Some(&user.doc())).await.unwrap_err();
        let needles: &[&str] = match mode {
            TlsMode::Prefer => &["REQUIRE SSL", "does not offer TLS", "tls = \"prefer\""],
            _ => &["REQUIRE SSL", "tls = \"disable\"", "set tls = \"prefer\""],
        };
        assert_error(&err, ErrorKind::InvalidInput, needles, &[&user.password]);
    }
    assert_eq!(user.stored_hash(), before, "nothing changed");
}

/// `MAX_USER_CONNECTIONS 1` with the one slot taken: verify's login after apply would be
/// refused (error 1226) with the new password already set, so precheck and plan refuse
/// first, naming the limit; once the session ends the rotation goes through.
#[tokio::test]
async fn max_user_connections_with_every_slot_taken_is_refused_before_apply() {
    let admin = TestAdmin::new();
    let user = TestUser::new("rk_maxconn");
    root_sql(&format!(
        "ALTER USER {} WITH MAX_USER_CONNECTIONS 1",
        account(&user.name)
    ));
    assert_eq!(
        priv_json(&user.name, "%")["max_user_connections"],
        1,
        "the limit before"
    );
    let session = raw_session(&user.name, &user.password).await;
    let open = root_sql(&format!(
        "SELECT COUNT(*) FROM information_schema.PROCESSLIST WHERE USER = {}",
        lit(&user.name)
    ));
    assert_eq!(open, "1", "the one slot is taken");
    let t = target(&config(&user.name, Some(&admin)));
    let before = user.stored_hash();
    for err in [
        t.precheck(Some(&user.doc())).await.unwrap_err(),
        t.preflight(Some(&user.doc())).await.unwrap_err(),
    ] {
        assert_error(
            &err,
            ErrorKind::Conflict,
            &[
                &account(&user.name),
                "MAX_USER_CONNECTIONS 1 and 1 session(s) open",
                "nothing was changed",
            ],
            &[&user.password],
        );
        assert!(!err.is_retryable());
    }
    assert_eq!(user.stored_hash(), before, "nothing changed");
    // What verify would have run into (checked last: a refused login's thread may linger
    // in the process list for a moment on a busy machine, and the count above is exact).
    let refused = t.login(&user.doc()).await.expect_err("no second session");
    assert!(refused.to_string().contains("1226"), "{refused}");
    let _ = session.disconnect().await;
    // Once the session is gone there is a slot again.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while t.precheck(Some(&user.doc())).await.is_err() {
        assert!(std::time::Instant::now() < deadline, "the session did not end");
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    let new = t.prepare(Some(&user.doc()), random_password(24)).await.unwrap();
    t.apply(&new, Some(&user.doc())).await.unwrap();
    t.verify(&new).await.expect("the new password logs in");
    assert_eq!(priv_json(&user.name, "%")["max_user_connections"], 1, "the limit kept");
}

/// An account without a limit of its own is held to the server's `max_user_connections`:
/// with it reached, verify's login after apply would be refused (error 1203), so
/// precheck and plan refuse first, naming the server variable. On a throwaway server,
/// since `SET GLOBAL` would limit every user of the machine's.
#[tokio::test]
async fn the_servers_max_user_connections_reached_is_refused_before_apply() {
    // A limit the server was started without cannot be set while it runs.
    let server = rekey_testbed::MariaDbServer::start_with(&["--max-user-connections=1"])
        .unwrap_or_else(|e| panic!("cannot start MariaDB: {e}"));
    let (admin, admin_password) = ("rekey_admin", random_password(24));
    let (user, password) = ("app_slots", random_password(24));
    server.root_sql(&format!(
        "CREATE USER {a}@'%' IDENTIFIED BY {ap}; \
         GRANT CREATE USER, PROCESS, CONNECTION ADMIN ON *.* TO {a}@'%'; GRANT SELECT ON mysql.* TO {a}@'%'; \
         ALTER USER {a}@'%' WITH MAX_USER_CONNECTIONS 10; CREATE USER {u}@'%' IDENTIFIED BY {up}",
        a = lit(admin),
        ap = lit(admin_password.expose()),
        u = lit(user),
        up = lit(password.expose()),
    ));
    let stored_hash = || {
        server.root_sql(&format!(
            "SELECT authentication_string FROM mysql.user WHERE User = {} AND Host = '%'",
            lit(user)
        ))
    };
    let mut c = MysqlTargetConfig::new("127.0.0.1", user);
    c.port = server.port();
    c.tls = TlsMode::Prefer;
    c.admin = Some(rekey_api::RedactedDsn::new(format!(
        "mysql://{admin}:{}@127.0.0.1:{}/",
        admin_password.expose(),
        server.port()
    )));
    let t = MysqlProvider::new().target(&c, Strategy::Single).unwrap();
    let current = doc(user, &password);
    // The precondition: no limit of its own, one session holds the server's one slot.
    let own = server.root_sql(&format!(
        "SELECT COALESCE(JSON_VALUE(Priv, '$.max_user_connections'), 0) FROM mysql.global_priv WHERE User = {}",
        lit(user)
    ));
    assert_eq!(own, "0", "no limit of its own");
    assert_eq!(server.root_sql("SELECT @@GLOBAL.max_user_connections"), "1");
    t.login(&current).await.expect("logs in while the slot is free");
    // That login's thread may linger in the process list for a moment on a busy
    // machine, holding the one slot: wait (bounded) until it is gone.
    let sessions = || {
        server.root_sql(&format!(
            "SELECT COUNT(*) FROM information_schema.PROCESSLIST WHERE USER = {}",
            lit(user)
        ))
    };
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while sessions() != "0" {
        assert!(std::time::Instant::now() < deadline, "the login's session did not end");
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    let opts = mysql_async::OptsBuilder::default()
        .ip_or_hostname("127.0.0.1")
        .tcp_port(server.port())
        .user(Some(user))
        .pass(Some(password.expose()))
        .prefer_socket(false);
    let session = mysql_async::Conn::new(opts).await.expect("the session taking the slot");
    assert_eq!(sessions(), "1", "the one slot is taken");
    let before = stored_hash();
    for err in [
        t.precheck(Some(&current)).await.unwrap_err(),
        t.preflight(Some(&current)).await.unwrap_err(),
    ] {
        assert_error(
            &err,
            ErrorKind::Conflict,
            &[
                "no MAX_USER_CONNECTIONS of its own, so the server's max_user_connections = 1 applies, and 1 \
                 session(s) open",
                "SET GLOBAL max_user_connections = n",
                "nothing was changed",
            ],
            &[&password, &admin_password],
        );
        assert!(!err.is_retryable());
    }
    assert_eq!(stored_hash(), before, "nothing changed");
    // What verify would have run into.
    let refused = t.login(&current).await.expect_err("no second session");
    assert!(refused.to_string().contains("1203"), "{refused}");
    assert_eq!(
        refused.kind(),
        ErrorKind::Conflict,
        "this user's limit, not an unreachable host"
    );
    let _ = session.disconnect().await;
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while t.precheck(Some(&current)).await.is_err() {
        assert!(std::time::Instant::now() < deadline, "the session did not end");
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    let new = t.prepare(Some(&current), random_password(24)).await.unwrap();
    t.apply(&new, Some(&current)).await.unwrap();
    t.verify(&new).await.expect("the new password logs in");
}

#[tokio::test]
async fn locked_account_is_refused_before_anything_changes() {
    let admin = TestAdmin::new();
    let user = TestUser::new("rk_locked");
    root_sql(&format!("ALTER USER {} ACCOUNT LOCK", account(&user.name)));
    assert_eq!(priv_json(&user.name, "%")["account_locked"], true);
    let t = target(&config(&user.name, Some(&admin)));
    let err = t.precheck(Some(&user.doc())).await.unwrap_err();
    assert_error(
        &err,
        ErrorKind::PermissionDenied,
        &["is locked", "ACCOUNT UNLOCK"],
        &[&user.password],
    );
}

#[tokio::test]
async fn admin_that_cannot_read_the_account_is_refused_with_the_grant() {
    let admin = TestAdmin::with_grants(&["CREATE USER, PROCESS, CONNECTION ADMIN ON *.*"]);
    let user = TestUser::new("rk_noread");
    let t = target(&config(&user.name, Some(&admin)));
    let err = t.precheck(Some(&user.doc())).await.unwrap_err();
    assert_error(
        &err,
        ErrorKind::PermissionDenied,
        &[
            "may not read the authentication state",
            "GRANT SELECT ON mysql.global_priv",
        ],
        &[&user.password, &admin.user.password],
    );
    let before = user.stored_hash();
    let new: SecretDoc = t.prepare(Some(&user.doc()), random_password(24)).await.unwrap();
    assert_eq!(
        t.apply(&new, Some(&user.doc())).await.unwrap_err().kind(),
        ErrorKind::PermissionDenied
    );
    assert_eq!(user.stored_hash(), before);
}
