//! [`IamTarget`]: an IAM user's access key.

mod incident;

pub use incident::SESSION_POLICY_PREFIX;

use crate::config::AwsIamTargetConfig;
use crate::error::{aws_error, classify, code, with_details};
use crate::provider::Shared;
use async_trait::async_trait;
use aws_sdk_iam::config::http::HttpResponse;
use aws_sdk_iam::types::{PolicyEvaluationDecisionType, StatusType};
use rekey_api::{
    ErrorKind, ProviderError, ProviderResult, RevokeOptions, RevokeReport, Secret, SecretDoc, Strategy, Target,
    TargetCapabilities, Timestamp,
};
use std::collections::HashSet;
use std::fmt;
use std::sync::Arc;
use std::time::{Duration, SystemTime};
use zeroize::Zeroizing;

/// The document's `engine` for IAM access keys.
pub const ENGINE: &str = "aws-iam";
/// The document field holding the access key id (not secret: it names the key).
pub const ACCESS_KEY_ID: &str = "access_key_id";
/// The document field holding the secret access key.
pub const SECRET_ACCESS_KEY: &str = "secret_access_key";
/// Waits (ms) before listing a user's keys again when `apply` does not see the new key.
const APPLY_LIST_RETRIES: [u64; 4] = [250, 500, 1000, 2000];
/// IAM's limit of access keys per user.
const KEYS_PER_USER: usize = 2;
/// What the administrator needs on the user, checked by `preflight` when the account
/// lets it simulate.
const NEEDED_ACTIONS: [&str; 5] = [
    "iam:ListAccessKeys",
    "iam:CreateAccessKey",
    "iam:UpdateAccessKey",
    "iam:DeleteAccessKey",
    "iam:GetAccessKeyLastUsed",
];

/// Options of the IAM target that are decisions of the run, not of the configuration.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct IamOptions {
    /// When the user already holds two keys at `prepare` and the one that is not stored
    /// is *inactive*, delete it to make room (`--delete-inactive`). An active extra key
    /// is never deleted.
    pub delete_inactive: bool,
}

/// An IAM user's access key, rotated with strategy `dual`: IAM lets a user hold two
/// keys, so the new key (minted by IAM at `prepare`) and the old one both work from
/// `apply` until `revoke`.
///
/// | step | IAM / STS calls |
/// | --- | --- |
/// | `prepare` | `ListAccessKeys`, (`DeleteAccessKey` of an inactive extra key with `delete_inactive`), `CreateAccessKey` |
/// | `apply` | `ListAccessKeys`; `UpdateAccessKey Active` if the new key was deactivated |
/// | `login` | STS `GetCallerIdentity` signed with the document's key |
/// | `verify` | `login`, and the caller ARN must be the configured user |
/// | `retire` | `UpdateAccessKey Inactive` on the old key |
/// | `revoke` | `UpdateAccessKey Inactive`, `DeleteAccessKey` on the old key (a missing key is success) |
/// | `revoke` with `terminate_sessions` | first `GetAccessKeyLastUsed` of the old key (a note; its failure is noted, not fatal), then `ListUserPolicies`, `DeleteUserPolicy` of rekey's expired session-revocation policies, `PutUserPolicy` of a new one ([`SESSION_POLICY_PREFIX`]) |
/// | `sweep_unstored` | `ListAccessKeys`; for a key stored nowhere created since the newest stored version, `GetAccessKeyLastUsed`, then `UpdateAccessKey Inactive`, `DeleteAccessKey` |
/// | `incident_preflight` | STS `GetCallerIdentity`, `GetUser`, `ListUserPolicies`, `iam:SimulatePrincipalPolicy` for the policy actions |
///
/// **Incident mode** (`terminate_sessions`): deleting a key does not end the STS
/// sessions obtained with it (`GetSessionToken`, `GetFederationToken`, up to 36 h). After
/// deleting the old key, `revoke` attaches to the user an inline policy named
/// `rekey-revoke-sessions-<unix time>` that denies every action to requests signed with
/// temporary credentials issued before that time (condition `DateLessThan
/// aws:TokenIssueTime`, AWS's documented way to revoke sessions). The time is the next
/// whole second plus 2 s of clock skew allowance. The policy is on the user, so STS
/// sessions the *new* key obtained before that time (between `apply` and `revoke`, or
/// in those seconds) are refused too; new ones work. Sessions of *roles* assumed with
/// the key follow the role's policies and are not ended. 36 h after its time such a policy denies nothing;
/// the next incident revoke on the user removes it. A re-run of the revoke (the key
/// already gone, a policy from this rotation in place) attaches no second one.
/// [`RevokeReport::sessions_terminated`] stays 0: the policy ends sessions without
/// counting them; [`IamTarget::session_policy_facts`] says which policies are in force.
///
/// **Sweep** (`sweep_unstored`): a key of the user that no stored document names, created
/// at or after `since` minus 2 s (clock skew between this machine and IAM, and IAM's
/// whole-second `CreateDate`), and that IAM records as **never used**, is a key rekey
/// minted and lost (a crash between mint and stage, or a lost answer): nobody knows its
/// secret. It is deactivated and deleted. Inactive keys, older keys, keys someone used, and every key
/// when nothing is stored or a stored document names no key, are left alone. A key a
/// person created after the newest stored version and has not used yet looks the same
/// and is deleted too (IAM records a use with a delay of up to hours).
///
/// The stored document is a flat JSON object in the shape of AWS's rotation secrets:
/// `{"engine": "aws-iam", "username": USER, "access_key_id": "AKIA…",
/// "secret_access_key": "…"}` plus any other field the current document had. A
/// `password` field, when present, is taken as the secret access key instead of
/// `secret_access_key` (it is what `rekey import` of a bare value writes, and the one
/// secret field every tool knows); documents this target prepares never have one.
///
/// Created by [`crate::AwsProvider::aws_iam_target`].
pub struct IamTarget {
    config: AwsIamTargetConfig,
    options: IamOptions,
    shared: Arc<Shared>,
    capabilities: TargetCapabilities,
}

