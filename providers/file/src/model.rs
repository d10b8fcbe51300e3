//! The on-disk model: the snapshot file (format 2, reading format 1 too) and the journal
//! of changed keys beside it, with their parsing, validation and serialization. The
//! operations that change the model are in [`crate::state`].
//!
//! The snapshot, `<path>`:
//!
//! ```json
//! {
//!   "format": 2,
//!   "generation": 7,
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
//! The journal, `<path>.journal`: JSON lines, a header naming the snapshot generation it
//! extends, then one record per changed key holding that key's whole entry:
//!
//! ```text
//! {"journal":2,"generation":7}
//! {"key":"orders/db","versions":[...]}
//! ```
//!
//! A key's last record in a journal whose generation is the snapshot's replaces the
//! snapshot's entry. A journal of another generation is stale (already compacted into
//! the snapshot) and ignored. A last line without its newline, or one that does not
//! parse with no valid record after it, is a torn tail and ignored.
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
use std::collections::{BTreeMap, HashMap};
use std::io::{self, Write};
use std::path::Path;
use std::time::{SystemTime, UNIX_EPOCH};
use zeroize::{Zeroize, Zeroizing};

/// The format number this crate writes.
pub(crate) const FORMAT: u32 = 2;

/// The older format it still reads: one file, no journal, no generation.
pub(crate) const FORMAT_1: u32 = 1;

/// How many stage-less versions (history) each key keeps; older ones are dropped.
pub const HISTORY_LIMIT: usize = 5;

/// The whole store: the snapshot file with the journal applied. (`Clone` only for a
/// writer that finds its model still shared, which does not happen: see `writer`.)
#[derive(Serialize, Deserialize, Clone)]
#[serde(deny_unknown_fields)]
pub(crate) struct StoreFile {
    format: u32,
    /// Which journal extends this snapshot (format 2; 0 for format 1 and an empty file).
    #[serde(default)]
    pub(crate) generation: u64,
    #[serde(default)]
    pub(crate) keys: BTreeMap<String, KeyEntry>,
}

impl Default for StoreFile {
    fn default() -> Self {
        StoreFile {
            format: FORMAT,
            generation: 0,
            keys: BTreeMap::new(),
        }
    }
}

/// Key names only: the model holds secrets.
impl std::fmt::Debug for StoreFile {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StoreFile")
            .field("format", &self.format)
            .field("generation", &self.generation)
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
    #[serde(default)]
    generation: u64,
    #[serde(borrow, default)]
    keys: BTreeMap<String, &'a RawValue>,
}

/// Every version of one key.
#[derive(Serialize, Deserialize, Default, Clone)]
#[serde(deny_unknown_fields)]
pub(crate) struct KeyEntry {
    pub(crate) versions: Vec<VersionEntry>,
}

/// The journal's first line.
#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct JournalHeader {
    journal: u32,
    generation: u64,
}

/// One journal record as written: a key's whole entry after a commit.
#[derive(Serialize)]
struct Record<'a> {
    key: &'a str,
    versions: &'a [VersionEntry],
}

/// One journal record as read, its versions left raw (borrowed from the zeroized read
/// buffer) until needed.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRecord<'a> {
    key: String,
    #[serde(borrow)]
    versions: &'a RawValue,
}

/// A journal file, split into its header and records.
pub(crate) struct Journal<'a> {
    /// The snapshot generation it extends; `None` when even the header is torn.
    pub(crate) generation: Option<u64>,
    /// Each key's last record, raw.
    records: HashMap<String, &'a RawValue>,
    /// Bytes up to the end of the last valid line (header or record); anything after is
    /// a torn tail that the next append cuts off.
    pub(crate) valid_len: u64,
}

