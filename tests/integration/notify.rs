//! `[[notify]]` webhooks, received by a minimal HTTP/1.1 server on 127.0.0.1: the event
//! of a failing rotation and of a successful one, retries against a server that always
//! answers 500, an unreachable or silent webhook, and never a secret in what is sent.

use crate::util::{run, Run, Workspace};
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// One request as received.
#[derive(Debug, Clone)]
struct Received {
    method: String,
    path: String,
    content_type: String,
    body: String,
}

impl Received {
    fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.body).unwrap_or_else(|e| panic!("not JSON ({e}): {}", self.body))
    }
}

/// How the server answers.
#[derive(Clone, Copy)]
enum Answer {
    Status(u16),
    /// Reads the request and never answers (until the client gives up).
    Silent,
}

/// A webhook receiver: every request is recorded and answered per `answer`.
struct Hook {
    port: u16,
    received: Arc<Mutex<Vec<Received>>>,
    stop: Arc<AtomicBool>,
}

impl Hook {
    fn start(answer: Answer) -> Hook {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
        let port = listener.local_addr().unwrap().port();
        let received = Arc::new(Mutex::new(Vec::new()));
        let stop = Arc::new(AtomicBool::new(false));
        let (log, stopped) = (received.clone(), stop.clone());
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                if stopped.load(Ordering::SeqCst) {
                    break;
                }
                let Ok(stream) = stream else { continue };
                let log = log.clone();
                std::thread::spawn(move || serve(stream, answer, &log));
            }
        });
        Hook { port, received, stop }
    }

    fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.port)
    }

    fn received(&self) -> Vec<Received> {
        self.received.lock().unwrap().clone()
    }
}

impl Drop for Hook {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        let _ = TcpStream::connect(("127.0.0.1", self.port));
    }
}

/// Reads one HTTP/1.1 request (headers, then `Content-Length` bytes of body) and answers.
fn serve(stream: TcpStream, answer: Answer, log: &Mutex<Vec<Received>>) {
    let _ = stream.set_read_timeout(Some(Duration::from_secs(30)));
    let mut reader = BufReader::new(stream);
    let mut request_line = String::new();
    if reader.read_line(&mut request_line).unwrap_or(0) == 0 {
        return;
    }
    let mut parts = request_line.split_whitespace();
    let method = parts.next().unwrap_or_default().to_owned();
    let path = parts.next().unwrap_or_default().to_owned();
    let (mut length, mut content_type) = (0usize, String::new());
    loop {
        let mut line = String::new();
        if reader.read_line(&mut line).unwrap_or(0) == 0 {
            return;
        }
        let line = line.trim_end();
        if line.is_empty() {
            break;
        }
        if let Some((name, value)) = line.split_once(':') {
            match name.trim().to_ascii_lowercase().as_str() {
                "content-length" => length = value.trim().parse().unwrap_or(0),
                "content-type" => content_type = value.trim().to_owned(),
                _ => {}
            }
        }
    }
    let mut body = vec![0; length];
    if reader.read_exact(&mut body).is_err() {
        return;
    }
    log.lock().unwrap().push(Received {
        method,
        path,
        content_type,
        body: String::from_utf8_lossy(&body).into_owned(),
    });
    let mut stream = reader.into_inner();
    match answer {
        Answer::Status(code) => {
            let _ = write!(
                stream,
                "HTTP/1.1 {code} X\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok"
            );
        }
        Answer::Silent => std::thread::sleep(Duration::from_secs(20)),
    }
}

/// A port on 127.0.0.1 where nothing listens.
fn closed_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

const KNOWN_PASSWORD: &str = "Kn0wn-Passw0rd-4f9c2e7a1b";
const ADMIN_PASSWORD: &str = "Adm1n-Passw0rd-77d1e0";

/// A credential whose store is fine but whose target (PostgreSQL on a closed port)
/// cannot be reached, with `notify` appended to the config.
struct Broken {
    dir: tempfile::TempDir,
    port: u16,
}

impl Broken {
    fn new() -> Broken {
        let b = Broken {
            dir: tempfile::tempdir().unwrap(),
            port: closed_port(),
        };
        b.write("");
        b.rekey_stdin(&["import", "orders-db", "--no-verify"], KNOWN_PASSWORD)
            .assert_code(0);
        b
    }

    fn write(&self, notify: &str) {
        let text = format!(
            "[defaults]\naudit_log = \"audit.jsonl\"\n\n[stores.local]\ntype = \"file\"\npath = \"secrets.json\"\n\n\
             [[credentials]]\nname = \"orders-db\"\nstore = \"local\"\nkey = \"orders/db\"\n\
             target = {{ type = \"postgres\", host = \"127.0.0.1\", port = {port}, dbname = \"postgres\", \
             username = \"orders_app\", admin = \"${{NOTIFY_TEST_ADMIN_URL}}\", sslmode = \"disable\", \
             connect_timeout_secs = 3 }}\n\n{notify}",
            port = self.port
        );
        std::fs::write(self.dir.path().join("rekey.toml"), text).unwrap();
    }

