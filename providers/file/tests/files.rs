//! The file itself: permissions, atomic replace, locking, the format on disk, hygiene.

use rekey_api::{ErrorKind, SecretDoc, Stage, Store};
use rekey_file::{FileStore, FileStoreConfig, HISTORY_LIMIT};
use serde_json::Value;
use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

const SECRET: &str = "Zq9-very-secret-password-value";

fn doc(password: &str) -> SecretDoc {
    let mut d = SecretDoc::new();
    d.set("engine", "postgres");
    d.set("host", "127.0.0.1");
    d.set("port", 5432);
    d.set("username", "orders_app");
    d.set("password", password);
    d
}

fn setup() -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("secrets.json");
    (dir, path)
}

fn mode(path: &Path) -> u32 {
    fs::metadata(path).unwrap().permissions().mode() & 0o7777
}

fn chmod(path: &Path, mode: u32) {
    fs::set_permissions(path, fs::Permissions::from_mode(mode)).unwrap();
}

/// Names in the store's directory other than the store and lock files.
fn strays(dir: &Path) -> Vec<String> {
    fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n != "secrets.json" && n != "secrets.json.lock")
        .collect()
}

fn parse_file(path: &Path) -> Value {
    serde_json::from_slice(&fs::read(path).unwrap()).expect("the store file is valid JSON")
}

/// Takes the store's flock from outside the store, as another process would.
fn hold_lock(store_path: &Path) -> fs::File {
    let lock = fs::OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(PathBuf::from(format!("{}.lock", store_path.display())))
        .unwrap();
    rustix::fs::flock(&lock, rustix::fs::FlockOperation::LockExclusive).unwrap();
    lock
}

#[tokio::test(flavor = "multi_thread")]
async fn open_refuses_a_missing_store_file_and_names_the_fix() {
    let (dir, path) = setup();
    let err = FileStore::open(&path).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::NotFound, "{err}");
    assert_eq!(
        err.message(),
        format!(
            "store file {} does not exist; create it with `rekey import` or `rekey rotate --create-store`",
            path.display()
        )
    );
    assert!(!err.to_string().contains('\n'));
    let config = FileStoreConfig { path: path.clone() };
    let err = FileStore::from_config(&config).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::NotFound, "from_config does not create: {err}");
    assert!(
        strays(dir.path()).is_empty() && !path.exists(),
        "nothing created: {:?}",
        strays(dir.path())
    );
    assert!(!dir.path().join("secrets.json.lock").exists(), "no lock file created");

    // Created explicitly, it opens without create from then on.
    let created = FileStore::from_config_with(&config, true).unwrap();
    assert!(created.creates());
    created.put_current("k", "v1", &doc("one")).await.unwrap();
    let store = FileStore::open(&path).unwrap();
    assert!(!store.creates());
    assert_eq!(store.read("k").await.unwrap().current().unwrap().id, "v1");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_missing_directory_is_not_found_even_with_create() {
    let (dir, _) = setup();
    let path = dir.path().join("not-mounted").join("secrets.json");
    let expected = format!(
        "directory {} of store file {} does not exist; check the path and that its file system is mounted",
        dir.path().join("not-mounted").display(),
        path.display()
    );
    for err in [
        FileStore::open(&path).unwrap_err(),
        FileStore::open_or_create(&path).unwrap_err(),
        FileStore::from_config_with(&FileStoreConfig { path: path.clone() }, true).unwrap_err(),
    ] {
        assert_eq!(err.kind(), ErrorKind::NotFound, "{err}");
        assert_eq!(err.message(), expected);
    }
    assert!(!dir.path().join("not-mounted").exists(), "no directory created");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_store_file_that_vanishes_is_not_recreated_without_create() {
    let (dir, path) = setup();
    FileStore::open_or_create(&path)
        .unwrap()
        .put_current("k", "v1", &doc("one"))
        .await
        .unwrap();
    let store = FileStore::open(&path).unwrap();
    assert_eq!(store.read("k").await.unwrap().current().unwrap().id, "v1");
    // Deleted (or its file system unmounted) after open.
    fs::remove_file(&path).unwrap();
    let err = store.stage_pending("k", "v2", &doc("two")).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::NotFound, "{err}");
    assert!(err.message().contains("does not exist; create it with"), "{err}");
    let err = store.read("k").await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::NotFound, "{err}");
    assert!(err.message().contains("--create-store"), "{err}");
    let err = store.check_writable("k").await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::NotFound, "{err}");
    assert!(!path.exists(), "not recreated");
    assert!(strays(dir.path()).is_empty(), "{:?}", strays(dir.path()));
}

