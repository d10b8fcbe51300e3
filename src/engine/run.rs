//! The engine: runs a command over the selected credentials, in parallel, with failure
//! isolation, and returns a [`RunReport`]. It never prints; reporters render its events.

use super::backends::Backends;
use super::event::{Reporter, Step};
use super::failure::FailureKind;
use super::inspection;
use super::interrupt::Interrupt;
use super::lock;
use super::recorder::{rfc3339, Recorder, StepFailed};
use super::report::{CredentialReport, Retain, RunReport, Status};
use super::rotation::{RotateOptions, Rotation};
use crate::config::Credential;
use rekey_api::{ProviderError, SecretDoc, Stage, Store, Target};
use std::sync::Arc;
use std::time::{Instant, SystemTime};
use tokio::task::JoinSet;

/// Why a run could not start; nothing was changed.
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    /// A configuration problem found while building providers (exit 2).
    #[error("{0}")]
    Config(String),
    /// Another run holds a credential's lock (exit 3).
    #[error("{0}")]
    Busy(String),
    /// A lock file could not be created (exit 1).
    #[error("{0}")]
    Lock(String),
    /// The input (a secret on stdin) is unusable (exit 2); nothing changed.
    #[error("{0}")]
    Input(String),
}

/// How `import` stores an existing secret.
#[derive(Debug, Clone, Copy, Default)]
pub struct ImportOptions {
    /// Check that the secret logs in before storing it.
    pub check: bool,
    /// With `check` off: replace a stored current secret even when it still logs in.
    pub force: bool,
}

/// The environment variable naming a test failpoint: `after-stage`, `after-apply`,
/// `after-verify`, `after-promote` hold the run there until killed (crash tests);
/// `fail-stage` fails the store write (fault tests).
pub const FAILPOINT_ENV: &str = "REKEY_FAILPOINT";

/// What to do with each credential.
#[derive(Debug, Clone)]
enum Work {
    Rotate(RotateOptions),
    Plan(RotateOptions),
    Verify,
    Status,
}

/// Run-wide settings of the engine.
#[derive(Debug, Clone)]
pub struct EngineSettings {
    /// Credentials worked on at once.
    pub parallel: usize,
    /// Directory of the per-credential lock files.
    pub lock_dir: std::path::PathBuf,
}

/// Runs commands against the stores and targets its [`Backends`] resolve.
pub struct Engine {
    settings: EngineSettings,
    backends: Arc<dyn Backends>,
    reporter: Arc<dyn Reporter>,
    interrupt: Interrupt,
    clock: super::schedule::Clock,
    run_id: String,
    failpoint: Option<String>,
    retain: Retain,
}

/// A credential checked and waiting for its turn: its target is built (again) only when
/// its work starts ([`Engine::ready`]), so at most `parallel` targets exist at once
/// (10,000 PostgreSQL targets held 6 MB).
struct Pending {
    credential: Credential,
    store: Result<Arc<dyn Store>, ProviderError>,
    endpoint: Option<String>,
}

/// A credential whose work starts: a [`Pending`] one with its target.
struct Prepared {
    credential: Credential,
    store: Result<Arc<dyn Store>, ProviderError>,
    target: Arc<dyn Target>,
    endpoint: Option<String>,
}

/// Endpoints found unreachable during this run: the other credentials on them fail at
/// once ("host unreachable") instead of each waiting for its own timeout.
type DeadEndpoints = Arc<std::sync::Mutex<std::collections::BTreeSet<String>>>;

impl Engine {
    /// An engine over `backends`, reporting to `reporter`.
    pub fn new(settings: EngineSettings, backends: Arc<dyn Backends>, reporter: Arc<dyn Reporter>) -> Self {
        Engine {
            settings,
            backends,
            reporter,
            interrupt: Interrupt::default(),
            clock: super::schedule::system_clock(),
            run_id: uuid::Uuid::new_v4().to_string(),
            failpoint: std::env::var(FAILPOINT_ENV).ok().filter(|s| !s.is_empty()),
            retain: Retain::default(),
        }
    }

    /// Keeps of each finished credential only what `retain` says until the run ends
    /// (the default keeps everything). The reporters see every event either way.
    pub fn with_retain(mut self, retain: Retain) -> Self {
        self.retain = retain;
        self
    }