    fn rekey_stdin(&self, args: &[&str], stdin: &str) -> Run {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_rekey"));
        cmd.current_dir(self.dir.path())
            .env_remove("REKEY_CONFIG")
            .env_remove("RUST_LOG")
            .env("NO_COLOR", "1")
            .env("NO_PROXY", "127.0.0.1,localhost")
            .env("no_proxy", "127.0.0.1,localhost")
            .env(
                "NOTIFY_TEST_ADMIN_URL",
                format!("postgres://rotator:{ADMIN_PASSWORD}@127.0.0.1:{}/postgres", self.port),
            )
            .arg("-c")
            .arg(self.dir.path().join("rekey.toml"))
            .args(args);
        run(cmd, stdin)
    }

    fn rekey(&self, args: &[&str]) -> Run {
        self.rekey_stdin(args, "")
    }
}

fn notify_table(url: &str, on: &str, extra: &str) -> String {
    format!("[[notify]]\nurl = \"{url}\"\non = {on}\n{extra}\n")
}

#[track_caller]
fn assert_no_secret(what: &str, text: &str) {
    for secret in [KNOWN_PASSWORD, ADMIN_PASSWORD] {
        assert!(!text.contains(secret), "{what} holds a secret: {text}");
    }
}

#[test]
fn notify_failing_rotation_posts_the_failure_event_and_no_secret() {
    let b = Broken::new();
    b.write("");
    let without = b.rekey(&["rotate", "orders-db"]);
    assert_eq!(without.code, 1, "{}", without.stderr);

    let failure = Hook::start(Answer::Status(200));
    let rotation_only = Hook::start(Answer::Status(200));
    b.write(&format!(
        "{}{}",
        notify_table(
            &failure.url("/hooks/failure"),
            "[\"failure\"]",
            "timeout = \"5s\"\nretries = 0"
        ),
        notify_table(&rotation_only.url("/hooks/rotation"), "[\"rotation\"]", "")
    ));
    let with = b.rekey(&["rotate", "orders-db"]);
    assert_eq!(with.code, without.code, "{}", with.stderr);
    assert!(!with.stderr.contains("warning: notification"), "{}", with.stderr);

    let got = failure.received();
    assert_eq!(got.len(), 1, "{got:?}");
    assert_eq!(got[0].method, "POST");
    assert_eq!(got[0].path, "/hooks/failure");
    assert_eq!(got[0].content_type, "application/json");
    let event = got[0].json();
    assert_eq!(event["schema_version"], 1);
    assert_eq!(event["event"], "failure");
    assert_eq!(event["command"], "rotate");
    assert_eq!(event["exit_code"], 1);
    assert_eq!(event["summary"]["failed"], 1);
    let c = &event["credentials"][0];
    assert_eq!(c["name"], "orders-db");
    assert_eq!(c["status"], "failed");
    assert_eq!(c["error"]["kind"], "unreachable", "{event}");
    assert!(c["steps"].as_array().is_some_and(|s| !s.is_empty()), "{event}");
    let text = event["text"].as_str().unwrap();
    assert!(
        text.contains("orders-db failed at") && text.contains("unreachable") && !text.contains('\n'),
        "{text}"
    );
    assert_no_secret("the event", &got[0].body);
    assert!(rotation_only.received().is_empty(), "on = [\"rotation\"] got a failure");

    // verify reports the same failure; an incident rotation is an `incident` event.
    let incident = Hook::start(Answer::Status(204));
    b.write(&format!(
        "{}{}",
        notify_table(&failure.url("/hooks/failure"), "[\"failure\"]", ""),
        notify_table(&incident.url("/hooks/incident"), "[\"incident\"]", "")
    ));
    b.rekey(&["verify"]).assert_code(1);
    let got = failure.received();
    assert_eq!(got.len(), 2, "{got:?}");
    assert_eq!(got[1].json()["command"], "verify");
    assert!(incident.received().is_empty(), "verify is no incident");
    b.rekey(&["rotate", "--leaked", "orders-db"]).assert_code(1);
    let got = incident.received();
    assert_eq!(got.len(), 1, "{got:?}");
    let event = got[0].json();
    assert_eq!(event["event"], "incident");
    assert_eq!(event["incident"], true);
    assert_eq!(event["events"], serde_json::json!(["failure", "incident"]));
    assert!(
        event["text"].as_str().unwrap().starts_with("Incident rotation: "),
        "{event}"
    );
    assert_no_secret("the incident event", &got[0].body);
    assert_eq!(failure.received().len(), 3);
}

