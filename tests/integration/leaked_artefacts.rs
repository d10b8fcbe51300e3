//! Incident mode as a responder meets it: the leaked artefact as found, scanner output,
//! safe selection, the report checked before anything changes, already dead values.

use crate::util::Workspace;

fn setup(ws: &mut Workspace) -> (String, String) {
    let (role, leaked) = ws.role("rk_artefact");
    let (other, other_pw) = ws.role("rk_artefact_other");
    ws.write_config(&[ws.credential("orders-db", &role), ws.credential("other-db", &other)]);
    ws.import("orders-db", &leaked);
    ws.import("other-db", &other_pw);
    (role, leaked)
}

fn first_match(stdout: &str) -> Vec<String> {
    stdout
        .lines()
        .next()
        .unwrap_or_default()
        .split('\t')
        .take(2)
        .map(str::to_owned)
        .collect()
}

#[test]
fn leaked_artefacts_as_found_name_the_holder() {
    let mut ws = Workspace::new();
    let (role, leaked) = setup(&mut ws);
    let encoded = leaked
        .replace('%', "%25")
        .replace('@', "%40")
        .replace(':', "%3A")
        .replace('/', "%2F");
    let artefacts = [
        (
            "dsn",
            format!("postgresql://{role}:{encoded}@db.internal:5432/orders\n"),
        ),
        (
            "env",
            format!("# prod\nDB_HOST=db.internal\nDB_USER={role}\nexport DB_PASS=\"{leaked}\"\nDEBUG=false\n"),
        ),
        (
            "json",
            serde_json::json!({"service": {"db": {"user": role, "password": leaked}}}).to_string(),
        ),
        (
            "log line",
            format!("2026-11-30T01:02:03Z WARN connecting with password \"{leaked}\" to db\n"),
        ),
    ];
    for (what, text) in &artefacts {
        let r = ws.rekey_stdin(&["leaked"], text);
        r.assert_code(0);
        assert_eq!(first_match(&r.stdout), ["orders-db", "current"], "{what}: {}", r.stdout);
        assert!(!r.stdout.contains(&leaked) && !r.stderr.contains(&leaked), "{what}");
    }
    let trufflehog = serde_json::json!({"DetectorName": "Postgres", "Raw": leaked, "RawV2": format!("postgresql://{role}:{encoded}@db:5432")})
        .to_string();
    let r = ws.rekey_stdin(&["leaked", "--from", "trufflehog"], &trufflehog);
    r.assert_code(0);
    assert_eq!(first_match(&r.stdout), ["orders-db", "current"], "{}", r.stdout);
    let gitleaks = serde_json::json!([{"RuleID": "generic", "Secret": leaked, "Match": format!("password = \"{leaked}\""), "File": ".env"}])
        .to_string();
    let file = ws.path("gitleaks.json");
    std::fs::write(&file, gitleaks).unwrap();
    let r = ws.rekey(&["leaked", "--from", "gitleaks", file.to_str().unwrap()]);
    r.assert_code(0);
    assert_eq!(first_match(&r.stdout), ["orders-db", "current"], "{}", r.stdout);

    // Every lookup is audited, by fingerprint only.
    let audit = ws.audit_log();
    assert!(audit.contains("\"step\":\"leaked-lookup\""), "{audit}");
    assert!(!audit.contains(&leaked));
}

#[test]
fn leaked_env_file_rotate_writes_a_markdown_record() {
    let mut ws = Workspace::new();
    let (role, leaked) = setup(&mut ws);
    let other_before = ws.stored_password("other-db", "current");
    let env = format!("DATABASE_URL=postgresql://{role}@db/x\nDB_PASSWORD={leaked}\nOTHER=unrelated-value-123\n");
    let report = ws.path("incident.md");
    let r = ws.rekey_stdin(&["leaked", "--rotate", "--report", report.to_str().unwrap()], &env);
    r.assert_code(0);
    assert!(!ws.can_login(&role, &leaked), "the leaked password is dead");
    let current = ws.stored_password("orders-db", "current");
    assert!(ws.can_login(&role, &current));
    assert_eq!(
        ws.stored_password("other-db", "current"),
        other_before,
        "only what leaked rotates"
    );
    let md = std::fs::read_to_string(&report).unwrap();
    for part in [
        "# Incident record",
        "Operator",
        "## What leaked",
        "sha256:",
        "prove-dead",
        "Contained",
    ] {
        assert!(md.contains(part), "the record lacks {part}:\n{md}");
    }
    assert!(
        !md.contains(&leaked) && !md.contains(&current),
        "no secret in the record"
    );
    let mode = std::os::unix::fs::PermissionsExt::mode(&std::fs::metadata(&report).unwrap().permissions());
    assert_eq!(mode & 0o777, 0o600);
}

