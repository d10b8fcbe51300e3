//! The journal: writes to a large store append instead of rewriting it, a crash at any
//! point (a writer killed by SIGKILL, a journal cut anywhere) loses nothing that was
//! acknowledged, format 1 files are still read and upgraded, and the journal is as
//! private as the store file. The crash test re-runs this binary as the writer
//! (`crash_writer_entry`, which does nothing unless the parent set its variable).

use rekey_api::{ErrorKind, SecretDoc, Store};
use rekey_file::FileStore;
use std::collections::HashMap;
use std::fs;
use std::io::{BufRead, BufReader};
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Arc;

const CRASH_STORE: &str = "REKEY_FILE_CRASH_STORE";
const KEYS: usize = 12;

fn doc(password: &str) -> SecretDoc {
    let mut d = SecretDoc::new();
    d.set("username", "app");
    d.set("password", password);
    d.set("host", "db.example.internal");
    d
}

/// A fold-after long enough never to be reached by a test.
const HOUR: std::time::Duration = std::time::Duration::from_secs(3600);

fn journal_path(path: &Path) -> PathBuf {
    PathBuf::from(format!("{}.journal", path.display()))
}

fn key(i: usize) -> String {
    format!("app/{i:02}")
}

/// The writer the crash test kills: rotates `KEYS` keys round after round, concurrently,
/// journaling every commit (and so compacting often), printing `ACK <key> <op> <round>`
/// once each write returned (is durable).
#[test]
fn crash_writer_entry() {
    let Ok(path) = std::env::var(CRASH_STORE) else {
        return;
    };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        let store = Arc::new(FileStore::open(&path).unwrap().with_journal_from(0));
        let mut tasks = Vec::new();
        for i in 0..KEYS {
            let store = store.clone();
            tasks.push(tokio::spawn(async move {
                let key = key(i);
                for round in 1.. {
                    let id = format!("r{round}");
                    store
                        .stage_pending(&key, &id, &doc(&format!("{key}-{id}")))
                        .await
                        .unwrap();
                    println!("ACK {key} stage {round}");
                    store.promote(&key, &id, true).await.unwrap();
                    println!("ACK {key} promote {round}");
                }
            }));
        }
        for task in tasks {
            task.await.unwrap();
        }
    });
}

fn round_of(id: &str) -> u64 {
    id.strip_prefix('r').and_then(|n| n.parse().ok()).unwrap_or(0)
}

