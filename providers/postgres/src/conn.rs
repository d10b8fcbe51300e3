//! Opening and closing connections with a deadline.

use crate::error::pg_error;
use crate::tls::TlsSetup;
use rekey_api::{ProviderError, ProviderResult};
use std::time::Duration;
use tokio::task::JoinHandle;
use tokio_postgres::{Client, NoTls};

/// An open connection: the client and the task driving its socket.
pub(crate) struct Session {
    pub(crate) client: Client,
    task: JoinHandle<()>,
}

impl Session {
    /// Closes the connection (the server sees a clean Terminate) and waits briefly for
    /// the socket to be done, so the backend is gone when this returns.
    pub(crate) async fn close(self) {
        drop(self.client);
        let _ = tokio::time::timeout(Duration::from_secs(5), self.task).await;
    }
}

/// Connects with `config` (which carries user, password, host, port and dbname) over
/// `tls`, giving up after `timeout` for the whole connect-and-authenticate exchange.
/// `label` names what is connecting, such as `role "app" on 10.0.0.5:5432/orders`.
pub(crate) async fn connect(
    config: &tokio_postgres::Config,
    tls: &TlsSetup,
    timeout: Duration,
    label: &str,
) -> ProviderResult<Session> {
    match attempt(config, tls, timeout).await {
        Ok(Ok(session)) => Ok(session),
        Ok(Err(e)) => Err(connect_error(&e, tls, label)),
        Err(_) => Err(no_answer(tls, timeout, label)),
    }
}

/// Proves that a login with `config` (which carries no password) would reach the point
/// where the server asks for the password: the endpoint answers, TLS works as `sslmode`
/// says and the server's `pg_hba.conf` admits the user to the database. No password is
/// sent and no session starts: the client hangs up when the password is asked for, which
/// the server takes quietly (as when psql asks the user for one). A server that trusts
/// the connection lets it log in, and the session is closed at once. Errors are those of
/// [`connect`].
pub(crate) async fn probe(
    config: &tokio_postgres::Config,
    tls: &TlsSetup,
    timeout: Duration,
    label: &str,
) -> ProviderResult<()> {
    match attempt(config, tls, timeout).await {
        Ok(Ok(session)) => {
            session.close().await;
            Ok(())
        }
        Ok(Err(e)) if asked_for_password(&e) => Ok(()),
        Ok(Err(e)) => Err(connect_error(&e, tls, label)),
        Err(_) => Err(no_answer(tls, timeout, label)),
    }
}

/// tokio-postgres's error for a server that asks for a password it was not given.
///
/// By text, because nothing typed says it: the library keeps its error `Kind` private and
/// raises this as `Kind::Config` over a plain string. Both texts are its fixed words
/// (`Kind::Config`'s Display and the literal it is raised with), compared whole, and only
/// for a client-side error (no SQLSTATE); `the_server_asking_for_a_password_is_recognised`
/// fails if the library changes them.
fn asked_for_password(err: &tokio_postgres::Error) -> bool {
    err.as_db_error().is_none()
        && err.to_string() == "invalid configuration"
        && std::error::Error::source(err).is_some_and(|s| s.to_string() == "password missing")
}

fn connect_error(err: &tokio_postgres::Error, tls: &TlsSetup, label: &str) -> ProviderError {
    pg_error(err, format_args!("connecting as {label} (sslmode={})", tls.mode))
}

fn no_answer(tls: &TlsSetup, timeout: Duration, label: &str) -> ProviderError {
    ProviderError::unreachable(format!(
        "connecting as {label} (sslmode={}): no answer within {}s",
        tls.mode,
        timeout.as_secs()
    ))
}

/// One connect-and-authenticate exchange; the outer error is the deadline passing.
async fn attempt(
    config: &tokio_postgres::Config,
    tls: &TlsSetup,
    timeout: Duration,
) -> Result<Result<Session, tokio_postgres::Error>, tokio::time::error::Elapsed> {
    let mut config = config.clone();
    config.ssl_mode(tls.pg_mode()).connect_timeout(timeout);
    let attempt = async {
        match &tls.connector {
            None => {
                let (client, connection) = config.connect(NoTls).await?;
                let task = tokio::spawn(async move {
                    let _ = connection.await;
                });
                Ok::<_, tokio_postgres::Error>(Session { client, task })
            }
            Some(connector) => {
                let (client, connection) = config.connect(connector.clone()).await?;
                let task = tokio::spawn(async move {
                    let _ = connection.await;
                });
                Ok(Session { client, task })
            }
        }
    };
    tokio::time::timeout(timeout, attempt).await
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    /// A fake server that answers any startup with one authentication request
    /// (`R`, `code`, `extra`).
    pub(crate) async fn asking(code: u32, extra: &'static [u8]) -> (u16, tokio::task::JoinHandle<()>) {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let server = tokio::spawn(async move {
            let (mut socket, _) = listener.accept().await.unwrap();
            let mut startup = [0u8; 512];
            let _ = socket.read(&mut startup).await.unwrap();
            let mut answer = vec![b'R'];
            answer.extend_from_slice(&(8 + extra.len() as u32).to_be_bytes());
            answer.extend_from_slice(&code.to_be_bytes());
            answer.extend_from_slice(extra);
            socket.write_all(&answer).await.unwrap();
            let _ = socket.read(&mut startup).await;
        });
        (port, server)
    }

    async fn connect_without_password(
        port: u16,
        binding: tokio_postgres::config::ChannelBinding,
    ) -> tokio_postgres::Error {
        let mut config = tokio_postgres::Config::new();
        config
            .host("127.0.0.1")
            .port(port)
            .user("app")
            .channel_binding(binding)
            .ssl_mode(tokio_postgres::config::SslMode::Disable);
        match config.connect(tokio_postgres::NoTls).await {
            Ok(_) => panic!("the fake server accepts nothing"),
            Err(e) => e,
        }
    }

    #[tokio::test]
    async fn the_server_asking_for_a_password_is_recognised() {
        use tokio_postgres::config::ChannelBinding;
        // AuthenticationCleartextPassword (3), and SCRAM (10): both ask for the password.
        for (code, extra) in [(3, &b""[..]), (10, &b"SCRAM-SHA-256\0\0"[..])] {
            let (port, server) = asking(code, extra).await;
            let err = connect_without_password(port, ChannelBinding::Prefer).await;
            assert!(asked_for_password(&err), "{code}: {err:?}");
            server.abort();
        }
        // Another configuration error: the same top-level text, another cause.
        let err = match tokio_postgres::Config::new()
            .user("app")
            .connect(tokio_postgres::NoTls)
            .await
        {
            Ok(_) => panic!("no host to connect to"),
            Err(e) => e,
        };
        assert_eq!(err.to_string(), "invalid configuration", "{err:?}");
        assert!(!asked_for_password(&err), "{err:?}");
        // Channel binding required but not offered: an authentication error.
        let (port, server) = asking(3, b"").await;
        let err = connect_without_password(port, ChannelBinding::Require).await;
        assert!(!asked_for_password(&err), "{err:?}");
        server.abort();
        // An authentication method the client does not speak (Kerberos V5, 2).
        let (port, server) = asking(2, b"").await;
        let err = connect_without_password(port, ChannelBinding::Prefer).await;
        assert!(!asked_for_password(&err), "{err:?}");
        server.abort();
    }
}