    /// A finished credential's report as this run keeps it.
    fn kept(&self, mut report: CredentialReport) -> CredentialReport {
        if self.retain == Retain::Summary {
            report.compact();
        }
        report
    }

    /// Decides due dates, windows, grace and stuck versions with `clock` (tests inject
    /// one; the binary uses the system clock).
    pub fn with_clock(mut self, clock: super::schedule::Clock) -> Self {
        self.clock = clock;
        self
    }

    /// This run's id (also in the audit log and reports).
    pub fn run_id(&self) -> &str {
        &self.run_id
    }

    /// Stops at step boundaries when `interrupt` is requested (the binary passes
    /// [`Interrupt::global`], which its signal handler sets).
    pub fn with_interrupt(mut self, interrupt: Interrupt) -> Self {
        self.interrupt = interrupt;
        self
    }

    /// Checks every credential's target before any work starts (a target that cannot be
    /// built, or a strategy it does not support, fails the whole run: exit 2), and opens
    /// their stores. The targets built for the check are let go: [`Engine::ready`] builds
    /// each again when its credential's turn comes (the providers share what is costly:
    /// connections, TLS setups, clients).
    fn prepare(&self, credentials: Vec<Credential>) -> Result<Vec<Pending>, RunError> {
        // Sized once: collected through a `Result` the list would grow by doubling (7 MB
        // at 10,000 credentials, and twice that while it moved).
        let mut pending = Vec::with_capacity(credentials.len());
        for credential in credentials {
            let target = self.target_of(&credential).map_err(RunError::Config)?;
            supports_strategy(&credential, target.as_ref())?;
            let store = self.backends.store(&credential.store);
            let endpoint = self.backends.endpoint(&credential);
            pending.push(Pending {
                credential,
                store,
                endpoint,
            });
        }
        Ok(pending)
    }

    /// The target of `credential`, or the one-line error naming it.
    fn target_of(&self, credential: &Credential) -> Result<Arc<dyn Target>, String> {
        self.backends
            .target(credential)
            .map_err(|e| format!("{}: configure target: {}", credential.name, e.message()))
    }

    /// `pending` with its target, built now; the error (which [`Engine::prepare`]'s check
    /// makes all but impossible) is the credential's report, failed at preflight.
    fn ready(&self, pending: Pending) -> Result<Prepared, Box<CredentialReport>> {
        let Pending {
            credential,
            store,
            endpoint,
        } = pending;
        match self.target_of(&credential) {
            Ok(target) => Ok(Prepared {
                credential,
                store,
                target,
                endpoint,
            }),
            Err(message) => {
                let mut rec = Recorder::new(
                    &self.run_id,
                    self.reporter.clone(),
                    &credential.name,
                    String::new(),
                    describe_store(&credential, &store),
                    &credential.key,
                );
                let failed = rec.fail(Step::Preflight, FailureKind::InvalidInput, message);
                Err(Box::new(self.kept(rec.finish(Err(failed)))))
            }
        }
    }

    /// `rotate`: the full protocol for every credential (or only what is due).
    pub async fn rotate(&self, credentials: Vec<Credential>, options: RotateOptions) -> Result<RunReport, RunError> {
        let prepared = self.prepare(credentials)?;
        let names: Vec<String> = prepared.iter().map(|p| p.credential.name.clone()).collect();
        let _locks = lock::acquire_all_waiting(&self.settings.lock_dir, &names, options.wait)
            .await
            .map_err(|e| match e {
                lock::LockError::Busy { .. } => RunError::Busy(e.to_string()),
                lock::LockError::Io { .. } => RunError::Lock(e.to_string()),
            })?;
        Ok(self.run("rotate", false, prepared, Work::Rotate(options)).await)
    }

    /// `plan` / `rotate --dry-run`: real preflight checks, no change.
    pub async fn plan(&self, credentials: Vec<Credential>, options: RotateOptions) -> Result<RunReport, RunError> {
        let prepared = self.prepare(credentials)?;
        Ok(self.run("plan", true, prepared, Work::Plan(options)).await)
    }

    /// `verify`: current works, revoked is refused, age within policy, nothing half done.
    pub async fn verify(&self, credentials: Vec<Credential>) -> Result<RunReport, RunError> {
        let prepared = self.prepare(credentials)?;
        Ok(self.run("verify", true, prepared, Work::Verify).await)
    }

