//! `Target::precheck`, the read-only check a rotation runs before it changes anything,
//! against real clusters with SCRAM authentication enforced (rekey-testbed): with an
//! admin it is one query on the shared admin connection and never logs in with the
//! current secret; its errors are `preflight`'s, kind and message, for the same
//! failures (the CLI's tests and users' scripts match on them).

use rekey_api::conformance::{random_password, unique_name};
use rekey_api::{ErrorKind, ProviderError, RedactedDsn, Secret, SecretDoc, Strategy, Target};
use rekey_postgres::{PostgresProvider, PostgresTarget, PostgresTargetConfig};
use rekey_testbed::{quote_ident, PgCluster, PgOptions};
use std::time::Duration;

mod common;
use common::*;

fn target(provider: &PostgresProvider, config: &PostgresTargetConfig) -> PostgresTarget {
    target_with(provider, config, Strategy::Single)
}

/// Runs `precheck` and `preflight` with `current`: both must fail with the same kind and
/// the same message, holding `needles` and no secret. Returns precheck's error.
async fn same_failure(
    t: &PostgresTarget,
    current: Option<&SecretDoc>,
    kind: ErrorKind,
    needles: &[&str],
    secrets: &[&Secret],
) -> ProviderError {
    let pre = t.precheck(current).await.expect_err("precheck must fail");
    let full = t.preflight(current).await.expect_err("preflight must fail");
    let text = pre.to_string();
    assert_eq!(pre.kind(), kind, "unexpected kind: {text}");
    assert_eq!(full.kind(), kind, "preflight: {full}");
    assert_eq!(text, full.to_string(), "precheck and preflight say the same");
    for needle in needles {
        assert!(text.contains(needle), "`{text}` should mention `{needle}`");
    }
    for secret in secrets {
        assert!(!text.contains(secret.expose()), "`{text}` leaks a secret");
    }
    assert!(!text.contains('\n'), "one line: {text}");
    pre
}

#[tokio::test]
async fn with_admin_it_passes_without_logging_in_as_the_role() {
    let pg = PgCluster::shared();
    let role = TestRole::new(pg, "pc_ok");
    let provider = PostgresProvider::new();
    let t = target(&provider, &config(pg, &role.name, true));

    t.precheck(Some(&role.doc())).await.expect("precheck passes");
    t.precheck(None).await.expect("no current secret is fine with an admin");
    // A wrong current secret is plan's concern, not the rotation's: with an admin,
    // apply does not need it, so precheck does not try it.
    t.precheck(Some(&role.wrong_doc()))
        .await
        .expect("no login with the current secret");
    // A document without a username counts as the configured role.
    let mut bare = SecretDoc::new();
    bare.set_password(&role.password);
    t.precheck(Some(&bare)).await.unwrap();
    assert_eq!(provider.admin_connections_opened(), 1, "the shared admin connection");
    // Read-only.
    t.login(&role.doc()).await.expect("the password is unchanged");
}

#[tokio::test]
async fn another_username_is_refused_before_connecting() {
    let pg = PgCluster::shared();
    let role = TestRole::new(pg, "pc_user");
    let provider = PostgresProvider::new();
    let other = doc("someone_else", &role.password);
    for admin in [true, false] {
        let t = target(&provider, &config(pg, &role.name, admin));
        same_failure(
            &t,
            Some(&other),
            ErrorKind::InvalidInput,
            &["\"someone_else\" is not the configured role", &role.name],
            &[&role.password],
        )
        .await;
    }
    assert_eq!(provider.admin_connections_opened(), 0, "a pure check");
}

#[tokio::test]
async fn missing_role_is_not_found() {
    let pg = PgCluster::shared();
    let name = unique_name("pc_ghost");
    let t = target(&PostgresProvider::new(), &config(pg, &name, true));
    let ghost = doc(&name, &random_password(20));
    same_failure(
        &t,
        Some(&ghost),
        ErrorKind::NotFound,
        &[&format!("role \"{name}\" does not exist on 127.0.0.1:{}", pg.port())],
        &[],
    )
    .await;
    same_failure(&t, None, ErrorKind::NotFound, &["does not exist"], &[]).await;
}

