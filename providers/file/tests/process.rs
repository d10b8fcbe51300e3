//! Writers in separate processes: this test binary re-runs itself as the second process
//! (`child_process_entry`, which does nothing unless the parent set its variables).

use rekey_api::{ErrorKind, SecretDoc, Store};
use rekey_file::FileStore;
use serde_json::Value;
use std::collections::HashMap;
use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

const STORE: &str = "REKEY_FILE_CHILD_STORE";
const ID: &str = "REKEY_FILE_CHILD_ID";
const KEYS: &str = "REKEY_FILE_CHILD_KEYS";

fn doc(password: &str) -> SecretDoc {
    let mut d = SecretDoc::new();
    d.set("username", "app");
    d.set("password", password);
    d
}

/// The second process: stages version `$ID` on every key of `$KEYS` concurrently and
/// prints one `RESULT <key> <outcome>` line per key.
#[test]
fn child_process_entry() {
    let (Ok(path), Ok(id), Ok(keys)) = (std::env::var(STORE), std::env::var(ID), std::env::var(KEYS)) else {
        return;
    };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        let store = Arc::new(FileStore::open(path).unwrap());
        let mut tasks = Vec::new();
        for key in keys.split(',').map(str::to_owned) {
            let (store, id) = (store.clone(), id.clone());
            tasks.push(tokio::spawn(async move {
                let outcome = match store.stage_pending(&key, &id, &doc(&format!("{id}-{key}"))).await {
                    Ok(()) => "ok".to_owned(),
                    Err(e) if e.kind() == ErrorKind::Conflict => "conflict".to_owned(),
                    Err(e) => format!("error:{}", e.kind().as_str()),
                };
                format!("RESULT {key} {outcome}")
            }));
        }
        for task in tasks {
            println!("{}", task.await.unwrap());
        }
    });
}

fn spawn_child(path: &Path, id: &str, keys: &[String]) -> Child {
    Command::new(std::env::current_exe().unwrap())
        .args(["--exact", "child_process_entry", "--nocapture", "--test-threads=1"])
        .env(STORE, path)
        .env(ID, id)
        .env(KEYS, keys.join(","))
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap()
}

fn results(child: Child) -> HashMap<String, String> {
    let output = child.wait_with_output().unwrap();
    assert!(output.status.success(), "child failed: {:?}", output.status);
    String::from_utf8(output.stdout)
        .unwrap()
        .lines()
        // libtest may print its own words before the first line.
        .filter_map(|l| l.find("RESULT ").map(|at| &l[at + "RESULT ".len()..]))
        .map(|l| {
            let (key, outcome) = l.split_once(' ').unwrap();
            (key.to_owned(), outcome.to_owned())
        })
        .collect()
}

fn hold_lock(store_path: &Path) -> fs::File {
    let lock = fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(PathBuf::from(format!("{}.lock", store_path.display())))
        .unwrap();
    rustix::fs::flock(&lock, rustix::fs::FlockOperation::LockExclusive).unwrap();
    lock
}