    /// `status`: what the store holds, without touching targets.
    pub async fn status(&self, credentials: Vec<Credential>) -> Result<RunReport, RunError> {
        let prepared = self.prepare(credentials)?;
        Ok(self.run("status", true, prepared, Work::Status).await)
    }

    async fn run(&self, command: &'static str, dry_run: bool, mut prepared: Vec<Pending>, work: Work) -> RunReport {
        let started = (SystemTime::now(), Instant::now());
        let parallel = self.settings.parallel.max(1);
        if !matches!(work, Work::Rotate(_)) {
            // Read-only work: one batch read per store instead of one read per credential
            // (a rotation reads its key fresh, under its lock).
            read_ahead(&mut prepared).await;
        } else if parallel > 1 {
            check_stores_once(&prepared).await;
        }
        let mut tasks = JoinSet::new();
        let count = prepared.len();
        let dead: DeadEndpoints = Arc::default();
        // In the order credentials finish; sorted back into configuration order at the
        // end. One list of `count` reports, not two (a list of slots by index, then the
        // reports copied out of it, held 4.4 MB twice at 10,000 credentials).
        let mut results: Vec<(usize, CredentialReport)> = Vec::with_capacity(count);
        // Who each running task works on, to report a task that panicked: only the
        // running ones (at most `parallel`), not every credential of the run.
        let mut running: std::collections::HashMap<tokio::task::Id, (usize, Identity)> =
            std::collections::HashMap::new();
        let mut panicked = 0;
        // At most `parallel` tasks exist at once, started in order as others finish: a
        // task (its future, with the credential's whole protocol state) is only built
        // when it can run, so memory does not grow with the number of credentials.
        let mut waiting = prepared.into_iter().enumerate();
        loop {
            while tasks.len() < parallel {
                let Some((index, pending)) = waiting.next() else {
                    break;
                };
                let p = match self.ready(pending) {
                    Ok(p) => p,
                    Err(report) => {
                        results.push((index, *report));
                        continue;
                    }
                };
                let identity = Identity::of(&p);
                let id = self.spawn_one(&mut tasks, &dead, &work, index, p);
                running.insert(id, (index, identity));
            }
            match tasks.join_next_with_id().await {
                Some(Ok((id, (index, report)))) => {
                    running.remove(&id);
                    results.push((index, self.kept(report)));
                }
                Some(Err(e)) => {
                    // A task that panicked: report it as failed, keep the others.
                    panicked += 1;
                    if let Some((index, who)) = running.remove(&e.id()) {
                        let mut rec = Recorder::new(
                            &self.run_id,
                            self.reporter.clone(),
                            &who.name,
                            who.target,
                            who.store,
                            &who.key,
                        );
                        let failed = rec.fail(
                            Step::Read,
                            FailureKind::Other,
                            "internal error: the rotation task panicked; re-run it",
                        );
                        results.push((index, self.kept(rec.finish(Err(failed)))));
                    }
                }
                None => break,
            }
        }
        debug_assert!(panicked == 0, "a credential task panicked");
        results.sort_unstable_by_key(|(index, _)| *index);
        // Collected in place: the same allocation, each report moved down over its index.
        let credentials: Vec<CredentialReport> = results.into_iter().map(|(_, report)| report).collect();
        self.report_of(command, dry_run, started, credentials)
    }

    /// The report of a run of `command` that started at `started`.
    fn report_of(
        &self,
        command: &'static str,
        dry_run: bool,
        started: (SystemTime, Instant),
        credentials: Vec<CredentialReport>,
    ) -> RunReport {
        RunReport {
            run_id: self.run_id.clone(),
            command,
            dry_run,
            started: rfc3339(started.0),
            duration_ms: started.1.elapsed().as_millis() as u64,
            credentials,
        }
    }

