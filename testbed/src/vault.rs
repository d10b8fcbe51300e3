//! A throwaway rvault server (crates.io `rusty_vault`, a Vault-compatible server written
//! in Rust): initialized with one unseal key, unsealed, token authentication enforced.
//!
//! The harness speaks HTTP/1.1 over a plain `TcpStream` (no HTTP client dependency).

use crate::process;
use crate::scratch::{self, free_port, shell_quote};
use crate::TestbedError;
use std::fmt;
use std::fs;
use std::io::{Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

/// Environment variable naming the `rvault` binary to use.
pub const RVAULT_BIN_ENV: &str = "REKEY_RVAULT_BIN";
/// How long the server may take to listen, and one request to answer.
const START_TIMEOUT: Duration = Duration::from_secs(60);
const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);
/// How many ports to try when another process takes the chosen one first.
const PORT_ATTEMPTS: usize = 5;

/// An answer from the server: status and body text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VaultResponse {
    /// The HTTP status.
    pub status: u16,
    /// The body (JSON for Vault's API; empty for 204).
    pub body: String,
}

impl VaultResponse {
    /// Whether the status is 2xx.
    pub fn is_success(&self) -> bool {
        (200..300).contains(&self.status)
    }
}

/// A running rvault server of its own: `rvault server` with file storage in a temporary
/// directory, listening on `127.0.0.1:PORT` without TLS, initialized (one key share)
/// and unsealed. `secret/` is a KV version 1 mount.
///
/// Dropping it kills the server and removes the directory. A watchdog process does the
/// same if the test process dies first, so even the never-dropped
/// [`VaultServer::shared`] instance is cleaned up.
pub struct VaultServer {
    dir: PathBuf,
    port: u16,
    child: Option<Child>,
    root_token: String,
    unseal_key: String,
}

impl fmt::Debug for VaultServer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("VaultServer")
            .field("dir", &self.dir)
            .field("port", &self.port)
            .field("root_token", &"****")
            .field("unseal_key", &"****")
            .finish()
    }
}

impl VaultServer {
    /// The `rvault` binary: `$REKEY_RVAULT_BIN`, else `rvault` on `PATH`, else
    /// `~/.cargo/bin/rvault` (where `cargo install rusty_vault` puts it).
    pub fn find_binary() -> Option<PathBuf> {
        if let Some(bin) = std::env::var_os(RVAULT_BIN_ENV) {
            return Some(PathBuf::from(bin));
        }
        if let Some(path) = std::env::var_os("PATH") {
            for dir in std::env::split_paths(&path) {
                let candidate = dir.join("rvault");
                if candidate.is_file() {
                    return Some(candidate);
                }
            }
        }
        let home = std::env::var_os("HOME")?;
        let candidate = Path::new(&home).join(".cargo/bin/rvault");
        candidate.is_file().then_some(candidate)
    }

    /// Starts a fresh server, initializes and unseals it.
    pub fn start() -> Result<VaultServer, TestbedError> {
        let bin = VaultServer::find_binary().ok_or_else(|| {
            TestbedError::new(format!(
                "rvault not found (PATH, ~/.cargo/bin or ${RVAULT_BIN_ENV}): install it with `cargo install --locked \
                 rusty_vault`"
            ))
        })?;
        let dir = fresh_temp_dir()?;
        let mut server = VaultServer {
            dir,
            port: 0,
            child: None,
            root_token: String::new(),
            unseal_key: String::new(),
        };
        // From here on, a failure drops `server`, which kills what was started and
        // removes the directory.
        server.spawn_watchdog()?;
        server.start_process(&bin)?;
        server.initialize()?;
        server.unseal()?;
        Ok(server)
    }

