//! Opening connections: TLS as configured, a deadline, and nothing mysql_async would do
//! on its own behind rekey's back (no reconnect through the Unix socket, no cleartext
//! password plugin).

use crate::config::TlsMode;
use crate::error::mysql_error;
use mysql_async::{Conn, DriverError, OptsBuilder, SslOpts};
use rekey_api::{ProviderError, ProviderResult};
use rekey_net::tls;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

/// Client-side packet limit; rekey's statements are small.
const MAX_ALLOWED_PACKET: usize = 16 * 1024 * 1024;

/// Where to connect: TCP host and port, or a Unix socket.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Endpoint {
    pub(crate) host: String,
    pub(crate) port: u16,
    pub(crate) socket: Option<String>,
}

impl Endpoint {
    /// `host:port`, `[v6]:port` or the socket path, for messages.
    pub(crate) fn label(&self) -> String {
        match &self.socket {
            Some(path) => format!("socket {path}"),
            None if self.host.contains(':') => format!("[{}]:{}", self.host, self.port),
            None => format!("{}:{}", self.host, self.port),
        }
    }
}

/// The TLS side of connections: the mode and the mysql_async options that check the
/// certificate as the mode says. Clones share what `prefer` learned.
#[derive(Clone)]
pub(crate) struct TlsSetup {
    pub(crate) mode: TlsMode,
    ssl_opts: Option<SslOpts>,
    /// `prefer` found the server without TLS: later connections go plain at once.
    server_lacks_tls: Arc<AtomicBool>,
}

impl TlsSetup {
    /// Builds the options for `mode`, checking that `ca` (PEM) is readable.
    pub(crate) fn new(mode: TlsMode, ca: Option<&Path>) -> ProviderResult<TlsSetup> {
        // mysql_async builds its own rustls configuration from the default provider.
        tls::install_default_provider();
        let roots = match ca {
            Some(path) => Some(tls::load_ca_certificates(path, "tls_ca")?),
            None => None,
        };
        let ssl_opts = match (mode, roots) {
            (TlsMode::Disable, _) => None,
            (TlsMode::VerifyFull, Some(roots)) => Some(
                SslOpts::default()
                    .with_root_certs(roots.into_iter().map(|c| c.to_vec().into()).collect())
                    .with_disable_built_in_roots(true),
            ),
            // Mozilla's roots (built in) plus the system's.
            (TlsMode::VerifyFull, None) => Some(
                SslOpts::default()
                    .with_root_certs(tls::native_certificates().iter().map(|c| c.to_vec().into()).collect()),
            ),
            (_, Some(roots)) => Some(
                SslOpts::default()
                    .with_root_certs(roots.into_iter().map(|c| c.to_vec().into()).collect())
                    .with_disable_built_in_roots(true)
                    .with_danger_skip_domain_validation(true),
            ),
            (_, None) => Some(SslOpts::default().with_danger_accept_invalid_certs(true)),
        };
        Ok(TlsSetup {
            mode,
            ssl_opts,
            server_lacks_tls: Arc::new(AtomicBool::new(false)),
        })
    }
}

/// Who connects, and how.
pub(crate) struct ConnectSpec<'a> {
    pub(crate) endpoint: &'a Endpoint,
    pub(crate) user: &'a str,
    pub(crate) password: Option<&'a str>,
    pub(crate) db: Option<&'a str>,
    pub(crate) tls: &'a TlsSetup,
    pub(crate) timeout: Duration,
    /// Statements run right after authenticating.
    pub(crate) init: &'a [&'a str],
    /// Names what is connecting, such as `user 'app' on 10.0.0.5:3306`.
    pub(crate) label: &'a str,
}

/// Connects and authenticates within the deadline. With `prefer`, a server that does
/// not offer TLS is connected to again without it (and remembered).
pub(crate) async fn connect(spec: &ConnectSpec<'_>) -> ProviderResult<Conn> {
    let base = OptsBuilder::default()
        .ip_or_hostname(spec.endpoint.host.clone())
        .tcp_port(spec.endpoint.port)
        .socket(spec.endpoint.socket.clone())
        .user(Some(spec.user))
        .pass(spec.password)
        .db_name(spec.db)
        // Never swap a TCP connection for the server's Unix socket: another account
        // (user@localhost) and no TLS.
        .prefer_socket(false)
        .enable_cleartext_plugin(false)
        // Known values, so connecting does not cost a settings query.
        .max_allowed_packet(Some(MAX_ALLOWED_PACKET))
        .wait_timeout(Some(28800))
        .init(spec.init.iter().rev().map(|s| s.to_string()).collect::<Vec<_>>());
    let tls = spec.tls;
    let attempt = async {
        let use_tls = spec.endpoint.socket.is_none() && !tls.server_lacks_tls.load(Ordering::Relaxed);
        let first = new_conn(base.clone().ssl_opts(if use_tls { tls.ssl_opts.clone() } else { None })).await;
        match first {
            Ok(Err(mysql_async::Error::Driver(DriverError::NoClientSslFlagFromServer)))
                if tls.mode == TlsMode::Prefer =>
            {
                tls.server_lacks_tls.store(true, Ordering::Relaxed);
                new_conn(base.clone().ssl_opts(None)).await
            }
            other => other,
        }
    };
    match tokio::time::timeout(spec.timeout, attempt).await {
        Ok(Ok(Ok(conn))) => Ok(conn),
        Ok(Err(Panicked)) => Err(ProviderError::unsupported(format!(
            "connecting as {}: the MySQL client library gave up while authenticating (it panicked): the account \
             most likely uses an authentication plugin the client cannot answer, such as MariaDB's parsec",
            spec.label
        ))
        .retryable(false)),
        Ok(Ok(Err(e))) => Err(mysql_error(
            &e,
            format_args!("connecting as {} (tls={})", spec.label, tls.mode),
        )),
        Err(_) => Err(ProviderError::unreachable(format!(
            "connecting as {} (tls={}): no answer within {}s",
            spec.label,
            tls.mode,
            spec.timeout.as_secs()
        ))),
    }
}

/// The client library panicked while connecting.
struct Panicked;

/// `Conn::new` on its own task, so that a panic inside the client library (mysql_common
/// panics when the server asks for an authentication plugin it was built without, such
/// as MariaDB's `parsec`) becomes an error instead of ending the rotation.
async fn new_conn(opts: OptsBuilder) -> Result<Result<Conn, mysql_async::Error>, Panicked> {
    /// Aborts the task when the caller gives up (its deadline passed).
    struct AbortOnDrop(tokio::task::JoinHandle<Result<Conn, mysql_async::Error>>);
    impl Drop for AbortOnDrop {
        fn drop(&mut self) {
            self.0.abort();
        }
    }
    let mut task = AbortOnDrop(tokio::spawn(Conn::new(opts)));
    match (&mut task.0).await {
        Ok(result) => Ok(result),
        Err(e) if e.is_panic() => Err(Panicked),
        // Cancelled: the runtime is shutting down.
        Err(_) => Ok(Err(mysql_async::Error::Driver(DriverError::ConnectionClosed))),
    }
}

/// Closes a connection cleanly (COM_QUIT) rather than dropping the socket; errors are
/// irrelevant by then.
pub(crate) async fn close(conn: Conn) {
    let _ = tokio::time::timeout(Duration::from_secs(5), conn.disconnect()).await;
}
