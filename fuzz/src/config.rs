//! Targets `config_text` and `config_structured`: [`rekey::config::Config::parse`].
//!
//! `config_text` parses the input as it is (invalid UTF-8 replaced). `config_structured`
//! reads the input as instructions that pick one of [`TEMPLATES`] (valid configurations
//! covering every store and target type) and apply line-level mutations to it: replace a
//! value or a key, delete, duplicate, move or insert lines, cut a line short. An input
//! with no mutation must parse: that keeps the templates honest.
//!
//! Checked on every input, besides "returns, never panics":
//!
//! - an error is one line and names the file ([`rekey::config::ConfigError`]: "always
//!   one line, naming the file");
//! - an error never shows a value that came from the environment ("values that came
//!   from the environment are never expanded again and never shown"): every variable
//!   [`lookup`] knows as secret holds [`ENV_MARKER`], which must not appear in a message
//!   unless the text itself contains it;
//! - an accepted configuration has unique credential names, each naming a known store
//!   and having a target.

use crate::harness::Rng;
use rekey::config::Config;
use std::collections::BTreeSet;
use std::path::Path;

/// The path every configuration is parsed as (it does not exist; nothing is read).
pub const CONFIG_PATH: &str = "/nonexistent/rekey-fuzz/rekey.toml";

/// Marks the values of environment variables that stand for secrets.
pub const ENV_MARKER: &str = "ENVSECRET";

/// The environment the configurations see. Unknown names are unset.
pub fn lookup(name: &str) -> Option<String> {
    let value = match name {
        "ADMIN_URL" => "postgres://admin:ENVSECRET-admin-pw@127.0.0.1:5432/postgres",
        "MYSQL_ADMIN" => "mysql://root:ENVSECRET-mysql-pw@127.0.0.1:3306/",
        "VAULT_TOKEN" => "hvs.ENVSECRET-vault-token",
        "NOT_A_PORT" => "ENVSECRET-not-a-port",
        "NOT_A_BOOL" => "ENVSECRET-not-a-bool",
        "PG_PORT" => "6543",
        "YES" => "true",
        "EMPTY" => "",
        "SPACE" => " ",
        "LOOP" => "${LOOP}",
        "DOLLAR" => "$HOME",
        "BIG" => "99999999999999999999",
        "LONG_TIME" => "8000y",
        "UP" => "../secrets.json",
        "NEWLINE" => "a\nb",
        _ => return None,
    };
    Some(value.to_owned())
}

/// Messages known to break the one-line and environment rules, reported to the config
/// loader's owners (fuzzing report, issue 13 item 9). They are tolerated so that a run
/// goes on to find other problems; `REKEY_FUZZ_STRICT=1` checks them too (to confirm a
/// fix, then narrow this).
///
/// - Every message of the checks that run after reading (`resolve()` in
///   `src/config.rs`, `src/config/paths.rs`, `src/config/identity.rs`): they carry no
///   line and column, and quote values as expanded — a name or store from `${VAR}`, a
///   duration (`` `every = "<value>"` is not a duration ``), a path, a host — or as
///   written, newlines of a TOML multi-line string included.
/// - `section_type()` in `src/config.rs`: `` unknown store type `<type>` `` and
///   `` unknown target type `<type>` `` quote the expanded `type`.
fn known_issue(message: &str) -> bool {
    if crate::harness::strict() {
        return false;
    }
    let unlocated = message
        .strip_prefix(CONFIG_PATH)
        .is_some_and(|rest| rest.starts_with(": "));
    unlocated || message.contains("unknown store type `") || message.contains("unknown target type `")
}

