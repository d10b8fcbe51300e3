//! Test fixtures shared by the integration tests: a Redis server (the machine's on
//! 127.0.0.1:6379, or a throwaway `redis-server`), ACL users removed on drop, a
//! recording TCP proxy and a RESP frame parser.

#![allow(dead_code)]

use redis::Value;
use rekey_api::conformance::{random_password, unique_name};
use rekey_api::{RedactedDsn, Secret, SecretDoc, Strategy};
use rekey_redis::{acl_password_hash, RedisProvider, RedisTarget, RedisTargetConfig};
use std::io::Read;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinHandle;

/// A Redis server whose `default` user has no password, reachable over plain TCP on
/// `port()` (used to create and delete the test users).
pub struct Server {
    port: u16,
    process: Option<Child>,
    dir: Option<tempfile::TempDir>,
    tls_port: Option<u16>,
}

/// Options of a throwaway server.
#[derive(Default)]
pub struct ServerOptions {
    /// Lines of the ACL file the server starts with (`--aclfile`), if any.
    pub acl_file: Option<String>,
    /// Also listen with TLS, using these PEM files: (cert, key, ca).
    pub tls: Option<(PathBuf, PathBuf, PathBuf)>,
}

impl Server {
    /// The machine's Redis on 127.0.0.1:6379 (or `REKEY_REDIS_PORT`), default user
    /// without password; when nothing answers there, a throwaway server for this test.
    pub fn machine() -> Server {
        let port = std::env::var("REKEY_REDIS_PORT")
            .ok()
            .and_then(|p| p.parse().ok())
            .unwrap_or(6379);
        if ping(port) {
            return Server {
                port,
                process: None,
                dir: None,
                tls_port: None,
            };
        }
        Server::start(ServerOptions::default())
    }

