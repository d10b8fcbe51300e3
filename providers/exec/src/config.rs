//! The `target = { type = "exec", ... }` configuration.

use serde::Deserialize;
use serde_json::{Map, Value};
use std::fmt;

/// An external program that implements the target (protocol version 1).
///
/// ```toml
/// target = { type = "exec", command = ["/usr/local/lib/rekey/rabbitmq-user", "--quiet"], timeout_secs = 30,
///            settings = { user = "app" } }
/// ```
#[derive(Deserialize, Clone)]
#[serde(deny_unknown_fields)]
pub struct ExecTargetConfig {
    /// The program and its arguments, run without a shell. Never receives a secret: the
    /// request travels on stdin.
    pub command: Vec<String>,
    /// Bound on each run of the program (default 30); it is killed (with its process
    /// group) when it is over.
    #[serde(default = "default_timeout")]
    pub timeout_secs: u64,
    /// Passed as is in every request's `settings` (values may come from `${ENV}`).
    #[serde(default)]
    pub settings: Map<String, Value>,
    /// Fields of the stored document that are secret (besides `password`): masked in
    /// anything quoted from the plugin. (The credential-level key of issue 14, kept in
    /// the target until the engine reads it for every target.)
    #[serde(default)]
    pub secret_fields: Vec<String>,
    /// Names of environment variables passed to the program besides `PATH`, `HOME`,
    /// `USER`, `LOGNAME`, `LANG`, `LC_ALL`, `TZ` and `TMPDIR`; everything else is cleared.
    #[serde(default)]
    pub pass_env: Vec<String>,
}

fn default_timeout() -> u64 {
    30
}

impl ExecTargetConfig {
    /// A configuration with the defaults.
    pub fn new(command: Vec<String>) -> Self {
        ExecTargetConfig {
            command,
            timeout_secs: default_timeout(),
            settings: Map::new(),
            secret_fields: Vec::new(),
            pass_env: Vec::new(),
        }
    }
}

impl fmt::Debug for ExecTargetConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ExecTargetConfig")
            .field("command", &self.command)
            .field("timeout_secs", &self.timeout_secs)
            // Values may be passwords from `${ENV}`: names only.
            .field("settings", &self.settings.keys().collect::<Vec<_>>())
            .field("secret_fields", &self.secret_fields)
            .field("pass_env", &self.pass_env)
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_hides_settings_values() {
        let c: ExecTargetConfig = serde_json::from_value(serde_json::json!({
            "command": ["/bin/plugin"], "settings": {"admin_password": "s3cr3t-admin"}
        }))
        .unwrap();
        let shown = format!("{c:?}");
        assert!(
            shown.contains("admin_password") && !shown.contains("s3cr3t-admin"),
            "{shown}"
        );
        assert_eq!(c.timeout_secs, 30);
        assert!(serde_json::from_value::<ExecTargetConfig>(serde_json::json!({"command": [], "shell": true})).is_err());
    }
}