#[tokio::test]
async fn missing_database_is_not_found() {
    let pg = PgCluster::shared();
    let role = TestRole::new(pg, "pc_nodb");
    let mut c = config(pg, &role.name, true);
    c.dbname = unique_name("pc_no_such_db");
    let t = target(&PostgresProvider::new(), &c);
    same_failure(
        &t,
        Some(&role.doc()),
        ErrorKind::NotFound,
        &[&format!("database \"{}\" does not exist", c.dbname)],
        &[],
    )
    .await;
}

#[tokio::test]
async fn unprivileged_admin_is_permission_denied_and_nothing_changes() {
    let pg = PgCluster::shared();
    let weak = TestRole::new(pg, "pc_weak");
    let role = TestRole::new(pg, "pc_guarded");
    let mut c = config(pg, &role.name, false);
    c.admin = Some(weak.dsn());
    let t = target(&PostgresProvider::new(), &c);
    same_failure(
        &t,
        Some(&role.doc()),
        ErrorKind::PermissionDenied,
        &[
            &format!("admin \"{}\" may not alter role \"{}\"", weak.name, role.name),
            "CREATEROLE",
        ],
        &[&weak.password, &role.password],
    )
    .await;
    t.login(&role.doc()).await.expect("unchanged");
}

#[tokio::test]
async fn createrole_admin_and_a_superuser_role() {
    let pg = PgCluster::shared();
    if pg.server_version_num() >= 160000 {
        // Since PostgreSQL 16 CREATEROLE also needs ADMIN OPTION; see the unit tests.
        return;
    }
    let admin = TestRole::with_options(pg, "pc_cr", "CREATEROLE");
    let role = TestRole::new(pg, "pc_cr_role");
    let boss = TestRole::with_options(pg, "pc_cr_super", "SUPERUSER");
    let provider = PostgresProvider::new();
    let mut c = config(pg, &role.name, false);
    c.admin = Some(admin.dsn());
    target(&provider, &c).precheck(Some(&role.doc())).await.unwrap();
    let mut c = config(pg, &boss.name, false);
    c.admin = Some(admin.dsn());
    same_failure(
        &target(&provider, &c),
        Some(&boss.doc()),
        ErrorKind::PermissionDenied,
        &["only a superuser may alter a superuser role"],
        &[],
    )
    .await;
}

#[tokio::test]
async fn nologin_and_expired_roles_are_refused() {
    let pg = PgCluster::shared();
    let nologin = TestRole::with_options(pg, "pc_nologin", "");
    pg.psql(&format!("ALTER ROLE {} NOLOGIN", quote_ident(&nologin.name)));
    let expired = TestRole::with_options(pg, "pc_expired", "VALID UNTIL '2001-01-01'");
    let provider = PostgresProvider::new();
    same_failure(
        &target(&provider, &config(pg, &nologin.name, true)),
        Some(&nologin.doc()),
        ErrorKind::PermissionDenied,
        &["has NOLOGIN"],
        &[],
    )
    .await;
    same_failure(
        &target(&provider, &config(pg, &expired.name, true)),
        Some(&expired.doc()),
        ErrorKind::PermissionDenied,
        &["past its VALID UNTIL"],
        &[],
    )
    .await;
}

#[tokio::test]
async fn wrong_admin_password_is_auth_rejected() {
    let pg = PgCluster::shared();
    let role = TestRole::new(pg, "pc_badadmin");
    let mut c = config(pg, &role.name, false);
    let wrong = random_password(20);
    c.admin = Some(RedactedDsn::new(format!(
        "postgres://postgres:{}@127.0.0.1:{}/postgres",
        wrong.expose(),
        pg.port()
    )));
    let t = target(&PostgresProvider::new(), &c);
    same_failure(
        &t,
        Some(&role.doc()),
        ErrorKind::AuthRejected,
        &["admin \"postgres\"", "28P01"],
        &[&wrong, &role.password],
    )
    .await;
}

#[tokio::test]
async fn closed_port_is_unreachable() {
    let pg = PgCluster::shared();
    let port = closed_port();
    let mut c = config(pg, "nobody", false);
    c.port = port;
    c.connect_timeout_secs = 5;
    c.admin = Some(RedactedDsn::new(format!(
        "postgres://postgres:{}@127.0.0.1:{port}/postgres",
        pg.admin_password()
    )));
    let t = target(&PostgresProvider::new(), &c);
    let err = same_failure(
        &t,
        None,
        ErrorKind::Unreachable,
        &[&format!("127.0.0.1:{port}"), "admin \"postgres\""],
        &[],
    )
    .await;
    assert!(err.is_retryable());
}