#[tokio::test(flavor = "multi_thread")]
async fn open_or_create_does_not_create_and_first_write_creates_0600() {
    let (dir, path) = setup();
    let store = FileStore::open_or_create(&path).unwrap();
    assert!(!path.exists(), "open does not create the file");
    assert_eq!(store.read("orders/db").await.unwrap_err().kind(), ErrorKind::NotFound);
    assert!(!path.exists(), "a read does not create the file");

    store.put_current("orders/db", "v1", &doc(SECRET)).await.unwrap();
    assert_eq!(mode(&path), 0o600, "store file mode");
    assert_eq!(mode(&dir.path().join("secrets.json.lock")), 0o600, "lock file mode");
    assert!(
        strays(dir.path()).is_empty(),
        "no temp file left: {:?}",
        strays(dir.path())
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn file_format_on_disk() {
    let (_dir, path) = setup();
    let store = FileStore::open_or_create(&path).unwrap();
    store.put_current("orders/db", "v1", &doc("first")).await.unwrap();
    store.stage_pending("orders/db", "v2", &doc(SECRET)).await.unwrap();
    store.promote("orders/db", "v2", true).await.unwrap();

    let file = parse_file(&path);
    assert_eq!(file["format"], 2);
    assert!(file["generation"].as_u64().unwrap() >= 1);
    let versions = file["keys"]["orders/db"]["versions"].as_array().unwrap();
    assert_eq!(versions.len(), 2);
    assert_eq!(versions[0]["id"], "v1");
    assert_eq!(versions[0]["stages"], serde_json::json!(["previous"]));
    assert_eq!(versions[1]["id"], "v2");
    assert_eq!(versions[1]["stages"], serde_json::json!(["current"]));
    assert_eq!(versions[1]["value"]["password"], SECRET);
    assert_eq!(versions[1]["value"]["port"], 5432);
    assert!(versions[1]["revoked"].is_null());
    for field in [
        &versions[0]["created"],
        &versions[0]["revoked"],
        &versions[1]["created"],
    ] {
        let text = field.as_str().expect("timestamp is a string");
        assert!(text.ends_with('Z') && text.len() == 20, "RFC 3339 UTC seconds: {text}");
        humantime::parse_rfc3339(text).unwrap();
    }
    // The stored times read back as the same instants (to the second).
    let state = store.read("orders/db").await.unwrap();
    let created = state.current().unwrap().created;
    let age = created.elapsed().unwrap_or_default();
    assert!(age < Duration::from_secs(3600), "created is now-ish");
}

#[tokio::test(flavor = "multi_thread")]
async fn group_readable_store_file_is_refused_with_chmod_hint() {
    let (_dir, path) = setup();
    let store = FileStore::open_or_create(&path).unwrap();
    store.put_current("orders/db", "v1", &doc(SECRET)).await.unwrap();
    chmod(&path, 0o644);
    let before = fs::read(&path).unwrap();
    let expected = format!(
        "store file {} is accessible by group or others (mode 0644); run: chmod 600 {}",
        path.display(),
        path.display()
    );

    let err = FileStore::open(&path).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::PermissionDenied);
    assert_eq!(err.message(), expected);
    assert!(!err.to_string().contains('\n'));

    let err = store.read("orders/db").await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::PermissionDenied, "{err}");
    assert_eq!(err.message(), expected);

    let err = store.stage_pending("orders/db", "v2", &doc("new")).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::PermissionDenied, "{err}");
    assert_eq!(err.message(), expected);
    let err = store.check_writable("orders/db").await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::PermissionDenied, "{err}");

    assert_eq!(fs::read(&path).unwrap(), before, "contents unchanged after refusal");
    assert_eq!(mode(&path), 0o644, "mode not changed behind the user's back");

    // Others-writable only is refused too; fixing the mode makes it usable again.
    chmod(&path, 0o602);
    assert_eq!(FileStore::open(&path).unwrap_err().kind(), ErrorKind::PermissionDenied);
    chmod(&path, 0o600);
    store.stage_pending("orders/db", "v2", &doc("new")).await.unwrap();
    FileStore::open(&path).unwrap();
}

