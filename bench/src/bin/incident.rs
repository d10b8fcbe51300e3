//! `rekey-bench-incident`: how fast incident mode is (issue 10's speed goals).
//!
//! 1. `rekey leaked --rotate` of one PostgreSQL credential with a live session to kill,
//!    from process start to exit, with each step's time from the JSON report.
//!    Goal: under 0.5 s.
//! 2. `rekey leaked` matching one pasted `.env` file against N configured credentials
//!    (default 5,000; the file store is seeded in-process). Goal: under 1 s.
//!
//! It prints figures; it fails only when rekey did not do the work.
//!
//! ```text
//! cargo build --release && cargo run --release -p rekey-bench --bin rekey-bench-incident -- --credentials 5000
//! ```

use anyhow::{bail, Context, Result};
use rekey_testbed::{quote_ident, PgCluster};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const ADMIN_ENV: &str = "REKEY_BENCH_ADMIN";
const GOAL_ROTATE: Duration = Duration::from_millis(500);
const GOAL_LOOKUP: Duration = Duration::from_secs(1);

fn main() {
    if let Err(e) = run() {
        eprintln!("rekey-bench-incident: error: {e:#}");
        std::process::exit(1);
    }
}

fn run() -> Result<()> {
    let mut credentials = 5000usize;
    let mut rekey = std::env::current_exe()?.with_file_name("rekey");
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--credentials" => credentials = args.next().context("--credentials N")?.parse()?,
            "--rekey" => rekey = PathBuf::from(args.next().context("--rekey PATH")?),
            "-h" | "--help" => {
                println!("usage: rekey-bench-incident [--credentials N] [--rekey PATH]");
                return Ok(());
            }
            other => bail!("unknown argument {other:?}"),
        }
    }
    if !rekey.exists() {
        bail!("{} not found: cargo build --release first", rekey.display());
    }
    let pg = PgCluster::start().context("start PostgreSQL")?;
    let dir = tempfile::tempdir()?;
    rotate_with_session(&pg, dir.path(), &rekey)?;
    lookup(dir.path(), &rekey, credentials)?;
    Ok(())
}

fn rekey_cmd(rekey: &Path, dir: &Path, pg: Option<&PgCluster>) -> Command {
    let mut cmd = Command::new(rekey);
    cmd.current_dir(dir).env("NO_COLOR", "1").env_remove("REKEY_CONFIG");
    if let Some(pg) = pg {
        cmd.env(ADMIN_ENV, pg.admin_url());
    }
    cmd
}

fn feed(mut cmd: Command, stdin: &str) -> Result<(Duration, std::process::Output)> {
    cmd.stdin(Stdio::piped()).stdout(Stdio::piped()).stderr(Stdio::piped());
    let start = Instant::now();
    let mut child = cmd.spawn()?;
    child.stdin.take().context("stdin")?.write_all(stdin.as_bytes())?;
    let output = child.wait_with_output()?;
    Ok((start.elapsed(), output))
}