impl<'a> Journal<'a> {
    /// Splits a journal file's bytes into lines and parses them. A last line without a
    /// newline, or lines that do not parse with no valid record after them, are a torn
    /// tail (a writer that crashed before its commit was durable): ignored. A line that
    /// does not parse followed by a valid record is corruption.
    pub(crate) fn parse(path: &Path, raw: &'a [u8]) -> ProviderResult<Journal<'a>> {
        let mut journal = Journal {
            generation: None,
            records: HashMap::new(),
            valid_len: 0,
        };
        let mut offset = 0usize;
        let mut bad_line: Option<usize> = None;
        for (number, line) in raw.split_inclusive(|&b| b == b'\n').enumerate() {
            let start = offset;
            offset += line.len();
            let Some(body) = line.strip_suffix(b"\n") else {
                break; // unterminated: torn
            };
            if number == 0 {
                match serde_json::from_slice::<JournalHeader>(body) {
                    Ok(h) if h.journal == FORMAT => journal.generation = Some(h.generation),
                    Ok(h) => {
                        return Err(ProviderError::invalid_input(format!(
                            "journal {} has format {}; this rekey reads format {FORMAT} only",
                            path.display(),
                            h.journal
                        )))
                    }
                    Err(_) => return Ok(journal), // a torn header: nothing was committed
                }
                journal.valid_len = offset as u64;
                continue;
            }
            match serde_json::from_slice::<RawRecord>(body) {
                Ok(record) if bad_line.is_none() => {
                    journal.records.insert(record.key, record.versions);
                    journal.valid_len = offset as u64;
                }
                Ok(_) => {
                    return Err(ProviderError::invalid_input(format!(
                        "journal {} is damaged at line {}; restore the store from a backup",
                        path.display(),
                        bad_line.unwrap_or(0)
                    )))
                }
                Err(_) => {
                    bad_line.get_or_insert(number + 1);
                    let _ = start;
                }
            }
        }
        Ok(journal)
    }

    /// Whether this journal extends `generation`'s snapshot (else it is stale).
    pub(crate) fn extends(&self, generation: u64) -> bool {
        self.generation == Some(generation)
    }

    /// Parses and validates `key`'s last record, if any.
    fn entry(&self, path: &Path, key: &str) -> ProviderResult<Option<KeyEntry>> {
        let Some(raw) = self.records.get(key) else {
            return Ok(None);
        };
        let versions: Vec<VersionEntry> = serde_json::from_str(raw.get()).map_err(|e| {
            ProviderError::invalid_input(format!(
                "journal {}: key {key:?}: record does not match the rekey store format (column {})",
                path.display(),
                e.column()
            ))
        })?;
        let entry = KeyEntry { versions };
        entry.validate(path, key)?;
        Ok(Some(entry))
    }

    /// The journal's header line for a snapshot of `generation`.
    pub(crate) fn header(generation: u64) -> Vec<u8> {
        let mut line = serde_json::to_vec(&JournalHeader {
            journal: FORMAT,
            generation,
        })
        .unwrap_or_default();
        line.push(b'\n');
        line
    }
}

/// One version as stored.
#[derive(Serialize, Deserialize, Clone)]
#[serde(deny_unknown_fields)]
pub(crate) struct VersionEntry {
    pub(crate) id: String,
    pub(crate) stages: Vec<StageName>,
    #[serde(with = "rfc3339")]
    pub(crate) created: SystemTime,
    #[serde(with = "rfc3339_opt", default)]
    pub(crate) revoked: Option<SystemTime>,
    pub(crate) value: SecretValue,
}

#[derive(Serialize, Deserialize, Clone, Copy, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub(crate) enum StageName {
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
    pub(crate) fn as_str(self) -> &'static str {
        Stage::from(self).as_str()
    }
}

impl VersionEntry {
    pub(crate) fn has(&self, stage: StageName) -> bool {
        self.stages.contains(&stage)
    }

    pub(crate) fn remove(&mut self, stage: StageName) {
        self.stages.retain(|s| *s != stage);
    }

    pub(crate) fn add(&mut self, stage: StageName) {
        if !self.has(stage) {
            self.stages.push(stage);
        }
    }

