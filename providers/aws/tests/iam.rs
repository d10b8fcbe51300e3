//! The IAM access-key target beyond the conformance suite: the two-key limit, what moto
//! accepts (deleted keys are refused, inactive ones are not), retire, apply, preflight,
//! the sweep of minted keys stored nowhere, and errors. Incident mode is in
//! `iam_incident.rs`.

mod common;

use common::{admin_provider, assert_clean, create_key, create_user_with_key, iam_config, list_keys, moto, raw_iam};
use rekey_api::conformance::{random_password, unique_name};
use rekey_api::{ErrorKind, RevokeOptions, SecretDoc, Strategy, Target};
use rekey_aws::{AwsIamTargetConfig, IamOptions, IamTarget};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

fn target(user: &str, delete_inactive: bool) -> IamTarget {
    let server = moto();
    admin_provider(server)
        .aws_iam_target(
            &iam_config(server, user),
            Strategy::Dual,
            IamOptions { delete_inactive },
        )
        .unwrap()
}

fn key_id(doc: &SecretDoc) -> String {
    doc.get_str("access_key_id").unwrap().to_owned()
}

async fn set_status(user: &str, id: &str, active: bool) {
    let status = if active {
        aws_sdk_iam::types::StatusType::Active
    } else {
        aws_sdk_iam::types::StatusType::Inactive
    };
    raw_iam(moto())
        .await
        .update_access_key()
        .user_name(user)
        .access_key_id(id)
        .status(status)
        .send()
        .await
        .unwrap();
}

#[tokio::test(flavor = "multi_thread")]
async fn prepare_mints_a_key_in_the_rotation_json_shape() {
    let server = moto();
    let user = unique_name("shape");
    let mut current = create_user_with_key(server, &user).await;
    current.set("note", "kept");
    let t = target(&user, false);
    let new = t.prepare(Some(&current), random_password(8)).await.unwrap();
    let mut fields: Vec<&str> = new.field_names().collect();
    fields.sort();
    assert_eq!(
        fields,
        vec!["access_key_id", "engine", "note", "secret_access_key", "username"]
    );
    assert_eq!(new.get_str("engine"), Some("aws-iam"));
    assert_eq!(new.username(), Some(user.as_str()));
    assert_eq!(
        new.get_str("note"),
        Some("kept"),
        "the current document's own fields are kept"
    );
    assert!(new.get_str("access_key_id").unwrap().starts_with("AKIA"));
    assert!(new.password().is_none(), "no `password` field to shadow the key");
    // Both keys work between apply and revoke (dual).
    t.apply(&new, Some(&current)).await.unwrap();
    t.verify(&new).await.unwrap();
    t.login(&current).await.unwrap();
    assert_eq!(list_keys(server, &user).await.len(), 2);
}

#[tokio::test(flavor = "multi_thread")]
async fn two_keys_are_refused_unless_the_extra_one_is_inactive_and_allowed() {
    let server = moto();
    let user = unique_name("twokeys");
    let current = create_user_with_key(server, &user).await;
    let extra = create_key(server, &user).await;
    set_status(&user, &key_id(&extra), false).await;

    // Without the option: refused, both keys named, nothing changed.
    let err = target(&user, false)
        .prepare(Some(&current), random_password(8))
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Conflict, "{err}");
    assert!(!err.is_retryable());
    let text = err.to_string();
    assert!(
        text.contains(&format!("user {user} already has two access keys")),
        "{text}"
    );
    assert!(text.contains(&format!("{} active", key_id(&current))), "{text}");
    assert!(text.contains(&format!("{} inactive", key_id(&extra))), "{text}");
    assert!(text.contains("--delete-inactive"), "{text}");
    assert_clean(&err, &user, extra.get_str("secret_access_key"));
    assert_eq!(list_keys(server, &user).await.len(), 2);

    // preflight reports the same problem.
    let err = target(&user, false).preflight(Some(&current)).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Conflict, "{err}");
    let lines = target(&user, true).preflight(Some(&current)).await.unwrap();
    assert!(
        lines
            .iter()
            .any(|l| l.contains(&format!("will delete the inactive key {}", key_id(&extra)))),
        "{lines:?}"
    );

    // With the option: the inactive extra key is deleted, a new one created.
    let new = target(&user, true)
        .prepare(Some(&current), random_password(8))
        .await
        .unwrap();
    let ids: Vec<String> = list_keys(server, &user).await.into_iter().map(|(id, _)| id).collect();
    assert!(
        ids.contains(&key_id(&current)) && ids.contains(&key_id(&new)),
        "{ids:?}"
    );
    assert!(!ids.contains(&key_id(&extra)), "{ids:?}");
}

