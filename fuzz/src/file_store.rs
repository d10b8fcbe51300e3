//! Target `file_store`: the file store's on-disk format, through its public API.
//!
//! The format module of `rekey-file` is private, so the input becomes the content of a
//! store file (mode 0600, in a RAM-backed directory when `/dev/shm` exists) that
//! [`FileStore::open`] opens; then a few keys are read (the keys the input names, when it
//! is JSON, and two fixed ones) and one write is tried, chosen by the input's hash.
//!
//! Checked on every input, besides "returns, never panics, the writer thread never
//! dies":
//!
//! - a read either fails with `NotFound` or `InvalidInput`, or gives a key state that
//!   keeps the format's rules: version ids unique and non-empty, each stage held by at
//!   most one version, each version holding at most one stage;
//! - a write succeeds or fails with `InvalidInput`, `Conflict` or `NotFound`;
//! - no error message shows a stored value: values holding [`MARKER`] must not appear
//!   (unless a key name or version id holds it too, which messages may name);
//! - after a write succeeded ("writes parse and validate all of it"), a fresh handle
//!   reads every key of the rewritten file without error, and every other key reads
//!   back exactly as it did before the write.

use crate::harness::Rng;
use rekey_api::{ErrorKind, KeyState, ProviderError, SecretDoc, Stage, Store};
use rekey_file::FileStore;
use serde_json::{json, Value};
use std::cell::RefCell;
use std::collections::BTreeMap;
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::PathBuf;
use std::time::UNIX_EPOCH;

/// Seeds and generated inputs spell secret values with this, so that a value showing up
/// in a message is recognised.
pub const MARKER: &str = "SECRET";

/// Keys read on every input besides those the input names.
const FIXED_KEYS: &[&str] = &["k", "orders/db"];

struct Scratch {
    _dir: tempfile::TempDir,
    path: PathBuf,
    runtime: tokio::runtime::Runtime,
}

thread_local! {
    static SCRATCH: RefCell<Option<Scratch>> = const { RefCell::new(None) };
}

fn scratch<T>(f: impl FnOnce(&Scratch) -> T) -> T {
    SCRATCH.with(|cell| {
        let mut slot = cell.borrow_mut();
        let scratch = slot.get_or_insert_with(|| {
            let shm = std::path::Path::new("/dev/shm");
            let dir = if shm.is_dir() {
                tempfile::Builder::new().prefix("rekey-fuzz-").tempdir_in(shm)
            } else {
                tempfile::Builder::new().prefix("rekey-fuzz-").tempdir()
            }
            .expect("temp dir");
            let path = dir.path().join("secrets.json");
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("tokio runtime");
            Scratch {
                _dir: dir,
                path,
                runtime,
            }
        });
        f(scratch)
    })
}

/// What the input says about itself when it is JSON: key names and version ids.
#[derive(Default)]
struct Shape {
    keys: Vec<String>,
    /// A key name or version id holds [`MARKER`]: messages may legitimately show it.
    names_hold_marker: bool,
}

fn shape(data: &[u8]) -> Shape {
    let mut shape = Shape::default();
    let Ok(Value::Object(top)) = serde_json::from_slice::<Value>(data) else {
        return shape;
    };
    let Some(Value::Object(keys)) = top.get("keys") else {
        return shape;
    };
    for (name, entry) in keys {
        shape.names_hold_marker |= name.contains(MARKER);
        if let Some(Value::Array(versions)) = entry.get("versions") {
            for v in versions {
                if let Some(Value::String(id)) = v.get("id") {
                    shape.names_hold_marker |= id.contains(MARKER);
                }
            }
        }
        if shape.keys.len() < 4 {
            shape.keys.push(name.clone());
        }
    }
    shape
}

fn check_message(error: &ProviderError, shape: &Shape, what: &str) {
    if !shape.names_hold_marker {
        assert!(
            !error.message().contains(MARKER),
            "{what}: an error shows a stored value: {error}"
        );
    }
}

/// The format's rules, as a reader must find them.
fn check_state(key: &str, state: &KeyState) {
    let mut ids = std::collections::HashSet::new();
    for v in &state.versions {
        assert!(!v.id.is_empty(), "key {key:?}: a version with an empty id was read");
        assert!(
            ids.insert(v.id.as_str()),
            "key {key:?}: version id {:?} read twice",
            v.id
        );
        assert!(
            v.stages.len() <= 1,
            "key {key:?}: version {:?} holds {:?}",
            v.id,
            v.stages
        );
    }
    for stage in [Stage::Current, Stage::Pending, Stage::Previous] {
        let holders = state.versions.iter().filter(|v| v.has(stage)).count();
        assert!(holders <= 1, "key {key:?}: {holders} versions hold {stage}");
    }
}

