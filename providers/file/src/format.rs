//! The on-disk format (format 1) and the operations applied to it in memory.
//!
//! ```json
//! {
//!   "format": 1,
//!   "keys": {
//!     "orders/db": {
//!       "versions": [
//!         { "id": "run-1", "stages": ["previous"], "created": "2026-10-21T18:00:00Z",
//!           "revoked": "2026-11-21T18:00:09Z", "value": { "username": "...", "password": "..." } },
//!         { "id": "run-2", "stages": ["current"], "created": "2026-11-21T18:00:00Z",
//!           "revoked": null, "value": { "username": "...", "password": "..." } }
//!       ]
//!     }
//!   }
//! }
//! ```
//!
//! Versions are kept oldest first. Every message built here names keys, version ids and
//! stages only, never a value.

use crate::fsio::SecureBuf;
use rekey_api::{KeyState, ProviderError, ProviderResult, SecretDoc, Stage, StoredVersion};
use serde::de::{self, Deserializer};
use serde::ser::{self, Serializer};
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;
use serde_json::Value;
use std::collections::BTreeMap;
use std::io::{self, Write};
use std::path::Path;
use std::time::{SystemTime, UNIX_EPOCH};
use zeroize::{Zeroize, Zeroizing};

/// The format number this crate reads and writes.
pub(crate) const FORMAT: u32 = 1;

/// How many stage-less versions (history) each key keeps; older ones are dropped.
pub const HISTORY_LIMIT: usize = 5;

/// The whole store file.
#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct StoreFile {
    format: u32,
    #[serde(default)]
    keys: BTreeMap<String, KeyEntry>,
}

impl Default for StoreFile {
    fn default() -> Self {
        StoreFile {
            format: FORMAT,
            keys: BTreeMap::new(),
        }
    }
}

/// Key names only: the model holds secrets.
impl std::fmt::Debug for StoreFile {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StoreFile")
            .field("format", &self.format)
            .field("keys", &self.keys.keys().collect::<Vec<_>>())
            .finish_non_exhaustive()
    }
}

/// Only the format number, read first so that a newer format is reported as such
/// rather than as a structure error. Every other field is skipped without being kept
/// (no `flatten`: that would buffer the skipped values, secrets included).
#[derive(Deserialize)]
struct Header {
    format: u32,
}

/// The top level of the file with each key's entry left as raw JSON text (borrowed from
/// the zeroized read buffer), so that a read parses only the key it was asked for.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawStoreFile<'a> {
    format: u32,
    #[serde(borrow, default)]
    keys: BTreeMap<String, &'a RawValue>,
}

/// Every version of one key.
#[derive(Serialize, Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct KeyEntry {
    versions: Vec<VersionEntry>,
    /// This entry as it is written into the file (pretty, indented for its place under
    /// `keys`), kept so that a write re-serializes only the keys it changed. Cleared
    /// whenever an operation touches the key ([`StoreFile::apply`]); zeroized on drop.
    #[serde(skip)]
    text: Option<Zeroizing<Vec<u8>>>,
}

/// One version as stored.
#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct VersionEntry {
    id: String,
    stages: Vec<StageName>,
    #[serde(with = "rfc3339")]
    created: SystemTime,
    #[serde(with = "rfc3339_opt", default)]
    revoked: Option<SystemTime>,
    value: SecretValue,
}

#[derive(Serialize, Deserialize, Clone, Copy, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
enum StageName {
    Current,
    Pending,
    Previous,
}

impl From<StageName> for Stage {
    fn from(s: StageName) -> Stage {
        match s {
            StageName::Current => Stage::Current,
            StageName::Pending => Stage::Pending,
            StageName::Previous => Stage::Previous,
        }
    }
}

impl StageName {
    fn as_str(self) -> &'static str {
        Stage::from(self).as_str()
    }
}

impl VersionEntry {
    fn has(&self, stage: StageName) -> bool {
        self.stages.contains(&stage)
    }

    fn remove(&mut self, stage: StageName) {
        self.stages.retain(|s| *s != stage);
    }

    fn add(&mut self, stage: StageName) {
        if !self.has(stage) {
            self.stages.push(stage);
        }
    }

    fn describe_stages(&self) -> String {
        if self.stages.is_empty() {
            "no stage".to_owned()
        } else {
            let names: Vec<_> = self.stages.iter().map(|s| s.as_str()).collect();
            format!("stage {}", names.join(", "))
        }
    }
}