#[tokio::test(flavor = "multi_thread")]
async fn group_accessible_lock_file_is_refused() {
    let (_dir, path) = setup();
    let lock = PathBuf::from(format!("{}.lock", path.display()));
    let store = FileStore::open_or_create(&path).unwrap();
    store.put_current("k", "v1", &doc(SECRET)).await.unwrap();
    chmod(&lock, 0o660);
    let before = fs::read(&path).unwrap();
    let expected = format!(
        "lock file {} is accessible by group or others (mode 0660); run: chmod 600 {}",
        lock.display(),
        lock.display()
    );
    assert_eq!(FileStore::open(&path).unwrap_err().message(), expected);
    let err = store.read("k").await.unwrap_err();
    assert_eq!(
        (err.kind(), err.message()),
        (ErrorKind::PermissionDenied, expected.as_str())
    );
    let err = store.promote("k", "v1", false).await.unwrap_err();
    assert_eq!(
        (err.kind(), err.message()),
        (ErrorKind::PermissionDenied, expected.as_str())
    );
    assert_eq!(fs::read(&path).unwrap(), before);
}

#[tokio::test(flavor = "multi_thread")]
async fn chmod_hint_quotes_awkward_paths() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("my secrets.json");
    fs::write(&path, b"").unwrap();
    chmod(&path, 0o640);
    let err = FileStore::open(&path).unwrap_err();
    assert!(
        err.message().ends_with(&format!("run: chmod 600 '{}'", path.display())),
        "{err}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn symbolic_links_are_refused() {
    let (dir, path) = setup();
    let real = dir.path().join("real.json");
    fs::write(&real, b"").unwrap();
    chmod(&real, 0o600);
    std::os::unix::fs::symlink(&real, &path).unwrap();
    let err = FileStore::open(&path).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::InvalidInput);
    assert!(err.message().contains("symbolic link"), "{err}");
}

#[tokio::test(flavor = "multi_thread")]
async fn an_empty_file_is_an_empty_store() {
    let (_dir, path) = setup();
    fs::write(&path, b"").unwrap();
    chmod(&path, 0o600);
    let store = FileStore::open(&path).unwrap();
    assert_eq!(store.read("k").await.unwrap_err().kind(), ErrorKind::NotFound);
    store.put_current("k", "v1", &doc("x")).await.unwrap();
    assert_eq!(store.read("k").await.unwrap().current().unwrap().id, "v1");
}

#[tokio::test(flavor = "multi_thread")]
async fn corrupt_file_is_reported_by_path_and_line_without_content() {
    let (_dir, path) = setup();
    let store = FileStore::open_or_create(&path).unwrap();
    store.put_current("k", "v1", &doc(SECRET)).await.unwrap();
    // Truncate the value object mid-password, as a bad hand edit might.
    let text = String::from_utf8(fs::read(&path).unwrap()).unwrap();
    let cut = text.find(SECRET).unwrap() + 10;
    let broken = format!("{}\n}}", &text[..cut]);
    fs::write(&path, &broken).unwrap();
    let line = broken[..cut].lines().count();

    for err in [
        store.read("k").await.unwrap_err(),
        store.stage_pending("k", "v2", &doc("new")).await.unwrap_err(),
        store.check_writable("k").await.unwrap_err(),
    ] {
        assert_eq!(err.kind(), ErrorKind::InvalidInput, "{err}");
        let message = err.to_string();
        assert!(message.contains(&path.display().to_string()), "{message}");
        assert!(message.contains(&format!("line {line}")), "{message}");
        assert!(!message.contains(&SECRET[..10]), "no snippet of the file: {message}");
    }
    assert_eq!(
        fs::read_to_string(&path).unwrap(),
        broken,
        "a corrupt file is not overwritten"
    );

    // Valid JSON of the wrong shape, with a secret in the offending spot.
    fs::write(
        &path,
        format!("{{\"format\":1,\"keys\":{{\"k\":{{\"versions\":\"{SECRET}\"}}}}}}"),
    )
    .unwrap();
    let err = store.read("k").await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::InvalidInput);
    assert!(err.message().contains("line 1"), "{err}");
    assert!(!err.to_string().contains(SECRET), "{err}");
}