impl fmt::Debug for IamTarget {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("IamTarget")
            .field("config", &self.config)
            .field("options", &self.options)
            .finish_non_exhaustive()
    }
}

/// One of the user's keys, as IAM lists it.
#[derive(Debug, Clone)]
struct KeyInfo {
    id: String,
    active: bool,
    created: Option<SystemTime>,
}

impl KeyInfo {
    fn status(&self) -> &'static str {
        if self.active {
            "active"
        } else {
            "inactive"
        }
    }
}

/// The access key id and secret access key of a document.
fn key_of(doc: &SecretDoc, which: &str) -> ProviderResult<(String, Secret)> {
    let id = doc
        .get_str(ACCESS_KEY_ID)
        .filter(|s| !s.is_empty())
        .ok_or_else(|| ProviderError::invalid_input(format!("the {which} secret has no `{ACCESS_KEY_ID}` field")))?;
    let secret = doc
        .password()
        .or_else(|| doc.get_str(SECRET_ACCESS_KEY).map(Secret::from))
        .ok_or_else(|| {
            ProviderError::invalid_input(format!(
                "the {which} secret (access key {id}) has no `{SECRET_ACCESS_KEY}` field"
            ))
        })?;
    Ok((id.to_owned(), secret))
}

fn key_id_of(doc: &SecretDoc, which: &str) -> ProviderResult<String> {
    doc.get_str(ACCESS_KEY_ID)
        .filter(|s| !s.is_empty())
        .map(str::to_owned)
        .ok_or_else(|| ProviderError::invalid_input(format!("the {which} secret has no `{ACCESS_KEY_ID}` field")))
}

/// The user name in an IAM user ARN (`arn:aws:iam::123:user/path/name` → `name`).
fn user_of_arn(arn: &str) -> Option<&str> {
    let resource = arn.splitn(6, ':').nth(5)?;
    let path = resource.strip_prefix("user/")?;
    path.rsplit('/').next()
}