#[test]
fn an_already_dead_value_is_not_an_emergency() {
    let mut ws = Workspace::new();
    let (role, old) = setup(&mut ws);
    ws.rekey(&["rotate", "orders-db"]).assert_code(0);
    let current = ws.stored_password("orders-db", "current");
    let r = ws.rekey_stdin(&["leaked", "--rotate"], &old);
    r.assert_code(0);
    assert!(
        r.stdout.contains("already dead") || r.stderr.contains("already dead"),
        "{}{}",
        r.stdout,
        r.stderr
    );
    assert_eq!(ws.stored_password("orders-db", "current"), current, "not rotated again");
    assert!(!ws.can_login(&role, &old));
}

#[test]
fn rotate_leaked_without_a_selection_is_a_usage_error() {
    let mut ws = Workspace::new();
    let (_, leaked) = setup(&mut ws);
    let r = ws.rekey(&["rotate", "--leaked"]);
    r.assert_code(2);
    assert!(r.stderr.contains("names or --tag"), "{}", r.stderr);
    ws.rekey(&["plan", "--leaked"]).assert_code(2);
    assert_eq!(ws.stored_password("orders-db", "current"), leaked, "nothing changed");
}

#[test]
fn an_unwritable_report_path_stops_before_anything_changes() {
    let mut ws = Workspace::new();
    let (role, leaked) = setup(&mut ws);
    let r = ws.rekey(&[
        "rotate",
        "--leaked",
        "orders-db",
        "--report",
        "/nonexistent-dir/incident.md",
    ]);
    r.assert_code(2);
    assert!(r.stderr.contains("nothing was changed"), "{}", r.stderr);
    assert_eq!(ws.stored_password("orders-db", "current"), leaked);
    assert!(ws.can_login(&role, &leaked));
}

#[test]
fn a_missing_store_file_is_not_created_by_rotate() {
    let mut ws = Workspace::new();
    let (role, password) = ws.role("rk_nostore");
    ws.write_config(&[ws.credential("app-db", &role)]);
    let r = ws.rekey(&["rotate", "app-db"]);
    r.assert_code(2);
    assert!(
        r.stderr.contains("does not exist") && r.stderr.contains("--create-store"),
        "{}",
        r.stderr
    );
    assert!(!ws.path("secrets.json").exists());
    assert!(ws.can_login(&role, &password), "the target was not touched");
    ws.rekey(&["rotate", "--create-store", "app-db"]).assert_code(0);
    assert!(ws.can_login(&role, &ws.stored_password("app-db", "current")));
}

#[test]
fn import_refuses_oversized_and_empty_input_and_unverified_overwrites() {
    let mut ws = Workspace::new();
    let (role, password) = ws.role("rk_import_rules");
    ws.write_config(&[ws.credential("app-db", &role)]);
    let r = ws.rekey_stdin(&["import", "app-db"], &"x".repeat(70 * 1024));
    r.assert_code(2);
    ws.rekey_stdin(&["import", "app-db"], "").assert_code(2);
    ws.import("app-db", &password);
    // An unverified import over a current secret that still works is refused...
    let r = ws.rekey_stdin(&["import", "app-db", "--no-verify"], "some-other-value-123");
    r.assert_code(1);
    assert!(r.stderr.contains("--force"), "{}", r.stderr);
    assert_eq!(ws.stored_password("app-db", "current"), password);
    // ...unless forced.
    ws.rekey_stdin(&["import", "app-db", "--no-verify", "--force"], "some-other-value-123")
        .assert_code(0);
}

#[test]
fn json_output_of_an_incident_holds_the_record() {
    let mut ws = Workspace::new();
    let (_, leaked) = setup(&mut ws);
    let r = ws.rekey(&["-o", "json", "rotate", "--leaked", "orders-db"]);
    r.assert_code(0);
    let doc: serde_json::Value = serde_json::from_str(&r.stdout).unwrap();
    assert_eq!(doc["incident"]["kind"], "incident", "{doc}");
    assert!(doc["incident"]["summary"].as_str().unwrap().contains("Contained"));
    assert!(!r.stdout.contains(&leaked));
}

