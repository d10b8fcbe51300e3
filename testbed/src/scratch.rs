//! What every throwaway server needs: a free loopback port, a fresh directory, shell
//! quoting for the watchdog scripts, and who runs the tests (servers that refuse to run
//! as root run as their own user).

use crate::TestbedError;
use std::fs;
use std::net::{Ipv4Addr, TcpListener};
use std::os::unix::fs::DirBuilderExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU32, Ordering};

/// A TCP port on 127.0.0.1 that was free a moment ago (servers retry on a collision).
pub fn free_port() -> Result<u16, TestbedError> {
    let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
        .map_err(|e| TestbedError::new(format!("cannot bind 127.0.0.1:0 to pick a port: {e}")))?;
    listener
        .local_addr()
        .map(|a| a.port())
        .map_err(|e| TestbedError::new(format!("cannot read the picked port: {e}")))
}

/// A new directory `BASE/PREFIX-PID-N-RANDOM` with `mode`.
pub(crate) fn fresh_dir(base: &Path, prefix: &str, mode: u32) -> Result<PathBuf, TestbedError> {
    static COUNTER: AtomicU32 = AtomicU32::new(0);
    for _ in 0..100 {
        let n: u32 = rand::random();
        let dir = base.join(format!(
            "{prefix}-{}-{}-{n:08x}",
            std::process::id(),
            COUNTER.fetch_add(1, Ordering::Relaxed)
        ));
        match fs::DirBuilder::new().mode(mode).create(&dir) {
            Ok(()) => return Ok(dir),
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => continue,
            Err(e) => return Err(TestbedError::new(format!("cannot create {}: {e}", dir.display()))),
        }
    }
    Err(TestbedError::new("cannot create a unique temporary directory"))
}

/// `s` quoted for a POSIX shell.
pub(crate) fn shell_quote(s: &str) -> String {
    format!("'{}'", s.replace('\'', "'\\''"))
}

/// The effective user id (the owner of `/proc/self`).
pub(crate) fn effective_uid() -> u32 {
    use std::os::unix::fs::MetadataExt;
    fs::metadata("/proc/self").map(|m| m.uid()).unwrap_or(u32::MAX)
}

/// `(uid, gid)` of a user from /etc/passwd.
pub(crate) fn lookup_user(name: &str) -> Option<(u32, u32)> {
    let passwd = fs::read_to_string("/etc/passwd").ok()?;
    passwd.lines().find_map(|line| {
        let mut fields = line.split(':');
        if fields.next()? != name {
            return None;
        }
        let _password = fields.next()?;
        let uid = fields.next()?.parse().ok()?;
        let gid = fields.next()?.parse().ok()?;
        Some((uid, gid))
    })
}
