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

/// One client per CA file (`None`: the system's and Mozilla's roots).
type Clients = Vec<(Option<PathBuf>, reqwest::Client)>;

/// The HTTP provider of one run. Every target with the same `ca_cert` shares one client,
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
        let client = self.client(config.ca_cert.clone())?;
        Ok(HttpTarget::new(credential, Arc::new(plan), client, strategy))
    }

    fn client(&self, ca_cert: Option<PathBuf>) -> ProviderResult<reqwest::Client> {
        let mut clients = self.clients.lock().unwrap_or_else(|p| p.into_inner());
        if let Some((_, c)) = clients.iter().find(|(k, _)| *k == ca_cert) {
            return Ok(c.clone());
        }
        let client = build_client(ca_cert.as_deref())?;
        clients.push((ca_cert, client.clone()));
        Ok(client)
    }
}
