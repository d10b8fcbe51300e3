//! Incident mode of the IAM target: the inline policy that refuses STS sessions issued
//! before the revocation, and the last-use record of a key.
//!
//! Deleting an access key does not end the temporary credentials already obtained with
//! it (`GetSessionToken`, `GetFederationToken`). AWS's documented remedy is an explicit
//! deny on the user for tokens issued before a time (`aws:TokenIssueTime`); such a policy
//! has no effect any more once the longest session (36 h) issued before that time has
//! expired.

use super::{IamTarget, ACCESS_KEY_ID};
use crate::error::{classify, code};
use aws_sdk_iam::primitives::{DateTime, DateTimeFormat};
use rekey_api::{ErrorKind, ProviderError, ProviderResult, SecretDoc};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// Name prefix of the inline user policies rekey attaches in incident mode to refuse STS
/// sessions issued before a revocation; the rest of the name is the cut-off as Unix
/// seconds (`rekey-revoke-sessions-1764504000`).
pub const SESSION_POLICY_PREFIX: &str = "rekey-revoke-sessions-";

/// The longest an STS session of an IAM user lasts (`GetSessionToken` and
/// `GetFederationToken`: 129,600 s). A revocation policy older than this denies nothing.
pub(super) const MAX_SESSION: Duration = Duration::from_secs(36 * 3600);

/// Clock skew allowed between this machine and AWS: the policy's cut-off is moved this
/// much later, and the sweep of unstored keys looks this much earlier than `since`.
pub(super) const CLOCK_SKEW: Duration = Duration::from_secs(2);

/// What the administrator needs for incident mode.
pub(super) const INCIDENT_ACTIONS: [&str; 3] = ["iam:PutUserPolicy", "iam:ListUserPolicies", "iam:DeleteUserPolicy"];

/// One of rekey's session-revocation policies on the user.
#[derive(Debug, Clone)]
pub(super) struct SessionPolicy {
    pub name: String,
    /// Sessions issued before this are refused.
    pub before: SystemTime,
}

impl SessionPolicy {
    /// Whether the policy can no longer deny anything at `now`.
    fn expired(&self, now: SystemTime) -> bool {
        self.before + MAX_SESSION + CLOCK_SKEW <= now
    }
}

/// The session-revocation policy an incident revoke left in force.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct PolicyInForce {
    pub name: String,
    /// Attached by this revoke (`false`: a re-run found this rotation's one in place).
    pub attached: bool,
}

impl PolicyInForce {
    /// `deny policy rekey-revoke-sessions-… attached to IAM user ci: …`.
    pub(super) fn note(&self, user: &str) -> String {
        let what = if self.attached {
            "attached to"
        } else {
            "already in place on"
        };
        let cut_off = parse_policy_name(&self.name)
            .map(rfc3339)
            .unwrap_or_else(|| "its cut-off".to_owned());
        format!(
            "deny policy {} {what} IAM user {user}: refuses requests signed with STS credentials issued before \
             {cut_off}",
            self.name
        )
    }
}

/// The last use IAM recorded for a key.
#[derive(Debug, Clone)]
pub(super) struct LastUse {
    pub when: SystemTime,
    pub service: String,
    pub region: String,
}

/// `rekey-revoke-sessions-<secs>`.
fn policy_name(before_secs: u64) -> String {
    format!("{SESSION_POLICY_PREFIX}{before_secs}")
}

/// The cut-off of a policy rekey named; `None` for any other policy.
fn parse_policy_name(name: &str) -> Option<SystemTime> {
    let digits = name.strip_prefix(SESSION_POLICY_PREFIX)?;
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let secs: u64 = digits.parse().ok()?;
    UNIX_EPOCH.checked_add(Duration::from_secs(secs))
}

/// `2026-11-30T12:00:00Z`.
pub(super) fn rfc3339(time: SystemTime) -> String {
    let secs = time.duration_since(UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0);
    DateTime::from_secs(secs as i64)
        .fmt(DateTimeFormat::DateTime)
        .unwrap_or_else(|_| format!("{secs} (Unix seconds)"))
}

/// The policy document: deny everything to tokens issued before `before_secs`.
fn policy_document(before_secs: u64) -> String {
    let at = rfc3339(UNIX_EPOCH + Duration::from_secs(before_secs));
    serde_json::json!({
        "Version": "2012-10-17",
        "Statement": [{
            "Effect": "Deny",
            "Action": "*",
            "Resource": "*",
            "Condition": {"DateLessThan": {"aws:TokenIssueTime": at}}
        }]
    })
    .to_string()
}

