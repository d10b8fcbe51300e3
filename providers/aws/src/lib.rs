//! rekey's AWS providers.
//!
//! - [`SecretsManagerStore`] (`type = "aws-secretsmanager"`): each key is a Secrets
//!   Manager secret; rekey's stages are AWS's staging labels (`current` = `AWSCURRENT`,
//!   `pending` = `AWSPENDING`, `previous` = `AWSPREVIOUS`), version ids are
//!   `ClientRequestToken`s, and every write is a compare-and-set on labels.
//! - [`IamTarget`] (`type = "aws-iam"`): an IAM user's access key, rotated `dual` (IAM
//!   mints the new key; both work until the old one is deactivated and deleted).
//!
//! [`AwsProvider`] builds both and shares one SDK configuration, credential cache and
//! HTTP connection pool per (region, endpoint, profile). Credentials come from the
//! standard AWS chain (environment, profile, web identity, ECS/EC2 roles), as for the
//! `aws` CLI.
//!
//! ```no_run
//! # async fn demo() -> rekey_api::ProviderResult<()> {
//! use rekey_aws::{AwsIamTargetConfig, AwsProvider, AwsSecretsManagerConfig, IamOptions};
//! let provider = AwsProvider::new();
//! let store = provider.secrets_manager_store(&AwsSecretsManagerConfig::new("eu-west-1"))?;
//! let target = provider.iam_target(
//!     &AwsIamTargetConfig::new("ci-deployer"),
//!     rekey_api::Strategy::Dual,
//!     IamOptions::default(),
//! )?;
//! let state = store.read("ci/deployer").await?;
//! for line in target.preflight(state.current().map(|v| &v.doc)).await? {
//!     println!("{line}");
//! }
//! # Ok(()) }
//! ```
//!
//! Errors carry a [`rekey_api::ErrorKind`]: refused request credentials
//! (`InvalidClientTokenId`, `SignatureDoesNotMatch`) are `AuthRejected`; `AccessDenied`
//! is `PermissionDenied`; `ResourceNotFoundException`/`NoSuchEntity` are `NotFound`;
//! labels moved by another writer, `ResourceExistsException` and the two-key limit are
//! `Conflict`; timeouts, connection failures and throttling are `Unreachable`
//! (retryable); a credential chain that finds nothing, a missing region or a value that
//! is not a JSON object are `InvalidInput`. Messages are one line naming the secret or
//! user, never a secret value.

#![forbid(unsafe_code)]
#![warn(missing_docs)]

mod config;
mod error;
mod iam;
mod provider;
mod secretsmanager;
mod version;

pub use config::{AwsIamTargetConfig, AwsSecretsManagerConfig};
pub use iam::{IamOptions, IamTarget, ACCESS_KEY_ID, ENGINE, SECRET_ACCESS_KEY, SESSION_POLICY_PREFIX};
pub use provider::{AwsProvider, AwsTimeouts};
pub use secretsmanager::{
    SecretsManagerStore, AWSCURRENT, AWSPENDING, AWSPREVIOUS, CAS_LABEL, REVOKED_TAG_PREFIX, WRITE_LABEL,
};
