//! A rotation changes the password and nothing else, against the machine's Redis with ACL
//! authentication enforced (Redis 7 syntax: `%R~` key permissions and selectors).
//!
//! - A user with a rich rule set (flags, key and channel patterns, read-only keys,
//!   command rules with a subcommand, two selectors) is rotated with `single` and `dual`,
//!   then again in incident mode (`rotate --leaked`: sessions ended, only the new password
//!   left). Before, the rules are shown to be there (`ACL GETUSER`, the `ACL LIST` line
//!   and what `ACL DRYRUN` allows); after apply and after revoke, `ACL GETUSER` without
//!   its passwords and the `ACL LIST` line without its `#<hash>` entries are exactly the
//!   same, and the user may run exactly the same commands.
//! - A `nopass` user (any password logs in) is refused by `preflight` and by `apply`
//!   with the reason and the option that allows it (`clear_nopass = true`); nothing
//!   changes (still nopass, any password still logs in). With the option, the rotation
//!   ends nopass and changes nothing else.

mod common;

use common::*;
use rekey_api::conformance::random_password;
use rekey_api::{ErrorKind, RevokeOptions, Secret, SecretDoc, Strategy, Target};
use rekey_redis::{acl_password_hash, RedisProvider, RedisTarget};
use rekey_testbed::{RedisServer, RespValue};

/// The rules beyond `on`: flags, keys (`~` read-write, `%R~` read-only), channels, command
/// rules with a subcommand, and two selectors (one with write-only keys and channels).
const RULES: &[&str] = &[
    "skip-sanitize-payload",
    "~app:*",
    "%R~ro:*",
    "&chan:*",
    "+@read",
    "-keys",
    "+set",
    "+client|id",
    "(~other:* +set)",
    "(%W~log:* &log:* +publish +xadd)",
];

/// Commands and whether the rules allow them (asked with `ACL DRYRUN`, which runs
/// nothing): every rule above decides at least one of them.
const PROBES: &[(&[&str], bool)] = &[
    (&["GET", "app:1"], true),
    (&["SET", "app:1", "v"], true),
    (&["GET", "ro:1"], true),
    (&["SET", "ro:1", "v"], false),
    (&["GET", "elsewhere:1"], false),
    (&["SET", "other:1", "v"], true),
    (&["GET", "other:1"], false),
    (&["KEYS", "app:*"], false),
    (&["CLIENT", "ID"], true),
    (&["CLIENT", "LIST"], false),
    (&["PUBLISH", "log:1", "m"], true),
    (&["PUBLISH", "chan:1", "m"], false),
    (&["XADD", "log:1", "*", "f", "v"], true),
    (&["XADD", "app:1", "*", "f", "v"], false),
    (&["DEL", "app:1"], false),
];

/// Everything Redis says about a user except its passwords.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Rules {
    /// `ACL GETUSER`'s `flags`.
    flags: Vec<String>,
    /// The other fields of `ACL GETUSER` (`commands`, `keys`, `channels`, `selectors`),
    /// `passwords` left out.
    fields: Vec<(String, String)>,
    /// The user's `ACL LIST` line, split at spaces, without its `#<hash>` entries.
    line: Vec<String>,
    /// For each of [`PROBES`], `ACL DRYRUN`'s answer.
    allowed: Vec<bool>,
}

impl Rules {
    fn read(server: &RedisServer, user: &str) -> Rules {
        let RespValue::Array(items) = server.cmd(&["ACL", "GETUSER", user]) else {
            panic!("user {user} exists");
        };
        let mut flags = Vec::new();
        let mut fields = Vec::new();
        for pair in items.chunks(2) {
            let [key, value] = pair else {
                panic!("ACL GETUSER: odd reply")
            };
            match key.text().as_str() {
                "flags" => {
                    let RespValue::Array(f) = value else {
                        panic!("flags: {value}")
                    };
                    flags = f.iter().map(RespValue::text).collect();
                }
                "passwords" => {}
                other => fields.push((other.to_owned(), value.text())),
            }
        }
        let prefix = format!("user {user} ");
        let list = server.cmd(&["ACL", "LIST"]);
        let RespValue::Array(lines) = list else {
            panic!("ACL LIST: {list}")
        };
        let line = lines
            .iter()
            .map(RespValue::text)
            .find(|l| l.starts_with(&prefix))
            .expect("the user is in ACL LIST");
        let line = line
            .split(' ')
            .filter(|token| !token.starts_with('#'))
            .map(str::to_owned)
            .collect();
        let allowed = PROBES
            .iter()
            .map(|(command, _)| {
                let mut args = vec!["ACL", "DRYRUN", user];
                args.extend_from_slice(command);
                server.cmd(&args) == RespValue::Simple("OK".into())
            })
            .collect();
        Rules {
            flags,
            fields,
            line,
            allowed,
        }
    }

