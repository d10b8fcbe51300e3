//! The HTTP layer: one reqwest client per address and TLS setting, requests to
//! `/v1/<path>`, and the mapping of Vault's answers to [`ProviderError`] kinds.
//!
//! Messages name the address, the method and the API path, and quote Vault's own error
//! text with every secret string of the request (and the token) masked. Request and
//! response bodies travel in buffers zeroized when dropped.

use crate::config::Endpoint;
use rekey_api::{ErrorCode, ErrorKind, ProviderError, ProviderResult, Secret};
use rekey_net::error_chain;
use rekey_net::tls::{ClientIdentity, ClientTls, Roots, TlsError, Verify};
use serde_json::Value;
use std::fmt;
use std::sync::Arc;
use std::time::Duration;
use zeroize::{Zeroize, Zeroizing};

/// Header carrying the token.
const TOKEN_HEADER: &str = "X-Vault-Token";
/// Header carrying the namespace.
const NAMESPACE_HEADER: &str = "X-Vault-Namespace";
/// Connect deadline (the request deadline is the configured timeout).
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// Longest server error text quoted in a message.
const MAX_SERVER_TEXT: usize = 300;

/// An HTTP method of Vault's API.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Method {
    Get,
    Post,
    Put,
    /// Vault's `LIST` verb (rvault accepts only the verb, not `GET ?list=true`).
    List,
}

impl Method {
    fn as_str(self) -> &'static str {
        match self {
            Method::Get => "GET",
            Method::Post => "POST",
            Method::Put => "PUT",
            Method::List => "LIST",
        }
    }

    fn reqwest(self) -> reqwest::Method {
        match self {
            Method::Get => reqwest::Method::GET,
            Method::Post => reqwest::Method::POST,
            Method::Put => reqwest::Method::PUT,
            Method::List => reqwest::Method::from_bytes(b"LIST").expect("LIST is a valid method token"),
        }
    }
}

impl fmt::Display for Method {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A JSON value that may hold secrets: zeroized on drop, never printed.
#[derive(Clone, PartialEq, Default)]
pub(crate) struct SecretJson(pub Value);

impl SecretJson {
    pub(crate) fn get(&self) -> &Value {
        &self.0
    }
}

impl Drop for SecretJson {
    fn drop(&mut self) {
        zeroize_value(&mut self.0);
    }
}

impl fmt::Debug for SecretJson {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("SecretJson(***)")
    }
}

/// Zeroizes every string inside a JSON value.
pub(crate) fn zeroize_value(value: &mut Value) {
    match value {
        Value::String(s) => s.zeroize(),
        Value::Array(items) => items.iter_mut().for_each(zeroize_value),
        Value::Object(map) => map.values_mut().for_each(zeroize_value),
        _ => {}
    }
}

/// One answer from Vault: the status and the JSON body (if any, and if it was JSON).
pub(crate) struct Reply {
    pub status: u16,
    pub body: Option<SecretJson>,
    /// Vault's error texts (`errors` array, or rvault's `error` string), masked.
    pub errors: Vec<String>,
}

impl Reply {
    pub(crate) fn is_success(&self) -> bool {
        (200..300).contains(&self.status)
    }

    /// A top-level field of the body.
    pub(crate) fn field(&self, name: &str) -> Option<&Value> {
        self.body.as_ref()?.get().get(name)
    }

    /// The `data` object of the body.
    pub(crate) fn data(&self) -> Option<&Value> {
        self.field("data").filter(|d| !d.is_null())
    }

    /// Vault's error texts joined, for messages (already masked).
    pub(crate) fn error_text(&self) -> String {
        self.errors.join("; ")
    }

    /// Whether Vault's error text contains `needle` (case-insensitive).
    pub(crate) fn error_mentions(&self, needle: &str) -> bool {
        let needle = needle.to_ascii_lowercase();
        self.errors.iter().any(|e| e.to_ascii_lowercase().contains(&needle))
    }
}

/// An HTTP client for one Vault address (and TLS setting), shared by every store and
/// target using it, plus the namespace of the caller.
#[derive(Clone)]
pub(crate) struct Conn {
    http: reqwest::Client,
    address: Arc<str>,
    namespace: Option<Arc<str>>,
}

