//! [`ExecProvider`]: builds targets, asking each plugin to `describe` itself once.

use crate::config::ExecTargetConfig;
use crate::run::Program;
use crate::target::{ExecTarget, Plugin, PluginDescription};
use rekey_api::{FailingTarget, ProviderError, ProviderResult, Strategy, Target};
use std::fmt;
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// A plugin (command, settings, environment) and what it said of itself, or why it
/// said nothing (asked once per run either way).
type Described = Vec<(String, Arc<Plugin>, ProviderResult<PluginDescription>)>;

/// The exec provider of one run. Building a target runs the plugin's `describe` (once
/// per command, settings and `pass_env`; the answer must not depend on the credential).
#[derive(Clone, Default)]
pub struct ExecProvider {
    described: Arc<Mutex<Described>>,
}

impl fmt::Debug for ExecProvider {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let n = self.described.lock().map(|d| d.len()).unwrap_or(0);
        f.debug_struct("ExecProvider").field("plugins", &n).finish()
    }
}

impl ExecProvider {
    /// A provider that has run nothing yet.
    pub fn new() -> Self {
        Self::default()
    }

    /// The target of `credential` under `strategy`. Runs the plugin's `describe` (from a
    /// thread of its own, so it may be called inside or outside a tokio runtime) unless
    /// it was run for the same plugin already. A plugin that does not answer `describe`
    /// is an error here (`validate`: exit 2).
    pub fn target(
        &self,
        config: &ExecTargetConfig,
        credential: &str,
        strategy: Strategy,
    ) -> ProviderResult<Arc<dyn Target>> {
        Ok(Arc::new(self.exec_target(config, credential, strategy)?))
    }

    /// [`ExecProvider::target`] for a run over many credentials: a plugin that does not
    /// answer `describe` (it cannot be run, hangs, answers garbage) gives a
    /// [`FailingTarget`] failing every operation with that error, so that it fails
    /// only its own credentials. A configuration the plugin's answer rules out (a
    /// strategy it does not implement) is still an error.
    pub fn target_or_unavailable(
        &self,
        config: &ExecTargetConfig,
        credential: &str,
        strategy: Strategy,
    ) -> ProviderResult<Arc<dyn Target>> {
        validate(config)?;
        let (plugin, description) = self.described(config, credential);
        match description {
            Ok(description) => Ok(Arc::new(ExecTarget::new(credential, plugin, &description, strategy)?)),
            Err(e) => Ok(Arc::new(FailingTarget::new(
                e,
                format!("{} (did not describe itself)", plugin.label()),
                strategy,
            ))),
        }
    }

    /// [`ExecProvider::target`] returning the concrete type.
    pub fn exec_target(
        &self,
        config: &ExecTargetConfig,
        credential: &str,
        strategy: Strategy,
    ) -> ProviderResult<ExecTarget> {
        validate(config)?;
        let (plugin, description) = self.described(config, credential);
        ExecTarget::new(credential, plugin, &description?, strategy)
    }

    /// The plugin of `config` and its answer to `describe` (asked once per run).
    fn described(
        &self,
        config: &ExecTargetConfig,
        credential: &str,
    ) -> (Arc<Plugin>, ProviderResult<PluginDescription>) {
        let key =
            serde_json::json!([config.command, config.settings, config.pass_env, config.timeout_secs]).to_string();
        let found = {
            let described = self.described.lock().unwrap_or_else(|p| p.into_inner());
            described
                .iter()
                .find(|(k, _, _)| *k == key)
                .map(|(_, p, d)| (p.clone(), d.clone()))
        };
        match found {
            Some(found) => found,
            None => {
                let plugin = Arc::new(Plugin {
                    program: Program {
                        command: config.command.clone(),
                        pass_env: config.pass_env.clone(),
                        timeout: Duration::from_secs(config.timeout_secs),
                    },
                    settings: config.settings.clone(),
                    secret_fields: config.secret_fields.clone(),
                });
                let description = describe_blocking(plugin.clone(), credential);
                let mut described = self.described.lock().unwrap_or_else(|p| p.into_inner());
                described.push((key, plugin.clone(), description.clone()));
                (plugin, description)
            }
        }
    }
}

fn validate(config: &ExecTargetConfig) -> ProviderResult<()> {
    let invalid = |m: &str| Err(ProviderError::invalid_input(format!("exec target: {m}")));
    match config.command.first() {
        None => {
            return invalid("`command` is empty: give the program and its arguments, e.g. [\"/usr/local/bin/plugin\"]")
        }
        Some(p) if p.trim().is_empty() => return invalid("`command`'s program is empty"),
        Some(_) => {}
    }
    if !(1..=3600).contains(&config.timeout_secs) {
        return invalid("timeout_secs must be between 1 and 3600");
    }
    for name in &config.pass_env {
        if name.is_empty() || name.contains('=') || name.contains('\0') {
            return invalid("pass_env holds an invalid variable name");
        }
    }
    Ok(())
}

fn describe_blocking(plugin: Arc<Plugin>, credential: &str) -> ProviderResult<PluginDescription> {
    let credential = credential.to_owned();
    std::thread::spawn(move || {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| ProviderError::other(format!("exec target: cannot start a runtime: {e}")))?;
        runtime.block_on(plugin.describe(&credential))
    })
    .join()
    .unwrap_or_else(|_| Err(ProviderError::other("exec target: describe panicked")))
}
