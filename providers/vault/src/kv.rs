//! [`VaultKvStore`]: a Vault KV mount (version 1 or 2) as a rekey store.
//!
//! Layout for key `orders/db` on mount `secret` (versions prefix `.rekey`):
//!
//! | what | KV v1 path | KV v2 path |
//! | --- | --- | --- |
//! | the current secret, what applications read | `secret/orders/db` | `secret/data/orders/db` |
//! | rekey's versions document (every version and stage) | `secret/.rekey/orders/db` | `secret/data/.rekey/orders/db` |
//!
//! Pending and previous versions only ever live in the versions document, so a reader of
//! the key sees the current secret and nothing else.

use crate::client::{allows, judge_capabilities, not_checked, Client};
use crate::http::{Method, Reply, SecretJson};
use crate::model::{self, Live, Op, Versions};
use async_trait::async_trait;
use rekey_api::{ErrorCode, KeyState, ProviderError, ProviderResult, SecretDoc, Store, StoreCapabilities};
use serde_json::{json, Value};
use std::collections::HashMap;
use std::fmt;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::SystemTime;

/// Per-key write locks shared by every store of one provider: on KV v1, the only guard
/// against two writers (there is no check-and-set); on KV v2 they save round trips
/// that check-and-set would refuse anyway.
#[derive(Default)]
pub(crate) struct KeyLocks {
    locks: Mutex<HashMap<String, Arc<tokio::sync::Mutex<()>>>>,
}

impl KeyLocks {
    fn get(&self, id: String) -> Arc<tokio::sync::Mutex<()>> {
        let mut locks = self.locks.lock().unwrap_or_else(PoisonError::into_inner);
        // Forget locks nobody holds or waits for, so the table stays small.
        if locks.len() > 1024 {
            locks.retain(|_, l| Arc::strong_count(l) > 1);
        }
        locks.entry(id).or_default().clone()
    }
}

/// The KV engine version of the mount.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum KvVersion {
    V1,
    V2,
}

/// One KV entry as read: its value (if any) and, on KV v2, the version number the next
/// check-and-set write must name (0: the path was never written).
struct Entry {
    value: Option<SecretJson>,
    version: u64,
    created: Option<SystemTime>,
}

/// What one read of a key found: the live value first, then the versions document.
struct Snapshot {
    live: Entry,
    doc: Option<Versions>,
    doc_version: u64,
}

impl Snapshot {
    fn effective(&self) -> Versions {
        let live = self.live.value.as_ref().map(|v| Live {
            value: v.get(),
            created: self.live.created,
        });
        Versions::effective(self.doc.as_ref(), live)
    }
}

/// A Vault KV mount used as a rekey store. Created by
/// [`crate::VaultProvider::vault_kv_store`]. See the crate documentation for the layout,
/// the write order and what check-and-set guarantees.
pub struct VaultKvStore {
    client: Client,
    mount: String,
    version: KvVersion,
    prefix: String,
    locks: Arc<KeyLocks>,
    lock_scope: String,
}

impl fmt::Debug for VaultKvStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("VaultKvStore")
            .field("client", &self.client)
            .field("mount", &self.mount)
            .field("version", &self.version)
            .field("prefix", &self.prefix)
            .finish_non_exhaustive()
    }
}

impl VaultKvStore {
    pub(crate) fn new(client: Client, mount: String, version: KvVersion, prefix: String, locks: Arc<KeyLocks>) -> Self {
        let lock_scope = format!("{}|{mount}|{prefix}|", client.conn().label());
        VaultKvStore {
            client,
            mount,
            version,
            prefix,
            locks,
            lock_scope,
        }
    }

    /// The KV version this store speaks (1 or 2).
    pub fn kv_version(&self) -> u8 {
        match self.version {
            KvVersion::V1 => 1,
            KvVersion::V2 => 2,
        }
    }

    /// Whether writes are check-and-set (KV v2).
    pub fn compare_and_set(&self) -> bool {
        self.version == KvVersion::V2
    }

