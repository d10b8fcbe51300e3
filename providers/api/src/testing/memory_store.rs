//! [`MemoryStore`]: a [`Store`] held in memory, with injectable faults.

use super::plan::{execute, lock, settle, Plan};
use super::{Clock, Crash, Fault, StoreOp};
use crate::capability::StoreCapabilities;
use crate::document::SecretDoc;
use crate::error::{ErrorKind, ProviderError, ProviderResult};
use crate::store::{KeyState, Stage, Store, StoredVersion};
use async_trait::async_trait;
use std::collections::BTreeMap;
use std::fmt;
use std::sync::{Arc, Mutex};

const WHO: &str = "memory store";

/// A [`Store`] held in memory, for tests. **Not for production**: nothing survives the
/// process. Clones share one state (keys, faults, call history, clock), so a clone is
/// "the same store reopened" or "a second handle on the same backend".
///
/// Every write is atomic (one lock), conditional and idempotent exactly as the [`Store`]
/// trait documents; it passes every rule of [`crate::conformance::store`]. Faults are
/// queued per [`StoreOp`] with [`MemoryStore::fault`]; [`MemoryStore::snapshot`] reads
/// the state without faults.
#[derive(Clone, Default)]
pub struct MemoryStore {
    state: Arc<Mutex<StoreState>>,
    plan: Arc<Mutex<Plan<StoreOp>>>,
    crash: Crash,
}

#[derive(Default)]
struct StoreState {
    keys: BTreeMap<String, Vec<StoredVersion>>,
    clock: Clock,
    current_read_only: bool,
}

impl MemoryStore {
    /// An empty store on the system clock, with its own [`Crash`] handle.
    pub fn new() -> Self {
        Self::default()
    }

    /// Uses `crash` as this store's crash signal (share one handle with the target).
    /// Call it before cloning: clones made earlier keep the old handle.
    pub fn with_crash(mut self, crash: Crash) -> Self {
        self.crash = crash;
        self
    }

    /// Takes `created` and `revoked` timestamps from `clock` (a [`super::ManualClock`], a
    /// [`Clock`], or an `Arc<dyn Fn() -> SystemTime + Send + Sync>`).
    pub fn with_clock(self, clock: impl Into<Clock>) -> Self {
        self.set_clock(clock);
        self
    }

    /// Like [`MemoryStore::with_clock`], for a store already shared.
    pub fn set_clock(&self, clock: impl Into<Clock>) {
        lock(&self.state).clock = clock.into();
    }

    /// While `true`, the value applications read may not be written: `check_writable`,
    /// `put_current` and `promote` fail with permission denied while `stage_pending` still
    /// works (a Vault token allowed rekey's versions document but not the application's
    /// key). Unlike a fault, it lasts until turned off.
    pub fn set_current_read_only(&self, read_only: bool) {
        lock(&self.state).current_read_only = read_only;
    }

    /// This store's crash signal.
    pub fn crash(&self) -> &Crash {
        &self.crash
    }

    /// Queues `fault` for the next call of `op` that has no fault queued before it
    /// (first in, first out; each fault fires once).
    pub fn fault(&self, op: StoreOp, fault: Fault) {
        lock(&self.plan).push(op, 0, fault);
    }

    /// Queues `fault` for a later call of `op`: after whatever is already queued for
    /// `op`, `skip` calls go through unharmed, then the next one gets `fault`.
    /// `fault_nth(op, 0, f)` is `fault(op, f)`.
    pub fn fault_nth(&self, op: StoreOp, skip: usize, fault: Fault) {
        lock(&self.plan).push(op, skip, fault);
    }

    /// Drops every queued fault (an outage set by [`MemoryStore::set_outage`] stays).
    pub fn clear_faults(&self) {
        lock(&self.plan).clear_faults();
    }

    /// How many queued faults have not fired yet.
    pub fn queued_faults(&self) -> usize {
        lock(&self.plan).queued()
    }

    /// While `Some(kind)`, every call (including `check_writable`) fails with `kind`,
    /// changes nothing and consumes no queued fault: a store that is down. `None` ends it.
    pub fn set_outage(&self, kind: Option<ErrorKind>) {
        lock(&self.plan).set_outage(kind);
    }

    /// The operations called so far, in order, faulted ones included (calls made while
    /// crashed are not: they never happened).
    pub fn calls(&self) -> Vec<StoreOp> {
        lock(&self.plan).calls()
    }

    /// Forgets the call history.
    pub fn clear_calls(&self) {
        lock(&self.plan).clear_calls();
    }

    /// Every version of `key` (`None` when it does not exist), read without faults,
    /// crash or call history.
    pub fn snapshot(&self, key: &str) -> Option<KeyState> {
        lock(&self.state).keys.get(key).map(|versions| KeyState {
            versions: versions.clone(),
        })
    }

