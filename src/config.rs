//! Configuration: the TOML file, `${ENV}` references, defaults and validation.
//!
//! Loading runs in two passes over the parsed document, which keeps every value's place
//! in the file ([`de`]): the text as written is read into the typed configuration so
//! that unknown keys and bad values are reported with file, line and key; then every
//! string is expanded from the environment ([`env`]) and read again, so a missing
//! variable is reported with the credential or store that refers to it, and a string
//! such as `"${PG_PORT}"` becomes the integer or boolean its field expects.
//!
//! After reading, what would break rotations is refused: out-of-range durations,
//! impossible password policies, files that coincide ([`paths`]), two credentials on one
//! target identity and administrators that a rotation would lock out ([`identity`]).

mod admin_ref;
mod de;
mod env;
mod identity;
mod include;
// [[notify]] webhooks (issue 8).
pub mod notify;
mod paths;
mod pieces;
mod secret_fields;
mod targets;
mod unresolved;

pub use identity::check_import_identity;
pub use unresolved::UnresolvedTarget;

use crate::password::{PasswordPolicy, PasswordPolicyConfig};
use de::{DeError, Node, NodeDe, Pass, Slot};
use rekey_api::Strategy;
use serde::Deserialize;
use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::path::{Path, PathBuf};
use std::time::Duration;
use toml::de::DeValue;
use toml::Spanned;

/// The file name looked for when neither `-c` nor `$REKEY_CONFIG` is given.
pub const DEFAULT_CONFIG: &str = "rekey.toml";

/// A configuration problem: always one line, naming the file and, where known, the line,
/// key, credential or store.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct ConfigError(String);

impl ConfigError {
    fn new(message: impl Into<String>) -> Self {
        let message: String = message.into();
        // One line, always.
        ConfigError(
            message
                .split(['\n', '\r'])
                .map(str::trim)
                .filter(|l| !l.is_empty())
                .collect::<Vec<_>>()
                .join(" "),
        )
    }

    /// The message with every environment value the configuration referenced (in
    /// `refs`, the original texts holding `${NAME}`) replaced by `${NAME}`.
    fn scrubbed(self, refs: &BTreeMap<usize, String>, lookup: &dyn Fn(&str) -> Option<String>) -> Self {
        let mut message = self.0;
        for original in refs.values() {
            let mut rest = original.as_str();
            while let Some(at) = rest.find("${") {
                let after = &rest[at + 2..];
                let end = after.find(['}', ':']).unwrap_or(after.len());
                let name = &after[..end];
                if let Some(value) = lookup(name).filter(|v| v.len() >= 3) {
                    message = message.replace(&value, &format!("${{{name}}}"));
                }
                rest = &after[end..];
            }
        }
        ConfigError(message)
    }
}

/// Where a store keeps secrets. One arm per store provider.
#[derive(Debug, Clone, Deserialize)]
#[serde(tag = "type", rename_all = "kebab-case")]
pub enum StoreConfig {
    /// `type = "file"`: one local JSON file.
    File(rekey_file::FileStoreConfig),
    /// `type = "aws-secretsmanager"`: AWS Secrets Manager.
    AwsSecretsmanager(rekey_aws::AwsSecretsManagerConfig),
    /// `type = "vault-kv"`: a Vault KV (v1 or v2) mount.
    VaultKv(Box<rekey_vault::VaultKvConfig>),
}

impl StoreConfig {
    /// The configuration spelling of the store's type.
    pub fn type_name(&self) -> &'static str {
        match self {
            StoreConfig::File(_) => "file",
            StoreConfig::AwsSecretsmanager(_) => "aws-secretsmanager",
            StoreConfig::VaultKv(_) => "vault-kv",
        }
    }
}

/// Where a secret is checked. One arm per target provider.
#[derive(Debug, Clone, Deserialize)]
#[serde(tag = "type", rename_all = "kebab-case")]
pub enum TargetConfig {
    /// `type = "postgres"`: a PostgreSQL role.
    Postgres(rekey_postgres::PostgresTargetConfig),
    /// `type = "aws-iam"`: an IAM user's access key.
    AwsIam(rekey_aws::AwsIamTargetConfig),
    /// `type = "mysql"`: a MySQL or MariaDB user.
    Mysql(rekey_mysql::MysqlTargetConfig),
    /// `type = "redis"`: a Redis ACL user.
    Redis(rekey_redis::RedisTargetConfig),
    /// `type = "vault-approle"`: a Vault AppRole's secret-id.
    VaultApprole(rekey_vault::VaultAppRoleConfig),
    /// `type = "http"`: an API key or password of any HTTP API, rotated by configured requests.
    Http(Box<rekey_http::HttpTargetConfig>),
    /// `type = "exec"`: an external program speaking rekey's plugin protocol.
    Exec(rekey_exec::ExecTargetConfig),
}

impl TargetConfig {
    /// The strategy of a credential that sets none: `dual` where the target holds two
    /// secrets at once (`aws-iam`, `vault-approle`, `redis`); for `postgres` and `mysql`,
    /// `alternating` when `usernames` names two users, else `single`.
    pub fn default_strategy(&self) -> Strategy {
        match self {
            TargetConfig::AwsIam(_) | TargetConfig::VaultApprole(_) | TargetConfig::Redis(_) => Strategy::Dual,
            TargetConfig::Postgres(c) if c.usernames.is_some() => Strategy::Alternating,
            TargetConfig::Mysql(c) if c.usernames.is_some() => Strategy::Alternating,
            TargetConfig::Postgres(_) | TargetConfig::Mysql(_) => Strategy::Single,
            TargetConfig::Http(c) if c.create.is_some() => Strategy::Dual,
            TargetConfig::Http(_) => Strategy::Single,
            // What the plugin implements is known only once it runs: set `strategy`.
            TargetConfig::Exec(_) => Strategy::Single,
        }
    }

