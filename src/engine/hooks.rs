//! Consumer hooks: programs run after promotion (`on_rotate`) so that applications
//! reload while both secrets still work, and a `check_command` run by `verify` to prove
//! a consumer works with the current secret. Argv arrays, no shell; a timeout; output
//! captured (bounded) for the audit log.
//!
//! Hooks never receive a secret. Their environment is cleared except `PATH`, `HOME`,
//! `LANG` and `TZ` (rekey's own environment may hold admin URLs), plus
//! `REKEY_CREDENTIAL`, `REKEY_VERSION`, `REKEY_STORE` and `REKEY_KEY`; a hook that needs
//! the secret reads it with `rekey get`.

use std::process::Stdio;
use std::time::Duration;
use tokio::io::AsyncReadExt;

/// Most bytes of a hook's output kept for the audit log.
const OUTPUT_LIMIT: usize = 2048;
/// Variables passed through from rekey's environment.
const PASSED: &[&str] = &["PATH", "HOME", "LANG", "TZ"];

/// What a hook is told about the rotation.
#[derive(Debug, Clone)]
pub struct HookContext {
    /// The credential's name.
    pub credential: String,
    /// The version now current.
    pub version: String,
    /// The store's description.
    pub store: String,
    /// The key inside the store.
    pub key: String,
}

/// The program and its arguments, for messages.
pub fn describe(argv: &[String]) -> String {
    argv.join(" ")
}

/// Runs `argv` with the context in its environment; `Ok(output)` on exit 0, else a
/// one-line reason (exit status or timeout, with the output's last line).
pub async fn run(argv: &[String], context: &HookContext, timeout: Duration) -> Result<String, String> {
    let Some((program, args)) = argv.split_first() else {
        return Err("empty command".into());
    };
    let mut cmd = tokio::process::Command::new(program);
    cmd.args(args)
        .env_clear()
        .envs(PASSED.iter().filter_map(|k| std::env::var_os(k).map(|v| (*k, v))))
        .env("REKEY_CREDENTIAL", &context.credential)
        .env("REKEY_VERSION", &context.version)
        .env("REKEY_STORE", &context.store)
        .env("REKEY_KEY", &context.key)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    let mut child = cmd.spawn().map_err(|e| format!("cannot start {program}: {e}"))?;
    let mut stdout = child.stdout.take().expect("piped");
    let mut stderr = child.stderr.take().expect("piped");
    let work = async {
        let (mut out, mut err) = (Vec::new(), Vec::new());
        let (_, _, status) = tokio::join!(stdout.read_to_end(&mut out), stderr.read_to_end(&mut err), child.wait());
        out.extend_from_slice(&err);
        (status, out)
    };
    match tokio::time::timeout(timeout, work).await {
        Err(_) => Err(format!("timed out after {}s and was killed", timeout.as_secs())),
        Ok((Err(e), _)) => Err(format!("cannot wait for {program}: {e}")),
        Ok((Ok(status), output)) => {
            let text = summarize(&output);
            if status.success() {
                Ok(text)
            } else {
                let code = status
                    .code()
                    .map_or_else(|| "killed by a signal".to_owned(), |c| format!("exit {c}"));
                Err(if text.is_empty() {
                    code
                } else {
                    format!("{code}: {text}")
                })
            }
        }
    }
}

/// The output as one bounded line.
fn summarize(output: &[u8]) -> String {
    let text = String::from_utf8_lossy(&output[..output.len().min(OUTPUT_LIMIT)]);
    text.split(['\n', '\r'])
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .collect::<Vec<_>>()
        .join(" | ")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn context() -> HookContext {
        HookContext {
            credential: "app-db".into(),
            version: "v1".into(),
            store: "file x".into(),
            key: "app/db".into(),
        }
    }

    fn argv(parts: &[&str]) -> Vec<String> {
        parts.iter().map(|s| s.to_string()).collect()
    }

    #[tokio::test]
    async fn a_hook_sees_the_context_and_not_the_parent_environment() {
        std::env::set_var("REKEY_TEST_PARENT_SECRET", "admin-url-with-password");
        let out = run(
            &argv(&[
                "sh",
                "-c",
                "echo $REKEY_CREDENTIAL $REKEY_VERSION $REKEY_KEY ${REKEY_TEST_PARENT_SECRET:-absent}",
            ]),
            &context(),
            Duration::from_secs(10),
        )
        .await
        .unwrap();
        assert_eq!(out, "app-db v1 app/db absent");
    }

    #[tokio::test]
    async fn failing_missing_and_hanging_hooks_are_clear_errors() {
        let e = run(
            &argv(&["sh", "-c", "echo boom >&2; exit 3"]),
            &context(),
            Duration::from_secs(10),
        )
        .await
        .unwrap_err();
        assert_eq!(e, "exit 3: boom");
        let e = run(&argv(&["/nonexistent/hook"]), &context(), Duration::from_secs(10))
            .await
            .unwrap_err();
        assert!(e.starts_with("cannot start /nonexistent/hook"), "{e}");
        let e = run(&argv(&["sleep", "30"]), &context(), Duration::from_millis(200))
            .await
            .unwrap_err();
        assert!(e.contains("timed out"), "{e}");
    }
}