/// The cut-off for a revocation at `now`: the next whole second, plus the clock skew
/// allowance (a cut-off a little late refuses sessions issued in that moment with the
/// new key too; one a little early would let sessions of the old key live).
fn cut_off(now: SystemTime) -> u64 {
    let since_epoch = now.duration_since(UNIX_EPOCH).unwrap_or_default();
    let ceil = since_epoch.as_secs() + u64::from(since_epoch.subsec_nanos() > 0);
    ceil + CLOCK_SKEW.as_secs()
}

impl IamTarget {
    /// rekey's session-revocation policies on the user (`ListUserPolicies`, all pages).
    pub(super) async fn session_policies(&self) -> ProviderResult<Vec<SessionPolicy>> {
        let iam = self.shared.iam().await;
        let mut found = Vec::new();
        let mut marker: Option<String> = None;
        loop {
            let out = iam
                .list_user_policies()
                .user_name(self.user())
                .set_marker(marker.take())
                .send()
                .await
                .map_err(|e| self.iam_error(&e, "listing the inline policies"))?;
            found.extend(out.policy_names().iter().filter_map(|name| {
                parse_policy_name(name).map(|before| SessionPolicy {
                    name: name.clone(),
                    before,
                })
            }));
            match out.marker() {
                Some(m) if out.is_truncated() && !m.is_empty() => marker = Some(m.to_owned()),
                _ => break,
            }
        }
        found.sort_by_key(|p| p.before);
        Ok(found)
    }

    /// Deletes an inline policy; a missing one is fine.
    async fn delete_user_policy(&self, name: &str) -> ProviderResult<()> {
        let iam = self.shared.iam().await;
        match iam
            .delete_user_policy()
            .user_name(self.user())
            .policy_name(name)
            .send()
            .await
        {
            Ok(_) => Ok(()),
            Err(e) if code(&e) == Some("NoSuchEntity") => Ok(()),
            Err(e) => Err(self.iam_error(&e, &format!("deleting the inline policy {name}"))),
        }
    }

    /// Incident part of `revoke`, after the old key was deleted (or found gone):
    /// removes rekey's expired revocation policies (they deny nothing any more and count
    /// against the user's inline-policy size quota), then attaches one refusing every STS
    /// session issued before now. When the key was already gone and a policy from this
    /// rotation is in place (a re-run after a crash), attaches none.
    ///
    /// Returns the policy in force and whether this call attached it.
    pub(super) async fn end_sessions(
        &self,
        old_id: &str,
        key_was_there: bool,
        new: &SecretDoc,
    ) -> ProviderResult<PolicyInForce> {
        // Listing is needed only for the clean-up and the re-run check: without it (not
        // allowed), attach a policy anyway.
        let policies = self.session_policies().await.ok();
        let now = SystemTime::now();
        if let Some(policies) = &policies {
            for p in policies.iter().filter(|p| p.expired(now)) {
                // Best effort: an expired policy left behind denies nothing.
                let _ = self.delete_user_policy(&p.name).await;
            }
            if !key_was_there {
                if let Some(done) = self.policy_of_this_rotation(policies, new).await {
                    return Ok(PolicyInForce {
                        name: done,
                        attached: false,
                    });
                }
            }
        }
        let before = cut_off(SystemTime::now());
        let name = policy_name(before);
        let iam = self.shared.iam().await;
        iam.put_user_policy()
            .user_name(self.user())
            .policy_name(&name)
            .policy_document(policy_document(before))
            .send()
            .await
            .map_err(|e| {
                let (kind, text) = classify(&e);
                ProviderError::new(
                    kind,
                    format!(
                        "IAM user {}: access key {old_id} is deleted, but attaching the inline policy {name} that \
                         refuses the STS sessions issued with it failed: {text}; those sessions stay valid until \
                         they expire (up to 36 h)",
                        self.user()
                    ),
                )
            })?;
        Ok(PolicyInForce { name, attached: true })
    }

    /// A revocation policy whose cut-off is at or after the new key's creation: the
    /// old key was deleted after that, by this rotation, and the policy put after the
    /// deletion covers it.
    async fn policy_of_this_rotation(&self, policies: &[SessionPolicy], new: &SecretDoc) -> Option<String> {
        let new_id = new.get_str(ACCESS_KEY_ID)?;
        let keys = self.list_keys().await.ok()?;
        let created = keys.iter().find(|k| k.id == new_id)?.created?;
        policies
            .iter()
            .rev()
            .find(|p| p.before >= created)
            .map(|p| p.name.clone())
    }

