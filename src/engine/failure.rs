//! Why a credential failed, as a type: the provider's [`ErrorKind`] or a finding of the
//! engine itself. Each kind has a stable snake_case name (the JSON `kind` field and the
//! audit log's) and maps to one process exit code in [`FailureKind::exit_code`].

use crate::exit;
use rekey_api::ErrorKind;
use serde::Serialize;
use std::fmt;

/// The kind of a failed step. The serialized names are a stable contract.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum FailureKind {
    /// The target or store refused the credential itself.
    AuthRejected,
    /// A store or target could not be reached.
    Unreachable,
    /// Authenticated but not allowed.
    PermissionDenied,
    /// The state changed under the run in a way it cannot resolve.
    Conflict,
    /// Something named does not exist.
    NotFound,
    /// A value or configuration is unusable.
    InvalidInput,
    /// The provider does not support what was asked.
    Unsupported,
    /// Any other provider error.
    Other,
    /// A secret that must be dead still logs in.
    StillValid,
    /// A rotation was left half done (a pending version).
    HalfDone,
    /// A pending version has been stuck for long: `rotate --abandon-pending` gets out.
    Stuck,
    /// The current secret is older than policy.
    TooOld,
    /// Another run (perhaps on another machine) is rotating the credential.
    Busy,
    /// The run was interrupted by a signal at a step boundary.
    Interrupted,
    /// The rotation is complete, but a consumer hook failed (or a check command did).
    HookFailed,
    /// The rotation is complete but an incident step after it failed (ending the old
    /// secret's sessions): the store's current secret works.
    SessionsNotEnded,
}

impl FailureKind {
    /// The stable snake_case name.
    pub fn as_str(self) -> &'static str {
        match self {
            FailureKind::AuthRejected => "auth_rejected",
            FailureKind::Unreachable => "unreachable",
            FailureKind::PermissionDenied => "permission_denied",
            FailureKind::Conflict => "conflict",
            FailureKind::NotFound => "not_found",
            FailureKind::InvalidInput => "invalid_input",
            FailureKind::Unsupported => "unsupported",
            FailureKind::Other => "other",
            FailureKind::StillValid => "still_valid",
            FailureKind::HalfDone => "half_done",
            FailureKind::Stuck => "stuck",
            FailureKind::TooOld => "too_old",
            FailureKind::Busy => "busy",
            FailureKind::Interrupted => "interrupted",
            FailureKind::SessionsNotEnded => "sessions_not_ended",
            FailureKind::HookFailed => "hook_failed",
        }
    }

    /// The words shown to people.
    pub fn label(self) -> &'static str {
        match self {
            FailureKind::AuthRejected => "authentication rejected",
            FailureKind::PermissionDenied => "permission denied",
            FailureKind::NotFound => "not found",
            FailureKind::InvalidInput => "invalid input",
            FailureKind::Other => "error",
            FailureKind::StillValid => "still valid",
            FailureKind::HalfDone => "half done",
            FailureKind::TooOld => "too old",
            FailureKind::Busy => "another run is rotating it",
            FailureKind::SessionsNotEnded => "sessions not ended",
            FailureKind::HookFailed => "hook failed",
            other => other.as_str(),
        }
    }

    /// The process exit code a failure of this kind alone gives: 3 when another run is
    /// doing the work, 130 when interrupted, 1 otherwise.
    pub fn exit_code(self) -> i32 {
        match self {
            FailureKind::Busy => exit::LOCKED,
            FailureKind::Interrupted => exit::INTERRUPTED,
            _ => exit::CREDENTIAL_FAILED,
        }
    }
}

impl From<ErrorKind> for FailureKind {
    fn from(kind: ErrorKind) -> Self {
        match kind {
            ErrorKind::AuthRejected => FailureKind::AuthRejected,
            ErrorKind::Unreachable => FailureKind::Unreachable,
            ErrorKind::PermissionDenied => FailureKind::PermissionDenied,
            ErrorKind::Conflict => FailureKind::Conflict,
            ErrorKind::NotFound => FailureKind::NotFound,
            ErrorKind::InvalidInput => FailureKind::InvalidInput,
            ErrorKind::Unsupported => FailureKind::Unsupported,
            ErrorKind::Other => FailureKind::Other,
        }
    }
}

impl fmt::Display for FailureKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.label())
    }
}

/// The exit code of a run from its failures' kinds: 0 with none; 1 when any failure is
/// a real one; otherwise 130 when interrupted, else 3 when only other runs were busy.
pub fn exit_code_of(kinds: impl IntoIterator<Item = FailureKind>) -> i32 {
    let mut code = exit::SUCCESS;
    for kind in kinds {
        code = match (code, kind.exit_code()) {
            (exit::CREDENTIAL_FAILED, _) | (_, exit::CREDENTIAL_FAILED) => exit::CREDENTIAL_FAILED,
            (exit::INTERRUPTED, _) | (_, exit::INTERRUPTED) => exit::INTERRUPTED,
            (_, c) => c,
        };
    }
    code
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_stable() {
        assert_eq!(FailureKind::from(ErrorKind::AuthRejected).as_str(), "auth_rejected");
        assert_eq!(
            serde_json::to_string(&FailureKind::SessionsNotEnded).unwrap(),
            "\"sessions_not_ended\""
        );
    }

    #[test]
    fn exit_code_prefers_real_failures() {
        use FailureKind::*;
        assert_eq!(exit_code_of([]), 0);
        assert_eq!(exit_code_of([Busy]), 3);
        assert_eq!(exit_code_of([Busy, Interrupted]), 130);
        assert_eq!(exit_code_of([Busy, Unreachable, Interrupted]), 1);
        assert_eq!(exit_code_of([SessionsNotEnded]), 1);
    }
}
