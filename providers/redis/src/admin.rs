//! The shared admin connection: one per target host (and admin URL) per run, opened on
//! first use, reopened once if it was lost. Also the per-operation stand-in used when
//! no admin is configured (the user administers itself).

use crate::acl::{quote_name, text};
use crate::conn::{open_authenticated, Endpoint, Session};
use crate::error::{is_connection_lost, redis_error};
use redis::Value;
use rekey_api::{ProviderResult, Secret};
use rekey_net::Reopening;
use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::OnceCell;

/// How long an admin command may take before the connection is considered lost
/// (`ACL SAVE` writes a file; `CLIENT KILL` walks every client).
pub(crate) const ADMIN_RESPONSE_TIMEOUT: Duration = Duration::from_secs(60);

/// Whether the server keeps its users in an ACL file (`CONFIG GET aclfile`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum AclFile {
    /// Users are saved with `ACL SAVE` to this file.
    Path(String),
    /// No ACL file: users live in memory (and in redis.conf, if `CONFIG REWRITE` runs).
    None,
    /// The admin may not run `CONFIG GET`: rekey tries `ACL SAVE` and accepts the
    /// "not configured to use an ACL file" refusal.
    Unknown,
}

/// One admin endpoint and its lazily opened connection.
pub(crate) struct AdminPool {
    endpoint: Endpoint,
    /// `None` for the `default` user.
    user: Option<String>,
    password: Option<Secret>,
    timeout: Duration,
    conn: Reopening<Session>,
    opened: Arc<AtomicU64>,
    acl_file: OnceCell<AclFile>,
}

impl fmt::Debug for AdminPool {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AdminPool")
            .field("user", &self.user_name())
            .field("endpoint", &self.endpoint.to_string())
            .field("tls", &self.endpoint.tls.is_some())
            .finish_non_exhaustive()
    }
}

impl AdminPool {
    /// An admin endpoint; `opened` counts the connections made (shared per provider).
    pub(crate) fn new(
        endpoint: Endpoint,
        user: Option<String>,
        password: Option<Secret>,
        timeout: Duration,
        opened: Arc<AtomicU64>,
    ) -> AdminPool {
        AdminPool {
            endpoint,
            user,
            password,
            timeout,
            conn: Reopening::new(),
            opened,
            acl_file: OnceCell::new(),
        }
    }

    /// The admin's user name (`default` when the URL names none).
    pub(crate) fn user_name(&self) -> &str {
        self.user.as_deref().unwrap_or("default")
    }

    /// `host:port` of the admin connection.
    pub(crate) fn endpoint(&self) -> &Endpoint {
        &self.endpoint
    }

    /// `admin "ops" on 10.0.0.5:6379`, with ` (TLS)` when it uses TLS.
    pub(crate) fn label(&self) -> String {
        format!(
            "admin {} on {}{}",
            quote_name(self.user_name()),
            self.endpoint,
            self.endpoint.tls_note()
        )
    }

    /// Opens the shared connection, authenticated, and names it.
    async fn open_shared(&self) -> ProviderResult<Session> {
        let label = self.label();
        // A password without a user name authenticates the `default` user.
        let (session, _) = open_authenticated(
            &self.endpoint,
            self.timeout,
            ADMIN_RESPONSE_TIMEOUT.max(self.timeout),
            self.user_name(),
            self.password.as_ref(),
            &label,
        )
        .await?;
        // Lets operators recognise rekey in CLIENT LIST; a user without the permission
        // simply keeps an unnamed connection.
        let _ = session
            .query(redis::cmd("CLIENT").arg("SETNAME").arg("rekey-admin"))
            .await;
        self.opened.fetch_add(1, Ordering::Relaxed);
        Ok(session)
    }

    /// Opens the connection now (if it is not open), so that connection and
    /// authentication errors surface.
    pub(crate) async fn ensure_connected(&self) -> ProviderResult<()> {
        self.conn.get(|_| true, || self.open_shared()).await.map(drop)
    }

    /// Runs `cmd` on the admin connection (opened on first use; concurrent callers wait
    /// for one connect). If the connection turns out to be lost (closed, server
    /// restarted, client killed), reconnects once and runs it again: every command
    /// rekey sends is idempotent or checked first. `action` describes the command for
    /// messages; `scrub` lists strings (hashes) kept out of them.
    pub(crate) async fn query(&self, action: &str, cmd: &redis::Cmd, scrub: &[&str]) -> ProviderResult<Value> {
        self.conn
            .run(
                |_| true,
                || self.open_shared(),
                |session: Arc<Session>| async move { session.query(cmd).await },
                is_connection_lost,
            )
            .await?
            .map_err(|e| redis_error(&e, format_args!("{action} as {}", self.label()), scrub))
    }
}

/// Whoever runs the ACL commands of one operation: the shared admin connection, or a
/// connection of the user itself when no admin is configured.
pub(crate) enum AdminConn<'a> {
    /// The provider's shared admin connection.
    Shared(&'a AdminPool),
    /// The user's own connection, closed when the operation ends.
    Own {
        session: Session,
        user: String,
        label: String,
    },
}

impl AdminConn<'_> {
    /// `admin "ops" on h:6379` or `user "app" on h:6379`.
    pub(crate) fn label(&self) -> String {
        match self {
            AdminConn::Shared(pool) => pool.label(),
            AdminConn::Own { label, .. } => label.clone(),
        }
    }

    /// The user name commands run as.
    pub(crate) fn user_name(&self) -> &str {
        match self {
            AdminConn::Shared(pool) => pool.user_name(),
            AdminConn::Own { user, .. } => user,
        }
    }

    /// Runs one command; see [`AdminPool::query`].
    pub(crate) async fn query(&self, action: &str, cmd: &redis::Cmd, scrub: &[&str]) -> ProviderResult<Value> {
        match self {
            AdminConn::Shared(pool) => pool.query(action, cmd, scrub).await,
            AdminConn::Own { session, label, .. } => session
                .query(cmd)
                .await
                .map_err(|e| redis_error(&e, format_args!("{action} as {label}"), scrub)),
        }
    }

    /// Whether the server uses an ACL file (cached per shared admin endpoint).
    pub(crate) async fn acl_file(&self) -> ProviderResult<AclFile> {
        match self {
            AdminConn::Shared(pool) => pool.acl_file.get_or_try_init(|| read_acl_file(self)).await.cloned(),
            AdminConn::Own { .. } => read_acl_file(self).await,
        }
    }

    /// Ends the operation (closes a connection of the user's own).
    pub(crate) async fn close(self) {
        if let AdminConn::Own { session, .. } = self {
            session.close().await;
        }
    }
}

async fn read_acl_file(admin: &AdminConn<'_>) -> ProviderResult<AclFile> {
    let reply = admin
        .query(
            "CONFIG GET aclfile",
            redis::cmd("CONFIG").arg("GET").arg("aclfile"),
            &[],
        )
        .await;
    match reply {
        Ok(value) => {
            let path = match &value {
                Value::Array(items) => items.get(1).and_then(text),
                Value::Map(items) => items.first().and_then(|(_, v)| text(v)),
                _ => None,
            };
            Ok(match path {
                Some(p) if !p.is_empty() => AclFile::Path(p),
                _ => AclFile::None,
            })
        }
        Err(e) if e.kind() == rekey_api::ErrorKind::PermissionDenied => Ok(AclFile::Unknown),
        Err(e) => Err(e),
    }
}