    /// The API path applications read for `key` (`secret/orders/db` on KV v1,
    /// `secret/data/orders/db` on KV v2).
    pub fn live_path(&self, key: &str) -> String {
        self.data_path(key)
    }

    /// The API path of `key`'s versions document (`secret/.rekey/orders/db` on KV v1,
    /// `secret/data/.rekey/orders/db` on KV v2).
    pub fn versions_path(&self, key: &str) -> String {
        self.data_path(&format!("{}/{key}", self.prefix))
    }

    /// The path as the vault CLI names it (`secret/orders/db` on both versions).
    fn cli_path(&self, key: &str) -> String {
        format!("{}/{key}", self.mount)
    }

    fn data_path(&self, rel: &str) -> String {
        match self.version {
            KvVersion::V1 => format!("{}/{rel}", self.mount),
            KvVersion::V2 => format!("{}/data/{rel}", self.mount),
        }
    }

    fn check_key(&self, key: &str) -> ProviderResult<()> {
        let bad = key.is_empty()
            || key.starts_with('/')
            || key.ends_with('/')
            || key.split('/').any(|s| s.is_empty() || s == "." || s == "..")
            || key.chars().any(|c| c.is_control() || c == '?' || c == '#');
        if bad {
            return Err(ProviderError::invalid_input(format!(
                "vault-kv store: key {key:?} is not a valid Vault path (segments separated by single `/`)"
            )));
        }
        if key == self.prefix || key.starts_with(&format!("{}/", self.prefix)) {
            return Err(ProviderError::invalid_input(format!(
                "vault-kv store: key {key:?} lies under `{}/`, where rekey keeps its versions documents",
                self.prefix
            )));
        }
        Ok(())
    }

    /// Reads one KV path.
    async fn get(&self, path: &str) -> ProviderResult<Entry> {
        let reply = self.client.call(Method::Get, path, None).await?;
        match (self.version, reply.status) {
            (_, 404) => self.absent(path, &reply),
            (KvVersion::V1, s) if (200..300).contains(&s) => {
                let value = reply.data().cloned().map(SecretJson);
                Ok(Entry {
                    value,
                    version: 0,
                    created: None,
                })
            }
            (KvVersion::V2, s) if (200..300).contains(&s) => {
                let data = reply.data();
                let metadata = data.and_then(|d| d.get("metadata"));
                let version = metadata
                    .and_then(|m| m.get("version"))
                    .and_then(Value::as_u64)
                    .ok_or_else(|| {
                        ProviderError::other(format!(
                            "vault {}: GET {path}: a KV v2 answer without data.metadata.version; is the mount KV \
                         version 2?",
                            self.client.conn().address()
                        ))
                    })?;
                let created = metadata
                    .and_then(|m| m.get("created_time"))
                    .and_then(Value::as_str)
                    .and_then(|t| humantime::parse_rfc3339_weak(t).ok());
                let value = data
                    .and_then(|d| d.get("data"))
                    .filter(|v| !v.is_null())
                    .cloned()
                    .map(SecretJson);
                Ok(Entry {
                    value,
                    version,
                    created,
                })
            }
            _ => Err(self.client.error(Method::Get, path, &reply)),
        }
    }

    /// A 404: the path is absent (empty `errors`, or KV v2's answer for a deleted latest
    /// version, which still names the version), or the mount itself is missing (Vault:
    /// "no handler for route"; rvault: "Router mount not found").
    fn absent(&self, path: &str, reply: &Reply) -> ProviderResult<Entry> {
        let deleted_version = reply
            .data()
            .and_then(|d| d.get("metadata"))
            .and_then(|m| m.get("version"))
            .and_then(Value::as_u64);
        if let Some(version) = deleted_version {
            return Ok(Entry {
                value: None,
                version,
                created: None,
            });
        }
        if reply.errors.is_empty() {
            return Ok(Entry {
                value: None,
                version: 0,
                created: None,
            });
        }
        Err(ProviderError::not_found(format!(
            "vault {}: GET {path}: mount {}/ not found (HTTP 404): {}",
            self.client.conn().address(),
            self.mount,
            reply.error_text()
        ))
        .with_code(ErrorCode::Http(404)))
    }

