//! Crashes and races: SIGKILL mid-rotation is finished by the next run; two runs on
//! one credential never both rotate.

use crate::util::{Held, Workspace};

fn pending_id(ws: &Workspace, name: &str) -> Option<String> {
    let status = ws.status_json(name);
    status["versions"]
        .as_array()
        .unwrap()
        .iter()
        .find(|v| v["stages"].as_array().unwrap().iter().any(|s| s == "pending"))
        .map(|v| v["id"].as_str().unwrap().to_owned())
}

fn killed_then_rerun(failpoint: &str) {
    let mut ws = Workspace::new();
    let (role, initial) = ws.role("rk_kill");
    ws.write_config(&[ws.credential("app-db", &role)]);
    ws.import("app-db", &initial);

    Held::start(&ws, &["rotate", "app-db"], failpoint).kill();
    let staged = pending_id(&ws, "app-db").expect("the killed run left its pending version");
    let pending_password = ws.stored_password("app-db", "pending");
    let applied = ws.can_login(&role, &pending_password);
    assert_eq!(
        applied,
        failpoint != "after-stage",
        "apply happened exactly when the failpoint says"
    );
    assert_eq!(
        ws.can_login(&role, &initial),
        failpoint == "after-stage",
        "a stored secret works at every instant"
    );

    let r = ws.rekey(&["rotate", "app-db"]);
    r.assert_code(0);
    assert!(r.stdout.contains("finished a pending rotation"), "{}", r.stdout);

    let status = ws.status_json("app-db");
    let versions = status["versions"].as_array().unwrap();
    assert_eq!(versions.len(), 2, "no second pending version was created: {status}");
    assert!(pending_id(&ws, "app-db").is_none());
    assert_eq!(
        status["versions"][0]["id"],
        staged.as_str(),
        "the staged version became current"
    );
    let current = ws.stored_password("app-db", "current");
    assert_eq!(current, pending_password);
    assert!(ws.can_login(&role, &current));
    assert!(!ws.can_login(&role, &initial));
    ws.rekey(&["verify", "app-db"]).assert_code(0);
}

#[test]
fn sigkill_after_stage_is_finished_by_the_next_run() {
    killed_then_rerun("after-stage");
}

#[test]
fn sigkill_after_apply_is_finished_by_the_next_run() {
    killed_then_rerun("after-apply");
}

#[test]
fn sigkill_after_verify_is_finished_by_the_next_run() {
    killed_then_rerun("after-verify");
}

#[test]
fn a_leaked_pending_secret_is_not_left_current() {
    let mut ws = Workspace::new();
    let (role, initial) = ws.role("rk_leakpend");
    ws.write_config(&[ws.credential("app-db", &role)]);
    ws.import("app-db", &initial);
    Held::start(&ws, &["rotate", "app-db"], "after-apply").kill();
    let leaked = ws.stored_password("app-db", "pending");
    let r = ws.rekey_stdin(&["leaked", "--rotate"], &leaked);
    r.assert_code(0);
    let current = ws.stored_password("app-db", "current");
    assert_ne!(current, leaked, "the leaked pending secret was not made current");
    assert!(!ws.can_login(&role, &leaked), "the leaked pending secret is dead");
    assert!(ws.can_login(&role, &current));
    assert!(pending_id(&ws, "app-db").is_none());
}

#[test]
fn verify_reports_a_half_done_rotation() {
    let mut ws = Workspace::new();
    let (role, initial) = ws.role("rk_half");
    ws.write_config(&[ws.credential("app-db", &role)]);
    ws.import("app-db", &initial);
    Held::start(&ws, &["rotate", "app-db"], "after-apply").kill();
    let r = ws.rekey(&["verify", "app-db"]);
    r.assert_code(1);
    assert!(r.stderr.contains("half done"), "{}", r.stderr);
    ws.rekey(&["rotate", "app-db"]).assert_code(0);
    ws.rekey(&["verify", "app-db"]).assert_code(0);
}

