//! `fake_kv2`: a small **fake** of Vault's documented KV version 2 HTTP API, for tests
//! only. It is not Vault. It exists because no installable server implements KV v2
//! (rvault's `version: 2` mounts behave as version 1) or ACL policies (rvault accepts
//! any valid token for any path).
//!
//! What it implements, after Vault's API documentation:
//! - `GET/POST/PUT /v1/<mount>/data/<path>`: versions numbered from 1, `options.cas`
//!   checked on writes (400 "check-and-set parameter did not match the current version"),
//!   reads answering `data.data` and `data.metadata.version`/`created_time`;
//! - `GET/DELETE /v1/<mount>/metadata/<path>`;
//! - tokens: a root token and tokens limited to capabilities on path prefixes (403
//!   "permission denied" otherwise, and for unknown tokens);
//! - `GET /v1/auth/token/lookup-self`, `POST /v1/sys/capabilities-self`,
//!   `GET /v1/sys/seal-status`, `GET /v1/sys/internal/ui/mounts/<mount>`;
//! - 404 "no handler for route" for paths outside its mounts.
//!
//! Test hooks: [`FakeKv2::inject_before_next_write`] makes another writer win the race
//! for a path, [`FakeKv2::put_raw`] stores any JSON (malformed shapes included).

#![allow(dead_code)]

use serde_json::{json, Value};
use std::collections::{BTreeMap, HashMap};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::SystemTime;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpListener;

/// What a token may do.
#[derive(Clone, Debug)]
pub enum Policy {
    /// Everything.
    Root,
    /// `(path prefix, capabilities)` rules; the longest matching prefix applies.
    Rules(Vec<(String, Vec<String>)>),
}

struct Entry {
    versions: Vec<(Value, SystemTime)>,
}

#[derive(Default)]
struct State {
    tokens: HashMap<String, Policy>,
    /// mount -> path -> versions
    mounts: HashMap<String, BTreeMap<String, Entry>>,
    /// A write applied to `path` (mount-relative "mount/path") right before the next
    /// write request for it.
    inject: Option<(String, Value)>,
    /// A path ("mount/path") whose next write fails with a 500 without taking effect,
    /// as if the writer had crashed before it.
    fail_next: Option<String>,
    /// "METHOD /v1/... [ns NAMESPACE]" of every request, in order.
    log: Vec<String>,
}

/// A running fake on 127.0.0.1 (stops when dropped).
pub struct FakeKv2 {
    addr: SocketAddr,
    state: Arc<Mutex<State>>,
    task: tokio::task::JoinHandle<()>,
    scheme: &'static str,
}

impl State {
    fn new() -> State {
        let mut state = State::default();
        state.tokens.insert(ROOT_TOKEN.into(), Policy::Root);
        state.mounts.insert("secret".into(), BTreeMap::new());
        state
    }
}

