//! Mapping AWS SDK errors to [`ProviderError`] kinds. Messages are built from AWS error
//! codes, AWS's own messages (which name resources, never secret values), names and ids.

use aws_credential_types::provider::error::CredentialsError;
use aws_sdk_secretsmanager::config::http::HttpResponse;
use aws_sdk_secretsmanager::error::{ProvideErrorMetadata, SdkError};
use rekey_api::{ErrorCode, ErrorKind, ProviderError};
use rekey_net::error_chain;
use std::error::Error as StdError;
use std::fmt;

/// What users should do when no credentials were found.
pub(crate) const NO_CREDENTIALS: &str = "no AWS credentials found (set AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY, \
     AWS_PROFILE or the `profile` setting, or run with an instance or task role)";

/// The AWS error code of a service error (`ResourceNotFoundException`...), if it is one.
pub(crate) fn code<E: ProvideErrorMetadata>(err: &SdkError<E, HttpResponse>) -> Option<&str> {
    match err {
        SdkError::ServiceError(ctx) => ctx.err().code().or_else(|| body_element(ctx.raw(), "Code")),
        _ => None,
    }
}

/// The text of `<name>` in an error body the SDK could not parse. moto answers
/// signature failures of every service in IAM's `<ErrorResponse><Errors><Error>` shape,
/// which the STS and Secrets Manager parsers do not read; AWS answers each service in
/// its own protocol.
fn body_element<'a>(raw: &'a HttpResponse, name: &str) -> Option<&'a str> {
    let body = std::str::from_utf8(raw.body().bytes()?).ok()?;
    let open = format!("<{name}>");
    let start = body.find(&open)? + open.len();
    let end = body[start..].find(&format!("</{name}>"))? + start;
    Some(body[start..end].trim()).filter(|s| !s.is_empty())
}

/// `"{action}: {description}"` as a [`ProviderError`] of the kind the error has.
pub(crate) fn aws_error<E>(err: &SdkError<E, HttpResponse>, action: impl fmt::Display) -> ProviderError
where
    E: ProvideErrorMetadata + StdError + 'static,
{
    let (kind, text) = classify(err);
    with_details(ProviderError::new(kind, format!("{action}: {text}")), err)
}

/// `error` with the AWS error code of `err` (or, for an answer without one, its HTTP
/// status) and the underlying error as its source where that cannot hold a secret.
///
/// The source is the service's modeled error (AWS's code and message, already in the
/// message) or, when no answer came, the connector's error chain (I/O, DNS, TLS,
/// timeouts). Never for a response that could not be parsed nor a request that could not
/// be built: their text may quote the body of a `GetSecretValue` answer or the request
/// holding the secret being written.
pub(crate) fn with_details<E>(error: ProviderError, err: &SdkError<E, HttpResponse>) -> ProviderError
where
    E: ProvideErrorMetadata + StdError + 'static,
{
    match err {
        SdkError::ServiceError(ctx) => {
            let error = error.with_source(ctx.err());
            match code(err) {
                Some(code) => error.with_code(ErrorCode::Aws(code.to_owned())),
                None => error.with_code(ErrorCode::Http(ctx.raw().status().as_u16())),
            }
        }
        // Not for a failure of the credential chain: a profile file's parse error may quote
        // its lines, keys included.
        SdkError::DispatchFailure(_) if find_credentials_error(err).is_some() => error,
        SdkError::DispatchFailure(_) | SdkError::TimeoutError(_) => error.with_source(err),
        _ => error,
    }
}

