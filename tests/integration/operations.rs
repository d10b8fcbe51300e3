//! Operations around scheduled rotation: metrics for monitoring.

use crate::util::Workspace;

/// Parses Prometheus text: `name{labels} value` lines and `#` comments, nothing else.
fn samples(text: &str) -> Vec<(String, f64)> {
    text.lines()
        .filter(|l| !l.starts_with('#') && !l.is_empty())
        .map(|l| {
            let (series, value) = l.rsplit_once(' ').expect("a sample line");
            (series.to_owned(), value.parse::<f64>().expect("a number"))
        })
        .collect()
}

#[test]
fn rotate_and_verify_write_prometheus_metrics() {
    let mut ws = Workspace::new();
    let (role, password) = ws.role("rk_metrics");
    ws.write_config(&[ws.credential("app-db", &role)]);
    ws.import("app-db", &password);
    let metrics = ws.path("rekey.prom");
    ws.rekey(&["rotate", "app-db", "--metrics-file", metrics.to_str().unwrap()])
        .assert_code(0);
    let text = std::fs::read_to_string(&metrics).unwrap();
    let s = samples(&text);
    let find = |name: &str| {
        s.iter()
            .find(|(series, _)| series.starts_with(name))
            .map(|(_, v)| *v)
            .unwrap_or_else(|| panic!("{name} missing:\n{text}"))
    };
    assert_eq!(
        find("rekey_credential_ok{credential=\"app-db\",command=\"rotate\"}"),
        1.0
    );
    assert_eq!(find("rekey_credential_current_age_seconds{credential=\"app-db\""), 0.0);
    assert_eq!(find("rekey_credential_pending{credential=\"app-db\""), 0.0);
    assert_eq!(find("rekey_run_exit_code{command=\"rotate\"}"), 0.0);
    assert!(!text.contains(&password));
    let mode = std::os::unix::fs::PermissionsExt::mode(&std::fs::metadata(&metrics).unwrap().permissions());
    assert_eq!(mode & 0o777, 0o600);

    ws.rekey(&["verify", "--metrics-file", metrics.to_str().unwrap()])
        .assert_code(0);
    let text = std::fs::read_to_string(&metrics).unwrap();
    assert!(
        text.contains("rekey_credential_next_due_timestamp_seconds{credential=\"app-db\",command=\"verify\"}"),
        "{text}"
    );
    assert!(samples(&text).len() >= 8);
}
