//! `type = "exec"`: an external program speaking rekey's plugin protocol
//! ([`rekey_exec`]). What it rotates is not known from its configuration: no identity is
//! checked.

use crate::providers::target_kind::{TargetContext, TargetKind};
use rekey_api::{ProviderResult, Strategy, Target};
use rekey_exec::{ExecProvider, ExecTargetConfig};
use std::sync::Arc;

impl TargetKind for ExecTargetConfig {
    const TYPE: &'static str = "exec";

    /// `single`: what the plugin implements is known only once it runs, so a
    /// credential on another strategy sets `strategy`.
    fn default_strategy(&self) -> Strategy {
        Strategy::Single
    }

    fn build(&self, ctx: &TargetContext<'_>) -> ProviderResult<Arc<dyn Target>> {
        let provider = ctx.provider::<ExecProvider>();
        if ctx.options.plugins_must_answer {
            provider.target(self, ctx.name, ctx.strategy)
        } else {
            provider.target_or_unavailable(self, ctx.name, ctx.strategy)
        }
    }
}