/// The kind and a one-line description of an SDK error.
pub(crate) fn classify<E>(err: &SdkError<E, HttpResponse>) -> (ErrorKind, String)
where
    E: ProvideErrorMetadata + StdError + 'static,
{
    match err {
        SdkError::ServiceError(ctx) => {
            let e = ctx.err();
            let Some(code) = e.code().or_else(|| body_element(ctx.raw(), "Code")) else {
                let status = ctx.raw().status().as_u16();
                let kind = match status {
                    403 => ErrorKind::PermissionDenied,
                    404 => ErrorKind::NotFound,
                    500..=599 => ErrorKind::Unreachable,
                    _ => ErrorKind::Other,
                };
                return (kind, format!("HTTP {status} without an AWS error code"));
            };
            let message = e.message().or_else(|| body_element(ctx.raw(), "Message"));
            let text = match message {
                Some(message) if !message.is_empty() => format!("{code}: {message}"),
                _ => code.to_owned(),
            };
            (kind_of_code(code), text)
        }
        SdkError::TimeoutError(_) => (ErrorKind::Unreachable, "timed out waiting for AWS".to_owned()),
        SdkError::DispatchFailure(failure) => {
            if let Some(credentials) = find_credentials_error(err) {
                return classify_credentials(credentials);
            }
            let detail = error_chain(err);
            let kind = if failure.is_user() {
                ErrorKind::InvalidInput
            } else {
                // I/O, timeouts, TLS, DNS and "other" dispatch failures: the request did
                // not get an answer from AWS.
                ErrorKind::Unreachable
            };
            (kind, format!("cannot reach AWS: {detail}"))
        }
        SdkError::ConstructionFailure(_) => (
            ErrorKind::InvalidInput,
            format!("cannot build the request: {}", error_chain(err)),
        ),
        SdkError::ResponseError(_) => (ErrorKind::Other, format!("unexpected response: {}", error_chain(err))),
        _ => (ErrorKind::Other, error_chain(err)),
    }
}

/// The kind of an AWS error code, across Secrets Manager (JSON protocol, `...Exception`)
/// and IAM/STS (query protocol).
pub(crate) fn kind_of_code(code: &str) -> ErrorKind {
    match code {
        // The request's own credentials were refused.
        "InvalidClientTokenId"
        | "SignatureDoesNotMatch"
        | "UnrecognizedClientException"
        | "InvalidSignatureException"
        | "IncompleteSignature"
        | "ExpiredToken"
        | "ExpiredTokenException"
        | "InvalidAccessKeyId"
        | "AuthFailure" => ErrorKind::AuthRejected,
        "AccessDenied" | "AccessDeniedException" | "UnauthorizedOperation" | "UnauthorizedAccess" => {
            ErrorKind::PermissionDenied
        }
        // KMS refused to decrypt or encrypt the secret for this caller.
        "DecryptionFailure" | "EncryptionFailure" => ErrorKind::PermissionDenied,
        "ResourceNotFoundException" | "NoSuchEntity" => ErrorKind::NotFound,
        "ResourceExistsException" | "EntityAlreadyExists" | "LimitExceeded" | "ConcurrentModification" => {
            ErrorKind::Conflict
        }
        // Secrets Manager's "not in this state" (scheduled for deletion, rotation
        // running); the call site says more where it knows.
        "InvalidRequestException" => ErrorKind::Conflict,
        "InvalidParameterException"
        | "InvalidParameterValue"
        | "InvalidInput"
        | "ValidationError"
        | "MalformedPolicyDocument" => ErrorKind::InvalidInput,
        "ThrottlingException"
        | "Throttling"
        | "RequestLimitExceeded"
        | "TooManyRequestsException"
        | "ServiceUnavailable"
        | "ServiceUnavailableException"
        | "InternalServiceError"
        | "InternalServiceErrorException"
        | "InternalFailure"
        | "RequestTimeout"
        | "RequestTimeoutException" => ErrorKind::Unreachable,
        "LimitExceededException" => ErrorKind::Conflict,
        _ => ErrorKind::Other,
    }
}