    /// The configuration spelling of the target's type.
    pub fn type_name(&self) -> &'static str {
        match self {
            TargetConfig::Postgres(_) => "postgres",
            TargetConfig::AwsIam(_) => "aws-iam",
            TargetConfig::Mysql(_) => "mysql",
            TargetConfig::Redis(_) => "redis",
            TargetConfig::VaultApprole(_) => "vault-approle",
            TargetConfig::Http(_) => "http",
            TargetConfig::Exec(_) => "exec",
        }
    }
}

/// The spellings of `type` in `[stores.NAME]`.
const STORE_TYPES: &[&str] = &["file", "aws-secretsmanager", "vault-kv"];
/// The spellings of `type` in `target = { ... }`.
const TARGET_TYPES: &[&str] = &["postgres", "aws-iam", "mysql", "redis", "vault-approle", "http", "exec"];

/// The document's shape; the `type`-tagged sections are read apart ([`read`]).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawDocument {
    #[serde(default)]
    defaults: RawDefaults,
    /// Checked here for its keys; each store is read apart.
    #[serde(default)]
    #[allow(dead_code)]
    stores: BTreeMap<String, Slot>,
    #[serde(default)]
    credentials: Vec<RawCredential>,
    /// `[[notify]]` webhooks.
    #[serde(default)]
    notify: Vec<notify::RawNotify>,
}

#[derive(Debug)]
struct RawConfig {
    defaults: RawDefaults,
    stores: BTreeMap<String, StoreConfig>,
    credentials: Vec<(RawCredential, TargetConfig)>,
    notify: Vec<notify::RawNotify>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawDefaults {
    parallel: Option<usize>,
    /// The store of credentials that name none.
    store: Option<String>,
    every: Option<String>,
    grace: Option<String>,
    audit_log: Option<PathBuf>,
    password: Option<PasswordPolicyConfig>,
    verify_attempts: Option<u32>,
    lock_dir: Option<PathBuf>,
    on_rotate: Option<Vec<Vec<String>>>,
    hook_timeout: Option<String>,
    revocation_tolerance: Option<String>,
    window: Option<RawWindow>,
    jitter: Option<String>,
}

/// `window = { days = ["mon", ...], hours = "09-17" }` (UTC).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawWindow {
    #[serde(default)]
    days: Vec<String>,
    hours: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawCredential {
    name: String,
    /// Optional when `[defaults] store` names one.
    store: Option<String>,
    key: String,
    strategy: Option<Strategy>,
    #[serde(default)]
    tags: Vec<String>,
    /// Required here; read apart.
    #[allow(dead_code)]
    target: Slot,
    every: Option<String>,
    grace: Option<String>,
    // Boxed, as `window`: rarely set, and 10,000 credentials are read at once.
    password: Option<Box<PasswordPolicyConfig>>,
    verify_attempts: Option<u32>,
    description: Option<String>,
    on_rotate: Option<Vec<Vec<String>>>,
    check_command: Option<Vec<String>>,
    window: Option<Box<RawWindow>>,
    jitter: Option<String>,
}

/// Run-wide settings after defaults are applied.
#[derive(Debug, Clone)]
pub struct Defaults {
    /// Credentials rotated at once (default 4).
    pub parallel: usize,
    /// Audit log (JSON lines), resolved against the configuration's directory.
    pub audit_log: Option<PathBuf>,
    /// Directory of the per-credential lock files.
    pub lock_dir: PathBuf,
}

/// One credential, resolved.
#[derive(Debug, Clone)]
pub struct Credential {
    /// Unique name (`orders-db`).
    pub name: String,
    /// Name of the store in `[stores]`.
    pub store: String,
    /// The secret's id or path inside the store.
    pub key: String,
    /// How the target moves to the new secret (when not configured, the target type's
    /// [`TargetConfig::default_strategy`]).
    pub strategy: Strategy,
    /// Tags for `--tag`.
    pub tags: Vec<String>,
    /// Rotation period, for `--due` and `verify`.
    pub every: Duration,
    /// How long the previous secret stays valid after promotion.
    pub grace: Duration,
    /// Password generation policy.
    pub password: PasswordPolicy,
    /// Fresh-login attempts when verifying a new secret (propagation delay).
    pub verify_attempts: u32,
    /// Free text shown by `status`.
    pub description: Option<String>,
    /// Programs (argv, no shell) run after promotion, before the old secret is revoked,
    /// so consumers reload while both work.
    pub on_rotate: Vec<Vec<String>>,
    /// A program `verify` runs to prove the consumer works with the current secret.
    pub check_command: Option<Vec<String>>,
    /// How long a hook or check command may run before it is killed.
    pub hook_timeout: Duration,
    /// How long after its grace period a previous secret may still work before `verify`
    /// calls it a failure instead of a revocation that is due.
    pub revocation_tolerance: Duration,
    /// When `rotate --due` may start a rotation (UTC); incidents ignore it.
    pub window: Option<crate::engine::schedule::Window>,
    /// Spreads due times: each credential's due time moves later by a stable part of this.
    pub jitter: Duration,
}

/// The whole configuration, validated.
#[derive(Debug, Clone)]
pub struct Config {
    /// The file it was read from.
    pub path: PathBuf,
    /// Run-wide settings.
    pub defaults: Defaults,
    /// Stores by name.
    pub stores: BTreeMap<String, StoreConfig>,
    /// Each credential's target, by credential name (kept apart from [`Credential`] so
    /// that the engine, which sees only credentials, knows no provider).
    pub targets: BTreeMap<String, TargetConfig>,
    /// Credentials in file order.
    pub credentials: Vec<Credential>,
    /// `admin = { credential = "NAME" }`: credential name -> the credential whose current
    /// secret is its admin.
    pub admin_refs: BTreeMap<String, String>,
    /// `[[notify]]` webhooks, in file order.
    pub notify: Vec<notify::Notify>,
    /// The files read through `include`, in order.
    pub included: Vec<PathBuf>,
    /// Credentials whose target uses an environment variable that is not set (only
    /// with [`Config::load_per_credential`]): name -> the one-line error. They have no
    /// entry in [`Config::targets`].
    pub unresolved: BTreeMap<String, String>,
    /// Where each credential is in [`Config::credentials`], for [`Config::credential`].
    by_name: NameIndex,
}

/// The indices of [`Config::credentials`] sorted by credential name when the
/// configuration was read: finding one of 10,000 credentials by name is a binary search,
/// not a scan of the list, and costs 4 bytes per credential (no copy of the names). The
/// list is public and may be changed after loading, so a hit is checked, and a miss or a
/// stale entry falls back to the scan.
#[derive(Clone, Default)]
struct NameIndex(Vec<u32>);

impl NameIndex {
    fn of(credentials: &[Credential]) -> NameIndex {
        let Ok(count) = u32::try_from(credentials.len()) else {
            return NameIndex::default();
        };
        let mut sorted: Vec<u32> = (0..count).collect();
        sorted.sort_unstable_by(|&a, &b| credentials[a as usize].name.cmp(&credentials[b as usize].name));
        NameIndex(sorted)
    }

