//! Every rewrite keeps the store file's owner, group and mode. Needs root (it chowns
//! files to other users and runs a second process as one); the second process is this
//! test binary again (`child_process_entry`, which does nothing unless the parent set its
//! variables).

use rekey_api::{ErrorKind, SecretDoc, Store};
use rekey_file::FileStore;
use std::fs;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

const STORE: &str = "REKEY_FILE_OWNER_CHILD_STORE";
const ID: &str = "REKEY_FILE_OWNER_CHILD_ID";

/// The unprivileged user and group the second process runs as (`nobody`/`nogroup`).
const NOBODY: u32 = 65534;
/// Another unprivileged id, for a group distinct from the owner's.
const OTHER: u32 = 65533;

fn doc(password: &str) -> SecretDoc {
    let mut d = SecretDoc::new();
    d.set("username", "app");
    d.set("password", password);
    d
}

/// `(uid, gid, mode, inode)` of `path`.
fn attributes(path: &Path) -> (u32, u32, u32, u64) {
    let meta = fs::symlink_metadata(path).unwrap();
    (meta.uid(), meta.gid(), meta.mode() & 0o7777, meta.ino())
}

fn chmod(path: &Path, mode: u32) {
    fs::set_permissions(path, fs::Permissions::from_mode(mode)).unwrap();
}

fn lock_path(path: &Path) -> PathBuf {
    PathBuf::from(format!("{}.lock", path.display()))
}

/// Names in `dir` other than the store and lock files.
fn strays(dir: &Path) -> Vec<String> {
    fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n != "secrets.json" && n != "secrets.json.lock")
        .collect()
}

/// Fails unless the tests run as root: they are meaningless otherwise, and must not pass
/// by doing nothing.
fn require_root(dir: &Path) {
    let probe = dir.join("probe");
    fs::write(&probe, b"").unwrap();
    let uid = fs::metadata(&probe).unwrap().uid();
    fs::remove_file(&probe).unwrap();
    assert_eq!(
        uid, 0,
        "these tests need root (they chown files to other users); run them as root"
    );
}

/// A store at `<tempdir>/secrets.json` holding key `k` with current `v1`, written by root.
async fn store_with_one_key() -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    require_root(dir.path());
    let path = dir.path().join("secrets.json");
    let store = FileStore::open_or_create(&path).unwrap();
    store.put_current("k", "v1", &doc("one")).await.unwrap();
    (dir, path)
}

