//! [`SecretsManagerStore`]: rekey's stages as AWS Secrets Manager staging labels.

use crate::config::AwsSecretsManagerConfig;
use crate::error::{aws_error, code, with_details};
use crate::provider::Shared;
use crate::version::{token, version_id};
use async_trait::async_trait;
use aws_sdk_secretsmanager::primitives::{DateTime, DateTimeFormat};
use aws_sdk_secretsmanager::types::Tag;
use aws_sdk_secretsmanager::Client;
use rekey_api::{
    ErrorKind, KeyState, ProviderError, ProviderResult, SecretDoc, Stage, Store, StoreCapabilities, StoredVersion,
};
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::fmt;
use std::sync::{Arc, Mutex};
use std::time::SystemTime;
use zeroize::Zeroizing;

/// AWS's label for what applications read.
pub const AWSCURRENT: &str = "AWSCURRENT";
/// AWS's label for a version being rotated in. Between rotations rekey leaves it on the
/// current version ("parked", as AWS's own rotation functions leave it): the next
/// rotation takes it from there with `RemoveFromVersionId`, its compare-and-set.
pub const AWSPENDING: &str = "AWSPENDING";
/// AWS's label for the version AWSCURRENT last moved away from.
pub const AWSPREVIOUS: &str = "AWSPREVIOUS";
/// The compare-and-set label of earlier rekey releases (on the version rekey wrote
/// last). rekey no longer writes it: the first write to such a secret claims it one
/// last time by removing it, which AWS refuses to a racing writer.
pub const CAS_LABEL: &str = "REKEY_CAS";
/// The label a new version is written with, so that writing it moves no AWS label (a
/// version needs at least one; without any, AWS would make it current). It stays on the
/// version rekey wrote last until the next write takes it.
pub const WRITE_LABEL: &str = "REKEY_WRITE";
/// Prefix of the secret tags that record revocations: `rekey:revoked:<VersionId>` =
/// RFC 3339 time.
pub const REVOKED_TAG_PREFIX: &str = "rekey:revoked:";

/// How many times a read tries when the labels move while it reads (another runner's
/// rotation moves them three times in well under a second), with a pause doubling from
/// [`READ_RETRY_PAUSE_MS`] between attempts (about 0.8 s in all).
const READ_ATTEMPTS: usize = 6;
const READ_RETRY_PAUSE_MS: u64 = 25;
/// Revocation tags of versions that no longer hold a stage are removed once there are
/// more than this many (one `UntagResource` every few rotations, far below AWS's limit
/// of 50 tags per secret).
const STALE_TAGS_KEPT: usize = 8;

/// A store keeping each key as one AWS Secrets Manager secret (the key is the secret's
/// name or ARN) whose versions carry AWS's staging labels:
///
/// | rekey stage | AWS staging label |
/// | --- | --- |
/// | `current` | `AWSCURRENT` |
/// | `pending` | `AWSPENDING` (on a version that is not also `AWSCURRENT`) |
/// | `previous` | `AWSPREVIOUS` |
///
/// Version ids are `ClientRequestToken`s (AWS `VersionId`s). A revocation is recorded as
/// the secret tag `rekey:revoked:<VersionId>` holding the RFC 3339 time. Other labels on
/// the current version (an application's own, such as `MYAPP_LIVE`) follow `AWSCURRENT`
/// to the new version at `promote`. See the crate's README for every call's AWS
/// requests.
///
/// Created by [`crate::AwsProvider::aws_secrets_manager_store`].
pub struct SecretsManagerStore {
    config: AwsSecretsManagerConfig,
    shared: Arc<Shared>,
    /// Labels and tags of each key as this store last read or wrote them. A write starts
    /// from it instead of a `DescribeSecret`; every write is conditional on it
    /// (`RemoveFromVersionId`), so a stale snapshot costs one conflict and one fresh
    /// `DescribeSecret`, never a wrong write.
    snapshots: Mutex<HashMap<String, Snapshot>>,
}

impl fmt::Debug for SecretsManagerStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SecretsManagerStore")
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

/// The labels and revocation tags of one secret, from one `DescribeSecret` (and this
/// store's writes since).
#[derive(Debug, Clone)]
struct Snapshot {
    /// `VersionId` → labels.
    labels: BTreeMap<String, Vec<String>>,
    /// `VersionId` → revocation time text, from the tags.
    revoked: BTreeMap<String, String>,
    /// Scheduled for deletion.
    deleted: bool,
}

impl Snapshot {
    fn has(&self, version: &str, label: &str) -> bool {
        self.labels.get(version).is_some_and(|l| l.iter().any(|x| x == label))
    }

    fn holder(&self, label: &str) -> Option<&str> {
        self.labels
            .iter()
            .find(|(_, labels)| labels.iter().any(|l| l == label))
            .map(|(v, _)| v.as_str())
    }

    /// The version holding AWSPENDING without AWSCURRENT: an unfinished rotation.
    fn pending(&self) -> Option<&str> {
        self.labels
            .iter()
            .find(|(v, _)| self.has(v, AWSPENDING) && !self.has(v, AWSCURRENT))
            .map(|(v, _)| v.as_str())
    }

    /// The version holding AWSPENDING *and* AWSCURRENT: AWSPENDING parked between
    /// rotations (rekey's), or a finished rotation's leftover (AWS's rotation functions').
    fn parked(&self) -> Option<&str> {
        self.labels
            .iter()
            .find(|(v, _)| self.has(v, AWSPENDING) && self.has(v, AWSCURRENT))
            .map(|(v, _)| v.as_str())
    }

    /// Versions holding any of AWSCURRENT, AWSPENDING, AWSPREVIOUS.
    fn staged(&self) -> Vec<&str> {
        self.labels
            .iter()
            .filter(|(_, labels)| labels.iter().any(|l| is_stage_label(l)))
            .map(|(v, _)| v.as_str())
            .collect()
    }