    /// One server shared by every test of the current test binary (started on first
    /// use). Tests sharing it must use unique key, role and mount names, and must not
    /// seal it.
    ///
    /// # Panics
    /// When the server cannot be started.
    pub fn shared() -> &'static VaultServer {
        static SHARED: OnceLock<VaultServer> = OnceLock::new();
        SHARED.get_or_init(|| VaultServer::start().unwrap_or_else(|e| panic!("cannot start the rvault server: {e}")))
    }

    /// `http://127.0.0.1:PORT`.
    pub fn address(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// The TCP port on `127.0.0.1`.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The root token returned by initialization.
    pub fn root_token(&self) -> &str {
        &self.root_token
    }

    /// The directory holding the configuration, the storage and the server log.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The server's output so far (empty if unreadable).
    pub fn log_contents(&self) -> String {
        fs::read(self.dir.join("rvault.log"))
            .map(|b| String::from_utf8_lossy(&b).into_owned())
            .unwrap_or_default()
    }

    /// Seals the server: every request but seal status and unseal gets 503 until
    /// [`VaultServer::unseal`].
    pub fn seal(&self) -> Result<(), TestbedError> {
        let r = self.api("PUT", "sys/seal", None)?;
        self.require(r, "sys/seal").map(drop)
    }

    /// Unseals the server with its key and waits until it reports unsealed.
    pub fn unseal(&self) -> Result<(), TestbedError> {
        let body = format!("{{\"key\":\"{}\"}}", self.unseal_key);
        let r = self.request("PUT", "sys/unseal", None, Some(&body))?;
        self.require(r, "sys/unseal")?;
        let deadline = Instant::now() + START_TIMEOUT;
        loop {
            let status = self.request("GET", "sys/seal-status", None, None)?;
            if status.is_success() && status.body.replace(' ', "").contains("\"sealed\":false") {
                return Ok(());
            }
            if Instant::now() >= deadline {
                return Err(TestbedError::new(format!(
                    "rvault on port {} still sealed after unseal: {}",
                    self.port, status.body
                )));
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// A request to `/v1/<path>` with the root token.
    pub fn api(&self, method: &str, path: &str, body: Option<&str>) -> Result<VaultResponse, TestbedError> {
        self.request(method, path, Some(&self.root_token), body)
    }

    /// [`VaultServer::api`] requiring a 2xx answer.
    ///
    /// # Panics
    /// When the request fails or the status is not 2xx; the message has the body.
    pub fn api_ok(&self, method: &str, path: &str, body: Option<&str>) -> VaultResponse {
        let r = self.api(method, path, body).unwrap_or_else(|e| panic!("{e}"));
        self.require(r, path).unwrap_or_else(|e| panic!("{e}"))
    }

    /// A request to `/v1/<path>` with `token` (none when `None`) and a JSON `body`.
    pub fn request(
        &self,
        method: &str,
        path: &str,
        token: Option<&str>,
        body: Option<&str>,
    ) -> Result<VaultResponse, TestbedError> {
        http_request(
            self.port,
            method,
            &format!("/v1/{}", path.trim_start_matches('/')),
            token,
            body,
        )
    }

    fn require(&self, r: VaultResponse, what: &str) -> Result<VaultResponse, TestbedError> {
        if r.is_success() {
            Ok(r)
        } else {
            Err(TestbedError::new(format!(
                "rvault on port {}: {what}: HTTP {}: {}",
                self.port, r.status, r.body
            )))
        }
    }

    fn write_config(&self) -> Result<PathBuf, TestbedError> {
        let dir = self.dir.display();
        let port = self.port;
        let config = format!(
            "storage \"file\" {{\n  path = \"{dir}/data\"\n}}\n\
             listener \"tcp\" {{\n  address = \"127.0.0.1:{port}\"\n  tls_disable = true\n}}\n\
             api_addr = \"http://127.0.0.1:{port}\"\n\
             pid_file = \"{dir}/rvault.pid\"\n\
             work_dir = \"{dir}\"\n\
             log_level = \"warn\"\n"
        );
        let path = self.dir.join("rvault.hcl");
        fs::write(&path, config).map_err(|e| TestbedError::new(format!("cannot write {}: {e}", path.display())))?;
        Ok(path)
    }

    fn start_process(&mut self, bin: &Path) -> Result<(), TestbedError> {
        let mut last_error = String::new();
        for _ in 0..PORT_ATTEMPTS {
            self.port = free_port()?;
            let config = self.write_config()?;
            let log_path = self.dir.join("rvault.log");
            let log = fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(&log_path)
                .map_err(|e| TestbedError::new(format!("cannot open {}: {e}", log_path.display())))?;
            let log_before = self.log_contents().len();
            let child = Command::new(bin)
                .arg("server")
                .arg("--config")
                .arg(&config)
                .current_dir(&self.dir)
                .env_remove("VAULT_ADDR")
                .env_remove("VAULT_TOKEN")
                .stdin(Stdio::null())
                .stdout(log.try_clone().map_err(|e| TestbedError::new(e.to_string()))?)
                .stderr(log)
                .spawn()
                .map_err(|e| TestbedError::new(format!("cannot run {}: {e}", bin.display())))?;
            self.child = Some(child);
            self.record_pid()?;
            match self.wait_listening() {
                Ok(()) => return Ok(()),
                Err(e) => {
                    self.kill();
                    let log = self.log_contents();
                    let new_log = log.get(log_before..).unwrap_or(&log).trim().to_owned();
                    last_error = format!("{e}; server output: {new_log}");
                    if new_log.contains("in use") {
                        continue;
                    }
                    return Err(TestbedError::new(last_error));
                }
            }
        }
        Err(TestbedError::new(format!(
            "no free port after {PORT_ATTEMPTS} attempts: {last_error}"
        )))
    }

    /// Writes the server's pid where the watchdog looks for it.
    fn record_pid(&self) -> Result<(), TestbedError> {
        let pid = self.child.as_ref().map(Child::id).unwrap_or(0);
        let path = self.dir.join("server.pid");
        fs::write(&path, pid.to_string())
            .map_err(|e| TestbedError::new(format!("cannot write {}: {e}", path.display())))
    }

    fn wait_listening(&mut self) -> Result<(), TestbedError> {
        let deadline = Instant::now() + START_TIMEOUT;
        let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, self.port));
        loop {
            if let Some(child) = self.child.as_mut() {
                if let Ok(Some(status)) = child.try_wait() {
                    return Err(TestbedError::new(format!("rvault exited at start ({status})")));
                }
            }
            if TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_ok() {
                return Ok(());
            }
            if Instant::now() >= deadline {
                return Err(TestbedError::new(format!(
                    "rvault did not listen on port {} within {}s",
                    self.port,
                    START_TIMEOUT.as_secs()
                )));
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    fn initialize(&mut self) -> Result<(), TestbedError> {
        let r = self.request(
            "PUT",
            "sys/init",
            None,
            Some(r#"{"secret_shares":1,"secret_threshold":1}"#),
        )?;
        let r = self.require(r, "sys/init")?;
        self.root_token = json_string_after(&r.body, "\"root_token\"")
            .ok_or_else(|| TestbedError::new("sys/init: no root_token in the answer"))?;
        self.unseal_key = json_string_after(&r.body, "\"keys\"")
            .ok_or_else(|| TestbedError::new("sys/init: no keys in the answer"))?;
        Ok(())
    }

    fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// A watchdog that kills the server (by the pid file it writes) and removes the
    /// directory if this process exits without dropping it.
    fn spawn_watchdog(&self) -> Result<(), TestbedError> {
        let pid_file = shell_quote(&self.dir.join("server.pid").to_string_lossy());
        process::spawn_watchdog(
            &self.dir,
            &format!("p=$(cat {pid_file} 2>/dev/null); [ -n \"$p\" ] && kill -9 \"$p\" 2>/dev/null"),
        )
    }
}

impl Drop for VaultServer {
    fn drop(&mut self) {
        self.kill();
        let _ = fs::remove_dir_all(&self.dir);
    }
}

/// The first JSON string after `marker` (`"root_token": "x"` gives `x`; `"keys": ["k"]`
/// gives `k`). Enough for the two fields of `sys/init`'s answer, which hold hex and
/// token characters only.
fn json_string_after(body: &str, marker: &str) -> Option<String> {
    let rest = &body[body.find(marker)? + marker.len()..];
    let rest = rest.trim_start().strip_prefix(':')?;
    let start = rest.find('"')? + 1;
    let len = rest[start..].find('"')?;
    Some(rest[start..start + len].to_owned())
}

/// One HTTP/1.1 request on a fresh connection (`Connection: close`).
fn http_request(
    port: u16,
    method: &str,
    path: &str,
    token: Option<&str>,
    body: Option<&str>,
) -> Result<VaultResponse, TestbedError> {
    let fail = |e: std::io::Error| TestbedError::new(format!("rvault on port {port}: {method} {path}: {e}"));
    let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, port));
    let mut stream = TcpStream::connect_timeout(&addr, REQUEST_TIMEOUT).map_err(fail)?;
    stream.set_read_timeout(Some(REQUEST_TIMEOUT)).map_err(fail)?;
    stream.set_write_timeout(Some(REQUEST_TIMEOUT)).map_err(fail)?;
    let body = body.unwrap_or("");
    let mut head = format!(
        "{method} {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nConnection: close\r\nContent-Length: {}\r\n",
        body.len()
    );
    if !body.is_empty() {
        head.push_str("Content-Type: application/json\r\n");
    }
    if let Some(token) = token {
        head.push_str(&format!("X-Vault-Token: {token}\r\n"));
    }
    head.push_str("\r\n");
    stream.write_all(head.as_bytes()).map_err(fail)?;
    stream.write_all(body.as_bytes()).map_err(fail)?;
    let mut raw = Vec::new();
    stream.read_to_end(&mut raw).map_err(fail)?;
    parse_response(&raw)
        .ok_or_else(|| TestbedError::new(format!("rvault on port {port}: {method} {path}: malformed HTTP answer")))
}

fn parse_response(raw: &[u8]) -> Option<VaultResponse> {
    let split = raw.windows(4).position(|w| w == b"\r\n\r\n")?;
    let head = std::str::from_utf8(&raw[..split]).ok()?;
    let mut body = raw[split + 4..].to_vec();
    let mut lines = head.split("\r\n");
    let status: u16 = lines.next()?.split_whitespace().nth(1)?.parse().ok()?;
    let chunked = lines.any(|l| {
        let l = l.to_ascii_lowercase();
        l.starts_with("transfer-encoding:") && l.contains("chunked")
    });
    if chunked {
        body = dechunk(&body)?;
    }
    Some(VaultResponse {
        status,
        body: String::from_utf8_lossy(&body).into_owned(),
    })
}

fn dechunk(mut data: &[u8]) -> Option<Vec<u8>> {
    let mut out = Vec::new();
    loop {
        let line_end = data.windows(2).position(|w| w == b"\r\n")?;
        let size_text = std::str::from_utf8(&data[..line_end]).ok()?;
        let size = usize::from_str_radix(size_text.split(';').next()?.trim(), 16).ok()?;
        data = &data[line_end + 2..];
        if size == 0 {
            return Some(out);
        }
        out.extend_from_slice(data.get(..size)?);
        data = data.get(size + 2..)?;
    }
}

fn fresh_temp_dir() -> Result<PathBuf, TestbedError> {
    scratch::fresh_dir(&std::env::temp_dir(), "rekey-rvault", 0o755)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn init_answer_fields() {
        let body = r#"{"keys":["0a1b"],"root_token":"tok-123"}"#;
        assert_eq!(json_string_after(body, "\"keys\"").as_deref(), Some("0a1b"));
        assert_eq!(json_string_after(body, "\"root_token\"").as_deref(), Some("tok-123"));
    }

    #[test]
    fn responses_plain_and_chunked() {
        let r = parse_response(b"HTTP/1.1 204 No Content\r\ncontent-length: 0\r\n\r\n").unwrap();
        assert_eq!((r.status, r.body.as_str()), (204, ""));
        let r = parse_response(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\n{\"a\r\n2\r\n\":\r\n1\r\n1\r\n1\r\n}\r\n0\r\n\r\n")
            .unwrap();
        assert_eq!(r.body, "{\"a\":1}");
    }
}