#[tokio::test(flavor = "multi_thread")]
async fn stale_temp_files_are_removed_and_writes_leave_none() {
    let (dir, path) = setup();
    let stale = dir.path().join(".secrets.json.rekey-tmp.99999.0");
    fs::write(&stale, "left by a crashed writer").unwrap();
    let unrelated = dir.path().join(".other.json.rekey-tmp.1.0");
    fs::write(&unrelated, "another store's").unwrap();
    let store = FileStore::open_or_create(&path).unwrap();
    for i in 0..10 {
        store.put_current("k", &format!("v{i}"), &doc("x")).await.unwrap();
    }
    assert!(
        !stale.exists(),
        "a stale temp file of this store is swept under the lock"
    );
    assert!(unrelated.exists(), "another store's files are left alone");
    fs::remove_file(&unrelated).unwrap();
    assert!(strays(dir.path()).is_empty(), "{:?}", strays(dir.path()));
}

#[tokio::test(flavor = "multi_thread")]
async fn many_concurrent_writes_through_one_handle() {
    let (dir, path) = setup();
    let store = Arc::new(FileStore::open_or_create(&path).unwrap());
    let mut tasks = Vec::new();
    for i in 0..100 {
        let store = store.clone();
        tasks.push(tokio::spawn(async move {
            let key = format!("app/{i}");
            store.put_current(&key, "v1", &doc(&format!("one-{i}"))).await?;
            store.stage_pending(&key, "v2", &doc(&format!("two-{i}"))).await?;
            store.promote(&key, "v2", false).await?;
            store.mark_revoked(&key, "v1").await
        }));
    }
    for task in tasks {
        task.await.unwrap().unwrap();
    }
    for i in 0..100 {
        let state = store.read(&format!("app/{i}")).await.unwrap();
        let current = state.current().unwrap();
        assert_eq!(current.id, "v2");
        assert_eq!(current.doc.get_str("password"), Some(format!("two-{i}").as_str()));
        assert!(state.previous().unwrap().revoked.is_some());
        assert!(state.pending().is_none());
    }
    // Past 64 KiB commits go to the journal; dropping the handle compacts it: the store
    // file alone is whole again and nothing else is left.
    drop(store);
    let file = parse_file(&path);
    assert_eq!(file["keys"].as_object().unwrap().len(), 100);
    assert_eq!(
        file["keys"]["app/99"]["versions"][1]["stages"],
        serde_json::json!(["current"])
    );
    assert!(strays(dir.path()).is_empty(), "{:?}", strays(dir.path()));
}

#[tokio::test(flavor = "multi_thread")]
async fn many_concurrent_writes_through_two_handles_never_overwrite() {
    let (dir, path) = setup();
    let a = Arc::new(FileStore::open_or_create(&path).unwrap());
    let b = Arc::new(FileStore::open_or_create(&path).unwrap());
    for i in 0..100 {
        let first = if i % 2 == 0 { &a } else { &b };
        first.put_current(&format!("k{i}"), "v1", &doc("old")).await.unwrap();
    }
    // Every stage is decided before any promote: once a winner's promote has landed,
    // nothing is pending, and a stage arriving only then would rightly succeed too (a
    // second rotation, not an overwrite); a fast writer makes that ordering likely.
    let staged = Arc::new(tokio::sync::Barrier::new(200));
    let mut tasks = Vec::new();
    for i in 0..100 {
        for (name, store) in [("a", a.clone()), ("b", b.clone())] {
            let staged = staged.clone();
            tasks.push(tokio::spawn(async move {
                let key = format!("k{i}");
                let id = format!("from-{name}");
                let outcome = store.stage_pending(&key, &id, &doc(&format!("{name}-{i}"))).await;
                staged.wait().await;
                match outcome {
                    Ok(()) => {
                        store.promote(&key, &id, false).await.unwrap();
                        Some((i, name))
                    }
                    Err(e) => {
                        assert_eq!(e.kind(), ErrorKind::Conflict, "{e}");
                        None
                    }
                }
            }));
        }
    }
    let mut winners = vec![None; 100];
    for task in tasks {
        if let Some((i, name)) = task.await.unwrap() {
            assert!(winners[i].is_none(), "two winners for key k{i}");
            winners[i] = Some(name);
        }
    }
    for (i, winner) in winners.iter().enumerate() {
        let winner = winner.unwrap_or_else(|| panic!("no winner for key k{i}"));
        let state = a.read(&format!("k{i}")).await.unwrap();
        let current = state.current().unwrap();
        assert_eq!(current.id, format!("from-{winner}"));
        assert_eq!(current.doc.get_str("password"), Some(format!("{winner}-{i}").as_str()));
        assert_eq!(state.previous().unwrap().id, "v1");
        assert_eq!(state.versions.len(), 2, "the loser left nothing behind");
    }
    drop((a, b));
    parse_file(&path);
    assert!(strays(dir.path()).is_empty(), "{:?}", strays(dir.path()));
}