#[tokio::test]
async fn a_login_endpoint_the_admin_does_not_use_is_probed() {
    let pg = PgCluster::shared();
    let role = TestRole::new(pg, "pc_elsewhere");
    let port = closed_port();
    // The admin reaches the server on its own port; logins would go to a closed one:
    // apply would succeed and verify fail, so precheck must refuse.
    let mut c = config(pg, &role.name, true);
    c.port = port;
    c.connect_timeout_secs = 5;
    let t = target(&PostgresProvider::new(), &c);
    let label = format!("role \"{}\" on 127.0.0.1:{port}/postgres", role.name);
    same_failure(
        &t,
        Some(&role.doc()),
        ErrorKind::Unreachable,
        &[&label],
        &[&role.password],
    )
    .await;
    let err = t.precheck(None).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Unreachable, "{err}");
    assert!(err.to_string().contains(&label), "{err}");
}

#[tokio::test]
async fn without_admin_the_current_secret_must_log_in() {
    let pg = PgCluster::shared();
    let role = TestRole::new(pg, "pc_self");
    let t = target(&PostgresProvider::new(), &config(pg, &role.name, false));
    t.precheck(Some(&role.doc())).await.expect("the current secret logs in");
    let wrong = role.wrong_doc();
    same_failure(
        &t,
        Some(&wrong),
        ErrorKind::AuthRejected,
        &["no admin is configured, so the current secret must log in", &role.name],
        &[&wrong.password().unwrap(), &role.password],
    )
    .await;
    same_failure(
        &t,
        None,
        ErrorKind::InvalidInput,
        &["no admin is configured and there is no current secret"],
        &[],
    )
    .await;
}

/// Two login roles, members of one group role, and the alternating target over them.
struct Pair<'a> {
    pg: &'a PgCluster,
    group: String,
    a: TestRole<'a>,
    b: TestRole<'a>,
}

impl<'a> Pair<'a> {
    fn new(pg: &'a PgCluster, prefix: &str) -> Self {
        let group = unique_name(&format!("{prefix}_rw"));
        pg.psql(&format!("CREATE ROLE {} NOLOGIN", quote_ident(&group)));
        let member = format!("IN ROLE {}", quote_ident(&group));
        let a = TestRole::with_options(pg, &format!("{prefix}_a"), &member);
        let b = TestRole::with_options(pg, &format!("{prefix}_b"), &member);
        Pair { pg, group, a, b }
    }

    fn target(&self, provider: &PostgresProvider, second: &str) -> PostgresTarget {
        let mut c = PostgresTargetConfig::new_alternating(self.pg.host(), &self.a.name, second);
        c.port = self.pg.port();
        c.admin = Some(RedactedDsn::new(self.pg.admin_url()));
        provider
            .postgres_target(&c, Strategy::Alternating)
            .expect("target builds")
    }
}

impl Drop for Pair<'_> {
    fn drop(&mut self) {
        self.pg.drop_role(&self.group);
    }
}

#[tokio::test]
async fn alternating_checks_both_roles() {
    let pg = PgCluster::shared();
    let pair = Pair::new(pg, "pc_alt");
    let provider = PostgresProvider::new();
    let t = pair.target(&provider, &pair.b.name);

    t.precheck(None).await.expect("no current secret");
    t.precheck(Some(&pair.a.doc())).await.expect("a is live");
    t.precheck(Some(&pair.b.doc())).await.expect("b is live");
    t.precheck(Some(&pair.a.wrong_doc()))
        .await
        .expect("no login with the current secret");

    // The live role must be one of the two.
    let stranger = doc("pc_stranger", &random_password(20));
    same_failure(
        &t,
        Some(&stranger),
        ErrorKind::InvalidInput,
        &[
            "the live role",
            "\"pc_stranger\" is not one of the configured `usernames`",
        ],
        &[],
    )
    .await;

    // The second role is checked as well as the first, by the same query.
    let ghost = unique_name("pc_alt_ghost");
    let t2 = pair.target(&provider, &ghost);
    same_failure(
        &t2,
        Some(&pair.a.doc()),
        ErrorKind::NotFound,
        &[&format!("role \"{ghost}\" does not exist")],
        &[],
    )
    .await;
    pg.psql(&format!("ALTER ROLE {} NOLOGIN", quote_ident(&pair.b.name)));
    same_failure(
        &t,
        Some(&pair.a.doc()),
        ErrorKind::PermissionDenied,
        &[&format!("role \"{}\"", pair.b.name), "NOLOGIN"],
        &[],
    )
    .await;
    pg.psql(&format!("ALTER ROLE {} LOGIN", quote_ident(&pair.b.name)));
    t.precheck(Some(&pair.a.doc())).await.expect("passes again");

    // Roles that drifted apart would move the applications to a role lacking what
    // they use: refused as plan refuses it.
    pg.psql(&format!("ALTER ROLE {} CONNECTION LIMIT 7", quote_ident(&pair.a.name)));
    same_failure(
        &t,
        Some(&pair.a.doc()),
        ErrorKind::InvalidInput,
        &["differ", "CONNECTION LIMIT 7"],
        &[],
    )
    .await;
    assert_eq!(provider.admin_connections_opened(), 1);
}

