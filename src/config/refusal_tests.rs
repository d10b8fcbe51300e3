//! Configurations that would break rotations are refused at load, each with one line
//! naming the file and both places involved. One test per finding.

use super::*;
use rekey_api::SecretDoc;

const HEADER: &str =
    "[defaults]\naudit_log = \"audit.jsonl\"\n\n[stores.local]\ntype = \"file\"\npath = \"secrets.json\"\n\n";

fn env(name: &str) -> Option<String> {
    match name {
        "ADMIN_URL" => Some("postgres://admin:s3cr3t-admin@127.0.0.1/postgres".into()),
        "PG_PORT" => Some("6543".into()),
        "NOT_A_PORT" => Some("s3cr3t-not-a-port".into()),
        "YES" => Some("true".into()),
        "EMPTY" => Some(String::new()),
        "VAULT_ADDR" => Some("http://127.0.0.1:8200".into()),
        _ => None,
    }
}

fn parse(text: &str) -> Result<Config, String> {
    Config::parse(Path::new("/etc/rekey/rekey.toml"), text, env).map_err(|e| e.to_string())
}

/// A configuration with the default header and these credential tables.
fn with(credentials: &[String]) -> String {
    let mut text = HEADER.to_owned();
    for c in credentials {
        text.push_str(c);
        text.push('\n');
    }
    text
}

fn credential(name: &str, target: &str) -> String {
    format!("[[credentials]]\nname = \"{name}\"\nstore = \"local\"\nkey = \"app/{name}\"\ntarget = {target}\n")
}

fn pg(host: &str, user: &str) -> String {
    format!("{{ type = \"postgres\", host = \"{host}\", username = \"{user}\", admin = \"${{ADMIN_URL}}\" }}")
}

#[track_caller]
fn refused(text: &str, parts: &[&str]) -> String {
    let e = parse(text).expect_err("the configuration must be refused");
    assert!(!e.contains('\n'), "one line: {e}");
    assert!(e.starts_with("/etc/rekey/rekey.toml"), "names the file: {e}");
    for part in parts {
        assert!(e.contains(part), "`{part}` missing from: {e}");
    }
    e
}

#[test]
fn two_credentials_on_one_target_identity_are_refused() {
    let e = refused(
        &with(&[
            credential("a", &pg("127.0.0.1", "app")),
            credential("b", &pg("LOCALHOST", "app")),
        ]),
        &[
            "credential `b`",
            "credential `a`",
            "postgres role `app`",
            "LOCALHOST:5432",
        ],
    );
    assert!(e.contains("rotates"), "{e}");
    // Another role, another port or another host is another identity.
    parse(&with(&[
        credential("a", &pg("127.0.0.1", "app")),
        credential("b", &pg("127.0.0.1", "app2")),
    ]))
    .unwrap();
    parse(&with(&[
        credential("a", &pg("db1", "app")),
        credential("b", &pg("db2", "app")),
    ]))
    .unwrap();
    let other_port = "{ type = \"postgres\", host = \"127.0.0.1\", port = 5433, username = \"app\" }";
    parse(&with(&[
        credential("a", &pg("127.0.0.1", "app")),
        credential("b", other_port),
    ]))
    .unwrap();

    // Alternating: any overlap of the two users.
    let pair = "{ type = \"postgres\", host = \"db\", usernames = [\"app_a\", \"app_b\"], admin = \"${ADMIN_URL}\" }";
    refused(
        &with(&[credential("pair", pair), credential("one", &pg("db", "app_b"))]),
        &["credential `one`", "credential `pair`", "`app_b`"],
    );

    let mysql = |user: &str, user_host: &str| {
        format!("{{ type = \"mysql\", host = \"db\", username = \"{user}\", user_host = \"{user_host}\" }}")
    };
    refused(
        &with(&[
            credential("m1", &mysql("shop", "%")),
            credential("m2", &mysql("shop", "%")),
        ]),
        &["credential `m2`", "credential `m1`", "mysql user 'shop'@'%'"],
    );
    parse(&with(&[
        credential("m1", &mysql("shop", "%")),
        credential("m2", &mysql("shop", "10.0.%")),
    ]))
    .unwrap();

    let redis = "{ type = \"redis\", host = \"cache\", username = \"app\" }";
    refused(
        &with(&[credential("r1", redis), credential("r2", redis)]),
        &["credential `r2`", "credential `r1`", "redis user `app` on cache:6379"],
    );

    let iam = |user: &str, profile: &str| format!("{{ type = \"aws-iam\", user = \"{user}\"{profile} }}");
    refused(
        &with(&[
            credential("k1", &iam("Deployer", "")),
            credential("k2", &iam("deployer", "")),
        ]),
        &["credential `k2`", "credential `k1`", "aws-iam user `deployer`"],
    );
    // Another profile may be another account.
    parse(&with(&[
        credential("k1", &iam("deployer", "")),
        credential("k2", &iam("deployer", ", profile = \"other\"")),
    ]))
    .unwrap();

    // The address left to $VAULT_ADDR is the address written out.
    let approle = |address: &str| format!("{{ type = \"vault-approle\", role = \"app\"{address} }}");
    refused(
        &with(&[
            credential("v1", &approle("")),
            credential("v2", &approle(", address = \"http://localhost:8200/\"")),
        ]),
        &["credential `v2`", "credential `v1`", "vault-approle role `app`"],
    );
    parse(&with(&[
        credential("v1", &approle("")),
        credential("v2", &approle(", mount = \"approle2\"")),
    ]))
    .unwrap();
}

