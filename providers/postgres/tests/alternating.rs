//! Strategy `alternating` (two roles taking turns) against real clusters with SCRAM
//! authentication enforced (rekey-testbed): the conformance suite, zero downtime for an
//! application that keeps logging in during rotations, preflight's privilege-drift
//! checks, session termination, the server log, and configuration errors.

use rekey_api::conformance::target::alternating_uses_the_idle_user;
use rekey_api::conformance::{random_password, unique_name};
use rekey_api::{ErrorKind, RedactedDsn, RevokeOptions, Secret, SecretDoc, Strategy, Target};
use rekey_postgres::{PostgresProvider, PostgresTarget, PostgresTargetConfig};
use rekey_testbed::{quote_ident, quote_literal, PgCluster, PgOptions};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

mod common;
use common::*;

fn target(provider: &PostgresProvider, config: &PostgresTargetConfig) -> PostgresTarget {
    target_with(provider, config, Strategy::Alternating)
}

/// Two login roles, both members of one group role that holds the application's
/// grants, and optionally a database of their own with an `orders` table granted to the
/// group. Everything is dropped when the test ends.
struct Pair<'a> {
    pg: &'a PgCluster,
    group: String,
    a: String,
    b: String,
    password_a: Secret,
    password_b: Secret,
    db: Option<String>,
    extra_roles: Vec<String>,
}

impl<'a> Pair<'a> {
    fn new(pg: &'a PgCluster, prefix: &str, with_db: bool) -> Self {
        let base = unique_name(prefix);
        let group = format!("{base}_rw");
        let (a, b) = (format!("{base}_a"), format!("{base}_b"));
        let (password_a, password_b) = (random_password(24), random_password(24));
        pg.psql(&format!("CREATE ROLE {} NOLOGIN", quote_ident(&group)));
        let member = format!("IN ROLE {}", quote_ident(&group));
        pg.create_role_with(&a, password_a.expose(), &member);
        pg.create_role_with(&b, password_b.expose(), &member);
        let db = with_db.then(|| {
            let db = format!("{base}_db");
            pg.create_database(&db);
            pg.psql_db(
                &db,
                &format!(
                    "CREATE TABLE orders (id int PRIMARY KEY, total numeric); \
                     INSERT INTO orders VALUES (1, 9.5); \
                     GRANT SELECT, INSERT ON orders TO {}",
                    quote_ident(&group)
                ),
            );
            db
        });
        Pair {
            pg,
            group,
            a,
            b,
            password_a,
            password_b,
            db,
            extra_roles: Vec::new(),
        }
    }

    fn dbname(&self) -> &str {
        self.db.as_deref().unwrap_or("postgres")
    }

    fn config(&self) -> PostgresTargetConfig {
        let mut c = PostgresTargetConfig::new_alternating(self.pg.host(), &self.a, &self.b);
        c.port = self.pg.port();
        c.dbname = self.dbname().to_owned();
        c.admin = Some(RedactedDsn::new(self.pg.admin_url()));
        c
    }

    fn doc_a(&self) -> SecretDoc {
        doc(&self.a, &self.password_a)
    }

    /// A role created for the test that is dropped with the pair.
    fn extra_role(&mut self, suffix: &str) -> String {
        let name = format!("{}_{suffix}", self.group);
        self.pg.psql(&format!("CREATE ROLE {} NOLOGIN", quote_ident(&name)));
        self.extra_roles.push(name.clone());
        name
    }

    /// SQL in the pair's database.
    fn sql(&self, sql: &str) -> String {
        self.pg.psql_db(self.dbname(), sql)
    }
}

impl Drop for Pair<'_> {
    fn drop(&mut self) {
        if let Some(db) = &self.db {
            self.pg.drop_database(db);
        }
        for role in [&self.a, &self.b].into_iter().chain(&self.extra_roles) {
            self.pg.drop_role(role);
        }
        self.pg.drop_role(&self.group);
    }
}

