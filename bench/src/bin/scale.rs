//! `rekey-bench-scale`: how rekey's commands scale with the number of credentials
//! (issue 11).
//!
//! For each N (default 100 and 1,000; `--roles 100,1000,10000`), on a throwaway
//! PostgreSQL cluster (`rekey_testbed::PgCluster`, SCRAM enforced) it creates N login
//! roles, writes a `rekey.toml` with one `postgres` credential per role in one `file`
//! store, and times, each as its own rekey process (wall clock from spawn to exit and
//! peak RSS from `wait4`):
//!
//! 1. `rekey validate` (config load and checks),
//! 2. `rekey import --batch` of every role's password (JSON lines on stdin),
//! 3. `rekey plan` over all N,
//! 4. the first and the second `rekey rotate --parallel P` over all N,
//! 5. `rekey verify --parallel P`,
//! 6. `rekey status`.
//!
//! Every command must exit 0; after each rotation every role must have a new verifier
//! on the server and, for the first, middle and last credential, the stored password
//! must log in. It prints a table and one JSON line per N; it never fails on a missed
//! goal (benchmarks are not tests).
//!
//! ```text
//! cargo build --release && cargo run --release -p rekey-bench --bin rekey-bench-scale -- --roles 100,1000
//! ```

use anyhow::{bail, Context, Result};
use rekey_testbed::{quote_ident, quote_literal, PgCluster};
use std::collections::HashMap;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// Environment variable carrying the admin connection string to rekey (never argv).
const ADMIN_ENV: &str = "REKEY_BENCH_ADMIN";
/// Role name prefix.
const PREFIX: &str = "bench_sc_";

const USAGE: &str = "\
rekey-bench-scale: time rekey's commands over 100 to 10,000 PostgreSQL credentials

Usage: cargo run --release -p rekey-bench --bin rekey-bench-scale -- [OPTIONS]

Options:
  --roles N[,N...]  credential counts, each run on fresh roles [default: 100,1000]
  --parallel N      rotate/verify --parallel [default: 16]
  --rekey PATH      the rekey binary [default: target/release/rekey beside this program]
  -h, --help        print this help";

fn main() {
    match parse_args(std::env::args().skip(1)) {
        Ok(None) => println!("{USAGE}"),
        Ok(Some(options)) => {
            if let Err(e) = run(&options) {
                eprintln!("rekey-bench-scale: error: {e:#}");
                std::process::exit(1);
            }
        }
        Err(e) => {
            eprintln!("rekey-bench-scale: {e:#}\n\n{USAGE}");
            std::process::exit(2);
        }
    }
}

/// Command-line options.
struct Options {
    roles: Vec<usize>,
    parallel: usize,
    rekey: PathBuf,
}

fn parse_args(args: impl IntoIterator<Item = String>) -> Result<Option<Options>> {
    let mut roles = vec![100, 1000];
    let mut parallel = 16;
    let mut rekey = None;
    let mut args = args.into_iter();
    while let Some(arg) = args.next() {
        let (flag, inline) = match arg.split_once('=') {
            Some((f, v)) if f.starts_with("--") => (f.to_owned(), Some(v.to_owned())),
            _ => (arg.clone(), None),
        };
        let mut value = || -> Result<String> {
            inline
                .clone()
                .or_else(|| args.next())
                .context(format!("{flag} needs a value"))
        };
        let count = |v: &str| -> Result<usize> {
            match v.trim().replace('_', "").parse::<usize>() {
                Ok(n) if n >= 1 => Ok(n),
                _ => bail!("{flag} takes whole numbers of at least 1, not {v:?}"),
            }
        };
        match flag.as_str() {
            "-h" | "--help" => return Ok(None),
            "--roles" => roles = value()?.split(',').map(count).collect::<Result<_>>()?,
            "--parallel" => parallel = count(&value()?)?,
            "--rekey" => rekey = Some(PathBuf::from(value()?)),
            _ => bail!("unknown argument {arg:?}"),
        }
    }
    let rekey = match rekey {
        Some(path) => path,
        None => std::env::current_exe()?.with_file_name("rekey"),
    };
    Ok(Some(Options { roles, parallel, rekey }))
}

/// One measured rekey process.
#[derive(Clone, Copy, Default)]
struct Timed {
    wall: Duration,
    rss_kib: u64,
}

impl Timed {
    fn secs(&self) -> f64 {
        self.wall.as_secs_f64()
    }
    fn mb(&self) -> f64 {
        self.rss_kib as f64 / 1024.0
    }
    fn ms_each(&self, n: usize) -> f64 {
        self.secs() * 1000.0 / n as f64
    }
}

