//! A MariaDB `ed25519` account through the CLI (issue 12: "refused cleanly, never a
//! panic"). rekey's MySQL client is built without ed25519 (mysql_common panics when the
//! server's authentication switch asks for it); `rekey import` and `rekey verify` of such
//! an account exit 1 with an error naming the plugin, and print no panic message, with
//! or without `RUST_BACKTRACE`.

use crate::mysql::Users;
use crate::util::{run, unique, Run};
use rekey_testbed::MariaDb;
use std::process::Command;

#[test]
fn ed25519_logins_fail_cleanly_naming_the_plugin() {
    let db = MariaDb::machine();
    // MariaDB ships the plugin (auth_ed25519.so); a server without it cannot run this test.
    db.try_root_sql("INSTALL PLUGIN IF NOT EXISTS ed25519 SONAME 'auth_ed25519'")
        .unwrap_or_else(|e| {
            panic!("MariaDB's ed25519 plugin cannot be installed (INSTALL SONAME 'auth_ed25519'): {e}")
        });
    let user = unique("rk_my_ed");
    let password = crate::util::random_password();
    db.root_sql(&format!(
        "CREATE USER '{user}'@'%' IDENTIFIED VIA ed25519 USING PASSWORD('{password}')"
    ));
    let _user = Users(vec![user.clone()]);
    // The precondition: the account authenticates via ed25519, and the password is right
    // (MariaDB's own client logs in with it; a wrong one is refused).
    let plugin = db.root_sql(&format!(
        "SELECT JSON_VALUE(Priv, '$.plugin') FROM mysql.global_priv WHERE User = '{user}' AND Host = '%'"
    ));
    assert_eq!(plugin.trim(), "ed25519");
    assert!(db.can_login(&user, &password), "MariaDB's client logs in");
    assert!(!db.can_login(&user, "not-the-password"), "a wrong password is refused");

    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("rekey.toml"),
        format!(
            "[stores.local]\ntype = \"file\"\npath = \"secrets.json\"\n[[credentials]]\nname = \"ed-db\"\n\
             store = \"local\"\nkey = \"ed/db\"\nstrategy = \"single\"\ntarget = {{ type = \"mysql\", \
             host = \"{}\", port = {}, username = \"{user}\", tls = \"disable\" }}\n",
            db.host(),
            db.port()
        ),
    )
    .unwrap();
    let rekey = |args: &[&str], stdin: &str, backtrace: Option<&str>| {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_rekey"));
        cmd.current_dir(dir.path())
            .env_remove("REKEY_CONFIG")
            .env_remove("RUST_BACKTRACE")
            .env_remove("RUST_LIB_BACKTRACE")
            .env("NO_COLOR", "1")
            .arg("-c")
            .arg(dir.path().join("rekey.toml"))
            .args(args);
        if let Some(value) = backtrace {
            cmd.env("RUST_BACKTRACE", value);
        }
        run(cmd, stdin)
    };
    #[track_caller]
    fn clean_failure(r: &Run, step: &str, password: &str) {
        r.assert_code(1);
        for output in [&r.stdout, &r.stderr] {
            assert!(
                !output.contains("panicked") && !output.contains("stack backtrace") && !output.contains("scramble.rs"),
                "a panic is shown:\n--- stdout\n{}\n--- stderr\n{}",
                r.stdout,
                r.stderr
            );
            assert!(!output.contains(password), "the password is shown: {output}");
        }
        r.assert_one_error(&[
            &format!("ed-db: {step}: unsupported"),
            "authenticates with the `ed25519` plugin",
            "cannot answer",
        ]);
    }

    for backtrace in [None, Some("1"), Some("full")] {
        let r = rekey(&["import", "ed-db"], &password, backtrace);
        clean_failure(&r, "verify", &password);
    }
    // Stored without the login, `verify` meets the same refusal.
    rekey(&["import", "--no-verify", "ed-db"], &password, None).assert_code(0);
    for backtrace in [None, Some("1")] {
        let r = rekey(&["verify", "ed-db"], "", backtrace);
        clean_failure(&r, "check-current", &password);
    }
}
