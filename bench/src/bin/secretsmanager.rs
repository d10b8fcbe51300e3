//! rekey against AWS's own rotation function, side by side on one moto Secrets Manager
//! and one throwaway SCRAM PostgreSQL cluster.
//!
//! N roles and N secrets for rekey, N more for AWS's published single-user PostgreSQL
//! rotation function (`SecretsManagerRDSPostgreSQLRotationSingleUser/lambda_function.py`
//! of aws-samples/aws-secrets-manager-rotation-lambdas, run locally as a Python module;
//! that code is read from a checkout named by `REKEY_AWS_LAMBDAS` and never copied into
//! this project). Each round rotates every secret once with `rekey rotate --parallel P`
//! and once with the function (P worker processes, each running the four steps
//! createSecret, setSecret, testSecret, finishSecret per secret, as Secrets Manager
//! would invoke them). Both talk to moto through a counting proxy, so the Secrets
//! Manager calls per rotation are counted, not estimated. Prints figures; never a test.
//!
//! ```sh
//! cargo build --release
//! REKEY_AWS_LAMBDAS=/path/to/aws-secrets-manager-rotation-lambdas \
//! REKEY_BENCH_PYTHON=/tmp/lambda-venv/bin/python \
//!   cargo run --release -p rekey-bench --bin secretsmanager -- --secrets 100 --parallel 8 --rounds 2
//! ```

use anyhow::{bail, Context, Result};
use rekey_testbed::{quote_ident, quote_literal, CountingProxy, MotoServer, PgCluster};
use std::collections::{BTreeMap, HashMap};
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode, Stdio};
use std::time::{Duration, Instant};

/// The checkout of aws-samples/aws-secrets-manager-rotation-lambdas.
const LAMBDAS_ENV: &str = "REKEY_AWS_LAMBDAS";
/// The Python that runs the function (it needs boto3 and PyGreSQL: `pg`, `pgdb`).
const PYTHON_ENV: &str = "REKEY_BENCH_PYTHON";
/// The function, inside the checkout.
const FUNCTION: &str = "SecretsManagerRDSPostgreSQLRotationSingleUser/lambda_function.py";

const HOW_TO_GET_LAMBDAS: &str = "set REKEY_AWS_LAMBDAS to a checkout of AWS's rotation functions: \
     `git clone --depth 1 https://github.com/aws-samples/aws-secrets-manager-rotation-lambdas /tmp/rotation-lambdas` \
     then REKEY_AWS_LAMBDAS=/tmp/rotation-lambdas (a bare clone works too: the file is read with `git show`)";
const HOW_TO_GET_PYTHON: &str = "the function needs boto3 and PyGreSQL (modules `pg`, `pgdb`, built against libpq): \
     `python3 -m venv --system-site-packages /tmp/lambda-venv && /tmp/lambda-venv/bin/pip install PyGreSQL boto3`, \
     then REKEY_BENCH_PYTHON=/tmp/lambda-venv/bin/python";

/// Drives the function as Secrets Manager does: one rotation per secret, the four steps
/// in order, in `workers` processes (a Lambda container handles one invocation at a
/// time). Secrets Manager itself starts a rotation by creating the new version with
/// `AWSPENDING` and no value, which no public API can do; the driver therefore calls the
/// function's `create_secret` directly, after the one `DescribeSecret` that
/// `lambda_handler` makes before it, and `lambda_handler` for the three other steps.
const DRIVER: &str = r#"
import json, multiprocessing, os, sys, time, uuid
sys.path.insert(0, os.environ["REKEY_BENCH_FUNCTION_DIR"])
import boto3
import lambda_function

def rotate(arn):
    client = boto3.client("secretsmanager", endpoint_url=os.environ["SECRETS_MANAGER_ENDPOINT"])
    token = str(uuid.uuid4())
    client.describe_secret(SecretId=arn)
    lambda_function.create_secret(client, arn, token)
    for step in ("setSecret", "testSecret", "finishSecret"):
        lambda_function.lambda_handler({"SecretId": arn, "ClientRequestToken": token, "Step": step}, None)
    return arn