impl KeyEntry {
    /// The rules a hand-edited file could break: ids unique and non-empty, each stage
    /// held by at most one version, each version holding at most one stage.
    fn validate(&self, path: &Path, key: &str) -> ProviderResult<()> {
        let bad =
            |what: String| ProviderError::invalid_input(format!("store file {}: key {key:?}: {what}", path.display()));
        for (i, v) in self.versions.iter().enumerate() {
            if v.id.is_empty() {
                return Err(bad(format!("version {} has an empty id", i + 1)));
            }
            if self.versions[..i].iter().any(|w| w.id == v.id) {
                return Err(bad(format!("version id {:?} appears twice", v.id)));
            }
            if v.stages.len() > 1 {
                return Err(bad(format!("version {:?} holds more than one stage", v.id)));
            }
        }
        for stage in [StageName::Current, StageName::Pending, StageName::Previous] {
            if self.versions.iter().filter(|v| v.has(stage)).count() > 1 {
                return Err(bad(format!("more than one version holds stage {}", stage.as_str())));
            }
        }
        Ok(())
    }

    /// Every version, for a reader.
    fn state(&self) -> ProviderResult<KeyState> {
        let mut versions = Vec::with_capacity(self.versions.len());
        for v in &self.versions {
            versions.push(StoredVersion {
                id: v.id.clone(),
                stages: v.stages.iter().map(|s| Stage::from(*s)).collect(),
                created: v.created,
                revoked: v.revoked,
                doc: v.value.to_doc()?,
            });
        }
        Ok(KeyState { versions })
    }

    /// The entry's text in the file: serialized pretty on first use, then kept until the
    /// key is next touched. It is what `serde_json::to_writer_pretty` writes for the
    /// entry two levels deep: its own pretty form with every line after the first
    /// indented by four more spaces. That is safe to do on the bytes because serde_json
    /// escapes control characters inside strings, so every newline it writes is layout.
    fn text(&mut self) -> serde_json::Result<&[u8]> {
        if self.text.is_none() {
            let mut own = SecureBuf::with_capacity(512 * self.versions.len().max(1));
            serde_json::to_writer_pretty(&mut own, &*self)?;
            let own = own.as_slice();
            let lines = own.iter().filter(|&&b| b == b'\n').count();
            let mut text = Zeroizing::new(Vec::with_capacity(own.len() + 4 * lines));
            for &b in own {
                text.push(b);
                if b == b'\n' {
                    text.extend_from_slice(b"    ");
                }
            }
            self.text = Some(text);
        }
        Ok(self.text.as_deref().map_or(&[][..], |t| t.as_slice()))
    }

    fn version(&self, id: &str) -> Option<&VersionEntry> {
        self.versions.iter().find(|v| v.id == id)
    }

    fn with_stage(&self, stage: StageName) -> Option<&VersionEntry> {
        self.versions.iter().find(|v| v.has(stage))
    }

    /// Drops the oldest stage-less versions beyond [`HISTORY_LIMIT`]; their values are
    /// zeroized as they drop.
    fn prune(&mut self) {
        let stageless = self.versions.iter().filter(|v| v.stages.is_empty()).count();
        let mut excess = stageless.saturating_sub(HISTORY_LIMIT);
        self.versions.retain(|v| {
            if excess > 0 && v.stages.is_empty() {
                excess -= 1;
                false
            } else {
                true
            }
        });
    }
}

/// A secret JSON object held by the model: zeroized on drop, never printed.
pub(crate) struct SecretValue(Value);

impl SecretValue {
    /// A copy of the document for storing.
    pub(crate) fn from_doc(doc: &SecretDoc) -> SecretValue {
        SecretValue(doc.to_value())
    }

    fn to_doc(&self) -> ProviderResult<SecretDoc> {
        SecretDoc::from_value(self.0.clone())
    }
}

impl PartialEq for SecretValue {
    fn eq(&self, other: &Self) -> bool {
        self.0 == other.0
    }
}

impl Drop for SecretValue {
    fn drop(&mut self) {
        zeroize_value(&mut self.0);
    }
}

impl Serialize for SecretValue {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        self.0.serialize(serializer)
    }
}

