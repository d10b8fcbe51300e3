//! `--metrics-file FILE`: the run's results in the Prometheus text format, written
//! atomically (a temporary file renamed over FILE) for node_exporter's textfile
//! collector. Names and numbers only, never a secret.

use crate::engine::inspection::STUCK_AFTER;
use crate::engine::{RunReport, Status};
use std::fmt::Write as _;
use std::io::Write as _;
use std::path::Path;
use std::time::{SystemTime, UNIX_EPOCH};

fn label(value: &str) -> String {
    value.replace('\\', "\\\\").replace('"', "\\\"").replace('\n', "\\n")
}

fn seconds(t: SystemTime) -> f64 {
    t.duration_since(UNIX_EPOCH).map(|d| d.as_secs_f64()).unwrap_or(0.0)
}

/// The metrics text of one run, as of `now`.
pub fn render(run: &RunReport, now: SystemTime) -> String {
    let command = run.command;
    let mut out = String::new();
    let mut family = |name: &str, help: &str, rows: Vec<(String, f64)>| {
        let _ = writeln!(out, "# HELP {name} {help}");
        let _ = writeln!(out, "# TYPE {name} gauge");
        for (labels, value) in rows {
            let _ = writeln!(out, "{name}{{{labels}}} {value}");
        }
    };
    let per = |f: &dyn Fn(&crate::engine::CredentialReport) -> Option<f64>| -> Vec<(String, f64)> {
        run.credentials
            .iter()
            .filter_map(|c| f(c).map(|v| (format!("credential=\"{}\",command=\"{command}\"", label(&c.name)), v)))
            .collect()
    };
    family(
        "rekey_credential_ok",
        "1 when the credential's last run succeeded, 0 when it failed.",
        per(&|c| Some(if c.status == Status::Failed { 0.0 } else { 1.0 })),
    );
    let rotated = |c: &crate::engine::CredentialReport| c.status == Status::Rotated;
    family(
        "rekey_credential_current_age_seconds",
        "Age of the current secret.",
        per(&|c| {
            if rotated(c) {
                Some(0.0)
            } else {
                c.observed
                    .and_then(|o| o.current_created)
                    .map(|t| now.duration_since(t).unwrap_or_default().as_secs_f64())
            }
        }),
    );
    family(
        "rekey_credential_last_rotation_timestamp_seconds",
        "When the current secret was made (the last successful rotation or import).",
        per(&|c| {
            if rotated(c) {
                Some(seconds(now))
            } else {
                c.observed.and_then(|o| o.current_created).map(seconds)
            }
        }),
    );
    family(
        "rekey_credential_next_due_timestamp_seconds",
        "When the next rotation is due.",
        per(&|c| {
            c.next_due
                .as_deref()
                .and_then(|d| humantime::parse_rfc3339(d).ok())
                .map(seconds)
        }),
    );
    let pending = |c: &crate::engine::CredentialReport| {
        (!rotated(c) && c.status != Status::Revoked)
            .then(|| c.observed.and_then(|o| o.pending_created))
            .flatten()
    };
    family(
        "rekey_credential_pending",
        "1 when a rotation is left half done (a pending version).",
        per(&|c| Some(if pending(c).is_some() { 1.0 } else { 0.0 })),
    );
    family(
        "rekey_credential_stuck",
        "1 when a pending version is older than 10 minutes (rotate --abandon-pending gets out).",
        per(&|c| {
            Some(match pending(c) {
                Some(t) if now.duration_since(t).unwrap_or_default() >= STUCK_AFTER => 1.0,
                _ => 0.0,
            })
        }),
    );
    let statuses = [
        Status::Rotated,
        Status::Revoked,
        Status::NotDue,
        Status::Planned,
        Status::Verified,
        Status::Listed,
        Status::Imported,
        Status::Failed,
    ];
    family(
        "rekey_run_credentials",
        "Credentials of the last run by outcome.",
        statuses
            .iter()
            .map(|s| {
                (
                    // The machine name: the words shown to people repeat (`ok`), and a
                    // collector refuses a file with the same series twice.
                    format!("command=\"{command}\",status=\"{}\"", s.key()),
                    run.count(*s) as f64,
                )
            })
            .collect(),
    );
    family(
        "rekey_run_duration_seconds",
        "Wall time of the last run.",
        vec![(format!("command=\"{command}\""), run.duration_ms as f64 / 1e3)],
    );
    family(
        "rekey_run_timestamp_seconds",
        "When the last run ended.",
        vec![(format!("command=\"{command}\""), seconds(now))],
    );
    family(
        "rekey_run_exit_code",
        "The last run's exit code.",
        vec![(format!("command=\"{command}\""), f64::from(run.exit_code()))],
    );
    out
}

