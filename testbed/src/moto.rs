//! A throwaway moto server (AWS APIs: Secrets Manager, IAM, STS...) with request
//! signatures checked.
//!
//! moto checks signatures only after `INITIAL_NO_AUTH_ACTION_COUNT` requests. Every
//! request that reaches a service counts, so readiness is a plain TCP connect (which
//! does not count), then exactly three unsigned IAM calls create an administrator:
//! `CreateUser`, `PutUserPolicy` (an inline `Allow * on *` policy: moto does not load
//! AWS managed policies by default) and `CreateAccessKey`. From the fourth request on,
//! every request must be signed with a key moto knows, and moto's IAM policy evaluation
//! decides what it may do.

use crate::process::{self, run};
use crate::scratch::{self, free_port};
use crate::TestbedError;
use std::fmt;
use std::fs;
use std::io::{Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

/// Environment variable naming the `moto_server` program to run (default: `moto_server`
/// on `PATH`, else `python3 -m moto.server`).
pub const MOTO_ENV: &str = "REKEY_MOTO_SERVER";
/// How long moto may take to listen (it imports every service's models first).
const START_TIMEOUT: Duration = Duration::from_secs(60);
/// How many ports to try when another process takes the chosen one first.
const PORT_ATTEMPTS: usize = 5;
/// Unsigned requests moto lets through before it checks signatures.
const NO_AUTH_REQUESTS: u32 = 3;
/// The administrator the harness creates.
const ADMIN_USER: &str = "rekey-testbed-admin";
/// The inline policy that makes it an administrator.
const ADMIN_POLICY: &str = r#"{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Action":"*","Resource":"*"}]}"#;

/// A running moto server on `127.0.0.1`, with signatures and IAM policies enforced and
/// an administrator key ([`MotoServer::admin_key`]) to sign with. moto keeps its state
/// in memory: stopping it loses everything.
///
/// Dropping it kills the server and removes its directory (which holds its log). A
/// watchdog process does the same if the test process dies first, so the never-dropped
/// [`MotoServer::shared`] instance is cleaned up too.
pub struct MotoServer {
    child: Child,
    port: u16,
    dir: PathBuf,
    admin_key_id: String,
    admin_secret: String,
}

impl fmt::Debug for MotoServer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MotoServer")
            .field("pid", &self.child.id())
            .field("port", &self.port)
            .field("dir", &self.dir)
            .field("admin_key_id", &self.admin_key_id)
            .field("admin_secret", &"****")
            .finish()
    }
}

impl MotoServer {
    /// Starts a server of its own (about two seconds: moto imports its models).
    pub fn start() -> Result<MotoServer, TestbedError> {
        let program = MotoProgram::find();
        let mut last = None;
        for _ in 0..PORT_ATTEMPTS {
            match MotoServer::start_on(&program, free_port()?) {
                Ok(server) => return Ok(server),
                // Another process may have taken the port between our probe and moto's bind.
                Err(e) if e.message().contains("Address already in use") => last = Some(e),
                Err(e) => return Err(e),
            }
        }
        Err(last.unwrap_or_else(|| TestbedError::new("cannot start moto")))
    }