/// Parses `text` and checks the properties listed in the module docs. Returns the
/// configuration when it was accepted.
pub fn check_parse(text: &str) -> Option<Config> {
    let shown = || crate::harness::escape(text.as_bytes(), 1024);
    match Config::parse(Path::new(CONFIG_PATH), text, lookup) {
        Ok(config) => {
            let mut names = BTreeSet::new();
            for credential in &config.credentials {
                assert!(
                    names.insert(credential.name.as_str()),
                    "two credentials named {:?} were accepted\n  config text: {}",
                    credential.name,
                    shown()
                );
                assert!(
                    config.stores.contains_key(&credential.store),
                    "credential {:?} names unknown store {:?} and was accepted\n  config text: {}",
                    credential.name,
                    credential.store,
                    shown()
                );
                assert!(
                    config.targets.contains_key(&credential.name),
                    "credential {:?} has no target\n  config text: {}",
                    credential.name,
                    shown()
                );
            }
            Some(config)
        }
        Err(error) => {
            let message = error.to_string();
            // An error inside a file the text includes names that file instead.
            assert!(
                message.contains(CONFIG_PATH) || text.contains("include"),
                "a config error names the file: {message:?}\n  config text: {}",
                shown()
            );
            if known_issue(&message) {
                return None;
            }
            assert!(
                !message.contains('\n'),
                "a config error is one line: {message:?}\n  config text: {}",
                shown()
            );
            if !text.contains(ENV_MARKER) {
                assert!(
                    !message.contains(ENV_MARKER),
                    "a config error shows a value from the environment: {message:?}\n  config text: {}",
                    shown()
                );
            }
            None
        }
    }
}

/// Target `config_text`: any bytes as configuration text.
pub fn config_text(data: &[u8]) {
    let text = String::from_utf8_lossy(data);
    check_parse(&text);
}

/// Target `config_structured`: `data` read as mutation instructions on a template
/// ([`structured_text`]). Without mutations, the template must be accepted.
pub fn config_structured(data: &[u8]) {
    let (text, mutations) = structured_text(data);
    let accepted = check_parse(&text).is_some();
    if mutations == 0 {
        assert!(accepted, "template must be accepted:\n{text}");
    }
}

/// Valid configurations: every store and target type, inline and multi-line tables,
/// environment references, policies and durations.
pub const TEMPLATES: &[&str] = &[
    r#"[defaults]
parallel = 4
every = "30d"
grace = "0s"
audit_log = "rekey-audit.jsonl"
lock_dir = ".rekey/locks"
verify_attempts = 3
password = { length = 32 }

[stores.local]
type = "file"
path = "secrets.json"

[[credentials]]
name = "orders-db"
store = "local"
key = "orders/db"
strategy = "single"
tags = ["prod"]
description = "orders service database login"
target = { type = "postgres", host = "127.0.0.1", port = 5432, dbname = "orders", username = "orders_app", admin = "${ADMIN_URL}", sslmode = "prefer" }
"#,
    r#"[defaults]
every = "7d"
audit_log = "audit.jsonl"

[stores.local]
type = "file"
path = "secrets.json"

[[credentials]]
name = "shop-db"
store = "local"
key = "shop/db"
grace = "1h"
password = { length = 24, require = ["lower", "upper", "digit", "symbol"], exclude = "0O1lI", symbols = "-_" }

[credentials.target]
type = "mysql"
host = "127.0.0.1"
port = "${PG_PORT}"
usernames = ["shop_a", "shop_b"]
user_host = "%"
admin = "${MYSQL_ADMIN}"

[[credentials]]
name = "cache"
store = "local"
key = "cache/acl"
strategy = "dual"
grace = "10m"
tags = ["cache", "prod"]

[credentials.target]
type = "redis"
host = "127.0.0.1"
port = 6379
username = "app"
terminate_sessions = "${YES}"
"#,
    r#"[defaults]
audit_log = "audit.jsonl"

[stores.aws]
type = "aws-secretsmanager"
region = "us-east-1"
endpoint_url = "http://127.0.0.1:5000"

[[credentials]]
name = "deployer-key"
store = "aws"
key = "ci/deployer"
strategy = "dual"

[credentials.target]
type = "aws-iam"
user = "deployer"
region = "us-east-1"
endpoint_url = "http://127.0.0.1:5000"
"#,
    r#"[defaults]
audit_log = "audit.jsonl"

[stores.vault]
type = "vault-kv"
address = "http://127.0.0.1:8200"
mount = "secret"
kv_version = 2
token = "${VAULT_TOKEN}"

[[credentials]]
name = "app-role"
store = "vault"
key = "apps/role"

[credentials.target]
type = "vault-approle"
address = "http://127.0.0.1:8200"
mount = "approle"
role = "app"
token = "${VAULT_TOKEN}"
"#,
    r#"[defaults]
audit_log = "${MISSING_LOG:-audit.jsonl}"

[stores.local]
type = "file"
path = "secrets.json"

[[credentials]]
name = "reports-db"
store = "local"
key = "reports/db"
every = "90d"
verify_attempts = 5

[credentials.target]
type = "postgres"
host = "db.internal"
port = 5432
dbname = "reports"
usernames = ["reports_a", "reports_b"]
admin = "postgres://rotator:s3cr3t$$pw@db.internal/postgres"
sslmode = "require"
check_query = "SELECT 1"
connect_timeout_secs = 5
"#,
];