if __name__ == "__main__":
    import logging
    logging.getLogger().setLevel(logging.WARNING)
    lambda_function.logger.setLevel(logging.WARNING)
    names = [line.strip() for line in sys.stdin if line.strip()]
    started = time.monotonic()
    with multiprocessing.get_context("fork").Pool(int(sys.argv[1])) as pool:
        done = pool.map(rotate, names, chunksize=1)
    print(json.dumps({"rotated": len(done), "seconds": time.monotonic() - started}))
"#;

/// Creates secrets (JSON lines `{"name", "value"}` on stdin) and reads current values
/// back (`read` mode: names on stdin, `{"name": password}` out). Setup and checks only.
const SECRETS: &str = r#"
import json, os, sys
import boto3
sm = boto3.client("secretsmanager", endpoint_url=os.environ["SECRETS_MANAGER_ENDPOINT"])
if sys.argv[1] == "create":
    for line in sys.stdin:
        item = json.loads(line)
        sm.create_secret(Name=item["name"], SecretString=json.dumps(item["value"]))
else:
    out = {}
    for line in sys.stdin:
        name = line.strip()
        if name:
            value = sm.get_secret_value(SecretId=name, VersionStage="AWSCURRENT")
            out[name] = json.loads(value["SecretString"])["password"]
    print(json.dumps(out))
"#;

struct Options {
    secrets: usize,
    parallel: usize,
    rounds: usize,
    rekey: PathBuf,
    python: String,
    lambdas: Option<PathBuf>,
}

fn parse_args() -> Result<Options> {
    let mut options = Options {
        secrets: 100,
        parallel: 8,
        rounds: 2,
        rekey: std::env::current_exe()
            .context("cannot find this program's path")?
            .with_file_name("rekey"),
        python: std::env::var(PYTHON_ENV).unwrap_or_else(|_| "python3".to_owned()),
        lambdas: std::env::var_os(LAMBDAS_ENV).map(PathBuf::from),
    };
    let mut args = std::env::args().skip(1);
    while let Some(flag) = args.next() {
        let mut value = || args.next().with_context(|| format!("{flag} needs a value"));
        match flag.as_str() {
            "--secrets" => options.secrets = value()?.parse().context("--secrets")?,
            "--parallel" => options.parallel = value()?.parse().context("--parallel")?,
            "--rounds" => options.rounds = value()?.parse().context("--rounds")?,
            "--rekey" => options.rekey = PathBuf::from(value()?),
            "--python" => options.python = value()?,
            "-h" | "--help" => {
                println!(
                    "usage: secretsmanager [--secrets N (100)] [--parallel P (8)] [--rounds R (2)] [--rekey PATH] \
                     [--python PATH]\nenvironment: {LAMBDAS_ENV} (required), {PYTHON_ENV}"
                );
                std::process::exit(0);
            }
            other => bail!("unknown argument {other:?}"),
        }
    }
    if options.secrets == 0 || options.parallel == 0 || options.rounds == 0 {
        bail!("--secrets, --parallel and --rounds must be at least 1");
    }
    Ok(options)
}

/// The function's source, from a checkout (or a bare clone, through `git show`),
/// written to `dir/lambda_function.py`.
fn install_function(lambdas: &Path, dir: &Path) -> Result<()> {
    let file = lambdas.join(FUNCTION);
    let source = if file.is_file() {
        std::fs::read_to_string(&file).with_context(|| format!("reading {}", file.display()))?
    } else {
        let out = Command::new("git")
            .arg("-C")
            .arg(lambdas)
            .args(["show", &format!("HEAD:{FUNCTION}")])
            .output()
            .context("running git")?;
        if !out.status.success() {
            bail!(
                "{} has no {FUNCTION} (nor does its git HEAD); {HOW_TO_GET_LAMBDAS}",
                lambdas.display()
            );
        }
        String::from_utf8(out.stdout).context("the function is not UTF-8")?
    };
    std::fs::write(dir.join("lambda_function.py"), source)?;
    Ok(())
}

fn check_python(python: &str) -> Result<String> {
    let out = Command::new(python)
        .args([
            "-c",
            "import sys, boto3, pg, pgdb; print(sys.version.split()[0], 'boto3', boto3.__version__, 'PyGreSQL', pg.version)",
        ])
        .output()
        .with_context(|| format!("cannot run {python}; {HOW_TO_GET_PYTHON}"))?;
    if !out.status.success() {
        bail!(
            "{python} cannot import boto3/pg/pgdb ({}); {HOW_TO_GET_PYTHON}",
            String::from_utf8_lossy(&out.stderr).lines().last().unwrap_or("")
        );
    }
    Ok(String::from_utf8_lossy(&out.stdout).trim().to_owned())
}

