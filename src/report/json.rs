//! `-o json`: every command prints one JSON envelope on stdout, described by
//! `docs/output.schema.json`:
//!
//! ```json
//! { "schema_version": 1, "command": "rotate", ...,
//!   "credentials": [ { "name": "...", "status": "...", "error": {...}, "steps": [...] } ],
//!   "summary": { "total": 1, "rotated": 1, "failed": 0, ... },
//!   "exit_code": 0 }
//! ```
//!
//! Errors that stop a command before or outside its per-credential work (usage and
//! configuration errors, a busy lock) use the same envelope with `credentials: []` and an
//! `error` object. Field names are a contract for scripts: fields are added, never
//! renamed or removed; an incompatible change would raise `schema_version`.

use crate::engine::event::StepRecord;
use crate::engine::{CredentialReport, RunReport};
use serde::Serialize;
use serde_json::{json, Map, Value};
use std::collections::BTreeMap;
use std::path::Path;

/// The envelope's version; raised only by an incompatible change.
pub const SCHEMA_VERSION: u32 = 1;

/// Counts always present in `summary` (zero when none), besides `total` and any other
/// status seen.
const COUNTED: &[&str] = &[
    "rotated",
    "revoked",
    "not_due",
    "planned",
    "verified",
    "listed",
    "imported",
    "valid",
    "matched",
    "failed",
    "busy",
    "interrupted",
];

#[derive(Serialize)]
struct Envelope<'a> {
    schema_version: u32,
    command: &'a str,
    #[serde(flatten)]
    extra: Map<String, Value>,
    credentials: Vec<Value>,
    summary: BTreeMap<String, usize>,
    exit_code: i32,
    #[serde(skip_serializing_if = "Option::is_none")]
    error: Option<Value>,
}

/// `summary`: `total`, one count per status (`not-due` counted as `not_due`), and among
/// the failed, how many only met another run (`busy`) or an interruption.
fn summary(credentials: &[Value]) -> BTreeMap<String, usize> {
    let mut counts: BTreeMap<String, usize> = COUNTED.iter().map(|k| ((*k).to_owned(), 0)).collect();
    counts.insert("total".into(), credentials.len());
    for c in credentials {
        if let Some(status) = c["status"].as_str() {
            *counts.entry(status.replace('-', "_")).or_default() += 1;
        }
        match c["error"]["kind"].as_str() {
            Some("busy") => *counts.entry("busy".into()).or_default() += 1,
            Some("interrupted") => *counts.entry("interrupted".into()).or_default() += 1,
            _ => {}
        }
    }
    counts
}

/// The envelope around `credentials` (each an object with at least `name`, `status` and
/// `steps`), with `extra` top-level fields.
pub fn envelope(command: &str, credentials: Vec<Value>, extra: Map<String, Value>, exit_code: i32) -> String {
    to_text(&Envelope {
        schema_version: SCHEMA_VERSION,
        command,
        extra,
        summary: summary(&credentials),
        credentials,
        exit_code,
        error: None,
    })
}

fn to_text(envelope: &Envelope<'_>) -> String {
    serde_json::to_string_pretty(envelope).expect("the envelope serializes")
}

/// A run (rotate, plan, verify, status, import) as the envelope. Keeps every field the
/// run report always had (`run_id`, `dry_run`, `started`, `duration_ms`, per credential
/// `status`, `error {step, kind, message}`, `steps[]`...) and adds each step's `started`
/// and `duration_ms`, and for `plan` the typed `plan_steps` (the engine's plan items).
pub fn render(run: &RunReport, exit_code: i32) -> String {
    let mut extra = Map::new();
    extra.insert("run_id".into(), run.run_id.clone().into());
    extra.insert("dry_run".into(), run.dry_run.into());
    extra.insert("started".into(), run.started.clone().into());
    extra.insert("duration_ms".into(), run.duration_ms.into());
    let mut credentials: Vec<Value> = run.credentials.iter().map(credential).collect();
    if run.command == "status" {
        for (value, report) in credentials.iter_mut().zip(&run.credentials) {
            value["state"] = crate::engine::inspection::status_state(report).into();
        }
    }
    envelope(run.command, credentials, extra, exit_code)
}

/// [`render`] plus the incident record (`incident`), for incident runs: `-o json` prints
/// the same content as `--report FILE.json`.
pub fn render_incident(run: &RunReport, exit_code: i32, incident: Value) -> String {
    let mut extra = Map::new();
    extra.insert("run_id".into(), run.run_id.clone().into());
    extra.insert("dry_run".into(), run.dry_run.into());
    extra.insert("started".into(), run.started.clone().into());
    extra.insert("duration_ms".into(), run.duration_ms.into());
    extra.insert("incident".into(), incident);
    let credentials = run.credentials.iter().map(credential).collect();
    envelope(run.command, credentials, extra, exit_code)
}

fn credential(report: &CredentialReport) -> Value {
    let mut value = serde_json::to_value(report).expect("a credential report serializes");
    value["steps"] = Value::Array(report.steps.iter().map(step).collect());
    if !report.plan.is_empty() {
        // `plan` stays the prose lines it always was; `plan_steps` is the engine's typed
        // items as they are.
        value["plan"] = report.plan.iter().map(|item| item.to_string()).collect();
        let mut items = serde_json::to_value(&report.plan).expect("plan items serialize");
        // Schema version 1 named a warning's step `warning`; it still does (with
        // `warning: true`), so scripts that select `step == "warning"` keep working.
        for item in items.as_array_mut().into_iter().flatten() {
            if item["warning"] == true {
                item["step"] = "warning".into();
            }
        }
        value["plan_steps"] = items;
    }
    value
}