    /// The AWS stage labels of a version, sorted.
    fn stage_labels(&self, version: &str) -> BTreeSet<&str> {
        self.labels
            .get(version)
            .map(|l| l.iter().map(String::as_str).filter(|l| is_stage_label(l)).collect())
            .unwrap_or_default()
    }

    /// Labels of `version` that are neither AWS's stage labels nor rekey's own: an
    /// application's labels, which follow AWSCURRENT.
    fn custom_labels(&self, version: &str) -> Vec<String> {
        self.labels
            .get(version)
            .map(|l| l.iter().filter(|l| is_custom_label(l)).cloned().collect())
            .unwrap_or_default()
    }

    /// Mirrors a successful `UpdateSecretVersionStage`. Moving AWSCURRENT away from a
    /// version makes it AWSPREVIOUS, as AWS does.
    fn moved(&mut self, label: &str, to: Option<&str>, from: Option<&str>) {
        for labels in self.labels.values_mut() {
            labels.retain(|l| l != label);
        }
        if let Some(to) = to {
            self.labels.entry(to.to_owned()).or_default().push(label.to_owned());
        }
        if label == AWSCURRENT {
            if let Some(from) = from.filter(|f| Some(*f) != to) {
                self.moved(AWSPREVIOUS, Some(from), None);
            }
        }
    }

    /// Mirrors a successful `PutSecretValue` with one label.
    fn written(&mut self, version: &str, label: &str) {
        self.moved(label, Some(version), None);
    }
}

fn is_stage_label(label: &str) -> bool {
    matches!(label, AWSCURRENT | AWSPENDING | AWSPREVIOUS)
}

fn is_custom_label(label: &str) -> bool {
    !is_stage_label(label) && label != WRITE_LABEL && label != CAS_LABEL
}

/// One version's value as read.
struct Fetched {
    doc: SecretDoc,
    created: SystemTime,
    labels: Vec<String>,
}

/// The stages a version's labels stand for (AWSPENDING on the current version is
/// parked, not a pending rotation).
fn stages_of(labels: &BTreeSet<&str>) -> Vec<Stage> {
    let mut stages = Vec::new();
    if labels.contains(AWSCURRENT) {
        stages.push(Stage::Current);
    } else if labels.contains(AWSPENDING) {
        stages.push(Stage::Pending);
    }
    if labels.contains(AWSPREVIOUS) {
        stages.push(Stage::Previous);
    }
    stages
}

fn rfc3339(time: SystemTime) -> String {
    DateTime::from(time)
        .fmt(DateTimeFormat::DateTime)
        .unwrap_or_else(|_| "1970-01-01T00:00:00Z".to_owned())
}

fn parse_rfc3339(text: &str) -> Option<SystemTime> {
    DateTime::from_str(text, DateTimeFormat::DateTime)
        .ok()
        .and_then(|t| SystemTime::try_from(t).ok())
}

/// A write that lost a compare-and-set (retryable conflict): worth one fresh look when
/// it started from a remembered snapshot.
fn lost_race(e: &ProviderError) -> bool {
    e.kind() == ErrorKind::Conflict && e.is_retryable()
}

impl SecretsManagerStore {
    pub(crate) fn new(config: AwsSecretsManagerConfig, shared: Arc<Shared>) -> Self {
        SecretsManagerStore {
            config,
            shared,
            snapshots: Mutex::new(HashMap::new()),
        }
    }

    /// The configuration this store was built from.
    pub fn config(&self) -> &AwsSecretsManagerConfig {
        &self.config
    }

    /// The region requests go to (configured, else from the environment); `None` when
    /// there is none. Loads the SDK configuration on first use.
    pub async fn region(&self) -> Option<String> {
        self.shared.region().await
    }

    /// Read-only check that `key` could be written, with what was found: whether the
    /// secret exists (and its stages), or that the first write will create it.
    pub async fn check_writable_report(&self, key: &str) -> ProviderResult<String> {
        check_key(key)?;
        match self.describe(key).await? {
            Some(snap) if snap.deleted => Err(scheduled_for_deletion(key)),
            Some(snap) => {
                let mut labels: Vec<String> = snap
                    .labels
                    .iter()
                    .filter(|(_, l)| l.iter().any(|x| is_stage_label(x)))
                    .map(|(v, l)| {
                        let shown: Vec<&str> = l.iter().map(String::as_str).filter(|x| is_stage_label(x)).collect();
                        format!("{} {}", version_id(v), shown.join("+"))
                    })
                    .collect();
                labels.sort();
                Ok(format!(
                    "secret {key} exists in Secrets Manager ({}): {}",
                    self.where_(),
                    if labels.is_empty() {
                        "no staged version".to_owned()
                    } else {
                        labels.join(", ")
                    }
                ))
            }
            None => Ok(format!(
                "secret {key} does not exist in Secrets Manager ({}); the first write creates it \
                 (needs secretsmanager:CreateSecret)",
                self.where_()
            )),
        }
    }

    /// What `plan` should say about `key` beyond the stages: the application labels on
    /// the current version, which a rotation moves to the new version. One
    /// `DescribeSecret`; nothing for a secret that does not exist.
    pub async fn plan_notes(&self, key: &str) -> ProviderResult<Vec<String>> {
        check_key(key)?;
        let Some(snap) = self.describe(key).await? else {
            return Ok(Vec::new());
        };
        let Some(current) = snap.holder(AWSCURRENT) else {
            return Ok(Vec::new());
        };
        Ok(snap
            .custom_labels(current)
            .into_iter()
            .map(|label| {
                format!(
                    "staging label {label} is on the current version of secret {key}: it follows AWSCURRENT to \
                     the new version at promote"
                )
            })
            .collect())
    }

