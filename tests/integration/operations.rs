//! Operations around scheduled rotation: metrics for monitoring.

use crate::util::Workspace;

/// Parses the file with a Prometheus text-format parser (every line must be a HELP,
/// TYPE or sample line) and returns `name{labels}` -> value, labels in the file's order.
fn samples(text: &str) -> Vec<(String, f64)> {
    let scrape = prometheus_parse::Scrape::parse(text.lines().map(|l| Ok(l.to_owned()))).expect("Prometheus text");
    let declared = text.lines().filter(|l| !l.starts_with('#') && !l.is_empty()).count();
    assert_eq!(scrape.samples.len(), declared, "every sample line parses");
    text.lines()
        .filter(|l| !l.starts_with('#') && !l.is_empty())
        .zip(&scrape.samples)
        .map(|(line, sample)| {
            let value = match sample.value {
                prometheus_parse::Value::Gauge(v)
                | prometheus_parse::Value::Counter(v)
                | prometheus_parse::Value::Untyped(v) => v,
                _ => panic!("{line}: not a gauge"),
            };
            assert!(line.starts_with(&sample.metric), "{line}");
            (line.rsplit_once(' ').unwrap().0.to_owned(), value)
        })
        .collect()
}

#[test]
fn rotate_and_verify_write_prometheus_metrics() {
    let mut ws = Workspace::new();
    let (role, password) = ws.role("rk_metrics");
    ws.write_config(&[ws.credential("app-db", &role)]);
    ws.import("app-db", &password);
    let metrics = ws.path("rekey.prom");
    ws.rekey(&["rotate", "app-db", "--metrics-file", metrics.to_str().unwrap()])
        .assert_code(0);
    let text = std::fs::read_to_string(&metrics).unwrap();
    let s = samples(&text);
    let find = |name: &str| {
        s.iter()
            .find(|(series, _)| series.starts_with(name))
            .map(|(_, v)| *v)
            .unwrap_or_else(|| panic!("{name} missing:\n{text}"))
    };
    assert_eq!(
        find("rekey_credential_ok{credential=\"app-db\",command=\"rotate\"}"),
        1.0
    );
    assert_eq!(find("rekey_credential_current_age_seconds{credential=\"app-db\""), 0.0);
    assert_eq!(find("rekey_credential_pending{credential=\"app-db\""), 0.0);
    assert_eq!(find("rekey_run_exit_code{command=\"rotate\"}"), 0.0);
    assert!(!text.contains(&password));
    let mode = std::os::unix::fs::PermissionsExt::mode(&std::fs::metadata(&metrics).unwrap().permissions());
    assert_eq!(mode & 0o777, 0o600);

    ws.rekey(&["verify", "--metrics-file", metrics.to_str().unwrap()])
        .assert_code(0);
    let text = std::fs::read_to_string(&metrics).unwrap();
    assert!(
        text.contains("rekey_credential_next_due_timestamp_seconds{credential=\"app-db\",command=\"verify\"}"),
        "{text}"
    );
    assert!(samples(&text).len() >= 8);
}

/// Found trying it: a `--metrics-file` in a directory that does not exist failed only
/// after the rotation, and `-o json` then printed a second envelope with another exit
/// code. The path is checked first: exit 2, nothing changed, one envelope.
#[test]
fn an_unwritable_metrics_file_stops_the_run_before_anything_changes() {
    let mut ws = Workspace::new();
    let (role, password) = ws.role("rk_metrics_bad");
    ws.write_config(&[ws.credential("app-db", &role)]);
    ws.import("app-db", &password);
    let before = ws.store_bytes();
    let missing = ws.path("no-such-dir/rekey.prom");
    for command in ["rotate", "verify"] {
        let run = ws.rekey(&[
            "-o",
            "json",
            command,
            "app-db",
            "--metrics-file",
            missing.to_str().unwrap(),
        ]);
        run.assert_code(2);
        let envelopes: Vec<serde_json::Value> = serde_json::Deserializer::from_str(&run.stdout)
            .into_iter()
            .collect::<Result<_, _>>()
            .expect("JSON on stdout");
        assert_eq!(envelopes.len(), 1, "{}", run.stdout);
        assert_eq!(envelopes[0]["exit_code"], 2, "{}", run.stdout);
        assert!(run.stdout.contains("cannot write metrics file"), "{}", run.stdout);
    }
    assert_eq!(ws.store_bytes(), before, "nothing changed");
    assert!(ws.can_login(&role, &password), "the password was not rotated");
}