    /// Starts the task working on credential `index`.
    fn spawn_one(
        &self,
        tasks: &mut JoinSet<(usize, CredentialReport)>,
        dead: &DeadEndpoints,
        work: &Work,
        index: usize,
        p: Prepared,
    ) -> tokio::task::Id {
        {
            let dead = dead.clone();
            let reporter = self.reporter.clone();
            let run_id = self.run_id.clone();
            let failpoint = self.failpoint.clone();
            let interrupt = self.interrupt.clone();
            let clock = self.clock.clone();
            let work = work.clone();
            tasks
                .spawn(async move {
                    reporter.event(&super::event::Event::CredentialStarted {
                        credential: p.credential.name.clone(),
                    });
                    let endpoint = p.endpoint.clone();
                    let already_dead = endpoint
                        .as_ref()
                        .is_some_and(|e| dead.lock().unwrap_or_else(|p| p.into_inner()).contains(e));
                    if already_dead {
                        let mut rec = recorder_for(&run_id, reporter, &p).with_interrupt(interrupt);
                        let failed = rec.fail(
                            Step::Preflight,
                            FailureKind::Unreachable,
                            format!(
                            "skipped: host {} is unreachable (another credential on it could not connect in this run)",
                            endpoint.unwrap_or_default()
                        ),
                        );
                        return (index, rec.finish(Err(failed)));
                    }
                    let report =
                        one_credential(&run_id, reporter, interrupt, clock, p, &work, failpoint.as_deref()).await;
                    if let (Some(endpoint), Some(error)) = (endpoint, report.error.as_ref()) {
                        let target_step = matches!(
                            error.step,
                            Step::Preflight | Step::Resume | Step::Apply | Step::CheckCurrent
                        );
                        let target_work = matches!(work, Work::Rotate(_) | Work::Verify);
                        if error.kind == FailureKind::Unreachable && target_step && target_work {
                            dead.lock().unwrap_or_else(|p| p.into_inner()).insert(endpoint);
                        }
                    }
                    (index, report)
                })
                .id()
        }
    }

    /// `import`: stores an existing secret as current after checking it logs in.
    ///
    /// `read_doc` produces the document only once the credential's lock is held, so that
    /// a secret read from stdin cannot overwrite a rotation that finished meanwhile.
    pub async fn import(
        &self,
        credential: Credential,
        read_doc: impl FnOnce() -> Result<SecretDoc, String>,
        options: ImportOptions,
    ) -> Result<RunReport, RunError> {
        let started = (SystemTime::now(), Instant::now());
        let mut prepared = self.prepare(vec![credential])?;
        let p = prepared.pop().expect("one credential");
        let _locks = lock::acquire_all(&self.settings.lock_dir, std::slice::from_ref(&p.credential.name)).map_err(
            |e| match e {
                lock::LockError::Busy { .. } => RunError::Busy(e.to_string()),
                lock::LockError::Io { .. } => RunError::Lock(e.to_string()),
            },
        )?;
        let doc = read_doc().map_err(RunError::Input)?;
        let p = match self.ready(p) {
            Ok(p) => p,
            Err(report) => return Ok(self.report_of("import", false, started, vec![*report])),
        };
        let mut rec = self.recorder(&p);
        let status = import_one(&mut rec, &p, doc, options).await;
        Ok(self.report_of("import", false, started, vec![rec.finish(status)]))
    }

    /// `import --batch`: many existing secrets in one process: one lock pass, then each
    /// credential checked and stored in parallel (up to `parallel` at once).
    pub async fn import_batch(
        &self,
        items: Vec<(Credential, SecretDoc)>,
        options: ImportOptions,
    ) -> Result<RunReport, RunError> {
        let started = (SystemTime::now(), Instant::now());
        let (credentials, docs): (Vec<Credential>, Vec<SecretDoc>) = items.into_iter().unzip();
        let prepared = self.prepare(credentials)?;
        let names: Vec<String> = prepared.iter().map(|p| p.credential.name.clone()).collect();
        let _locks = lock::acquire_all(&self.settings.lock_dir, &names).map_err(|e| match e {
            lock::LockError::Busy { .. } => RunError::Busy(e.to_string()),
            lock::LockError::Io { .. } => RunError::Lock(e.to_string()),
        })?;
        let parallel = self.settings.parallel.max(1);
        let mut tasks = JoinSet::new();
        let count = prepared.len();
        let mut results: Vec<Option<CredentialReport>> = (0..count).map(|_| None).collect();
        // At most `parallel` tasks at once, as in `run`.
        let mut waiting = prepared.into_iter().zip(docs).enumerate();
        loop {
            while tasks.len() < parallel {
                let Some((index, (pending, doc))) = waiting.next() else {
                    break;
                };
                let p = match self.ready(pending) {
                    Ok(p) => p,
                    Err(report) => {
                        results[index] = Some(*report);
                        continue;
                    }
                };
                let mut rec = self.recorder(&p);
                tasks.spawn(async move {
                    let status = import_one(&mut rec, &p, doc, options).await;
                    (index, rec.finish(status))
                });
            }
            match tasks.join_next().await {
                Some(Ok((index, report))) => results[index] = Some(self.kept(report)),
                Some(Err(_)) => {}
                None => break,
            }
        }
        let credentials = results
            .into_iter()
            .zip(names)
            .map(|(report, name)| {
                report.unwrap_or_else(|| {
                    let mut rec = Recorder::new(
                        &self.run_id,
                        self.reporter.clone(),
                        &name,
                        String::new(),
                        String::new(),
                        "",
                    );
                    let failed = rec.fail(
                        Step::Import,
                        FailureKind::Other,
                        "internal error: the import task panicked",
                    );
                    self.kept(rec.finish(Err(failed)))
                })
            })
            .collect();
        Ok(self.report_of("import", false, started, credentials))
    }

