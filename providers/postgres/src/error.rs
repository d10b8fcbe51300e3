//! Mapping tokio-postgres errors to [`ProviderError`] kinds, with messages built from
//! SQLSTATEs, server messages and names, never from a password.

use rekey_api::{ErrorKind, ProviderError};

/// The kind and a one-line description of a tokio-postgres error.
pub(crate) fn classify(err: &tokio_postgres::Error) -> (ErrorKind, String) {
    if let Some(db) = err.as_db_error() {
        let code = db.code().code();
        let mut text = db.message().to_owned();
        if let Some(detail) = db.detail() {
            text.push_str(" (");
            text.push_str(detail);
            text.push(')');
        }
        text.push_str(&format!(" (SQLSTATE {code})"));
        if code == "28000" && db.message().ends_with(", no encryption") {
            // pg_hba.conf turned away a login made without TLS: often a `hostssl` rule.
            text.push_str(
                "; the login was not encrypted: where pg_hba.conf admits it only over TLS, set sslmode = \"require\" \
                 or stronger",
            );
        }
        return (kind_of_sqlstate(code), text);
    }
    // Not from the server. Typed first: a closed connection, a TLS failure, or an I/O
    // error underneath (refused, reset, DNS) means no answer.
    let text = rekey_net::error_chain(err);
    let top = err.to_string();
    let kind = if top == "authentication error" {
        // Whatever is under it (a SCRAM exchange cut short wraps an UnexpectedEof I/O
        // error): the authentication did not complete, which is not a dead host either.
        kind_of_client_error(&top)
    } else if err.is_closed() || rekey_net::tls::rustls_error(err).is_some() {
        // Closed, or a failed TLS handshake (an untrusted certificate: rustls's own error,
        // which tokio-rustls wraps in an I/O error of kind InvalidData).
        ErrorKind::Unreachable
    } else if io_source(err).is_some_and(|io| !is_protocol_io(io)) {
        ErrorKind::Unreachable
    } else {
        // Also a protocol failure in an I/O error: its top-level text says which
        // (parsing, encoding, or a TLS handshake that failed below rustls).
        kind_of_client_error(&top)
    };
    (kind, text)
}

/// The kind of a client-side tokio-postgres error without a failed socket under it, by
/// its top-level text. tokio-postgres keeps its `Kind` private and has no accessor for these
/// (only `is_closed()` and `as_db_error()`), but that text is a fixed string per kind
/// (`Kind`'s Display, never anything the server or the configuration said), so the whole
/// string is matched, never a part of it.
///
/// Only the server's SQLSTATE (above) says a password was refused: a client-side
/// "authentication error" (a method the client does not speak, a SCRAM server
/// signature that does not verify, a password missing) proves nothing about the
/// password, so it must never count as a refusal (prove-dead would pass on it).
fn kind_of_client_error(top: &str) -> ErrorKind {
    match top {
        "timeout waiting for server" | "error performing TLS handshake" => ErrorKind::Unreachable,
        "authentication error" => ErrorKind::Unsupported,
        "invalid configuration" | "invalid connection string" => ErrorKind::InvalidInput,
        _ => ErrorKind::Other,
    }
}

/// The I/O error directly under a tokio-postgres error (its `Io`, `Connect`, `Parse` and
/// `Encode` kinds, and TLS handshakes that failed in the socket).
fn io_source(err: &tokio_postgres::Error) -> Option<&std::io::Error> {
    use std::error::Error as _;
    err.source().and_then(|e| e.downcast_ref::<std::io::Error>())
}

/// Whether an I/O error is one tokio-postgres wraps a protocol failure in (a message it
/// cannot parse or encode; tokio-rustls's handshake failures), not a failed socket.
fn is_protocol_io(io: &std::io::Error) -> bool {
    matches!(
        io.kind(),
        std::io::ErrorKind::InvalidInput | std::io::ErrorKind::InvalidData
    )
}

/// Whether the error means the connection itself is gone (worth one reconnect).
pub(crate) fn is_connection_lost(err: &tokio_postgres::Error) -> bool {
    if err.is_closed() {
        return true;
    }
    match err.as_db_error() {
        // Terminated by an administrator or a server shutdown.
        Some(db) => matches!(db.code().code(), "57P01" | "57P02" | "57P03") || db.code().code().starts_with("08"),
        // The socket failed under a statement (not a message tokio-postgres could not parse).
        None => io_source(err).is_some_and(|io| !is_protocol_io(io)),
    }
}

fn kind_of_sqlstate(code: &str) -> ErrorKind {
    match code {
        // invalid_password, invalid_authorization_specification
        "28P01" | "28000" => ErrorKind::AuthRejected,
        // invalid_catalog_name (no such database), undefined_object (no such role)
        "3D000" | "42704" => ErrorKind::NotFound,
        // insufficient_privilege
        "42501" => ErrorKind::PermissionDenied,
        // lock_not_available (lock_timeout): someone else holds the role's row
        "55P03" => ErrorKind::Conflict,
        // too_many_connections, admin/crash shutdown, cannot_connect_now, connection
        // exceptions: the server is not (yet, or any more) available
        "53300" | "57P01" | "57P02" | "57P03" => ErrorKind::Unreachable,
        c if c.starts_with("08") => ErrorKind::Unreachable,
        _ => ErrorKind::Other,
    }
}