    fn where_(&self) -> String {
        self.shared.key.describe()
    }

    /// Says where AWS was looked for when it could not be reached.
    fn unreachable_where(&self, err: ProviderError) -> ProviderError {
        if err.kind() == ErrorKind::Unreachable {
            let where_ = self.where_();
            err.context(format_args!("Secrets Manager ({where_})"))
        } else {
            err
        }
    }

    async fn client(&self, key: &str) -> ProviderResult<&Client> {
        self.shared
            .secrets_manager(&format!("aws-secretsmanager store, secret {key}"))
            .await
    }

    fn snapshots(&self) -> std::sync::MutexGuard<'_, HashMap<String, Snapshot>> {
        self.snapshots.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The snapshot this store last read or wrote for `key`, if any.
    fn remembered(&self, key: &str) -> Option<Snapshot> {
        self.snapshots().get(key).cloned()
    }

    fn remember(&self, key: &str, snap: &Snapshot) {
        self.snapshots().insert(key.to_owned(), snap.clone());
    }

    fn forget(&self, key: &str) {
        self.snapshots().remove(key);
    }

    /// Labels and tags of `key`; `None` when the secret does not exist.
    async fn describe(&self, key: &str) -> ProviderResult<Option<Snapshot>> {
        let client = self.client(key).await?;
        let out = match client.describe_secret().secret_id(key).send().await {
            Ok(out) => out,
            Err(e) if code(&e) == Some("ResourceNotFoundException") => {
                self.forget(key);
                return Ok(None);
            }
            Err(e) => return Err(self.unreachable_where(aws_error(&e, format_args!("describing secret {key}")))),
        };
        let labels = out
            .version_ids_to_stages()
            .map(|m| m.iter().map(|(k, v)| (k.clone(), v.clone())).collect())
            .unwrap_or_default();
        let revoked = out
            .tags()
            .iter()
            .filter_map(|t| {
                let version = t.key()?.strip_prefix(REVOKED_TAG_PREFIX)?;
                Some((version.to_owned(), t.value().unwrap_or_default().to_owned()))
            })
            .collect();
        let snap = Snapshot {
            labels,
            revoked,
            deleted: out.deleted_date().is_some(),
        };
        self.remember(key, &snap);
        Ok(Some(snap))
    }

    /// The remembered snapshot of `key`, else a fresh one (`None`: no such secret), and
    /// whether it was remembered.
    async fn snapshot(&self, key: &str) -> ProviderResult<Option<(Snapshot, bool)>> {
        if let Some(snap) = self.remembered(key) {
            return Ok(Some((snap, true)));
        }
        Ok(self.describe(key).await?.map(|s| (s, false)))
    }

    /// The value of one version; `None` when it does not exist.
    async fn fetch(&self, key: &str, version: &str) -> ProviderResult<Option<Fetched>> {
        let client = self.client(key).await?;
        let id = version_id(version);
        let mut out = match client
            .get_secret_value()
            .secret_id(key)
            .version_id(version)
            .send()
            .await
        {
            Ok(out) => out,
            Err(e) if code(&e) == Some("ResourceNotFoundException") => return Ok(None),
            Err(e) => return Err(aws_error(&e, format_args!("reading secret {key} version {id}"))),
        };
        let Some(text) = out.secret_string.take().map(Zeroizing::new) else {
            return Err(ProviderError::invalid_input(format!(
                "secret {key} version {id} holds a binary value; rekey stores a JSON object as text"
            )));
        };
        let doc = SecretDoc::from_json(&text).map_err(|e| e.context(format_args!("secret {key} version {id}")))?;
        let created = out
            .created_date()
            .and_then(|t| SystemTime::try_from(*t).ok())
            .unwrap_or(SystemTime::UNIX_EPOCH);
        Ok(Some(Fetched {
            doc,
            created,
            labels: out.version_stages.take().unwrap_or_default(),
        }))
    }

    /// Moves `label` onto `to` (or only removes it when `to` is `None`), from `from`.
    /// AWS refuses the move when `from` does not hold the label, or when `from` is
    /// `None` and another version holds it: that is the compare-and-set, reported as a
    /// (retryable) conflict. On success `snap` is updated to match.
    async fn move_label(
        &self,
        key: &str,
        snap: &mut Snapshot,
        label: &str,
        to: Option<&str>,
        from: Option<&str>,
        why: &str,
    ) -> ProviderResult<()> {
        let client = self.client(key).await?;
        let result = client
            .update_secret_version_stage()
            .secret_id(key)
            .version_stage(label)
            .set_move_to_version_id(to.map(str::to_owned))
            .set_remove_from_version_id(from.map(str::to_owned))
            .send()
            .await;
        match result {
            Ok(_) => {
                snap.moved(label, to, from);
                Ok(())
            }
            Err(e) if code(&e) == Some("InvalidParameterException") => {
                let (_, text) = crate::error::classify(&e);
                Err(with_details(
                    ProviderError::conflict(format!(
                        "secret {key}: {why}: another writer changed its labels first ({text})"
                    )),
                    &e,
                ))
            }
            Err(e) => Err(aws_error(&e, format_args!("secret {key}: {why}"))),
        }
    }

