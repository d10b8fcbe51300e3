//! rekey's `exec` target: an external program, in any language, implements a target.
//!
//! rekey runs the program once per operation (no shell, a cleared environment), writes
//! one JSON request to its stdin and closes it, and reads one JSON answer from its
//! stdout. Secrets travel only in the request: never in argv or the environment. The
//! protocol (version 1) is documented in the crate's README, with a complete example
//! plugin in `examples/plugins/`.
//!
//! Every failure of the plugin is a one-line [`rekey_api::ProviderError`] naming the
//! plugin and the operation, never a panic: a plugin that cannot be started, exits
//! non-zero without an answer, prints garbage, answers another protocol version or more
//! than 1 MiB, or does not answer within `timeout_secs` (it is then killed with its
//! process group). Its stderr is quoted (its end, one line) with every known secret
//! masked.

#![warn(missing_docs)]

mod config;
mod protocol;
mod provider;
mod run;
mod target;

pub use config::ExecTargetConfig;
pub use protocol::{parse_answer, Answer, PROTOCOL};
pub use provider::ExecProvider;
pub use target::{ExecTarget, PluginDescription};