    /// The last use IAM recorded for access key `id` (`GetAccessKeyLastUsed`), `None`
    /// when it records none.
    pub(super) async fn last_use(&self, id: &str) -> ProviderResult<Option<LastUse>> {
        let iam = self.shared.iam().await;
        let out = iam
            .get_access_key_last_used()
            .access_key_id(id)
            .send()
            .await
            .map_err(|e| self.iam_error(&e, &format!("reading the last use of access key {id}")))?;
        Ok(out.access_key_last_used().and_then(|u| {
            let when = SystemTime::try_from(u.last_used_date?).ok()?;
            Some(LastUse {
                when,
                service: u.service_name.clone(),
                region: u.region.clone(),
            })
        }))
    }

    /// The note an incident revoke records about the old key's last use, read before
    /// it deletes the key: [`IamTarget::last_used_facts`]'s line, or why it could not be
    /// read (such as a caller without `iam:GetAccessKeyLastUsed`), which does not stop
    /// the revocation.
    pub(super) async fn last_use_note(&self, id: &str) -> String {
        let mut doc = SecretDoc::new();
        doc.set(ACCESS_KEY_ID, id);
        match self.last_used_facts(&doc).await {
            Ok(lines) => lines.join("; "),
            Err(e) => format!(
                "last use of access key {id} of IAM user {} not read before deleting it: {}",
                self.user(),
                e.message()
            ),
        }
    }

    /// Fact lines, for an incident record, about the last use IAM recorded for the
    /// access key of `doc` (`GetAccessKeyLastUsed`: time, service, region), such as
    /// `access key AKIA… of IAM user ci was last used 2026-11-30T10:04:00Z (service s3,
    /// region eu-west-1)`.
    ///
    /// Call it before `revoke`: IAM keeps no record for a deleted key (the line then
    /// says the key no longer exists). IAM updates the record with a delay (AWS
    /// documents up to about four hours), and rekey's own logins with the key
    /// (`sts:GetCallerIdentity` when it verifies or proves) are uses too. Needs
    /// `iam:GetAccessKeyLastUsed`; errors name the key, never a secret.
    pub async fn last_used_facts(&self, doc: &SecretDoc) -> ProviderResult<Vec<String>> {
        let id = super::key_id_of(doc, "given")?;
        let about = format!("access key {id} of IAM user {}", self.user());
        match self.last_use(&id).await {
            Ok(Some(used)) => Ok(vec![format!(
                "{about} was last used {} (service {}, region {}), as IAM recorded it (updated with a delay \
                 of up to hours; rekey's own logins count)",
                rfc3339(used.when),
                used.service,
                used.region
            )]),
            Ok(None) => Ok(vec![format!(
                "{about} has no recorded use (IAM updates the record with a delay of up to hours)"
            )]),
            Err(e) if e.kind() == ErrorKind::NotFound => Ok(vec![format!(
                "{about} no longer exists: IAM keeps no last-use record for it"
            )]),
            Err(e) => Err(e),
        }
    }

    /// Fact lines about rekey's session-revocation policies on the user, for an incident
    /// record: each policy's name and cut-off, and whether it is still in force (36 h
    /// after its cut-off it denies nothing and the next incident revoke removes it).
    /// Needs `iam:ListUserPolicies`.
    pub async fn session_policy_facts(&self) -> ProviderResult<Vec<String>> {
        let policies = self.session_policies().await?;
        if policies.is_empty() {
            return Ok(vec![format!(
                "IAM user {} holds no session-revocation policy from rekey",
                self.user()
            )]);
        }
        let now = SystemTime::now();
        Ok(policies
            .iter()
            .map(|p| {
                if p.expired(now) {
                    format!(
                        "inline policy {} on IAM user {} (cut-off {}) is expired: it denies nothing; the next incident \
                         revoke removes it",
                        p.name,
                        self.user(),
                        rfc3339(p.before)
                    )
                } else {
                    format!(
                        "inline policy {} on IAM user {} refuses requests signed with STS credentials issued before {} \
                         (no effect after {})",
                        p.name,
                        self.user(),
                        rfc3339(p.before),
                        rfc3339(p.before + MAX_SESSION)
                    )
                }
            })
            .collect())
    }

