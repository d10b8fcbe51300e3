//! The shared admin connection: one per (host, port, admin URL, TLS setting) per run,
//! opened on first use, reopened once if it was lost (rekey-net's `Reopening`, as for
//! postgres and redis; the connection itself sits behind a lock because mysql_async
//! needs it exclusively for each statement).

use crate::conn::{connect, ConnectSpec, Endpoint, TlsSetup};
use crate::error::{is_connection_lost, mysql_error};
use crate::sql::{quote_literal, ServerInfo, SESSION_SETUP};
use mysql_async::prelude::Queryable;
use mysql_async::Conn;
use rekey_api::{ProviderError, ProviderResult, Secret};
use rekey_net::Reopening;
use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::Mutex;

/// What an admin operation returns: a boxed future borrowing the connection.
pub(crate) type OpFuture<'a, T> = Pin<Box<dyn Future<Output = Result<T, mysql_async::Error>> + Send + 'a>>;

/// Facts read when the admin connection was opened.
#[derive(Debug, Clone)]
pub(crate) struct AdminInfo {
    /// Flavour and version.
    pub(crate) server: ServerInfo,
    /// `CURRENT_USER()`: the account the admin authenticated as, `user@host`.
    pub(crate) current_user: String,
}

/// An open admin connection and what was read when it was opened.
struct Open {
    /// Held by one statement at a time.
    conn: Mutex<Conn>,
    info: AdminInfo,
}

/// One admin endpoint and its (lazily opened) connection. mysql_async runs one
/// statement at a time per connection, so concurrent targets take turns on it; every
/// statement rekey runs there is short.
pub(crate) struct AdminPool {
    endpoint: Endpoint,
    user: String,
    password: Option<Secret>,
    db: Option<String>,
    tls: TlsSetup,
    timeout: Duration,
    conn: Reopening<Open>,
    opened: Arc<AtomicU64>,
    /// The server's `max_user_connections`, read once per run.
    max_user_connections: tokio::sync::OnceCell<i64>,
}

impl fmt::Debug for AdminPool {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AdminPool")
            .field("user", &self.user)
            .field("endpoint", &self.endpoint.label())
            .field("tls", &self.tls.mode)
            .finish_non_exhaustive()
    }
}

impl AdminPool {
    /// An admin endpoint; `opened` counts the connections made (shared per provider).
    pub(crate) fn new(
        endpoint: Endpoint,
        user: String,
        password: Option<Secret>,
        db: Option<String>,
        tls: TlsSetup,
        timeout: Duration,
        opened: Arc<AtomicU64>,
    ) -> AdminPool {
        AdminPool {
            endpoint,
            user,
            password,
            db,
            tls,
            timeout,
            conn: Reopening::new(),
            opened,
            max_user_connections: tokio::sync::OnceCell::new(),
        }
    }

    /// The server's `max_user_connections`: the sessions an account without a limit of
    /// its own may have open at once (0: no limit). Read once per run.
    pub(crate) async fn max_user_connections(&self) -> ProviderResult<i64> {
        self.max_user_connections
            .get_or_try_init(|| async {
                let value = self
                    .run("reading max_user_connections", |c| {
                        Box::pin(async move { c.query_first::<i64, _>("SELECT @@GLOBAL.max_user_connections").await })
                    })
                    .await?;
                Ok(value.unwrap_or(0))
            })
            .await
            .copied()
    }

    /// `host:port` (or socket) of the admin connection.
    pub(crate) fn endpoint(&self) -> String {
        self.endpoint.label()
    }

    /// `admin 'root' on 10.0.0.5:3306`.
    pub(crate) fn label(&self) -> String {
        format!("admin {} on {}", quote_literal(&self.user), self.endpoint.label())
    }

    async fn open(&self) -> ProviderResult<Open> {
        let label = self.label();
        let mut conn = connect(&ConnectSpec {
            endpoint: &self.endpoint,
            user: &self.user,
            password: self.password.as_ref().map(Secret::expose),
            db: self.db.as_deref(),
            tls: &self.tls,
            timeout: self.timeout,
            init: &[SESSION_SETUP],
            label: &label,
        })
        .await?;
        let row: Option<(String, String)> = conn
            .query_first("SELECT VERSION(), CURRENT_USER()")
            .await
            .map_err(|e| mysql_error(&e, format_args!("reading the server version as {label}")))?;
        let (version, current_user) =
            row.ok_or_else(|| ProviderError::other(format!("{label}: SELECT VERSION() returned no row")))?;
        self.opened.fetch_add(1, Ordering::Relaxed);
        Ok(Open {
            conn: Mutex::new(conn),
            info: AdminInfo {
                server: ServerInfo::from_version(&version),
                current_user,
            },
        })
    }

    /// The facts of the open connection, opening it if needed.
    pub(crate) async fn info(&self) -> ProviderResult<AdminInfo> {
        Ok(self.conn.get(|_| true, || self.open()).await?.info.clone())
    }

    /// Runs `op` on the admin connection, opening it if needed (concurrent callers wait
    /// for one open, then take turns on the connection). If the connection turns out to
    /// be lost (server restarted, session killed, idle timeout), reconnects once and
    /// runs `op` again: every admin operation rekey runs is idempotent. `action`
    /// describes the operation for error messages.
    pub(crate) async fn run<T, F>(&self, action: &str, op: F) -> ProviderResult<T>
    where
        F: for<'c> Fn(&'c mut Conn) -> OpFuture<'c, T>,
    {
        let op = &op;
        self.conn
            .run(
                |_| true,
                || self.open(),
                |open: Arc<Open>| async move {
                    let mut conn = open.conn.lock().await;
                    op(&mut conn).await
                },
                is_connection_lost,
            )
            .await?
            .map_err(|e| mysql_error(&e, format_args!("{action} as {}", self.label())))
    }
}
