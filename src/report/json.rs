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

use crate::engine::event::{Event, Reporter, StepRecord};
use crate::engine::{CredentialReport, RunReport};
use serde::Serialize;
use serde_json::{json, Map, Value};
use std::collections::{BTreeMap, HashMap};
use std::io::Write;
use std::path::Path;
use std::sync::Mutex;

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
        let status = c["status"].as_str().unwrap_or_default().to_owned();
        count(&mut counts, status, c["error"]["kind"].as_str());
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
    let mut out = Vec::new();
    write(&mut out, run, exit_code, None).expect("writing to memory");
    String::from_utf8(out).expect("JSON is UTF-8")
}

/// [`render`] written to `out` as it is made, without holding the whole document:
/// each credential's part comes from `collected` when it holds it (rendered when the
/// credential finished, with the step records the run no longer keeps), else from its
/// report.
pub fn write(
    out: &mut dyn Write,
    run: &RunReport,
    exit_code: i32,
    collected: Option<&Collector>,
) -> std::io::Result<()> {
    write_envelope(out, run, run_extra(run), exit_code, collected)
}

fn run_extra(run: &RunReport) -> Map<String, Value> {
    let mut extra = Map::new();
    extra.insert("run_id".into(), run.run_id.clone().into());
    extra.insert("dry_run".into(), run.dry_run.into());
    extra.insert("started".into(), run.started.clone().into());
    extra.insert("duration_ms".into(), run.duration_ms.into());
    extra
}

/// [`render`] plus the incident record (`incident`), for incident runs: `-o json` prints
/// the same content as `--report FILE.json`.
pub fn render_incident(run: &RunReport, exit_code: i32, incident: Value) -> String {
    let mut extra = run_extra(run);
    extra.insert("incident".into(), incident);
    let mut out = Vec::new();
    write_envelope(&mut out, run, extra, exit_code, None).expect("writing to memory");
    String::from_utf8(out).expect("JSON is UTF-8")
}

/// The envelope of a run, as [`envelope`] would print it, each credential's part
/// written in turn: the envelope around an empty `credentials` list is made first, and
/// the parts go where its `[]` is.
fn write_envelope(
    out: &mut dyn Write,
    run: &RunReport,
    extra: Map<String, Value>,
    exit_code: i32,
    collected: Option<&Collector>,
) -> std::io::Result<()> {
    let mut summary: BTreeMap<String, usize> = COUNTED.iter().map(|k| ((*k).to_owned(), 0)).collect();
    summary.insert("total".into(), run.credentials.len());
    for c in &run.credentials {
        count(
            &mut summary,
            status_name(c.status),
            c.error.as_ref().map(|e| e.kind.as_str()),
        );
    }
    let frame = to_text(&Envelope {
        schema_version: SCHEMA_VERSION,
        command: run.command,
        extra,
        summary,
        credentials: Vec::new(),
        exit_code,
        error: None,
    });
    // The top level's keys are the only lines indented by two spaces.
    const EMPTY: &str = "\n  \"credentials\": []";
    let at = frame.find(EMPTY).expect("the envelope has its credentials");
    out.write_all(&frame.as_bytes()[..at])?;
    if run.credentials.is_empty() {
        out.write_all(EMPTY.as_bytes())?;
    } else {
        out.write_all(b"\n  \"credentials\": [")?;
        for (i, report) in run.credentials.iter().enumerate() {
            out.write_all(if i == 0 { b"\n    " } else { b",\n    " })?;
            match collected.and_then(|c| c.part(&report.name)) {
                Some(text) => write_pretty(out, &text, 2)?,
                None => {
                    let mut value = credential(report);
                    if run.command == "status" {
                        value["state"] = crate::engine::inspection::status_state(report).into();
                    }
                    write_pretty(out, &value.to_string(), 2)?;
                }
            }
        }
        out.write_all(b"\n  ]")?;
    }
    out.write_all(&frame.as_bytes()[at + EMPTY.len()..])
}

/// A status as its JSON name (`not-due`).
fn status_name(status: crate::engine::Status) -> String {
    match serde_json::to_value(status) {
        Ok(Value::String(name)) => name,
        _ => String::new(),
    }
}

/// Adds one credential to `summary`: its status (`not-due` counted as `not_due`) and,
/// among the failed, whether it only met another run (`busy`) or an interruption.
fn count(summary: &mut BTreeMap<String, usize>, status: String, error_kind: Option<&str>) {
    if !status.is_empty() {
        *summary.entry(status.replace('-', "_")).or_default() += 1;
    }
    match error_kind {
        Some("busy") => *summary.entry("busy".into()).or_default() += 1,
        Some("interrupted") => *summary.entry("interrupted".into()).or_default() += 1,
        _ => {}
    }
}

