//! The incident record: what leaked, what was done, when, by whom, and what remains
//! open, for a status update, a customer notification or a CERT-In/GDPR report. Written
//! as Markdown (`--report FILE.md`) or JSON (any other name); never a secret value, only
//! fingerprints (`sha256:` + 12 hex digits).

use crate::engine::event::Outcome;
use crate::engine::FailureKind;
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
    /// A leaked value that is a target's admin password, which rekey does not rotate:
    /// what `leaked` said of it (never the value).
    pub open_admin: Option<String>,
}

/// `user@host` of the operator, from the environment and the kernel's host name.
pub fn operator() -> String {
    let user = std::env::var("USER")
        .or_else(|_| std::env::var("LOGNAME"))
        .unwrap_or_else(|_| {
            let uid = current_uid();
            let passwd = std::fs::read_to_string("/etc/passwd").unwrap_or_default();
            user_name_in(&passwd, uid).unwrap_or_else(|| format!("uid {uid}"))
        });
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_owned())
        .unwrap_or_else(|_| "unknown-host".to_owned());
    format!("{user}@{host}")
}

/// The name `/etc/passwd` (its text) gives `uid`.
fn user_name_in(passwd: &str, uid: u32) -> Option<String> {
    passwd.lines().find_map(|line| {
        let mut fields = line.split(':');
        let name = fields.next()?;
        let id = fields.nth(1)?;
        (id.parse() == Ok(uid) && !name.is_empty()).then(|| name.to_owned())
    })
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
        // Replaced and promoted (the leaked secret is refused), but its sessions were not
        // ended: not contained, yet not "nothing rotated" either.
        let sessions_open: Vec<&str> = self
            .run
            .map(|r| {
                r.credentials
                    .iter()
                    .filter(|c| {
                        c.error
                            .as_ref()
                            .is_some_and(|e| e.kind == FailureKind::SessionsNotEnded)
                    })
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
        if rotated.is_empty() && sessions_open.is_empty() {
            text.push_str("No credential needed rotating. ");
        } else if !rotated.is_empty() {
            let _ = write!(
                text,
                "{} credential(s) were replaced and the leaked secret was proved refused by the target: {}. ",
                rotated.len(),
                rotated.join(", ")
            );
        }
        if !sessions_open.is_empty() {
            let _ = write!(
                text,
                "{} credential(s) were replaced and the leaked secret is refused, but sessions opened with it \
                 were NOT ended: {}. ",
                sessions_open.len(),
                sessions_open.join(", ")
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
            let open: Vec<&str> = failed
                .iter()
                .map(String::as_str)
                .chain(self.open_admin.as_deref())
                .collect();
            let _ = write!(text, "NOT fully contained; open: {}.", open.join("; "));
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::report::Failure;
    use crate::engine::{CredentialReport, Step};

    fn credential(name: &str, status: Status, error: Option<(Step, FailureKind)>) -> CredentialReport {
        let mut report = CredentialReport::new(name, "postgres".to_owned(), "file".to_owned(), name);
        report.status = status;
        report.error = error.map(|(step, kind)| Failure {
            step,
            kind,
            message: "the admin may not end sessions".to_owned(),
        });
        report
    }

    fn record(run: &RunReport) -> IncidentRecord<'_> {
        IncidentRecord {
            incident_id: "run-1".to_owned(),
            detected: SystemTime::UNIX_EPOCH,
            operator: "oncall@host".to_owned(),
            lookup: None,
            run: Some(run),
            exit_code: run.exit_code(),
            open_admin: None,
        }
    }

    fn run(credentials: Vec<CredentialReport>) -> RunReport {
        RunReport {
            run_id: "run-1".to_owned(),
            command: "rotate",
            dry_run: false,
            started: "2026-11-30T00:00:00Z".to_owned(),
            duration_ms: 1,
            credentials,
        }
    }

    #[test]
    fn a_rotation_whose_sessions_survive_is_named_as_replaced_and_open() {
        let run = run(vec![
            credential(
                "orders-db",
                Status::Failed,
                Some((Step::Revoke, FailureKind::SessionsNotEnded)),
            ),
            credential("billing-db", Status::Rotated, None),
        ]);
        let summary = record(&run).summary();
        assert!(!summary.contains("No credential needed rotating"), "{summary}");
        assert!(
            summary.contains(
                "1 credential(s) were replaced and the leaked secret was proved refused by the target: billing-db"
            ),
            "{summary}"
        );
        assert!(
            summary.contains("but sessions opened with it were NOT ended: orders-db"),
            "{summary}"
        );
        assert!(
            summary.contains("NOT fully contained; open: orders-db: revoke"),
            "{summary}"
        );

        let only_open = super::tests::run(vec![credential(
            "orders-db",
            Status::Failed,
            Some((Step::Revoke, FailureKind::SessionsNotEnded)),
        )]);
        let summary = record(&only_open).summary();
        assert!(!summary.contains("No credential needed rotating"), "{summary}");
        assert!(!summary.contains("proved refused by the target:"), "{summary}");
    }

    #[test]
    fn a_leaked_admin_password_keeps_the_incident_open() {
        let run = run(vec![credential("billing-db", Status::Rotated, None)]);
        let mut record = record(&run);
        record.open_admin = Some("the admin connection configured for billing-db".to_owned());
        record.exit_code = 1;
        let summary = record.summary();
        assert!(
            summary.contains("NOT fully contained; open: the admin connection configured for billing-db."),
            "{summary}"
        );
    }

    #[test]
    fn nothing_rotated_is_said_so() {
        let run = run(vec![credential(
            "orders-db",
            Status::Failed,
            Some((Step::Preflight, FailureKind::Unreachable)),
        )]);
        let summary = record(&run).summary();
        assert!(summary.contains("No credential needed rotating"), "{summary}");
        assert!(summary.contains("NOT fully contained"), "{summary}");
    }

    #[test]
    fn the_operator_name_comes_from_passwd_when_the_environment_has_none() {
        let passwd = "root:x:0:0:root:/root:/bin/bash\nbroken\napp:x:1000:1000::/home/app:/bin/sh\n";
        assert_eq!(user_name_in(passwd, 0).as_deref(), Some("root"));
        assert_eq!(user_name_in(passwd, 1000).as_deref(), Some("app"));
        assert_eq!(user_name_in(passwd, 7), None);
    }
}