/// Values a mutation puts in place of another: wrong types, references, limits.
const VALUES: &[&str] = &[
    "\"\"",
    "\" \"",
    "\"${PG_PORT}\"",
    "\"${NOT_A_PORT}\"",
    "\"${NOT_A_BOOL}\"",
    "\"${ADMIN_URL}\"",
    "\"${VAULT_TOKEN}\"",
    "\"${MISSING}\"",
    "\"${MISSING:-fallback}\"",
    "\"${EMPTY:-default}\"",
    "\"${EMPTY}\"",
    "\"${SPACE}\"",
    "\"${LOOP}\"",
    "\"${DOLLAR}\"",
    "\"${BIG}\"",
    "\"${LONG_TIME}\"",
    "\"${UP}\"",
    "\"${NEWLINE}\"",
    "\"${}\"",
    "\"${1BAD}\"",
    "\"${A:-$B}\"",
    "\"${UNCLOSED\"",
    "\"$HOME\"",
    "\"$$\"",
    "\"$\"",
    "\"pre${YES}post\"",
    "0",
    "-1",
    "1",
    "2",
    "65535",
    "65536",
    "4294967296",
    "99999999999999999999",
    "1.5",
    "1e400",
    "nan",
    "inf",
    "true",
    "false",
    "[]",
    "{}",
    "[\"a\", \"a\"]",
    "[\"prod\", 1]",
    "[[]]",
    "\"0s\"",
    "\"1s\"",
    "\"1ns\"",
    "\"30d\"",
    "\"8000y\"",
    "\"99999999999999999999s\"",
    "\"1 fortnight\"",
    "\"-1s\"",
    "\"../secrets.json\"",
    "\"/\"",
    "\".\"",
    "\"secrets.json\"",
    "\"secrets.json.lock\"",
    "\"rekey.toml\"",
    "\"orders-db.rekey-lock\"",
    "\".rekey/locks/orders-db.rekey-lock\"",
    "\"\u{e9}t\u{e9}\"",
    "\"\\u0000\"",
    "\"a\\nb\"",
    "'literal'",
    "'''\nmulti\nline\n'''",
    "\"\"\"\nbasic\nmulti\n\"\"\"",
    "1979-05-27T07:32:00Z",
    "{ length = 0 }",
    "{ length = 4, require = [\"lower\", \"upper\", \"digit\", \"symbol\"] }",
    "{ length = 4096 }",
    "{ length = 16, exclude = \"abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_\" }",
    "{ length = 16, symbols = \"\", require = [\"symbol\"] }",
    "{ length = 16, symbols = \"--\" }",
    "{ length = 16, require = [\"emoji\"] }",
    "\"single\"",
    "\"dual\"",
    "\"alternating\"",
    "\"postgres\"",
    "\"mysql\"",
    "\"redis\"",
    "\"aws-iam\"",
    "\"vault-approle\"",
    "\"file\"",
    "\"vault-kv\"",
    "\"aws-secretsmanager\"",
    "\"local\"",
    "\"aws\"",
    "\"vault\"",
    "\"orders-db\"",
    "\"cache\"",
    "\"bad name!\"",
    "\"LOCALHOST\"",
    "\"127.0.0.1\"",
    "\"postgres://rotator:s3cr3t@127.0.0.1/postgres\"",
    "\"postgres://orders_app:s3cr3t@127.0.0.1/postgres\"",
    "\"mysql://shop_a:pw@127.0.0.1/\"",
    "\"redis://:pw@127.0.0.1:6379\"",
    "\"not a url\"",
    "\"verify-full\"",
    "\"disable\"",
    "{ type = \"postgres\", host = \"127.0.0.1\", username = \"orders_app\" }",
    "{ type = \"redis\", host = \"127.0.0.1\", username = \"app\" }",
    "{ type = \"aws-iam\", user = \"deployer\" }",
    "{ type = \"vault-approle\", role = \"app\", address = \"http://127.0.0.1:8200\" }",
    "{ type = \"nope\" }",
    "{ host = \"127.0.0.1\" }",
    "{ type = 1 }",
];