    /// The compare-and-set that makes `version` the one being written next to the
    /// current one: AWSPENDING moves onto it from the version holding it now (parked on
    /// the current version). AWS lets exactly one of two racing writers do that; the
    /// loser's new version keeps no stage (AWS deprecates it) and the loser gets a
    /// conflict. A secret whose AWSPENDING is nowhere (written by an earlier rekey
    /// release, or by something else) is claimed first by removing the old
    /// [`CAS_LABEL`] when one is left, then AWSPENDING is attached (AWS refuses that too
    /// when another version took it meanwhile).
    async fn take_pending(&self, key: &str, version: &str, snap: &mut Snapshot, why: &str) -> ProviderResult<()> {
        if let Some(parked) = snap.parked().map(str::to_owned) {
            return self
                .move_label(key, snap, AWSPENDING, Some(version), Some(&parked), why)
                .await;
        }
        if let Some(holder) = snap.holder(CAS_LABEL).map(str::to_owned) {
            self.move_label(key, snap, CAS_LABEL, None, Some(&holder), why).await?;
        }
        self.move_label(key, snap, AWSPENDING, Some(version), None, why).await?;
        self.confirm_sole_pending(key, version, snap, why).await
    }

    /// After AWSPENDING was attached without `RemoveFromVersionId`: makes sure no other
    /// version holds it too. AWS refuses such a move when another version holds the
    /// label, but not every server that speaks its API does (moto attaches it a second
    /// time), so the claim is checked with one `DescribeSecret`; when another writer
    /// holds AWSPENDING as well, this one backs off (removes its own) and reports a
    /// conflict. At most one of racing writers wins. Only a secret without AWSPENDING
    /// anywhere (its first rekey rotation) costs this call.
    async fn confirm_sole_pending(
        &self,
        key: &str,
        version: &str,
        snap: &mut Snapshot,
        why: &str,
    ) -> ProviderResult<()> {
        let fresh = self
            .describe(key)
            .await?
            .ok_or_else(|| ProviderError::conflict(format!("secret {key} was deleted meanwhile")))?;
        *snap = fresh;
        let others = snap.labels.keys().any(|v| v != version && snap.has(v, AWSPENDING));
        if !others {
            return Ok(());
        }
        if snap.has(version, AWSPENDING) {
            self.move_label(key, snap, AWSPENDING, None, Some(version), "backing off AWSPENDING")
                .await?;
        }
        Err(ProviderError::conflict(format!(
            "secret {key}: {why}: another writer attached AWSPENDING at the same time"
        )))
    }

    /// Makes sure version `version` exists with `doc`: written now (labelled only with
    /// [`WRITE_LABEL`]) or already there with the same value.
    async fn ensure_written(
        &self,
        key: &str,
        version: &str,
        doc: &SecretDoc,
        snap: &mut Snapshot,
    ) -> ProviderResult<()> {
        let id = version_id(version);
        if snap.labels.contains_key(version) {
            return match self.fetch(key, version).await? {
                Some(found) if found.doc == *doc => Ok(()),
                Some(_) => Err(version_exists_otherwise(key, &id)),
                None => Err(ProviderError::conflict(format!(
                    "secret {key}: version {id} vanished while being written"
                ))),
            };
        }
        let json = doc.to_json();
        let result = self
            .client(key)
            .await?
            .put_secret_value()
            .secret_id(key)
            .client_request_token(version)
            .secret_string(json.as_str())
            .version_stages(WRITE_LABEL)
            .send()
            .await;
        match result {
            Ok(_) => {
                snap.written(version, WRITE_LABEL);
                Ok(())
            }
            Err(e) if code(&e) == Some("ResourceExistsException") => Err(version_exists_otherwise(key, &id)),
            Err(e) => Err(aws_error(&e, format_args!("writing secret {key} version {id}"))),
        }
    }

    /// Creates the secret with `doc` as its first version and parks AWSPENDING on it.
    /// AWS makes a secret's first version `AWSCURRENT`, whatever labels are asked for.
    /// `Ok(false)` when the secret exists already (someone created it meanwhile).
    /// The secret's labels for a write ([`Self::snapshot`]), or `None` when the secret did
    /// not exist and this call created it with `doc` as its first version (AWS makes the
    /// first version AWSCURRENT: there is no older secret for readers to keep using).
    async fn snapshot_or_create(
        &self,
        key: &str,
        version: &str,
        doc: &SecretDoc,
    ) -> ProviderResult<Option<(Snapshot, bool)>> {
        if let Some(found) = self.snapshot(key).await? {
            return Ok(Some(found));
        }
        if self.create(key, version, doc).await? {
            return Ok(None);
        }
        let snap = self.describe(key).await?.ok_or_else(|| {
            ProviderError::conflict(format!(
                "secret {key} was created and deleted by someone else meanwhile"
            ))
        })?;
        Ok(Some((snap, false)))
    }

    async fn create(&self, key: &str, version: &str, doc: &SecretDoc) -> ProviderResult<bool> {
        let id = version_id(version);
        let json = doc.to_json();
        let result = self
            .client(key)
            .await?
            .create_secret()
            .name(key)
            .client_request_token(version)
            .secret_string(json.as_str())
            .description("Managed by rekey")
            .send()
            .await;
        match result {
            Ok(_) => {}
            Err(e) if code(&e) == Some("ResourceExistsException") => return Ok(false),
            Err(e) if code(&e) == Some("InvalidRequestException") => {
                let (_, text) = crate::error::classify(&e);
                return Err(with_details(
                    ProviderError::invalid_input(format!("creating secret {key} with version {id}: {text}")),
                    &e,
                ));
            }
            Err(e) => return Err(aws_error(&e, format_args!("creating secret {key} with version {id}"))),
        }
        let mut snap = Snapshot {
            labels: BTreeMap::from([(version.to_owned(), vec![AWSCURRENT.to_owned()])]),
            revoked: BTreeMap::new(),
            deleted: false,
        };
        // Nobody else can hold AWSPENDING on a secret created just now.
        let parked = self
            .move_label(key, &mut snap, AWSPENDING, Some(version), None, "parking AWSPENDING")
            .await;
        match parked {
            Ok(()) => self.remember(key, &snap),
            Err(_) => self.forget(key),
        }
        parked.map(|()| true)
    }

