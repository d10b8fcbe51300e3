//! `rekey-bench-config`: how long loading a configuration of N credentials takes, in
//! process (`rekey::config::Config::load`: read, parse, expand `${VAR}`, check), apart
//! from what the `validate` command adds around it (process start, building every
//! target, the store and lock checks). Issue 11's goal: under 100 ms for 10,000.
//!
//! The configuration has the scale benchmark's shape: one file store, one `postgres`
//! credential per role with the admin connection string from the environment. Prints the
//! minimum and the median of the runs and one JSON line. A benchmark, not a test.
//!
//! ```sh
//! cargo run --release -p rekey-bench --bin rekey-bench-config -- 10000 20
//! ```

use anyhow::{bail, Context, Result};
use std::time::{Duration, Instant};

const ADMIN_ENV: &str = "REKEY_BENCH_ADMIN";

fn main() -> Result<()> {
    let mut args = std::env::args().skip(1);
    let credentials: usize = args
        .next()
        .as_deref()
        .unwrap_or("10000")
        .parse()
        .context("credentials")?;
    let runs: usize = args.next().as_deref().unwrap_or("20").parse().context("runs")?;
    if runs == 0 {
        bail!("runs must be at least 1");
    }
    let dir = tempfile::Builder::new().prefix("rekey-bench-config-").tempdir()?;
    let mut toml = String::from(
        "[defaults]\nparallel = 16\naudit_log = \"audit.jsonl\"\n\n[stores.local]\ntype = \"file\"\npath = \"secrets.json\"\n",
    );
    for i in 0..credentials {
        toml.push_str(&format!(
            "\n[[credentials]]\nname = \"scale-{i:05}\"\nstore = \"local\"\nkey = \"scale/{i:05}\"\n\
             target = {{ type = \"postgres\", host = \"127.0.0.1\", port = 5432, dbname = \"postgres\", \
             username = \"rekey_scale_{i:05}\", admin = \"${{{ADMIN_ENV}}}\", sslmode = \"disable\" }}\n"
        ));
    }
    let path = dir.path().join("rekey.toml");
    std::fs::write(&path, &toml)?;
    // A placeholder: loading contacts no server.
    std::env::set_var(ADMIN_ENV, "postgres://rekey_admin:not-a-secret@127.0.0.1:5432/postgres");
    let mut times: Vec<Duration> = Vec::with_capacity(runs);
    for _ in 0..runs {
        let started = Instant::now();
        let config = rekey::config::Config::load(&path).map_err(|e| anyhow::anyhow!("{e}"))?;
        times.push(started.elapsed());
        if config.credentials.len() != credentials {
            bail!("loaded {} credentials, wrote {credentials}", config.credentials.len());
        }
    }
    times.sort();
    let ms = |d: Duration| d.as_secs_f64() * 1000.0;
    let (min, median) = (ms(times[0]), ms(times[times.len() / 2]));
    println!(
        "Config::load of {credentials} credentials ({:.1} MB): min {min:.1} ms, median {median:.1} ms over {runs} runs",
        toml.len() as f64 / 1e6
    );
    println!(
        "{}",
        serde_json::json!({"credentials": credentials, "runs": runs, "min_ms": min, "median_ms": median})
    );
    Ok(())
}