    /// The credential named `name`, if the index still finds it.
    fn find<'c>(&self, credentials: &'c [Credential], name: &str) -> Option<&'c Credential> {
        let at = self
            .0
            .binary_search_by(|&i| credentials.get(i as usize).map(|c| c.name.as_str()).cmp(&Some(name)))
            .ok()?;
        credentials.get(self.0[at] as usize).filter(|c| c.name == name)
    }
}

impl fmt::Debug for NameIndex {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "NameIndex({} names)", self.0.len())
    }
}

/// Which file to read: `-c`, else `$REKEY_CONFIG`, else `./rekey.toml`.
pub fn config_path(flag: Option<&Path>) -> PathBuf {
    if let Some(p) = flag {
        return p.to_path_buf();
    }
    match std::env::var_os("REKEY_CONFIG") {
        Some(p) if !p.is_empty() => PathBuf::from(p),
        _ => PathBuf::from(DEFAULT_CONFIG),
    }
}

impl Config {
    /// Reads, expands and validates a configuration file.
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let text = read_config_text(path)?;
        let config = Self::parse(path, &text, |name| std::env::var(name).ok());
        released(text, config)
    }

    /// Like [`Config::load`], except that a variable missing in a credential's target
    /// fails only that credential: it is loaded without a target and its error is in
    /// [`Config::unresolved`], so commands on the other credentials work.
    pub fn load_per_credential(path: &Path) -> Result<Config, ConfigError> {
        let text = read_config_text(path)?;
        let config = Self::parse_per_credential(path, &text, |name| std::env::var(name).ok());
        released(text, config)
    }

    /// [`Config::parse`] with [`Config::load_per_credential`]'s handling of missing
    /// variables.
    pub fn parse_per_credential(
        path: &Path,
        text: &str,
        lookup: impl Fn(&str) -> Option<String>,
    ) -> Result<Config, ConfigError> {
        Self::parse_with(path, text, &lookup, false)
    }

    /// Parses configuration text (and the files it includes); `lookup` resolves
    /// `${NAME}` references.
    pub fn parse(path: &Path, text: &str, lookup: impl Fn(&str) -> Option<String>) -> Result<Config, ConfigError> {
        Self::parse_with(path, text, &lookup, true)
    }

    /// Parses; with `strict`, a missing variable anywhere is an error, else one in a
    /// credential's target fails only that credential ([`Config::unresolved`]).
    fn parse_with(
        path: &Path,
        text: &str,
        lookup: &dyn Fn(&str) -> Option<String>,
        strict: bool,
    ) -> Result<Config, ConfigError> {
        let file = path.display().to_string();
        // The main file is parsed once: it is the whole document unless it includes
        // others, and then the document is every file's text read as one.
        let main = pieces::parse(text).map_err(|e| located(&file, text, &e))?;
        let sources = include::sources(path, text, main.get_ref())?;
        let at = |e: &DeError| sources.located(e.span.clone(), &e.message);
        let document = if sources.included_any() {
            drop(main);
            pieces::parse(&sources.text).map_err(|e| sources.located(e.span(), e.message()))?
        } else {
            main
        };
        let mut root: Node<'_> = Spanned::new(document.span(), DeValue::Table(document.into_inner()));
        include::take(&mut root);
        targets::apply(&mut root).map_err(|e| at(&e))?;
        secret_fields::hoist(&mut root).map_err(|e| at(&e))?;
        let admin_refs = admin_ref::take(&mut root, &file)?;
        // Pass 1: the text as written, for errors with line and key before any variable
        // is looked up. An error about a value holding `${...}` waits for pass 2, which
        // knows the value.
        if let Err(e) = read(&root, Pass::Raw, &BTreeSet::new()) {
            let about_reference = e
                .span
                .as_ref()
                .and_then(|span| sources.text.get(span.clone()))
                .is_some_and(|t| t.contains("${"));
            if !about_reference {
                return Err(at(&e));
            }
        }
        // Each credential's file, for messages about it.
        let origins = origins(&root, &sources);
        // Pass 2: expand ${ENV} in every string and read the result.
        let env::Expansion { refs, deferred } = env::expand_document(&mut root, lookup, &sources)?;
        let deferred = if strict {
            // The first missing variable in file order, as for any other error.
            if let Some((_, (_, e))) = deferred.into_iter().next() {
                return Err(e);
            }
            BTreeMap::new()
        } else {
            deferred
        };
        // No error may show a value that came from the environment (it may be a
        // password): every such value is replaced by its `${NAME}` in messages.
        let scrub = |e: ConfigError| e.scrubbed(&refs, lookup);
        let indices: BTreeSet<usize> = deferred.keys().copied().collect();
        let raw = read(&root, Pass::Expanded(&refs), &indices)
            .map_err(|e| at(&e))
            .map_err(scrub)?;
        // Everything is read from the document: free it before the configuration is built.
        drop(root);
        let unresolved: BTreeMap<String, String> =
            deferred.into_values().map(|(name, e)| (name, e.to_string())).collect();
        let base_dir = path.parent().map(Path::to_path_buf).unwrap_or_default();
        let mut config = resolve(path, &base_dir, raw, &origins, &unresolved, lookup).map_err(scrub)?;
        let names: Vec<&str> = config.credentials.iter().map(|c| c.name.as_str()).collect();
        admin_ref::check(&admin_refs, &names, &file).map_err(scrub)?;
        config.admin_refs = admin_refs;
        config.included = sources.included();
        // An included file is a configuration file too: no store, lock or audit log on it.
        let names: Vec<&str> = config.credentials.iter().map(|c| c.name.as_str()).collect();
        for included in &config.included {
            paths::check(
                &included.display().to_string(),
                &paths::Files {
                    config: included,
                    audit_log: config.defaults.audit_log.as_deref(),
                    lock_dir: &config.defaults.lock_dir,
                    stores: &config.stores,
                    credentials: names.clone(),
                },
            )
            .map_err(scrub)?;
        }
        config.unresolved = unresolved;
        Ok(config)
    }

    /// The credential with this name.
    pub fn credential(&self, name: &str) -> Option<&Credential> {
        self.by_name
            .find(&self.credentials, name)
            .or_else(|| self.credentials.iter().find(|c| c.name == name))
    }

    /// Credentials chosen by names and tags (all when neither is given). Unknown names
    /// are an error listing the known ones.
    pub fn select(&self, names: &[String], tags: &[String]) -> Result<Vec<Credential>, ConfigError> {
        for name in names {
            if self.credential(name).is_none() {
                let known: Vec<&str> = self.credentials.iter().map(|c| c.name.as_str()).collect();
                return Err(ConfigError::new(format!(
                    "unknown credential `{name}` in {} (known: {})",
                    self.path.display(),
                    if known.is_empty() {
                        "none".to_owned()
                    } else {
                        known.join(", ")
                    }
                )));
            }
        }
        Ok(self
            .credentials
            .iter()
            .filter(|c| names.is_empty() || names.contains(&c.name))
            .filter(|c| tags.is_empty() || tags.iter().any(|t| c.tags.contains(t)))
            .cloned()
            .collect())
    }
}

