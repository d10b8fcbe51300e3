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
    match tokio::time::timeout(timeout, attempt).await {
        Ok(Ok(session)) => Ok(session),
        Ok(Err(e)) => Err(pg_error(
            &e,
            format_args!("connecting as {label} (sslmode={})", tls.mode),
        )),
        Err(_) => Err(ProviderError::unreachable(format!(
            "connecting as {label} (sslmode={}): no answer within {}s",
            tls.mode,
            timeout.as_secs()
        ))),
    }
}