/// What the server saw, from its log: statements run and sessions authorized.
#[tokio::test]
async fn one_statement_on_the_admin_connection_and_no_login() {
    let pg = PgCluster::start_with(
        PgOptions::new()
            .log_statement_all(true)
            .setting("log_connections", "on"),
    )
    .expect("cluster starts");
    let role = TestRole::new(&pg, "pc_log");
    let provider = PostgresProvider::new();
    let t = target(&provider, &config(&pg, &role.name, true));
    // The first call opens the shared admin connection.
    t.precheck(Some(&role.doc())).await.unwrap();

    let settle = || tokio::time::sleep(Duration::from_millis(300));
    settle().await;
    let before = pg.log_contents().len();
    t.precheck(Some(&role.doc())).await.unwrap();
    settle().await;
    let log = pg.log_contents();
    // Control: the log does show logins (the admin connection's, opened by the first call).
    assert!(log[..before].contains("connection authorized"), "log_connections is on");
    let seen = &log[before..];
    let statements: Vec<&str> = seen
        .lines()
        .filter(|l| l.contains("LOG:  statement:") || l.contains("LOG:  execute"))
        .collect();
    assert_eq!(statements.len(), 1, "one statement per precheck:\n{seen}");
    assert!(statements[0].contains("pg_roles"), "{seen}");
    // The admin connection takes the route logins take, and this cluster's pg_hba.conf
    // (initdb's) admits every role from here by one line: read once by the first call
    // (`pg_hba_file_rules`), it stands for the role's login, so no probe.
    assert!(
        log[..before].contains("pg_hba_file_rules"),
        "read once, by the first call"
    );
    assert!(
        !seen.contains("connection received") && !seen.contains("connection authorized"),
        "no new connection, no login:\n{seen}"
    );
    assert!(!seen.contains(role.password.expose()));
    assert!(!seen.contains(pg.admin_password()));
    assert_eq!(provider.admin_connections_opened(), 1);

    // An admin connection with another TLS setting than logins use proves nothing about
    // them: precheck probes the login route, which the server sees as a connection that
    // never authenticates (no password sent, no session), and still does not log in
    // with the current secret.
    let mut c = config(&pg, &role.name, false);
    c.admin = Some(RedactedDsn::new(format!(
        "host=127.0.0.1 port={} user=postgres password={} sslmode=prefer",
        pg.port(),
        pg.admin_password()
    )));
    c.sslmode = rekey_postgres::SslMode::Disable;
    let t = target(&provider, &c);
    t.precheck(Some(&role.wrong_doc())).await.unwrap();
    settle().await;
    let before = pg.log_contents().len();
    t.precheck(Some(&role.wrong_doc())).await.unwrap();
    settle().await;
    let log = pg.log_contents();
    let seen = &log[before..];
    let statements = seen
        .lines()
        .filter(|l| l.contains("LOG:  statement:") || l.contains("LOG:  execute"))
        .count();
    assert_eq!(statements, 1, "one statement per precheck:\n{seen}");
    assert_eq!(seen.matches("connection received").count(), 1, "one probe:\n{seen}");
    assert!(!seen.contains("connection authorized"), "no login:\n{seen}");
    assert!(!seen.contains("FATAL"), "the server takes the probe quietly:\n{seen}");
    assert_eq!(provider.admin_connections_opened(), 2);
}
