//! PostgreSQL alternating users through the CLI: zero downtime for an application
//! that always reads the stored current credential, deferred revocation after the
//! grace period, and the previous user refused afterwards.

use crate::util::{login, unique, Workspace};
use rekey_testbed::quote_ident;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

/// The current (username, password) of `key`, read straight from the store file as an
/// application would.
fn stored_current(store: &std::path::Path, key: &str) -> Option<(String, String)> {
    let text = std::fs::read_to_string(store).ok()?;
    let doc: serde_json::Value = serde_json::from_str(&text).ok()?;
    let versions = doc["keys"][key]["versions"].as_array()?;
    let current = versions
        .iter()
        .find(|v| v["stages"].as_array().is_some_and(|s| s.iter().any(|x| x == "current")))?;
    Some((
        current["value"]["username"].as_str()?.to_owned(),
        current["value"]["password"].as_str()?.to_owned(),
    ))
}

#[test]
fn alternating_rotation_has_zero_downtime_and_revokes_after_grace() {
    let mut ws = Workspace::new();
    let group = unique("rk_alt_group");
    ws.pg.psql(&format!("CREATE ROLE {} NOLOGIN", quote_ident(&group)));
    let (a, password_a) = ws.role("rk_alt_a");
    let (b, _) = ws.role("rk_alt_b");
    ws.pg.psql(&format!(
        "GRANT {g} TO {a}; GRANT {g} TO {b};",
        g = quote_ident(&group),
        a = quote_ident(&a),
        b = quote_ident(&b)
    ));
    let credential = format!(
        "[[credentials]]\nname = \"app-db\"\nstore = \"local\"\nkey = \"app/db\"\nstrategy = \"alternating\"\ngrace = \"2s\"\n\
         target = {{ type = \"postgres\", host = \"127.0.0.1\", port = {}, dbname = \"postgres\", usernames = [\"{a}\", \"{b}\"], \
         admin = \"${{{}}}\", sslmode = \"disable\" }}\n",
        ws.pg.port(),
        crate::util::ADMIN_ENV
    );
    ws.write_config(&[credential]);
    ws.rekey_stdin(
        &["import", "app-db"],
        &format!("{{\"username\":\"{a}\",\"password\":\"{password_a}\"}}"),
    )
    .assert_code(0);
    ws.rekey(&["plan", "app-db"]).assert_code(0);

    let store = ws.path("secrets.json");
    let stop = Arc::new(AtomicBool::new(false));
    let (logins, failures) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
    let app = {
        let (stop, logins, failures, store) = (stop.clone(), logins.clone(), failures.clone(), store.clone());
        let pg = ws.pg;
        std::thread::spawn(move || {
            let mut iterations = 0;
            while !stop.load(Ordering::Relaxed) && iterations < 2000 {
                iterations += 1;
                let (user, password) = stored_current(&store, "app/db").expect("the store always has a current secret");
                if login(pg, &user, &password) {
                    logins.fetch_add(1, Ordering::Relaxed);
                } else {
                    failures.fetch_add(1, Ordering::Relaxed);
                }
            }
        })
    };
    for round in 0..3 {
        if round > 0 {
            // Inside the grace period a plain rotate refuses to cut it short.
            let early = ws.rekey(&["rotate", "app-db"]);
            early.assert_code(1);
            early.assert_one_error(&["app-db: revoke:", "grace period runs until"]);
            std::thread::sleep(Duration::from_millis(2100));
        }
        ws.rekey(&["rotate", "app-db"]).assert_code(0);
    }
    std::thread::sleep(Duration::from_millis(300));
    stop.store(true, Ordering::Relaxed);
    app.join().unwrap();
    assert_eq!(
        failures.load(Ordering::Relaxed),
        0,
        "an application using the stored current secret never failed"
    );
    assert!(
        logins.load(Ordering::Relaxed) >= 5,
        "the application really logged in during the rotations"
    );

    // The users took turns: three rotations from a → b → a → b.
    let (live, live_password) = stored_current(&store, "app/db").unwrap();
    assert_eq!(live, b);
    assert!(ws.can_login(&b, &live_password));
    let previous = ws.stored_password("app-db", "previous");
    let status = ws.status_json("app-db");
    let prev = status["versions"]
        .as_array()
        .unwrap()
        .iter()
        .find(|v| v["stages"][0] == "previous")
        .unwrap()
        .clone();
    assert!(
        prev["revoked"].is_null(),
        "inside the grace period the previous user still works: {status}"
    );
    assert!(ws.can_login(&a, &previous));

    // After the grace period, --due finishes the revocation and proves it.
    std::thread::sleep(Duration::from_millis(2100));
    let r = ws.rekey(&["-o", "json", "rotate", "--due"]);
    r.assert_code(0);
    let doc: serde_json::Value = serde_json::from_str(&r.stdout).unwrap();
    assert_eq!(doc["credentials"][0]["status"], "revoked", "{doc}");
    assert!(
        !ws.can_login(&a, &previous),
        "the previous user's secret is refused after the grace period"
    );
    assert!(ws.can_login(&b, &live_password));
    ws.rekey(&["verify", "app-db"]).assert_code(0);
    ws.pg.psql(&format!("DROP ROLE IF EXISTS {}", quote_ident(&group)));
}
