//! One file per store kind: the [`super::store_kind::StoreKind`] implementation of a
//! provider crate's store section, listed in the registry in `src/providers.rs`.

mod aws_secretsmanager;
mod file;
mod vault_kv;
