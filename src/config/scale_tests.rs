//! Configurations that scale past a few credentials: `[defaults] store`, shared
//! `[targets.NAME]` blocks, `include`, the zero-downtime default grace and
//! credential-level `secret_fields`.

use super::*;

fn env(name: &str) -> Option<String> {
    match name {
        "ADMIN_URL" => Some("postgres://admin:s3cr3t-admin@127.0.0.1/postgres".into()),
        "PG_PORT" => Some("6543".into()),
        _ => None,
    }
}

fn parse(text: &str) -> Result<Config, String> {
    Config::parse(Path::new("/etc/rekey/rekey.toml"), text, env).map_err(|e| e.to_string())
}

const STORES: &str = "[stores.local]\ntype = \"file\"\npath = \"secrets.json\"\n\n\
                      [stores.other]\ntype = \"file\"\npath = \"other.json\"\n\n";

fn pg_credential(name: &str, store: Option<&str>) -> String {
    let store = store.map(|s| format!("store = \"{s}\"\n")).unwrap_or_default();
    format!(
        "[[credentials]]\nname = \"{name}\"\n{store}key = \"app/{name}\"\n\
         target = {{ type = \"postgres\", host = \"127.0.0.1\", username = \"{name}\", admin = \"${{ADMIN_URL}}\" }}\n\n"
    )
}

#[test]
fn default_store_is_used_by_credentials_without_one() {
    let text = format!(
        "[defaults]\nstore = \"local\"\n\n{STORES}{}{}",
        pg_credential("a", None),
        pg_credential("b", Some("other"))
    );
    let config = parse(&text).unwrap();
    assert_eq!(config.credential("a").unwrap().store, "local");
    assert_eq!(config.credential("b").unwrap().store, "other", "its own store wins");
}

#[test]
fn store_is_required_only_without_a_default() {
    let text = format!("{STORES}{}", pg_credential("a", None));
    let e = parse(&text).unwrap_err();
    assert!(
        e.contains("credential `a`: no `store`") && e.contains("[defaults] store") && e.contains("local, other"),
        "{e}"
    );
    // A default naming no store is refused even when no credential relies on it.
    let text = format!(
        "[defaults]\nstore = \"lcoal\"\n\n{STORES}{}",
        pg_credential("a", Some("local"))
    );
    let e = parse(&text).unwrap_err();
    assert!(e.contains("[defaults] store = \"lcoal\" names no store"), "{e}");
    // A credential relying on it is told where its store came from.
    let text = format!("[defaults]\nstore = \"nope\"\n\n{STORES}{}", pg_credential("a", None));
    assert!(parse(&text).unwrap_err().contains("nope"));
}

const BLOCK: &str = "[defaults]\nstore = \"local\"\n\n[stores.local]\ntype = \"file\"\npath = \"secrets.json\"\n\n\
[targets.pg-prod]\ntype = \"postgres\"\nhost = \"db.example.com\"\nport = \"${PG_PORT}\"\ndbname = \"orders\"\n\
admin = \"${ADMIN_URL}\"\n\n";

fn user_of(config: &Config, name: &str) -> (String, String, u16, String) {
    let TargetConfig::Postgres(c) = &config.targets[name] else {
        panic!("{name}: a postgres target")
    };
    (
        c.host.clone(),
        c.username.clone().unwrap_or_default(),
        c.port,
        c.dbname.clone(),
    )
}

#[test]
fn target_blocks_are_shared_and_credential_keys_override() {
    let text = format!(
        "{BLOCK}[[credentials]]\nname = \"orders\"\nkey = \"o\"\ntarget = {{ use = \"pg-prod\", username = \"orders_app\" }}\n\n\
         [[credentials]]\nname = \"billing\"\nkey = \"b\"\n\
         target = {{ use = \"pg-prod\", username = \"billing_app\", dbname = \"billing\", host = \"replica.example.com\" }}\n"
    );
    let config = parse(&text).unwrap();
    assert_eq!(
        user_of(&config, "orders"),
        ("db.example.com".into(), "orders_app".into(), 6543, "orders".into())
    );
    assert_eq!(
        user_of(&config, "billing"),
        (
            "replica.example.com".into(),
            "billing_app".into(),
            6543,
            "billing".into()
        )
    );
    assert_eq!(config.credential("orders").unwrap().strategy, Strategy::Single);
}

