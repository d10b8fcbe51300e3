//! The target of a credential whose configuration uses an environment variable that is
//! not set ([`crate::config::Config::load_per_credential`]): every operation fails with
//! that error (kind *invalid input*), so a run over many credentials fails only this
//! one, before anything of it changes, and the others go on.

use async_trait::async_trait;
use rekey_api::{
    ProviderError, ProviderResult, RevokeOptions, RevokeReport, Secret, SecretDoc, Strategy, Target, TargetCapabilities,
};

/// A target that could not be configured.
#[derive(Debug)]
pub struct UnresolvedTarget {
    message: String,
    capabilities: TargetCapabilities,
}

impl UnresolvedTarget {
    /// A target whose every operation fails with `message` (the configuration error).
    pub fn new(message: impl Into<String>, strategy: Strategy) -> Self {
        UnresolvedTarget {
            message: message.into(),
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
        ProviderError::invalid_input(self.message.clone())
    }
}

#[async_trait]
impl Target for UnresolvedTarget {
    fn capabilities(&self) -> &TargetCapabilities {
        &self.capabilities
    }

    fn describe(&self) -> String {
        "a target that is not configured (an environment variable is not set)".to_owned()
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

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn every_operation_fails_with_the_configuration_error() {
        let t = UnresolvedTarget::new(
            "r.toml: credential `a`: environment variable `X` is not set",
            Strategy::Dual,
        );
        let doc = SecretDoc::default();
        let e = t.preflight(None).await.unwrap_err();
        assert_eq!(e.kind(), rekey_api::ErrorKind::InvalidInput);
        assert!(e.message().contains("`X` is not set"), "{}", e.message());
        assert!(t.precheck(None).await.is_err());
        assert!(t.login(&doc).await.is_err());
        assert!(t.apply(&doc, None).await.is_err());
        assert!(!t.capabilities().apply_invalidates_previous);
    }
}
