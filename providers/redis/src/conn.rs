//! Opening connections with a deadline (TCP, optional TLS) and authenticating them with
//! an explicit `AUTH` whose reply is checked, then `ACL WHOAMI`.

use crate::acl::{quote_name, text};
use crate::error::{err_reply_of, redis_error, ErrReply};
use redis::aio::MultiplexedConnection;
use redis::{AsyncConnectionConfig, RedisConnectionInfo, Value};
use rekey_api::{ErrorKind, ProviderError, ProviderResult, Secret};
use std::fmt;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpStream;
use tokio::task::JoinHandle;

/// Where to connect: host, port and, for TLS, the rustls configuration.
#[derive(Clone)]
pub(crate) struct Endpoint {
    pub(crate) host: String,
    pub(crate) port: u16,
    pub(crate) tls: Option<Arc<rustls::ClientConfig>>,
}

impl fmt::Display for Endpoint {
    /// `10.0.0.5:6379`, `[::1]:6379`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.host.contains(':') {
            write!(f, "[{}]:{}", self.host, self.port)
        } else {
            write!(f, "{}:{}", self.host, self.port)
        }
    }
}

impl Endpoint {
    /// ` (TLS)` when the endpoint uses TLS, for messages.
    pub(crate) fn tls_note(&self) -> &'static str {
        if self.tls.is_some() {
            " (TLS)"
        } else {
            ""
        }
    }
}

/// What the server says about an authenticated connection.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Identity {
    /// `ACL WHOAMI` answered this user name.
    Confirmed(String),
    /// `AUTH` answered `+OK` but the user may not run `ACL WHOAMI` (NOPERM).
    AuthOnly,
}

/// An open connection and the task driving its socket.
pub(crate) struct Session {
    pub(crate) conn: MultiplexedConnection,
    task: JoinHandle<()>,
}

impl Session {
    /// Closes the connection and waits briefly for its socket task to end, so the
    /// server sees the client go when this returns.
    pub(crate) async fn close(self) {
        drop(self.conn);
        let mut task = self.task;
        if tokio::time::timeout(Duration::from_secs(2), &mut task).await.is_err() {
            task.abort();
        }
    }

    /// Runs a command, returning the reply (a Redis error reply becomes `Err`).
    pub(crate) async fn query(&self, cmd: &redis::Cmd) -> redis::RedisResult<Value> {
        let mut conn = self.conn.clone();
        cmd.query_async::<Value>(&mut conn).await
    }

    /// Sends `AUTH user password` (when a password is given) and checks the reply, then
    /// asks `ACL WHOAMI`. A refused AUTH is [`ErrorKind::AuthRejected`]: the connection
    /// is never used on as another user (`redis-cli` would go on as `default`). `label`
    /// names the login, such as `user "app" on 10.0.0.5:6379`.
    pub(crate) async fn authenticate(
        &self,
        user: &str,
        password: Option<&Secret>,
        label: &str,
    ) -> ProviderResult<Identity> {
        if let Some(password) = password {
            let mut auth = redis::cmd("AUTH");
            auth.arg(user).arg(password.expose());
            match self.query(&auth).await {
                Ok(_) => {}
                Err(e) if err_reply_of(&e) == Some(ErrReply::WrongArity) => {
                    return Err(ProviderError::unsupported(format!(
                        "logging in as {label}: Redis without ACL support (AUTH takes no user name; Redis 6 or later is needed)"
                    )))
                }
                Err(e) => {
                    let err = redis_error(&e, format_args!("logging in as {label}"), &[]);
                    // Any refusal of AUTH is about the credential.
                    return Err(match err.kind() {
                        ErrorKind::Unreachable | ErrorKind::Unsupported => err,
                        _ => {
                            // Kept: the reply's code and the reply itself (a refusal of AUTH
                            // never quotes the password).
                            let refused = ProviderError::auth_rejected(err.message()).with_source(&e);
                            match err.code() {
                                Some(code) => refused.with_code(code.clone()),
                                None => refused,
                            }
                        }
                    });
                }
            }
        }
        match self.query(&redis::cmd("ACL").arg("WHOAMI").clone()).await {
            Ok(reply) => {
                let who = text(&reply).unwrap_or_default();
                if password.is_some() && who != user {
                    return Err(ProviderError::auth_rejected(format!(
                        "logging in as {label}: the server reports the connection as user {} after AUTH",
                        quote_name(&who)
                    )));
                }
                Ok(Identity::Confirmed(who))
            }
            Err(e) if e.code() == Some("NOPERM") && password.is_some() => Ok(Identity::AuthOnly),
            Err(e) => {
                let err = redis_error(&e, format_args!("ACL WHOAMI as {label}"), &[]);
                if err.kind() == ErrorKind::Unsupported {
                    return Err(ProviderError::unsupported(format!(
                        "{label}: Redis without ACL support (ACL WHOAMI is unknown; Redis 6 or later is needed)"
                    )));
                }
                if err.kind() == ErrorKind::AuthRejected {
                    // NOAUTH without a password: the default user needs one here.
                    return Err(ProviderError::auth_rejected(format!(
                        "{}: the server requires a password",
                        err.message()
                    )));
                }
                Err(err)
            }
        }
    }
}

