//! Engine tests without servers: the protocol over `rekey_api::testing`'s in-memory
//! store and scripted fake target.

mod capabilities;
pub(super) mod harness;
mod plan;
mod regression;
mod simulation;
mod status;