#[test]
fn an_admin_that_is_the_rotated_user_is_refused() {
    let own = |admin: &str| {
        credential(
            "app-db",
            &format!("{{ type = \"postgres\", host = \"h\", username = \"app\", admin = \"{admin}\" }}"),
        )
    };
    for admin in [
        "postgres://app:s3cr3t-pw@h/postgres",
        "postgresql://app@h:5432/postgres?sslmode=disable",
        "postgres://h/postgres?user=app&password=s3cr3t-pw",
        "host=h user=app password='s3cr3t-pw'",
    ] {
        let e = refused(
            &with(&[own(admin)]),
            &[
                "credential `app-db`",
                "`admin` logs in as postgres role `app`",
                "locked out",
            ],
        );
        assert!(
            !e.contains("s3cr3t") && !e.contains(admin),
            "the admin DSN is not shown: {e}"
        );
    }
    parse(&with(&[own("postgres://root:pw@h/postgres")])).unwrap();

    let mysql = "{ type = \"mysql\", host = \"h\", username = \"shop\", admin = \"mysql://shop:s3cr3t-pw@h:3306/\" }";
    let e = refused(
        &with(&[credential("shop", mysql)]),
        &["credential `shop`", "mysql user 'shop'@'%'"],
    );
    assert!(!e.contains("s3cr3t"), "{e}");

    // Redis: an admin URL without a user is the `default` user.
    let redis = "{ type = \"redis\", host = \"h\", username = \"default\", admin = \"redis://:s3cr3t-pw@h:6379\" }";
    let e = refused(
        &with(&[credential("cache", redis)]),
        &["credential `cache`", "redis user `default`"],
    );
    assert!(!e.contains("s3cr3t"), "{e}");

    // Alternating: the admin is one of the pair.
    let pair = "{ type = \"postgres\", host = \"h\", usernames = [\"a\", \"b\"], admin = \"postgres://b:pw@h/x\" }";
    refused(
        &with(&[credential("pair", pair)]),
        &["credential `pair`", "postgres role `b`"],
    );

    // Another credential's admin is the role this one rotates.
    let admin_db = "{ type = \"postgres\", host = \"h\", username = \"root\" }";
    let e = refused(
        &with(&[
            credential("root-db", admin_db),
            own("postgres://root:s3cr3t-pw@h/postgres"),
        ]),
        &["credential `app-db`", "credential `root-db`", "postgres role `root`"],
    );
    assert!(!e.contains("s3cr3t"), "{e}");
}

