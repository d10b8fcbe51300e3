//! `rekey verify` on an expired password says it expired (issue 12): a PostgreSQL role
//! past its `VALID UNTIL` (which the server refuses exactly as a wrong password; the
//! target asks its admin connection why), and a MariaDB account with `PASSWORD EXPIRE`
//! (which the server itself reports, error 1820). `import` of the expired PostgreSQL
//! password says the same. A password changed behind rekey's back is still reported as
//! just refused.

use crate::util::{run, unique, Run, Workspace};
use rekey_testbed::MariaDb;
use std::process::Command;

/// The one `error:` line of a failed `verify`, checked for `parts` and for no `secret`.
#[track_caller]
fn verify_error(r: &Run, parts: &[&str], secret: &str) -> String {
    r.assert_code(1);
    r.assert_one_error(parts);
    assert!(
        !r.stdout.contains(secret) && !r.stderr.contains(secret),
        "the password is shown: {}{}",
        r.stdout,
        r.stderr
    );
    r.error_lines()[0].to_owned()
}

#[test]
fn verify_says_a_postgres_password_past_valid_until_expired() {
    let mut ws = Workspace::new();
    let (expiring, expiring_pw) = ws.role("rk_exp");
    let (changed, changed_pw) = ws.role("rk_exp_chg");
    ws.write_config(&[
        ws.credential("expiring-db", &expiring),
        ws.credential("changed-db", &changed),
    ]);
    ws.import("expiring-db", &expiring_pw);
    ws.import("changed-db", &changed_pw);
    ws.rekey(&["verify"]).assert_code(0);

    // VALID UNTIL a moment ago, by the server's clock; the other role's password changes.
    let q = rekey_testbed::quote_ident;
    ws.pg.psql(&format!(
        "ALTER ROLE {} VALID UNTIL {}",
        q(&expiring),
        rekey_testbed::quote_literal(&ws.pg.psql("SELECT (now() - interval '1 minute')::text"))
    ));
    let until = ws.pg.psql(&format!(
        "SELECT rolvaliduntil::text FROM pg_roles WHERE rolname = {}",
        rekey_testbed::quote_literal(&expiring)
    ));
    ws.pg.psql(&format!(
        "SET log_statement = 'none'; ALTER ROLE {} PASSWORD 'changed-elsewhere-123'",
        q(&changed)
    ));

    let r = ws.rekey(&["verify", "expiring-db"]);
    verify_error(
        &r,
        &[
            "expiring-db: check-current: authentication rejected",
            "password expired",
            &format!("VALID UNTIL '{until}'"),
            "SQLSTATE 28P01",
        ],
        &expiring_pw,
    );
    let r = ws.rekey(&["verify", "changed-db"]);
    let line = verify_error(
        &r,
        &["changed-db: check-current: authentication rejected", "SQLSTATE 28P01"],
        &changed_pw,
    );
    assert!(!line.contains("expired") && !line.contains("VALID UNTIL"), "{line}");

    // Importing the expired password (an incident responder pasting what was found)
    // says why it is refused, and stores nothing.
    let before = ws.store_bytes();
    let r = ws.rekey_stdin(&["import", "expiring-db"], &expiring_pw);
    verify_error(
        &r,
        &[
            "expiring-db: verify: authentication rejected",
            "the imported secret does not log in",
            "password expired",
            &format!("VALID UNTIL '{until}'"),
        ],
        &expiring_pw,
    );
    assert_eq!(ws.store_bytes(), before, "nothing stored");
    // A password that is simply wrong is still just refused.
    let r = ws.rekey_stdin(&["import", "changed-db"], &changed_pw);
    let line = verify_error(
        &r,
        &["changed-db: verify: authentication rejected", "SQLSTATE 28P01"],
        &changed_pw,
    );
    assert!(!line.contains("expired") && !line.contains("VALID UNTIL"), "{line}");

    // Renewed, the stored password works again: the refusal was the expiry alone.
    ws.pg
        .psql(&format!("ALTER ROLE {} VALID UNTIL 'infinity'", q(&expiring)));
    ws.rekey(&["verify", "expiring-db"]).assert_code(0);
}

#[test]
fn verify_says_a_mariadb_password_expire_account_expired() {
    let db = MariaDb::machine();
    let dir = tempfile::tempdir().unwrap();
    let app = unique("rk_my_exp");
    let password = crate::util::random_password();
    db.root_sql(&format!("CREATE USER '{app}'@'%' IDENTIFIED BY '{password}'"));
    let _user = crate::mysql::Users(vec![app.clone()]);
    std::fs::write(
        dir.path().join("rekey.toml"),
        format!(
            "[stores.local]\ntype = \"file\"\npath = \"secrets.json\"\n[[credentials]]\nname = \"shop-db\"\n\
             store = \"local\"\nkey = \"shop/db\"\nstrategy = \"single\"\ntarget = {{ type = \"mysql\", \
             host = \"{}\", port = {}, username = \"{app}\", tls = \"disable\" }}\n",
            db.host(),
            db.port()
        ),
    )
    .unwrap();
    let rekey = |args: &[&str], stdin: &str| {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_rekey"));
        cmd.current_dir(dir.path())
            .env_remove("REKEY_CONFIG")
            .env("NO_COLOR", "1")
            .arg("-c")
            .arg(dir.path().join("rekey.toml"))
            .args(args);
        run(cmd, stdin)
    };
    rekey(&["import", "shop-db"], &password).assert_code(0);
    rekey(&["verify"], "").assert_code(0);

    db.root_sql(&format!("ALTER USER '{app}'@'%' PASSWORD EXPIRE"));
    let r = rekey(&["verify"], "");
    verify_error(&r, &["shop-db: check-current", "has expired", "error 1820"], &password);
}
