//! Incident mode of the IAM target against moto: the inline policy refusing the STS
//! sessions issued before the revocation, its clean-up, `incident_preflight`, and the
//! last-use facts of a key.
//!
//! moto stores and returns the policy but evaluates only `StringEquals` conditions: it
//! ignores `DateLessThan aws:TokenIssueTime`, so on moto the policy denies the user
//! everything except `GetCallerIdentity` (always allowed, as on AWS). These tests check
//! what is attached, not AWS's evaluation of the condition.

mod common;

use common::{admin_provider, assert_clean, create_user_with_key, iam_config, moto, raw_iam};
use rekey_api::conformance::{random_password, unique_name};
use rekey_api::{ErrorKind, RevokeOptions, SecretDoc, Strategy, Target};
use rekey_aws::{IamOptions, IamTarget, SESSION_POLICY_PREFIX};
use serde_json::{json, Value};
use std::time::{SystemTime, UNIX_EPOCH};

const INCIDENT: RevokeOptions = RevokeOptions {
    terminate_sessions: true,
};

fn target(user: &str) -> IamTarget {
    let server = moto();
    admin_provider(server)
        .aws_iam_target(&iam_config(server, user), Strategy::Dual, IamOptions::default())
        .unwrap()
}

fn key_id(doc: &SecretDoc) -> String {
    doc.get_str("access_key_id").unwrap().to_owned()
}

fn unix_now() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_secs()
}

/// `2026-11-30T12:00:00Z` for Unix seconds.
fn rfc3339(secs: u64) -> String {
    aws_sdk_iam::primitives::DateTime::from_secs(secs as i64)
        .fmt(aws_sdk_iam::primitives::DateTimeFormat::DateTime)
        .unwrap()
}

/// No note shows a secret access key; each is one line.
fn assert_no_secret(notes: &[String], docs: &[&SecretDoc]) {
    for note in notes {
        assert!(!note.contains('\n'), "one line: {note:?}");
        for doc in docs {
            let secret = doc.get_str("secret_access_key").expect("a secret access key");
            assert!(!note.contains(secret), "a note shows a secret: {note}");
        }
    }
}

/// The user's inline policy names, sorted.
async fn policy_names(user: &str) -> Vec<String> {
    let out = raw_iam(moto())
        .await
        .list_user_policies()
        .user_name(user)
        .send()
        .await
        .expect("ListUserPolicies");
    let mut names = out.policy_names().to_vec();
    names.sort();
    names
}

/// rekey's session-revocation policies: (name, cut-off in Unix seconds).
async fn revocation_policies(user: &str) -> Vec<(String, u64)> {
    policy_names(user)
        .await
        .into_iter()
        .filter_map(|n| {
            let secs = n.strip_prefix(SESSION_POLICY_PREFIX)?.parse().ok()?;
            Some((n, secs))
        })
        .collect()
}

/// A policy document as `GetUserPolicy` answers it (AWS percent-encodes it; moto not).
async fn policy_document(user: &str, name: &str) -> Value {
    let out = raw_iam(moto())
        .await
        .get_user_policy()
        .user_name(user)
        .policy_name(name)
        .send()
        .await
        .expect("GetUserPolicy");
    let raw = out.policy_document();
    let text = if raw.trim_start().starts_with('{') {
        raw.to_owned()
    } else {
        percent_decode(raw)
    };
    serde_json::from_str(&text).expect("a JSON policy document")
}

/// A form value (`+` for a space, then percent-encoding), through rekey-net's decoder.
fn percent_decode(s: &str) -> String {
    rekey_net::percent_decode(&s.replace('+', " "))
        .expect("a percent-encoded form value")
        .to_string()
}

async fn put_policy(user: &str, name: &str, document: &Value) {
    raw_iam(moto())
        .await
        .put_user_policy()
        .user_name(user)
        .policy_name(name)
        .policy_document(document.to_string())
        .send()
        .await
        .expect("PutUserPolicy");
}

/// A user with a current key, and a new key prepared and applied: ready for revoke.
async fn rotated(tag: &str) -> (String, IamTarget, SecretDoc, SecretDoc) {
    let user = unique_name(tag);
    let old = create_user_with_key(moto(), &user).await;
    let t = target(&user);
    let new = t.prepare(Some(&old), random_password(8)).await.unwrap();
    t.apply(&new, Some(&old)).await.unwrap();
    t.verify(&new).await.unwrap();
    (user, t, old, new)
}