#[tokio::test(flavor = "multi_thread")]
async fn an_active_extra_key_is_never_deleted() {
    let server = moto();
    let user = unique_name("activeextra");
    let current = create_user_with_key(server, &user).await;
    let extra = create_key(server, &user).await;
    let err = target(&user, true)
        .prepare(Some(&current), random_password(8))
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Conflict, "{err}");
    let text = err.to_string();
    assert!(text.contains(&format!("{} active", key_id(&extra))), "{text}");
    assert!(
        text.contains("does not delete it even with --delete-inactive"),
        "{text}"
    );
    assert_eq!(list_keys(server, &user).await.len(), 2, "nothing deleted");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_deleted_key_is_refused_and_an_inactive_one_is_not_on_moto() {
    let server = moto();
    let user = unique_name("dead");
    let doc = create_user_with_key(server, &user).await;
    let t = target(&user, false);
    t.login(&doc).await.unwrap();

    // moto accepts an inactive key (AWS would refuse it): retire proves nothing there.
    set_status(&user, &key_id(&doc), false).await;
    t.login(&doc)
        .await
        .expect("moto still accepts an inactive key (see TESTBEDS.md); only deletion kills it");

    raw_iam(server)
        .await
        .delete_access_key()
        .user_name(&user)
        .access_key_id(key_id(&doc))
        .send()
        .await
        .unwrap();
    let err = t.login(&doc).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::AuthRejected, "{err}");
    assert!(err.to_string().contains("InvalidClientTokenId"), "{err}");
    assert_clean(&err, &key_id(&doc), doc.get_str("secret_access_key"));
}

#[tokio::test(flavor = "multi_thread")]
async fn retire_deactivates_and_revoke_deletes() {
    let server = moto();
    let user = unique_name("retire");
    let old = create_user_with_key(server, &user).await;
    let t = target(&user, false);
    let new = t.prepare(Some(&old), random_password(8)).await.unwrap();
    t.apply(&new, Some(&old)).await.unwrap();

    let did = t.retire(&old, &new).await.unwrap();
    assert_eq!(did, Some(format!("deactivated access key {}", key_id(&old))));
    let keys = list_keys(server, &user).await;
    assert!(keys.contains(&(key_id(&old), false)), "{keys:?}");
    assert!(keys.contains(&(key_id(&new), true)), "{keys:?}");
    assert!(!did.unwrap().contains(old.get_str("secret_access_key").unwrap()));

    t.revoke(&old, &new, RevokeOptions::default()).await.unwrap();
    t.revoke(&old, &new, RevokeOptions::default()).await.unwrap();
    assert_eq!(list_keys(server, &user).await, vec![(key_id(&new), true)]);
    assert_eq!(
        t.retire(&old, &new).await.unwrap(),
        Some(format!("access key {} was already deleted", key_id(&old)))
    );
    let err = t.revoke(&new, &new, RevokeOptions::default()).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::InvalidInput, "never deletes the new key: {err}");
}

#[tokio::test(flavor = "multi_thread")]
async fn apply_reactivates_and_refuses_a_deleted_key() {
    let server = moto();
    let user = unique_name("apply");
    let old = create_user_with_key(server, &user).await;
    let t = target(&user, false);
    let new = t.prepare(Some(&old), random_password(8)).await.unwrap();
    set_status(&user, &key_id(&new), false).await;
    t.apply(&new, Some(&old)).await.unwrap();
    assert!(list_keys(server, &user).await.contains(&(key_id(&new), true)));

    raw_iam(server)
        .await
        .delete_access_key()
        .user_name(&user)
        .access_key_id(key_id(&new))
        .send()
        .await
        .unwrap();
    let err = t.apply(&new, Some(&old)).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::NotFound, "{err}");
    assert_clean(&err, &key_id(&new), new.get_str("secret_access_key"));
}

