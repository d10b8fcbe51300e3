//! Read-only work on one credential: `plan` (preflight), `verify` and `status`.

use super::event::Step;
use super::failure::FailureKind;
use super::recorder::{rfc3339, Recorder, StepFailed};
use super::report::{CredentialReport, Status, VersionSummary};
use super::rotation::{is_due, outstanding_revocation, read_state, RotateOptions};
use crate::config::Credential;
use rekey_api::{ErrorKind, KeyState, Store, Strategy, Target};
use serde::Serialize;
use std::fmt;
use std::time::{Duration, Instant, SystemTime};

/// What one item of a plan is about: a check made now, or a step a rotation would take.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum PlanStep {
    /// A read-only check made by `plan` itself (preflight).
    Check,
    /// Finish an unfinished rotation (a pending version).
    Resume,
    /// Make the new secret.
    Generate,
    /// Write it to the store as pending.
    Stage,
    /// Install it on the target.
    Apply,
    /// Fresh login with the new secret.
    Verify,
    /// Pending becomes current.
    Promote,
    /// Remove the previous secret (now, after grace, or a deferred one).
    Revoke,
    /// The previous secret must be refused.
    ProveDead,
    /// What applications reading the secret experience during the rotation.
    Effect,
    /// Nothing to do (not due).
    None,
    /// Anything else worth saying.
    Note,
}

impl PlanStep {
    /// The kebab-case name, as in JSON.
    pub fn as_str(self) -> &'static str {
        match self {
            PlanStep::Check => "check",
            PlanStep::Resume => "resume",
            PlanStep::Generate => "generate",
            PlanStep::Stage => "stage",
            PlanStep::Apply => "apply",
            PlanStep::Verify => "verify",
            PlanStep::Promote => "promote",
            PlanStep::Revoke => "revoke",
            PlanStep::ProveDead => "prove-dead",
            PlanStep::Effect => "effect",
            PlanStep::None => "none",
            PlanStep::Note => "note",
        }
    }
}

/// One item of a plan, built by the engine: human output renders it as a line
/// ([`fmt::Display`]), `-o json` serializes it as it is (`plan_steps`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PlanItem {
    /// What the item is about.
    pub step: PlanStep,
    /// What is checked or done, one line without secrets.
    pub action: String,
    /// What it acts on (a target or store description), when one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub target: Option<String>,
    /// `incident` for what only an incident rotation needs.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub mode: Option<&'static str>,
    /// Whether it is a warning (the run goes on, but someone should know).
    pub warning: bool,
}

impl PlanItem {
    /// An item of `step` doing `action`.
    pub fn new(step: PlanStep, action: impl Into<String>) -> PlanItem {
        PlanItem {
            step,
            action: action.into(),
            target: None,
            mode: None,
            warning: false,
        }
    }

    /// The same item acting on `target`.
    pub fn on(mut self, target: String) -> PlanItem {
        self.target = Some(target);
        self
    }

    /// The same item, needed only by an incident rotation.
    pub fn incident(mut self) -> PlanItem {
        self.mode = Some("incident");
        self
    }

    /// The same item, as a warning.
    pub fn warning(mut self) -> PlanItem {
        self.warning = true;
        self
    }
}

impl fmt::Display for PlanItem {
    /// `apply: set it on the target (postgres role app@127.0.0.1:5432)`,
    /// `warning (incident): ...`; a note is its text alone.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let head = if self.warning { "warning" } else { self.step.as_str() };
        match (self.step, self.mode) {
            (PlanStep::Note, _) if !self.warning => f.write_str(&self.action)?,
            (_, Some(mode)) => write!(f, "{head} ({mode}): {}", self.action)?,
            (_, None) => write!(f, "{head}: {}", self.action)?,
        }
        match &self.target {
            Some(target) => write!(f, " ({target})"),
            None => Ok(()),
        }
    }
}

/// What applications that read the secret experience while it is rotated (issue 12):
/// a replaced secret fails until they re-read the store; with a grace period both work.
fn experience(strategy: Strategy, apply_invalidates_previous: bool, grace: Duration, incident: bool) -> PlanItem {
    let text = if incident {
        format!("{strategy}: the leaked secret stops working during this run: applications still holding it fail until they re-read the store")
    } else if apply_invalidates_previous {
        format!("{strategy}: applications still holding the old secret fail until they re-read it (apply replaces it)")
    } else if grace.is_zero() {
        format!(
            "{strategy}: the old secret is revoked right after promote (grace 0s): applications still holding it \
             fail until they re-read it; set a grace to avoid that"
        )
    } else {
        format!(
            "{strategy}: both secrets work for {}: applications that re-read the secret within it see no failure",
            short_duration(grace)
        )
    };
    PlanItem::new(PlanStep::Effect, text)
}

