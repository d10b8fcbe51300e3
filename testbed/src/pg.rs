//! A throwaway PostgreSQL cluster with password (SCRAM-SHA-256) authentication enforced
//! on TCP, started from the server binaries installed on the machine.

use crate::process::{self, run, run_ok};
use crate::scratch::{effective_uid, free_port, fresh_dir, lookup_user, shell_quote};
use crate::TestbedError;
use std::fmt;
use std::fs;
use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;
use std::time::Duration;

/// How long `initdb`, `pg_ctl start` and similar steps may take.
const SLOW_STEP: Duration = Duration::from_secs(120);
/// How long one `psql` call may take.
const PSQL_TIMEOUT: Duration = Duration::from_secs(60);
/// How many ports to try when another process takes the chosen one first.
const PORT_ATTEMPTS: usize = 8;
/// File, inside a cluster directory, holding the shell exports of a persistent cluster.
pub const ENV_FILE: &str = "rekey-testbed.env";
/// Environment variable naming a directory of PostgreSQL server binaries to use.
pub const BIN_ENV: &str = "REKEY_PG_BIN";

/// Environment variables that would redirect libpq tools away from our cluster.
const PG_ENV: &[&str] = &[
    "PGHOST",
    "PGHOSTADDR",
    "PGPORT",
    "PGUSER",
    "PGPASSWORD",
    "PGPASSFILE",
    "PGDATABASE",
    "PGOPTIONS",
    "PGSERVICE",
    "PGSERVICEFILE",
    "PGSSLMODE",
    "PGDATA",
    "PGCONNECT_TIMEOUT",
];

/// How to start a [`PgCluster`].
#[derive(Debug, Clone)]
pub struct PgOptions {
    log_statement_all: bool,
    tls: bool,
    persistent_dir: Option<PathBuf>,
    settings: Vec<(String, String)>,
}

impl Default for PgOptions {
    fn default() -> Self {
        PgOptions::new()
    }
}

impl PgOptions {
    /// A throwaway cluster in a fresh temporary directory, removed on drop.
    pub fn new() -> Self {
        PgOptions {
            log_statement_all: false,
            tls: false,
            persistent_dir: None,
            settings: Vec::new(),
        }
    }

    /// Logs every statement (`log_statement = 'all'`) to [`PgCluster::log_path`].
    pub fn log_statement_all(mut self, on: bool) -> Self {
        self.log_statement_all = on;
        self
    }

    /// Enables TLS with a certificate for `127.0.0.1` and `localhost` signed by a fresh
    /// test CA ([`PgCluster::tls_root_cert`]); needs the `openssl` command.
    pub fn tls(mut self, on: bool) -> Self {
        self.tls = on;
        self
    }

    /// Uses `dir` (created if missing, must be empty otherwise) and keeps the cluster
    /// running after the [`PgCluster`] is dropped: stop it with [`PgCluster::stop_dir`].
    pub fn persistent_dir(mut self, dir: impl Into<PathBuf>) -> Self {
        self.persistent_dir = Some(dir.into());
        self
    }

    /// Adds a `postgresql.conf` setting; `value` is written as it is (quote strings).
    pub fn setting(mut self, name: impl Into<String>, value: impl Into<String>) -> Self {
        self.settings.push((name.into(), value.into()));
        self
    }
}

/// Where the server binaries are and as whom to run them.
#[derive(Clone)]
struct Tools {
    /// Directory holding `initdb`, `pg_ctl` and `postgres`; `None` means "from PATH".
    bin: Option<PathBuf>,
    /// `Some((uid, gid))` of the `postgres` user when running as root: the server
    /// refuses to run as root, so every tool runs through `runuser -u postgres --`.
    as_postgres: Option<(u32, u32)>,
}

impl Tools {
    fn find() -> Result<Tools, TestbedError> {
        // The owner of /proc/self is the effective uid.
        let euid = effective_uid();
        let as_postgres = if euid == 0 {
            Some(lookup_user("postgres").ok_or_else(|| {
                TestbedError::new("running as root but there is no `postgres` user to run the server as")
            })?)
        } else {
            None
        };
        Ok(Tools {
            bin: find_bin_dir(),
            as_postgres,
        })
    }

    fn path(&self, tool: &str) -> PathBuf {
        match &self.bin {
            Some(dir) if dir.join(tool).exists() => dir.join(tool),
            _ => PathBuf::from(tool),
        }
    }

