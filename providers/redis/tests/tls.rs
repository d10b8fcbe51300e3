//! TLS against a throwaway redis-server with a certificate for 127.0.0.1 signed by a
//! test CA (made with `openssl`): the conformance suite over TLS with `tls_ca`, and a
//! clear `unreachable` when the certificate is not trusted.

mod common;

use common::*;
use rekey_api::conformance::target::run_all;
use rekey_api::{ErrorKind, RedactedDsn, Strategy, Target};
use rekey_redis::{acl_password_hash, RedisProvider};
use rekey_testbed::{RedisOptions, RedisServer, RedisTls};

#[tokio::test]
async fn conformance_over_tls() {
    let certs = tempfile::tempdir().unwrap();
    let test_ca = rekey_testbed::TestCa::new(certs.path(), "ca", rekey_testbed::KeyType::EcP256).unwrap();
    let ca = test_ca.cert();
    let server = RedisServer::start(RedisOptions {
        tls: Some(RedisTls {
            server: test_ca.issue_server("server").unwrap(),
            ca: ca.clone(),
        }),
        ..Default::default()
    })
    .unwrap_or_else(|e| panic!("{e}"));
    let tls_port = server.tls_port().unwrap();
    let admin = TestUser::admin(&server);
    let user = TestUser::app(&server, "rk_tls");
    let provider = RedisProvider::new();

    for strategy in [Strategy::Dual, Strategy::Single] {
        let mut c = config(tls_port, &user.name, None);
        c.tls = true;
        c.tls_ca = Some(ca.clone());
        c.admin = Some(RedactedDsn::new(format!(
            "rediss://{}:{}@127.0.0.1:{tls_port}",
            admin.name,
            admin.password.expose()
        )));
        let t = provider.redis_target(&c, strategy).unwrap();
        assert!(t.describe().ends_with("(TLS)"), "{}", t.describe());
        let lines = t.preflight(Some(&user.doc())).await.unwrap();
        assert!(lines[0].contains("(TLS)"), "{lines:?}");
        let end = run_all(&t, user.doc()).await;
        // Put the fixture's password back for the next round.
        t.apply(&user.doc(), Some(&end)).await.unwrap();
        t.revoke(&end, &user.doc(), Default::default()).await.unwrap();
        assert_eq!(user.passwords(), vec![acl_password_hash(&user.password)]);
    }
    // A TLS client connection was really used: the plain port was only used for setup.
    let clients = server.clients_of(&admin.name);
    assert_eq!(clients.len(), 1, "{clients:?}");

    // Without the CA file the certificate is not trusted: a clear TLS error.
    let mut c = config(tls_port, &user.name, None);
    c.tls = true;
    let t = provider.redis_target(&c, Strategy::Dual).unwrap();
    let err = t.login(&user.doc()).await.unwrap_err();
    assert_error(
        &err,
        ErrorKind::Unreachable,
        &["TLS handshake failed", "certificate"],
        &[&user.password],
    );

    // The plain port is not TLS; the TLS port does not speak plain RESP.
    let mut c = config(tls_port, &user.name, None);
    c.tls = false;
    let t = provider.redis_target(&c, Strategy::Dual).unwrap();
    let err = t.login(&user.doc()).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Unreachable, "{err}");

    // A CA file that is not PEM is refused when the target is built.
    let mut c = config(tls_port, &user.name, None);
    c.tls = true;
    c.tls_ca = Some(certs.path().join("server.ext"));
    assert_eq!(
        provider.redis_target(&c, Strategy::Dual).unwrap_err().kind(),
        ErrorKind::InvalidInput
    );
}