/// Stages a version by editing the file directly (atomic replace), as another process
/// holding the lock would.
fn stage_by_hand(path: &Path, key: &str, id: &str, password: &str) {
    let mut file = parse_file(path);
    let versions = file["keys"][key]["versions"].as_array_mut().unwrap();
    versions.push(serde_json::json!({
        "id": id, "stages": ["pending"], "created": "2026-11-21T18:00:00Z", "revoked": null,
        "value": {"username": "orders_app", "password": password}
    }));
    let tmp = path.with_extension("by-hand");
    fs::write(&tmp, serde_json::to_vec(&file).unwrap()).unwrap();
    chmod(&tmp, 0o600);
    fs::rename(&tmp, path).unwrap();
}

#[tokio::test(flavor = "multi_thread")]
async fn a_writer_waits_for_the_lock_then_sees_the_holders_change() {
    let (_dir, path) = setup();
    let store = Arc::new(FileStore::open_or_create(&path).unwrap());
    store.put_current("k", "v1", &doc("one")).await.unwrap();
    // Read now, so that a store caching this state would later act on stale data.
    assert!(store.read("k").await.unwrap().pending().is_none());

    // Someone else holds the lock (another handle, another process)...
    let lock = hold_lock(&path);
    let writer = {
        let store = store.clone();
        tokio::spawn(async move { store.stage_pending("k", "mine", &doc("mine")).await })
    };
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(!writer.is_finished(), "the write waits for the lock");
    // ...and stages its own version while holding it.
    stage_by_hand(&path, "k", "theirs", "theirs");
    drop(lock);

    let err = tokio::time::timeout(Duration::from_secs(30), writer)
        .await
        .expect("the write proceeds once the lock is free")
        .unwrap()
        .expect_err("the holder's pending version must be seen");
    assert_eq!(err.kind(), ErrorKind::Conflict, "{err}");
    assert!(err.message().contains("theirs"), "{err}");
    let state = store.read("k").await.unwrap();
    assert_eq!(state.pending().unwrap().id, "theirs", "not overwritten");
    assert_eq!(state.pending().unwrap().doc.get_str("password"), Some("theirs"));
}

#[tokio::test(flavor = "multi_thread")]
async fn history_stays_bounded_on_disk() {
    let (_dir, path) = setup();
    let store = FileStore::open_or_create(&path).unwrap();
    store.put_current("k", "v0", &doc("x")).await.unwrap();
    for i in 1..=30 {
        let id = format!("v{i}");
        store.stage_pending("k", &id, &doc(&format!("pw{i}"))).await.unwrap();
        store.promote("k", &id, true).await.unwrap();
    }
    let state = store.read("k").await.unwrap();
    assert_eq!(state.versions.len(), HISTORY_LIMIT + 2);
    assert_eq!(state.current().unwrap().id, "v30");
    assert_eq!(state.previous().unwrap().id, "v29");
    assert_eq!(
        state.versions.iter().filter(|v| v.stages.is_empty()).count(),
        HISTORY_LIMIT
    );
    assert_eq!(state.versions[0].id, format!("v{}", 29 - HISTORY_LIMIT));
    let versions = parse_file(&path)["keys"]["k"]["versions"].as_array().unwrap().len();
    assert_eq!(versions, HISTORY_LIMIT + 2);
}