/// The figures for one N.
struct Row {
    n: usize,
    validate: Timed,
    import: Timed,
    plan: Timed,
    first: Timed,
    second: Timed,
    verify: Timed,
    status: Timed,
    store_bytes: u64,
}

fn load_average() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .ok()
        .and_then(|s| s.split_whitespace().next().map(str::to_owned))
        .unwrap_or_else(|| "?".into())
}

fn run(options: &Options) -> Result<()> {
    if !options.rekey.is_file() {
        bail!(
            "no rekey binary at {}: cargo build --release first",
            options.rekey.display()
        );
    }
    let version = Command::new(&options.rekey).arg("--version").output()?;
    let version = String::from_utf8_lossy(&version.stdout).trim().to_owned();
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    let load_start = load_average();
    eprintln!("rekey-bench-scale: starting a throwaway PostgreSQL cluster");
    let cluster = PgCluster::start().context("cannot start the PostgreSQL test cluster")?;
    let server = cluster.try_psql("SHOW server_version")?;
    let mut rows = Vec::new();
    for &n in &options.roles {
        let result = one_size(&cluster, options, n);
        drop_roles(&cluster);
        rows.push(result?);
    }
    drop(cluster);
    println!();
    println!(
        "rekey=\"{version}\" server=PostgreSQL {server} parallel={} file store",
        options.parallel
    );
    println!(
        "machine: {cores} cores, 1-min load average {load_start} at start, {} at end",
        load_average()
    );
    println!();
    println!("| credentials | validate | import --batch | plan | first rotate | second rotate | peak RSS (1st / 2nd rotate) | verify | status | store file |");
    println!("|---|---|---|---|---|---|---|---|---|---|");
    for r in &rows {
        println!(
            "| {} | {:.0} ms | {:.2} s ({:.2} ms each) | {:.2} s | {:.2} s ({:.2} ms each) | {:.2} s ({:.2} ms each) | {:.0} / {:.0} MB | {:.2} s ({:.2} ms each) | {:.2} s | {:.1} MB |",
            r.n,
            r.validate.secs() * 1000.0,
            r.import.secs(),
            r.import.ms_each(r.n),
            r.plan.secs(),
            r.first.secs(),
            r.first.ms_each(r.n),
            r.second.secs(),
            r.second.ms_each(r.n),
            r.first.mb(),
            r.second.mb(),
            r.verify.secs(),
            r.verify.ms_each(r.n),
            r.status.secs(),
            r.store_bytes as f64 / 1e6,
        );
    }
    println!();
    println!("peak RSS of every command (MB): validate / import / plan / verify / status");
    for r in &rows {
        println!(
            "  {:>6}: {:.0} / {:.0} / {:.0} / {:.0} / {:.0}",
            r.n,
            r.validate.mb(),
            r.import.mb(),
            r.plan.mb(),
            r.verify.mb(),
            r.status.mb()
        );
    }
    for r in &rows {
        let ms = |t: Timed| (t.secs() * 1e5).round() / 100.0;
        let json = serde_json::json!({
            "credentials": r.n, "parallel": options.parallel,
            "validate_ms": ms(r.validate), "import_ms": ms(r.import), "plan_ms": ms(r.plan),
            "rotate1_ms": ms(r.first), "rotate2_ms": ms(r.second), "verify_ms": ms(r.verify),
            "status_ms": ms(r.status),
            "rotate2_over_rotate1": (r.second.secs() / r.first.secs() * 100.0).round() / 100.0,
            "rss_mb": {"validate": r.validate.mb().round(), "import": r.import.mb().round(),
                       "plan": r.plan.mb().round(), "rotate1": r.first.mb().round(),
                       "rotate2": r.second.mb().round(), "verify": r.verify.mb().round(),
                       "status": r.status.mb().round()},
            "store_bytes": r.store_bytes, "cores": cores,
        });
        println!("{json}");
    }
    Ok(())
}

fn role_name(i: usize) -> String {
    format!("{PREFIX}{i:05}")
}

fn credential_name(i: usize) -> String {
    format!("scale-{i:05}")
}

fn drop_roles(cluster: &PgCluster) {
    let sql = format!(
        "SET log_statement = 'none';\n\
         SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity WHERE starts_with(usename, '{PREFIX}');\n\
         DO $$DECLARE r text; BEGIN FOR r IN SELECT rolname FROM pg_roles WHERE starts_with(rolname, '{PREFIX}') \
         LOOP EXECUTE format('DROP ROLE %I', r); END LOOP; END$$;"
    );
    if let Err(e) = cluster.try_psql(&sql) {
        eprintln!("rekey-bench-scale: warning: dropping the roles failed: {e}");
    }
}

