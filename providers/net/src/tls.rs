//! Trusted roots and rustls client configurations, with ring as the crypto provider.
//!
//! One behaviour for every provider: a CA file's certificates are the *only* roots
//! when one is configured (and a file without a usable certificate is an error, not an
//! empty trust store); otherwise the platform's roots plus Mozilla's (webpki-roots), so
//! verification works both where the system store is managed and in minimal containers
//! without one, loaded once per process.

use crate::verify::{ChainOnly, NoCertificateCheck};
use rekey_api::ProviderError;
use rustls::client::danger::ServerCertVerifier;
use rustls::client::WebPkiServerVerifier;
use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::{ClientConfig, RootCertStore};
use std::path::{Path, PathBuf};
use std::sync::{Arc, OnceLock};

/// Why a TLS client configuration could not be built. Every variant is a configuration
/// problem ([`rekey_api::ErrorKind::InvalidInput`] once converted); messages name the
/// setting and the file, never key material.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    /// A certificate file could not be read or parsed as PEM.
    #[error("{setting} {}: {source}", path.display())]
    Read {
        /// The setting that names the file (`tls_ca`, `ca_cert`, `client_cert`).
        setting: String,
        /// The file.
        path: PathBuf,
        /// What went wrong.
        source: rustls::pki_types::pem::Error,
    },
    /// A CA file holds no certificate rustls can use as a root.
    #[error("{setting} {}: no usable certificate in the file", path.display())]
    NoUsableCertificate {
        /// The setting that names the file.
        setting: String,
        /// The file.
        path: PathBuf,
    },
    /// A client certificate file holds no certificate.
    #[error("client_cert {}: no certificate in the file", path.display())]
    NoClientCertificate {
        /// The file.
        path: PathBuf,
    },
    /// The client key file could not be read or holds no private key.
    #[error("client_key {}: {source}", path.display())]
    ClientKey {
        /// The file.
        path: PathBuf,
        /// What went wrong (its text never includes key material).
        source: rustls::pki_types::pem::Error,
    },
    /// The client certificate and key do not go together, or the key is unusable.
    #[error("client_cert/client_key: {0}")]
    ClientAuth(#[source] rustls::Error),
    /// rustls refused the configuration (protocol versions).
    #[error("TLS setup failed: {0}")]
    Setup(#[source] rustls::Error),
    /// rustls refused to build the certificate verifier (an empty root store).
    #[error("TLS setup failed: {0}")]
    Verifier(#[source] rustls::client::VerifierBuilderError),
}

impl From<TlsError> for ProviderError {
    fn from(e: TlsError) -> ProviderError {
        ProviderError::invalid_input(e.to_string())
    }
}

/// Which roots to trust.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Roots<'a> {
    /// The certificates of a PEM file, and nothing else.
    CaFile {
        /// The file.
        path: &'a Path,
        /// The setting that names it, for messages (`sslrootcert`, `tls_ca`, `ca_cert`).
        setting: &'a str,
    },
    /// The platform's roots plus Mozilla's ([`system_roots`]).
    System,
    /// None at all: for clients that never make a TLS connection (loading the platform's
    /// roots takes a good part of a second).
    Empty,
}

impl<'a> Roots<'a> {
    /// The CA file named by `setting` if one is configured, else the system roots.
    pub fn ca_file_or_system(path: Option<&'a Path>, setting: &'a str) -> Roots<'a> {
        match path {
            Some(path) => Roots::CaFile { path, setting },
            None => Roots::System,
        }
    }

    /// The root store.
    pub fn load(self) -> Result<RootCertStore, TlsError> {
        match self {
            Roots::CaFile { path, setting } => load_roots(path, setting),
            Roots::System => Ok(system_roots().clone()),
            Roots::Empty => Ok(RootCertStore::empty()),
        }
    }
}

/// How the server's certificate is checked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verify {
    /// The chain must lead to a trusted root and name the host (the default everywhere;
    /// libpq's `verify-full`).
    Full,
    /// The chain must lead to a trusted root; the host name is not checked (libpq's
    /// `verify-ca`).
    ChainOnly,
    /// No certificate check, encryption only (libpq's `require` without a root file).
    /// The handshake signatures are still verified. Roots are not loaded.
    EncryptOnly,
}

/// A client certificate and its key (PEM files), for servers that ask for one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ClientIdentity<'a> {
    /// The certificate chain (`client_cert`).
    pub cert: &'a Path,
    /// The private key (`client_key`).
    pub key: &'a Path,
}

