//! [`ExecTarget`]: each protocol step is one run of the plugin.

use crate::protocol::{interpret, too_big, Answer, Masks, Op, Request};
use crate::run::{run, Program, RunError};
use rekey_api::document::PASSWORD;
use rekey_api::{
    ErrorKind, ProviderError, ProviderResult, RevokeOptions, RevokeReport, Secret, SecretDoc, Strategy, Target,
    TargetCapabilities,
};
use serde_json::{Map, Value};
use std::fmt;
use std::sync::Arc;

/// What the plugin said of itself (`describe`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PluginDescription {
    /// Strategies it implements.
    pub strategies: Vec<Strategy>,
    /// It mints secrets itself (`create`).
    pub mints: bool,
    /// It can end the sessions of an old secret at `revoke`.
    pub terminates_sessions: bool,
    /// It answers `sweep`: removes this credential's minted secrets that no stored
    /// version holds (left by a run killed between minting and storing).
    pub sweeps: bool,
}

/// The runner shared by one plugin's targets.
pub(crate) struct Plugin {
    pub program: Program,
    pub settings: Map<String, Value>,
    /// Fields (besides `password`) a prepared document must not inherit from the current one.
    pub secret_fields: Vec<String>,
}

impl fmt::Debug for Plugin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Plugin")
            .field("program", &self.program)
            // Values may be passwords from `${ENV}`: names only.
            .field("settings", &self.settings.keys().collect::<Vec<_>>())
            .field("secret_fields", &self.secret_fields)
            .finish()
    }
}

impl Plugin {
    /// `exec plugin PATH`
    pub(crate) fn label(&self) -> String {
        format!("exec plugin {}", self.program.command[0])
    }

    pub(crate) async fn call(&self, request: Request<'_>) -> ProviderResult<Answer> {
        let label = format!("{}: {}", self.label(), request.op.as_str());
        let masks = Masks::of(&request);
        let input = request.encode();
        let env = [
            ("REKEY_PROTOCOL", "1"),
            ("REKEY_OPERATION", request.op.as_str()),
            ("REKEY_CREDENTIAL", request.credential),
        ];
        match run(&self.program, &env, &input).await {
            Ok(output) => interpret(&label, &output, &masks),
            Err(RunError::Spawn(e)) => {
                let kind = match e.kind() {
                    std::io::ErrorKind::NotFound | std::io::ErrorKind::PermissionDenied => ErrorKind::InvalidInput,
                    _ => ErrorKind::Other,
                };
                let reason = e.to_string();
                let reason = reason.split(" (os error").next().unwrap_or(&reason).to_owned();
                Err(ProviderError::new(kind, format!("{label}: cannot run it: {reason}")).retryable(false))
            }
            Err(RunError::Timeout { stderr }) => {
                let quoted = masks.quote(&String::from_utf8_lossy(&stderr), true);
                let tail = if quoted.is_empty() {
                    String::new()
                } else {
                    format!("; stderr: {quoted}")
                };
                Err(ProviderError::unreachable(format!(
                    "{label}: no answer within {}s (timeout_secs); killed with its process group{tail}",
                    self.program.timeout.as_secs()
                )))
            }
            Err(RunError::TooBig) => Err(too_big(&label)),
        }
    }

    /// Runs `describe`.
    pub(crate) async fn describe(&self, credential: &str) -> ProviderResult<PluginDescription> {
        let label = format!("{}: describe", self.label());
        let answer = self
            .call(Request {
                op: Op::Describe,
                credential,
                settings: &self.settings,
                new: None,
                current: None,
                old: None,
                terminate_sessions: false,
                stored: &[],
                since: None,
            })
            .await?;
        let bad = |what: &str| ProviderError::invalid_input(format!("{label}: {what}")).retryable(false);
        let strategies = match answer.get("strategies") {
            Some(Value::Array(items)) => items
                .iter()
                .map(|s| match s.as_str() {
                    Some("single") => Ok(Strategy::Single),
                    Some("dual") => Ok(Strategy::Dual),
                    Some("alternating") => Ok(Strategy::Alternating),
                    _ => Err(bad(
                        "\"strategies\" lists something other than \"single\", \"dual\", \"alternating\"",
                    )),
                })
                .collect::<ProviderResult<Vec<_>>>()?,
            _ => return Err(bad("its answer has no \"strategies\" array")),
        };
        if strategies.is_empty() {
            return Err(bad("\"strategies\" is empty"));
        }
        let flag = |key: &str| match answer.get(key) {
            None => Ok(false),
            Some(Value::Bool(b)) => Ok(*b),
            Some(_) => Err(bad(&format!("\"{key}\" is not a boolean"))),
        };
        Ok(PluginDescription {
            strategies,
            mints: flag("mints")?,
            terminates_sessions: flag("terminates_sessions")?,
            sweeps: flag("sweeps")?,
        })
    }
}