    /// Records that `version` is revoked (tag). Revocation tags of versions that no
    /// longer hold a stage are removed once there are more than [`STALE_TAGS_KEPT`].
    async fn tag_revoked(&self, key: &str, version: &str, snap: &mut Snapshot) -> ProviderResult<()> {
        if snap.revoked.contains_key(version) {
            return Ok(());
        }
        let client = self.client(key).await?;
        let stale: Vec<String> = snap
            .revoked
            .keys()
            .filter(|v| v.as_str() != version && snap.stage_labels(v).is_empty())
            .cloned()
            .collect();
        if stale.len() > STALE_TAGS_KEPT {
            client
                .untag_resource()
                .secret_id(key)
                .set_tag_keys(Some(stale.iter().map(|v| format!("{REVOKED_TAG_PREFIX}{v}")).collect()))
                .send()
                .await
                .map_err(|e| aws_error(&e, format_args!("secret {key}: removing old revocation tags")))?;
            for v in &stale {
                snap.revoked.remove(v);
            }
        }
        let now = rfc3339(SystemTime::now());
        let tag = Tag::builder()
            .key(format!("{REVOKED_TAG_PREFIX}{version}"))
            .value(now.clone())
            .build();
        client
            .tag_resource()
            .secret_id(key)
            .tags(tag)
            .send()
            .await
            .map_err(|e| {
                aws_error(
                    &e,
                    format_args!("secret {key}: recording version {} as revoked", version_id(version)),
                )
            })?;
        snap.revoked.insert(version.to_owned(), now);
        Ok(())
    }

    /// Whether a version exists, including versions without labels (which
    /// `DescribeSecret` may leave out).
    async fn version_exists(&self, key: &str, version: &str, snap: &Snapshot) -> ProviderResult<bool> {
        if snap.labels.contains_key(version) {
            return Ok(true);
        }
        let client = self.client(key).await?;
        let mut next: Option<String> = None;
        loop {
            let out = client
                .list_secret_version_ids()
                .secret_id(key)
                .include_deprecated(true)
                .set_next_token(next.take())
                .send()
                .await
                .map_err(|e| aws_error(&e, format_args!("listing the versions of secret {key}")))?;
            if out.versions().iter().any(|v| v.version_id() == Some(version)) {
                return Ok(true);
            }
            match out.next_token() {
                Some(t) if !t.is_empty() => next = Some(t.to_owned()),
                _ => return Ok(false),
            }
        }
    }

    /// One read: `DescribeSecret`, then one `GetSecretValue` per staged version (with
    /// `lean`, none for a version holding only AWSPREVIOUS that is recorded revoked: it
    /// is left out). `Ok(None)` when the labels moved meanwhile (read again).
    async fn read_once(&self, key: &str, lean: bool) -> ProviderResult<Option<KeyState>> {
        let Some(snap) = self.describe(key).await? else {
            return Err(ProviderError::not_found(format!(
                "secret {key} not found in Secrets Manager ({})",
                self.where_()
            )));
        };
        if snap.deleted {
            return Err(scheduled_for_deletion(key));
        }
        let pending = snap.pending();
        let mut versions = Vec::new();
        for version in snap.staged() {
            if lean && snap.revoked.contains_key(version) && snap.stage_labels(version) == BTreeSet::from([AWSPREVIOUS])
            {
                continue;
            }
            let fetched = match self.fetch(key, version).await {
                Err(e) if Some(version) == pending && e.kind() == ErrorKind::InvalidInput => {
                    return Err(unusable_pending(key, version, &e))
                }
                other => other?,
            };
            let Some(found) = fetched else {
                return Ok(None);
            };
            let labels: BTreeSet<&str> = found
                .labels
                .iter()
                .map(String::as_str)
                .filter(|l| is_stage_label(l))
                .collect();
            if labels != snap.stage_labels(version) {
                return Ok(None);
            }
            versions.push(StoredVersion {
                id: version_id(version),
                stages: stages_of(&labels),
                created: found.created,
                revoked: snap.revoked.get(version).and_then(|t| parse_rfc3339(t)),
                doc: found.doc,
            });
        }
        // Oldest first; AWS dates have one-second resolution, so ties go by stage.
        let rank = |v: &StoredVersion| {
            if v.has(Stage::Pending) {
                2
            } else if v.has(Stage::Current) {
                1
            } else {
                0
            }
        };
        versions.sort_by(|a, b| a.created.cmp(&b.created).then(rank(a).cmp(&rank(b))));
        Ok(Some(KeyState { versions }))
    }

    /// [`Self::read_once`] until the labels hold still while it reads.
    async fn read_retrying(&self, key: &str, lean: bool) -> ProviderResult<KeyState> {
        check_key(key)?;
        for attempt in 0..READ_ATTEMPTS {
            if attempt > 0 {
                let pause = READ_RETRY_PAUSE_MS << (attempt - 1);
                tokio::time::sleep(std::time::Duration::from_millis(pause)).await;
            }
            if let Some(state) = self.read_once(key, lean).await? {
                return Ok(state);
            }
        }
        Err(ProviderError::conflict(format!(
            "secret {key}: its labels kept moving while being read ({READ_ATTEMPTS} attempts)"
        )))
    }

