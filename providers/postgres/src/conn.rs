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