/// `--shard K/N`: three runners with their own lock directories share one store; every
/// credential is rotated exactly once and none is broken.
#[test]
fn three_shards_rotate_every_credential_exactly_once() {
    let mut ws = Workspace::new();
    let mut roles = Vec::new();
    let mut tables = Vec::new();
    for i in 0..6 {
        let (role, password) = ws.role(&format!("rk_shard{i}"));
        tables.push(ws.credential(&format!("svc-{i}"), &role));
        roles.push((format!("svc-{i}"), role, password));
    }
    ws.write_config(&tables);
    for (name, _, password) in &roles {
        ws.import(name, password);
    }
    let base = std::fs::read_to_string(ws.config_path()).unwrap();
    let mut children = Vec::new();
    for k in 1..=3 {
        let config = ws.path(&format!("shard{k}.toml"));
        std::fs::write(
            &config,
            base.replace("[defaults]\n", &format!("[defaults]\nlock_dir = \"locks-{k}\"\n")),
        )
        .unwrap();
        let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_rekey"));
        cmd.current_dir(ws.dir.path())
            .env_remove("REKEY_CONFIG")
            .env("NO_COLOR", "1")
            .env(crate::util::ADMIN_ENV, ws.pg.admin_url())
            .args([
                "-c",
                config.to_str().unwrap(),
                "-o",
                "json",
                "rotate",
                "--shard",
                &format!("{k}/3"),
            ]);
        cmd.stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped());
        children.push(cmd.spawn().unwrap());
    }
    let rotated = crate::util::rotated_by_shards(children);
    let mut all: Vec<String> = roles.iter().map(|(n, _, _)| n.clone()).collect();
    all.sort();
    assert_eq!(rotated, all, "every credential exactly once across the shards");
    for (name, role, old) in &roles {
        let current = ws.stored_password(name, "current");
        assert!(ws.can_login(role, &current), "{name} works");
        assert!(!ws.can_login(role, old), "{name}'s old password is dead");
    }
}

/// `import --batch`: JSON lines in one process; each checked, bad lines refused whole.
#[test]
fn import_batch_onboards_many_credentials_in_one_process() {
    let mut ws = Workspace::new();
    let mut lines = String::new();
    let mut tables = Vec::new();
    let mut roles = Vec::new();
    for i in 0..4 {
        let (role, password) = ws.role(&format!("rk_batch{i}"));
        tables.push(ws.credential(&format!("svc-{i}"), &role));
        let value = if i % 2 == 0 {
            serde_json::Value::String(password.clone())
        } else {
            serde_json::json!({"username": role, "password": password})
        };
        lines.push_str(&serde_json::json!({"name": format!("svc-{i}"), "value": value}).to_string());
        lines.push('\n');
        roles.push((format!("svc-{i}"), role, password));
    }
    ws.write_config(&tables);
    // A malformed line stops the batch before anything is stored.
    let r = ws.rekey_stdin(&["import", "--batch"], &format!("{lines}{{\"name\": 3}}\n"));
    r.assert_code(2);
    assert!(r.stderr.contains("line 5"), "{}", r.stderr);
    assert!(!ws.path("secrets.json").exists());
    let r = ws.rekey_stdin(&["-o", "json", "import", "--batch"], &lines);
    r.assert_code(0);
    let doc: serde_json::Value = serde_json::from_str(&r.stdout).unwrap();
    assert_eq!(doc["credentials"].as_array().unwrap().len(), 4);
    for (_, _, password) in &roles {
        assert!(!r.stdout.contains(password.as_str()) && !r.stderr.contains(password.as_str()));
    }
    for (name, role, password) in &roles {
        assert_eq!(&ws.stored_password(name, "current"), password);
        assert!(ws.can_login(role, password));
    }
    // A wrong password fails that credential only.
    let bad = serde_json::json!({"name": "svc-0", "value": "not-the-password-123"}).to_string();
    ws.rekey_stdin(&["import", "--batch"], &bad).assert_code(1);
}

/// `rotate --wait`: a held lock is waited for instead of exit 3; without it, exit 3.
#[test]
fn rotate_waits_for_a_held_lock_when_asked() {
    let mut ws = Workspace::new();
    let (role, password) = ws.role("rk_wait");
    ws.write_config(&[ws.credential("app-db", &role)]);
    ws.import("app-db", &password);
    let held = crate::util::Held::start(&ws, &["rotate", "app-db"], "after-apply");
    ws.rekey(&["rotate", "app-db"]).assert_code(3);
    // Release the lock (the holder dies) while the second run waits.
    let killer = std::thread::spawn(move || {
        std::thread::sleep(std::time::Duration::from_millis(500));
        held.kill();
    });
    let r = ws.rekey(&["rotate", "app-db", "--wait", "60s"]);
    killer.join().unwrap();
    r.assert_code(0);
    assert!(ws.can_login(&role, &ws.stored_password("app-db", "current")));
    assert!(!ws.can_login(&role, &password));
}

