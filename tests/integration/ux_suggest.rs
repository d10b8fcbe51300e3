//! Suggestions: a mistyped credential name gets the closest one (not every name), a
//! mistyped tag or an empty configuration is exit 2 instead of doing nothing, and
//! `get --field` with a wrong field lists the field names (never a value).

use crate::ux_support::{Dir, OFFLINE_CONFIG};

#[test]
fn a_mistyped_name_gets_the_closest_one() {
    let d = Dir::with_config(OFFLINE_CONFIG);
    for args in [
        &["rotate", "ordrs-db"][..],
        &["plan", "odrers-db"],
        &["status", "orders-bd"],
        &["verify", "ORDERS-DB"],
        &["get", "orders-d"],
    ] {
        let r = d.rekey(args);
        r.assert_code(2);
        r.assert_one_error(&["unknown credential", "did you mean `orders-db`?"]);
        assert!(!r.stderr.contains("billing-db"), "only the closest name: {}", r.stderr);
    }
    assert!(!d.path("secrets.json").exists(), "nothing was touched");
}

#[test]
fn many_names_are_not_all_listed() {
    let mut config = OFFLINE_CONFIG.to_owned();
    for i in 0..30 {
        config.push_str(&format!(
            "\n[[credentials]]\nname = \"svc-{i:02}\"\nstore = \"local\"\nkey = \"svc/{i}\"\n\
             target = {{ type = \"postgres\", host = \"127.0.0.1\", port = 9, dbname = \"d\", username = \"svc_{i}\", \
             admin = \"${{REKEY_UX_ADMIN_URL}}\", sslmode = \"disable\" }}\n"
        ));
    }
    let d = Dir::with_config(&config);
    let r = d.rekey(&["status", "payments-api"]);
    r.assert_code(2);
    r.assert_one_error(&[
        "unknown credential `payments-api`",
        "32 credentials configured",
        "rekey list",
    ]);
    assert!(!r.stderr.contains("svc-17"), "{}", r.stderr);
}

#[test]
fn selections_that_match_nothing_are_usage_errors() {
    let d = Dir::with_config(OFFLINE_CONFIG);
    let r = d.rekey(&["rotate", "--due", "--tag", "prdo"]);
    r.assert_code(2);
    r.assert_one_error(&["no credential has tag `prdo`", "did you mean `prod`?"]);
    let r = d.rekey(&["verify", "--tag", "zzz"]);
    r.assert_code(2);
    r.assert_one_error(&["no credential has tag `zzz`", "known: orders, prod, staging"]);
    let r = d.rekey(&["status", "orders-db", "--tag", "staging"]);
    r.assert_code(2);
    r.assert_one_error(&["no credential is both named"]);
    let empty = Dir::with_config("[stores.local]\ntype = \"file\"\npath = \"secrets.json\"\n");
    let r = empty.rekey(&["rotate", "--due"]);
    r.assert_code(2);
    r.assert_one_error(&["defines no credentials", "rekey init"]);
}

#[test]
fn a_wrong_field_lists_the_field_names_only() {
    let d = Dir::with_config(OFFLINE_CONFIG);
    let secret = "ux-Secret-Value-9f81";
    d.rekey_stdin(&["import", "orders-db", "--no-verify"], secret)
        .assert_code(0);
    let r = d.rekey(&["get", "orders-db", "--field", "pasword"]);
    r.assert_code(2);
    r.assert_one_error(&[
        "no field `pasword`",
        "did you mean `password`?",
        "password",
        "username",
        "host",
    ]);
    assert!(!r.stderr.contains(secret) && !r.stdout.contains(secret));
    assert!(!r.stderr.contains("orders_app"), "values are not shown: {}", r.stderr);
    let r = d.rekey(&["get", "orders-db", "--field", "password"]);
    r.assert_code(0);
    assert_eq!(r.stdout, format!("{secret}\n"));
}