/// `config`, read from `text`, once the memory a large text took to read is given back
/// ([`pieces::release_freed_memory`]).
fn released(text: String, config: Result<Config, ConfigError>) -> Result<Config, ConfigError> {
    let large = text.len() >= pieces::LARGE_TEXT;
    drop(text);
    if large {
        pieces::release_freed_memory();
    }
    config
}

/// The configuration file's text, or an error saying how to name another file.
fn read_config_text(path: &Path) -> Result<String, ConfigError> {
    std::fs::read_to_string(path).map_err(|e| {
        let hint = if e.kind() == std::io::ErrorKind::NotFound {
            " (pass -c FILE or set REKEY_CONFIG)"
        } else {
            ""
        };
        ConfigError::new(format!(
            "cannot read config {}: {}{hint}",
            path.display(),
            io_reason(&e)
        ))
    })
}

fn io_reason(e: &std::io::Error) -> String {
    let text = e.to_string();
    text.split(" (os error").next().unwrap_or(&text).to_owned()
}

fn located(file: &str, text: &str, e: &toml::de::Error) -> ConfigError {
    located_span(file, text, e.span(), e.message())
}

/// Credential name -> the file that defines it.
fn origins(root: &Node<'_>, sources: &include::Sources) -> BTreeMap<String, String> {
    let mut origins = BTreeMap::new();
    if let Some(items) = root.get_ref().get("credentials").and_then(|c| c.get_ref().as_array()) {
        for item in items {
            if let Some(name) = item.get_ref().get("name").and_then(|n| n.get_ref().as_str()) {
                origins.insert(name.to_owned(), sources.file_at(item.span().start).to_owned());
            }
        }
    }
    origins
}

fn located_span(file: &str, text: &str, span: Option<std::ops::Range<usize>>, message: &str) -> ConfigError {
    let message = message.trim().replace('\n', " ");
    match span {
        Some(span) => {
            let start = floor_char_boundary(text, span.start);
            let end = floor_char_boundary(text, span.end).max(start);
            let before = &text[..start];
            let line = before.matches('\n').count().saturating_add(1);
            let column = before
                .rsplit('\n')
                .next()
                .map_or(0, |l| l.chars().count())
                .saturating_add(1);
            let key = text[start..end].trim();
            let key_note = if !key.is_empty()
                && key.len() <= 40
                && !key.contains('\n')
                && !message.contains(key.trim_matches('"'))
            {
                format!(" (at `{key}`)")
            } else {
                String::new()
            };
            ConfigError::new(format!("{file}:{line}:{column}: {message}{key_note}"))
        }
        None => ConfigError::new(format!("{file}: {message}")),
    }
}

