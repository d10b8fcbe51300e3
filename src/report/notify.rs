//! `[[notify]]`: after `rotate` and `verify`, one JSON event per webhook whose `on`
//! matches the run, with a Slack-compatible `text`:
//!
//! ```json
//! { "schema_version": 1, "event": "failure", "events": ["failure"], "command": "rotate",
//!   "incident": false, "run_id": "...", "host": "...", "started": "...", "exit_code": 1,
//!   "credentials": [ { "name": "orders-db", "status": "failed",
//!                      "error": { "step": "apply", "kind": "unreachable", "message": "..." },
//!                      "steps": [ { "step": "lock", "status": "ok" }, ... ] } ],
//!   "summary": { "total": 1, "failed": 1, ... },
//!   "text": "rekey rotate on host1: 1 failed (exit 1). orders-db failed at apply ..." }
//! ```
//!
//! The event holds names, version ids, fingerprints, steps and error messages (which the
//! engine keeps free of secrets) and nothing else: no secret, no admin URL, no webhook
//! URL. Delivery is bounded (`timeout` per attempt, `retries` further attempts with
//! backoff, redirects not followed) and never fatal: a notification that cannot be
//! delivered is a warning on stderr and changes neither the run nor its exit code.
//! Proxies from `HTTPS_PROXY`/`HTTP_PROXY`/`NO_PROXY` are honoured.

use crate::config::notify::{Notify, NotifyOn};
use crate::engine::event::Outcome;
use crate::engine::failure::FailureKind;
use crate::engine::{CredentialReport, RunReport, Status};
use rekey_net::error_chain;
use rekey_net::tls::{ClientTls, Roots};
use serde_json::{json, Map, Value};
use std::collections::BTreeMap;
use std::io::Write;
use std::sync::Arc;
use std::time::Duration;

/// The event's version; raised only by an incompatible change.
pub const SCHEMA_VERSION: u32 = 1;

/// Most credentials named in `text` (all are in `credentials`).
const TEXT_CREDENTIALS: usize = 10;
/// The first wait between attempts; doubled each time, at most [`MAX_BACKOFF`].
const FIRST_BACKOFF: Duration = Duration::from_millis(250);
const MAX_BACKOFF: Duration = Duration::from_secs(5);

/// What the run means to a webhook, given its exit code and whether it was an incident.
pub fn events(run: &RunReport, exit_code: i32, incident: bool) -> Vec<NotifyOn> {
    let mut found = Vec::new();
    // `verify` is read-only too (`dry_run`), but its failures are what CI and monitors
    // want to hear about; a plan changes nothing and fails nothing.
    if matches!(run.command, "plan" | "status") {
        return found;
    }
    if exit_code == crate::exit::CREDENTIAL_FAILED {
        found.push(NotifyOn::Failure);
    }
    if run.credentials.iter().any(promoted) {
        found.push(NotifyOn::Rotation);
    }
    if incident && !run.credentials.is_empty() {
        found.push(NotifyOn::Incident);
    }
    found
}

/// Whether a new version was promoted: rotated, or rotated and then a hook or the ending
/// of sessions failed.
fn promoted(c: &CredentialReport) -> bool {
    match c.status {
        Status::Rotated => true,
        Status::Failed => c
            .error
            .as_ref()
            .is_some_and(|e| matches!(e.kind, FailureKind::HookFailed | FailureKind::SessionsNotEnded)),
        _ => false,
    }
}

/// The event one webhook gets: the most urgent of the run's events that it asked for
/// (incident, then failure, then rotation), or none.
pub fn chosen(entry: &Notify, events: &[NotifyOn]) -> Option<NotifyOn> {
    [NotifyOn::Incident, NotifyOn::Failure, NotifyOn::Rotation]
        .into_iter()
        .find(|e| events.contains(e) && entry.on.contains(e))
}

/// Whether a credential is worth listing: not the quiet majority of a scheduled run
/// (not due, verified fine).
fn listed(c: &CredentialReport) -> bool {
    !matches!(
        c.status,
        Status::NotDue | Status::Verified | Status::Listed | Status::Planned
    ) || !c.warnings.is_empty()
        || !c.problems.is_empty()
}

fn status_name(status: Status) -> String {
    serde_json::to_value(status)
        .ok()
        .and_then(|v| v.as_str().map(str::to_owned))
        .unwrap_or_else(|| "unknown".to_owned())
}