#[tokio::test(flavor = "multi_thread")]
async fn semantic_preconditions() {
    let (_dir, path) = setup();
    let store = FileStore::open_or_create(&path).unwrap();
    // Staging on a new key (a target that mints its own first secret) is allowed.
    store.stage_pending("new", "p1", &doc("a")).await.unwrap();
    assert!(store.read("new").await.unwrap().current().is_none());
    store.promote("new", "p1", false).await.unwrap();
    assert!(store.read("new").await.unwrap().previous().is_none());

    store.put_current("k", "v1", &doc("a")).await.unwrap();
    // The same id with another value is refused, not silently kept.
    let err = store.put_current("k", "v1", &doc(SECRET)).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Conflict);
    assert!(!err.to_string().contains(SECRET));
    store.stage_pending("k", "v2", &doc("b")).await.unwrap();
    let err = store.stage_pending("k", "v2", &doc(SECRET)).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Conflict);
    assert!(!err.to_string().contains(SECRET));
    // An id already used by another version cannot be staged again.
    store.promote("k", "v2", false).await.unwrap();
    let err = store.stage_pending("k", "v1", &doc("a")).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Conflict, "{err}");
    // A previous version cannot be promoted back.
    assert_eq!(
        store.promote("k", "v1", false).await.unwrap_err().kind(),
        ErrorKind::Conflict
    );
    // Promoting on a key that does not exist is a conflict too.
    assert_eq!(
        store.promote("nokey", "v1", false).await.unwrap_err().kind(),
        ErrorKind::Conflict
    );
    assert_eq!(
        store.mark_revoked("k", "v9").await.unwrap_err().kind(),
        ErrorKind::NotFound
    );
    // Import after a finished rotation: the old current keeps no stage, previous stays.
    store.put_current("k", "v3", &doc("c")).await.unwrap();
    let state = store.read("k").await.unwrap();
    assert_eq!(state.current().unwrap().id, "v3");
    assert!(state.version("v2").unwrap().stages.is_empty());
    assert_eq!(state.previous().unwrap().id, "v1");
    assert_eq!(state.stage(Stage::Current).unwrap().doc.get_str("password"), Some("c"));

    for (key, id) in [("", "v1"), ("k", "")] {
        let err = store.put_current(key, id, &doc("a")).await.unwrap_err();
        assert_eq!(err.kind(), ErrorKind::InvalidInput);
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn discard_pending_on_disk() {
    let (_dir, path) = setup();
    let store = FileStore::open_or_create(&path).unwrap();
    store.put_current("k", "v1", &doc("first")).await.unwrap();
    store.stage_pending("k", "v2", &doc(SECRET)).await.unwrap();
    store.discard_pending("k", "v2").await.unwrap();
    let file = parse_file(&path);
    let versions = file["keys"]["k"]["versions"].as_array().unwrap();
    assert_eq!(versions.len(), 2);
    assert_eq!(versions[1]["id"], "v2");
    assert_eq!(versions[1]["stages"], serde_json::json!([]), "kept as history");
    assert_eq!(
        versions[1]["value"]["password"], SECRET,
        "the value is kept for the record"
    );
    assert!(versions[1]["revoked"].is_null());
    assert_eq!(versions[0]["stages"], serde_json::json!(["current"]));

    // Refusals name versions, never values.
    store.stage_pending("k", "v3", &doc(SECRET)).await.unwrap();
    let err = store.discard_pending("k", "v2").await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Conflict, "{err}");
    assert!(err.message().contains("\"v3\""), "names the pending version: {err}");
    assert!(!err.to_string().contains(SECRET), "{err}");
    let err = store.discard_pending("nokey", "v1").await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::NotFound, "{err}");
    for (key, id) in [("", "v1"), ("k", "")] {
        let err = store.discard_pending(key, id).await.unwrap_err();
        assert_eq!(err.kind(), ErrorKind::InvalidInput, "{err}");
    }

    // Abandoned rotations are history like any other: bounded.
    store.discard_pending("k", "v3").await.unwrap();
    for i in 4..20 {
        let id = format!("v{i}");
        store.stage_pending("k", &id, &doc("x")).await.unwrap();
        store.discard_pending("k", &id).await.unwrap();
    }
    let state = store.read("k").await.unwrap();
    assert_eq!(state.versions.len(), HISTORY_LIMIT + 1, "history plus current");
    assert_eq!(state.current().unwrap().id, "v1");
    assert_eq!(state.versions.last().unwrap().id, "v19");
}

