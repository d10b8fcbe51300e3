//! [`UnavailablePlugin`]: the target of a credential whose plugin could not describe
//! itself when the run started (it cannot be run, hangs, answers garbage). Every
//! operation fails with that error, so one broken plugin fails only its own credentials,
//! before anything of theirs changes, and a run over many credentials goes on.

use async_trait::async_trait;
use rekey_api::{
    ProviderError, ProviderResult, RevokeOptions, RevokeReport, Secret, SecretDoc, Strategy, Target, TargetCapabilities,
};

/// A target whose plugin did not answer `describe`.
#[derive(Debug)]
pub struct UnavailablePlugin {
    error: ProviderError,
    label: String,
    capabilities: TargetCapabilities,
}

impl UnavailablePlugin {
    /// A target failing every operation with `error` (the plugin's `describe` failure);
    /// `label` names the plugin.
    pub(crate) fn new(error: ProviderError, label: String, strategy: Strategy) -> Self {
        UnavailablePlugin {
            error,
            label,
            capabilities: TargetCapabilities {
                strategies: vec![strategy],
                strategy,
                terminate_sessions: false,
                mints_own_secret: false,
                apply_invalidates_previous: strategy == Strategy::Single,
                retires_previous: false,
            },
        }
    }

    fn error(&self) -> ProviderError {
        self.error.clone()
    }
}

#[async_trait]
impl Target for UnavailablePlugin {
    fn capabilities(&self) -> &TargetCapabilities {
        &self.capabilities
    }

    fn describe(&self) -> String {
        format!("{} (did not describe itself)", self.label)
    }

    fn complete(&self, _doc: &mut SecretDoc) {}

    async fn preflight(&self, _current: Option<&SecretDoc>) -> ProviderResult<Vec<String>> {
        Err(self.error())
    }

    async fn incident_preflight(&self) -> ProviderResult<Vec<String>> {
        Err(self.error())
    }

    async fn prepare(&self, _current: Option<&SecretDoc>, _password: Secret) -> ProviderResult<SecretDoc> {
        Err(self.error())
    }

    async fn apply(&self, _new: &SecretDoc, _current: Option<&SecretDoc>) -> ProviderResult<()> {
        Err(self.error())
    }

    async fn login(&self, _doc: &SecretDoc) -> ProviderResult<()> {
        Err(self.error())
    }

    async fn revoke(
        &self,
        _old: &SecretDoc,
        _new: &SecretDoc,
        _options: RevokeOptions,
    ) -> ProviderResult<RevokeReport> {
        Err(self.error())
    }
}