/// `plan` / `rotate --dry-run`: connect and check for real, change nothing, and list the
/// steps a rotation would take.
pub async fn plan(
    rec: &mut Recorder,
    credential: &Credential,
    store: &dyn Store,
    target: &dyn Target,
    options: &RotateOptions,
) -> Result<Status, StepFailed> {
    let state = read_state(rec, store, &credential.key).await?;
    let now = rec.now();
    // One `preflight` step for every read-only check (store writable, target, incident
    // privileges): recorded once, with what it found, or failed at its first failure.
    rec.begin(Step::Preflight)?;
    let started = (SystemTime::now(), Instant::now());
    if let Err(e) = store.check_writable(&credential.key).await {
        return Err(rec.fail_since(Step::Preflight, e.kind().into(), e.message(), started));
    }
    let current = state.current().map(|v| &v.doc);
    let facts = match target.preflight(current).await {
        Ok(facts) => facts,
        Err(e) => return Err(rec.fail_since(Step::Preflight, e.kind().into(), e.message(), started)),
    };
    let mut lines: Vec<PlanItem> = facts
        .into_iter()
        .map(|f| PlanItem::new(PlanStep::Check, f).on(target.describe()))
        .collect();
    lines.push(PlanItem::new(PlanStep::Check, "the store is writable").on(store.describe()));
    match store.plan_notes(&credential.key).await {
        Ok(notes) => lines.extend(
            notes
                .into_iter()
                .map(|n| PlanItem::new(PlanStep::Check, n).on(store.describe())),
        ),
        Err(e) => return Err(rec.fail_since(Step::Preflight, e.kind().into(), e.message(), started)),
    }
    let mut detail = None;
    if options.incident {
        // What the incident needs beyond rotation: a missing privilege does not stop the
        // rotation (a leaked secret must die), but the responder learns it now.
        match target.incident_preflight().await {
            Ok(facts) => {
                lines.extend(
                    facts
                        .into_iter()
                        .map(|f| PlanItem::new(PlanStep::Check, f).on(target.describe()).incident()),
                );
                detail = Some("incident privileges checked".to_owned());
            }
            Err(e) if e.kind() == ErrorKind::PermissionDenied => {
                lines.push(
                    PlanItem::new(
                        PlanStep::Check,
                        format!(
                            "sessions will NOT be ended: {}; the leaked secret is still replaced and proved dead",
                            e.message()
                        ),
                    )
                    .on(target.describe())
                    .incident()
                    .warning(),
                );
                detail = Some(format!("sessions will NOT be ended: {}", e.message()));
            }
            Err(e) => return Err(rec.fail_since(Step::Preflight, e.kind().into(), e.message(), started)),
        }
    }
    rec.ok_since(Step::Preflight, detail, started);
    let caps = target.capabilities();
    let grace = if options.incident {
        Duration::ZERO
    } else {
        options.grace.unwrap_or(credential.grace)
    };
    if let Some(p) = state.pending() {
        lines.push(PlanItem::new(
            PlanStep::Resume,
            format!(
                "pending version {} (staged {}): apply it unless the target already accepts it",
                p.id,
                rfc3339(p.created)
            ),
        ));
        // A pending document the target cannot use for this credential (staged for another
        // user, by something else) while the current one passes the same check: the
        // rotation will stop there; say so now, with the way out.
        // `verify`, not just `login`: a key of another account logs in, and only the
        // target's own check (IAM's caller identity, say) tells it is not this one's.
        if let Err(e) = target.verify(&p.doc).await {
            let current_passes = match current {
                Some(current) => target.verify(current).await.is_ok(),
                None => false,
            };
            if e.kind() == ErrorKind::InvalidInput && current_passes {
                lines.push(
                    PlanItem::new(
                        PlanStep::Resume,
                        format!(
                            "pending version {} cannot be used for this credential ({}); if it was not staged \
                             for it, `rekey rotate {} --abandon-pending` drops it",
                            p.id,
                            e.message(),
                            credential.name
                        ),
                    )
                    .warning(),
                );
            }
        }
    } else if options.due_only && !is_due(&state, credential.every, now) {
        let due = state
            .current()
            .map(|c| rfc3339(c.created + credential.every))
            .unwrap_or_default();
        if let Some((_, current)) = outstanding_revocation(&state) {
            if super::version::revoke_at(current, options.grace, credential.grace) <= now || options.incident {
                lines.push(PlanItem::new(
                    PlanStep::Revoke,
                    "finish the deferred revocation of the previous secret",
                ));
            }
        }
        lines.push(PlanItem::new(
            PlanStep::None,
            format!("nothing to rotate: not due until {due}"),
        ));
        rec.report.next_due = Some(due);
        rec.report.plan = lines;
        return Ok(Status::Planned);
    } else {
        if let Some((_, current)) = outstanding_revocation(&state) {
            if super::version::is_incident(&current.id) && options.incident {
                // As `rotate --leaked` does: an earlier incident run replaced the leaked
                // secret; only its revocation is left.
                lines.push(PlanItem::new(
                    PlanStep::Revoke,
                    format!(
                        "incident version {} is current: finish revoking the previous (leaked) secret, end its \
                         sessions and prove it refused; nothing new is generated",
                        short_id(&current.id)
                    ),
                ));
                rec.report.plan = lines;
                return Ok(Status::Planned);
            }
            let what = if super::version::is_incident(&current.id) {
                "the previous (leaked) secret first, ending its sessions (an incident rotation left it outstanding)"
            } else {
                "the previous secret first (its revocation is outstanding)"
            };
            lines.push(PlanItem::new(PlanStep::Revoke, what));
        }
        if caps.mints_own_secret {
            lines.push(PlanItem::new(PlanStep::Generate, "the target creates the new secret").on(target.describe()));
        } else {
            lines.push(PlanItem::new(
                PlanStep::Generate,
                format!("a {}-character password", credential.password.length()),
            ));
        }
        lines.push(
            PlanItem::new(
                PlanStep::Stage,
                format!("write it as pending at key `{}`", credential.key),
            )
            .on(store.describe()),
        );
        lines.push(PlanItem::new(PlanStep::Apply, "set it on the target").on(target.describe()));
    }
    lines.push(PlanItem::new(
        PlanStep::Verify,
        format!(
            "a fresh login with the new secret (up to {} attempts)",
            credential.verify_attempts
        ),
    ));
    lines.push(PlanItem::new(
        PlanStep::Promote,
        "pending becomes current, current becomes previous",
    ));
    match (
        caps.apply_invalidates_previous,
        state.current().is_some() || state.pending().is_some(),
    ) {
        (_, false) => lines.push(PlanItem::new(
            PlanStep::Revoke,
            "nothing to revoke (no previous secret stored)",
        )),
        (true, true) => {
            lines.push(PlanItem::new(
                PlanStep::ProveDead,
                "the previous secret must be refused (apply replaced it)",
            ));
            if options.incident {
                lines.push(PlanItem::new(
                    PlanStep::Revoke,
                    "end the sessions of the previous secret",
                ));
            }
        }
        (false, true) if grace.is_zero() => {
            if options.incident {
                lines.push(PlanItem::new(
                    PlanStep::Revoke,
                    "remove the previous secret now and end its sessions, then prove it is refused",
                ))
            } else {
                lines.push(PlanItem::new(
                    PlanStep::Revoke,
                    "remove the previous secret now, then prove it is refused",
                ))
            }
        }
        (false, true) => lines.push(PlanItem::new(
            PlanStep::Revoke,
            format!(
                "after the grace period ({}), by `rekey rotate --due`",
                short_duration(grace)
            ),
        )),
    }
    lines.push(experience(
        credential.strategy,
        caps.apply_invalidates_previous,
        grace,
        options.incident,
    ));
    rec.report.plan = lines;
    Ok(Status::Planned)
}