#[test]
fn target_block_errors_point_at_the_right_line() {
    let use_line =
        |target: &str| format!("{BLOCK}[[credentials]]\nname = \"orders\"\nkey = \"o\"\ntarget = {target}\n");
    let line_of = |text: &str, needle: &str| text[..text.find(needle).unwrap()].matches('\n').count() + 1;
    // A typo in the block: its line in the block.
    let text = use_line("{ use = \"pg-prod\", username = \"a\" }").replace("dbname =", "dbnmae =");
    let e = parse(&text).unwrap_err();
    assert!(
        e.starts_with(&format!("/etc/rekey/rekey.toml:{}:", line_of(&text, "dbnmae"))) && e.contains("dbnmae"),
        "{e}"
    );
    // A typo in the credential's override: the credential's line.
    let text = use_line("{ use = \"pg-prod\", usrname = \"a\" }");
    let e = parse(&text).unwrap_err();
    assert!(
        e.starts_with(&format!("/etc/rekey/rekey.toml:{}:", line_of(&text, "usrname"))) && e.contains("usrname"),
        "{e}"
    );
    // An unknown block: did you mean.
    let text = use_line("{ use = \"pg-prd\", username = \"a\" }");
    let e = parse(&text).unwrap_err();
    assert!(
        e.contains(&format!(":{}:", line_of(&text, "pg-prd")))
            && e.contains("credential `orders`: unknown target block `pg-prd`; did you mean `pg-prod`?"),
        "{e}"
    );
    let e = parse(&use_line("{ use = \"mysql-main\", username = \"a\" }")).unwrap_err();
    assert!(e.contains("unknown target block `mysql-main` (known: pg-prod)"), "{e}");
    // `use` without any block.
    let text =
        format!("{STORES}[[credentials]]\nname = \"a\"\nstore = \"local\"\nkey = \"k\"\ntarget = {{ use = \"x\" }}\n");
    assert!(parse(&text).unwrap_err().contains("no [targets.NAME] tables"));
    // Blocks do not chain.
    let text = use_line("{ use = \"pg-prod\", username = \"a\" }")
        .replace("[targets.pg-prod]\n", "[targets.pg-prod]\nuse = \"other\"\n");
    assert!(parse(&text).unwrap_err().contains("cannot use another block"));
}

#[test]
fn an_unused_block_is_still_checked() {
    let ok = format!("{BLOCK}{}", pg_credential("a", None));
    parse(&ok).unwrap();
    let e = parse(&ok.replace("host = \"db.example.com\"", "hots = \"db.example.com\"")).unwrap_err();
    assert!(e.contains("hots"), "{e}");
    let e = parse(&ok.replace("type = \"postgres\"\nhost", "type = \"postgre\"\nhost")).unwrap_err();
    assert!(e.contains("unknown target type `postgre`"), "{e}");
}

#[test]
fn a_block_admin_can_be_a_credential_reference() {
    let text = format!(
        "{}[[credentials]]\nname = \"admin\"\nkey = \"adm\"\ntarget = {{ use = \"pg-prod\", username = \"postgres\", admin = \"${{ADMIN_URL}}\" }}\n\n\
         [[credentials]]\nname = \"orders\"\nkey = \"o\"\ntarget = {{ use = \"pg-prod\", username = \"orders_app\" }}\n",
        BLOCK.replace("admin = \"${ADMIN_URL}\"", "admin = { credential = \"admin\" }")
    );
    let config = parse(&text).unwrap();
    assert_eq!(config.admin_refs.get("orders").map(String::as_str), Some("admin"));
}

/// A main file and included files in a temporary directory.
fn site(main: &str, files: &[(&str, &str)]) -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    for (name, text) in files {
        let path = dir.path().join(name);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, text).unwrap();
    }
    let main_path = dir.path().join("rekey.toml");
    std::fs::write(&main_path, main).unwrap();
    (dir, main_path)
}

fn load(path: &Path) -> Result<Config, String> {
    let text = std::fs::read_to_string(path).unwrap();
    Config::parse(path, &text, env).map_err(|e| e.to_string())
}