impl<'de> Deserialize<'de> for SecretValue {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let mut value = Value::deserialize(deserializer)?;
        if value.is_object() {
            Ok(SecretValue(value))
        } else {
            zeroize_value(&mut value);
            Err(de::Error::custom("a version's value must be a JSON object"))
        }
    }
}

fn zeroize_value(value: &mut Value) {
    match value {
        Value::String(s) => s.zeroize(),
        Value::Array(items) => items.iter_mut().for_each(zeroize_value),
        Value::Object(map) => map.values_mut().for_each(zeroize_value),
        _ => {}
    }
}

mod rfc3339 {
    use super::*;

    pub fn serialize<S: Serializer>(time: &SystemTime, serializer: S) -> Result<S::Ok, S::Error> {
        if time.duration_since(UNIX_EPOCH).is_err() {
            return Err(ser::Error::custom("timestamp before 1970"));
        }
        serializer.collect_str(&humantime::format_rfc3339_seconds(*time))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(deserializer: D) -> Result<SystemTime, D::Error> {
        let text = String::deserialize(deserializer)?;
        humantime::parse_rfc3339(&text).map_err(|_| de::Error::custom("timestamp is not RFC 3339 UTC"))
    }
}

mod rfc3339_opt {
    use super::*;

    pub fn serialize<S: Serializer>(time: &Option<SystemTime>, serializer: S) -> Result<S::Ok, S::Error> {
        match time {
            Some(time) => super::rfc3339::serialize(time, serializer),
            None => serializer.serialize_none(),
        }
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Option<SystemTime>, D::Error> {
        match Option::<String>::deserialize(deserializer)? {
            None => Ok(None),
            Some(text) => humantime::parse_rfc3339(&text)
                .map(Some)
                .map_err(|_| de::Error::custom("timestamp is not RFC 3339 UTC")),
        }
    }
}

/// One write, queued for the writer.
pub(crate) enum Op {
    PutCurrent {
        key: String,
        id: String,
        value: SecretValue,
    },
    StagePending {
        key: String,
        id: String,
        value: SecretValue,
    },
    Promote {
        key: String,
        id: String,
        previous_revoked: bool,
    },
    MarkRevoked {
        key: String,
        id: String,
    },
    DiscardPending {
        key: String,
        id: String,
    },
}

/// Describes a JSON error by position only: serde_json's own message may quote the
/// offending text, which could be a secret.
pub(crate) fn describe_json_error(path: &Path, e: &serde_json::Error) -> ProviderError {
    use serde_json::error::Category;
    let what = match e.classify() {
        Category::Syntax => "is not valid JSON",
        Category::Eof => "is truncated (unexpected end of JSON)",
        Category::Data => "does not match the rekey store format",
        Category::Io => "could not be read",
    };
    ProviderError::invalid_input(format!(
        "store file {} {what} at line {}, column {}; fix or restore it from a backup",
        path.display(),
        e.line(),
        e.column()
    ))
}

impl StoreFile {
    /// Parses and validates the raw file contents. An empty file is an empty store.
    pub(crate) fn parse(path: &Path, raw: &[u8]) -> ProviderResult<StoreFile> {
        if raw.iter().all(u8::is_ascii_whitespace) {
            return Ok(StoreFile::default());
        }
        let header: Header = serde_json::from_slice(raw).map_err(|e| describe_json_error(path, &e))?;
        if header.format != FORMAT {
            return Err(ProviderError::invalid_input(format!(
                "store file {} has format {}; this rekey reads format {FORMAT} only",
                path.display(),
                header.format
            )));
        }
        let file: StoreFile = serde_json::from_slice(raw).map_err(|e| describe_json_error(path, &e))?;
        file.validate(path)?;
        Ok(file)
    }

    /// Checks every key's entry ([`KeyEntry::validate`]).
    fn validate(&self, path: &Path) -> ProviderResult<()> {
        for (key, entry) in &self.keys {
            entry.validate(path, key)?;
        }
        Ok(())
    }

    /// Every version of `key`, or `None` when the key is absent.
    pub(crate) fn key_state(&self, key: &str) -> ProviderResult<Option<KeyState>> {
        self.keys.get(key).map(KeyEntry::state).transpose()
    }

