//! Local, per-credential locks: one file per credential, held with `flock` for the run.

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

/// Held locks; dropping releases them.
#[derive(Debug)]
pub struct HeldLocks(#[allow(dead_code)] Vec<File>);

/// Takes every credential's lock without waiting; all or none.
pub fn acquire_all(dir: &Path, credentials: &[String]) -> Result<HeldLocks, LockError> {
    let mut held = Vec::with_capacity(credentials.len());
    for name in credentials {
        let path = dir.join(format!("{name}.lock"));
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
