//! Issue 12, "zero-downtime by default": an application that reads the stored current
//! secret and logs in with it every 50 ms never fails while `dual` (Redis) and
//! `alternating` (PostgreSQL) credentials are rotated back to back with the default
//! grace period (no `grace` in the configuration).
//!
//! The reader reads the store as an application does (`rekey get`), so a read can
//! return the secret just replaced; with a grace period of zero that secret is revoked
//! at once and the reader's next login fails (seen: 7 of 43 for `alternating`, 1 of 183
//! for `dual`). Each rotation is started as soon as the previous one's grace period
//! allows (a rotation inside it is refused, exit 1, and retried).
//!
//! Each test first shows the precondition without timing: with `grace = "0s"` a secret
//! read just before a rotation is refused just after it (the failure the default
//! prevents); with the default, the same read-rotate-login order logs in.

use crate::redis::{redis_cli, redis_login, RedisUser, REDIS};
use crate::util::{login, run, unique, Run, Workspace, ADMIN_ENV};
use std::path::PathBuf;
use std::process::Command;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Rotations each test runs back to back.
const ROTATIONS: usize = 6;

/// Runs the rekey binary on `dir/rekey.toml`, as the test and the reader both do.
#[derive(Clone)]
struct Rekey {
    dir: PathBuf,
    env: Vec<(&'static str, String)>,
}

impl Rekey {
    fn run_stdin(&self, args: &[&str], stdin: &str) -> Run {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_rekey"));
        cmd.current_dir(&self.dir)
            .env_remove("REKEY_CONFIG")
            .env_remove("REKEY_FAILPOINT")
            .env("NO_COLOR", "1")
            .envs(self.env.iter().map(|(k, v)| (k, v)))
            .arg("-c")
            .arg(self.dir.join("rekey.toml"))
            .args(args);
        run(cmd, stdin)
    }

    fn run(&self, args: &[&str]) -> Run {
        self.run_stdin(args, "")
    }

    /// The stored current document, read as an application would.
    fn current(&self, name: &str) -> serde_json::Value {
        let r = self.run(&["get", name]);
        r.assert_code(0);
        serde_json::from_str(r.stdout.trim()).expect("the stored document")
    }

    /// Runs `ROTATIONS` rotations of `name` back to back: a rotation refused because
    /// the previous secret's grace period still runs is retried. Returns how many were
    /// refused.
    fn rotate_back_to_back(&self, name: &str) -> usize {
        let deadline = Instant::now() + Duration::from_secs(240);
        let (mut done, mut refused) = (0, 0);
        while done < ROTATIONS {
            assert!(Instant::now() < deadline, "{done} rotations in 240 s");
            let r = self.run(&["rotate", name]);
            match r.code {
                0 => done += 1,
                1 if r.stderr.contains("grace period runs until") => {
                    refused += 1;
                    std::thread::sleep(Duration::from_millis(200));
                }
                _ => panic!("rotation {}: {}", done + 1, r.stderr),
            }
        }
        refused
    }

    /// Reads `name`'s current secret as an application would, rotates once (exit 0),
    /// and answers whether `login` still works with what was read.
    fn held_secret_survives_a_rotation(&self, name: &str, login: impl Fn(&serde_json::Value) -> bool) -> bool {
        let held = self.current(name);
        assert!(login(&held), "the held secret logs in before the rotation");
        self.run(&["rotate", name]).assert_code(0);
        login(&held)
    }

    /// Whether the previous version is stored and not revoked (inside its grace).
    fn previous_is_unrevoked(&self, name: &str) -> bool {
        let r = self.run(&["-o", "json", "status", name]);
        let doc: serde_json::Value = serde_json::from_str(&r.stdout).expect("status JSON");
        doc["credentials"][0]["versions"]
            .as_array()
            .into_iter()
            .flatten()
            .any(|v| v["stages"][0] == "previous" && v["revoked"].is_null())
    }
}

/// Logins counted by a reader thread.
struct Reader {
    stop: Arc<AtomicBool>,
    logins: Arc<AtomicUsize>,
    failures: Arc<AtomicUsize>,
    thread: std::thread::JoinHandle<()>,
}

impl Reader {
    /// Every 50 ms: `login()` reads the stored current secret and logs in with it.
    fn start<F>(login: F) -> Reader
    where
        F: Fn() -> bool + Send + 'static,
    {
        let stop = Arc::new(AtomicBool::new(false));
        let (logins, failures) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
        let thread = {
            let (stop, logins, failures) = (stop.clone(), logins.clone(), failures.clone());
            std::thread::spawn(move || {
                let mut iterations = 0;
                while !stop.load(Ordering::Relaxed) && iterations < 5000 {
                    iterations += 1;
                    if login() {
                        logins.fetch_add(1, Ordering::Relaxed);
                    } else {
                        failures.fetch_add(1, Ordering::Relaxed);
                    }
                    std::thread::sleep(Duration::from_millis(50));
                }
            })
        };
        Reader {
            stop,
            logins,
            failures,
            thread,
        }
    }

