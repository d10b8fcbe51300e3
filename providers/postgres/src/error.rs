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
        return (kind_of_sqlstate(code), text);
    }
    // Not from the server: tokio-postgres exposes no kind accessor, and its top-level
    // text is a fixed string per kind (its `Kind` enum's Display), so that string is the
    // kind here. Only the server's SQLSTATE (above) says a password was refused: a
    // client-side "authentication error" (a method the client does not speak, a SCRAM
    // server signature that does not verify, a password missing) proves nothing about the
    // password, so it must never count as a refusal (prove-dead would pass on it).
    let top = err.to_string();
    let text = rekey_net::error_chain(err);
    let kind = if err.is_closed() {
        ErrorKind::Unreachable
    } else {
        match top.as_str() {
            "error connecting to server"
            | "error communicating with the server"
            | "timeout waiting for server"
            | "error performing TLS handshake"
            | "connection closed" => ErrorKind::Unreachable,
            "authentication error" => ErrorKind::Unsupported,
            "invalid configuration" | "invalid connection string" => ErrorKind::InvalidInput,
            _ => ErrorKind::Other,
        }
    };
    (kind, text)
}

/// Whether the error means the connection itself is gone (worth one reconnect).
pub(crate) fn is_connection_lost(err: &tokio_postgres::Error) -> bool {
    if err.is_closed() {
        return true;
    }
    match err.as_db_error() {
        // Terminated by an administrator or a server shutdown.
        Some(db) => matches!(db.code().code(), "57P01" | "57P02" | "57P03") || db.code().code().starts_with("08"),
        None => err.to_string() == "error communicating with the server",
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
    let error = ProviderError::new(kind, format!("{action}: {text}"));
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
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let server = tokio::spawn(async move {
            let (mut socket, _) = listener.accept().await.unwrap();
            let mut startup = [0u8; 512];
            let _ = socket.read(&mut startup).await.unwrap();
            // AuthenticationSASL (R, code 10) offering "FOO" only.
            let mut answer = vec![b'R'];
            answer.extend_from_slice(&13u32.to_be_bytes());
            answer.extend_from_slice(&10u32.to_be_bytes());
            answer.extend_from_slice(b"FOO\0\0");
            socket.write_all(&answer).await.unwrap();
            let _ = socket.read(&mut startup).await;
        });
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
}