/// The IAM ARN a caller ARN stands for, for policy simulation (an assumed role's
/// session ARN becomes its role's ARN).
fn principal_arn(caller: &str) -> String {
    let parts: Vec<&str> = caller.splitn(6, ':').collect();
    if parts.len() == 6 && parts[2] == "sts" {
        if let Some(rest) = parts[5].strip_prefix("assumed-role/") {
            let role = rest.split('/').next().unwrap_or(rest);
            return format!("arn:{}:iam::{}:role/{role}", parts[1], parts[4]);
        }
    }
    caller.to_owned()
}

impl IamTarget {
    pub(crate) fn new(config: AwsIamTargetConfig, options: IamOptions, shared: Arc<Shared>) -> Self {
        IamTarget {
            capabilities: TargetCapabilities {
                strategies: vec![Strategy::Dual],
                strategy: Strategy::Dual,
                terminate_sessions: true,
                mints_own_secret: true,
                apply_invalidates_previous: false,
                retires_previous: true,
            },
            config,
            options,
            shared,
        }
    }

    /// The configuration this target was built from.
    pub fn config(&self) -> &AwsIamTargetConfig {
        &self.config
    }

    /// The run options this target was built with.
    pub fn options(&self) -> IamOptions {
        self.options
    }

    fn user(&self) -> &str {
        &self.config.user
    }

    fn check_username(&self, doc: &SecretDoc, which: &str) -> ProviderResult<()> {
        match doc.username() {
            Some(user) if user != self.user() => Err(ProviderError::invalid_input(format!(
                "the {which} secret's username {user:?} is not the configured IAM user {:?}",
                self.user()
            ))),
            _ => Ok(()),
        }
    }

    /// The user's access keys, oldest first.
    async fn list_keys(&self) -> ProviderResult<Vec<KeyInfo>> {
        let iam = self.shared.iam().await;
        let out = iam
            .list_access_keys()
            .user_name(self.user())
            .send()
            .await
            .map_err(|e| self.iam_error(&e, "listing the access keys"))?;
        let mut keys: Vec<KeyInfo> = out
            .access_key_metadata()
            .iter()
            .filter_map(|k| {
                Some(KeyInfo {
                    id: k.access_key_id()?.to_owned(),
                    active: k.status() == Some(&StatusType::Active),
                    created: k.create_date().and_then(|t| SystemTime::try_from(*t).ok()),
                })
            })
            .collect();
        keys.sort_by_key(|k| k.created);
        Ok(keys)
    }

    /// An IAM error about this user; a missing user is named as such.
    fn iam_error<E>(&self, err: &aws_sdk_iam::error::SdkError<E, HttpResponse>, action: &str) -> ProviderError
    where
        E: aws_sdk_iam::error::ProvideErrorMetadata + std::error::Error + 'static,
    {
        aws_error(err, format_args!("IAM user {}: {action}", self.user()))
    }

    /// The two-key problem, in words: `None` when there is room for a new key.
    fn two_keys(&self, keys: &[KeyInfo], stored: Option<&str>) -> Option<TwoKeys> {
        if keys.len() < KEYS_PER_USER {
            return None;
        }
        let listed: Vec<String> = keys
            .iter()
            .map(|k| {
                let mark = if Some(k.id.as_str()) == stored { ", stored" } else { "" };
                format!("{} {}{mark}", k.id, k.status())
            })
            .collect();
        let extras: Vec<&KeyInfo> = keys.iter().filter(|k| Some(k.id.as_str()) != stored).collect();
        let deletable = extras.iter().find(|k| !k.active).map(|k| k.id.clone());
        let base = format!(
            "user {} already has two access keys ({}); IAM allows two",
            self.user(),
            listed.join(", ")
        );
        let message = match (&deletable, self.options.delete_inactive) {
            (Some(_), true) => base.clone(),
            (Some(_), false) => {
                format!("{base}; remove the one not stored, or pass --delete-inactive when it is inactive")
            }
            (None, _) => format!(
                "{base}; the key not stored is active, so rekey does not delete it even with --delete-inactive: \
                 remove it yourself once nothing uses it (aws iam delete-access-key --user-name {} --access-key-id {})",
                self.user(),
                extras.first().map(|k| k.id.as_str()).unwrap_or("…")
            ),
        };
        Some(TwoKeys {
            message,
            delete: deletable.filter(|_| self.options.delete_inactive),
        })
    }

