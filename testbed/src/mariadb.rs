//! MariaDB for the mysql tests: root's `mysql` client against the machine's server
//! ([`MariaDb::machine`]), and a throwaway server with TLS ([`MariaDbServer`]) for the
//! certificate checks the machine's server (without TLS) cannot show.
//!
//! SQL goes to the client on stdin, so passwords in it never appear in a process list.

use crate::certs::{KeyType, TestCa};
use crate::process::{self, run, run_ok};
use crate::scratch::{self, effective_uid, free_port, shell_quote};
use crate::TestbedError;
use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// Environment variable naming the host of the machine's server (default 127.0.0.1).
pub const MYSQL_HOST_ENV: &str = "REKEY_MYSQL_HOST";
/// Environment variable naming its TCP port (default 3306).
pub const MYSQL_PORT_ENV: &str = "REKEY_MYSQL_PORT";
/// Environment variable naming root's Unix socket, if not the client's default.
pub const MYSQL_SOCKET_ENV: &str = "REKEY_MYSQL_SOCKET";
/// Environment variable naming the `mysql` client command.
pub const MYSQL_CLIENT_ENV: &str = "REKEY_MYSQL_CLIENT";
/// How long one batch of root SQL may take.
const SQL_TIMEOUT: Duration = Duration::from_secs(120);
/// How long `mariadb-install-db`, and then the server's start, may take.
const INSTALL_TIMEOUT: Duration = Duration::from_secs(300);
const START_TIMEOUT: Duration = Duration::from_secs(60);
/// How many ports to try when another process takes the chosen one first.
const PORT_ATTEMPTS: usize = 5;

/// A MariaDB/MySQL server administered as root through the `mysql` client over a Unix
/// socket; the code under test logs in over TCP at [`MariaDb::host`]:[`MariaDb::port`],
/// where passwords are really checked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MariaDb {
    host: String,
    port: u16,
    /// `None`: the client's default socket.
    socket: Option<PathBuf>,
}

impl MariaDb {
    /// The machine's server: `$REKEY_MYSQL_HOST` (127.0.0.1), `$REKEY_MYSQL_PORT`
    /// (3306), root over `$REKEY_MYSQL_SOCKET` (else the client's default socket).
    pub fn machine() -> MariaDb {
        MariaDb {
            host: std::env::var(MYSQL_HOST_ENV).unwrap_or_else(|_| "127.0.0.1".to_owned()),
            port: std::env::var(MYSQL_PORT_ENV)
                .ok()
                .and_then(|p| p.parse().ok())
                .unwrap_or(3306),
            socket: std::env::var_os(MYSQL_SOCKET_ENV).map(PathBuf::from),
        }
    }

    /// Where the code under test connects.
    pub fn host(&self) -> &str {
        &self.host
    }

    /// The TCP port.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// `host:port`, as messages name it.
    pub fn endpoint(&self) -> String {
        format!("{}:{}", self.host, self.port)
    }

    /// Runs `sql` as root; returns the output (tab-separated, no headers, unescaped).
    ///
    /// # Panics
    /// When the client fails; the message has its error and the SQL.
    pub fn root_sql(&self, sql: &str) -> String {
        self.try_root_sql(sql)
            .unwrap_or_else(|e| panic!("root SQL failed: {e}\nSQL: {sql}"))
    }

    /// [`MariaDb::root_sql`] returning the client's error (its stderr).
    pub fn try_root_sql(&self, sql: &str) -> Result<String, TestbedError> {
        let mut cmd = client();
        cmd.args(["-uroot", "--batch", "--skip-column-names", "--raw"]);
        if let Some(socket) = &self.socket {
            cmd.arg(format!("--socket={}", socket.display()));
        }
        client_output(&mut cmd, sql)
    }

    /// Runs `sql` as `user` logged in with `password` over TCP at
    /// [`MariaDb::host`]:[`MariaDb::port`], where the server checks the password (it goes
    /// to the client through its environment, `MYSQL_PWD`, never argv). Returns the
    /// output as [`MariaDb::root_sql`] does, or the client's error (its stderr).
    pub fn try_sql_as(&self, user: &str, password: &str, sql: &str) -> Result<String, TestbedError> {
        let mut cmd = self.client_as(user, password);
        client_output(&mut cmd, sql)
    }

    /// Whether `user` logs in over TCP with `password`: `true` when it does, `false` when
    /// the server refuses it with its own authentication error (1045, access denied).
    ///
    /// # Panics
    /// On any other failure (no server, no client), so that a refusal is never mistaken
    /// for a connection problem.
    pub fn can_login(&self, user: &str, password: &str) -> bool {
        match self.try_sql_as(user, password, "SELECT CURRENT_USER()") {
            Ok(_) => true,
            Err(e) if e.message().contains("1045") => false,
            Err(e) => panic!("logging in as {user} failed for another reason than a refused password: {e}"),
        }
    }

