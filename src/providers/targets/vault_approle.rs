//! `type = "vault-approle"`: a Vault AppRole's secret-id ([`rekey_vault`]).
//!
//! Identity: the role (case-insensitive, as Vault treats it) at the address, namespace
//! and mount (`VAULT_ADDR` and `VAULT_NAMESPACE` when the configuration leaves them to
//! the environment).

use crate::config::identity::{address_key, Expected, ExpectedField, Identity};
use crate::providers::target_kind::{TargetContext, TargetKind};
use rekey_api::{ProviderResult, Strategy, Target};
use rekey_vault::{VaultAppRoleConfig, VaultProvider};
use std::sync::Arc;

impl TargetKind for VaultAppRoleConfig {
    const TYPE: &'static str = "vault-approle";

    /// `dual`: a role holds several secret-ids.
    fn default_strategy(&self) -> Strategy {
        Strategy::Dual
    }

    fn identities(&self, lookup: &dyn Fn(&str) -> Option<String>) -> Vec<Identity> {
        let address = self.address.clone().or_else(|| lookup("VAULT_ADDR"));
        let namespace = self.namespace.clone().or_else(|| lookup("VAULT_NAMESPACE"));
        let mount = self.mount.trim_matches('/');
        let place = format!(
            "{}|{}|{mount}",
            address.as_deref().map(address_key).unwrap_or_default(),
            namespace.as_deref().unwrap_or("").trim().trim_matches('/')
        );
        vec![Identity {
            key: (Self::TYPE, place, self.role.to_ascii_lowercase()),
            shown: format!(
                "vault-approle role `{}` (mount `{mount}`) on {}",
                self.role,
                address.as_deref().unwrap_or("$VAULT_ADDR")
            ),
        }]
    }

    fn expected(&self) -> Expected<'_> {
        let mount = self.mount.trim_matches('/');
        Expected {
            engines: &[rekey_vault::ENGINE],
            fields: vec![
                ExpectedField {
                    name: rekey_vault::ROLE_NAME,
                    configured: format!("{:?}", self.role),
                    agrees: Box::new(|found| found.eq_ignore_ascii_case(&self.role)),
                },
                ExpectedField {
                    name: rekey_vault::MOUNT,
                    configured: format!("{mount:?}"),
                    agrees: Box::new(move |found| found.trim_matches('/') == mount),
                },
            ],
            ..Expected::default()
        }
    }

    fn build(&self, ctx: &TargetContext<'_>) -> ProviderResult<Arc<dyn Target>> {
        ctx.provider::<VaultProvider>().approle_target(self, ctx.strategy)
    }
}
