//! Redis ACL users through the CLI against the machine's server ([`redis()`]): dual
//! rotation (both passwords valid until revoke), a grace period finished by `--due`,
//! and the old password refused afterwards.

use crate::util::{run, unique, Run};
use rekey_testbed::RedisServer;
use std::process::Command;
use std::sync::{LazyLock, OnceLock};

/// The Redis server of these tests (and of zero_downtime.rs): the machine's
/// ([`RedisServer::machine`]: 127.0.0.1:6379 or `REKEY_REDIS_PORT`), or a throwaway one
/// when nothing answers there, started once per test process.
pub(crate) fn redis() -> &'static RedisServer {
    static SERVER: OnceLock<RedisServer> = OnceLock::new();
    SERVER.get_or_init(RedisServer::machine)
}

/// Host and port of [`redis()`], for configurations.
pub(crate) static REDIS: LazyLock<(&str, u16)> = LazyLock::new(|| ("127.0.0.1", redis().port()));

/// Runs a Redis command as the `default` user; the reply as text (the name is from when
/// this ran `redis-cli`).
///
/// # Panics
/// When the command fails.
pub(crate) fn redis_cli(args: &[&str]) -> String {
    redis().cmd(args).text()
}

/// Whether `user` authenticates with `password` (`false` only when Redis refuses it with
/// `WRONGPASS`; the password goes over the connection, never argv).
pub(crate) fn redis_login(user: &str, password: &str) -> bool {
    redis().can_login(user, password)
}

/// An ACL user created for a test, deleted at the end.
pub(crate) struct RedisUser(pub(crate) String);

impl Drop for RedisUser {
    fn drop(&mut self) {
        let _ = redis().try_cmd(&["ACL", "DELUSER", &self.0]);
    }
}

fn rekey(dir: &std::path::Path, args: &[&str], stdin: &str) -> Run {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_rekey"));
    cmd.current_dir(dir)
        .env_remove("REKEY_CONFIG")
        .arg("-c")
        .arg(dir.join("rekey.toml"))
        .args(args);
    run(cmd, stdin)
}

#[test]
fn dual_rotation_with_grace_then_due() {
    let dir = tempfile::tempdir().unwrap();
    let user = RedisUser(unique("rk_cache"));
    let initial = crate::util::random_password();
    let hash = {
        use std::io::Write;
        let mut child = Command::new("sha256sum")
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        child.stdin.take().unwrap().write_all(initial.as_bytes()).unwrap();
        String::from_utf8(child.wait_with_output().unwrap().stdout)
            .unwrap()
            .split_whitespace()
            .next()
            .unwrap()
            .to_owned()
    };
    redis_cli(&["ACL", "SETUSER", &user.0, "on", &format!("#{hash}"), "~*", "+@all"]);
    assert!(redis_login(&user.0, &initial));
    assert!(
        !redis_login(&user.0, "wrong-password"),
        "the server really checks passwords"
    );
    std::fs::write(
        dir.path().join("rekey.toml"),
        format!(
            "[defaults]\naudit_log = \"audit.jsonl\"\n[stores.local]\ntype = \"file\"\npath = \"secrets.json\"\n\
             [[credentials]]\nname = \"cache\"\nstore = \"local\"\nkey = \"cache\"\nstrategy = \"dual\"\ngrace = \"1s\"\n\
             target = {{ type = \"redis\", host = \"{}\", port = {}, username = \"{}\", admin = \"redis://{}:{}\" }}\n",
            REDIS.0, REDIS.1, user.0, REDIS.0, REDIS.1
        ),
    )
    .unwrap();
    rekey(dir.path(), &["import", "cache"], &initial).assert_code(0);
    rekey(dir.path(), &["plan"], "").assert_code(0);
    let r = rekey(dir.path(), &["rotate"], "");
    r.assert_code(0);
    assert!(r.stdout.contains("revocation deferred"), "{}", r.stdout);
    let new = rekey(dir.path(), &["get", "cache", "--field", "password"], "")
        .stdout
        .trim()
        .to_owned();
    assert!(redis_login(&user.0, &new));
    assert!(
        redis_login(&user.0, &initial),
        "dual: the old password works during the grace period"
    );
    rekey(dir.path(), &["verify"], "").assert_code(0);

    std::thread::sleep(std::time::Duration::from_millis(1100));
    let r = rekey(dir.path(), &["-o", "json", "rotate", "--due"], "");
    r.assert_code(0);
    let doc: serde_json::Value = serde_json::from_str(&r.stdout).unwrap();
    assert_eq!(doc["credentials"][0]["status"], "revoked", "{doc}");
    assert!(
        !redis_login(&user.0, &initial),
        "the old password is refused after --due"
    );
    assert!(redis_login(&user.0, &new));
    rekey(dir.path(), &["verify"], "").assert_code(0);

    let acl = redis_cli(&["ACL", "GETUSER", &user.0]);
    assert!(
        !acl.contains(&new) && !acl.contains(&initial),
        "only hashes on the server"
    );
}

