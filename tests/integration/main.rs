//! Black-box tests of the `rekey` binary against a real PostgreSQL cluster with
//! SCRAM-SHA-256 authentication enforced (started by rekey-testbed), and the file store.

mod after_apply;
mod alternating;
mod aws;
mod bad_input;
mod config_refusals;
mod crash;
mod exec_target;
mod expired;
mod http_target;
mod incident;
mod incident_sessions;
mod leaked_artefacts;
mod leaks;
mod mysql;
mod mysql_ed25519;
mod notify;
mod operations;
mod redis;
mod rotate;
mod util;
mod ux_color;
mod ux_completions;
mod ux_help;
mod ux_init;
mod ux_json;
mod ux_list;
mod ux_man;
mod ux_plan;
mod ux_progress;
mod ux_status;
mod ux_suggest;
mod ux_support;
mod ux_validate;
mod vault;
mod zero_downtime;
