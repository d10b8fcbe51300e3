//! `rekey-testbed`: start and stop throwaway servers from the shell (README quickstart,
//! benchmark scripts).
//!
//! ```text
//! eval "$(rekey-testbed pg-start --dir /tmp/rekey-pg [--log-statement-all])"
//! rekey-testbed pg-stop --dir /tmp/rekey-pg
//! ```

use rekey_testbed::{PgCluster, PgOptions, ENV_FILE};
use std::path::PathBuf;
use std::process::ExitCode;

const USAGE: &str = "usage:
  rekey-testbed pg-start --dir DIR [--log-statement-all]
      start a PostgreSQL cluster in DIR (kept running) and print shell exports:
      PGHOST, PGPORT, REKEY_PG_ADMIN_URL, REKEY_PG_DIR, REKEY_PG_LOG
      (if DIR already holds a running testbed cluster, print its exports again)
  rekey-testbed pg-stop --dir DIR
      stop the cluster started in DIR and remove DIR";

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match run(&args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(Failure::Usage(message)) => {
            eprintln!("rekey-testbed: {message}\n{USAGE}");
            ExitCode::from(2)
        }
        Err(Failure::Failed(message)) => {
            eprintln!("rekey-testbed: {message}");
            ExitCode::FAILURE
        }
    }
}

enum Failure {
    Usage(String),
    Failed(String),
}

fn run(args: &[String]) -> Result<(), Failure> {
    let Some((command, rest)) = args.split_first() else {
        return Err(Failure::Usage("missing command".into()));
    };
    let mut dir: Option<PathBuf> = None;
    let mut log_statement_all = false;
    let mut rest = rest.iter();
    while let Some(arg) = rest.next() {
        match arg.as_str() {
            "--dir" => {
                dir = Some(
                    rest.next()
                        .ok_or_else(|| Failure::Usage("--dir needs a value".into()))?
                        .into(),
                );
            }
            a if a.starts_with("--dir=") => dir = Some(a["--dir=".len()..].into()),
            "--log-statement-all" if command == "pg-start" => log_statement_all = true,
            "-h" | "--help" => {
                println!("{USAGE}");
                return Ok(());
            }
            other => return Err(Failure::Usage(format!("unexpected argument `{other}`"))),
        }
    }
    match command.as_str() {
        "pg-start" => {
            let dir = dir.ok_or_else(|| Failure::Usage("pg-start needs --dir DIR".into()))?;
            let env_file = dir.join(ENV_FILE);
            if env_file.exists() && dir.join("data/postmaster.pid").exists() {
                let exports = std::fs::read_to_string(&env_file)
                    .map_err(|e| Failure::Failed(format!("cannot read {}: {e}", env_file.display())))?;
                print!("{exports}");
                return Ok(());
            }
            let options = PgOptions::new()
                .persistent_dir(&dir)
                .log_statement_all(log_statement_all);
            let cluster = PgCluster::start_with(options).map_err(|e| Failure::Failed(e.to_string()))?;
            print!("{}", cluster.exports());
            // Dropping a persistent cluster leaves it running.
            drop(cluster);
            Ok(())
        }
        "pg-stop" => {
            let dir = dir.ok_or_else(|| Failure::Usage("pg-stop needs --dir DIR".into()))?;
            if !dir.exists() {
                return Ok(());
            }
            PgCluster::stop_dir(&dir).map_err(|e| Failure::Failed(e.to_string()))
        }
        "-h" | "--help" | "help" => {
            println!("{USAGE}");
            Ok(())
        }
        other => Err(Failure::Usage(format!("unknown command `{other}`"))),
    }
}
