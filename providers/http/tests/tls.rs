//! TLS against `openssl s_server` (testbed's `TlsWebServer`) with a certificate from a
//! test CA: verified with `ca_cert`, refused (`unreachable`, naming the unknown issuer
//! and `ca_cert`) without.

use rekey_api::{ErrorKind, SecretDoc, Strategy, Target};
use rekey_http::{HttpProvider, HttpTargetConfig};
use serde_json::json;
use std::path::{Path, PathBuf};

/// A CA and a server certificate for 127.0.0.1 and localhost (testbed's `TestCa`):
/// (cert, key, CA).
fn certificates(dir: &Path) -> (PathBuf, PathBuf, PathBuf) {
    let ca = rekey_testbed::TestCa::new(dir, "ca", rekey_testbed::KeyType::EcP256).expect("test CA");
    let server = ca.issue_server("server").expect("server certificate");
    (server.cert, server.key, ca.cert())
}

fn target(port: u16, ca: Option<&Path>) -> rekey_http::HttpTarget {
    let mut v = json!({
        "base_url": format!("https://localhost:{port}"),
        "basic": {"username": "admin", "password": "admin-pw"},
        "apply": {"method": "PUT", "path": "/", "json": {"password": "{{password}}"}},
        "login": {"method": "GET", "path": "/", "headers": {"Authorization": "Bearer {{password}}"}, "ok": [200]},
    });
    if let Some(ca) = ca {
        v["ca_cert"] = json!(ca);
    }
    let config: HttpTargetConfig = serde_json::from_value(v).unwrap();
    HttpProvider::new()
        .http_target(&config, "tls", Strategy::Single)
        .unwrap()
}

#[tokio::test]
async fn ca_cert_is_trusted_and_verification_is_on_by_default() {
    let dir = tempfile::tempdir().unwrap();
    let (cert, key, ca) = certificates(dir.path());
    let server = rekey_testbed::TlsWebServer::start(&cert, &key).expect("openssl s_server");
    let doc = SecretDoc::from_value(json!({"password": "pw-0123456789"})).unwrap();

    target(server.port(), Some(&ca))
        .login(&doc)
        .await
        .expect("trusted through ca_cert");

    let e = target(server.port(), None).login(&doc).await.unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Unreachable);
    let m = e.message();
    assert!(
        m.contains("login GET https://localhost:") && m.contains("TLS failure"),
        "{m}"
    );
    assert!(m.contains("UnknownIssuer") && m.contains("set `ca_cert`"), "{m}");
    assert!(!m.contains("pw-0123456789") && !m.contains('\n'), "{m}");
}