    /// Every stored version of each credential, all in one store (for `leaked`: one read
    /// of a file store for any number of keys); each error is one line naming its
    /// credential. A key that does not exist is an empty state.
    pub async fn read_versions_many(&self, credentials: &[Credential]) -> Vec<Result<rekey_api::KeyState, String>> {
        let Some(first) = credentials.first() else {
            return Vec::new();
        };
        let store = match self.backends.store(&first.store) {
            Ok(store) => store,
            Err(e) => {
                return credentials
                    .iter()
                    .map(|c| Err(format!("{}: read: {e}", c.name)))
                    .collect()
            }
        };
        let keys: Vec<String> = credentials.iter().map(|c| c.key.clone()).collect();
        store
            .read_many(&keys)
            .await
            .into_iter()
            .zip(credentials)
            .map(|(result, c)| match result {
                Ok(state) => Ok(state),
                Err(e) if e.kind() == rekey_api::ErrorKind::NotFound => Ok(rekey_api::KeyState::default()),
                Err(e) => Err(format!("{}: read: {e}", c.name)),
            })
            .collect()
    }

    /// Every stored version of a credential (for `leaked`); the error is one line.
    pub async fn read_versions(&self, credential: &Credential) -> Result<rekey_api::KeyState, String> {
        let store = self
            .backends
            .store(&credential.store)
            .map_err(|e| format!("{}: read: {e}", credential.name))?;
        match store.read(&credential.key).await {
            Ok(state) => Ok(state),
            Err(e) if e.kind() == rekey_api::ErrorKind::NotFound => Ok(rekey_api::KeyState::default()),
            Err(e) => Err(format!("{}: read: {e}", credential.name)),
        }
    }

    /// Logs in with `doc` at the credential's target: `Ok(true)` when the target refuses
    /// it with its own authentication error, `Ok(false)` when it is accepted (for `leaked`,
    /// which re-proves a leaked value that the store says is already dead).
    pub async fn is_refused(&self, credential: &Credential, doc: &SecretDoc) -> Result<bool, String> {
        let target = self
            .backends
            .target(credential)
            .map_err(|e| format!("{}: configure target: {}", credential.name, e.message()))?;
        match target.login(doc).await {
            Ok(()) => Ok(false),
            Err(e) if e.kind() == rekey_api::ErrorKind::AuthRejected => Ok(true),
            Err(e) => Err(format!("{}: prove-dead: {e}", credential.name)),
        }
    }

    /// `get`: the stored document at `stage`.
    pub async fn get(&self, credential: &Credential, stage: Stage) -> Result<SecretDoc, String> {
        let store = self
            .backends
            .store(&credential.store)
            .map_err(|e| format!("{}: read: {e}", credential.name))?;
        let state = store
            .read(&credential.key)
            .await
            .map_err(|e| format!("{}: read: {e}", credential.name))?;
        state
            .stage(stage)
            .map(|v| v.doc.clone())
            .ok_or_else(|| format!("{}: read: no {stage} version stored", credential.name))
    }

    fn recorder(&self, p: &Prepared) -> Recorder {
        recorder_for(&self.run_id, self.reporter.clone(), p)
            .with_interrupt(self.interrupt.clone())
            .with_clock(self.clock.clone())
    }
}

/// Whom a running task works on: what its report names when the task panics.
struct Identity {
    name: String,
    target: String,
    store: String,
    key: String,
}

