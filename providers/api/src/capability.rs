//! What a provider declares it can do, so the engine and `plan` can check before acting.

use crate::strategy::Strategy;

/// Declared abilities of a target.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TargetCapabilities {
    /// Strategies this target implements.
    pub strategies: Vec<Strategy>,
    /// The strategy this target was configured with.
    pub strategy: Strategy,
    /// Can end the sessions that use an old secret (incident mode).
    pub terminate_sessions: bool,
    /// The target creates the secret itself (IAM keys); the generated password is unused.
    pub mints_own_secret: bool,
    /// Under the configured strategy, applying the new secret already invalidates the
    /// old one (single-user password change), so revoke has nothing left to remove and
    /// a grace period cannot be honoured.
    pub apply_invalidates_previous: bool,
    /// [`crate::Target::retire`] does something (deactivates an IAM key): the engine
    /// calls it when a grace period defers the revocation, and never otherwise.
    pub retires_previous: bool,
}

/// Declared abilities of a store.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoreCapabilities {
    /// Writes are conditional on the state read (compare-and-set), so two runners on
    /// different machines cannot both promote.
    pub compare_and_set: bool,
    /// [`crate::Store::check_writable`] learns nothing that a read of the key does not
    /// (Secrets Manager: a `DescribeSecret`; there is no dry write), so `rotate`, which
    /// reads the key anyway, skips it and saves the call. Otherwise `rotate` runs it
    /// before the target is touched: a store that would refuse the promote (a Vault
    /// token that may not write the application's key) fails the run there.
    pub write_check_is_a_read: bool,
}