fn credential(c: &CredentialReport) -> Value {
    let mut value = Map::new();
    value.insert("name".into(), c.name.clone().into());
    value.insert("status".into(), status_name(c.status).into());
    let mut optional = |key: &str, v: &Option<String>| {
        if let Some(v) = v {
            value.insert(key.into(), v.clone().into());
        }
    };
    optional("version", &c.version);
    optional("fingerprint", &c.fingerprint);
    optional("previous_version", &c.previous_version);
    optional("previous_fingerprint", &c.previous_fingerprint);
    if let Some(e) = &c.error {
        value.insert(
            "error".into(),
            json!({ "step": e.step.as_str(), "kind": e.kind.as_str(), "message": e.message }),
        );
    }
    if !c.problems.is_empty() {
        value.insert("problems".into(), json!(c.problems));
    }
    if !c.warnings.is_empty() {
        value.insert("warnings".into(), json!(c.warnings));
    }
    let steps: Vec<Value> = c
        .steps
        .iter()
        .map(|s| {
            let status = match &s.outcome {
                Outcome::Ok => "ok",
                Outcome::Skipped { .. } => "skipped",
                Outcome::Failed { .. } => "failed",
            };
            json!({ "step": s.step.as_str(), "status": status })
        })
        .collect();
    value.insert("steps".into(), Value::Array(steps));
    Value::Object(value)
}

/// Counts by status (`not-due` as `not_due`), with `total`, and among the failed those
/// that only met another run (`busy`) or an interruption.
fn summary(run: &RunReport) -> BTreeMap<String, usize> {
    let mut counts: BTreeMap<String, usize> = [
        "rotated",
        "revoked",
        "not_due",
        "verified",
        "failed",
        "busy",
        "interrupted",
    ]
    .iter()
    .map(|k| ((*k).to_owned(), 0))
    .collect();
    counts.insert("total".into(), run.credentials.len());
    for c in &run.credentials {
        *counts.entry(status_name(c.status).replace('-', "_")).or_default() += 1;
        match c.error.as_ref().map(|e| e.kind) {
            Some(FailureKind::Busy) => *counts.entry("busy".into()).or_default() += 1,
            Some(FailureKind::Interrupted) => *counts.entry("interrupted".into()).or_default() += 1,
            _ => {}
        }
    }
    counts
}

/// This machine's name (in Kubernetes, the pod's).
fn host() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_owned())
        .ok()
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "unknown-host".to_owned())
}

/// Slack's three escapes (`&`, `<`, `>`), so names and messages cannot become links or
/// mentions.
fn slack_escape(text: &str) -> String {
    text.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;")
}

/// One paragraph: what ran where, the counts, then each listed credential.
fn text(run: &RunReport, exit_code: i32, incident: bool, host: &str, summary: &BTreeMap<String, usize>) -> String {
    let mut out = String::new();
    if incident {
        out.push_str("Incident rotation: ");
    }
    out.push_str(&format!("rekey {} on {host}: ", run.command));
    let counts: Vec<String> = summary
        .iter()
        .filter(|(k, n)| **n > 0 && !matches!(k.as_str(), "total" | "busy" | "interrupted"))
        .map(|(k, n)| format!("{n} {}", k.replace('_', " ")))
        .collect();
    if counts.is_empty() {
        out.push_str("no credential");
    } else {
        out.push_str(&counts.join(", "));
    }
    out.push_str(&format!(" of {} (exit {exit_code}).", summary["total"]));
    let listed: Vec<&CredentialReport> = run.credentials.iter().filter(|c| listed(c)).collect();
    for c in listed.iter().take(TEXT_CREDENTIALS) {
        out.push(' ');
        match (&c.error, c.status) {
            (Some(e), _) if promoted(c) => out.push_str(&format!(
                "{} rotated to version {}, but {} failed ({}): {}.",
                c.name,
                c.version.as_deref().unwrap_or("?"),
                e.step.as_str(),
                e.kind.as_str(),
                e.message.trim_end_matches('.')
            )),
            (Some(e), _) => out.push_str(&format!(
                "{} failed at {} ({}): {}.",
                c.name,
                e.step.as_str(),
                e.kind.as_str(),
                e.message.trim_end_matches('.')
            )),
            (None, Status::Rotated) => {
                out.push_str(&format!("{} rotated", c.name));
                if let Some(v) = &c.version {
                    out.push_str(&format!(" to version {v}"));
                }
                if let Some(f) = &c.fingerprint {
                    out.push_str(&format!(" ({f})"));
                }
                out.push('.');
            }
            (None, status) => {
                out.push_str(&format!("{}: {}", c.name, status.as_str()));
                if let Some(p) = c.problems.first().or(c.warnings.first()) {
                    out.push_str(&format!(" ({})", p.trim_end_matches('.')));
                }
                out.push('.');
            }
        }
    }
    if listed.len() > TEXT_CREDENTIALS {
        out.push_str(&format!(" …and {} more.", listed.len() - TEXT_CREDENTIALS));
    }
    slack_escape(&out.replace(['\n', '\r'], " "))
}

