//! The target of a credential whose configuration uses an environment variable that is
//! not set ([`crate::config::Config::load_per_credential`]): every operation fails with
//! that error (kind *invalid input*), so a run over many credentials fails only this
//! one, before anything of it changes, and the others go on.

use rekey_api::{FailingTarget, ProviderError, Strategy};

/// A target that could not be configured: every operation fails with `message` (the
/// configuration error).
pub fn unresolved_target(message: impl Into<String>, strategy: Strategy) -> FailingTarget {
    FailingTarget::new(
        ProviderError::invalid_input(message),
        "a target that is not configured (an environment variable is not set)",
        strategy,
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use rekey_api::Target;

    #[tokio::test]
    async fn every_operation_fails_with_the_configuration_error() {
        let t = unresolved_target(
            "r.toml: credential `a`: environment variable `X` is not set",
            Strategy::Dual,
        );
        let e = t.preflight(None).await.unwrap_err();
        assert_eq!(e.kind(), rekey_api::ErrorKind::InvalidInput);
        assert!(e.message().contains("`X` is not set"), "{}", e.message());
        assert!(t.describe().contains("not configured"));
    }
}