/// A random 32-character password.
fn new_password() -> String {
    let mut bytes = [0u8; 24];
    std::fs::File::open("/dev/urandom")
        .and_then(|mut f| f.read_exact(&mut bytes))
        .expect("/dev/urandom");
    bytes
        .iter()
        .map(|b| {
            let c = b % 62;
            (match c {
                0..=9 => b'0' + c,
                10..=35 => b'a' + c - 10,
                _ => b'A' + c - 36,
            }) as char
        })
        .collect()
}

/// Role name to verifier, for every bench role.
fn verifiers(cluster: &PgCluster) -> Result<HashMap<String, String>> {
    let out = cluster.try_psql(&format!(
        "SELECT rolname || ' ' || coalesce(rolpassword, '') FROM pg_authid WHERE starts_with(rolname, {})",
        quote_literal(PREFIX)
    ))?;
    Ok(out
        .lines()
        .filter_map(|l| l.split_once(' ').map(|(a, b)| (a.to_owned(), b.to_owned())))
        .collect())
}

fn check_all_changed(before: &HashMap<String, String>, after: &HashMap<String, String>, n: usize) -> Result<()> {
    let changed = before
        .iter()
        .filter(|(name, old)| after.get(*name).is_some_and(|new| new != *old))
        .count();
    if before.len() != n || changed != n {
        bail!("only {changed} of {n} roles got a new password on the server");
    }
    Ok(())
}

struct Rekey<'a> {
    bin: &'a Path,
    dir: &'a Path,
    admin_url: String,
}

impl Rekey<'_> {
    fn command(&self, args: &[&str]) -> Command {
        let mut cmd = Command::new(self.bin);
        cmd.current_dir(self.dir)
            .arg("-c")
            .arg(self.dir.join("rekey.toml"))
            .arg("-q")
            .args(args)
            .env(ADMIN_ENV, &self.admin_url)
            .env("NO_COLOR", "1")
            .env_remove("REKEY_CONFIG")
            .env_remove("RUST_LOG");
        cmd
    }

    /// Runs one command measured; it must exit 0.
    fn timed(&self, what: &str, args: &[&str], stdin: Option<&Path>) -> Result<Timed> {
        eprintln!("rekey-bench-scale:   rekey {}", args.join(" "));
        let (timed, code, stderr) = run_measured(&mut self.command(args), stdin)?;
        if code != Some(0) {
            let tail: String = stderr
                .chars()
                .rev()
                .take(3000)
                .collect::<Vec<_>>()
                .into_iter()
                .rev()
                .collect();
            bail!("rekey {what} exited {code:?}:\n{tail}");
        }
        eprintln!(
            "rekey-bench-scale:   {what}: {:.2} s, peak RSS {:.1} MB",
            timed.secs(),
            timed.mb()
        );
        Ok(timed)
    }

    fn get_password(&self, name: &str) -> Result<String> {
        let out = self
            .command(&["get", name, "--field", "password"])
            .stdin(Stdio::null())
            .output()?;
        if !out.status.success() {
            bail!("rekey get {name} failed: {}", String::from_utf8_lossy(&out.stderr));
        }
        Ok(String::from_utf8(out.stdout)?.trim_end().to_owned())
    }
}