/// Issue 8: a consumer that reloads through an `on_rotate` hook (it reads the store with
/// `rekey get` and logs in) never sees a dead secret across 20 back-to-back `dual`
/// rotations with a grace period: the hook runs after promotion, while both work.
#[test]
fn a_consumer_reloading_through_a_hook_never_sees_a_dead_secret() {
    let dir = tempfile::tempdir().unwrap();
    let user = RedisUser(unique("rk_hook"));
    let initial = crate::util::random_password();
    redis_cli(&["ACL", "SETUSER", &user.0, "on", &format!(">{initial}"), "~*", "+@all"]);
    let config = dir.path().join("rekey.toml");
    let log = dir.path().join("consumer.log");
    // The consumer: reads the current secret from the store and logs in with it; any
    // failure fails the hook, which fails the rotation (exit 1).
    let consumer = format!(
        "pw=$({rekey} -c {config} get cache --field password) && \
         who=$(REDISCLI_AUTH=\"$pw\" redis-cli -h {host} -p {port} --user {user} --no-auth-warning ACL WHOAMI) && \
         [ \"$who\" = {user} ] && echo \"ok $REKEY_VERSION\" >> {log}",
        rekey = env!("CARGO_BIN_EXE_rekey"),
        config = config.display(),
        host = REDIS.0,
        port = REDIS.1,
        user = user.0,
        log = log.display(),
    );
    // In the config a literal `$` is written `$$`.
    let escaped = consumer.replace('$', "$$");
    std::fs::write(
        &config,
        format!(
            "[defaults]\naudit_log = \"audit.jsonl\"\n[stores.local]\ntype = \"file\"\npath = \"secrets.json\"\n\
             [[credentials]]\nname = \"cache\"\nstore = \"local\"\nkey = \"cache\"\nstrategy = \"dual\"\ngrace = \"1s\"\n\
             on_rotate = [[\"sh\", \"-c\", {escaped:?}]]\n\
             target = {{ type = \"redis\", host = \"{}\", port = {}, username = \"{}\", admin = \"redis://{}:{}\" }}\n",
            REDIS.0, REDIS.1, user.0, REDIS.0, REDIS.1
        ),
    )
    .unwrap();
    rekey(dir.path(), &["import", "cache"], &initial).assert_code(0);
    for round in 1..=20 {
        let r = rekey(dir.path(), &["rotate", "cache"], "");
        assert_eq!(r.code, 0, "round {round}: {}", r.stderr);
        // The next rotation revokes this one's previous secret: let its 1 s grace pass
        // (a lower bound only: a slow machine just waits longer).
        std::thread::sleep(std::time::Duration::from_millis(1100));
    }
    let lines = std::fs::read_to_string(&log).unwrap();
    assert_eq!(lines.lines().filter(|l| l.starts_with("ok ")).count(), 20, "{lines}");
    assert!(!redis_login(&user.0, &initial));
}