    /// STS `GetCallerIdentity` signed with `doc`'s key; returns the caller ARN.
    async fn caller_identity(&self, doc: &SecretDoc) -> ProviderResult<String> {
        let (id, secret) = key_of(doc, "given")?;
        let sts = self.shared.sts_as(&id, &secret).await;
        match sts.get_caller_identity().send().await {
            Ok(out) => Ok(out.arn().unwrap_or_default().to_owned()),
            Err(e) => {
                let (kind, text) = classify(&e);
                let message = format!(
                    "access key {id} of IAM user {}: STS GetCallerIdentity: {text}",
                    self.user()
                );
                Err(with_details(ProviderError::new(kind, message), &e))
            }
        }
    }

    /// Deactivates a key; a missing key is fine.
    async fn deactivate(&self, id: &str) -> ProviderResult<bool> {
        let iam = self.shared.iam().await;
        match iam
            .update_access_key()
            .user_name(self.user())
            .access_key_id(id)
            .status(StatusType::Inactive)
            .send()
            .await
        {
            Ok(_) => Ok(true),
            Err(e) if code(&e) == Some("NoSuchEntity") => Ok(false),
            Err(e) => Err(self.iam_error(&e, &format!("deactivating access key {id}"))),
        }
    }

    /// Deletes a key; a missing key is fine.
    async fn delete(&self, id: &str) -> ProviderResult<bool> {
        let iam = self.shared.iam().await;
        match iam
            .delete_access_key()
            .user_name(self.user())
            .access_key_id(id)
            .send()
            .await
        {
            Ok(_) => Ok(true),
            Err(e) if code(&e) == Some("NoSuchEntity") => Ok(false),
            Err(e) => Err(self.iam_error(&e, &format!("deleting access key {id}"))),
        }
    }

    /// `sweep_unstored`: deletes the keys stored nowhere, created since `since` (minus
    /// the clock skew allowance) and never used.
    async fn sweep(&self, stored: &[&SecretDoc], since: Timestamp) -> ProviderResult<Vec<String>> {
        let mut known = HashSet::new();
        for doc in stored {
            match doc.get_str(ACCESS_KEY_ID).filter(|s| !s.is_empty()) {
                Some(id) => known.insert(id.to_owned()),
                // Which key that document holds is unknown: any key may be it.
                None => return Ok(Vec::new()),
            };
        }
        if known.is_empty() {
            // Nothing stored: rekey's keys cannot be told from anyone else's.
            return Ok(Vec::new());
        }
        let cutoff = since.checked_sub(incident::CLOCK_SKEW).unwrap_or(since);
        let mut removed = Vec::new();
        for key in self.list_keys().await? {
            if known.contains(&key.id) || !key.active {
                // Stored, or inactive: IAM mints keys active, so an inactive key was
                // deactivated by someone (that is `--delete-inactive`'s business).
                continue;
            }
            match key.created {
                Some(created) if created >= cutoff => {}
                // Older than the newest stored version (or of unknown age): not rekey's.
                _ => continue,
            }
            let used = match self.last_use(&key.id).await {
                Ok(used) => used,
                Err(e) if e.kind() == ErrorKind::NotFound => continue,
                Err(e) => {
                    return Err(e.context(format!(
                        "sweeping access key {}, stored nowhere and created after the newest stored version \
                         (deleted only when IAM records no use of it)",
                        key.id
                    )))
                }
            };
            if used.is_some() {
                // Someone knows its secret: not a key rekey minted and lost.
                continue;
            }
            if !self.deactivate(&key.id).await? {
                continue; // deleted meanwhile
            }
            self.delete(&key.id).await?;
            removed.push(key.id);
        }
        Ok(removed)
    }

    /// Whether the administrator may manage the user's keys, by policy simulation.
    async fn simulate(&self, caller_arn: &str, user_arn: &str) -> String {
        match self.simulate_actions(caller_arn, user_arn, &NEEDED_ACTIONS).await {
            Simulation::Allowed => format!(
                "permissions: the caller may {} on user {}",
                NEEDED_ACTIONS.join(", "),
                self.user()
            ),
            Simulation::Denied(denied) => format!(
                "permissions: the caller may NOT {} on user {} (policy simulation)",
                denied.join(", "),
                self.user()
            ),
            Simulation::NotChecked(why) => format!("permissions: not checked ({why})"),
        }
    }