#[tokio::test(flavor = "multi_thread")]
async fn a_writer_killed_mid_write_loses_nothing_acknowledged() {
    // Kill after more and more acknowledged writes, so the kill lands in appends,
    // compactions and the steps between them.
    for (attempt, kill_after) in [7usize, 40, 90, 160, 250, 333].into_iter().enumerate() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("secrets.json");
        {
            let store = FileStore::open_or_create(&path).unwrap();
            for i in 0..KEYS {
                store.put_current(&key(i), "r0", &doc("initial")).await.unwrap();
            }
        }
        let mut child = Command::new(std::env::current_exe().unwrap())
            .args(["--exact", "crash_writer_entry", "--nocapture", "--test-threads=1"])
            .env(CRASH_STORE, &path)
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let mut stage_acked: HashMap<String, u64> = HashMap::new();
        let mut promote_acked: HashMap<String, u64> = HashMap::new();
        let mut acks = 0;
        let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
        while acks < kill_after {
            let Some(Ok(line)) = lines.next() else {
                panic!("attempt {attempt}: the writer stopped after {acks} acknowledgements");
            };
            let Some(at) = line.find("ACK ") else { continue };
            let mut words = line[at + 4..].split(' ');
            let (k, op, round) = (words.next().unwrap(), words.next().unwrap(), words.next().unwrap());
            let round: u64 = round.parse().unwrap();
            match op {
                "stage" => stage_acked.insert(k.to_owned(), round),
                _ => promote_acked.insert(k.to_owned(), round),
            };
            acks += 1;
        }
        child.kill().unwrap(); // SIGKILL
        child.wait().unwrap();
        // Later lines were written before the kill and are acknowledged too.
        for line in lines.map_while(Result::ok) {
            let Some(at) = line.find("ACK ") else { continue };
            let mut words = line[at + 4..].split(' ');
            let (k, op, round) = (words.next().unwrap(), words.next().unwrap(), words.next());
            let Some(Ok(round)) = round.map(str::parse::<u64>) else {
                continue;
            };
            match op {
                "stage" => stage_acked.insert(k.to_owned(), round),
                _ => promote_acked.insert(k.to_owned(), round),
            };
        }

        let store = FileStore::open(&path).unwrap();
        for i in 0..KEYS {
            let k = key(i);
            let state = store
                .read(&k)
                .await
                .unwrap_or_else(|e| panic!("attempt {attempt}: {k}: {e}"));
            let current = round_of(&state.current().unwrap().id);
            let promoted = promote_acked.get(&k).copied().unwrap_or(0);
            let staged = stage_acked.get(&k).copied().unwrap_or(0);
            assert!(
                current >= promoted,
                "attempt {attempt}: {k}: promote of r{promoted} acknowledged, current is r{current}"
            );
            let pending = state.pending().map(|v| round_of(&v.id));
            assert!(
                current >= staged || pending == Some(staged),
                "attempt {attempt}: {k}: stage of r{staged} acknowledged, current r{current}, pending {pending:?}"
            );
            let doc = &state.current().unwrap().doc;
            let expected = if current == 0 {
                "initial".to_owned()
            } else {
                format!("{k}-r{current}")
            };
            assert_eq!(doc.get_str("password"), Some(expected.as_str()));
        }
        // The store stays writable: a torn tail is cut off, a stale journal replaced.
        let store = store.with_journal_from(0);
        for i in 0..KEYS {
            let state = store.read(&key(i)).await.unwrap();
            if let Some(pending) = state.pending() {
                store.promote(&key(i), &pending.id, true).await.unwrap();
            }
            store.stage_pending(&key(i), "after", &doc("after")).await.unwrap();
        }
        drop(store);
        let reopened = FileStore::open(&path).unwrap();
        for i in 0..KEYS {
            assert_eq!(reopened.read(&key(i)).await.unwrap().pending().unwrap().id, "after");
        }
        assert!(!journal_path(&path).exists(), "compacted when the handle was dropped");
    }
}

/// Copies the store file and its journal as they are now.
fn copy_files(path: &Path) -> (Vec<u8>, Vec<u8>) {
    (fs::read(path).unwrap(), fs::read(journal_path(path)).unwrap())
}

fn write_private(path: &Path, bytes: &[u8]) {
    fs::write(path, bytes).unwrap();
    fs::set_permissions(path, fs::Permissions::from_mode(0o600)).unwrap();
}

