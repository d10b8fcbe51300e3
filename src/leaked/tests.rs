//! One test per form, a file mixing them, the scanners, hygiene, and a no-panic property.

use super::*;
use rekey_api::Secret;

/// The candidates as (value, origin name), for assertions.
fn found(input: &str, source: Source) -> Vec<(String, &'static str)> {
    extract(input, source)
        .unwrap_or_else(|e| panic!("extract failed: {e}"))
        .iter()
        .map(|c| (c.value.expose().to_owned(), c.origin.as_str()))
        .collect()
}

fn text(input: &str) -> Vec<(String, &'static str)> {
    found(input, Source::Text)
}

fn values(input: &str) -> Vec<String> {
    text(input).into_iter().map(|(v, _)| v).collect()
}

/// Asserts that `value` is among the candidates, with `origin`.
#[track_caller]
fn has(got: &[(String, &'static str)], value: &str, origin: &str) {
    assert!(
        got.iter().any(|(v, o)| v == value && *o == origin),
        "{value:?} ({origin}) not in {got:?}"
    );
}

#[track_caller]
fn lacks(got: &[(String, &'static str)], value: &str) {
    assert!(
        !got.iter().any(|(v, _)| v == value),
        "{value:?} should not be in {got:?}"
    );
}

#[test]
fn bare_value_is_the_candidate_trimmed() {
    assert_eq!(text("hunter2-XyZ\n"), [("hunter2-XyZ".to_owned(), "bare")]);
    assert_eq!(
        text("  correct horse battery staple \n"),
        [
            ("correct horse battery staple".to_owned(), "bare"),
            ("  correct horse battery staple ".to_owned(), "bare"),
        ],
        "not split on spaces; the line as typed comes second"
    );
    assert_eq!(values("\"quoted-pw\""), ["quoted-pw", "\"quoted-pw\""]);
    // A base64 value with `=` padding is not mistaken for KEY=value.
    has(
        &text("K7gNU3sdo+OL0wNhqoVWhr3g6s1xYv72ol/pe/Unols=\n"),
        "K7gNU3sdo+OL0wNhqoVWhr3g6s1xYv72ol/pe/Unols=",
        "bare",
    );
    has(&text("dGVzdHBhc3N3b3Jk==\n"), "dGVzdHBhc3N3b3Jk==", "bare");
}

#[test]
fn url_userinfo_password_of_any_scheme() {
    for (url, pw) in [
        ("postgresql://app:S3cret-pw@db:5432/x", "S3cret-pw"),
        ("postgres://app:S3cret-pw@db/x?sslmode=require", "S3cret-pw"),
        ("mysql://root:My-Pass-1@127.0.0.1:3306/shop", "My-Pass-1"),
        ("redis://:redis-pass-9@cache:6379/0", "redis-pass-9"),
        ("rediss://default:tls-redis-pw@cache:6380", "tls-redis-pw"),
        ("amqp://guest:rabbit-pw-7@mq:5672/vhost", "rabbit-pw-7"),
        ("https://deploy:https-pw-3@git.example.com/repo.git", "https-pw-3"),
        (
            "mongodb+srv://app:mongo-pw-5@cluster0.abc.mongodb.net/?retryWrites=true",
            "mongo-pw-5",
        ),
        ("jdbc:mysql://app:jdbc-pw-2@db/x", "jdbc-pw-2"),
    ] {
        let got = text(url);
        has(&got, pw, "url-userinfo");
        assert_eq!(got[0].0, pw, "{url}: the password first");
        lacks(&got, "app");
        has(&got, url, "bare");
    }
}

#[test]
fn url_password_percent_decoded_and_raw() {
    let got = text("postgres://app:p%40ss%2Fw0rd%21@db:5432/x");
    assert_eq!(got[0], ("p@ss/w0rd!".to_owned(), "url-userinfo"));
    assert_eq!(got[1], ("p%40ss%2Fw0rd!".replace('!', "%21"), "url-userinfo"));
    // Unencoded `/`, `@`, `?`, `#` in the password (sloppy, but it happens).
    has(&text("postgres://app:pa/ss@db/x"), "pa/ss", "url-userinfo");
    has(&text("postgres://app:p@ss@db/x"), "p@ss", "url-userinfo");
    has(&text("postgres://app:p#s?s@db/x"), "p#s?s", "url-userinfo");
    // A token as the user name.
    has(
        &text("https://ghp_abcdefghijklmnop1234@github.com/org/repo.git"),
        "ghp_abcdefghijklmnop1234",
        "url-userinfo",
    );
}

#[test]
fn url_query_parameters() {
    let got = text("postgres://db:5432/x?user=app&password=q%2Bpw-1&sslmode=require");
    has(&got, "q+pw-1", "url-query");
    has(&got, "q%2Bpw-1", "url-query");
    lacks(&got, "app");
    for key in ["pass", "pwd", "secret", "token", "key", "PASSWORD"] {
        let got = text(&format!("https://api.example.com/v1?{key}=tok-en-123&x=1"));
        has(&got, "tok-en-123", "url-query");
    }
    // Form encoding: `+` may stand for a space.
    has(&text("https://h/?token=two+words"), "two words", "url-query");
    has(&text("https://h/?token=two+words"), "two+words", "url-query");
}

#[test]
fn key_value_dsns() {
    let got = text("host=db user=app password=Libpq-PW-1 dbname=orders");
    has(&got, "Libpq-PW-1", "key-value");
    lacks(&got, "orders");
    lacks(&got, "app");
    has(&text("host=db password='p w x' user=app"), "p w x", "key-value");
    has(
        &text(r"host=db password='it\'s secret' user=app"),
        "it's secret",
        "key-value",
    );
    has(&text("host=db password = spaced-pw user=app"), "spaced-pw", "key-value");
    let got = text("Server=tcp:db,1433;Database=shop;User ID=app;Password=Ado Net PW;Encrypt=true;");
    has(&got, "Ado Net PW", "key-value");
    lacks(&got, "shop");
    has(
        &text("Driver={ODBC};SERVER=db;UID=app;PWD={odbc;pw};"),
        "odbc;pw",
        "key-value",
    );
    has(&text("SERVER=db;PASSWORD=Upper-Case-PW;"), "Upper-Case-PW", "key-value");
    has(
        &text("mysql --host db --password=flag-pw-1 shop"),
        "flag-pw-1",
        "key-value",
    );
    has(&text("redis-server --requirepass flag-pw-2"), "flag-pw-2", "key-value");
    has(&text("requirepass redis-conf-pw"), "redis-conf-pw", "key-value");
    has(
        &text(r#"curl -H "Authorization: Bearer eyJhbGciOi.abc.def" https://api"#),
        "eyJhbGciOi.abc.def",
        "key-value",
    );
    // base64("app:basic-pw-1")
    has(&text("Authorization: Basic YXBwOmJhc2ljLXB3LTE="), "basic-pw-1", "yaml");
}

/// Found trying it: Go's MySQL DSN and `mysql -pPW` were missed.
#[test]
fn go_mysql_dsns_and_mysql_short_password_flags() {
    let got = text("xinc_app:Go-Dsn-PW-1@tcp(127.0.0.1:3306)/app?parseTime=true");
    has(&got, "Go-Dsn-PW-1", "url-userinfo");
    lacks(&got, "xinc_app");
    has(
        &text("DATABASE_DSN=\"app:q%40w-2@unix(/run/mysqld/mysqld.sock)/app\""),
        "q@w-2",
        "url-userinfo",
    );
    has(
        &text("mysql -h db -uxinc_app -pShort-Flag-3 app"),
        "Short-Flag-3",
        "key-value",
    );
    has(
        &text("/usr/bin/mysqldump -u app '-pQuoted-Flag-4' shop"),
        "Quoted-Flag-4",
        "key-value",
    );
    // Not a MySQL client: `-p8080` is a port, `-p` alone asks for the password.
    lacks(&text("docker run -p8080:80 nginx"), "8080:80");
    lacks(&text("ssh -p2222 host"), "2222");
}

#[test]
fn env_and_shell_lines() {
    has(&text("DB_PASS=plain-env-1"), "plain-env-1", "env");
    has(&text("DB_PASS=\"double-env-2\""), "double-env-2", "env");
    has(&text("DB_PASS='single-env-3'"), "single-env-3", "env");
    has(&text("export DB_PASS=\"exported-4\""), "exported-4", "env");
    has(&text("export DB_PASS=\"with \\\"quote\\\"\""), "with \"quote\"", "env");
    has(&text("DB_PASS=commented-5 # rotated 2024"), "commented-5", "env");
    has(&text("DB_PASS=has#hash-6"), "has#hash-6", "env");
    has(&text("$env:DB_PASS = \"powershell-7\""), "powershell-7", "env");
    has(&text("ENV DB_PASS=docker-8"), "docker-8", "env");
    has(
        &text("spring.datasource.password=props-9"),
        "spring.datasource.password=props-9",
        "bare",
    );
    has(&text("spring.datasource.password=props-9"), "props-9", "env");
    // An empty value is no candidate.
    let got = text("DB_PASS=\nOTHER=''\n");
    assert!(got.iter().all(|(_, o)| *o == "bare"), "{got:?}");
    // A URL as the value: the value and the URL's password.
    let got = text("DATABASE_URL=postgresql://app:Url-In-Env-1@db:5432/x");
    has(&got, "postgresql://app:Url-In-Env-1@db:5432/x", "env");
    has(&got, "Url-In-Env-1", "url-userinfo");
    // A DSN as the value.
    has(
        &text("PG_DSN=\"host=db password=dsn-in-env-2\""),
        "dsn-in-env-2",
        "key-value",
    );
    // Public keys are not candidates.
    let got = text("DB_HOST=db.internal.example\nDB_PORT=5432\nDB_USER=orders_app\nDB_NAME=orders\nPGHOST=pg.example\nDB_PASSWORD=the-real-one");
    assert_eq!(
        got.iter().filter(|(_, o)| *o != "bare").collect::<Vec<_>>(),
        [&("the-real-one".to_owned(), "env")]
    );
}

#[test]
fn yaml_lines_with_nesting() {
    let yaml = "\
database:
  host: db.example
  username: orders_app
  password: yaml-plain-1
  replica:
    password: \"yaml-double-2\"
    token: 'yaml-single-3'
    url: postgres://app:yaml-url-4@replica/x
secrets:
  - yaml-list-item-5
  - name: x
    value: yaml-list-map-6 # a comment
  block: |
    not read
";
    let got = text(yaml);
    has(&got, "yaml-plain-1", "yaml");
    has(&got, "yaml-double-2", "yaml");
    has(&got, "yaml-single-3", "yaml");
    has(&got, "yaml-url-4", "url-userinfo");
    has(&got, "yaml-list-item-5", "yaml");
    has(&got, "yaml-list-map-6", "yaml");
    lacks(&got, "orders_app");
    lacks(&got, "db.example");
    lacks(&got, "|");
}

#[test]
fn json_documents_at_any_depth() {
    let got = text(r#"{"username":"orders_app","password":"json-pw-1","host":"db","port":5432}"#);
    assert_eq!(got[0], ("json-pw-1".to_owned(), "json"));
    lacks(&got, "orders_app");
    let got = text(
        r#"{
  "services": [
    {"name": "api", "env": {"TOKEN": "deep-token-2", "pin": 123456789}},
    ["array-item-3", {"dsn": "mysql://u:json-url-4@h/x"}]
  ],
  "nested": "{\"password\": \"json-in-json-5\"}"
}"#,
    );
    has(&got, "deep-token-2", "json");
    has(&got, "123456789", "json");
    has(&got, "array-item-3", "json");
    has(&got, "json-url-4", "url-userinfo");
    has(&got, "json-in-json-5", "json");
    // JSON inside a log line, text around it still read.
    let got = text(
        r#"2024-05-01T10:00:00Z INFO loaded config {"db": {"password": "log-json-6"}} from "/etc/app/config.json""#,
    );
    has(&got, "log-json-6", "json");
    has(&got, "/etc/app/config.json", "quoted");
    // A truncated JSON object (not parseable) is still read line by line.
    let got = text("{\n  \"password\": \"truncated-7\",\n  \"user\": ");
    has(&got, "truncated-7", "yaml");
}

#[test]
fn quoted_values_in_log_lines() {
    let got = text("2024-05-01 ERROR connecting with password \"log-quoted-1\" failed");
    has(&got, "log-quoted-1", "key-value");
    let got = text("WARN retry using 'single-quoted-2' and `backtick-quoted-3`, don't stop");
    has(&got, "single-quoted-2", "quoted");
    has(&got, "backtick-quoted-3", "quoted");
    // Shorter than 8 characters: not taken from a free-form line.
    lacks(&text("INFO state \"short\" then \"x\""), "short");
}

#[test]
fn aws_access_key_ids() {
    let got = text("key AKIAIOSFODNN7EXAMPLE in use");
    has(&got, "AKIAIOSFODNN7EXAMPLE", "aws-access-key-id");
    has(
        &text("ASIAY34FZKBOKMUTVV7A"),
        "ASIAY34FZKBOKMUTVV7A",
        "aws-access-key-id",
    );
    lacks(&text("XAKIAIOSFODNN7EXAMPLE1 is not one"), "AKIAIOSFODNN7EXAMPLE");
    // The console's accessKeys.csv: the secret access key beside it.
    let csv = "Access key ID,Secret access key\nAKIAIOSFODNN7EXAMPLE,wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY\n";
    let got = text(csv);
    has(&got, "AKIAIOSFODNN7EXAMPLE", "aws-access-key-id");
    has(
        &got,
        "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY",
        "aws-secret-access-key",
    );
    // No key id in the input: a 40-character token is not taken as a secret key.
    lacks(
        &text("commit 0123456789abcdef0123456789abcdef01234567 done"),
        "0123456789abcdef0123456789abcdef01234567",
    );
}

#[test]
fn trufflehog_json_lines() {
    let input = r#"{"SourceMetadata":{"Data":{"Git":{"file":"app.env","line":3}}},"DetectorName":"AWS","Verified":true,"Raw":"AKIAIOSFODNN7EXAMPLE","RawV2":"AKIAIOSFODNN7EXAMPLE:wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY","Redacted":"AKIAIOSFODNN7EXAMPLE"}

{"level":"info-0","ts":"2024-05-01T10:00:00Z","logger":"trufflehog","msg":"finished scanning"}
{"DetectorName":"URI","Raw":"https://admin:uri-pw-1@admin.example.com","RawV2":"https://admin:uri-pw-1@admin.example.com/login"}
{"DetectorName":"Postgres","Raw":"postgres://app:pg-pw-2@db:5432","RawV2":null}
"#;
    let got = found(input, Source::Trufflehog);
    has(&got, "AKIAIOSFODNN7EXAMPLE", "trufflehog");
    has(&got, "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY", "trufflehog");
    has(&got, "https://admin:uri-pw-1@admin.example.com", "trufflehog");
    has(&got, "uri-pw-1", "url-userinfo");
    has(&got, "pg-pw-2", "url-userinfo");
    lacks(&got, "finished scanning");
    lacks(&got, "app.env");
}

#[test]
fn gitleaks_report() {
    let input = r#"[
 {
  "Description": "Generic API Key",
  "StartLine": 3,
  "Match": "api_key = \"gl-secret-1\"",
  "Secret": "gl-secret-1",
  "File": "config.py",
  "RuleID": "generic-api-key"
 },
 {
  "Match": "DATABASE_URL=postgres://app:gl-url-pw-2@db/x",
  "Secret": "postgres://app:gl-url-pw-2@db/x",
  "File": ".env"
 },
 {"Match": "password: gl-match-only-3", "Secret": "REDACTED"}
]"#;
    let got = found(input, Source::Gitleaks);
    has(&got, "gl-secret-1", "gitleaks");
    has(&got, "postgres://app:gl-url-pw-2@db/x", "gitleaks");
    has(&got, "gl-url-pw-2", "url-userinfo");
    has(&got, "gl-match-only-3", "yaml");
    lacks(&got, "REDACTED");
    lacks(&got, "config.py");
    assert!(found("[]", Source::Gitleaks).is_empty());
}

#[test]
fn scanner_errors_name_the_line_never_the_content() {
    let err = extract(
        "{\"Raw\":\"ok-value-1\"}\n\n{\"Raw\": \"leak-in-bad-line\" oops}\n",
        Source::Trufflehog,
    )
    .unwrap_err();
    assert_eq!(
        err,
        ExtractError::Scanner {
            scanner: Source::Trufflehog,
            line: 3,
            reason: "invalid JSON"
        }
    );
    let shown = err.to_string();
    assert_eq!(shown, "trufflehog output does not parse at line 3: invalid JSON");
    assert!(!shown.contains("leak"));
    let err = extract("Found unverified result 🐷🔑 raw-secret-1", Source::Trufflehog).unwrap_err();
    assert!(err.to_string().contains("line 1"), "{err}");
    assert!(!err.to_string().contains("raw-secret"));

    let err = extract(
        "[\n {\"Secret\": \"gl-leak-9\"},\n {\"Secret\": 42}\n]",
        Source::Gitleaks,
    )
    .unwrap_err();
    assert!(
        matches!(
            err,
            ExtractError::Scanner {
                scanner: Source::Gitleaks,
                line: 3,
                ..
            }
        ),
        "{err:?}"
    );
    assert!(!err.to_string().contains("gl-leak"));
    let err = extract("\n\n{\"Secret\": \"not-an-array\"}", Source::Gitleaks).unwrap_err();
    assert!(matches!(err, ExtractError::Scanner { line: 3, .. }), "{err:?}");
    assert!(!err.to_string().contains("not-an-array"));
    assert!(!err.to_string().contains('\n'));
}

#[test]
fn empty_input_is_an_error() {
    for source in [Source::Text, Source::Trufflehog, Source::Gitleaks] {
        assert_eq!(extract("", source).unwrap_err(), ExtractError::Empty);
        assert_eq!(extract(" \n\t\r\n", source).unwrap_err(), ExtractError::Empty);
    }
    // Structure without a value is not an error: nothing was found.
    assert!(extract("{}", Source::Trufflehog).unwrap().is_empty());
}

#[test]
fn noise_is_dropped_recall_is_kept() {
    let got = text("ENABLED=true\nDEBUG=false\nRETRIES=3\nTIMEOUT_MS=30000\nOPT=null\nPW=${DB_PASSWORD}\nMASK=********\nPIN=12345678\nA=abc\nWORD=changeme");
    for v in [
        "true",
        "false",
        "3",
        "30000",
        "null",
        "${DB_PASSWORD}",
        "********",
        "abc",
    ] {
        lacks(&got, v);
    }
    has(&got, "12345678", "env");
    has(&got, "changeme", "env");
    // A value that is also a user name is kept when it is also found as a password.
    let got = text("DB_USER=same-as-user\nDB_PASSWORD=same-as-user");
    has(&got, "same-as-user", "env");
}

#[test]
fn dedup_keeps_the_first_origin_in_stable_order() {
    let input = "PASSWORD=dup-value-123\nsomething \"dup-value-123\"\npassword: dup-value-123\n";
    let got = text(input);
    assert_eq!(got.iter().filter(|(v, _)| v == "dup-value-123").count(), 1);
    assert_eq!(got[0], ("dup-value-123".to_owned(), "env"));
    assert_eq!(got, text(input), "same input, same order");
}

#[test]
fn a_file_mixing_every_form() {
    let input = r#"# incident 4711: found in a public gist
DATABASE_URL=postgresql://app:mix-url-pw-1@db.internal:5432/orders
export REDIS_PASSWORD="mix-export-2"
API_TOKEN='mix-single-3'
DB_HOST=db.internal
legacy:
  mysql:
    password: mix-yaml-4
2024-05-01 12:00:01 WARN retry with password "mix-log-5" after timeout
config dump: {"stripe": {"secret_key": "mix-json-6"}, "hosts": ["a", "b"]}
aws_access_key_id = AKIAIOSFODNN7EXAMPLE
conn = "host=pg user=app password=mix-kv-7 dbname=orders"
Server=sql;Database=orders;User Id=app;Password=mix ado 8;
https://hooks.example.com/services/x?token=mix-query-9
mix-bare-token-10
"#;
    let got = text(input);
    for (value, origin) in [
        ("mix-url-pw-1", "url-userinfo"),
        ("mix-export-2", "env"),
        ("mix-single-3", "env"),
        ("mix-yaml-4", "yaml"),
        ("mix-log-5", "key-value"),
        ("mix-json-6", "json"),
        ("AKIAIOSFODNN7EXAMPLE", "env"),
        ("mix-kv-7", "key-value"),
        ("mix ado 8", "key-value"),
        ("mix-query-9", "url-query"),
        ("mix-bare-token-10", "bare"),
    ] {
        has(&got, value, origin);
    }
    lacks(&got, "db.internal");
    lacks(&got, "orders");
    // In the order of the file.
    let pos = |v: &str| got.iter().position(|(x, _)| x == v).unwrap();
    let order = [
        "mix-url-pw-1",
        "mix-export-2",
        "mix-single-3",
        "mix-yaml-4",
        "mix-log-5",
        "mix-json-6",
        "AKIAIOSFODNN7EXAMPLE",
        "mix-kv-7",
        "mix ado 8",
        "mix-query-9",
        "mix-bare-token-10",
    ];
    assert!(order.windows(2).all(|w| pos(w[0]) < pos(w[1])), "{got:?}");
    // The whole input is the last candidate.
    assert_eq!(got.last().unwrap(), &(input.trim().to_owned(), "bare"));
}

#[test]
fn fingerprint_is_short_stable_and_safe() {
    // SHA-256("hunter2") = f52fbd32b2b3b86ff88ef6c490628285f482af15ddcb29541f94bcf526a3f6c7
    assert_eq!(fingerprint("hunter2"), "sha256:f52fbd32b2b3");
    assert_eq!(fingerprint(""), "sha256:e3b0c44298fc");
    let c = &extract("hunter2-long", Source::Text).unwrap()[0];
    assert_eq!(c.fingerprint(), fingerprint("hunter2-long"));
    assert_eq!(c.fingerprint().len(), "sha256:".len() + 12);
}

#[test]
fn matches_is_exact_equality() {
    let s = Secret::from("s3cret-value");
    assert!(matches(&s, "s3cret-value"));
    assert!(!matches(&s, "s3cret-valuE"));
    assert!(!matches(&s, "s3cret-valu"));
    assert!(!matches(&s, "s3cret-value "));
    assert!(!matches(&s, ""));
    assert!(matches(&Secret::from(""), ""));
    let c = &extract("s3cret-value", Source::Text).unwrap()[0];
    assert!(c.matches("s3cret-value"));
}

#[test]
fn debug_and_errors_never_show_values() {
    let input = "DB_PASSWORD=debug-secret-1\npostgres://a:debug-secret-2@h/x";
    let all = extract(input, Source::Text).unwrap();
    let shown = format!("{all:?}");
    assert!(!shown.contains("debug-secret"), "{shown}");
    assert!(shown.contains("Secret(***)"));
    assert!(shown.contains("Env"));
    assert_eq!(Origin::AwsAccessKeyId.to_string(), "aws-access-key-id");
    assert_eq!(serde_json::to_string(&Origin::UrlUserinfo).unwrap(), "\"url-userinfo\"");
    assert_eq!("gitleaks".parse::<Source>(), Ok(Source::Gitleaks));
    assert!("nope".parse::<Source>().is_err());
    assert!(!ExtractError::Empty.to_string().contains('\n'));
}

/// xorshift64*: a fixed-seed generator, so a failure reproduces.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
}

/// Inputs the forms above use, for truncation.
const SAMPLES: &[&str] = &[
    "DATABASE_URL=postgresql://app:p%40ss@db:5432/x?password=q%2B&sslmode=require",
    "export DB_PASS=\"a\\\"b\\nc\" # c",
    "Server=tcp:db,1433;Password='it''s';PWD={a;b}}};",
    "x:\n  - a: \"b\"\n    c: 'd''e'\n  f: |\n    g\n",
    "log {\"a\": [1, {\"b\": \"postgres://u:p@h\"}], \"c\": \"{\\\"d\\\": 1}\"} 'quoted one' `tick`",
    "Authorization: Basic YXBwOmJhc2ljLXB3LTE= AKIAIOSFODNN7EXAMPLE,wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY",
    "{\"Raw\":\"AKIAIOSFODNN7EXAMPLE\",\"RawV2\":\"AKIAIOSFODNN7EXAMPLE:sec:ret\"}\n{\"Raw\":\"https://a:b@c\"}",
    "[{\"Match\":\"password = \\\"x€y\\\"\",\"Secret\":\"x€y\"}]",
    "ü€😀=\"ü€😀\" 'é' \"\\u00e9\" %e2%82 %",
];

#[test]
fn extract_never_panics() {
    let sources = [Source::Text, Source::Trufflehog, Source::Gitleaks];
    // Every truncation of every sample, at every character boundary.
    for sample in SAMPLES {
        for (i, _) in sample.char_indices().chain([(sample.len(), ' ')]) {
            for source in sources {
                let _ = extract(&sample[..i], source);
                let _ = extract(&sample[i..], source);
            }
        }
    }
    // Pseudo-random strings: bytes (lossily decoded) and strings made of the characters
    // the forms react to.
    let alphabet: Vec<char> = "=:;&?#@/%+-_.,'\"`\\{}[]() \t\n\raAkKIS0129$!|>*€ü😀".chars().collect();
    let mut rng = Rng(0x9E37_79B9_7F4A_7C15);
    for round in 0..3000 {
        let len = rng.below(96);
        let input: String = if round % 2 == 0 {
            let bytes: Vec<u8> = (0..len).map(|_| rng.next() as u8).collect();
            String::from_utf8_lossy(&bytes).into_owned()
        } else {
            (0..len).map(|_| alphabet[rng.below(alphabet.len())]).collect()
        };
        for source in sources {
            if let Ok(all) = extract(&input, source) {
                for c in &all {
                    assert!(!c.value.is_empty());
                }
            }
        }
    }
    // Splices of samples and random characters.
    for _ in 0..1000 {
        let a = SAMPLES[rng.below(SAMPLES.len())];
        let b = SAMPLES[rng.below(SAMPLES.len())];
        let cut_a = a
            .char_indices()
            .map(|(i, _)| i)
            .nth(rng.below(a.chars().count()))
            .unwrap_or(0);
        let cut_b = b
            .char_indices()
            .map(|(i, _)| i)
            .nth(rng.below(b.chars().count()))
            .unwrap_or(0);
        let noise: String = (0..rng.below(8)).map(|_| alphabet[rng.below(alphabet.len())]).collect();
        let input = format!("{}{noise}{}", &a[..cut_a], &b[cut_b..]);
        for source in sources {
            let _ = extract(&input, source);
        }
    }
}

#[test]
fn large_pathological_inputs_stay_fast() {
    let start = std::time::Instant::now();
    for input in [
        "[".repeat(50_000),
        "{\"a\":".repeat(20_000),
        "\"\\".repeat(50_000),
        "'a".repeat(50_000),
        "password=".repeat(20_000),
        "a=".repeat(50_000),
        "://@".repeat(30_000),
        "AKIA".repeat(30_000),
    ] {
        let _ = extract(&input, Source::Text);
    }
    assert!(
        start.elapsed() < std::time::Duration::from_secs(60),
        "{:?}",
        start.elapsed()
    );
}
