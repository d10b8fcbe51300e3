//! Test workspace: a temp directory with a config, a store file, and roles on the
//! shared cluster that are dropped at the end.

use rekey_testbed::PgCluster;
use std::io::{BufRead, BufReader, Write};
use std::path::PathBuf;
use std::process::{Child, Command, Output, Stdio};
use std::sync::mpsc;
use std::time::Duration;

/// The environment variable the configs use for the admin URL (kept out of argv).
pub const ADMIN_ENV: &str = "REKEY_TEST_ADMIN_URL";

pub struct Workspace {
    pub dir: tempfile::TempDir,
    pub pg: &'static PgCluster,
    roles: Vec<String>,
}

pub fn random_password() -> String {
    rekey_api::conformance::random_password(24).expose().to_owned()
}

pub fn unique(prefix: &str) -> String {
    rekey_api::conformance::unique_name(prefix)
}

impl Workspace {
    pub fn new() -> Workspace {
        Workspace::on(PgCluster::shared())
    }

    pub fn on(pg: &'static PgCluster) -> Workspace {
        Workspace {
            dir: tempfile::tempdir().expect("tempdir"),
            pg,
            roles: Vec::new(),
        }
    }

    /// A login role with a random password, dropped when the workspace is.
    pub fn role(&mut self, prefix: &str) -> (String, String) {
        let name = unique(prefix);
        let password = random_password();
        self.pg.create_role(&name, &password);
        self.roles.push(name.clone());
        (name, password)
    }

    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    pub fn config_path(&self) -> PathBuf {
        self.path("rekey.toml")
    }

    /// The credential table for a role on the test cluster.
    pub fn credential(&self, name: &str, role: &str) -> String {
        format!(
            "[[credentials]]\nname = \"{name}\"\nstore = \"local\"\nkey = \"app/{name}\"\ntags = [\"test\"]\n\
             target = {{ type = \"postgres\", host = \"127.0.0.1\", port = {port}, dbname = \"postgres\", \
             username = \"{role}\", admin = \"${{{ADMIN_ENV}}}\", sslmode = \"disable\" }}\n",
            port = self.pg.port(),
            role = role.replace('\\', "\\\\").replace('"', "\\\"")
        )
    }

    /// Writes rekey.toml with the default header and these credential tables.
    pub fn write_config(&self, credentials: &[String]) {
        let mut text = String::from(
            "[defaults]\naudit_log = \"audit.jsonl\"\nparallel = 4\n\n[stores.local]\ntype = \"file\"\npath = \"secrets.json\"\n\n",
        );
        for c in credentials {
            text.push_str(c);
            text.push('\n');
        }
        std::fs::write(self.config_path(), text).expect("write config");
    }

    pub fn write_raw_config(&self, text: &str) {
        std::fs::write(self.config_path(), text).expect("write config");
    }

    pub fn command(&self) -> Command {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_rekey"));
        cmd.current_dir(self.dir.path())
            .env_remove("REKEY_CONFIG")
            .env_remove("RUST_LOG")
            .env_remove("REKEY_FAILPOINT")
            .env("NO_COLOR", "1")
            .env(ADMIN_ENV, self.pg.admin_url())
            .arg("-c")
            .arg(self.config_path());
        cmd
    }

    /// Runs rekey with `args` and empty stdin.
    pub fn rekey(&self, args: &[&str]) -> Run {
        self.rekey_stdin(args, "")
    }

    /// Runs rekey with `args`, feeding `stdin`.
    pub fn rekey_stdin(&self, args: &[&str], stdin: &str) -> Run {
        let mut cmd = self.command();
        cmd.args(args);
        run(cmd, stdin)
    }

    /// Imports a credential's current password.
    pub fn import(&self, name: &str, password: &str) {
        let r = self.rekey_stdin(&["import", name], password);
        r.assert_code(0);
    }

    pub fn store_bytes(&self) -> Vec<u8> {
        std::fs::read(self.path("secrets.json")).unwrap_or_default()
    }

    pub fn audit_log(&self) -> String {
        std::fs::read_to_string(self.path("audit.jsonl")).unwrap_or_default()
    }

    /// The stored password at a stage.
    pub fn stored_password(&self, name: &str, stage: &str) -> String {
        let r = self.rekey(&["get", name, "--stage", stage, "--field", "password"]);
        r.assert_code(0);
        r.stdout.trim_end_matches('\n').to_owned()
    }

    /// `status -o json` for one credential.
    pub fn status_json(&self, name: &str) -> serde_json::Value {
        let r = self.rekey(&["-o", "json", "status", name]);
        // status exits 1 when the credential is not ok (pending, stuck, overdue...).
        assert!(matches!(r.code, 0 | 1), "status exit {}: {}", r.code, r.stderr);
        let doc: serde_json::Value = serde_json::from_str(&r.stdout).expect("status json");
        doc["credentials"][0].clone()
    }