#[test]
fn files_that_coincide_are_refused() {
    let one = [credential("app-db", &pg("h", "app"))];
    let text = with(&one);
    refused(
        &text.replace("audit_log = \"audit.jsonl\"", "audit_log = \"./secrets.json\""),
        &["[defaults] audit_log", "store `local`", "secrets.json"],
    );
    refused(
        &text.replace("audit_log = \"audit.jsonl\"", "audit_log = \"secrets.json.lock\""),
        &["[defaults] audit_log", "store `local`"],
    );
    // The file store's journal (a large store's recent writes) is the store's too.
    refused(
        &text.replace("audit_log = \"audit.jsonl\"", "audit_log = \"secrets.json.journal\""),
        &["[defaults] audit_log", "store `local`", "journal"],
    );
    refused(
        &text.replace("audit_log = \"audit.jsonl\"", "audit_log = \"rekey.toml\""),
        &["[defaults] audit_log", "configuration file"],
    );
    refused(
        &text.replace("audit_log = \"audit.jsonl\"", "lock_dir = \"secrets.json\""),
        &["[defaults] lock_dir", "store `local`"],
    );
    refused(
        &text.replace("audit_log = \"audit.jsonl\"", "lock_dir = \"secrets.json/locks\""),
        &["[defaults] lock_dir", "store `local`"],
    );
    refused(
        &text.replace("audit_log = \"audit.jsonl\"", "lock_dir = \"rekey.toml\""),
        &["[defaults] lock_dir", "configuration file"],
    );
    refused(
        &text.replace(
            "audit_log = \"audit.jsonl\"",
            "lock_dir = \".\"\naudit_log = \"app-db.rekey-lock\"",
        ),
        &["[defaults] audit_log", "lock file of credential `app-db`"],
    );
    refused(
        &text.replace("path = \"secrets.json\"", "path = \"rekey.toml\""),
        &["store `local`", "configuration file"],
    );
    // A store file that is a lock file path.
    refused(
        &text
            .replace("audit_log = \"audit.jsonl\"", "lock_dir = \".\"")
            .replace("path = \"secrets.json\"", "path = \"app-db.rekey-lock\""),
        &["store `local`", "lock file"],
    );
    // Two stores in one file.
    refused(
        &text.replace(
            "[stores.local]",
            "[stores.other]\ntype = \"file\"\npath = \"/etc/rekey/secrets.json\"\n\n[stores.local]",
        ),
        &["store `other`", "store `local`"],
    );
}

#[test]
fn a_credential_named_like_the_store_file_does_not_take_the_store_lock() {
    let text = with(&[credential("secrets.json", &pg("h", "app"))]).replace(
        "audit_log = \"audit.jsonl\"",
        "audit_log = \"audit.jsonl\"\nlock_dir = \".\"",
    );
    let config = parse(&text).unwrap();
    let lock = crate::engine::lock::lock_path(&config.defaults.lock_dir, "secrets.json");
    assert_eq!(lock, Path::new("/etc/rekey/./secrets.json.rekey-lock"));
}

#[test]
fn durations_out_of_range_are_refused() {
    let text = with(&[credential("app-db", &pg("h", "app"))]);
    let every = |value: &str| text.replace("audit_log", &format!("every = \"{value}\"\naudit_log"));
    refused(
        &every("8000y"),
        &["[defaults]", "`every = \"8000y\"` is out of range", "100y"],
    );
    refused(&every("0s"), &["[defaults]", "every", "out of range"]);
    refused(&every("500ms"), &["out of range"]);
    refused(&every("99999999999999999999999y"), &["is not a duration"]);
    let c = parse(&every("100y")).unwrap();
    assert_eq!(c.credentials[0].every, MAX_PERIOD);
    let own = text.replace("key = \"app/app-db\"", "key = \"app/app-db\"\nevery = \"1000y\"");
    refused(&own, &["credential `app-db`", "`every = \"1000y\"`"]);
    let grace = text.replace("key = \"app/app-db\"", "key = \"app/app-db\"\ngrace = \"200y\"");
    refused(&grace, &["credential `app-db`", "grace", "out of range"]);
    let grace = text.replace("key = \"app/app-db\"", "key = \"app/app-db\"\ngrace = \"31d\"");
    refused(&grace, &["credential `app-db`", "grace", "shorter than every"]);
}