const MAIN: &str = "include = [\"conf.d/*.toml\"]\n\n[defaults]\nstore = \"local\"\n\n\
                    [stores.local]\ntype = \"file\"\npath = \"secrets.json\"\n";

#[test]
fn include_adds_credentials_stores_and_target_blocks() {
    let (dir, main) = site(
        MAIN,
        &[
            ("conf.d/10-targets.toml", &BLOCK[BLOCK.find("[targets").unwrap()..]),
            (
                "conf.d/20-orders.toml",
                "# orders\n[[credentials]]\nname = \"orders\"\nkey = \"o\"\ntarget = { use = \"pg-prod\", username = \"orders_app\" }\n",
            ),
            (
                "conf.d/30-billing.toml",
                "[stores.billing]\ntype = \"file\"\npath = \"billing.json\"\n\n[[credentials]]\nname = \"billing\"\nstore = \"billing\"\n\
                 key = \"b\"\ntarget = { use = \"pg-prod\", username = \"billing_app\" }\n",
            ),
            ("conf.d/notes.txt", "not toml"),
            ("conf.d/.hidden.toml", "not toml either"),
        ],
    );
    let config = load(&main).unwrap();
    let names: Vec<&str> = config.credentials.iter().map(|c| c.name.as_str()).collect();
    assert_eq!(names, ["orders", "billing"], "in file-name order");
    assert_eq!(user_of(&config, "billing").1, "billing_app");
    assert_eq!(config.credential("billing").unwrap().store, "billing");
    let StoreConfig::File(f) = &config.stores["billing"] else {
        panic!("a file store")
    };
    assert_eq!(f.path, dir.path().join("billing.json"), "relative to the main file");
    assert_eq!(config.included.len(), 3);
    // A pattern matching nothing in an existing directory adds nothing ...
    let (_dir, main) = site(
        &MAIN.replace("conf.d/*.toml", "conf.d/*.conf"),
        &[("conf.d/notes.txt", "")],
    );
    assert!(load(&main).unwrap().credentials.is_empty());
    // ... a missing directory is a mistake, and so is a `$` (no expansion here).
    let (_dir, main) = site(&MAIN.replace("conf.d/*.toml", "confd/*.toml"), &[]);
    let e = load(&main).unwrap_err();
    assert!(
        e.contains("rekey.toml:1:") && e.contains("confd") && e.contains("does not exist"),
        "{e}"
    );
    let (_dir, main) = site(&MAIN.replace("conf.d/*.toml", "${CONF}/*.toml"), &[]);
    assert!(load(&main).unwrap_err().contains("not expanded"));
}

#[test]
fn include_errors_name_the_included_file_line_and_column() {
    let credential = "[[credentials]]\nname = \"orders\"\nkey = \"o\"\n\
                      target = { type = \"postgres\", host = \"h\", username = \"u\", usrname = \"x\" }\n";
    let (dir, main) = site(MAIN, &[("conf.d/a.toml", credential)]);
    let file = dir.path().join("conf.d/a.toml").display().to_string();
    let e = load(&main).unwrap_err();
    assert!(e.starts_with(&format!("{file}:4:")) && e.contains("usrname"), "{e}");
    // TOML syntax.
    std::fs::write(dir.path().join("conf.d/a.toml"), "[[credentials]]\nname = \n").unwrap();
    assert!(load(&main).unwrap_err().starts_with(&format!("{file}:2:")));
    // A missing variable names the included file and the credential.
    std::fs::write(
        dir.path().join("conf.d/a.toml"),
        credential.replace("usrname = \"x\"", "admin = \"${NOPE}\""),
    )
    .unwrap();
    let e = load(&main).unwrap_err();
    assert_eq!(
        e,
        format!("{file}: credential `orders`: environment variable `NOPE` is not set")
    );
    // Resolution errors too.
    std::fs::write(
        dir.path().join("conf.d/a.toml"),
        credential
            .replace(", usrname = \"x\"", "")
            .replace("key = \"o\"", "key = \"o\"\nevery = \"soon\""),
    )
    .unwrap();
    let e = load(&main).unwrap_err();
    assert!(e.starts_with(&format!("{file}: credential `orders`")), "{e}");
    // A named file that does not exist: the main file's `include` line.
    let (_d, main) = site(&MAIN.replace("conf.d/*.toml", "extra.toml"), &[]);
    let e = load(&main).unwrap_err();
    assert!(
        e.contains("rekey.toml:1:") && e.contains("no such file") && e.contains("extra.toml"),
        "{e}"
    );
}

