//! The `rekey` binary: parse the command line, run it, exit with its code.

use clap::Parser;
use rekey::engine::Interrupt;
use rekey::{app, cli::Cli, exit};

/// How long a signalled run may take to finish its running step.
const DRAIN_LIMIT: std::time::Duration = std::time::Duration::from_secs(60);

fn main() {
    rekey::allocator::limit_arenas();
    let args: Vec<std::ffi::OsString> = std::env::args_os().collect();
    let cli = Cli::try_parse_from(&args).unwrap_or_else(|e| rekey::commands::usage::parse_failed(e, &args));
    init_tracing(cli.verbose);
    let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            std::process::exit(exit::CREDENTIAL_FAILED);
        }
    };
    let code = runtime.block_on(async {
        let run = app::run(cli);
        tokio::pin!(run);
        tokio::select! {
            code = &mut run => return code,
            _ = interrupted() => {}
        }
        // Stop at a step boundary: no new step starts; the running one finishes (each is
        // bounded by its provider's timeouts) and is recorded. A second signal, or the
        // drain limit, stops at once: the protocol keeps even that recoverable.
        Interrupt::global().request();
        eprintln!("rekey: interrupted; finishing the running step (interrupt again to stop at once)");
        tokio::select! {
            _ = &mut run => {}
            _ = interrupted() => {}
            _ = tokio::time::sleep(DRAIN_LIMIT) => {}
        }
        eprintln!("error: interrupted; an unfinished rotation is finished by the next run");
        exit::INTERRUPTED
    });
    runtime.shutdown_timeout(std::time::Duration::from_millis(100));
    std::process::exit(code);
}

async fn interrupted() {
    let mut term = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
        Ok(s) => s,
        Err(_) => return std::future::pending().await,
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term.recv() => {}
    }
}

/// Libraries that log the statements they send: their debug output would show password
/// verifiers and hashes (never plaintext, but still login-grade material). They stay at
/// `info` unless `RUST_LOG` names them explicitly.
const STATEMENT_LOGGERS: &[&str] = &["tokio_postgres", "mysql_async", "mysql_common", "redis"];

fn init_tracing(verbose: u8) {
    let from_env = std::env::var("RUST_LOG").ok().filter(|v| !v.is_empty());
    let mut filter = match (from_env, verbose) {
        (Some(f), _) => f,
        (None, 0) => return,
        (None, 1) => "rekey=info".to_owned(),
        // A directive's target is a prefix: `rekey` covers the engine and every
        // `rekey_*` provider crate, and names no third-party library.
        (None, _) => "rekey=debug".to_owned(),
    };
    for library in STATEMENT_LOGGERS {
        if !filter.contains(library) {
            filter.push_str(&format!(",{library}=info"));
        }
    }
    let _ = tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::new(filter))
        .with_writer(std::io::stderr)
        .with_ansi(false)
        .try_init();
}