/// One version: id, stages, created, revoked, the document's fingerprint.
type VersionSummary = (String, Vec<Stage>, u128, Option<u128>, String);

/// A comparable summary of a key state (secrets compared, never printed).
#[derive(PartialEq, Debug)]
struct Summary {
    versions: Vec<VersionSummary>,
}

/// Times are compared to the second: a write rewrites every key's timestamps with
/// whole seconds, so a fraction written by another tool is lost (a finding reported to
/// the file store's owners; `REKEY_FUZZ_STRICT=1` compares to the nanosecond).
fn summary(state: &KeyState) -> Summary {
    let strict = crate::harness::strict();
    let nanos = |t: std::time::SystemTime| {
        t.duration_since(UNIX_EPOCH)
            .map_or(0, |d| if strict { d.as_nanos() } else { u128::from(d.as_secs()) })
    };
    Summary {
        versions: state
            .versions
            .iter()
            .map(|v| {
                (
                    v.id.clone(),
                    v.stages.clone(),
                    nanos(v.created),
                    v.revoked.map(nanos),
                    v.doc.fingerprint(),
                )
            })
            .collect(),
    }
}

fn write_file(path: &std::path::Path, data: &[u8]) {
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(path)
        .expect("store file");
    file.write_all(data).expect("write store file");
}

/// Target `file_store`: any bytes as the content of a store file.
pub fn file_store(data: &[u8]) {
    scratch(|s| run(s, data));
}

fn run(s: &Scratch, data: &[u8]) {
    write_file(&s.path, data);
    let store = match FileStore::open(&s.path) {
        Ok(store) => store,
        Err(e) => panic!("opening an existing 0600 store file failed: {e}"),
    };
    let shape = shape(data);
    let mut keys: Vec<String> = shape.keys.clone();
    keys.extend(FIXED_KEYS.iter().map(|k| (*k).to_owned()));

    // Reads: each key parsed alone.
    let mut before: BTreeMap<String, Summary> = BTreeMap::new();
    let mut first_state: Option<KeyState> = None;
    for (i, key) in keys.iter().enumerate() {
        if key.is_empty() {
            continue;
        }
        match s.runtime.block_on(store.read(key)) {
            Ok(state) => {
                check_state(key, &state);
                before.insert(key.clone(), summary(&state));
                if i == 0 {
                    first_state = Some(state);
                }
            }
            Err(e) => {
                assert!(
                    matches!(e.kind(), ErrorKind::NotFound | ErrorKind::InvalidInput),
                    "read {key:?}: unexpected error kind: {e}"
                );
                check_message(&e, &shape, "read");
            }
        }
    }

    // One write: every write parses and validates the whole file.
    let key = keys
        .first()
        .filter(|k| !k.is_empty())
        .cloned()
        .unwrap_or_else(|| "k".to_owned());
    let pending = first_state
        .as_ref()
        .and_then(|s| s.pending())
        .map_or("fuzz-pending".to_owned(), |v| v.id.clone());
    let some_id = first_state
        .as_ref()
        .and_then(|s| s.versions.first())
        .map_or("v1".to_owned(), |v| v.id.clone());
    let mut doc = SecretDoc::new();
    doc.set("username", "fuzz");
    doc.set("password", "fuzz-SECRET-pw");
    let choice = crate::harness::fnv64(data) % 5;
    let outcome = s.runtime.block_on(async {
        match choice {
            0 => store.stage_pending(&key, "fuzz-pending", &doc).await,
            1 => store.put_current(&key, "fuzz-current", &doc).await,
            2 => store.promote(&key, &pending, true).await,
            3 => store.mark_revoked(&key, &some_id).await,
            _ => store.discard_pending(&key, &pending).await,
        }
    });
    drop(store);
    match outcome {
        Err(e) => {
            assert!(
                matches!(
                    e.kind(),
                    ErrorKind::InvalidInput | ErrorKind::Conflict | ErrorKind::NotFound
                ),
                "write #{choice} on {key:?}: unexpected error kind: {e}"
            );
            check_message(&e, &shape, "write");
        }
        Ok(()) => check_after_write(s, &key, choice, &before),
    }
}