/// A pending version older than this is reported as stuck, with the way out.
pub const STUCK_AFTER: Duration = Duration::from_secs(10 * 60);

/// `verify`: the current secret works, a revoked previous one is refused, the current
/// one is younger than policy, and no rotation is left half done. All checks run; any
/// problem fails the credential.
pub async fn verify(
    rec: &mut Recorder,
    credential: &Credential,
    store: &dyn Store,
    target: &dyn Target,
) -> Result<Status, StepFailed> {
    let state = read_state(rec, store, &credential.key).await?;
    let now = rec.now();
    if let Some(p) = state.pending() {
        let age = now.duration_since(p.created).unwrap_or_default();
        let leaked = if super::version::is_incident(&p.id) {
            "--leaked "
        } else {
            ""
        };
        let (kind, message) = if age >= STUCK_AFTER {
            (
                FailureKind::Stuck,
                format!(
                    "a rotation is stuck: version {} pending for {}; run `rekey rotate {leaked}{name}` to finish it, \
                     or `rekey rotate --abandon-pending {name}` if it can never be applied",
                    p.id,
                    short_duration(age),
                    name = credential.name
                ),
            )
        } else {
            (
                FailureKind::HalfDone,
                format!(
                    "a rotation was left half done: version {} pending since {}; run `rekey rotate {leaked}{}` to finish it",
                    p.id,
                    rfc3339(p.created),
                    credential.name
                ),
            )
        };
        problem(rec, Step::Resume, kind, message, now_started());
    }
    match state.current() {
        None => problem(
            rec,
            Step::CheckCurrent,
            FailureKind::NotFound,
            format!(
                "no current secret stored; import it with `rekey import {}`",
                credential.name
            ),
            now_started(),
        ),
        Some(current) => {
            let started = (SystemTime::now(), Instant::now());
            match target.verify(&current.doc).await {
                Ok(()) => {
                    rec.ok_since(Step::CheckCurrent, Some("the current secret works".into()), started);
                    if let Some(argv) = &credential.check_command {
                        check_consumer(rec, credential, argv, &current.id).await;
                    }
                }
                Err(e) => {
                    // Only a refusal (or a user that is gone) says the secret is broken;
                    // an unreachable service or a configuration error says nothing of it.
                    let what = match e.kind() {
                        ErrorKind::AuthRejected | ErrorKind::NotFound => "the current secret does not work",
                        _ => "could not check the current secret",
                    };
                    problem(
                        rec,
                        Step::CheckCurrent,
                        e.kind().into(),
                        format!("{what}: {}", e.message()),
                        started,
                    )
                }
            }
            let age = now.duration_since(current.created).unwrap_or_default();
            if age > credential.every {
                problem(
                    rec,
                    Step::CheckAge,
                    FailureKind::TooOld,
                    format!(
                        "the current secret is {} old; policy is {}",
                        short_duration(age),
                        short_duration(credential.every)
                    ),
                    now_started(),
                );
            } else {
                rec.ok(
                    Step::CheckAge,
                    format!(
                        "{} old; due {}",
                        short_duration(age),
                        rfc3339(current.created + credential.every)
                    ),
                );
            }
            rec.report.next_due = Some(rfc3339(current.created + credential.every));
        }
    }
    if let Some(previous) = state.previous() {
        let revoke_at = state
            .current()
            .map(|c| super::version::revoke_at(c, None, credential.grace));
        let overdue = revoke_at.and_then(|at| now.duration_since(at).ok());
        let leaked = previous.revoked.is_none() && state.current().is_some_and(|c| super::version::is_incident(&c.id));
        if leaked {
            // An incident rotation replaced this secret and stopped before recording it
            // revoked (ending its sessions failed, or it was interrupted): not contained,
            // even when the secret itself is refused.
            let rerun = format!("`rekey rotate --leaked {}` finishes it", credential.name);
            let started = (SystemTime::now(), Instant::now());
            let (kind, message) = match target.login(&previous.doc).await {
                Ok(()) => (
                    FailureKind::StillValid,
                    format!("the leaked previous secret still works: the incident rotation did not finish; {rerun}"),
                ),
                Err(e) if e.kind() == ErrorKind::AuthRejected => (
                    FailureKind::SessionsNotEnded,
                    format!(
                        "the leaked previous secret is refused, but the incident rotation did not finish \
                         (its sessions may still be open); {rerun}"
                    ),
                ),
                Err(e) => (
                    e.kind().into(),
                    format!("could not prove the leaked previous secret dead: {e}; {rerun}"),
                ),
            };
            problem(rec, Step::ProveDead, kind, message, started);
        } else if previous.revoked.is_none() && overdue.is_some_and(|o| o < credential.revocation_tolerance) {
            // The grace period is over but the `--due` run that revokes it has not come
            // yet: not broken, just due.
            let overdue = overdue.unwrap_or_default();
            match target.login(&previous.doc).await {
                Ok(()) => {
                    let warning = format!(
                        "revocation due for {}: the previous secret still works until the next `rekey rotate --due`",
                        short_duration(overdue)
                    );
                    rec.report.warnings.push(warning.clone());
                    rec.skipped(Step::ProveDead, warning);
                }
                Err(_) => rec.ok(Step::ProveDead, "the previous secret is refused"),
            }
        } else if previous.revoked.is_some() || overdue.is_some() {
            let started = (SystemTime::now(), Instant::now());
            match target.login(&previous.doc).await {
                Err(e) if e.kind() == ErrorKind::AuthRejected => {
                    rec.ok_since(Step::ProveDead, Some("the previous secret is refused".into()), started)
                }
                Ok(()) => problem(
                    rec,
                    Step::ProveDead,
                    FailureKind::StillValid,
                    "the previous secret still works although it is revoked or past its grace period".to_owned(),
                    started,
                ),
                Err(e) => problem(
                    rec,
                    Step::ProveDead,
                    e.kind().into(),
                    format!("could not prove the previous secret dead: {e}"),
                    started,
                ),
            }
        } else {
            rec.skipped(Step::ProveDead, "the previous secret is inside its grace period");
        }
    }
    if !rec.report.problems.is_empty() {
        Err(StepFailed)
    } else {
        Ok(Status::Verified)
    }
}