/// The event sent to a webhook that asked for `event`.
pub fn body(run: &RunReport, exit_code: i32, incident: bool, event: NotifyOn, all: &[NotifyOn]) -> Value {
    let host = host();
    let summary = summary(run);
    json!({
        "schema_version": SCHEMA_VERSION,
        "event": event.as_str(),
        "events": all.iter().map(|e| e.as_str()).collect::<Vec<_>>(),
        "command": run.command,
        "incident": incident,
        "run_id": run.run_id,
        "host": host,
        "started": run.started,
        "duration_ms": run.duration_ms,
        "exit_code": exit_code,
        "credentials": run.credentials.iter().filter(|c| listed(c)).map(credential).collect::<Vec<_>>(),
        "text": text(run, exit_code, incident, &host, &summary),
        "summary": summary,
    })
}

/// How one notification ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Delivery {
    /// The webhook, as it may be shown (no path, no token).
    pub to: String,
    /// Attempts made.
    pub attempts: u32,
    /// The answer's status on success, or why it was not delivered.
    pub result: Result<u16, String>,
}

/// Builds the client: rustls with ring, the platform's and Mozilla's roots, no
/// redirects (a webhook that redirects is misconfigured, and the event must not follow
/// it elsewhere).
fn client() -> Result<reqwest::Client, String> {
    let tls = ClientTls::verified(Roots::System)
        .build()
        .map_err(|e| format!("TLS setup failed: {e}"))?;
    reqwest::Client::builder()
        .tls_backend_preconfigured(tls)
        .redirect(reqwest::redirect::Policy::none())
        .user_agent(concat!("rekey/", env!("CARGO_PKG_VERSION")))
        .build()
        .map_err(|e| format!("cannot build the HTTP client: {}", error_chain(&e.without_url())))
}

fn backoff(attempt: u32) -> Duration {
    FIRST_BACKOFF
        .saturating_mul(1u32.checked_shl(attempt).unwrap_or(u32::MAX))
        .min(MAX_BACKOFF)
}

/// Posts `body` to one webhook: `retries + 1` attempts at most, each within `timeout`;
/// transport errors, 408, 429 and 5xx are retried after a backoff, other answers are
/// final.
pub async fn deliver(client: &reqwest::Client, entry: &Notify, body: Arc<Vec<u8>>) -> Delivery {
    let to = entry.shown();
    let mut attempts = 0;
    loop {
        attempts += 1;
        let sent = client
            .post(entry.url.clone())
            .timeout(entry.timeout)
            .header(reqwest::header::CONTENT_TYPE, "application/json")
            .body(body.as_ref().clone())
            .send()
            .await;
        let (retryable, reason) = match sent {
            Ok(answer) if answer.status().is_success() => {
                return Delivery {
                    to,
                    attempts,
                    result: Ok(answer.status().as_u16()),
                }
            }
            Ok(answer) => {
                let status = answer.status();
                let retryable = status.is_server_error() || matches!(status.as_u16(), 408 | 429);
                (retryable, format!("the webhook answered {status}"))
            }
            Err(e) if e.is_timeout() => (
                true,
                format!(
                    "no answer within {}",
                    crate::engine::inspection::short_duration(entry.timeout)
                ),
            ),
            Err(e) => (true, error_chain(&e.without_url())),
        };
        if !retryable || attempts > entry.retries {
            return Delivery {
                to,
                attempts,
                result: Err(reason),
            };
        }
        tokio::time::sleep(backoff(attempts - 1)).await;
    }
}

