//! Running helper programs with a deadline, and the watchdog that cleans up after a
//! test process that died without dropping its servers.

use crate::scratch::shell_quote;
use crate::TestbedError;
use std::io::{Read, Write};
use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::thread;
use std::time::{Duration, Instant};

/// Runs `cmd` to completion, feeding `stdin` and capturing stdout and stderr. Kills it
/// and returns an error if it has not finished within `timeout`.
pub(crate) fn run(cmd: &mut Command, stdin: Option<&[u8]>, timeout: Duration) -> Result<Output, String> {
    let program = cmd.get_program().to_string_lossy().into_owned();
    cmd.stdout(Stdio::piped()).stderr(Stdio::piped());
    cmd.stdin(if stdin.is_some() { Stdio::piped() } else { Stdio::null() });
    let mut child = cmd.spawn().map_err(|e| format!("cannot run {program}: {e}"))?;

    let writer = match (stdin, child.stdin.take()) {
        (Some(bytes), Some(mut pipe)) => {
            let bytes = bytes.to_vec();
            Some(thread::spawn(move || {
                // A program that exits early closes the pipe; its exit status tells why.
                let _ = pipe.write_all(&bytes);
            }))
        }
        _ => None,
    };
    let mut out_pipe = child.stdout.take().expect("stdout is piped");
    let mut err_pipe = child.stderr.take().expect("stderr is piped");
    let out_reader = thread::spawn(move || {
        let mut buf = Vec::new();
        let _ = out_pipe.read_to_end(&mut buf);
        buf
    });
    let err_reader = thread::spawn(move || {
        let mut buf = Vec::new();
        let _ = err_pipe.read_to_end(&mut buf);
        buf
    });

    let deadline = Instant::now() + timeout;
    let status = loop {
        match child.try_wait() {
            Ok(Some(status)) => break status,
            Ok(None) if Instant::now() >= deadline => {
                let _ = child.kill();
                let _ = child.wait();
                return Err(format!(
                    "{program} did not finish within {}s and was killed",
                    timeout.as_secs()
                ));
            }
            Ok(None) => thread::sleep(Duration::from_millis(5)),
            Err(e) => return Err(format!("waiting for {program}: {e}")),
        }
    };
    if let Some(w) = writer {
        let _ = w.join();
    }
    let stdout = out_reader.join().unwrap_or_default();
    let stderr = err_reader.join().unwrap_or_default();
    Ok(Output { status, stdout, stderr })
}

/// Runs `cmd` and requires a zero exit status; the error carries stderr (and stdout).
pub(crate) fn run_ok(cmd: &mut Command, stdin: Option<&[u8]>, timeout: Duration) -> Result<Output, String> {
    let what = describe(cmd);
    let output = run(cmd, stdin, timeout)?;
    if output.status.success() {
        Ok(output)
    } else {
        Err(format!(
            "{what} failed ({}): {}{}",
            output.status,
            String::from_utf8_lossy(&output.stderr).trim(),
            match String::from_utf8_lossy(&output.stdout).trim() {
                "" => String::new(),
                out => format!(" [stdout: {out}]"),
            }
        ))
    }
}

/// The program and its arguments, for messages (arguments never hold passwords here:
/// SQL goes through stdin).
pub(crate) fn describe(cmd: &Command) -> String {
    let mut s = cmd.get_program().to_string_lossy().into_owned();
    for arg in cmd.get_args() {
        s.push(' ');
        s.push_str(&arg.to_string_lossy());
    }
    s
}

/// Starts a detached shell that waits for this process to exit, then runs `cleanup`
/// (stopping the server) and removes `dir`. Every server's `Drop` removes `dir` itself,
/// which ends the watchdog without running `cleanup`, so a reused pid is never signalled.
///
/// The outer shell backgrounds the loop and exits at once, so the loop is re-parented
/// and outlives this process; its own process group keeps a Ctrl-C aimed at the test run
/// from killing it before it has cleaned up.
pub(crate) fn spawn_watchdog(dir: &Path, cleanup: &str) -> Result<(), TestbedError> {
    let dir = shell_quote(&dir.to_string_lossy());
    let script = format!(
        "while kill -0 {me} 2>/dev/null && [ -d {dir} ]; do sleep 1; done; \
         if [ -d {dir} ]; then {cleanup}; rm -rf {dir}; fi",
        me = std::process::id()
    );
    let mut cmd = Command::new("sh");
    cmd.arg("-c")
        .arg(format!("( {script} ) </dev/null >/dev/null 2>&1 &"))
        .current_dir("/")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    std::os::unix::process::CommandExt::process_group(&mut cmd, 0);
    let status = run(&mut cmd, None, Duration::from_secs(10))
        .map_err(|e| TestbedError::new(format!("cannot start the cleanup watchdog: {e}")))?
        .status;
    if status.success() {
        Ok(())
    } else {
        Err(TestbedError::new(format!(
            "cannot start the cleanup watchdog: {status}"
        )))
    }
}
