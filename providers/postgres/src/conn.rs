//! Opening and closing connections with a deadline.

use crate::error::pg_error;
use crate::tls::TlsSetup;
use rekey_api::{ProviderError, ProviderResult};
use std::time::Duration;
use tokio::task::JoinHandle;
use tokio_postgres::error::SqlState;
use tokio_postgres::types::{ToSql, Type};
use tokio_postgres::{Client, NoTls, Row, Statement};

/// An open connection: the client and the task driving its socket.
pub(crate) struct Session {
    pub(crate) client: Client,
    task: JoinHandle<()>,
    /// Statements prepared on this connection, by their text.
    statements: std::sync::Mutex<std::collections::HashMap<&'static str, Statement>>,
    /// A prepared statement was lost (a pooler): unnamed statements only.
    unprepared: std::sync::atomic::AtomicBool,
}

impl Session {
    fn new(client: Client, task: JoinHandle<()>) -> Session {
        Session {
            client,
            task,
            statements: std::sync::Mutex::default(),
            unprepared: std::sync::atomic::AtomicBool::new(false),
        }
    }

    /// `sql` prepared on this connection with parameters of `types`: once, then reused.
    /// For the admin connection's catalog reads, asked once per credential: the server
    /// parses and plans a statement of its own once, where an unnamed one costs it a
    /// parse and a plan each time (most of the time of `plan` over 1,000 roles).
    async fn prepared(&self, sql: &'static str, types: &[Type]) -> Result<Statement, tokio_postgres::Error> {
        let known = self
            .statements
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(sql)
            .cloned();
        if let Some(statement) = known {
            return Ok(statement);
        }
        let statement = self.client.prepare_typed(sql, types).await?;
        self.statements
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(sql, statement.clone());
        Ok(statement)
    }

    /// [`Client::query_typed`] of `sql` as a statement [prepared](Session::prepared) on
    /// this connection.
    pub(crate) async fn query_prepared(
        &self,
        sql: &'static str,
        params: &[(&(dyn ToSql + Sync), Type)],
    ) -> Result<Vec<Row>, tokio_postgres::Error> {
        use std::sync::atomic::Ordering;
        if !self.unprepared.load(Ordering::Relaxed) {
            let types: Vec<Type> = params.iter().map(|(_, t)| t.clone()).collect();
            let values: Vec<&(dyn ToSql + Sync)> = params.iter().map(|(v, _)| *v).collect();
            let result = match self.prepared(sql, &types).await {
                Ok(statement) => self.client.query(&statement, &values).await,
                Err(e) => Err(e),
            };
            match result {
                // A pooler that hands each transaction another server connection (PgBouncer
                // in transaction mode before 1.21) loses named statements: the unnamed
                // statement from now on.
                Err(e) if e.code() == Some(&SqlState::INVALID_SQL_STATEMENT_NAME) => {
                    self.unprepared.store(true, Ordering::Relaxed);
                }
                result => return result,
            }
        }
        self.client.query_typed(sql, params).await
    }

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
                Ok::<_, tokio_postgres::Error>(Session::new(client, task))
            }
            Some(connector) => {
                let (client, connection) = config.connect(connector.clone()).await?;
                let task = tokio::spawn(async move {
                    let _ = connection.await;
                });
                Ok(Session::new(client, task))
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

    /// A catalog read is prepared once per connection; a connection that loses its
    /// statements (as behind a pooler in transaction mode: here `DEALLOCATE ALL` on the
    /// same connection) falls back to unnamed statements and still answers.
    #[tokio::test]
    async fn prepared_reads_survive_a_lost_statement() {
        let pg = rekey_testbed::PgCluster::shared();
        let mut config: tokio_postgres::Config = pg.admin_url().parse().unwrap();
        config.ssl_mode(tokio_postgres::config::SslMode::Disable);
        let tls = TlsSetup::new(crate::config::SslMode::Disable, None).unwrap();
        let session = connect(&config, &tls, Duration::from_secs(10), "admin").await.unwrap();
        const SQL: &str = "SELECT $1::text || 'x'";
        let read = |value: &'static str| {
            let session = &session;
            async move {
                let rows = session.query_prepared(SQL, &[(&value, Type::TEXT)]).await.unwrap();
                rows[0].get::<_, String>(0)
            }
        };
        assert_eq!(read("a").await, "ax");
        assert_eq!(read("b").await, "bx");
        let named = |session: &Session| session.statements.lock().unwrap().len();
        assert_eq!(named(&session), 1, "prepared once, reused");
        let prepared_server_side = session
            .client
            .query_typed_one("SELECT count(*) FROM pg_prepared_statements", &[])
            .await
            .unwrap()
            .get::<_, i64>(0);
        assert_eq!(prepared_server_side, 1);
        session.client.batch_execute("DEALLOCATE ALL").await.unwrap();
        assert_eq!(read("c").await, "cx", "the unnamed statement after the loss");
        assert!(session.unprepared.load(std::sync::atomic::Ordering::Relaxed));
        assert_eq!(read("d").await, "dx");
        session.close().await;
    }
}
