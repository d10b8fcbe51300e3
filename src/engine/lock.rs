//! Local, per-credential locks: one file per credential, held with `flock` for the run.
//!
//! A credential's lock file is `<lock_dir>/<name>.rekey-lock` ([`lock_path`]). The suffix
//! keeps it apart from every file a file store uses: the store file itself (the
//! configuration refuses a store path that is a lock file path) and the store's sidecar
//! lock `<path>.lock`, which a lock named `<name>.lock` could be (a credential named
//! after the store file, with `lock_dir` the store's directory, then waited on its own
//! lock forever).

use std::fs::{File, OpenOptions, TryLockError};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

/// Why the locks could not be taken.
#[derive(Debug, thiserror::Error)]
pub enum LockError {
    /// Another process holds the credential's lock.
    #[error("{credential}: lock: another rekey run holds the lock ({path})")]
    Busy {
        /// The credential.
        credential: String,
        /// The lock file.
        path: PathBuf,
    },
    /// The lock file could not be created.
    #[error("{credential}: lock: cannot open {path}: {reason}")]
    Io {
        /// The credential.
        credential: String,
        /// The lock file.
        path: PathBuf,
        /// The operating system's reason.
        reason: String,
    },
}

/// What follows the credential's name in its lock file's name.
pub const LOCK_SUFFIX: &str = ".rekey-lock";

/// The lock file of `credential` in `dir`: `<dir>/<credential>.rekey-lock`.
pub fn lock_path(dir: &Path, credential: &str) -> PathBuf {
    dir.join(format!("{credential}{LOCK_SUFFIX}"))
}

/// Held locks; dropping releases them.
#[derive(Debug)]
pub struct HeldLocks(#[allow(dead_code)] Vec<File>);

/// Takes every credential's lock, waiting up to `wait` for locks held by another run
/// (polling; all or none at every attempt). Without `wait`, a held lock is
/// [`LockError::Busy`] at once.
pub async fn acquire_all_waiting(
    dir: &Path,
    credentials: &[String],
    wait: Option<std::time::Duration>,
) -> Result<HeldLocks, LockError> {
    let deadline = wait.map(|w| std::time::Instant::now() + w);
    loop {
        match acquire_all(dir, credentials) {
            Err(LockError::Busy { .. }) if deadline.is_some_and(|d| std::time::Instant::now() < d) => {
                tokio::time::sleep(std::time::Duration::from_millis(200)).await;
            }
            other => return other,
        }
    }
}

/// Takes every credential's lock without waiting; all or none.
pub fn acquire_all(dir: &Path, credentials: &[String]) -> Result<HeldLocks, LockError> {
    let mut held = Vec::with_capacity(credentials.len());
    for name in credentials {
        let path = lock_path(dir, name);
        let io = |e: std::io::Error| LockError::Io {
            credential: name.clone(),
            path: path.clone(),
            reason: e.to_string(),
        };
        std::fs::create_dir_all(dir).map_err(io)?;
        let file = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .mode(0o600)
            .open(&path)
            .map_err(io)?;
        match file.try_lock() {
            Ok(()) => held.push(file),
            Err(TryLockError::WouldBlock) => {
                return Err(LockError::Busy {
                    credential: name.clone(),
                    path,
                })
            }
            Err(TryLockError::Error(e)) => return Err(io(e)),
        }
    }
    Ok(HeldLocks(held))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_lock_file_is_never_a_store_sidecar_lock() {
        let dir = Path::new("/srv/rekey");
        assert_eq!(
            lock_path(dir, "orders-db"),
            Path::new("/srv/rekey/orders-db.rekey-lock")
        );
        // A credential named like the store file: its lock is not the store's `<path>.lock`.
        assert_ne!(
            lock_path(dir, "secrets.json"),
            Path::new("/srv/rekey/secrets.json.lock")
        );
        assert!(!lock_path(dir, "x").to_string_lossy().ends_with(".lock"));
    }

    #[test]
    fn second_taker_is_busy() {
        let dir = tempfile::tempdir().unwrap();
        let held = acquire_all(dir.path(), &["a".to_owned()]).unwrap();
        assert!(dir.path().join("a.rekey-lock").exists());
        let err = acquire_all(dir.path(), &["b".to_owned(), "a".to_owned()]).unwrap_err();
        assert!(
            matches!(err, LockError::Busy { ref credential, .. } if credential == "a"),
            "{err}"
        );
        drop(held);
        // Released. (A child process forked elsewhere in this test binary at the moment
        // the lock file was open shares it until the child execs: retry briefly.)
        let mut again = acquire_all(dir.path(), &["a".to_owned(), "b".to_owned()]);
        for _ in 0..100 {
            if again.is_ok() {
                break;
            }
            std::thread::sleep(std::time::Duration::from_millis(20));
            again = acquire_all(dir.path(), &["a".to_owned(), "b".to_owned()]);
        }
        again.unwrap();
    }
}