/// The largest char boundary of `text` not after `index`.
fn floor_char_boundary(text: &str, index: usize) -> usize {
    let mut i = index.min(text.len());
    while !text.is_char_boundary(i) {
        i -= 1;
    }
    i
}

/// Reads the document: its shape, then each `type`-tagged store and target.
/// Reads the document; the targets of the credentials at `as_written` (by index) are
/// read as in the first pass (their variables are not all set).
fn read(root: &Node<'_>, pass: Pass<'_>, as_written: &BTreeSet<usize>) -> Result<RawConfig, DeError> {
    let document = RawDocument::deserialize(NodeDe::new(root, pass))?;
    let section = |name: &str| root.get_ref().as_table().and_then(|t| t.get(name));
    let mut stores = BTreeMap::new();
    if let Some(DeValue::Table(nodes)) = section("stores").map(Spanned::get_ref) {
        for (name, node) in nodes.iter() {
            let name: &str = name.get_ref();
            let store = read_store(node, pass).map_err(|e| in_section(e, node, &format!("store `{name}`")))?;
            stores.insert(name.to_owned(), store);
        }
    }
    let nodes = section("credentials").and_then(|n| n.get_ref().as_array());
    let mut credentials = Vec::with_capacity(document.credentials.len());
    for (index, (raw, node)) in document
        .credentials
        .into_iter()
        .zip(nodes.into_iter().flat_map(|a| a.iter()))
        .enumerate()
    {
        let Some(target) = node.get_ref().get("target") else {
            return Err(DeError::at(node.span(), "missing field `target`"));
        };
        let pass = if as_written.contains(&index) { Pass::Raw } else { pass };
        let config = read_target(target, pass).map_err(|e| in_section(e, target, "`target`"))?;
        credentials.push((raw, config));
    }
    Ok(RawConfig {
        defaults: document.defaults,
        stores,
        credentials,
        notify: document.notify,
    })
}

/// An error about a whole section names it.
fn in_section(mut e: DeError, node: &Node<'_>, what: &str) -> DeError {
    if e.span.as_ref().is_none_or(|span| *span == node.span()) {
        e.message = format!("{what}: {}", e.message);
        e.span.get_or_insert_with(|| node.span());
    }
    e
}

/// The section's `type`, one of `types`.
fn section_type<'a>(node: &'a Node<'_>, what: &str, types: &[&str]) -> Result<&'a str, DeError> {
    let expected = types.iter().map(|t| format!("`{t}`")).collect::<Vec<_>>().join(", ");
    let Some(table) = node.get_ref().as_table() else {
        return Err(DeError::at(
            node.span(),
            format!("must be a table with a `type` ({expected})"),
        ));
    };
    let Some(tag) = table.get("type") else {
        return Err(DeError::at(node.span(), format!("missing field `type` ({expected})")));
    };
    match tag.get_ref().as_str() {
        Some(name) if types.contains(&name) => Ok(name),
        Some(name) => Err(DeError::at(
            tag.span(),
            format!("unknown {what} type `{name}`, expected one of {expected}"),
        )),
        None => Err(DeError::at(tag.span(), format!("`type` must be a string ({expected})"))),
    }
}

fn read_store(node: &Node<'_>, pass: Pass<'_>) -> Result<StoreConfig, DeError> {
    let de = NodeDe::new(node, pass).skipping("type");
    Ok(match section_type(node, "store", STORE_TYPES)? {
        "file" => StoreConfig::File(Deserialize::deserialize(de)?),
        "aws-secretsmanager" => StoreConfig::AwsSecretsmanager(Deserialize::deserialize(de)?),
        _ => StoreConfig::VaultKv(Box::new(Deserialize::deserialize(de)?)),
    })
}

fn read_target(node: &Node<'_>, pass: Pass<'_>) -> Result<TargetConfig, DeError> {
    let de = NodeDe::new(node, pass).skipping("type");
    Ok(match section_type(node, "target", TARGET_TYPES)? {
        "postgres" => TargetConfig::Postgres(Deserialize::deserialize(de)?),
        "aws-iam" => TargetConfig::AwsIam(Deserialize::deserialize(de)?),
        "mysql" => TargetConfig::Mysql(Deserialize::deserialize(de)?),
        "redis" => TargetConfig::Redis(Deserialize::deserialize(de)?),
        "http" => TargetConfig::Http(Box::new(Deserialize::deserialize(de)?)),
        "exec" => TargetConfig::Exec(Deserialize::deserialize(de)?),
        _ => TargetConfig::VaultApprole(Deserialize::deserialize(de)?),
    })
}

/// The rotation period when none is configured.
const DEFAULT_EVERY: Duration = Duration::from_secs(30 * 86_400);
/// The grace period of a `dual` or `alternating` credential that configures none, when
/// its rotation period is long enough (see [`default_grace`]).
pub const ZERO_DOWNTIME_GRACE: Duration = Duration::from_secs(3600);

