//! The floor: the same database work as a PostgreSQL rotation, done directly by a
//! minimal tokio-postgres client. Per role: one `ALTER ROLE ... PASSWORD '<SCRAM
//! verifier>'` on one shared admin connection, one fresh login with the new password
//! (must succeed), one fresh login with the old password (must be refused with
//! SQLSTATE 28P01).

use anyhow::{bail, Context, Result};
use rekey_testbed::{quote_ident, quote_literal};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio_postgres::config::SslMode;
use tokio_postgres::error::SqlState;
use tokio_postgres::{Client, NoTls};

/// How long a connection attempt (TCP and authentication) may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// Length of the passwords the floor generates (rekey's default policy length).
pub const PASSWORD_LENGTH: usize = 32;

/// Where the server is and how the administrator logs in over TCP.
#[derive(Clone)]
pub struct Server {
    /// The TCP port on 127.0.0.1.
    pub port: u16,
    /// The `postgres` superuser's password.
    pub admin_password: String,
}

/// A role the floor rotates, with the password it holds now.
pub struct FloorRole {
    /// The role name.
    pub name: String,
    /// Its current password.
    pub password: String,
}

/// A fresh random password.
pub fn new_password() -> String {
    rekey_api::conformance::random_password(PASSWORD_LENGTH)
        .expose()
        .to_owned()
}

fn config(server: &Server, user: &str, password: &str) -> tokio_postgres::Config {
    let mut config = tokio_postgres::Config::new();
    config
        .host("127.0.0.1")
        .port(server.port)
        .user(user)
        .password(password)
        .dbname("postgres")
        .ssl_mode(SslMode::Disable)
        .connect_timeout(CONNECT_TIMEOUT);
    config
}

/// Opens a connection, driving it on a background task; the connection ends when the
/// returned client is dropped.
async fn connect(server: &Server, user: &str, password: &str) -> Result<Client, tokio_postgres::Error> {
    let (client, connection) = config(server, user, password).connect(NoTls).await?;
    tokio::spawn(connection);
    Ok(client)
}

/// One fresh login as `user`: succeeds when the server accepts the password.
pub async fn login(server: &Server, user: &str, password: &str) -> Result<(), tokio_postgres::Error> {
    connect(server, user, password).await.map(drop)
}

/// One fresh login as `user` that must be refused by the server's own password check
/// (SQLSTATE 28P01), not by a timeout or another error.
pub async fn expect_refused(server: &Server, user: &str, password: &str) -> Result<()> {
    match login(server, user, password).await {
        Ok(()) => bail!("the old password of role {user} still logs in"),
        Err(e) if e.code() == Some(&SqlState::INVALID_PASSWORD) => Ok(()),
        Err(e) => bail!("login as {user} with the old password failed, but not with 28P01: {e}"),
    }
}

/// Rotates one role: ALTER ROLE with a client-side SCRAM verifier, then prove new works
/// and old is refused.
async fn rotate_one(admin: &Client, server: &Server, name: &str, old: &str, new: &str) -> Result<()> {
    let verifier = postgres_protocol::password::scram_sha_256(new.as_bytes());
    admin
        .batch_execute(&format!(
            "ALTER ROLE {} PASSWORD {}",
            quote_ident(name),
            quote_literal(&verifier)
        ))
        .await
        .context("ALTER ROLE")?;
    login(server, name, new).await.context("login with the new password")?;
    expect_refused(server, name, old).await
}

/// Rotates every role in `roles` with `workers` concurrent tasks and one shared admin
/// connection, updating each role's password. Returns the wall clock of the whole round
/// (admin connection included).
pub async fn round(server: &Server, roles: &mut [FloorRole], workers: usize) -> Result<Duration> {
    let jobs: Arc<Vec<(String, String)>> =
        Arc::new(roles.iter().map(|r| (r.name.clone(), r.password.clone())).collect());
    let start = Instant::now();
    let admin = Arc::new(
        connect(server, "postgres", &server.admin_password)
            .await
            .context("floor: admin connection")?,
    );
    let next = Arc::new(AtomicUsize::new(0));
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..workers.max(1) {
        let (jobs, next, admin, server) = (jobs.clone(), next.clone(), admin.clone(), server.clone());
        tasks.spawn(async move {
            let mut done = Vec::new();
            loop {
                let index = next.fetch_add(1, Ordering::Relaxed);
                let Some((name, old)) = jobs.get(index) else { break };
                let new = new_password();
                rotate_one(&admin, &server, name, old, &new)
                    .await
                    .with_context(|| format!("floor: role {name}"))?;
                done.push((index, new));
            }
            anyhow::Ok(done)
        });
    }
    let mut rotated = Vec::with_capacity(roles.len());
    while let Some(joined) = tasks.join_next().await {
        rotated.extend(joined.context("floor: a worker panicked")??);
    }
    let elapsed = start.elapsed();
    drop(admin);
    if rotated.len() != roles.len() {
        bail!("floor: rotated {} of {} roles", rotated.len(), roles.len());
    }
    for (index, password) in rotated {
        roles[index].password = password;
    }
    Ok(elapsed)
}