    /// The same rules without the `nopass` flag.
    fn without_nopass(&self) -> Rules {
        let mut rules = self.clone();
        rules.flags.retain(|f| f != "nopass");
        rules.line.retain(|t| t != "nopass");
        rules
    }

    fn field(&self, name: &str) -> &str {
        self.fields
            .iter()
            .find(|(k, _)| k == name)
            .map_or("", |(_, v)| v.as_str())
    }

    /// The precondition: the rules are on the user, and they decide what it may run.
    fn assert_rich(&self) {
        for flag in ["on", "skip-sanitize-payload"] {
            assert!(self.flags.iter().any(|f| f == flag), "flag {flag}: {self:?}");
        }
        assert_eq!(self.field("keys"), "~app:* %R~ro:*", "{self:?}");
        assert_eq!(self.field("channels"), "&chan:*", "{self:?}");
        // Redis versions list the command rules in different orders (7.0: `+client|id`
        // before `+set`; 7.2: last), so the rules are compared as a set after `-@all`.
        let mut commands: Vec<&str> = self.field("commands").split(' ').collect();
        assert_eq!(commands.first(), Some(&"-@all"), "{self:?}");
        commands.sort_unstable();
        assert_eq!(commands, ["+@read", "+client|id", "+set", "-@all", "-keys"], "{self:?}");
        let selectors = self.field("selectors");
        for needle in ["~other:*", "+set", "%W~log:*", "&log:*", "+publish", "+xadd"] {
            assert!(selectors.contains(needle), "selector rule {needle}: {selectors}");
        }
        let expected: Vec<bool> = PROBES.iter().map(|(_, allowed)| *allowed).collect();
        assert_eq!(self.allowed, expected, "ACL DRYRUN answers for {PROBES:?}");
    }
}

/// A unique user with `on`, [`RULES`] and `extra` (deleted on drop).
fn rich_user<'a>(server: &'a RedisServer, prefix: &str, extra: &[&str]) -> TestUser<'a> {
    let mut rules = RULES.to_vec();
    rules.extend_from_slice(extra);
    TestUser::new(server, prefix, &rules)
}

fn administered(
    server: &RedisServer,
    user: &str,
    admin: &TestUser,
    strategy: Strategy,
    clear_nopass: bool,
) -> RedisTarget {
    let mut c = config(server.port(), user, Some(admin.url(server.port())));
    c.clear_nopass = clear_nopass;
    target(&RedisProvider::new(), &c, strategy)
}

/// A login with `password` that really runs under the rules: an allowed read answers,
/// a command outside them is refused.
fn assert_session_rules(server: &RedisServer, user: &str, password: &Secret) {
    let mut session = server.login(user, password.expose()).expect("the new password logs in");
    session
        .cmd(&["GET", &format!("app:{user}")])
        .expect("GET app:* is allowed");
    let refused = session.cmd(&["KEYS", "app:*"]).expect_err("KEYS is not allowed");
    assert!(refused.message().starts_with("NOPERM"), "{refused}");
}

/// One rotation of `t` from `current` (apply, verify, revoke; ending sessions when
/// `incident`), checking after apply and after revoke that the rules are `expected`.
/// Returns the new secret.
async fn rotate(
    server: &RedisServer,
    t: &RedisTarget,
    user: &str,
    current: &SecretDoc,
    incident: bool,
    expected: &Rules,
) -> SecretDoc {
    let plan = t.preflight(Some(current)).await.expect("preflight").join("\n");
    assert!(plan.contains(&format!("user \"{user}\" exists, is enabled")), "{plan}");
    if incident {
        t.incident_preflight().await.expect("incident preflight");
    }
    let new = t.prepare(Some(current), random_password(32)).await.unwrap();
    let new_password = new.password().unwrap();
    t.apply(&new, Some(current)).await.unwrap();
    assert!(
        server
            .passwords(user)
            .unwrap()
            .contains(&acl_password_hash(&new_password)),
        "the new password is installed"
    );
    assert_eq!(
        &Rules::read(server, user),
        expected,
        "rules after apply ({:?})",
        t.strategy()
    );
    t.verify(&new).await.unwrap();
    t.revoke(
        current,
        &new,
        RevokeOptions {
            terminate_sessions: incident,
        },
    )
    .await
    .unwrap();
    assert_eq!(
        server.passwords(user).unwrap(),
        vec![acl_password_hash(&new_password)],
        "only the new password after revoke"
    );
    if let Some(old) = current.password() {
        assert!(!server.can_login(user, old.expose()), "the old password is refused");
    }
    assert_eq!(
        &Rules::read(server, user),
        expected,
        "rules after revoke ({:?})",
        t.strategy()
    );
    assert_session_rules(server, user, &new_password);
    new
}

