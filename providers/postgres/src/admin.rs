//! The shared admin connection: one per target host (and admin connection string) per
//! run, opened on first use, reopened once if it was lost.

use crate::config::SslMode;
use crate::conn::{connect, Session};
use crate::error::{is_connection_lost, pg_error};
use crate::hba;
use crate::preflight_batch::PreflightBatch;
use crate::sql::quote_ident;
use crate::tls::TlsSetup;
use rekey_api::ProviderResult;
use rekey_net::Reopening;
use std::fmt;
use std::future::Future;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

/// Settings applied to every admin session: never wait forever on a lock or a query.
const SESSION_SETUP: &str = "SET lock_timeout = '10s'; SET statement_timeout = '60s'";

/// Where the admin connection goes and how, to tell whether it also proves that the
/// target's own login endpoint answers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Route {
    /// The TCP host, when the connection string names exactly one (not a unix socket).
    pub(crate) host: Option<String>,
    /// The port, when there is exactly one.
    pub(crate) port: Option<u16>,
    pub(crate) sslmode: SslMode,
    pub(crate) sslrootcert: Option<PathBuf>,
}

/// One admin endpoint and its (lazily opened) connection.
pub(crate) struct AdminPool {
    route: Route,
    config: tokio_postgres::Config,
    tls: TlsSetup,
    timeout: Duration,
    user: String,
    endpoint: String,
    conn: Reopening<Session>,
    opened: Arc<AtomicU64>,
    /// The catalog reads of the targets sharing this connection, coalesced.
    pub(crate) batch: PreflightBatch,
    /// The pg_hba.conf line every role's login over this route meets, if one line admits
    /// them all: read once per run ([`AdminPool::hba_rule`]).
    hba: tokio::sync::OnceCell<Option<hba::RouteRule>>,
}

impl fmt::Debug for AdminPool {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AdminPool")
            .field("user", &self.user)
            .field("endpoint", &self.endpoint)
            .field("sslmode", &self.tls.mode)
            .finish_non_exhaustive()
    }
}

impl AdminPool {
    /// An admin endpoint; `opened` counts the connections made (shared per provider).
    pub(crate) fn new(
        config: tokio_postgres::Config,
        tls: TlsSetup,
        route: Route,
        timeout: Duration,
        endpoint: String,
        opened: Arc<AtomicU64>,
    ) -> AdminPool {
        let user = config.get_user().unwrap_or("").to_owned();
        AdminPool {
            route,
            config,
            tls,
            timeout,
            user,
            endpoint,
            conn: Reopening::new(),
            opened,
            batch: PreflightBatch::default(),
            hba: tokio::sync::OnceCell::new(),
        }
    }

    /// Whether the admin connection goes to `host:port` over the same TLS setting, so
    /// that its connecting proves a login there would reach the server too.
    pub(crate) fn same_route(&self, host: &str, port: u16, sslmode: SslMode, sslrootcert: Option<&Path>) -> bool {
        self.route.host.as_deref() == Some(host)
            && self.route.port == Some(port)
            && self.route.sslmode == sslmode
            && self.route.sslrootcert.as_deref() == sslrootcert
    }

    /// Whether `pg_hba.conf` selects, for a login from this connection's client address
    /// with its TLS state, a first line that admits every database and user and is not
    /// `reject` ([`crate::hba`]): then a role's login over the same route passes it as
    /// the admin's did. Read once per run (one query, on first use); `false` when it
    /// cannot tell: the admin may not read `pg_hba_file_rules` (a superuser may), the
    /// connection uses a unix socket, or a line is one [`crate::hba`] cannot evaluate.
    pub(crate) async fn hba_admits_every_role(&self) -> bool {
        self.hba_rule().await.is_some()
    }

    /// The `pg_hba.conf` line that every role's login over this connection's route meets
    /// (see [`AdminPool::hba_admits_every_role`]), read once per run; `None` when it
    /// cannot tell.
    pub(crate) async fn hba_rule(&self) -> Option<&hba::RouteRule> {
        self.hba
            .get_or_init(|| async {
                let read = self
                    .run("reading pg_hba_file_rules", |s| async move {
                        s.client.query_typed_one(hba::HBA_QUERY, &[]).await
                    })
                    .await;
                let row = read.ok()?;
                let client: Option<String> = row.get(0);
                let ssl: bool = row.get(1);
                let lines: Vec<hba::HbaLine> = serde_json::from_str(row.get::<_, &str>(2)).ok()?;
                hba::every_role_rule(&lines, client.and_then(|c| c.parse().ok()), ssl)
            })
            .await
            .as_ref()
    }

    /// `host:port` of the admin connection.
    pub(crate) fn endpoint(&self) -> &str {
        &self.endpoint
    }

    /// The admin's user name.
    pub(crate) fn user(&self) -> &str {
        &self.user
    }

    /// The database the shared admin connection uses.
    pub(crate) fn dbname(&self) -> Option<&str> {
        self.config.get_dbname()
    }

    /// A separate, unshared admin connection to `dbname` (for reading the catalogs of
    /// another database than the shared connection's). The caller closes it.
    pub(crate) async fn open_in(&self, dbname: &str) -> ProviderResult<Session> {
        let mut config = self.config.clone();
        config.dbname(dbname);
        let label = format!("{} (database {})", self.label(), quote_ident(dbname));
        let session = connect(&config, &self.tls, self.timeout, &label).await?;
        self.opened.fetch_add(1, Ordering::Relaxed);
        if let Err(e) = session.client.batch_execute(SESSION_SETUP).await {
            session.close().await;
            return Err(pg_error(&e, format_args!("setting up the session of {label}")));
        }
        Ok(session)
    }

    /// `admin "postgres" on 10.0.0.5:5432`.
    pub(crate) fn label(&self) -> String {
        format!("admin {} on {}", quote_ident(&self.user), self.endpoint)
    }

    /// Opens the shared connection and sets its session up.
    async fn open_shared(&self) -> ProviderResult<Session> {
        let session = connect(&self.config, &self.tls, self.timeout, &self.label()).await?;
        session
            .client
            .batch_execute(SESSION_SETUP)
            .await
            .map_err(|e| pg_error(&e, format_args!("setting up the session of {}", self.label())))?;
        self.opened.fetch_add(1, Ordering::Relaxed);
        Ok(session)
    }

    /// Runs `op` on the admin connection (opened on first use, or again if it was
    /// closed; concurrent callers wait for one connect). If the connection turns out to
    /// be lost (closed, server restarted, backend terminated), reconnects once and runs
    /// `op` again: every admin operation rekey runs is idempotent. `action` describes
    /// the operation for error messages.
    pub(crate) async fn run<T, F, Fut>(&self, action: &str, op: F) -> ProviderResult<T>
    where
        F: Fn(Arc<Session>) -> Fut,
        Fut: Future<Output = Result<T, tokio_postgres::Error>>,
    {
        self.conn
            .run(
                |s: &Session| !s.client.is_closed(),
                || self.open_shared(),
                op,
                is_connection_lost,
            )
            .await?
            .map_err(|e| pg_error(&e, format_args!("{action} as {}", self.label())))
    }
}
