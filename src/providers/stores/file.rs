//! `type = "file"`: one local JSON file ([`rekey_file`]).

use crate::providers::store_kind::{StoreContext, StoreKind};
use rekey_api::{ProviderResult, Store};
use rekey_file::{FileStore, FileStoreConfig};
use std::fmt;
use std::path::Path;
use std::sync::Arc;

impl StoreKind for FileStoreConfig {
    const TYPE: &'static str = "file";

    /// A relative `path` is taken from the configuration file's directory.
    fn resolve_paths(&mut self, base_dir: &Path) -> Result<(), String> {
        if self.path.as_os_str().is_empty() {
            return Err("`path` is empty".to_owned());
        }
        if !self.path.is_absolute() {
            self.path = base_dir.join(&self.path);
        }
        Ok(())
    }

    fn describe(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "file {}", self.path.display())
    }

    /// A missing file is an error unless `import` or `rotate --create-store` may create it.
    fn open(&self, ctx: &StoreContext<'_>) -> ProviderResult<Arc<dyn Store>> {
        let store = if ctx.options.create_store {
            FileStore::open_or_create(self.path.clone())?
        } else {
            FileStore::open(self.path.clone())?
        };
        Ok(Arc::new(store))
    }
}
