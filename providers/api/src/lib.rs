//! The contract between rekey's engine and its providers.
//!
//! A *target* is where a secret is checked (a PostgreSQL role, a Redis ACL user...);
//! a *store* is where it is kept (a local file, a secrets manager). Both are traits
//! shaped after the rotation protocol's steps, each step idempotent. Secrets travel as
//! [`Secret`] and [`SecretDoc`], which cannot be printed or serialized by accident and
//! are zeroized on drop. Every fallible call returns a [`ProviderError`] whose
//! [`ErrorKind`] the engine acts on.
//!
//! [`conformance`] holds the suites every target and store must pass against its real
//! backend.

pub mod capability;
pub mod conformance;
pub mod document;
pub mod env;
pub mod error;
pub mod failing;
pub mod redact;
pub mod secret;
pub mod session_notes;
pub mod store;
pub mod strategy;
pub mod target;
#[cfg(feature = "testing")]
pub mod testing;

pub use capability::{StoreCapabilities, TargetCapabilities};
pub use document::SecretDoc;
pub use error::{ErrorCode, ErrorKind, ProviderError, ProviderResult, RedactedSource};
pub use failing::FailingTarget;
pub use redact::RedactedDsn;
pub use secret::Secret;
pub use store::{KeyState, Stage, Store, StoredVersion, Timestamp};
pub use strategy::Strategy;
pub use target::{RevokeOptions, RevokeReport, Target};
