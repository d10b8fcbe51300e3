//! `type = "http"`: an API key or password of any HTTP API, rotated by configured
//! requests ([`rekey_http`]). What it rotates is not known from its configuration: no
//! identity is checked.

use crate::providers::target_kind::{TargetContext, TargetKind};
use rekey_api::{ProviderResult, Strategy, Target};
use rekey_http::{HttpProvider, HttpTargetConfig};
use std::sync::Arc;

/// Boxed in [`crate::config::TargetConfig`]: the section is large.
impl TargetKind for Box<HttpTargetConfig> {
    const TYPE: &'static str = "http";

    /// `dual` when a `create` request mints the new secret beside the old, else `single`.
    fn default_strategy(&self) -> Strategy {
        if self.create.is_some() {
            Strategy::Dual
        } else {
            Strategy::Single
        }
    }

    fn build(&self, ctx: &TargetContext<'_>) -> ProviderResult<Arc<dyn Target>> {
        ctx.provider::<HttpProvider>().target(self, ctx.name, ctx.strategy)
    }
}
