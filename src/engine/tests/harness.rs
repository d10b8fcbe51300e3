//! A rotation engine over an in-memory store and a scripted fake target.

use crate::config::Credential;
use crate::engine::event::Fanout;
use crate::engine::{Backends, Engine, EngineSettings, Interrupt, RotateOptions, RunReport};
use crate::password::PasswordPolicyConfig;
use rekey_api::testing::{Crash, ManualClock, MemoryStore, ScriptedTarget, ScriptedTargetConfig};
use rekey_api::{KeyState, ProviderResult, SecretDoc, Store, Strategy, Target};
use std::sync::Arc;
use std::time::Duration;

/// The key every harness credential uses.
pub const KEY: &str = "app/db";
/// The harness credential's name.
pub const NAME: &str = "app-db";

struct TestBackends {
    store: MemoryStore,
    target: ScriptedTarget,
}

impl Backends for TestBackends {
    fn store(&self, _name: &str) -> ProviderResult<Arc<dyn Store>> {
        Ok(Arc::new(self.store.clone()))
    }
    fn target(&self, _credential: &Credential) -> ProviderResult<Arc<dyn Target>> {
        Ok(Arc::new(self.target.clone()))
    }
}

/// One credential on a fake target and a memory store, both sharing one crash switch.
pub struct Harness {
    pub store: MemoryStore,
    pub target: ScriptedTarget,
    pub crash: Crash,
    /// The time the store, the target and the engine all read (frozen until moved).
    pub clock: ManualClock,
    pub credential: Credential,
    lock_dir: tempfile::TempDir,
}

impl Harness {
    /// A credential with `config`'s strategy; nothing stored yet.
    pub fn new(config: ScriptedTargetConfig) -> Harness {
        let crash = Crash::new();
        let clock = ManualClock::new();
        let strategy = config.strategy;
        let store = MemoryStore::new().with_crash(crash.clone()).with_clock(clock.clone());
        let target = ScriptedTarget::new(config)
            .with_crash(crash.clone())
            .with_clock(clock.clone());
        Harness {
            store,
            target,
            crash,
            clock,
            credential: credential(strategy),
            lock_dir: tempfile::tempdir().expect("temp dir"),
        }
    }

    /// [`Harness::new`] plus a working secret imported as current.
    pub async fn imported(config: ScriptedTargetConfig) -> (Harness, SecretDoc) {
        let h = Harness::new(config);
        let doc = h.target.seed_new();
        h.store.put_current(KEY, "initial", &doc).await.expect("import");
        (h, doc)
    }

    /// An engine over this harness's store and target, on its clock.
    pub fn engine(&self) -> Engine {
        let backends = TestBackends {
            store: self.store.clone(),
            target: self.target.clone(),
        };
        let settings = EngineSettings {
            parallel: 1,
            lock_dir: self.lock_dir.path().to_path_buf(),
        };
        let clock = self.clock.clone();
        Engine::new(settings, Arc::new(backends), Arc::new(Fanout(Vec::new())))
            .with_clock(Arc::new(move || clock.now()))
    }

    /// One `rotate` run; `None` when a crash fault "killed the process" mid-run.
    pub async fn rotate(&self, mut options: RotateOptions) -> Option<RunReport> {
        self.crash.reset();
        // A child process forked by another test of this binary at the moment a lock
        // file is open shares that lock until it execs: wait for it rather than fail.
        options.wait.get_or_insert(Duration::from_secs(10));
        let engine = self.engine();
        let run = engine.rotate(vec![self.credential.clone()], options);
        tokio::select! {
            biased;
            report = run => Some(report.expect("the run starts")),
            () = self.crash.wait() => None,
        }
    }

    /// One `rotate` run whose engine stops at step boundaries once `interrupt` is set.
    pub async fn rotate_with_interrupt(&self, options: RotateOptions, interrupt: Interrupt) -> RunReport {
        self.engine()
            .with_interrupt(interrupt)
            .rotate(vec![self.credential.clone()], options)
            .await
            .expect("the run starts")
    }

    /// One `verify` run.
    pub async fn verify(&self) -> RunReport {
        self.engine()
            .verify(vec![self.credential.clone()])
            .await
            .expect("the run starts")
    }

    /// One `plan` run.
    pub async fn plan(&self) -> RunReport {
        self.plan_with(RotateOptions::default()).await
    }

    /// One `plan` run with `options` (`--grace`, `--leaked`...).
    pub async fn plan_with(&self, options: RotateOptions) -> RunReport {
        self.engine()
            .plan(vec![self.credential.clone()], options)
            .await
            .expect("the run starts")
    }

    /// One `status` run.
    pub async fn status(&self) -> RunReport {
        self.engine()
            .status(vec![self.credential.clone()])
            .await
            .expect("the run starts")
    }

    /// The stored state of the key (without faults).
    pub fn state(&self) -> KeyState {
        self.store.snapshot(KEY).unwrap_or_default()
    }
}

/// A harness credential with `strategy`, 30 days period, no grace.
pub fn credential(strategy: Strategy) -> Credential {
    Credential {
        name: NAME.to_owned(),
        store: "memory".to_owned(),
        key: KEY.to_owned(),
        strategy,
        tags: Vec::new(),
        every: Duration::from_secs(30 * 86_400),
        grace: Duration::ZERO,
        password: PasswordPolicyConfig::default().resolve().expect("default policy"),
        verify_attempts: 3,
        description: None,
        on_rotate: Vec::new(),
        check_command: None,
        hook_timeout: Duration::from_secs(10),
        revocation_tolerance: Duration::from_secs(24 * 3600),
        window: None,
        jitter: Duration::ZERO,
    }
}

/// The failure kind's name of the run's only credential, if it failed.
pub fn failure(report: &RunReport) -> Option<&'static str> {
    report.credentials[0].error.as_ref().map(|e| e.kind.as_str())
}