#[tokio::test(flavor = "multi_thread")]
async fn incident_revoke_attaches_a_policy_refusing_older_sessions() {
    let (user, t, old, new) = rotated("sessions").await;
    // Someone uses the leaked key.
    let used = unix_now();
    t.login(&old).await.unwrap();
    let before = unix_now();
    let report = t.revoke(&old, &new, INCIDENT).await.unwrap();
    let after = unix_now();
    assert_eq!(
        report.sessions_terminated, 0,
        "the policy refuses sessions without counting them"
    );

    let policies = revocation_policies(&user).await;
    assert_eq!(policies.len(), 1, "{policies:?}");
    let (name, cut_off) = policies[0].clone();

    // The notes: the key's last use, read before its deletion, and the policy attached.
    let old_id = key_id(&old);
    assert_eq!(report.notes.len(), 2, "{:?}", report.notes);
    let last_use = &report.notes[0];
    assert!(
        last_use.starts_with(&format!("access key {old_id} of IAM user {user} was last used ")),
        "{last_use}"
    );
    assert!(last_use.contains("(service sts, region "), "{last_use}");
    let when = last_use
        .split("was last used ")
        .nth(1)
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(unix_secs)
        .unwrap_or_else(|| panic!("a time in {last_use}"));
    assert!(when + 2 >= used && when <= before + 2, "{last_use}");
    assert_eq!(
        report.notes[1],
        format!(
            "deny policy {name} attached to IAM user {user}: refuses requests signed with STS credentials issued \
             before {}",
            rfc3339(cut_off)
        )
    );
    assert_no_secret(&report.notes, &[&old, &new]);
    // The next whole second after the deletion, plus 2 s of clock skew allowance.
    assert!(
        cut_off > before && cut_off <= after + 3,
        "{before} < {cut_off} <= {after} + 3"
    );
    assert_eq!(
        policy_document(&user, &name).await,
        json!({
            "Version": "2012-10-17",
            "Statement": [{
                "Effect": "Deny",
                "Action": "*",
                "Resource": "*",
                "Condition": {"DateLessThan": {"aws:TokenIssueTime": rfc3339(cut_off)}}
            }]
        })
    );

    // The leaked key is deleted; the new one still proves itself (GetCallerIdentity is
    // never denied, on AWS as on moto).
    let err = t.login(&old).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::AuthRejected, "{err}");
    t.verify(&new).await.unwrap();

    // A re-run (after a crash) finds the key gone and this rotation's policy in place.
    let report = t.revoke(&old, &new, INCIDENT).await.unwrap();
    assert_eq!(revocation_policies(&user).await, policies, "no second policy");
    assert_eq!(
        report.notes,
        vec![
            format!("access key {old_id} of IAM user {user} no longer exists: IAM keeps no last-use record for it"),
            format!(
                "deny policy {name} already in place on IAM user {user}: refuses requests signed with STS credentials \
                 issued before {}",
                rfc3339(cut_off)
            ),
        ]
    );
    assert_no_secret(&report.notes, &[&old, &new]);

    let facts = t.session_policy_facts().await.unwrap();
    assert_eq!(facts.len(), 1, "{facts:?}");
    assert!(
        facts[0].contains(&format!(
            "inline policy {name} on IAM user {user} refuses requests signed with STS credentials issued before {}",
            rfc3339(cut_off)
        )),
        "{facts:?}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn an_expired_revocation_policy_is_removed_by_the_next_incident_revoke() {
    let (user, t, old, new) = rotated("expired").await;
    let now = unix_now();
    // 37 h old: every session it could refuse (36 h at most) has expired.
    let expired = format!("{SESSION_POLICY_PREFIX}{}", now - 37 * 3600);
    // 1 h old: still in force.
    let recent = format!("{SESSION_POLICY_PREFIX}{}", now - 3600);
    let deny_old = |secs: u64| {
        json!({"Version": "2012-10-17", "Statement": [{"Effect": "Deny", "Action": "*", "Resource": "*",
            "Condition": {"DateLessThan": {"aws:TokenIssueTime": rfc3339(secs)}}}]})
    };
    put_policy(&user, &expired, &deny_old(now - 37 * 3600)).await;
    put_policy(&user, &recent, &deny_old(now - 3600)).await;
    // Not rekey's: never touched.
    let foreign = json!({"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "s3:ListAllMyBuckets",
        "Resource": "*"}]});
    put_policy(&user, "someone-elses-policy", &foreign).await;
    put_policy(&user, &format!("{SESSION_POLICY_PREFIX}notatime"), &foreign).await;

    let facts = t.session_policy_facts().await.unwrap().join("\n");
    assert!(facts.contains(&format!("{expired} on IAM user {user}")), "{facts}");
    assert!(facts.contains("is expired: it denies nothing"), "{facts}");

    // A revoke outside incident mode changes no policy.
    let before = policy_names(&user).await;
    t.revoke(&old, &new, RevokeOptions::default()).await.unwrap();
    assert_eq!(policy_names(&user).await, before);

    // Then in incident mode (`rekey rotate --leaked` finishing that revocation): the key
    // is gone already and no policy is from this rotation (the recent one is older than
    // the new key), so one is attached; the expired one is removed.
    t.revoke(&old, &new, INCIDENT).await.unwrap();
    let names = policy_names(&user).await;
    assert!(!names.contains(&expired), "{names:?}");
    assert!(names.contains(&recent), "{names:?}");
    assert!(names.contains(&"someone-elses-policy".to_owned()), "{names:?}");
    assert!(names.contains(&format!("{SESSION_POLICY_PREFIX}notatime")), "{names:?}");
    let revocations = revocation_policies(&user).await;
    assert_eq!(revocations.len(), 2, "the recent one and the new one: {revocations:?}");
    assert!(revocations.iter().any(|(_, secs)| *secs > now), "{revocations:?}");
}

