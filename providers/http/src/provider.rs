//! [`HttpProvider`]: builds targets and shares HTTP clients (and their connection pools)
//! among them.

use crate::client::build_client;
use crate::config::HttpTargetConfig;
use crate::plan::Plan;
use crate::target::HttpTarget;
use rekey_api::{ProviderResult, Strategy, Target};
use std::fmt;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

/// One client per CA file (`None`: the system's and Mozilla's roots) and TLS use.
type Clients = Vec<((Option<PathBuf>, bool), reqwest::Client)>;

/// The HTTP provider of one run. Every target with the same `ca_cert` (and scheme) shares one client,
/// so parallel rotations against one service reuse its keep-alive connections.
#[derive(Clone, Default)]
pub struct HttpProvider {
    clients: Arc<Mutex<Clients>>,
}

impl fmt::Debug for HttpProvider {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let n = self.clients.lock().map(|c| c.len()).unwrap_or(0);
        f.debug_struct("HttpProvider").field("clients", &n).finish()
    }
}

impl HttpProvider {
    /// A provider with no client built yet.
    pub fn new() -> Self {
        Self::default()
    }

    /// The target of credential `credential` (the `{{credential}}` placeholder) under
    /// `strategy`: `dual` needs `create` (or `apply`) and `revoke`, `single` needs
    /// `apply`. The configuration is checked here; nothing is sent.
    pub fn target(
        &self,
        config: &HttpTargetConfig,
        credential: &str,
        strategy: Strategy,
    ) -> ProviderResult<Arc<dyn Target>> {
        Ok(Arc::new(self.http_target(config, credential, strategy)?))
    }

    /// [`HttpProvider::target`] returning the concrete type.
    pub fn http_target(
        &self,
        config: &HttpTargetConfig,
        credential: &str,
        strategy: Strategy,
    ) -> ProviderResult<HttpTarget> {
        let plan = Plan::compile(config, strategy)?;
        let tls = config
            .base_url
            .trim()
            .get(..8)
            .is_some_and(|s| s.eq_ignore_ascii_case("https://"));
        let client = self.client(config.ca_cert.clone(), tls)?;
        Ok(HttpTarget::new(credential, Arc::new(plan), client, strategy))
    }

    fn client(&self, ca_cert: Option<PathBuf>, tls: bool) -> ProviderResult<reqwest::Client> {
        let mut clients = self.clients.lock().unwrap_or_else(|p| p.into_inner());
        let key = (ca_cert, tls);
        if let Some((_, c)) = clients.iter().find(|(k, _)| *k == key) {
            return Ok(c.clone());
        }
        let client = build_client(key.0.as_deref(), tls)?;
        clients.push((key, client.clone()));
        Ok(client)
    }
}