/// Waits until process `pid` is blocked waiting for a lock (Linux `/proc/locks` lists
/// waiters with `->`). Where `/proc/locks` cannot be read, waits a while instead.
fn wait_until_blocked_on_lock(pid: u32) {
    let deadline = Instant::now() + Duration::from_secs(60);
    while Instant::now() < deadline {
        let Ok(locks) = fs::read_to_string("/proc/locks") else {
            std::thread::sleep(Duration::from_millis(500));
            return;
        };
        let blocked = locks.lines().any(|line| {
            let fields: Vec<_> = line.split_whitespace().collect();
            fields.get(1) == Some(&"->") && fields.get(5) == Some(&pid.to_string().as_str())
        });
        if blocked {
            return;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    panic!("process {pid} never waited for the lock");
}

fn stage_by_hand(path: &Path, key: &str, id: &str) {
    let mut file: Value = serde_json::from_slice(&fs::read(path).unwrap()).unwrap();
    file["keys"][key]["versions"]
        .as_array_mut()
        .unwrap()
        .push(serde_json::json!({
            "id": id, "stages": ["pending"], "created": "2026-11-21T18:00:00Z", "revoked": null,
            "value": {"username": "app", "password": "by-hand"}
        }));
    let tmp = path.with_extension("by-hand");
    fs::write(&tmp, serde_json::to_vec_pretty(&file).unwrap()).unwrap();
    fs::set_permissions(&tmp, fs::Permissions::from_mode(0o600)).unwrap();
    fs::rename(&tmp, path).unwrap();
}

#[tokio::test(flavor = "multi_thread")]
async fn a_second_process_waits_for_the_lock_and_detects_the_change() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("secrets.json");
    let store = FileStore::open_or_create(&path).unwrap();
    store.put_current("orders/db", "v1", &doc("one")).await.unwrap();

    let lock = hold_lock(&path);
    let child = spawn_child(&path, "child", &["orders/db".to_owned()]);
    wait_until_blocked_on_lock(child.id());
    let while_blocked = fs::read(&path).unwrap();
    // While the child waits, this process (holding the lock) stages its own version.
    stage_by_hand(&path, "orders/db", "parent");
    drop(lock);

    let outcome = tokio::task::spawn_blocking(move || results(child)).await.unwrap();
    assert_eq!(outcome["orders/db"], "conflict", "the child re-read under the lock");
    let state = store.read("orders/db").await.unwrap();
    assert_eq!(
        state.pending().unwrap().id,
        "parent",
        "the parent's version was not overwritten"
    );
    assert_eq!(state.pending().unwrap().doc.get_str("password"), Some("by-hand"));
    assert_ne!(fs::read(&path).unwrap(), while_blocked);
}

#[tokio::test(flavor = "multi_thread")]
async fn two_processes_racing_never_overwrite_each_other() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("secrets.json");
    let store = FileStore::open_or_create(&path).unwrap();
    let keys: Vec<String> = (0..40).map(|i| format!("app/{i}")).collect();
    for key in &keys {
        store.put_current(key, "v1", &doc("one")).await.unwrap();
    }
    let (first, second) = (spawn_child(&path, "p1", &keys), spawn_child(&path, "p2", &keys));
    let (first, second) = tokio::task::spawn_blocking(move || (results(first), results(second)))
        .await
        .unwrap();
    for key in &keys {
        let outcomes = (first[key].as_str(), second[key].as_str());
        let winner = match outcomes {
            ("ok", "conflict") => "p1",
            ("conflict", "ok") => "p2",
            other => panic!("key {key}: exactly one process must win, got {other:?}"),
        };
        let state = store.read(key).await.unwrap();
        let pending = state.pending().unwrap();
        assert_eq!(pending.id, winner, "key {key}");
        assert_eq!(
            pending.doc.get_str("password"),
            Some(format!("{winner}-{key}").as_str())
        );
        assert_eq!(state.versions.len(), 2, "key {key}: the loser left nothing");
    }
    let strays: Vec<_> = fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .filter(|n| n != "secrets.json" && n != "secrets.json.lock")
        .collect();
    assert!(strays.is_empty(), "{strays:?}");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_write_by_another_process_between_two_writes_is_seen() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("secrets.json");
    let store = FileStore::open_or_create(&path).unwrap();
    store.put_current("orders/db", "v1", &doc("one")).await.unwrap();
    store.put_current("other", "v1", &doc("one")).await.unwrap();

    // Between this handle's writes, another process (following the protocol) stages.
    let child = spawn_child(&path, "child", &["orders/db".to_owned()]);
    let outcome = tokio::task::spawn_blocking(move || results(child)).await.unwrap();
    assert_eq!(outcome["orders/db"], "ok");

    let err = store
        .stage_pending("orders/db", "parent", &doc("parent"))
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Conflict, "{err}");
    assert!(err.message().contains("child"), "{err}");
    // A write to another key keeps the child's version.
    store.put_current("other", "v2", &doc("two")).await.unwrap();
    let state = store.read("orders/db").await.unwrap();
    assert_eq!(state.pending().unwrap().id, "child");
    assert_eq!(
        state.pending().unwrap().doc.get_str("password"),
        Some("child-orders/db")
    );
}