    /// One server shared by every test of the current test binary (started on first
    /// use). Tests sharing it must use unique names; never pause it.
    ///
    /// # Panics
    /// When the server cannot be started.
    pub fn shared() -> &'static MotoServer {
        static SHARED: OnceLock<MotoServer> = OnceLock::new();
        SHARED.get_or_init(|| MotoServer::start().unwrap_or_else(|e| panic!("cannot start moto: {e}")))
    }

    /// `http://127.0.0.1:PORT`, the endpoint URL of every service.
    pub fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// The TCP port on `127.0.0.1`.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The region tests use: `us-east-1`.
    pub fn region(&self) -> &'static str {
        "us-east-1"
    }

    /// The administrator's access key id and secret access key (policy `Allow *`).
    pub fn admin_key(&self) -> (&str, &str) {
        (&self.admin_key_id, &self.admin_secret)
    }

    /// The administrator's user name.
    pub fn admin_user(&self) -> &'static str {
        ADMIN_USER
    }

    /// The server's process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Freezes the server (`SIGSTOP`): connections are still accepted by the kernel but
    /// nothing is answered until [`MotoServer::resume`], like a hung backend. Requests
    /// sent meanwhile are processed after the resume.
    pub fn pause(&self) -> Result<(), TestbedError> {
        self.signal("STOP")
    }

    /// Lets a paused server run again (`SIGCONT`).
    pub fn resume(&self) -> Result<(), TestbedError> {
        self.signal("CONT")
    }

    /// The server's output so far (one line per request).
    pub fn log(&self) -> String {
        fs::read_to_string(self.dir.join("moto.log")).unwrap_or_default()
    }

    fn signal(&self, name: &str) -> Result<(), TestbedError> {
        let output = run(
            Command::new("kill").arg(format!("-{name}")).arg(self.pid().to_string()),
            None,
            Duration::from_secs(10),
        )
        .map_err(TestbedError::new)?;
        if output.status.success() {
            Ok(())
        } else {
            Err(TestbedError::new(format!(
                "kill -{name} {}: {}",
                self.pid(),
                String::from_utf8_lossy(&output.stderr).trim()
            )))
        }
    }

    fn start_on(program: &MotoProgram, port: u16) -> Result<MotoServer, TestbedError> {
        let dir = fresh_dir()?;
        let log = fs::File::create(dir.join("moto.log"))
            .map_err(|e| TestbedError::new(format!("cannot create {}/moto.log: {e}", dir.display())))?;
        let log_err = log
            .try_clone()
            .map_err(|e| TestbedError::new(format!("cannot duplicate the log file handle: {e}")))?;
        let mut cmd = program.command();
        cmd.arg("-H")
            .arg("127.0.0.1")
            .arg("-p")
            .arg(port.to_string())
            .current_dir(&dir)
            .env("INITIAL_NO_AUTH_ACTION_COUNT", NO_AUTH_REQUESTS.to_string())
            .env_remove("MOTO_CALL_RESET_API")
            .stdin(Stdio::null())
            .stdout(log)
            .stderr(log_err);
        // Its own process group: a Ctrl-C aimed at the test run does not reach it before
        // the watchdog or Drop can stop it in order.
        std::os::unix::process::CommandExt::process_group(&mut cmd, 0);
        let child = cmd.spawn().map_err(|e| {
            let _ = fs::remove_dir_all(&dir);
            TestbedError::new(format!(
                "cannot run {}: {e} (install it: pip install 'moto[server]')",
                program
            ))
        })?;
        let mut server = MotoServer {
            child,
            port,
            dir,
            admin_key_id: String::new(),
            admin_secret: String::new(),
        };
        // From here on, a failure drops `server`, which kills the process.
        server.spawn_watchdog()?;
        server.wait_listening()?;
        server.create_admin()?;
        Ok(server)
    }

    fn wait_listening(&mut self) -> Result<(), TestbedError> {
        let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, self.port));
        let deadline = Instant::now() + START_TIMEOUT;
        loop {
            if let Ok(Some(status)) = self.child.try_wait() {
                return Err(TestbedError::new(format!(
                    "moto exited before listening on port {} ({status}): {}",
                    self.port,
                    last_lines(&self.log(), 5)
                )));
            }
            if TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_ok() {
                return Ok(());
            }
            if Instant::now() >= deadline {
                return Err(TestbedError::new(format!(
                    "moto did not listen on port {} within {}s: {}",
                    self.port,
                    START_TIMEOUT.as_secs(),
                    last_lines(&self.log(), 5)
                )));
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// The three unsigned requests moto allows: user, inline admin policy, access key.
    fn create_admin(&mut self) -> Result<(), TestbedError> {
        self.iam_unsigned(&[("Action", "CreateUser"), ("UserName", ADMIN_USER)])?;
        self.iam_unsigned(&[
            ("Action", "PutUserPolicy"),
            ("UserName", ADMIN_USER),
            ("PolicyName", "admin"),
            ("PolicyDocument", ADMIN_POLICY),
        ])?;
        let body = self.iam_unsigned(&[("Action", "CreateAccessKey"), ("UserName", ADMIN_USER)])?;
        let id = xml_text(&body, "AccessKeyId");
        let secret = xml_text(&body, "SecretAccessKey");
        match (id, secret) {
            (Some(id), Some(secret)) => {
                self.admin_key_id = id;
                self.admin_secret = secret;
                Ok(())
            }
            _ => Err(TestbedError::new(
                "moto's CreateAccessKey answer holds no AccessKeyId/SecretAccessKey",
            )),
        }
    }

    /// An IAM query-API call without a signature. moto picks the service from the
    /// Authorization header's credential scope, which is all this header is for.
    fn iam_unsigned(&self, params: &[(&str, &str)]) -> Result<String, TestbedError> {
        let mut form = String::from("Version=2010-05-08");
        for (name, value) in params {
            form.push('&');
            form.push_str(name);
            form.push('=');
            form.push_str(&form_encode(value));
        }
        let action = params.first().map(|(_, v)| *v).unwrap_or("?");
        let request = format!(
            "POST / HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n\
             Authorization: AWS4-HMAC-SHA256 Credential=AKIAREKEYTESTBED0000/20240101/us-east-1/iam/aws4_request, \
             SignedHeaders=host, Signature=0\r\n\
             Content-Type: application/x-www-form-urlencoded; charset=utf-8\r\n\
             Content-Length: {len}\r\nConnection: close\r\n\r\n{form}",
            port = self.port,
            len = form.len()
        );
        let mut stream = TcpStream::connect((Ipv4Addr::LOCALHOST, self.port))
            .map_err(|e| TestbedError::new(format!("moto IAM {action}: connect: {e}")))?;
        stream
            .set_read_timeout(Some(Duration::from_secs(30)))
            .map_err(|e| TestbedError::new(format!("moto IAM {action}: {e}")))?;
        stream
            .write_all(request.as_bytes())
            .map_err(|e| TestbedError::new(format!("moto IAM {action}: write: {e}")))?;
        let mut response = Vec::new();
        stream
            .read_to_end(&mut response)
            .map_err(|e| TestbedError::new(format!("moto IAM {action}: read: {e}")))?;
        let response = String::from_utf8_lossy(&response).into_owned();
        let (head, body) = response.split_once("\r\n\r\n").unwrap_or((&response, ""));
        let status_ok = head
            .lines()
            .next()
            .is_some_and(|line| line.split_whitespace().nth(1) == Some("200"));
        if status_ok {
            Ok(body.to_owned())
        } else {
            Err(TestbedError::new(format!(
                "moto IAM {action} failed: {} {}",
                head.lines().next().unwrap_or(""),
                body.chars().take(300).collect::<String>()
            )))
        }
    }

    /// A watchdog that kills the server if the test process dies without dropping it
    /// (or exits, for [`MotoServer::shared`]). Drop removes the directory first, which
    /// ends the watchdog without a kill, so a reused pid is never signalled.
    fn spawn_watchdog(&self) -> Result<(), TestbedError> {
        process::spawn_watchdog(
            &self.dir,
            &format!(
                "kill -CONT {moto}; kill {moto}; sleep 1; kill -9 {moto}",
                moto = self.pid()
            ),
        )
    }
}

impl Drop for MotoServer {
    fn drop(&mut self) {
        // Directory first: that tells the watchdog to stand down.
        let _ = fs::remove_dir_all(&self.dir);
        let _ = self.signal("CONT");
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// How to run moto's server.
enum MotoProgram {
    /// A `moto_server` executable.
    Server(PathBuf),
    /// `python3 -m moto.server`.
    Module,
}

impl MotoProgram {
    fn find() -> MotoProgram {
        if let Some(path) = std::env::var_os(MOTO_ENV) {
            return MotoProgram::Server(PathBuf::from(path));
        }
        match find_on_path("moto_server") {
            Some(path) => MotoProgram::Server(path),
            None => MotoProgram::Module,
        }
    }

    fn command(&self) -> Command {
        match self {
            MotoProgram::Server(path) => Command::new(path),
            MotoProgram::Module => {
                let mut cmd = Command::new("python3");
                cmd.arg("-m").arg("moto.server");
                cmd
            }
        }
    }
}

impl fmt::Display for MotoProgram {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            MotoProgram::Server(path) => write!(f, "{}", path.display()),
            MotoProgram::Module => f.write_str("python3 -m moto.server"),
        }
    }
}

fn find_on_path(program: &str) -> Option<PathBuf> {
    use std::os::unix::fs::PermissionsExt;
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|dir| dir.join(program))
        .find(|candidate| fs::metadata(candidate).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0))
}