#[tokio::test(flavor = "multi_thread")]
async fn every_write_keeps_owner_group_and_mode() {
    for mode in [0o600, 0o400] {
        let (dir, path) = store_with_one_key().await;
        std::os::unix::fs::chown(&path, Some(NOBODY), Some(OTHER)).unwrap();
        chmod(&path, mode);
        let lock_before = attributes(&lock_path(&path));

        // A handle opened before and one opened after the change, each writing.
        let first = FileStore::open(&path).unwrap();
        let second = FileStore::open(&path).unwrap();
        let mut inode = attributes(&path).3;
        let mut writes = 0;
        for (store, op) in [
            (&first, "stage"),
            (&second, "discard"),
            (&first, "stage again"),
            (&second, "promote"),
            (&first, "mark_revoked"),
            (&second, "import"),
        ] {
            match op {
                "stage" => store.stage_pending("k", "v2", &doc("two")).await.unwrap(),
                "discard" => store.discard_pending("k", "v2").await.unwrap(),
                "stage again" => store.stage_pending("k", "v3", &doc("three")).await.unwrap(),
                "promote" => store.promote("k", "v3", false).await.unwrap(),
                "mark_revoked" => store.mark_revoked("k", "v1").await.unwrap(),
                "import" => store.put_current("k", "v4", &doc("four")).await.unwrap(),
                _ => unreachable!(),
            }
            writes += 1;
            let (uid, gid, found, ino) = attributes(&path);
            assert_ne!(
                ino, inode,
                "{op}: the file was replaced (a rewrite, not an edit in place)"
            );
            inode = ino;
            assert_eq!(
                (uid, gid, found),
                (NOBODY, OTHER, mode),
                "{op} (mode {mode:04o}): owner, group and mode kept"
            );
        }
        assert_eq!(writes, 6);
        assert_eq!(attributes(&lock_path(&path)), lock_before, "lock file untouched");
        let state = FileStore::open(&path).unwrap().read("k").await.unwrap();
        assert_eq!(state.current().unwrap().id, "v4");
        assert!(strays(dir.path()).is_empty(), "{:?}", strays(dir.path()));
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn loose_permissions_are_still_refused_whoever_owns_the_file() {
    let (_dir, path) = store_with_one_key().await;
    std::os::unix::fs::chown(&path, Some(NOBODY), Some(NOBODY)).unwrap();
    let store = FileStore::open(&path).unwrap();
    chmod(&path, 0o640);
    let before = fs::read(&path).unwrap();
    let err = store.stage_pending("k", "v2", &doc("two")).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::PermissionDenied, "{err}");
    assert!(err.message().contains("chmod 600"), "{err}");
    assert_eq!(FileStore::open(&path).unwrap_err().kind(), ErrorKind::PermissionDenied);
    assert_eq!(fs::read(&path).unwrap(), before);
    assert_eq!(attributes(&path).2, 0o640, "mode not changed behind the user's back");

    // Set-id bits are not copied to the file replacing it.
    chmod(&path, 0o4600);
    store.stage_pending("k", "v2", &doc("two")).await.unwrap();
    let (uid, gid, mode, _) = attributes(&path);
    assert_eq!((uid, gid, mode), (NOBODY, NOBODY, 0o600));
}

/// The second process: stages version `$ID` of key `k` in the store at `$STORE` and prints
/// `RESULT ok` or `RESULT <error kind> <message>`.
#[test]
fn child_process_entry() {
    let (Ok(path), Ok(id)) = (std::env::var(STORE), std::env::var(ID)) else {
        return;
    };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    let outcome = runtime.block_on(async {
        let store = FileStore::open(path)?;
        store.stage_pending("k", &id, &doc(&id)).await
    });
    match outcome {
        Ok(()) => println!("RESULT ok"),
        Err(e) => println!("RESULT {} {}", e.kind().as_str(), e.message()),
    }
}

/// Runs [`child_process_entry`] as user and group [`NOBODY`]; its `RESULT` line.
fn stage_as_nobody(path: &Path, id: &str) -> String {
    let output = Command::new(std::env::current_exe().unwrap())
        .args(["--exact", "child_process_entry", "--nocapture", "--test-threads=1"])
        .env(STORE, path)
        .env(ID, id)
        .uid(NOBODY)
        .gid(NOBODY)
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .output()
        .unwrap();
    assert!(output.status.success(), "child failed: {:?}", output.status);
    let stdout = String::from_utf8(output.stdout).unwrap();
    stdout
        .lines()
        // libtest may print its own words before the line.
        .find_map(|l| l.find("RESULT ").map(|at| l[at + "RESULT ".len()..].to_owned()))
        .unwrap_or_else(|| panic!("no RESULT line: {stdout}"))
}

#[tokio::test(flavor = "multi_thread")]
async fn a_writer_that_cannot_give_the_file_back_its_owner_writes_nothing() {
    let (dir, path) = store_with_one_key().await;
    // The unprivileged user may create files in the directory and use the lock file.
    chmod(dir.path(), 0o777);
    std::os::unix::fs::chown(lock_path(&path), Some(NOBODY), Some(NOBODY)).unwrap();

    // Owned by nobody but in root's group, which nobody is not a member of: it can read
    // the file and rename over it, but not give the new file group root.
    std::os::unix::fs::chown(&path, Some(NOBODY), Some(0)).unwrap();
    let before = (fs::read(&path).unwrap(), attributes(&path));
    let result = stage_as_nobody(&path, "v2");
    assert!(
        result.starts_with("permission_denied cannot give the rewritten store file"),
        "{result}"
    );
    assert!(
        result.contains(&format!("{NOBODY}:0")),
        "names owner and group: {result}"
    );
    assert_eq!((fs::read(&path).unwrap(), attributes(&path)), before, "nothing written");
    assert!(
        strays(dir.path()).is_empty(),
        "temp file removed: {:?}",
        strays(dir.path())
    );

    // Its own group: the write goes through, and the owner's read-only mode is kept.
    std::os::unix::fs::chown(&path, Some(NOBODY), Some(NOBODY)).unwrap();
    chmod(&path, 0o400);
    assert_eq!(stage_as_nobody(&path, "v2"), "ok");
    let (uid, gid, mode, ino) = attributes(&path);
    assert_ne!(ino, before.1 .3, "rewritten");
    assert_eq!((uid, gid, mode), (NOBODY, NOBODY, 0o400));
    let state = FileStore::open(&path).unwrap().read("k").await.unwrap();
    assert_eq!(state.pending().unwrap().id, "v2");
}