/// Issue 10: a password leaked inside a DSN, a .env file, a JSON snippet, a trufflehog
/// line and a gitleaks report is each matched and rotated (one after the other, each
/// time the then-current password leaks).
#[test]
fn each_artefact_form_is_matched_and_rotated() {
    let mut ws = Workspace::new();
    let (role, _) = setup(&mut ws);
    type Form = fn(&str, &str) -> (Vec<&'static str>, String);
    let forms: [(&str, Form); 5] = [
        ("dsn", |role, pw| {
            let encoded = pw
                .replace('%', "%25")
                .replace('@', "%40")
                .replace(':', "%3A")
                .replace('/', "%2F");
            (
                vec![],
                format!("postgresql://{role}:{encoded}@db.internal:5432/orders\n"),
            )
        }),
        ("env", |role, pw| {
            (vec![], format!("DB_USER={role}\nDB_PASSWORD=\"{pw}\"\nDEBUG=0\n"))
        }),
        ("json", |role, pw| {
            (
                vec![],
                serde_json::json!({"db": {"user": role, "password": pw}}).to_string(),
            )
        }),
        ("trufflehog", |_, pw| {
            (
                vec!["--from", "trufflehog"],
                serde_json::json!({"DetectorName": "Postgres", "Raw": pw}).to_string(),
            )
        }),
        ("gitleaks", |_, pw| {
            (
                vec!["--from", "gitleaks"],
                serde_json::json!([{"RuleID": "generic", "Secret": pw}]).to_string(),
            )
        }),
    ];
    for (what, form) in forms {
        let leaked = ws.stored_password("orders-db", "current");
        let (flags, text) = form(&role, &leaked);
        let mut args = vec!["leaked", "--rotate"];
        args.extend(flags);
        let r = ws.rekey_stdin(&args, &text);
        assert_eq!(r.code, 0, "{what}: {}", r.stderr);
        assert!(!ws.can_login(&role, &leaked), "{what}: the leaked password is dead");
        let now = ws.stored_password("orders-db", "current");
        assert_ne!(now, leaked, "{what}: rotated");
        assert!(ws.can_login(&role, &now), "{what}: the new one works");
        assert!(!r.stdout.contains(&leaked) && !r.stderr.contains(&leaked), "{what}");
    }
}

/// A report, JUnit or metrics path that is the store file (or the config, or the audit
/// log) is refused before anything changes: writing it would destroy every secret.
#[test]
fn a_report_path_that_is_the_store_is_refused() {
    let mut ws = Workspace::new();
    let (role, leaked) = setup(&mut ws);
    let store = ws.path("secrets.json");
    let before = std::fs::read(&store).unwrap();
    for args in [
        vec!["rotate", "--leaked", "orders-db", "--report", "secrets.json"],
        vec!["rotate", "orders-db", "--metrics-file", "rekey.toml"],
        vec!["verify", "--junit", "./audit.jsonl"],
    ] {
        let r = ws.rekey(&args);
        r.assert_code(2);
        assert!(r.stderr.contains("nothing was changed"), "{args:?}: {}", r.stderr);
    }
    assert_eq!(std::fs::read(&store).unwrap(), before, "the store is untouched");
    assert!(ws.can_login(&role, &leaked));
}

/// Found trying it: a `.env` with one Latin-1 byte in a comment was refused whole ("not
/// valid UTF-8", exit 2), and empty input was answered with an `import` hint.
#[test]
fn a_latin1_byte_does_not_hide_the_leak_and_empty_input_says_how() {
    use std::io::Write;
    let mut ws = Workspace::new();
    let (_, leaked) = setup(&mut ws);
    let mut input = b"# Datenbank f\xfcr die Bestellungen\n".to_vec();
    input.extend_from_slice(format!("DB_PASS={leaked}\n").as_bytes());
    let mut child = ws
        .command()
        .arg("leaked")
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(&input).unwrap();
    let out = child.wait_with_output().unwrap();
    let (stdout, stderr) = (
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr),
    );
    assert_eq!(out.status.code(), Some(0), "{stdout}\n{stderr}");
    assert_eq!(first_match(&stdout), ["orders-db", "current"], "{stdout}");
    assert!(stderr.contains("not valid UTF-8 (first at byte 13)"), "{stderr}");

    let empty = ws.rekey_stdin(&["leaked"], "");
    empty.assert_code(2);
    assert!(
        empty.stderr.contains("pipe what was found in") && !empty.stderr.contains("rekey import"),
        "{}",
        empty.stderr
    );
}

/// Found trying it: the configured admin connection string pasted as found was "held by
/// no configured credential". rekey does not rotate an admin it only uses, but it says
/// whose admin it is and what to do (exit 1: not contained by rekey).
#[test]
fn a_leaked_admin_password_is_named_as_the_admin_of_its_credentials() {
    let mut ws = Workspace::new();
    setup(&mut ws);
    let admin_url = ws.pg.admin_url();
    let admin_password = admin_url
        .split_once("://")
        .and_then(|(_, rest)| rest.split_once('@'))
        .and_then(|(info, _)| info.split_once(':'))
        .map(|(_, pw)| pw.to_owned())
        .expect("the test cluster's admin has a password");
    for pasted in [format!("ADMIN_URL={admin_url}\n"), admin_password.clone()] {
        let r = ws.rekey_stdin(&["leaked"], &pasted);
        r.assert_code(1);
        assert!(
            r.stderr
                .contains("password of the admin connection configured for orders-db, other-db"),
            "{}",
            r.stderr
        );
        assert!(!r.stderr.contains(&admin_password) && !r.stdout.contains(&admin_password));
    }
    // Beside a credential's leaked password: that one is found (and would be rotated),
    // and the run still exits 1, since the admin password is not contained.
    let leaked = ws.stored_password("orders-db", "current");
    let r = ws.rekey_stdin(&["leaked"], &format!("DB_PASS={leaked}\nADMIN_URL={admin_url}\n"));
    r.assert_code(1);
    assert!(r.stdout.contains("orders-db"), "{}", r.stdout);
    assert!(
        r.stderr
            .contains("warning: a value found is the password of the admin connection"),
        "{}",
        r.stderr
    );
}