fn fresh_dir() -> Result<PathBuf, TestbedError> {
    scratch::fresh_dir(&std::env::temp_dir(), "rekey-moto", 0o755)
}

/// `application/x-www-form-urlencoded` encoding of one value.
fn form_encode(value: &str) -> String {
    let mut out = String::with_capacity(value.len() * 3);
    for byte in value.bytes() {
        match byte {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => out.push(byte as char),
            _ => out.push_str(&format!("%{byte:02X}")),
        }
    }
    out
}

/// A TCP proxy in front of a server (moto) that counts the AWS API calls passing
/// through it: one entry per request, named by its `X-Amz-Target` header
/// (`secretsmanager.GetSecretValue`; JSON-protocol services such as Secrets Manager), or
/// `?` for a request without one (query-protocol services such as IAM and STS). Point a
/// client's endpoint URL at [`CountingProxy::endpoint`] to count its calls, whatever
/// the client (the Rust SDK, boto3). Forwarding stops when it is dropped.
#[derive(Debug)]
pub struct CountingProxy {
    port: u16,
    calls: std::sync::Arc<std::sync::Mutex<Vec<String>>>,
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
}

impl CountingProxy {
    /// Starts a proxy on a free port of `127.0.0.1` forwarding to `127.0.0.1:upstream`.
    pub fn start(upstream: u16) -> Result<CountingProxy, TestbedError> {
        use std::sync::atomic::{AtomicBool, Ordering};
        use std::sync::{Arc, Mutex};
        let listener = std::net::TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
            .map_err(|e| TestbedError::new(format!("counting proxy: cannot listen: {e}")))?;
        let port = listener
            .local_addr()
            .map_err(|e| TestbedError::new(format!("counting proxy: {e}")))?
            .port();
        let calls = Arc::new(Mutex::new(Vec::new()));
        let stop = Arc::new(AtomicBool::new(false));
        let (calls2, stop2) = (calls.clone(), stop.clone());
        std::thread::spawn(move || {
            for client in listener.incoming() {
                if stop2.load(Ordering::SeqCst) {
                    break;
                }
                let Ok(client) = client else { continue };
                let Ok(server) = TcpStream::connect((Ipv4Addr::LOCALHOST, upstream)) else {
                    continue;
                };
                let calls = calls2.clone();
                let (Ok(client2), Ok(server2)) = (client.try_clone(), server.try_clone()) else {
                    continue;
                };
                std::thread::spawn(move || count_requests(client, server, &calls));
                std::thread::spawn(move || copy_until_closed(server2, client2));
            }
        });
        Ok(CountingProxy { port, calls, stop })
    }