    /// Reads one key from the raw file contents, parsing only that key's entry: the rest
    /// of the file is checked for JSON syntax and its top-level shape only (writes, which
    /// rewrite everything, still parse and validate all of it). Any error is reported by
    /// the full [`StoreFile::parse`], so messages (format number, path, line and column
    /// in the file) are exactly those of a full parse.
    pub(crate) fn read_key(path: &Path, raw: &[u8], key: &str) -> ProviderResult<Option<KeyState>> {
        if raw.iter().all(u8::is_ascii_whitespace) {
            return Ok(None);
        }
        let full = || -> ProviderResult<Option<KeyState>> {
            let file = StoreFile::parse(path, raw)?;
            file.keys.get(key).map(KeyEntry::state).transpose()
        };
        // serde_json's error is dropped unseen: its message could quote the input.
        let Some(top) = serde_json::from_slice::<RawStoreFile>(raw)
            .ok()
            .filter(|top| top.format == FORMAT)
        else {
            return full();
        };
        let Some(entry) = top.keys.get(key) else {
            return Ok(None);
        };
        match serde_json::from_str::<KeyEntry>(entry.get()) {
            Ok(entry) => {
                entry.validate(path, key)?;
                entry.state().map(Some)
            }
            Err(_) => full(),
        }
    }

    /// Writes the store exactly as `serde_json::to_writer_pretty` would (checked by a
    /// test), taking each untouched key's text from its cache ([`KeyEntry::text`]).
    pub(crate) fn write_pretty(&mut self, out: &mut impl Write) -> io::Result<()> {
        write!(out, "{{\n  \"format\": {},\n  \"keys\": ", self.format)?;
        if self.keys.is_empty() {
            out.write_all(b"{}")?;
        } else {
            out.write_all(b"{\n")?;
            for (i, (key, entry)) in self.keys.iter_mut().enumerate() {
                if i > 0 {
                    out.write_all(b",\n")?;
                }
                out.write_all(b"    ")?;
                serde_json::to_writer(&mut *out, key)?;
                out.write_all(b": ")?;
                out.write_all(entry.text()?)?;
            }
            out.write_all(b"\n  }")?;
        }
        out.write_all(b"\n}")
    }

    /// Applies one write. Returns whether it changed anything (`false`: it had already
    /// taken effect). A refused write leaves the model exactly as it was.
    pub(crate) fn apply(&mut self, op: Op, now: SystemTime) -> ProviderResult<bool> {
        // Whatever the outcome, the key's serialized text is no longer trusted.
        let (Op::PutCurrent { key, .. }
        | Op::StagePending { key, .. }
        | Op::Promote { key, .. }
        | Op::MarkRevoked { key, .. }
        | Op::DiscardPending { key, .. }) = &op;
        if let Some(entry) = self.keys.get_mut(key) {
            entry.text = None;
        }
        match op {
            Op::PutCurrent { key, id, value } => self.put_current(key, id, value, now),
            Op::StagePending { key, id, value } => self.stage_pending(key, id, value, now),
            Op::Promote {
                key,
                id,
                previous_revoked,
            } => self.promote(&key, &id, previous_revoked, now),
            Op::MarkRevoked { key, id } => self.mark_revoked(&key, &id, now),
            Op::DiscardPending { key, id } => self.discard_pending(&key, &id),
        }
    }

    fn put_current(&mut self, key: String, id: String, value: SecretValue, now: SystemTime) -> ProviderResult<bool> {
        if let Some(entry) = self.keys.get(&key) {
            if let Some(existing) = entry.version(&id) {
                if existing.has(StageName::Current) && existing.value == value {
                    return Ok(false);
                }
                let what = if existing.has(StageName::Current) {
                    "is already current with a different value".to_owned()
                } else {
                    format!("already exists ({})", existing.describe_stages())
                };
                return Err(ProviderError::conflict(format!(
                    "key {key:?}: version {id:?} {what}; use a new version id"
                )));
            }
            if let Some(pending) = entry.with_stage(StageName::Pending) {
                return Err(ProviderError::conflict(format!(
                    "key {key:?} has a pending rotation (version {:?}); finish it before importing",
                    pending.id
                )));
            }
        }
        let entry = self.keys.entry(key).or_default();
        for v in &mut entry.versions {
            v.remove(StageName::Current);
        }
        entry.text = None;
        entry.versions.push(VersionEntry {
            id,
            stages: vec![StageName::Current],
            created: now,
            revoked: None,
            value,
        });
        entry.prune();
        Ok(true)
    }

