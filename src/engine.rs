//! The rotation engine: the protocol state machine, parallel runs, locks and events.

pub mod backends;
pub mod event;
pub mod failure;
pub mod hooks;
pub mod inspection;
pub mod interrupt;
pub mod lock;
pub mod prefetch;
pub mod recorder;
pub mod report;
pub mod rotation;
pub mod run;
pub mod schedule;
pub mod version;

pub use backends::Backends;
pub use event::{Event, Reporter, Step};
pub use failure::FailureKind;
pub use interrupt::Interrupt;
pub use report::{CredentialReport, RunReport, Status};
pub use rotation::RotateOptions;
pub use run::{Engine, EngineSettings, ImportOptions, RunError};

#[cfg(test)]
mod tests;