impl Drop for FakeKv2 {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// The fake's root token.
pub const ROOT_TOKEN: &str = "fake-root-token";

impl FakeKv2 {
    /// Starts the fake with one KV v2 mount, `secret`.
    pub async fn start() -> FakeKv2 {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind the fake");
        let addr = listener.local_addr().unwrap();
        let state = Arc::new(Mutex::new(State::new()));
        let shared = state.clone();
        let task = tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    continue;
                };
                let state = shared.clone();
                tokio::spawn(async move {
                    let _ = serve(stream, state).await;
                });
            }
        });
        FakeKv2 {
            addr,
            state,
            task,
            scheme: "http",
        }
    }

    /// Starts the fake behind TLS with `server_config` (certificate, and client
    /// certificate checks if it has them).
    pub async fn start_tls(server_config: rustls::ServerConfig) -> FakeKv2 {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind the fake");
        let addr = listener.local_addr().unwrap();
        let state = Arc::new(Mutex::new(State::new()));
        let shared = state.clone();
        let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(server_config));
        let task = tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    continue;
                };
                let state = shared.clone();
                let acceptor = acceptor.clone();
                tokio::spawn(async move {
                    if let Ok(tls) = acceptor.accept(stream).await {
                        let _ = serve(tls, state).await;
                    }
                });
            }
        });
        FakeKv2 {
            addr,
            state,
            task,
            scheme: "https",
        }
    }

    /// `http://127.0.0.1:PORT` (`https://` for [`FakeKv2::start_tls`]).
    pub fn address(&self) -> String {
        format!("{}://{}", self.scheme, self.addr)
    }

    /// Adds a token with a policy.
    pub fn add_token(&self, token: &str, policy: Policy) {
        self.state.lock().unwrap().tokens.insert(token.into(), policy);
    }

    /// Adds a KV v2 mount.
    pub fn add_mount(&self, mount: &str) {
        self.state.lock().unwrap().mounts.insert(mount.into(), BTreeMap::new());
    }

    /// Makes "another writer" write `value` to `mount/path` right before the next write
    /// request for that path arrives, so that request's check-and-set is stale.
    pub fn inject_before_next_write(&self, mount: &str, path: &str, value: Value) {
        self.state.lock().unwrap().inject = Some((format!("{mount}/{path}"), value));
    }

    /// Makes the next write request for `mount/path` fail (HTTP 500) without effect.
    pub fn fail_next_write(&self, mount: &str, path: &str) {
        self.state.lock().unwrap().fail_next = Some(format!("{mount}/{path}"));
    }

    /// Writes any JSON as a new version of `mount/path`, without checks.
    pub fn put_raw(&self, mount: &str, path: &str, value: Value) {
        let mut state = self.state.lock().unwrap();
        write_version(&mut state, mount, path, value);
    }

    /// The latest value of `mount/path` and its version number.
    pub fn get_raw(&self, mount: &str, path: &str) -> Option<(Value, u64)> {
        let state = self.state.lock().unwrap();
        let entry = state.mounts.get(mount)?.get(path)?;
        let (value, _) = entry.versions.last()?;
        Some((value.clone(), entry.versions.len() as u64))
    }

    /// Every value `mount/path` ever held, oldest first.
    pub fn history(&self, mount: &str, path: &str) -> Vec<Value> {
        let state = self.state.lock().unwrap();
        state
            .mounts
            .get(mount)
            .and_then(|m| m.get(path))
            .map(|e| e.versions.iter().map(|(v, _)| v.clone()).collect())
            .unwrap_or_default()
    }

    /// The requests seen so far ("METHOD /v1/path").
    pub fn requests(&self) -> Vec<String> {
        self.state.lock().unwrap().log.clone()
    }
}

fn write_version(state: &mut State, mount: &str, path: &str, value: Value) -> u64 {
    let entry = state
        .mounts
        .entry(mount.into())
        .or_default()
        .entry(path.into())
        .or_insert_with(|| Entry { versions: Vec::new() });
    entry.versions.push((value, SystemTime::now()));
    entry.versions.len() as u64
}

struct Request {
    method: String,
    path: String,
    query: String,
    token: Option<String>,
    namespace: Option<String>,
    body: Vec<u8>,
}

