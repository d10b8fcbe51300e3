//! Mapping redis-rs errors and Redis error replies to [`ProviderError`] kinds, with
//! messages built from error codes, the server's words and names, never from a password.

use rekey_api::{ErrorCode, ErrorKind, ProviderError};

/// The kind and a one-line description of a redis-rs error.
pub(crate) fn classify(err: &redis::RedisError) -> (ErrorKind, String) {
    let text = match (err.code(), err.detail()) {
        (Some(code), Some(detail)) => format!("{code} {detail}"),
        (Some(code), None) => code.to_owned(),
        _ => err.to_string(),
    };
    if err.is_io_error() || err.is_timeout() || err.is_connection_dropped() || err.is_connection_refusal() {
        return (ErrorKind::Unreachable, text);
    }
    let kind = match err.kind() {
        redis::ErrorKind::AuthenticationFailed => ErrorKind::AuthRejected,
        redis::ErrorKind::InvalidClientConfig => ErrorKind::InvalidInput,
        _ => match err.code() {
            Some(code) => kind_of_reply(code, err.detail().unwrap_or_default()),
            None => ErrorKind::Other,
        },
    };
    (kind, text)
}

/// The kind of a Redis error reply (`-CODE detail`).
pub(crate) fn kind_of_reply(code: &str, detail: &str) -> ErrorKind {
    match code {
        // Wrong password, disabled user, or no AUTH yet where one is required.
        "WRONGPASS" | "NOAUTH" => ErrorKind::AuthRejected,
        "NOPERM" => ErrorKind::PermissionDenied,
        // The server is starting, busy with a script, or has lost its master: try later.
        "LOADING" | "BUSY" | "MASTERDOWN" | "TRYAGAIN" | "CLUSTERDOWN" => ErrorKind::Unreachable,
        "ERR" => {
            let lower = detail.to_ascii_lowercase();
            if lower.starts_with("unknown command") || lower.starts_with("unknown subcommand") {
                ErrorKind::Unsupported
            } else if lower.starts_with("no such user") || lower.contains("user '") && lower.contains("not found") {
                ErrorKind::NotFound
            } else if lower.contains("invalid password") || lower.contains("invalid username-password") {
                ErrorKind::AuthRejected
            } else {
                ErrorKind::Other
            }
        }
        _ => ErrorKind::Other,
    }
}

/// `"{action}: {description}"` as a [`ProviderError`] of the classified kind, with every
/// string of `scrub` (password hashes) replaced by `<hash>` in the server's words.
pub(crate) fn redis_error(err: &redis::RedisError, action: impl std::fmt::Display, scrub: &[&str]) -> ProviderError {
    let (kind, mut text) = classify(err);
    for s in scrub.iter().filter(|s| !s.is_empty()) {
        text = text.replace(s, "<hash>");
    }
    let error = ProviderError::new(kind, format!("{action}: {text}"));
    // The reply's code (`WRONGPASS`, `NOPERM`, `ERR`), so callers classify by code. A
    // generic `ERR` has no finer code: its detail text is all the protocol gives.
    match err.code() {
        Some(code) => error.with_code(ErrorCode::Redis(code.to_owned())),
        None => error,
    }
}

/// Whether the error means the connection itself is gone (worth one reconnect).
pub(crate) fn is_connection_lost(err: &redis::RedisError) -> bool {
    err.is_connection_dropped() || err.is_unrecoverable_error() || (err.is_io_error() && !err.is_timeout())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reply_codes() {
        assert_eq!(
            kind_of_reply("WRONGPASS", "invalid username-password pair or user is disabled."),
            ErrorKind::AuthRejected
        );
        assert_eq!(
            kind_of_reply("NOAUTH", "Authentication required."),
            ErrorKind::AuthRejected
        );
        assert_eq!(
            kind_of_reply(
                "NOPERM",
                "this user has no permissions to run the 'acl|setuser' command"
            ),
            ErrorKind::PermissionDenied
        );
        assert_eq!(kind_of_reply("ERR", "unknown command 'ACL'"), ErrorKind::Unsupported);
        assert_eq!(
            kind_of_reply("ERR", "unknown subcommand 'DRYRUN'"),
            ErrorKind::Unsupported
        );
        assert_eq!(kind_of_reply("ERR", "No such user 'x'"), ErrorKind::NotFound);
        assert_eq!(kind_of_reply("ERR", "User 'x' not found"), ErrorKind::NotFound);
        assert_eq!(kind_of_reply("LOADING", "Redis is loading"), ErrorKind::Unreachable);
        assert_eq!(kind_of_reply("ERR", "syntax error"), ErrorKind::Other);
    }

    #[test]
    fn scrubs_hashes() {
        let err = redis::RedisError::from((
            redis::ErrorKind::Client,
            "Error in ACL SETUSER modifier",
            "'!abcdef': The password you are trying to remove from the user does not exist".to_owned(),
        ));
        let e = redis_error(&err, "ACL SETUSER", &["abcdef"]);
        assert!(!e.to_string().contains("abcdef"), "{e}");
        assert!(e.to_string().contains("<hash>"), "{e}");
    }

    #[test]
    fn reply_codes_are_attached() {
        let err = redis::RedisError::from((
            redis::ErrorKind::Server(redis::ServerErrorKind::NoPerm),
            "NOPERM",
            "this user has no permissions".to_owned(),
        ));
        let e = redis_error(&err, "ACL SETUSER", &[]);
        assert_eq!(e.code(), Some(&ErrorCode::Redis("NOPERM".to_owned())), "{e}");
        assert_eq!(e.kind(), ErrorKind::PermissionDenied);
    }
}
