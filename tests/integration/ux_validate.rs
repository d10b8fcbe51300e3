//! `rekey validate`: the configuration checked offline — no network, no store opened —
//! with "ok: N credentials, M stores" or one error line and exit 2.

use crate::ux_support::{assert_envelope, Dir, OFFLINE_CONFIG, UX_ADMIN_ENV};
use std::time::{Duration, Instant};

#[test]
fn a_good_config_is_ok_without_contacting_anything() {
    // Targets on an unroutable address would hang a connect; the store file is not JSON
    // and would fail an open. validate does neither.
    let config = OFFLINE_CONFIG.replace("host = \"127.0.0.1\"", "host = \"10.255.255.1\"");
    let d = Dir::with_config(&config);
    d.write("secrets.json", "this is not a store");
    std::fs::set_permissions(
        d.path("secrets.json"),
        std::os::unix::fs::PermissionsExt::from_mode(0o600),
    )
    .unwrap();
    let started = Instant::now();
    let r = d.rekey(&["validate"]);
    r.assert_code(0);
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "validate took {:?}",
        started.elapsed()
    );
    assert_eq!(r.stdout, "ok: 2 credentials, 1 store\n");
    assert_eq!(
        std::fs::read_to_string(d.path("secrets.json")).unwrap(),
        "this is not a store"
    );
    assert!(!d.path("audit.jsonl").exists(), "validate writes no audit record");
}

/// One warning per store, however many credentials use it (10,000 credentials on a new
/// store once printed 10,000 lines); in JSON each credential carries it.
#[test]
fn a_missing_store_file_is_one_warning_not_an_error() {
    let d = Dir::with_config(OFFLINE_CONFIG);
    let r = d.rekey(&["validate"]);
    r.assert_code(0);
    assert_eq!(r.stderr.lines().count(), 1, "one line for the store: {}", r.stderr);
    assert!(
        r.stderr
            .starts_with("warning: store `local`: secrets.json does not exist yet"),
        "{}",
        r.stderr
    );
    assert!(
        r.stderr.contains("`rekey import NAME` (or `import --batch`)"),
        "{}",
        r.stderr
    );
    assert!(r.stderr.trim_end().ends_with("(2 credentials)"), "{}", r.stderr);
    let r = d.rekey(&["-o", "json", "validate"]);
    r.assert_code(0);
    let doc = assert_envelope("validate", &r.stdout);
    for c in doc["credentials"].as_array().unwrap() {
        let warnings = c["warnings"].as_array().expect("the store's warning");
        assert_eq!(warnings.len(), 1, "{c}");
        assert!(warnings[0].as_str().unwrap().contains("does not exist yet"), "{c}");
    }
    // A store one credential uses names it, and the command to run.
    let one = OFFLINE_CONFIG
        .split("\n[[credentials]]\nname = \"billing-db\"")
        .next()
        .unwrap();
    let d = Dir::with_config(one);
    let r = d.rekey(&["validate"]);
    r.assert_code(0);
    assert_eq!(r.stderr.lines().count(), 1, "{}", r.stderr);
    assert!(
        r.stderr.starts_with("warning: orders-db: store `local`"),
        "{}",
        r.stderr
    );
    assert!(r.stderr.contains("`rekey import orders-db`"), "{}", r.stderr);
}

#[test]
fn each_kind_of_mistake_is_one_line_and_exit_2() {
    let cases: Vec<(String, Vec<&str>)> = vec![
        (
            OFFLINE_CONFIG.replace("[defaults]", "[defaults]\nparalel = 3"),
            vec!["rekey.toml:2:", "paralel"],
        ),
        (format!("{OFFLINE_CONFIG}\n[[credentials]\n"), vec!["rekey.toml:"]),
        (
            OFFLINE_CONFIG.replacen("store = \"local\"", "store = \"vault\"", 1),
            vec!["credential `orders-db`", "unknown store `vault`"],
        ),
        (
            OFFLINE_CONFIG.replace("path = \"secrets.json\"", "path = \"no/such/dir/secrets.json\""),
            vec!["store `local`", "no/such/dir", "does not exist"],
        ),
        (
            OFFLINE_CONFIG
                .replacen("username = \"orders_app\"", "usernames = [\"a\", \"b\"]", 1)
                .replacen(", admin = \"${REKEY_UX_ADMIN_URL}\"", "", 1),
            vec!["credential `orders-db`", "alternating"],
        ),
    ];
    for (config, parts) in cases {
        let d = Dir::with_config(&config);
        let r = d.rekey(&["validate"]);
        r.assert_code(2);
        r.assert_one_error(&parts);
        assert_eq!(r.stdout, "");
        let r = d.rekey(&["-o", "json", "validate"]);
        r.assert_code(2);
        let doc = assert_envelope("validate error", &r.stdout);
        assert_eq!(doc["error"]["kind"], "usage");
    }
    // A variable that is not set.
    let d = Dir::with_config(OFFLINE_CONFIG);
    let mut cmd = d.command();
    cmd.env_remove(UX_ADMIN_ENV).arg("validate");
    let r = crate::util::run(cmd, "");
    r.assert_code(2);
    r.assert_one_error(&[UX_ADMIN_ENV, "not set"]);
    // A store file others can read: the file store would refuse it at run time.
    let d = Dir::with_config(OFFLINE_CONFIG);
    d.write("secrets.json", "{}");
    std::fs::set_permissions(
        d.path("secrets.json"),
        std::os::unix::fs::PermissionsExt::from_mode(0o644),
    )
    .unwrap();
    let r = d.rekey(&["validate"]);
    r.assert_code(2);
    r.assert_one_error(&["store `local`", "0644", "chmod 600"]);
}

#[test]
fn validate_json_lists_credentials_and_stores() {
    let d = Dir::with_config(OFFLINE_CONFIG);
    let r = d.rekey(&["-o", "json", "validate"]);
    r.assert_code(0);
    let doc = assert_envelope("validate", &r.stdout);
    assert_eq!(doc["command"], "validate");
    assert_eq!(doc["summary"]["valid"], 2);
    assert_eq!(doc["stores"], serde_json::json!(["local"]));
    assert_eq!(doc["credentials"][0]["name"], "orders-db");
    assert_eq!(doc["credentials"][0]["status"], "valid");
}

/// Review: `include` with a wildcard failed ("directory  does not exist") when the config
/// path has no directory part: the default `rekey.toml`, or `-c rekey.toml`.
#[test]
fn include_works_with_a_bare_config_file_name() {
    let d = Dir::with_config(&format!("include = [\"*.inc.toml\"]\n{OFFLINE_CONFIG}"));
    d.write(
        "extra.inc.toml",
        "[[credentials]]\nname = \"cache\"\nstore = \"local\"\nkey = \"cache\"\n\
         target = { type = \"redis\", host = \"127.0.0.1\", port = 9, username = \"app\" }\n",
    );
    for args in [&["validate"][..], &["-c", "rekey.toml", "validate"][..]] {
        let r = d.rekey(args);
        r.assert_code(0);
        assert_eq!(r.stdout, "ok: 3 credentials, 1 store\n", "{args:?}");
    }
}
