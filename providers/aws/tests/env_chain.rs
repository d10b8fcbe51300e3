//! The standard credential chain, as users configure it: AWS_* environment variables and
//! profiles. The environment is process-wide, so this binary holds one test that runs
//! its cases in order; every other test binary passes credentials explicitly.

mod common;

use common::{db_doc, moto, uuid};
use rekey_api::conformance::unique_name;
use rekey_api::{ErrorKind, Store, Strategy, Target};
use rekey_aws::{AwsIamTargetConfig, AwsProvider, AwsSecretsManagerConfig, IamOptions};
use std::path::PathBuf;

/// Variables that would let the host's own AWS setup leak into the test.
const AWS_VARS: &[&str] = &[
    "AWS_ACCESS_KEY_ID",
    "AWS_SECRET_ACCESS_KEY",
    "AWS_SESSION_TOKEN",
    "AWS_PROFILE",
    "AWS_DEFAULT_PROFILE",
    "AWS_REGION",
    "AWS_DEFAULT_REGION",
    "AWS_ENDPOINT_URL",
    "AWS_ENDPOINT_URL_SECRETS_MANAGER",
    "AWS_ENDPOINT_URL_IAM",
    "AWS_ENDPOINT_URL_STS",
    "AWS_ROLE_ARN",
    "AWS_WEB_IDENTITY_TOKEN_FILE",
    "AWS_CONTAINER_CREDENTIALS_RELATIVE_URI",
    "AWS_CONTAINER_CREDENTIALS_FULL_URI",
];

fn scratch_dir() -> PathBuf {
    let dir = std::env::temp_dir().join(unique_name("rekey-aws-env"));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

#[tokio::test(flavor = "multi_thread")]
async fn the_standard_chain_reads_the_environment_and_profiles() {
    let server = moto();
    let (admin_id, admin_secret) = server.admin_key();
    let dir = scratch_dir();
    let config_file = dir.join("config");
    let credentials_file = dir.join("credentials");
    for var in AWS_VARS {
        std::env::remove_var(var);
    }
    // Never ask a metadata service (no network but loopback here), never read ~/.aws.
    std::env::set_var("AWS_EC2_METADATA_DISABLED", "true");
    std::env::set_var("AWS_CONFIG_FILE", &config_file);
    std::env::set_var("AWS_SHARED_CREDENTIALS_FILE", &credentials_file);

    // 1. No credentials anywhere: a clear invalid-input error naming the secret.
    let config = AwsSecretsManagerConfig {
        region: Some("us-east-1".into()),
        endpoint_url: Some(server.endpoint()),
        profile: None,
    };
    let key = unique_name("env/none");
    let err = AwsProvider::new()
        .aws_secrets_manager_store(&config)
        .unwrap()
        .read(&key)
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::InvalidInput, "{err}");
    assert!(
        err.to_string()
            .contains("no AWS credentials found (set AWS_ACCESS_KEY_ID/"),
        "{err}"
    );
    assert!(err.to_string().contains(&key), "{err}");
    assert!(!err.is_retryable());

    // 2. No region anywhere.
    let no_region = AwsSecretsManagerConfig {
        region: None,
        endpoint_url: Some(server.endpoint()),
        profile: None,
    };
    let err = AwsProvider::new()
        .aws_secrets_manager_store(&no_region)
        .unwrap()
        .read("any")
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::InvalidInput, "{err}");
    assert!(err.to_string().contains("no AWS region"), "{err}");

    // 3. Everything from the environment, as for the aws CLI: an empty configuration.
    std::env::set_var("AWS_ACCESS_KEY_ID", admin_id);
    std::env::set_var("AWS_SECRET_ACCESS_KEY", admin_secret);
    std::env::set_var("AWS_REGION", "us-east-1");
    std::env::set_var("AWS_ENDPOINT_URL", server.endpoint());
    let provider = AwsProvider::new();
    let store = provider
        .aws_secrets_manager_store(&AwsSecretsManagerConfig::default())
        .unwrap();
    let key = unique_name("env/vars");
    let id = uuid();
    store.put_current(&key, &id, &db_doc("from-env")).await.unwrap();
    assert_eq!(store.read(&key).await.unwrap().current().unwrap().id, id);
    assert_eq!(store.region().await.as_deref(), Some("us-east-1"));
    let user = unique_name("envuser");
    common::create_user_with_key(server, &user).await;
    let target = provider
        .aws_iam_target(&AwsIamTargetConfig::new(&user), Strategy::Dual, IamOptions::default())
        .unwrap();
    let lines = target.preflight(None).await.unwrap();
    assert!(
        lines.iter().any(|l| l.contains(&format!("IAM user {user} exists"))),
        "{lines:?}"
    );

    // 4. A named profile: region and keys from the files.
    for var in [
        "AWS_ACCESS_KEY_ID",
        "AWS_SECRET_ACCESS_KEY",
        "AWS_REGION",
        "AWS_ENDPOINT_URL",
    ] {
        std::env::remove_var(var);
    }
    std::fs::write(&config_file, "[profile rekey-test]\nregion = us-east-1\n").unwrap();
    std::fs::write(
        &credentials_file,
        format!("[rekey-test]\naws_access_key_id = {admin_id}\naws_secret_access_key = {admin_secret}\n"),
    )
    .unwrap();
    let with_profile = AwsSecretsManagerConfig {
        region: None,
        endpoint_url: Some(server.endpoint()),
        profile: Some("rekey-test".into()),
    };
    let store = AwsProvider::new().aws_secrets_manager_store(&with_profile).unwrap();
    assert_eq!(store.read(&key).await.unwrap().current().unwrap().id, id);

    // 5. A profile that does not exist.
    let missing_profile = AwsSecretsManagerConfig {
        region: Some("us-east-1".into()),
        endpoint_url: Some(server.endpoint()),
        profile: Some("no-such-profile".into()),
    };
    let err = AwsProvider::new()
        .aws_secrets_manager_store(&missing_profile)
        .unwrap()
        .read(&key)
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::InvalidInput, "{err}");
    assert!(!err.to_string().contains(admin_secret), "{err}");

    let _ = std::fs::remove_dir_all(&dir);
}