#[tokio::test(flavor = "multi_thread")]
async fn a_journal_cut_anywhere_loses_only_the_cut_record() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("secrets.json");
    let store = FileStore::open_or_create(&path)
        .unwrap()
        .with_journal_from(0)
        .with_fold_after(HOUR);
    // A snapshot large enough that four records do not outgrow it (no compaction).
    for i in 0..40 {
        store.put_current(&key(i), "v1", &doc("one")).await.unwrap();
    }
    // Compacted into the snapshot, then one journal record per write.
    let mut ends = Vec::new();
    for i in 0..4 {
        store.stage_pending(&key(i), "v2", &doc("two")).await.unwrap();
        ends.push(fs::metadata(journal_path(&path)).unwrap().len() as usize);
    }
    let (snapshot, journal) = copy_files(&path);
    assert_eq!(journal.len(), ends[3]);
    std::mem::forget(store); // leave the journal as a crash would (no compaction)

    // Every 5th byte, and each byte around every record boundary.
    let mut cuts: Vec<usize> = (0..=journal.len()).step_by(5).collect();
    for &end in &ends {
        cuts.extend(end.saturating_sub(2)..=(end + 1).min(journal.len()));
    }
    cuts.sort_unstable();
    cuts.dedup();
    for cut in cuts {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("secrets.json");
        write_private(&p, &snapshot);
        write_private(&journal_path(&p), &journal[..cut]);
        let store = FileStore::open(&p).unwrap();
        let mut many = store.read_many(&(0..4).map(key).collect::<Vec<_>>()).await.into_iter();
        for (i, end) in ends.iter().enumerate() {
            let state = store.read(&key(i)).await.unwrap();
            let expect_staged = cut >= *end;
            assert_eq!(state.pending().is_some(), expect_staged, "cut {cut}, key {i}");
            let batch = many.next().unwrap().unwrap();
            assert_eq!(
                batch.pending().is_some(),
                expect_staged,
                "read_many: cut {cut}, key {i}"
            );
            assert_eq!(state.current().unwrap().id, "v1");
        }
        // A write after the cut: the torn tail is cut off and the record lands whole.
        store.promote(&key(0), "v2", false).await.ok();
        drop(store);
        let reopened = FileStore::open(&p).unwrap();
        let state = reopened.read(&key(0)).await.unwrap();
        if cut >= ends[0] {
            assert_eq!(state.current().unwrap().id, "v2", "cut {cut}");
        } else {
            assert_eq!(state.current().unwrap().id, "v1", "cut {cut}");
        }
        for (i, end) in ends.iter().enumerate().skip(1) {
            let state = reopened.read(&key(i)).await.unwrap();
            assert_eq!(
                state.pending().is_some(),
                cut >= *end,
                "after rewrite: cut {cut}, key {i}"
            );
        }
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn writes_to_a_large_store_append_and_leave_the_snapshot_alone() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("secrets.json");
    // No fold by age here: on a slow machine the 20 writes may take longer than it.
    let store = FileStore::open_or_create(&path).unwrap().with_fold_after(HOUR);
    for i in 0..400 {
        store.put_current(&format!("k{i}"), "v1", &doc("one")).await.unwrap();
    }
    let snapshot = fs::metadata(&path).unwrap();
    assert!(snapshot.len() > rekey_file::JOURNAL_FROM, "{} bytes", snapshot.len());
    let mut sizes = Vec::new();
    for i in 0..20 {
        store.stage_pending(&format!("k{i}"), "v2", &doc("two")).await.unwrap();
        sizes.push(fs::metadata(journal_path(&path)).unwrap().len());
    }
    let after = fs::metadata(&path).unwrap();
    assert_eq!(
        (after.ino(), after.len(), after.mtime_nsec()),
        (snapshot.ino(), snapshot.len(), snapshot.mtime_nsec()),
        "the snapshot was not rewritten"
    );
    // Each write appended one record of about the same size: the cost of a write is
    // what it changed, not the store's size.
    let steps: Vec<u64> = sizes.windows(2).map(|w| w[1] - w[0]).collect();
    assert!(steps.iter().all(|&s| s > 0 && s < 1024), "{steps:?}");
    assert_eq!(mode(&journal_path(&path)), 0o600);
    // Another handle sees the journaled writes.
    let other = FileStore::open(&path).unwrap();
    assert_eq!(other.read("k19").await.unwrap().pending().unwrap().id, "v2");
    drop(other);
    drop(store);
    assert!(!journal_path(&path).exists());
    let text = fs::read_to_string(&path).unwrap();
    let file: serde_json::Value = serde_json::from_str(&text).unwrap();
    assert_eq!(
        file["keys"]["k19"]["versions"][1]["id"], "v2",
        "compacted into the snapshot"
    );
}

fn mode(path: &Path) -> u32 {
    fs::metadata(path).unwrap().permissions().mode() & 0o7777
}

#[tokio::test(flavor = "multi_thread")]
async fn a_group_readable_journal_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("secrets.json");
    let store = FileStore::open_or_create(&path)
        .unwrap()
        .with_journal_from(0)
        .with_fold_after(HOUR);
    store.put_current("k", "v1", &doc("one")).await.unwrap();
    store.stage_pending("k", "v2", &doc("two")).await.unwrap();
    let journal = journal_path(&path);
    assert_eq!(mode(&journal), 0o600);
    fs::set_permissions(&journal, fs::Permissions::from_mode(0o640)).unwrap();
    let other = FileStore::open(&path).unwrap();
    let err = other.read("k").await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::PermissionDenied, "{err}");
    assert!(
        err.message().contains("secrets.json.journal") && err.message().contains("chmod 600"),
        "{err}"
    );
    let err = store.promote("k", "v2", false).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::PermissionDenied, "{err}");
    fs::set_permissions(&journal, fs::Permissions::from_mode(0o600)).unwrap();
    store.promote("k", "v2", false).await.unwrap();
}