/// One credential on a plugin. Built by [`crate::ExecProvider::target`].
///
/// | step | operation | documents sent |
/// | --- | --- | --- |
/// | `preflight` | `preflight` | `current` |
/// | `prepare` | `create` when the plugin mints (else none: the generated password) | `new` (current's non-secret fields and the generated password), `current` |
/// | `apply` | `apply` | `new`, `current` |
/// | `login`, `verify` | `login` | `new` = the checked document |
/// | `revoke` | `revoke` | `old`, `new`, `terminate_sessions` |
pub struct ExecTarget {
    credential: String,
    plugin: Arc<Plugin>,
    capabilities: TargetCapabilities,
    sweeps: bool,
}

impl fmt::Debug for ExecTarget {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ExecTarget")
            .field("credential", &self.credential)
            .field("command", &self.plugin.program.command)
            .field("capabilities", &self.capabilities)
            .finish_non_exhaustive()
    }
}

impl ExecTarget {
    pub(crate) fn new(
        credential: &str,
        plugin: Arc<Plugin>,
        description: &PluginDescription,
        strategy: Strategy,
    ) -> ProviderResult<ExecTarget> {
        let label = plugin.label();
        if !description.strategies.contains(&strategy) {
            let offered: Vec<&str> = description.strategies.iter().map(|s| s.as_str()).collect();
            return Err(ProviderError::unsupported(format!(
                "{label}: strategy \"{strategy}\" is not one the plugin implements ({})",
                offered.join(", ")
            )));
        }
        if description.mints && strategy == Strategy::Single {
            return Err(ProviderError::unsupported(format!(
                "{label}: the plugin mints its secrets, which needs strategy \"dual\" (the old secret must keep \
                 working until the minted one is stored and verified)"
            )));
        }
        Ok(ExecTarget {
            credential: credential.to_owned(),
            plugin,
            capabilities: TargetCapabilities {
                strategies: description.strategies.clone(),
                strategy,
                terminate_sessions: description.terminates_sessions,
                mints_own_secret: description.mints,
                apply_invalidates_previous: strategy == Strategy::Single,
                retires_previous: false,
            },
            sweeps: description.mints && description.sweeps,
        })
    }

    fn request<'a>(&'a self, op: Op) -> Request<'a> {
        Request {
            op,
            credential: &self.credential,
            settings: &self.plugin.settings,
            new: None,
            current: None,
            old: None,
            terminate_sessions: false,
            stored: &[],
            since: None,
        }
    }

    fn is_secret(&self, field: &str) -> bool {
        field == PASSWORD || self.plugin.secret_fields.iter().any(|f| f == field)
    }
}

#[async_trait::async_trait]
impl Target for ExecTarget {
    fn capabilities(&self) -> &TargetCapabilities {
        &self.capabilities
    }

    fn describe(&self) -> String {
        format!("{} ({})", self.plugin.label(), self.capabilities.strategy)
    }

    fn complete(&self, _doc: &mut SecretDoc) {}

    async fn preflight(&self, current: Option<&SecretDoc>) -> ProviderResult<Vec<String>> {
        let answer = self
            .plugin
            .call(Request {
                current,
                ..self.request(Op::Preflight)
            })
            .await?;
        let mut lines = vec![self.describe()];
        // The plugin's own words: one line each, never a secret.
        let masks = Masks::of(&Request {
            current,
            ..self.request(Op::Preflight)
        });
        match answer.get("lines") {
            Some(Value::Array(items)) => {
                lines.extend(items.iter().filter_map(Value::as_str).map(|l| masks.quote(l, false)))
            }
            _ => lines.push("the plugin's preflight passed".to_owned()),
        }
        Ok(lines)
    }