    fn stage_pending(&mut self, key: String, id: String, value: SecretValue, now: SystemTime) -> ProviderResult<bool> {
        if let Some(entry) = self.keys.get(&key) {
            if let Some(existing) = entry.version(&id) {
                if existing.has(StageName::Pending) && existing.value == value {
                    return Ok(false);
                }
                let what = if existing.has(StageName::Pending) {
                    "is already pending with a different value".to_owned()
                } else {
                    format!("already exists ({})", existing.describe_stages())
                };
                return Err(ProviderError::conflict(format!(
                    "key {key:?}: version {id:?} {what}; use a new version id"
                )));
            }
            if let Some(pending) = entry.with_stage(StageName::Pending) {
                return Err(ProviderError::conflict(format!(
                    "key {key:?} already has a pending version {:?}; another rotation is in progress",
                    pending.id
                )));
            }
        }
        let entry = self.keys.entry(key).or_default();
        entry.text = None;
        entry.versions.push(VersionEntry {
            id,
            stages: vec![StageName::Pending],
            created: now,
            revoked: None,
            value,
        });
        entry.prune();
        Ok(true)
    }

    fn promote(&mut self, key: &str, id: &str, previous_revoked: bool, now: SystemTime) -> ProviderResult<bool> {
        let Some(entry) = self.keys.get_mut(key) else {
            return Err(ProviderError::conflict(format!(
                "key {key:?} does not exist; cannot promote version {id:?}"
            )));
        };
        let Some(index) = entry.versions.iter().position(|v| v.id == id) else {
            return Err(ProviderError::conflict(format!(
                "key {key:?} has no version {id:?} to promote"
            )));
        };
        let target = &entry.versions[index];
        if target.has(StageName::Current) {
            return Ok(false);
        }
        if !target.has(StageName::Pending) {
            return Err(ProviderError::conflict(format!(
                "key {key:?}: version {id:?} is neither pending nor current ({})",
                target.describe_stages()
            )));
        }
        for (i, v) in entry.versions.iter_mut().enumerate() {
            if i == index {
                continue;
            }
            if v.has(StageName::Previous) {
                v.remove(StageName::Previous);
            } else if v.has(StageName::Current) {
                v.remove(StageName::Current);
                v.add(StageName::Previous);
                if previous_revoked && v.revoked.is_none() {
                    v.revoked = Some(now);
                }
            }
        }
        let target = &mut entry.versions[index];
        target.remove(StageName::Pending);
        target.add(StageName::Current);
        entry.prune();
        Ok(true)
    }

    fn mark_revoked(&mut self, key: &str, id: &str, now: SystemTime) -> ProviderResult<bool> {
        let version = self
            .keys
            .get_mut(key)
            .and_then(|entry| entry.versions.iter_mut().find(|v| v.id == id));
        let Some(version) = version else {
            return Err(ProviderError::not_found(format!("key {key:?} has no version {id:?}")));
        };
        if version.revoked.is_some() {
            return Ok(false);
        }
        version.revoked = Some(now);
        Ok(true)
    }