fn rotate_with_session(pg: &PgCluster, dir: &Path, rekey: &Path) -> Result<()> {
    let role = "bench_incident_app";
    let leaked = "bench-leaked-Password-123";
    pg.create_role(role, leaked);
    let config = dir.join("rotate.toml");
    std::fs::write(
        &config,
        format!(
            "[stores.local]\ntype = \"file\"\npath = \"rotate-secrets.json\"\n\n[[credentials]]\nname = \"app-db\"\n\
             store = \"local\"\nkey = \"app/db\"\nstrategy = \"single\"\ntarget = {{ type = \"postgres\", host = \"127.0.0.1\", \
             port = {}, dbname = \"postgres\", username = \"{role}\", admin = \"${{{ADMIN_ENV}}}\", sslmode = \"disable\" }}\n",
            pg.port()
        ),
    )?;
    let mut cmd = rekey_cmd(rekey, dir, Some(pg));
    cmd.args(["-c", config.to_str().unwrap(), "import", "app-db"]);
    let (_, out) = feed(cmd, leaked)?;
    if !out.status.success() {
        bail!("import failed: {}", String::from_utf8_lossy(&out.stderr));
    }
    // A live session with the leaked password, idle in a long query.
    let mut session = Command::new("psql")
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
        ])
        .args(["-Atc", "SELECT pg_sleep(60)"])
        .env("PGPASSWORD", leaked)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()?;
    let deadline = Instant::now() + Duration::from_secs(20);
    while pg.psql(&format!(
        "SELECT count(*) FROM pg_stat_activity WHERE usename = '{role}'"
    )) == "0"
    {
        if Instant::now() > deadline {
            bail!("the session never appeared");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let mut cmd = rekey_cmd(rekey, dir, Some(pg));
    cmd.args(["-c", config.to_str().unwrap(), "-o", "json", "leaked", "--rotate"]);
    let (took, out) = feed(cmd, leaked)?;
    let killed = session.wait_timeout_ok(Duration::from_secs(5));
    pg.drop_role(role);
    let _ = quote_ident(role);
    if !out.status.success() {
        bail!("leaked --rotate failed: {}", String::from_utf8_lossy(&out.stderr));
    }
    if !killed {
        bail!("the session with the leaked password was not ended");
    }
    let report: serde_json::Value = serde_json::from_slice(&out.stdout)?;
    println!("leaked --rotate, one PostgreSQL credential, one live session:");
    for step in report["credentials"][0]["steps"].as_array().into_iter().flatten() {
        println!(
            "  {:<12} {:>8} {:>8.1} ms",
            step["step"].as_str().unwrap_or("?"),
            step["status"].as_str().unwrap_or("?"),
            step["duration_ms"].as_f64().unwrap_or(f64::NAN)
        );
    }
    println!(
        "  total {:.0} ms from process start to exit (goal < {} ms): {}",
        took.as_secs_f64() * 1e3,
        GOAL_ROTATE.as_millis(),
        if took < GOAL_ROTATE { "met" } else { "MISSED" }
    );
    Ok(())
}

trait WaitTimeout {
    fn wait_timeout_ok(&mut self, limit: Duration) -> bool;
}

impl WaitTimeout for std::process::Child {
    fn wait_timeout_ok(&mut self, limit: Duration) -> bool {
        let deadline = Instant::now() + limit;
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.try_wait() {
                return true;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        let _ = self.kill();
        let _ = self.wait();
        false
    }
}

fn lookup(dir: &Path, rekey: &Path, n: usize) -> Result<()> {
    let store_path = dir.join("fleet-secrets.json");
    let mut config = String::from("[stores.local]\ntype = \"file\"\npath = \"fleet-secrets.json\"\n\n");
    for i in 0..n {
        config.push_str(&format!(
            "[[credentials]]\nname = \"svc-{i}\"\nstore = \"local\"\nkey = \"fleet/{i}\"\nstrategy = \"single\"\n\
             target = {{ type = \"postgres\", host = \"db{}.internal\", port = 5432, dbname = \"app\", username = \"svc_{i}\" }}\n",
            i % 50
        ));
    }
    let config_path = dir.join("fleet.toml");
    std::fs::write(&config_path, config)?;
    // The store file written directly in the file store's format (one write, not N).
    let seeded = Instant::now();
    let mut keys = serde_json::Map::new();
    for i in 0..n {
        keys.insert(
            format!("fleet/{i}"),
            serde_json::json!({"versions": [{
                "id": format!("v{i}"), "stages": ["current"], "created": "2026-11-01T00:00:00Z", "revoked": null,
                "value": {"engine": "postgres", "host": format!("db{}.internal", i % 50), "port": 5432,
                          "username": format!("svc_{i}"), "password": format!("fleet-password-{i:06}-xyzXYZ")}
            }]}),
        );
    }
    let text = serde_json::to_vec(&serde_json::json!({"format": 1, "keys": keys}))?;
    {
        use std::os::unix::fs::OpenOptionsExt;
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&store_path)?;
        f.write_all(&text)?;
    }
    let target = n / 2;
    let env = format!(
        "# pasted from a public repository\nAPP_ENV=production\nDB_HOST=db{}.internal\nDB_USER=svc_{target}\n\
         DB_PASSWORD=fleet-password-{target:06}-xyzXYZ\nREDIS_URL=redis://:not-ours-at-all-123@cache:6379\n\
         SENTRY_DSN=https://abc123def456@o0.ingest.example/1\nSECRET_KEY_BASE=aabbccddeeff00112233\n",
        target % 50
    );
    let mut cmd = rekey_cmd(rekey, dir, None);
    cmd.args(["-c", config_path.to_str().unwrap(), "leaked"]);
    let (took, out) = feed(cmd, &env)?;
    let stdout = String::from_utf8_lossy(&out.stdout);
    if !out.status.success() || !stdout.starts_with(&format!("svc-{target}\t")) {
        bail!(
            "leaked did not find svc-{target}: {} {}",
            stdout,
            String::from_utf8_lossy(&out.stderr)
        );
    }
    println!(
        "leaked, one .env file against {n} credentials (store seeded in {:.1} s): {:.0} ms (goal < {} ms): {}",
        seeded.elapsed().as_secs_f64(),
        took.as_secs_f64() * 1e3,
        GOAL_LOOKUP.as_millis(),
        if took < GOAL_LOOKUP { "met" } else { "MISSED" }
    );
    Ok(())
}
