//! TLS against `openssl s_server` with a certificate from a test CA: verified with
//! `ca_cert`, refused (`unreachable`, naming the unknown issuer and `ca_cert`) without.

use rekey_api::{ErrorKind, SecretDoc, Strategy, Target};
use rekey_http::{HttpProvider, HttpTargetConfig};
use serde_json::json;
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A CA and a server certificate for 127.0.0.1 and localhost (testbed's `TestCa`):
/// (cert, key, CA).
fn certificates(dir: &Path) -> (PathBuf, PathBuf, PathBuf) {
    let ca = rekey_testbed::TestCa::new(dir, "ca", rekey_testbed::KeyType::EcP256).expect("test CA");
    let server = ca.issue_server("server").expect("server certificate");
    (server.cert, server.key, ca.cert())
}

struct Server(Child, u16);

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// `openssl s_server -www` (answers `GET /` with 200) on a free port.
fn server(cert: &Path, key: &Path) -> Server {
    for _ in 0..5 {
        let port = TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let child = Command::new("openssl")
            .args(["s_server", "-quiet", "-www", "-accept", &format!("127.0.0.1:{port}")])
            .arg("-cert")
            .arg(cert)
            .arg("-key")
            .arg(key)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("openssl s_server");
        let server = Server(child, port);
        let deadline = Instant::now() + Duration::from_secs(5);
        while Instant::now() < deadline {
            if TcpStream::connect(("127.0.0.1", port)).is_ok() {
                return server;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }
    panic!("openssl s_server did not start");
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
    let server = server(&cert, &key);
    let doc = SecretDoc::from_value(json!({"password": "pw-0123456789"})).unwrap();

    target(server.1, Some(&ca))
        .login(&doc)
        .await
        .expect("trusted through ca_cert");

    let e = target(server.1, None).login(&doc).await.unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Unreachable);
    let m = e.message();
    assert!(
        m.contains("login GET https://localhost:") && m.contains("TLS failure"),
        "{m}"
    );
    assert!(m.contains("UnknownIssuer") && m.contains("set `ca_cert`"), "{m}");
    assert!(!m.contains("pw-0123456789") && !m.contains('\n'), "{m}");
}
