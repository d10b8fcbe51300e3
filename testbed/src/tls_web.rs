//! [`TlsWebServer`]: `openssl s_server -www` on a free 127.0.0.1 port, for TLS client
//! tests (it answers every request with 200 and a status page).

use crate::scratch::free_port;
use crate::TestbedError;
use std::net::TcpStream;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// How long the server may take to accept connections.
const START_TIMEOUT: Duration = Duration::from_secs(5);
/// Ports tried when another process takes the free port first.
const PORT_ATTEMPTS: usize = 5;

/// A running `openssl s_server -www` with the given certificate; killed on drop.
#[derive(Debug)]
pub struct TlsWebServer {
    child: Child,
    port: u16,
}

impl TlsWebServer {
    /// Starts the server with `cert` and `key` (PEM; from [`crate::TestCa::issue_server`])
    /// and waits until it accepts connections.
    pub fn start(cert: &Path, key: &Path) -> Result<TlsWebServer, TestbedError> {
        for _ in 0..PORT_ATTEMPTS {
            let port = free_port()?;
            let child = Command::new("openssl")
                .args(["s_server", "-quiet", "-www", "-accept", &format!("127.0.0.1:{port}")])
                .arg("-cert")
                .arg(cert)
                .arg("-key")
                .arg(key)
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .map_err(|e| TestbedError::new(format!("cannot start openssl s_server: {e}")))?;
            let mut server = TlsWebServer { child, port };
            let deadline = Instant::now() + START_TIMEOUT;
            while Instant::now() < deadline {
                if TcpStream::connect(("127.0.0.1", port)).is_ok() {
                    return Ok(server);
                }
                if let Ok(Some(_)) = server.child.try_wait() {
                    break; // the port was taken: try another
                }
                std::thread::sleep(Duration::from_millis(50));
            }
        }
        Err(TestbedError::new(format!(
            "openssl s_server did not accept connections within {START_TIMEOUT:?} on {PORT_ATTEMPTS} ports"
        )))
    }

    /// The port it listens on (127.0.0.1).
    pub fn port(&self) -> u16 {
        self.port
    }
}

impl Drop for TlsWebServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
