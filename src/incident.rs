//! Incident mode's own work around the rotation: finding which configured credentials
//! hold a leaked value ([`lookup`]) and writing the record that goes to leadership,
//! customers and regulators ([`record`]).

pub mod admin;
pub mod lookup;
pub mod record;

pub use lookup::{Lookup, Match};