#[tokio::test]
async fn every_strategy_keeps_every_rule_also_in_incident_mode() {
    let server = RedisServer::machine();
    let admin = TestUser::admin(&server);
    for strategy in [Strategy::Single, Strategy::Dual] {
        let user = rich_user(&server, "rk_rules", &[]);
        // A second password, added outside rekey: dual apply removes it (it holds the
        // current one), single apply replaces it; neither touches a rule.
        let extra = random_password(24);
        server.cmd(&["ACL", "SETUSER", &user.name, &format!("#{}", acl_password_hash(&extra))]);
        assert_eq!(user.passwords().len(), 2, "two passwords before");
        let before = Rules::read(&server, &user.name);
        before.assert_rich();
        assert!(!before.flags.iter().any(|f| f == "nopass"), "{before:?}");
        assert_session_rules(&server, &user.name, &user.password);

        let t = administered(&server, &user.name, &admin, strategy, false);
        let rotated = rotate(&server, &t, &user.name, &user.doc(), false, &before).await;
        assert!(
            !server.can_login(&user.name, extra.expose()),
            "the extra password is gone"
        );
        // Incident mode (`rotate --leaked`): the rotated secret counts as leaked.
        let mut session = server
            .login(&user.name, rotated.password().unwrap().expose())
            .expect("the leaked password logs in before");
        rotate(&server, &t, &user.name, &rotated, true, &before).await;
        assert!(
            !session.alive(),
            "incident mode ended the open connection ({strategy:?})"
        );
    }
}

#[tokio::test]
async fn a_nopass_user_is_refused_before_anything_changes() {
    let server = RedisServer::machine();
    let admin = TestUser::admin(&server);
    // `nopass` after the `#<hash>` TestUser installs: it clears the passwords.
    let user = rich_user(&server, "rk_nopass_rules", &["nopass"]);
    let any = random_password(24);
    let before = Rules::read(&server, &user.name);
    before.assert_rich();
    assert!(before.flags.iter().any(|f| f == "nopass"), "nopass before: {before:?}");
    assert!(user.passwords().is_empty(), "no password before");
    assert!(
        server.can_login(&user.name, any.expose()),
        "any password logs in before"
    );

    let imported = doc(&user.name, &any);
    for strategy in [Strategy::Single, Strategy::Dual] {
        let t = administered(&server, &user.name, &admin, strategy, false);
        let needles = [
            format!("user \"{}\" on 127.0.0.1:{} is nopass", user.name, server.port()),
            "a rotation would give it a password".to_owned(),
            "set `clear_nopass = true` on the target".to_owned(),
        ];
        let needles: Vec<&str> = needles.iter().map(String::as_str).collect();
        for current in [Some(&imported), None] {
            let err = t.preflight(current).await.expect_err("preflight refuses a nopass user");
            assert_error(&err, ErrorKind::Unsupported, &needles, &[&any]);
            assert!(!err.is_retryable());
        }
        // apply refuses it too (a rotation that skipped preflight).
        let new = t.prepare(Some(&imported), random_password(32)).await.unwrap();
        let err = t
            .apply(&new, Some(&imported))
            .await
            .expect_err("apply refuses a nopass user");
        assert_error(
            &err,
            ErrorKind::Unsupported,
            &needles,
            &[&any, &new.password().unwrap()],
        );
        // Nothing changed.
        assert_eq!(Rules::read(&server, &user.name), before, "{strategy:?}");
        assert!(user.passwords().is_empty(), "still no password ({strategy:?})");
        assert!(
            server.can_login(&user.name, random_password(24).expose()),
            "still nopass"
        );
    }
}

#[tokio::test]
async fn clear_nopass_ends_nopass_and_changes_nothing_else() {
    let server = RedisServer::machine();
    let admin = TestUser::admin(&server);
    for strategy in [Strategy::Single, Strategy::Dual] {
        let user = rich_user(&server, "rk_nopass_ok", &["nopass"]);
        let any = random_password(24);
        let before = Rules::read(&server, &user.name);
        before.assert_rich();
        assert!(before.flags.iter().any(|f| f == "nopass"), "nopass before: {before:?}");
        assert!(
            server.can_login(&user.name, any.expose()),
            "any password logs in before"
        );

        let t = administered(&server, &user.name, &admin, strategy, true);
        let imported = doc(&user.name, &any);
        let plan = t.preflight(Some(&imported)).await.unwrap().join("\n");
        assert!(
            plan.contains("it is nopass (any password logs in): apply gives it the new password and ends nopass (clear_nopass = true)"),
            "{plan}"
        );
        assert_eq!(Rules::read(&server, &user.name), before, "plan changed nothing");
        let expected = before.without_nopass();
        assert_ne!(expected, before);
        rotate(&server, &t, &user.name, &imported, false, &expected).await;
        assert!(
            !server.can_login(&user.name, random_password(24).expose()),
            "no longer nopass"
        );
    }
}
