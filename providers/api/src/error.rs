//! Typed provider errors with a kind the engine can act on.

use std::fmt;

/// What went wrong, in terms the engine can act on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ErrorKind {
    /// The backend refused the credential itself (bad password, unknown key).
    /// For a *prove dead* check this is the wanted outcome.
    AuthRejected,
    /// The backend could not be reached (refused connection, DNS, timeout, TLS).
    Unreachable,
    /// Authenticated, but not allowed to do this (missing privilege or capability).
    PermissionDenied,
    /// Someone else changed the state first (compare-and-set failed, lock held).
    Conflict,
    /// The thing named does not exist (role, key, secret, user).
    NotFound,
    /// The configuration or a value is unusable (bad JSON, missing field).
    InvalidInput,
    /// The backend does not support what was asked (strategy, feature).
    Unsupported,
    /// Anything else the backend reported.
    Other,
}

impl ErrorKind {
    /// Whether an error of this kind is worth retrying by default.
    pub fn default_retryable(self) -> bool {
        matches!(self, ErrorKind::Unreachable | ErrorKind::Conflict)
    }

    /// A short stable name, used in JSON output and audit records.
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorKind::AuthRejected => "auth_rejected",
            ErrorKind::Unreachable => "unreachable",
            ErrorKind::PermissionDenied => "permission_denied",
            ErrorKind::Conflict => "conflict",
            ErrorKind::NotFound => "not_found",
            ErrorKind::InvalidInput => "invalid_input",
            ErrorKind::Unsupported => "unsupported",
            ErrorKind::Other => "other",
        }
    }
}

impl fmt::Display for ErrorKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            ErrorKind::AuthRejected => "authentication rejected",
            ErrorKind::Unreachable => "unreachable",
            ErrorKind::PermissionDenied => "permission denied",
            ErrorKind::Conflict => "conflict",
            ErrorKind::NotFound => "not found",
            ErrorKind::InvalidInput => "invalid input",
            ErrorKind::Unsupported => "unsupported",
            ErrorKind::Other => "error",
        })
    }
}

/// An error from a target or store. The message is one line, names what failed, and
/// never contains a secret value: providers build it from names, codes and their own
/// words, never from a value they were given to protect.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{kind}: {message}")]
pub struct ProviderError {
    kind: ErrorKind,
    message: String,
    retryable: bool,
}

impl ProviderError {
    /// A new error whose retryability follows [`ErrorKind::default_retryable`].
    pub fn new(kind: ErrorKind, message: impl Into<String>) -> Self {
        let message = one_line(message.into());
        ProviderError {
            kind,
            retryable: kind.default_retryable(),
            message,
        }
    }

    /// Overrides whether the engine may retry.
    pub fn retryable(mut self, retryable: bool) -> Self {
        self.retryable = retryable;
        self
    }

    /// Shorthand for [`ErrorKind::AuthRejected`].
    pub fn auth_rejected(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::AuthRejected, message)
    }
    /// Shorthand for [`ErrorKind::Unreachable`].
    pub fn unreachable(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::Unreachable, message)
    }
    /// Shorthand for [`ErrorKind::PermissionDenied`].
    pub fn permission_denied(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::PermissionDenied, message)
    }
    /// Shorthand for [`ErrorKind::Conflict`].
    pub fn conflict(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::Conflict, message)
    }
    /// Shorthand for [`ErrorKind::NotFound`].
    pub fn not_found(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::NotFound, message)
    }
    /// Shorthand for [`ErrorKind::InvalidInput`].
    pub fn invalid_input(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::InvalidInput, message)
    }
    /// Shorthand for [`ErrorKind::Unsupported`].
    pub fn unsupported(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::Unsupported, message)
    }
    /// Shorthand for [`ErrorKind::Other`].
    pub fn other(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::Other, message)
    }

    /// What kind of failure this is.
    pub fn kind(&self) -> ErrorKind {
        self.kind
    }

    /// The message without the kind prefix.
    pub fn message(&self) -> &str {
        &self.message
    }

    /// Whether retrying the same call may succeed.
    pub fn is_retryable(&self) -> bool {
        self.retryable
    }

    /// Prefixes the message with context, keeping kind and retryability.
    pub fn context(mut self, context: impl fmt::Display) -> Self {
        self.message = one_line(format!("{context}: {}", self.message));
        self
    }
}

fn one_line(message: String) -> String {
    if message.contains(['\n', '\r']) {
        message
            .split(['\n', '\r'])
            .map(str::trim)
            .filter(|l| !l.is_empty())
            .collect::<Vec<_>>()
            .join(" ")
    } else {
        message
    }
}

/// Result alias for provider calls.
pub type ProviderResult<T> = Result<T, ProviderError>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_are_one_line() {
        let e = ProviderError::other("first\nsecond\r\n third");
        assert_eq!(e.to_string(), "error: first second third");
    }

    #[test]
    fn retryable_defaults_follow_kind() {
        assert!(ProviderError::unreachable("x").is_retryable());
        assert!(!ProviderError::auth_rejected("x").is_retryable());
        assert!(!ProviderError::unreachable("x").retryable(false).is_retryable());
    }
}
