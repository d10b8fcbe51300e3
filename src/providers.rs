//! The composition root: turns configuration into stores and targets. This is the one
//! place that names the provider crates; the engine sees only [`Backends`].
//!
//! Each provider kind lives in a file of its own: `targets/TYPE.rs` implements
//! [`target_kind::TargetKind`] for the provider crate's config section (its `type`
//! spelling, natural strategy, identities, admin, endpoint and how to build the target),
//! `stores/TYPE.rs` implements [`store_kind::StoreKind`]. The registry below lists
//! them, one line each, and generates [`crate::config::TargetConfig`] and
//! [`crate::config::StoreConfig`] from the list ([`registry`]). Adding a provider means:
//! its crate under `providers/`, its kind's file (and `mod` line), and its registry line.

mod registry;
pub(crate) mod shared;
pub(crate) mod store_kind;
mod stores;
pub(crate) mod target_kind;
mod targets;

use crate::config::{Config, Credential};
use crate::engine::Backends;
use rekey_api::{ProviderError, ProviderResult, Store, Target};
use shared::Providers;
use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use store_kind::StoreContext;
use target_kind::{userinfo_encode, AdminLogin, TargetContext};

registry::registry! {
    targets {
        /// `type = "postgres"`: a PostgreSQL role.
        Postgres => rekey_postgres::PostgresTargetConfig,
        /// `type = "aws-iam"`: an IAM user's access key.
        AwsIam => rekey_aws::AwsIamTargetConfig,
        /// `type = "mysql"`: a MySQL or MariaDB user.
        Mysql => rekey_mysql::MysqlTargetConfig,
        /// `type = "redis"`: a Redis ACL user.
        Redis => rekey_redis::RedisTargetConfig,
        /// `type = "vault-approle"`: a Vault AppRole's secret-id.
        VaultApprole => rekey_vault::VaultAppRoleConfig,
        /// `type = "http"`: an API key or password of any HTTP API, rotated by configured requests.
        Http => Box<rekey_http::HttpTargetConfig>,
        /// `type = "exec"`: an external program speaking rekey's plugin protocol.
        Exec => rekey_exec::ExecTargetConfig,
    }
    stores {
        /// `type = "file"`: one local JSON file.
        File => rekey_file::FileStoreConfig,
        /// `type = "aws-secretsmanager"`: AWS Secrets Manager.
        AwsSecretsmanager => rekey_aws::AwsSecretsManagerConfig,
        /// `type = "vault-kv"`: a Vault KV (v1 or v2) mount.
        VaultKv => Box<rekey_vault::VaultKvConfig>,
    }
}

/// A store opened once per run, or the error that opening it gave.
type OpenedStore = Result<Arc<dyn Store>, ProviderError>;

/// Run-wide choices that reach providers.
#[derive(Debug, Clone, Copy, Default)]
pub struct ProviderOptions {
    /// `rotate --delete-inactive`: an IAM user's extra *inactive* key that is stored
    /// nowhere may be deleted to make room for the new one.
    pub delete_inactive: bool,
    /// `import` and `rotate --create-store`: a file store that does not exist yet may be
    /// created. Otherwise a missing store file is an error, so that a typo in its path
    /// cannot make a rotation write fresh secrets where no application reads them.
    pub create_store: bool,
    /// `validate`: an `exec` plugin that does not answer `describe` is a configuration
    /// error. Otherwise it fails only its own credentials (one broken plugin does not
    /// stop a run over the fleet).
    pub plugins_must_answer: bool,
}

/// The providers of one run, built from the configuration.
pub struct ConfiguredBackends {
    stores: BTreeMap<String, StoreConfig>,
    targets: BTreeMap<String, TargetConfig>,
    admin_errors: BTreeMap<String, String>,
    /// Credentials whose target uses an unset variable: their configuration error.
    unresolved: BTreeMap<String, String>,
    opened: Mutex<BTreeMap<String, OpenedStore>>,
    options: ProviderOptions,
    providers: Providers,
}

impl ConfiguredBackends {
    /// Providers for this configuration; nothing is opened or connected yet.
    pub fn new(config: &Config, options: ProviderOptions) -> Self {
        ConfiguredBackends {
            stores: config.stores.clone(),
            targets: config.targets.clone(),
            admin_errors: BTreeMap::new(),
            unresolved: config.unresolved.clone(),
            options,
            opened: Mutex::new(BTreeMap::new()),
            providers: Providers::default(),
        }
    }

    /// Fills in the admin of every target whose configuration says
    /// `admin = { credential = "NAME" }`: an admin URL built from that credential's
    /// current secret in its store. Call it again after rotating the admin credential.
    ///
    /// A reference that cannot be resolved (no current secret yet, an unreadable store)
    /// fails only the credentials that use it, when their target is asked for.
    pub async fn resolve_admins(&mut self, config: &Config) {
        for name in config.admin_refs.keys() {
            if let Err(message) = self.resolve_admin(config, name).await {
                self.admin_errors.insert(name.clone(), message);
            }
        }
    }