    /// Stops the reader; (successful logins, failed logins).
    fn finish(self) -> (usize, usize) {
        self.stop.store(true, Ordering::Relaxed);
        self.thread.join().expect("reader thread");
        (
            self.logins.load(Ordering::Relaxed),
            self.failures.load(Ordering::Relaxed),
        )
    }
}

#[test]
fn dual_redis_readers_see_no_failure_with_the_default_grace() {
    let dir = tempfile::tempdir().unwrap();
    let rekey = Rekey {
        dir: dir.path().to_owned(),
        env: Vec::new(),
    };
    let user = RedisUser(unique("rk_zd_dual"));
    let initial = crate::util::random_password();
    redis_cli(&["ACL", "SETUSER", &user.0, "on", &format!(">{initial}"), "~*", "+@all"]);
    assert!(redis_login(&user.0, &initial));
    assert!(!redis_login(&user.0, "wrong-password"), "the server checks passwords");
    // `every` short, so that the default grace (a part of it) lets a test rotate back
    // to back; no `grace` key: the default is what is tested.
    let write_config = |grace: &str| {
        std::fs::write(
            dir.path().join("rekey.toml"),
            format!(
                "[stores.local]\ntype = \"file\"\npath = \"secrets.json\"\n\
                 [[credentials]]\nname = \"cache\"\nstore = \"local\"\nkey = \"cache\"\nstrategy = \"dual\"\nevery = \"20s\"\n{grace}\
                 target = {{ type = \"redis\", host = \"{}\", port = {}, username = \"{}\", admin = \"redis://{}:{}\" }}\n",
                REDIS.0, REDIS.1, user.0, REDIS.0, REDIS.1
            ),
        )
        .unwrap()
    };
    write_config("grace = \"0s\"\n");
    rekey.run_stdin(&["import", "cache"], &initial).assert_code(0);
    let logs_in = |doc: &serde_json::Value| redis_login(&user.0, doc["password"].as_str().expect("password"));
    assert!(
        !rekey.held_secret_survives_a_rotation("cache", logs_in),
        "precondition: with grace = \"0s\" a secret read before a dual rotation is refused after it"
    );
    write_config("");
    assert!(
        rekey.held_secret_survives_a_rotation("cache", logs_in),
        "with the default grace the secret read before the rotation still logs in"
    );

    let reader = {
        let (rekey, user) = (rekey.clone(), user.0.clone());
        Reader::start(move || {
            let doc = rekey.current("cache");
            redis_login(&user, doc["password"].as_str().expect("password"))
        })
    };
    let refused = rekey.rotate_back_to_back("cache");
    assert!(
        rekey.previous_is_unrevoked("cache"),
        "the default grace keeps the previous secret after a dual rotation"
    );
    std::thread::sleep(Duration::from_millis(300));
    let (logins, failures) = reader.finish();
    assert_eq!(
        failures, 0,
        "{logins} logins, {failures} failed ({refused} early rotations refused)"
    );
    assert!(
        logins >= 10,
        "the reader really logged in during the rotations: {logins}"
    );
    assert!(
        !redis_login(&user.0, &initial),
        "the first secret was revoked on the way"
    );
}

#[test]
fn alternating_postgres_readers_see_no_failure_with_the_default_grace() {
    let mut ws = Workspace::new();
    let rekey = Rekey {
        dir: ws.dir.path().to_owned(),
        env: vec![(ADMIN_ENV, ws.pg.admin_url())],
    };
    let (a, password_a) = ws.role("rk_zd_a");
    let (b, _) = ws.role("rk_zd_b");
    let credential = |grace: &str| {
        format!(
            "[[credentials]]\nname = \"app-db\"\nstore = \"local\"\nkey = \"app/db\"\nstrategy = \"alternating\"\nevery = \"20s\"\n{grace}\
             target = {{ type = \"postgres\", host = \"127.0.0.1\", port = {}, dbname = \"postgres\", usernames = [\"{a}\", \"{b}\"], \
             admin = \"${{{ADMIN_ENV}}}\", sslmode = \"disable\" }}\n",
            ws.pg.port(),
        )
    };
    ws.write_config(&[credential("grace = \"0s\"\n")]);
    rekey
        .run_stdin(
            &["import", "app-db"],
            &format!("{{\"username\":\"{a}\",\"password\":\"{password_a}\"}}"),
        )
        .assert_code(0);
    let pg = ws.pg;
    let logs_in = |doc: &serde_json::Value| {
        login(
            pg,
            doc["username"].as_str().expect("username"),
            doc["password"].as_str().expect("password"),
        )
    };
    assert!(
        !rekey.held_secret_survives_a_rotation("app-db", logs_in),
        "precondition: with grace = \"0s\" a secret read before an alternating rotation is refused after it"
    );
    ws.write_config(&[credential("")]);
    assert!(
        rekey.held_secret_survives_a_rotation("app-db", logs_in),
        "with the default grace the secret read before the rotation still logs in"
    );

    let reader = {
        let (rekey, pg) = (rekey.clone(), ws.pg);
        Reader::start(move || {
            let doc = rekey.current("app-db");
            login(
                pg,
                doc["username"].as_str().expect("username"),
                doc["password"].as_str().expect("password"),
            )
        })
    };
    let refused = rekey.rotate_back_to_back("app-db");
    assert!(
        rekey.previous_is_unrevoked("app-db"),
        "the default grace keeps the previous user after an alternating rotation"
    );
    std::thread::sleep(Duration::from_millis(300));
    let (logins, failures) = reader.finish();
    assert_eq!(
        failures, 0,
        "{logins} logins, {failures} failed ({refused} early rotations refused)"
    );
    assert!(
        logins >= 10,
        "the reader really logged in during the rotations: {logins}"
    );
    assert!(
        !login(ws.pg, &a, &password_a),
        "the first secret was revoked on the way"
    );
}