    /// A throwaway `redis-server` on free ports of 127.0.0.1, killed on drop.
    pub fn start(options: ServerOptions) -> Server {
        let dir = tempfile::tempdir().expect("temp dir");
        let port = rekey_testbed::free_port().expect("a free port");
        let mut cmd = Command::new(std::env::var("REKEY_REDIS_SERVER").unwrap_or_else(|_| "redis-server".into()));
        cmd.arg("--port")
            .arg(port.to_string())
            .args([
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
                "--daemonize",
                "no",
            ])
            .arg("--dir")
            .arg(dir.path())
            .arg("--logfile")
            .arg(dir.path().join("redis.log"));
        if let Some(lines) = &options.acl_file {
            let path = dir.path().join("users.acl");
            std::fs::write(&path, lines).expect("write ACL file");
            cmd.arg("--aclfile").arg(&path);
        }
        let mut tls_port = None;
        if let Some((cert, key, ca)) = &options.tls {
            let p = rekey_testbed::free_port().expect("a free port");
            tls_port = Some(p);
            cmd.arg("--tls-port")
                .arg(p.to_string())
                .arg("--tls-cert-file")
                .arg(cert)
                .arg("--tls-key-file")
                .arg(key)
                .arg("--tls-ca-cert-file")
                .arg(ca)
                .args(["--tls-auth-clients", "no"]);
        }
        cmd.stdin(Stdio::null()).stdout(Stdio::null()).stderr(Stdio::piped());
        let mut child = cmd
            .spawn()
            .expect("redis-server must be installed to start a throwaway server");
        let deadline = Instant::now() + Duration::from_secs(10);
        let log = dir.path().join("redis.log");
        loop {
            let ready = ping(port)
                && (tls_port.is_none()
                    || std::fs::read_to_string(&log).is_ok_and(|l| l.contains("Ready to accept connections")));
            if ready {
                break;
            }
            if let Ok(Some(status)) = child.try_wait() {
                let mut err = String::new();
                if let Some(mut e) = child.stderr.take() {
                    let _ = e.read_to_string(&mut err);
                }
                let log = std::fs::read_to_string(&log).unwrap_or_default();
                panic!("redis-server exited ({status}): {err} {log}");
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                let _ = child.wait();
                panic!("redis-server did not start within 10s");
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        Server {
            port,
            process: Some(child),
            dir: Some(dir),
            tls_port,
        }
    }

    /// The plain TCP port.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The TLS port of a server started with TLS.
    pub fn tls_port(&self) -> Option<u16> {
        self.tls_port
    }

    /// The ACL file of a server started with one.
    pub fn acl_file_path(&self) -> Option<PathBuf> {
        self.dir.as_ref().map(|d| d.path().join("users.acl"))
    }

    /// The ACL file's contents.
    pub fn acl_file(&self) -> String {
        std::fs::read_to_string(self.acl_file_path().expect("a throwaway server")).unwrap_or_default()
    }

    /// Runs a command as the `default` user.
    pub fn cmd(&self, args: &[&str]) -> Value {
        self.try_cmd(args)
            .unwrap_or_else(|e| panic!("{:?} failed: {e}", args.first()))
    }

    /// Runs a command as the `default` user, returning Redis's error.
    pub fn try_cmd(&self, args: &[&str]) -> redis::RedisResult<Value> {
        let mut conn = connect_sync(self.port)?;
        let mut cmd = redis::cmd(args[0]);
        for a in &args[1..] {
            cmd.arg(*a);
        }
        cmd.query::<Value>(&mut conn)
    }

    /// The SHA-256 hashes of a user's passwords (`None` when the user does not exist).
    pub fn passwords(&self, user: &str) -> Option<Vec<String>> {
        let reply = self.cmd(&["ACL", "GETUSER", user]);
        let Value::Array(items) = reply else { return None };
        let mut it = items.iter();
        while let Some(key) = it.next() {
            let value = it.next()?;
            if as_text(key) == "passwords" {
                return Some(match value {
                    Value::Array(p) => p.iter().map(as_text).collect(),
                    _ => Vec::new(),
                });
            }
        }
        Some(Vec::new())
    }

    /// Client-list lines of connections authenticated as `user`.
    pub fn clients_of(&self, user: &str) -> Vec<String> {
        let list = as_text(&self.cmd(&["CLIENT", "LIST"]));
        let needle = format!(" user={user} ");
        list.lines()
            .filter(|l| l.contains(&needle))
            .map(str::to_owned)
            .collect()
    }

    /// Waits (at most 5 s) until exactly `n` connections of `user` are open.
    pub fn wait_for_clients(&self, user: &str, n: usize) {
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            let got = self.clients_of(user).len();
            if got == n {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "expected {n} connections of {user}, saw {got}"
            );
            std::thread::sleep(Duration::from_millis(10));
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if let Some(mut child) = self.process.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// A synchronous connection as the `default` user (5 s timeout).
pub fn connect_sync(port: u16) -> redis::RedisResult<redis::Connection> {
    redis::Client::open(format!("redis://127.0.0.1:{port}"))?.get_connection_with_timeout(Duration::from_secs(5))
}

fn ping(port: u16) -> bool {
    let Ok(mut conn) = connect_sync(port) else { return false };
    redis::cmd("PING").query::<String>(&mut conn).is_ok()
}

/// Text of a reply.
pub fn as_text(value: &Value) -> String {
    match value {
        Value::BulkString(b) => String::from_utf8_lossy(b).into_owned(),
        Value::SimpleString(s) => s.clone(),
        Value::Okay => "OK".into(),
        Value::Int(n) => n.to_string(),
        Value::VerbatimString { text, .. } => text.clone(),
        other => format!("{other:?}"),
    }
}

/// An ACL user created for a test with a random password (installed by hash), deleted
/// (and its connections closed) on drop.
pub struct TestUser<'a> {
    pub server: &'a Server,
    pub name: String,
    pub password: Secret,
}

impl<'a> TestUser<'a> {
    /// `ACL SETUSER <unique name> on #<hash> <rules...>`.
    pub fn new(server: &'a Server, prefix: &str, rules: &[&str]) -> Self {
        let name = unique_name(prefix);
        let password = random_password(24);
        let hash = format!("#{}", acl_password_hash(&password));
        let mut args = vec!["ACL", "SETUSER", &name, "reset", "on", &hash];
        args.extend_from_slice(rules);
        server.cmd(&args);
        TestUser { server, name, password }
    }

    /// An application user: `on ~* &* +@all`.
    pub fn app(server: &'a Server, prefix: &str) -> Self {
        Self::new(server, prefix, &["~*", "&*", "+@all"])
    }

    /// An administrator: `+@all ~* &*`.
    pub fn admin(server: &'a Server) -> Self {
        Self::new(server, "rk_admin", &["~*", "&*", "+@all"])
    }

    /// `{"username": name, "password": password}`.
    pub fn doc(&self) -> SecretDoc {
        doc(&self.name, &self.password)
    }

    /// `redis://name:password@127.0.0.1:port` (the random passwords need no escaping).
    pub fn url(&self, port: u16) -> RedactedDsn {
        RedactedDsn::new(format!(
            "redis://{}:{}@127.0.0.1:{port}",
            self.name,
            self.password.expose()
        ))
    }

    /// The hashes of the user's passwords now.
    pub fn passwords(&self) -> Vec<String> {
        self.server.passwords(&self.name).expect("the test user exists")
    }
}

impl Drop for TestUser<'_> {
    fn drop(&mut self) {
        // ACL DELUSER also closes the user's connections.
        let _ = self.server.try_cmd(&["ACL", "DELUSER", &self.name]);
    }
}

/// A secret document.
pub fn doc(user: &str, password: &Secret) -> SecretDoc {
    let mut doc = SecretDoc::new();
    doc.set("username", user);
    doc.set_password(password);
    doc
}

/// A configuration for `user` on 127.0.0.1:`port` with `admin`.
pub fn config(port: u16, user: &str, admin: Option<RedactedDsn>) -> RedisTargetConfig {
    let mut c = RedisTargetConfig::new("127.0.0.1", user);
    c.port = port;
    c.admin = admin;
    c.connect_timeout_secs = 5;
    c
}

/// The target, which must build.
pub fn target(provider: &RedisProvider, config: &RedisTargetConfig, strategy: Strategy) -> RedisTarget {
    provider.redis_target(config, strategy).expect("target builds")
}

/// Asserts the error's kind and that its text holds `needles` and no secret.
pub fn assert_error(err: &rekey_api::ProviderError, kind: rekey_api::ErrorKind, needles: &[&str], secrets: &[&Secret]) {
    rekey_api::testing::assert_error_hiding(err, kind, needles, secrets, |s| Some(acl_password_hash(s)));
}

/// The bytes one proxied client sent.
type Recording = Arc<Mutex<Vec<u8>>>;

/// A TCP proxy on 127.0.0.1 that records every byte clients send (per connection)
/// before forwarding it to the server. Its tasks are aborted on drop.
pub struct RecordingProxy {
    port: u16,
    captured: Arc<Mutex<Vec<Recording>>>,
    tasks: Arc<Mutex<Vec<JoinHandle<()>>>>,
}

impl RecordingProxy {
    /// Starts forwarding to 127.0.0.1:`upstream`.
    pub async fn start(upstream: u16) -> RecordingProxy {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind proxy");
        let port = listener.local_addr().unwrap().port();
        let captured: Arc<Mutex<Vec<Recording>>> = Arc::default();
        let tasks: Arc<Mutex<Vec<JoinHandle<()>>>> = Arc::default();
        let (cap, tks) = (captured.clone(), tasks.clone());
        let accept = tokio::spawn(async move {
            while let Ok((mut client, _)) = listener.accept().await {
                let record = Arc::new(Mutex::new(Vec::new()));
                cap.lock().unwrap().push(record.clone());
                let task = tokio::spawn(async move {
                    let Ok(mut server) = TcpStream::connect(("127.0.0.1", upstream)).await else {
                        return;
                    };
                    let (mut cr, mut cw) = client.split();
                    let (mut sr, mut sw) = server.split();
                    let upward = async {
                        let mut buf = vec![0u8; 16 * 1024];
                        loop {
                            match cr.read(&mut buf).await {
                                Ok(0) | Err(_) => break,
                                Ok(n) => {
                                    record.lock().unwrap().extend_from_slice(&buf[..n]);
                                    if sw.write_all(&buf[..n]).await.is_err() {
                                        break;
                                    }
                                }
                            }
                        }
                        let _ = sw.shutdown().await;
                    };
                    let downward = async {
                        let _ = tokio::io::copy(&mut sr, &mut cw).await;
                        let _ = cw.shutdown().await;
                    };
                    // Bounded: a test never keeps a proxied connection for a minute.
                    let _ =
                        tokio::time::timeout(Duration::from_secs(60), async { tokio::join!(upward, downward) }).await;
                });
                tks.lock().unwrap().push(task);
            }
        });
        tasks.lock().unwrap().push(accept);
        RecordingProxy { port, captured, tasks }
    }

    /// The port clients connect to.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// What each connection's client sent so far.
    pub fn connections(&self) -> Vec<Vec<u8>> {
        self.captured
            .lock()
            .unwrap()
            .iter()
            .map(|r| r.lock().unwrap().clone())
            .collect()
    }

    /// Forgets what was captured so far.
    pub fn clear(&self) {
        self.captured.lock().unwrap().clear();
    }
}

impl Drop for RecordingProxy {
    fn drop(&mut self) {
        for task in self.tasks.lock().unwrap().drain(..) {
            task.abort();
        }
    }
}

/// Parses RESP command frames (arrays of bulk strings, as clients send them). Returns
/// the frames and whether every byte was consumed by well-formed frames.
pub fn parse_frames(mut bytes: &[u8]) -> (Vec<Vec<Vec<u8>>>, bool) {
    fn line(bytes: &[u8]) -> Option<(&[u8], &[u8])> {
        let end = bytes.windows(2).position(|w| w == b"\r\n")?;
        Some((&bytes[..end], &bytes[end + 2..]))
    }
    let mut frames = Vec::new();
    while !bytes.is_empty() {
        let Some((head, rest)) = line(bytes) else {
            return (frames, false);
        };
        let Some(count) = head
            .strip_prefix(b"*")
            .and_then(|n| std::str::from_utf8(n).ok()?.parse::<usize>().ok())
        else {
            return (frames, false);
        };
        let mut rest = rest;
        let mut args = Vec::with_capacity(count);
        for _ in 0..count {
            let Some((head, after)) = line(rest) else {
                return (frames, false);
            };
            let Some(len) = head
                .strip_prefix(b"$")
                .and_then(|n| std::str::from_utf8(n).ok()?.parse::<usize>().ok())
            else {
                return (frames, false);
            };
            if after.len() < len + 2 || &after[len..len + 2] != b"\r\n" {
                return (frames, false);
            }
            args.push(after[..len].to_vec());
            rest = &after[len + 2..];
        }
        frames.push(args);
        bytes = rest;
    }
    (frames, true)
}

/// Whether `needle` occurs in `haystack`.
pub fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    !needle.is_empty() && haystack.windows(needle.len()).any(|w| w == needle)
}

/// Number of (possibly overlapping) occurrences of `needle` in `haystack`.
pub fn count(haystack: &[u8], needle: &[u8]) -> usize {
    haystack.windows(needle.len()).filter(|w| *w == needle).count()
}