    /// Starts a client logged in as `user` with `password` over TCP that runs `sql` and
    /// exits when it is done (output discarded): an application session that holds a
    /// connection while `sql` runs (e.g. `SELECT SLEEP(60)`). The caller waits for it
    /// in the process list and ends the child.
    pub fn spawn_sql_as(&self, user: &str, password: &str, sql: &str) -> Result<Child, TestbedError> {
        let mut cmd = self.client_as(user, password);
        cmd.stdin(Stdio::piped()).stdout(Stdio::null()).stderr(Stdio::null());
        let mut child = cmd
            .spawn()
            .map_err(|e| TestbedError::new(format!("cannot run {}: {e}", cmd.get_program().to_string_lossy())))?;
        // A few bytes fit in the pipe; closing it ends the input after `sql`.
        if let Some(mut stdin) = child.stdin.take() {
            if let Err(e) = stdin.write_all(format!("{sql}\n").as_bytes()) {
                let _ = child.kill();
                let _ = child.wait();
                return Err(TestbedError::new(format!("cannot send SQL to the client: {e}")));
            }
        }
        Ok(child)
    }

    /// The client logged in as `user` over TCP, the password in its environment.
    fn client_as(&self, user: &str, password: &str) -> Command {
        let mut cmd = client();
        cmd.args(["--protocol=TCP", "--batch", "--skip-column-names", "--raw"])
            .arg(format!("--host={}", self.host))
            .arg(format!("--port={}", self.port))
            .arg(format!("--user={user}"))
            .env("MYSQL_PWD", password);
        cmd
    }
}

/// The `mysql` client command (`$REKEY_MYSQL_CLIENT`, else `mysql`).
fn client() -> Command {
    Command::new(std::env::var(MYSQL_CLIENT_ENV).unwrap_or_else(|_| "mysql".to_owned()))
}

/// Runs the client with `sql` on stdin: its output (trailing whitespace removed), or
/// its error (stderr).
fn client_output(cmd: &mut Command, sql: &str) -> Result<String, TestbedError> {
    let client = cmd.get_program().to_string_lossy().into_owned();
    let out = run(cmd, Some(sql.as_bytes()), SQL_TIMEOUT)
        .map_err(|e| TestbedError::new(format!("{e} (is the MariaDB/MySQL client `{client}` installed?)")))?;
    if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout).trim_end().to_owned())
    } else {
        Err(TestbedError::new(String::from_utf8_lossy(&out.stderr).trim()))
    }
}

/// A throwaway MariaDB server with TLS: a fresh data directory (`mariadb-install-db`),
/// a CA and a server certificate for 127.0.0.1/localhost ([`TestCa`], RSA), a second CA
/// that signed nothing, and `mariadbd` on a free port of 127.0.0.1 (as user `mysql`
/// when the tests run as root). Root logs in without a password over the server's
/// socket ([`MariaDbServer::root_sql`]).
///
/// Dropping it kills the server and removes the directory; a watchdog process does the
/// same if the test process dies first.
#[derive(Debug)]
pub struct MariaDbServer {
    dir: PathBuf,
    db: MariaDb,
    child: Option<Child>,
    /// Server options beyond the testbed's own (`--max-user-connections=1`).
    options: Vec<String>,
}

impl MariaDbServer {
    /// Makes the certificates and the data directory and starts the server.
    pub fn start() -> Result<MariaDbServer, TestbedError> {
        MariaDbServer::start_with(&[])
    }

    /// [`MariaDbServer::start`] with more `mariadbd` options, for settings that cannot
    /// be changed once it runs (a `max_user_connections` started at 0 stays 0).
    pub fn start_with(options: &[&str]) -> Result<MariaDbServer, TestbedError> {
        let as_mysql = effective_uid() == 0;
        // The server runs as `mysql` and must traverse the parent: /tmp always allows that.
        let base = if as_mysql {
            PathBuf::from("/tmp")
        } else {
            std::env::temp_dir()
        };
        let dir = scratch::fresh_dir(&base, "rekey-mariadb", 0o755)?;
        let mut server = MariaDbServer {
            db: MariaDb {
                host: "127.0.0.1".to_owned(),
                port: 0,
                socket: Some(dir.join("sock")),
            },
            dir,
            child: None,
            options: options.iter().map(|o| (*o).to_owned()).collect(),
        };
        // From here on, a failure drops `server`, which kills what was started and
        // removes the directory.
        server.spawn_watchdog()?;
        server.install(as_mysql)?;
        server.start_server(as_mysql)?;
        Ok(server)
    }