impl Identity {
    fn of(p: &Prepared) -> Self {
        Identity {
            name: p.credential.name.clone(),
            target: p.target.describe(),
            store: describe_store(&p.credential, &p.store),
            key: p.credential.key.clone(),
        }
    }
}

/// The credential's strategy is one the target declares (exit 2 otherwise, listing
/// them): the engine reads the capability rather than trusting every provider to refuse.
fn supports_strategy(credential: &Credential, target: &dyn Target) -> Result<(), RunError> {
    let supported = &target.capabilities().strategies;
    if supported.contains(&credential.strategy) {
        return Ok(());
    }
    let names: Vec<&str> = supported.iter().map(|s| s.as_str()).collect();
    Err(RunError::Config(format!(
        "{}: configure target: strategy \"{}\" is not supported by {} (supported: {})",
        credential.name,
        credential.strategy,
        target.describe(),
        names.join(", ")
    )))
}

fn describe_store(credential: &Credential, store: &Result<Arc<dyn Store>, ProviderError>) -> String {
    match store {
        Ok(s) => s.describe(),
        Err(_) => format!("store `{}`", credential.store),
    }
}

/// Before parallel rotations start, the preflight check of each store that holds several
/// of them, once (its result is not used: every credential runs it again): a store that
/// loads its whole state to answer (a file store parses its file and keeps it) does so
/// here, once, instead of once for each of the first `parallel` credentials reading it
/// at the same moment (16 copies of a 12 MB store file at once, at 10,000 credentials).
/// A store whose check is only a read of one key (Secrets Manager) is skipped: it
/// loads nothing shared, and the call would be wasted.
async fn check_stores_once(prepared: &[Pending]) {
    let mut seen: std::collections::BTreeMap<&str, (usize, &Pending)> = std::collections::BTreeMap::new();
    for p in prepared {
        seen.entry(p.credential.store.as_str()).or_insert((0, p)).0 += 1;
    }
    for (count, p) in seen.into_values() {
        if let (true, Ok(store)) = (count > 1, &p.store) {
            if store.capabilities().write_check_is_a_read {
                continue;
            }
            let _ = store.check_writable(&p.credential.key).await;
        }
    }
}

fn recorder_for(run_id: &str, reporter: Arc<dyn Reporter>, p: &Prepared) -> Recorder {
    let store = describe_store(&p.credential, &p.store);
    let mut rec = Recorder::new(
        run_id,
        reporter,
        &p.credential.name,
        p.target.describe(),
        store,
        &p.credential.key,
    );
    rec.report.strategy = Some(p.credential.strategy.as_str());
    rec
}

async fn one_credential(
    run_id: &str,
    reporter: Arc<dyn Reporter>,
    interrupt: Interrupt,
    clock: super::schedule::Clock,
    p: Prepared,
    work: &Work,
    failpoint: Option<&str>,
) -> CredentialReport {
    let mut rec = recorder_for(run_id, reporter, &p)
        .with_interrupt(interrupt)
        .with_clock(clock);
    let store = match &p.store {
        Ok(s) => s.clone(),
        Err(e) => {
            let failed = rec.fail(Step::Read, e.kind().into(), e.message());
            return rec.finish(Err(failed));
        }
    };
    let status = match work {
        Work::Rotate(options) => {
            let rotation = Rotation {
                credential: &p.credential,
                store,
                target: p.target.clone(),
                options,
                failpoint,
            };
            rotation.run(&mut rec).await
        }
        Work::Plan(options) => {
            inspection::plan(&mut rec, &p.credential, store.as_ref(), p.target.as_ref(), options).await
        }
        Work::Verify => inspection::verify(&mut rec, &p.credential, store.as_ref(), p.target.as_ref()).await,
        Work::Status => inspection::status(&mut rec, &p.credential, store.as_ref()).await,
    };
    rec.finish(status)
}

