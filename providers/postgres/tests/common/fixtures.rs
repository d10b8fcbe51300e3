//! Roles on a test cluster, documents and configurations; the error assertion is the
//! contract crate's.

use rekey_api::conformance::{random_password, unique_name};
use rekey_api::{RedactedDsn, Secret, SecretDoc, Strategy};
use rekey_postgres::{PostgresProvider, PostgresTarget, PostgresTargetConfig};
use rekey_testbed::PgCluster;

#[allow(unused_imports)] // not every test file asserts on errors
pub use rekey_api::testing::assert_error;

/// A login role on a test cluster, dropped (sessions ended) when the test ends.
pub struct TestRole<'a> {
    pub pg: &'a PgCluster,
    pub name: String,
    pub password: Secret,
}

impl<'a> TestRole<'a> {
    pub fn new(pg: &'a PgCluster, prefix: &str) -> Self {
        Self::with_options(pg, prefix, "")
    }

    pub fn with_options(pg: &'a PgCluster, prefix: &str, options: &str) -> Self {
        let name = unique_name(prefix);
        let password = random_password(24);
        pg.create_role_with(&name, password.expose(), options);
        TestRole { pg, name, password }
    }

    /// A document holding this role's real password.
    pub fn doc(&self) -> SecretDoc {
        doc(&self.name, &self.password)
    }

    /// A document naming this role with a password that is not its own.
    pub fn wrong_doc(&self) -> SecretDoc {
        doc(&self.name, &random_password(24))
    }

    /// An admin connection string logging in as this role.
    pub fn dsn(&self) -> RedactedDsn {
        RedactedDsn::new(format!(
            "host=127.0.0.1 port={} dbname=postgres user={} password={}",
            self.pg.port(),
            kv_quote(&self.name),
            kv_quote(self.password.expose())
        ))
    }
}

impl Drop for TestRole<'_> {
    fn drop(&mut self) {
        self.pg.drop_role(&self.name);
    }
}

/// A value quoted for a key=value connection string.
pub fn kv_quote(value: &str) -> String {
    format!("'{}'", value.replace('\\', "\\\\").replace('\'', "\\'"))
}

/// `{"username": user, "password": password}`.
pub fn doc(user: &str, password: &Secret) -> SecretDoc {
    let mut doc = SecretDoc::new();
    doc.set("username", user);
    doc.set_password(password);
    doc
}

/// A target configuration for `role` on the cluster, with the superuser as admin or none.
pub fn config(pg: &PgCluster, role: &str, admin: bool) -> PostgresTargetConfig {
    let mut c = PostgresTargetConfig::new(pg.host(), role);
    c.port = pg.port();
    c.connect_timeout_secs = 10;
    if admin {
        c.admin = Some(RedactedDsn::new(pg.admin_url()));
    }
    c
}

/// The target for `config` with `strategy`.
pub fn target_with(provider: &PostgresProvider, config: &PostgresTargetConfig, strategy: Strategy) -> PostgresTarget {
    provider.postgres_target(config, strategy).expect("target builds")
}

/// A port on 127.0.0.1 where nothing listens (testbed's free port).
pub fn closed_port() -> u16 {
    rekey_testbed::free_port().expect("a free port on 127.0.0.1")
}