    /// Writes one KV path; on KV v2 only if its version is still `cas`.
    async fn put(&self, path: &str, data: &Value, cas: u64) -> ProviderResult<()> {
        let body = match self.version {
            KvVersion::V1 => None,
            KvVersion::V2 => Some(json!({ "options": { "cas": cas }, "data": data })),
        };
        let sent = body.as_ref().unwrap_or(data);
        let method = match self.version {
            KvVersion::V1 => Method::Put,
            KvVersion::V2 => Method::Post,
        };
        let reply = self.client.call(method, path, Some(sent)).await;
        if let Some(body) = body {
            model::scrub(body);
        }
        let reply = reply?;
        if reply.is_success() {
            return Ok(());
        }
        let e = self.client.error(method, path, &reply);
        Err(match e.kind() {
            rekey_api::ErrorKind::Conflict => ProviderError::conflict(format!(
                "vault {}: {method} {path}: another writer changed it first (check-and-set expected version \
                 {cas}); nothing was overwritten",
                self.client.conn().address()
            )),
            rekey_api::ErrorKind::NotFound => {
                ProviderError::not_found(format!("{}; does mount {}/ exist?", e.message(), self.mount))
            }
            _ => e,
        })
    }

    /// Reads the key: the live value first, then the versions document, so that a write
    /// running meanwhile (which writes the document first) shows as interrupted, never as
    /// a state that cannot occur.
    async fn snapshot(&self, key: &str) -> ProviderResult<Snapshot> {
        let live_path = self.live_path(key);
        let doc_path = self.versions_path(key);
        let live = self.get(&live_path).await?;
        let doc_entry = self.get(&doc_path).await?;
        let doc = match &doc_entry.value {
            Some(v) => Some(Versions::parse(v.get(), &doc_path)?),
            None => None,
        };
        Ok(Snapshot {
            live,
            doc,
            doc_version: doc_entry.version,
        })
    }

    /// One write: read, check the precondition on the state readers see, then store the
    /// versions document (if it changed) and after it the current value (if it changed).
    async fn write(&self, key: &str, version_id: &str, op: Op<'_>) -> ProviderResult<()> {
        self.check_key(key)?;
        if version_id.is_empty() {
            return Err(ProviderError::invalid_input(format!(
                "key {key:?}: version id is empty"
            )));
        }
        let lock = self.locks.get(format!("{}{key}", self.lock_scope));
        let _held = lock.lock().await;
        let snapshot = self.snapshot(key).await?;
        let discard = matches!(op, Op::DiscardPending { .. });
        if discard && snapshot.live.value.is_none() && snapshot.doc.is_none() {
            return Err(self.not_found(key));
        }
        let mut state = snapshot.effective();
        let changed = state.apply(&op, key, model::now())?;
        if discard && !changed {
            // Nothing to discard: write nothing (not even an adopted value's document).
            return Ok(());
        }
        state.prune();
        if snapshot.doc.as_ref() != Some(&state) {
            let about = format!(
                "rekey versions of {}; applications read {}",
                self.cli_path(key),
                self.cli_path(key)
            );
            let doc = state.to_value(&about);
            self.put(&self.versions_path(key), doc.get(), snapshot.doc_version)
                .await?;
        }
        if let Some(current) = state.with_stage(rekey_api::Stage::Current) {
            if snapshot.live.value.as_ref() != Some(&current.value) {
                self.put(&self.live_path(key), current.value.get(), snapshot.live.version)
                    .await?;
            }
        }
        Ok(())
    }

    /// `key` holds nothing: neither a value nor a versions document.
    fn not_found(&self, key: &str) -> ProviderError {
        ProviderError::not_found(format!(
            "key {key:?} not found in vault {} ({} and {} are empty)",
            self.client.conn().address(),
            self.live_path(key),
            self.versions_path(key)
        ))
    }