/// The grace period of a credential that configures none (neither on the credential
/// nor in `[defaults]`): `single` has none (the old password dies at apply anyway);
/// `dual` and `alternating` keep the previous secret valid for [`ZERO_DOWNTIME_GRACE`]
/// (one hour: time for applications that re-read the store on an authentication
/// failure, or reload on a hook or a timer), or a quarter of `every` when that is
/// shorter, so that it always ends well before the next rotation.
pub fn default_grace(strategy: Strategy, every: Duration) -> Duration {
    match strategy {
        Strategy::Single => Duration::ZERO,
        _ => ZERO_DOWNTIME_GRACE.min(every / 4),
    }
}

/// The shortest rotation period.
pub const MIN_EVERY: Duration = Duration::from_secs(1);
/// The longest rotation period or grace period: 100 years of 365.25 days (what
/// `"100y"` means). Timestamps plus this stay far inside what the system clock and
/// RFC 3339 can represent.
pub const MAX_PERIOD: Duration = Duration::from_secs(100 * 31_557_600);

fn duration(
    text: Option<&str>,
    fallback: Duration,
    what: &str,
    file: &str,
    owner: &str,
) -> Result<Duration, ConfigError> {
    let Some(t) = text else {
        return Ok(fallback);
    };
    let value = humantime::parse_duration(t.trim()).map_err(|e| {
        ConfigError::new(format!(
            "{file}: {owner}: `{what} = \"{t}\"` is not a duration ({e}); write e.g. \"30d\", \"12h\", \"0s\""
        ))
    })?;
    let minimum = if what == "every" { MIN_EVERY } else { Duration::ZERO };
    if value < minimum || value > MAX_PERIOD {
        return Err(ConfigError::new(format!(
            "{file}: {owner}: `{what} = \"{t}\"` is out of range: {what} must be between {} and 100y",
            crate::engine::inspection::short_duration(minimum)
        )));
    }
    Ok(value)
}

/// The defined store names, for messages.
fn known_stores(stores: &BTreeMap<String, StoreConfig>) -> String {
    if stores.is_empty() {
        "none".to_owned()
    } else {
        stores.keys().map(String::as_str).collect::<Vec<_>>().join(", ")
    }
}

fn valid_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 128
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
        && !name.starts_with(['-', '.'])
}