/// Everything a client configuration is built from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ClientTls<'a> {
    /// The roots to trust (ignored with [`Verify::EncryptOnly`]).
    pub roots: Roots<'a>,
    /// How the server's certificate is checked.
    pub verify: Verify,
    /// The client certificate, if any.
    pub identity: Option<ClientIdentity<'a>>,
}

impl<'a> ClientTls<'a> {
    /// Full verification against `roots`, no client certificate.
    pub fn verified(roots: Roots<'a>) -> ClientTls<'a> {
        ClientTls {
            roots,
            verify: Verify::Full,
            identity: None,
        }
    }

    /// The rustls client configuration (ring, safe default protocol versions).
    pub fn build(&self) -> Result<ClientConfig, TlsError> {
        let provider = crypto_provider();
        let builder = ClientConfig::builder_with_provider(provider.clone())
            .with_safe_default_protocol_versions()
            .map_err(TlsError::Setup)?;
        let builder = match self.verify {
            Verify::Full => builder.with_root_certificates(self.roots.load()?),
            Verify::ChainOnly => {
                let verifier: Arc<dyn ServerCertVerifier> =
                    Arc::new(ChainOnly(webpki_verifier(self.roots.load()?, &provider)?));
                builder.dangerous().with_custom_certificate_verifier(verifier)
            }
            Verify::EncryptOnly => builder
                .dangerous()
                .with_custom_certificate_verifier(Arc::new(NoCertificateCheck(provider))),
        };
        match self.identity {
            None => Ok(builder.with_no_client_auth()),
            Some(identity) => {
                let certs = read_certificates(identity.cert, "client_cert")?;
                if certs.is_empty() {
                    return Err(TlsError::NoClientCertificate {
                        path: identity.cert.to_owned(),
                    });
                }
                let key = PrivateKeyDer::from_pem_file(identity.key).map_err(|source| TlsError::ClientKey {
                    path: identity.key.to_owned(),
                    source,
                })?;
                builder.with_client_auth_cert(certs, key).map_err(TlsError::ClientAuth)
            }
        }
    }
}

/// ring's crypto provider.
pub fn crypto_provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// Installs ring as the process-wide default provider, for client libraries that build
/// their own rustls configuration and need one when several providers are compiled in.
/// Harmless when one is installed already.
pub fn install_default_provider() {
    static ONCE: OnceLock<()> = OnceLock::new();
    ONCE.get_or_init(|| {
        let _ = rustls::crypto::ring::default_provider().install_default();
    });
}

/// The certificates of a PEM file that rustls can use as roots; an error if there is
/// none. `setting` names the file in messages.
pub fn load_ca_certificates(path: &Path, setting: &str) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let usable: Vec<_> = read_certificates(path, setting)?
        .into_iter()
        .filter(|cert| RootCertStore::empty().add(cert.clone()).is_ok())
        .collect();
    if usable.is_empty() {
        return Err(TlsError::NoUsableCertificate {
            setting: setting.to_owned(),
            path: path.to_owned(),
        });
    }
    Ok(usable)
}

/// A root store holding exactly the usable certificates of a PEM file; an error if
/// there is none.
pub fn load_roots(path: &Path, setting: &str) -> Result<RootCertStore, TlsError> {
    let mut roots = RootCertStore::empty();
    roots.add_parsable_certificates(load_ca_certificates(path, setting)?);
    Ok(roots)
}

/// The platform's trusted certificates that rustls can use, loaded once per process
/// (for client libraries that take certificates rather than a root store).
pub fn native_certificates() -> &'static [CertificateDer<'static>] {
    static CERTS: OnceLock<Vec<CertificateDer<'static>>> = OnceLock::new();
    CERTS.get_or_init(|| {
        rustls_native_certs::load_native_certs()
            .certs
            .into_iter()
            .filter(|cert| RootCertStore::empty().add(cert.clone()).is_ok())
            .collect()
    })
}

/// The platform's trusted roots plus Mozilla's, loaded once per process.
pub fn system_roots() -> &'static RootCertStore {
    static ROOTS: OnceLock<RootCertStore> = OnceLock::new();
    ROOTS.get_or_init(|| {
        let mut roots = RootCertStore {
            roots: webpki_roots::TLS_SERVER_ROOTS.to_vec(),
        };
        roots.add_parsable_certificates(native_certificates().iter().cloned());
        roots
    })
}

