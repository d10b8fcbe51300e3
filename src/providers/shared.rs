//! [`Providers`]: the provider objects of one run, one of each type.

use std::any::Any;
use std::sync::Mutex;

/// The provider objects of one run (`rekey_postgres::PostgresProvider`,
/// `rekey_aws::AwsProvider`, ...): one of each type, created on first use and shared by
/// every target and store that asks for it, so that they share its admin connections,
/// clients and caches (the AWS provider serves IAM targets and Secrets Manager stores
/// alike). A provider's connections close once it and everything built from it are
/// dropped.
#[derive(Default)]
pub(crate) struct Providers(Mutex<Vec<Box<dyn Any + Send + Sync>>>);

impl Providers {
    /// The provider of type `P` (a handle: providers are cheap clones of shared state).
    pub fn get<P: Clone + Default + Send + Sync + 'static>(&self) -> P {
        let mut all = self.0.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(provider) = all.iter().find_map(|p| p.downcast_ref::<P>()) {
            return provider.clone();
        }
        let provider = P::default();
        all.push(Box::new(provider.clone()));
        provider
    }
}
