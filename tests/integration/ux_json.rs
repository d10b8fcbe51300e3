//! One JSON contract: every command's `-o json` output — successes, failed credentials
//! and errors that stop a command — is one envelope that validates against
//! docs/output.schema.json (checked with the `jsonschema` crate, draft 2020-12).

use crate::util::Workspace;
use crate::ux_support::{assert_envelope, Dir, OFFLINE_CONFIG};

/// Runs `rekey -o json ARGS` in `ws`, checks the exit code and the envelope.
#[track_caller]
fn envelope(ws: &Workspace, args: &[&str], stdin: &str, code: i32) -> serde_json::Value {
    let mut full = vec!["-o", "json"];
    full.extend_from_slice(args);
    let r = ws.rekey_stdin(&full, stdin);
    r.assert_code(code);
    let doc = assert_envelope(&args.join(" "), &r.stdout);
    assert_eq!(doc["exit_code"], code, "{}", r.stdout);
    doc
}

#[test]
fn the_schema_is_a_valid_draft_2020_12_schema() {
    let schema = crate::ux_support::schema();
    assert_eq!(schema["$schema"], "https://json-schema.org/draft/2020-12/schema");
    jsonschema::draft202012::meta::validate(&schema).expect("the schema is valid against the 2020-12 meta-schema");
}

#[test]
fn every_command_against_postgres_prints_one_valid_envelope() {
    let mut ws = Workspace::new();
    let (role, password) = ws.role("rk_uxjson");
    let (other, _) = ws.role("rk_uxjson_other");
    ws.write_config(&[ws.credential("app-db", &role), ws.credential("empty-db", &other)]);

    let doc = envelope(&ws, &["import", "app-db"], &password, 0);
    assert_eq!(doc["command"], "import");
    assert_eq!(doc["summary"]["imported"], 1);
    assert_eq!(doc["credentials"][0]["status"], "imported");

    let doc = envelope(&ws, &["plan", "app-db"], "", 0);
    assert_eq!(doc["command"], "plan");
    assert_eq!(doc["summary"]["planned"], 1);
    let steps: Vec<&str> = doc["credentials"][0]["plan_steps"]
        .as_array()
        .expect("plan_steps")
        .iter()
        .map(|s| s["step"].as_str().unwrap())
        .collect();
    for step in ["check", "generate", "stage", "apply", "verify", "promote"] {
        assert!(steps.contains(&step), "plan_steps lack {step}: {steps:?}");
    }

    let report = ws.path("run.json");
    let doc = envelope(&ws, &["rotate", "app-db", "--report", report.to_str().unwrap()], "", 0);
    assert_eq!(doc["summary"]["rotated"], 1);
    let steps = doc["credentials"][0]["steps"].as_array().unwrap();
    assert!(steps.iter().any(|s| s["step"] == "promote"));
    assert!(steps
        .iter()
        .all(|s| s["duration_ms"].is_number() && s["started"].is_string()));
    assert!(!doc.to_string().contains(&password));
    assert_envelope("rotate --report", &std::fs::read_to_string(&report).unwrap());

    let doc = envelope(&ws, &["verify", "app-db"], "", 0);
    assert_eq!(doc["summary"]["verified"], 1);
    let doc = envelope(&ws, &["status", "app-db"], "", 0);
    assert_eq!(doc["command"], "status");

    // A failed credential: nothing stored for it.
    let doc = envelope(&ws, &["verify"], "", 1);
    assert_eq!(doc["summary"]["failed"], 1);
    let failed = doc["credentials"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["name"] == "empty-db")
        .unwrap();
    assert_eq!(failed["status"], "failed");
    assert!(failed["error"]["kind"].is_string() && failed["error"]["step"].is_string());

    // leaked, as found and as rotated.
    let current = ws.stored_password("app-db", "current");
    let doc = envelope(&ws, &["leaked"], &format!("PGPASSWORD={current}\n"), 0);
    assert_eq!(doc["command"], "leaked");
    assert_eq!(doc["summary"]["matched"], 1);
    assert_eq!(doc["credentials"][0]["name"], "app-db");
    assert_eq!(doc["matches"][0]["credential"], "app-db", "the old field stays");
    let doc = envelope(&ws, &["leaked", "--rotate"], &current, 0);
    assert_eq!(doc["summary"]["rotated"], 1);
    let doc = envelope(&ws, &["leaked"], "not-a-stored-value-81d0c2", 1);
    assert_eq!(doc["error"]["kind"], "failed");

    // Errors that stop a command: the same envelope, no credentials.
    let doc = envelope(&ws, &["rotate", "ap-db"], "", 2);
    assert_eq!(doc["error"]["kind"], "usage");
    assert!(doc["error"]["message"]
        .as_str()
        .unwrap()
        .contains("did you mean `app-db`?"));
    let doc = envelope(&ws, &["get", "app-db", "--field", "pasword"], "", 2);
    assert_eq!(doc["command"], "get");
    let doc = envelope(&ws, &["import", "app-db"], "", 2);
    assert_eq!(doc["command"], "import");
    let doc = envelope(&ws, &["plan", "--leaked"], "", 2);
    assert_eq!(doc["command"], "plan");
}