    /// The keys that exist, sorted.
    pub fn keys(&self) -> Vec<String> {
        lock(&self.state).keys.keys().cloned().collect()
    }

    /// Replaces `key`'s state wholesale, without faults or checks (to set up a state a
    /// test needs, even an inconsistent one). An empty state removes the key.
    pub fn set_state(&self, key: &str, state: KeyState) {
        let mut guard = lock(&self.state);
        if state.versions.is_empty() {
            guard.keys.remove(key);
        } else {
            guard.keys.insert(key.to_owned(), state.versions);
        }
    }

    fn run<T>(
        &self,
        op: Option<StoreOp>,
        name: &str,
        effect: impl FnOnce(&mut StoreState) -> ProviderResult<T>,
    ) -> super::plan::Outcome<T> {
        execute(&self.crash, &self.plan, op, WHO, name, || {
            effect(&mut lock(&self.state))
        })
    }
}

impl fmt::Debug for MemoryStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MemoryStore")
            .field("keys", &self.keys())
            .field("crash", &self.crash)
            .finish_non_exhaustive()
    }
}

fn remove_stage(version: &mut StoredVersion, stage: Stage) {
    version.stages.retain(|s| *s != stage);
}

fn add_stage(version: &mut StoredVersion, stage: Stage) {
    if !version.has(stage) {
        version.stages.push(stage);
        version.stages.sort();
    }
}

fn describe_stages(version: &StoredVersion) -> String {
    if version.stages.is_empty() {
        "no stage".to_owned()
    } else {
        version.stages.iter().map(|s| s.as_str()).collect::<Vec<_>>().join(", ")
    }
}

impl StoreState {
    fn may_write_current(&self, key: &str) -> ProviderResult<()> {
        if self.current_read_only {
            return Err(ProviderError::permission_denied(format!(
                "{WHO}: may not write the current value of key {key:?}"
            )));
        }
        Ok(())
    }

    fn put_current(&mut self, key: &str, id: &str, doc: &SecretDoc) -> ProviderResult<()> {
        if let Some(versions) = self.keys.get(key) {
            if let Some(existing) = versions.iter().find(|v| v.id == id) {
                if existing.has(Stage::Current) && existing.doc == *doc {
                    return Ok(());
                }
                let what = if existing.has(Stage::Current) {
                    "is already current with a different value".to_owned()
                } else {
                    format!("already exists ({})", describe_stages(existing))
                };
                return Err(ProviderError::conflict(format!(
                    "{WHO}: key {key:?}: version {id:?} {what}; use a new version id"
                )));
            }
            if let Some(pending) = versions.iter().find(|v| v.has(Stage::Pending)) {
                return Err(ProviderError::conflict(format!(
                    "{WHO}: key {key:?} has a pending rotation (version {:?}); finish it before importing",
                    pending.id
                )));
            }
        }
        let created = self.clock.now();
        let versions = self.keys.entry(key.to_owned()).or_default();
        for v in versions.iter_mut() {
            remove_stage(v, Stage::Current);
        }
        versions.push(StoredVersion {
            id: id.to_owned(),
            stages: vec![Stage::Current],
            created,
            revoked: None,
            doc: doc.clone(),
        });
        Ok(())
    }

    fn stage_pending(&mut self, key: &str, id: &str, doc: &SecretDoc) -> ProviderResult<()> {
        if let Some(versions) = self.keys.get(key) {
            if let Some(existing) = versions.iter().find(|v| v.id == id) {
                if existing.has(Stage::Pending) && existing.doc == *doc {
                    return Ok(());
                }
                let what = if existing.has(Stage::Pending) {
                    "is already pending with a different value".to_owned()
                } else {
                    format!("already exists ({})", describe_stages(existing))
                };
                return Err(ProviderError::conflict(format!(
                    "{WHO}: key {key:?}: version {id:?} {what}; use a new version id"
                )));
            }
            if let Some(pending) = versions.iter().find(|v| v.has(Stage::Pending)) {
                return Err(ProviderError::conflict(format!(
                    "{WHO}: key {key:?} already has a pending version {:?}; another rotation is in progress",
                    pending.id
                )));
            }
        }
        let created = self.clock.now();
        self.keys.entry(key.to_owned()).or_default().push(StoredVersion {
            id: id.to_owned(),
            stages: vec![Stage::Pending],
            created,
            revoked: None,
            doc: doc.clone(),
        });
        Ok(())
    }