#[test]
fn included_files_hold_only_tables_and_include_nothing() {
    let refused = |text: &str, part: &str| {
        let (dir, main) = site(MAIN, &[("conf.d/a.toml", text)]);
        let e = load(&main).unwrap_err();
        let file = dir.path().join("conf.d/a.toml").display().to_string();
        assert!(e.starts_with(&file) && e.contains(part), "{e}");
    };
    refused("include = [\"more/*.toml\"]\n", "cannot include others");
    refused("[defaults]\nparallel = 2\n", "[defaults] belongs in the main");
    refused("key = \"x\"\n", "not `key`");
    refused(
        "# c\n\nstores = { x = { type = \"file\", path = \"x.json\" } }\n",
        "starts with a table header",
    );
    refused("[notify]\nurl = \"x\"\n", "not `notify`");
    // Read together with the including file, these would change its last credential.
    refused("[credentials.password]\nlength = 4\n", "[[credentials]] tables");
    refused("[credentials.window]\nhours = \"19-20\"\n", "[[credentials]] tables");
}

#[test]
fn a_name_defined_in_two_files_is_an_error_naming_both() {
    let cred = |name: &str| {
        format!("[[credentials]]\nname = \"{name}\"\nkey = \"{name}\"\ntarget = {{ type = \"postgres\", host = \"h\", username = \"{name}\" }}\n")
    };
    let (dir, main) = site(
        MAIN,
        &[
            ("conf.d/a.toml", &cred("x")),
            ("conf.d/b.toml", &format!("{}\n{}", cred("y"), cred("x"))),
        ],
    );
    let a = dir.path().join("conf.d/a.toml").display().to_string();
    let b = dir.path().join("conf.d/b.toml").display().to_string();
    let e = load(&main).unwrap_err();
    assert!(
        e.starts_with(&format!("{b}:7:")) && e.contains(&format!("{a}:2")) && e.contains("credential `x`"),
        "{e}"
    );
    // A store of the main file defined again in an included file.
    let (_d, main) = site(
        MAIN,
        &[("conf.d/a.toml", "[stores.local]\ntype = \"file\"\npath = \"x.json\"\n")],
    );
    let e = load(&main).unwrap_err();
    assert!(
        e.contains("store `local` is defined in two files") && e.contains("rekey.toml:6"),
        "{e}"
    );
}

#[test]
fn dual_and_alternating_get_a_zero_downtime_grace_by_default() {
    let hour = Duration::from_secs(3600);
    let graces = |defaults: &str, extra: &str| {
        let text = format!(
            "[defaults]\nstore = \"local\"\n{defaults}\n[stores.local]\ntype = \"file\"\npath = \"s.json\"\n\n\
             [[credentials]]\nname = \"single\"\nkey = \"a\"\n{extra}\
             target = {{ type = \"postgres\", host = \"h\", username = \"a\" }}\n\n\
             [[credentials]]\nname = \"alternating\"\nkey = \"b\"\n{extra}\
             target = {{ type = \"postgres\", host = \"h\", usernames = [\"b1\", \"b2\"] }}\n\n\
             [[credentials]]\nname = \"dual\"\nkey = \"c\"\n{extra}\
             target = {{ type = \"redis\", host = \"h\", username = \"c\" }}\n"
        );
        let config = parse(&text).unwrap();
        ["single", "alternating", "dual"].map(|n| config.credential(n).unwrap().grace)
    };
    // Nothing configured: single none, the zero-downtime strategies an hour.
    assert_eq!(graces("", ""), [Duration::ZERO, hour, hour]);
    // A short `every` caps it at a quarter of the period.
    assert_eq!(
        graces("every = \"20s\"\n", ""),
        [Duration::ZERO, Duration::from_secs(5), Duration::from_secs(5)]
    );
    assert_eq!(graces("every = \"2h\"\n", "")[2], Duration::from_secs(1800));
    // [defaults] grace, also "0s", applies to every strategy ...
    assert_eq!(graces("grace = \"0s\"\n", ""), [Duration::ZERO; 3]);
    assert_eq!(graces("grace = \"10m\"\n", ""), [Duration::from_secs(600); 3]);
    // ... and the credential's own wins over both.
    assert_eq!(
        graces("grace = \"10m\"\n", "grace = \"2m\"\n"),
        [Duration::from_secs(120); 3]
    );
    assert_eq!(graces("", "grace = \"0s\"\n"), [Duration::ZERO; 3]);
    assert_eq!(
        default_grace(Strategy::Dual, Duration::from_secs(1)),
        Duration::from_millis(250)
    );
    assert_eq!(
        default_grace(Strategy::Single, Duration::from_secs(30 * 86_400)),
        Duration::ZERO
    );
}