/// After a successful write: the file is whole, and keys the write did not touch read
/// back as they did before it.
fn check_after_write(s: &Scratch, written: &str, choice: u64, before: &BTreeMap<String, Summary>) {
    let raw = std::fs::read(&s.path).expect("read rewritten file");
    let file: Value = serde_json::from_slice(&raw).expect("a rewritten store file is JSON");
    let names: Vec<String> = file
        .get("keys")
        .and_then(Value::as_object)
        .map(|keys| keys.keys().cloned().collect())
        .unwrap_or_default();
    let reopened = FileStore::open(&s.path).expect("reopen after a write");
    // An empty key name is legal in the file but refused by the API.
    for name in names.iter().chain(before.keys()).filter(|n| !n.is_empty()) {
        match s.runtime.block_on(reopened.read(name)) {
            Ok(state) => {
                check_state(name, &state);
                if name != written {
                    if let Some(old) = before.get(name) {
                        assert_eq!(
                            &summary(&state),
                            old,
                            "key {name:?} changed when write #{choice} rewrote the file for key {written:?}"
                        );
                    }
                }
            }
            Err(e) => {
                assert!(
                    e.kind() == ErrorKind::NotFound && !names.contains(name),
                    "key {name:?} of a file a write accepted does not read back: {e}"
                );
            }
        }
    }
    assert!(
        names.iter().any(|n| n == written),
        "write #{choice} succeeded but key {written:?} is not in the file"
    );
}

/// Structured generator: a store file in the format, valid or nearly so.
pub fn generate(rng: &mut Rng) -> Vec<u8> {
    const KEYS: &[&str] = &["k", "orders/db", "a\"b\\c", "\u{e9}t\u{e9}", "", " ", "k2"];
    const IDS: &[&str] = &["v1", "v2", "v3", "run-1", "", "v1"];
    const STAGES: &[&str] = &["current", "pending", "previous", "Current", "bogus"];
    const TIMES: &[&str] = &[
        "2026-11-21T18:00:00Z",
        "2026-10-21T18:00:00Z",
        "2026-11-21T18:00:00.123456789Z",
        "2026-11-21T18:00:00+01:00",
        "1969-12-31T23:59:59Z",
        "1970-01-01T00:00:00Z",
        "9999-12-31T23:59:59Z",
        "2026-02-30T00:00:00Z",
        "2026-11-21 18:00:00Z",
        "yesterday",
        "",
    ];
    let mut keys = serde_json::Map::new();
    for _ in 0..rng.below(4) {
        let mut versions = Vec::new();
        for n in 0..rng.below(8) {
            let stages: Vec<Value> = (0..[0, 1, 1, 1, 2][rng.below(5)])
                .map(|_| json!(rng.pick(STAGES)))
                .collect();
            let revoked = match rng.below(4) {
                0 => Value::Null,
                1 => json!(rng.pick(TIMES)),
                2 => json!(12345),
                _ => Value::Null,
            };
            let value = match rng.below(8) {
                0 => json!("pw-SECRET-not-an-object"),
                1 => json!({}),
                2 => json!({"password": format!("pw-SECRET-{n}"), "port": 1e300, "n": -0.0}),
                3 => json!({"password": format!("pw-SECRET-{n}"), "nested": {"a": [1, "SECRET-x", null]}}),
                _ => json!({"username": "app", "password": format!("pw-SECRET-{n}"), "port": 5432}),
            };
            let mut version = json!({
                "id": rng.pick(IDS),
                "stages": stages,
                "created": rng.pick(TIMES),
                "revoked": revoked,
                "value": value,
            });
            match rng.below(12) {
                0 => {
                    version.as_object_mut().expect("object").remove("revoked");
                }
                1 => {
                    version.as_object_mut().expect("object").remove("created");
                }
                2 => {
                    version["extra"] = json!(true);
                }
                3 => {
                    version["id"] = json!(7);
                }
                _ => {}
            }
            versions.push(version);
        }
        keys.insert(rng.pick(KEYS).to_string(), json!({ "versions": versions }));
    }
    let format = *rng.pick(&[1, 1, 1, 1, 0, 2]);
    let file = if rng.one_in(10) {
        json!({ "format": format })
    } else {
        json!({ "format": format, "keys": keys })
    };
    let text = if rng.one_in(2) {
        serde_json::to_string_pretty(&file)
    } else {
        serde_json::to_string(&file)
    };
    text.expect("serialize").into_bytes()
}

/// Tokens for mutations: the store format's structure.
pub const DICTIONARY: &[&str] = &[
    "{\"format\":1,\"keys\":{",
    "{\"format\":1}",
    "\"format\":",
    "\"keys\":",
    "\"versions\":[",
    "\"id\":\"v1\",",
    "\"stages\":[\"current\"],",
    "\"stages\":[\"pending\"],",
    "\"stages\":[\"previous\"],",
    "\"stages\":[],",
    "\"created\":\"2026-11-21T18:00:00Z\",",
    "\"revoked\":null,",
    "\"revoked\":\"2026-11-21T18:00:09Z\",",
    "\"value\":{\"password\":\"pw-SECRET\"}",
    "{",
    "}",
    "[",
    "]",
    ",",
    ":",
    "\"",
    "\\\"",
    "\\u0000",
    "\\ud800",
    "\\uDC00",
    "null",
    "true",
    "1e999",
    "-0",
    "18446744073709551616",
    "\u{feff}",
];
