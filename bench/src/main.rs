//! `rekey-bench`: how fast rekey rotates PostgreSQL roles, against the bare floor.
//!
//! On a throwaway PostgreSQL cluster it creates N roles, seeds rekey's file store with
//! their passwords (`rekey import`), then, round after round, times
//! `rekey rotate --parallel P -q` over all of them (wall clock and peak RSS of the rekey
//! process) and the floor: the same database work done directly by a minimal
//! tokio-postgres client with P workers (per role one `ALTER ROLE` with a SCRAM
//! verifier, one fresh login with the new password, one refused login with the old).
//! It also times `rekey --version`. It prints figures; it never fails on a missed goal,
//! only when rekey or the floor did not do the work (checked on the server).
//!
//! ```text
//! cargo build --release && cargo run --release -p rekey-bench -- --roles 200 --rounds 2
//! ```

mod floor;
mod measure;

use anyhow::{bail, Context, Result};
use floor::{FloorRole, Server};
use measure::{run_measured, self_cpu, Measured};
use rekey_testbed::{quote_ident, quote_literal, PgCluster};
use std::collections::HashMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;
use std::time::Duration;

/// Environment variable carrying the admin connection string to rekey (never argv).
const ADMIN_ENV: &str = "REKEY_BENCH_ADMIN";
/// Role name prefix of the roles rekey rotates.
const REKEY_PREFIX: &str = "bench_rk_";
/// Role name prefix of the roles the floor rotates.
const FLOOR_PREFIX: &str = "bench_fl_";
/// How many `rekey import` processes run at once during setup.
const IMPORT_WORKERS: usize = 4;
/// How many times `rekey --version` is timed.
const VERSION_RUNS: usize = 30;
/// Goal: rekey's time per role at most this multiple of the floor's.
const GOAL_RATIO: f64 = 1.25;
/// Goal: `rekey --version` under this many milliseconds.
const GOAL_VERSION_MS: f64 = 20.0;
/// Goal: rekey's peak RSS under this many MB (MiB: `ru_maxrss` KiB / 1024).
const GOAL_RSS_MB: f64 = 50.0;

const USAGE: &str = "\
rekey-bench: time rekey rotating PostgreSQL roles against the bare database floor

Usage: cargo run --release -p rekey-bench -- [OPTIONS]

Options:
  --roles N      roles rotated per round [default: 200]
  --parallel N   rekey --parallel and floor workers [default: 8]
  --rounds N     rounds, each rotating every role with rekey then with the floor [default: 2]
  --rekey PATH   the rekey binary [default: target/release/rekey beside this program]
  -h, --help     print this help

Build rekey first: cargo build --release";

/// Command-line options.
#[derive(Debug, Clone)]
struct Options {
    /// Roles rotated per round.
    roles: usize,
    /// rekey's `--parallel` and the floor's worker count.
    parallel: usize,
    /// How many rounds.
    rounds: usize,
    /// The rekey binary.
    rekey: PathBuf,
}

/// Parses the arguments; `Ok(None)` when help was asked for.
fn parse_args(args: impl IntoIterator<Item = String>) -> Result<Option<Options>> {
    let mut roles = 200;
    let mut parallel = 8;
    let mut rounds = 2;
    let mut rekey = None;
    let mut args = args.into_iter();
    while let Some(arg) = args.next() {
        let (flag, inline) = match arg.split_once('=') {
            Some((f, v)) if f.starts_with("--") => (f.to_owned(), Some(v.to_owned())),
            _ => (arg.clone(), None),
        };
        if flag == "-h" || flag == "--help" {
            return Ok(None);
        }
        let mut value = || -> Result<String> {
            match inline.clone().or_else(|| args.next()) {
                Some(v) => Ok(v),
                None => bail!("{flag} needs a value"),
            }
        };
        let count = |v: String| -> Result<usize> {
            match v.parse::<usize>() {
                Ok(n) if n >= 1 => Ok(n),
                _ => bail!("{flag} takes a whole number of at least 1, not {v:?}"),
            }
        };
        match flag.as_str() {
            "--roles" => roles = count(value()?)?,
            "--parallel" => parallel = count(value()?)?,
            "--rounds" => rounds = count(value()?)?,
            "--rekey" => rekey = Some(PathBuf::from(value()?)),
            _ => bail!("unknown argument {arg:?}"),
        }
    }
    let rekey = match rekey {
        Some(path) => path,
        None => std::env::current_exe()
            .context("cannot find this program's path")?
            .with_file_name("rekey"),
    };
    Ok(Some(Options {
        roles,
        parallel,
        rounds,
        rekey,
    }))
}