/// Issue 14's configuration as written: `secret_fields` on the credential.
const BILLING: &str = r#"
[stores.local]
type = "file"
path = "secrets.json"

[[credentials]]
name = "billing-api"
store = "local"
key = "billing/api"
strategy = "dual"
secret_fields = ["api_key"]
target = { type = "http", base_url = "https://billing.example.com", timeout_secs = 10,
  headers = { Authorization = "Bearer x" },
  create = { method = "POST", path = "/v1/keys", json = { name = "rekey {{credential}}" }, ok = [200, 201],
             fields = { api_key = "/data/secret", key_id = "/data/id" } },
  login  = { method = "GET", path = "/v1/me", headers = { Authorization = "Bearer {{api_key}}" }, ok = [200], rejected = [401, 403] },
  revoke = { method = "DELETE", path = "/v1/keys/{{key_id}}", ok = [200, 204, 404] } }
"#;

#[test]
fn secret_fields_on_the_credential_reach_its_target() {
    let config = parse(BILLING).unwrap();
    let TargetConfig::Http(http) = &config.targets["billing-api"] else {
        panic!("an http target")
    };
    assert_eq!(http.secret_fields, ["api_key"]);
    // The older place still works.
    let old = BILLING.replace("secret_fields = [\"api_key\"]\n", "").replace(
        "timeout_secs = 10,",
        "timeout_secs = 10, secret_fields = [\"api_key\"],",
    );
    let TargetConfig::Http(http) = &parse(&old).unwrap().targets["billing-api"] else {
        panic!("an http target")
    };
    assert_eq!(http.secret_fields, ["api_key"]);
    // exec reads it too.
    let exec =
        "[stores.local]\ntype = \"file\"\npath = \"s.json\"\n\n[[credentials]]\nname = \"p\"\nstore = \"local\"\n\
                key = \"p\"\nsecret_fields = [\"token\"]\ntarget = { type = \"exec\", command = [\"/bin/true\"] }\n";
    let TargetConfig::Exec(e) = &parse(exec).unwrap().targets["p"] else {
        panic!("an exec target")
    };
    assert_eq!(e.secret_fields, ["token"]);
}

#[test]
fn secret_fields_twice_or_on_a_password_target_are_refused() {
    let both = BILLING.replace("timeout_secs = 10,", "timeout_secs = 10, secret_fields = [\"key_id\"],");
    let e = parse(&both).unwrap_err();
    assert!(
        e.contains("credential `billing-api`: `secret_fields` is set twice")
            && e.starts_with("/etc/rekey/rekey.toml:12:"),
        "{e}"
    );
    let text = format!(
        "{STORES}[[credentials]]\nname = \"a\"\nstore = \"local\"\nkey = \"k\"\nsecret_fields = [\"password\"]\n\
         target = {{ type = \"postgres\", host = \"h\", username = \"a\" }}\n"
    );
    let e = parse(&text).unwrap_err();
    assert!(
        e.contains("a `postgres` target's only secret is `password`") && e.contains(":13:"),
        "{e}"
    );
}