#[tokio::test(flavor = "multi_thread")]
async fn incident_preflight_says_what_it_will_do_and_what_it_checked() {
    let server = moto();
    let user = unique_name("incpre");
    create_user_with_key(server, &user).await;
    let t = target(&user);
    let lines = t.incident_preflight().await.unwrap();
    let all = lines.join("\n");
    assert!(
        all.contains(&format!(
            "incident revoke attaches an inline policy {SESSION_POLICY_PREFIX}<unix time> to IAM user {user}"
        )),
        "{all}"
    );
    assert!(all.contains("sessions of roles assumed with the key"), "{all}");
    assert!(
        all.contains(&format!(
            "the caller may list IAM user {user}'s inline policies: 0 session-revocation policies"
        )),
        "{all}"
    );
    // moto does not implement iam:SimulatePrincipalPolicy: PutUserPolicy is not checked.
    assert!(all.contains("permissions: iam:PutUserPolicy not checked ("), "{all}");
}

/// An administrator that may rotate keys but not touch policies: the preflight warns, and
/// an incident revoke deletes the key and then fails naming the policy (the engine then
/// reports the sessions as not ended).
#[tokio::test(flavor = "multi_thread")]
async fn an_admin_without_policy_permissions() {
    let server = moto();
    let user = unique_name("nopolicy");
    let old = create_user_with_key(server, &user).await;
    let admin_user = unique_name("keyadmin");
    let admin = create_user_with_key(server, &admin_user).await;
    put_policy(
        &admin_user,
        "keys-only",
        &json!({"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Resource": "*", "Action": [
            "iam:GetUser", "iam:ListAccessKeys", "iam:CreateAccessKey", "iam:UpdateAccessKey",
            "iam:DeleteAccessKey", "iam:GetAccessKeyLastUsed"]}]}),
    )
    .await;
    let provider = rekey_aws::AwsProvider::with_static_credentials(
        key_id(&admin),
        rekey_api::Secret::from(admin.get_str("secret_access_key").unwrap()),
    );
    let t = provider
        .aws_iam_target(&iam_config(server, &user), Strategy::Dual, IamOptions::default())
        .unwrap();

    let all = t.incident_preflight().await.unwrap().join("\n");
    assert!(all.contains("warning: IAM user"), "{all}");
    assert!(all.contains("listing the inline policies: AccessDenied"), "{all}");
    assert!(!all.contains(admin.get_str("secret_access_key").unwrap()));

    let new = t.prepare(Some(&old), random_password(8)).await.unwrap();
    t.apply(&new, Some(&old)).await.unwrap();
    let err = t.revoke(&old, &new, INCIDENT).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::PermissionDenied, "{err}");
    let text = err.to_string();
    assert!(
        text.contains(&format!("access key {} is deleted", key_id(&old))),
        "{text}"
    );
    assert!(text.contains(SESSION_POLICY_PREFIX), "{text}");
    assert!(text.contains("stay valid until they expire"), "{text}");
    assert_clean(&err, &user, old.get_str("secret_access_key"));
    assert_eq!(t.login(&old).await.unwrap_err().kind(), ErrorKind::AuthRejected);
    assert!(revocation_policies(&user).await.is_empty());
}

