//! `status` tells the truth with ages: each state (ok, no secret, overdue, pending,
//! store missing) with its age and next step, exit 1 when any is not ok; `-o json` keeps
//! the timestamps and adds `state` and each version's `age_secs`.

use crate::util::{Held, Workspace};
use crate::ux_support::{assert_envelope, Dir, OFFLINE_CONFIG};

/// The human row of `name` in `status` output.
fn row<'a>(stdout: &'a str, name: &str) -> &'a str {
    stdout
        .lines()
        .find(|l| l.split_whitespace().any(|w| w == name))
        .unwrap_or_else(|| panic!("no row for {name} in:\n{stdout}"))
}

#[test]
fn ok_no_secret_overdue_and_store_missing_with_ages() {
    // status reads the store only: nothing listens on the targets' port.
    let d = Dir::with_config(OFFLINE_CONFIG);
    d.rekey_stdin(&["import", "--no-verify", "orders-db"], "pw-orders-1")
        .assert_code(0);
    let r = d.rekey(&["status", "orders-db"]);
    r.assert_code(0);
    let ok = row(&r.stdout, "orders-db");
    assert!(ok.starts_with("ok "), "{ok}");
    assert!(ok.contains("rotated 0s ago") || ok.contains("rotated 1s ago"), "{ok}");
    assert!(ok.contains("due in 40d") || ok.contains("due in 39d 23h"), "{ok}");
    assert!(!ok.contains(":00Z") && !ok.contains("Z;"), "a timestamp in: {ok}");

    // billing-db has nothing stored: exit 1, its next step named, printed once.
    let r = d.rekey(&["status"]);
    r.assert_code(1);
    let none = row(&r.stdout, "billing-db");
    assert!(none.starts_with("no secret "), "{none}");
    assert!(none.contains("`rekey import billing-db`"), "{none}");
    let all = format!("{}{}", r.stdout, r.stderr);
    assert_eq!(all.matches("rekey import billing-db").count(), 1, "{all}");
    assert!(r.stdout.contains("2 credentials: 1 ok, 1 no secret"), "{}", r.stdout);

    let doc = assert_envelope("status", &d.rekey(&["-o", "json", "status"]).stdout);
    assert_eq!(doc["exit_code"], 1);
    let orders = &doc["credentials"][0];
    assert_eq!(orders["state"], "ok");
    let version = &orders["versions"][0];
    assert!(version["created"].as_str().unwrap().ends_with('Z'), "{version}");
    assert!(version["age_secs"].as_u64().unwrap() < 60, "{version}");
    assert_eq!(doc["credentials"][1]["state"], "no secret");

    // Overdue: a policy of 1s, two seconds later.
    let d = Dir::with_config(&OFFLINE_CONFIG.replace("every = \"40d\"", "every = \"1s\""));
    d.rekey_stdin(&["import", "--no-verify", "orders-db"], "pw-orders-2")
        .assert_code(0);
    std::thread::sleep(std::time::Duration::from_millis(2100));
    let r = d.rekey(&["status", "orders-db"]);
    r.assert_code(1);
    let overdue = row(&r.stdout, "orders-db");
    assert!(overdue.starts_with("overdue "), "{overdue}");
    assert!(
        overdue.contains("due 1s ago") || overdue.contains("due 2s ago"),
        "{overdue}"
    );
    assert!(overdue.contains("`rekey rotate orders-db`"), "{overdue}");

    // Store missing: the file store's path does not exist (a typo): not "no secret".
    let d = Dir::with_config(&OFFLINE_CONFIG.replace("path = \"secrets.json\"", "path = \"secrts.json\""));
    let r = d.rekey(&["status", "orders-db"]);
    r.assert_code(1);
    let missing = row(&r.stdout, "orders-db");
    assert!(missing.starts_with("store missing "), "{missing}");
    assert!(missing.contains("secrts.json does not exist"), "{missing}");
    let doc = assert_envelope("status", &d.rekey(&["-o", "json", "status", "orders-db"]).stdout);
    assert_eq!(doc["credentials"][0]["state"], "store missing");
}

#[test]
fn a_pending_rotation_shows_its_age_and_how_to_finish_it() {
    let mut ws = Workspace::new();
    let (role, password) = ws.role("rk_uxstatus");
    ws.write_config(&[ws.credential("app-db", &role)]);
    ws.import("app-db", &password);
    Held::start(&ws, &["rotate", "app-db"], "after-stage").kill();
    let r = ws.rekey(&["status", "app-db"]);
    r.assert_code(1);
    let pending = row(&r.stdout, "app-db");
    assert!(pending.starts_with("pending "), "{pending}");
    assert!(pending.contains("pending for "), "{pending}");
    assert!(pending.contains("`rekey rotate app-db` finishes it"), "{pending}");
    let credential = ws.status_json("app-db");
    assert_eq!(credential["state"], "pending", "{credential}");
    // Finished by the next run: ok again.
    ws.rekey(&["rotate", "app-db"]).assert_code(0);
    ws.rekey(&["status", "app-db"]).assert_code(0);
}