#[test]
fn offline_commands_and_errors_print_valid_envelopes() {
    let d = Dir::with_config(OFFLINE_CONFIG);
    let check = |args: &[&str], code: i32| {
        let mut full = vec!["-o", "json"];
        full.extend_from_slice(args);
        let r = d.rekey(&full);
        r.assert_code(code);
        let doc = assert_envelope(&args.join(" "), &r.stdout);
        assert_eq!(doc["exit_code"], code);
        assert_eq!(doc["schema_version"], 1);
        doc
    };
    assert_eq!(check(&["validate"], 0)["command"], "validate");
    assert_eq!(check(&["list"], 0)["command"], "list");
    assert_eq!(check(&["init", "new.toml"], 0)["command"], "init");
    let doc = check(&["init", "new.toml"], 2);
    assert_eq!(doc["error"]["kind"], "usage");
    // import --batch (no target contacted with --no-verify into an empty store).
    let r = d.rekey_stdin(
        &["-o", "json", "import", "--batch", "--no-verify"],
        "{\"name\": \"orders-db\", \"value\": \"ux-batch-value-5c1e\"}\n",
    );
    r.assert_code(0);
    let doc = assert_envelope("import --batch", &r.stdout);
    assert_eq!(doc["summary"]["imported"], 1);
    assert!(!r.stdout.contains("ux-batch-value-5c1e"));
    let doc = check(&["status", "--tag", "nope"], 2);
    assert_eq!(doc["command"], "status");
    // A configuration error.
    d.write("bad.toml", "[defaults]\nparalel = 1\n");
    let doc = check(&["-c", "bad.toml", "verify"], 2);
    assert!(doc["error"]["message"].as_str().unwrap().contains("paralel"));
    assert_eq!(doc["credentials"], serde_json::json!([]));
    // A missing configuration file.
    let doc = check(&["-c", "missing.toml", "list"], 2);
    assert!(doc["error"]["message"].as_str().unwrap().contains("missing.toml"));
    // Command lines clap refuses: the envelope on stdout, clap's message on stderr.
    let doc = check(&["rotate", "--bogus"], 2);
    assert_eq!(doc["command"], "rotate");
    assert!(doc["error"]["message"].as_str().unwrap().contains("--bogus"));
    let r = d.rekey(&["rotate", "--bogus", "--output=json"]);
    r.assert_code(2);
    assert_envelope("--output=json", &r.stdout);
    assert!(r.stderr.contains("--bogus"));
    // Without -o json a usage error prints no JSON.
    let r = d.rekey(&["rotate", "--bogus"]);
    r.assert_code(2);
    assert_eq!(r.stdout, "");
}