/// The rustls error behind a client library's error, if the failure was TLS's (an
/// untrusted certificate, a failed handshake): searched along the `source()` chain and
/// inside I/O errors, where tokio-rustls puts handshake failures. For classifying by
/// type rather than by message text.
pub fn rustls_error<'a>(e: &'a (dyn std::error::Error + 'static)) -> Option<&'a rustls::Error> {
    let mut next = Some(e);
    while let Some(e) = next {
        if let Some(tls) = inside_io_errors(e) {
            return Some(tls);
        }
        next = e.source();
    }
    None
}

/// `e` as a rustls error, or the rustls error wrapped in it by (possibly nested) I/O
/// errors: `io::Error::source` skips the wrapped error itself, so it is not on the chain.
fn inside_io_errors<'a>(mut e: &'a (dyn std::error::Error + 'static)) -> Option<&'a rustls::Error> {
    loop {
        if let Some(tls) = e.downcast_ref::<rustls::Error>() {
            return Some(tls);
        }
        e = e.downcast_ref::<std::io::Error>()?.get_ref()?;
    }
}

fn read_certificates(path: &Path, setting: &str) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    CertificateDer::pem_file_iter(path)
        .and_then(|iter| iter.collect::<Result<Vec<_>, _>>())
        .map_err(|source| TlsError::Read {
            setting: setting.to_owned(),
            path: path.to_owned(),
            source,
        })
}

fn webpki_verifier(
    roots: RootCertStore,
    provider: &Arc<CryptoProvider>,
) -> Result<Arc<WebPkiServerVerifier>, TlsError> {
    WebPkiServerVerifier::builder_with_provider(Arc::new(roots), provider.clone())
        .build()
        .map_err(TlsError::Verifier)
}

#[cfg(test)]
mod tests {
    use super::*;
    use rekey_testbed::{KeyType, TestCa};
    use rustls::pki_types::ServerName;
    use rustls::{ClientConnection, ServerConfig, ServerConnection};

    struct Pki {
        _dir: tempfile::TempDir,
        ca: TestCa,
        other_ca: TestCa,
        server: ServerConfig,
    }

    fn pki() -> Pki {
        let dir = tempfile::tempdir().unwrap();
        let ca = TestCa::new(dir.path(), "ca", KeyType::EcP256).unwrap();
        let other_ca = TestCa::new(dir.path(), "other-ca", KeyType::EcP256).unwrap();
        let pair = ca.issue_server("server").unwrap();
        let certs = CertificateDer::pem_file_iter(&pair.cert)
            .unwrap()
            .collect::<Result<Vec<_>, _>>()
            .unwrap();
        let key = PrivateKeyDer::from_pem_file(&pair.key).unwrap();
        let server = ServerConfig::builder_with_provider(crypto_provider())
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_no_client_auth()
            .with_single_cert(certs, key)
            .unwrap();
        Pki {
            _dir: dir,
            ca,
            other_ca,
            server,
        }
    }

    /// A full in-memory handshake with the server certificate (for 127.0.0.1 and
    /// localhost), connecting to `name`.
    fn handshake(client: ClientConfig, server: &ServerConfig, name: &str) -> Result<(), rustls::Error> {
        let name = ServerName::try_from(name.to_owned()).unwrap();
        let mut client = ClientConnection::new(Arc::new(client), name)?;
        let mut server = ServerConnection::new(Arc::new(server.clone()))?;
        for _ in 0..10 {
            let mut buf = Vec::new();
            while client.wants_write() {
                client.write_tls(&mut buf).unwrap();
            }
            server.read_tls(&mut buf.as_slice()).unwrap();
            server.process_new_packets()?;
            let mut buf = Vec::new();
            while server.wants_write() {
                server.write_tls(&mut buf).unwrap();
            }
            client.read_tls(&mut buf.as_slice()).unwrap();
            client.process_new_packets()?;
            if !client.is_handshaking() && !server.is_handshaking() {
                return Ok(());
            }
        }
        panic!("the handshake did not finish");
    }

    fn config(roots: Roots<'_>, verify: Verify) -> ClientConfig {
        ClientTls {
            roots,
            verify,
            identity: None,
        }
        .build()
        .unwrap()
    }

    #[test]
    fn full_verification_needs_the_ca_and_the_name() {
        let pki = pki();
        let ca = pki.ca.cert();
        let other = pki.other_ca.cert();
        let trusted = Roots::CaFile {
            path: &ca,
            setting: "tls_ca",
        };
        let untrusted = Roots::CaFile {
            path: &other,
            setting: "tls_ca",
        };
        handshake(config(trusted, Verify::Full), &pki.server, "127.0.0.1").unwrap();
        handshake(config(trusted, Verify::Full), &pki.server, "localhost").unwrap();
        let e = handshake(config(trusted, Verify::Full), &pki.server, "db.example").unwrap_err();
        assert!(e.to_string().contains("not valid for name"), "{e}");
        let e = handshake(config(untrusted, Verify::Full), &pki.server, "127.0.0.1").unwrap_err();
        assert!(e.to_string().contains("UnknownIssuer"), "{e}");
        // The test CA is in no system store.
        let e = handshake(config(Roots::System, Verify::Full), &pki.server, "127.0.0.1").unwrap_err();
        assert!(e.to_string().contains("UnknownIssuer"), "{e}");
    }

    #[test]
    fn chain_only_ignores_the_name_but_not_the_issuer() {
        let pki = pki();
        let ca = pki.ca.cert();
        let other = pki.other_ca.cert();
        let roots = |path| Roots::CaFile {
            path,
            setting: "sslrootcert",
        };
        handshake(config(roots(&ca), Verify::ChainOnly), &pki.server, "db.example").unwrap();
        let e = handshake(config(roots(&other), Verify::ChainOnly), &pki.server, "127.0.0.1").unwrap_err();
        assert!(e.to_string().contains("UnknownIssuer"), "{e}");
    }

    #[test]
    fn encrypt_only_accepts_any_certificate() {
        let pki = pki();
        handshake(config(Roots::Empty, Verify::EncryptOnly), &pki.server, "db.example").unwrap();
    }

    #[test]
    fn ca_files_without_a_usable_certificate_are_refused() {
        let pki = pki();
        let dir = tempfile::tempdir().unwrap();
        let missing = dir.path().join("missing.pem");
        let e = load_roots(&missing, "ca_cert").unwrap_err();
        assert!(matches!(e, TlsError::Read { .. }), "{e:?}");
        assert!(
            e.to_string().starts_with(&format!("ca_cert {}: ", missing.display())),
            "{e}"
        );
        let empty = dir.path().join("empty.pem");
        std::fs::write(&empty, "not a certificate\n").unwrap();
        let e = load_roots(&empty, "tls_ca").unwrap_err();
        assert_eq!(
            e.to_string(),
            format!("tls_ca {}: no usable certificate in the file", empty.display())
        );
        let provider_error = ProviderError::from(e);
        assert_eq!(provider_error.kind(), rekey_api::ErrorKind::InvalidInput);
        assert_eq!(load_ca_certificates(&pki.ca.cert(), "tls_ca").unwrap().len(), 1);
    }

    #[test]
    fn client_identity_is_checked_when_built() {
        let pki = pki();
        let ca = pki.ca.cert();
        let client = pki.ca.issue_client("client").unwrap();
        let roots = Roots::CaFile {
            path: &ca,
            setting: "ca_cert",
        };
        let with = |cert, key| ClientTls {
            roots,
            verify: Verify::Full,
            identity: Some(ClientIdentity { cert, key }),
        };
        let config = with(&client.cert, &client.key).build().unwrap();
        assert!(config.client_auth_cert_resolver.has_certs());
        let e = with(&client.key, &client.key).build().unwrap_err();
        assert!(matches!(e, TlsError::NoClientCertificate { .. }), "{e:?}");
        let e = with(&client.cert, &client.cert).build().unwrap_err();
        assert!(matches!(e, TlsError::ClientKey { .. }), "{e:?}");
        let other = pki.ca.issue_client("other").unwrap();
        let e = with(&client.cert, &other.key).build().unwrap_err();
        assert!(matches!(e, TlsError::ClientAuth(_)), "{e:?}");
    }

    #[test]
    fn rustls_errors_are_found_by_type() {
        #[derive(Debug)]
        struct Wrapper(std::io::Error);
        impl std::fmt::Display for Wrapper {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("request failed")
            }
        }
        impl std::error::Error for Wrapper {
            fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
                Some(&self.0)
            }
        }
        let tls = rustls::Error::InvalidCertificate(rustls::CertificateError::UnknownIssuer);
        let wrapped = Wrapper(std::io::Error::new(std::io::ErrorKind::InvalidData, tls.clone()));
        assert_eq!(rustls_error(&wrapped), Some(&tls));
        assert_eq!(rustls_error(&tls), Some(&tls));
        // hyper-rustls wraps tokio-rustls's I/O error in another one.
        let nested = Wrapper(std::io::Error::other(std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            tls.clone(),
        )));
        assert_eq!(rustls_error(&nested), Some(&tls));
        let plain = Wrapper(std::io::Error::new(std::io::ErrorKind::ConnectionRefused, "refused"));
        assert_eq!(rustls_error(&plain), None);
    }

    #[test]
    fn system_roots_hold_mozillas() {
        assert!(system_roots().len() >= webpki_roots::TLS_SERVER_ROOTS.len());
    }
}