/// Runs the credential's `check_command`: the consumer works with the current secret.
async fn check_consumer(rec: &mut Recorder, credential: &Credential, argv: &[String], version: &str) {
    let context = super::hooks::HookContext {
        credential: credential.name.clone(),
        version: version.to_owned(),
        store: rec.report.store.clone(),
        key: credential.key.clone(),
    };
    let started = now_started();
    let command = super::hooks::describe(argv);
    match super::hooks::run(argv, &context, credential.hook_timeout).await {
        Ok(_) => rec.ok_since(Step::Hook, Some(format!("check `{command}` passed")), started),
        Err(reason) => problem(
            rec,
            Step::Hook,
            FailureKind::HookFailed,
            format!("the consumer check `{command}` failed: {reason}"),
            started,
        ),
    }
}

fn now_started() -> (SystemTime, Instant) {
    (SystemTime::now(), Instant::now())
}

/// Records a problem found by `verify`: it fails the credential, and every check still runs.
fn problem(rec: &mut Recorder, step: Step, kind: FailureKind, message: String, started: (SystemTime, Instant)) {
    rec.report.problems.push(message.clone());
    rec.fail_since(step, kind, message, started);
}

/// `status`: versions, ages and due dates, from the store only.
pub async fn status(rec: &mut Recorder, credential: &Credential, store: &dyn Store) -> Result<Status, StepFailed> {
    let state = read_state(rec, store, &credential.key).await?;
    let now = rec.now();
    rec.report.versions = summarize(&state, now);
    let name = &credential.name;
    let Some(current) = state.current() else {
        problem(
            rec,
            Step::CheckCurrent,
            FailureKind::NotFound,
            format!("no secret stored; import the existing one with `rekey import {name}`"),
            now_started(),
        );
        return Err(StepFailed);
    };
    rec.report.next_due = Some(rfc3339(current.created + credential.every));
    if let Some(p) = state.pending() {
        let age = now.duration_since(p.created).unwrap_or_default();
        // An incident's pending version is finished the same way by any run (sessions
        // ended too); the hint says `--leaked` so that nobody reads it as routine.
        let rerun = if super::version::is_incident(&p.id) {
            format!("`rekey rotate --leaked {name}`")
        } else {
            format!("`rekey rotate {name}`")
        };
        let (kind, message) = if age >= STUCK_AFTER {
            (
                FailureKind::Stuck,
                format!(
                    "stuck: version {} pending for {}; {rerun} finishes it \
                     (`--abandon-pending` drops it if it can never be applied)",
                    short_id(&p.id),
                    short_duration(age)
                ),
            )
        } else {
            (
                FailureKind::HalfDone,
                format!(
                    "pending: version {} staged {} ago; {rerun} finishes it",
                    short_id(&p.id),
                    short_duration(age)
                ),
            )
        };
        problem(rec, Step::Resume, kind, message, now_started());
    }
    let age = now.duration_since(current.created).unwrap_or_default();
    if age > credential.every {
        problem(
            rec,
            Step::CheckAge,
            FailureKind::TooOld,
            format!(
                "overdue: the current secret is {} old, policy {}; `rekey rotate {name}`",
                short_duration(age),
                short_duration(credential.every)
            ),
            now_started(),
        );
    }
    if let Some((_, current)) = outstanding_revocation(&state) {
        if super::version::is_incident(&current.id) {
            problem(
                rec,
                Step::Revoke,
                FailureKind::HalfDone,
                format!(
                    "revocation due: incident version {} replaced a leaked secret, but the incident rotation did not \
                     finish revoking it (its sessions may still be open); `rekey rotate --leaked {name}` finishes it",
                    short_id(&current.id)
                ),
                now_started(),
            );
        } else if let Ok(overdue) = now.duration_since(super::version::revoke_at(current, None, credential.grace)) {
            problem(
                rec,
                Step::Revoke,
                FailureKind::HalfDone,
                format!(
                    "revocation due: the previous secret's grace period ended {} ago; `rekey rotate --due` revokes it",
                    short_duration(overdue)
                ),
                now_started(),
            );
        }
    }
    if rec.report.problems.is_empty() {
        rec.report.plan.push(PlanItem::new(
            PlanStep::Note,
            format!(
                "ok: current {} for {}, due in {}",
                short_id(&current.id),
                short_duration(age),
                short_duration(credential.every.saturating_sub(age))
            ),
        ));
        Ok(Status::Listed)
    } else {
        Err(StepFailed)
    }
}

