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
        "ERR" => match err_reply(detail) {
            Some(ErrReply::UnknownCommand | ErrReply::WrongArity) => ErrorKind::Unsupported,
            // No ACL file is a missing thing too: ACL SAVE names no user, so callers
            // tell it from a missing user by the command they sent.
            Some(ErrReply::NoSuchUser | ErrReply::NoAclFile) => ErrorKind::NotFound,
            Some(ErrReply::InvalidPassword) => ErrorKind::AuthRejected,
            // The password went away between reading the user and changing it.
            Some(ErrReply::PasswordToRemoveMissing) => ErrorKind::Conflict,
            None => ErrorKind::Other,
        },
        _ => ErrorKind::Other,
    }
}

/// A generic `ERR` reply that rekey acts on. Redis gives these no code of their own (its
/// only finer codes are the `WRONGPASS`, `NOPERM`... prefixes, which [`kind_of_reply`]
/// reads) and redis-rs reports them all as `ServerErrorKind::ResponseError`, so the
/// detail is all there is: each is recognised by the fixed words Redis opens it with
/// (`acl.c`, `networking.c`), matched from the start, never a fragment anywhere.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ErrReply {
    /// `unknown command '…'`, `unknown subcommand '…'`: a server without the feature.
    UnknownCommand,
    /// `wrong number of arguments for 'auth' command`: AUTH with a user name on a
    /// server without ACLs (before Redis 6).
    WrongArity,
    /// `No such user '…'` (CLIENT KILL USER), `User '…' not found` (ACL DRYRUN).
    NoSuchUser,
    /// `This Redis instance is not configured to use an ACL file…` (ACL SAVE, ACL LOAD).
    NoAclFile,
    /// `invalid password`, `invalid username-password pair…`: AUTH refused by a server
    /// that answers with a plain `ERR` (before Redis 6).
    InvalidPassword,
    /// `Error in ACL SETUSER modifier '<…': The password you are trying to remove from
    /// the user does not exist`.
    PasswordToRemoveMissing,
}

/// Which [`ErrReply`] the detail of an `ERR` reply is, if any.
pub(crate) fn err_reply(detail: &str) -> Option<ErrReply> {
    let lower = detail.trim_start().to_ascii_lowercase();
    let lower = lower.as_str();
    if lower.starts_with("unknown command") || lower.starts_with("unknown subcommand") {
        Some(ErrReply::UnknownCommand)
    } else if lower.starts_with("wrong number of arguments") {
        Some(ErrReply::WrongArity)
    } else if lower.starts_with("no such user") || lower.starts_with("user '") && lower.ends_with("' not found") {
        Some(ErrReply::NoSuchUser)
    } else if lower.starts_with("this redis instance is not configured to use an acl file") {
        Some(ErrReply::NoAclFile)
    } else if lower.starts_with("invalid password") || lower.starts_with("invalid username-password pair") {
        Some(ErrReply::InvalidPassword)
    } else if lower.starts_with("error in acl setuser modifier")
        && lower.contains("': the password you are trying to remove from the user does not exist")
    {
        Some(ErrReply::PasswordToRemoveMissing)
    } else {
        None
    }
}

/// Which [`ErrReply`] a redis-rs error is, if it is an `ERR` reply.
pub(crate) fn err_reply_of(err: &redis::RedisError) -> Option<ErrReply> {
    match err.code() {
        Some("ERR") => err_reply(err.detail().unwrap_or_default()),
        _ => None,
    }
}

/// `"{action}: {description}"` as a [`ProviderError`] of the classified kind, with every
/// string of `scrub` (password hashes) replaced by `<hash>` in the server's words.
pub(crate) fn redis_error(err: &redis::RedisError, action: impl std::fmt::Display, scrub: &[&str]) -> ProviderError {
    let (kind, text) = classify(err);
    let hide = |text: &str| {
        let mut text = text.to_owned();
        for s in scrub.iter().filter(|s| !s.is_empty()) {
            text = text.replace(s, "<hash>");
        }
        text
    };
    let mut error = ProviderError::new(kind, format!("{action}: {}", hide(&text)));
    // The source, for a server's reply (its words, hashes scrubbed) or a failed
    // connection (I/O text). Not for redis-rs's parse and client errors: their text may
    // quote a reply, and a reply to ACL GETUSER holds password hashes nobody listed.
    if err.code().is_some()
        || err.is_io_error()
        || err.is_timeout()
        || err.is_connection_dropped()
        || err.is_connection_refusal()
    {
        error = error.with_scrubbed_source(err, hide);
    }
    // The reply's code (`WRONGPASS`, `NOPERM`, `ERR`), so callers classify by code. A
    // generic `ERR` has no finer code: its detail text is all the protocol gives (see
    // [`ErrReply`]).
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
        assert_eq!(
            kind_of_reply(
                "ERR",
                "This Redis instance is not configured to use an ACL file. You may want to specify users via the \
                 ACL SETUSER command and then issue a CONFIG REWRITE"
            ),
            ErrorKind::NotFound
        );
        assert_eq!(
            kind_of_reply(
                "ERR",
                "Error in ACL SETUSER modifier '<5e88': The password you are trying to remove from the user does not \
                 exist"
            ),
            ErrorKind::Conflict
        );
        assert_eq!(kind_of_reply("ERR", "invalid password"), ErrorKind::AuthRejected);
        assert_eq!(
            kind_of_reply("ERR", "wrong number of arguments for 'auth' command"),
            ErrorKind::Unsupported
        );
    }

    /// Only the opening words count: the same words elsewhere in a detail (a user or key
    /// name can hold anything) classify nothing.
    #[test]
    fn err_replies_match_from_the_start_only() {
        assert_eq!(err_reply("unknown command 'ACL'"), Some(ErrReply::UnknownCommand));
        assert_eq!(err_reply("syntax error near 'unknown command'"), None);
        assert_eq!(err_reply("User 'x' not found"), Some(ErrReply::NoSuchUser));
        assert_eq!(err_reply("User 'x' has no permissions: not found"), None);
        assert_eq!(err_reply("Error in ACL SETUSER modifier 'x': does not exist"), None);
        assert_eq!(err_reply("the key 'invalid password' does not exist"), None);
        assert_eq!(err_reply("this user is not configured to use an ACL file"), None);
        let nosave = redis::RedisError::from((
            redis::ErrorKind::Server(redis::ServerErrorKind::ResponseError),
            "ERR",
            "This Redis instance is not configured to use an ACL file.".to_owned(),
        ));
        assert_eq!(err_reply_of(&nosave), Some(ErrReply::NoAclFile));
        let noperm = redis::RedisError::from((
            redis::ErrorKind::Server(redis::ServerErrorKind::NoPerm),
            "NOPERM",
            "This Redis instance is not configured to use an ACL file.".to_owned(),
        ));
        assert_eq!(err_reply_of(&noperm), None, "only an ERR reply");
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
        assert!(!format!("{e:?}").contains("abcdef"), "{e:?}");
        let reply = redis::RedisError::from((
            redis::ErrorKind::Server(redis::ServerErrorKind::ResponseError),
            "ERR",
            "Error in ACL SETUSER modifier '<abcdef': The password you are trying to remove from the user does not exist"
                .to_owned(),
        ));
        let e = redis_error(&reply, "ACL SETUSER", &["abcdef"]);
        let source = std::error::Error::source(&e).expect("a server reply is attached");
        assert!(source.to_string().contains("<hash>"), "{source}");
        assert!(!format!("{e:?}").contains("abcdef"), "{e:?}");
        assert_eq!(e.kind(), ErrorKind::Conflict);
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
