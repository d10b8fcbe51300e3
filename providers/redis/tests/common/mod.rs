//! Test fixtures shared by the integration tests: ACL users removed on drop on a
//! rekey-testbed `RedisServer` (the machine's on 127.0.0.1:6379, or a throwaway
//! `redis-server`), a recording TCP proxy and a RESP frame parser.

#![allow(dead_code)]

use rekey_api::conformance::{random_password, unique_name};
use rekey_api::{RedactedDsn, Secret, SecretDoc, Strategy};
use rekey_redis::{acl_password_hash, RedisProvider, RedisTarget, RedisTargetConfig};
use rekey_testbed::RedisServer;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinHandle;

/// A synchronous connection as the `default` user (5 s timeout).
pub fn connect_sync(port: u16) -> redis::RedisResult<redis::Connection> {
    redis::Client::open(format!("redis://127.0.0.1:{port}"))?.get_connection_with_timeout(Duration::from_secs(5))
}

/// An ACL user created for a test with a random password (installed by hash), deleted
/// (and its connections closed) on drop.
pub struct TestUser<'a> {
    pub server: &'a RedisServer,
    pub name: String,
    pub password: Secret,
}

impl<'a> TestUser<'a> {
    /// `ACL SETUSER <unique name> on #<hash> <rules...>`.
    pub fn new(server: &'a RedisServer, prefix: &str, rules: &[&str]) -> Self {
        let name = unique_name(prefix);
        let password = random_password(24);
        let hash = format!("#{}", acl_password_hash(&password));
        let mut args = vec!["ACL", "SETUSER", &name, "reset", "on", &hash];
        args.extend_from_slice(rules);
        server.cmd(&args);
        TestUser { server, name, password }
    }

    /// An application user: `on ~* &* +@all`.
    pub fn app(server: &'a RedisServer, prefix: &str) -> Self {
        Self::new(server, prefix, &["~*", "&*", "+@all"])
    }

    /// An administrator: `+@all ~* &*`.
    pub fn admin(server: &'a RedisServer) -> Self {
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