fn main() -> ExitCode {
    let options = match parse_args(std::env::args().skip(1)) {
        Ok(Some(options)) => options,
        Ok(None) => {
            println!("{USAGE}");
            return ExitCode::SUCCESS;
        }
        Err(e) => {
            eprintln!("rekey-bench: {e:#}\n\n{USAGE}");
            return ExitCode::from(2);
        }
    };
    // `run` owns the cluster, so it is stopped and removed before we exit.
    match run(&options) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("rekey-bench: error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

/// The figures of one round.
#[derive(Debug, Clone, Copy)]
struct Round {
    /// Wall clock of `rekey rotate`.
    rekey: Duration,
    /// Peak RSS of the rekey process, KiB.
    rekey_rss_kib: u64,
    /// CPU time (user + system) of the rekey process.
    rekey_cpu: Duration,
    /// CPU time (user + system) of this process during the floor.
    floor_cpu: Duration,
    /// Wall clock of the floor.
    floor: Duration,
    /// What the server saw during rekey's run.
    rekey_activity: Activity,
    /// What the server saw during the floor's run.
    floor_activity: Activity,
}

/// Server-wide counters from `pg_stat_database`.
#[derive(Debug, Clone, Copy)]
struct Counters {
    /// Sessions established (successful logins).
    sessions: u64,
    /// Transactions committed or rolled back.
    xacts: u64,
}

/// What the server saw during one phase, per role (approximate: the counters are
/// server-wide and flushed when backends exit).
#[derive(Debug, Clone, Copy)]
struct Activity {
    /// Successful logins per role.
    sessions: f64,
    /// Transactions per role.
    xacts: f64,
}

/// How long to let backends exit and flush their statistics before reading the counters.
const STATS_SETTLE: Duration = Duration::from_millis(300);

/// Reads the server-wide session and transaction counters.
fn server_counters(cluster: &PgCluster) -> Result<Counters> {
    let out = cluster.try_psql(
        "SELECT sum(sessions)::bigint || ' ' || sum(xact_commit + xact_rollback)::bigint FROM pg_stat_database",
    )?;
    let parse = |s: Option<&str>| s.and_then(|s| s.trim().parse::<u64>().ok());
    let mut fields = out.split_whitespace();
    match (parse(fields.next()), parse(fields.next())) {
        (Some(sessions), Some(xacts)) => Ok(Counters { sessions, xacts }),
        _ => bail!("unexpected pg_stat_database answer: {out:?}"),
    }
}

/// Waits for the statistics to settle, reads the counters again and returns the change
/// per role, less the session and transaction of the psql call that read `before`.
fn activity_since(cluster: &PgCluster, before: Counters, n: usize) -> Result<Activity> {
    std::thread::sleep(STATS_SETTLE);
    let after = server_counters(cluster)?;
    let per_role = |a: u64, b: u64| a.saturating_sub(b).saturating_sub(1) as f64 / n as f64;
    Ok(Activity {
        sessions: per_role(after.sessions, before.sessions),
        xacts: per_role(after.xacts, before.xacts),
    })
}

/// Everything measured.
#[derive(Debug)]
struct Report {
    /// `SHOW server_version`.
    server_version: String,
    /// The 1-minute load average when the measurements started and ended.
    load: (Option<f64>, Option<f64>),
    /// `rekey --version`'s output.
    rekey_version: String,
    /// Per round.
    rounds: Vec<Round>,
    /// `rekey --version` wall clock: mean and min, milliseconds.
    version_mean_ms: f64,
    /// See `version_mean_ms`.
    version_min_ms: f64,
}

fn run(options: &Options) -> Result<()> {
    let rekey_version = check_rekey_binary(&options.rekey)?;
    eprintln!("rekey-bench: starting a throwaway PostgreSQL cluster");
    let cluster = PgCluster::start().context("cannot start the PostgreSQL test cluster")?;
    let result = bench(&cluster, options, rekey_version);
    eprintln!("rekey-bench: cleaning up");
    let names: Vec<String> = (0..options.roles)
        .flat_map(|i| {
            [
                role_name(REKEY_PREFIX, i, options.roles),
                role_name(FLOOR_PREFIX, i, options.roles),
            ]
        })
        .collect();
    let drops: String = names
        .iter()
        .map(|n| format!("DROP ROLE IF EXISTS {};\n", quote_ident(n)))
        .collect();
    if let Err(e) = cluster.try_psql(&format!(
        "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity WHERE starts_with(usename, 'bench_');\n{drops}"
    )) {
        eprintln!("rekey-bench: warning: dropping the roles failed: {e}");
    }
    drop(cluster);
    let report = result?;
    print_report(options, &report);
    Ok(())
}

/// Checks that the rekey binary exists and runs; returns its `--version` line.
fn check_rekey_binary(path: &Path) -> Result<String> {
    if !path.is_file() {
        bail!(
            "no rekey binary at {}: build it first with `cargo build --release` (or pass --rekey PATH)",
            path.display()
        );
    }
    let out = Command::new(path)
        .arg("--version")
        .stdin(Stdio::null())
        .output()
        .with_context(|| format!("cannot run {}", path.display()))?;
    if !out.status.success() {
        bail!(
            "{} --version failed ({}): {}",
            path.display(),
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(String::from_utf8_lossy(&out.stdout).trim().to_owned())
}

/// `bench_rk_007`: zero-padded to at least three digits.
fn role_name(prefix: &str, index: usize, count: usize) -> String {
    let width = (count.saturating_sub(1)).to_string().len().max(3);
    format!("{prefix}{index:0width$}")
}

/// `bench-007`: the credential name rekey knows role `index` by.
fn credential_name(index: usize, count: usize) -> String {
    let width = (count.saturating_sub(1)).to_string().len().max(3);
    format!("bench-{index:0width$}")
}

fn bench(cluster: &PgCluster, options: &Options, rekey_version: String) -> Result<Report> {
    let n = options.roles;
    let server_version = cluster.try_psql("SHOW server_version")?;
    let load_start = load_average();
    let server = Server {
        port: cluster.port(),
        admin_password: cluster.admin_password().to_owned(),
    };

    eprintln!("rekey-bench: creating {n} roles for rekey and {n} for the floor");
    let rekey_passwords: Vec<String> = (0..n).map(|_| floor::new_password()).collect();
    let mut floor_roles: Vec<FloorRole> = (0..n)
        .map(|i| FloorRole {
            name: role_name(FLOOR_PREFIX, i, n),
            password: floor::new_password(),
        })
        .collect();
    let mut sql = String::from("SET log_statement = 'none';\n");
    let all = (0..n).map(|i| (role_name(REKEY_PREFIX, i, n), &rekey_passwords[i]));
    for (name, password) in all.chain(floor_roles.iter().map(|r| (r.name.clone(), &r.password))) {
        let verifier = postgres_protocol::password::scram_sha_256(password.as_bytes());
        sql.push_str(&format!(
            "CREATE ROLE {} LOGIN PASSWORD {};\n",
            quote_ident(&name),
            quote_literal(&verifier)
        ));
    }
    cluster.try_psql(&sql)?;

    let workdir = tempfile::Builder::new()
        .prefix("rekey-bench-")
        .tempdir()
        .context("cannot create a work directory")?;
    let rekey = Rekey {
        bin: options.rekey.clone(),
        dir: workdir.path().to_owned(),
        admin_url: cluster.admin_url(),
    };
    rekey.write_config(cluster.port(), n, options.parallel)?;

    eprintln!("rekey-bench: importing {n} passwords into rekey's file store");
    rekey.import_all(n, &rekey_passwords)?;

    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("tokio runtime")?;
    let sample = sample_indices(n);
    let mut rounds = Vec::with_capacity(options.rounds);
    for round in 1..=options.rounds {
        // rekey
        let before_verifiers = role_verifiers(cluster, REKEY_PREFIX)?;
        let before: Vec<String> = sample
            .iter()
            .map(|&i| rekey.get_password(&credential_name(i, n)))
            .collect::<Result<_>>()?;
        eprintln!(
            "rekey-bench: round {round}: rekey rotate --parallel {} ({n} roles)",
            options.parallel
        );
        let counters = server_counters(cluster)?;
        let run = rekey.rotate(options.parallel)?;
        if !run.success() {
            bail!(
                "rekey rotate failed in round {round} ({}); its stderr:\n{}",
                run.describe_exit(),
                tail(&run.stderr)
            );
        }
        if !run.stderr.trim().is_empty() {
            eprintln!(
                "rekey-bench: note: rekey rotate -q wrote to stderr:\n{}",
                tail(&run.stderr)
            );
        }
        let rekey_activity = activity_since(cluster, counters, n)?;
        check_all_changed(&before_verifiers, &role_verifiers(cluster, REKEY_PREFIX)?, n)
            .with_context(|| format!("round {round}: rekey rotate exited 0"))?;
        for (&i, old) in sample.iter().zip(&before) {
            let name = credential_name(i, n);
            let new = rekey.get_password(&name)?;
            if &new == old {
                bail!("round {round}: rekey's store still holds the old password of {name}");
            }
            let role = role_name(REKEY_PREFIX, i, n);
            runtime.block_on(async {
                floor::login(&server, &role, &new)
                    .await
                    .with_context(|| format!("round {round}: {name}: the stored new password does not log in"))?;
                floor::expect_refused(&server, &role, old)
                    .await
                    .with_context(|| format!("round {round}: {name}"))
            })?;
        }

        // floor
        eprintln!(
            "rekey-bench: round {round}: floor with {} workers ({n} roles)",
            options.parallel
        );
        let counters = server_counters(cluster)?;
        let cpu_before = self_cpu();
        let floor_time = runtime.block_on(floor::round(&server, &mut floor_roles, options.parallel))?;
        let floor_cpu = self_cpu().saturating_sub(cpu_before);
        let floor_activity = activity_since(cluster, counters, n)?;

        let r = Round {
            rekey: run.wall,
            rekey_rss_kib: run.max_rss_kib,
            rekey_cpu: run.cpu,
            floor_cpu,
            floor: floor_time,
            rekey_activity,
            floor_activity,
        };
        eprintln!(
            "rekey-bench: round {round}: rekey {:.2} s, floor {:.2} s",
            r.rekey.as_secs_f64(),
            r.floor.as_secs_f64()
        );
        rounds.push(r);
    }
    drop(runtime);

    eprintln!("rekey-bench: timing `rekey --version` {VERSION_RUNS} times");
    let mut version_ms = Vec::with_capacity(VERSION_RUNS);
    // One unmeasured run first, so the binary is in the page cache.
    let _ = run_measured(Command::new(&options.rekey).arg("--version"))?;
    for _ in 0..VERSION_RUNS {
        let run = run_measured(Command::new(&options.rekey).arg("--version"))?;
        if !run.success() {
            bail!("rekey --version failed ({})", run.describe_exit());
        }
        version_ms.push(run.wall.as_secs_f64() * 1000.0);
    }
    let version_mean_ms = version_ms.iter().sum::<f64>() / version_ms.len() as f64;
    let version_min_ms = version_ms.iter().copied().fold(f64::INFINITY, f64::min);

    Ok(Report {
        server_version,
        load: (load_start, load_average()),
        rekey_version,
        rounds,
        version_mean_ms,
        version_min_ms,
    })
}

/// The 1-minute load average from `/proc/loadavg`.
fn load_average() -> Option<f64> {
    std::fs::read_to_string("/proc/loadavg")
        .ok()?
        .split_whitespace()
        .next()?
        .parse()
        .ok()
}

/// The first, middle and last role: spot-checked after every rekey round.
fn sample_indices(n: usize) -> Vec<usize> {
    let mut v = vec![0, n / 2, n - 1];
    v.dedup();
    v
}

/// The last part of a child's stderr, for an error message.
fn tail(text: &str) -> String {
    const MAX: usize = 6000;
    let text = text.trim_end();
    if text.len() <= MAX {
        return text.to_owned();
    }
    let mut cut = text.len() - MAX;
    while !text.is_char_boundary(cut) {
        cut += 1;
    }
    format!("[... {cut} bytes cut ...]\n{}", &text[cut..])
}

/// Role name to its stored password verifier, for every role starting with `prefix`.
fn role_verifiers(cluster: &PgCluster, prefix: &str) -> Result<HashMap<String, String>> {
    let out = cluster.try_psql(&format!(
        "SELECT rolname || ' ' || coalesce(rolpassword, '') FROM pg_authid WHERE starts_with(rolname, {})",
        quote_literal(prefix)
    ))?;
    Ok(out
        .lines()
        .filter_map(|line| {
            line.split_once(' ')
                .map(|(name, verifier)| (name.to_owned(), verifier.to_owned()))
        })
        .collect())
}

/// Fails unless all `n` roles' verifiers changed between `before` and `after`, so a
/// rekey that exits 0 without doing the work cannot produce a figure.
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

/// How the benchmark runs the rekey binary: in its work directory, with its
/// configuration and the admin connection string in the environment.
struct Rekey {
    /// The binary.
    bin: PathBuf,
    /// The work directory holding `rekey.toml`, the store and the audit log.
    dir: PathBuf,
    /// The admin connection string, passed as `$REKEY_BENCH_ADMIN`.
    admin_url: String,
}

impl Rekey {
    fn config_path(&self) -> PathBuf {
        self.dir.join("rekey.toml")
    }

    /// Writes `rekey.toml`: one credential per role, all in one file store.
    fn write_config(&self, port: u16, n: usize, parallel: usize) -> Result<()> {
        let mut toml = format!(
            "[defaults]\nparallel = {parallel}\naudit_log = \"audit.jsonl\"\n\n\
             [stores.local]\ntype = \"file\"\npath = \"secrets.json\"\n"
        );
        for i in 0..n {
            let name = credential_name(i, n);
            let key = name.replacen("bench-", "bench/", 1);
            let role = role_name(REKEY_PREFIX, i, n);
            toml.push_str(&format!(
                "\n[[credentials]]\nname = \"{name}\"\nstore = \"local\"\nkey = \"{key}\"\n\
                 target = {{ type = \"postgres\", host = \"127.0.0.1\", port = {port}, dbname = \"postgres\", \
                 username = \"{role}\", admin = \"${{{ADMIN_ENV}}}\", sslmode = \"disable\" }}\n"
            ));
        }
        let path = self.config_path();
        std::fs::write(&path, toml).with_context(|| format!("cannot write {}", path.display()))
    }

    /// A command running rekey with the benchmark's configuration and environment.
    fn command(&self) -> Command {
        let mut cmd = Command::new(&self.bin);
        cmd.current_dir(&self.dir)
            .arg("-c")
            .arg(self.config_path())
            .env(ADMIN_ENV, &self.admin_url)
            .env_remove("REKEY_CONFIG")
            .env_remove("RUST_LOG");
        cmd
    }

    /// `rekey import NAME` with the password on stdin.
    fn import(&self, name: &str, password: &str) -> Result<()> {
        let mut child = self
            .command()
            .args(["-q", "import", name])
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .with_context(|| format!("cannot start {}", self.bin.display()))?;
        let mut stdin = child.stdin.take().context("rekey import: no stdin")?;
        stdin
            .write_all(password.as_bytes())
            .context("rekey import: writing stdin")?;
        drop(stdin);
        let out = child.wait_with_output().context("rekey import")?;
        if !out.status.success() {
            bail!(
                "rekey import {name} failed ({}): {}",
                out.status,
                tail(&String::from_utf8_lossy(&out.stderr))
            );
        }
        Ok(())
    }

    /// Imports every role's password, a few processes at a time (setup, not measured).
    fn import_all(&self, n: usize, passwords: &[String]) -> Result<()> {
        let next = AtomicUsize::new(0);
        let first_error: Mutex<Option<anyhow::Error>> = Mutex::new(None);
        std::thread::scope(|scope| {
            for _ in 0..IMPORT_WORKERS.min(n) {
                scope.spawn(|| loop {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    if i >= n || first_error.lock().map(|e| e.is_some()).unwrap_or(true) {
                        break;
                    }
                    if let Err(e) = self.import(&credential_name(i, n), &passwords[i]) {
                        if let Ok(mut slot) = first_error.lock() {
                            slot.get_or_insert(e);
                        }
                        break;
                    }
                });
            }
        });
        match first_error.into_inner() {
            Ok(Some(e)) => Err(e),
            Ok(None) => Ok(()),
            Err(_) => bail!("an import worker panicked"),
        }
    }

    /// `rekey get NAME --field password`.
    fn get_password(&self, name: &str) -> Result<String> {
        let out = self
            .command()
            .args(["-q", "get", name, "--field", "password"])
            .stdin(Stdio::null())
            .output()
            .with_context(|| format!("cannot start {}", self.bin.display()))?;
        if !out.status.success() {
            bail!(
                "rekey get {name} failed ({}): {}",
                out.status,
                tail(&String::from_utf8_lossy(&out.stderr))
            );
        }
        let text = String::from_utf8(out.stdout).context("rekey get printed non-UTF-8")?;
        let password = text.trim_end_matches(['\n', '\r']).to_owned();
        if password.is_empty() {
            bail!("rekey get {name} printed an empty password");
        }
        Ok(password)
    }

    /// The measured run: `rekey rotate --parallel P -q` over every credential.
    fn rotate(&self, parallel: usize) -> Result<Measured> {
        let mut cmd = self.command();
        cmd.args(["-q", "rotate", "--parallel", &parallel.to_string()]);
        run_measured(&mut cmd)
    }
}

fn ms_per_role(total: Duration, n: usize) -> f64 {
    total.as_secs_f64() * 1000.0 / n as f64
}

fn kib_to_mb(kib: u64) -> f64 {
    kib as f64 / 1024.0
}

fn verdict(met: bool) -> &'static str {
    if met {
        "met"
    } else {
        "MISSED"
    }
}

fn round2(x: f64) -> f64 {
    (x * 100.0).round() / 100.0
}

fn print_report(options: &Options, report: &Report) {
    let n = options.roles;
    let best_rekey = report.rounds.iter().map(|r| r.rekey).min().unwrap_or_default();
    let best_floor = report.rounds.iter().map(|r| r.floor).min().unwrap_or_default();
    let peak_rss_kib = report.rounds.iter().map(|r| r.rekey_rss_kib).max().unwrap_or_default();
    let floor_ms = ms_per_role(best_floor, n);
    let rekey_ms = ms_per_role(best_rekey, n);
    let ratio = if floor_ms > 0.0 { rekey_ms / floor_ms } else { f64::NAN };
    let rss_mb = kib_to_mb(peak_rss_kib);

    println!();
    println!(
        "roles={n} parallel={} rounds={} server=PostgreSQL {} rekey=\"{}\"",
        options.parallel, options.rounds, report.server_version, report.rekey_version
    );
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    let show = |l: Option<f64>| l.map_or_else(|| "?".to_owned(), |l| format!("{l:.2}"));
    println!(
        "machine: {cores} cores, 1-min load average {} at start, {} at end (figures are only comparable on an idle machine)",
        show(report.load.0),
        show(report.load.1)
    );
    for (i, r) in report.rounds.iter().enumerate() {
        println!(
            "round {}    rekey {:.2} s ({:.1} ms/role, peak RSS {:.1} MB)   floor {:.2} s ({:.1} ms/role)   ratio {:.2}x",
            i + 1,
            r.rekey.as_secs_f64(),
            ms_per_role(r.rekey, n),
            kib_to_mb(r.rekey_rss_kib),
            r.floor.as_secs_f64(),
            ms_per_role(r.floor, n),
            ms_per_role(r.rekey, n) / ms_per_role(r.floor, n),
        );
        println!(
            "           per role: rekey {:.1} ms CPU, {:.1} logins, {:.1} transactions   \
             floor {:.1} ms CPU, {:.1} logins, {:.1} transactions",
            ms_per_role(r.rekey_cpu, n),
            r.rekey_activity.sessions,
            r.rekey_activity.xacts,
            ms_per_role(r.floor_cpu, n),
            r.floor_activity.sessions,
            r.floor_activity.xacts,
        );
    }
    println!("best of {} round(s):", report.rounds.len());
    println!(
        "floor      total {:.2} s   {:.1} ms/role",
        best_floor.as_secs_f64(),
        floor_ms
    );
    println!(
        "rekey      total {:.2} s   {:.1} ms/role   peak RSS {:.1} MB (goal < {GOAL_RSS_MB} MB: {})   ratio {:.2}x (goal <= {GOAL_RATIO}x: {})",
        best_rekey.as_secs_f64(),
        rekey_ms,
        rss_mb,
        verdict(rss_mb < GOAL_RSS_MB),
        ratio,
        verdict(ratio <= GOAL_RATIO),
    );
    println!(
        "rekey --version   mean {:.1} ms  min {:.1} ms over {VERSION_RUNS} runs (goal < {GOAL_VERSION_MS} ms: {})",
        report.version_mean_ms,
        report.version_min_ms,
        verdict(report.version_mean_ms < GOAL_VERSION_MS),
    );
    let json = serde_json::json!({
        "floor_ms_per_role": round2(floor_ms),
        "rekey_ms_per_role": round2(rekey_ms),
        "ratio": round2(ratio),
        "peak_rss_mb": round2(rss_mb),
        "version_ms": round2(report.version_mean_ms),
        "version_min_ms": round2(report.version_min_ms),
        "floor_total_s": round2(best_floor.as_secs_f64()),
        "rekey_total_s": round2(best_rekey.as_secs_f64()),
        "rekey_cpu_ms_per_role": report.rounds.last().map(|r| round2(ms_per_role(r.rekey_cpu, n))),
        "floor_cpu_ms_per_role": report.rounds.last().map(|r| round2(ms_per_role(r.floor_cpu, n))),
        "rekey_logins_per_role": report.rounds.last().map(|r| round2(r.rekey_activity.sessions)),
        "rekey_xacts_per_role": report.rounds.last().map(|r| round2(r.rekey_activity.xacts)),
        "floor_logins_per_role": report.rounds.last().map(|r| round2(r.floor_activity.sessions)),
        "floor_xacts_per_role": report.rounds.last().map(|r| round2(r.floor_activity.xacts)),
        "roles": n,
        "parallel": options.parallel,
        "rounds": options.rounds,
        "load_start": report.load.0,
        "load_end": report.load.1,
        "server_version": report.server_version,
    });
    println!("{json}");
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(list: &[&str]) -> Vec<String> {
        list.iter().map(|s| (*s).to_owned()).collect()
    }

    #[test]
    fn parses_defaults_and_flags() {
        let o = parse_args(args(&[])).unwrap().unwrap();
        assert_eq!((o.roles, o.parallel, o.rounds), (200, 8, 2));
        assert!(o.rekey.ends_with("rekey"));
        let o = parse_args(args(&[
            "--roles",
            "10",
            "--parallel=4",
            "--rounds",
            "3",
            "--rekey",
            "/x/rekey",
        ]))
        .unwrap()
        .unwrap();
        assert_eq!((o.roles, o.parallel, o.rounds), (10, 4, 3));
        assert_eq!(o.rekey, PathBuf::from("/x/rekey"));
        assert!(parse_args(args(&["--help"])).unwrap().is_none());
        assert!(parse_args(args(&["--roles", "0"])).is_err());
        assert!(parse_args(args(&["--roles"])).is_err());
        assert!(parse_args(args(&["--bogus"])).is_err());
    }

    #[test]
    fn names_are_padded_and_distinct() {
        assert_eq!(role_name(REKEY_PREFIX, 7, 200), "bench_rk_007");
        assert_eq!(credential_name(7, 200), "bench-007");
        assert_eq!(credential_name(7, 2000), "bench-0007");
        assert_eq!(sample_indices(1), vec![0]);
        assert_eq!(sample_indices(200), vec![0, 100, 199]);
    }

    #[test]
    fn all_changed_check_counts_roles() {
        let before: HashMap<String, String> = [("a", "1"), ("b", "2")].map(|(k, v)| (k.into(), v.into())).into();
        let mut after = before.clone();
        assert!(check_all_changed(&before, &after, 2).is_err());
        after.insert("a".into(), "3".into());
        assert!(check_all_changed(&before, &after, 2).is_err());
        after.insert("b".into(), "4".into());
        assert!(check_all_changed(&before, &after, 2).is_ok());
    }
}