    fn promote(&mut self, key: &str, id: &str, previous_revoked: bool) -> ProviderResult<()> {
        let now = self.clock.now();
        let Some(versions) = self.keys.get_mut(key) else {
            return Err(ProviderError::conflict(format!(
                "{WHO}: key {key:?} does not exist; cannot promote version {id:?}"
            )));
        };
        let Some(index) = versions.iter().position(|v| v.id == id) else {
            return Err(ProviderError::conflict(format!(
                "{WHO}: key {key:?} has no version {id:?} to promote"
            )));
        };
        let target = &versions[index];
        if target.has(Stage::Current) {
            return Ok(());
        }
        if !target.has(Stage::Pending) {
            return Err(ProviderError::conflict(format!(
                "{WHO}: key {key:?}: version {id:?} is neither pending nor current ({})",
                describe_stages(target)
            )));
        }
        for (i, v) in versions.iter_mut().enumerate() {
            if i == index {
                continue;
            }
            if v.has(Stage::Previous) {
                remove_stage(v, Stage::Previous);
            } else if v.has(Stage::Current) {
                remove_stage(v, Stage::Current);
                add_stage(v, Stage::Previous);
                if previous_revoked && v.revoked.is_none() {
                    v.revoked = Some(now);
                }
            }
        }
        let target = &mut versions[index];
        remove_stage(target, Stage::Pending);
        add_stage(target, Stage::Current);
        Ok(())
    }

    fn mark_revoked(&mut self, key: &str, id: &str) -> ProviderResult<()> {
        let now = self.clock.now();
        let version = self
            .keys
            .get_mut(key)
            .and_then(|versions| versions.iter_mut().find(|v| v.id == id));
        let Some(version) = version else {
            return Err(ProviderError::not_found(format!(
                "{WHO}: key {key:?} has no version {id:?}"
            )));
        };
        if version.revoked.is_none() {
            version.revoked = Some(now);
        }
        Ok(())
    }

    fn discard_pending(&mut self, key: &str, id: &str) -> ProviderResult<()> {
        let Some(versions) = self.keys.get_mut(key) else {
            return Err(ProviderError::not_found(format!("{WHO}: key {key:?} does not exist")));
        };
        match versions.iter_mut().find(|v| v.has(Stage::Pending)) {
            Some(pending) if pending.id == id => {
                remove_stage(pending, Stage::Pending);
                Ok(())
            }
            Some(pending) => Err(ProviderError::conflict(format!(
                "{WHO}: key {key:?}: the pending version is {:?}, not {id:?}",
                pending.id
            ))),
            None => Ok(()),
        }
    }
}

#[async_trait]
impl Store for MemoryStore {
    fn capabilities(&self) -> StoreCapabilities {
        StoreCapabilities {
            compare_and_set: true,
            write_check_is_a_read: false,
        }
    }

    fn describe(&self) -> String {
        "memory store (test double)".to_owned()
    }

    async fn read(&self, key: &str) -> ProviderResult<KeyState> {
        settle(self.run(Some(StoreOp::Read), "read", |s| match s.keys.get(key) {
            Some(versions) => Ok(KeyState {
                versions: versions.clone(),
            }),
            None => Err(ProviderError::not_found(format!("{WHO}: key {key:?} does not exist"))),
        }))
        .await
    }

    /// Leaves out a revoked version holding only the previous stage, as Secrets Manager
    /// does, so that engine tests on this store show a rotation never needs one.
    async fn read_for_rotation(&self, key: &str) -> ProviderResult<KeyState> {
        let mut state = self.read(key).await?;
        state
            .versions
            .retain(|v| !(v.revoked.is_some() && v.stages == [Stage::Previous]));
        Ok(state)
    }

    async fn check_writable(&self, key: &str) -> ProviderResult<()> {
        settle(self.run(None, "check_writable", |s| s.may_write_current(key))).await
    }

    async fn put_current(&self, key: &str, version_id: &str, doc: &SecretDoc) -> ProviderResult<()> {
        settle(self.run(Some(StoreOp::PutCurrent), "put_current", |s| {
            s.may_write_current(key)?;
            s.put_current(key, version_id, doc)
        }))
        .await
    }

    async fn stage_pending(&self, key: &str, version_id: &str, doc: &SecretDoc) -> ProviderResult<()> {
        settle(self.run(Some(StoreOp::StagePending), "stage_pending", |s| {
            s.stage_pending(key, version_id, doc)
        }))
        .await
    }

    async fn promote(&self, key: &str, version_id: &str, previous_revoked: bool) -> ProviderResult<()> {
        settle(self.run(Some(StoreOp::Promote), "promote", |s| {
            s.may_write_current(key)?;
            s.promote(key, version_id, previous_revoked)
        }))
        .await
    }

    async fn mark_revoked(&self, key: &str, version_id: &str) -> ProviderResult<()> {
        settle(self.run(Some(StoreOp::MarkRevoked), "mark_revoked", |s| {
            s.mark_revoked(key, version_id)
        }))
        .await
    }

    async fn discard_pending(&self, key: &str, version_id: &str) -> ProviderResult<()> {
        settle(self.run(Some(StoreOp::DiscardPending), "discard_pending", |s| {
            s.discard_pending(key, version_id)
        }))
        .await
    }
}
