//! TLS: `ca_cert`, `client_cert`/`client_key`, and what a certificate problem looks
//! like, against the KV v2 **fake** (`fake_kv2`) served over rustls. rvault can serve
//! TLS, but the test harness speaks plain HTTP to initialize it, so the fake stands in.
//! Certificates are made with the `openssl` command (rekey-testbed's `TestCa`).

mod fake_kv2;

use fake_kv2::{FakeKv2, ROOT_TOKEN};
use rekey_api::conformance::unique_name;
use rekey_api::{ErrorKind, SecretDoc, Store};
use rekey_vault::{ConfigSecret, VaultKvConfig, VaultProvider};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// A CA, a server certificate for 127.0.0.1 and a client certificate, signed by it.
struct Certs {
    dir: tempfile::TempDir,
}

impl Certs {
    fn make() -> Certs {
        let dir = tempfile::tempdir().unwrap();
        let ca = rekey_testbed::TestCa::new(dir.path(), "ca", rekey_testbed::KeyType::EcP256).unwrap();
        ca.issue_server("server").unwrap();
        ca.issue_client("client").unwrap();
        Certs { dir }
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    fn server_config(&self, require_client_cert: bool) -> rustls::ServerConfig {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let certs = load_certs(&self.path("server.pem"));
        let key = PrivateKeyDer::from_pem_file(self.path("server.key")).unwrap();
        let builder = rustls::ServerConfig::builder_with_provider(provider.clone())
            .with_safe_default_protocol_versions()
            .unwrap();
        let builder = if require_client_cert {
            let mut roots = rustls::RootCertStore::empty();
            roots.add_parsable_certificates(load_certs(&self.path("ca.pem")));
            let verifier = rustls::server::WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider)
                .build()
                .unwrap();
            builder.with_client_cert_verifier(verifier)
        } else {
            builder.with_no_client_auth()
        };
        builder.with_single_cert(certs, key).unwrap()
    }
}

fn load_certs(path: &Path) -> Vec<CertificateDer<'static>> {
    CertificateDer::pem_file_iter(path)
        .unwrap()
        .collect::<Result<Vec<_>, _>>()
        .unwrap()
}

fn config(fake: &FakeKv2) -> VaultKvConfig {
    let mut config = VaultKvConfig::new(fake.address());
    config.token = Some(ConfigSecret::new(ROOT_TOKEN));
    config
}

fn doc() -> SecretDoc {
    let mut d = SecretDoc::new();
    d.set("password", "tls-test-pw");
    d
}

#[tokio::test(flavor = "multi_thread")]
async fn ca_cert_is_trusted_and_nothing_else() {
    let certs = Certs::make();
    let fake = FakeKv2::start_tls(certs.server_config(false)).await;
    assert!(fake.address().starts_with("https://"));

    let mut trusted = config(&fake);
    trusted.ca_cert = Some(certs.path("ca.pem"));
    let store = VaultProvider::new().kv_store(&trusted).unwrap();
    let key = unique_name("tls");
    store.put_current(&key, "v1", &doc()).await.unwrap();
    assert_eq!(store.read(&key).await.unwrap().current().unwrap().id, "v1");

    // The platform's and Mozilla's roots do not know the test CA.
    let store = VaultProvider::new().kv_store(&config(&fake)).unwrap();
    let err = store.read(&key).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Unreachable, "{err}");
    assert!(err.message().to_lowercase().contains("certificate"), "{err}");

    // A CA that did not sign the server's certificate.
    let other = Certs::make();
    let mut wrong = config(&fake);
    wrong.ca_cert = Some(other.path("ca.pem"));
    let err = VaultProvider::new()
        .kv_store(&wrong)
        .unwrap()
        .read(&key)
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Unreachable, "{err}");
}

#[tokio::test(flavor = "multi_thread")]
async fn client_certificate_when_the_server_requires_one() {
    let certs = Certs::make();
    let fake = FakeKv2::start_tls(certs.server_config(true)).await;
    let mut without = config(&fake);
    without.ca_cert = Some(certs.path("ca.pem"));
    let key = unique_name("mtls");
    let err = VaultProvider::new()
        .kv_store(&without)
        .unwrap()
        .read(&key)
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Unreachable, "{err}");

    let mut with = without.clone();
    with.client_cert = Some(certs.path("client.pem"));
    with.client_key = Some(certs.path("client.key"));
    let store: Arc<dyn Store> = VaultProvider::new().kv_store(&with).unwrap();
    store.put_current(&key, "v1", &doc()).await.unwrap();
    assert_eq!(store.read(&key).await.unwrap().current().unwrap().id, "v1");
}

#[tokio::test(flavor = "multi_thread")]
async fn unusable_tls_files_are_invalid_input() {
    let certs = Certs::make();
    let mut config = VaultKvConfig::new("https://127.0.0.1:1");
    config.token = Some(ConfigSecret::new("t"));
    config.ca_cert = Some(certs.path("missing.crt"));
    let err = VaultProvider::new().kv_store(&config).err().unwrap();
    assert_eq!(err.kind(), ErrorKind::InvalidInput, "{err}");
    assert!(err.message().contains("missing.crt"), "{err}");

    config.ca_cert = Some(certs.path("server.key"));
    let err = VaultProvider::new().kv_store(&config).err().unwrap();
    assert_eq!(err.kind(), ErrorKind::InvalidInput, "{err}");

    config.ca_cert = None;
    config.client_cert = Some(certs.path("client.pem"));
    let err = VaultProvider::new().kv_store(&config).err().unwrap();
    assert_eq!(err.kind(), ErrorKind::InvalidInput, "{err}");
    assert!(err.message().contains("client_key"), "{err}");

    config.client_key = Some(certs.path("client.pem"));
    let err = VaultProvider::new().kv_store(&config).err().unwrap();
    assert_eq!(err.kind(), ErrorKind::InvalidInput, "{err}");
    assert!(err.message().contains("client_key"), "{err}");
}

/// The namespace travels in `X-Vault-Namespace` on every request, logins included.
#[tokio::test(flavor = "multi_thread")]
async fn namespace_header_is_sent() {
    let fake = FakeKv2::start().await;
    let mut config = VaultKvConfig::new(fake.address());
    config.token = Some(ConfigSecret::new(ROOT_TOKEN));
    config.namespace = Some("team-a/".into());
    let store = VaultProvider::new().vault_kv_store(&config).unwrap();
    let key = unique_name("ns");
    store.put_current(&key, "v1", &doc()).await.unwrap();
    store.preflight(&key).await.unwrap();
    let requests = fake.requests();
    assert!(!requests.is_empty());
    for r in &requests {
        assert!(r.ends_with("[ns team-a]"), "{r}");
    }
    assert!(store.describe().contains("namespace team-a"), "{}", store.describe());
}