#[tokio::test(flavor = "multi_thread")]
async fn verify_checks_the_key_belongs_to_the_user() {
    let server = moto();
    let user = unique_name("owner");
    let other = unique_name("other");
    create_user_with_key(server, &user).await;
    let foreign = create_user_with_key(server, &other).await;
    let err = target(&user, false).verify(&foreign).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::InvalidInput, "{err}");
    assert!(err.to_string().contains(&other), "{err}");
}

#[tokio::test(flavor = "multi_thread")]
async fn preflight_reports_credentials_user_keys_and_permissions() {
    let server = moto();
    let user = unique_name("preflight");
    let current = create_user_with_key(server, &user).await;
    let lines = target(&user, false).preflight(Some(&current)).await.unwrap();
    let all = lines.join("\n");
    assert!(
        all.contains(&format!(
            "caller arn:aws:iam::123456789012:user/{}",
            server.admin_user()
        )),
        "{all}"
    );
    assert!(all.contains(&format!("IAM user {user} exists")), "{all}");
    assert!(
        all.contains(&format!(
            "has 1 access key(s): {} active, stored as current",
            key_id(&current)
        )),
        "{all}"
    );
    // moto does not implement iam:SimulatePrincipalPolicy.
    assert!(all.contains("permissions: "), "{all}");
    assert!(!all.contains(current.get_str("secret_access_key").unwrap()));
}

#[tokio::test(flavor = "multi_thread")]
async fn a_missing_user_is_not_found() {
    let user = unique_name("ghost");
    let t = target(&user, false);
    let err = t.prepare(None, random_password(8)).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::NotFound, "{err}");
    assert_clean(&err, &user, None);
    let err = t.preflight(None).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::NotFound, "{err}");
    assert_clean(&err, &user, None);
}

#[tokio::test(flavor = "multi_thread")]
async fn an_admin_without_permissions_is_denied() {
    let server = moto();
    let user = unique_name("victim");
    create_user_with_key(server, &user).await;
    let weak_user = unique_name("weak");
    let weak = create_user_with_key(server, &weak_user).await;
    let provider = rekey_aws::AwsProvider::with_static_credentials(
        key_id(&weak),
        rekey_api::Secret::from(weak.get_str("secret_access_key").unwrap()),
    );
    let t = provider
        .aws_iam_target(&iam_config(server, &user), Strategy::Dual, IamOptions::default())
        .unwrap();
    let err = t.prepare(None, random_password(8)).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::PermissionDenied, "{err}");
    assert_clean(&err, &user, weak.get_str("secret_access_key"));
}

#[test]
fn strategies_config_and_debug() {
    let provider = rekey_aws::AwsProvider::new();
    let config = AwsIamTargetConfig::new("ci");
    let err = provider
        .aws_iam_target(&config, Strategy::Single, IamOptions::default())
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Unsupported);
    let t = provider
        .aws_iam_target(&config, Strategy::Dual, IamOptions::default())
        .unwrap();
    let caps = t.capabilities();
    assert_eq!(caps.strategies, vec![Strategy::Dual]);
    assert!(caps.mints_own_secret && !caps.apply_invalidates_previous);
    assert!(
        caps.terminate_sessions,
        "incident mode refuses the old key's STS sessions"
    );
    assert!(t.describe().contains("user ci"), "{}", t.describe());
    let mut doc = SecretDoc::new();
    t.complete(&mut doc);
    assert_eq!(doc.get_str("engine"), Some("aws-iam"));
    assert_eq!(doc.username(), Some("ci"));
    let parsed: Result<AwsIamTargetConfig, _> =
        serde_json::from_value(serde_json::json!({"user": "ci", "access_key": "x"}));
    assert!(parsed.is_err(), "deny_unknown_fields");
    assert!(format!("{t:?}").contains("ci"));
}

