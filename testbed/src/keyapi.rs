//! HTTP APIs that hold API keys, for the `http` target's tests.
//!
//! [`KeyApi`] is a **test server of our own** (no installable key-minting service
//! exists to test against) that behaves like a real one: an admin token, keys minted with
//! ids in nested JSON (`{"data": {"id": ..., "secret": ...}}`), a revocation that takes a
//! moment to take effect, an occasional `429` with `Retry-After`, and `401` for unknown
//! or revoked keys. Faults can be scripted per request. It runs on 127.0.0.1 on a free
//! port, one thread per connection (HTTP/1.1 with keep-alive), and stops when dropped.
//!
//! [`RabbitMq`] drives the machine's real RabbitMQ management API (enabling the plugin
//! when needed), and [`request`] is a small blocking HTTP client for test assertions.
//!
//! The API of [`KeyApi`]:
//!
//! | request | answer |
//! | --- | --- |
//! | `POST /v1/keys` `{"name": N}` (admin) | `201 {"data": {"id", "secret", "name", "created_at"}}` |
//! | `GET /v1/keys` (admin) | `200 {"data": [{"id", "name"}]}`, keys not deleted |
//! | `DELETE /v1/keys/ID` (admin) | `204`, or `404` for an unknown or already revoked key |
//! | `GET /v1/me` (`Authorization: Bearer KEY`) | `200 {"data": {"key_id", "name"}}`, or `401` |
//!
//! Admin requests need `Authorization: Bearer ADMIN` (`401` otherwise; an API key gets
//! `403`). A deleted key keeps working for [`KeyApiOptions::revoke_delay`] (default
//! 300 ms). Every [`KeyApiOptions::rate_limit_every`]th request (default every 9th) is
//! answered `429` with `Retry-After: 1` and not processed. [`KeyApiOptions::latency`]
//! (default zero) delays every answer, as a service across a network would.

mod client;
mod rabbitmq;

pub use client::{basic_auth, request, HttpReply};
pub use rabbitmq::{RabbitMq, RabbitUser};

use crate::TestbedError;
use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{Ipv4Addr, Shutdown, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// How the server behaves.
#[derive(Clone, Debug)]
pub struct KeyApiOptions {
    /// How long a deleted key keeps working (default 300 ms).
    pub revoke_delay: Duration,
    /// Answer every Nth request with `429` (default `Some(9)`; `None`: never).
    pub rate_limit_every: Option<u64>,
    /// The `Retry-After` seconds of those answers (default 1).
    pub retry_after_secs: u64,
    /// How long every request waits before it is processed and answered (default zero):
    /// the round trip and processing time of a service across a network. Connections
    /// are served in parallel, so this adds to each request's time, not to the server's
    /// throughput.
    pub latency: Duration,
}

impl Default for KeyApiOptions {
    fn default() -> Self {
        KeyApiOptions {
            revoke_delay: Duration::from_millis(300),
            rate_limit_every: Some(9),
            retry_after_secs: 1,
            latency: Duration::ZERO,
        }
    }
}

impl KeyApiOptions {
    /// No rate limiting and no revocation delay: a quiet server (benchmarks, CLI tests).
    pub fn quiet() -> Self {
        KeyApiOptions {
            revoke_delay: Duration::ZERO,
            rate_limit_every: None,
            retry_after_secs: 1,
            latency: Duration::ZERO,
        }
    }

    /// These options with every request answered after `latency` (see
    /// [`KeyApiOptions::latency`]).
    pub fn with_latency(self, latency: Duration) -> Self {
        KeyApiOptions { latency, ..self }
    }
}

/// A scripted answer for the next requests matching a method and path prefix.
#[derive(Clone, Debug)]
pub enum Fault {
    /// Answer with this status, content type and body, without processing.
    Answer {
        /// The status.
        status: u16,
        /// The `Content-Type`.
        content_type: String,
        /// The body.
        body: String,
    },
    /// `POST /v1/keys`: mint the key but answer without its `secret` (only the id).
    MintWithoutSecret,
    /// `POST /v1/keys`: mint the key but answer with a body that is not JSON.
    MintNotJson,
    /// Answer `307` to this URL.
    Redirect(String),
    /// Wait this long, then process the request normally (a slow service).
    Delay(Duration),
    /// Process the request at once (`POST /v1/keys` mints its key), then hold the answer
    /// this long before sending it: a client killed meanwhile never learns what was
    /// minted (crash tests).
    HoldAnswer(Duration),
}

/// A key as the server holds it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ApiKey {
    /// `key_…`
    pub id: String,
    /// `sk_…`
    pub secret: String,
    /// The `name` given at creation.
    pub name: String,
    /// Whether it was deleted (it may still work for the revocation delay).
    pub revoked: bool,
}