    async fn sweep_unstored(&self, stored: &[&SecretDoc], since: rekey_api::Timestamp) -> ProviderResult<Vec<String>> {
        if !self.sweeps {
            return Ok(Vec::new());
        }
        let since = since.duration_since(std::time::UNIX_EPOCH).ok().map(|d| d.as_secs());
        let answer = self
            .plugin
            .call(Request {
                stored,
                since,
                ..self.request(Op::Sweep)
            })
            .await?;
        match answer.get("removed") {
            None => Ok(Vec::new()),
            Some(Value::Array(items)) if items.iter().all(Value::is_string) => {
                // Ids only (the plugin's words, masked like everything it says).
                let masks = Masks::of(&Request {
                    stored,
                    ..self.request(Op::Sweep)
                });
                Ok(items
                    .iter()
                    .filter_map(Value::as_str)
                    .map(|id| masks.quote(id, false))
                    .collect())
            }
            Some(_) => Err(ProviderError::other(format!(
                "{}: sweep: \"removed\" is not an array of strings (ids of the secrets removed)",
                self.plugin.label()
            ))
            .retryable(false)),
        }
    }

    async fn prepare(&self, current: Option<&SecretDoc>, password: Secret) -> ProviderResult<SecretDoc> {
        let mut new = SecretDoc::new();
        if let Some(current) = current {
            for name in current.field_names() {
                if self.capabilities.mints_own_secret && self.is_secret(name) {
                    continue;
                }
                if let Some(v) = current.get(name) {
                    new.set(name, v.clone());
                }
            }
        }
        new.set_password(&password);
        if !self.capabilities.mints_own_secret {
            return Ok(new);
        }
        let mut answer = self
            .plugin
            .call(Request {
                new: Some(&new),
                current,
                ..self.request(Op::Create)
            })
            .await?;
        match answer.take("doc") {
            Some(doc @ Value::Object(_)) => SecretDoc::from_value(doc),
            other => {
                // Zeroize whatever it was.
                drop(other.map(crate::protocol::SecretValue));
                Err(ProviderError::other(format!(
                    "{}: create: its answer has no \"doc\" object; the plugin may have minted a secret that rekey \
                     cannot store: check it",
                    self.plugin.label()
                ))
                .retryable(false))
            }
        }
    }

    async fn apply(&self, new: &SecretDoc, current: Option<&SecretDoc>) -> ProviderResult<()> {
        self.plugin
            .call(Request {
                new: Some(new),
                current,
                ..self.request(Op::Apply)
            })
            .await
            .map(|_| ())
    }

    async fn login(&self, doc: &SecretDoc) -> ProviderResult<()> {
        self.plugin
            .call(Request {
                new: Some(doc),
                ..self.request(Op::Login)
            })
            .await
            .map(|_| ())
    }

    async fn revoke(&self, old: &SecretDoc, new: &SecretDoc, options: RevokeOptions) -> ProviderResult<RevokeReport> {
        let answer = self
            .plugin
            .call(Request {
                old: Some(old),
                new: Some(new),
                terminate_sessions: options.terminate_sessions,
                ..self.request(Op::Revoke)
            })
            .await?;
        Ok(RevokeReport {
            sessions_terminated: answer.get("sessions_terminated").and_then(Value::as_u64).unwrap_or(0),
            ..RevokeReport::default()
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::run::{Program, RunError};

    #[test]
    fn debug_shows_no_setting_value_and_no_plugin_stderr() {
        let mut settings = Map::new();
        settings.insert("api_token".into(), Value::String("tok-hunter2-secret".into()));
        let plugin = Plugin {
            program: Program {
                command: vec!["/bin/plugin".into()],
                pass_env: Vec::new(),
                timeout: std::time::Duration::from_secs(1),
            },
            settings,
            secret_fields: Vec::new(),
        };
        let shown = format!("{plugin:?}");
        assert!(shown.contains("api_token") && !shown.contains("hunter2"), "{shown}");
        let timeout = RunError::Timeout {
            stderr: zeroize::Zeroizing::new(b"echoing hunter2".to_vec()),
        };
        assert!(!format!("{timeout:?}").contains("hunter2"));
    }
}
