//! The test cluster really enforces passwords and cleans up after itself.

mod common;

use common::{listening, run_child, wait_until};
use rekey_testbed::{PgCluster, PgOptions};
use std::path::PathBuf;
use std::process::Command;

/// Runs `psql` over TCP with a password from the environment (never argv).
fn tcp_login(pg: &PgCluster, user: &str, password: &str) -> Result<String, String> {
    let out = Command::new("psql")
        .args([
            "-X",
            "-At",
            "-h",
            pg.host(),
            "-p",
            &pg.port().to_string(),
            "-U",
            user,
            "-d",
            "postgres",
        ])
        .args(["-c", "SELECT current_user"])
        .env("PGPASSWORD", password)
        .env("PGCONNECT_TIMEOUT", "10")
        .output()
        .expect("psql runs");
    if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout).trim().to_owned())
    } else {
        Err(String::from_utf8_lossy(&out.stderr).into_owned())
    }
}

#[test]
fn passwords_are_checked_over_tcp() {
    let pg = PgCluster::shared();
    assert_eq!(tcp_login(pg, "postgres", pg.admin_password()).unwrap(), "postgres");
    let err = tcp_login(pg, "postgres", "wrong-password").unwrap_err();
    assert!(err.contains("password authentication failed"), "{err}");

    let role = "tb \"odd\"; name é";
    pg.create_role(role, "it's a pass\\word");
    assert_eq!(tcp_login(pg, role, "it's a pass\\word").unwrap(), role);
    assert!(tcp_login(pg, role, "its a password").is_err());
    pg.drop_role(role);
    assert_eq!(
        pg.psql(&format!(
            "SELECT count(*) FROM pg_roles WHERE rolname = {}",
            rekey_testbed::quote_literal(role)
        )),
        "0"
    );
}

#[test]
fn shared_is_one_instance() {
    assert_eq!(PgCluster::shared().port(), PgCluster::shared().port());
    assert!(PgCluster::shared().admin_url().starts_with("postgres://postgres:"));
    assert!(!format!("{:?}", PgCluster::shared()).contains(PgCluster::shared().admin_password()));
}

#[test]
fn drop_stops_and_removes() {
    let pg = PgCluster::start_with(PgOptions::new().log_statement_all(true)).unwrap();
    let (dir, port) = (pg.dir().to_owned(), pg.port());
    pg.psql("SELECT 'marker-statement-42'");
    assert!(pg.log_contents().contains("marker-statement-42"));
    assert!(
        !pg.log_contents().contains(pg.admin_password()),
        "the superuser password must not be logged"
    );
    pg.create_database("tb_db");
    assert_eq!(pg.psql_db("tb_db", "SELECT current_database()"), "tb_db");
    assert!(pg.try_psql("SELEC 1").unwrap_err().to_string().contains("syntax error"));
    drop(pg);
    assert!(!dir.exists(), "directory removed");
    assert!(!listening(port), "server stopped");
}

#[test]
fn tls_cluster_serves_tls() {
    let pg = PgCluster::start_with(PgOptions::new().tls(true)).unwrap();
    assert_eq!(pg.psql("SHOW ssl"), "on");
    let ca = pg.tls_root_cert().unwrap();
    let out = Command::new("psql")
        .args([
            "-X",
            "-At",
            "-c",
            "SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()",
        ])
        .arg(format!(
            "host=127.0.0.1 port={} user=postgres dbname=postgres sslmode=verify-full sslrootcert={}",
            pg.port(),
            ca.display()
        ))
        .env("PGPASSWORD", pg.admin_password())
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "t");
}

const CHILD_ENV: &str = "REKEY_TESTBED_WATCHDOG_CHILD";

/// Not a test of its own: run by `watchdog_cleans_up_after_a_dead_process` in a child
/// process, which starts a cluster and exits without dropping it.
#[test]
fn watchdog_child() {
    let Some(out) = std::env::var_os(CHILD_ENV) else { return };
    let pg = PgCluster::start().unwrap();
    std::fs::write(out, format!("{}\n{}", pg.dir().display(), pg.port())).unwrap();
    std::process::exit(0);
}

#[test]
fn watchdog_cleans_up_after_a_dead_process() {
    let text = run_child("watchdog_child", CHILD_ENV);
    let (dir, port) = text.split_once('\n').unwrap();
    let (dir, port): (PathBuf, u16) = (dir.into(), port.parse().unwrap());
    wait_until("the watchdog removed the directory", || !dir.exists());
    wait_until("the server stopped", || !listening(port));
}

#[test]
fn cli_start_and_stop() {
    let bin = env!("CARGO_BIN_EXE_rekey-testbed");
    let dir = std::env::temp_dir().join(format!("rekey-testbed-cli-{}", std::process::id()));
    let out = Command::new(bin)
        .args(["pg-start", "--dir"])
        .arg(&dir)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let exports = String::from_utf8(out.stdout).unwrap();
    assert!(
        exports.contains("export REKEY_PG_ADMIN_URL='postgres://postgres:"),
        "{exports}"
    );
    let port: u16 = exports
        .lines()
        .find_map(|l| l.strip_prefix("export PGPORT='"))
        .and_then(|p| p.trim_end_matches('\'').parse().ok())
        .unwrap();
    assert!(listening(port));
    // Starting again prints the same exports.
    let again = Command::new(bin)
        .args(["pg-start", "--dir"])
        .arg(&dir)
        .output()
        .unwrap();
    assert_eq!(String::from_utf8(again.stdout).unwrap(), exports);
    let stop = Command::new(bin).args(["pg-stop", "--dir"]).arg(&dir).output().unwrap();
    assert!(stop.status.success(), "{}", String::from_utf8_lossy(&stop.stderr));
    assert!(!dir.exists());
    assert!(!listening(port));
    let usage = Command::new(bin).arg("pg-bogus").output().unwrap();
    assert_eq!(usage.status.code(), Some(2));
}
