//! What the engine needs from the outside world: a store by name and a target per
//! credential. The engine knows only this trait and the `rekey-api` contract; the
//! composition root ([`crate::providers`]) implements it over the provider crates, and
//! the engine's tests implement it over `rekey_api::testing`'s in-memory doubles.

use crate::config::Credential;
use rekey_api::{ProviderResult, Store, Target};
use std::sync::Arc;

/// Resolves the stores and targets of one run. Implementations open each store once
/// and share connections (one admin connection per target host), so a run over many
/// credentials reuses them.
pub trait Backends: Send + Sync {
    /// The named store, opened on first use; an opening error is returned to every
    /// credential that uses the store.
    fn store(&self, name: &str) -> ProviderResult<Arc<dyn Store>>;

    /// The credential's target (no connection is made until a step needs one).
    fn target(&self, credential: &Credential) -> ProviderResult<Arc<dyn Target>>;

    /// The network endpoint (`host:port`) the credential's target connects to, when it
    /// has one: once it is unreachable for one credential, the run's other credentials
    /// on it fail at once instead of each waiting for its own timeout.
    fn endpoint(&self, credential: &Credential) -> Option<String> {
        let _ = credential;
        None
    }
}