    /// A command running `tool` (a server binary) as the cluster's owner, in `cwd`.
    fn cmd(&self, tool: &str, cwd: &Path) -> Command {
        self.cmd_program(&self.path(tool), cwd)
    }

    fn cmd_program(&self, program: &Path, cwd: &Path) -> Command {
        let mut cmd = if self.as_postgres.is_some() {
            let mut c = Command::new("runuser");
            c.arg("-u").arg("postgres").arg("--").arg(program);
            c
        } else {
            Command::new(program)
        };
        cmd.current_dir(cwd).env("LC_ALL", "C").env("LANG", "C");
        for var in PG_ENV {
            cmd.env_remove(var);
        }
        cmd
    }

    /// Gives `path` to the cluster's owner when running as root.
    fn chown(&self, path: &Path) -> Result<(), TestbedError> {
        if let Some((uid, gid)) = self.as_postgres {
            std::os::unix::fs::chown(path, Some(uid), Some(gid))
                .map_err(|e| TestbedError::new(format!("chown {}: {e}", path.display())))?;
        }
        Ok(())
    }

    /// Fails clearly when the `postgres` user could not traverse an ancestor of `dir`
    /// (such as a `mktemp -d` directory of mode 0700 owned by root).
    fn check_reachable(&self, dir: &Path) -> Result<(), TestbedError> {
        use std::os::unix::fs::MetadataExt;
        let Some((uid, gid)) = self.as_postgres else {
            return Ok(());
        };
        for ancestor in dir.ancestors().skip(1) {
            let Ok(meta) = fs::metadata(ancestor) else { continue };
            let mode = meta.mode();
            let allowed = if meta.uid() == uid {
                mode & 0o100 != 0
            } else if meta.gid() == gid {
                mode & 0o010 != 0
            } else {
                mode & 0o001 != 0
            };
            if !allowed {
                return Err(TestbedError::new(format!(
                    "the server runs as user `postgres`, which cannot enter {} (mode {:o}): \
                     `chmod o+x` it or use a directory under /tmp",
                    ancestor.display(),
                    mode & 0o7777
                )));
            }
        }
        Ok(())
    }

    /// A shell-quoted command prefix for scripts (`runuser -u postgres -- '/.../pg_ctl'`).
    fn shell_prefix(&self, tool: &str) -> String {
        let program = shell_quote(&self.path(tool).to_string_lossy());
        if self.as_postgres.is_some() {
            format!("runuser -u postgres -- {program}")
        } else {
            program
        }
    }
}

/// `$REKEY_PG_BIN`, else the newest `/usr/lib/postgresql/<major>/bin` holding `initdb`,
/// else `None` (the tools are looked up on PATH, e.g. `/usr/local/bin/initdb`).
fn find_bin_dir() -> Option<PathBuf> {
    if let Some(dir) = std::env::var_os(BIN_ENV) {
        return Some(PathBuf::from(dir));
    }
    let mut best: Option<(u32, PathBuf)> = None;
    for entry in fs::read_dir("/usr/lib/postgresql").ok()?.flatten() {
        let Some(major) = entry.file_name().to_str().and_then(|n| n.parse::<u32>().ok()) else {
            continue;
        };
        let bin = entry.path().join("bin");
        if bin.join("initdb").exists() && best.as_ref().is_none_or(|(m, _)| major > *m) {
            best = Some((major, bin));
        }
    }
    best.map(|(_, bin)| bin)
}