fn step(record: &StepRecord) -> Value {
    let mut value = serde_json::to_value(record).expect("a step serializes");
    value["started"] = humantime::format_rfc3339_millis(record.started).to_string().into();
    // Microsecond resolution: most steps of a local store take well under a millisecond.
    let ms = (record.duration.as_micros() as f64) / 1000.0;
    value["duration_ms"] = json!(ms);
    value
}

/// `error.kind` from the exit code of an error that stopped a command.
fn error_kind(exit_code: i32) -> &'static str {
    match exit_code {
        crate::exit::USAGE => "usage",
        crate::exit::LOCKED => "busy",
        crate::exit::INTERRUPTED => "interrupted",
        _ => "failed",
    }
}

/// An error that stopped `command` before or outside its per-credential work: the
/// envelope with no credentials and `error {kind, message, exit_code}` (kind `usage` for
/// usage and configuration errors, exit 2; `busy`, exit 3; `failed`, exit 1).
pub fn render_error(command: &str, message: &str, exit_code: i32) -> String {
    to_text(&Envelope {
        schema_version: SCHEMA_VERSION,
        command,
        extra: Map::new(),
        summary: summary(&[]),
        credentials: Vec::new(),
        exit_code,
        error: Some(json!({ "kind": error_kind(exit_code), "message": message, "exit_code": exit_code })),
    })
}

/// `leaked` without `--rotate`: what the lookup found. `matches` (each with its
/// `credential`, `stage`, `version`, `fingerprint`...) as before, and each matched
/// credential once in `credentials` with status `matched` and `live` (whether any of its
/// matched versions may still work).
pub fn render_leaked(matches: Vec<Value>, unmatched: &[String], unreadable: &[String], exit_code: i32) -> String {
    let mut credentials: Vec<Value> = Vec::new();
    for m in &matches {
        let Some(name) = m["credential"].as_str() else {
            continue;
        };
        let live = m["already_dead_since"].is_null();
        match credentials.iter_mut().find(|c| c["name"] == name) {
            Some(c) => {
                c["live"] = (c["live"].as_bool().unwrap_or(false) || live).into();
            }
            None => {
                let mut c = json!({ "name": name, "status": "matched", "live": live, "steps": [] });
                for field in ["store", "key"] {
                    if let Some(text) = m[field].as_str() {
                        c[field] = text.into();
                    }
                }
                credentials.push(c);
            }
        }
    }
    let mut extra = Map::new();
    extra.insert("matches".into(), Value::Array(matches));
    extra.insert("unmatched".into(), json!(unmatched));
    extra.insert("unreadable".into(), json!(unreadable));
    envelope("leaked", credentials, extra, exit_code)
}

/// `init`: the file written.
pub fn render_init(path: &Path) -> String {
    let mut extra = Map::new();
    extra.insert("path".into(), path.display().to_string().into());
    envelope("init", Vec::new(), extra, crate::exit::SUCCESS)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plan_items_serialize_as_they_are_and_as_lines() {
        use crate::engine::inspection::{PlanItem, PlanStep};
        let item = PlanItem::new(PlanStep::Apply, "set it on the target").on("postgres role x".into());
        assert_eq!(
            serde_json::to_value(&item).unwrap(),
            json!({"step": "apply", "action": "set it on the target", "target": "postgres role x", "warning": false})
        );
        assert_eq!(item.to_string(), "apply: set it on the target (postgres role x)");
        let warning = PlanItem::new(PlanStep::Check, "sessions will NOT be ended")
            .incident()
            .warning();
        assert_eq!(warning.to_string(), "warning (incident): sessions will NOT be ended");
        let value = serde_json::to_value(&warning).unwrap();
        assert_eq!(
            (value["mode"].as_str(), value["warning"].as_bool()),
            (Some("incident"), Some(true))
        );
        // In the report, a warning's step is `warning`, as schema version 1 always had it.
        let reporter: std::sync::Arc<dyn crate::engine::Reporter> =
            std::sync::Arc::new(crate::engine::event::Fanout(Vec::new()));
        let recorder = crate::engine::recorder::Recorder::new("run", reporter, "x", "t".into(), "s".into(), "k");
        let mut report = recorder.finish(Ok(crate::engine::Status::Planned));
        report.plan = vec![item, warning];
        let value = credential(&report);
        assert_eq!(value["plan_steps"][0]["step"], "apply");
        assert_eq!(value["plan_steps"][1]["step"], "warning");
        assert_eq!(value["plan_steps"][1]["warning"], true);
    }

    #[test]
    fn error_envelope_keeps_the_old_fields() {
        let v: Value = serde_json::from_str(&render_error("rotate", "bad", 2)).unwrap();
        assert_eq!(v["schema_version"], 1);
        assert_eq!(v["command"], "rotate");
        assert_eq!(v["error"]["message"], "bad");
        assert_eq!(v["error"]["exit_code"], 2);
        assert_eq!(v["error"]["kind"], "usage");
        assert_eq!(v["exit_code"], 2);
        assert_eq!(v["credentials"], json!([]));
        assert_eq!(v["summary"]["total"], 0);
        assert_eq!(v["summary"]["failed"], 0);
    }

    #[test]
    fn summary_counts_every_status() {
        let creds = vec![
            json!({"name": "a", "status": "rotated", "steps": []}),
            json!({"name": "b", "status": "not-due", "steps": []}),
            json!({"name": "c", "status": "failed", "error": {"kind": "busy"}, "steps": []}),
        ];
        let s = summary(&creds);
        assert_eq!(s["total"], 3);
        assert_eq!(s["rotated"], 1);
        assert_eq!(s["not_due"], 1);
        assert_eq!(s["failed"], 1);
        assert_eq!(s["busy"], 1);
        assert_eq!(s["verified"], 0);
    }
}