impl fmt::Debug for Conn {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Conn")
            .field("address", &self.address)
            .field("namespace", &self.namespace)
            .finish()
    }
}

/// Builds the reqwest client for an endpoint: rustls with ring; the CA file's
/// certificates as the only roots when given, else the platform's and Mozilla's; the
/// client certificate when configured.
pub(crate) fn build_client(endpoint: &Endpoint) -> ProviderResult<reqwest::Client> {
    let identity = match (&endpoint.client_cert, &endpoint.client_key) {
        (Some(cert), Some(key)) => Some(ClientIdentity { cert, key }),
        _ => None,
    };
    let tls = ClientTls {
        roots: Roots::ca_file_or_system(endpoint.ca_cert.as_deref(), "ca_cert"),
        verify: Verify::Full,
        identity,
    }
    .build()
    .map_err(|e| match e {
        TlsError::Setup(_) | TlsError::Verifier(_) => {
            ProviderError::invalid_input(format!("vault {}: {e}", endpoint.address))
        }
        other => other.into(),
    })?;
    reqwest::Client::builder()
        .tls_backend_preconfigured(tls)
        .connect_timeout(CONNECT_TIMEOUT)
        .timeout(endpoint.timeout)
        // Vault answers redirects only from standbys; the token must not follow one to
        // another host.
        .redirect(reqwest::redirect::Policy::none())
        .no_proxy()
        .build()
        .map_err(|e| {
            ProviderError::invalid_input(format!(
                "vault {}: cannot build the HTTP client: {}",
                endpoint.address,
                error_chain(&e)
            ))
        })
}

impl Conn {
    pub(crate) fn new(http: reqwest::Client, address: &str, namespace: Option<&str>) -> Conn {
        Conn {
            http,
            address: address.into(),
            namespace: namespace.map(Into::into),
        }
    }

    /// `https://vault:8200`.
    pub(crate) fn address(&self) -> &str {
        &self.address
    }

    /// `https://vault:8200 (namespace team)` for descriptions.
    pub(crate) fn label(&self) -> String {
        match &self.namespace {
            Some(ns) => format!("{} (namespace {ns})", self.address),
            None => self.address.to_string(),
        }
    }

    /// Sends one request to `/v1/<path>`; any HTTP status is an `Ok` reply, only a
    /// failure to get an answer is an error ([`ErrorKind::Unreachable`]). `masks` are
    /// secret strings to mask in Vault's error text, besides those of `body` and the token.
    pub(crate) async fn send(
        &self,
        method: Method,
        path: &str,
        token: Option<&Secret>,
        body: Option<&Value>,
        masks: &[&str],
    ) -> ProviderResult<Reply> {
        let url = format!("{}/v1/{}", self.address, encode_path(path));
        let mut request = self.http.request(method.reqwest(), &url);
        if let Some(token) = token {
            let mut value = reqwest::header::HeaderValue::from_str(token.expose()).map_err(|_| {
                ProviderError::invalid_input(format!(
                    "vault {}: the token holds characters that cannot go in an HTTP header",
                    self.address
                ))
            })?;
            value.set_sensitive(true);
            request = request.header(TOKEN_HEADER, value);
        }
        if let Some(ns) = &self.namespace {
            request = request.header(NAMESPACE_HEADER, ns.as_ref());
        }
        if let Some(body) = body {
            let text =
                Zeroizing::new(serde_json::to_vec(body).map_err(|e| {
                    ProviderError::other(format!("vault {}: cannot encode a request: {e}", self.address))
                })?);
            request = request
                .header(reqwest::header::CONTENT_TYPE, "application/json")
                .body(reqwest::Body::from(bytes::Bytes::from_owner(text)));
        }
        let response = request
            .send()
            .await
            .map_err(|e| transport_error(&self.address, method, path, e))?;
        let status = response.status().as_u16();
        let raw = response
            .bytes()
            .await
            .map_err(|e| transport_error(&self.address, method, path, e))?;
        let raw: Zeroizing<Vec<u8>> = Zeroizing::new(raw.into());
        let parsed = if raw.iter().all(u8::is_ascii_whitespace) {
            None
        } else {
            serde_json::from_slice::<Value>(&raw).ok().map(SecretJson)
        };
        let mut errors = Vec::new();
        if !(200..300).contains(&status) {
            let mut secrets: Vec<&str> = masks.to_vec();
            if let Some(token) = token {
                secrets.push(token.expose());
            }
            if let Some(body) = body {
                collect_strings(body, &mut secrets);
            }
            if let Some(b) = &parsed {
                match b.get().get("errors") {
                    Some(Value::Array(items)) => {
                        errors.extend(items.iter().filter_map(Value::as_str).map(|s| mask(s, &secrets)))
                    }
                    _ => {
                        if let Some(s) = b.get().get("error").and_then(Value::as_str) {
                            errors.push(mask(s, &secrets));
                        }
                    }
                }
            }
            errors.retain(|e| !e.trim().is_empty());
        }
        Ok(Reply {
            status,
            body: parsed,
            errors,
        })
    }
}

