//! The incident record: what leaked, what was done, when, by whom, and what remains
//! open, for a status update, a customer notification or a CERT-In/GDPR report. Written
//! as Markdown (`--report FILE.md`) or JSON (any other name); never a secret value, only
//! fingerprints (`sha256:` + 12 hex digits).

use crate::engine::event::Outcome;
use crate::engine::{RunReport, Status};
use crate::incident::Lookup;
use serde_json::{json, Value};
use std::fmt::Write;
use std::time::SystemTime;

/// Everything the record says.
pub struct IncidentRecord<'a> {
    /// A unique id for the incident (the run id).
    pub incident_id: String,
    /// When the responder started rekey (detection time as far as rekey knows).
    pub detected: SystemTime,
    /// Who ran it: `user@host`.
    pub operator: String,
    /// What the leaked artefact matched (absent for `rotate --leaked NAME`).
    pub lookup: Option<&'a Lookup>,
    /// The incident rotation, when one ran.
    pub run: Option<&'a RunReport>,
    /// The process exit code.
    pub exit_code: i32,
}

/// `user@host` of the operator, from the environment and the kernel's host name.
pub fn operator() -> String {
    let user = std::env::var("USER")
        .or_else(|_| std::env::var("LOGNAME"))
        .unwrap_or_else(|_| format!("uid {}", current_uid()));
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_owned())
        .unwrap_or_else(|_| "unknown-host".to_owned());
    format!("{user}@{host}")
}

fn current_uid() -> u32 {
    use std::os::unix::fs::MetadataExt;
    std::fs::metadata("/proc/self").map(|m| m.uid()).unwrap_or(u32::MAX)
}

fn ts(t: SystemTime) -> String {
    humantime::format_rfc3339_seconds(t).to_string()
}

