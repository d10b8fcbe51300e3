//! Redis for the redis tests: the machine's server, or a throwaway `redis-server` on
//! free ports (optionally with an ACL file and a TLS port), administered as the
//! `default` user over plain TCP with a minimal RESP client.

use crate::certs::CertPair;
use crate::process;
use crate::resp::{read_reply, write_command, RespValue};
use crate::scratch::{self, free_port};
use crate::TestbedError;
use std::fs;
use std::io::{BufReader, Read};
use std::net::{Ipv4Addr, SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// Environment variable naming the `redis-server` binary for throwaway servers.
pub const REDIS_SERVER_ENV: &str = "REKEY_REDIS_SERVER";
/// Environment variable naming the machine's Redis port on 127.0.0.1 (default 6379).
pub const REDIS_PORT_ENV: &str = "REKEY_REDIS_PORT";
/// How long a throwaway server may take to accept connections.
const START_TIMEOUT: Duration = Duration::from_secs(30);
/// How long connecting, and then one command, may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
const COMMAND_TIMEOUT: Duration = Duration::from_secs(30);
/// How many ports to try when another process takes a chosen one first.
const PORT_ATTEMPTS: usize = 5;

/// The TLS files of a throwaway server: its certificate and key, and the CA it names
/// to clients (client certificates are not required).
#[derive(Debug, Clone)]
pub struct RedisTls {
    /// The server's certificate and key.
    pub server: CertPair,
    /// The CA certificate (`--tls-ca-cert-file`).
    pub ca: PathBuf,
}

/// Options of a throwaway server.
#[derive(Debug, Clone, Default)]
pub struct RedisOptions {
    /// Lines of the ACL file the server starts with (`--aclfile`), if any.
    pub acl_file: Option<String>,
    /// Also listen with TLS on a second port.
    pub tls: Option<RedisTls>,
}

/// A Redis server whose `default` user has no password, reachable over plain TCP on
/// [`RedisServer::port`] (for creating and deleting test users).
///
/// A throwaway server is killed and its directory removed on drop; a watchdog process
/// does the same (by the server's pid file) if the test process dies first.
#[derive(Debug)]
pub struct RedisServer {
    port: u16,
    tls_port: Option<u16>,
    /// The throwaway server's process and directory.
    own: Option<(Child, PathBuf)>,
}

impl RedisServer {
    /// The machine's Redis on 127.0.0.1:6379 (or `$REKEY_REDIS_PORT`), `default` user
    /// without password; when nothing answers there, a throwaway server.
    ///
    /// # Panics
    /// When nothing answers and no throwaway server can be started.
    pub fn machine() -> RedisServer {
        let port = std::env::var(REDIS_PORT_ENV)
            .ok()
            .and_then(|p| p.parse().ok())
            .unwrap_or(6379);
        if ping(port) {
            return RedisServer {
                port,
                tls_port: None,
                own: None,
            };
        }
        RedisServer::start(RedisOptions::default()).unwrap_or_else(|e| panic!("{e}"))
    }

    /// A throwaway `redis-server` (`$REKEY_REDIS_SERVER`, else from PATH) on free ports
    /// of 127.0.0.1, without persistence, in a fresh temporary directory.
    pub fn start(options: RedisOptions) -> Result<RedisServer, TestbedError> {
        let dir = scratch::fresh_dir(&std::env::temp_dir(), "rekey-redis", 0o700)?;
        let pid_file = scratch::shell_quote(&dir.join("redis.pid").to_string_lossy());
        if let Err(e) = process::spawn_watchdog(
            &dir,
            &format!("p=$(cat {pid_file} 2>/dev/null); [ -n \"$p\" ] && kill -9 \"$p\" 2>/dev/null"),
        ) {
            let _ = fs::remove_dir_all(&dir);
            return Err(e);
        }
        let mut last_error = String::new();
        for _ in 0..PORT_ATTEMPTS {
            match start_in(&dir, &options) {
                Ok(server) => return Ok(server),
                Err(Start::PortTaken(message)) => last_error = message,
                Err(Start::Failed(e)) => {
                    let _ = fs::remove_dir_all(&dir);
                    return Err(e);
                }
            }
        }
        let _ = fs::remove_dir_all(&dir);
        Err(TestbedError::new(format!(
            "redis-server found no free port in {PORT_ATTEMPTS} attempts: {last_error}"
        )))
    }

    /// The plain TCP port on 127.0.0.1.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The TLS port of a server started with TLS.
    pub fn tls_port(&self) -> Option<u16> {
        self.tls_port
    }

    /// The directory of a throwaway server (log, ACL file, pid file).
    pub fn dir(&self) -> Option<&Path> {
        self.own.as_ref().map(|(_, dir)| dir.as_path())
    }

    /// The ACL file of a throwaway server (it exists if the server was started with one).
    pub fn acl_file_path(&self) -> Option<PathBuf> {
        self.own.as_ref().map(|(_, dir)| dir.join("users.acl"))
    }

    /// The ACL file's contents (empty when unreadable).
    ///
    /// # Panics
    /// On the machine's server, which has no ACL file of the testbed's.
    pub fn acl_file(&self) -> String {
        fs::read_to_string(self.acl_file_path().expect("a throwaway server")).unwrap_or_default()
    }

    /// Runs a command as the `default` user.
    ///
    /// # Panics
    /// When the command fails; the message has Redis's error.
    pub fn cmd(&self, args: &[&str]) -> RespValue {
        self.try_cmd(args)
            .unwrap_or_else(|e| panic!("{:?} failed: {e}", args.first()))
    }

    /// Runs a command as the `default` user on a connection of its own; an error reply
    /// is returned as the error.
    pub fn try_cmd(&self, args: &[&str]) -> Result<RespValue, TestbedError> {
        let what = args.first().copied().unwrap_or("(no command)");
        let fail = |e: std::io::Error| TestbedError::new(format!("redis on port {}: {what}: {e}", self.port));
        let stream = connect(self.port).map_err(fail)?;
        write_command(&mut &stream, args).map_err(fail)?;
        match read_reply(&mut BufReader::new(&stream)).map_err(fail)? {
            RespValue::Error(message) => Err(TestbedError::new(message)),
            reply => Ok(reply),
        }
    }

    /// The SHA-256 hashes of a user's passwords (`None` when the user does not exist).
    pub fn passwords(&self, user: &str) -> Option<Vec<String>> {
        let RespValue::Array(items) = self.cmd(&["ACL", "GETUSER", user]) else {
            return None;
        };
        let mut it = items.iter();
        while let Some(key) = it.next() {
            let value = it.next()?;
            if key.text() == "passwords" {
                return Some(match value {
                    RespValue::Array(p) => p.iter().map(RespValue::text).collect(),
                    _ => Vec::new(),
                });
            }
        }
        Some(Vec::new())
    }

    /// `CLIENT LIST` lines of connections authenticated as `user`.
    pub fn clients_of(&self, user: &str) -> Vec<String> {
        let list = self.cmd(&["CLIENT", "LIST"]).text();
        let needle = format!(" user={user} ");
        list.lines()
            .filter(|l| l.contains(&needle))
            .map(str::to_owned)
            .collect()
    }

    /// A connection of its own logged in as `user` with `password` (`AUTH`), kept open
    /// as an application's session; the password goes over the connection, never argv.
    /// A refusal is the error, with Redis's text (`WRONGPASS ...`).
    pub fn login(&self, user: &str, password: &str) -> Result<RedisSession, TestbedError> {
        let fail = |e: std::io::Error| TestbedError::new(format!("redis on port {}: AUTH as {user}: {e}", self.port));
        let stream = connect(self.port).map_err(fail)?;
        let reader = BufReader::new(stream.try_clone().map_err(fail)?);
        let mut session = RedisSession { stream, reader };
        session.cmd(&["AUTH", user, password])?;
        Ok(session)
    }

    /// Whether `user` logs in with `password`: `true` when `AUTH` succeeds, `false` when
    /// Redis refuses it with its own authentication error (`WRONGPASS`).
    ///
    /// # Panics
    /// On any other failure (no server, another error), so that a refusal is never
    /// mistaken for a connection problem.
    pub fn can_login(&self, user: &str, password: &str) -> bool {
        match self.login(user, password) {
            Ok(_) => true,
            Err(e) if e.message().starts_with("WRONGPASS") => false,
            Err(e) => panic!("logging in as {user} failed for another reason than a refused password: {e}"),
        }
    }

    /// Waits (at most 5 s) until exactly `n` connections of `user` are open.
    ///
    /// # Panics
    /// When the count is still different after 5 s.
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

/// A connection logged in as one user ([`RedisServer::login`]), open until dropped.
#[derive(Debug)]
pub struct RedisSession {
    stream: TcpStream,
    reader: BufReader<TcpStream>,
}

impl RedisSession {
    /// Runs a command on this connection; an error reply is returned as the error.
    pub fn cmd(&mut self, args: &[&str]) -> Result<RespValue, TestbedError> {
        let what = args.first().copied().unwrap_or("(no command)");
        let fail = |e: std::io::Error| TestbedError::new(format!("redis session: {what}: {e}"));
        write_command(&mut &self.stream, args).map_err(fail)?;
        match read_reply(&mut self.reader).map_err(fail)? {
            RespValue::Error(message) => Err(TestbedError::new(message)),
            reply => Ok(reply),
        }
    }

    /// Whether the connection is still open: `PING` is answered with `PONG` (after the
    /// server closed it, writing or reading fails).
    pub fn alive(&mut self) -> bool {
        self.cmd(&["PING"]).is_ok_and(|r| r == RespValue::Simple("PONG".into()))
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        if let Some((mut child, dir)) = self.own.take() {
            let _ = child.kill();
            let _ = child.wait();
            // Removing the directory also ends the watchdog.
            let _ = fs::remove_dir_all(dir);
        }
    }
}

/// Why one start attempt failed.
enum Start {
    /// Another process took a port first: try others.
    PortTaken(String),
    Failed(TestbedError),
}

impl From<TestbedError> for Start {
    fn from(e: TestbedError) -> Self {
        Start::Failed(e)
    }
}

/// Starts `redis-server` in `dir` on newly picked ports and waits until it is ready.
fn start_in(dir: &Path, options: &RedisOptions) -> Result<RedisServer, Start> {
    let port = free_port()?;
    let (log, pid_file) = (dir.join("redis.log"), dir.join("redis.pid"));
    let _ = fs::remove_file(&log);
    let _ = fs::remove_file(&pid_file);
    let program = std::env::var(REDIS_SERVER_ENV).unwrap_or_else(|_| "redis-server".into());
    let mut cmd = Command::new(&program);
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
        .arg(dir)
        .arg("--logfile")
        .arg(&log)
        // Written once the ports are bound; the watchdog kills by it.
        .arg("--pidfile")
        .arg(&pid_file);
    if let Some(lines) = &options.acl_file {
        let path = dir.join("users.acl");
        fs::write(&path, lines).map_err(|e| TestbedError::new(format!("cannot write {}: {e}", path.display())))?;
        cmd.arg("--aclfile").arg(&path);
    }
    let mut tls_port = None;
    if let Some(tls) = &options.tls {
        let p = free_port()?;
        tls_port = Some(p);
        cmd.arg("--tls-port")
            .arg(p.to_string())
            .arg("--tls-cert-file")
            .arg(&tls.server.cert)
            .arg("--tls-key-file")
            .arg(&tls.server.key)
            .arg("--tls-ca-cert-file")
            .arg(&tls.ca)
            .args(["--tls-auth-clients", "no"]);
    }
    cmd.current_dir(dir)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    // Its own process group: a Ctrl-C aimed at the test run does not reach it before
    // the watchdog or Drop can stop it.
    std::os::unix::process::CommandExt::process_group(&mut cmd, 0);
    let mut child = cmd.spawn().map_err(|e| {
        TestbedError::new(format!(
            "cannot run {program} (redis-server must be installed to start a throwaway server): {e}"
        ))
    })?;
    let deadline = Instant::now() + START_TIMEOUT;
    loop {
        let ready = ping(port)
            && (tls_port.is_none()
                || fs::read_to_string(&log).is_ok_and(|l| l.contains("Ready to accept connections")));
        if ready {
            return Ok(RedisServer {
                port,
                tls_port,
                own: Some((child, dir.to_owned())),
            });
        }
        if let Ok(Some(status)) = child.try_wait() {
            let mut err = String::new();
            if let Some(mut e) = child.stderr.take() {
                let _ = e.read_to_string(&mut err);
            }
            let log = fs::read_to_string(&log).unwrap_or_default();
            let message = format!("redis-server exited ({status}): {err} {log}");
            return Err(if log.contains("Address already in use") {
                Start::PortTaken(message)
            } else {
                Start::Failed(TestbedError::new(message))
            });
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            return Err(Start::Failed(TestbedError::new(format!(
                "redis-server did not start within {}s: {}",
                START_TIMEOUT.as_secs(),
                fs::read_to_string(&log).unwrap_or_default()
            ))));
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// A connection to 127.0.0.1:`port` with connect and command timeouts.
fn connect(port: u16) -> std::io::Result<TcpStream> {
    let stream = TcpStream::connect_timeout(&SocketAddr::from((Ipv4Addr::LOCALHOST, port)), CONNECT_TIMEOUT)?;
    stream.set_read_timeout(Some(COMMAND_TIMEOUT))?;
    stream.set_write_timeout(Some(COMMAND_TIMEOUT))?;
    Ok(stream)
}

/// Whether a Redis server answers `PING` on 127.0.0.1:`port` without a password.
fn ping(port: u16) -> bool {
    let Ok(stream) = connect(port) else { return false };
    write_command(&mut &stream, &["PING"]).is_ok()
        && read_reply(&mut BufReader::new(&stream)).is_ok_and(|r| r == RespValue::Simple("PONG".into()))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// SHA-256 of "password".
    const PASSWORD_HASH: &str = "5e884898da28047151d0e56f8dc6292773603d0d6aabbdd62a11ef721d1542d8";

    #[test]
    fn logins_are_checked_and_sessions_end_when_killed() {
        let server = RedisServer::start(RedisOptions {
            acl_file: Some(format!(
                "user default on nopass ~* &* +@all\nuser tb_app on #{PASSWORD_HASH} ~* +@all\n"
            )),
            tls: None,
        })
        .unwrap();
        assert!(server.can_login("tb_app", "password"));
        assert!(!server.can_login("tb_app", "not-the-password"));
        let refused = server.login("tb_app", "not-the-password").unwrap_err();
        assert!(refused.message().starts_with("WRONGPASS"), "{refused}");

        let mut session = server.login("tb_app", "password").unwrap();
        assert_eq!(session.cmd(&["ACL", "WHOAMI"]).unwrap().text(), "tb_app");
        assert!(session.alive());
        server.wait_for_clients("tb_app", 1);
        server.cmd(&["CLIENT", "KILL", "USER", "tb_app"]);
        assert!(!session.alive(), "the killed connection is closed");
    }

    #[test]
    #[should_panic(expected = "another reason than a refused password")]
    fn a_login_without_a_server_is_not_a_refusal() {
        let port = {
            let server = RedisServer::start(RedisOptions::default()).unwrap();
            server.port()
        };
        let gone = RedisServer {
            port,
            tls_port: None,
            own: None,
        };
        gone.can_login("default", "anything");
    }
}