    /// Whether `role` can log in over TCP with `password` (SCRAM enforced). Panics on
    /// anything but success or an authentication failure.
    pub fn can_login(&self, role: &str, password: &str) -> bool {
        login(self.pg, role, password)
    }

    /// The role's stored verifier (changes whenever its password is set).
    pub fn verifier(&self, role: &str) -> String {
        self.pg.psql(&format!(
            "SELECT rolpassword FROM pg_authid WHERE rolname = {}",
            rekey_testbed::quote_literal(role)
        ))
    }
}

pub fn login(pg: &PgCluster, role: &str, password: &str) -> bool {
    let out = Command::new("psql")
        .args([
            "-h",
            "127.0.0.1",
            "-p",
            &pg.port().to_string(),
            "-d",
            "postgres",
            "-U",
            role,
            "-w",
            "-Atc",
            "SELECT current_user",
        ])
        .env("PGPASSWORD", password)
        .env("PGCONNECT_TIMEOUT", "10")
        .env_remove("PGSERVICE")
        .output()
        .expect("run psql");
    if out.status.success() {
        assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), role);
        return true;
    }
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("password authentication failed"),
        "psql failed for another reason: {err}"
    );
    false
}

impl Drop for Workspace {
    fn drop(&mut self) {
        for role in &self.roles {
            let _ = self.pg.try_psql(&format!(
                "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity WHERE usename = {};\nDROP ROLE IF EXISTS {};",
                rekey_testbed::quote_literal(role),
                rekey_testbed::quote_ident(role)
            ));
        }
    }
}

pub struct Run {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
}

impl Run {
    #[track_caller]
    pub fn assert_code(&self, code: i32) -> &Run {
        assert_eq!(
            self.code, code,
            "expected exit {code}, got {}\n--- stdout\n{}\n--- stderr\n{}",
            self.code, self.stdout, self.stderr
        );
        self
    }

    /// The lines of stderr starting with `error:`.
    pub fn error_lines(&self) -> Vec<&str> {
        self.stderr.lines().filter(|l| l.starts_with("error:")).collect()
    }

    #[track_caller]
    pub fn assert_one_error(&self, parts: &[&str]) {
        let lines = self.error_lines();
        assert_eq!(
            lines.len(),
            1,
            "expected exactly one error line, stderr:\n{}",
            self.stderr
        );
        for part in parts {
            assert!(lines[0].contains(part), "error line lacks `{part}`: {}", lines[0]);
        }
    }
}

/// Waits for `rotate -o json` runs (one per shard, started with piped output), asserts
/// each exited 0 with every credential it took `rotated`, and returns those names, sorted
/// (a name twice means two shards rotated it).
pub fn rotated_by_shards(children: Vec<Child>) -> Vec<String> {
    let mut rotated = Vec::new();
    for child in children {
        let out = child.wait_with_output().unwrap();
        assert_eq!(out.status.code(), Some(0), "{}", String::from_utf8_lossy(&out.stderr));
        let doc: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        for c in doc["credentials"].as_array().unwrap() {
            assert_eq!(c["status"], "rotated", "{c}");
            rotated.push(c["name"].as_str().unwrap().to_owned());
        }
    }
    rotated.sort();
    rotated
}

pub fn run(mut cmd: Command, stdin: &str) -> Run {
    cmd.stdin(Stdio::piped()).stdout(Stdio::piped()).stderr(Stdio::piped());
    let mut child = cmd.spawn().expect("spawn rekey");
    {
        let mut input = child.stdin.take().expect("stdin");
        input.write_all(stdin.as_bytes()).expect("write stdin");
    }
    let out: Output = child.wait_with_output().expect("wait rekey");
    Run {
        code: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

/// A rekey process held at a failpoint.
pub struct Held {
    pub child: Child,
}

impl Held {
    /// Starts `rekey ARGS` with `REKEY_FAILPOINT=failpoint` and waits (bounded) until it
    /// reports holding there.
    pub fn start(ws: &Workspace, args: &[&str], failpoint: &str) -> Held {
        let mut cmd = ws.command();
        cmd.args(args)
            .env("REKEY_FAILPOINT", failpoint)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        let mut child = cmd.spawn().expect("spawn rekey");
        let stderr = child.stderr.take().expect("stderr");
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                let _ = tx.send(line);
            }
        });
        let mut seen = Vec::new();
        loop {
            match rx.recv_timeout(Duration::from_secs(60)) {
                Ok(line) if line.contains(&format!("failpoint {failpoint} reached")) => break,
                Ok(line) => seen.push(line),
                Err(_) => {
                    let _ = child.kill();
                    panic!("rekey never reached failpoint {failpoint}; stderr: {seen:?}");
                }
            }
        }
        Held { child }
    }

    /// SIGKILL, then reap.
    pub fn kill(mut self) {
        self.child.kill().expect("SIGKILL");
        self.child.wait().expect("reap");
    }
}
