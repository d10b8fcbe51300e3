//! [`SecretsManagerStore`]: rekey's stages as AWS Secrets Manager staging labels.

use crate::config::AwsSecretsManagerConfig;
use crate::error::{aws_error, code};
use crate::provider::Shared;
use crate::version::{token, version_id};
use async_trait::async_trait;
use aws_sdk_secretsmanager::primitives::{DateTime, DateTimeFormat};
use aws_sdk_secretsmanager::types::Tag;
use aws_sdk_secretsmanager::Client;
use rekey_api::{
    ErrorKind, KeyState, ProviderError, ProviderResult, SecretDoc, Stage, Store, StoreCapabilities, StoredVersion,
};
use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::sync::Arc;
use std::time::SystemTime;
use zeroize::Zeroizing;

/// AWS's label for what applications read.
pub const AWSCURRENT: &str = "AWSCURRENT";
/// AWS's label for a version being rotated in.
pub const AWSPENDING: &str = "AWSPENDING";
/// AWS's label for the version AWSCURRENT last moved away from.
pub const AWSPREVIOUS: &str = "AWSPREVIOUS";
/// rekey's compare-and-set label: on the version rekey wrote last. Every rekey write
/// moves it with `RemoveFromVersionId` = the version that held it, which AWS refuses
/// when another writer moved it first.
pub const CAS_LABEL: &str = "REKEY_CAS";
/// A short-lived label a new version is written with, so that writing it moves no AWS
/// label (a version needs at least one; without any, AWS would make it current).
pub const WRITE_LABEL: &str = "REKEY_WRITE";
/// Prefix of the secret tags that record revocations: `rekey:revoked:<VersionId>` =
/// RFC 3339 time.
pub const REVOKED_TAG_PREFIX: &str = "rekey:revoked:";

/// How many times a read retries when the labels move while it reads.
const READ_ATTEMPTS: usize = 3;

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
/// the secret tag `rekey:revoked:<VersionId>` holding the RFC 3339 time. See the crate's
/// README for every call's AWS requests.
///
/// Created by [`crate::AwsProvider::secrets_manager`].
pub struct SecretsManagerStore {
    config: AwsSecretsManagerConfig,
    shared: Arc<Shared>,
}

impl fmt::Debug for SecretsManagerStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SecretsManagerStore")
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

/// The labels and revocation tags of one secret, from one `DescribeSecret`.
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

    /// The version holding AWSPENDING *and* AWSCURRENT: a finished rotation's leftover.
    fn stale_pending(&self) -> Option<&str> {
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
}

fn is_stage_label(label: &str) -> bool {
    matches!(label, AWSCURRENT | AWSPENDING | AWSPREVIOUS)
}

/// One version's value as read.
struct Fetched {
    doc: SecretDoc,
    created: SystemTime,
    labels: Vec<String>,
}

/// The stages a version's labels stand for (AWSPENDING on the current version is a
/// finished rotation's leftover, not a pending one).
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