    /// [`Store::stage_pending`] from `snap`: write the version (`PutSecretValue`), then
    /// take AWSPENDING for it (the compare-and-set).
    async fn stage_from(
        &self,
        key: &str,
        version: &str,
        version_id_: &str,
        doc: &SecretDoc,
        mut snap: Snapshot,
    ) -> ProviderResult<()> {
        if snap.deleted {
            return Err(scheduled_for_deletion(key));
        }
        if let Some(pending) = snap.pending() {
            if pending != version {
                return Err(ProviderError::conflict(format!(
                    "secret {key} already has a pending version {} (an unfinished rotation); \
                     finish it before staging another",
                    version_id(pending)
                )));
            }
            return match self.fetch(key, version).await? {
                Some(found) if found.doc == *doc => Ok(()),
                _ => Err(version_exists_otherwise(key, version_id_)),
            };
        }
        if snap.has(version, AWSCURRENT) || snap.has(version, AWSPREVIOUS) {
            // A secret this store created with its first version is current at once.
            if snap.has(version, AWSCURRENT) {
                if let Some(found) = self.fetch(key, version).await? {
                    if found.doc == *doc {
                        return Ok(());
                    }
                }
            }
            return Err(ProviderError::conflict(format!(
                "secret {key}: version {version_id_} exists already as {}",
                if snap.has(version, AWSCURRENT) {
                    "the current version"
                } else {
                    "the previous version"
                }
            ))
            .retryable(false));
        }
        let result = async {
            self.ensure_written(key, version, doc, &mut snap).await?;
            self.take_pending(key, version, &mut snap, "attaching AWSPENDING").await
        }
        .await;
        self.settle(key, &snap, result)
    }

    /// [`Store::promote`] from `snap`: move AWSCURRENT (the compare-and-set; AWS makes
    /// the old current AWSPREVIOUS), move the application's labels along, record the
    /// old current's revocation. AWSPENDING stays on the new current (parked).
    async fn promote_from(
        &self,
        key: &str,
        version: &str,
        version_id_: &str,
        previous_revoked: bool,
        mut snap: Snapshot,
    ) -> ProviderResult<()> {
        if snap.has(version, AWSCURRENT) {
            // Already promoted (a retry, or a first version): finish what is left.
            let result = async {
                if let Some(previous) = snap.holder(AWSPREVIOUS).map(str::to_owned) {
                    self.follow(key, version, &previous, &mut snap).await?;
                    if previous_revoked {
                        self.tag_revoked(key, &previous, &mut snap).await?;
                    }
                }
                Ok(())
            }
            .await;
            return self.settle(key, &snap, result);
        }
        if !snap.has(version, AWSPENDING) {
            return Err(ProviderError::conflict(format!(
                "secret {key}: version {version_id_} is neither pending nor current"
            ))
            .retryable(false));
        }
        let old = snap.holder(AWSCURRENT).map(str::to_owned);
        let result = async {
            // AWS's finishSecret: AWSCURRENT moves from the old current, which AWS makes
            // AWSPREVIOUS (taking that label from the version before).
            self.move_label(
                key,
                &mut snap,
                AWSCURRENT,
                Some(version),
                old.as_deref(),
                "moving AWSCURRENT",
            )
            .await?;
            if let Some(old) = &old {
                self.follow(key, version, old, &mut snap).await?;
                if previous_revoked {
                    self.tag_revoked(key, old, &mut snap).await?;
                }
            }
            Ok(())
        }
        .await;
        self.settle(key, &snap, result)
    }

    /// Moves the application's labels (see [`Snapshot::custom_labels`]) from `old` to
    /// `new`, each with `RemoveFromVersionId` = `old`. A label someone else moved
    /// meanwhile is left where it is now.
    async fn follow(&self, key: &str, new: &str, old: &str, snap: &mut Snapshot) -> ProviderResult<()> {
        for label in snap.custom_labels(old) {
            let why = format!("moving staging label {label} along with AWSCURRENT");
            match self.move_label(key, snap, &label, Some(new), Some(old), &why).await {
                Ok(()) => {}
                Err(e) if e.kind() == ErrorKind::Conflict => {}
                Err(e) => return Err(e),
            }
        }
        Ok(())
    }

    /// [`Store::put_current`] from `snap`.
    async fn put_current_from(
        &self,
        key: &str,
        version: &str,
        version_id_: &str,
        doc: &SecretDoc,
        mut snap: Snapshot,
    ) -> ProviderResult<()> {
        if snap.deleted {
            return Err(scheduled_for_deletion(key));
        }
        if let Some(pending) = snap.pending() {
            return Err(ProviderError::conflict(format!(
                "secret {key} has a rotation pending (version {}); finish it before importing",
                version_id(pending)
            ))
            .retryable(false));
        }
        if snap.has(version, AWSCURRENT) {
            // A retried import: the version is in place.
            return match self.fetch(key, version).await? {
                Some(found) if found.doc == *doc => Ok(()),
                _ => Err(version_exists_otherwise(key, version_id_)),
            };
        }
        if snap.has(version, AWSPREVIOUS) {
            return Err(ProviderError::conflict(format!(
                "secret {key}: version {version_id_} exists already as the previous version"
            ))
            .retryable(false));
        }
        let old = snap.holder(AWSCURRENT).map(str::to_owned);
        let result = async {
            self.ensure_written(key, version, doc, &mut snap).await?;
            // The claim, as for staging: the new version holds AWSPENDING for a moment
            // (a crash here leaves a pending version the next rotation finishes: the
            // imported secret works at the target).
            self.take_pending(key, version, &mut snap, "claiming the write").await?;
            self.move_label(
                key,
                &mut snap,
                AWSCURRENT,
                Some(version),
                old.as_deref(),
                "moving AWSCURRENT",
            )
            .await?;
            if let Some(old) = &old {
                self.follow(key, version, old, &mut snap).await?;
                // AWS made the replaced version AWSPREVIOUS; an import leaves it no stage.
                match self
                    .move_label(key, &mut snap, AWSPREVIOUS, None, Some(old), "removing AWSPREVIOUS")
                    .await
                {
                    Ok(()) => {}
                    Err(e) if e.kind() == ErrorKind::Conflict => {}
                    Err(e) => return Err(e),
                }
            }
            Ok(())
        }
        .await;
        self.settle(key, &snap, result)
    }