async fn serve<S: AsyncRead + AsyncWrite + Unpin>(mut stream: S, state: Arc<Mutex<State>>) -> std::io::Result<()> {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    let head_end = loop {
        let n = stream.read(&mut chunk).await?;
        if n == 0 {
            return Ok(());
        }
        buf.extend_from_slice(&chunk[..n]);
        if let Some(p) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break p;
        }
    };
    let head = String::from_utf8_lossy(&buf[..head_end]).into_owned();
    let mut lines = head.split("\r\n");
    let mut first = lines.next().unwrap_or("").split_whitespace();
    let method = first.next().unwrap_or("").to_owned();
    let target = first.next().unwrap_or("").to_owned();
    let mut length = 0usize;
    let mut token = None;
    let mut namespace = None;
    for line in lines {
        if let Some((name, value)) = line.split_once(':') {
            match name.trim().to_ascii_lowercase().as_str() {
                "content-length" => length = value.trim().parse().unwrap_or(0),
                "x-vault-token" => token = Some(value.trim().to_owned()),
                "x-vault-namespace" => namespace = Some(value.trim().to_owned()),
                _ => {}
            }
        }
    }
    let mut body = buf[head_end + 4..].to_vec();
    while body.len() < length {
        let n = stream.read(&mut chunk).await?;
        if n == 0 {
            break;
        }
        body.extend_from_slice(&chunk[..n]);
    }
    let (path, query) = match target.split_once('?') {
        Some((p, q)) => (p.to_owned(), q.to_owned()),
        None => (target.clone(), String::new()),
    };
    let request = Request {
        method,
        path: percent_decode(&path),
        query,
        token,
        namespace,
        body,
    };
    let (status, reply) = {
        let mut state = state.lock().unwrap();
        let ns = request
            .namespace
            .as_deref()
            .map(|n| format!(" [ns {n}]"))
            .unwrap_or_default();
        state.log.push(format!("{} {}{ns}", request.method, request.path));
        handle(&mut state, &request)
    };
    let text = reply.map(|v| v.to_string()).unwrap_or_default();
    let response = format!(
        "HTTP/1.1 {status} X\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{text}",
        text.len()
    );
    stream.write_all(response.as_bytes()).await?;
    stream.shutdown().await
}

/// A percent-encoded path segment or query value, through rekey-net's decoder (left as
/// it came when it is not valid percent-encoding).
fn percent_decode(s: &str) -> String {
    rekey_net::percent_decode(s).map_or_else(|| s.to_owned(), |decoded| decoded.to_string())
}

fn errors(messages: &[&str]) -> Option<Value> {
    Some(json!({ "errors": messages }))
}

fn capabilities(state: &State, token: &str, path: &str) -> Vec<String> {
    match state.tokens.get(token) {
        None => Vec::new(),
        Some(Policy::Root) => vec!["root".into()],
        Some(Policy::Rules(rules)) => rules
            .iter()
            .filter(|(prefix, _)| path.starts_with(prefix.as_str()))
            .max_by_key(|(prefix, _)| prefix.len())
            .map(|(_, caps)| caps.clone())
            .unwrap_or_else(|| vec!["deny".into()]),
    }
}

fn allowed(state: &State, token: &str, path: &str, capability: &str) -> bool {
    let caps = capabilities(state, token, path);
    caps.iter().any(|c| c == "root") || (!caps.iter().any(|c| c == "deny") && caps.iter().any(|c| c == capability))
}