/// Quotes an SQL identifier: `"` around it, inner `"` doubled.
pub fn quote_ident(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

/// Quotes an SQL string literal: `'` around it, inner `'` doubled (the server's
/// `standard_conforming_strings` is on, so backslashes are literal).
pub fn quote_literal(value: &str) -> String {
    format!("'{}'", value.replace('\'', "''"))
}

fn random_password() -> String {
    use rand::distributions::Alphanumeric;
    use rand::Rng;
    rand::thread_rng()
        .sample_iter(&Alphanumeric)
        .take(32)
        .map(char::from)
        .collect()
}

fn fresh_temp_dir(as_postgres: bool) -> Result<PathBuf, TestbedError> {
    // When the server runs as `postgres`, it must traverse the parent: /tmp always allows
    // that, a private $TMPDIR may not.
    let base = if as_postgres {
        PathBuf::from("/tmp")
    } else {
        std::env::temp_dir()
    };
    fresh_dir(&base, "rekey-pg", 0o755)
}

/// A running PostgreSQL cluster of its own: `initdb` in a temporary directory, TCP on
/// `127.0.0.1` with SCRAM-SHA-256 password authentication enforced, a unix socket in
/// the same directory where the superuser `postgres` is trusted (for test setup with
/// [`PgCluster::psql`]), and a random superuser password for TCP logins
/// ([`PgCluster::admin_url`]).
///
/// Dropping it stops the server (`pg_ctl stop -m immediate`) and removes the directory.
/// A watchdog process does the same if the test process dies first, so even the
/// never-dropped [`PgCluster::shared`] instance is cleaned up.
pub struct PgCluster {
    dir: PathBuf,
    port: u16,
    password: String,
    tools: Tools,
    tls_root_cert: Option<PathBuf>,
    persistent: bool,
}

impl fmt::Debug for PgCluster {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PgCluster")
            .field("dir", &self.dir)
            .field("port", &self.port)
            .field("password", &"****")
            .field("tls", &self.tls_root_cert.is_some())
            .field("persistent", &self.persistent)
            .finish()
    }
}

impl PgCluster {
    /// Starts a throwaway cluster with default options.
    pub fn start() -> Result<PgCluster, TestbedError> {
        PgCluster::start_with(PgOptions::new())
    }

    /// Starts a cluster with `options`.
    pub fn start_with(options: PgOptions) -> Result<PgCluster, TestbedError> {
        let tools = Tools::find()?;
        let persistent = options.persistent_dir.is_some();
        let dir = match &options.persistent_dir {
            Some(dir) => prepare_persistent_dir(dir)?,
            None => fresh_temp_dir(tools.as_postgres.is_some())?,
        };
        tools.check_reachable(&dir)?;
        let mut cluster = PgCluster {
            dir,
            port: 0,
            password: random_password(),
            tools,
            tls_root_cert: None,
            persistent,
        };
        // From here on, a failure drops `cluster`, which stops and removes what exists
        // (a persistent directory is only stopped, not removed).
        cluster.tools.chown(&cluster.dir)?;
        if !persistent {
            cluster.spawn_watchdog()?;
        }
        cluster.init(&options)?;
        cluster.start_server(&options)?;
        cluster.set_superuser_password()?;
        if persistent {
            cluster.write_env_file()?;
        }
        Ok(cluster)
    }