/// One request as the server saw it: method, path (with query) and the status answered.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Logged {
    /// `GET`, `POST`...
    pub method: String,
    /// The path and query as sent.
    pub path: String,
    /// The status answered.
    pub status: u16,
}

#[derive(Default)]
struct State {
    keys: Vec<(ApiKey, Option<Instant>)>,
    faults: Vec<(String, String, Fault, u32)>,
    log: Vec<Logged>,
}

struct Shared {
    state: Mutex<State>,
    options: KeyApiOptions,
    admin_token: String,
    requests: AtomicU64,
    stop: AtomicBool,
}

/// A running key API (stops when dropped).
pub struct KeyApi {
    port: u16,
    shared: Arc<Shared>,
    acceptor: Option<thread::JoinHandle<()>>,
}

impl std::fmt::Debug for KeyApi {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KeyApi")
            .field("port", &self.port)
            .finish_non_exhaustive()
    }
}

fn random_hex(bytes: usize) -> String {
    (0..bytes).map(|_| format!("{:02x}", rand::random::<u8>())).collect()
}

impl KeyApi {
    /// Starts a server with the default behaviour.
    pub fn start() -> Result<KeyApi, TestbedError> {
        Self::start_with(KeyApiOptions::default())
    }

    /// Starts a server on 127.0.0.1 on a free port.
    pub fn start_with(options: KeyApiOptions) -> Result<KeyApi, TestbedError> {
        let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
            .map_err(|e| TestbedError::new(format!("key API: cannot bind 127.0.0.1:0: {e}")))?;
        let port = listener
            .local_addr()
            .map_err(|e| TestbedError::new(format!("key API: {e}")))?
            .port();
        let shared = Arc::new(Shared {
            state: Mutex::new(State::default()),
            options,
            admin_token: format!("adm_{}", random_hex(16)),
            requests: AtomicU64::new(0),
            stop: AtomicBool::new(false),
        });
        let for_thread = shared.clone();
        let acceptor = thread::Builder::new()
            .name(format!("keyapi-{port}"))
            .spawn(move || {
                for stream in listener.incoming() {
                    if for_thread.stop.load(Ordering::SeqCst) {
                        break;
                    }
                    let Ok(stream) = stream else { continue };
                    let shared = for_thread.clone();
                    let _ = thread::Builder::new()
                        .name("keyapi-conn".into())
                        .spawn(move || serve(stream, &shared));
                }
            })
            .map_err(|e| TestbedError::new(format!("key API: cannot start a thread: {e}")))?;
        Ok(KeyApi {
            port,
            shared,
            acceptor: Some(acceptor),
        })
    }

    /// `http://127.0.0.1:PORT`
    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// The port.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The admin token (`Authorization: Bearer TOKEN`).
    pub fn admin_token(&self) -> &str {
        &self.shared.admin_token
    }

    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        self.shared.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Mints a key directly (test setup), as `POST /v1/keys` would.
    pub fn mint(&self, name: &str) -> ApiKey {
        mint(&mut self.state(), name)
    }

    /// Every key, revoked ones included.
    pub fn keys(&self) -> Vec<ApiKey> {
        self.state().keys.iter().map(|(k, _)| k.clone()).collect()
    }

    /// Keys not deleted.
    pub fn live_keys(&self) -> Vec<ApiKey> {
        self.keys().into_iter().filter(|k| !k.revoked).collect()
    }

    /// Whether `GET /v1/me` with this secret would succeed now.
    pub fn accepts(&self, secret: &str) -> bool {
        find_working(&self.state(), secret).is_some()
    }

    /// The next `times` requests whose method is `method` and whose path starts with
    /// `path_prefix` get `fault`.
    pub fn fail_next(&self, method: &str, path_prefix: &str, fault: Fault, times: u32) {
        self.state()
            .faults
            .push((method.to_owned(), path_prefix.to_owned(), fault, times));
    }

