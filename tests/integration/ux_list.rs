//! `rekey list`: names, tags, store, key and target from the configuration alone: no
//! store opened, no secret and no admin URL shown.

use crate::ux_support::{assert_envelope, Dir, OFFLINE_CONFIG, UX_ADMIN_URL};

#[test]
fn list_shows_the_configured_credentials_and_nothing_secret() {
    let d = Dir::with_config(OFFLINE_CONFIG);
    let r = d.rekey(&["list"]);
    r.assert_code(0);
    let lines: Vec<&str> = r.stdout.lines().collect();
    assert_eq!(lines.len(), 3, "{}", r.stdout);
    for column in ["NAME", "TAGS", "STORE", "KEY", "TARGET"] {
        assert!(lines[0].contains(column), "{}", lines[0]);
    }
    assert!(lines[1].starts_with("orders-db "), "{}", lines[1]);
    for part in [
        "prod,orders",
        "local",
        "orders/db",
        "single",
        "40d",
        "postgres",
        "orders_app",
        "127.0.0.1:9/orders",
    ] {
        assert!(lines[1].contains(part), "lacks {part}: {}", lines[1]);
    }
    assert!(lines[2].starts_with("billing-db "), "{}", lines[2]);
    let all = format!("{}{}", r.stdout, r.stderr);
    assert!(
        !all.contains("ux-admin-pw") && !all.contains(UX_ADMIN_URL) && !all.contains("ux_rotator"),
        "{all}"
    );
    assert!(!d.path("secrets.json").exists() && !d.path("audit.jsonl").exists());
}

#[test]
fn list_by_tag_and_as_json() {
    let d = Dir::with_config(OFFLINE_CONFIG);
    let r = d.rekey(&["list", "--tag", "staging"]);
    r.assert_code(0);
    assert_eq!(r.stdout.lines().count(), 2);
    assert!(r.stdout.contains("billing-db") && !r.stdout.contains("orders-db"));

    let r = d.rekey(&["-o", "json", "list", "--tag", "prod"]);
    r.assert_code(0);
    assert!(!r.stdout.contains("ux-admin-pw"));
    let doc = assert_envelope("list", &r.stdout);
    assert_eq!(doc["command"], "list");
    assert_eq!(doc["summary"]["listed"], 1);
    let c = &doc["credentials"][0];
    assert_eq!(c["name"], "orders-db");
    assert_eq!(c["status"], "listed");
    assert_eq!(c["tags"], serde_json::json!(["prod", "orders"]));
    assert_eq!(c["store_name"], "local");
    assert_eq!(c["key"], "orders/db");
    assert_eq!(c["target_type"], "postgres");
    assert_eq!(c["every"], "40d");
}

#[test]
fn list_with_a_mistyped_tag_is_exit_2_with_a_suggestion() {
    let d = Dir::with_config(OFFLINE_CONFIG);
    let r = d.rekey(&["list", "--tag", "prdo"]);
    r.assert_code(2);
    r.assert_one_error(&["no credential has tag `prdo`", "did you mean `prod`?"]);
}

/// Review: one credential's unset variable made `list` exit 2 for all, and `status` say
/// `ok` for a credential no run can rotate. Now `list` shows every credential and
/// `status` calls that one `misconfigured` (exit 1), naming the variable.
#[test]
fn an_unset_variable_hides_nothing_and_is_not_ok() {
    let config = format!(
        "{OFFLINE_CONFIG}\n[[credentials]]\nname = \"cache\"\nstore = \"local\"\nkey = \"cache\"\n\
         target = {{ type = \"redis\", host = \"${{REKEY_UX_CACHE_HOST}}\", port = 9, username = \"app\" }}\n"
    );
    let d = Dir::with_config(&config);
    // Without the variable, import of that credential fails as the credential's failure
    // (exit 1, naming it), not as a usage error.
    let r = d.rekey_stdin(&["import", "cache", "--no-verify"], "a-stored-password-0123456789");
    r.assert_code(1);
    r.assert_one_error(&["cache: import:", "REKEY_UX_CACHE_HOST"]);
    let mut import = d.command();
    import
        .env("REKEY_UX_CACHE_HOST", "127.0.0.1")
        .args(["import", "cache", "--no-verify"]);
    crate::util::run(import, "a-stored-password-0123456789").assert_code(0);

    let r = d.rekey(&["list"]);
    r.assert_code(0);
    for name in ["orders-db", "billing-db", "cache"] {
        assert!(r.stdout.contains(name), "{name}: {}", r.stdout);
    }
    assert!(r.stdout.contains("not configured"), "{}", r.stdout);

    let r = d.rekey(&["-o", "json", "status", "cache"]);
    r.assert_code(1);
    let doc = assert_envelope("status", &r.stdout);
    let cache = &doc["credentials"][0];
    assert_eq!(cache["state"], "misconfigured", "{cache}");
    assert!(
        cache["error"]["message"]
            .as_str()
            .unwrap()
            .contains("REKEY_UX_CACHE_HOST"),
        "{cache}"
    );
}