/// Opens a connection to `endpoint` (TCP, then TLS if configured), giving up after
/// `timeout` for each of the two. Replies on it time out after `response_timeout`.
/// `label` names who connects and where, such as `user "app" on 10.0.0.5:6379 (TLS)`.
pub(crate) async fn connect(
    endpoint: &Endpoint,
    timeout: Duration,
    response_timeout: Duration,
    label: &str,
) -> ProviderResult<Session> {
    let what = format!("connecting as {label}");
    let tcp = match tokio::time::timeout(timeout, TcpStream::connect((endpoint.host.as_str(), endpoint.port))).await {
        Ok(Ok(tcp)) => tcp,
        Ok(Err(e)) => return Err(ProviderError::unreachable(format!("{what}: {e}"))),
        Err(_) => {
            return Err(ProviderError::unreachable(format!(
                "{what}: no connection within {}s",
                timeout.as_secs()
            )))
        }
    };
    let _ = tcp.set_nodelay(true);
    let info = RedisConnectionInfo::default().set_skip_set_lib_name();
    let config = AsyncConnectionConfig::new()
        .set_response_timeout(Some(response_timeout))
        .set_connection_timeout(Some(timeout));
    let made = match &endpoint.tls {
        None => MultiplexedConnection::new_with_config(&info, tcp, config)
            .await
            .map(|(conn, driver)| (conn, tokio::spawn(driver))),
        Some(tls) => {
            let name = rustls::pki_types::ServerName::try_from(endpoint.host.clone()).map_err(|e| {
                ProviderError::invalid_input(format!("{what}: {} is not a valid TLS server name: {e}", endpoint.host))
            })?;
            let connector = tokio_rustls::TlsConnector::from(tls.clone());
            let stream = match tokio::time::timeout(timeout, connector.connect(name, tcp)).await {
                Ok(Ok(stream)) => stream,
                Ok(Err(e)) => {
                    return Err(ProviderError::unreachable(format!(
                    "{what}: TLS handshake failed: {e} (is TLS enabled on this port, and is the certificate trusted?)"
                )))
                }
                Err(_) => {
                    return Err(ProviderError::unreachable(format!(
                        "{what}: TLS handshake failed: no answer within {}s (is TLS enabled on this port?)",
                        timeout.as_secs()
                    )))
                }
            };
            MultiplexedConnection::new_with_config(&info, stream, config)
                .await
                .map(|(conn, driver)| (conn, tokio::spawn(driver)))
        }
    };
    let (conn, task) = made.map_err(|e| redis_error(&e, &what, &[]))?;
    Ok(Session { conn, task })
}

/// Opens a connection and authenticates it, each within `timeout`; the session is
/// closed again on failure.
pub(crate) async fn open_authenticated(
    endpoint: &Endpoint,
    timeout: Duration,
    response_timeout: Duration,
    user: &str,
    password: Option<&Secret>,
    label: &str,
) -> ProviderResult<(Session, Identity)> {
    let session = connect(endpoint, timeout, response_timeout, label).await?;
    let answer = tokio::time::timeout(timeout, session.authenticate(user, password, label)).await;
    match answer {
        Ok(Ok(identity)) => Ok((session, identity)),
        Ok(Err(e)) => {
            session.close().await;
            Err(e)
        }
        Err(_) => {
            session.close().await;
            Err(ProviderError::unreachable(format!(
                "logging in as {label}: no answer within {}s",
                timeout.as_secs()
            )))
        }
    }
}