    /// Removes every scripted fault.
    pub fn clear_faults(&self) {
        self.state().faults.clear();
    }

    /// Every request so far.
    pub fn log(&self) -> Vec<Logged> {
        self.state().log.clone()
    }

    /// How many requests were received.
    pub fn request_count(&self) -> u64 {
        self.shared.requests.load(Ordering::SeqCst)
    }
}

impl Drop for KeyApi {
    fn drop(&mut self) {
        self.shared.stop.store(true, Ordering::SeqCst);
        // Wake the acceptor.
        let _ = TcpStream::connect((Ipv4Addr::LOCALHOST, self.port));
        if let Some(t) = self.acceptor.take() {
            let _ = t.join();
        }
    }
}

fn mint(state: &mut State, name: &str) -> ApiKey {
    let key = ApiKey {
        id: format!("key_{}", random_hex(8)),
        secret: format!("sk_{}", random_hex(24)),
        name: name.to_owned(),
        revoked: false,
    };
    state.keys.push((key.clone(), None));
    key
}

/// The key with this secret, if it still works (not revoked, or inside the delay).
fn find_working<'a>(state: &'a State, secret: &str) -> Option<&'a ApiKey> {
    let now = Instant::now();
    state
        .keys
        .iter()
        .find(|(k, dies)| k.secret == secret && dies.is_none_or(|d| now < d))
        .map(|(k, _)| k)
}

struct Request {
    method: String,
    path: String,
    headers: BTreeMap<String, String>,
    body: Vec<u8>,
}

struct Answer {
    status: u16,
    headers: Vec<(String, String)>,
    content_type: &'static str,
    body: String,
}

impl Answer {
    fn json(status: u16, body: String) -> Answer {
        Answer {
            status,
            headers: Vec::new(),
            content_type: "application/json",
            body,
        }
    }

