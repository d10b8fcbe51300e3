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
///
/// Besides the kind, an error may carry the backend's own structured code (a SQLSTATE,
/// a MySQL error number, an AWS error code, an HTTP status) so that callers classify by
/// code, never by message text, and the underlying error as its `source()`.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{kind}: {message}")]
pub struct ProviderError {
    kind: ErrorKind,
    message: String,
    retryable: bool,
    code: Option<ErrorCode>,
    #[source]
    source: Option<std::sync::Arc<RedactedSource>>,
}

/// The underlying error of a [`ProviderError`], kept as text: each link of its
/// `source()` chain by its `Display` form only, never its `Debug` form (client errors'
/// Debug forms carry raw responses, request URLs and configuration), with any
/// `user:password@` of a URL replaced by `***@` and whatever the provider scrubbed.
/// It holds no reference to the original error, so nothing reachable from a
/// [`ProviderError`] can print more than these lines.
#[derive(Clone, PartialEq, Eq)]
pub struct RedactedSource {
    text: String,
    source: Option<Box<RedactedSource>>,
}

impl RedactedSource {
    /// The chain of `error`, each link's text passed through `scrub` and then stripped of
    /// URL user information.
    fn capture(error: &dyn std::error::Error, scrub: &dyn Fn(&str) -> String) -> Self {
        let mut texts = vec![error.to_string()];
        let mut next = error.source();
        while let Some(e) = next {
            texts.push(e.to_string());
            next = e.source();
        }
        let mut source = None;
        for text in texts.into_iter().rev() {
            source = Some(Box::new(RedactedSource {
                text: hide_url_userinfo(&scrub(&text)),
                source,
            }));
        }
        *source.expect("the chain holds the error itself")
    }
}

impl fmt::Display for RedactedSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

impl fmt::Debug for RedactedSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut list = f.debug_list();
        let mut next = Some(self);
        while let Some(s) = next {
            list.entry(&s.text);
            next = s.source.as_deref();
        }
        list.finish()
    }
}

impl std::error::Error for RedactedSource {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        self.source.as_deref().map(|s| s as _)
    }
}

/// `text` with the user information of every `scheme://user:password@host` replaced by
/// `***`.
fn hide_url_userinfo(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(at) = rest.find("://") {
        let (head, tail) = rest.split_at(at + 3);
        out.push_str(head);
        // The user information ends at the last `@` before the URL ends (a password may
        // hold `/`, `?` or `#` unencoded, so those do not end it here).
        let url_end = tail
            .find(|c: char| c.is_whitespace() || c == ')' || c == '"' || c == '\'')
            .unwrap_or(tail.len());
        match tail[..url_end].rfind('@') {
            Some(user_end) => {
                out.push_str("***");
                rest = &tail[user_end..];
            }
            None => rest = tail,
        }
    }
    out.push_str(rest);
    out
}

/// A backend's own error code, by family.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum ErrorCode {
    /// A PostgreSQL SQLSTATE (`28P01`).
    Sqlstate(String),
    /// A MySQL/MariaDB error number (`1045`).
    Mysql(u16),
    /// An AWS error code (`InvalidClientTokenId`).
    Aws(String),
    /// An HTTP status (`403`).
    Http(u16),
    /// A Redis error prefix (`WRONGPASS`, `NOPERM`).
    Redis(String),
}

impl fmt::Display for ErrorCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ErrorCode::Sqlstate(c) => write!(f, "SQLSTATE {c}"),
            ErrorCode::Mysql(n) => write!(f, "MySQL error {n}"),
            ErrorCode::Aws(c) => write!(f, "AWS {c}"),
            ErrorCode::Http(s) => write!(f, "HTTP {s}"),
            ErrorCode::Redis(c) => write!(f, "Redis {c}"),
        }
    }
}

impl ProviderError {
    /// A new error whose retryability follows [`ErrorKind::default_retryable`].
    pub fn new(kind: ErrorKind, message: impl Into<String>) -> Self {
        let message = one_line(message.into());
        ProviderError {
            kind,
            retryable: kind.default_retryable(),
            message,
            code: None,
            source: None,
        }
    }

    /// Attaches the backend's own error code.
    pub fn with_code(mut self, code: ErrorCode) -> Self {
        self.code = Some(code);
        self
    }

