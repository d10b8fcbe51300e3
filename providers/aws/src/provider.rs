//! [`AwsProvider`]: builds stores and targets and shares one SDK configuration (and one
//! set of SDK clients) per region, endpoint and profile.

use crate::config::{redact_url, AwsIamTargetConfig, AwsSecretsManagerConfig};
use crate::iam::{IamOptions, IamTarget};
use crate::secretsmanager::SecretsManagerStore;
use aws_config::retry::RetryConfig;
use aws_config::timeout::TimeoutConfig;
use aws_config::{BehaviorVersion, Region, SdkConfig};
use aws_credential_types::Credentials;
use aws_sdk_secretsmanager::config::SharedHttpClient;
use aws_smithy_http_client::tls;
use aws_smithy_http_client::Builder as HttpClientBuilder;
use rekey_api::{ProviderError, ProviderResult, Secret, Store, Strategy, Target};
use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::OnceCell;

/// IAM and STS are global: any region signs for them. Used when none is configured.
pub(crate) const GLOBAL_REGION: &str = "us-east-1";

/// Time limits and retries for every AWS call of a provider.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AwsTimeouts {
    /// Establishing a TCP (and TLS) connection.
    pub connect: Duration,
    /// One attempt of one call, answer included.
    pub attempt: Duration,
    /// One call, all attempts and backoff included.
    pub operation: Duration,
    /// Attempts per call (the SDK's standard retry: throttling, 5xx, I/O errors and
    /// timeouts are retried with jittered exponential backoff).
    pub max_attempts: u32,
}

impl Default for AwsTimeouts {
    fn default() -> Self {
        AwsTimeouts {
            connect: Duration::from_secs(5),
            attempt: Duration::from_secs(30),
            operation: Duration::from_secs(90),
            max_attempts: 3,
        }
    }
}

/// Where the SDK configuration of a store or target comes from.
#[derive(Clone, PartialEq, Eq, Hash)]
pub(crate) struct ConfigKey {
    pub region: Option<String>,
    pub endpoint_url: Option<String>,
    pub profile: Option<String>,
}

impl ConfigKey {
    /// `region eu-west-1, endpoint http://..., profile p`, for descriptions.
    pub(crate) fn describe(&self) -> String {
        let mut parts = vec![match &self.region {
            Some(r) => format!("region {r}"),
            None => "region from the environment".to_owned(),
        }];
        if let Some(url) = &self.endpoint_url {
            parts.push(format!("endpoint {}", redact_url(url)));
        }
        if let Some(p) = &self.profile {
            parts.push(format!("profile {p}"));
        }
        parts.join(", ")
    }
}

/// Provider-wide settings.
#[derive(Clone)]
struct Settings {
    /// Static credentials replacing the standard chain (embedding, tests).
    credentials: Option<Credentials>,
    timeouts: AwsTimeouts,
    http: SharedHttpClient,
}

/// One SDK configuration and the clients built from it, created on first use and shared
/// by every store and target with the same region, endpoint and profile.
pub(crate) struct Shared {
    pub key: ConfigKey,
    settings: Settings,
    loads: Arc<AtomicU64>,
    sdk: OnceCell<SdkConfig>,
    secrets_manager: OnceCell<aws_sdk_secretsmanager::Client>,
    iam: OnceCell<aws_sdk_iam::Client>,
    sts: OnceCell<aws_sdk_sts::Client>,
}

impl Shared {
    /// The SDK configuration, loaded once (region, profile and endpoint resolution;
    /// credentials are resolved lazily by the first call and cached).
    pub(crate) async fn sdk_config(&self) -> &SdkConfig {
        self.sdk
            .get_or_init(|| async {
                self.loads.fetch_add(1, Ordering::Relaxed);
                let t = &self.settings.timeouts;
                let mut loader = aws_config::defaults(BehaviorVersion::latest())
                    .http_client(self.settings.http.clone())
                    .timeout_config(
                        TimeoutConfig::builder()
                            .connect_timeout(t.connect)
                            .read_timeout(t.attempt)
                            .operation_attempt_timeout(t.attempt)
                            .operation_timeout(t.operation)
                            .build(),
                    )
                    .retry_config(RetryConfig::standard().with_max_attempts(t.max_attempts.max(1)));
                if let Some(region) = &self.key.region {
                    loader = loader.region(Region::new(region.clone()));
                }
                if let Some(url) = &self.key.endpoint_url {
                    loader = loader.endpoint_url(url.clone());
                }
                if let Some(profile) = &self.key.profile {
                    loader = loader.profile_name(profile.clone());
                }
                if let Some(credentials) = &self.settings.credentials {
                    loader = loader.credentials_provider(credentials.clone());
                }
                loader.load().await
            })
            .await
    }

