//! rekey: a credential rotation orchestrator. The binary (`main.rs`) is a thin shell
//! over this library: [`cli`] parses, [`config`] loads, [`providers`] turns the
//! configuration into stores and targets, [`engine`] runs the rotation protocol over
//! them and emits events, [`report`] renders them.

pub mod allocator;
pub mod app;
pub mod cli;
pub mod commands;
pub mod config;
pub mod engine;
pub mod exit;
pub mod incident;
pub mod leaked;
pub mod password;
pub mod providers;
pub mod report;
pub mod terminal;