/// Stores one existing secret as current: checks it logs in (unless told not to, and then
/// refuses to replace a working current secret without `force`), then writes it.
async fn import_one(
    rec: &mut Recorder,
    p: &Prepared,
    mut doc: SecretDoc,
    options: ImportOptions,
) -> Result<Status, StepFailed> {
    let store = p
        .store
        .clone()
        .map_err(|e| rec.fail(Step::Read, e.kind().into(), e.message()))?;
    p.target.complete(&mut doc);
    if !options.check && !options.force {
        let state = super::rotation::read_state(rec, store.as_ref(), &p.credential.key).await?;
        if let Some(current) = state.current() {
            if p.target.login(&current.doc).await.is_ok() {
                return Err(rec.fail(
                    Step::Import,
                    FailureKind::Conflict,
                    "the stored current secret still logs in; importing an unverified secret over it \
                     could replace a working secret with a dead one (check it, or pass --force)",
                ));
            }
        }
    }
    if options.check {
        rec.run(Step::Verify, async {
            match p.target.login(&doc).await {
                Ok(()) => Ok(()),
                // A refusal may have a cause the target can name where a login cannot (a
                // PostgreSQL role past its VALID UNTIL is refused like a wrong password):
                // `verify` asks, at the cost of a second login, only when refused.
                Err(e) if e.kind() == rekey_api::ErrorKind::AuthRejected => {
                    let explained = match p.target.verify(&doc).await {
                        Err(v) if v.kind() == rekey_api::ErrorKind::AuthRejected => v,
                        _ => e,
                    };
                    Err(explained.context("the imported secret does not log in"))
                }
                Err(e) => Err(e.context("the imported secret does not log in")),
            }
        })
        .await?;
    } else {
        rec.skipped(Step::Verify, "--no-verify");
    }
    let version = uuid::Uuid::new_v4().to_string();
    rec.run(Step::Import, store.put_current(&p.credential.key, &version, &doc))
        .await?;
    rec.report.version = Some(version);
    Ok(Status::Imported)
}