fn random_password() -> Result<String> {
    let mut bytes = [0u8; 18];
    std::fs::File::open("/dev/urandom")?.read_exact(&mut bytes)?;
    Ok(bytes.iter().map(|b| format!("{b:02x}")).collect())
}

/// Runs `program` with `stdin`; fails with its stderr when it fails.
fn run_with_input(mut command: Command, stdin: &str, what: &str) -> Result<(String, Duration)> {
    let started = Instant::now();
    let mut child = command
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .with_context(|| format!("cannot start {what}"))?;
    child.stdin.take().context("stdin")?.write_all(stdin.as_bytes())?;
    let out = child.wait_with_output()?;
    let elapsed = started.elapsed();
    if !out.status.success() {
        let stderr = String::from_utf8_lossy(&out.stderr);
        let tail: Vec<&str> = stderr.lines().rev().take(15).collect();
        bail!(
            "{what} failed ({}):\n{}",
            out.status,
            tail.into_iter().rev().collect::<Vec<_>>().join("\n")
        );
    }
    Ok((String::from_utf8_lossy(&out.stdout).into_owned(), elapsed))
}

struct Bed {
    moto: MotoServer,
    proxy: CountingProxy,
    cluster: PgCluster,
    dir: tempfile::TempDir,
    python: String,
    n: usize,
}

impl Bed {
    fn aws_env(&self, command: &mut Command, endpoint: &str) {
        let (id, secret) = self.moto.admin_key();
        command
            .env("AWS_ACCESS_KEY_ID", id)
            .env("AWS_SECRET_ACCESS_KEY", secret)
            .env("AWS_DEFAULT_REGION", self.moto.region())
            .env("AWS_REGION", self.moto.region())
            .env("AWS_EC2_METADATA_DISABLED", "true")
            .env("SECRETS_MANAGER_ENDPOINT", endpoint)
            .env_remove("AWS_PROFILE")
            .env_remove("AWS_ENDPOINT_URL");
    }

    fn python(&self, script: &str, args: &[&str], stdin: &str, endpoint: &str) -> Result<(String, Duration)> {
        let mut command = Command::new(&self.python);
        command.arg("-c").arg(script).args(args);
        self.aws_env(&mut command, endpoint);
        command.env("REKEY_BENCH_FUNCTION_DIR", self.dir.path().join("function"));
        run_with_input(command, stdin, "python")
    }

    fn role(&self, side: &str, i: usize) -> String {
        format!("bench_{side}_{i:03}")
    }

    fn secret(&self, side: &str, i: usize) -> String {
        format!("bench/{side}/{i:03}")
    }

    /// Current passwords of a side's secrets, read directly from moto (not counted).
    fn passwords(&self, side: &str) -> Result<HashMap<String, String>> {
        let names: String = (0..self.n).map(|i| self.secret(side, i) + "\n").collect();
        let (out, _) = self.python(SECRETS, &["read"], &names, &self.moto.endpoint())?;
        serde_json::from_str(&out).context("reading the secrets back")
    }

    /// Every role's SCRAM verifier.
    fn verifiers(&self) -> Result<HashMap<String, String>> {
        let out = self.cluster.try_psql(
            "SELECT rolname || ' ' || coalesce(rolpassword, '') FROM pg_authid WHERE starts_with(rolname, 'bench_')",
        )?;
        Ok(out
            .lines()
            .filter_map(|l| l.split_once(' '))
            .map(|(a, b)| (a.to_owned(), b.to_owned()))
            .collect())
    }

    fn login(&self, user: &str, password: &str) -> Result<bool> {
        let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
        runtime.block_on(async {
            let mut config = tokio_postgres::Config::new();
            config
                .host("127.0.0.1")
                .port(self.cluster.port())
                .user(user)
                .password(password)
                .dbname("postgres")
                .ssl_mode(tokio_postgres::config::SslMode::Disable);
            match config.connect(tokio_postgres::NoTls).await {
                Ok((client, connection)) => {
                    drop(client);
                    let _ = connection.await;
                    Ok(true)
                }
                Err(e) if e.code() == Some(&tokio_postgres::error::SqlState::INVALID_PASSWORD) => Ok(false),
                Err(e) => bail!("login as {user}: {e}"),
            }
        })
    }

