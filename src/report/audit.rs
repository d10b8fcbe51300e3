//! The audit log: one JSON line per step (run id, credential, step, outcome, UTC time,
//! duration). It holds names, ids and error messages, never a secret value.

use crate::engine::event::{Event, Outcome, Reporter};
use serde::Serialize;
use std::fs::{File, OpenOptions};
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;

/// Appends step events to a JSON-lines file (created with mode 0600).
pub struct AuditLog {
    file: Mutex<File>,
    path: PathBuf,
    command: &'static str,
    warned: AtomicBool,
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

impl AuditLog {
    /// Opens (creating) the log for appending.
    pub fn open(path: &Path, command: &'static str) -> std::io::Result<AuditLog> {
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir)?;
        }
        let file = OpenOptions::new().create(true).append(true).mode(0o600).open(path)?;
        Ok(AuditLog {
            file: Mutex::new(file),
            path: path.to_path_buf(),
            command,
            warned: AtomicBool::new(false),
        })
    }
}

impl Reporter for AuditLog {
    fn event(&self, event: &Event) {
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
        let written = self.file.lock().map(|mut f| f.write_all(text.as_bytes()));
        if !matches!(written, Ok(Ok(()))) && !self.warned.swap(true, Ordering::Relaxed) {
            eprintln!("warning: cannot write audit log {}", self.path.display());
        }
    }
}
