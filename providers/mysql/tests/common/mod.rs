//! Fixtures against the machine's MariaDB/MySQL server (rekey-testbed's `MariaDb`):
//! users and admins created as root through the `mysql` client over the Unix socket,
//! dropped when the test ends. Logins by the code under test go over TCP, where
//! passwords are really checked.
//!
//! Environment: `REKEY_MYSQL_HOST` (default 127.0.0.1), `REKEY_MYSQL_PORT` (3306),
//! `REKEY_MYSQL_CLIENT` (the `mysql` command), `REKEY_MYSQL_SOCKET` (root's socket, if
//! not the client's default).

#![allow(dead_code)]

use rekey_api::conformance::{random_password, unique_name};
use rekey_api::{RedactedDsn, Secret, SecretDoc};
use rekey_testbed::{MariaDb, TestbedError};

/// Where the code under test connects.
pub fn host() -> String {
    MariaDb::machine().host().to_owned()
}

/// The TCP port.
pub fn port() -> u16 {
    MariaDb::machine().port()
}

/// `host:port`, as messages name it.
pub fn endpoint() -> String {
    MariaDb::machine().endpoint()
}

/// Runs `sql` as root over the socket; returns the output (tab-separated, no headers).
/// Panics with the client's error.
pub fn root_sql(sql: &str) -> String {
    MariaDb::machine().root_sql(sql)
}

/// [`root_sql`] returning the client's error.
pub fn try_root_sql(sql: &str) -> Result<String, TestbedError> {
    MariaDb::machine().try_root_sql(sql)
}

/// An SQL string literal, written independently of the crate under test.
pub fn lit(value: &str) -> String {
    format!("'{}'", value.replace('\\', "\\\\").replace('\'', "\\'"))
}

/// `'user'@'%'`.
pub fn account(user: &str) -> String {
    format!("{}@'%'", lit(user))
}

/// A document holding `user` and `password`.
pub fn doc(user: &str, password: &Secret) -> SecretDoc {
    let mut doc = SecretDoc::new();
    doc.set("username", user);
    doc.set_password(password);
    doc
}

/// A user `'name'@'%'` with a random password, dropped at the end of the test.
pub struct TestUser {
    pub name: String,
    pub password: Secret,
}

impl TestUser {
    /// A user with no privileges beyond logging in.
    pub fn new(prefix: &str) -> TestUser {
        Self::with_grants(prefix, &[])
    }

    /// A user with `grants` (`"SELECT ON db.*"`...).
    pub fn with_grants(prefix: &str, grants: &[&str]) -> TestUser {
        let name = unique_name(prefix);
        let password = random_password(24);
        let mut sql = format!(
            "CREATE USER {} IDENTIFIED BY {};",
            account(&name),
            lit(password.expose())
        );
        for grant in grants {
            sql.push_str(&format!("GRANT {grant} TO {};", account(&name)));
        }
        root_sql(&sql);
        TestUser { name, password }
    }

    /// The user's current document.
    pub fn doc(&self) -> SecretDoc {
        doc(&self.name, &self.password)
    }

    /// The stored hash (`authentication_string`).
    pub fn stored_hash(&self) -> String {
        root_sql(&format!(
            "SELECT authentication_string FROM mysql.user WHERE User = {} AND Host = '%'",
            lit(&self.name)
        ))
    }
}

impl Drop for TestUser {
    fn drop(&mut self) {
        let _ = try_root_sql(&format!("DROP USER IF EXISTS {}", account(&self.name)));
    }
}

/// The privileges rekey's admin needs for everything: alter users, read their grants,
/// see and end their sessions.
pub const ADMIN_GRANTS: &[&str] = &["CREATE USER, PROCESS, CONNECTION ADMIN ON *.*", "SELECT ON mysql.*"];

/// An admin user authenticating over TCP with a random password.
pub struct TestAdmin {
    pub user: TestUser,
}

impl TestAdmin {
    /// An admin with [`ADMIN_GRANTS`].
    pub fn new() -> TestAdmin {
        Self::with_grants(ADMIN_GRANTS)
    }

    /// An admin with other grants.
    pub fn with_grants(grants: &[&str]) -> TestAdmin {
        TestAdmin {
            user: TestUser::with_grants("rekey_admin", grants),
        }
    }

    /// `mysql://admin:pw@host:port/`.
    pub fn url(&self) -> RedactedDsn {
        RedactedDsn::new(format!(
            "mysql://{}:{}@{}:{}/",
            self.user.name,
            self.user.password.expose(),
            host(),
            port()
        ))
    }
}

/// A raw session as `user`, outside the code under test.
pub async fn raw_session(user: &str, password: &Secret) -> mysql_async::Conn {
    let opts = mysql_async::OptsBuilder::default()
        .ip_or_hostname(host())
        .tcp_port(port())
        .user(Some(user))
        .pass(Some(password.expose()))
        .prefer_socket(false);
    mysql_async::Conn::new(opts).await.expect("raw session connects")
}

/// A port on 127.0.0.1 where nothing listens (testbed's free port).
pub fn closed_port() -> u16 {
    rekey_testbed::free_port().expect("a free port on 127.0.0.1")
}

/// Asserts the error's kind, that its text holds `needles`, one line, and no secret or
/// mysql_native_password hash of one.
pub fn assert_error(err: &rekey_api::ProviderError, kind: rekey_api::ErrorKind, needles: &[&str], secrets: &[&Secret]) {
    rekey_api::testing::assert_error_hiding(err, kind, needles, secrets, |s| {
        Some(rekey_mysql::native_password_hash(s)[1..].to_owned())
    });
}
