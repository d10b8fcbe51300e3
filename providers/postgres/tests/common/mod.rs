//! Fixtures shared by this crate's test files.

#![allow(dead_code)] // each test file uses its own subset

pub mod fixtures;

pub use fixtures::*;
