//! Running the plugin once: no shell, a cleared environment, the request on stdin, the
//! answer from stdout (at most 1 MiB), stderr kept for messages, a deadline, and the
//! plugin's whole process group killed on timeout, on an oversized answer, or when the
//! operation is abandoned (its future dropped, as when rekey is interrupted).

use std::process::Stdio;
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt};
use zeroize::Zeroizing;

/// Largest answer accepted on stdout.
pub(crate) const MAX_ANSWER: usize = 1 << 20;
/// How much of stderr is kept (its end).
const MAX_STDERR: usize = 64 << 10;
/// Environment variables passed through besides `pass_env`.
const BASE_ENV: &[&str] = &["PATH", "HOME", "USER", "LOGNAME", "LANG", "LC_ALL", "TZ", "TMPDIR"];

/// What to run.
#[derive(Clone, Debug)]
pub(crate) struct Program {
    pub command: Vec<String>,
    pub pass_env: Vec<String>,
    pub timeout: Duration,
}

impl std::fmt::Debug for RunError {
    /// Never the plugin's stderr: it may echo a secret (messages quote it masked).
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            RunError::Spawn(e) => f.debug_tuple("Spawn").field(e).finish(),
            RunError::Timeout { stderr } => f.debug_struct("Timeout").field("stderr_bytes", &stderr.len()).finish(),
            RunError::TooBig => f.write_str("TooBig"),
        }
    }
}

/// How the run ended.
pub(crate) struct Output {
    /// Exit code, `None` when killed by a signal.
    pub code: Option<i32>,
    pub signal: Option<i32>,
    pub stdout: Zeroizing<Vec<u8>>,
    pub stderr: Zeroizing<Vec<u8>>,
}

/// Why there is no output.
pub(crate) enum RunError {
    /// The program could not be started.
    Spawn(std::io::Error),
    /// It did not finish in time (killed).
    Timeout { stderr: Zeroizing<Vec<u8>> },
    /// It wrote more than [`MAX_ANSWER`] bytes on stdout (killed).
    TooBig,
}

/// Kills the process group when dropped while armed.
struct GroupGuard {
    pgid: Option<i32>,
}

impl GroupGuard {
    fn kill(&mut self) {
        if let Some(pgid) = self.pgid.take() {
            kill_group(pgid);
        }
    }
}

impl Drop for GroupGuard {
    fn drop(&mut self) {
        self.kill();
    }
}

#[allow(unsafe_code)] // libc calls; SAFETY comments at each block
fn kill_group(pgid: i32) {
    if pgid > 1 {
        // SAFETY: kill(2) with a negative pid signals the process group we created for
        // the plugin (`process_group(0)`: its id is the plugin's pid).
        unsafe {
            libc::kill(-pgid, libc::SIGKILL);
        }
    }
}

async fn read_capped(mut pipe: impl AsyncRead + Unpin, pgid: Option<i32>) -> Result<Zeroizing<Vec<u8>>, ()> {
    let mut out = Zeroizing::new(Vec::new());
    let mut buf = Zeroizing::new([0u8; 8192]);
    loop {
        match pipe.read(&mut buf[..]).await {
            Ok(0) | Err(_) => return Ok(out),
            Ok(n) => {
                if out.len() + n > MAX_ANSWER {
                    if let Some(pgid) = pgid {
                        kill_group(pgid);
                    }
                    return Err(());
                }
                out.extend_from_slice(&buf[..n]);
            }
        }
    }
}

type Tail = std::sync::Arc<std::sync::Mutex<Zeroizing<Vec<u8>>>>;

/// Reads stderr into `tail`, keeping its last [`MAX_STDERR`] bytes (readable even when
/// the run is abandoned at the deadline).
async fn read_tail(mut pipe: impl AsyncRead + Unpin, tail: Tail) {
    let mut buf = [0u8; 4096];
    loop {
        match pipe.read(&mut buf).await {
            Ok(0) | Err(_) => return,
            Ok(n) => {
                let mut out = tail.lock().unwrap_or_else(|p| p.into_inner());
                out.extend_from_slice(&buf[..n]);
                if out.len() > MAX_STDERR {
                    let cut = out.len() - MAX_STDERR;
                    out.drain(..cut);
                }
            }
        }
    }
}

fn take(tail: &Tail) -> Zeroizing<Vec<u8>> {
    std::mem::take(&mut *tail.lock().unwrap_or_else(|p| p.into_inner()))
}

/// Runs `program` with `input` on stdin; `env` adds variables (never a secret).
pub(crate) async fn run(program: &Program, env: &[(&str, &str)], input: &[u8]) -> Result<Output, RunError> {
    let mut cmd = tokio::process::Command::new(&program.command[0]);
    cmd.args(&program.command[1..]).env_clear();
    for name in BASE_ENV
        .iter()
        .copied()
        .chain(program.pass_env.iter().map(String::as_str))
    {
        if let Some(value) = std::env::var_os(name) {
            cmd.env(name, value);
        }
    }
    for (k, v) in env {
        cmd.env(k, v);
    }
    cmd.stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .process_group(0)
        .kill_on_drop(true);
    let mut child = cmd.spawn().map_err(RunError::Spawn)?;
    let pgid = child.id().and_then(|id| i32::try_from(id).ok());
    let mut guard = GroupGuard { pgid };
    let stdin = child.stdin.take();
    let stdout = child.stdout.take();
    let stderr = child.stderr.take();

    let write = async move {
        if let Some(mut s) = stdin {
            // A plugin that exits without reading closes the pipe: its answer says why.
            let _ = s.write_all(input).await;
            let _ = s.shutdown().await;
        }
    };
    let read_out = async move {
        match stdout {
            Some(p) => read_capped(p, pgid).await,
            None => Ok(Zeroizing::new(Vec::new())),
        }
    };
    let tail: Tail = Default::default();
    let read_err = {
        let tail = tail.clone();
        async move {
            if let Some(p) = stderr {
                read_tail(p, tail).await;
            }
        }
    };
    let all = async {
        let (_, out, (), status) = tokio::join!(write, read_out, read_err, child.wait());
        (out, status)
    };
    match tokio::time::timeout(program.timeout, all).await {
        Ok((out, status)) => {
            guard.pgid = None;
            let stdout = out.map_err(|()| RunError::TooBig)?;
            let status = status.map_err(RunError::Spawn)?;
            use std::os::unix::process::ExitStatusExt;
            Ok(Output {
                code: status.code(),
                signal: status.signal(),
                stdout,
                stderr: take(&tail),
            })
        }
        Err(_) => {
            guard.kill();
            let _ = child.wait().await;
            Err(RunError::Timeout { stderr: take(&tail) })
        }
    }
}
