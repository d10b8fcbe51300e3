//! TLS for connections, with rustls (ring), always verifying the certificate chain and
//! the host name.

use rekey_api::{ProviderError, ProviderResult};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::CertificateDer;
use rustls::RootCertStore;
use std::path::Path;
use std::sync::{Arc, OnceLock};

/// A rustls client configuration trusting the CA file if given, else the platform's
/// roots plus Mozilla's.
pub(crate) fn client_config(ca: Option<&Path>) -> ProviderResult<Arc<rustls::ClientConfig>> {
    let roots = match ca {
        Some(path) => load_roots(path)?,
        None => system_roots(),
    };
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| ProviderError::invalid_input(format!("TLS setup failed: {e}")))?
        .with_root_certificates(roots)
        .with_no_client_auth();
    Ok(Arc::new(config))
}

fn load_roots(path: &Path) -> ProviderResult<RootCertStore> {
    let certs = CertificateDer::pem_file_iter(path)
        .and_then(|iter| iter.collect::<Result<Vec<_>, _>>())
        .map_err(|e| ProviderError::invalid_input(format!("tls_ca {}: {e}", path.display())))?;
    let mut roots = RootCertStore::empty();
    let (added, _ignored) = roots.add_parsable_certificates(certs);
    if added == 0 {
        return Err(ProviderError::invalid_input(format!(
            "tls_ca {}: no usable certificate in the file",
            path.display()
        )));
    }
    Ok(roots)
}

/// The platform's trusted roots plus Mozilla's (webpki-roots), so TLS works both where
/// the system store is managed and in minimal containers without one. Loaded once.
fn system_roots() -> RootCertStore {
    static ROOTS: OnceLock<RootCertStore> = OnceLock::new();
    ROOTS
        .get_or_init(|| {
            let mut roots = RootCertStore {
                roots: webpki_roots::TLS_SERVER_ROOTS.to_vec(),
            };
            roots.add_parsable_certificates(rustls_native_certs::load_native_certs().certs);
            roots
        })
        .clone()
}
