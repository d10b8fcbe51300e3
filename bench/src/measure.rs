//! Running a program as a child process and measuring it: wall clock from spawn to
//! reaping, and the child's own peak resident set size from `wait4`.

use anyhow::{bail, Context, Result};
use std::io::Read;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// What one measured run of a child process produced.
#[derive(Debug)]
pub struct Measured {
    /// Wall clock from spawning the child to reaping it.
    pub wall: Duration,
    /// The child's peak resident set size in KiB (`ru_maxrss`, which Linux reports in KiB).
    pub max_rss_kib: u64,
    /// The child's CPU time, user plus system.
    pub cpu: Duration,
    /// The exit code, when the child exited by itself.
    pub code: Option<i32>,
    /// The signal that ended the child, when one did.
    pub signal: Option<i32>,
    /// What the child wrote to standard error.
    pub stderr: String,
}

impl Measured {
    /// Whether the child exited with code 0.
    pub fn success(&self) -> bool {
        self.code == Some(0)
    }

    /// "exit code 1" or "killed by signal 9".
    pub fn describe_exit(&self) -> String {
        match (self.code, self.signal) {
            (Some(code), _) => format!("exit code {code}"),
            (None, Some(signal)) => format!("killed by signal {signal}"),
            (None, None) => "unknown exit status".to_owned(),
        }
    }
}

/// Runs `cmd` with stdin and stdout on `/dev/null` and stderr captured, waits for it
/// with `wait4` and returns its wall clock, peak RSS, exit status and stderr.
#[allow(unsafe_code)] // libc calls; SAFETY comments at each block
pub fn run_measured(cmd: &mut Command) -> Result<Measured> {
    cmd.stdin(Stdio::null()).stdout(Stdio::null()).stderr(Stdio::piped());
    let program = cmd.get_program().to_string_lossy().into_owned();
    let start = Instant::now();
    let mut child = cmd.spawn().with_context(|| format!("cannot start {program}"))?;
    let mut stderr_pipe = child.stderr.take().context("child stderr was not captured")?;
    // Drain stderr while the child runs so that a chatty child cannot block on a full pipe.
    let reader = std::thread::spawn(move || {
        let mut buf = Vec::new();
        let _ = stderr_pipe.read_to_end(&mut buf);
        buf
    });
    let pid = libc::pid_t::try_from(child.id()).context("child pid out of range")?;
    let mut status: libc::c_int = 0;
    // SAFETY: `rusage` is a plain C struct of integers, for which all zero bytes are valid.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    loop {
        // SAFETY: `pid` is our own child, not yet reaped (std never waits for it: we do
        // not call `wait` on `child`); both pointers are valid for the duration of the call.
        let reaped = unsafe { libc::wait4(pid, &mut status, 0, &mut usage) };
        if reaped == pid {
            break;
        }
        let error = std::io::Error::last_os_error();
        if reaped == -1 && error.kind() == std::io::ErrorKind::Interrupted {
            continue;
        }
        bail!("wait4 on {program}: {error}");
    }
    let wall = start.elapsed();
    // Already reaped: dropping `Child` neither waits nor kills.
    drop(child);
    let stderr = reader.join().unwrap_or_default();
    let (code, signal) = if libc::WIFEXITED(status) {
        (Some(libc::WEXITSTATUS(status)), None)
    } else if libc::WIFSIGNALED(status) {
        (None, Some(libc::WTERMSIG(status)))
    } else {
        (None, None)
    };
    Ok(Measured {
        wall,
        max_rss_kib: u64::try_from(usage.ru_maxrss).unwrap_or(0),
        cpu: cpu_time(&usage),
        code,
        signal,
        stderr: String::from_utf8_lossy(&stderr).into_owned(),
    })
}

fn timeval(tv: libc::timeval) -> Duration {
    let secs = u64::try_from(tv.tv_sec).unwrap_or(0);
    let micros = u32::try_from(tv.tv_usec).unwrap_or(0);
    Duration::from_secs(secs) + Duration::from_micros(u64::from(micros))
}

fn cpu_time(usage: &libc::rusage) -> Duration {
    timeval(usage.ru_utime) + timeval(usage.ru_stime)
}

/// This process's CPU time so far (all threads), user plus system.
#[allow(unsafe_code)] // libc calls; SAFETY comments at each block
pub fn self_cpu() -> Duration {
    // SAFETY: `rusage` is a plain C struct of integers, for which all zero bytes are valid.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: the pointer is valid for the call; RUSAGE_SELF needs nothing else.
    if unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut usage) } != 0 {
        return Duration::ZERO;
    }
    cpu_time(&usage)
}