fn one_size(cluster: &PgCluster, options: &Options, n: usize) -> Result<Row> {
    eprintln!("rekey-bench-scale: N = {n}: creating roles");
    let passwords: Vec<String> = (0..n).map(|_| new_password()).collect();
    // In chunks: each psql call of the test bed has a time limit.
    for (chunk, passwords) in passwords.chunks(500).enumerate() {
        let mut sql = String::from("SET log_statement = 'none';\nBEGIN;\n");
        for (j, password) in passwords.iter().enumerate() {
            let verifier = postgres_protocol::password::scram_sha_256(password.as_bytes());
            sql.push_str(&format!(
                "CREATE ROLE {} LOGIN PASSWORD {};\n",
                quote_ident(&role_name(chunk * 500 + j)),
                quote_literal(&verifier)
            ));
        }
        sql.push_str("COMMIT;\n");
        cluster.try_psql(&sql)?;
    }

    let workdir = tempfile::Builder::new().prefix("rekey-scale-").tempdir()?;
    let dir = workdir.path();
    let mut toml = format!(
        "[defaults]\nparallel = {}\naudit_log = \"audit.jsonl\"\n\n[stores.local]\ntype = \"file\"\npath = \"secrets.json\"\n",
        options.parallel
    );
    for i in 0..n {
        toml.push_str(&format!(
            "\n[[credentials]]\nname = \"{}\"\nstore = \"local\"\nkey = \"scale/{i:05}\"\n\
             target = {{ type = \"postgres\", host = \"127.0.0.1\", port = {}, dbname = \"postgres\", \
             username = \"{}\", admin = \"${{{ADMIN_ENV}}}\", sslmode = \"disable\" }}\n",
            credential_name(i),
            cluster.port(),
            role_name(i)
        ));
    }
    std::fs::write(dir.join("rekey.toml"), toml)?;
    // The batch import's input: a 0600 file in the private work directory.
    let lines = dir.join("import.jsonl");
    {
        use std::os::unix::fs::OpenOptionsExt;
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&lines)?;
        for (i, password) in passwords.iter().enumerate() {
            let line = serde_json::json!({"name": credential_name(i), "value": password});
            writeln!(f, "{line}")?;
        }
    }
    let rekey = Rekey {
        bin: &options.rekey,
        dir,
        admin_url: cluster.admin_url(),
    };
    let parallel = options.parallel.to_string();

    let validate = rekey.timed("validate", &["validate"], None)?;
    let import = rekey.timed("import --batch", &["import", "--batch"], Some(&lines))?;
    std::fs::remove_file(&lines)?;
    let plan = rekey.timed("plan", &["plan"], None)?;
    let sample = [0, n / 2, n - 1];
    let mut rotations = Vec::new();
    for round in ["first rotate", "second rotate"] {
        let before = verifiers(cluster)?;
        let old: Vec<String> = sample
            .iter()
            .map(|&i| rekey.get_password(&credential_name(i)))
            .collect::<Result<_>>()?;
        rotations.push(rekey.timed(round, &["rotate", "--parallel", &parallel], None)?);
        check_all_changed(&before, &verifiers(cluster)?, n).context(round)?;
        for (&i, old) in sample.iter().zip(&old) {
            let new = rekey.get_password(&credential_name(i))?;
            if &new == old {
                bail!(
                    "{round}: the store still holds the old password of {}",
                    credential_name(i)
                );
            }
        }
    }
    let verify = rekey.timed("verify", &["verify", "--parallel", &parallel], None)?;
    let status = rekey.timed("status", &["status"], None)?;
    let store_bytes = std::fs::metadata(dir.join("secrets.json")).map_or(0, |m| m.len());
    Ok(Row {
        n,
        validate,
        import,
        plan,
        first: rotations[0],
        second: rotations[1],
        verify,
        status,
        store_bytes,
    })
}

/// Runs `cmd` (stdin from `stdin` or `/dev/null`, stdout discarded, stderr captured),
/// reaps it with `wait4`: wall clock and peak RSS, exit code, stderr.
#[allow(unsafe_code)] // libc calls; SAFETY comments at each block
fn run_measured(cmd: &mut Command, stdin: Option<&Path>) -> Result<(Timed, Option<i32>, String)> {
    let input = match stdin {
        Some(path) => Stdio::from(std::fs::File::open(path)?),
        None => Stdio::null(),
    };
    cmd.stdin(input).stdout(Stdio::null()).stderr(Stdio::piped());
    let start = Instant::now();
    let mut child = cmd.spawn().context("cannot start rekey")?;
    let mut pipe = child.stderr.take().context("no stderr")?;
    let reader = std::thread::spawn(move || {
        let mut buf = Vec::new();
        let _ = pipe.read_to_end(&mut buf);
        buf
    });
    let pid = libc::pid_t::try_from(child.id())?;
    let mut status: libc::c_int = 0;
    // SAFETY: `rusage` is a plain C struct of integers; all zero bytes are valid.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    loop {
        // SAFETY: `pid` is our own unreaped child; both pointers are valid for the call.
        let reaped = unsafe { libc::wait4(pid, &mut status, 0, &mut usage) };
        if reaped == pid {
            break;
        }
        let error = std::io::Error::last_os_error();
        if reaped == -1 && error.kind() == std::io::ErrorKind::Interrupted {
            continue;
        }
        bail!("wait4: {error}");
    }
    let wall = start.elapsed();
    drop(child);
    let stderr = String::from_utf8_lossy(&reader.join().unwrap_or_default()).into_owned();
    let code = libc::WIFEXITED(status).then(|| libc::WEXITSTATUS(status));
    Ok((
        Timed {
            wall,
            rss_kib: u64::try_from(usage.ru_maxrss).unwrap_or(0),
        },
        code,
        stderr,
    ))
}