#[test]
fn a_missing_variable_fails_only_the_credentials_whose_target_uses_it() {
    let text = format!(
        "{STORES}{}{}[[credentials]]\nname = \"c\"\nstore = \"local\"\nkey = \"c\"\n\
         target = {{ type = \"postgres\", host = \"h\", port = \"${{NO_SUCH_PORT}}\", username = \"c\", admin = \"${{ADMIN_URL}}\" }}\n",
        pg_credential("a", Some("local")).replace("${ADMIN_URL}", "${NO_SUCH_ADMIN}"),
        pg_credential("b", Some("local")),
    );
    // Strict loading (validate, and every caller of `parse`): the first one, in file order.
    let e = parse(&text).unwrap_err();
    assert_eq!(
        e,
        "/etc/rekey/rekey.toml: credential `a`: environment variable `NO_SUCH_ADMIN` is not set"
    );
    // Per credential: the others load; the failed ones have no target and their error.
    let config = Config::parse_per_credential(Path::new("/etc/rekey/rekey.toml"), &text, env).unwrap();
    assert_eq!(config.credentials.len(), 3);
    assert_eq!(config.targets.keys().collect::<Vec<_>>(), ["b"]);
    assert_eq!(user_of(&config, "b").0, "127.0.0.1");
    assert_eq!(
        config.unresolved,
        BTreeMap::from([
            (
                "a".to_owned(),
                "/etc/rekey/rekey.toml: credential `a`: environment variable `NO_SUCH_ADMIN` is not set".to_owned()
            ),
            (
                "c".to_owned(),
                "/etc/rekey/rekey.toml: credential `c`: environment variable `NO_SUCH_PORT` is not set".to_owned()
            ),
        ])
    );
    assert_eq!(config.credential("c").unwrap().store, "local");
    // Outside a target (here a store), a missing variable is still an error for all.
    let text = text.replace("path = \"other.json\"", "path = \"${NO_SUCH_DIR}/other.json\"");
    let e = Config::parse_per_credential(Path::new("/etc/rekey/rekey.toml"), &text, env).unwrap_err();
    assert!(
        e.to_string()
            .contains("store `other`: environment variable `NO_SUCH_DIR`"),
        "{e}"
    );
}

#[test]
fn an_included_file_is_protected_like_the_main_file() {
    let (dir, main) = site(
        &MAIN.replace("[defaults]\n", "[defaults]\naudit_log = \"conf.d/a.toml\"\n"),
        &[("conf.d/a.toml", "[stores.x]\ntype = \"file\"\npath = \"x.json\"\n")],
    );
    let e = load(&main).unwrap_err();
    let file = dir.path().join("conf.d/a.toml").display().to_string();
    assert!(
        e.starts_with(&file) && e.contains("audit_log") && e.contains("configuration file"),
        "{e}"
    );
}

#[test]
fn a_typo_in_an_included_block_is_reported_at_its_file_and_line() {
    let block = &BLOCK[BLOCK.find("[targets").unwrap()..];
    let (dir, main) = site(
        &format!(
            "{MAIN}\n[[credentials]]\nname = \"orders\"\nkey = \"o\"\ntarget = {{ use = \"pg-prod\", username = \"orders_app\" }}\n"
        ),
        &[("conf.d/targets.toml", &block.replace("dbname =", "dbnmae ="))],
    );
    let e = load(&main).unwrap_err();
    let file = dir.path().join("conf.d/targets.toml").display().to_string();
    assert!(e.starts_with(&format!("{file}:5:1:")) && e.contains("dbnmae"), "{e}");
}

#[test]
fn an_inline_credentials_list_and_included_credentials_do_not_mix() {
    let main = format!(
        "include = [\"conf.d/*.toml\"]\ncredentials = [\n  {{ name = \"a\", key = \"a\", target = {{ type = \"redis\", host = \"h\", username = \"a\" }} }},\n]\n\n{}",
        &MAIN[MAIN.find("[defaults]").unwrap()..]
    );
    let included =
        "[[credentials]]\nname = \"b\"\nkey = \"b\"\ntarget = { type = \"redis\", host = \"h\", username = \"b\" }\n";
    let (dir, path) = site(&main, &[("conf.d/b.toml", included)]);
    let e = load(&path).unwrap_err();
    let file = dir.path().join("conf.d/b.toml").display().to_string();
    assert!(
        e.starts_with(&format!("{file}:1:3:")) && e.contains("inline `credentials = [...]`"),
        "{e}"
    );
    // Blocks and stores from included files are fine with an inline list.
    std::fs::write(
        dir.path().join("conf.d/b.toml"),
        "[stores.b]\ntype = \"file\"\npath = \"b.json\"\n",
    )
    .unwrap();
    assert_eq!(load(&path).unwrap().credentials.len(), 1);
}