/// A password the target lets live no longer than the rotation period would expire
/// before the next rotation: applications locked out with nothing failing in rekey.
#[test]
fn a_password_lifetime_not_longer_than_every_is_refused() {
    let target = |setting: &str| {
        format!("{{ type = \"postgres\", host = \"h\", username = \"app\", admin = \"${{ADMIN_URL}}\", {setting} }}")
    };
    let text = |setting: &str, every: &str| {
        with(&[credential("app-db", &target(setting))]).replace(
            "key = \"app/app-db\"",
            &format!("key = \"app/app-db\"\nevery = \"{every}\""),
        )
    };
    refused(
        &text("valid_until = \"30d\"", "30d"),
        &[
            "credential `app-db`",
            "valid_until = \"30d\" is not longer than every (30d)",
            "expire before the next rotation",
        ],
    );
    refused(
        &text("valid_until = \"12h\"", "1d"),
        &["valid_until = \"12h\"", "every (1d)"],
    );
    parse(&text("valid_until = \"60d\"", "30d")).expect("longer than every");
    parse(&text("valid_until = \"clear\"", "30d")).expect("no expiry");
    let mysql = |lifetime: &str| {
        with(&[credential(
            "app-db",
            &format!(
                "{{ type = \"mysql\", host = \"h\", username = \"app\", admin = \"mysql://root@h/\", password_lifetime = \"{lifetime}\" }}"
            ),
        )])
    };
    // The default `every` is 30 days.
    refused(
        &mysql("30d"),
        &["password_lifetime = \"30d\" is not longer than every (30d)"],
    );
    parse(&mysql("90d")).expect("longer than every");
}

#[test]
fn impossible_password_policies_are_refused_at_load() {
    let text = with(&[credential("app-db", &pg("h", "app"))]);
    let policy = |p: &str| text.replace("key = \"app/app-db\"", &format!("key = \"app/app-db\"\npassword = {p}"));
    refused(&policy("{ length = 0 }"), &["credential `app-db`", "password length 0"]);
    refused(&policy("{ length = 4096 }"), &["credential `app-db`", "out of range"]);
    refused(
        &policy("{ exclude = \"0123456789\" }"),
        &["credential `app-db`", "class digit is required"],
    );
    refused(
        &policy("{ require = [\"symbol\"], symbols = \"\" }"),
        &["credential `app-db`", "`symbols` is empty"],
    );
    refused(
        &policy(
            "{ require = [], symbols = \"\", exclude = \"abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789\" }",
        ),
        &["credential `app-db`", "alphabet is empty"],
    );
    let defaults = text.replace("audit_log", "password = { length = 2 }\naudit_log");
    refused(&defaults, &["[defaults]", "password length 2"]);
}