    /// Whether the caller may run `actions` on the user, by policy simulation.
    async fn simulate_actions(&self, caller_arn: &str, user_arn: &str, actions: &[&str]) -> Simulation {
        let iam = self.shared.iam().await;
        let result = iam
            .simulate_principal_policy()
            .policy_source_arn(principal_arn(caller_arn))
            .set_action_names(Some(actions.iter().map(|s| s.to_string()).collect()))
            .resource_arns(user_arn)
            .send()
            .await;
        match result {
            Ok(out) => {
                let denied: Vec<String> = out
                    .evaluation_results()
                    .iter()
                    .filter(|r| r.eval_decision() != &PolicyEvaluationDecisionType::Allowed)
                    .map(|r| r.eval_action_name().to_owned())
                    .collect();
                if denied.is_empty() {
                    Simulation::Allowed
                } else {
                    Simulation::Denied(denied)
                }
            }
            Err(e) => {
                let (kind, text) = classify(&e);
                Simulation::NotChecked(if kind == ErrorKind::PermissionDenied {
                    "the caller may not run iam:SimulatePrincipalPolicy".to_owned()
                } else {
                    format!("iam:SimulatePrincipalPolicy failed: {text}")
                })
            }
        }
    }
}

/// What a policy simulation said.
enum Simulation {
    Allowed,
    /// The actions not allowed.
    Denied(Vec<String>),
    /// Why nothing could be said.
    NotChecked(String),
}

/// Two keys already: what to say, and which key `delete_inactive` removes.
struct TwoKeys {
    message: String,
    delete: Option<String>,
}

#[async_trait]
impl Target for IamTarget {
    fn capabilities(&self) -> &TargetCapabilities {
        &self.capabilities
    }

    fn describe(&self) -> String {
        format!(
            "aws-iam access key of user {} ({})",
            self.user(),
            self.shared.key.describe()
        )
    }

    fn complete(&self, doc: &mut SecretDoc) {
        doc.set_default("engine", ENGINE);
        doc.set_default("username", self.user());
    }

    /// What incident mode does here and whether the caller may: STS `GetCallerIdentity`,
    /// `GetUser`, `ListUserPolicies` (rekey's session-revocation policies, in force and
    /// expired), and `iam:SimulatePrincipalPolicy` for `iam:PutUserPolicy`,
    /// `iam:ListUserPolicies` and `iam:DeleteUserPolicy` on the user.
    /// [`ErrorKind::PermissionDenied`] when the simulation says `PutUserPolicy` is
    /// denied; where simulation is unavailable (not allowed, or moto) a line says
    /// `PutUserPolicy` was not checked.
    async fn incident_preflight(&self) -> ProviderResult<Vec<String>> {
        self.incident_checks().await
    }

    /// Deletes the user's keys that no stored document names, created at or after
    /// `since` minus 2 s of clock skew, and never used (see the type's documentation).
    async fn sweep_unstored(&self, stored: &[&SecretDoc], since: Timestamp) -> ProviderResult<Vec<String>> {
        self.sweep(stored, since).await
    }

