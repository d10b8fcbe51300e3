//! TLS for connections, with rustls (ring), always verifying the certificate chain and
//! the host name (the roots are rekey-net's).

use rekey_api::ProviderResult;
use rekey_net::tls::{ClientTls, Roots};
use std::path::Path;
use std::sync::Arc;

/// A rustls client configuration trusting the CA file if given, else the platform's
/// roots plus Mozilla's.
pub(crate) fn client_config(ca: Option<&Path>) -> ProviderResult<Arc<rustls::ClientConfig>> {
    let config = ClientTls::verified(Roots::ca_file_or_system(ca, "tls_ca")).build()?;
    Ok(Arc::new(config))
}