#[test]
fn environment_references_defaults_bare_names_and_typed_values() {
    // ${VAR:-default}: the default when unset or empty.
    let target = "{ type = \"postgres\", host = \"${DB_HOST:-db.internal}\", dbname = \"${EMPTY:-orders}\", \
                  port = \"${PG_PORT}\", username = \"app\", terminate_sessions = \"${YES}\" }";
    let text = with(&[credential("app-db", target)]).replace("audit_log", "parallel = \"${PARALLEL:-3}\"\naudit_log");
    let config = parse(&text).unwrap();
    let TargetConfig::Postgres(c) = &config.targets["app-db"] else {
        panic!("postgres")
    };
    assert_eq!(
        (c.host.as_str(), c.dbname.as_str(), c.port),
        ("db.internal", "orders", 6543)
    );
    assert!(c.terminate_sessions);
    assert_eq!(config.defaults.parallel, 3);

    // A reference that does not expand to the field's type: the line, the reference, not the value.
    let bad = text.replace("${PG_PORT}", "${NOT_A_PORT}");
    let e = refused(&bad, &["rekey.toml:13:", "`port`", "${NOT_A_PORT}", "integer"]);
    assert!(!e.contains("s3cr3t"), "{e}");
    // A quoted number is not a reference: TOML types still hold.
    refused(
        &text.replace("\"${PG_PORT}\"", "\"6543\""),
        &["rekey.toml:13:", "`port`", "u16"],
    );

    // $VAR without braces.
    refused(
        &text.replace("username = \"app\"", "username = \"$APP_USER\""),
        &[
            "credential `app-db`",
            "`target.username`",
            "`$APP_USER` is not expanded",
            "`${APP_USER}`",
            "`$$APP_USER`",
        ],
    );
    // ... in a secret-bearing value the text is not shown.
    let e = refused(
        &text.replace(
            "username = \"app\"",
            "username = \"app\", admin = \"postgres://u:pa$sword@h/db\"",
        ),
        &["credential `app-db`", "`target.admin`", "`${NAME}`"],
    );
    assert!(!e.contains("sword"), "{e}");
    // $$ is a literal $.
    let literal = text.replace(
        "username = \"app\"",
        "username = \"app\", check_query = \"SELECT '$$x'\"",
    );
    let config = parse(&literal).unwrap();
    let TargetConfig::Postgres(c) = &config.targets["app-db"] else {
        panic!("postgres")
    };
    assert_eq!(c.check_query.as_deref(), Some("SELECT '$x'"));
    // A missing variable without a default names the credential and the variable.
    refused(
        &text.replace("${PG_PORT}", "${NO_SUCH_PORT}"),
        &["credential `app-db`", "`NO_SUCH_PORT` is not set"],
    );
    // A mistake in the text as written comes first (before any variable is looked up,
    // though only read again once something failed): with a missing variable, and with
    // a variable whose value does not fit, the unknown key is the error.
    for other in ["${NO_SUCH_PORT}", "${NOT_A_PORT}"] {
        let e = refused(
            &text
                .replace("${PG_PORT}", other)
                .replace("username = \"app\"", "username = \"app\", sslmod = \"disable\""),
            &["rekey.toml:13:", "sslmod"],
        );
        assert!(!e.contains("NO_SUCH_PORT") && !e.contains("NOT_A_PORT"), "{e}");
    }
}

#[test]
fn strategy_defaults_to_what_the_target_type_supports() {
    let strategy = |target: &str| parse(&with(&[credential("c", target)])).unwrap().credentials[0].strategy;
    assert_eq!(strategy("{ type = \"aws-iam\", user = \"deployer\" }"), Strategy::Dual);
    assert_eq!(strategy("{ type = \"vault-approle\", role = \"app\" }"), Strategy::Dual);
    assert_eq!(
        strategy("{ type = \"redis\", host = \"h\", username = \"app\" }"),
        Strategy::Dual
    );
    assert_eq!(strategy(&pg("h", "app")), Strategy::Single);
    assert_eq!(
        strategy("{ type = \"postgres\", host = \"h\", usernames = [\"a\", \"b\"], admin = \"${ADMIN_URL}\" }"),
        Strategy::Alternating
    );
    assert_eq!(
        strategy("{ type = \"mysql\", host = \"h\", username = \"app\" }"),
        Strategy::Single
    );
    assert_eq!(
        strategy("{ type = \"mysql\", host = \"h\", usernames = [\"a\", \"b\"] }"),
        Strategy::Alternating
    );
    // An explicit strategy wins.
    let explicit = with(&[credential(
        "c",
        "{ type = \"redis\", host = \"h\", username = \"app\" }",
    )])
    .replace("key = \"app/c\"", "key = \"app/c\"\nstrategy = \"single\"");
    assert_eq!(parse(&explicit).unwrap().credentials[0].strategy, Strategy::Single);
}