    /// After a phase: every role of `side` has a new verifier, and the first, middle and
    /// last secret's current password logs in while the one before is refused.
    fn check_rotated(
        &self,
        side: &str,
        before: &HashMap<String, String>,
        old: &HashMap<String, String>,
    ) -> Result<HashMap<String, String>> {
        let after = self.verifiers()?;
        for i in 0..self.n {
            let role = self.role(side, i);
            if before.get(&role) == after.get(&role) {
                bail!("{side}: role {role} still has its old password");
            }
        }
        let now = self.passwords(side)?;
        for i in [0, self.n / 2, self.n - 1] {
            let (role, secret) = (self.role(side, i), self.secret(side, i));
            if !self.login(&role, &now[&secret])? {
                bail!("{side}: the current secret of {secret} does not log in");
            }
            if self.login(&role, &old[&secret])? {
                bail!("{side}: the previous secret of {secret} still logs in");
            }
        }
        Ok(now)
    }
}

/// Secrets Manager calls by operation, and how many.
fn tally(calls: &[String]) -> BTreeMap<String, usize> {
    let mut map = BTreeMap::new();
    for call in calls {
        *map.entry(call.trim_start_matches("secretsmanager.").to_owned())
            .or_default() += 1;
    }
    map
}

struct Phase {
    seconds: f64,
    calls: Vec<String>,
}

