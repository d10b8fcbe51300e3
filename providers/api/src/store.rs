//! The store contract: where secrets are kept, with versions carrying stages.

use crate::capability::StoreCapabilities;
use crate::document::SecretDoc;
use crate::error::ProviderResult;
use async_trait::async_trait;
use std::fmt;
use std::time::SystemTime;

/// A point in time; stores persist it as RFC 3339 UTC.
pub type Timestamp = SystemTime;

/// The role a version plays for a key. A version may hold none (history).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Stage {
    /// What applications read and the target accepts.
    Current,
    /// Durable before the target is touched; promoted once verified.
    Pending,
    /// The secret current replaced; revoked now or after a grace period.
    Previous,
}

impl Stage {
    /// The command-line and JSON spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            Stage::Current => "current",
            Stage::Pending => "pending",
            Stage::Previous => "previous",
        }
    }

    /// Parses the command-line spelling.
    pub fn parse(text: &str) -> Option<Stage> {
        match text {
            "current" => Some(Stage::Current),
            "pending" => Some(Stage::Pending),
            "previous" => Some(Stage::Previous),
            _ => None,
        }
    }
}

impl fmt::Display for Stage {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One stored version of a key.
#[derive(Debug, Clone)]
pub struct StoredVersion {
    /// Version id: the rotation's run id (AWS's ClientRequestToken), so staging the
    /// same rotation twice is recognised as the same version.
    pub id: String,
    /// Stages this version holds now.
    pub stages: Vec<Stage>,
    /// When the version was written.
    pub created: Timestamp,
    /// When the engine proved this version dead at the target, if it has.
    pub revoked: Option<Timestamp>,
    /// The secret itself.
    pub doc: SecretDoc,
}

impl StoredVersion {
    /// Whether the version holds `stage`.
    pub fn has(&self, stage: Stage) -> bool {
        self.stages.contains(&stage)
    }
}

/// Every version of one key, as read in one consistent snapshot.
#[derive(Debug, Clone, Default)]
pub struct KeyState {
    /// Versions, oldest first.
    pub versions: Vec<StoredVersion>,
}

impl KeyState {
    /// The version holding `stage`, if any.
    pub fn stage(&self, stage: Stage) -> Option<&StoredVersion> {
        self.versions.iter().find(|v| v.has(stage))
    }
    /// The current version.
    pub fn current(&self) -> Option<&StoredVersion> {
        self.stage(Stage::Current)
    }
    /// The pending version: an unfinished rotation.
    pub fn pending(&self) -> Option<&StoredVersion> {
        self.stage(Stage::Pending)
    }
    /// The previous version.
    pub fn previous(&self) -> Option<&StoredVersion> {
        self.stage(Stage::Previous)
    }
    /// The version with this id.
    pub fn version(&self, id: &str) -> Option<&StoredVersion> {
        self.versions.iter().find(|v| v.id == id)
    }
}

/// A secret store. Every write is durable when it returns, and conditional on the
/// state it expects, so a concurrent writer is detected ([`crate::ErrorKind::Conflict`])
/// and never silently overwritten. Every write is idempotent: repeating a call that
/// already took effect succeeds without a second change.
#[async_trait]
pub trait Store: Send + Sync {
    /// What the store declares it can do.
    fn capabilities(&self) -> StoreCapabilities;

    /// A one-line description without secrets, such as `file /etc/rekey/secrets.json`.
    fn describe(&self) -> String;

    /// Every version of `key`; [`crate::ErrorKind::NotFound`] when the key does not exist.
    async fn read(&self, key: &str) -> ProviderResult<KeyState>;

    /// What a rotation of `key` needs: [`Store::read`], except that a store may leave out
    /// versions already marked revoked that hold no stage but previous (a rotation never
    /// uses their values; `verify`, `status` and `leaked` use [`Store::read`]). Stores
    /// that pay a request per value read (Secrets Manager) override it to save that
    /// request; by default it is [`Store::read`].
    async fn read_for_rotation(&self, key: &str) -> ProviderResult<KeyState> {
        self.read(key).await
    }

    /// Every version of each of `keys`, in order; a missing key is
    /// [`crate::ErrorKind::NotFound`] in its slot. Stores that can read many keys at once
    /// (one file, one listing) override this; by default one [`Store::read`] per key.
    async fn read_many(&self, keys: &[String]) -> Vec<ProviderResult<KeyState>> {
        let mut out = Vec::with_capacity(keys.len());
        for key in keys {
            out.push(self.read(key).await);
        }
        out
    }

    /// Read-only check that this process could write `key` (preflight).
    async fn check_writable(&self, key: &str) -> ProviderResult<()>;

    /// Facts about `key` that `plan` shows besides its stages, one line each (such as
    /// store-side labels a rotation moves along). Read-only; none by default.
    async fn plan_notes(&self, key: &str) -> ProviderResult<Vec<String>> {
        let _ = key;
        Ok(Vec::new())
    }

    /// Makes `doc` the current version of `key` outside a rotation (import). The version
    /// it replaces keeps no stage. Idempotent for the same `version_id`; a conflict when a
    /// rotation is pending.
    async fn put_current(&self, key: &str, version_id: &str, doc: &SecretDoc) -> ProviderResult<()>;

    /// Writes `doc` as the pending version `version_id`. Idempotent for the same id;
    /// a conflict when another version is pending.
    async fn stage_pending(&self, key: &str, version_id: &str, doc: &SecretDoc) -> ProviderResult<()>;

    /// Moves `current` to `version_id` (which must be pending, or already current):
    /// the old current becomes previous and the old previous keeps no stage. With
    /// `previous_revoked`, the old current is recorded as revoked at the same instant
    /// (for targets where apply already invalidated it). Idempotent; a conflict when
    /// `version_id` is neither pending nor current.
    async fn promote(&self, key: &str, version_id: &str, previous_revoked: bool) -> ProviderResult<()>;

    /// Records that version `version_id` was proved dead at the target. Idempotent.
    async fn mark_revoked(&self, key: &str, version_id: &str) -> ProviderResult<()>;

    /// Takes the pending stage away from version `version_id` (`rotate --abandon-pending`):
    /// the version stays in the key's history with no stage, so the audit trail keeps it,
    /// and the key has no pending version afterwards. Idempotent: a version that is no
    /// longer pending succeeds without a change; [`crate::ErrorKind::Conflict`] when a
    /// *different* version is pending; [`crate::ErrorKind::NotFound`] when the key does
    /// not exist.
    async fn discard_pending(&self, key: &str, version_id: &str) -> ProviderResult<()> {
        let _ = (key, version_id);
        Err(crate::ProviderError::unsupported(format!(
            "{}: discarding a pending version is not implemented",
            self.describe()
        )))
    }

    /// `rotate --abandon-pending` when [`Store::read`] refuses `key` because of its
    /// pending version (one no rekey run can resume, such as a value that is not a JSON
    /// object): takes the pending stage away from it as [`Store::discard_pending`] does
    /// and returns its id; `Ok(None)` when no such version is pending. Stores whose reads
    /// never refuse a pending version keep this default.
    async fn discard_unreadable_pending(&self, key: &str) -> ProviderResult<Option<String>> {
        let _ = key;
        Ok(None)
    }
}