fn resolve(
    path: &Path,
    base_dir: &Path,
    raw: RawConfig,
    origins: &BTreeMap<String, String>,
    unresolved: &BTreeMap<String, String>,
    lookup: &dyn Fn(&str) -> Option<String>,
) -> Result<Config, ConfigError> {
    let file = path.display().to_string();
    let d = raw.defaults;
    let parallel = d.parallel.unwrap_or(4);
    if parallel == 0 || parallel > 1024 {
        return Err(ConfigError::new(format!(
            "{file}: [defaults] parallel = {parallel} must be between 1 and 1024"
        )));
    }
    let default_every = duration(d.every.as_deref(), DEFAULT_EVERY, "every", &file, "[defaults]")?;
    // `None`: each credential gets its strategy's default ([`default_grace`]).
    let configured_grace = match d.grace.as_deref() {
        Some(text) => Some(duration(Some(text), Duration::ZERO, "grace", &file, "[defaults]")?),
        None => None,
    };
    let default_password = d.password.unwrap_or_default();
    // Cloned by every credential that sets no policy of its own (clones share the alphabet).
    let default_policy = default_password
        .resolve()
        .map_err(|e| ConfigError::new(format!("{file}: [defaults]: {e}")))?;
    let at = |p: PathBuf| if p.is_absolute() { p } else { base_dir.join(p) };
    let defaults = Defaults {
        parallel,
        audit_log: d.audit_log.map(at),
        lock_dir: at(d.lock_dir.unwrap_or_else(|| PathBuf::from(".rekey/locks"))),
    };

    let mut stores = raw.stores;
    for (name, store) in stores.iter_mut() {
        if !valid_name(name) {
            return Err(ConfigError::new(format!(
                "{file}: store name `{name}` may use only letters, digits, `-`, `_`, `.`"
            )));
        }
        match store {
            StoreConfig::File(f) => {
                if f.path.as_os_str().is_empty() {
                    return Err(ConfigError::new(format!("{file}: store `{name}`: `path` is empty")));
                }
                f.path = at(std::mem::take(&mut f.path));
            }
            StoreConfig::AwsSecretsmanager(_) | StoreConfig::VaultKv(_) => {}
        }
    }

    if let Some(store) = d.store.as_deref().filter(|s| !stores.contains_key(*s)) {
        return Err(ConfigError::new(format!(
            "{file}: [defaults] store = \"{store}\" names no store (defined: {})",
            known_stores(&stores)
        )));
    }
    let mut names = BTreeSet::new();
    let mut keys = BTreeMap::new();
    let mut credentials = Vec::with_capacity(raw.credentials.len());
    // Collected into the map at the end: built from a list, its nodes are full (inserted
    // one by one in name order, they are about half full).
    let mut targets = Vec::with_capacity(raw.credentials.len());
    let main_file = file.clone();
    for (c, target) in raw.credentials {
        // Messages about a credential name the file that defines it.
        let file = origins.get(&c.name).cloned().unwrap_or_else(|| main_file.clone());
        let owner = format!("credential `{}`", c.name);
        if !valid_name(&c.name) {
            return Err(ConfigError::new(format!(
                "{file}: credential name `{}` may use only letters, digits, `-`, `_`, `.`",
                c.name
            )));
        }
        if !names.insert(c.name.clone()) {
            return Err(ConfigError::new(format!("{file}: {owner} is defined twice")));
        }
        let store = match c.store.clone().or_else(|| d.store.clone()) {
            Some(store) => store,
            None => {
                return Err(ConfigError::new(format!(
                    "{file}: {owner}: no `store`: set `store = \"NAME\"` on the credential, or a default for \
                     every credential with `[defaults] store = \"NAME\"` (defined stores: {})",
                    known_stores(&stores)
                )))
            }
        };
        if !stores.contains_key(&store) {
            let from = if c.store.is_none() {
                " (from [defaults] store)"
            } else {
                ""
            };
            return Err(ConfigError::new(format!(
                "{file}: {owner}: unknown store `{store}`{from} (defined: {})",
                known_stores(&stores)
            )));
        }
        if c.key.trim().is_empty() {
            return Err(ConfigError::new(format!("{file}: {owner}: `key` is empty")));
        }
        if let Some(other) = keys.insert((store.clone(), c.key.clone()), c.name.clone()) {
            return Err(ConfigError::new(format!(
                "{file}: {owner}: store `{store}` key `{}` is already used by credential `{other}`",
                c.key
            )));
        }
        let policy = match c.password {
            None => default_policy.clone(),
            Some(own) => own
                .over(&default_password)
                .resolve()
                .map_err(|e| ConfigError::new(format!("{file}: {owner}: {e}")))?,
        };
        // Keys minted by a cloud API take seconds to propagate: more fresh-login attempts.
        let minted_default = match &target {
            TargetConfig::AwsIam(_) => 8,
            _ => 3,
        };
        let attempts = c.verify_attempts.or(d.verify_attempts).unwrap_or(minted_default);
        if attempts == 0 || attempts > 100 {
            return Err(ConfigError::new(format!(
                "{file}: {owner}: verify_attempts must be between 1 and 100"
            )));
        }
        let every = duration(c.every.as_deref(), default_every, "every", &file, &owner)?;
        let strategy = c.strategy.unwrap_or_else(|| target.default_strategy());
        let grace = match (c.grace.as_deref(), configured_grace) {
            (Some(text), _) => duration(Some(text), Duration::ZERO, "grace", &file, &owner)?,
            (None, Some(grace)) => grace,
            (None, None) => default_grace(strategy, every),
        };
        if !grace.is_zero() && grace >= every {
            return Err(ConfigError::new(format!(
                "{file}: {owner}: grace ({}) must be shorter than every ({}): the next rotation would revoke a \
                 previous secret still inside its grace period",
                crate::engine::inspection::short_duration(grace),
                crate::engine::inspection::short_duration(every)
            )));
        }
        let on_rotate = c.on_rotate.clone().or_else(|| d.on_rotate.clone()).unwrap_or_default();
        for argv in on_rotate.iter().chain(c.check_command.iter()) {
            if argv.first().is_none_or(|p| p.trim().is_empty()) {
                return Err(ConfigError::new(format!(
                    "{file}: {owner}: a hook command is empty: write it as an argv array, e.g. [\"systemctl\", \"reload\", \"orders\"]"
                )));
            }
        }
        let hook_timeout = duration(
            d.hook_timeout.as_deref(),
            Duration::from_secs(30),
            "hook_timeout",
            &file,
            "[defaults]",
        )?;
        let window = match c.window.as_deref().or(d.window.as_ref()) {
            Some(w) => Some(
                crate::engine::schedule::Window::parse(&w.days, w.hours.as_deref())
                    .map_err(|e| ConfigError::new(format!("{file}: {owner}: {e}")))?,
            ),
            None => None,
        };
        let jitter = duration(
            c.jitter.as_deref().or(d.jitter.as_deref()),
            Duration::ZERO,
            "jitter",
            &file,
            &owner,
        )?;
        if jitter >= every {
            return Err(ConfigError::new(format!(
                "{file}: {owner}: jitter must be shorter than every"
            )));
        }
        let revocation_tolerance = duration(
            d.revocation_tolerance.as_deref(),
            Duration::from_secs(24 * 3600),
            "revocation_tolerance",
            &file,
            "[defaults]",
        )?;
        // A target with a variable that is not set is not configured: asking for it
        // gives the credential's error (`unresolved`).
        if !unresolved.contains_key(&c.name) {
            targets.push((c.name.clone(), target));
        }
        credentials.push(Credential {
            every,
            grace,
            name: c.name,
            store,
            key: c.key,
            strategy,
            tags: c.tags,
            password: policy,
            verify_attempts: attempts,
            description: c.description,
            on_rotate,
            check_command: c.check_command,
            hook_timeout,
            revocation_tolerance,
            window,
            jitter,
        });
    }
    let targets: BTreeMap<String, TargetConfig> = targets.into_iter().collect();
    let file = main_file;
    paths::check(
        &file,
        &paths::Files {
            config: path,
            audit_log: defaults.audit_log.as_deref(),
            lock_dir: &defaults.lock_dir,
            stores: &stores,
            credentials: credentials.iter().map(|c| c.name.as_str()).collect(),
        },
    )?;
    let in_order: Vec<(&str, &TargetConfig)> = credentials
        .iter()
        .filter_map(|c| targets.get(&c.name).map(|t| (c.name.as_str(), t)))
        .collect();
    identity::check(&file, &in_order, lookup)?;
    let notify = notify::resolve(&file, raw.notify)?;
    Ok(Config {
        path: path.to_path_buf(),
        defaults,
        stores,
        targets,
        by_name: NameIndex::of(&credentials),
        credentials,
        admin_refs: BTreeMap::new(),
        notify,
        included: Vec::new(),
        unresolved: BTreeMap::new(),
    })
}

impl fmt::Display for StoreConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            StoreConfig::File(c) => write!(f, "file {}", c.path.display()),
            StoreConfig::AwsSecretsmanager(_) => f.write_str("aws-secretsmanager"),
            StoreConfig::VaultKv(c) => write!(f, "vault-kv mount {}", c.mount),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const GOOD: &str = r#"