    /// The backend's own error code, when the provider attached one.
    pub fn code(&self) -> Option<&ErrorCode> {
        self.code.as_ref()
    }

    /// Attaches the underlying error, reachable through [`std::error::Error::source`] as a
    /// [`RedactedSource`]: the `Display` text of each link of its chain, URL user
    /// information hidden. Its text must hold no secret (client library errors about
    /// connections and statements do not; never attach an error built from a secret
    /// value); use [`ProviderError::with_scrubbed_source`] when it may quote something
    /// to hide (a password hash in a server's message).
    pub fn with_source(self, source: &dyn std::error::Error) -> Self {
        self.with_scrubbed_source(source, |text| text.to_owned())
    }

    /// [`ProviderError::with_source`], each link's text passed through `scrub` first.
    pub fn with_scrubbed_source(mut self, source: &dyn std::error::Error, scrub: impl Fn(&str) -> String) -> Self {
        self.source = Some(std::sync::Arc::new(RedactedSource::capture(source, &scrub)));
        self
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
    fn codes_and_sources_travel_with_the_error() {
        use std::error::Error as _;
        let io = std::io::Error::other("connection reset");
        let e = ProviderError::auth_rejected("login refused")
            .with_code(ErrorCode::Sqlstate("28P01".into()))
            .with_source(&io)
            .context("role app");
        assert_eq!(e.code(), Some(&ErrorCode::Sqlstate("28P01".into())));
        assert_eq!(e.code().unwrap().to_string(), "SQLSTATE 28P01");
        assert_eq!(e.source().unwrap().to_string(), "connection reset");
        assert_eq!(e.to_string(), "authentication rejected: role app: login refused");
    }

    /// A URL's password in the underlying error's text never reaches `source()`, `{:?}`
    /// or `{}`; nor does a Debug form (here: one with a field Display leaves out).
    #[test]
    fn sources_keep_display_text_only_and_hide_url_passwords() {
        use std::error::Error as _;

        #[derive(Debug)]
        struct Inner {
            #[allow(dead_code)]
            password: &'static str,
        }
        impl fmt::Display for Inner {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("cannot reach postgres://app:hunter2@db:5432/x and (http://u:p@h) then mysql://db/")
            }
        }
        impl std::error::Error for Inner {}
        #[derive(Debug)]
        struct Outer(Inner);
        impl fmt::Display for Outer {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("connect failed, hash abc123")
            }
        }
        impl std::error::Error for Outer {
            fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
                Some(&self.0)
            }
        }

        let outer = Outer(Inner { password: "s3cr3t" });
        let e = ProviderError::unreachable("login").with_scrubbed_source(&outer, |t| t.replace("abc123", "<hash>"));
        let source = e.source().unwrap();
        assert_eq!(source.to_string(), "connect failed, hash <hash>");
        let inner = source.source().unwrap();
        assert_eq!(
            inner.to_string(),
            "cannot reach postgres://***@db:5432/x and (http://***@h) then mysql://db/"
        );
        assert!(inner.source().is_none());
        let debug = format!("{e:?}");
        for secret in ["s3cr3t", "hunter2", "abc123", "u:p"] {
            assert!(!debug.contains(secret), "{secret} in {debug}");
        }
        assert!(debug.contains("connect failed, hash <hash>"), "{debug}");
        assert_eq!(e.to_string(), "unreachable: login");
    }

    /// A password holding `/`, `?` or `#` unencoded still ends at the URL's last `@`.
    #[test]
    fn url_passwords_with_delimiters_are_hidden() {
        for (text, shown) in [
            ("postgres://u:pa/ss@h/db", "postgres://***@h/db"),
            ("redis://:p#w@h:6379 refused", "redis://***@h:6379 refused"),
            (
                "mysql://u:p?x@h/ and http://plain/path",
                "mysql://***@h/ and http://plain/path",
            ),
        ] {
            assert_eq!(hide_url_userinfo(text), shown, "{text}");
        }
    }

    #[test]
    fn retryable_defaults_follow_kind() {
        assert!(ProviderError::unreachable("x").is_retryable());
        assert!(!ProviderError::auth_rejected("x").is_retryable());
        assert!(!ProviderError::unreachable("x").retryable(false).is_retryable());
    }
}