    /// One cluster shared by every test of the current test binary (started on first
    /// use). Tests sharing it must use unique role and database names.
    ///
    /// # Panics
    /// When the cluster cannot be started.
    pub fn shared() -> &'static PgCluster {
        static SHARED: OnceLock<PgCluster> = OnceLock::new();
        SHARED.get_or_init(|| PgCluster::start().unwrap_or_else(|e| panic!("cannot start the test cluster: {e}")))
    }

    /// The directory holding the data directory, the socket and the log.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The data directory (`PGDATA`).
    pub fn data_dir(&self) -> PathBuf {
        self.dir.join("data")
    }

    /// The TCP port on `127.0.0.1`.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The TCP host: `127.0.0.1`.
    pub fn host(&self) -> &'static str {
        "127.0.0.1"
    }

    /// The unix socket directory (where `postgres` is trusted).
    pub fn socket_dir(&self) -> &Path {
        &self.dir
    }

    /// The superuser's password (a random value, for TCP logins).
    pub fn admin_password(&self) -> &str {
        &self.password
    }

    /// `postgres://postgres:PW@127.0.0.1:PORT/postgres`: the superuser over TCP, with
    /// SCRAM authentication.
    pub fn admin_url(&self) -> String {
        format!(
            "postgres://postgres:{}@{}:{}/postgres",
            self.password,
            self.host(),
            self.port
        )
    }

    /// The server log file (everything the server wrote, statements too with
    /// [`PgOptions::log_statement_all`]).
    pub fn log_path(&self) -> PathBuf {
        self.dir.join("postgres.log")
    }

    /// The server log so far (empty if unreadable).
    pub fn log_contents(&self) -> String {
        fs::read(self.log_path())
            .map(|b| String::from_utf8_lossy(&b).into_owned())
            .unwrap_or_default()
    }

    /// The CA certificate that signed the server's certificate, when started with
    /// [`PgOptions::tls`].
    pub fn tls_root_cert(&self) -> Option<&Path> {
        self.tls_root_cert.as_deref()
    }

    /// Runs SQL in database `postgres` over the unix socket as superuser `postgres`
    /// (`psql -At`, stop on the first error) and returns its output, trimmed.
    ///
    /// # Panics
    /// When psql fails; the message carries its stderr.
    pub fn psql(&self, sql: &str) -> String {
        self.try_psql_db("postgres", sql).unwrap_or_else(|e| panic!("{e}"))
    }

    /// [`PgCluster::psql`] in database `dbname`.
    ///
    /// # Panics
    /// When psql fails; the message carries its stderr.
    pub fn psql_db(&self, dbname: &str, sql: &str) -> String {
        self.try_psql_db(dbname, sql).unwrap_or_else(|e| panic!("{e}"))
    }

    /// [`PgCluster::psql`] returning psql's error instead of panicking.
    pub fn try_psql(&self, sql: &str) -> Result<String, TestbedError> {
        self.try_psql_db("postgres", sql)
    }

    /// [`PgCluster::psql_db`] returning psql's error instead of panicking.
    pub fn try_psql_db(&self, dbname: &str, sql: &str) -> Result<String, TestbedError> {
        let mut cmd = self.tools.cmd("psql", &self.dir);
        cmd.args(["-X", "-q", "-A", "-t", "-v", "ON_ERROR_STOP=1", "-h"])
            .arg(&self.dir)
            .arg("-p")
            .arg(self.port.to_string())
            .args(["-U", "postgres", "-d", dbname, "-f", "-"]);
        let out = run_ok(&mut cmd, Some(sql.as_bytes()), PSQL_TIMEOUT)
            .map_err(|e| TestbedError::new(format!("psql on port {}: {e}", self.port)))?;
        Ok(String::from_utf8_lossy(&out.stdout).trim().to_owned())
    }

    /// Creates a login role with a password (sent in plain text to the server, which
    /// stores its SCRAM verifier: fine for test setup).
    ///
    /// # Panics
    /// When the role cannot be created.
    pub fn create_role(&self, name: &str, password: &str) {
        self.create_role_with(name, password, "")
    }

    /// [`PgCluster::create_role`] with extra role options, such as `CREATEROLE` or
    /// `SUPERUSER` (inserted as SQL).
    ///
    /// # Panics
    /// When the role cannot be created.
    pub fn create_role_with(&self, name: &str, password: &str, options: &str) {
        self.psql(&format!(
            "SET log_statement = 'none';\nCREATE ROLE {} LOGIN PASSWORD {} {options};",
            quote_ident(name),
            quote_literal(password)
        ));
    }

    /// Ends the role's sessions and drops it if it exists.
    ///
    /// # Panics
    /// When the role exists and cannot be dropped.
    pub fn drop_role(&self, name: &str) {
        self.psql(&format!(
            "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity WHERE usename = {lit};\n\
             DROP ROLE IF EXISTS {ident};",
            lit = quote_literal(name),
            ident = quote_ident(name)
        ));
    }

    /// Creates a database.
    ///
    /// # Panics
    /// When it cannot be created.
    pub fn create_database(&self, name: &str) {
        self.psql(&format!("CREATE DATABASE {};", quote_ident(name)));
    }

    /// Drops a database if it exists, ending its sessions.
    ///
    /// # Panics
    /// When it exists and cannot be dropped.
    pub fn drop_database(&self, name: &str) {
        self.psql(&format!("DROP DATABASE IF EXISTS {} WITH (FORCE);", quote_ident(name)));
    }

    /// The server's `server_version_num` (such as 150020).
    pub fn server_version_num(&self) -> u32 {
        self.psql("SHOW server_version_num")
            .parse()
            .expect("server_version_num is a number")
    }

    /// Stops a persistent cluster started in `dir` (see [`PgOptions::persistent_dir`])
    /// and removes the directory. Refuses directories that rekey-testbed did not create.
    pub fn stop_dir(dir: &Path) -> Result<(), TestbedError> {
        if !dir.join(ENV_FILE).exists() {
            return Err(TestbedError::new(format!(
                "{} holds no rekey-testbed cluster (no {ENV_FILE}); not touching it",
                dir.display()
            )));
        }
        let tools = Tools::find()?;
        stop_server(&tools, dir, "fast");
        fs::remove_dir_all(dir).map_err(|e| TestbedError::new(format!("cannot remove {}: {e}", dir.display())))
    }

    /// The shell `export` lines describing this cluster (`PGHOST`, `PGPORT`,
    /// `REKEY_PG_ADMIN_URL`, `REKEY_PG_DIR`, `REKEY_PG_LOG`).
    pub fn exports(&self) -> String {
        let mut s = String::new();
        for (k, v) in [
            ("PGHOST", self.host().to_owned()),
            ("PGPORT", self.port.to_string()),
            ("REKEY_PG_ADMIN_URL", self.admin_url()),
            ("REKEY_PG_DIR", self.dir.display().to_string()),
            ("REKEY_PG_LOG", self.log_path().display().to_string()),
        ] {
            s.push_str(&format!("export {k}={}\n", shell_quote(&v)));
        }
        s
    }

    fn init(&mut self, options: &PgOptions) -> Result<(), TestbedError> {
        let data = self.data_dir();
        let mut cmd = self.tools.cmd("initdb", &self.dir);
        cmd.arg("-D")
            .arg(&data)
            .args(["-U", "postgres", "--auth-local=trust", "--auth-host=scram-sha-256"])
            .args(["-E", "UTF8", "--locale=C", "--no-sync"]);
        run_ok(&mut cmd, None, SLOW_STEP).map_err(TestbedError::new)?;
        if options.tls {
            self.make_certificates()?;
        }
        let conf = data.join("postgresql.conf");
        let mut text =
            fs::read_to_string(&conf).map_err(|e| TestbedError::new(format!("cannot read {}: {e}", conf.display())))?;
        text.push_str("\n# Added by rekey-testbed\ninclude 'rekey-testbed.conf'\n");
        fs::write(&conf, text).map_err(|e| TestbedError::new(format!("cannot write {}: {e}", conf.display())))?;
        Ok(())
    }

    fn write_settings(&self, options: &PgOptions) -> Result<(), TestbedError> {
        let mut settings: Vec<(String, String)> = vec![
            ("listen_addresses".into(), "'127.0.0.1'".into()),
            ("port".into(), self.port.to_string()),
            (
                "unix_socket_directories".into(),
                quote_literal(&self.dir.to_string_lossy()),
            ),
            ("password_encryption".into(), "'scram-sha-256'".into()),
            ("logging_collector".into(), "off".into()),
            ("fsync".into(), "off".into()),
            ("synchronous_commit".into(), "off".into()),
            ("full_page_writes".into(), "off".into()),
            ("max_connections".into(), "200".into()),
            ("shared_buffers".into(), "32MB".into()),
        ];
        if options.log_statement_all {
            settings.push(("log_statement".into(), "'all'".into()));
        }
        if options.tls {
            settings.push(("ssl".into(), "on".into()));
            settings.push((
                "ssl_cert_file".into(),
                quote_literal(&self.dir.join("server.crt").to_string_lossy()),
            ));
            settings.push((
                "ssl_key_file".into(),
                quote_literal(&self.dir.join("server.key").to_string_lossy()),
            ));
        }
        settings.extend(options.settings.iter().cloned());
        let text: String = settings.iter().map(|(k, v)| format!("{k} = {v}\n")).collect();
        let path = self.data_dir().join("rekey-testbed.conf");
        fs::write(&path, text).map_err(|e| TestbedError::new(format!("cannot write {}: {e}", path.display())))?;
        self.tools.chown(&path)
    }

    fn start_server(&mut self, options: &PgOptions) -> Result<(), TestbedError> {
        let mut last_error = String::new();
        for _ in 0..PORT_ATTEMPTS {
            self.port = free_port()?;
            self.write_settings(options)?;
            let log_before = self.log_contents().len();
            let mut cmd = self.tools.cmd("pg_ctl", &self.dir);
            cmd.arg("-D")
                .arg(self.data_dir())
                .arg("-l")
                .arg(self.log_path())
                .args(["-w", "-t", "60", "start"]);
            match run_ok(&mut cmd, None, SLOW_STEP) {
                Ok(_) => return Ok(()),
                Err(e) => {
                    let log = self.log_contents();
                    let new_log = log.get(log_before..).unwrap_or(&log);
                    last_error = format!("{e}; server log: {}", new_log.trim());
                    // Someone took the port between our probe and the server's bind: retry.
                    if new_log.contains("could not bind") || new_log.contains("already in use") {
                        stop_server(&self.tools, &self.dir, "immediate");
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

    fn set_superuser_password(&self) -> Result<(), TestbedError> {
        // Keep the superuser's own password out of a statement log.
        self.try_psql(&format!(
            "SET log_statement = 'none';\nALTER ROLE postgres PASSWORD {};",
            quote_literal(&self.password)
        ))
        .map(drop)
    }

    fn make_certificates(&mut self) -> Result<(), TestbedError> {
        let ca = crate::certs::TestCa::new(&self.dir, "ca", crate::certs::KeyType::EcP256)?;
        let server = ca.issue_server("server")?;
        // The names the server configuration uses; the server (the postgres user when run
        // as root) must own its key, 0600.
        for (from, to) in [(&server.cert, "server.crt"), (&server.key, "server.key")] {
            let to = self.dir.join(to);
            fs::rename(from, &to).map_err(|e| TestbedError::new(format!("cannot rename {}: {e}", from.display())))?;
            self.tools.chown(&to)?;
        }
        let key = self.dir.join("server.key");
        fs::set_permissions(&key, fs::Permissions::from_mode(0o600))
            .map_err(|e| TestbedError::new(format!("chmod {}: {e}", key.display())))?;
        self.tls_root_cert = Some(ca.cert());
        Ok(())
    }

    fn write_env_file(&self) -> Result<(), TestbedError> {
        let path = self.dir.join(ENV_FILE);
        fs::write(&path, self.exports())
            .and_then(|()| fs::set_permissions(&path, fs::Permissions::from_mode(0o600)))
            .map_err(|e| TestbedError::new(format!("cannot write {}: {e}", path.display())))
    }

    /// A watchdog that stops the server and removes the directory if this process exits
    /// without dropping the cluster.
    fn spawn_watchdog(&self) -> Result<(), TestbedError> {
        let data = shell_quote(&self.data_dir().to_string_lossy());
        let pg_ctl = self.tools.shell_prefix("pg_ctl");
        process::spawn_watchdog(&self.dir, &format!("{pg_ctl} -D {data} stop -m immediate -w -t 30"))
    }
}

fn prepare_persistent_dir(dir: &Path) -> Result<PathBuf, TestbedError> {
    if dir.exists() {
        let mut entries = fs::read_dir(dir).map_err(|e| TestbedError::new(format!("{}: {e}", dir.display())))?;
        if entries.next().is_some() {
            return Err(TestbedError::new(format!(
                "{} is not empty (stop a cluster there with `rekey-testbed pg-stop --dir {}`)",
                dir.display(),
                dir.display()
            )));
        }
        fs::set_permissions(dir, fs::Permissions::from_mode(0o755))
            .map_err(|e| TestbedError::new(format!("chmod {}: {e}", dir.display())))?;
    } else {
        fs::DirBuilder::new()
            .recursive(true)
            .mode(0o755)
            .create(dir)
            .map_err(|e| TestbedError::new(format!("cannot create {}: {e}", dir.display())))?;
    }
    // The socket path must be absolute, and short enough for a unix socket (107 bytes).
    let dir = fs::canonicalize(dir).map_err(|e| TestbedError::new(format!("{}: {e}", dir.display())))?;
    if dir.as_os_str().len() > 80 {
        return Err(TestbedError::new(format!(
            "{} is too long a path for a unix socket directory",
            dir.display()
        )));
    }
    Ok(dir)
}

/// Best-effort `pg_ctl stop` (its failure is only reported by the server staying up).
fn stop_server(tools: &Tools, dir: &Path, mode: &str) {
    let data = dir.join("data");
    if !data.join("postmaster.pid").exists() {
        return;
    }
    let mut cmd = tools.cmd("pg_ctl", dir);
    cmd.arg("-D").arg(&data).args(["stop", "-m", mode, "-w", "-t", "30"]);
    let _ = run(&mut cmd, None, Duration::from_secs(40));
}

impl Drop for PgCluster {
    fn drop(&mut self) {
        if self.persistent {
            // Only a failed start drops a persistent cluster early: stop what was started,
            // keep the directory for inspection.
            if !self.dir.join(ENV_FILE).exists() {
                stop_server(&self.tools, &self.dir, "immediate");
            }
            return;
        }
        stop_server(&self.tools, &self.dir, "immediate");
        let _ = fs::remove_dir_all(&self.dir);
    }
}