impl IncidentRecord<'_> {
    /// Whether every matched credential is contained (rotated and proven, or already dead).
    fn contained(&self) -> bool {
        self.exit_code == 0
    }

    /// A paste-ready summary for a status update.
    pub fn summary(&self) -> String {
        let rotated: Vec<&str> = self
            .run
            .map(|r| {
                r.credentials
                    .iter()
                    .filter(|c| matches!(c.status, Status::Rotated | Status::Revoked))
                    .map(|c| c.name.as_str())
                    .collect()
            })
            .unwrap_or_default();
        let failed: Vec<String> = self
            .run
            .map(|r| r.credentials.iter().filter_map(|c| c.error_line()).collect())
            .unwrap_or_default();
        let sessions: u64 = self
            .run
            .map(|r| r.credentials.iter().map(|c| c.sessions_terminated).sum())
            .unwrap_or(0);
        let dead = self
            .lookup
            .map(|l| l.matches.iter().filter(|m| m.already_dead()).count())
            .unwrap_or(0);
        let mut text = format!(
            "Incident {}: a credential leak was handled with rekey starting {} by {}. ",
            self.incident_id,
            ts(self.detected),
            self.operator
        );
        if rotated.is_empty() {
            text.push_str("No credential needed rotating. ");
        } else {
            let _ = write!(
                text,
                "{} credential(s) were replaced and the leaked secret was proved refused by the target: {}. ",
                rotated.len(),
                rotated.join(", ")
            );
        }
        if sessions > 0 {
            let _ = write!(text, "{sessions} session(s) using the leaked secret were ended. ");
        }
        if dead > 0 {
            let _ = write!(
                text,
                "{dead} match(es) were of secrets already revoked earlier; they were re-checked and are refused. "
            );
        }
        if self.contained() {
            let _ = write!(text, "Contained at {}.", ts(SystemTime::now()));
        } else {
            let _ = write!(text, "NOT fully contained; open: {}.", failed.join("; "));
        }
        text
    }

    /// The record as JSON.
    pub fn to_json(&self) -> Value {
        let candidates = self.lookup.map(|l| {
            let matched: Vec<Value> = l
                .matches
                .iter()
                .map(|m| {
                    json!({
                        "fingerprint": m.fingerprint,
                        "found_as": m.origin,
                        "credential": m.credential,
                        "stage": m.stage.as_str(),
                        "version": m.version,
                        "already_dead_since": m.revoked.map(ts),
                    })
                })
                .collect();
            json!({ "matched": matched, "unmatched": l.unmatched })
        });
        json!({
            "schema_version": 1,
            "kind": "incident",
            "incident_id": self.incident_id,
            "detected": ts(self.detected),
            "operator": self.operator,
            "leaked": candidates,
            "credentials": self.run.map(|r| &r.credentials),
            "summary": self.summary(),
            "exit_code": self.exit_code,
        })
    }

    /// The record as Markdown.
    pub fn to_markdown(&self) -> String {
        let mut md = String::new();
        let _ = writeln!(md, "# Incident record {}\n", self.incident_id);
        let _ = writeln!(md, "- **Detected (rekey started):** {}", ts(self.detected));
        let _ = writeln!(md, "- **Operator:** {}", self.operator);
        let _ = writeln!(
            md,
            "- **Status:** {}\n",
            if self.contained() {
                "contained"
            } else {
                "NOT fully contained"
            }
        );
        let _ = writeln!(md, "## Summary\n\n{}\n", self.summary());
        if let Some(lookup) = self.lookup {
            let _ = writeln!(md, "## What leaked\n");
            let _ = writeln!(md, "| fingerprint | found as | credential | stage | version | note |");
            let _ = writeln!(md, "|---|---|---|---|---|---|");
            for m in &lookup.matches {
                let note = match m.revoked {
                    Some(t) if m.already_dead() => format!("already dead since {}", ts(t)),
                    _ => String::new(),
                };
                let _ = writeln!(
                    md,
                    "| `{}` | {} | {} | {} | `{}` | {} |",
                    m.fingerprint, m.origin, m.credential, m.stage, m.version, note
                );
            }
            for f in &lookup.unmatched {
                let _ = writeln!(md, "| `{f}` | | no configured credential | | | |");
            }
            md.push('\n');
        }
        if let Some(run) = self.run {
            let _ = writeln!(md, "## Credentials\n");
            for c in &run.credentials {
                let _ = writeln!(md, "### {} — {}\n", c.name, c.status.as_str());
                let _ = writeln!(md, "- **Target:** {}", c.target);
                if let Some(strategy) = c.strategy {
                    let _ = writeln!(md, "- **Strategy:** {strategy}");
                }
                let _ = writeln!(md, "- **Store:** {} key `{}`", c.store, c.key);
                if let Some(v) = &c.previous_version {
                    let _ = writeln!(
                        md,
                        "- **Old version:** `{v}` ({})",
                        c.previous_fingerprint.as_deref().unwrap_or("-")
                    );
                }
                if let Some(v) = &c.version {
                    let _ = writeln!(
                        md,
                        "- **New version (now current):** `{v}` ({})",
                        c.fingerprint.as_deref().unwrap_or("-")
                    );
                }
                let _ = writeln!(md, "- **Sessions ended:** {}", c.sessions_terminated);
                if let Some(line) = c.error_line() {
                    let _ = writeln!(md, "- **Open:** {line}");
                }
                let _ = writeln!(md, "\n| time (UTC) | step | outcome | took | detail |");
                let _ = writeln!(md, "|---|---|---|---|---|");
                for s in &c.steps {
                    let (outcome, detail) = match &s.outcome {
                        Outcome::Ok => ("ok", s.detail.clone().unwrap_or_default()),
                        Outcome::Skipped { reason } => ("skipped", reason.clone()),
                        Outcome::Failed { kind, message } => ("FAILED", format!("{}: {message}", kind.label())),
                    };
                    let _ = writeln!(
                        md,
                        "| {} | {} | {} | {} ms | {} |",
                        humantime::format_rfc3339_millis(s.started),
                        s.step.as_str(),
                        outcome,
                        s.duration.as_millis(),
                        detail.replace('|', "\\|")
                    );
                }
                md.push('\n');
            }
        }
        md
    }
}