    /// `incident_preflight`: what incident mode will do and whether the caller may.
    pub(super) async fn incident_checks(&self) -> ProviderResult<Vec<String>> {
        let mut lines = vec![format!(
            "incident revoke attaches an inline policy {SESSION_POLICY_PREFIX}<unix time> to IAM user {} that refuses \
             requests signed with STS credentials issued before the revocation (GetSessionToken, GetFederationToken: \
             up to 36 h); sessions of roles assumed with the key follow the role's policies and are not ended",
            self.user()
        )];
        let sts = self.shared.sts().await;
        let caller = sts.get_caller_identity().send().await.map_err(|e| {
            crate::error::aws_error(
                &e,
                format_args!(
                    "IAM user {}: checking rekey's own AWS credentials (STS GetCallerIdentity)",
                    self.user()
                ),
            )
        })?;
        let caller_arn = caller.arn().unwrap_or_default().to_owned();
        let iam = self.shared.iam().await;
        let user = iam
            .get_user()
            .user_name(self.user())
            .send()
            .await
            .map_err(|e| self.iam_error(&e, "looking up the user"))?;
        let user_arn = user.user().map(|u| u.arn().to_owned()).unwrap_or_default();

        match self.session_policies().await {
            Ok(policies) => {
                let now = SystemTime::now();
                let expired = policies.iter().filter(|p| p.expired(now)).count();
                lines.push(format!(
                    "the caller may list IAM user {}'s inline policies: {} session-revocation policies from rekey \
                     ({} in force, {expired} expired; revoke removes the expired ones)",
                    self.user(),
                    policies.len(),
                    policies.len() - expired
                ));
            }
            Err(e) => lines.push(format!(
                "warning: {}; expired session-revocation policies will not be removed",
                e.message()
            )),
        }

        match self.simulate_actions(&caller_arn, &user_arn, &INCIDENT_ACTIONS).await {
            super::Simulation::Allowed => lines.push(format!(
                "permissions: the caller may {} on user {}",
                INCIDENT_ACTIONS.join(", "),
                self.user()
            )),
            super::Simulation::Denied(denied) if denied.iter().any(|a| a == "iam:PutUserPolicy") => {
                return Err(ProviderError::permission_denied(format!(
                    "IAM user {}: the caller {caller_arn} may NOT {} (policy simulation): revoke deletes the leaked \
                     key but cannot refuse the STS sessions issued with it",
                    self.user(),
                    denied.join(", ")
                )));
            }
            super::Simulation::Denied(denied) => lines.push(format!(
                "warning: the caller may NOT {} on user {} (policy simulation): expired session-revocation policies \
                 will not be removed",
                denied.join(", "),
                self.user()
            )),
            super::Simulation::NotChecked(why) => lines.push(format!(
                "permissions: iam:PutUserPolicy not checked ({why}); revoke will try"
            )),
        }
        Ok(lines)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip() {
        assert_eq!(policy_name(1_764_504_000), "rekey-revoke-sessions-1764504000");
        assert_eq!(
            parse_policy_name("rekey-revoke-sessions-1764504000"),
            Some(UNIX_EPOCH + Duration::from_secs(1_764_504_000))
        );
        assert_eq!(parse_policy_name("rekey-revoke-sessions-"), None);
        assert_eq!(parse_policy_name("rekey-revoke-sessions-12x"), None);
        assert_eq!(parse_policy_name("rekey-revoke-sessions--1"), None);
        assert_eq!(parse_policy_name("other-1764504000"), None);
    }

    #[test]
    fn document_and_cut_off() {
        let doc: serde_json::Value = serde_json::from_str(&policy_document(1_764_504_000)).unwrap();
        assert_eq!(
            doc,
            serde_json::json!({"Version": "2012-10-17", "Statement": [{"Effect": "Deny", "Action": "*",
                "Resource": "*", "Condition": {"DateLessThan": {"aws:TokenIssueTime": "2025-11-30T12:00:00Z"}}}]})
        );
        let at = UNIX_EPOCH + Duration::from_millis(1_000_500);
        assert_eq!(cut_off(at), 1_001 + CLOCK_SKEW.as_secs());
        assert_eq!(
            cut_off(UNIX_EPOCH + Duration::from_secs(1_000)),
            1_000 + CLOCK_SKEW.as_secs()
        );
    }

    #[test]
    fn expiry() {
        let p = SessionPolicy {
            name: policy_name(1_000),
            before: UNIX_EPOCH + Duration::from_secs(1_000),
        };
        assert!(!p.expired(p.before + MAX_SESSION));
        assert!(p.expired(p.before + MAX_SESSION + CLOCK_SKEW));
    }
}
