//! Times the PostgreSQL target's building blocks against a throwaway cluster:
//!
//! ```text
//! cargo run --release -p rekey-bench --bin rekey-bench-postgres [ITERATIONS]
//! ```
//!
//! Prints the mean time of one `preflight` and one `precheck` (with an admin), one SCRAM
//! verifier computation, one login (fresh TCP connection with SCRAM authentication), one
//! apply through the shared admin connection, and of applies run concurrently on one
//! admin connection.

use rekey_api::conformance::{random_password, unique_name};
use rekey_api::{RedactedDsn, SecretDoc, Strategy, Target};
use rekey_postgres::{scram_verifier, PostgresProvider, PostgresTargetConfig};
use rekey_testbed::PgCluster;
use std::sync::Arc;
use std::time::{Duration, Instant};

fn mean(total: Duration, n: u32) -> String {
    format!("{:.2} ms", total.as_secs_f64() * 1000.0 / f64::from(n))
}

#[tokio::main]
async fn main() {
    let n: u32 = std::env::args().nth(1).and_then(|a| a.parse().ok()).unwrap_or(50);
    let pg = PgCluster::start().expect("cluster starts");
    let provider = PostgresProvider::new();
    let roles: Vec<String> = (0..8).map(|_| unique_name("measure")).collect();
    let mut targets = Vec::new();
    let mut docs = Vec::new();
    for role in &roles {
        let password = random_password(32);
        pg.create_role(role, password.expose());
        let mut config = PostgresTargetConfig::new(pg.host(), role);
        config.port = pg.port();
        config.admin = Some(RedactedDsn::new(pg.admin_url()));
        targets.push(provider.target(&config, Strategy::Single).expect("target"));
        let mut doc = SecretDoc::new();
        doc.set("username", role.as_str());
        doc.set_password(&password);
        docs.push(doc);
    }
    let (t, doc) = (&targets[0], &mut docs[0]);
    t.preflight(Some(doc)).await.expect("preflight");

    let start = Instant::now();
    for _ in 0..n {
        t.preflight(Some(doc)).await.expect("preflight");
    }
    println!("preflight (admin):     {}", mean(start.elapsed(), n));

    let start = Instant::now();
    for _ in 0..n {
        t.precheck(Some(doc)).await.expect("precheck");
    }
    println!("precheck (admin):      {}", mean(start.elapsed(), n));

    let password = random_password(32);
    let start = Instant::now();
    for _ in 0..n {
        scram_verifier(&password).await.expect("verifier");
    }
    println!("scram verifier:        {}", mean(start.elapsed(), n));

    let start = Instant::now();
    for _ in 0..n {
        t.login(doc).await.expect("login");
    }
    println!("login (fresh SCRAM):   {}", mean(start.elapsed(), n));

    let start = Instant::now();
    for _ in 0..n {
        let new = t.prepare(Some(doc), random_password(32)).await.expect("prepare");
        t.apply(&new, Some(doc)).await.expect("apply");
        *doc = new;
    }
    println!("apply (admin, serial): {}", mean(start.elapsed(), n));

    let start = Instant::now();
    for _ in 0..n {
        let new = t.prepare(Some(doc), random_password(32)).await.expect("prepare");
        t.apply(&new, Some(doc)).await.expect("apply");
        t.verify(&new).await.expect("verify");
        assert!(t.login(doc).await.is_err());
        *doc = new;
    }
    println!("apply+verify+old dead: {}", mean(start.elapsed(), n));

    let targets: Vec<Arc<dyn Target>> = targets;
    let start = Instant::now();
    let mut set = tokio::task::JoinSet::new();
    for (t, doc) in targets.iter().cloned().zip(docs.iter().cloned()) {
        set.spawn(async move {
            let mut doc = doc;
            for _ in 0..n {
                let new = t.prepare(Some(&doc), random_password(32)).await.expect("prepare");
                t.apply(&new, Some(&doc)).await.expect("apply");
                doc = new;
            }
        });
    }
    while let Some(r) = set.join_next().await {
        r.expect("task");
    }
    println!(
        "apply (8 concurrent):  {} per apply, one admin connection ({} opened)",
        mean(start.elapsed(), n * 8),
        provider.admin_connections_opened()
    );
    drop(targets);
    drop(provider);
    for role in &roles {
        pg.drop_role(role);
    }
}