    /// Keeps `snap` for the next write after a success; forgets it after a failure (the
    /// next write looks again).
    fn settle(&self, key: &str, snap: &Snapshot, result: ProviderResult<()>) -> ProviderResult<()> {
        match &result {
            Ok(()) => self.remember(key, snap),
            Err(_) => self.forget(key),
        }
        result
    }

    /// The pending version of `key` when [`Store::read`] refuses it (its value is not a
    /// JSON object rekey could resume), as (`VersionId`, reason).
    async fn unusable(&self, key: &str, snap: &Snapshot) -> ProviderResult<Option<(String, ProviderError)>> {
        let Some(pending) = snap.pending() else {
            return Ok(None);
        };
        match self.fetch(key, pending).await {
            Err(e) if e.kind() == ErrorKind::InvalidInput => Ok(Some((pending.to_owned(), e))),
            Err(e) => Err(e),
            Ok(_) => Ok(None),
        }
    }
}

fn check_key(key: &str) -> ProviderResult<()> {
    if key.is_empty() {
        return Err(ProviderError::invalid_input("store key (secret name) is empty"));
    }
    Ok(())
}

fn scheduled_for_deletion(key: &str) -> ProviderError {
    ProviderError::invalid_input(format!(
        "secret {key} is scheduled for deletion; restore it (aws secretsmanager restore-secret --secret-id {key}) \
         or use another key"
    ))
}

fn version_exists_otherwise(key: &str, id: &str) -> ProviderError {
    ProviderError::conflict(format!(
        "secret {key} already has a version {id} with another value (a version cannot change)"
    ))
    .retryable(false)
}

/// A pending version rekey cannot resume: says which, why, and the way out.
fn unusable_pending(key: &str, version: &str, why: &ProviderError) -> ProviderError {
    ProviderError::invalid_input(format!(
        "secret {key}: its AWSPENDING version {} was not written by rekey and cannot be resumed ({}); \
         if no other rotation of this secret is running, `rekey rotate <credential> --abandon-pending` \
         takes AWSPENDING off it (the version stays in the secret's history)",
        version_id(version),
        why.message()
    ))
}

#[async_trait]
impl Store for SecretsManagerStore {
    fn capabilities(&self) -> StoreCapabilities {
        StoreCapabilities {
            compare_and_set: true,
            write_check_is_a_read: true,
        }
    }

    fn describe(&self) -> String {
        format!("aws-secretsmanager ({})", self.where_())
    }

    async fn read(&self, key: &str) -> ProviderResult<KeyState> {
        self.read_retrying(key, false).await
    }

    /// Leaves out the revoked AWSPREVIOUS version: a steady-state rotation costs one
    /// `GetSecretValue` (of the current version) instead of two.
    async fn read_for_rotation(&self, key: &str) -> ProviderResult<KeyState> {
        self.read_retrying(key, true).await
    }

    async fn check_writable(&self, key: &str) -> ProviderResult<()> {
        self.check_writable_report(key).await.map(|_| ())
    }

    async fn plan_notes(&self, key: &str) -> ProviderResult<Vec<String>> {
        SecretsManagerStore::plan_notes(self, key).await
    }

    async fn put_current(&self, key: &str, version_id_: &str, doc: &SecretDoc) -> ProviderResult<()> {
        check_key(key)?;
        let version = token(version_id_).map_err(|e| e.context(format_args!("secret {key}")))?;
        let Some((snap, remembered)) = self.snapshot_or_create(key, &version, doc).await? else {
            return Ok(());
        };
        match self.put_current_from(key, &version, version_id_, doc, snap).await {
            Err(e) if remembered && lost_race(&e) => {}
            other => return other,
        }
        let snap = self
            .describe(key)
            .await?
            .ok_or_else(|| ProviderError::conflict(format!("secret {key} was deleted meanwhile")))?;
        self.put_current_from(key, &version, version_id_, doc, snap).await
    }

    async fn stage_pending(&self, key: &str, version_id_: &str, doc: &SecretDoc) -> ProviderResult<()> {
        check_key(key)?;
        let version = token(version_id_).map_err(|e| e.context(format_args!("secret {key}")))?;
        let Some((snap, remembered)) = self.snapshot_or_create(key, &version, doc).await? else {
            return Ok(());
        };
        let claims_cas_label = snap.parked().is_none() && snap.holder(CAS_LABEL).is_some();
        let lost = match self.stage_from(key, &version, version_id_, doc, snap).await {
            Err(e) if remembered && lost_race(&e) => e,
            other => return other,
        };
        let snap = self
            .describe(key)
            .await?
            .ok_or_else(|| ProviderError::conflict(format!("secret {key} was deleted meanwhile")))?;
        // A lost claim of a secret in the REKEY_CAS format: when the second look finds
        // it neither claimed nor still in that format (no parked or pending AWSPENDING,
        // no REKEY_CAS), the other writer is between its two moves: the claim is lost.
        // (A remembered snapshot that was only stale finds the new shape, and goes on.)
        if claims_cas_label && snap.parked().is_none() && snap.pending().is_none() && snap.holder(CAS_LABEL).is_none() {
            return Err(lost);
        }
        self.stage_from(key, &version, version_id_, doc, snap).await
    }

    async fn promote(&self, key: &str, version_id_: &str, previous_revoked: bool) -> ProviderResult<()> {
        check_key(key)?;
        let version = token(version_id_).map_err(|e| e.context(format_args!("secret {key}")))?;
        let missing = || {
            ProviderError::conflict(format!(
                "secret {key} does not exist: there is no version {version_id_} to promote"
            ))
            .retryable(false)
        };
        let Some((snap, remembered)) = self.snapshot(key).await? else {
            return Err(missing());
        };
        match self
            .promote_from(key, &version, version_id_, previous_revoked, snap)
            .await
        {
            Err(e) if remembered && (lost_race(&e) || e.kind() == ErrorKind::Conflict) => {}
            other => return other,
        }
        let snap = self.describe(key).await?.ok_or_else(missing)?;
        self.promote_from(key, &version, version_id_, previous_revoked, snap)
            .await
    }

