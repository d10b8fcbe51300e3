//! Throwaway real servers for rekey's tests.
//!
//! [`PgCluster`] starts a PostgreSQL cluster of its own (the machine's service trusts
//! every TCP login, so it cannot prove that a wrong password is refused): `initdb` in a
//! temporary directory, SCRAM-SHA-256 enforced on `127.0.0.1`, a trusted unix socket for
//! test setup, and cleanup on drop or, for the process-wide [`PgCluster::shared`]
//! instance, when the test process exits.
//!
//! ```no_run
//! let pg = rekey_testbed::PgCluster::shared();
//! pg.create_role("app_1", "initial-password");
//! let url = pg.admin_url(); // postgres://postgres:…@127.0.0.1:PORT/postgres
//! # let _ = url;
//! pg.drop_role("app_1");
//! ```
//!
//! The other servers: [`VaultServer`] (rvault), [`MotoServer`] (AWS IAM and Secrets
//! Manager), [`RedisServer`] (the machine's Redis or a throwaway `redis-server`, with an
//! ACL file or TLS), [`MariaDb`] (root's client on the machine's MariaDB/MySQL) and
//! [`MariaDbServer`] (a throwaway MariaDB with TLS), [`TlsWebServer`] (`openssl s_server
//! -www`, for TLS clients); [`TestCa`] makes certificates.

#![warn(missing_docs)]

mod certs;
pub mod keyapi;
mod mariadb;
mod moto;
mod pg;
mod process;
mod redis;
mod resp;
mod scratch;
mod tls_web;
mod vault;

pub use certs::{openssl, CertPair, KeyType, TestCa};
pub use mariadb::{MariaDb, MariaDbServer, MYSQL_CLIENT_ENV, MYSQL_HOST_ENV, MYSQL_PORT_ENV, MYSQL_SOCKET_ENV};
pub use moto::{CountingProxy, MotoServer, MOTO_ENV};
pub use pg::{quote_ident, quote_literal, PgCluster, PgOptions, BIN_ENV, ENV_FILE};
pub use redis::{RedisOptions, RedisServer, RedisSession, RedisTls, REDIS_PORT_ENV, REDIS_SERVER_ENV};
pub use resp::RespValue;
pub use scratch::free_port;
pub use tls_web::TlsWebServer;
pub use vault::{VaultResponse, VaultServer, RVAULT_BIN_ENV};

use std::fmt;

/// Why a test server could not be started or stopped. One line, with the failing
/// command's stderr or the server log's new lines.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TestbedError(String);

impl TestbedError {
    fn new(message: impl Into<String>) -> Self {
        TestbedError(message.into().replace(['\n', '\r'], " "))
    }

    /// The message.
    pub fn message(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for TestbedError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for TestbedError {}