fn find_credentials_error<'a>(err: &'a (dyn StdError + 'static)) -> Option<&'a CredentialsError> {
    let mut current: Option<&(dyn StdError + 'static)> = Some(err);
    while let Some(e) = current {
        if let Some(found) = e.downcast_ref::<CredentialsError>() {
            return Some(found);
        }
        current = e.source();
    }
    None
}

/// A failure of the credential chain itself (no request was sent).
pub(crate) fn classify_credentials(err: &CredentialsError) -> (ErrorKind, String) {
    let detail = error_chain(err);
    match err {
        CredentialsError::CredentialsNotLoaded(_) => (ErrorKind::InvalidInput, format!("{NO_CREDENTIALS}: {detail}")),
        CredentialsError::ProviderTimedOut(_) => (
            ErrorKind::Unreachable,
            format!("loading AWS credentials timed out: {detail}"),
        ),
        _ => (
            ErrorKind::InvalidInput,
            format!("cannot load AWS credentials: {detail}"),
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes() {
        assert_eq!(kind_of_code("InvalidClientTokenId"), ErrorKind::AuthRejected);
        assert_eq!(kind_of_code("SignatureDoesNotMatch"), ErrorKind::AuthRejected);
        assert_eq!(kind_of_code("AccessDeniedException"), ErrorKind::PermissionDenied);
        assert_eq!(kind_of_code("AccessDenied"), ErrorKind::PermissionDenied);
        assert_eq!(kind_of_code("ResourceNotFoundException"), ErrorKind::NotFound);
        assert_eq!(kind_of_code("NoSuchEntity"), ErrorKind::NotFound);
        assert_eq!(kind_of_code("ResourceExistsException"), ErrorKind::Conflict);
        assert_eq!(kind_of_code("LimitExceeded"), ErrorKind::Conflict);
        assert_eq!(kind_of_code("ThrottlingException"), ErrorKind::Unreachable);
        assert_eq!(kind_of_code("Whatever"), ErrorKind::Other);
    }

    /// A service error carries AWS's code (or the HTTP status when the answer had none)
    /// and its modeled error as source; an unparsable answer carries no source, since its
    /// text could quote the body.
    #[test]
    fn codes_and_sources_are_attached() {
        use aws_sdk_secretsmanager::error::ErrorMetadata;
        use aws_sdk_secretsmanager::operation::get_secret_value::GetSecretValueError;

        let response = |status: u16, body: &'static str| HttpResponse::new(status.try_into().unwrap(), body.into());
        let modeled = GetSecretValueError::generic(
            ErrorMetadata::builder()
                .code("AccessDeniedException")
                .message("not allowed")
                .build(),
        );
        let err = SdkError::service_error(modeled, response(400, "{}"));
        let e = aws_error(&err, "reading secret app");
        assert_eq!(e.kind(), ErrorKind::PermissionDenied);
        assert_eq!(e.code(), Some(&ErrorCode::Aws("AccessDeniedException".to_owned())));
        assert!(std::error::Error::source(&e).is_some(), "{e:?}");
        assert_eq!(
            e.to_string(),
            "permission denied: reading secret app: AccessDeniedException: not allowed"
        );

        let bare = GetSecretValueError::generic(ErrorMetadata::builder().build());
        let e = aws_error(&SdkError::service_error(bare, response(503, "")), "reading secret app");
        assert_eq!(e.code(), Some(&ErrorCode::Http(503)));
        assert_eq!(e.kind(), ErrorKind::Unreachable);

        let unparsable: SdkError<GetSecretValueError, HttpResponse> = SdkError::response_error(
            std::io::Error::other("cannot parse {\"SecretString\":\"s3cr3t\"}"),
            response(200, "{\"SecretString\":\"s3cr3t\"}"),
        );
        let e = aws_error(&unparsable, "reading secret app");
        assert!(std::error::Error::source(&e).is_none(), "{e:?}");
        assert_eq!(e.code(), None);
    }

    #[test]
    fn missing_credentials_are_invalid_input() {
        let (kind, text) = classify_credentials(&CredentialsError::not_loaded("no providers in chain"));
        assert_eq!(kind, ErrorKind::InvalidInput);
        assert!(text.starts_with("no AWS credentials found"), "{text}");
    }
}
