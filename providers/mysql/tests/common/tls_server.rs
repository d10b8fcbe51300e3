//! A throwaway MariaDB server with TLS, for the certificate checks the machine's server
//! (without TLS) cannot show: a fresh data directory (`mariadb-install-db`), a CA and a
//! server certificate for 127.0.0.1/localhost made with `openssl` (rekey-testbed's `TestCa`), `mariadbd` on a free
//! port. Dropping it stops the server and removes the directory; a watchdog does the same
//! if the test process dies first.

use rekey_testbed::{KeyType, TestCa};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A running throwaway server.
pub struct TlsServer {
    dir: PathBuf,
    port: u16,
    child: Child,
    watchdog: Option<Child>,
}

fn run(cmd: &mut Command, what: &str) {
    let out = cmd
        .output()
        .unwrap_or_else(|e| panic!("{what}: cannot run {:?}: {e}", cmd.get_program()));
    assert!(
        out.status.success(),
        "{what} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
        .unwrap_or(false)
}

impl TlsServer {
    /// Starts the server; panics with the reason when it cannot.
    pub fn start() -> TlsServer {
        let dir = std::env::temp_dir().join(rekey_api::conformance::unique_name("rekey_mysql_tls"));
        std::fs::create_dir_all(dir.join("data")).unwrap();
        // Its own temporary directory: a starting server removes every `#sql*` file in
        // its tmpdir, so two servers bootstrapping at once in /tmp break each other.
        std::fs::create_dir_all(dir.join("tmp")).unwrap();
        // The server runs as `mysql` and must reach its files.
        run(Command::new("chmod").arg("755").arg(&dir), "chmod");
        // RSA: what every MariaDB TLS library build accepts.
        let ca = TestCa::new(&dir, "ca", KeyType::Rsa2048).unwrap();
        TestCa::new(&dir, "wrong-ca", KeyType::Rsa2048).unwrap();
        ca.issue_server("server").unwrap();
        let root = is_root();
        if root {
            run(Command::new("chown").args(["-R", "mysql:mysql"]).arg(&dir), "chown");
        }
        let mut install = Command::new("mariadb-install-db");
        install
            .arg("--no-defaults")
            .arg(format!("--datadir={}", dir.join("data").display()))
            .arg(format!("--tmpdir={}", dir.join("tmp").display()))
            .args(["--auth-root-authentication-method=normal", "--skip-test-db"]);
        if root {
            install.arg("--user=mysql");
        }
        run(&mut install, "mariadb-install-db");

        let port = super::closed_port();
        let path = |name: &str| dir.join(name).display().to_string();
        let mut server = Command::new("mariadbd");
        server
            .arg("--no-defaults")
            .arg(format!("--datadir={}", path("data")))
            .arg(format!("--tmpdir={}", path("tmp")))
            .arg(format!("--socket={}", path("sock")))
            .arg(format!("--port={port}"))
            .arg("--bind-address=127.0.0.1")
            .arg(format!("--pid-file={}", path("pid")))
            .arg(format!("--log-error={}", path("err.log")))
            .arg(format!("--ssl-ca={}", path("ca.pem")))
            .arg(format!("--ssl-cert={}", path("server.pem")))
            .arg(format!("--ssl-key={}", path("server.key")))
            .args(["--skip-log-bin", "--innodb-buffer-pool-size=16M", "--skip-name-resolve"])
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        if root {
            // mariadbd drops to this user itself.
            server.arg("--user=mysql");
        }
        // mariadbd lives in /usr/sbin, often not on a non-root PATH.
        let child = server
            .spawn()
            .or_else(|_| {
                let mut again = Command::new("/usr/sbin/mariadbd");
                again
                    .args(server.get_args())
                    .stdout(Stdio::null())
                    .stderr(Stdio::null());
                again.spawn()
            })
            .expect("mariadbd starts");
        // Watchdog: if this process dies without dropping the server, stop it (only if
        // that pid is still this server) and remove the directory. Drop ends it.
        let watchdog = Command::new("sh")
            .arg("-c")
            .arg(format!(
                "while kill -0 {me} 2>/dev/null; do sleep 1; done; \
                 grep -q '{dir}' /proc/{server}/cmdline 2>/dev/null && kill {server}; sleep 3; rm -rf '{dir}'",
                me = std::process::id(),
                server = child.id(),
                dir = dir.display()
            ))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .ok();
        let server = TlsServer {
            dir,
            port,
            child,
            watchdog,
        };
        let deadline = Instant::now() + Duration::from_secs(60);
        while server.try_root_sql("SELECT 1").is_err() {
            assert!(
                Instant::now() < deadline,
                "the TLS test server did not start: {}",
                std::fs::read_to_string(server.dir.join("err.log")).unwrap_or_default()
            );
            std::thread::sleep(Duration::from_millis(200));
        }
        server
    }

    /// The TCP port.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The CA that signed the server certificate.
    pub fn ca(&self) -> PathBuf {
        self.dir.join("ca.pem")
    }

    /// A CA that did not.
    pub fn wrong_ca(&self) -> PathBuf {
        self.dir.join("wrong-ca.pem")
    }

    /// Runs `sql` as root over the server's socket.
    pub fn root_sql(&self, sql: &str) -> String {
        self.try_root_sql(sql)
            .unwrap_or_else(|e| panic!("root SQL failed: {e}\nSQL: {sql}"))
    }

    fn try_root_sql(&self, sql: &str) -> Result<String, String> {
        let out = Command::new(std::env::var("REKEY_MYSQL_CLIENT").unwrap_or_else(|_| "mysql".to_owned()))
            .arg(format!("--socket={}", self.dir.join("sock").display()))
            .args(["-uroot", "--batch", "--skip-column-names", "-e", sql])
            .output()
            .map_err(|e| e.to_string())?;
        if out.status.success() {
            Ok(String::from_utf8_lossy(&out.stdout).trim_end().to_owned())
        } else {
            Err(String::from_utf8_lossy(&out.stderr).trim().to_owned())
        }
    }
}

impl Drop for TlsServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        if let Some(mut watchdog) = self.watchdog.take() {
            let _ = watchdog.kill();
            let _ = watchdog.wait();
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
