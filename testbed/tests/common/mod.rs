//! Helpers shared by testbed's own tests.

use std::net::TcpStream;
use std::process::Command;
use std::time::{Duration, Instant};

/// Waits (bounded: 20 s) until `done`, failing the test with `what` otherwise.
pub fn wait_until(what: &str, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while !done() {
        assert!(Instant::now() < deadline, "timed out waiting until {what}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Whether something accepts connections on 127.0.0.1:`port`.
pub fn listening(port: u16) -> bool {
    TcpStream::connect(("127.0.0.1", port)).is_ok()
}

/// Runs this test binary's `child` test in a child process with `child_env` naming a
/// file, where the child writes what it started before it exits without dropping it;
/// returns the file's text (the watchdog tests then wait for the cleanup).
pub fn run_child(child: &str, child_env: &str) -> String {
    let info = std::env::temp_dir().join(format!("rekey-testbed-{child}-{}", std::process::id()));
    let status = Command::new(std::env::current_exe().unwrap())
        .args(["--exact", child, "--nocapture", "--test-threads=1"])
        .env(child_env, &info)
        .status()
        .unwrap();
    assert!(status.success());
    let text = std::fs::read_to_string(&info).unwrap();
    std::fs::remove_file(&info).unwrap();
    text
}
