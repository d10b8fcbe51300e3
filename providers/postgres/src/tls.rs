//! TLS for connections, with rustls, following libpq's `sslmode` meanings (the roots
//! and verifiers are rekey-net's).

use crate::config::SslMode;
use rekey_api::ProviderResult;
use rekey_net::tls::{ClientTls, Roots, Verify};
use std::path::Path;
use tokio_postgres_rustls::MakeRustlsConnect;

/// The TLS side of a connection: the mode tokio-postgres negotiates and, unless TLS is
/// disabled, the rustls connector that checks the certificate as the mode says.
#[derive(Clone)]
pub(crate) struct TlsSetup {
    pub(crate) mode: SslMode,
    pub(crate) connector: Option<MakeRustlsConnect>,
}

impl TlsSetup {
    /// Builds the connector for `mode`, reading `rootcert` (PEM) if given:
    /// `verify-full` checks chain and host name (against the system roots without a
    /// file); `require`/`prefer` check the chain only with a file (libpq's `verify-ca`)
    /// and nothing without one, as libpq does.
    pub(crate) fn new(mode: SslMode, rootcert: Option<&Path>) -> ProviderResult<TlsSetup> {
        if mode == SslMode::Disable {
            return Ok(TlsSetup { mode, connector: None });
        }
        let roots = Roots::ca_file_or_system(rootcert, "sslrootcert");
        let verify = match (mode, rootcert) {
            (SslMode::VerifyFull, _) => Verify::Full,
            (_, Some(_)) => Verify::ChainOnly,
            (_, None) => Verify::EncryptOnly,
        };
        let config = ClientTls {
            roots,
            verify,
            identity: None,
        }
        .build()?;
        Ok(TlsSetup {
            mode,
            connector: Some(MakeRustlsConnect::new(config)),
        })
    }

    /// The tokio-postgres mode to negotiate.
    pub(crate) fn pg_mode(&self) -> tokio_postgres::config::SslMode {
        match self.mode {
            SslMode::Disable => tokio_postgres::config::SslMode::Disable,
            SslMode::Prefer => tokio_postgres::config::SslMode::Prefer,
            SslMode::Require | SslMode::VerifyFull => tokio_postgres::config::SslMode::Require,
        }
    }
}