/// Sends the run's event to every webhook that asked for it, at once, and reports each
/// one that could not be delivered as a warning on stderr. Never fails: the run's
/// result and exit code are already decided.
pub async fn after_run(entries: &[Notify], run: &RunReport, exit_code: i32, incident: bool) -> Vec<Delivery> {
    let events = events(run, exit_code, incident);
    let wanted: Vec<(Notify, NotifyOn)> = entries
        .iter()
        .filter_map(|e| chosen(e, &events).map(|event| (e.clone(), event)))
        .collect();
    if wanted.is_empty() {
        return Vec::new();
    }
    let client = match client() {
        Ok(c) => c,
        Err(e) => {
            let _ = writeln!(
                std::io::stderr(),
                "warning: {} notification(s) not sent: {e}",
                wanted.len()
            );
            return Vec::new();
        }
    };
    let mut bodies: BTreeMap<NotifyOn, Arc<Vec<u8>>> = BTreeMap::new();
    let mut sends = tokio::task::JoinSet::new();
    for (index, (entry, event)) in wanted.into_iter().enumerate() {
        let body = bodies
            .entry(event)
            .or_insert_with(|| {
                Arc::new(serde_json::to_vec(&body(run, exit_code, incident, event, &events)).expect("serializes"))
            })
            .clone();
        let client = client.clone();
        sends.spawn(async move { (index, deliver(&client, &entry, body).await) });
    }
    let mut done = Vec::new();
    while let Some(joined) = sends.join_next().await {
        if let Ok(d) = joined {
            done.push(d);
        }
    }
    done.sort_by_key(|(index, _)| *index);
    let done: Vec<Delivery> = done.into_iter().map(|(_, d)| d).collect();
    let mut err = std::io::stderr().lock();
    for d in &done {
        if let Err(reason) = &d.result {
            let _ = writeln!(
                err,
                "warning: notification to {} not delivered after {} attempt(s): {reason}",
                d.to, d.attempts
            );
        }
    }
    done
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::event::{Step, StepRecord};
    use crate::engine::report::Failure;
    use std::time::SystemTime;

    fn report(name: &str, status: Status, error: Option<(Step, FailureKind, &str)>) -> CredentialReport {
        CredentialReport {
            name: name.into(),
            status,
            target: "postgres role app at 127.0.0.1:5432".into(),
            store: "file secrets.json".into(),
            key: "app/db".into(),
            strategy: Some("single"),
            version: (status == Status::Rotated).then(|| "v2".to_owned()),
            fingerprint: (status == Status::Rotated).then(|| "sha256:0123456789ab".to_owned()),
            previous_version: None,
            previous_fingerprint: None,
            resumed: false,
            sessions_terminated: 0,
            plan: Vec::new(),
            warnings: Vec::new(),
            problems: Vec::new(),
            versions: Vec::new(),
            observed: None,
            next_due: None,
            error: error.map(|(step, kind, message)| Failure {
                step,
                kind,
                message: message.into(),
            }),
            steps: vec![StepRecord {
                step: Step::Lock,
                outcome: Outcome::Ok,
                detail: None,
                started: SystemTime::now(),
                duration: Duration::ZERO,
            }],
            duration_ms: 1,
        }
    }

    fn run(credentials: Vec<CredentialReport>) -> RunReport {
        RunReport {
            run_id: "run-1".into(),
            command: "rotate",
            dry_run: false,
            started: "2026-01-01T00:00:00Z".into(),
            duration_ms: 5,
            credentials,
        }
    }

    fn entry(on: &[NotifyOn]) -> Notify {
        Notify {
            url: reqwest::Url::parse("http://127.0.0.1:9/hook").unwrap(),
            on: on.to_vec(),
            timeout: Duration::from_secs(1),
            retries: 0,
        }
    }

    #[test]
    fn notify_events_of_a_run() {
        let failed = run(vec![
            report(
                "orders-db",
                Status::Failed,
                Some((Step::Preflight, FailureKind::Unreachable, "connection refused")),
            ),
            report("billing-db", Status::Rotated, None),
            report("quiet-db", Status::NotDue, None),
        ]);
        let seen = events(&failed, 1, false);
        assert_eq!(seen, vec![NotifyOn::Failure, NotifyOn::Rotation]);
        assert_eq!(chosen(&entry(&[NotifyOn::Rotation]), &seen), Some(NotifyOn::Rotation));
        assert_eq!(
            chosen(&entry(&[NotifyOn::Rotation, NotifyOn::Failure]), &seen),
            Some(NotifyOn::Failure)
        );
        assert_eq!(chosen(&entry(&[NotifyOn::Incident]), &seen), None);
        let busy = run(vec![report(
            "orders-db",
            Status::Failed,
            Some((Step::Lock, FailureKind::Busy, "held")),
        )]);
        assert!(events(&busy, 3, false).is_empty(), "a busy lock alone is not a failure");
        let hook = run(vec![report(
            "orders-db",
            Status::Failed,
            Some((Step::Hook, FailureKind::HookFailed, "rotated and promoted; hook failed")),
        )]);
        assert_eq!(
            events(&hook, 1, true),
            vec![NotifyOn::Failure, NotifyOn::Rotation, NotifyOn::Incident]
        );
        let mut plan = failed.clone();
        plan.command = "plan";
        plan.dry_run = true;
        assert!(events(&plan, 1, false).is_empty());
        let mut verify = failed.clone();
        verify.command = "verify";
        verify.dry_run = true;
        assert_eq!(events(&verify, 1, false), vec![NotifyOn::Failure, NotifyOn::Rotation]);
    }

    #[test]
    fn notify_body_and_slack_text() {
        let r = run(vec![
            report(
                "orders-db",
                Status::Failed,
                Some((
                    Step::Preflight,
                    FailureKind::Unreachable,
                    "connect <127.0.0.1:1> & refused",
                )),
            ),
            report("billing-db", Status::Rotated, None),
            report("quiet-db", Status::NotDue, None),
        ]);
        let all = events(&r, 1, false);
        let b = body(&r, 1, false, NotifyOn::Failure, &all);
        assert_eq!(b["schema_version"], 1);
        assert_eq!(b["event"], "failure");
        assert_eq!(b["command"], "rotate");
        assert_eq!(b["exit_code"], 1);
        assert_eq!(b["summary"]["total"], 3);
        assert_eq!(b["summary"]["failed"], 1);
        assert_eq!(b["summary"]["not_due"], 1);
        let names: Vec<&str> = b["credentials"]
            .as_array()
            .unwrap()
            .iter()
            .map(|c| c["name"].as_str().unwrap())
            .collect();
        assert_eq!(
            names,
            ["orders-db", "billing-db"],
            "not-due credentials are only counted"
        );
        assert_eq!(b["credentials"][0]["error"]["kind"], "unreachable");
        assert_eq!(b["credentials"][0]["error"]["step"], "preflight");
        assert_eq!(b["credentials"][1]["fingerprint"], "sha256:0123456789ab");
        assert_eq!(b["credentials"][1]["steps"][0]["step"], "lock");
        for key in ["target", "store", "plan", "detail"] {
            assert!(b["credentials"][0].get(key).is_none(), "{key}");
        }
        let text = b["text"].as_str().unwrap();
        assert!(
            !text.contains('\n') && !text.contains('<') && text.contains("&lt;127.0.0.1:1&gt; &amp;"),
            "{text}"
        );
        assert!(text.contains("rekey rotate on "), "{text}");
        assert!(
            text.contains("1 failed") && text.contains("1 rotated") && text.contains("(exit 1)"),
            "{text}"
        );
        assert!(text.contains("orders-db failed at preflight (unreachable)"), "{text}");
        assert!(
            text.contains("billing-db rotated to version v2 (sha256:0123456789ab)"),
            "{text}"
        );
    }

    #[test]
    fn notify_text_is_bounded() {
        let many: Vec<CredentialReport> = (0..25)
            .map(|i| report(&format!("db-{i}"), Status::Rotated, None))
            .collect();
        let r = run(many);
        let b = body(&r, 0, true, NotifyOn::Incident, &events(&r, 0, true));
        let text = b["text"].as_str().unwrap();
        assert!(text.starts_with("Incident rotation: "), "{text}");
        assert!(text.ends_with("…and 15 more."), "{text}");
        assert_eq!(b["credentials"].as_array().unwrap().len(), 25);
    }

    #[test]
    fn notify_backoff_is_bounded() {
        assert_eq!(backoff(0), Duration::from_millis(250));
        assert_eq!(backoff(1), Duration::from_millis(500));
        assert_eq!(backoff(10), MAX_BACKOFF);
        assert_eq!(backoff(40), MAX_BACKOFF);
    }
}