[defaults]
parallel = 2
every = "30d"
audit_log = "audit.jsonl"

[stores.local]
type = "file"
path = "secrets.json"

[[credentials]]
name = "orders-db"
store = "local"
key = "orders/db"
tags = ["prod"]
target = { type = "postgres", host = "127.0.0.1", port = 5432, dbname = "orders", username = "orders_app", admin = "${ADMIN_URL}" }
"#;

    fn env(name: &str) -> Option<String> {
        (name == "ADMIN_URL").then(|| "postgres://admin:pw@127.0.0.1/postgres".to_owned())
    }

    fn parse(text: &str) -> Result<Config, ConfigError> {
        Config::parse(Path::new("/etc/rekey/rekey.toml"), text, env)
    }

    #[test]
    fn parses_the_design_example() {
        let c = parse(GOOD).unwrap();
        assert_eq!(c.defaults.parallel, 2);
        assert_eq!(
            c.defaults.audit_log.as_deref(),
            Some(Path::new("/etc/rekey/audit.jsonl"))
        );
        let StoreConfig::File(f) = &c.stores["local"] else {
            panic!("a file store")
        };
        assert_eq!(f.path, Path::new("/etc/rekey/secrets.json"));
        assert_eq!(c.credentials[0].every, Duration::from_secs(30 * 86_400));
        assert!(
            !format!("{c:?}").contains(":pw@"),
            "Debug of the config must not show the admin password"
        );
    }

    #[test]
    fn unknown_key_names_file_line_and_key() {
        let text = GOOD.replace("parallel = 2", "parallel = 2\nparalel = 3");
        let e = parse(&text).unwrap_err().to_string();
        assert!(e.starts_with("/etc/rekey/rekey.toml:4:"), "{e}");
        assert!(e.contains("paralel"), "{e}");
        assert!(!e.contains('\n'));
    }

    #[test]
    fn unknown_target_field_is_an_error() {
        let text = GOOD.replace(
            "username = \"orders_app\"",
            "username = \"orders_app\", usrname = \"x\"",
        );
        let e = parse(&text).unwrap_err().to_string();
        assert!(e.contains("usrname") && e.contains(":16:"), "{e}");
    }

    #[test]
    fn missing_env_names_the_credential() {
        let e = Config::parse(Path::new("r.toml"), GOOD, |_| None)
            .unwrap_err()
            .to_string();
        assert_eq!(
            e,
            "r.toml: credential `orders-db`: environment variable `ADMIN_URL` is not set"
        );
    }

    #[test]
    fn unknown_store_names_the_credential() {
        let e = parse(&GOOD.replace("store = \"local\"", "store = \"vault\""))
            .unwrap_err()
            .to_string();
        assert!(e.contains("credential `orders-db`: unknown store `vault`"), "{e}");
    }

    #[test]
    fn bad_duration_and_malformed_toml() {
        let e = parse(&GOOD.replace("every = \"30d\"", "every = \"soon\""))
            .unwrap_err()
            .to_string();
        assert!(e.contains("every") && e.contains("soon"), "{e}");
        let e = parse("[[credentials]\nname=").unwrap_err().to_string();
        assert!(e.starts_with("/etc/rekey/rekey.toml:1:"), "{e}");
    }

    #[test]
    fn credential_by_name_survives_changes_to_the_list() {
        let text = format!(
            "{GOOD}\n[[credentials]]\nname = \"b\"\nstore = \"local\"\nkey = \"b\"\n\
             target = {{ type = \"postgres\", host = \"127.0.0.1\", username = \"b_app\", admin = \"${{ADMIN_URL}}\" }}\n"
        );
        let mut c = parse(&text).unwrap();
        assert_eq!(c.credential("b").unwrap().key, "b");
        assert_eq!(c.credential("orders-db").unwrap().key, "orders/db");
        assert!(c.credential("nope").is_none());
        // The list is public: after it changed, lookups still find what it holds.
        c.credentials.remove(0);
        assert_eq!(c.credential("b").unwrap().key, "b");
        assert!(c.credential("orders-db").is_none());
        c.credentials.reverse();
        let mut extra = c.credentials[0].clone();
        extra.name = "added".into();
        c.credentials.insert(0, extra);
        assert_eq!(c.credential("added").unwrap().name, "added");
        assert_eq!(c.credential("b").unwrap().name, "b");
    }

    #[test]
    fn selection_by_name_and_tag() {
        let c = parse(GOOD).unwrap();
        assert_eq!(c.select(&[], &["prod".into()]).unwrap().len(), 1);
        assert_eq!(c.select(&[], &["dev".into()]).unwrap().len(), 0);
        let e = c.select(&["nope".into()], &[]).unwrap_err().to_string();
        assert!(
            e.contains("unknown credential `nope`") && e.contains("orders-db"),
            "{e}"
        );
    }
}

#[cfg(test)]
mod refusal_tests;

#[cfg(test)]
mod example_tests {
    use super::*;

    #[test]
    fn the_shipped_example_parses() {
        let text = include_str!("../examples/rekey.toml");
        let config = Config::parse(Path::new("examples/rekey.toml"), text, |name| {
            (name == "ORDERS_ADMIN_URL").then(|| "postgres://rotator:pw@127.0.0.1:5432/postgres".to_owned())
        })
        .unwrap();
        assert_eq!(config.credentials.len(), 1);
        assert_eq!(config.credentials[0].name, "orders-db");
    }
}

#[cfg(test)]
mod scale_tests;
