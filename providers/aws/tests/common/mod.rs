//! Shared test helpers: a moto server per test binary, providers signing with its admin
//! key, and raw SDK clients to look at what rekey wrote.

#![allow(dead_code)]

use aws_config::{BehaviorVersion, Region};
use aws_credential_types::Credentials;
use rekey_api::{ProviderError, Secret, SecretDoc};
use rekey_aws::{AwsIamTargetConfig, AwsProvider, AwsSecretsManagerConfig, AwsTimeouts};
use rekey_testbed::MotoServer;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// The moto server of this test binary.
pub fn moto() -> &'static MotoServer {
    MotoServer::shared()
}

/// A provider signing with `server`'s admin key.
pub fn admin_provider(server: &MotoServer) -> AwsProvider {
    let (id, secret) = server.admin_key();
    AwsProvider::with_static_credentials(id, Secret::from(secret))
}

/// A store configuration pointing at `server`.
pub fn sm_config(server: &MotoServer) -> AwsSecretsManagerConfig {
    AwsSecretsManagerConfig {
        region: Some(server.region().to_owned()),
        endpoint_url: Some(server.endpoint()),
        profile: None,
    }
}

/// A target configuration for `user` pointing at `server`.
pub fn iam_config(server: &MotoServer, user: &str) -> AwsIamTargetConfig {
    AwsIamTargetConfig {
        user: user.to_owned(),
        region: Some(server.region().to_owned()),
        endpoint_url: Some(server.endpoint()),
        profile: None,
    }
}

/// Short limits for tests that expect a failure to reach the server.
pub fn fast_timeouts() -> AwsTimeouts {
    AwsTimeouts {
        connect: Duration::from_secs(1),
        attempt: Duration::from_secs(1),
        operation: Duration::from_secs(5),
        max_attempts: 2,
    }
}

async fn sdk(server: &MotoServer, id: &str, secret: &str) -> aws_config::SdkConfig {
    aws_config::defaults(BehaviorVersion::latest())
        .region(Region::new(server.region()))
        .endpoint_url(server.endpoint())
        .credentials_provider(Credentials::new(id, secret, None, None, "test"))
        .http_client(
            aws_smithy_http_client::Builder::new()
                .tls_provider(aws_smithy_http_client::tls::Provider::Rustls(
                    aws_smithy_http_client::tls::rustls_provider::CryptoMode::Ring,
                ))
                .build_https(),
        )
        .load()
        .await
}

/// A raw Secrets Manager client signing with the admin key.
pub async fn raw_sm(server: &MotoServer) -> aws_sdk_secretsmanager::Client {
    let (id, secret) = server.admin_key();
    aws_sdk_secretsmanager::Client::new(&sdk(server, id, secret).await)
}

/// A raw IAM client signing with the admin key.
pub async fn raw_iam(server: &MotoServer) -> aws_sdk_iam::Client {
    let (id, secret) = server.admin_key();
    aws_sdk_iam::Client::new(&sdk(server, id, secret).await)
}

/// Creates an IAM user with no policy and one access key; returns its document.
pub async fn create_user_with_key(server: &MotoServer, user: &str) -> SecretDoc {
    let iam = raw_iam(server).await;
    iam.create_user().user_name(user).send().await.expect("CreateUser");
    create_key(server, user).await
}

/// Creates an access key for `user`; returns its document.
pub async fn create_key(server: &MotoServer, user: &str) -> SecretDoc {
    let iam = raw_iam(server).await;
    let key = iam
        .create_access_key()
        .user_name(user)
        .send()
        .await
        .expect("CreateAccessKey")
        .access_key
        .expect("a key");
    let mut doc = SecretDoc::new();
    doc.set("engine", "aws-iam");
    doc.set("username", user);
    doc.set("access_key_id", key.access_key_id.as_str());
    doc.set("secret_access_key", key.secret_access_key.as_str());
    doc
}

/// `(id, active)` of the user's keys.
pub async fn list_keys(server: &MotoServer, user: &str) -> Vec<(String, bool)> {
    let iam = raw_iam(server).await;
    let out = iam
        .list_access_keys()
        .user_name(user)
        .send()
        .await
        .expect("ListAccessKeys");
    out.access_key_metadata()
        .iter()
        .map(|k| {
            (
                k.access_key_id().unwrap().to_owned(),
                k.status() == Some(&aws_sdk_iam::types::StatusType::Active),
            )
        })
        .collect()
}

/// `VersionId` → labels, from `ListSecretVersionIds`.
pub async fn labels(server: &MotoServer, secret: &str) -> Vec<(String, Vec<String>)> {
    let sm = raw_sm(server).await;
    let out = sm
        .list_secret_version_ids()
        .secret_id(secret)
        .send()
        .await
        .expect("ListSecretVersionIds");
    let mut all: Vec<(String, Vec<String>)> = out
        .versions()
        .iter()
        .map(|v| {
            let mut l = v.version_stages().to_vec();
            l.sort();
            (v.version_id().unwrap().to_owned(), l)
        })
        .collect();
    all.sort();
    all
}

/// The labels one version holds (empty when it holds none or does not exist).
pub async fn labels_of(server: &MotoServer, secret: &str, version: &str) -> Vec<String> {
    labels(server, secret)
        .await
        .into_iter()
        .find(|(v, _)| v == version)
        .map(|(_, l)| l)
        .unwrap_or_default()
}

/// A UUID-shaped unique id (what the engine uses as version ids).
pub fn uuid() -> String {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let nanos = SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_nanos() as u64;
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    let hi = nanos ^ (u64::from(std::process::id()) << 40);
    let lo = n.wrapping_mul(0x9e37_79b9_7f4a_7c15) ^ nanos.rotate_left(17);
    let hex = format!("{hi:016x}{lo:016x}");
    format!(
        "{}-{}-4{}-8{}-{}",
        &hex[0..8],
        &hex[8..12],
        &hex[13..16],
        &hex[17..20],
        &hex[20..32]
    )
}

/// A document in the shape of AWS's database rotation secrets.
pub fn db_doc(password: &str) -> SecretDoc {
    let mut d = SecretDoc::new();
    d.set("engine", "postgres");
    d.set("host", "db.internal");
    d.set("port", 5432);
    d.set("username", "orders_app");
    d.set("password", password);
    d.set("dbname", "orders");
    d
}

/// Asserts an error is one line, names `name`, and does not contain `secret`.
pub fn assert_clean(err: &ProviderError, name: &str, secret: Option<&str>) {
    let text = err.to_string();
    assert!(!text.contains('\n'), "one line: {text}");
    assert!(text.contains(name), "names {name}: {text}");
    if let Some(secret) = secret {
        assert!(!text.contains(secret), "no secret in: {text}");
    }
}
