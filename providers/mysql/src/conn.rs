//! Opening connections: TLS as configured, a deadline, and nothing mysql_async would do
//! on its own behind rekey's back (no reconnect through the Unix socket, no cleartext
//! password plugin).

use crate::config::TlsMode;
use crate::error::mysql_error;
use mysql_async::{Conn, DriverError, OptsBuilder, SslOpts};
use rekey_api::{ProviderError, ProviderResult};
use rekey_net::tls;
use std::any::Any;
use std::cell::Cell;
use std::future::Future;
use std::path::Path;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Once};
use std::task::{Context, Poll};
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
        Ok(Err(Panicked { plugin })) => Err(ProviderError::unsupported(match plugin {
            Some(plugin) => format!(
                "connecting as {}: the account authenticates with the `{plugin}` plugin (the server asked for it), \
                 which rekey's MySQL client cannot answer (it is built without ed25519 and parsec): rekey cannot \
                 log in as this account; give it a mysql_native_password method (ALTER USER … IDENTIFIED VIA \
                 mysql_native_password USING PASSWORD('…'))",
                spec.label
            ),
            None => format!(
                "connecting as {}: the MySQL client library failed (panicked) while logging in, without naming an \
                 authentication plugin: an unexpected client failure, or a plugin it cannot answer (MariaDB's \
                 ed25519 or parsec, which would need a mysql_native_password method)",
                spec.label
            ),
        })
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

/// The client library panicked while connecting; `plugin` is the authentication plugin
/// it could not answer, when its panic message names one.
struct Panicked {
    plugin: Option<String>,
}

/// `Conn::new` on its own task, so that a panic inside the client library becomes an
/// error instead of ending the rotation, and a silent one (see [`Quiet`]): mysql_common
/// panics ("Can't create response for `ed25519` authentication plugin — … feature is
/// disabled") when the server's authentication switch asks for a plugin it was built
/// without, MariaDB's `ed25519` or `parsec`. mysql_async offers no hook to refuse the
/// switch before that, so the panic is the signal; its message names the plugin.
async fn new_conn(opts: OptsBuilder) -> Result<Result<Conn, mysql_async::Error>, Panicked> {
    /// Aborts the task when the caller gives up (its deadline passed).
    struct AbortOnDrop(tokio::task::JoinHandle<Result<Conn, mysql_async::Error>>);
    impl Drop for AbortOnDrop {
        fn drop(&mut self) {
            self.0.abort();
        }
    }
    install_quiet_panic_hook();
    let mut task = AbortOnDrop(tokio::spawn(Quiet(Box::pin(Conn::new(opts)))));
    match (&mut task.0).await {
        Ok(result) => Ok(result),
        Err(e) if e.is_panic() => Err(Panicked {
            plugin: plugin_in_panic(e.into_panic().as_ref()),
        }),
        // Cancelled: the runtime is shutting down.
        Err(_) => Ok(Err(mysql_async::Error::Driver(DriverError::ConnectionClosed))),
    }
}

thread_local! {
    /// Set while this thread polls a login ([`Quiet`]): a panic then prints nothing.
    static QUIET_PANICS: Cell<bool> = const { Cell::new(false) };
}

/// Installs, once per process, a panic hook that prints nothing for a panic raised while
/// [`QUIET_PANICS`] is set on the panicking thread and hands every other panic to the
/// hook that was installed before (the default one prints the message and, with
/// `RUST_BACKTRACE`, a backtrace). A panic in a login is expected (see [`new_conn`]),
/// caught, and reported as an error naming its cause, so printing it would only alarm.
/// A hook set later by someone else replaces this one: the panic is then printed, and
/// still caught.
fn install_quiet_panic_hook() {
    static INSTALL: Once = Once::new();
    INSTALL.call_once(|| {
        let previous = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            if !QUIET_PANICS.with(Cell::get) {
                previous(info);
            }
        }));
    });
}

/// A future polled with [`QUIET_PANICS`] set on the polling thread: a panic inside
/// `poll` (the login runs on whichever tokio worker polls it) prints nothing. The flag is
/// restored after each poll, also when the poll unwinds.
struct Quiet<F>(Pin<Box<F>>);

impl<F: Future> Future for Quiet<F> {
    type Output = F::Output;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<F::Output> {
        /// Restores the flag's previous value when dropped.
        struct Restore(bool);
        impl Drop for Restore {
            fn drop(&mut self) {
                QUIET_PANICS.with(|q| q.set(self.0));
            }
        }
        let _restore = Restore(QUIET_PANICS.with(|q| q.replace(true)));
        self.0.as_mut().poll(cx)
    }
}

/// The plugin a panic message of mysql_common names: the first `` `word` `` of
/// "Can't create response for `ed25519` authentication plugin — …". Only a plugin-shaped
/// word (letters, digits, `_`) is taken; the message is never shown as it is.
fn plugin_in_panic(payload: &(dyn Any + Send)) -> Option<String> {
    let text = payload
        .downcast_ref::<&str>()
        .copied()
        .or_else(|| payload.downcast_ref::<String>().map(String::as_str))?;
    let (_, rest) = text.split_once("for `")?;
    let (name, rest) = rest.split_once('`')?;
    let shaped = !name.is_empty() && name.len() <= 64 && name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_');
    (shaped && rest.trim_start().starts_with("authentication plugin")).then(|| name.to_owned())
}

/// Closes a connection cleanly (COM_QUIT) rather than dropping the socket; errors are
/// irrelevant by then.
pub(crate) async fn close(conn: Conn) {
    let _ = tokio::time::timeout(Duration::from_secs(5), conn.disconnect()).await;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_plugin_of_mysql_commons_panic() {
        let ed: Box<dyn Any + Send> = Box::new(
            "Can't create response for `ed25519` authentication plugin — `mysql_common/client_ed25519` feature is \
             disabled.",
        );
        assert_eq!(plugin_in_panic(ed.as_ref()).as_deref(), Some("ed25519"));
        let parsec: Box<dyn Any + Send> = Box::new(String::from(
            "Can't create response for `parsec` authentication plugin — `mysql_common/client_parsec` feature is \
             disabled.",
        ));
        assert_eq!(plugin_in_panic(parsec.as_ref()).as_deref(), Some("parsec"));
        let other: Box<dyn Any + Send> = Box::new("index out of bounds: the len is 3 but the index is 7");
        assert_eq!(plugin_in_panic(other.as_ref()), None);
        let odd: Box<dyn Any + Send> = Box::new("response for `a b` authentication plugin");
        assert_eq!(plugin_in_panic(odd.as_ref()), None);
        assert_eq!(plugin_in_panic(&42u8), None);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_panic_in_a_quiet_future_is_caught_and_the_flag_restored() {
        install_quiet_panic_hook();
        let task = tokio::spawn(Quiet(Box::pin(async {
            panic!("Can't create response for `ed25519` authentication plugin — test")
        })));
        let err = task.await.unwrap_err();
        assert!(err.is_panic());
        assert_eq!(plugin_in_panic(err.into_panic().as_ref()).as_deref(), Some("ed25519"));
        // Every worker's flag is back to unset: a panic elsewhere is printed as before.
        for _ in 0..8 {
            tokio::spawn(async { assert!(!QUIET_PANICS.with(Cell::get)) })
                .await
                .unwrap();
        }
        assert!(!QUIET_PANICS.with(Cell::get));
    }
}