/// Keys a mutation puts in place of another, or inserts.
const KEYS: &[&str] = &[
    "name",
    "store",
    "key",
    "strategy",
    "tags",
    "target",
    "every",
    "grace",
    "password",
    "verify_attempts",
    "description",
    "parallel",
    "audit_log",
    "lock_dir",
    "type",
    "path",
    "host",
    "port",
    "username",
    "usernames",
    "admin",
    "dbname",
    "sslmode",
    "sslrootcert",
    "check_query",
    "connect_timeout_secs",
    "terminate_sessions",
    "user_host",
    "tls",
    "tls_ca",
    "user",
    "region",
    "endpoint_url",
    "profile",
    "address",
    "mount",
    "kv_version",
    "token",
    "approle",
    "namespace",
    "ca_cert",
    "role",
    "unknown_key",
    "\"quoted key\"",
    "a.b",
    "\"\"",
];

/// Whole lines a mutation inserts.
const LINES: &[&str] = &[
    "",
    "# a comment",
    "[defaults]",
    "[stores.local]",
    "[stores.other]",
    "[stores.\"\"]",
    "[stores]",
    "[[credentials]]",
    "[credentials]",
    "[credentials.target]",
    "[credentials.password]",
    "[[stores]]",
    "[unknown]",
    "[[credentials.target]]",
    "[defaults.password]",
    "stores = 1",
    "credentials = []",
    "= \"no key\"",
    "key =",
    "[",
    "]]",
    "\"\"\"",
    "'''",
    "{",
];

/// Reads instruction bytes; zero when they run out, so every input is a valid program.
struct Instructions<'a>(&'a [u8]);

impl Instructions<'_> {
    fn byte(&mut self) -> u8 {
        match self.0.split_first() {
            Some((&b, rest)) => {
                self.0 = rest;
                b
            }
            None => 0,
        }
    }

    fn index(&mut self, len: usize) -> usize {
        if len == 0 {
            0
        } else {
            let wide = u16::from_le_bytes([self.byte(), self.byte()]);
            usize::from(wide) % len
        }
    }

    fn pick<'b>(&mut self, items: &[&'b str]) -> &'b str {
        items[self.index(items.len())]
    }
}

