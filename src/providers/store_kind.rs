//! [`StoreKind`]: everything the binary knows of one store type, implemented once per
//! provider in `src/providers/stores/TYPE.rs` and listed in the registry
//! ([`crate::providers`]), which generates [`crate::config::StoreConfig`] from the list.

use super::shared::Providers;
use rekey_api::{ProviderResult, Store};
use serde::de::DeserializeOwned;
use std::fmt;
use std::path::Path;
use std::sync::Arc;

/// One store type: its `[stores.NAME]` section (the provider crate's config struct,
/// boxed when it is large) and how the binary opens it.
pub(crate) trait StoreKind: DeserializeOwned + Clone + fmt::Debug {
    /// The spelling of `type` (`"file"`).
    const TYPE: &'static str;

    /// Completes the section once read: relative paths are taken from `base_dir`, the
    /// configuration file's directory. An error is one line, shown after
    /// `FILE: store `NAME`: `.
    fn resolve_paths(&mut self, base_dir: &Path) -> Result<(), String> {
        let _ = base_dir;
        Ok(())
    }

    /// The store as `validate` and `list` show it (default: its type).
    fn describe(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(Self::TYPE)
    }

    /// Opens the store (once per run and store name).
    fn open(&self, ctx: &StoreContext<'_>) -> ProviderResult<Arc<dyn Store>>;
}

/// What opening a store may use.
pub(crate) struct StoreContext<'a> {
    /// The run's providers ([`StoreContext::provider`]).
    pub providers: &'a Providers,
    /// Run-wide choices.
    pub options: super::ProviderOptions,
}

impl StoreContext<'_> {
    /// The run's provider of type `P`, created on first use and shared by every target
    /// and store of the run.
    pub fn provider<P: Clone + Default + Send + Sync + 'static>(&self) -> P {
        self.providers.get()
    }
}