    pub(crate) fn describe_stages(&self) -> String {
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
    pub(crate) fn state(&self) -> ProviderResult<KeyState> {
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

    pub(crate) fn version(&self, id: &str) -> Option<&VersionEntry> {
        self.versions.iter().find(|v| v.id == id)
    }

    pub(crate) fn with_stage(&self, stage: StageName) -> Option<&VersionEntry> {
        self.versions.iter().find(|v| v.has(stage))
    }

    /// Drops the oldest stage-less versions beyond [`HISTORY_LIMIT`]; their values are
    /// zeroized as they drop.
    pub(crate) fn prune(&mut self) {
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

/// A secret JSON object held by the model as its compact JSON text (one allocation of
/// about the text's size, where a parsed value takes several times that), zeroized on
/// drop, never printed. Parsed only when a reader asks for the version. A clone is
/// zeroized on drop too.
#[derive(Clone)]
pub(crate) struct SecretValue(Zeroizing<String>);

impl SecretValue {
    /// A copy of the document for storing.
    pub(crate) fn from_doc(doc: &SecretDoc) -> SecretValue {
        SecretValue(doc.to_json())
    }

    /// The compact text of `value` (an object), in an allocation of exactly its size
    /// (serialized through a buffer that zeroizes what it outgrows); `value` is zeroized.
    fn from_value(mut value: Value) -> SecretValue {
        let mut buf = SecureBuf::with_capacity(256);
        let written = serde_json::to_writer(&mut buf, &value);
        zeroize_value(&mut value);
        let text = written
            .ok()
            .and_then(|()| std::str::from_utf8(buf.as_slice()).ok())
            .map_or_else(String::new, str::to_owned);
        SecretValue(Zeroizing::new(text))
    }

    fn to_doc(&self) -> ProviderResult<SecretDoc> {
        SecretDoc::from_json(&self.0)
    }

    fn to_value(&self) -> Option<Value> {
        serde_json::from_str(&self.0).ok()
    }
}

/// Equal as JSON values (not as texts, whose key order may differ).
impl PartialEq for SecretValue {
    fn eq(&self, other: &Self) -> bool {
        if self.0 == other.0 {
            return true;
        }
        match (self.to_value(), other.to_value()) {
            (Some(mut a), Some(mut b)) => {
                let same = a == b;
                zeroize_value(&mut a);
                zeroize_value(&mut b);
                same
            }
            _ => false,
        }
    }
}

impl Serialize for SecretValue {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let raw: &RawValue =
            serde_json::from_str(&self.0).map_err(|_| ser::Error::custom("stored value is not JSON"))?;
        raw.serialize(serializer)
    }
}

impl<'de> Deserialize<'de> for SecretValue {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let mut value = Value::deserialize(deserializer)?;
        if value.is_object() {
            Ok(SecretValue::from_value(value))
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
    /// Parses and validates the raw snapshot contents (format 2 or 1). An empty file is
    /// an empty store.
    pub(crate) fn parse(path: &Path, raw: &[u8]) -> ProviderResult<StoreFile> {
        if raw.iter().all(u8::is_ascii_whitespace) {
            return Ok(StoreFile::default());
        }
        let header: Header = serde_json::from_slice(raw).map_err(|e| describe_json_error(path, &e))?;
        if header.format != FORMAT && header.format != FORMAT_1 {
            return Err(ProviderError::invalid_input(format!(
                "store file {} has format {}; this rekey reads formats {FORMAT_1} and {FORMAT} only",
                path.display(),
                header.format
            )));
        }
        let file: StoreFile = serde_json::from_slice(raw).map_err(|e| describe_json_error(path, &e))?;
        if file.format == FORMAT_1 && file.generation != 0 {
            return Err(ProviderError::invalid_input(format!(
                "store file {} has format {FORMAT_1} with a generation; fix or restore it from a backup",
                path.display()
            )));
        }
        file.validate(path)?;
        Ok(file)
    }

    /// Parses the snapshot and applies the journal when it extends this snapshot.
    /// Returns the store and whether the journal was applied (`false`: none, or stale).
    pub(crate) fn load(path: &Path, raw: &[u8], journal: Option<&Journal>) -> ProviderResult<(StoreFile, bool)> {
        let mut file = StoreFile::parse(path, raw)?;
        let Some(journal) = journal.filter(|j| file.format == FORMAT && j.extends(file.generation)) else {
            return Ok((file, false));
        };
        for key in journal.records.keys() {
            if let Some(entry) = journal.entry(path, key)? {
                file.keys.insert(key.clone(), entry);
            }
        }
        Ok((file, true))
    }

    /// Whether this is a format 1 file (or a new, empty store), which the next write
    /// rewrites whole as format 2 before any journal is used.
    pub(crate) fn needs_upgrade(&self) -> bool {
        self.format != FORMAT || self.generation == 0
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

    /// Reads one key from the raw snapshot and journal, parsing only that key's entry:
    /// the rest of the snapshot is checked for JSON syntax and its top-level shape only
    /// (writes, which load everything, still parse and validate all of it). Any error in
    /// the snapshot is reported by the full [`StoreFile::parse`], so messages (format
    /// number, path, line and column in the file) are exactly those of a full parse.
    pub(crate) fn read_key(
        path: &Path,
        raw: &[u8],
        journal: Option<&Journal>,
        key: &str,
    ) -> ProviderResult<Option<KeyState>> {
        if raw.iter().all(u8::is_ascii_whitespace) {
            return Ok(None);
        }
        let full = || -> ProviderResult<Option<KeyState>> {
            let (file, _) = StoreFile::load(path, raw, journal)?;
            file.keys.get(key).map(KeyEntry::state).transpose()
        };
        // serde_json's error is dropped unseen: its message could quote the input.
        let Some(top) = serde_json::from_slice::<RawStoreFile>(raw)
            .ok()
            .filter(|top| top.format == FORMAT || (top.format == FORMAT_1 && top.generation == 0))
        else {
            return full();
        };
        if let Some(journal) = journal.filter(|j| top.format == FORMAT && j.extends(top.generation)) {
            if let Some(entry) = journal.entry(path, key)? {
                return entry.state().map(Some);
            }
        }
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

    /// Writes the whole store as a format 2 snapshot of `generation` (pretty JSON).
    #[cfg(test)]
    pub(crate) fn write_snapshot(&mut self, generation: u64, out: &mut impl Write) -> io::Result<()> {
        self.next_snapshot(generation);
        self.write_snapshot_as_is(out)
    }

    /// Makes this the model of a format 2 snapshot of `generation`, which
    /// [`StoreFile::write_snapshot_as_is`] then writes.
    pub(crate) fn next_snapshot(&mut self, generation: u64) {
        self.format = FORMAT;
        self.generation = generation;
    }

    /// Writes the whole store as a snapshot of its format and generation (pretty JSON).
    pub(crate) fn write_snapshot_as_is(&self, out: &mut impl Write) -> io::Result<()> {
        serde_json::to_writer_pretty(&mut *out, self)?;
        out.write_all(b"\n")
    }

    /// Appends `key`'s journal record (one line) to `out`; nothing when the key is absent.
    pub(crate) fn write_record(&self, key: &str, out: &mut impl Write) -> io::Result<()> {
        let Some(entry) = self.keys.get(key) else {
            return Ok(());
        };
        serde_json::to_writer(
            &mut *out,
            &Record {
                key,
                versions: &entry.versions,
            },
        )?;
        out.write_all(b"\n")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rekey_api::ErrorKind;

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

        let err = StoreFile::parse(path, b"{\"format\":3,\"keys\":{},\"new\":true}").unwrap_err();
        assert!(err.to_string().contains("format 3"), "{err}");
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
        put(&mut file, "k", "v1");
        let text = serde_json::to_vec_pretty(&file).unwrap();
        let back = StoreFile::parse(Path::new("s.json"), &text).unwrap();
        let state = back.key_state("k").unwrap().unwrap();
        assert_eq!(state.current().unwrap().id, "v1");
        assert_eq!(state.current().unwrap().doc.get_str("password"), Some("pw-v1"));
        assert!(back.key_state("other").unwrap().is_none());
    }

    fn value(tag: &str) -> SecretValue {
        let mut doc = SecretDoc::new();
        doc.set("username", tag);
        doc.set("password", format!("pw-{tag}"));
        SecretValue::from_doc(&doc)
    }

    fn put(file: &mut StoreFile, key: &str, id: &str) {
        file.apply(
            crate::state::Op::PutCurrent {
                key: key.into(),
                id: id.into(),
                value: value(id),
            },
            SystemTime::now(),
        )
        .unwrap();
    }

    fn snapshot(file: &mut StoreFile, generation: u64) -> Vec<u8> {
        let mut out = Vec::new();
        file.write_snapshot(generation, &mut out).unwrap();
        out
    }

    #[test]
    fn a_journal_extends_its_own_generation_only_and_ignores_a_torn_tail() {
        let path = Path::new("/x/secrets.json");
        let mut file = StoreFile::default();
        put(&mut file, "a", "v1");
        put(&mut file, "b", "v1");
        let snap = snapshot(&mut file, 3);
        put(&mut file, "a", "v2");
        let mut journal = Journal::header(3);
        file.write_record("a", &mut journal).unwrap();
        put(&mut file, "b", "v2");
        file.write_record("b", &mut journal).unwrap();
        let whole = journal.len();
        let current = |journal: &[u8], key: &str| {
            let j = Journal::parse(path, journal).unwrap();
            let (loaded, _) = StoreFile::load(path, &snap, Some(&j)).unwrap();
            let by_load = loaded.key_state(key).unwrap().unwrap().current().unwrap().id.clone();
            let by_read = StoreFile::read_key(path, &snap, Some(&j), key).unwrap().unwrap();
            assert_eq!(by_read.current().unwrap().id, by_load, "read_key agrees with load");
            by_load
        };
        assert_eq!(
            (current(&journal, "a"), current(&journal, "b")),
            ("v2".into(), "v2".into())
        );
        // Every cut inside the last record loses that record only.
        let last_start = journal[..whole - 1].iter().rposition(|&b| b == b'\n').unwrap() + 1;
        for cut in last_start..whole {
            assert_eq!(current(&journal[..cut], "a"), "v2", "cut at {cut}");
            assert_eq!(current(&journal[..cut], "b"), "v1", "cut at {cut}");
            assert_eq!(
                Journal::parse(path, &journal[..cut]).unwrap().valid_len,
                last_start as u64
            );
        }
        // Garbage after the last record (zeros of a crashed append) is a torn tail too.
        let mut zeros = journal.clone();
        zeros.extend_from_slice(&[0; 40]);
        zeros.push(b'\n');
        assert_eq!(current(&zeros, "b"), "v2");
        // A damaged line followed by a valid record is corruption, not a torn tail.
        let mut damaged = Journal::header(3);
        damaged.extend_from_slice(b"{\"key\":\"a\",\"versions\":[hunter2\n");
        file.write_record("b", &mut damaged).unwrap();
        let err = Journal::parse(path, &damaged).err().unwrap();
        assert_eq!(err.kind(), ErrorKind::InvalidInput);
        assert!(
            err.to_string().contains("line 2") && !err.to_string().contains("hunter2"),
            "{err}"
        );
        // A journal of another generation is stale: ignored.
        let mut stale = Journal::header(2);
        stale.extend_from_slice(&journal[Journal::header(3).len()..]);
        assert_eq!(current(&stale, "a"), "v1");
        // A torn header: nothing committed.
        assert_eq!(current(&journal[..5], "a"), "v1");
    }

    #[test]
    fn format_1_files_are_read() {
        let raw = br#"{"format":1,"keys":{"k":{"versions":[
            {"id":"a","stages":["current"],"created":"2026-11-21T18:00:00Z","revoked":null,"value":{"password":"x"}}]}}}"#;
        let path = Path::new("s.json");
        let file = StoreFile::parse(path, raw).unwrap();
        assert!(file.needs_upgrade());
        assert_eq!(file.key_state("k").unwrap().unwrap().current().unwrap().id, "a");
        let state = StoreFile::read_key(path, raw, None, "k").unwrap().unwrap();
        assert_eq!(state.current().unwrap().doc.get_str("password"), Some("x"));
        // A format 1 file never takes a journal, even one of its generation (0).
        let mut journal = Journal::header(0);
        journal.extend_from_slice(br#"{"key":"k","versions":[]}"#);
        journal.push(b'\n');
        let j = Journal::parse(path, &journal).unwrap();
        assert!(!StoreFile::load(path, raw, Some(&j)).unwrap().1);
    }

    #[test]
    fn read_key_parses_one_key_and_reports_errors_like_a_full_parse() {
        let path = Path::new("/x/secrets.json");
        let mut file = StoreFile::default();
        put(&mut file, "k", "v1");
        file.apply(
            crate::state::Op::StagePending {
                key: "k".into(),
                id: "v2".into(),
                value: value("v2"),
            },
            SystemTime::now(),
        )
        .unwrap();
        let text = serde_json::to_vec_pretty(&file).unwrap();
        let state = StoreFile::read_key(path, &text, None, "k").unwrap().unwrap();
        assert_eq!(state.current().unwrap().id, "v1");
        assert_eq!(state.pending().unwrap().doc.get_str("password"), Some("pw-v2"));
        assert!(StoreFile::read_key(path, &text, None, "other").unwrap().is_none());
        assert!(StoreFile::read_key(path, b" \n", None, "k").unwrap().is_none());

        // The requested key is validated.
        let raw = br#"{"format":1,"keys":{"k":{"versions":[
            {"id":"a","stages":["current"],"created":"2026-11-21T18:00:00Z","revoked":null,"value":{}},
            {"id":"b","stages":["current"],"created":"2026-11-21T18:00:00Z","revoked":null,"value":{}}]}}}"#;
        let err = StoreFile::read_key(path, raw, None, "k").unwrap_err();
        assert!(err.to_string().contains("stage current"), "{err}");

