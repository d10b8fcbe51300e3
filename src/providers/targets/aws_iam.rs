//! `type = "aws-iam"`: an IAM user's access key ([`rekey_aws`]).
//!
//! Identity: the user (IAM names are case-insensitive) at its endpoint and profile.

use crate::config::identity::{Expected, Identity};
use crate::providers::target_kind::{TargetContext, TargetKind};
use rekey_api::{ProviderResult, Strategy, Target};
use rekey_aws::{AwsIamTargetConfig, AwsProvider, IamOptions};
use std::sync::Arc;

impl TargetKind for AwsIamTargetConfig {
    const TYPE: &'static str = "aws-iam";

    /// `dual`: IAM lets a user hold two keys.
    fn default_strategy(&self) -> Strategy {
        Strategy::Dual
    }

    /// Keys minted by a cloud API take seconds to propagate: more fresh-login attempts.
    fn default_verify_attempts(&self) -> u32 {
        8
    }

    fn identities(&self, _: &dyn Fn(&str) -> Option<String>) -> Vec<Identity> {
        let endpoint = self
            .endpoint_url
            .as_deref()
            .map(|e| e.trim_end_matches('/').to_ascii_lowercase());
        let place = format!(
            "{}|{}",
            endpoint.as_deref().unwrap_or("aws"),
            self.profile.as_deref().unwrap_or("")
        );
        let at = match &self.endpoint_url {
            Some(e) => format!(" at {}", rekey_api::redact::redact(e)),
            None => String::new(),
        };
        vec![Identity {
            key: (Self::TYPE, place, self.user.to_ascii_lowercase()),
            shown: format!("aws-iam user `{}`{at}", self.user),
        }]
    }

    fn expected(&self) -> Expected<'_> {
        Expected {
            engines: &[rekey_aws::ENGINE],
            users: vec![self.user.as_str()],
            users_ignore_case: true,
            ..Expected::default()
        }
    }

    fn build(&self, ctx: &TargetContext<'_>) -> ProviderResult<Arc<dyn Target>> {
        let options = IamOptions {
            delete_inactive: ctx.options.delete_inactive,
        };
        ctx.provider::<AwsProvider>().iam_target(self, ctx.strategy, options)
    }
}