    async fn resolve_admin(&mut self, config: &Config, name: &str) -> Result<(), String> {
        let admin_name = &config.admin_refs[name];
        let Some(admin) = config.credential(admin_name) else {
            return Err(format!("{name}: admin credential `{admin_name}` is not defined"));
        };
        let store = self
            .store(&admin.store)
            .map_err(|e| format!("{name}: admin credential `{admin_name}`: {e}"))?;
        let state = store
            .read(&admin.key)
            .await
            .map_err(|e| format!("{name}: admin credential `{admin_name}`: read: {e}"))?;
        let Some(current) = state.current() else {
            return Err(format!(
                "{name}: admin credential `{admin_name}` has no current secret; import it with `rekey import {admin_name}`"
            ));
        };
        let doc = &current.doc;
        let field = |f: &str| doc.get_str(f).map(str::to_owned);
        let (Some(user), Some(password), Some(host)) = (field("username"), doc.password(), field("host")) else {
            return Err(format!(
                "{name}: admin credential `{admin_name}`: its stored secret lacks username, password or host"
            ));
        };
        let port = doc.get_u64("port");
        let encoded_password = zeroize::Zeroizing::new(userinfo_encode(password.expose()));
        let userinfo = zeroize::Zeroizing::new(format!("{}:{}", userinfo_encode(&user), encoded_password.as_str()));
        let authority = match port {
            Some(p) => format!("{host}:{p}"),
            None => host,
        };
        let login = AdminLogin {
            doc,
            userinfo,
            authority,
        };
        let Some(target) = self.targets.get_mut(name) else {
            return Err(format!("{name}: no target configured"));
        };
        if target.set_admin(&login) {
            return Ok(());
        }
        Err(format!(
            "{name}: `admin = {{ credential = ... }}` is for {} targets, not {}",
            in_words(&TargetConfig::admin_types()),
            target.type_name()
        ))
    }
}

/// `a`, `a and b`, `a, b and c`.
fn in_words(items: &[&str]) -> String {
    match items.split_last() {
        None => String::new(),
        Some((last, [])) => (*last).to_owned(),
        Some((last, rest)) => format!("{} and {last}", rest.join(", ")),
    }
}

impl Backends for ConfiguredBackends {
    fn store(&self, name: &str) -> ProviderResult<Arc<dyn Store>> {
        let mut opened = self.opened.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(result) = opened.get(name) {
            return result.clone();
        }
        let result = match self.stores.get(name) {
            None => Err(ProviderError::invalid_input(format!("unknown store `{name}`"))),
            Some(config) => config.open(&StoreContext {
                providers: &self.providers,
                options: self.options,
            }),
        };
        let result = result.map_err(|e| e.context(format_args!("store `{name}`")));
        opened.insert(name.to_owned(), result.clone());
        result
    }

    fn endpoint(&self, credential: &Credential) -> Option<String> {
        self.targets.get(&credential.name)?.endpoint()
    }

    fn target(&self, credential: &Credential) -> ProviderResult<Arc<dyn Target>> {
        if let Some(message) = self.admin_errors.get(&credential.name) {
            return Err(ProviderError::invalid_input(message.clone()));
        }
        if let Some(message) = self.unresolved.get(&credential.name) {
            return Ok(Arc::new(crate::config::unresolved_target(
                message.clone(),
                credential.strategy,
            )));
        }
        let Some(config) = self.targets.get(&credential.name) else {
            return Err(ProviderError::invalid_input(format!(
                "credential `{}` has no target configured",
                credential.name
            )));
        };
        config.build(&TargetContext {
            providers: &self.providers,
            name: &credential.name,
            strategy: credential.strategy,
            options: self.options,
        })
    }
}

#[cfg(test)]
mod tests {
    use crate::config::{Config, StoreConfig, TargetConfig};
    use std::path::Path;

    /// A section each registered type reads; the list must name every type of the
    /// registry, in its order.
    const TARGETS: &[(&str, &str)] = &[
        ("postgres", "host = \"h\", username = \"app\""),
        ("aws-iam", "user = \"deployer\""),
        ("mysql", "host = \"h\", username = \"app\""),
        ("redis", "host = \"h\", username = \"app\""),
        ("vault-approle", "role = \"app\""),
        (
            "http",
            "base_url = \"https://api.example.com\", login = { method = \"GET\", path = \"/me\", ok = [200], \
             rejected = [401] }",
        ),
        ("exec", "command = [\"/bin/true\"]"),
    ];
    const STORES: &[(&str, &str)] = &[
        ("file", "path = \"s.json\""),
        ("aws-secretsmanager", ""),
        ("vault-kv", "mount = \"secret\""),
    ];

    fn parse(store: (&str, &str), target: (&str, &str)) -> Result<Config, String> {
        let text = format!(
            "[stores.s]\ntype = \"{}\"\n{}\n\n[[credentials]]\nname = \"c\"\nstore = \"s\"\nkey = \"k\"\n\
             target = {{ type = \"{}\", {} }}\n",
            store.0, store.1, target.0, target.1
        );
        Config::parse(Path::new("r.toml"), &text, |_| None).map_err(|e| e.to_string())
    }

    #[test]
    fn every_registered_type_reads_as_itself() {
        let names = |list: &[(&'static str, &str)]| list.iter().map(|(t, _)| *t).collect::<Vec<_>>();
        assert_eq!(TargetConfig::TYPES, names(TARGETS));
        assert_eq!(StoreConfig::TYPES, names(STORES));
        for &target in TARGETS {
            let config = parse(STORES[0], target).unwrap_or_else(|e| panic!("{}: {e}", target.0));
            assert_eq!(config.targets["c"].type_name(), target.0);
        }
        for &store in STORES {
            let config = parse(store, TARGETS[0]).unwrap_or_else(|e| panic!("{}: {e}", store.0));
            assert_eq!(config.stores["s"].type_name(), store.0);
        }
        let e = parse(STORES[0], ("postgre", "host = \"h\"")).unwrap_err();
        assert!(
            e.ends_with(
                "unknown target type `postgre`, expected one of `postgres`, `aws-iam`, `mysql`, `redis`, \
                 `vault-approle`, `http`, `exec`"
            ),
            "{e}"
        );
        let e = parse(("files", ""), TARGETS[0]).unwrap_err();
        assert!(
            e.ends_with("unknown store type `files`, expected one of `file`, `aws-secretsmanager`, `vault-kv`"),
            "{e}"
        );
    }
}