/// The configuration text `data` describes, and how many mutations it holds: byte 0
/// picks the template, byte 1 the mutation count (0 to 7), the rest the mutations.
pub fn structured_text(data: &[u8]) -> (String, usize) {
    let mut input = Instructions(data);
    let template = TEMPLATES[usize::from(input.byte()) % TEMPLATES.len()];
    let mutations = usize::from(input.byte() % 8);
    let mut lines: Vec<String> = template.lines().map(str::to_owned).collect();
    for _ in 0..mutations {
        let op = input.byte() % 9;
        let at = input.index(lines.len());
        match op {
            // A value replaced.
            0 | 1 => {
                let value = input.pick(VALUES);
                if let Some((key, _)) = lines.get(at).and_then(|l| l.split_once(" = ")) {
                    lines[at] = format!("{key} = {value}");
                }
            }
            // A key renamed.
            2 => {
                let key = input.pick(KEYS);
                if let Some((_, value)) = lines.get(at).and_then(|l| l.split_once(" = ")) {
                    lines[at] = format!("{key} = {value}");
                }
            }
            3 => {
                if at < lines.len() {
                    lines.remove(at);
                }
            }
            4 => {
                let to = input.index(lines.len() + 1);
                if let Some(line) = lines.get(at).cloned() {
                    lines.insert(to, line);
                }
            }
            5 => {
                let line = input.pick(LINES).to_owned();
                lines.insert(at.min(lines.len()), line);
            }
            6 => {
                let line = format!("{} = {}", input.pick(KEYS), input.pick(VALUES));
                lines.insert(at.min(lines.len()), line);
            }
            7 => {
                let to = input.index(lines.len());
                if at < lines.len() && to < lines.len() {
                    lines.swap(at, to);
                }
            }
            // A line cut short (an unterminated string, a dangling `=`).
            _ => {
                let cut = input.index(64);
                if let Some(line) = lines.get_mut(at) {
                    let mut end = cut.min(line.len());
                    while !line.is_char_boundary(end) {
                        end -= 1;
                    }
                    line.truncate(end);
                }
            }
        }
    }
    let mut text = lines.join("\n");
    text.push('\n');
    (text, mutations)
}

/// Structured generator for `config_text`: a mutated template, as text.
pub fn generate_text(rng: &mut Rng) -> Vec<u8> {
    structured_text(&generate_instructions(rng)).0.into_bytes()
}

/// Structured generator for `config_structured`: instruction bytes.
pub fn generate_instructions(rng: &mut Rng) -> Vec<u8> {
    let len = rng.below(64);
    (0..len).map(|_| rng.next_u64() as u8).collect()
}

/// Tokens for `config_text`'s mutations: TOML syntax and rekey's keys and values.
pub const DICTIONARY: &[&str] = &[
    "[defaults]\n",
    "[stores.local]\n",
    "[[credentials]]\n",
    "[credentials.target]\n",
    "type = \"file\"\n",
    "type = \"postgres\"\n",
    "type = \"redis\"\n",
    "path = \"secrets.json\"\n",
    "name = \"a\"\n",
    "store = \"local\"\n",
    "key = \"k\"\n",
    "target = { type = \"postgres\", host = \"h\", username = \"u\" }\n",
    "target = { type = \"aws-iam\", user = \"u\" }\n",
    "every = \"30d\"\n",
    "grace = \"1h\"\n",
    "strategy = \"dual\"\n",
    "password = { length = 8 }\n",
    "usernames = [\"a\", \"b\"]\n",
    " = ",
    "\"",
    "'",
    "\"\"\"",
    "'''",
    "${",
    "${ADMIN_URL}",
    "${NOT_A_PORT}",
    "${MISSING:-x}",
    "$$",
    "}",
    "{",
    "[",
    "]",
    ",",
    ".",
    "#",
    "\\u00e9",
    "\\U0010ffff",
    "\\x",
    "1979-05-27T07:32:00Z",
    "07:32:00",
    "0x7f",
    "0o7",
    "0b1",
    "+inf",
    "-nan",
    "1_000",
];