/// Writes compact JSON `text` (no whitespace outside strings, as `Value::to_string`
/// makes it) as `serde_json::to_string_pretty` would, nested `depth` levels deep: the
/// same bytes as the value printed in place inside a pretty document.
fn write_pretty(out: &mut dyn Write, text: &str, depth: usize) -> std::io::Result<()> {
    let bytes = text.as_bytes();
    let mut pretty = Vec::with_capacity(bytes.len() * 2);
    let mut level = depth;
    let newline = |pretty: &mut Vec<u8>, level: usize| {
        pretty.push(b'\n');
        pretty.resize(pretty.len() + 2 * level, b' ');
    };
    let (mut in_string, mut escaped) = (false, false);
    let mut i = 0;
    while i < bytes.len() {
        let b = bytes[i];
        i += 1;
        if in_string {
            pretty.push(b);
            match (escaped, b) {
                (true, _) => escaped = false,
                (false, b'\\') => escaped = true,
                (false, b'"') => in_string = false,
                _ => {}
            }
            continue;
        }
        match b {
            b'"' => {
                in_string = true;
                pretty.push(b);
            }
            b'{' | b'[' => {
                pretty.push(b);
                // An empty object or array stays `{}` / `[]`.
                if matches!(bytes.get(i), Some(b'}' | b']')) {
                    pretty.push(bytes[i]);
                    i += 1;
                } else {
                    level += 1;
                    newline(&mut pretty, level);
                }
            }
            b'}' | b']' => {
                level -= 1;
                newline(&mut pretty, level);
                pretty.push(b);
            }
            b',' => {
                pretty.push(b',');
                newline(&mut pretty, level);
            }
            b':' => pretty.extend_from_slice(b": "),
            _ => pretty.push(b),
        }
    }
    out.write_all(&pretty)
}

/// Renders each credential's part of the `-o json` document when the credential is done
/// (a reporter), and keeps it as compact text until the document is written: the run
/// then need not keep every credential's step records until its end.
#[derive(Default)]
pub struct Collector {
    parts: Mutex<HashMap<String, Box<str>>>,
}

impl Collector {
    /// The part of credential `name`, if it finished in this run.
    fn part(&self, name: &str) -> Option<Box<str>> {
        self.parts.lock().unwrap_or_else(|p| p.into_inner()).get(name).cloned()
    }
}

impl Reporter for Collector {
    fn event(&self, event: &Event) {
        if let Event::CredentialDone(report) = event {
            let text = credential(report).to_string().into_boxed_str();
            self.parts
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .insert(report.name.clone(), text);
        }
    }
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

    /// A run of three credentials: rotated (a deferred revocation skipped), failed (a
    /// message with quotes, braces and a newline), planned with items.
    fn sample_run(reporter: std::sync::Arc<dyn crate::engine::Reporter>) -> RunReport {
        use crate::engine::inspection::{PlanItem, PlanStep};
        use crate::engine::recorder::Recorder;
        use crate::engine::{FailureKind, Status, Step};
        let mut a = Recorder::new("run", reporter.clone(), "a", "t".into(), "s".into(), "k/a");
        a.ok(Step::Stage, "version 1");
        a.skipped(Step::Revoke, "deferred: grace period {1h}");
        a.report.version = Some("v1".into());
        a.report.warnings = vec!["a \"quoted\" warning, with: colon".into()];
        let a = a.finish(Ok(Status::Rotated));
        let mut b = Recorder::new("run", reporter.clone(), "b", "t".into(), "s".into(), "k/b");
        let failed = b.fail(
            Step::Apply,
            FailureKind::Busy,
            "it said \"no\" {x: [1, 2]}\nand \\ more",
        );
        let b = b.finish(Err(failed));
        let mut c = Recorder::new("run", reporter, "c", "t".into(), "s".into(), "k/c");
        c.ok(Step::Preflight, "é ünïcode ✓");
        c.report.plan = vec![PlanItem::new(PlanStep::Apply, "set it").warning()];
        let c = c.finish(Ok(Status::Planned));
        RunReport {
            run_id: "r".into(),
            command: "rotate",
            dry_run: false,
            started: "2026-11-30T00:00:00Z".into(),
            duration_ms: 12,
            credentials: vec![a, b, c],
        }
    }

    #[test]
    fn the_written_document_is_the_envelope_byte_for_byte() {
        let run = sample_run(std::sync::Arc::new(crate::engine::event::Fanout(Vec::new())));
        let expected = envelope(
            run.command,
            run.credentials.iter().map(credential).collect(),
            run_extra(&run),
            1,
        );
        assert_eq!(render(&run, 1), expected);
        let empty = RunReport {
            credentials: Vec::new(),
            ..run.clone()
        };
        assert_eq!(render(&empty, 0), envelope("rotate", Vec::new(), run_extra(&empty), 0));
    }

    #[test]
    fn collected_parts_stand_for_the_step_records_a_summary_drops() {
        let collector = std::sync::Arc::new(Collector::default());
        let full = sample_run(collector.clone());
        let mut compact = full.clone();
        for c in &mut compact.credentials {
            c.compact();
        }
        assert!(compact.credentials[1].steps.is_empty(), "failed steps are dropped");
        assert_eq!(compact.credentials[0].steps.len(), 1, "the skipped step stays");
        let mut out = Vec::new();
        write(&mut out, &compact, 1, Some(&collector)).unwrap();
        assert_eq!(String::from_utf8(out).unwrap(), render(&full, 1));
        // Without the parts, the compact reports lack the steps.
        assert_ne!(render(&compact, 1), render(&full, 1));
    }

    #[test]
    fn compact_text_is_re_indented_as_the_pretty_printer_does() {
        let value = json!({
            "s": "a,b:{c}[d] \"e\" \\ \n ✓",
            "empty_object": {},
            "empty_array": [],
            "nested": [{"x": [1, 2.5, -3e-7, null, true]}, [], [[]], {"y": {}}],
            "n": 0.001
        });
        for depth in [0, 1, 2, 3] {
            let mut out = Vec::new();
            write_pretty(&mut out, &value.to_string(), depth).unwrap();
            let pad = "  ".repeat(depth);
            let expected = serde_json::to_string_pretty(&value)
                .unwrap()
                .replace('\n', &format!("\n{pad}"));
            assert_eq!(String::from_utf8(out).unwrap(), expected, "depth {depth}");
        }
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