    /// The token may do what a rotation of `key` does on both paths (the application's
    /// value and rekey's versions document): `read`, and `update` where the path exists or
    /// `create` where it does not (KV's rules for a write). Where the token has both, or
    /// neither, which paths exist does not matter and is not asked; "not checked" when the
    /// server does not answer `sys/capabilities-self`.
    async fn check_write_capabilities(&self, key: &str) -> ProviderResult<String> {
        let paths = [self.live_path(key), self.versions_path(key)];
        let Some(found) = self.client.capabilities(&paths).await? else {
            return Ok(not_checked(&paths));
        };
        let either_not_both = |caps: &Vec<String>| allows(caps, &["create"]) != allows(caps, &["update"]);
        let exists = if found.iter().any(either_not_both) {
            let snapshot = self.snapshot(key).await?;
            [snapshot.live.value.is_some(), snapshot.doc.is_some()]
        } else {
            [true, true]
        };
        let needs: Vec<(String, &[&str])> = paths
            .into_iter()
            .zip(found.iter().zip(exists))
            .map(|(path, (caps, exists))| {
                let needed: &[&str] = match (either_not_both(caps), exists) {
                    (false, _) => &["read", "create", "update"],
                    (true, true) => &["read", "update"],
                    (true, false) => &["read", "create"],
                };
                (path, needed)
            })
            .collect();
        judge_capabilities(&self.client, &needs, &found)
    }

    /// Read-only checks that rotations of `key` can work, one line per fact: Vault
    /// reachable and unsealed, the token valid, the mount's KV version as configured,
    /// and the token's capabilities on both paths (or "not checked" when the server cannot
    /// tell), and what the key holds now.
    pub async fn preflight(&self, key: &str) -> ProviderResult<Vec<String>> {
        self.check_key(key)?;
        let mut lines = vec![self.client.check_unsealed().await?, self.client.check_token().await?];
        lines.push(self.check_mount().await?);
        lines.push(self.check_write_capabilities(key).await?);
        let snapshot = self.snapshot(key).await?;
        lines.push(match (&snapshot.live.value, &snapshot.doc) {
            (None, None) => format!("key {key:?} does not exist yet ({} is empty)", self.cli_path(key)),
            (Some(_), None) => format!(
                "key {key:?} holds a value rekey has not versioned yet (it is adopted as current on the first write)"
            ),
            (_, Some(_)) => {
                let state = snapshot.effective();
                let describe = |stage| {
                    state
                        .with_stage(stage)
                        .map_or("none".to_owned(), |v: &model::Version| format!("{:?}", v.id))
                };
                format!(
                    "key {key:?}: current {}, pending {}, previous {}",
                    describe(rekey_api::Stage::Current),
                    describe(rekey_api::Stage::Pending),
                    describe(rekey_api::Stage::Previous)
                )
            }
        });
        Ok(lines)
    }

    /// The mount's description (`type`, `options`): from `sys/internal/ui/mounts/<mount>`
    /// (allowed to any token with access to the mount), else from `sys/mounts` (needs
    /// read on it; rvault answers only this one). `None` when neither answers.
    async fn mount_info(&self) -> ProviderResult<Option<Value>> {
        let path = format!("sys/internal/ui/mounts/{}", self.mount);
        let reply = self.client.call(Method::Get, &path, None).await?;
        if reply.status == 503 {
            return Err(self.client.error(Method::Get, &path, &reply));
        }
        if let Some(data) = reply.data().filter(|_| reply.is_success()) {
            return Ok(Some(data.clone()));
        }
        let path = "sys/mounts";
        let reply = self.client.call(Method::Get, path, None).await?;
        if !reply.is_success() {
            return Ok(None);
        }
        let name = format!("{}/", self.mount);
        let found = reply
            .data()
            .and_then(|d| d.get(&name))
            .or_else(|| reply.field(&name))
            .cloned();
        match found {
            Some(info) => Ok(Some(info)),
            None => Err(ProviderError::not_found(format!(
                "vault {}: mount {name} not found (sys/mounts does not list it)",
                self.client.conn().address()
            ))),
        }
    }