#[test]
fn concurrent_runs_one_rotates_the_other_exits_3() {
    let mut ws = Workspace::new();
    let (role, initial) = ws.role("rk_lock");
    ws.write_config(&[ws.credential("app-db", &role)]);
    ws.import("app-db", &initial);

    let first = Held::start(&ws, &["rotate", "app-db"], "after-stage");
    let before = ws.store_bytes();
    let second = ws.rekey(&["rotate", "app-db"]);
    second.assert_code(3);
    second.assert_one_error(&["app-db", "lock", "another rekey run"]);
    assert_eq!(ws.store_bytes(), before, "the refused run changed nothing");
    let import = ws.rekey_stdin(&["import", "app-db"], &initial);
    import.assert_code(3);

    let staged = pending_id(&ws, "app-db").unwrap();
    first.kill();
    ws.rekey(&["rotate", "app-db"]).assert_code(0);
    let status = ws.status_json("app-db");
    assert_eq!(
        status["versions"][0]["id"],
        staged.as_str(),
        "nothing lost: the first run's version won"
    );
    assert!(ws.can_login(&role, &ws.stored_password("app-db", "current")));
}

#[test]
fn sigint_exits_130_and_the_next_run_finishes() {
    let mut ws = Workspace::new();
    let (role, initial) = ws.role("rk_sigint");
    ws.write_config(&[ws.credential("app-db", &role)]);
    ws.import("app-db", &initial);
    let mut held = Held::start(&ws, &["rotate", "app-db"], "after-apply");
    let status = std::process::Command::new("kill")
        .args(["-INT", &held.child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    let code = held.child.wait().unwrap().code();
    assert_eq!(code, Some(130), "interrupted runs exit 130");
    ws.rekey(&["rotate", "app-db"]).assert_code(0);
    assert!(ws.can_login(&role, &ws.stored_password("app-db", "current")));
    assert!(!ws.can_login(&role, &initial));
}

#[test]
fn sigkill_after_promote_leaves_a_finished_rotation() {
    let mut ws = Workspace::new();
    let (role, initial) = ws.role("rk_kill_promote");
    ws.write_config(&[ws.credential("app-db", &role)]);
    ws.import("app-db", &initial);
    Held::start(&ws, &["rotate", "app-db"], "after-promote").kill();
    assert!(
        pending_id(&ws, "app-db").is_none(),
        "promotion happened before the kill"
    );
    let current = ws.stored_password("app-db", "current");
    assert!(ws.can_login(&role, &current));
    assert!(!ws.can_login(&role, &initial));
    ws.rekey(&["verify", "app-db"]).assert_code(0);
}

// Minted keys: the `http` target and the `exec` target (examples/plugins/keyapi-keys)
// against the testbed's key API. A run is SIGKILLed after the service minted a key (its
// answer held back, so the key is alive and stored nowhere) or after the minted key was
// stored as pending; the next run must leave alive only the stored current key (and the
// previous one within its grace), never a key no store holds, and the current must work.

mod minted {
    use crate::http_target::{live_ids, minting_config, rekey};
    use rekey_testbed::keyapi::{ApiKey, Fault, KeyApi, KeyApiOptions};
    use std::io::{BufRead, BufReader};
    use std::path::Path;
    use std::process::{Command, Stdio};
    use std::time::{Duration, Instant};

    const TOKEN_ENV: &str = "BILLING_ADMIN_TOKEN";
    const NAME: &str = "billing-api";
    const KEYAPI_KEYS: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/examples/plugins/keyapi-keys");

    #[derive(Clone, Copy, PartialEq)]
    enum Via {
        Http,
        Exec,
    }

    struct Bed {
        api: KeyApi,
        dir: tempfile::TempDir,
        token: String,
        /// The imported key (named as this credential's keys are).
        first: ApiKey,
        /// Someone else's key on the same service: never touched.
        other: ApiKey,
    }

    impl Bed {
        fn new(via: Via, grace: &str) -> Bed {
            let api = KeyApi::start_with(KeyApiOptions::quiet()).unwrap();
            let dir = tempfile::tempdir().unwrap();
            let config = match via {
                Via::Http => minting_config(&api),
                // The shipped example, with the plugin's absolute path.
                Via::Exec => std::fs::read_to_string(format!("{KEYAPI_KEYS}.toml"))
                    .unwrap()
                    .replace("\"examples/plugins/keyapi-keys\"", &format!("\"{KEYAPI_KEYS}\""))
                    .replace("${KEYAPI_URL}", &api.url())
                    .replace("KEYAPI_ADMIN_TOKEN", TOKEN_ENV),
            };
            let config = config.replace(
                "audit_log = \"rekey-audit.jsonl\"",
                &format!("audit_log = \"rekey-audit.jsonl\"\ngrace = \"{grace}\""),
            );
            std::fs::write(dir.path().join("rekey.toml"), config).unwrap();
            let token = api.admin_token().to_owned();
            let first = api.mint(&format!("rekey {NAME}"));
            let other = api.mint("someone else's key");
            let bed = Bed {
                api,
                dir,
                token,
                first,
                other,
            };
            bed.rekey(
                &["import", NAME],
                &format!(r#"{{"api_key": "{}", "key_id": "{}"}}"#, bed.first.secret, bed.first.id),
            )
            .assert_code(0);
            bed
        }

        fn d(&self) -> &Path {
            self.dir.path()
        }

        fn rekey(&self, args: &[&str], stdin: &str) -> crate::util::Run {
            rekey(self.d(), &[(TOKEN_ENV, &self.token)], args, stdin)
        }

        fn stored(&self, stage: &str, field: &str) -> String {
            let got = self.rekey(&["get", NAME, "--stage", stage, "--field", field], "");
            got.assert_code(0);
            got.stdout.trim().to_owned()
        }

        fn versions(&self) -> usize {
            let r = self.rekey(&["-o", "json", "status", NAME], "");
            let doc: serde_json::Value = serde_json::from_str(&r.stdout).expect("status json");
            doc["credentials"][0]["versions"].as_array().unwrap().len()
        }

        fn command(&self) -> Command {
            let mut cmd = Command::new(env!("CARGO_BIN_EXE_rekey"));
            cmd.current_dir(self.d())
                .env_remove("REKEY_CONFIG")
                .env_remove("REKEY_FAILPOINT")
                .env(TOKEN_ENV, &self.token)
                .args(["-c", "rekey.toml"]);
            cmd
        }

        /// `rekey ARGS` held at `failpoint` (as [`crate::util::Held`], for this bed).
        fn held(&self, args: &[&str], failpoint: &str) -> std::process::Child {
            let mut child = self
                .command()
                .args(args)
                .env("REKEY_FAILPOINT", failpoint)
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::piped())
                .spawn()
                .unwrap();
            let stderr = child.stderr.take().unwrap();
            let (tx, rx) = std::sync::mpsc::channel();
            std::thread::spawn(move || {
                for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                    let _ = tx.send(line);
                }
            });
            let mut seen = Vec::new();
            loop {
                match rx.recv_timeout(Duration::from_secs(60)) {
                    Ok(line) if line.contains(&format!("failpoint {failpoint} reached")) => return child,
                    Ok(line) => seen.push(line),
                    Err(_) => {
                        let _ = child.kill();
                        panic!("rekey never reached failpoint {failpoint}; stderr: {seen:?}");
                    }
                }
            }
        }

        /// The ids alive at the service, besides someone else's key (checked kept).
        fn live_mine(&self) -> Vec<String> {
            let live = live_ids(&self.api);
            assert!(live.contains(&self.other.id), "someone else's key was removed");
            live.into_iter().filter(|id| *id != self.other.id).collect()
        }

        /// The stored current key works; the stored previous and `dead` keys are refused.
        fn assert_current_works(&self, dead: &[&str]) {
            let current = self.stored("current", "api_key");
            assert!(self.api.accepts(&current), "the stored current key works");
            for secret in dead {
                assert!(!self.api.accepts(secret), "a revoked key still works");
            }
            self.rekey(&["verify", NAME], "").assert_code(0);
        }
    }

    /// SIGKILL while the service holds back its answer to `create` (the key is minted
    /// and alive; rekey never learned it), then rerun.
    fn killed_after_the_mint(via: Via) {
        let bed = Bed::new(via, "0s");
        bed.api
            .fail_next("POST", "/v1/keys", Fault::HoldAnswer(Duration::from_secs(20)), 1);
        let mut child = bed
            .command()
            .args(["rotate", NAME])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let deadline = Instant::now() + Duration::from_secs(60);
        let orphan = loop {
            if let Some(k) = bed
                .api
                .live_keys()
                .into_iter()
                .find(|k| k.id != bed.first.id && k.id != bed.other.id)
            {
                break k;
            }
            assert!(Instant::now() < deadline, "the service never minted a key");
            assert!(child.try_wait().unwrap().is_none(), "rekey ended before the mint");
            std::thread::sleep(Duration::from_millis(10));
        };
        child.kill().expect("SIGKILL");
        child.wait().unwrap();
        assert!(bed.api.accepts(&orphan.secret), "the minted key is alive");
        assert_eq!(
            bed.versions(),
            1,
            "nothing was stored: the minted key is stored nowhere"
        );

        let rerun = bed.rekey(&["rotate", NAME], "");
        rerun.assert_code(0);
        let current = bed.stored("current", "key_id");
        assert_ne!(current, orphan.id, "the unstored key is never adopted");
        assert_eq!(
            bed.live_mine(),
            vec![current],
            "only the new current key is alive: the orphan {} and the old key {} are gone",
            orphan.id,
            bed.first.id
        );
        let audit = std::fs::read_to_string(bed.d().join("rekey-audit.jsonl")).unwrap();
        assert!(audit.contains(&orphan.id), "the sweep is recorded with the key's id");
        assert!(!audit.contains(&orphan.secret) && !audit.contains(&bed.token));
        bed.assert_current_works(&[&orphan.secret, &bed.first.secret]);
    }

    /// SIGKILL right after the minted key was stored as pending, then rerun: the pending
    /// key is finished (not minted again); with grace the old key lives until it ends.
    fn killed_after_the_store(via: Via, grace: &str) {
        let bed = Bed::new(via, grace);
        let mut child = bed.held(&["rotate", NAME], "after-stage");
        child.kill().expect("SIGKILL");
        child.wait().unwrap();
        let pending = bed.stored("pending", "key_id");
        let mut alive = vec![bed.first.id.clone(), pending.clone()];
        alive.sort();
        assert_eq!(bed.live_mine(), alive, "the old key and the stored pending one");

        let rerun = bed.rekey(&["rotate", NAME], "");
        rerun.assert_code(0);
        assert!(rerun.stdout.contains("finished a pending rotation"), "{}", rerun.stdout);
        assert_eq!(bed.stored("current", "key_id"), pending, "the pending key was finished");
        assert_eq!(bed.versions(), 2);
        if grace == "0s" {
            assert_eq!(bed.live_mine(), vec![pending]);
            bed.assert_current_works(&[&bed.first.secret]);
        } else {
            assert_eq!(bed.live_mine(), alive, "the previous key lives through its grace");
            assert_eq!(bed.stored("previous", "key_id"), bed.first.id);
            assert!(bed.api.accepts(&bed.first.secret));
            bed.assert_current_works(&[]);
        }
    }

    #[test]
    fn http_sigkill_after_the_mint_is_swept_by_the_next_run() {
        killed_after_the_mint(Via::Http);
    }

    #[test]
    fn http_sigkill_after_the_store_is_finished_by_the_next_run() {
        killed_after_the_store(Via::Http, "0s");
    }

    #[test]
    fn exec_sigkill_after_the_mint_is_swept_by_the_next_run() {
        killed_after_the_mint(Via::Exec);
    }

    #[test]
    fn exec_sigkill_after_the_store_is_finished_by_the_next_run_within_grace() {
        killed_after_the_store(Via::Exec, "1h");
    }
}