/// Issue 12: a `nopass` user logs in with any password; a rotation would give it one.
/// `plan` and `rotate` refuse it (exit 1, the reason and the option), nothing is staged
/// and the user is still `nopass`; with `clear_nopass = true` the rotation ends it.
#[test]
fn a_nopass_user_is_refused_unless_clear_nopass() {
    let dir = tempfile::tempdir().unwrap();
    let user = RedisUser(unique("rk_nopass"));
    redis_cli(&["ACL", "SETUSER", &user.0, "on", "nopass", "~app:*", "+@read"]);
    assert!(redis_login(&user.0, "anything-at-all"), "precondition: nopass");
    let config = |extra: &str| {
        format!(
            "[defaults]\naudit_log = \"audit.jsonl\"\n[stores.local]\ntype = \"file\"\npath = \"secrets.json\"\n\
             [[credentials]]\nname = \"cache\"\nstore = \"local\"\nkey = \"cache\"\nstrategy = \"single\"\n\
             target = {{ type = \"redis\", host = \"{}\", port = {}, username = \"{}\", admin = \"redis://{}:{}\"{extra} }}\n",
            REDIS.0, REDIS.1, user.0, REDIS.0, REDIS.1
        )
    };
    std::fs::write(dir.path().join("rekey.toml"), config("")).unwrap();
    rekey(dir.path(), &["import", "cache"], "some-password-of-the-app").assert_code(0);
    for command in ["plan", "rotate"] {
        let r = rekey(dir.path(), &[command, "cache"], "");
        r.assert_code(1);
        let all = format!("{}{}", r.stdout, r.stderr);
        assert!(
            all.contains("nopass") && all.contains("clear_nopass = true"),
            "{command}: {all}"
        );
    }
    let status = rekey(dir.path(), &["-o", "json", "status", "cache"], "");
    let doc: serde_json::Value = serde_json::from_str(&status.stdout).unwrap();
    let versions = doc["credentials"][0]["versions"].as_array().unwrap();
    assert_eq!(versions.len(), 1, "nothing staged: {doc}");
    assert!(redis_login(&user.0, "still-anything"), "still nopass");

    std::fs::write(dir.path().join("rekey.toml"), config(", clear_nopass = true")).unwrap();
    rekey(dir.path(), &["rotate", "cache"], "").assert_code(0);
    let new = rekey(dir.path(), &["get", "cache", "--field", "password"], "")
        .stdout
        .trim()
        .to_owned();
    assert!(redis_login(&user.0, &new));
    assert!(!redis_login(&user.0, "still-anything"), "nopass ended");
    let acl = redis_cli(&["ACL", "GETUSER", &user.0]);
    assert!(acl.contains("~app:*"), "the other rules are kept: {acl}");

    // `dual` keeps its promise on a nopass user too: the password applications use now
    // (which worked only by nopass) keeps working beside the new one until revoke.
    let dual = RedisUser(unique("rk_nopass_dual"));
    redis_cli(&["ACL", "SETUSER", &dual.0, "on", "nopass", "~app:*", "+@read"]);
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("rekey.toml"),
        config(", clear_nopass = true")
            .replace("strategy = \"single\"", "strategy = \"dual\"")
            .replace(
                &format!("username = \"{}\"", user.0),
                &format!("username = \"{}\"", dual.0),
            ),
    )
    .unwrap();
    let used = "the-password-the-app-uses";
    rekey(dir.path(), &["import", "cache"], used).assert_code(0);
    rekey(dir.path(), &["rotate", "cache"], "").assert_code(0);
    let new = rekey(dir.path(), &["get", "cache", "--field", "password"], "")
        .stdout
        .trim()
        .to_owned();
    assert!(redis_login(&dual.0, &new), "the new password works");
    assert!(
        redis_login(&dual.0, used),
        "dual: the old one still works in its grace period"
    );
    assert!(!redis_login(&dual.0, "still-anything"), "nopass ended");
}