/// A rotation interrupted between mint and stage leaves a key alive and stored nowhere;
/// the sweep deletes it, which also frees the second key slot.
#[tokio::test(flavor = "multi_thread")]
async fn sweep_deletes_a_minted_key_stored_nowhere() {
    let server = moto();
    let user = unique_name("sweep");
    let current = create_user_with_key(server, &user).await;
    let t = target(&user, false);
    // The newest stored version's creation, then an interrupted rotation: minted, never
    // stored (prepare is exactly the mint).
    let since = SystemTime::now();
    let lost = t.prepare(Some(&current), random_password(8)).await.unwrap();
    assert_eq!(list_keys(server, &user).await.len(), 2);
    let err = t.prepare(Some(&current), random_password(8)).await.unwrap_err();
    assert_eq!(
        err.kind(),
        ErrorKind::Conflict,
        "the lost key blocks the next mint: {err}"
    );

    let removed = t.sweep_unstored(&[&current], since).await.unwrap();
    assert_eq!(removed, vec![key_id(&lost)]);
    assert_eq!(list_keys(server, &user).await, vec![(key_id(&current), true)]);
    let err = t.login(&lost).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::AuthRejected, "{err}");
    t.login(&current).await.expect("the stored key is untouched");
    assert!(
        t.sweep_unstored(&[&current], since).await.unwrap().is_empty(),
        "idempotent"
    );

    // The slot is free again.
    let next = t.prepare(Some(&current), random_password(8)).await.unwrap();
    // A pending version is stored: the sweep keeps it.
    assert!(t.sweep_unstored(&[&current, &next], since).await.unwrap().is_empty());
    assert_eq!(list_keys(server, &user).await.len(), 2);
}

/// Keys created before `since` (a person's), keys someone used, stored keys, and every key
/// when the stored documents do not say which keys are rekey's, are never swept.
#[tokio::test(flavor = "multi_thread")]
async fn sweep_keeps_older_used_and_stored_keys() {
    let server = moto();
    let user = unique_name("sweepkeep");
    let current = create_user_with_key(server, &user).await;
    let human = create_key(server, &user).await;
    let t = target(&user, false);
    let both = vec![(key_id(&current), true), (key_id(&human), true)];

    // The newest stored version is 10 s younger than the unknown key (beyond the 2 s of
    // clock skew allowed): the key is older, so it is not one rekey minted and lost.
    let later = SystemTime::now() + Duration::from_secs(10);
    assert!(t.sweep_unstored(&[&current], later).await.unwrap().is_empty());
    assert_eq!(list_keys(server, &user).await, both);

    // Everything stored: nothing to sweep, whatever `since` says.
    assert!(t
        .sweep_unstored(&[&current, &human], UNIX_EPOCH)
        .await
        .unwrap()
        .is_empty());

    // Nothing stored, or a stored document without `access_key_id`: rekey's keys cannot
    // be told from others, so none is touched.
    assert!(t.sweep_unstored(&[], UNIX_EPOCH).await.unwrap().is_empty());
    let mut bare = SecretDoc::new();
    bare.set("password", "imported-without-its-key-id");
    assert!(t.sweep_unstored(&[&bare], UNIX_EPOCH).await.unwrap().is_empty());
    assert_eq!(list_keys(server, &user).await, both);

    // A key someone used is not a lost mint (nobody knows a lost key's secret): kept even
    // though it is stored nowhere and younger than `since`.
    t.login(&human).await.unwrap();
    assert!(t.sweep_unstored(&[&current], UNIX_EPOCH).await.unwrap().is_empty());
    assert_eq!(list_keys(server, &user).await, both);
}

#[tokio::test(flavor = "multi_thread")]
async fn sweep_without_permission_is_denied_and_names_the_key() {
    let server = moto();
    let user = unique_name("sweepdenied");
    let current = create_user_with_key(server, &user).await;
    let lost = target(&user, false)
        .prepare(Some(&current), random_password(8))
        .await
        .unwrap();
    let weak_user = unique_name("weaksweep");
    let weak = create_user_with_key(server, &weak_user).await;
    let provider = rekey_aws::AwsProvider::with_static_credentials(
        key_id(&weak),
        rekey_api::Secret::from(weak.get_str("secret_access_key").unwrap()),
    );
    let t = provider
        .aws_iam_target(&iam_config(server, &user), Strategy::Dual, IamOptions::default())
        .unwrap();
    let err = t.sweep_unstored(&[&current], UNIX_EPOCH).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::PermissionDenied, "{err}");
    assert_clean(&err, &user, lost.get_str("secret_access_key"));
    assert_eq!(list_keys(server, &user).await.len(), 2, "nothing deleted");
}
