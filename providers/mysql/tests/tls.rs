//! TLS modes against a throwaway MariaDB server with TLS (rekey-testbed's `MariaDbServer`):
//! the users require TLS (`REQUIRE SSL`), so a successful login proves TLS was used.

mod common;

use common::{doc, lit};
use rekey_api::conformance::{random_password, target::run_all};
use rekey_api::{ErrorKind, RedactedDsn, Secret, SecretDoc, Strategy};
use rekey_mysql::{MysqlProvider, MysqlTargetConfig, TlsMode};
use rekey_testbed::MariaDbServer;
use std::path::PathBuf;

struct Setup {
    server: MariaDbServer,
    admin: (String, Secret),
    user: (String, Secret),
}

impl Setup {
    fn new() -> Setup {
        let server = MariaDbServer::start().unwrap_or_else(|e| panic!("cannot start the MariaDB TLS server: {e}"));
        let admin = ("rekey_admin".to_owned(), random_password(24));
        let user = ("app_tls".to_owned(), random_password(24));
        server.root_sql(&format!(
            "CREATE USER {a}@'%' IDENTIFIED BY {ap} REQUIRE SSL; \
             GRANT CREATE USER, PROCESS, CONNECTION ADMIN ON *.* TO {a}@'%'; GRANT SELECT ON mysql.* TO {a}@'%'; \
             CREATE USER {u}@'%' IDENTIFIED BY {up} REQUIRE SSL",
            a = lit(&admin.0),
            ap = lit(admin.1.expose()),
            u = lit(&user.0),
            up = lit(user.1.expose()),
        ));
        Setup { server, admin, user }
    }

    fn config(&self, host: &str, tls: TlsMode, ca: Option<PathBuf>) -> MysqlTargetConfig {
        let mut c = MysqlTargetConfig::new(host, &self.user.0);
        c.port = self.server.port();
        c.tls = tls;
        c.tls_ca = ca;
        c.connect_timeout_secs = 5;
        c
    }

    fn user_doc(&self) -> SecretDoc {
        doc(&self.user.0, &self.user.1)
    }

    fn admin_url(&self, query: &str) -> RedactedDsn {
        RedactedDsn::new(format!(
            "mysql://{}:{}@127.0.0.1:{}/{query}",
            self.admin.0,
            self.admin.1.expose(),
            self.server.port()
        ))
    }
}

async fn login(
    provider: &MysqlProvider,
    config: &MysqlTargetConfig,
    doc: &SecretDoc,
) -> Result<(), rekey_api::ProviderError> {
    provider.target(config, Strategy::Single)?.login(doc).await
}

#[tokio::test]
async fn tls_modes_against_a_tls_server() {
    let s = Setup::new();
    let p = MysqlProvider::new();
    let doc = s.user_doc();
    let (ca, wrong) = (Some(s.server.ca()), Some(s.server.wrong_ca()));

    // The user requires TLS: a plain login is refused, so the successes below used TLS.
    let err = login(&p, &s.config("127.0.0.1", TlsMode::Disable, None), &doc)
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::AuthRejected, "{err}");
    for (mode, ca, host) in [
        (TlsMode::Prefer, None, "127.0.0.1"),
        (TlsMode::Require, None, "127.0.0.1"),
        (TlsMode::Require, ca.clone(), "127.0.0.1"),
        (TlsMode::VerifyFull, ca.clone(), "127.0.0.1"),
        (TlsMode::VerifyFull, ca.clone(), "localhost"),
    ] {
        login(&p, &s.config(host, mode, ca.clone()), &doc)
            .await
            .unwrap_or_else(|e| panic!("tls={mode} ca={ca:?} host={host}: {e}"));
    }
    // Certificates that do not chain to the trusted roots are refused before any
    // password is sent.
    for (mode, ca) in [
        (TlsMode::Require, wrong.clone()),
        (TlsMode::Prefer, wrong.clone()),
        (TlsMode::VerifyFull, wrong.clone()),
        (TlsMode::VerifyFull, None),
    ] {
        let err = login(&p, &s.config("127.0.0.1", mode, ca.clone()), &doc)
            .await
            .unwrap_err();
        assert_eq!(err.kind(), ErrorKind::Unreachable, "tls={mode} ca={ca:?}: {err}");
        assert!(err.to_string().contains("TLS"), "{err}");
        assert!(!err.is_retryable(), "a certificate does not heal by retrying: {err}");
        assert!(!err.to_string().contains(s.user.1.expose()));
    }
}

#[tokio::test]
async fn rotation_over_verified_tls() {
    let s = Setup::new();
    let p = MysqlProvider::new();
    let ca = s.server.ca();
    let mut config = s.config("127.0.0.1", TlsMode::VerifyFull, Some(ca.clone()));
    // The admin follows the target's TLS settings...
    config.admin = Some(s.admin_url(""));
    let t = p.target(&config, Strategy::Single).unwrap();
    let lines = t.preflight(Some(&s.user_doc())).await.unwrap();
    assert!(lines.iter().any(|l| l.contains("may alter users")), "{lines:?}");
    let end = run_all(t.as_ref(), s.user_doc()).await;
    t.verify(&end).await.unwrap();
    // ...unless its URL says otherwise: a plain admin connection is refused (REQUIRE SSL).
    config.admin = Some(s.admin_url("?tls=disable"));
    let err = p
        .target(&config, Strategy::Single)
        .unwrap()
        .preflight(None)
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::AuthRejected, "{err}");
    assert!(err.to_string().contains("admin"), "{err}");
    // An admin URL naming its own CA.
    config.admin = Some(s.admin_url(&format!("?tls=verify-full&tls_ca={}", ca.display())));
    config.tls = TlsMode::Require;
    config.tls_ca = None;
    let t = p.target(&config, Strategy::Single).unwrap();
    t.preflight(Some(&end)).await.unwrap();
}