    /// Takes the pending stage away from version `id`, which stays as history. Nothing to
    /// do when no version is pending (or `id` is no longer); a conflict when another
    /// version is pending.
    fn discard_pending(&mut self, key: &str, id: &str) -> ProviderResult<bool> {
        let Some(entry) = self.keys.get_mut(key) else {
            return Err(ProviderError::not_found(format!(
                "key {key:?} does not exist; there is no pending version {id:?} to discard"
            )));
        };
        let Some(index) = entry.versions.iter().position(|v| v.has(StageName::Pending)) else {
            return Ok(false);
        };
        let pending = &mut entry.versions[index];
        if pending.id != id {
            return Err(ProviderError::conflict(format!(
                "key {key:?}: cannot discard version {id:?}: the pending version is {:?}",
                pending.id
            )));
        }
        pending.remove(StageName::Pending);
        entry.prune();
        Ok(true)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rekey_api::ErrorKind;

    fn value(tag: &str) -> SecretValue {
        let mut doc = SecretDoc::new();
        doc.set("username", tag);
        doc.set("password", format!("pw-{tag}"));
        SecretValue::from_doc(&doc)
    }

    fn stages(file: &StoreFile, key: &str) -> Vec<(String, Vec<&'static str>)> {
        file.keys[key]
            .versions
            .iter()
            .map(|v| (v.id.clone(), v.stages.iter().map(|s| s.as_str()).collect()))
            .collect()
    }

    fn put(file: &mut StoreFile, id: &str) -> ProviderResult<bool> {
        file.apply(
            Op::PutCurrent {
                key: "k".into(),
                id: id.into(),
                value: value(id),
            },
            SystemTime::now(),
        )
    }

    fn stage(file: &mut StoreFile, id: &str) -> ProviderResult<bool> {
        file.apply(
            Op::StagePending {
                key: "k".into(),
                id: id.into(),
                value: value(id),
            },
            SystemTime::now(),
        )
    }

    fn promote(file: &mut StoreFile, id: &str) -> ProviderResult<bool> {
        file.apply(
            Op::Promote {
                key: "k".into(),
                id: id.into(),
                previous_revoked: false,
            },
            SystemTime::now(),
        )
    }

    #[test]
    fn history_is_bounded() {
        let mut file = StoreFile::default();
        put(&mut file, "v0").unwrap();
        for i in 1..20 {
            stage(&mut file, &format!("v{i}")).unwrap();
            promote(&mut file, &format!("v{i}")).unwrap();
        }
        let versions = stages(&file, "k");
        assert_eq!(versions.len(), HISTORY_LIMIT + 2, "current + previous + history");
        assert_eq!(versions.last().unwrap(), &("v19".to_owned(), vec!["current"]));
        assert_eq!(versions[versions.len() - 2], ("v18".to_owned(), vec!["previous"]));
        assert_eq!(versions[0].0, "v13", "the oldest history was dropped");
    }

    #[test]
    fn refused_writes_change_nothing() {
        let mut file = StoreFile::default();
        put(&mut file, "v1").unwrap();
        stage(&mut file, "v2").unwrap();
        let before = serde_json::to_string(&file).unwrap();
        assert_eq!(stage(&mut file, "v3").unwrap_err().kind(), ErrorKind::Conflict);
        assert_eq!(put(&mut file, "v4").unwrap_err().kind(), ErrorKind::Conflict);
        assert_eq!(promote(&mut file, "v9").unwrap_err().kind(), ErrorKind::Conflict);
        assert!(!promote(&mut file, "v1").unwrap(), "v1 is current already");
        // Same id, different value: refused rather than silently kept.
        let err = file
            .apply(
                Op::StagePending {
                    key: "k".into(),
                    id: "v2".into(),
                    value: value("other"),
                },
                SystemTime::now(),
            )
            .unwrap_err();
        assert_eq!(err.kind(), ErrorKind::Conflict);
        assert!(!err.to_string().contains("pw-"));
        assert_eq!(serde_json::to_string(&file).unwrap(), before);
    }

    fn discard(file: &mut StoreFile, key: &str, id: &str) -> ProviderResult<bool> {
        file.apply(
            Op::DiscardPending {
                key: key.into(),
                id: id.into(),
            },
            SystemTime::now(),
        )
    }

    #[test]
    fn discard_pending_keeps_the_version_without_stage() {
        let mut file = StoreFile::default();
        assert_eq!(discard(&mut file, "k", "v1").unwrap_err().kind(), ErrorKind::NotFound);
        put(&mut file, "v1").unwrap();
        assert!(!discard(&mut file, "k", "v1").unwrap(), "nothing pending: no change");
        stage(&mut file, "v2").unwrap();
        let before = serde_json::to_string(&file).unwrap();
        for other in ["v1", "v9"] {
            let err = discard(&mut file, "k", other).unwrap_err();
            assert_eq!(err.kind(), ErrorKind::Conflict);
            assert!(!err.to_string().contains("pw-"), "{err}");
        }
        assert_eq!(serde_json::to_string(&file).unwrap(), before, "refusals change nothing");
        assert!(discard(&mut file, "k", "v2").unwrap());
        assert!(!discard(&mut file, "k", "v2").unwrap(), "idempotent");
        assert_eq!(
            stages(&file, "k"),
            vec![("v1".to_owned(), vec!["current"]), ("v2".to_owned(), vec![])]
        );
        // The id stays taken: a discarded version is not staged again.
        assert_eq!(stage(&mut file, "v2").unwrap_err().kind(), ErrorKind::Conflict);
        stage(&mut file, "v3").unwrap();
        promote(&mut file, "v3").unwrap();
        assert_eq!(
            stages(&file, "k"),
            vec![
                ("v1".to_owned(), vec!["previous"]),
                ("v2".to_owned(), vec![]),
                ("v3".to_owned(), vec!["current"])
            ]
        );
    }

    #[test]
    fn mark_revoked_missing_version_is_not_found() {
        let mut file = StoreFile::default();
        let err = file
            .apply(
                Op::MarkRevoked {
                    key: "k".into(),
                    id: "v1".into(),
                },
                SystemTime::now(),
            )
            .unwrap_err();
        assert_eq!(err.kind(), ErrorKind::NotFound);
    }

    #[test]
    fn parse_errors_give_position_not_content() {
        let path = Path::new("/x/secrets.json");
        let raw = b"{\"format\":1,\"keys\":{\"k\":{\"versions\":[{\"id\":\"v1\",\"stages\":[\"current\"],\n\"created\":\"2026-11-21T18:00:00Z\",\"revoked\":null,\"value\":\"hunter2-secret\"}]}}}";
        let err = StoreFile::parse(path, raw).unwrap_err();
        let text = err.to_string();
        assert_eq!(err.kind(), ErrorKind::InvalidInput);
        assert!(text.contains("/x/secrets.json") && text.contains("line 2"), "{text}");
        assert!(!text.contains("hunter2"), "{text}");

        let err = StoreFile::parse(path, b"{\"format\":1,\n\"keys\": {\"k\": hunter2}}").unwrap_err();
        assert!(err.to_string().contains("line 2"), "{err}");
        assert!(!err.to_string().contains("hunter2"), "{err}");

        let err = StoreFile::parse(path, b"{\"format\":2,\"keys\":{},\"new\":true}").unwrap_err();
        assert!(err.to_string().contains("format 2"), "{err}");
    }

    #[test]
    fn validation_rejects_two_currents() {
        let raw = br#"{"format":1,"keys":{"k":{"versions":[
            {"id":"a","stages":["current"],"created":"2026-11-21T18:00:00Z","revoked":null,"value":{}},
            {"id":"b","stages":["current"],"created":"2026-11-21T18:00:00Z","revoked":null,"value":{}}]}}}"#;
        let err = StoreFile::parse(Path::new("s.json"), raw).unwrap_err();
        assert!(err.to_string().contains("stage current"), "{err}");
    }

    #[test]
    fn round_trip_and_empty_file() {
        assert!(StoreFile::parse(Path::new("s.json"), b"").unwrap().keys.is_empty());
        let mut file = StoreFile::default();
        put(&mut file, "v1").unwrap();
        let text = serde_json::to_vec_pretty(&file).unwrap();
        let back = StoreFile::parse(Path::new("s.json"), &text).unwrap();
        let state = back.key_state("k").unwrap().unwrap();
        assert_eq!(state.current().unwrap().id, "v1");
        assert_eq!(state.current().unwrap().doc.get_str("password"), Some("pw-v1"));
        assert!(back.key_state("other").unwrap().is_none());
    }

    #[test]
    fn write_pretty_is_serde_json_pretty_and_follows_changes() {
        let check = |file: &mut StoreFile| {
            let mut ours = Vec::new();
            file.write_pretty(&mut ours).unwrap();
            assert_eq!(
                String::from_utf8(ours).unwrap(),
                serde_json::to_string_pretty(&*file).unwrap()
            );
        };
        let mut file = StoreFile::default();
        check(&mut file);
        put(&mut file, "v1").unwrap();
        check(&mut file);
        for key in ["a\"quoted\\key\n", "z/last", "\u{e9}t\u{e9}"] {
            let mut doc = SecretDoc::new();
            doc.set("password", "line\nbreak \"and\" \t tab");
            doc.set("port", 5432);
            file.apply(
                Op::PutCurrent {
                    key: key.into(),
                    id: "v1".into(),
                    value: SecretValue::from_doc(&doc),
                },
                SystemTime::now(),
            )
            .unwrap();
            check(&mut file);
        }
        // Every kind of change to a key whose text is cached shows in the output.
        stage(&mut file, "v2").unwrap();
        check(&mut file);
        promote(&mut file, "v2").unwrap();
        check(&mut file);
        file.apply(
            Op::MarkRevoked {
                key: "k".into(),
                id: "v1".into(),
            },
            SystemTime::now(),
        )
        .unwrap();
        check(&mut file);
        stage(&mut file, "v2b").unwrap();
        check(&mut file);
        file.apply(
            Op::DiscardPending {
                key: "k".into(),
                id: "v2b".into(),
            },
            SystemTime::now(),
        )
        .unwrap();
        check(&mut file);
        put(&mut file, "v3").unwrap();
        check(&mut file);
        assert_eq!(stage(&mut file, "v3").unwrap_err().kind(), ErrorKind::Conflict);
        check(&mut file);
        for i in 4..20 {
            stage(&mut file, &format!("v{i}")).unwrap();
            promote(&mut file, &format!("v{i}")).unwrap();
            check(&mut file);
        }
        let mut text = Vec::new();
        file.write_pretty(&mut text).unwrap();
        let back = StoreFile::parse(Path::new("s.json"), &text).unwrap();
        assert_eq!(
            serde_json::to_string(&back).unwrap(),
            serde_json::to_string(&file).unwrap()
        );
    }

    #[test]
    fn read_key_parses_one_key_and_reports_errors_like_a_full_parse() {
        let path = Path::new("/x/secrets.json");
        let mut file = StoreFile::default();
        put(&mut file, "v1").unwrap();
        stage(&mut file, "v2").unwrap();
        let text = serde_json::to_vec_pretty(&file).unwrap();
        let state = StoreFile::read_key(path, &text, "k").unwrap().unwrap();
        assert_eq!(state.current().unwrap().id, "v1");
        assert_eq!(state.pending().unwrap().doc.get_str("password"), Some("pw-v2"));
        assert!(StoreFile::read_key(path, &text, "other").unwrap().is_none());
        assert!(StoreFile::read_key(path, b" \n", "k").unwrap().is_none());

        // The requested key is validated.
        let raw = br#"{"format":1,"keys":{"k":{"versions":[
            {"id":"a","stages":["current"],"created":"2026-11-21T18:00:00Z","revoked":null,"value":{}},
            {"id":"b","stages":["current"],"created":"2026-11-21T18:00:00Z","revoked":null,"value":{}}]}}}"#;
        let err = StoreFile::read_key(path, raw, "k").unwrap_err();
        assert!(err.to_string().contains("stage current"), "{err}");

        // Errors carry the full parse's message: position in the file, never content.
        let raw = b"{\"format\":1,\"keys\":{\"other\":{\"versions\":[]},\n\"k\":{\"versions\":[{\"id\":\"v1\",\"stages\":[\"current\"],\n\"created\":\"2026-11-21T18:00:00Z\",\"revoked\":null,\"value\":\"hunter2-secret\"}]}}}";
        let err = StoreFile::read_key(path, raw, "k").unwrap_err();
        assert_eq!(err.to_string(), StoreFile::parse(path, raw).unwrap_err().to_string());
        assert!(err.to_string().contains("line 3"), "{err}");
        assert!(!err.to_string().contains("hunter2"), "{err}");
        // Reads check only the requested key's structure (writes check everything).
        assert!(StoreFile::read_key(path, raw, "other").unwrap().is_some());
        let err = StoreFile::read_key(path, b"{\"format\":1,\n\"keys\": {\"k\": hunter2}}", "k").unwrap_err();
        assert!(
            err.to_string().contains("line 2") && !err.to_string().contains("hunter2"),
            "{err}"
        );
        let err = StoreFile::read_key(path, b"{\"format\":2,\"keys\":{},\"new\":true}", "k").unwrap_err();
        assert!(err.to_string().contains("format 2"), "{err}");
        let err = StoreFile::read_key(path, b"{\"keys\":{\"k\":{\"versions\":[]}},\"format\":3}", "k").unwrap_err();
        assert!(err.to_string().contains("format 3"), "{err}");
        let err = StoreFile::read_key(path, b"{\"format\":1,\"keys\":{},\"new\":true}", "k").unwrap_err();
        assert_eq!(err.kind(), ErrorKind::InvalidInput);
        // A key whose name is escaped in the file is found.
        let raw = br#"{"format":1,"keys":{"a\"b\u00e9":{"versions":[]}}}"#;
        assert!(StoreFile::read_key(path, raw, "a\"b\u{e9}").unwrap().is_some());
    }
}
