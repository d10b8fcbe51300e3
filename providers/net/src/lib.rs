//! rekey's provider toolkit: what several providers need from the network side and
//! would otherwise each write again.
//!
//! - [`tls`]: trusted roots (a CA file, or the platform's plus Mozilla's, loaded once)
//!   and rustls client configurations that verify fully, verify the chain only, or
//!   only encrypt, with an optional client certificate.
//! - [`error_chain`]: an error and its sources as one line.
//! - [`percent_decode`]: percent-decoding into a buffer zeroized when dropped, for
//!   connection strings that hold passwords.
//! - [`Reopening`]: a connection opened on first use, shared by concurrent callers and
//!   reopened once when an operation finds it lost (the admin connections).

mod chain;
mod percent;
mod registry;
mod reopen;
pub mod tls;
mod verify;

/// The rustls the configurations are built with, for matching its error types.
pub use rustls;

pub use chain::error_chain;
pub use percent::percent_decode;
pub use registry::Registry;
pub use reopen::Reopening;