fn handle(state: &mut State, req: &Request) -> (u16, Option<Value>) {
    let Some(api) = req.path.strip_prefix("/v1/") else {
        return (404, errors(&[]));
    };
    let api = api.to_owned();
    if api == "sys/seal-status" {
        return (
            200,
            Some(json!({ "type": "shamir", "initialized": true, "sealed": false })),
        );
    }
    let token = req.token.clone().unwrap_or_default();
    let Some(policy) = state.tokens.get(&token).cloned() else {
        return (403, errors(&["permission denied"]));
    };
    if api == "auth/token/lookup-self" {
        let policies = match policy {
            Policy::Root => vec!["root"],
            Policy::Rules(_) => vec!["default", "limited"],
        };
        return (200, Some(json!({ "data": { "policies": policies, "ttl": 0 } })));
    }
    if api == "sys/capabilities-self" {
        let body: Value = serde_json::from_slice(&req.body).unwrap_or(Value::Null);
        let paths: Vec<String> = body
            .get("paths")
            .and_then(Value::as_array)
            .map(|p| p.iter().filter_map(Value::as_str).map(str::to_owned).collect())
            .unwrap_or_default();
        let mut data = serde_json::Map::new();
        for p in &paths {
            data.insert(p.clone(), json!(capabilities(state, &token, p)));
        }
        let mut top = data.clone();
        top.insert("data".into(), Value::Object(data));
        return (200, Some(Value::Object(top)));
    }
    if let Some(mount) = api.strip_prefix("sys/internal/ui/mounts/") {
        return if state.mounts.contains_key(mount.trim_end_matches('/')) {
            (
                200,
                Some(json!({ "data": { "type": "kv", "path": format!("{mount}/"), "options": { "version": "2" } } })),
            )
        } else {
            (
                400,
                errors(&[
                    "preflight capability check returned 403, please ensure client's policies grant access to path",
                ]),
            )
        };
    }
    // KV v2: <mount>/data/<path> or <mount>/metadata/<path>
    let mount = state.mounts.keys().find(|m| api.starts_with(&format!("{m}/"))).cloned();
    let Some(mount) = mount else {
        return (
            404,
            errors(&[&format!("no handler for route \"{api}\". route entry not found.")]),
        );
    };
    let rest = &api[mount.len() + 1..];
    if let Some(path) = rest.strip_prefix("data/") {
        match req.method.as_str() {
            "GET" => {
                if !allowed(state, &token, &api, "read") {
                    return (403, errors(&["1 error occurred:\n\t* permission denied\n\n"]));
                }
                let entry = state.mounts[&mount].get(path);
                let wanted: Option<u64> = req
                    .query
                    .split('&')
                    .find_map(|kv| kv.strip_prefix("version="))
                    .and_then(|v| v.parse().ok())
                    .filter(|v| *v > 0);
                match entry {
                    None => (404, errors(&[])),
                    Some(e) => {
                        let n = wanted.unwrap_or(e.versions.len() as u64);
                        match e.versions.get((n as usize).wrapping_sub(1)) {
                            None => (404, errors(&[])),
                            Some((value, created)) => (
                                200,
                                Some(json!({ "data": { "data": value, "metadata": {
                                    "version": n,
                                    "created_time": humantime::format_rfc3339_nanos(*created).to_string(),
                                    "deletion_time": "", "destroyed": false } } })),
                            ),
                        }
                    }
                }
            }
            "POST" | "PUT" => {
                let exists = state.mounts[&mount].contains_key(path);
                let needed = if exists { "update" } else { "create" };
                if !allowed(state, &token, &api, needed) {
                    return (403, errors(&["1 error occurred:\n\t* permission denied\n\n"]));
                }
                if state.fail_next.as_deref() == Some(&format!("{mount}/{path}")) {
                    state.fail_next = None;
                    return (500, errors(&["simulated failure"]));
                }
                if let Some((target, value)) = state.inject.take() {
                    if target == format!("{mount}/{path}") {
                        write_version(state, &mount, path, value);
                    } else {
                        state.inject = Some((target, value));
                    }
                }
                let body: Value = match serde_json::from_slice(&req.body) {
                    Ok(v) => v,
                    Err(_) => return (400, errors(&["failed to parse JSON input"])),
                };
                let Some(data) = body.get("data").filter(|d| d.is_object()).cloned() else {
                    return (400, errors(&["no data provided"]));
                };
                let current = state.mounts[&mount].get(path).map_or(0, |e| e.versions.len() as u64);
                if let Some(cas) = body.get("options").and_then(|o| o.get("cas")).and_then(Value::as_u64) {
                    if cas != current {
                        return (
                            400,
                            errors(&["check-and-set parameter did not match the current version"]),
                        );
                    }
                }
                let version = write_version(state, &mount, path, data);
                (
                    200,
                    Some(json!({ "data": { "version": version, "deletion_time": "", "destroyed": false } })),
                )
            }
            _ => (405, errors(&["unsupported operation"])),
        }
    } else if let Some(path) = rest.strip_prefix("metadata/") {
        match req.method.as_str() {
            "GET" => match state.mounts[&mount].get(path) {
                None => (404, errors(&[])),
                Some(e) => (200, Some(json!({ "data": { "current_version": e.versions.len() } }))),
            },
            "DELETE" => {
                state.mounts.get_mut(&mount).unwrap().remove(path);
                (204, None)
            }
            _ => (405, errors(&["unsupported operation"])),
        }
    } else {
        // A KV v1 style path on a v2 mount: Vault refuses it.
        (
            404,
            errors(&[&format!("no handler for route \"{api}\". route entry not found.")]),
        )
    }
}