impl SecretsManagerStore {
    pub(crate) fn new(config: AwsSecretsManagerConfig, shared: Arc<Shared>) -> Self {
        SecretsManagerStore { config, shared }
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

    /// Labels and tags of `key`; `None` when the secret does not exist.
    async fn describe(&self, key: &str) -> ProviderResult<Option<Snapshot>> {
        let client = self.client(key).await?;
        let out = match client.describe_secret().secret_id(key).send().await {
            Ok(out) => out,
            Err(e) if code(&e) == Some("ResourceNotFoundException") => return Ok(None),
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
        Ok(Some(Snapshot {
            labels,
            revoked,
            deleted: out.deleted_date().is_some(),
        }))
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
    /// conflict.
    async fn move_label(
        &self,
        key: &str,
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
            Ok(_) => Ok(()),
            Err(e) if code(&e) == Some("InvalidParameterException") => {
                let (_, text) = crate::error::classify(&e);
                Err(ProviderError::conflict(format!(
                    "secret {key}: {why}: another writer changed its labels first ({text})"
                )))
            }
            Err(e) => Err(aws_error(&e, format_args!("secret {key}: {why}"))),
        }
    }

    /// The compare-and-set of every write: moves [`CAS_LABEL`] onto `version` from the
    /// version that held it when `snap` was read. The loser of a race leaves its new
    /// version without labels (AWS deprecates it) and gets a conflict.
    async fn claim(&self, key: &str, version: &str, snap: &Snapshot) -> ProviderResult<()> {
        if snap.has(version, CAS_LABEL) {
            return Ok(());
        }
        let claimed = self
            .move_label(
                key,
                CAS_LABEL,
                Some(version),
                snap.holder(CAS_LABEL),
                "claiming the write",
            )
            .await;
        if claimed.is_err() {
            self.drop_write_label(key, version).await;
        }
        claimed
    }

    /// Best effort: the write label is only a crutch of the write that just finished.
    async fn drop_write_label(&self, key: &str, version: &str) {
        let _ = self.move_label(key, WRITE_LABEL, None, Some(version), "").await;
    }

    /// Makes sure version `version` exists with `doc`: written now (labelled only with
    /// [`WRITE_LABEL`]) or already there with the same value.
    async fn ensure_written(&self, key: &str, version: &str, doc: &SecretDoc, snap: &Snapshot) -> ProviderResult<()> {
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
            Ok(_) => Ok(()),
            Err(e) if code(&e) == Some("ResourceExistsException") => Err(version_exists_otherwise(key, &id)),
            Err(e) => Err(aws_error(&e, format_args!("writing secret {key} version {id}"))),
        }
    }

    /// Creates the secret with `doc` as its first version. AWS makes a secret's first
    /// version `AWSCURRENT`, whatever labels are asked for. `Ok(false)` when the secret
    /// exists already (someone created it meanwhile).
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
                return Err(ProviderError::invalid_input(format!(
                    "creating secret {key} with version {id}: {text}"
                )));
            }
            Err(e) => return Err(aws_error(&e, format_args!("creating secret {key} with version {id}"))),
        }
        // Nobody else can hold the CAS label of a secret created just now.
        self.move_label(key, CAS_LABEL, Some(version), None, "marking the first version")
            .await?;
        Ok(true)
    }

    /// Records that `version` is revoked (tag), keeping revocation tags only for
    /// versions that still hold a stage.
    async fn tag_revoked(&self, key: &str, version: &str, snap: &Snapshot) -> ProviderResult<()> {
        if snap.revoked.contains_key(version) {
            return Ok(());
        }
        let client = self.client(key).await?;
        let stale: Vec<String> = snap
            .revoked
            .keys()
            .filter(|v| v.as_str() != version && snap.stage_labels(v).is_empty())
            .map(|v| format!("{REVOKED_TAG_PREFIX}{v}"))
            .collect();
        if !stale.is_empty() {
            client
                .untag_resource()
                .secret_id(key)
                .set_tag_keys(Some(stale))
                .send()
                .await
                .map_err(|e| aws_error(&e, format_args!("secret {key}: removing old revocation tags")))?;
        }
        let tag = Tag::builder()
            .key(format!("{REVOKED_TAG_PREFIX}{version}"))
            .value(rfc3339(SystemTime::now()))
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

    async fn read_once(&self, key: &str) -> ProviderResult<Option<KeyState>> {
        let Some(snap) = self.describe(key).await? else {
            return Err(ProviderError::not_found(format!(
                "secret {key} not found in Secrets Manager ({})",
                self.where_()
            )));
        };
        if snap.deleted {
            return Err(scheduled_for_deletion(key));
        }
        let mut versions = Vec::new();
        for version in snap.staged() {
            let Some(found) = self.fetch(key, version).await? else {
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

#[async_trait]
impl Store for SecretsManagerStore {
    fn capabilities(&self) -> StoreCapabilities {
        StoreCapabilities {
            compare_and_set: true,
            hides_pending_from_readers: true,
        }
    }

    fn describe(&self) -> String {
        format!("aws-secretsmanager ({})", self.where_())
    }

    async fn read(&self, key: &str) -> ProviderResult<KeyState> {
        check_key(key)?;
        for _ in 0..READ_ATTEMPTS {
            if let Some(state) = self.read_once(key).await? {
                return Ok(state);
            }
        }
        Err(ProviderError::conflict(format!(
            "secret {key}: its labels kept moving while being read ({READ_ATTEMPTS} attempts)"
        )))
    }

    async fn check_writable(&self, key: &str) -> ProviderResult<()> {
        self.check_writable_report(key).await.map(|_| ())
    }

    async fn put_current(&self, key: &str, version_id_: &str, doc: &SecretDoc) -> ProviderResult<()> {
        check_key(key)?;
        let version = token(version_id_).map_err(|e| e.context(format_args!("secret {key}")))?;
        let snap = match self.describe(key).await? {
            Some(snap) => snap,
            None => {
                if self.create(key, &version, doc).await? {
                    return Ok(());
                }
                self.describe(key).await?.ok_or_else(|| {
                    ProviderError::conflict(format!(
                        "secret {key} was created and deleted by someone else meanwhile"
                    ))
                })?
            }
        };
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
        if snap.has(&version, AWSCURRENT) {
            return match self.fetch(key, &version).await? {
                Some(found) if found.doc == *doc => {
                    // A retried import: finish what the first attempt may have left.
                    if snap.has(&version, AWSPENDING) {
                        self.move_label(key, AWSPENDING, None, Some(&version), "clearing AWSPENDING")
                            .await?;
                    }
                    self.drop_write_label(key, &version).await;
                    Ok(())
                }
                _ => Err(version_exists_otherwise(key, version_id_)),
            };
        }
        if snap.has(&version, AWSPREVIOUS) {
            return Err(ProviderError::conflict(format!(
                "secret {key}: version {version_id_} exists already as the previous version"
            ))
            .retryable(false));
        }
        self.ensure_written(key, &version, doc, &snap).await?;
        self.claim(key, &version, &snap).await?;
        match snap.holder(AWSCURRENT) {
            Some(old) => {
                // AWSPENDING left on the old current would turn into a pending version.
                if snap.has(old, AWSPENDING) {
                    self.move_label(
                        key,
                        AWSPENDING,
                        None,
                        Some(old),
                        "clearing a finished rotation's AWSPENDING",
                    )
                    .await?;
                }
                self.move_label(key, AWSCURRENT, Some(&version), Some(old), "moving AWSCURRENT")
                    .await?;
                // AWS made the replaced version AWSPREVIOUS; an import leaves it no stage.
                match self.move_label(key, AWSPREVIOUS, None, Some(old), "").await {
                    Ok(()) => {}
                    Err(e) if e.kind() == ErrorKind::Conflict => {}
                    Err(e) => return Err(e.context(format_args!("secret {key}: removing AWSPREVIOUS"))),
                }
            }
            None => {
                self.move_label(key, AWSCURRENT, Some(&version), None, "attaching AWSCURRENT")
                    .await?
            }
        }
        self.drop_write_label(key, &version).await;
        Ok(())
    }

    async fn stage_pending(&self, key: &str, version_id_: &str, doc: &SecretDoc) -> ProviderResult<()> {
        check_key(key)?;
        let version = token(version_id_).map_err(|e| e.context(format_args!("secret {key}")))?;
        let snap = match self.describe(key).await? {
            Some(snap) => snap,
            None => {
                // A new secret: AWS makes its first version AWSCURRENT (there is no
                // older secret for readers to keep using).
                if self.create(key, &version, doc).await? {
                    return Ok(());
                }
                self.describe(key).await?.ok_or_else(|| {
                    ProviderError::conflict(format!(
                        "secret {key} was created and deleted by someone else meanwhile"
                    ))
                })?
            }
        };
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
            return match self.fetch(key, &version).await? {
                Some(found) if found.doc == *doc => {
                    self.drop_write_label(key, &version).await;
                    Ok(())
                }
                _ => Err(version_exists_otherwise(key, version_id_)),
            };
        }
        if snap.has(&version, AWSCURRENT) || snap.has(&version, AWSPREVIOUS) {
            // A secret this store created with its first version is current at once.
            if snap.has(&version, AWSCURRENT) {
                if let Some(found) = self.fetch(key, &version).await? {
                    if found.doc == *doc {
                        return Ok(());
                    }
                }
            }
            return Err(ProviderError::conflict(format!(
                "secret {key}: version {version_id_} exists already as {}",
                if snap.has(&version, AWSCURRENT) {
                    "the current version"
                } else {
                    "the previous version"
                }
            ))
            .retryable(false));
        }
        self.ensure_written(key, &version, doc, &snap).await?;
        self.claim(key, &version, &snap).await?;
        self.move_label(
            key,
            AWSPENDING,
            Some(&version),
            snap.stale_pending(),
            "attaching AWSPENDING",
        )
        .await?;
        self.drop_write_label(key, &version).await;
        Ok(())
    }

    async fn promote(&self, key: &str, version_id_: &str, previous_revoked: bool) -> ProviderResult<()> {
        check_key(key)?;
        let version = token(version_id_).map_err(|e| e.context(format_args!("secret {key}")))?;
        let Some(snap) = self.describe(key).await? else {
            return Err(ProviderError::conflict(format!(
                "secret {key} does not exist: there is no version {version_id_} to promote"
            ))
            .retryable(false));
        };
        if snap.has(&version, AWSCURRENT) {
            // Already promoted (a retry, or a first version): finish what is left.
            if snap.has(&version, AWSPENDING) {
                self.move_label(key, AWSPENDING, None, Some(&version), "removing AWSPENDING")
                    .await?;
            }
            if previous_revoked {
                if let Some(previous) = snap.holder(AWSPREVIOUS) {
                    self.tag_revoked(key, previous, &snap).await?;
                }
            }
            return Ok(());
        }
        if !snap.has(&version, AWSPENDING) {
            return Err(ProviderError::conflict(format!(
                "secret {key}: version {version_id_} is neither pending nor current"
            ))
            .retryable(false));
        }
        let old = snap.holder(AWSCURRENT);
        // AWS's finishSecret: AWSCURRENT moves from the old current, which AWS makes
        // AWSPREVIOUS (taking that label from the version before).
        self.move_label(key, AWSCURRENT, Some(&version), old, "moving AWSCURRENT")
            .await?;
        if previous_revoked {
            if let Some(old) = old {
                self.tag_revoked(key, old, &snap).await?;
            }
        }
        self.move_label(key, AWSPENDING, None, Some(&version), "removing AWSPENDING")
            .await?;
        Ok(())
    }

    async fn mark_revoked(&self, key: &str, version_id_: &str) -> ProviderResult<()> {
        check_key(key)?;
        let version = token(version_id_).map_err(|e| e.context(format_args!("secret {key}")))?;
        let Some(snap) = self.describe(key).await? else {
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
        self.tag_revoked(key, &version, &snap).await
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
}

impl SecretsManagerStore {
    /// One attempt of [`Store::discard_pending`]: reads the labels, claims the write
    /// ([`CAS_LABEL`]) and removes `AWSPENDING` from `version`, which AWS refuses when
    /// the version no longer holds it. The version keeps its value (and the claim label,
    /// until the next write moves it); AWS lists it as deprecated once it holds no label.
    async fn discard_once(&self, key: &str, version: &str, version_id_: &str) -> ProviderResult<()> {
        let Some(snap) = self.describe(key).await? else {
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
            // left on the current version is a finished rotation's, not a pending one.
            return Ok(());
        };
        if pending != version {
            return Err(ProviderError::conflict(format!(
                "secret {key}: cannot discard version {version_id_}: the pending version is {}",
                version_id(pending)
            ))
            .retryable(false));
        }
        self.claim(key, version, &snap).await?;
        self.move_label(key, AWSPENDING, None, Some(version), "removing AWSPENDING")
            .await?;
        self.drop_write_label(key, version).await;
        Ok(())
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
    fn pending_on_the_current_version_is_a_leftover() {
        let s = snap(&[("a", &[AWSCURRENT, AWSPENDING]), ("b", &[AWSPREVIOUS])]);
        assert_eq!(s.pending(), None);
        assert_eq!(s.stale_pending(), Some("a"));
        assert_eq!(stages_of(&s.stage_labels("a")), vec![Stage::Current]);
        let s = snap(&[("a", &[AWSCURRENT]), ("b", &[AWSPENDING]), ("c", &[WRITE_LABEL])]);
        assert_eq!(s.pending(), Some("b"));
        assert_eq!(s.staged(), vec!["a", "b"]);
    }

    #[test]
    fn timestamps_round_trip() {
        let now = SystemTime::UNIX_EPOCH + std::time::Duration::from_secs(1_795_000_000);
        let text = rfc3339(now);
        assert!(text.ends_with('Z'), "{text}");
        assert_eq!(parse_rfc3339(&text), Some(now));
    }
}