#[test]
fn notify_rotation_event_after_a_real_rotation() {
    let mut ws = Workspace::new();
    let (role, password) = ws.role("rk_notify");
    let rotation = Hook::start(Answer::Status(200));
    let failure_only = Hook::start(Answer::Status(200));
    let broken = Hook::start(Answer::Status(500));
    let mut config = ws.credential("app-db", &role);
    config.push('\n');
    config.push_str(&notify_table(&rotation.url("/r"), "[\"rotation\"]", ""));
    config.push_str(&notify_table(&failure_only.url("/f"), "[\"failure\"]", ""));
    config.push_str(&notify_table(
        &broken.url("/b/T0KEN-9x"),
        "[\"rotation\"]",
        "retries = 1",
    ));
    ws.write_config(&[config]);
    ws.import("app-db", &password);
    let r = ws.rekey(&["rotate", "app-db"]);
    r.assert_code(0);
    let new_password = ws.stored_password("app-db", "current");
    assert_ne!(new_password, password);

    let got = rotation.received();
    assert_eq!(got.len(), 1, "{got:?}");
    let event = got[0].json();
    assert_eq!(event["event"], "rotation");
    assert_eq!(event["exit_code"], 0);
    let c = &event["credentials"][0];
    assert_eq!(c["name"], "app-db");
    assert_eq!(c["status"], "rotated");
    let version = c["version"].as_str().expect("version id");
    assert!(
        c["fingerprint"].as_str().is_some_and(|f| f.starts_with("sha256:")),
        "{event}"
    );
    assert!(
        event["text"]
            .as_str()
            .unwrap()
            .contains(&format!("app-db rotated to version {version}")),
        "{event}"
    );
    for secret in [&password, &new_password] {
        assert!(!got[0].body.contains(secret.as_str()), "the event holds a password");
    }
    assert!(failure_only.received().is_empty());

    // A webhook that always answers 500 gets retries + 1 attempts; the run still exits 0
    // and the warning names the webhook without its path (which may hold a token).
    assert_eq!(broken.received().len(), 2);
    let warning: Vec<&str> = r
        .stderr
        .lines()
        .filter(|l| l.starts_with("warning: notification"))
        .collect();
    assert_eq!(warning.len(), 1, "{}", r.stderr);
    assert!(
        warning[0].contains(&format!("http://127.0.0.1:{}/…", broken.port))
            && warning[0].contains("after 2 attempt(s)")
            && warning[0].contains("500"),
        "{}",
        warning[0]
    );
    assert!(!r.stderr.contains("T0KEN"), "{}", r.stderr);
}

#[test]
fn notify_server_error_is_retried_and_never_changes_the_exit_code() {
    let b = Broken::new();
    let hook = Hook::start(Answer::Status(500));
    b.write(&notify_table(&hook.url("/hook"), "[\"failure\"]", "retries = 2"));
    let r = b.rekey(&["rotate", "orders-db"]);
    assert_eq!(r.code, 1, "{}", r.stderr);
    let got = hook.received();
    assert_eq!(got.len(), 3, "retries = 2 is three attempts: {got:?}");
    assert!(
        got.iter().all(|g| g.body == got[0].body),
        "every attempt sends the same event"
    );
    assert!(
        r.stderr
            .contains("not delivered after 3 attempt(s): the webhook answered 500"),
        "{}",
        r.stderr
    );
    // The failure itself is still reported as before.
    assert!(
        r.stderr.lines().any(|l| l.starts_with("error: orders-db:")),
        "{}",
        r.stderr
    );
}

#[test]
fn notify_unreachable_or_silent_webhook_never_changes_the_exit_code() {
    let b = Broken::new();
    let dead = format!("http://127.0.0.1:{}/hook", closed_port());
    b.write(&notify_table(&dead, "[\"failure\"]", "retries = 1"));
    let r = b.rekey(&["rotate", "orders-db"]);
    assert_eq!(r.code, 1, "{}", r.stderr);
    assert!(r.stderr.contains("not delivered after 2 attempt(s)"), "{}", r.stderr);
    assert_no_secret("stderr", &r.stderr);

    // A webhook that never answers costs `timeout` per attempt, not the run.
    let silent = Hook::start(Answer::Silent);
    b.write(&notify_table(
        &silent.url("/hook"),
        "[\"failure\"]",
        "timeout = \"1s\"\nretries = 0",
    ));
    let started = Instant::now();
    let r = b.rekey(&["verify"]);
    assert_eq!(r.code, 1, "{}", r.stderr);
    assert!(started.elapsed() < Duration::from_secs(15), "{:?}", started.elapsed());
    assert!(r.stderr.contains("no answer within 1s"), "{}", r.stderr);
    assert_eq!(silent.received().len(), 1);

    // An unknown key in [[notify]] is a configuration error (exit 2).
    b.write("[[notify]]\nurl = \"http://127.0.0.1:9/x\"\nonn = [\"failure\"]\n");
    let r = b.rekey(&["validate"]);
    assert_eq!(r.code, 2, "{}", r.stderr);
    assert!(r.stderr.contains("onn"), "{}", r.stderr);
}