/// Whether [`write_atomically`] could write `path`: a file can be created (and is
/// removed again) in its directory, and `path` is not a directory.
pub fn check_writable(path: &Path) -> std::io::Result<()> {
    use std::os::unix::fs::OpenOptionsExt;
    if path.is_dir() {
        return Err(std::io::Error::new(
            std::io::ErrorKind::IsADirectory,
            "it is a directory",
        ));
    }
    let dir = path
        .parent()
        .filter(|d| !d.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let probe = dir.join(format!(".rekey-metrics-probe.{}.tmp", std::process::id()));
    std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&probe)?;
    std::fs::remove_file(&probe)
}

/// Writes `text` to `path` atomically, mode 0600: a temporary file beside it, synced,
/// then renamed over it, so a collector never reads half a file.
pub fn write_atomically(path: &Path, text: &str) -> std::io::Result<()> {
    use std::os::unix::fs::OpenOptionsExt;
    let dir = path
        .parent()
        .filter(|d| !d.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let tmp = dir.join(format!(".{name}.{}.tmp", std::process::id()));
    let written = (|| {
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&tmp)?;
        f.write_all(text.as_bytes())?;
        f.sync_all()?;
        std::fs::rename(&tmp, path)
    })();
    if written.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    written
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_sample_line_parses_as_prometheus_text() {
        let run = RunReport {
            run_id: "r".into(),
            command: "verify",
            dry_run: true,
            started: "2026-11-30T00:00:00Z".into(),
            duration_ms: 1500,
            credentials: Vec::new(),
        };
        let text = render(&run, SystemTime::now());
        for line in text.lines() {
            if line.starts_with('#') {
                assert!(
                    line.starts_with("# HELP rekey_") || line.starts_with("# TYPE rekey_"),
                    "{line}"
                );
                continue;
            }
            let (series, value) = line.rsplit_once(' ').expect("name{labels} value");
            assert!(series.starts_with("rekey_") && series.ends_with('}'), "{line}");
            value.parse::<f64>().expect("a number");
        }
        assert!(text.contains("rekey_run_duration_seconds{command=\"verify\"} 1.5"));
    }

    /// Found trying it: `status="ok"` appeared three times (planned, verified, listed
    /// all read "ok"), and node_exporter refuses a file with a series twice.
    #[test]
    fn no_series_appears_twice() {
        let run = RunReport {
            run_id: "r".into(),
            command: "verify",
            dry_run: false,
            started: "2026-11-30T00:00:00Z".into(),
            duration_ms: 1,
            credentials: Vec::new(),
        };
        let text = render(&run, SystemTime::now());
        let mut seen = std::collections::BTreeSet::new();
        for line in text.lines().filter(|l| !l.starts_with('#')) {
            let (series, _) = line.rsplit_once(' ').unwrap();
            assert!(seen.insert(series.to_owned()), "twice: {series}");
        }
        assert!(text.contains("rekey_run_credentials{command=\"verify\",status=\"verified\"} 0"));
    }

    /// Serialized and machine names agree (the JSON report and the metrics say the same).
    #[test]
    fn status_keys_are_the_json_names() {
        for s in [
            Status::Rotated,
            Status::NotDue,
            Status::Revoked,
            Status::Planned,
            Status::Verified,
            Status::Listed,
            Status::Imported,
            Status::Failed,
        ] {
            assert_eq!(serde_json::to_value(s).unwrap(), s.key());
        }
    }

    #[test]
    fn labels_are_escaped() {
        assert_eq!(label("a\"b\\c\nd"), "a\\\"b\\\\c\\nd");
    }

    #[test]
    fn written_atomically_and_private() {
        use std::os::unix::fs::MetadataExt;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("rekey.prom");
        write_atomically(&path, "x 1\n").unwrap();
        write_atomically(&path, "x 2\n").unwrap();
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "x 2\n");
        assert_eq!(std::fs::metadata(&path).unwrap().mode() & 0o777, 0o600);
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1, "no temporary left");
    }
}
