//! Times the MySQL/MariaDB target's building blocks against the machine's server
//! (users created as root through the `mysql` client over the socket, testbed's
//! [`MariaDb::machine`], dropped at the end):
//!
//! ```text
//! cargo run --release -p rekey-bench --bin rekey-bench-mysql [ITERATIONS]
//! ```
//!
//! Prints the mean time of one mysql_native_password hash, one login (fresh TCP
//! connection with authentication), one apply through the shared admin connection, a
//! full single rotation, a full alternating rotation, and applies run concurrently on
//! one admin connection. `REKEY_MYSQL_HOST`/`REKEY_MYSQL_PORT` as in the tests.

use rekey_api::conformance::{random_password, unique_name};
use rekey_api::{RedactedDsn, RevokeOptions, Secret, SecretDoc, Strategy, Target};
use rekey_mysql::{native_password_hash, MysqlProvider, MysqlTargetConfig};
use rekey_testbed::MariaDb;
use std::sync::Arc;
use std::time::{Duration, Instant};

fn mean(total: Duration, n: u32) -> String {
    format!("{:.1} µs", total.as_secs_f64() * 1e6 / f64::from(n))
}

fn lit(value: &str) -> String {
    format!("'{}'", value.replace('\\', "\\\\").replace('\'', "\\'"))
}

fn doc(user: &str, password: &Secret) -> SecretDoc {
    let mut doc = SecretDoc::new();
    doc.set("username", user);
    doc.set_password(password);
    doc
}

#[tokio::main]
async fn main() {
    let n: u32 = std::env::args().nth(1).and_then(|a| a.parse().ok()).unwrap_or(200);
    let db = MariaDb::machine();
    let (host, port) = (db.host().to_owned(), db.port());
    let admin = unique_name("measure_admin");
    let admin_pw = random_password(24);
    db.root_sql(&format!(
        "CREATE USER {a}@'%' IDENTIFIED BY {p}; GRANT CREATE USER, PROCESS, CONNECTION ADMIN ON *.* TO {a}@'%'; \
         GRANT SELECT ON mysql.* TO {a}@'%'",
        a = lit(&admin),
        p = lit(admin_pw.expose())
    ));
    let admin_url = RedactedDsn::new(format!("mysql://{admin}:{}@{host}:{port}/", admin_pw.expose()));
    let users: Vec<String> = (0..10).map(|_| unique_name("measure")).collect();
    let mut docs = Vec::new();
    for user in &users {
        let password = random_password(32);
        db.root_sql(&format!(
            "CREATE USER {}@'%' IDENTIFIED BY {}",
            lit(user),
            lit(password.expose())
        ));
        docs.push(doc(user, &password));
    }
    let provider = MysqlProvider::new();
    let mut targets: Vec<Arc<dyn Target>> = Vec::new();
    for user in &users[..8] {
        let mut config = MysqlTargetConfig::new(host.clone(), user);
        config.port = port;
        config.admin = Some(admin_url.clone());
        targets.push(provider.target(&config, Strategy::Single).expect("target"));
    }
    let (t, doc) = (&targets[0], &mut docs[0]);
    t.preflight(Some(doc)).await.expect("preflight");

    let password = random_password(32);
    let start = Instant::now();
    for _ in 0..n {
        std::hint::black_box(native_password_hash(&password));
    }
    println!("native password hash:   {}", mean(start.elapsed(), n));

    let start = Instant::now();
    for _ in 0..n {
        t.login(doc).await.expect("login");
    }
    println!("login (fresh TCP):      {}", mean(start.elapsed(), n));

    let start = Instant::now();
    for _ in 0..n {
        let new = t.prepare(Some(doc), random_password(32)).await.expect("prepare");
        t.apply(&new, Some(doc)).await.expect("apply");
        *doc = new;
    }
    println!("apply (admin, serial):  {}", mean(start.elapsed(), n));

    let start = Instant::now();
    for _ in 0..n {
        let new = t.prepare(Some(doc), random_password(32)).await.expect("prepare");
        t.apply(&new, Some(doc)).await.expect("apply");
        t.verify(&new).await.expect("verify");
        t.revoke(doc, &new, RevokeOptions::default()).await.expect("revoke");
        assert!(t.login(doc).await.is_err());
        *doc = new;
    }
    println!(
        "single rotation:        {} (apply, verify, revoke, old refused)",
        mean(start.elapsed(), n)
    );

    let mut alt = MysqlTargetConfig::new_alternating(host.clone(), &users[8], &users[9]);
    alt.port = port;
    alt.admin = Some(admin_url.clone());
    let alt = provider.target(&alt, Strategy::Alternating).expect("target");
    let mut current = docs[8].clone();
    let start = Instant::now();
    for _ in 0..n {
        let new = alt.prepare(Some(&current), random_password(32)).await.expect("prepare");
        alt.apply(&new, Some(&current)).await.expect("apply");
        alt.verify(&new).await.expect("verify");
        alt.revoke(&current, &new, RevokeOptions::default())
            .await
            .expect("revoke");
        assert!(alt.login(&current).await.is_err());
        current = new;
    }
    println!(
        "alternating rotation:   {} (apply, verify, revoke, old refused)",
        mean(start.elapsed(), n)
    );

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
        "apply (8 concurrent):   {} per apply, one admin connection ({} opened)",
        mean(start.elapsed(), n * 8),
        provider.admin_connections_opened()
    );
    drop((targets, alt, provider));
    for user in users.iter().chain(std::iter::once(&admin)) {
        db.root_sql(&format!("DROP USER IF EXISTS {}@'%'", lit(user)));
    }
}
