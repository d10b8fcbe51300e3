//! Helpers for the user-experience tests (`ux_*`): a temporary directory with a config
//! and no server at all (the commands under test must not need one), running the binary
//! piped or under a pseudo-terminal, and the JSON Schema of `-o json`.

use crate::util::Run;
use std::path::PathBuf;
use std::process::Command;

/// The variable the offline configs read their admin URL from.
pub const UX_ADMIN_ENV: &str = "REKEY_UX_ADMIN_URL";
/// An admin URL that is never contacted (port 9 on loopback: nothing listens, and the
/// commands under test must not try).
pub const UX_ADMIN_URL: &str = "postgres://ux_rotator:ux-admin-pw-6e3f@127.0.0.1:9/postgres";

/// Two credentials on a file store, targets on a port where nothing listens.
pub const OFFLINE_CONFIG: &str = r#"[defaults]
every = "40d"
audit_log = "audit.jsonl"

[stores.local]
type = "file"
path = "secrets.json"

[[credentials]]
name = "orders-db"
store = "local"
key = "orders/db"
tags = ["prod", "orders"]
target = { type = "postgres", host = "127.0.0.1", port = 9, dbname = "orders", username = "orders_app", admin = "${REKEY_UX_ADMIN_URL}", sslmode = "disable" }

[[credentials]]
name = "billing-db"
store = "local"
key = "billing/db"
tags = ["staging"]
target = { type = "postgres", host = "127.0.0.1", port = 9, dbname = "billing", username = "billing_app", admin = "${REKEY_UX_ADMIN_URL}", sslmode = "disable" }
"#;

pub struct Dir {
    pub dir: tempfile::TempDir,
}

impl Dir {
    pub fn new() -> Dir {
        Dir {
            dir: tempfile::tempdir().expect("tempdir"),
        }
    }

    /// A directory holding `rekey.toml` with `config`.
    pub fn with_config(config: &str) -> Dir {
        let d = Dir::new();
        d.write("rekey.toml", config);
        d
    }

    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    pub fn write(&self, name: &str, text: &str) {
        std::fs::write(self.path(name), text).expect("write");
    }

    /// `rekey` in the directory (so `./rekey.toml` is the config), without colour,
    /// with the admin variable set.
    pub fn command(&self) -> Command {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_rekey"));
        cmd.current_dir(self.dir.path())
            .env_remove("REKEY_CONFIG")
            .env_remove("RUST_LOG")
            .env_remove("REKEY_FAILPOINT")
            .env("NO_COLOR", "1")
            .env(UX_ADMIN_ENV, UX_ADMIN_URL);
        cmd
    }

    pub fn rekey(&self, args: &[&str]) -> Run {
        self.rekey_stdin(args, "")
    }

    pub fn rekey_stdin(&self, args: &[&str], stdin: &str) -> Run {
        let mut cmd = self.command();
        cmd.args(args);
        crate::util::run(cmd, stdin)
    }
}

/// Runs `cmd` with stdin, stdout and stderr on a pseudo-terminal; returns the exit code
/// and everything written to the terminal.
#[allow(unsafe_code)] // libc calls; SAFETY comments at each block
pub fn run_on_terminal(mut cmd: Command) -> (i32, String) {
    use std::io::Read;
    use std::os::fd::FromRawFd;
    use std::process::Stdio;
    let (mut leader, mut follower) = (0, 0);
    // SAFETY: openpty fills two descriptors; the name, termios and winsize are optional.
    let rc = unsafe {
        libc::openpty(
            &mut leader,
            &mut follower,
            std::ptr::null_mut(),
            std::ptr::null(),
            std::ptr::null(),
        )
    };
    assert_eq!(rc, 0, "openpty: {}", std::io::Error::last_os_error());
    // SAFETY: each descriptor was just opened and is owned once.
    let (leader, follower) = unsafe { (std::fs::File::from_raw_fd(leader), std::fs::File::from_raw_fd(follower)) };
    cmd.stdin(Stdio::from(follower.try_clone().expect("dup")))
        .stdout(Stdio::from(follower.try_clone().expect("dup")))
        .stderr(Stdio::from(follower));
    let mut child = cmd.spawn().expect("spawn rekey");
    drop(cmd);
    let reader = std::thread::spawn(move || {
        let mut leader = leader;
        let mut out = Vec::new();
        let mut buf = [0u8; 4096];
        // Reading fails with EIO once the child has exited and closed the terminal.
        while let Ok(n) = leader.read(&mut buf) {
            if n == 0 {
                break;
            }
            out.extend_from_slice(&buf[..n]);
        }
        String::from_utf8_lossy(&out).into_owned()
    });
    let status = child.wait().expect("wait rekey");
    (status.code().unwrap_or(-1), reader.join().expect("reader"))
}

/// The JSON Schema of every `-o json` output, from the repository.
pub fn schema() -> serde_json::Value {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/docs/output.schema.json");
    serde_json::from_str(&std::fs::read_to_string(path).expect("read docs/output.schema.json")).expect("schema is JSON")
}

/// Parses `stdout` as one JSON document and checks it against the schema; panics with
/// every violation.
#[track_caller]
pub fn assert_envelope(what: &str, stdout: &str) -> serde_json::Value {
    let doc: serde_json::Value = serde_json::from_str(stdout)
        .unwrap_or_else(|e| panic!("{what}: stdout is not one JSON document ({e}):\n{stdout}"));
    let schema = schema();
    let validator = jsonschema::draft202012::new(&schema).expect("the schema compiles");
    let errors: Vec<String> = validator
        .iter_errors(&doc)
        .map(|e| format!("{} at {}", e, e.instance_path()))
        .collect();
    assert!(
        errors.is_empty(),
        "{what}: output violates the schema:\n{}\n{stdout}",
        errors.join("\n")
    );
    doc
}
