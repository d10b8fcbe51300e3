//! The audit log: one JSON line per step (run id, credential, step, outcome, UTC time,
//! duration). It holds names, ids and error messages, never a secret value.
//!
//! The log is part of a run's result: it is opened without following symlinks, must be
//! private (mode 0600 or stricter; a looser existing file is refused with the fix), and a
//! write that fails mid-run is remembered so that the run exits 1 with "audit records
//! missing" once every credential has reached a consistent point.

use crate::engine::event::{Event, Outcome, Reporter};
use serde::Serialize;
use std::fs::{File, OpenOptions};
use std::io::Write;
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Mutex;

/// Appends step events to a JSON-lines file (created with mode 0600).
pub struct AuditLog {
    file: Mutex<File>,
    path: PathBuf,
    command: &'static str,
    warned: AtomicBool,
    lost: AtomicU64,
}

#[derive(Serialize)]
struct Line<'a> {
    ts: String,
    run_id: &'a str,
    command: &'static str,
    credential: &'a str,
    step: &'static str,
    outcome: &'static str,
    duration_ms: f64,
    #[serde(skip_serializing_if = "Option::is_none")]
    kind: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    message: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    detail: Option<&'a str>,
}

/// Why the audit log cannot be opened; the message says how to fix it.
#[derive(Debug, thiserror::Error)]
pub enum AuditOpenError {
    /// The path is a symbolic link (refused: it could point anywhere).
    #[error("audit log {0} is a symbolic link; point `audit_log` at the real file")]
    Symlink(PathBuf),
    /// The existing file is readable or writable by group or others.
    #[error("audit log {path} has mode {mode:04o}, readable by others; fix: chmod 600 {path}")]
    LoosePermissions {
        /// The file.
        path: PathBuf,
        /// Its permission bits.
        mode: u32,
    },
    /// The operating system refused.
    #[error("cannot open audit log {path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The error.
        source: std::io::Error,
    },
}

impl AuditLog {
    /// Opens (creating, mode 0600) the log for appending. Refuses a symbolic link and an
    /// existing file that group or others may read or write.
    pub fn open(path: &Path, command: &'static str) -> Result<AuditLog, AuditOpenError> {
        let io = |source| AuditOpenError::Io {
            path: path.to_path_buf(),
            source,
        };
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).map_err(io)?;
        }
        let file = OpenOptions::new()
            .create(true)
            .append(true)
            .mode(0o600)
            .custom_flags(libc::O_NOFOLLOW)
            .open(path)
            .map_err(|e| {
                if e.raw_os_error() == Some(libc::ELOOP) {
                    AuditOpenError::Symlink(path.to_path_buf())
                } else {
                    io(e)
                }
            })?;
        let mode = file.metadata().map_err(io)?.mode() & 0o777;
        if mode & 0o077 != 0 {
            return Err(AuditOpenError::LoosePermissions {
                path: path.to_path_buf(),
                mode,
            });
        }
        Ok(AuditLog {
            file: Mutex::new(file),
            path: path.to_path_buf(),
            command,
            warned: AtomicBool::new(false),
            lost: AtomicU64::new(0),
        })
    }

    /// How many records could not be written (0 when the log is complete).
    pub fn records_lost(&self) -> u64 {
        self.lost.load(Ordering::SeqCst)
    }

    /// The log's path.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

impl AuditLog {
    fn append(&self, text: &str) {
        let written = self
            .file
            .lock()
            .map(|mut f| f.write_all(text.as_bytes()).and_then(|()| f.flush()));
        if !matches!(written, Ok(Ok(()))) {
            self.lost.fetch_add(1, Ordering::SeqCst);
            if !self.warned.swap(true, Ordering::Relaxed) {
                eprintln!(
                    "warning: cannot write audit log {}; the run goes on to a consistent point and exits 1",
                    self.path.display()
                );
            }
        }
    }
}

#[derive(Serialize)]
struct LookupLine<'a> {
    ts: String,
    run_id: &'a str,
    command: &'static str,
    step: &'static str,
    fingerprint: &'a str,
    matched: Option<&'a str>,
}

impl Reporter for AuditLog {
    fn event(&self, event: &Event) {
        if let Event::LeakLookup {
            run_id,
            fingerprint,
            matched,
        } = event
        {
            let line = LookupLine {
                ts: humantime::format_rfc3339_millis(std::time::SystemTime::now()).to_string(),
                run_id,
                command: self.command,
                step: "leaked-lookup",
                fingerprint,
                matched: matched.as_deref(),
            };
            let mut text = serde_json::to_string(&line).expect("audit line serializes");
            text.push('\n');
            self.append(&text);
            return;
        }
        let Event::Step {
            run_id,
            credential,
            record,
        } = event
        else {
            return;
        };
        let (outcome, kind, message) = match &record.outcome {
            Outcome::Ok => ("ok", None, None),
            Outcome::Skipped { reason } => ("skipped", None, Some(reason.as_str())),
            Outcome::Failed { kind, message } => ("failed", Some(kind.as_str()), Some(message.as_str())),
        };
        let line = Line {
            ts: humantime::format_rfc3339_millis(record.started).to_string(),
            run_id,
            command: self.command,
            credential,
            step: record.step.as_str(),
            outcome,
            duration_ms: (record.duration.as_secs_f64() * 1e6).round() / 1e3,
            kind,
            message,
            detail: record.detail.as_deref(),
        };
        let mut text = serde_json::to_string(&line).expect("audit line serializes");
        text.push('\n');
        self.append(&text);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn symlinked_audit_log_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let real = dir.path().join("real.jsonl");
        std::fs::write(&real, "").unwrap();
        std::fs::set_permissions(&real, std::fs::Permissions::from_mode(0o600)).unwrap();
        let link = dir.path().join("audit.jsonl");
        std::os::unix::fs::symlink(&real, &link).unwrap();
        let err = AuditLog::open(&link, "rotate").err().expect("refused");
        assert!(matches!(err, AuditOpenError::Symlink(_)), "{err}");
    }

    #[test]
    fn loose_existing_audit_log_is_refused_with_the_fix() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("audit.jsonl");
        std::fs::write(&path, "").unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
        let err = AuditLog::open(&path, "rotate").err().expect("refused");
        assert!(err.to_string().contains("chmod 600"), "{err}");
    }

    #[test]
    fn new_audit_log_is_private() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("sub/audit.jsonl");
        let log = AuditLog::open(&path, "rotate").unwrap();
        assert_eq!(std::fs::metadata(&path).unwrap().mode() & 0o777, 0o600);
        assert_eq!(log.records_lost(), 0);
    }

    #[test]
    fn failed_writes_are_counted() {
        // /dev/full accepts the open and fails every write with ENOSPC, as a full disk.
        let log = AuditLog {
            file: Mutex::new(OpenOptions::new().append(true).open("/dev/full").unwrap()),
            path: PathBuf::from("/dev/full"),
            command: "rotate",
            warned: AtomicBool::new(false),
            lost: AtomicU64::new(0),
        };
        let record = crate::engine::event::StepRecord {
            step: crate::engine::event::Step::Stage,
            outcome: Outcome::Ok,
            detail: None,
            started: std::time::SystemTime::now(),
            duration: std::time::Duration::ZERO,
        };
        let event = Event::Step {
            run_id: "r".into(),
            credential: "c".into(),
            record,
        };
        log.event(&event);
        log.event(&event);
        assert_eq!(log.records_lost(), 2);
    }
}