/// Replaces each credential's store by one that read all the run's keys of that store
/// in one batch.
async fn read_ahead(prepared: &mut [Pending]) {
    let mut by_store: std::collections::BTreeMap<String, (Arc<dyn Store>, Vec<usize>)> =
        std::collections::BTreeMap::new();
    for (index, p) in prepared.iter().enumerate() {
        if let Ok(store) = &p.store {
            by_store
                .entry(p.credential.store.clone())
                .or_insert_with(|| (store.clone(), Vec::new()))
                .1
                .push(index);
        }
    }
    for (store, indices) in by_store.into_values() {
        if indices.len() < 2 {
            continue;
        }
        let keys: Vec<String> = indices.iter().map(|&i| prepared[i].credential.key.clone()).collect();
        let batched: Arc<dyn Store> = Arc::new(super::prefetch::Prefetched::read_ahead(store, keys).await);
        for i in indices {
            prepared[i].store = Ok(batched.clone());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::event::Event;
    use rekey_api::testing::{MemoryStore, ScriptedTarget, ScriptedTargetConfig};
    use rekey_api::Strategy;
    use std::collections::HashMap;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::time::Duration;

    /// One memory store; a scripted target per credential.
    struct Many {
        store: MemoryStore,
        targets: HashMap<String, ScriptedTarget>,
    }

    impl Backends for Many {
        fn store(&self, _name: &str) -> Result<Arc<dyn Store>, ProviderError> {
            Ok(Arc::new(self.store.clone()))
        }
        fn target(&self, credential: &Credential) -> Result<Arc<dyn Target>, ProviderError> {
            Ok(Arc::new(self.targets[&credential.name].clone()))
        }
    }

    /// Counts the step events it sees.
    #[derive(Default)]
    struct Steps(AtomicUsize);

    impl Reporter for Steps {
        fn event(&self, event: &Event) {
            if matches!(event, Event::Step { .. }) {
                self.0.fetch_add(1, Ordering::Relaxed);
            }
        }
    }

    fn credential(i: usize) -> Credential {
        Credential {
            name: format!("c{i}"),
            key: format!("k/{i}"),
            verify_attempts: 1,
            ..crate::engine::tests::harness::credential(Strategy::Single)
        }
    }

    /// [`Many`], counting the targets alive whenever one is built.
    struct CountingTargets {
        many: Many,
        issued: std::sync::Mutex<Vec<std::sync::Weak<dyn Target>>>,
        most_alive: AtomicUsize,
    }

    impl Backends for CountingTargets {
        fn store(&self, name: &str) -> Result<Arc<dyn Store>, ProviderError> {
            self.many.store(name)
        }
        fn target(&self, credential: &Credential) -> Result<Arc<dyn Target>, ProviderError> {
            let target = self.many.target(credential)?;
            let mut issued = self.issued.lock().unwrap();
            issued.retain(|t| t.strong_count() > 0);
            issued.push(Arc::downgrade(&target));
            self.most_alive.fetch_max(issued.len(), Ordering::Relaxed);
            Ok(target)
        }
    }

    /// Seven imported credentials on one memory store and their scripted targets.
    async fn seven() -> (Many, Vec<Credential>) {
        let store = MemoryStore::new();
        let mut targets = HashMap::new();
        let credentials: Vec<Credential> = (0..7).map(credential).collect();
        for c in &credentials {
            let target = ScriptedTarget::new(ScriptedTargetConfig::default());
            store.put_current(&c.key, "initial", &target.seed_new()).await.unwrap();
            targets.insert(c.name.clone(), target);
        }
        (Many { store, targets }, credentials)
    }

    /// Regression: every credential's target was built before the run and held to its
    /// end (6 MB for 10,000 PostgreSQL targets, for `status` too, which uses none). Now
    /// each is built when its credential's turn comes: at most `parallel` are alive.
    #[tokio::test]
    async fn at_most_parallel_targets_are_alive() {
        let (many, credentials) = seven().await;
        let backends = Arc::new(CountingTargets {
            many,
            issued: Default::default(),
            most_alive: AtomicUsize::new(0),
        });
        let lock_dir = tempfile::tempdir().unwrap();
        let settings = EngineSettings {
            parallel: 3,
            lock_dir: lock_dir.path().to_path_buf(),
        };
        let engine = Engine::new(settings, backends.clone(), Arc::new(Steps::default()));
        let options = RotateOptions {
            wait: Some(Duration::from_secs(10)),
            ..Default::default()
        };
        let run = engine.rotate(credentials.clone(), options).await.unwrap();
        assert!(run.credentials.iter().all(|c| c.status == Status::Rotated), "{run:?}");
        let most = backends.most_alive.load(Ordering::Relaxed);
        assert!((1..=3).contains(&most), "{most} targets alive at once");
        let run = engine.status(credentials).await.unwrap();
        assert_eq!(run.credentials.len(), 7);
        assert!(run.credentials.iter().all(|c| !c.target.is_empty()), "{run:?}");
        assert!(backends.most_alive.load(Ordering::Relaxed) <= 3);
    }

    /// Rotates 7 imported credentials, 3 at a time, keeping `retain`.
    async fn rotate_seven(retain: Retain) -> (RunReport, usize) {
        let (many, credentials) = seven().await;
        let lock_dir = tempfile::tempdir().unwrap();
        let settings = EngineSettings {
            parallel: 3,
            lock_dir: lock_dir.path().to_path_buf(),
        };
        let steps = Arc::new(Steps::default());
        let engine = Engine::new(settings, Arc::new(many), steps.clone()).with_retain(retain);
        let options = RotateOptions {
            wait: Some(Duration::from_secs(10)),
            ..Default::default()
        };
        let run = engine.rotate(credentials, options).await.expect("the run starts");
        (run, steps.0.load(Ordering::Relaxed))
    }

    #[tokio::test]
    async fn a_summary_run_reports_every_step_but_keeps_no_step_records() {
        let (full, seen_full) = rotate_seven(Retain::Everything).await;
        let (summary, seen) = rotate_seven(Retain::Summary).await;
        for run in [&full, &summary] {
            let names: Vec<&str> = run.credentials.iter().map(|c| c.name.as_str()).collect();
            assert_eq!(names, ["c0", "c1", "c2", "c3", "c4", "c5", "c6"], "in selection order");
            assert!(run.credentials.iter().all(|c| c.status == Status::Rotated), "{run:?}");
            assert!(run.credentials.iter().all(|c| c.version.is_some()));
        }
        let kept: usize = full.credentials.iter().map(|c| c.steps.len()).sum();
        assert_eq!(kept, seen_full, "everything: each reported step is kept");
        assert_eq!(seen, seen_full, "the reporters see the same steps either way");
        assert!(
            summary
                .credentials
                .iter()
                .flat_map(|c| &c.steps)
                .all(|s| matches!(s.outcome, super::super::event::Outcome::Skipped { .. })),
            "a summary keeps only skipped steps"
        );
    }
}