#[tokio::test(flavor = "multi_thread")]
async fn debug_describe_and_errors_hold_no_secret() {
    let (_dir, path) = setup();
    let store = FileStore::open_or_create(&path).unwrap();
    store.put_current("k", "v1", &doc(SECRET)).await.unwrap();
    let shown = format!("{store:?} {store:#?}");
    assert!(shown.contains("secrets.json"), "{shown}");
    assert!(!shown.contains(SECRET), "{shown}");
    assert_eq!(format!("{store:?}"), format!("FileStore {{ path: {path:?} }}"));
    assert_eq!(store.describe(), format!("file {}", path.display()));
    let caps = store.capabilities();
    assert!(caps.compare_and_set);
    assert!(!caps.write_check_is_a_read);
    let state = store.read("k").await.unwrap();
    assert!(!format!("{state:?}").contains(SECRET));
}

#[tokio::test(flavor = "multi_thread")]
async fn check_writable_and_missing_directory() {
    let (dir, path) = setup();
    let store = FileStore::open_or_create(&path).unwrap();
    store.check_writable("k").await.unwrap();
    assert!(!path.exists(), "check_writable writes nothing");
    assert!(!dir.path().join("secrets.json.lock").exists());

    // The directory vanishes after open (an unmounted file system): preflight and
    // writes say so, and nothing is created.
    let sub = dir.path().join("mounted");
    fs::create_dir(&sub).unwrap();
    let gone = FileStore::open_or_create(sub.join("s.json")).unwrap();
    fs::remove_dir(&sub).unwrap();
    let err = gone.check_writable("k").await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::NotFound, "{err}");
    assert!(err.message().contains("mounted"), "{err}");
    let err = gone.put_current("k", "v1", &doc("a")).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::NotFound, "{err}");
    assert!(
        err.message().contains("mounted") && err.message().contains("does not exist"),
        "{err}"
    );
    assert!(!sub.exists());

    // Without create, preflight of a missing store file names the fix.
    let err = FileStore::open(&path).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::NotFound);
    store.put_current("k", "v1", &doc("a")).await.unwrap();
    let existing = FileStore::open(&path).unwrap();
    existing.check_writable("k").await.unwrap();
}

#[test]
fn config_deserializes_and_rejects_unknown_fields() {
    let config: FileStoreConfig = serde_json::from_str(r#"{"path":"/etc/rekey/secrets.json"}"#).unwrap();
    assert_eq!(config.path, PathBuf::from("/etc/rekey/secrets.json"));
    assert!(serde_json::from_str::<FileStoreConfig>(r#"{"path":"x","mode":"0600"}"#).is_err());

    // As the binary embeds it: an internally tagged enum arm.
    #[derive(serde::Deserialize, Debug)]
    #[serde(tag = "type", rename_all = "lowercase")]
    enum StoreConfig {
        File(FileStoreConfig),
    }
    let StoreConfig::File(config) = serde_json::from_str(r#"{"type":"file","path":"s.json"}"#).unwrap();
    assert_eq!(config.path, PathBuf::from("s.json"));
    assert!(serde_json::from_str::<StoreConfig>(r#"{"type":"file","path":"s.json","pth":1}"#).is_err());
    // Relative to the working directory, where there is no s.json: from_config does not
    // create it, from_config_with(create) may.
    let err = FileStore::from_config(&config).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::NotFound, "{err}");
    assert!(err.message().starts_with("store file s.json does not exist"), "{err}");
    let store = FileStore::from_config_with(&config, true).unwrap();
    assert_eq!(store.path(), Path::new("s.json"));
    assert!(!Path::new("s.json").exists());
}