/// Once a host is unreachable for one credential, the run's others on it fail at once.
#[test]
fn a_dead_host_fails_its_other_credentials_at_once() {
    let ws = Workspace::new();
    // A port nothing listens on.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let mut text = String::from("[defaults]\nparallel = 1\n[stores.local]\ntype = \"file\"\npath = \"secrets.json\"\n");
    for i in 0..3 {
        text.push_str(&format!(
            "[[credentials]]\nname = \"dead-{i}\"\nstore = \"local\"\nkey = \"dead/{i}\"\nstrategy = \"single\"\n\
             target = {{ type = \"postgres\", host = \"127.0.0.1\", port = {port}, dbname = \"postgres\", \
             username = \"app{i}\", admin = \"postgres://admin:pw@127.0.0.1:{port}/postgres\", sslmode = \"disable\", \
             connect_timeout_secs = 2 }}\n"
        ));
    }
    ws.write_raw_config(&text);
    let r = ws.rekey(&["-o", "json", "rotate", "--create-store"]);
    r.assert_code(1);
    let doc: serde_json::Value = serde_json::from_str(&r.stdout).unwrap();
    let messages: Vec<String> = doc["credentials"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["error"]["message"].as_str().unwrap_or_default().to_owned())
        .collect();
    let skipped = messages.iter().filter(|m| m.contains("skipped: host")).count();
    assert_eq!(skipped, 2, "{messages:?}");
}

/// Runs `cmd` on a pseudo-terminal, typing `answer`; returns the exit code and the screen.
#[allow(unsafe_code)] // libc calls; SAFETY comments at each block
fn on_terminal_answering(mut cmd: std::process::Command, answer: &str) -> (i32, String) {
    use std::io::{Read, Write};
    use std::os::fd::FromRawFd;
    use std::process::Stdio;
    let (mut leader, mut follower) = (0, 0);
    // SAFETY: openpty fills two descriptors; the name, termios and winsize are optional.
    let rc = unsafe {
        libc::openpty(
            &mut leader,
            &mut follower,
            std::ptr::null_mut(),
            std::ptr::null(),
            std::ptr::null(),
        )
    };
    assert_eq!(rc, 0);
    // SAFETY: each descriptor was just opened and is owned once.
    let (mut leader, follower) = unsafe { (std::fs::File::from_raw_fd(leader), std::fs::File::from_raw_fd(follower)) };
    cmd.stdin(Stdio::from(follower.try_clone().unwrap()))
        .stdout(Stdio::from(follower.try_clone().unwrap()))
        .stderr(Stdio::from(follower));
    let mut child = cmd.spawn().unwrap();
    drop(cmd);
    leader.write_all(answer.as_bytes()).unwrap();
    let reader = std::thread::spawn(move || {
        let mut out = Vec::new();
        let mut buf = [0u8; 4096];
        while let Ok(n) = leader.read(&mut buf) {
            if n == 0 {
                break;
            }
            out.extend_from_slice(&buf[..n]);
        }
        String::from_utf8_lossy(&out).into_owned()
    });
    let status = child.wait().unwrap();
    (status.code().unwrap_or(-1), reader.join().unwrap())
}

/// On a terminal, rotating every credential asks first; no answer, no change.
#[test]
fn rotate_all_on_a_terminal_asks_first() {
    let mut ws = Workspace::new();
    let (a, a_pw) = ws.role("rk_ask_a");
    let (b, b_pw) = ws.role("rk_ask_b");
    ws.write_config(&[ws.credential("a-db", &a), ws.credential("b-db", &b)]);
    ws.import("a-db", &a_pw);
    ws.import("b-db", &b_pw);
    let mut cmd = ws.command();
    cmd.arg("rotate");
    let (code, screen) = on_terminal_answering(cmd, "n\n");
    assert_eq!(code, 2, "{screen}");
    assert!(
        screen.contains("rotate all of them now?") && screen.contains("a-db"),
        "{screen}"
    );
    assert!(ws.can_login(&a, &a_pw) && ws.can_login(&b, &b_pw), "nothing changed");
    let mut cmd = ws.command();
    cmd.args(["rotate", "--yes"]);
    let (code, screen) = on_terminal_answering(cmd, "");
    assert_eq!(code, 0, "{screen}");
    assert!(!ws.can_login(&a, &a_pw) && !ws.can_login(&b, &b_pw));
}