        // Errors carry the full parse's message: position in the file, never content.
        let raw = b"{\"format\":1,\"keys\":{\"other\":{\"versions\":[]},\n\"k\":{\"versions\":[{\"id\":\"v1\",\"stages\":[\"current\"],\n\"created\":\"2026-11-21T18:00:00Z\",\"revoked\":null,\"value\":\"hunter2-secret\"}]}}}";
        let err = StoreFile::read_key(path, raw, None, "k").unwrap_err();
        assert_eq!(err.to_string(), StoreFile::parse(path, raw).unwrap_err().to_string());
        assert!(err.to_string().contains("line 3"), "{err}");
        assert!(!err.to_string().contains("hunter2"), "{err}");
        // Reads check only the requested key's structure (writes check everything).
        assert!(StoreFile::read_key(path, raw, None, "other").unwrap().is_some());
        let err = StoreFile::read_key(path, b"{\"format\":1,\n\"keys\": {\"k\": hunter2}}", None, "k").unwrap_err();
        assert!(
            err.to_string().contains("line 2") && !err.to_string().contains("hunter2"),
            "{err}"
        );
        let err = StoreFile::read_key(path, b"{\"format\":4,\"keys\":{},\"new\":true}", None, "k").unwrap_err();
        assert!(err.to_string().contains("format 4"), "{err}");
        let err =
            StoreFile::read_key(path, b"{\"keys\":{\"k\":{\"versions\":[]}},\"format\":3}", None, "k").unwrap_err();
        assert!(err.to_string().contains("format 3"), "{err}");
        let err = StoreFile::read_key(path, b"{\"format\":1,\"keys\":{},\"new\":true}", None, "k").unwrap_err();
        assert_eq!(err.kind(), ErrorKind::InvalidInput);
        // A key whose name is escaped in the file is found.
        let raw = br#"{"format":1,"keys":{"a\"b\u00e9":{"versions":[]}}}"#;
        assert!(StoreFile::read_key(path, raw, None, "a\"b\u{e9}").unwrap().is_some());
    }
}