    /// `127.0.0.1`.
    pub fn host(&self) -> &str {
        self.db.host()
    }

    /// The TCP port.
    pub fn port(&self) -> u16 {
        self.db.port()
    }

    /// The CA that signed the server certificate.
    pub fn ca(&self) -> PathBuf {
        self.dir.join("ca.pem")
    }

    /// A CA that did not.
    pub fn wrong_ca(&self) -> PathBuf {
        self.dir.join("wrong-ca.pem")
    }

    /// The directory holding the data, the certificates and the server log.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The server's error log so far (empty if unreadable).
    pub fn log(&self) -> String {
        fs::read_to_string(self.dir.join("err.log")).unwrap_or_default()
    }

    /// The server as root's client sees it (over its socket).
    pub fn db(&self) -> &MariaDb {
        &self.db
    }

    /// Runs `sql` as root over the server's socket.
    ///
    /// # Panics
    /// When the client fails; the message has its error and the SQL.
    pub fn root_sql(&self, sql: &str) -> String {
        self.db.root_sql(sql)
    }

    /// [`MariaDbServer::root_sql`] returning the client's error.
    pub fn try_root_sql(&self, sql: &str) -> Result<String, TestbedError> {
        self.db.try_root_sql(sql)
    }

    /// Certificates, then the system tables in `data/`.
    fn install(&self, as_mysql: bool) -> Result<(), TestbedError> {
        let dir = &self.dir;
        // Its own temporary directory: a starting server removes every `#sql*` file in
        // its tmpdir, so two servers bootstrapping at once in /tmp break each other.
        for sub in ["data", "tmp"] {
            fs::create_dir(dir.join(sub))
                .map_err(|e| TestbedError::new(format!("cannot create {}: {e}", dir.join(sub).display())))?;
        }
        // RSA: what every MariaDB TLS library build accepts.
        let ca = TestCa::new(dir, "ca", KeyType::Rsa2048)?;
        TestCa::new(dir, "wrong-ca", KeyType::Rsa2048)?;
        ca.issue_server("server")?;
        if as_mysql {
            run_ok(
                Command::new("chown").args(["-R", "mysql:mysql"]).arg(dir),
                None,
                Duration::from_secs(30),
            )
            .map_err(TestbedError::new)?;
        }
        let mut install = Command::new("mariadb-install-db");
        install
            .arg("--no-defaults")
            .arg(format!("--datadir={}", dir.join("data").display()))
            .arg(format!("--tmpdir={}", dir.join("tmp").display()))
            .args(["--auth-root-authentication-method=normal", "--skip-test-db"]);
        if as_mysql {
            install.arg("--user=mysql");
        }
        run_ok(&mut install, None, INSTALL_TIMEOUT).map_err(TestbedError::new)?;
        Ok(())
    }

    /// Starts `mariadbd` on a free port (another if that one is taken meanwhile) and
    /// waits until root's client gets an answer.
    fn start_server(&mut self, as_mysql: bool) -> Result<(), TestbedError> {
        let mut last_error = String::new();
        for _ in 0..PORT_ATTEMPTS {
            self.db.port = free_port()?;
            let log_before = self.log().len();
            let child = self.spawn_server(as_mysql)?;
            self.child = Some(child);
            let deadline = Instant::now() + START_TIMEOUT;
            loop {
                if self.try_root_sql("SELECT 1").is_ok() {
                    return Ok(());
                }
                let exited = self.child.as_mut().and_then(|c| c.try_wait().ok().flatten());
                if let Some(status) = exited {
                    self.child = None;
                    let log = self.log();
                    let new_lines = log.get(log_before..).unwrap_or(&log).trim().to_owned();
                    if new_lines.contains("Address already in use") {
                        last_error = new_lines;
                        break;
                    }
                    return Err(TestbedError::new(format!(
                        "mariadbd exited ({status}) before answering: {new_lines}"
                    )));
                }
                if Instant::now() >= deadline {
                    return Err(TestbedError::new(format!(
                        "the TLS test server did not start within {}s: {}",
                        START_TIMEOUT.as_secs(),
                        self.log().get(log_before..).unwrap_or_default().trim()
                    )));
                }
                std::thread::sleep(Duration::from_millis(200));
            }
        }
        Err(TestbedError::new(format!(
            "mariadbd found no free port in {PORT_ATTEMPTS} attempts: {last_error}"
        )))
    }