#[test]
fn imported_fields_that_contradict_the_target_are_refused() {
    let config = parse(&with(&[credential(
        "app-db",
        "{ type = \"postgres\", host = \"127.0.0.1\", port = 5432, dbname = \"orders\", username = \"app\" }",
    )]))
    .unwrap();
    let app_db = config.credential("app-db").unwrap().clone();
    let check = |json: &str| check_import_identity(&config, &app_db, &SecretDoc::from_json(json).unwrap());
    check(r#"{"password":"pw"}"#).unwrap();
    check(
        r#"{"engine":"postgres","host":"localhost","port":"5432","username":"app","dbname":"orders","password":"pw"}"#,
    )
    .unwrap();
    let e =
        check(r#"{"host":"db2","port":5433,"username":"other","dbname":"orders","password":"s3cr3t"}"#).unwrap_err();
    for part in [
        "host \"db2\" (configured \"127.0.0.1\")",
        "port 5433 (configured 5432)",
        "username \"other\" (configured \"app\")",
    ] {
        assert!(e.contains(part), "`{part}` missing from: {e}");
    }
    assert!(
        !e.contains("s3cr3t") && !e.contains("dbname") && !e.contains('\n'),
        "{e}"
    );
    let e = check(r#"{"engine":"mysql","dbname":"shop","password":"pw"}"#).unwrap_err();
    assert!(
        e.contains("engine \"mysql\"") && e.contains("dbname \"shop\" (configured \"orders\")"),
        "{e}"
    );
    let e = check(r#"{"port":"fifty","password":"pw"}"#).unwrap_err();
    assert!(e.contains("port \"fifty\""), "{e}");

    // Alternating: either user; IAM: user names without case.
    let config = parse(&with(&[
        credential(
            "pair",
            "{ type = \"mysql\", host = \"h\", usernames = [\"a\", \"b\"], admin = \"mysql://root:pw@h/\" }",
        ),
        credential("key", "{ type = \"aws-iam\", user = \"Deployer\" }"),
    ]))
    .unwrap();
    let pair = config.credential("pair").unwrap().clone();
    let doc = SecretDoc::from_json(r#"{"engine":"mariadb","username":"b","password":"pw"}"#).unwrap();
    check_import_identity(&config, &pair, &doc).unwrap();
    let doc = SecretDoc::from_json(r#"{"username":"c","password":"pw"}"#).unwrap();
    let e = check_import_identity(&config, &pair, &doc).unwrap_err();
    assert!(e.contains("(configured \"a\" or \"b\")"), "{e}");
    let key = config.credential("key").unwrap().clone();
    let doc = SecretDoc::from_json(r#"{"engine":"aws-iam","username":"deployer","access_key_id":"AKIA"}"#).unwrap();
    check_import_identity(&config, &key, &doc).unwrap();
    let doc = SecretDoc::from_json(r#"{"engine":"aws-iam","username":"someone"}"#).unwrap();
    assert!(check_import_identity(&config, &key, &doc)
        .unwrap_err()
        .contains("username \"someone\""));
}

/// Found by fuzzing: errors about values that came from the environment showed them
/// (a password in `grace`, an admin URL as a name). They show `${NAME}` instead.
#[test]
fn errors_never_show_environment_values() {
    let lookup = |name: &str| match name {
        "DB_PASSWORD" => Some("s3cr3t-pw".to_owned()),
        "ADMIN_URL" => Some("postgres://admin:s3cr3t-pw@db/postgres".to_owned()),
        _ => None,
    };
    for text in [
        "[defaults]\ngrace = \"${DB_PASSWORD}\"\n",
        "[stores.local]\ntype = \"file\"\npath = \"s.json\"\n[[credentials]]\nname = \"${ADMIN_URL}\"\nstore = \"local\"\nkey = \"k\"\n\
         target = { type = \"postgres\", host = \"h\", port = 5432, dbname = \"d\", username = \"u\" }\n",
    ] {
        let e = Config::parse(std::path::Path::new("c.toml"), text, lookup).unwrap_err().to_string();
        assert!(!e.contains("s3cr3t"), "{e}");
        assert!(e.contains("${"), "{e}");
        assert!(!e.contains('\n'));
    }
}