    /// The region to use: configured, else from the environment; `None` when neither.
    pub(crate) async fn region(&self) -> Option<String> {
        self.sdk_config().await.region().map(|r| r.to_string())
    }

    /// The Secrets Manager client (a region is required).
    pub(crate) async fn secrets_manager(&self, what: &str) -> ProviderResult<&aws_sdk_secretsmanager::Client> {
        let sdk = self.sdk_config().await;
        if sdk.region().is_none() {
            return Err(ProviderError::invalid_input(format!(
                "{what}: no AWS region: set `region` in the store's configuration, AWS_REGION, or a profile's region"
            )));
        }
        Ok(self
            .secrets_manager
            .get_or_init(|| async { aws_sdk_secretsmanager::Client::new(sdk) })
            .await)
    }

    /// The IAM client (signing for `us-east-1` when no region is configured).
    pub(crate) async fn iam(&self) -> &aws_sdk_iam::Client {
        let sdk = self.sdk_config().await;
        self.iam
            .get_or_init(|| async {
                let mut builder = aws_sdk_iam::config::Builder::from(sdk);
                if sdk.region().is_none() {
                    builder = builder.region(Region::new(GLOBAL_REGION));
                }
                aws_sdk_iam::Client::from_conf(builder.build())
            })
            .await
    }

    /// The STS client with the administrator's credentials.
    pub(crate) async fn sts(&self) -> &aws_sdk_sts::Client {
        let sdk = self.sdk_config().await;
        self.sts
            .get_or_init(|| async { aws_sdk_sts::Client::from_conf(self.sts_builder(sdk).build()) })
            .await
    }

    /// An STS client signing with `access_key_id`/`secret_access_key` (a stored secret
    /// being proved), sharing the HTTP connection pool, with no identity cache.
    pub(crate) async fn sts_as(&self, access_key_id: &str, secret_access_key: &Secret) -> aws_sdk_sts::Client {
        let sdk = self.sdk_config().await;
        let credentials = Credentials::new(
            access_key_id,
            secret_access_key.expose(),
            None,
            None,
            "rekey stored secret",
        );
        let config = self
            .sts_builder(sdk)
            .credentials_provider(credentials)
            .identity_cache(aws_sdk_sts::config::IdentityCache::no_cache())
            .build();
        aws_sdk_sts::Client::from_conf(config)
    }

    fn sts_builder(&self, sdk: &SdkConfig) -> aws_sdk_sts::config::Builder {
        let mut builder = aws_sdk_sts::config::Builder::from(sdk);
        if sdk.region().is_none() {
            builder = builder.region(Region::new(GLOBAL_REGION));
        }
        builder
    }
}

/// The AWS provider of one run. It builds [`SecretsManagerStore`]s and [`IamTarget`]s
/// and keeps **one SDK configuration per (region, endpoint, profile)**: stores and
/// targets that share those share the configuration, its credential cache, its clients
/// and one HTTP connection pool. Building a store or target does nothing on the network;
/// the configuration is loaded (profile files read, region resolved) by the first call
/// that needs it, and credentials are resolved by the first request and then cached
/// (and refreshed) by the SDK.
///
/// Credentials come from the standard chain, as for the `aws` CLI: environment
/// (`AWS_ACCESS_KEY_ID`, `AWS_SECRET_ACCESS_KEY`, `AWS_SESSION_TOKEN`), the profile
/// (`profile`, else `AWS_PROFILE`, else `default`: static keys, `role_arn` with a source
/// profile, `credential_process`), web identity, the ECS task role, the EC2 instance
/// role. [`AwsProvider::with_static_credentials`] replaces the chain.
///
/// Use it inside one tokio runtime.
#[derive(Clone)]
pub struct AwsProvider {
    inner: Arc<Inner>,
}

struct Inner {
    settings: Settings,
    shared: Mutex<Vec<Arc<Shared>>>,
    loads: Arc<AtomicU64>,
}

impl Default for AwsProvider {
    fn default() -> Self {
        AwsProvider::new()
    }
}

impl fmt::Debug for AwsProvider {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let configs = self.inner.shared.lock().map(|s| s.len()).unwrap_or(0);
        f.debug_struct("AwsProvider")
            .field(
                "credentials",
                &match &self.inner.settings.credentials {
                    Some(c) => format!("static {}", c.access_key_id()),
                    None => "standard chain".to_owned(),
                },
            )
            .field("timeouts", &self.inner.settings.timeouts)
            .field("configs", &configs)
            .finish()
    }
}

