//! Mapping mysql_async errors to [`ProviderError`] kinds, with messages built from error
//! codes, server messages and names, never from a password or a password hash.

use crate::sql::scrub_hashes;
use mysql_async::{DriverError, Error, IoError};
use rekey_api::{ErrorCode, ErrorKind, ProviderError};

/// The kind of a server error code (the `ER_*` numbers of MySQL and MariaDB).
pub(crate) fn kind_of_code(code: u16) -> ErrorKind {
    match code {
        // ER_ACCESS_DENIED_ERROR, ER_ACCESS_DENIED_NO_PASSWORD_ERROR,
        // ER_HOST_NOT_PRIVILEGED (no account matches this client host at all)
        1045 | 1698 | 1130 => ErrorKind::AuthRejected,
        // ER_DBACCESS_DENIED_ERROR, ER_TABLEACCESS_DENIED_ERROR,
        // ER_COLUMNACCESS_DENIED_ERROR, ER_SPECIFIC_ACCESS_DENIED_ERROR,
        // ER_KILL_DENIED_ERROR, ER_OPTION_PREVENTS_STATEMENT (read_only),
        // ER_MUST_CHANGE_PASSWORD(_LOGIN) (expired password), account locked
        // (MySQL 3118, MariaDB 4151): the password may be right, the login is not usable.
        1044 | 1142 | 1143 | 1227 | 1095 | 1290 | 1820 | 1862 | 3118 | 4151 => ErrorKind::PermissionDenied,
        // ER_CANNOT_USER (ALTER USER on a missing account), ER_PASSWORD_NO_MATCH,
        // ER_NONEXISTING_GRANT, ER_BAD_DB_ERROR
        1396 | 1133 | 1141 | 1049 => ErrorKind::NotFound,
        // ER_PLUGIN_IS_NOT_LOADED (mysql_native_password disabled, MySQL 8.4+),
        // ER_PASSWORD_CANNOT_BE_RETAINED_ON_PLUGIN_CHANGE, ER_NOT_SUPPORTED_YET
        1524 | 3894 | 1235 => ErrorKind::Unsupported,
        // ER_LOCK_WAIT_TIMEOUT, ER_LOCK_DEADLOCK; ER_TOO_MANY_USER_CONNECTIONS (the
        // server's max_user_connections) and ER_USER_LIMIT_REACHED (the account's own
        // MAX_USER_CONNECTIONS): this user's sessions are all taken, the host serves others
        1205 | 1213 | 1203 | 1226 => ErrorKind::Conflict,
        // ER_CON_COUNT_ERROR, ER_HOST_IS_BLOCKED, ER_SERVER_SHUTDOWN,
        // ER_CONNECTION_KILLED, ER_CLIENT_INTERACTION_TIMEOUT
        1040 | 1129 | 1053 | 1927 | 4031 => ErrorKind::Unreachable,
        _ => ErrorKind::Other,
    }
}

/// The kind and a one-line description of a mysql_async error.
pub(crate) fn classify(err: &Error) -> (ErrorKind, String) {
    match err {
        Error::Server(e) if e.code == 1820 || e.code == 1862 => (
            kind_of_code(e.code),
            format!(
                "the password has expired (PASSWORD EXPIRE): the server accepts it only to change it (error {}, \
                 SQLSTATE {}); a rotation through an admin (`rekey rotate` with `admin` configured) replaces it \
                 and clears the expiry (to store it first: `rekey import --no-verify`)",
                e.code, e.state
            ),
        ),
        Error::Server(e) => (
            kind_of_code(e.code),
            format!("{} (error {}, SQLSTATE {})", scrub_hashes(&e.message), e.code, e.state),
        ),
        Error::Io(IoError::Io(e)) if tls_failure(e).is_some() => (
            ErrorKind::Unreachable,
            format!(
                "TLS handshake failed: {}",
                tls_failure(e).map(ToString::to_string).unwrap_or_default()
            ),
        ),
        Error::Io(IoError::Io(e)) => (ErrorKind::Unreachable, format!("I/O error: {e}")),
        Error::Io(IoError::Tls(e)) => (ErrorKind::Unreachable, format!("TLS error: {e}")),
        Error::Driver(DriverError::NoClientSslFlagFromServer) => (
            ErrorKind::Unreachable,
            "the server does not offer TLS (set tls = \"prefer\" or \"disable\" only if plain TCP is acceptable)"
                .to_owned(),
        ),
        Error::Driver(DriverError::ConnectionClosed) => {
            (ErrorKind::Unreachable, "the server closed the connection".to_owned())
        }
        // A second authentication switch: the server refused the password with the
        // first method of an `IDENTIFIED VIA a OR b` chain (such as ed25519) and asks
        // for the next one, which mysql_async cannot follow. rekey gives every password
        // method of a chain the same password, so the next would refuse it too.
        Error::Driver(DriverError::UnexpectedPacket { payload }) if payload.first() == Some(&0xfe) => (
            ErrorKind::AuthRejected,
            "the server refused the password with the account's first authentication method and asked for the \
             next one (an IDENTIFIED VIA … OR … chain; the client follows only one switch)"
                .to_owned(),
        ),
        Error::Driver(DriverError::CleartextPluginDisabled) => (
            ErrorKind::Unsupported,
            "the account asks for the cleartext password plugin, which rekey never uses".to_owned(),
        ),
        Error::Driver(DriverError::UnknownAuthPlugin { name }) => (
            ErrorKind::Unsupported,
            format!("the account uses the authentication plugin `{name}`, which the client does not support"),
        ),
        // Other driver errors' Display never includes values (FromRow/FromValue print
        // fixed text), but keep to the variant's own words.
        Error::Driver(e) => (ErrorKind::Other, format!("driver error: {e}")),
        Error::Url(_) => (ErrorKind::InvalidInput, "invalid connection options".to_owned()),
        Error::Other(e) => (ErrorKind::Other, scrub_hashes(&e.to_string())),
    }
}

