//! The shared admin connection: one per target host (and admin connection string) per
//! run, opened on first use, reopened once if it was lost.

use crate::conn::{connect, Session};
use crate::error::{is_connection_lost, pg_error};
use crate::preflight_batch::PreflightBatch;
use crate::sql::quote_ident;
use crate::tls::TlsSetup;
use rekey_api::ProviderResult;
use rekey_net::Reopening;
use std::fmt;
use std::future::Future;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

/// Settings applied to every admin session: never wait forever on a lock or a query.
const SESSION_SETUP: &str = "SET lock_timeout = '10s'; SET statement_timeout = '60s'";

/// One admin endpoint and its (lazily opened) connection.
pub(crate) struct AdminPool {
    config: tokio_postgres::Config,
    tls: TlsSetup,
    timeout: Duration,
    user: String,
    endpoint: String,
    conn: Reopening<Session>,
    opened: Arc<AtomicU64>,
    /// The catalog reads of the targets sharing this connection, coalesced.
    pub(crate) batch: PreflightBatch,
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
        timeout: Duration,
        endpoint: String,
        opened: Arc<AtomicU64>,
    ) -> AdminPool {
        let user = config.get_user().unwrap_or("").to_owned();
        AdminPool {
            config,
            tls,
            timeout,
            user,
            endpoint,
            conn: Reopening::new(),
            opened,
            batch: PreflightBatch::default(),
        }
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