    async fn mark_revoked(&self, key: &str, version_id_: &str) -> ProviderResult<()> {
        check_key(key)?;
        let version = token(version_id_).map_err(|e| e.context(format_args!("secret {key}")))?;
        let Some((mut snap, _)) = self.snapshot(key).await? else {
            return Err(ProviderError::not_found(format!(
                "secret {key} not found in Secrets Manager ({})",
                self.where_()
            )));
        };
        if snap.revoked.contains_key(&version) {
            return Ok(());
        }
        if !self.version_exists(key, &version, &snap).await? {
            return Err(ProviderError::not_found(format!(
                "secret {key} has no version {version_id_}"
            )));
        }
        let result = self.tag_revoked(key, &version, &mut snap).await;
        self.settle(key, &snap, result)
    }

    async fn discard_pending(&self, key: &str, version_id_: &str) -> ProviderResult<()> {
        check_key(key)?;
        let version = token(version_id_).map_err(|e| e.context(format_args!("secret {key}")))?;
        // A discard that loses a race (another discard, a promote) reads again once: the
        // version may be no longer pending, which is success.
        let mut attempt = 0;
        loop {
            attempt += 1;
            match self.discard_once(key, &version, version_id_).await {
                Err(e) if e.kind() == ErrorKind::Conflict && e.is_retryable() && attempt < 2 => continue,
                outcome => return outcome,
            }
        }
    }

    async fn discard_unreadable_pending(&self, key: &str) -> ProviderResult<Option<String>> {
        check_key(key)?;
        let Some(snap) = self.describe(key).await? else {
            return Ok(None);
        };
        let Some((version, _)) = self.unusable(key, &snap).await? else {
            return Ok(None);
        };
        let id = version_id(&version);
        self.discard_pending(key, &id).await?;
        Ok(Some(id))
    }
}

impl SecretsManagerStore {
    /// One attempt of [`Store::discard_pending`]: reads the labels and moves AWSPENDING
    /// from `version` back to the current version (where it is parked between
    /// rotations), which AWS refuses when `version` no longer holds it. The version
    /// keeps its value; AWS lists it as deprecated once it holds no label.
    async fn discard_once(&self, key: &str, version: &str, version_id_: &str) -> ProviderResult<()> {
        let Some(mut snap) = self.describe(key).await? else {
            return Err(ProviderError::not_found(format!(
                "secret {key} not found in Secrets Manager ({})",
                self.where_()
            )));
        };
        if snap.deleted {
            return Err(scheduled_for_deletion(key));
        }
        let Some(pending) = snap.pending() else {
            // Nothing pending: discarded or promoted already, or never staged. AWSPENDING
            // on the current version is parked, not a pending rotation.
            return Ok(());
        };
        if pending != version {
            return Err(ProviderError::conflict(format!(
                "secret {key}: cannot discard version {version_id_}: the pending version is {}",
                version_id(pending)
            ))
            .retryable(false));
        }
        let current = snap.holder(AWSCURRENT).map(str::to_owned);
        let result = self
            .move_label(
                key,
                &mut snap,
                AWSPENDING,
                current.as_deref(),
                Some(version),
                "removing AWSPENDING",
            )
            .await;
        self.settle(key, &snap, result)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn snap(entries: &[(&str, &[&str])]) -> Snapshot {
        Snapshot {
            labels: entries
                .iter()
                .map(|(v, l)| (v.to_string(), l.iter().map(|s| s.to_string()).collect()))
                .collect(),
            revoked: BTreeMap::new(),
            deleted: false,
        }
    }

    #[test]
    fn pending_on_the_current_version_is_parked() {
        let s = snap(&[("a", &[AWSCURRENT, AWSPENDING]), ("b", &[AWSPREVIOUS])]);
        assert_eq!(s.pending(), None);
        assert_eq!(s.parked(), Some("a"));
        assert_eq!(stages_of(&s.stage_labels("a")), vec![Stage::Current]);
        let s = snap(&[("a", &[AWSCURRENT]), ("b", &[AWSPENDING]), ("c", &[WRITE_LABEL])]);
        assert_eq!(s.pending(), Some("b"));
        assert_eq!(s.staged(), vec!["a", "b"]);
    }

    #[test]
    fn moves_are_mirrored_as_aws_does_them() {
        let mut s = snap(&[
            ("a", &[AWSCURRENT, AWSPENDING, "MYAPP_LIVE", WRITE_LABEL]),
            ("z", &[AWSPREVIOUS]),
        ]);
        assert_eq!(s.custom_labels("a"), vec!["MYAPP_LIVE".to_owned()]);
        s.written("b", WRITE_LABEL);
        s.moved(AWSPENDING, Some("b"), Some("a"));
        assert_eq!(s.pending(), Some("b"));
        s.moved(AWSCURRENT, Some("b"), Some("a"));
        assert_eq!(
            s.holder(AWSPREVIOUS),
            Some("a"),
            "AWS makes the old current AWSPREVIOUS"
        );
        assert_eq!(s.stage_labels("z").len(), 0);
        assert_eq!(s.parked(), Some("b"));
    }

    #[test]
    fn timestamps_round_trip() {
        let now = SystemTime::UNIX_EPOCH + std::time::Duration::from_secs(1_795_000_000);
        let text = rfc3339(now);
        assert!(text.ends_with('Z'), "{text}");
        assert_eq!(parse_rfc3339(&text), Some(now));
    }
}