#[tokio::test(flavor = "multi_thread")]
async fn last_used_facts_of_a_key() {
    let server = moto();
    let user = unique_name("lastused");
    let doc = create_user_with_key(server, &user).await;
    let t = target(&user);
    let id = key_id(&doc);

    let facts = t.last_used_facts(&doc).await.unwrap();
    assert_eq!(
        facts,
        vec![format!(
            "access key {id} of IAM user {user} has no recorded use (IAM updates the record with a delay of up to hours)"
        )]
    );

    let before = unix_now();
    t.login(&doc).await.unwrap();
    let facts = t.last_used_facts(&doc).await.unwrap();
    assert_eq!(facts.len(), 1, "{facts:?}");
    let line = &facts[0];
    assert!(
        line.starts_with(&format!("access key {id} of IAM user {user} was last used ")),
        "{line}"
    );
    assert!(line.contains("(service sts, region "), "{line}");
    let when = line
        .split("was last used ")
        .nth(1)
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(unix_secs)
        .unwrap_or_else(|| panic!("a time in {line}"));
    assert!(when + 2 >= before && when <= unix_now() + 2, "{line}");
    assert!(!line.contains(doc.get_str("secret_access_key").unwrap()));

    raw_iam(server)
        .await
        .delete_access_key()
        .user_name(&user)
        .access_key_id(&id)
        .send()
        .await
        .unwrap();
    let facts = t.last_used_facts(&doc).await.unwrap();
    assert_eq!(
        facts,
        vec![format!(
            "access key {id} of IAM user {user} no longer exists: IAM keeps no last-use record for it"
        )]
    );
    let err = t.last_used_facts(&SecretDoc::new()).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::InvalidInput, "{err}");
}

/// Unix seconds of `2026-11-30T12:00:00Z`.
fn unix_secs(text: &str) -> Option<u64> {
    let t =
        aws_sdk_iam::primitives::DateTime::from_str(text, aws_sdk_iam::primitives::DateTimeFormat::DateTime).ok()?;
    u64::try_from(t.secs()).ok()
}

#[tokio::test(flavor = "multi_thread")]
async fn a_last_use_the_admin_may_not_read_is_noted_and_the_revoke_goes_on() {
    let server = moto();
    let user = unique_name("nolastuse");
    let old = create_user_with_key(server, &user).await;
    let admin_user = unique_name("nolastuseadmin");
    let admin = create_user_with_key(server, &admin_user).await;
    put_policy(
        &admin_user,
        "no-last-use",
        &json!({"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Resource": "*", "Action": [
            "iam:GetUser", "iam:ListAccessKeys", "iam:CreateAccessKey", "iam:UpdateAccessKey",
            "iam:DeleteAccessKey", "iam:PutUserPolicy", "iam:ListUserPolicies", "iam:DeleteUserPolicy"]}]}),
    )
    .await;
    let provider = rekey_aws::AwsProvider::with_static_credentials(
        key_id(&admin),
        rekey_api::Secret::from(admin.get_str("secret_access_key").unwrap()),
    );
    let t = provider
        .aws_iam_target(&iam_config(server, &user), Strategy::Dual, IamOptions::default())
        .unwrap();
    let new = t.prepare(Some(&old), random_password(8)).await.unwrap();
    t.apply(&new, Some(&old)).await.unwrap();
    let report = t.revoke(&old, &new, INCIDENT).await.unwrap();
    assert_eq!(report.notes.len(), 2, "{:?}", report.notes);
    assert!(
        report.notes[0].starts_with(&format!(
            "last use of access key {} of IAM user {user} not read before deleting it: ",
            key_id(&old)
        )),
        "{:?}",
        report.notes
    );
    assert!(report.notes[0].contains("AccessDenied"), "{:?}", report.notes);
    assert!(
        report.notes[1].starts_with("deny policy rekey-revoke-sessions-"),
        "{:?}",
        report.notes
    );
    assert_no_secret(&report.notes, &[&old, &new, &admin]);
    assert_eq!(t.login(&old).await.unwrap_err().kind(), ErrorKind::AuthRejected);
}
