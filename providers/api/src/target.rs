//! The target contract: the system where a secret is checked.

use crate::capability::TargetCapabilities;
use crate::document::SecretDoc;
use crate::error::ProviderResult;
use crate::secret::Secret;
use async_trait::async_trait;

/// How to revoke.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RevokeOptions {
    /// Also end the sessions that authenticated with the old secret (incident mode or
    /// `terminate_sessions = true`).
    pub terminate_sessions: bool,
}

/// What a revoke did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RevokeReport {
    /// Sessions ended because they used the old secret.
    pub sessions_terminated: u64,
    /// Other facts worth recording, one line each, never a secret (`2 other passwords
    /// removed`, `deny policy rekey-revoke-sessions-… attached`, who held the sessions).
    pub notes: Vec<String>,
}

/// A target: one credential on one system (a PostgreSQL role, an IAM user's key).
///
/// The engine drives it through the protocol: `prepare` the new document, `apply` it,
/// `verify` it, `revoke` the old one, then prove the old one dead with `login`, which
/// must fail with [`crate::ErrorKind::AuthRejected`]. Every step is idempotent: the
/// engine re-runs steps after a crash.
#[async_trait]
pub trait Target: Send + Sync {
    /// What the target declares it can do under its configuration.
    fn capabilities(&self) -> &TargetCapabilities;

    /// A one-line description without secrets, such as
    /// `postgres role "orders_app" on 127.0.0.1:5432/orders`.
    fn describe(&self) -> String;

    /// Fills the non-secret fields (`engine`, `host`, `port`, `username`, `dbname`...)
    /// missing from a document, such as one imported from a bare password.
    fn complete(&self, doc: &mut SecretDoc);

    /// Read-only checks that a rotation could succeed (connects, checks the user exists
    /// and the admin may change it). Returns one line per fact checked.
    async fn preflight(&self, current: Option<&SecretDoc>) -> ProviderResult<Vec<String>>;

    /// The read-only checks a rotation runs before it changes anything: the ones whose
    /// failure would make apply fail (reachable, the user exists, the admin may change
    /// it). Cheaper than [`Target::preflight`], which `plan` uses to report everything;
    /// by default the same.
    async fn precheck(&self, current: Option<&SecretDoc>) -> ProviderResult<()> {
        self.preflight(current).await.map(|_| ())
    }

    /// Read-only checks of what incident mode needs beyond rotation: ending the sessions
    /// that use the old secret (PostgreSQL `pg_signal_backend` or membership in the role,
    /// MySQL `CONNECTION_ADMIN`/`SUPER`, Redis `CLIENT KILL` allowed). Returns one line
    /// per fact checked; [`crate::ErrorKind::PermissionDenied`] names what will not be
    /// possible, so the responder knows before anything changes (the leaked secret is
    /// still replaced and killed). By default: what the capabilities declare.
    async fn incident_preflight(&self) -> ProviderResult<Vec<String>> {
        if self.capabilities().terminate_sessions {
            Ok(vec![format!("{} can end the old secret's sessions", self.describe())])
        } else {
            Ok(vec![format!(
                "{} cannot end sessions: sessions opened with the old secret live until they close",
                self.describe()
            )])
        }
    }

    /// For targets that mint their own secrets: removes the secrets of this credential
    /// that no stored version holds and that were created after `since` (the newest
    /// stored version's creation). A crash between minting and staging, or a mint whose
    /// answer was lost, leaves such a secret alive and stored nowhere; the next rotation
    /// sweeps it before minting again. Returns the ids removed. By default nothing.
    async fn sweep_unstored(&self, stored: &[&SecretDoc], since: crate::Timestamp) -> ProviderResult<Vec<String>> {
        let _ = (stored, since);
        Ok(Vec::new())
    }

    /// The document the rotation will install: `current` with the new `password` (and,
    /// for alternating users, the idle user's name). A target that mints its own secret
    /// creates it here and ignores `password`; the engine stores the result at once.
    async fn prepare(&self, current: Option<&SecretDoc>, password: Secret) -> ProviderResult<SecretDoc>;

    /// Installs `new` on the target. `current`, when known, may be used to log in when
    /// no admin is configured. Idempotent.
    async fn apply(&self, new: &SecretDoc, current: Option<&SecretDoc>) -> ProviderResult<()>;

    /// A fresh login with `doc`'s secret, nothing more. A refused login must be
    /// [`crate::ErrorKind::AuthRejected`], never a generic error.
    async fn login(&self, doc: &SecretDoc) -> ProviderResult<()>;

    /// [`Target::login`] plus the configured check (query or request).
    async fn verify(&self, doc: &SecretDoc) -> ProviderResult<()> {
        self.login(doc).await
    }

    /// Called right after promotion when revocation is deferred by a grace period: a
    /// reversible first step (such as deactivating an IAM key) that leaves `old`
    /// restorable until [`Target::revoke`] runs. Returns what it did, or `None` when the
    /// target has nothing to do before revoke (the default).
    async fn retire(&self, old: &SecretDoc, new: &SecretDoc) -> ProviderResult<Option<String>> {
        let _ = (old, new);
        Ok(None)
    }

    /// Removes `old` from the target now that `new` is current, ending its sessions when
    /// asked. Idempotent. Targets whose apply already invalidated `old` only end sessions.
    async fn revoke(&self, old: &SecretDoc, new: &SecretDoc, options: RevokeOptions) -> ProviderResult<RevokeReport>;
}