fn main() -> ExitCode {
    match run() {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("secretsmanager bench: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn run() -> Result<()> {
    let options = parse_args()?;
    let Some(lambdas) = options.lambdas.clone() else {
        bail!("{LAMBDAS_ENV} is not set; {HOW_TO_GET_LAMBDAS}");
    };
    let python_version = check_python(&options.python)?;
    if !options.rekey.is_file() {
        bail!(
            "no rekey binary at {}: `cargo build --release` first, or pass --rekey PATH",
            options.rekey.display()
        );
    }
    let rekey_version = String::from_utf8_lossy(&Command::new(&options.rekey).arg("--version").output()?.stdout)
        .trim()
        .to_owned();
    let dir = tempfile::tempdir()?;
    std::fs::create_dir(dir.path().join("function"))?;
    install_function(&lambdas, &dir.path().join("function"))?;

    eprintln!("starting moto and a throwaway PostgreSQL cluster");
    let moto = MotoServer::start().context("starting moto")?;
    let proxy = CountingProxy::start(moto.port()).context("starting the counting proxy")?;
    let cluster = PgCluster::start().context("starting PostgreSQL")?;
    let bed = Bed {
        moto,
        proxy,
        cluster,
        dir,
        python: options.python.clone(),
        n: options.secrets,
    };
    let n = bed.n;

    // Setup (not measured): roles and secrets in the rotation JSON shape.
    let mut sql = String::new();
    let mut items = String::new();
    let mut old: HashMap<&str, HashMap<String, String>> = HashMap::new();
    for side in ["rk", "lb"] {
        for i in 0..n {
            let (role, secret, password) = (bed.role(side, i), bed.secret(side, i), random_password()?);
            sql.push_str(&format!(
                "CREATE ROLE {} LOGIN PASSWORD {};\n",
                quote_ident(&role),
                quote_literal(&password)
            ));
            let mut value = serde_json::json!({"engine": "postgres", "host": "127.0.0.1", "port": bed.cluster.port(),
                "username": role, "password": password, "dbname": "postgres"});
            if side == "lb" {
                // The function tries TLS first unless told; the test server has none.
                value["ssl"] = serde_json::json!(false);
            }
            items.push_str(&serde_json::json!({"name": secret, "value": value}).to_string());
            items.push('\n');
            old.entry(side).or_default().insert(secret, password);
        }
    }
    bed.cluster.try_psql(&sql)?;
    bed.python(SECRETS, &["create"], &items, &bed.moto.endpoint())?;
    let config: String = (0..n)
        .map(|i| {
            format!(
                "[[credentials]]\nname = \"c{i:03}\"\nstore = \"aws\"\nkey = \"{}\"\nstrategy = \"single\"\n\
                 target = {{ type = \"postgres\", host = \"127.0.0.1\", port = {}, dbname = \"postgres\", \
                 username = \"{}\", sslmode = \"disable\" }}\n",
                bed.secret("rk", i),
                bed.cluster.port(),
                bed.role("rk", i)
            )
        })
        .collect();
    std::fs::write(
        bed.dir.path().join("rekey.toml"),
        format!(
            "[defaults]\naudit_log = \"audit.jsonl\"\n[stores.aws]\ntype = \"aws-secretsmanager\"\nregion = \"{}\"\n\
             endpoint_url = \"{}\"\n{config}",
            bed.moto.region(),
            bed.proxy.endpoint()
        ),
    )?;

    let mut rows = Vec::new();
    for round in 1..=options.rounds {
        // rekey
        let before = bed.verifiers()?;
        bed.proxy.take();
        let mut command = Command::new(&options.rekey);
        command
            .current_dir(bed.dir.path())
            .args(["-q", "-c", "rekey.toml", "rotate", "--parallel"])
            .arg(options.parallel.to_string());
        bed.aws_env(&mut command, &bed.proxy.endpoint());
        let (_, elapsed) = run_with_input(command, "", "rekey rotate")?;
        let rekey = Phase {
            seconds: elapsed.as_secs_f64(),
            calls: bed.proxy.take(),
        };
        let now = bed.check_rotated("rk", &before, &old["rk"])?;
        old.insert("rk", now);

        // AWS's function
        let before = bed.verifiers()?;
        let names: String = (0..n).map(|i| bed.secret("lb", i) + "\n").collect();
        let (out, elapsed) = bed.python(DRIVER, &[&options.parallel.to_string()], &names, &bed.proxy.endpoint())?;
        let lambda = Phase {
            seconds: elapsed.as_secs_f64(),
            calls: bed.proxy.take(),
        };
        let driver: serde_json::Value = serde_json::from_str(out.trim()).context("the driver's report")?;
        if driver["rotated"] != n {
            bail!("the function rotated {} of {n} secrets", driver["rotated"]);
        }
        let now = bed.check_rotated("lb", &before, &old["lb"])?;
        old.insert("lb", now);
        eprintln!(
            "round {round}: rekey {:.2} s, AWS's function {:.2} s (in-process {:.2} s)",
            rekey.seconds,
            lambda.seconds,
            driver["seconds"].as_f64().unwrap_or(0.0)
        );
        rows.push((round, rekey, lambda));
    }

    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|c| {
            c.lines()
                .find(|l| l.starts_with("model name"))
                .and_then(|l| l.split_once(':'))
                .map(|(_, m)| m.trim().to_owned())
        })
        .unwrap_or_default();
    let cores = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(0);
    let load = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
    println!(
        "machine: {cores} cores ({cpu}), load average {}",
        load.split_whitespace().next().unwrap_or("?")
    );
    println!("rekey: {rekey_version}; python {python_version}");
    println!(
        "PostgreSQL {} (SCRAM-SHA-256), moto's server; {n} secrets per side, --parallel {} (rekey) and {} worker \
         processes (AWS's function)\n",
        bed.cluster.try_psql("SHOW server_version")?.trim(),
        options.parallel,
        options.parallel
    );
    println!("| round | rekey s | AWS function s | AWS / rekey | rekey calls/rotation | AWS function calls/rotation |");
    println!("|---|---|---|---|---|---|");
    for (round, rekey, lambda) in &rows {
        println!(
            "| {round} | {:.2} | {:.2} | {:.2}x | {:.2} | {:.2} |",
            rekey.seconds,
            lambda.seconds,
            lambda.seconds / rekey.seconds,
            rekey.calls.len() as f64 / n as f64,
            lambda.calls.len() as f64 / n as f64
        );
    }
    if let Some((_, rekey, lambda)) = rows.last() {
        println!("\nSecrets Manager calls in the last round ({n} rotations each):");
        println!("  rekey:          {:?}", tally(&rekey.calls));
        println!("  AWS's function: {:?}", tally(&lambda.calls));
    }
    let drops: String = (0..n)
        .flat_map(|i| [bed.role("rk", i), bed.role("lb", i)])
        .map(|r| format!("DROP ROLE IF EXISTS {};\n", quote_ident(&r)))
        .collect();
    let _ = bed.cluster.try_psql(&format!(
        "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity WHERE starts_with(usename, 'bench_');\n{drops}"
    ));
    Ok(())
}