    fn error(status: u16, message: &str) -> Answer {
        Answer::json(status, format!(r#"{{"error":{{"message":{}}}}}"#, json_string(message)))
    }
}

fn serve(stream: TcpStream, shared: &Shared) {
    let _ = stream.set_read_timeout(Some(Duration::from_millis(500)));
    let _ = stream.set_nodelay(true);
    let Ok(write_half) = stream.try_clone() else { return };
    let mut writer = write_half;
    let mut reader = BufReader::new(stream);
    let mut idle = Instant::now();
    loop {
        if shared.stop.load(Ordering::SeqCst) {
            return;
        }
        match read_request(&mut reader) {
            Ok(Some(request)) => {
                idle = Instant::now();
                let close = request
                    .headers
                    .get("connection")
                    .is_some_and(|v| v.eq_ignore_ascii_case("close"));
                if !shared.options.latency.is_zero() {
                    thread::sleep(shared.options.latency);
                }
                let answer = handle(&request, shared);
                let mut head = format!(
                    "HTTP/1.1 {} {}\r\nContent-Type: {}\r\nContent-Length: {}\r\n",
                    answer.status,
                    reason(answer.status),
                    answer.content_type,
                    answer.body.len()
                );
                for (k, v) in &answer.headers {
                    head.push_str(&format!("{k}: {v}\r\n"));
                }
                if close {
                    head.push_str("Connection: close\r\n");
                }
                head.push_str("\r\n");
                let mut bytes = head.into_bytes();
                if request.method != "HEAD" {
                    bytes.extend_from_slice(answer.body.as_bytes());
                }
                if writer.write_all(&bytes).and_then(|_| writer.flush()).is_err() || close {
                    let _ = writer.shutdown(Shutdown::Both);
                    return;
                }
            }
            Ok(None) => return,
            Err(ReadError::Idle) => {
                if idle.elapsed() > Duration::from_secs(60) {
                    return;
                }
            }
            Err(ReadError::Bad) => {
                let _ = writer.write_all(b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\nConnection: close\r\n\r\n");
                return;
            }
        }
    }
}

enum ReadError {
    /// Nothing arrived within the read timeout (try again).
    Idle,
    /// Not HTTP.
    Bad,
}

/// One request, `Ok(None)` when the client closed the connection.
fn read_request(reader: &mut BufReader<TcpStream>) -> Result<Option<Request>, ReadError> {
    let mut line = String::new();
    match reader.read_line(&mut line) {
        Ok(0) => return Ok(None),
        Ok(_) => {}
        Err(e) if matches!(e.kind(), std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut) => {
            if line.is_empty() {
                return Err(ReadError::Idle);
            }
            return Err(ReadError::Bad);
        }
        Err(_) => return Ok(None),
    }
    let mut parts = line.split_whitespace();
    let (Some(method), Some(path)) = (parts.next(), parts.next()) else {
        return Err(ReadError::Bad);
    };
    let (method, path) = (method.to_owned(), path.to_owned());
    let mut headers = BTreeMap::new();
    loop {
        let mut h = String::new();
        match reader.read_line(&mut h) {
            Ok(0) => return Ok(None),
            Ok(_) => {}
            Err(_) => return Err(ReadError::Bad),
        }
        let h = h.trim_end_matches(['\r', '\n']);
        if h.is_empty() {
            break;
        }
        if let Some((k, v)) = h.split_once(':') {
            headers.insert(k.trim().to_ascii_lowercase(), v.trim().to_owned());
        }
    }
    let length: usize = headers.get("content-length").and_then(|v| v.parse().ok()).unwrap_or(0);
    if length > 1 << 20 {
        return Err(ReadError::Bad);
    }
    let mut body = vec![0; length];
    reader.read_exact(&mut body).map_err(|_| ReadError::Bad)?;
    Ok(Some(Request {
        method,
        path,
        headers,
        body,
    }))
}

fn handle(request: &Request, shared: &Shared) -> Answer {
    let n = shared.requests.fetch_add(1, Ordering::SeqCst) + 1;
    let fault = {
        let mut state = shared.state.lock().unwrap_or_else(|p| p.into_inner());
        let found = state.faults.iter_mut().find(|(m, p, _, left)| {
            *left > 0 && m.eq_ignore_ascii_case(&request.method) && request.path.starts_with(p.as_str())
        });
        match found {
            Some((_, _, fault, left)) => {
                *left -= 1;
                Some(fault.clone())
            }
            None => None,
        }
    };
    let answer = match fault {
        Some(Fault::Answer {
            status,
            content_type,
            body,
        }) => Answer {
            status,
            headers: Vec::new(),
            content_type: if content_type.contains("json") {
                "application/json"
            } else if content_type.contains("html") {
                "text/html"
            } else {
                "text/plain"
            },
            body,
        },
        Some(Fault::Redirect(to)) => Answer {
            status: 307,
            headers: vec![("Location".into(), to)],
            content_type: "text/plain",
            body: String::new(),
        },
        Some(Fault::Delay(d)) => {
            thread::sleep(d);
            route(request, shared, None)
        }
        Some(f @ (Fault::MintWithoutSecret | Fault::MintNotJson)) => route(request, shared, Some(f)),
        Some(Fault::HoldAnswer(d)) => {
            let answer = route(request, shared, None);
            thread::sleep(d);
            answer
        }
        None => match shared.options.rate_limit_every {
            Some(every) if every > 0 && n.is_multiple_of(every) => {
                let mut a = Answer::error(429, "rate limited, slow down");
                a.headers
                    .push(("Retry-After".into(), shared.options.retry_after_secs.to_string()));
                a
            }
            _ => route(request, shared, None),
        },
    };
    let mut state = shared.state.lock().unwrap_or_else(|p| p.into_inner());
    state.log.push(Logged {
        method: request.method.clone(),
        path: request.path.clone(),
        status: answer.status,
    });
    answer
}

fn bearer(request: &Request) -> Option<&str> {
    let value = request.headers.get("authorization")?;
    let (scheme, token) = value.split_once(' ')?;
    scheme.eq_ignore_ascii_case("bearer").then_some(token.trim())
}

fn route(request: &Request, shared: &Shared, fault: Option<Fault>) -> Answer {
    let path = request.path.split('?').next().unwrap_or("");
    let mut state = shared.state.lock().unwrap_or_else(|p| p.into_inner());
    if path == "/v1/me" && request.method == "GET" {
        return match bearer(request).and_then(|t| find_working(&state, t)) {
            Some(k) => Answer::json(
                200,
                format!(
                    r#"{{"data":{{"key_id":{},"name":{}}}}}"#,
                    json_string(&k.id),
                    json_string(&k.name)
                ),
            ),
            None => Answer::error(401, "invalid api key"),
        };
    }
    if !path.starts_with("/v1/keys") {
        return Answer::error(404, "no such endpoint");
    }
    match bearer(request) {
        Some(t) if t == shared.admin_token => {}
        Some(t) if find_working(&state, t).is_some() => return Answer::error(403, "api keys may not manage keys"),
        _ => return Answer::error(401, "invalid admin token"),
    }
    match (request.method.as_str(), path) {
        ("POST", "/v1/keys") => {
            let body = String::from_utf8_lossy(&request.body);
            let name = json_field(&body, "name").unwrap_or_default();
            let key = mint(&mut state, &name);
            let created = SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map(|d| d.as_secs())
                .unwrap_or(0);
            match fault {
                Some(Fault::MintWithoutSecret) => Answer::json(
                    201,
                    format!(r#"{{"data":{{"id":{},"created_at":{created}}}}}"#, json_string(&key.id)),
                ),
                Some(Fault::MintNotJson) => Answer {
                    status: 201,
                    headers: Vec::new(),
                    content_type: "text/html",
                    body: format!("<html><body>created {}</body></html>", key.secret),
                },
                _ => Answer::json(
                    201,
                    format!(
                        r#"{{"data":{{"id":{},"secret":{},"name":{},"created_at":{created}}}}}"#,
                        json_string(&key.id),
                        json_string(&key.secret),
                        json_string(&key.name)
                    ),
                ),
            }
        }
        ("GET", "/v1/keys") => {
            // Like most key APIs: deleted keys are not listed.
            let items: Vec<String> = state
                .keys
                .iter()
                .filter(|(k, _)| !k.revoked)
                .map(|(k, _)| format!(r#"{{"id":{},"name":{}}}"#, json_string(&k.id), json_string(&k.name)))
                .collect();
            Answer::json(200, format!(r#"{{"data":[{}]}}"#, items.join(",")))
        }
        ("DELETE", p) if p.starts_with("/v1/keys/") => {
            let id = &p["/v1/keys/".len()..];
            let delay = shared.options.revoke_delay;
            match state.keys.iter_mut().find(|(k, _)| k.id == id && !k.revoked) {
                Some((k, dies)) => {
                    k.revoked = true;
                    *dies = Some(Instant::now() + delay);
                    Answer {
                        status: 204,
                        headers: Vec::new(),
                        content_type: "application/json",
                        body: String::new(),
                    }
                }
                None => Answer::error(404, "no such key"),
            }
        }
        _ => Answer::error(405, "method not allowed"),
    }
}

fn reason(status: u16) -> &'static str {
    match status {
        200 => "OK",
        201 => "Created",
        204 => "No Content",
        307 => "Temporary Redirect",
        400 => "Bad Request",
        401 => "Unauthorized",
        403 => "Forbidden",
        404 => "Not Found",
        405 => "Method Not Allowed",
        429 => "Too Many Requests",
        500 => "Internal Server Error",
        502 => "Bad Gateway",
        503 => "Service Unavailable",
        _ => "Status",
    }
}

/// `s` as a JSON string literal.
pub(crate) fn json_string(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if (c as u32) < 0x20 => out.push_str(&format!("\\u{:04x}", c as u32)),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// The string value of a top-level-looking `"field": "..."` in a JSON text (enough for
/// the request bodies this server reads).
pub(crate) fn json_field(text: &str, field: &str) -> Option<String> {
    let key = format!("\"{field}\"");
    let at = text.find(&key)? + key.len();
    let rest = text[at..]
        .trim_start()
        .strip_prefix(':')?
        .trim_start()
        .strip_prefix('"')?;
    let mut out = String::new();
    let mut chars = rest.chars();
    while let Some(c) = chars.next() {
        match c {
            '"' => return Some(out),
            '\\' => match chars.next()? {
                'n' => out.push('\n'),
                't' => out.push('\t'),
                'r' => out.push('\r'),
                'u' => {
                    let hex: String = chars.by_ref().take(4).collect();
                    out.push(char::from_u32(u32::from_str_radix(&hex, 16).ok()?).unwrap_or('?'));
                }
                other => out.push(other),
            },
            c => out.push(c),
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_helpers() {
        assert_eq!(json_string("a\"b\\c\n"), r#""a\"b\\c\n""#);
        assert_eq!(
            json_field(r#"{"x":1, "name" : "rekey \"c\" \u0041"}"#, "name").unwrap(),
            "rekey \"c\" A"
        );
        assert_eq!(json_field(r#"{"x":1}"#, "name"), None);
    }

    #[test]
    fn mint_login_revoke_with_delay() {
        let api = KeyApi::start_with(KeyApiOptions {
            rate_limit_every: None,
            ..KeyApiOptions::default()
        })
        .unwrap();
        let admin = format!("Bearer {}", api.admin_token());
        let created = request(
            "POST",
            &format!("{}/v1/keys", api.url()),
            &[("Authorization", &admin), ("Content-Type", "application/json")],
            Some(r#"{"name":"t"}"#),
        )
        .unwrap();
        assert_eq!(created.status, 201, "{}", created.body);
        let id = json_field(&created.body, "id").unwrap();
        let secret = json_field(&created.body, "secret").unwrap();
        let me = |s: &str| {
            request(
                "GET",
                &format!("{}/v1/me", api.url()),
                &[("Authorization", &format!("Bearer {s}"))],
                None,
            )
            .unwrap()
            .status
        };
        assert_eq!(me(&secret), 200);
        assert_eq!(me("sk_wrong"), 401);
        let bad_admin = request(
            "POST",
            &format!("{}/v1/keys", api.url()),
            &[("Authorization", "Bearer x")],
            None,
        )
        .unwrap();
        assert_eq!(bad_admin.status, 401);
        let as_key = request(
            "GET",
            &format!("{}/v1/keys", api.url()),
            &[("Authorization", &format!("Bearer {secret}"))],
            None,
        )
        .unwrap();
        assert_eq!(as_key.status, 403);
        let del = |id: &str| {
            request(
                "DELETE",
                &format!("{}/v1/keys/{id}", api.url()),
                &[("Authorization", &admin)],
                None,
            )
            .unwrap()
            .status
        };
        assert_eq!(del(&id), 204);
        assert_eq!(del(&id), 404);
        // Still accepted for a moment, then refused.
        assert_eq!(me(&secret), 200);
        thread::sleep(Duration::from_millis(350));
        assert_eq!(me(&secret), 401);
        assert!(api.live_keys().is_empty());
    }

    #[test]
    fn rate_limit_and_faults() {
        let api = KeyApi::start_with(KeyApiOptions {
            rate_limit_every: Some(2),
            ..KeyApiOptions::default()
        })
        .unwrap();
        let get = || request("GET", &format!("{}/v1/me", api.url()), &[], None).unwrap();
        assert_eq!(get().status, 401);
        let limited = get();
        assert_eq!(limited.status, 429);
        assert_eq!(limited.header("retry-after").as_deref(), Some("1"));
        api.fail_next(
            "GET",
            "/v1/me",
            Fault::Answer {
                status: 500,
                content_type: "text/plain".into(),
                body: "boom".into(),
            },
            1,
        );
        assert_eq!(get().status, 500);
        assert_eq!(api.request_count(), 3);
        assert_eq!(
            api.log().iter().map(|l| l.status).collect::<Vec<_>>(),
            vec![401, 429, 500]
        );
    }

    #[test]
    fn latency_delays_every_answer() {
        let latency = Duration::from_millis(40);
        let api = KeyApi::start_with(KeyApiOptions::quiet().with_latency(latency)).unwrap();
        let key = api.mint("t");
        for (secret, status) in [(key.secret.as_str(), 200), ("sk_wrong", 401)] {
            let started = Instant::now();
            let reply = request(
                "GET",
                &format!("{}/v1/me", api.url()),
                &[("Authorization", &format!("Bearer {secret}"))],
                None,
            )
            .unwrap();
            assert_eq!(reply.status, status);
            let took = started.elapsed();
            assert!(
                took >= latency,
                "answered after {took:?}, before the latency {latency:?}"
            );
        }
        assert_eq!(api.request_count(), 2);
    }
}
