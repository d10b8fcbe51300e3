//! Results of a run, per credential, as rendered by reporters and `-o json`.

use super::event::{Outcome, Step, StepRecord};
use super::failure::{exit_code_of, FailureKind};
use serde::Serialize;

/// What happened to one credential.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Status {
    /// Rotated (possibly by finishing a pending rotation).
    Rotated,
    /// Not due yet (`--due`).
    NotDue,
    /// Only a deferred revocation was finished.
    Revoked,
    /// `plan` / `--dry-run`: checks passed; the steps are listed.
    Planned,
    /// `verify`: every check passed.
    Verified,
    /// `status`: read only.
    Listed,
    /// `import`: stored as current.
    Imported,
    /// A step failed.
    Failed,
}

impl Status {
    /// The word shown to humans.
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Rotated => "rotated",
            Status::NotDue => "not due",
            Status::Revoked => "revoked",
            Status::Planned => "ok",
            Status::Verified => "ok",
            Status::Listed => "ok",
            Status::Imported => "imported",
            Status::Failed => "FAILED",
        }
    }

    /// The stable machine name (as in `-o json`): `rotated`, `not-due`, `revoked`,
    /// `planned`, `verified`, `listed`, `imported`, `failed`.
    pub fn key(self) -> &'static str {
        match self {
            Status::Rotated => "rotated",
            Status::NotDue => "not-due",
            Status::Revoked => "revoked",
            Status::Planned => "planned",
            Status::Verified => "verified",
            Status::Listed => "listed",
            Status::Imported => "imported",
            Status::Failed => "failed",
        }
    }
}

/// The failed step of a credential.
#[derive(Debug, Clone, Serialize)]
pub struct Failure {
    /// The step that failed.
    pub step: Step,
    /// The error's kind (`auth_rejected`, `unreachable`...).
    pub kind: FailureKind,
    /// One-line message without secrets.
    pub message: String,
}

/// A snapshot of a credential's stored versions (no values).
#[derive(Debug, Clone, Default, Serialize)]
pub struct VersionSummary {
    /// Version id.
    pub id: String,
    /// Stages held.
    pub stages: Vec<&'static str>,
    /// RFC 3339 creation time.
    pub created: String,
    /// Its age in seconds when it was read (`status`).
    pub age_secs: u64,
    /// RFC 3339 time it was proved dead, if it was.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub revoked: Option<String>,
}

/// Everything one credential's run produced.
#[derive(Debug, Clone, Serialize)]
pub struct CredentialReport {
    /// Credential name.
    pub name: String,
    /// Outcome.
    pub status: Status,
    /// Target description (no secrets).
    pub target: String,
    /// Store description and key.
    pub store: String,
    /// The key inside the store.
    pub key: String,
    /// The rotation strategy (`single`, `dual`, `alternating`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub strategy: Option<&'static str>,
    /// The version made current (rotate, import).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub version: Option<String>,
    /// Fingerprint of the version made current (`sha256:` + 12 hex digits, never the value).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub fingerprint: Option<String>,
    /// The version it replaced, when a rotation replaced one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub previous_version: Option<String>,
    /// Fingerprint of the replaced version.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub previous_fingerprint: Option<String>,
    /// Whether a pending rotation from an earlier run was finished.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub resumed: bool,
    /// Sessions ended while revoking.
    #[serde(skip_serializing_if = "is_zero")]
    pub sessions_terminated: u64,
    /// Items of the plan (plan, dry run), typed; rendered as lines by reporters.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub plan: Vec<super::inspection::PlanItem>,
    /// Things worth knowing that are not failures (a revocation that is due), one line each.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub warnings: Vec<String>,
    /// Problems found (verify), each one line.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub problems: Vec<String>,
    /// Stored versions (status).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub versions: Vec<VersionSummary>,
    /// What the store held when the credential's run read it (for metrics).
    #[serde(skip)]
    pub observed: Option<Observed>,
    /// When the next rotation is due (RFC 3339).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub next_due: Option<String>,
    /// The failure, when status is `failed`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<Failure>,
    /// Steps in order.
    pub steps: Vec<StepRecord>,
    /// Wall time in milliseconds.
    pub duration_ms: u64,
}

fn is_zero(n: &u64) -> bool {
    *n == 0
}

