//! One file per target kind: the [`super::target_kind::TargetKind`] implementation of a
//! provider crate's target section, listed in the registry in `src/providers.rs`.

mod aws_iam;
mod exec;
mod http;
mod mysql;
mod postgres;
mod redis;
mod vault_approle;
