//! The `exec` target through the CLI: the example plugin (examples/plugins/rabbitmq-user,
//! rabbitmqctl with the password on stdin) rotates a real RabbitMQ user; the old password
//! is refused by RabbitMQ; an incident rotation reports the sessions step.

use crate::util::{random_password, run, unique, Run};
use rekey_testbed::keyapi::RabbitMq;
use std::path::Path;
use std::process::Command;

fn rekey(dir: &Path, user: &str, args: &[&str], stdin: &str) -> Run {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_rekey"));
    cmd.current_dir(dir)
        .env_remove("REKEY_CONFIG")
        .env("RABBITMQ_USER", user)
        .arg("-c")
        .arg(dir.join("rekey.toml"))
        .args(args);
    run(cmd, stdin)
}

/// The example plugin's configuration, its `command` made absolute.
fn example_config() -> String {
    std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/examples/plugins/rabbitmq-user.toml"
    ))
    .unwrap()
    .replace(
        "examples/plugins/rabbitmq-user",
        concat!(env!("CARGO_MANIFEST_DIR"), "/examples/plugins/rabbitmq-user"),
    )
}

#[test]
fn example_plugin_rotates_a_rabbitmq_user() {
    let api = RabbitMq::management().expect("RabbitMQ management API");
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    std::fs::write(d.join("rekey.toml"), example_config()).unwrap();
    let initial = random_password();
    let user = api.create_user(&unique("rk_exec_cli"), &initial).unwrap();
    let name = user.name.as_str();

    rekey(d, name, &["import", "rabbitmq-app-exec"], &initial).assert_code(0);
    let plan = rekey(d, name, &["plan", "rabbitmq-app-exec"], "");
    plan.assert_code(0);
    assert!(
        plan.stdout.contains(&format!("RabbitMQ user {name} exists")),
        "{}",
        plan.stdout
    );
    let rotate = rekey(d, name, &["rotate", "rabbitmq-app-exec"], "");
    rotate.assert_code(0);
    let got = rekey(d, name, &["get", "rabbitmq-app-exec", "--field", "password"], "");
    got.assert_code(0);
    let current = got.stdout.trim().to_owned();
    assert_eq!(api.login_status(name, &current), Ok(200));
    assert_eq!(api.login_status(name, &initial), Ok(401));
    rekey(d, name, &["verify", "rabbitmq-app-exec"], "").assert_code(0);

    // Incident mode: the leaked current password is replaced, refused, and the user's
    // connections are ended by the plugin.
    let leaked = rekey(d, name, &["rotate", "--leaked", "rabbitmq-app-exec"], "");
    leaked.assert_code(0);
    assert_eq!(api.login_status(name, &current), Ok(401));
    for text in [
        &plan.stdout,
        &rotate.stdout,
        &rotate.stderr,
        &leaked.stdout,
        &leaked.stderr,
    ] {
        assert!(
            !text.contains(&initial) && !text.contains(&current),
            "a secret leaked:\n{text}"
        );
    }
}

/// Found trying it: one credential whose plugin cannot be run (a typo in `command`, a
/// plugin missing on this host, one that hangs in `describe`) made every command exit 2
/// for the whole fleet. `validate` still refuses it (exit 2); a run fails only that
/// credential (exit 1) and rotates the others.
#[test]
fn a_broken_plugin_fails_only_its_own_credentials() {
    let api = RabbitMq::management().expect("RabbitMQ management API");
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let mut config = example_config();
    config.push_str(
        "\n[[credentials]]\nname = \"plug-broken\"\nstore = \"local\"\nkey = \"plug/broken\"\n\
         target = { type = \"exec\", command = [\"/nonexistent/rekey-plugin\"] }\n",
    );
    std::fs::write(d.join("rekey.toml"), config).unwrap();
    let initial = random_password();
    let user = api.create_user(&unique("rk_exec_broken"), &initial).unwrap();
    let name = user.name.as_str();

    let validate = rekey(d, name, &["validate"], "");
    validate.assert_code(2);
    assert!(
        validate.stderr.contains("plug-broken") && validate.stderr.contains("/nonexistent/rekey-plugin"),
        "{}",
        validate.stderr
    );

    rekey(d, name, &["import", "rabbitmq-app-exec"], &initial).assert_code(0);
    let rotate = rekey(d, name, &["-o", "json", "rotate"], "");
    rotate.assert_code(1);
    let report: serde_json::Value = serde_json::from_str(&rotate.stdout).expect("one JSON envelope");
    let by_name = |n: &str| {
        report["credentials"]
            .as_array()
            .unwrap()
            .iter()
            .find(|c| c["name"] == n)
            .unwrap_or_else(|| panic!("{n} in {report}"))
            .clone()
    };
    assert_eq!(by_name("rabbitmq-app-exec")["status"], "rotated", "{report}");
    let broken = by_name("plug-broken");
    assert_eq!(broken["status"], "failed", "{report}");
    let message = broken["error"]["message"].as_str().unwrap();
    assert!(message.contains("/nonexistent/rekey-plugin"), "{message}");
    assert_eq!(
        api.login_status(name, &initial),
        Ok(401),
        "the other credential really rotated"
    );

    let verify = rekey(d, name, &["verify", "rabbitmq-app-exec"], "");
    verify.assert_code(0);
}

/// Found trying it: SIGINT while a plugin's operation ran made the process exit 130, but
/// the `-o json` document said `"exit_code": 1` (the step failed because the plugin was
/// stopped). Both say 130. (The plugin's step is let finish after the first signal:
/// here it answers nothing after 3 s.)
#[test]
fn an_interrupted_run_says_130_in_its_json_document_too() {
    use std::io::Read;
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let pidfile = d.join("plugin.pid");
    let plugin = concat!(env!("CARGO_MANIFEST_DIR"), "/providers/exec/tests/plugins/misbehave");
    std::fs::write(
        d.join("rekey.toml"),
        format!(
            "[stores.local]\ntype = \"file\"\npath = \"secrets.json\"\n\n[[credentials]]\nname = \"plug-hang\"\n\
             store = \"local\"\nkey = \"plug/hang\"\ntarget = {{ type = \"exec\", command = [\"{plugin}\", \"hang\", \"{}\", \"3\"], \
             timeout_secs = 60 }}\n",
            pidfile.display()
        ),
    )
    .unwrap();
    rekey(
        d,
        "unused",
        &["import", "plug-hang", "--no-verify"],
        "initial-password-1",
    )
    .assert_code(0);
    let mut child = Command::new(env!("CARGO_BIN_EXE_rekey"))
        .current_dir(d)
        .env_remove("REKEY_CONFIG")
        .args(["-c", "rekey.toml", "-o", "json", "rotate", "plug-hang"])
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    // Bounded wait until the plugin's operation is running.
    let started = std::time::Instant::now();
    while !pidfile.exists() {
        assert!(
            started.elapsed() < std::time::Duration::from_secs(30),
            "the plugin never started"
        );
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    let status = Command::new("kill")
        .args(["-INT", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    assert_eq!(child.wait().unwrap().code(), Some(130));
    let mut stdout = String::new();
    child.stdout.take().unwrap().read_to_string(&mut stdout).unwrap();
    let document: serde_json::Value = serde_json::from_str(&stdout).expect("one JSON document");
    assert_eq!(document["exit_code"], 130, "{stdout}");
}
