//! Reporters: render engine events and run reports for humans, JSON, the audit log
//! and JUnit.

pub mod audit;
pub mod human;
pub mod json;
pub mod junit;
pub mod metrics;
pub mod notify;