    async fn preflight(&self, current: Option<&SecretDoc>) -> ProviderResult<Vec<String>> {
        let mut lines = Vec::new();
        if let Some(doc) = current {
            self.check_username(doc, "current")?;
        }
        let sts = self.shared.sts().await;
        let caller = sts.get_caller_identity().send().await.map_err(|e| {
            aws_error(
                &e,
                format_args!(
                    "IAM user {}: checking rekey's own AWS credentials (STS GetCallerIdentity)",
                    self.user()
                ),
            )
        })?;
        let caller_arn = caller.arn().unwrap_or_default().to_owned();
        lines.push(format!("AWS credentials work: caller {caller_arn}"));

        let iam = self.shared.iam().await;
        let user = iam
            .get_user()
            .user_name(self.user())
            .send()
            .await
            .map_err(|e| self.iam_error(&e, "looking up the user"))?;
        let user_arn = user.user().map(|u| u.arn().to_owned()).unwrap_or_default();
        lines.push(format!("IAM user {} exists ({user_arn})", self.user()));

        let keys = self.list_keys().await?;
        let stored = current.and_then(|d| d.get_str(ACCESS_KEY_ID));
        let listed: Vec<String> = keys
            .iter()
            .map(|k| {
                let mark = if Some(k.id.as_str()) == stored {
                    ", stored as current"
                } else {
                    ""
                };
                format!("{} {}{mark}", k.id, k.status())
            })
            .collect();
        lines.push(format!(
            "user {} has {} access key(s){}",
            self.user(),
            keys.len(),
            if listed.is_empty() {
                String::new()
            } else {
                format!(": {}", listed.join(", "))
            }
        ));
        if let Some(stored) = stored {
            if !keys.iter().any(|k| k.id == stored) {
                lines.push(format!(
                    "warning: the stored access key {stored} is not one of user {}'s keys (deleted outside rekey?)",
                    self.user()
                ));
            }
        }
        if let Some(problem) = self.two_keys(&keys, stored) {
            match problem.delete {
                Some(id) => lines.push(format!(
                    "{}; prepare will delete the inactive key {id} first (--delete-inactive)",
                    problem.message
                )),
                None => return Err(ProviderError::conflict(problem.message).retryable(false)),
            }
        }
        lines.push(self.simulate(&caller_arn, &user_arn).await);
        Ok(lines)
    }

    async fn prepare(&self, current: Option<&SecretDoc>, _password: Secret) -> ProviderResult<SecretDoc> {
        if let Some(doc) = current {
            self.check_username(doc, "current")?;
        }
        let stored = current.and_then(|d| d.get_str(ACCESS_KEY_ID));
        let keys = self.list_keys().await?;
        if let Some(problem) = self.two_keys(&keys, stored) {
            match problem.delete {
                Some(id) => {
                    self.delete(&id).await?;
                }
                None => return Err(ProviderError::conflict(problem.message).retryable(false)),
            }
        }
        let iam = self.shared.iam().await;
        let mut out = iam
            .create_access_key()
            .user_name(self.user())
            .send()
            .await
            .map_err(|e| {
                let err = self.iam_error(&e, "creating an access key");
                if err.kind() == ErrorKind::Conflict {
                    err.retryable(false)
                } else {
                    err
                }
            })?;
        let Some(key) = out.access_key.take() else {
            return Err(ProviderError::other(format!(
                "IAM user {}: CreateAccessKey answered without a key",
                self.user()
            )));
        };
        let secret = Zeroizing::new(key.secret_access_key);
        let mut doc = SecretDoc::new();
        if let Some(current) = current {
            // Keep the current document's own fields (the rotation JSON shape), but
            // never its key or a `password` that would shadow the new secret.
            for name in current.field_names() {
                if matches!(name, "password" | ACCESS_KEY_ID | SECRET_ACCESS_KEY) {
                    continue;
                }
                if let Some(value) = current.get(name) {
                    doc.set(name, value.clone());
                }
            }
        }
        doc.set("engine", ENGINE);
        doc.set("username", self.user());
        doc.set(ACCESS_KEY_ID, key.access_key_id.as_str());
        doc.set(SECRET_ACCESS_KEY, secret.as_str());
        Ok(doc)
    }

    async fn apply(&self, new: &SecretDoc, _current: Option<&SecretDoc>) -> ProviderResult<()> {
        self.check_username(new, "new")?;
        let id = key_id_of(new, "new")?;
        // IAM is eventually consistent: a key created a moment ago may not be listed yet.
        let mut keys = self.list_keys().await?;
        for delay in APPLY_LIST_RETRIES {
            if keys.iter().any(|k| k.id == id) {
                break;
            }
            tokio::time::sleep(Duration::from_millis(delay)).await;
            keys = self.list_keys().await?;
        }
        match keys.iter().find(|k| k.id == id) {
            Some(k) if k.active => Ok(()),
            Some(_) => {
                let iam = self.shared.iam().await;
                iam.update_access_key()
                    .user_name(self.user())
                    .access_key_id(&id)
                    .status(StatusType::Active)
                    .send()
                    .await
                    .map_err(|e| self.iam_error(&e, &format!("reactivating access key {id}")))?;
                Ok(())
            }
            None => Err(ProviderError::not_found(format!(
                "IAM user {}: the new access key {id} no longer exists (deleted after it was created); \
                 this rotation cannot finish with it",
                self.user()
            ))),
        }
    }