    /// Compares the mount's KV version with the configuration, when the server says.
    async fn check_mount(&self) -> ProviderResult<String> {
        let Some(data) = self.mount_info().await? else {
            return Ok(format!(
                "KV version of mount {}/ not checked (the server answers neither sys/internal/ui/mounts nor \
                 sys/mounts)",
                self.mount
            ));
        };
        let kind = data.get("type").and_then(Value::as_str).unwrap_or("");
        if !kind.is_empty() && kind != "kv" && kind != "generic" {
            return Err(ProviderError::invalid_input(format!(
                "vault {}: mount {}/ is a {kind:?} secrets engine, not kv",
                self.client.conn().address(),
                self.mount
            )));
        }
        let found = data
            .get("options")
            .and_then(|o| o.get("version"))
            .and_then(|v| {
                v.as_str()
                    .map(str::to_owned)
                    .or_else(|| v.as_u64().map(|n| n.to_string()))
            })
            .unwrap_or_else(|| "1".to_owned());
        if found != self.kv_version().to_string() {
            return Err(ProviderError::invalid_input(format!(
                "vault {}: mount {}/ is KV version {found} but the store is configured with kv_version = {}",
                self.client.conn().address(),
                self.mount,
                self.kv_version()
            )));
        }
        Ok(format!("mount {}/ is KV version {found}", self.mount))
    }
}

#[async_trait]
impl Store for VaultKvStore {
    fn capabilities(&self) -> StoreCapabilities {
        StoreCapabilities {
            compare_and_set: self.compare_and_set(),
            write_check_is_a_read: false,
        }
    }

    fn describe(&self) -> String {
        format!(
            "vault-kv {}/ (KV v{}) on {}",
            self.mount,
            self.kv_version(),
            self.client.conn().label()
        )
    }

    async fn read(&self, key: &str) -> ProviderResult<KeyState> {
        self.check_key(key)?;
        let snapshot = self.snapshot(key).await?;
        if snapshot.live.value.is_none() && snapshot.doc.is_none() {
            return Err(self.not_found(key));
        }
        snapshot.effective().to_key_state().map_err(|e| {
            // A value that is not a JSON object cannot come from KV, but say where if it does.
            e.context(format!("key {key:?} in vault {}", self.client.conn().address()))
        })
    }

    /// What `rotate` runs before touching the target: the token's capabilities on the
    /// paths a rotation writes (the seal, the token and the mount show in the read that
    /// comes first).
    async fn check_writable(&self, key: &str) -> ProviderResult<()> {
        self.check_key(key)?;
        self.check_write_capabilities(key).await.map(drop)
    }

    async fn put_current(&self, key: &str, version_id: &str, doc: &SecretDoc) -> ProviderResult<()> {
        let value = SecretJson(doc.to_value());
        self.write(
            key,
            version_id,
            Op::PutCurrent {
                id: version_id,
                value: value.get(),
            },
        )
        .await
    }

    async fn stage_pending(&self, key: &str, version_id: &str, doc: &SecretDoc) -> ProviderResult<()> {
        let value = SecretJson(doc.to_value());
        self.write(
            key,
            version_id,
            Op::StagePending {
                id: version_id,
                value: value.get(),
            },
        )
        .await
    }

    async fn promote(&self, key: &str, version_id: &str, previous_revoked: bool) -> ProviderResult<()> {
        self.write(
            key,
            version_id,
            Op::Promote {
                id: version_id,
                previous_revoked,
            },
        )
        .await
    }

    async fn mark_revoked(&self, key: &str, version_id: &str) -> ProviderResult<()> {
        self.write(key, version_id, Op::MarkRevoked { id: version_id }).await
    }

    /// Clears the pending stage in the versions document (`<mount>/.rekey/<key>`) only:
    /// the version stays there as history, and the value applications read is not
    /// touched. On KV v2 the write is check-and-set against the document version read.
    async fn discard_pending(&self, key: &str, version_id: &str) -> ProviderResult<()> {
        self.write(key, version_id, Op::DiscardPending { id: version_id }).await
    }
}