impl CredentialReport {
    /// The report of a credential before anything was done (status `failed` until the
    /// run says otherwise).
    pub fn new(name: &str, target: String, store: String, key: &str) -> CredentialReport {
        CredentialReport {
            name: name.to_owned(),
            status: Status::Failed,
            target,
            store,
            key: key.to_owned(),
            strategy: None,
            version: None,
            fingerprint: None,
            previous_version: None,
            previous_fingerprint: None,
            resumed: false,
            sessions_terminated: 0,
            plan: Vec::new(),
            problems: Vec::new(),
            warnings: Vec::new(),
            versions: Vec::new(),
            observed: None,
            next_due: None,
            error: None,
            steps: Vec::new(),
            duration_ms: 0,
        }
    }

    /// The one-line error as shown to humans: `NAME: STEP: KIND: MESSAGE`.
    pub fn error_line(&self) -> Option<String> {
        self.error
            .as_ref()
            .map(|f| format!("{}: {}: {}: {}", self.name, f.step.as_str(), f.kind.label(), f.message))
    }

    /// Drops what only the live reporters needed, once they have seen it: the step
    /// records, except the skipped ones (the human summary names a deferred revocation
    /// by its reason), and the plan items (`plan` writes them as each credential is
    /// done). What every end-of-run output reads stays: name, outcome, version ids and
    /// fingerprints, the error, warnings, problems, what the store held, the due time
    /// and the duration.
    pub fn compact(&mut self) {
        self.steps.retain(|s| matches!(s.outcome, Outcome::Skipped { .. }));
        self.steps.shrink_to_fit();
        // Written out when the credential was done (`plan`'s stream, the JSON parts).
        self.plan = Vec::new();
        self.warnings.shrink_to_fit();
        self.problems.shrink_to_fit();
        self.versions.shrink_to_fit();
    }

    /// Whether any step was skipped for a reason worth showing.
    pub fn skipped_steps(&self) -> impl Iterator<Item = (&Step, &str)> {
        self.steps.iter().filter_map(|s| match &s.outcome {
            Outcome::Skipped { reason } => Some((&s.step, reason.as_str())),
            _ => None,
        })
    }
}

/// What a run saw in the store, for metrics: when the current and pending versions
/// were made.
#[derive(Debug, Clone, Copy, Default)]
pub struct Observed {
    /// When the current version was made, if there was one.
    pub current_created: Option<std::time::SystemTime>,
    /// When the pending version was made, if there was one.
    pub pending_created: Option<std::time::SystemTime>,
}

/// What the engine keeps of each finished credential's report until the run ends.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Retain {
    /// The whole report, every step record included (for outputs that list steps after
    /// the run: notifications, incident records, the engine's tests).
    #[default]
    Everything,
    /// The report as [`CredentialReport::compact`] leaves it: its step records were
    /// streamed to the reporters as they happened, and are not held for every
    /// credential until the end.
    Summary,
}

/// The whole run.
#[derive(Debug, Clone, Serialize)]
pub struct RunReport {
    /// Unique id of this run (also in the audit log).
    pub run_id: String,
    /// The command (`rotate`, `verify`...).
    pub command: &'static str,
    /// Whether nothing was changed on purpose (plan, dry run).
    pub dry_run: bool,
    /// RFC 3339 start time.
    pub started: String,
    /// Wall time in milliseconds.
    pub duration_ms: u64,
    /// Per credential, in configuration order.
    pub credentials: Vec<CredentialReport>,
}

impl RunReport {
    /// How many credentials ended with `status`.
    pub fn count(&self, status: Status) -> usize {
        self.credentials.iter().filter(|c| c.status == status).count()
    }

    /// Whether any credential failed.
    pub fn any_failed(&self) -> bool {
        self.count(Status::Failed) > 0
    }

    /// The process exit code: 0 when nothing failed; otherwise the mapping of
    /// [`FailureKind::exit_code`] over the failed credentials (1 wins over 130 over 3).
    pub fn exit_code(&self) -> i32 {
        exit_code_of(
            self.credentials
                .iter()
                .filter(|c| c.status == Status::Failed)
                .map(|c| c.error.as_ref().map_or(FailureKind::Other, |e| e.kind)),
        )
    }
}