/// A fresh connection as an application would open it: `doc`'s user and password.
async fn app_connect(pg: &PgCluster, dbname: &str, doc: &SecretDoc) -> Result<tokio_postgres::Client, String> {
    let mut c = tokio_postgres::Config::new();
    c.host(pg.host())
        .port(pg.port())
        .user(doc.username().unwrap())
        .password(doc.password().unwrap().expose())
        .dbname(dbname)
        .connect_timeout(Duration::from_secs(10));
    let (client, connection) = c
        .connect(tokio_postgres::NoTls)
        .await
        .map_err(|e| format!("{e} ({:?})", e.as_db_error().map(|d| d.code().code())))?;
    tokio::spawn(async move {
        let _ = connection.await;
    });
    Ok(client)
}

/// The stored password verifier of `role`.
fn stored_verifier(pg: &PgCluster, role: &str) -> String {
    pg.psql(&format!(
        "SELECT rolpassword FROM pg_authid WHERE rolname = {}",
        quote_literal(role)
    ))
}

#[tokio::test]
async fn preflight_and_roles_around_two_rotations() {
    let pg = PgCluster::shared();
    let pair = Pair::new(pg, "alt_conf", true);
    let provider = PostgresProvider::new();
    let mut config = pair.config();
    config.check_query = Some("SELECT count(*) FROM orders".into());
    let t = target(&provider, &config);

    let caps = t.capabilities();
    assert_eq!(caps.strategies, vec![Strategy::Single, Strategy::Alternating]);
    assert_eq!(caps.strategy, Strategy::Alternating);
    assert!(!caps.apply_invalidates_previous && caps.terminate_sessions && !caps.mints_own_secret);

    let lines = t.preflight(Some(&pair.doc_a())).await.unwrap();
    let text = lines.join("\n");
    assert!(
        text.contains(&format!(
            "roles \"{}\" and \"{}\" have identical attributes, memberships (\"{}\")",
            pair.a, pair.b, pair.group
        )),
        "{text}"
    );
    assert!(
        text.contains(&format!(
            "role \"{}\" is live; the next rotation sets the password of role \"{}\"",
            pair.a, pair.b
        )),
        "{text}"
    );
    assert!(
        text.contains(&format!("admin \"postgres\" may alter role \"{}\"", pair.b)),
        "{text}"
    );
    assert!(!text.contains(pair.password_a.expose()) && !text.contains(pg.admin_password()));
    // The target database differs from the admin's, so preflight read its catalogs on a
    // short-lived second admin connection.
    assert_eq!(provider.admin_connections_opened(), 2);

    // Two rotations (a -> b -> a); the suite's other rules run one test each in
    // `conformance_rules` below.
    let end = alternating_uses_the_idle_user(&t, pair.doc_a()).await;
    t.verify(&end).await.unwrap();
    // Both roles hold verifiers rekey computed; the idle one's password is unknown.
    for role in [&pair.a, &pair.b] {
        let stored = stored_verifier(pg, role);
        assert!(stored.starts_with("SCRAM-SHA-256$4096:"), "{stored}");
    }
    let live = end.username().unwrap().to_owned();
    let idle = if live == pair.a { &pair.b } else { &pair.a };
    for old in [&pair.password_a, &pair.password_b] {
        assert_eq!(
            t.login(&doc(idle, old)).await.unwrap_err().kind(),
            ErrorKind::AuthRejected
        );
    }
    // Both roles are still members of the group (revoke keeps privileges for the next turn).
    for role in [&pair.a, &pair.b] {
        assert_eq!(
            pg.psql(&format!(
                "SELECT pg_has_role({}, {}, 'MEMBER')",
                quote_literal(role),
                quote_literal(&pair.group)
            )),
            "t"
        );
    }
    assert_eq!(
        provider.admin_connections_opened(),
        2,
        "rotations share one admin connection"
    );
}

/// The conformance suite on a pair of roles taking turns (every rule applies).
mod conformance_rules {
    use super::*;

