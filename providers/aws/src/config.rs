//! The `type = "aws-secretsmanager"` store and `type = "aws-iam"` target configurations.

use rekey_api::{ProviderError, ProviderResult};
use serde::Deserialize;
use std::fmt;

/// A Secrets Manager store: `[stores.NAME]` with `type = "aws-secretsmanager"`. Every
/// field is optional; what is missing comes from the standard AWS environment, as for
/// the `aws` CLI (`AWS_REGION`/`AWS_DEFAULT_REGION`, `AWS_PROFILE`, `AWS_ENDPOINT_URL`,
/// `AWS_ACCESS_KEY_ID`/`AWS_SECRET_ACCESS_KEY`/`AWS_SESSION_TOKEN`, `~/.aws/config`,
/// `~/.aws/credentials`, web identity, ECS and EC2 instance roles).
///
/// ```toml
/// [stores.aws]
/// type = "aws-secretsmanager"
/// region = "eu-west-1"
/// ```
#[derive(Deserialize, Clone, Default, PartialEq, Eq, Hash)]
#[serde(deny_unknown_fields)]
pub struct AwsSecretsManagerConfig {
    /// The region (`eu-west-1`); default from the environment or the profile.
    #[serde(default)]
    pub region: Option<String>,
    /// Another endpoint (a VPC endpoint, LocalStack, moto), such as
    /// `http://127.0.0.1:5000`; default AWS's, or `AWS_ENDPOINT_URL`.
    #[serde(default)]
    pub endpoint_url: Option<String>,
    /// A profile of `~/.aws/config` for credentials and region; default `AWS_PROFILE`,
    /// else `default`.
    #[serde(default)]
    pub profile: Option<String>,
}

impl AwsSecretsManagerConfig {
    /// A configuration for `region` with everything else from the environment.
    pub fn new(region: impl Into<String>) -> Self {
        AwsSecretsManagerConfig {
            region: Some(region.into()),
            ..Default::default()
        }
    }

    /// Checks what deserialization cannot (empty strings, an endpoint without a scheme).
    pub fn validate(&self) -> ProviderResult<()> {
        validate_common(
            "aws-secretsmanager store",
            &self.region,
            &self.endpoint_url,
            &self.profile,
        )
    }
}

impl fmt::Debug for AwsSecretsManagerConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AwsSecretsManagerConfig")
            .field("region", &self.region)
            .field("endpoint_url", &self.endpoint_url.as_deref().map(redact_url))
            .field("profile", &self.profile)
            .finish()
    }
}

/// An IAM user whose access key rekey rotates: `target = { type = "aws-iam", ... }`.
/// Credentials (of an administrator allowed to manage the user's keys) and, when not
/// given, the region come from the standard AWS environment, as for the `aws` CLI.
///
/// ```toml
/// target = { type = "aws-iam", user = "ci-deployer" }
/// ```
#[derive(Deserialize, Clone, PartialEq, Eq, Hash)]
#[serde(deny_unknown_fields)]
pub struct AwsIamTargetConfig {
    /// The IAM user name (not its ARN).
    pub user: String,
    /// The region to sign with; IAM is global, so the default (environment, profile,
    /// else `us-east-1`) is nearly always right.
    #[serde(default)]
    pub region: Option<String>,
    /// Another endpoint for IAM and STS (moto, LocalStack); default AWS's, or
    /// `AWS_ENDPOINT_URL`.
    #[serde(default)]
    pub endpoint_url: Option<String>,
    /// A profile of `~/.aws/config` for the administrator's credentials.
    #[serde(default)]
    pub profile: Option<String>,
}

impl AwsIamTargetConfig {
    /// A configuration for `user` with everything else from the environment.
    pub fn new(user: impl Into<String>) -> Self {
        AwsIamTargetConfig {
            user: user.into(),
            region: None,
            endpoint_url: None,
            profile: None,
        }
    }

    /// Checks what deserialization cannot (empty user, a user given as an ARN...).
    pub fn validate(&self) -> ProviderResult<()> {
        if self.user.trim().is_empty() {
            return Err(ProviderError::invalid_input("aws-iam target: `user` is empty"));
        }
        if self.user.starts_with("arn:") || self.user.contains('/') {
            return Err(ProviderError::invalid_input(format!(
                "aws-iam target: `user` must be the user name, not an ARN or path (got {:?})",
                self.user
            )));
        }
        validate_common("aws-iam target", &self.region, &self.endpoint_url, &self.profile)
    }
}

impl fmt::Debug for AwsIamTargetConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AwsIamTargetConfig")
            .field("user", &self.user)
            .field("region", &self.region)
            .field("endpoint_url", &self.endpoint_url.as_deref().map(redact_url))
            .field("profile", &self.profile)
            .finish()
    }
}

fn validate_common(
    what: &str,
    region: &Option<String>,
    endpoint_url: &Option<String>,
    profile: &Option<String>,
) -> ProviderResult<()> {
    if region.as_deref().is_some_and(|r| r.trim().is_empty()) {
        return Err(ProviderError::invalid_input(format!("{what}: `region` is empty")));
    }
    if profile.as_deref().is_some_and(|p| p.trim().is_empty()) {
        return Err(ProviderError::invalid_input(format!("{what}: `profile` is empty")));
    }
    if let Some(url) = endpoint_url {
        if !(url.starts_with("http://") || url.starts_with("https://")) {
            return Err(ProviderError::invalid_input(format!(
                "{what}: `endpoint_url` must start with http:// or https:// (got {})",
                redact_url(url)
            )));
        }
    }
    Ok(())
}

/// An endpoint URL with any `user:password@` removed, for messages and `Debug`.
pub(crate) fn redact_url(url: &str) -> String {
    rekey_api::redact::redact(url)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn validation() {
        assert!(AwsSecretsManagerConfig::default().validate().is_ok());
        let mut c = AwsSecretsManagerConfig::new("eu-west-1");
        c.endpoint_url = Some("127.0.0.1:5000".into());
        assert!(c.validate().unwrap_err().message().contains("http://"));
        assert!(AwsIamTargetConfig::new("").validate().is_err());
        assert!(AwsIamTargetConfig::new("arn:aws:iam::1:user/x").validate().is_err());
        assert!(AwsIamTargetConfig::new("deployer").validate().is_ok());
    }

    #[test]
    fn debug_masks_endpoint_passwords() {
        let mut c = AwsSecretsManagerConfig::new("eu-west-1");
        c.endpoint_url = Some("https://u:hunter2@proxy.example/".into());
        let shown = format!("{c:?}");
        assert!(!shown.contains("hunter2"), "{shown}");
        assert!(shown.contains("eu-west-1"));
    }
}