impl AwsProvider {
    /// A provider using the standard credential chain and default time limits.
    pub fn new() -> Self {
        AwsProvider::with_settings(None, AwsTimeouts::default())
    }

    /// A provider signing every request with this access key instead of the standard
    /// chain (for embedding rekey, and for tests: the environment is process-wide).
    pub fn with_static_credentials(access_key_id: impl Into<String>, secret_access_key: Secret) -> Self {
        let credentials = Credentials::new(
            access_key_id.into(),
            secret_access_key.expose(),
            None,
            None,
            "rekey static credentials",
        );
        AwsProvider::with_settings(Some(credentials), AwsTimeouts::default())
    }

    /// The same provider with other time limits. Stores and targets built before keep
    /// the limits they had.
    pub fn with_timeouts(self, timeouts: AwsTimeouts) -> Self {
        AwsProvider::with_settings(self.inner.settings.credentials.clone(), timeouts)
    }

    fn with_settings(credentials: Option<Credentials>, timeouts: AwsTimeouts) -> Self {
        let http = HttpClientBuilder::new()
            .tls_provider(tls::Provider::Rustls(tls::rustls_provider::CryptoMode::Ring))
            .build_https();
        AwsProvider {
            inner: Arc::new(Inner {
                settings: Settings {
                    credentials,
                    timeouts,
                    http,
                },
                shared: Mutex::new(Vec::new()),
                loads: Arc::new(AtomicU64::new(0)),
            }),
        }
    }

    /// The Secrets Manager store for `config`, as the engine uses it. Nothing is sent
    /// until a call needs it.
    pub fn secrets_manager_store(&self, config: &AwsSecretsManagerConfig) -> ProviderResult<Arc<dyn Store>> {
        Ok(Arc::new(self.aws_secrets_manager_store(config)?))
    }

    /// [`AwsProvider::secrets_manager_store`] returning the concrete type.
    pub fn aws_secrets_manager_store(&self, config: &AwsSecretsManagerConfig) -> ProviderResult<SecretsManagerStore> {
        config.validate()?;
        let shared = self.shared(ConfigKey {
            region: config.region.clone(),
            endpoint_url: config.endpoint_url.clone(),
            profile: config.profile.clone(),
        });
        Ok(SecretsManagerStore::new(config.clone(), shared))
    }

    /// The IAM access-key target for `config` under `strategy` (only
    /// [`Strategy::Dual`]: IAM holds two keys per user), as the engine uses it.
    pub fn iam_target(
        &self,
        config: &AwsIamTargetConfig,
        strategy: Strategy,
        options: IamOptions,
    ) -> ProviderResult<Arc<dyn Target>> {
        Ok(Arc::new(self.aws_iam_target(config, strategy, options)?))
    }

    /// [`AwsProvider::iam_target`] returning the concrete type.
    pub fn aws_iam_target(
        &self,
        config: &AwsIamTargetConfig,
        strategy: Strategy,
        options: IamOptions,
    ) -> ProviderResult<IamTarget> {
        config.validate()?;
        match strategy {
            Strategy::Dual => {}
            Strategy::Single => {
                return Err(ProviderError::unsupported(format!(
                    "aws-iam target (user {}): strategy \"single\" is not possible: IAM mints the new key while \
                     the old one still works, so the user holds two keys until revoke; use \"dual\"",
                    config.user
                )))
            }
            Strategy::Alternating => {
                return Err(ProviderError::unsupported(format!(
                    "aws-iam target (user {}): strategy \"alternating\" is not implemented; use \"dual\"",
                    config.user
                )))
            }
        }
        let shared = self.shared(ConfigKey {
            region: config.region.clone(),
            endpoint_url: config.endpoint_url.clone(),
            profile: config.profile.clone(),
        });
        Ok(IamTarget::new(config.clone(), options, shared))
    }

    /// How many SDK configurations this provider has loaded (one per distinct region,
    /// endpoint and profile actually used).
    pub fn sdk_config_loads(&self) -> u64 {
        self.inner.loads.load(Ordering::Relaxed)
    }

    fn shared(&self, key: ConfigKey) -> Arc<Shared> {
        let mut all = self.inner.shared.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(found) = all.iter().find(|s| s.key == key) {
            return found.clone();
        }
        let shared = Arc::new(Shared {
            key,
            settings: self.inner.settings.clone(),
            loads: self.inner.loads.clone(),
            sdk: OnceCell::new(),
            secrets_manager: OnceCell::new(),
            iam: OnceCell::new(),
            sts: OnceCell::new(),
        });
        all.push(shared.clone());
        shared
    }
}