/// A store file as rekey wrote it before the journal (format 1).
const FORMAT_1: &str = r#"{
  "format": 1,
  "keys": {
    "orders/db": {
      "versions": [
        {
          "id": "run-1",
          "stages": ["previous"],
          "created": "2026-10-21T18:00:00Z",
          "revoked": "2026-11-21T18:00:09Z",
          "value": { "engine": "postgres", "username": "orders_app", "password": "old-pw" }
        },
        {
          "id": "run-2",
          "stages": ["current"],
          "created": "2026-11-21T18:00:00Z",
          "revoked": null,
          "value": { "engine": "postgres", "username": "orders_app", "password": "current-pw" }
        }
      ]
    }
  }
}
"#;

#[tokio::test(flavor = "multi_thread")]
async fn a_format_1_store_is_read_and_upgraded_by_the_first_write() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("secrets.json");
    write_private(&path, FORMAT_1.as_bytes());
    let store = FileStore::open(&path).unwrap().with_journal_from(0);
    let state = store.read("orders/db").await.unwrap();
    assert_eq!(state.current().unwrap().doc.get_str("password"), Some("current-pw"));
    assert_eq!(state.previous().unwrap().id, "run-1");
    assert!(state.previous().unwrap().revoked.is_some());
    assert_eq!(fs::read_to_string(&path).unwrap(), FORMAT_1, "reading changes nothing");

    store.stage_pending("orders/db", "run-3", &doc("new-pw")).await.unwrap();
    // The first write rewrites the file whole as format 2 (no journal on a format 1 file,
    // which an older rekey would read without it).
    assert!(!journal_path(&path).exists());
    let file: serde_json::Value = serde_json::from_slice(&fs::read(&path).unwrap()).unwrap();
    assert_eq!(file["format"], 2);
    assert_eq!(file["generation"], 1);
    let versions = file["keys"]["orders/db"]["versions"].as_array().unwrap();
    assert_eq!(versions.len(), 3);
    assert_eq!(versions[0]["revoked"], "2026-11-21T18:00:09Z");
    assert_eq!(versions[1]["value"]["password"], "current-pw");
    // Later writes journal.
    store.promote("orders/db", "run-3", true).await.unwrap();
    assert!(journal_path(&path).exists());
    let other = FileStore::open(&path).unwrap();
    let state = other.read("orders/db").await.unwrap();
    assert_eq!(state.current().unwrap().doc.get_str("password"), Some("new-pw"));
    assert_eq!(state.previous().unwrap().doc.get_str("password"), Some("current-pw"));
}

/// A program reading the snapshot directly is never far behind during a run: writes
/// stay in the journal only for `fold_after` (2 s by default); the first commit after it
/// folds them into the snapshot.
#[tokio::test(flavor = "multi_thread")]
async fn journaled_writes_reach_the_snapshot_after_fold_after() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("secrets.json");
    // Long enough that the first two commits fall within it on a busy machine (a fold
    // they triggered would fail the first assertion), short enough for a test.
    let fold = std::time::Duration::from_secs(2);
    let store = FileStore::open_or_create(&path)
        .unwrap()
        .with_journal_from(0)
        .with_fold_after(fold);
    let on_disk = |key: &str| -> serde_json::Value {
        let file: serde_json::Value = serde_json::from_str(&fs::read_to_string(&path).unwrap()).unwrap();
        file["keys"][key].clone()
    };
    store.put_current("a", "v1", &doc("one")).await.unwrap();
    store.put_current("b", "v1", &doc("one")).await.unwrap();
    assert!(on_disk("b").is_null(), "journaled, not yet in the snapshot");
    assert!(journal_path(&path).exists());
    std::thread::sleep(fold + std::time::Duration::from_millis(50));
    store.put_current("c", "v1", &doc("one")).await.unwrap();
    assert_eq!(on_disk("b")["versions"][0]["id"], "v1", "folded in");
    assert_eq!(on_disk("c")["versions"][0]["id"], "v1", "folded in");
}