    async fn login(&self, doc: &SecretDoc) -> ProviderResult<()> {
        self.caller_identity(doc).await.map(|_| ())
    }

    async fn verify(&self, doc: &SecretDoc) -> ProviderResult<()> {
        let arn = self.caller_identity(doc).await?;
        match user_of_arn(&arn) {
            Some(user) if user == self.user() => Ok(()),
            _ => Err(ProviderError::invalid_input(format!(
                "access key {} works but belongs to {arn}, not IAM user {}",
                doc.get_str(ACCESS_KEY_ID).unwrap_or("?"),
                self.user()
            ))),
        }
    }

    async fn retire(&self, old: &SecretDoc, new: &SecretDoc) -> ProviderResult<Option<String>> {
        let old_id = key_id_of(old, "old")?;
        if new.get_str(ACCESS_KEY_ID) == Some(old_id.as_str()) {
            return Err(ProviderError::invalid_input(format!(
                "IAM user {}: refusing to deactivate access key {old_id}: it is also the new key",
                self.user()
            )));
        }
        Ok(Some(if self.deactivate(&old_id).await? {
            format!("deactivated access key {old_id}")
        } else {
            format!("access key {old_id} was already deleted")
        }))
    }

    async fn revoke(&self, old: &SecretDoc, new: &SecretDoc, options: RevokeOptions) -> ProviderResult<RevokeReport> {
        let old_id = key_id_of(old, "old")?;
        if new.get_str(ACCESS_KEY_ID) == Some(old_id.as_str()) {
            return Err(ProviderError::invalid_input(format!(
                "IAM user {}: refusing to delete access key {old_id}: it is also the new key",
                self.user()
            )));
        }
        let mut notes = Vec::new();
        if options.terminate_sessions {
            // Who used the leaked key, for the incident record: read before the
            // deletion, as IAM keeps no record for a deleted key.
            notes.push(self.last_use_note(&old_id).await);
        }
        // Deactivate first: if the delete fails, the key is at least unusable.
        let was_there = self.deactivate(&old_id).await?;
        if was_there {
            self.delete(&old_id).await?;
        }
        if options.terminate_sessions {
            // After the deletion: no session of the old key can be issued later than this.
            let policy = self.end_sessions(&old_id, was_there, new).await?;
            notes.push(policy.note(self.user()));
        }
        // The policy refuses sessions without counting them: nothing to count here.
        Ok(RevokeReport {
            sessions_terminated: 0,
            notes,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn arns() {
        assert_eq!(user_of_arn("arn:aws:iam::123456789012:user/ci"), Some("ci"));
        assert_eq!(user_of_arn("arn:aws:iam::123456789012:user/team/x/ci"), Some("ci"));
        assert_eq!(user_of_arn("arn:aws:sts::123456789012:assumed-role/R/s"), None);
        assert_eq!(
            principal_arn("arn:aws:sts::123456789012:assumed-role/Admin/session-1"),
            "arn:aws:iam::123456789012:role/Admin"
        );
        assert_eq!(
            principal_arn("arn:aws:iam::123456789012:user/admin"),
            "arn:aws:iam::123456789012:user/admin"
        );
    }

    #[test]
    fn password_overrides_secret_access_key() {
        let mut doc = SecretDoc::new();
        doc.set(ACCESS_KEY_ID, "AKIA1");
        doc.set(SECRET_ACCESS_KEY, "real");
        assert_eq!(key_of(&doc, "x").unwrap().1.expose(), "real");
        doc.set("password", "other");
        assert_eq!(key_of(&doc, "x").unwrap().1.expose(), "other");
        let empty = SecretDoc::new();
        assert_eq!(key_of(&empty, "x").unwrap_err().kind(), ErrorKind::InvalidInput);
    }
}