fn short_id(id: &str) -> String {
    super::version::short(id)
}

/// The state `status` found a credential in, from its report: `ok`, `no secret`,
/// `overdue`, `pending`, `stuck`, `revocation due`, `store missing`, `misconfigured` (its
/// target cannot be configured: a variable is not set), or `unreadable`
/// (the store could not be read). The first problem found decides (a pending rotation
/// before age, age before a due revocation); every problem is in `problems`.
pub fn status_state(report: &CredentialReport) -> &'static str {
    let Some(error) = &report.error else {
        return "ok";
    };
    match (error.step, error.kind) {
        (Step::Read, FailureKind::NotFound) => "store missing",
        (Step::Read, _) => "unreadable",
        (Step::CheckCurrent, FailureKind::NotFound) => "no secret",
        (Step::Resume, FailureKind::Stuck) => "stuck",
        (Step::Resume, _) => "pending",
        (Step::CheckAge, _) => "overdue",
        (Step::Preflight, FailureKind::InvalidInput) => "misconfigured",
        (Step::Revoke, _) => "revocation due",
        _ => "failed",
    }
}

/// Version summaries, newest first, without values; ages as of `now`.
pub fn summarize(state: &KeyState, now: SystemTime) -> Vec<VersionSummary> {
    state
        .versions
        .iter()
        .rev()
        .map(|v| VersionSummary {
            id: v.id.clone(),
            stages: v.stages.iter().map(|s| s.as_str()).collect(),
            created: rfc3339(v.created),
            age_secs: now.duration_since(v.created).unwrap_or_default().as_secs(),
            revoked: v.revoked.map(rfc3339),
        })
        .collect()
}

/// A duration as people write it, in its two largest units and without a zero second
/// one: `40d`, `3d 4h`, `1h 5m`, `3m 12s`, `12s`. The one helper for every duration
/// shown to people (never humantime's `1month 9days 13h`).
pub fn short_duration(d: Duration) -> String {
    let secs = d.as_secs();
    let units = [
        (secs / 86_400, "d"),
        (secs % 86_400 / 3600, "h"),
        (secs % 3600 / 60, "m"),
        (secs % 60, "s"),
    ];
    let Some(first) = units.iter().position(|(n, _)| *n > 0) else {
        return "0s".to_owned();
    };
    let mut text = format!("{}{}", units[first].0, units[first].1);
    if let Some((n, unit)) = units.get(first + 1).filter(|(n, _)| *n > 0) {
        text.push_str(&format!(" {n}{unit}"));
    }
    text
}
