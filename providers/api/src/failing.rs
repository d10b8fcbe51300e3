//! [`FailingTarget`]: the target of a credential whose real target could not be set up
//! (its configuration uses an unset variable, its plugin did not describe itself). Every
//! operation fails with that one error, so the credential fails alone, before anything
//! of it changes, and a run over many credentials goes on with the others.

use crate::{
    ProviderError, ProviderResult, RevokeOptions, RevokeReport, Secret, SecretDoc, Strategy, Target, TargetCapabilities,
};
use async_trait::async_trait;

/// A target whose every operation fails with one error.
#[derive(Debug)]
pub struct FailingTarget {
    error: ProviderError,
    description: String,
    capabilities: TargetCapabilities,
}

impl FailingTarget {
    /// A target failing every operation with `error`; `description` says what it stands
    /// for; it claims `strategy` (and nothing else) so that the run reaches it.
    pub fn new(error: ProviderError, description: impl Into<String>, strategy: Strategy) -> Self {
        FailingTarget {
            error,
            description: description.into(),
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
impl Target for FailingTarget {
    fn capabilities(&self) -> &TargetCapabilities {
        &self.capabilities
    }

    fn describe(&self) -> String {
        self.description.clone()
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
    async fn every_operation_fails_with_the_error() {
        let t = FailingTarget::new(
            ProviderError::invalid_input("r.toml: credential `a`: environment variable `X` is not set"),
            "a target that is not configured",
            Strategy::Dual,
        );
        let doc = SecretDoc::default();
        let e = t.preflight(None).await.unwrap_err();
        assert_eq!(e.kind(), crate::ErrorKind::InvalidInput);
        assert!(e.message().contains("`X` is not set"), "{}", e.message());
        assert!(t.precheck(None).await.is_err());
        assert!(t.login(&doc).await.is_err());
        assert!(t.verify(&doc).await.is_err());
        assert!(t.apply(&doc, None).await.is_err());
        assert!(t.prepare(None, Secret::from("x")).await.is_err());
        assert!(t.revoke(&doc, &doc, RevokeOptions::default()).await.is_err());
        assert!(!t.capabilities().apply_invalidates_previous);
        assert_eq!(t.capabilities().strategies, vec![Strategy::Dual]);
    }
}