    /// `http://127.0.0.1:PORT`: the endpoint URL to give clients.
    pub fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// The calls counted so far, in order, and clears the record.
    pub fn take(&self) -> Vec<String> {
        std::mem::take(&mut *self.calls.lock().unwrap_or_else(|p| p.into_inner()))
    }

    /// The calls counted so far, in order.
    pub fn calls(&self) -> Vec<String> {
        self.calls.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }
}

impl Drop for CountingProxy {
    fn drop(&mut self) {
        self.stop.store(true, std::sync::atomic::Ordering::SeqCst);
        // Wakes the accept loop so that it sees the flag.
        let _ = TcpStream::connect((Ipv4Addr::LOCALHOST, self.port));
    }
}

/// Copies the client's bytes to the server, recording each request's `X-Amz-Target`
/// (header lines are scanned as they pass; a request line starts a new entry).
fn count_requests(mut client: TcpStream, mut server: TcpStream, calls: &std::sync::Mutex<Vec<String>>) {
    let mut buf = [0u8; 16 * 1024];
    let mut line: Vec<u8> = Vec::new();
    loop {
        let n = match client.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => n,
        };
        for &byte in &buf[..n] {
            if byte != b'\n' {
                if line.len() < 512 {
                    line.push(byte);
                }
                continue;
            }
            let text = String::from_utf8_lossy(&line).trim_end().to_owned();
            line.clear();
            let lower = text.to_ascii_lowercase();
            let mut calls = calls.lock().unwrap_or_else(|p| p.into_inner());
            if lower.ends_with(" http/1.1") && (lower.starts_with("post ") || lower.starts_with("get ")) {
                calls.push("?".to_owned());
            } else if let Some(target) = lower.strip_prefix("x-amz-target:") {
                let original = text[text.len() - target.len()..].trim().to_owned();
                if let Some(last) = calls.last_mut().filter(|l| *l == "?") {
                    *last = original;
                }
            }
        }
        if server.write_all(&buf[..n]).is_err() {
            break;
        }
    }
    let _ = server.shutdown(std::net::Shutdown::Write);
}

fn copy_until_closed(mut from: TcpStream, mut to: TcpStream) {
    let _ = std::io::copy(&mut from, &mut to);
    let _ = to.shutdown(std::net::Shutdown::Write);
}

/// The text of the first `<tag>...</tag>` element.
fn xml_text(xml: &str, tag: &str) -> Option<String> {
    let open = format!("<{tag}>");
    let start = xml.find(&open)? + open.len();
    let end = xml[start..].find(&format!("</{tag}>"))? + start;
    Some(xml[start..end].to_owned())
}

fn last_lines(text: &str, count: usize) -> String {
    let lines: Vec<&str> = text.lines().filter(|l| !l.trim().is_empty()).collect();
    lines[lines.len().saturating_sub(count)..].join(" | ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encodes_forms_and_reads_xml() {
        assert_eq!(form_encode("a b{\"*\"}"), "a%20b%7B%22%2A%22%7D");
        assert_eq!(xml_text("<A><B>x</B></A>", "B").as_deref(), Some("x"));
        assert_eq!(xml_text("<A></A>", "B"), None);
    }
}