/// `"{action}: {description}"` as a [`ProviderError`] of the classified kind.
pub(crate) fn pg_error(err: &tokio_postgres::Error, action: impl std::fmt::Display) -> ProviderError {
    let (kind, text) = classify(err);
    // The source is tokio-postgres's own text: fixed words per kind, the server's
    // message (already in the message above) or an I/O error; never the configuration.
    let error = ProviderError::new(kind, format!("{action}: {text}")).with_source(err);
    match err.as_db_error() {
        Some(db) => error.with_code(rekey_api::ErrorCode::Sqlstate(db.code().code().to_owned())),
        None => error,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sqlstates() {
        assert_eq!(kind_of_sqlstate("28P01"), ErrorKind::AuthRejected);
        assert_eq!(kind_of_sqlstate("28000"), ErrorKind::AuthRejected);
        assert_eq!(kind_of_sqlstate("3D000"), ErrorKind::NotFound);
        assert_eq!(kind_of_sqlstate("42704"), ErrorKind::NotFound);
        assert_eq!(kind_of_sqlstate("42501"), ErrorKind::PermissionDenied);
        assert_eq!(kind_of_sqlstate("08006"), ErrorKind::Unreachable);
        assert_eq!(kind_of_sqlstate("53300"), ErrorKind::Unreachable);
        assert_eq!(kind_of_sqlstate("42601"), ErrorKind::Other);
    }

    /// A client-side authentication error (here: a server offering only a SASL mechanism
    /// the client does not speak) is not a refused password: prove-dead must not pass on
    /// it. The peer is a fake: a TCP listener that answers any startup with that offer.
    #[tokio::test]
    async fn a_client_side_authentication_error_is_not_a_refusal() {
        // AuthenticationSASL (R, code 10) offering "FOO" only.
        let (port, server) = crate::conn::tests::asking(10, b"FOO\0\0").await;
        let mut config = tokio_postgres::Config::new();
        config
            .host("127.0.0.1")
            .port(port)
            .user("app")
            .password("a-password")
            .ssl_mode(tokio_postgres::config::SslMode::Disable);
        let err = match config.connect(tokio_postgres::NoTls).await {
            Ok(_) => panic!("the fake server accepts nothing"),
            Err(e) => e,
        };
        assert!(err.as_db_error().is_none(), "not the server's refusal: {err}");
        let (kind, text) = classify(&err);
        assert_ne!(kind, ErrorKind::AuthRejected, "{text}");
        assert_eq!(kind, ErrorKind::Unsupported, "{text}");
        server.abort();
    }

    /// The fixed texts of tokio-postgres's client-side kinds that carry no I/O error: a
    /// change in the library's words makes this fail rather than silently turn a
    /// timeout into `Other`.
    #[test]
    fn client_error_texts() {
        assert_eq!(
            kind_of_client_error("timeout waiting for server"),
            ErrorKind::Unreachable
        );
        assert_eq!(kind_of_client_error("authentication error"), ErrorKind::Unsupported);
        assert_eq!(kind_of_client_error("invalid configuration"), ErrorKind::InvalidInput);
        assert_eq!(
            kind_of_client_error("invalid connection string"),
            ErrorKind::InvalidInput
        );
        assert_eq!(kind_of_client_error("authentication error: x"), ErrorKind::Other);
        assert_eq!(kind_of_client_error("unexpected message from server"), ErrorKind::Other);
        assert_eq!(
            tokio_postgres::Error::__private_api_timeout().to_string(),
            "timeout waiting for server"
        );
    }

    /// A refused connection is unreachable through the I/O error under it, and carries
    /// it as its source; the connection's password appears nowhere.
    #[tokio::test]
    async fn a_refused_connection_is_unreachable_by_its_io_error() {
        use std::error::Error as _;
        let port = {
            let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            listener.local_addr().unwrap().port()
        };
        let mut config = tokio_postgres::Config::new();
        config
            .host("127.0.0.1")
            .port(port)
            .user("app")
            .password("pw-not-shown")
            .ssl_mode(tokio_postgres::config::SslMode::Disable);
        let err = match config.connect(tokio_postgres::NoTls).await {
            Ok(_) => panic!("nothing listens on {port}"),
            Err(e) => e,
        };
        assert!(io_source(&err).is_some(), "{err}");
        let e = pg_error(&err, "connecting");
        assert_eq!(e.kind(), ErrorKind::Unreachable, "{e}");
        let source = e.source().expect("the tokio-postgres error is attached");
        assert_eq!(source.to_string(), "error connecting to server");
        assert!(source.source().is_some(), "the I/O error under it is kept: {e:?}");
        assert!(!format!("{e:?}").contains("pw-not-shown"));
    }
}