    rekey_api::target_conformance_tests! {
        setup = async {
            let pg = PgCluster::shared();
            let pair = Pair::new(pg, "alt_conf", true);
            let provider = PostgresProvider::new();
            let mut config = pair.config();
            config.check_query = Some("SELECT count(*) FROM orders".into());
            let t = target(&provider, &config);
            let doc = pair.doc_a();
            ((pair, provider), t, doc)
        },
    }
}

/// What the application's login loop saw.
#[derive(Default)]
struct AppStats {
    ok: AtomicU64,
    failed: AtomicU64,
    /// Successful logins per store generation (0 = before the first rotation).
    ok_per_generation: Mutex<Vec<u64>>,
    failures: Mutex<Vec<String>>,
}

#[tokio::test]
async fn zero_downtime_over_three_rotations() {
    const ROTATIONS: u64 = 3;
    const APPS: usize = 2;
    let pg = PgCluster::shared();
    let pair = Pair::new(pg, "alt_live", true);
    let provider = PostgresProvider::new();
    let t = target(&provider, &pair.config());
    let dbname = pair.dbname().to_owned();

    // The "store": what applications read as current, and its generation.
    let store = Arc::new(Mutex::new((pair.doc_a(), 0u64)));
    let stop = Arc::new(AtomicBool::new(false));
    let stats = Arc::new(AppStats::default());
    stats
        .ok_per_generation
        .lock()
        .unwrap()
        .resize(ROTATIONS as usize + 1, 0);
    // The generation each application's latest login attempt started with.
    let started: Arc<Vec<AtomicU64>> = Arc::new((0..APPS).map(|_| AtomicU64::new(0)).collect());

    // A session opened before any rotation, never asked to end: it keeps working.
    let long_lived = app_connect(pg, &dbname, &pair.doc_a()).await.unwrap();

    let mut apps = Vec::new();
    for i in 0..APPS {
        let (store, stop, stats, started, dbname) = (
            store.clone(),
            stop.clone(),
            stats.clone(),
            started.clone(),
            dbname.clone(),
        );
        apps.push(tokio::spawn(async move {
            let pg = PgCluster::shared();
            while !stop.load(Ordering::Relaxed) {
                let (doc, generation) = {
                    let guard = store.lock().unwrap();
                    (guard.0.clone(), guard.1)
                };
                started[i].store(generation, Ordering::SeqCst);
                let outcome = match app_connect(pg, &dbname, &doc).await {
                    Ok(client) => client
                        .simple_query("SELECT count(*) FROM orders")
                        .await
                        .map(drop)
                        .map_err(|e| e.to_string()),
                    Err(e) => Err(e),
                };
                match outcome {
                    Ok(()) => {
                        stats.ok.fetch_add(1, Ordering::SeqCst);
                        stats.ok_per_generation.lock().unwrap()[generation as usize] += 1;
                    }
                    Err(e) => {
                        stats.failed.fetch_add(1, Ordering::SeqCst);
                        stats
                            .failures
                            .lock()
                            .unwrap()
                            .push(format!("generation {generation}, {}: {e}", doc.username().unwrap()));
                    }
                }
            }
        }));
    }

    // Let the applications get going with the starting secret.
    let deadline = Instant::now() + Duration::from_secs(30);
    while stats.ok.load(Ordering::SeqCst) < APPS as u64 {
        assert!(Instant::now() < deadline, "the applications never logged in");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }

    let mut users = Vec::new();
    for generation in 1..=ROTATIONS {
        let current = store.lock().unwrap().0.clone();
        let new = t.prepare(Some(&current), random_password(32)).await.unwrap();
        assert_ne!(new.username(), current.username(), "the idle role gets the new secret");
        t.apply(&new, Some(&current)).await.unwrap();
        t.verify(&new).await.unwrap();
        // Promote: applications now read the new secret.
        *store.lock().unwrap() = (new.clone(), generation);
        // Grace: wait until every application has started a login with the new secret,
        // so no login with the old one is still in flight, then revoke.
        let deadline = Instant::now() + Duration::from_secs(30);
        while started.iter().any(|g| g.load(Ordering::SeqCst) < generation) {
            assert!(Instant::now() < deadline, "applications stopped logging in");
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        let report = t.revoke(&current, &new, RevokeOptions::default()).await.unwrap();
        assert_eq!(report.sessions_terminated, 0);
        assert_eq!(
            t.login(&current).await.unwrap_err().kind(),
            ErrorKind::AuthRejected,
            "the previous role's secret is dead after revoke"
        );
        users.push(new.username().unwrap().to_owned());
    }
    // Let the applications log in with the last secret for a moment.
    let last = stats.ok.load(Ordering::SeqCst);
    let deadline = Instant::now() + Duration::from_secs(30);
    while stats.ok.load(Ordering::SeqCst) < last + APPS as u64 {
        assert!(Instant::now() < deadline, "no login after the last rotation");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    stop.store(true, Ordering::SeqCst);
    for app in apps {
        app.await.unwrap();
    }

    assert_eq!(
        users,
        [pair.b.clone(), pair.a.clone(), pair.b.clone()],
        "the roles take turns"
    );
    let failures = stats.failures.lock().unwrap().clone();
    assert!(failures.is_empty(), "failed logins: {failures:?}");
    let ok = stats.ok.load(Ordering::SeqCst);
    assert!(ok >= 12, "too few logins to prove anything: {ok}");
    let per_generation = stats.ok_per_generation.lock().unwrap().clone();
    assert!(
        per_generation.iter().all(|&n| n > 0),
        "every generation's secret was used by the applications: {per_generation:?}"
    );
    long_lived
        .simple_query("SELECT count(*) FROM orders")
        .await
        .expect("an open session of the first role survives rotations without termination");
    eprintln!("{ok} logins, none failed; per generation: {per_generation:?}");
}

#[tokio::test]
async fn preflight_detects_privilege_drift() {
    let pg = PgCluster::shared();
    let mut pair = Pair::new(pg, "alt_drift", true);
    let provider = PostgresProvider::new();
    let t = target(&provider, &pair.config());
    let current = pair.doc_a();
    t.preflight(Some(&current)).await.expect("identical roles pass");
    let (qa, qb) = (quote_ident(&pair.a), quote_ident(&pair.b));
    let roles = format!("roles {qa} and {qb} differ: ");

    let extra = pair.extra_role("audit");
    let cases: Vec<(String, String, String)> = vec![
        (
            format!("GRANT {} TO {qa}", quote_ident(&extra)),
            format!("{qa} is a member of {}, {qb} is not", quote_ident(&extra)),
            format!("REVOKE {} FROM {qa}", quote_ident(&extra)),
        ),
        (
            format!("GRANT UPDATE ON orders TO {qb}"),
            format!("{qb} has UPDATE on table public.orders, {qa} does not"),
            format!("REVOKE UPDATE ON orders FROM {qb}"),
        ),
        (
            format!("GRANT SELECT (total) ON orders TO {qa}"),
            format!("{qa} has SELECT on table column public.orders.total, {qb} does not"),
            format!("REVOKE SELECT (total) ON orders FROM {qa}"),
        ),
        (
            format!("CREATE TABLE owned_by_b (x int); ALTER TABLE owned_by_b OWNER TO {qb}"),
            format!("{qb} owns table public.owned_by_b, {qa} does not"),
            "DROP TABLE owned_by_b".to_owned(),
        ),
        (
            format!("ALTER ROLE {qa} CREATEDB"),
            format!("{qa} has CREATEDB, {qb} has NOCREATEDB"),
            format!("ALTER ROLE {qa} NOCREATEDB"),
        ),
        (
            format!("ALTER ROLE {qb} CONNECTION LIMIT 7"),
            format!("{qa} has no CONNECTION LIMIT, {qb} has CONNECTION LIMIT 7"),
            format!("ALTER ROLE {qb} CONNECTION LIMIT -1"),
        ),
        (
            format!("ALTER ROLE {qb} SET search_path = drift_value_sp"),
            format!("{qb} sets search_path (in every database), {qa} does not set it so"),
            format!("ALTER ROLE {qb} RESET search_path"),
        ),
        (
            format!("GRANT CREATE ON DATABASE {} TO {qa}", quote_ident(pair.dbname())),
            format!("{qa} has CREATE on database {}, {qb} does not", pair.dbname()),
            format!("REVOKE CREATE ON DATABASE {} FROM {qa}", quote_ident(pair.dbname())),
        ),
        (
            format!("GRANT {} TO {qb} WITH ADMIN OPTION", quote_ident(&pair.group)),
            format!(
                "{qa} is a member of {} with default options, {qb} WITH ADMIN OPTION",
                quote_ident(&pair.group)
            ),
            format!("REVOKE ADMIN OPTION FOR {} FROM {qb}", quote_ident(&pair.group)),
        ),
    ];
    for (drift, needle, undo) in &cases {
        pair.sql(drift);
        let err = t.preflight(Some(&current)).await.unwrap_err();
        assert_error(&err, ErrorKind::InvalidInput, &[&roles, needle], &[&pair.password_a]);
        assert!(
            !err.to_string().contains("drift_value_sp"),
            "setting values stay out: {err}"
        );
        pair.sql(undo);
        t.preflight(Some(&current))
            .await
            .unwrap_or_else(|e| panic!("after `{undo}` the roles match again: {e}"));
    }
    // Several differences at once are all named.
    pair.sql(&format!("ALTER ROLE {qa} CREATEDB; GRANT UPDATE ON orders TO {qb}"));
    let err = t.preflight(Some(&current)).await.unwrap_err();
    assert_error(
        &err,
        ErrorKind::InvalidInput,
        &["CREATEDB", "UPDATE on table public.orders"],
        &[],
    );
    pair.sql(&format!(
        "ALTER ROLE {qa} NOCREATEDB; REVOKE UPDATE ON orders FROM {qb}"
    ));
    // Preflight is read-only: the starting secret still works.
    t.login(&current).await.unwrap();
}

#[tokio::test]
async fn missing_role_foreign_live_user_and_wrong_turns() {
    let pg = PgCluster::shared();
    let pair = Pair::new(pg, "alt_miss", false);
    let provider = PostgresProvider::new();

    // The second role does not exist.
    let ghost = unique_name("alt_ghost");
    let mut c = pair.config();
    c.usernames = Some(vec![pair.a.clone(), ghost.clone()]);
    let t = target(&provider, &c);
    let err = t.preflight(Some(&pair.doc_a())).await.unwrap_err();
    assert_error(
        &err,
        ErrorKind::NotFound,
        &[&format!("role \"{ghost}\" does not exist on 127.0.0.1:{}", pg.port())],
        &[],
    );

    let t = target(&provider, &pair.config());
    // The live user is not one of the two.
    let stranger = doc("someone_else", &random_password(12));
    let err = t.preflight(Some(&stranger)).await.unwrap_err();
    assert_error(
        &err,
        ErrorKind::InvalidInput,
        &[
            "the live role",
            "\"someone_else\" is not one of the configured `usernames`",
            &pair.a,
            &pair.b,
        ],
        &[],
    );
    assert_eq!(
        t.prepare(Some(&stranger), random_password(12))
            .await
            .unwrap_err()
            .kind(),
        ErrorKind::InvalidInput
    );

    // Without a current secret, the first role gets the first password.
    let first = t.prepare(None, random_password(32)).await.unwrap();
    assert_eq!(first.username(), Some(pair.a.as_str()));
    assert_eq!(first.get_str("engine"), Some("postgres"));
    // A document without a username counts as the first role (as complete() fills in).
    let mut bare = SecretDoc::new();
    bare.set_password(&pair.password_a);
    let next = t.prepare(Some(&bare), random_password(32)).await.unwrap();
    assert_eq!(next.username(), Some(pair.b.as_str()));

    // apply never touches the live role.
    let current = pair.doc_a();
    let mut live = current.clone();
    live.set_password(&random_password(32));
    let err = t.apply(&live, Some(&current)).await.unwrap_err();
    assert_error(
        &err,
        ErrorKind::InvalidInput,
        &["is live", &pair.b],
        &[&live.password().unwrap()],
    );
    t.login(&current).await.expect("the live role is untouched");

    // revoke refuses to invalidate the old role while the new secret does not log in.
    let unapplied = doc(&pair.b, &random_password(32));
    let err = t
        .revoke(&current, &unapplied, RevokeOptions::default())
        .await
        .unwrap_err();
    assert_error(
        &err,
        ErrorKind::Conflict,
        &["refusing to invalidate role", &pair.a, "does not log in"],
        &[&unapplied.password().unwrap(), &pair.password_a],
    );
    assert!(!err.is_retryable());
    t.login(&current).await.expect("the old role still works");
    t.login(&doc(&pair.b, &pair.password_b))
        .await
        .expect("and so does the untouched idle role");

    // old and new naming the same role: apply replaced its password, revoke leaves it.
    let new = next_rotation(&t, &current).await;
    let report = t.revoke(&new, &new, RevokeOptions::default()).await.unwrap();
    assert_eq!(report.sessions_terminated, 0);
    t.login(&new)
        .await
        .expect("a same-role revoke does not invalidate the current secret");
}

async fn next_rotation(t: &PostgresTarget, current: &SecretDoc) -> SecretDoc {
    let new = t.prepare(Some(current), random_password(32)).await.unwrap();
    t.apply(&new, Some(current)).await.unwrap();
    t.verify(&new).await.unwrap();
    new
}

#[tokio::test]
async fn revoke_terminates_the_previous_roles_sessions() {
    let pg = PgCluster::shared();
    let pair = Pair::new(pg, "alt_sess", false);
    let provider = PostgresProvider::new();
    let t = target(&provider, &pair.config());
    let admin_pid = t.admin_backend_pid().await.unwrap().unwrap();

    let current = pair.doc_a();
    let s1 = app_connect(pg, "postgres", &current).await.unwrap();
    let s2 = app_connect(pg, "postgres", &current).await.unwrap();
    let new = next_rotation(&t, &current).await;
    let s_new = app_connect(pg, "postgres", &new).await.unwrap();
    s1.simple_query("SELECT 1")
        .await
        .expect("apply leaves the live role's sessions alone");

    // A plain revoke invalidates the password but ends nothing.
    let report = t.revoke(&current, &new, RevokeOptions::default()).await.unwrap();
    assert_eq!(report.sessions_terminated, 0);
    s1.simple_query("SELECT 1")
        .await
        .expect("still open after a plain revoke");

    let terminate = RevokeOptions {
        terminate_sessions: true,
    };
    let pids = {
        let mut pids = Vec::new();
        for s in [&s1, &s2] {
            let pid: i32 = s.query_one("SELECT pg_backend_pid()", &[]).await.unwrap().get(0);
            pids.push(pid);
        }
        pids
    };
    let report = t.revoke(&current, &new, terminate).await.unwrap();
    assert_eq!(report.sessions_terminated, 2, "both sessions of the previous role");
    // One note per session ended, naming it; never the admin's nor the new role's.
    assert_eq!(report.notes.len(), 2, "{report:?}");
    for pid in pids {
        assert!(
            report
                .notes
                .iter()
                .any(|n| n.starts_with(&format!("session pid {pid} from 127.0.0.1 ")) && n.ends_with("Z ended")),
            "{report:?}"
        );
    }
    assert!(!report.notes.iter().any(|n| n.contains(&format!("pid {admin_pid} "))));
    for secret in [current.password().unwrap(), new.password().unwrap()] {
        assert!(!report.notes.iter().any(|n| n.contains(secret.expose())), "{report:?}");
    }
    let deadline = Instant::now() + Duration::from_secs(10);
    for s in [&s1, &s2] {
        while s.simple_query("SELECT 1").await.is_ok() {
            assert!(Instant::now() < deadline, "session survived termination");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
    s_new
        .simple_query("SELECT 1")
        .await
        .expect("the new role's session is untouched");
    // rekey's own admin session survived.
    assert_eq!(t.admin_backend_pid().await.unwrap(), Some(admin_pid));
    assert_eq!(provider.admin_connections_opened(), 1);
    // Idempotent once the ended backends are gone.
    let count = format!(
        "SELECT count(*) FROM pg_stat_activity WHERE usename = {}",
        quote_literal(&pair.a)
    );
    while pg.psql(&count) != "0" {
        assert!(Instant::now() < deadline, "backends of the previous role linger");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(
        t.revoke(&current, &new, terminate).await.unwrap().sessions_terminated,
        0
    );
    assert_eq!(t.login(&current).await.unwrap_err().kind(), ErrorKind::AuthRejected);

    // `terminate_sessions = true` in the configuration ends them without being asked.
    let mut c = pair.config();
    c.terminate_sessions = true;
    let t2 = target(&provider, &c);
    let s_b = app_connect(pg, "postgres", &new).await.unwrap();
    let newer = next_rotation(&t2, &new).await;
    assert_eq!(newer.username(), Some(pair.a.as_str()));
    let report = t2.revoke(&new, &newer, RevokeOptions::default()).await.unwrap();
    // s_new and s_b, both of the now previous role.
    assert_eq!(report.sessions_terminated, 2);
    while s_b.simple_query("SELECT 1").await.is_ok() {
        assert!(Instant::now() < deadline, "session survived termination");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    t2.login(&newer).await.unwrap();
    assert_eq!(t2.admin_backend_pid().await.unwrap(), Some(admin_pid));
}

#[tokio::test]
async fn server_log_never_sees_the_plaintext_alternating() {
    let pg = PgCluster::start_with(PgOptions::new().log_statement_all(true)).unwrap();
    let pair = Pair::new(&pg, "alt_logged", false);
    let provider = PostgresProvider::new();
    let t = target(&provider, &pair.config());

    // Control: a plaintext ALTER ROLE does land in this log, so the check below can fail.
    let canary = random_password(24);
    pg.psql(&format!(
        "ALTER ROLE {} PASSWORD {}",
        quote_ident(&pair.a),
        quote_literal(canary.expose())
    ));
    assert!(
        pg.log_contents().contains(canary.expose()),
        "log_statement=all must record statements"
    );

    let marker = "PASSWORD 'SCRAM-SHA-256$4096:";
    let mut current = doc(&pair.a, &canary);
    let mut installed = Vec::new();
    for _ in 0..2 {
        let before = pg.log_contents().matches(marker).count();
        let new = next_rotation(&t, &current).await;
        t.revoke(&current, &new, RevokeOptions::default()).await.unwrap();
        let log = pg.log_contents();
        // One verifier for the idle role at apply, one for the previous role at revoke.
        assert_eq!(log.matches(marker).count(), before + 2, "{}", log.len());
        assert!(log.contains(&format!(
            "ALTER ROLE {} PASSWORD 'SCRAM-SHA-256$4096:",
            quote_ident(new.username().unwrap())
        )));
        installed.push(new.password().unwrap());
        current = new;
    }
    let log = pg.log_contents();
    for password in &installed {
        assert!(
            !log.contains(password.expose()),
            "a new password reached the server log"
        );
    }
    drop(t);
    drop(provider);
    drop(pair);
}

#[tokio::test]
async fn configuration_errors_are_clear() {
    let provider = PostgresProvider::new();
    let admin = Some(RedactedDsn::new(
        "postgres://rekey_admin:s3cr3t-pw@127.0.0.1/postgres".into(),
    ));
    let mut good = PostgresTargetConfig::new_alternating("127.0.0.1", "orders_app_a", "orders_app_b");
    good.admin = admin.clone();
    let check = |c: &PostgresTargetConfig, strategy: Strategy, kind: ErrorKind, needle: &str| {
        let err = provider.target(c, strategy).err().expect("refused");
        assert_error(&err, kind, &[needle], &[&Secret::from("s3cr3t-pw")]);
    };

    let mut both = good.clone();
    both.username = Some("orders_app".into());
    check(&both, Strategy::Alternating, ErrorKind::InvalidInput, "not both");
    let mut neither = good.clone();
    neither.usernames = None;
    check(
        &neither,
        Strategy::Alternating,
        ErrorKind::InvalidInput,
        "missing `username`",
    );
    for names in [vec!["a"], vec!["a", "b", "c"]] {
        let mut c = good.clone();
        c.usernames = Some(names.iter().map(|s| s.to_string()).collect());
        check(&c, Strategy::Alternating, ErrorKind::InvalidInput, "exactly two roles");
    }
    let mut twice = good.clone();
    twice.usernames = Some(vec!["same".into(), "same".into()]);
    check(
        &twice,
        Strategy::Alternating,
        ErrorKind::InvalidInput,
        "names role \"same\" twice",
    );
    let mut empty = good.clone();
    empty.usernames = Some(vec!["a".into(), String::new()]);
    check(&empty, Strategy::Alternating, ErrorKind::InvalidInput, "empty name");

    // Names and strategy must match.
    check(
        &good,
        Strategy::Single,
        ErrorKind::InvalidInput,
        "`usernames` is for strategy \"alternating\"",
    );
    let mut single = PostgresTargetConfig::new("127.0.0.1", "orders_app");
    single.admin = admin.clone();
    check(
        &single,
        Strategy::Alternating,
        ErrorKind::InvalidInput,
        "takes `usernames",
    );
    check(&good, Strategy::Dual, ErrorKind::Unsupported, "dual");
    // Alternating needs an admin, and not one of the two roles.
    let mut no_admin = good.clone();
    no_admin.admin = None;
    check(
        &no_admin,
        Strategy::Alternating,
        ErrorKind::InvalidInput,
        "needs `admin`",
    );
    let mut self_admin = good.clone();
    self_admin.admin = Some(RedactedDsn::new(
        "host=127.0.0.1 user=orders_app_b password=s3cr3t-pw".into(),
    ));
    check(
        &self_admin,
        Strategy::Alternating,
        ErrorKind::InvalidInput,
        "one of `usernames`",
    );

    // The good one builds, describes itself and completes documents with the first role.
    let t = provider.target(&good, Strategy::Alternating).unwrap();
    assert_eq!(
        t.describe(),
        "postgres roles \"orders_app_a\" and \"orders_app_b\" (alternating) on 127.0.0.1:5432/postgres"
    );
    let mut d = SecretDoc::new();
    t.complete(&mut d);
    assert_eq!(d.username(), Some("orders_app_a"));
    let mut d = doc("orders_app_b", &Secret::from("x"));
    t.complete(&mut d);
    assert_eq!(d.username(), Some("orders_app_b"), "complete keeps the live role");

    // The configuration file's spelling.
    let c: PostgresTargetConfig = serde_json::from_value(serde_json::json!({
        "host": "db", "dbname": "orders", "usernames": ["orders_app_a", "orders_app_b"],
        "admin": "postgres://root:hunter2-secret@db/postgres"
    }))
    .unwrap();
    assert_eq!(c.username, None);
    assert_eq!(c.roles(), ["orders_app_a", "orders_app_b"]);
    provider.target(&c, Strategy::Alternating).unwrap();
    let shown = format!("{c:?}");
    assert!(
        shown.contains("orders_app_b") && !shown.contains("hunter2-secret"),
        "{shown}"
    );
    let c: PostgresTargetConfig = serde_json::from_value(serde_json::json!({
        "host": "db", "username": "u", "usernames": ["a", "b"]
    }))
    .unwrap();
    assert_eq!(
        provider.target(&c, Strategy::Single).err().unwrap().kind(),
        ErrorKind::InvalidInput
    );
    let err = serde_json::from_value::<PostgresTargetConfig>(serde_json::json!({
        "host": "db", "usernames": "a"
    }))
    .unwrap_err();
    assert!(err.to_string().contains("invalid type"), "{err}");
}