/// Percent-encodes each path segment; `/` separates segments and a `?query` is kept.
fn encode_path(path: &str) -> String {
    let (path, query) = match path.split_once('?') {
        Some((p, q)) => (p, Some(q)),
        None => (path, None),
    };
    let mut out = String::with_capacity(path.len());
    for (i, segment) in path.split('/').enumerate() {
        if i > 0 {
            out.push('/');
        }
        for b in segment.bytes() {
            if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~' | b'@' | b':') {
                out.push(b as char);
            } else {
                out.push_str(&format!("%{b:02X}"));
            }
        }
    }
    if let Some(q) = query {
        out.push('?');
        out.push_str(q);
    }
    out
}

fn collect_strings<'a>(value: &'a Value, out: &mut Vec<&'a str>) {
    match value {
        Value::String(s) => out.push(s),
        Value::Array(items) => items.iter().for_each(|v| collect_strings(v, out)),
        Value::Object(map) => map.values().for_each(|v| collect_strings(v, out)),
        _ => {}
    }
}

/// Vault's error text, one line, shortened, with every secret of the request masked.
fn mask(text: &str, secrets: &[&str]) -> String {
    let mut text = text.replace(['\n', '\r'], " ");
    for secret in secrets {
        // Short values (such as "1" or "kv") are field values, not secrets, and masking
        // them would mangle the message.
        if secret.len() >= 6 && text.contains(secret) {
            text = text.replace(secret, "****");
        }
    }
    if text.len() > MAX_SERVER_TEXT {
        let mut end = MAX_SERVER_TEXT;
        while !text.is_char_boundary(end) {
            end -= 1;
        }
        text.truncate(end);
        text.push('…');
    }
    text
}

/// No answer: refused connection, DNS, TLS, timeout, a connection cut mid-answer.
fn transport_error(address: &str, method: Method, path: &str, e: reqwest::Error) -> ProviderError {
    let what = if e.is_timeout() {
        "no answer in time"
    } else if e.is_connect() {
        "cannot connect"
    } else {
        "request failed"
    };
    // Without the URL: it only repeats address and path.
    let detail = error_chain(&e.without_url());
    ProviderError::unreachable(format!("vault {address}: {method} {path}: {what}: {detail}"))
}

/// How to read a non-success status in one context.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub(crate) enum Context {
    /// A request made with rekey's token: 401/403 mean the token may not do this.
    #[default]
    Managed,
    /// A login with the credential under test: 400/401/403 mean it was refused.
    Login,
}

