//! `type = "aws-secretsmanager"`: AWS Secrets Manager ([`rekey_aws`]).

use crate::providers::store_kind::{StoreContext, StoreKind};
use rekey_api::{ProviderResult, Store};
use rekey_aws::{AwsProvider, AwsSecretsManagerConfig};
use std::sync::Arc;

impl StoreKind for AwsSecretsManagerConfig {
    const TYPE: &'static str = "aws-secretsmanager";

    fn open(&self, ctx: &StoreContext<'_>) -> ProviderResult<Arc<dyn Store>> {
        ctx.provider::<AwsProvider>().secrets_manager_store(self)
    }
}