    fn spawn_server(&self, as_mysql: bool) -> Result<Child, TestbedError> {
        let path = |name: &str| self.dir.join(name).display().to_string();
        let mut args = vec![
            "--no-defaults".to_owned(),
            format!("--datadir={}", path("data")),
            format!("--tmpdir={}", path("tmp")),
            format!("--socket={}", path("sock")),
            format!("--port={}", self.db.port),
            "--bind-address=127.0.0.1".to_owned(),
            format!("--pid-file={}", path("pid")),
            format!("--log-error={}", path("err.log")),
            format!("--ssl-ca={}", path("ca.pem")),
            format!("--ssl-cert={}", path("server.pem")),
            format!("--ssl-key={}", path("server.key")),
            "--skip-log-bin".to_owned(),
            "--innodb-buffer-pool-size=16M".to_owned(),
            "--skip-name-resolve".to_owned(),
        ];
        if as_mysql {
            // mariadbd drops to this user itself.
            args.push("--user=mysql".to_owned());
        }
        args.extend(self.options.iter().cloned());
        // mariadbd lives in /usr/sbin, often not on a non-root PATH.
        let mut last = None;
        for program in ["mariadbd", "/usr/sbin/mariadbd"] {
            let mut cmd = Command::new(program);
            cmd.args(&args)
                .current_dir(&self.dir)
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::null());
            // Its own process group: a Ctrl-C aimed at the test run does not reach it
            // before the watchdog or Drop can stop it.
            std::os::unix::process::CommandExt::process_group(&mut cmd, 0);
            match cmd.spawn() {
                Ok(child) => return Ok(child),
                Err(e) => last = Some(e),
            }
        }
        Err(TestbedError::new(format!(
            "cannot run mariadbd (needed for the TLS test server): {}",
            last.map(|e| e.to_string()).unwrap_or_default()
        )))
    }

    /// A watchdog that kills the server (by its pid file, only if that process is still
    /// a server of this directory) and removes the directory if this process exits
    /// without dropping it.
    fn spawn_watchdog(&self) -> Result<(), TestbedError> {
        let pid_file = shell_quote(&self.dir.join("pid").to_string_lossy());
        let dir = shell_quote(&self.dir.to_string_lossy());
        process::spawn_watchdog(
            &self.dir,
            &format!(
                "p=$(cat {pid_file} 2>/dev/null); [ -n \"$p\" ] && grep -qF -- {dir} /proc/$p/cmdline 2>/dev/null \
                 && kill -9 \"$p\"; sleep 1"
            ),
        )
    }
}

impl Drop for MariaDbServer {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
        // Removing the directory also ends the watchdog.
        let _ = fs::remove_dir_all(&self.dir);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The machine's server: a user logs in with its password, not with another; a
    /// spawned session shows in the process list; a server that is not there is not a
    /// refusal.
    #[test]
    fn logins_as_a_user_on_the_machine_server() {
        let db = MariaDb::machine();
        let user = format!("tb_login_{}", std::process::id());
        let drop_user = format!("DROP USER IF EXISTS '{user}'@'%'");
        db.root_sql(&format!(
            "{drop_user}; CREATE USER '{user}'@'%' IDENTIFIED BY 'tb-pass'"
        ));
        let result = std::panic::catch_unwind(|| {
            assert_eq!(
                db.try_sql_as(&user, "tb-pass", "SELECT CURRENT_USER()").unwrap(),
                format!("{user}@%")
            );
            assert!(db.can_login(&user, "tb-pass"));
            assert!(!db.can_login(&user, "not-the-password"));

            let mut session = db.spawn_sql_as(&user, "tb-pass", "SELECT SLEEP(30)").unwrap();
            let count = format!("SELECT COUNT(*) FROM information_schema.PROCESSLIST WHERE USER = '{user}'");
            let deadline = Instant::now() + Duration::from_secs(20);
            while db.root_sql(&count) == "0" {
                assert!(Instant::now() < deadline, "the session never appeared");
                std::thread::sleep(Duration::from_millis(50));
            }
            let _ = session.kill();
            let _ = session.wait();

            let nowhere = MariaDb {
                port: free_port().unwrap(),
                ..db.clone()
            };
            let panicked = std::panic::catch_unwind(|| nowhere.can_login(&user, "tb-pass")).unwrap_err();
            let message = panicked.downcast_ref::<String>().cloned().unwrap_or_default();
            assert!(message.contains("another reason than a refused password"), "{message}");
        });
        db.root_sql(&drop_user);
        if let Err(panic) = result {
            std::panic::resume_unwind(panic);
        }
    }
}