/// The error for a reply that is not a success, in the crate's one-line shape:
/// `vault ADDRESS: METHOD PATH: what happened (HTTP status): Vault's own words`.
pub(crate) fn status_error(conn: &Conn, method: Method, path: &str, reply: &Reply, context: Context) -> ProviderError {
    let address = conn.address();
    let status = reply.status;
    let text = reply.error_text();
    let detail = if text.is_empty() {
        String::new()
    } else {
        format!(": {text}")
    };
    let (kind, what) = match status {
        // Vault gives no finer code than the status: its `errors` text is all there is.
        503 if reply.error_mentions("sealed") || text.is_empty() => {
            return ProviderError::unreachable(format!(
                "vault {address}: Vault is sealed (HTTP 503 on {method} {path}); unseal it and retry"
            ))
            .with_code(ErrorCode::Http(status))
        }
        503 => (ErrorKind::Unreachable, "Vault is unavailable"),
        400 | 401 | 403 if context == Context::Login => (ErrorKind::AuthRejected, "login refused"),
        400 if reply.error_mentions("check-and-set") => (ErrorKind::Conflict, "another writer changed it first"),
        401 | 403 => (ErrorKind::PermissionDenied, "permission denied"),
        404 => (ErrorKind::NotFound, "not found"),
        405 => (ErrorKind::Unsupported, "not supported by this server"),
        412 => (ErrorKind::Conflict, "the server's state is behind (retry)"),
        429 => (ErrorKind::Unreachable, "rate limited"),
        502 | 504 => (ErrorKind::Unreachable, "gateway error"),
        400 => (ErrorKind::InvalidInput, "request refused"),
        _ => (ErrorKind::Other, "failed"),
    };
    ProviderError::new(
        kind,
        format!("vault {address}: {method} {path}: {what} (HTTP {status}){detail}"),
    )
    .with_code(ErrorCode::Http(status))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_are_encoded_by_segment() {
        assert_eq!(encode_path("secret/data/orders/db"), "secret/data/orders/db");
        assert_eq!(encode_path("secret/a b/ü?x=1"), "secret/a%20b/%C3%BC?x=1");
        assert_eq!(encode_path("secret/.rekey/k"), "secret/.rekey/k");
    }

    #[test]
    fn server_text_is_masked_and_one_line() {
        let masked = mask("bad value s3cr3t-value\nnext", &["s3cr3t-value", "kv"]);
        assert_eq!(masked, "bad value **** next");
        let long = "x".repeat(1000);
        assert!(mask(&long, &[]).len() < 400);
    }

    fn reply(status: u16, errors: &[&str]) -> Reply {
        Reply {
            status,
            body: None,
            errors: errors.iter().map(|s| s.to_string()).collect(),
        }
    }

    #[test]
    fn statuses_map_to_kinds() {
        let endpoint = Endpoint {
            address: "http://127.0.0.1:1".into(),
            ca_cert: None,
            client_cert: None,
            client_key: None,
            timeout: Duration::from_secs(1),
        };
        let conn = Conn::new(build_client(&endpoint).unwrap(), "http://127.0.0.1:1", None);
        let kind =
            |status, errors: &[&str], ctx| status_error(&conn, Method::Get, "p", &reply(status, errors), ctx).kind();
        assert_eq!(
            kind(503, &["Vault is sealed"], Context::Managed),
            ErrorKind::Unreachable
        );
        let sealed = status_error(
            &conn,
            Method::Get,
            "secret/k",
            &reply(503, &["RustyVault is sealed."]),
            Context::Managed,
        );
        assert!(sealed.message().contains("Vault is sealed"), "{sealed}");
        assert!(sealed.message().contains("http://127.0.0.1:1"), "{sealed}");
        assert_eq!(
            kind(403, &["permission denied"], Context::Managed),
            ErrorKind::PermissionDenied
        );
        assert_eq!(
            kind(403, &["permission denied"], Context::Login),
            ErrorKind::AuthRejected
        );
        assert_eq!(
            kind(400, &["invalid secret id"], Context::Login),
            ErrorKind::AuthRejected
        );
        assert_eq!(kind(404, &[], Context::Managed), ErrorKind::NotFound);
        assert_eq!(
            kind(
                400,
                &["check-and-set parameter did not match the current version"],
                Context::Managed
            ),
            ErrorKind::Conflict
        );
        assert_eq!(kind(500, &["boom"], Context::Managed), ErrorKind::Other);
        let code = |status| {
            status_error(&conn, Method::Get, "p", &reply(status, &[]), Context::Managed)
                .code()
                .cloned()
        };
        assert_eq!(code(503), Some(ErrorCode::Http(503)));
        assert_eq!(code(403), Some(ErrorCode::Http(403)));
        let e = status_error(
            &conn,
            Method::Put,
            "secret/orders/db",
            &reply(403, &["permission denied"]),
            Context::Managed,
        );
        assert_eq!(
            e.message(),
            "vault http://127.0.0.1:1: PUT secret/orders/db: permission denied (HTTP 403): permission denied"
        );
    }
}