/// The rustls error inside an I/O error (tokio-rustls reports handshake failures,
/// such as an untrusted certificate, that way).
fn tls_failure(e: &std::io::Error) -> Option<&rustls::Error> {
    rekey_net::tls::rustls_error(e)
}

/// Whether the error means the connection itself is gone (worth one reconnect).
pub(crate) fn is_connection_lost(err: &Error) -> bool {
    match err {
        Error::Server(e) => matches!(e.code, 1053 | 1927 | 4031),
        Error::Io(_) => true,
        Error::Driver(DriverError::ConnectionClosed | DriverError::PacketOutOfOrder) => true,
        _ => false,
    }
}

/// The server error code, if it is one.
pub(crate) fn server_code(err: &Error) -> Option<u16> {
    match err {
        Error::Server(e) => Some(e.code),
        _ => None,
    }
}

/// `"{action}: {description}"` as a [`ProviderError`] of the classified kind.
pub(crate) fn mysql_error(err: &Error, action: impl std::fmt::Display) -> ProviderError {
    let (kind, text) = classify(err);
    let retryable = match err {
        // Retrying cannot make a TLS-less server offer TLS, nor a certificate valid.
        Error::Driver(DriverError::NoClientSslFlagFromServer) => false,
        Error::Io(IoError::Io(e)) if tls_failure(e).is_some() => false,
        _ => kind.default_retryable(),
    };
    let error = ProviderError::new(kind, format!("{action}: {text}")).retryable(retryable);
    match err {
        // The server's own error number, so callers classify by code, never by text; the
        // server's words as the source, hashes scrubbed as in the message.
        Error::Server(e) => error
            .with_code(ErrorCode::Mysql(e.code))
            .with_scrubbed_source(err, scrub_hashes),
        // I/O and TLS errors, and driver errors, whose texts are fixed words and names
        // (a value or row that failed to convert is in their Debug form only).
        Error::Io(_) | Error::Driver(_) => error.with_source(err),
        // Not a URL error (it may quote a connection URL's parameter values) nor an
        // `Other` error (any text at all).
        Error::Url(_) | Error::Other(_) => error,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes() {
        assert_eq!(kind_of_code(1045), ErrorKind::AuthRejected);
        assert_eq!(kind_of_code(1130), ErrorKind::AuthRejected);
        assert_eq!(kind_of_code(1044), ErrorKind::PermissionDenied);
        assert_eq!(kind_of_code(1142), ErrorKind::PermissionDenied);
        assert_eq!(kind_of_code(1227), ErrorKind::PermissionDenied);
        assert_eq!(kind_of_code(4151), ErrorKind::PermissionDenied);
        assert_eq!(kind_of_code(1396), ErrorKind::NotFound);
        assert_eq!(kind_of_code(1141), ErrorKind::NotFound);
        assert_eq!(kind_of_code(1524), ErrorKind::Unsupported);
        assert_eq!(kind_of_code(1040), ErrorKind::Unreachable);
        assert_eq!(kind_of_code(1203), ErrorKind::Conflict);
        assert_eq!(kind_of_code(1226), ErrorKind::Conflict);
        assert_eq!(kind_of_code(1064), ErrorKind::Other);
    }

    #[test]
    fn server_messages_lose_hashes() {
        let err = Error::Server(mysql_async::ServerError {
            code: 1064,
            message: "You have an error near '*2470C0C06DEE42FD1618BB99005ADCA2EC9D1E19'".into(),
            state: "42000".into(),
        });
        let e = mysql_error(&err, "ALTER USER 'a'@'%'");
        assert!(!e.to_string().contains("2470C0"), "{e}");
        assert!(e.to_string().contains("error 1064"), "{e}");
        assert_eq!(e.code(), Some(&ErrorCode::Mysql(1064)));
        let source = std::error::Error::source(&e).expect("the server's error is attached");
        assert!(source.to_string().contains("1064"), "{source}");
        assert!(!format!("{e:?}").contains("2470C0"), "{e:?}");
        let closed = mysql_error(&Error::Driver(DriverError::ConnectionClosed), "connecting");
        assert_eq!(closed.code(), None);
        assert!(std::error::Error::source(&closed).is_some());
    }

    #[test]
    fn expired_passwords_say_so() {
        let err = Error::Server(mysql_async::ServerError {
            code: 1820,
            message: "You must SET PASSWORD before executing this statement".into(),
            state: "HY000".into(),
        });
        let e = mysql_error(&err, "logged in as user 'app' on h:3306");
        assert_eq!(e.kind(), ErrorKind::PermissionDenied);
        assert!(e.to_string().contains("has expired"), "{e}");
        assert!(e.to_string().contains("error 1820"), "{e}");
        assert!(e.to_string().contains("`rekey import --no-verify`"), "{e}");
    }
}
