//! What the engine tells reporters. Events hold names, ids, times and error messages,
//! never secret values.

use rekey_api::ErrorKind;
use serde::Serialize;
use std::time::{Duration, SystemTime};

/// One protocol step, as recorded in the audit log and reports.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Step {
    /// Take the credential's lock.
    Lock,
    /// Read the credential's versions from the store.
    Read,
    /// Read-only checks of store and target.
    Preflight,
    /// Found a pending version: finish that rotation.
    Resume,
    /// Make the new secret.
    Generate,
    /// Write it to the store as pending.
    Stage,
    /// Install it on the target.
    Apply,
    /// Fresh login with the new secret (and the configured check).
    Verify,
    /// Pending becomes current.
    Promote,
    /// Reversible first step of a deferred revocation (deactivate a key).
    Retire,
    /// Remove the previous secret from the target (and end its sessions).
    Revoke,
    /// The previous secret must be refused.
    ProveDead,
    /// Record in the store that the previous secret was proved dead.
    Record,
    /// Check of the current secret (`verify` command).
    CheckCurrent,
    /// Check of the secret's age against policy.
    CheckAge,
    /// Store an existing secret (`import`).
    Import,
    /// Take a stuck pending version out (`rotate --abandon-pending`).
    Abandon,
    /// Remove minted secrets stored nowhere (left by a crash between mint and stage).
    Sweep,
    /// A consumer hook (`on_rotate`, `check_command`).
    Hook,
}

impl Step {
    /// The kebab-case name used in messages.
    pub fn as_str(self) -> &'static str {
        match self {
            Step::Lock => "lock",
            Step::Read => "read",
            Step::Preflight => "preflight",
            Step::Resume => "resume",
            Step::Generate => "generate",
            Step::Stage => "stage",
            Step::Apply => "apply",
            Step::Verify => "verify",
            Step::Promote => "promote",
            Step::Retire => "retire",
            Step::Revoke => "revoke",
            Step::ProveDead => "prove-dead",
            Step::Record => "record",
            Step::CheckCurrent => "check-current",
            Step::CheckAge => "check-age",
            Step::Import => "import",
            Step::Abandon => "abandon",
            Step::Sweep => "sweep",
            Step::Hook => "hook",
        }
    }
}

/// How a step ended.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case", tag = "status")]
pub enum Outcome {
    /// Done.
    Ok,
    /// Not needed (already done, not due, grace period running).
    Skipped {
        /// Why.
        reason: String,
    },
    /// Failed; the credential stops here.
    Failed {
        /// The error's kind.
        kind: crate::engine::failure::FailureKind,
        /// One-line message without secrets.
        message: String,
    },
}

/// A finished step of one credential.
#[derive(Debug, Clone, Serialize)]
pub struct StepRecord {
    /// The step.
    pub step: Step,
    /// How it ended.
    #[serde(flatten)]
    pub outcome: Outcome,
    /// What it did, for humans (`version 3f2a…`, `2 sessions ended`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
    /// When it started.
    #[serde(skip)]
    pub started: SystemTime,
    /// How long it took.
    #[serde(skip)]
    pub duration: Duration,
}

/// Something that happened during a run.
#[derive(Debug, Clone)]
pub enum Event {
    /// A credential's step ended.
    Step {
        /// The run.
        run_id: String,
        /// The credential.
        credential: String,
        /// The step.
        record: StepRecord,
    },
    /// Work on a credential began (it got its turn among the parallel ones).
    CredentialStarted {
        /// The credential.
        credential: String,
    },
    /// A credential is done.
    CredentialDone(Box<crate::engine::report::CredentialReport>),
    /// `leaked` compared one candidate value with the stored secrets (audit only).
    LeakLookup {
        /// The run.
        run_id: String,
        /// The candidate's fingerprint (never the value).
        fingerprint: String,
        /// What it matched (`credential stage version id`), or `None`.
        matched: Option<String>,
    },
    /// A test failpoint was reached; the process holds here until killed.
    FailpointHeld {
        /// The credential.
        credential: String,
        /// The failpoint's name (`after-stage`).
        name: String,
    },
}

/// Receives events as they happen. Implementations must be cheap and never fail the run.
pub trait Reporter: Send + Sync {
    /// Handles one event.
    fn event(&self, event: &Event);
}

impl<R: Reporter + ?Sized> Reporter for std::sync::Arc<R> {
    fn event(&self, event: &Event) {
        (**self).event(event)
    }
}

/// Sends every event to several reporters in order.
pub struct Fanout(pub Vec<Box<dyn Reporter>>);

impl Reporter for Fanout {
    fn event(&self, event: &Event) {
        for r in &self.0 {
            r.event(event);
        }
    }
}

/// Maps a provider error kind to its stable name.
pub fn kind_name(kind: ErrorKind) -> &'static str {
    kind.as_str()
}
