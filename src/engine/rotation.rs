//! The rotation protocol for one credential: resume or start, generate, stage, apply,
//! verify, promote, revoke, prove dead. Every step is idempotent and the new secret is
//! durable in the store before the target is touched, so a crash anywhere leaves a
//! state the next run finishes.

use super::event::Step;
use super::failure::FailureKind;
use super::recorder::{rfc3339, Recorder, StepFailed};
use super::report::{Observed, Status};
use super::version;
use crate::config::Credential;
use rekey_api::{ErrorKind, KeyState, ProviderError, RevokeOptions, SecretDoc, Store, StoredVersion, Target};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

/// How a secret is checked against the target: a bare login, or the login plus the
/// target's own check (which tells, for example, an IAM key of another user apart).
#[derive(Debug, Clone, Copy)]
enum Check {
    Login,
    Verify,
}

/// How to rotate.
#[derive(Debug, Clone, Default)]
pub struct RotateOptions {
    /// Rotate only what is due, and finish deferred revocations.
    pub due_only: bool,
    /// Incident mode: revoke at once (no grace) and end the old secret's sessions.
    pub incident: bool,
    /// Overrides every credential's grace period.
    pub grace: Option<Duration>,
    /// `--wait`: wait this long for another run's locks instead of exiting 3 at once.
    pub wait: Option<Duration>,
    /// `--abandon-pending`: a pending version is revoked at the target and taken out of
    /// the store instead of being resumed; then a fresh rotation starts. Refused when the
    /// pending secret may be the live one (the current is refused, or revoking it failed).
    pub abandon_pending: bool,
}

/// A pending version younger than this, staged by another machine, is that runner's
/// rotation in progress.
pub const FRESH_PENDING: Duration = Duration::from_secs(120);

/// Version ids of rotations made in incident mode start with this, so that a later
/// incident run can tell "finish what the incident left" from "rotate again".
pub const INCIDENT_VERSION_PREFIX: &str = version::INCIDENT_PREFIX;

/// One credential's rotation, with everything it needs.
pub struct Rotation<'a> {
    /// The credential.
    pub credential: &'a Credential,
    /// Its store.
    pub store: Arc<dyn Store>,
    /// Its target.
    pub target: Arc<dyn Target>,
    /// Options of the run.
    pub options: &'a RotateOptions,
    /// Test failpoint: `after-stage`, `after-apply`, `after-verify`, `after-promote` hold
    /// the run there; `fail-stage` makes the store write fail without attempting it.
    pub failpoint: Option<&'a str>,
}

/// How a failed verify's message ends while the new secret stays pending.
const NEXT_RUN_FINISHES: &str = "; the next run finishes the rotation";

/// Reads a key; a key that does not exist is an empty state.
pub async fn read_state(rec: &mut Recorder, store: &dyn Store, key: &str) -> Result<KeyState, StepFailed> {
    read_state_as(rec, store, key, false).await
}

/// [`read_state`] for a rotation: [`Store::read_for_rotation`], which may leave out a
/// revoked previous version (a rotation never uses it; `verify` proves it dead and reads
/// it all).
async fn read_state_for_rotation(rec: &mut Recorder, store: &dyn Store, key: &str) -> Result<KeyState, StepFailed> {
    read_state_as(rec, store, key, true).await
}

async fn read_state_as(
    rec: &mut Recorder,
    store: &dyn Store,
    key: &str,
    for_rotation: bool,
) -> Result<KeyState, StepFailed> {
    rec.begin(Step::Read)?;
    let started = (SystemTime::now(), Instant::now());
    let read = if for_rotation {
        store.read_for_rotation(key).await
    } else {
        store.read(key).await
    };
    let state = match read {
        Ok(state) => {
            rec.ok_since(Step::Read, None, started);
            state
        }
        Err(e) if e.kind() == ErrorKind::NotFound => {
            rec.ok_since(Step::Read, None, started);
            KeyState::default()
        }
        // A store whose state keeps changing while it is read (another runner's
        // rotation moving labels) is busy, as a lost compare-and-set is: exit 3.
        Err(e) => return Err(rec.fail_since(Step::Read, store_failure(&e), e.message(), started)),
    };
    rec.report.observed = Some(Observed {
        current_created: state.current().map(|c| c.created),
        pending_created: state.pending().map(|p| p.created),
    });
    Ok(state)
}

impl Rotation<'_> {
    /// The grace before the previous secret is revoked; none when it was leaked.
    fn grace(&self, incident: bool) -> Duration {
        if incident {
            Duration::ZERO
        } else {
            self.options.grace.unwrap_or(self.credential.grace)
        }
    }

    /// The period after which the current secret is due: `every` plus the credential's
    /// stable jitter offset.
    fn due_period(&self) -> Duration {
        self.credential.every + super::schedule::jitter_offset(&self.credential.name, self.credential.jitter)
    }

    /// When the previous secret may be revoked: the grace promised when `current` was
    /// made (or this run's `--grace`, or the configured one); now in an incident.
    fn revoke_at(&self, current: &StoredVersion) -> SystemTime {
        if self.options.incident {
            return current.created;
        }
        version::revoke_at(current, self.options.grace, self.credential.grace)
    }

    /// Whether finishing `version` (the one replacing the previous secret) is incident
    /// work: this run was given `--leaked`, or an incident run made `version` and did not
    /// finish (then any run that finishes it ends the leaked secret's sessions too, rather
    /// than closing the incident without them).
    fn incident_for(&self, version: &str) -> bool {
        self.options.incident || version::is_incident(version)
    }

    /// Sessions are ended in an incident, and only by a target that declares it can
    /// (a target that cannot is not asked to).
    fn revoke_options(&self, incident: bool) -> RevokeOptions {
        RevokeOptions {
            terminate_sessions: incident && self.target.capabilities().terminate_sessions,
        }
    }

    /// Test failpoint: holds the run here until it is killed, or until a signal asks it
    /// to stop (then the next step boundary ends the run).
    async fn hold_if(&self, rec: &Recorder, name: &str) {
        if self.failpoint == Some(name) {
            rec.failpoint(name);
            while !rec.interrupt_requested() {
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        }
    }

    /// Runs the protocol and returns the credential's final status.
    pub async fn run(&self, rec: &mut Recorder) -> Result<Status, StepFailed> {
        let key = &self.credential.key;
        if self.options.incident {
            self.incident_preflight(rec).await;
        }
        if self.options.abandon_pending {
            self.abandon_unreadable(rec).await?;
        }
        let mut state = read_state_for_rotation(rec, self.store.as_ref(), key).await?;
        let now = rec.now();

        if self.options.abandon_pending {
            if let Some(pending) = state.pending() {
                self.abandon(rec, &state, pending).await?;
                state = read_state_for_rotation(rec, self.store.as_ref(), key).await?;
            }
        }
        if let Some(pending) = state.pending() {
            // A pending version another machine staged moments ago is that runner's
            // rotation in progress (it holds no lock here): leave it to it.
            let age = now.duration_since(pending.created).unwrap_or_default();
            let other_runner = version::runner_of(&pending.id).is_some_and(|r| r != version::host_tag());
            if other_runner && age < FRESH_PENDING && !self.options.abandon_pending {
                return Err(rec.fail(
                    Step::Resume,
                    FailureKind::Busy,
                    format!(
                        "another runner staged version {} {}s ago and is rotating it; rerun later (after {}s a rerun finishes it)",
                        pending.id,
                        age.as_secs(),
                        FRESH_PENDING.as_secs()
                    ),
                ));
            }
            let status = self.resume(rec, &state, pending).await?;
            if !self.options.incident || version::is_incident(&pending.id) {
                // A pending incident version was made after the leak: finishing it (with
                // the incident's revocation) is all that was left.
                return Ok(status);
            }
            // In an incident the leaked value may be the pending one itself: having
            // finished it, rotate once more so that nothing the leak could hold survives.
            let state = read_state_for_rotation(rec, self.store.as_ref(), &self.credential.key).await?;
            if let Some((previous, current)) = outstanding_revocation(&state) {
                self.finish_revocation(rec, previous, current).await?;
            }
            return self.start(rec, &state).await;
        }
        let mut outstanding = outstanding_revocation(&state);
        if self.options.incident {
            if let Some((previous, current)) = outstanding {
                if version::is_incident(&current.id) {
                    // An earlier incident run replaced the leaked secret and promoted the
                    // new one, then could not finish (ending sessions, revoking): finish
                    // only that; the current secret is not the leaked one.
                    rec.ok(
                        Step::Resume,
                        format!(
                            "incident version {} is current; finishing the revocation of the previous secret",
                            current.id
                        ),
                    );
                    self.finish_revocation(rec, previous, current).await?;
                    rec.report.version = Some(current.id.clone());
                    return Ok(Status::Revoked);
                }
            }
        }
        if self.options.due_only {
            if let Some((previous, current)) = outstanding {
                let revoke_at = self.revoke_at(current);
                if revoke_at <= now {
                    self.finish_revocation(rec, previous, current).await?;
                    outstanding = None;
                    if !is_due(&state, self.due_period(), now) {
                        return Ok(Status::Revoked);
                    }
                }
            }
            if !is_due(&state, self.due_period(), now) {
                let due = state
                    .current()
                    .map(|c| rfc3339(c.created + self.due_period()))
                    .unwrap_or_default();
                rec.report.next_due = Some(due.clone());
                rec.skipped(Step::Generate, format!("not due until {due}"));
                return Ok(Status::NotDue);
            }
            if let Some(window) = self.credential.window.as_ref().filter(|w| !w.contains(now)) {
                let opens = rfc3339(window.next_open(now));
                rec.report.next_due = Some(opens.clone());
                rec.skipped(
                    Step::Generate,
                    format!(
                        "due, but outside its rotation window ({}); it opens {opens}",
                        window.describe()
                    ),
                );
                return Ok(Status::NotDue);
            }
        }
        // A previous secret not yet revoked would lose its stage to this rotation and be
        // forgotten while still valid: revoke it first — but not inside its grace period
        // (applications may still use it), unless this is an incident.
        if let Some((previous, current)) = outstanding {
            let grace_until = self.revoke_at(current);
            if grace_until > now && !self.target.capabilities().apply_invalidates_previous {
                return Err(rec.fail(
                    Step::Revoke,
                    FailureKind::Conflict,
                    format!(
                        "the previous secret's grace period runs until {}; rotating now would revoke it early \
                         (wait, or pass --grace 0s to revoke it now, or --leaked in an incident)",
                        rfc3339(grace_until)
                    ),
                ));
            }
            self.finish_revocation(rec, previous, current).await?;
        }
        self.start(rec, &state).await
    }

    async fn start(&self, rec: &mut Recorder, state: &KeyState) -> Result<Status, StepFailed> {
        let key = &self.credential.key;
        let current = state.current().map(|v| &v.doc);
        // Read-only checks first (reachable, user exists, admin may change it), so that
        // a rotation that cannot succeed fails before the store or the target changes.
        if self.target.capabilities().mints_own_secret {
            // Before precheck: an orphan counts against limits such as IAM's two keys.
            self.sweep(rec, state).await?;
        }
        // The store first: one that would refuse the promote (a Vault token that may write
        // rekey's versions but not the application's key) must fail the run before apply,
        // not after it (where `single` has already replaced the stored current's password).
        let checks = async {
            self.store_writable().await?;
            self.target.precheck(current).await
        };
        if self.options.incident {
            // The incident preflight already recorded this run's `preflight` step: the
            // precheck adds a record only when it fails (not a second `preflight`).
            rec.begin(Step::Preflight)?;
            let started = (SystemTime::now(), Instant::now());
            if let Err(e) = checks.await {
                return Err(rec.fail_since(Step::Preflight, e.kind().into(), e.message(), started));
            }
        } else {
            rec.run(Step::Preflight, checks).await?;
        }
        let password = self.credential.password.generate();
        let new = rec.run(Step::Generate, self.target.prepare(current, password)).await?;
        let version = version::new_id(self.options.incident, self.options.grace);
        let started = (SystemTime::now(), Instant::now());
        let staged = if self.failpoint == Some("fail-stage") {
            Err(ProviderError::unreachable(
                "failpoint fail-stage: the store write was not attempted",
            ))
        } else {
            self.store.stage_pending(key, &version, &new).await
        };
        if let Err(e) = staged {
            let message = match self.discard_minted(&new, current).await {
                Some(note) => format!("{}; {note}", e.message()),
                None => e.message().to_owned(),
            };
            return Err(rec.fail_since(Step::Stage, store_failure(&e), message, started));
        }
        rec.ok_since(Step::Stage, Some(format!("version {version}")), started);
        self.hold_if(rec, "after-stage").await;
        rec.run(Step::Apply, self.target.apply(&new, current)).await?;
        self.hold_if(rec, "after-apply").await;
        if let Err(failed) = self.verify_new(rec, &new, None).await {
            self.promote_unverified(rec, state.current(), &version).await;
            return Err(failed);
        }
        self.hold_if(rec, "after-verify").await;
        rec.report.version = Some(version.clone());
        self.complete(rec, state.current(), &version, &new).await?;
        Ok(Status::Rotated)
    }

    /// Runs the credential's `on_rotate` hooks; every hook runs, a failure is recorded.
    async fn run_hooks(&self, rec: &mut Recorder, version: &str) -> Result<(), StepFailed> {
        let mut result = Ok(());
        for argv in &self.credential.on_rotate {
            let context = super::hooks::HookContext {
                credential: self.credential.name.clone(),
                version: version.to_owned(),
                store: rec.report.store.clone(),
                key: self.credential.key.clone(),
            };
            let started = (SystemTime::now(), Instant::now());
            let command = super::hooks::describe(argv);
            match super::hooks::run(argv, &context, self.credential.hook_timeout).await {
                Ok(output) => {
                    let detail = if output.is_empty() {
                        command
                    } else {
                        format!("{command}: {output}")
                    };
                    rec.ok_since(Step::Hook, Some(detail), started);
                }
                Err(reason) => {
                    result = Err(rec.fail_since(
                        Step::Hook,
                        FailureKind::HookFailed,
                        format!("rotated and promoted; hook `{command}` failed: {reason}"),
                        started,
                    ));
                }
            }
        }
        result
    }

    /// What the incident needs beyond rotation (ending sessions), said before anything
    /// changes. Never stops the rotation: the leaked secret must die either way.
    async fn incident_preflight(&self, rec: &mut Recorder) {
        let started = (SystemTime::now(), Instant::now());
        let detail = match self.target.incident_preflight().await {
            Ok(facts) => facts.join("; "),
            Err(e) => format!(
                "warning: sessions will NOT be ended ({}); the leaked secret is still replaced and proved dead",
                e.message()
            ),
        };
        rec.ok_since(Step::Preflight, Some(detail), started);
    }

    /// Minted secrets stored nowhere (a crash between mint and stage, or a mint whose
    /// answer was lost) are removed before minting again.
    async fn sweep(&self, rec: &mut Recorder, state: &KeyState) -> Result<(), StepFailed> {
        let stored: Vec<&SecretDoc> = state.versions.iter().map(|v| &v.doc).collect();
        let since = state
            .versions
            .iter()
            .map(|v| v.created)
            .max()
            .unwrap_or(std::time::UNIX_EPOCH);
        rec.begin(Step::Sweep)?;
        let started = (SystemTime::now(), Instant::now());
        match self.target.sweep_unstored(&stored, since).await {
            Ok(removed) if removed.is_empty() => Ok(()),
            Ok(removed) => {
                rec.ok_since(
                    Step::Sweep,
                    Some(format!(
                        "removed {} minted secret(s) stored nowhere (left by an interrupted rotation): {}",
                        removed.len(),
                        removed.join(", ")
                    )),
                    started,
                );
                Ok(())
            }
            Err(e) => Err(rec.fail_since(Step::Sweep, e.kind().into(), e.message(), started)),
        }
    }

    /// A secret minted by the target (an IAM key, a secret-id) that could not be stored
    /// is stored nowhere: remove it again rather than leave it alive and unknown (an IAM
    /// user can hold only two keys). Returns what happened, for the error message.
    async fn discard_minted(&self, minted: &SecretDoc, current: Option<&SecretDoc>) -> Option<String> {
        if !self.target.capabilities().mints_own_secret {
            return None;
        }
        let current = current?;
        // The write may have landed although it reported failure (a timeout): a minted
        // secret that is stored as pending must stay.
        match self.store.read(&self.credential.key).await {
            Ok(state) if state.pending().is_some_and(|p| p.doc == *minted) => {
                return Some("the minted secret did reach the store; the next run finishes it".to_owned())
            }
            Ok(_) => {}
            Err(_) => return Some("the minted secret was kept: the store cannot tell whether it holds it".to_owned()),
        }
        Some(
            match self.target.revoke(minted, current, RevokeOptions::default()).await {
                Ok(_) => "the secret the target minted for it was removed again".to_owned(),
                Err(e) => format!("the secret the target minted for it could not be removed ({e}); remove it by hand"),
            },
        )
    }

    async fn resume(
        &self,
        rec: &mut Recorder,
        state: &KeyState,
        pending: &StoredVersion,
    ) -> Result<Status, StepFailed> {
        rec.report.resumed = true;
        let current = state.current().map(|v| &v.doc);
        let started = (SystemTime::now(), Instant::now());
        let detail = format!("pending version {} staged {}", pending.id, rfc3339(pending.created));
        match self.target.login(&pending.doc).await {
            Ok(()) => {
                rec.ok_since(
                    Step::Resume,
                    Some(format!("{detail}; the target already accepts it")),
                    started,
                );
                rec.skipped(Step::Apply, "the target already accepts the pending secret");
            }
            Err(e) if e.kind() == ErrorKind::AuthRejected => {
                rec.ok_since(Step::Resume, Some(format!("{detail}; not yet applied")), started);
                // As for a fresh rotation: a store that would refuse the promote fails
                // the run before the target changes.
                rec.run(Step::Preflight, self.store_writable()).await?;
                rec.run(Step::Apply, self.target.apply(&pending.doc, current)).await?;
            }
            Err(e) => {
                return Err(rec.fail_since(
                    Step::Resume,
                    e.kind().into(),
                    format!(
                        "cannot tell whether pending version {} was applied: {}{}",
                        pending.id,
                        e.message(),
                        self.abandon_pending_hint(&e, current, Check::Login).await
                    ),
                    started,
                ));
            }
        }
        if let Err(failed) = self.verify_new(rec, &pending.doc, Some((&pending.id, current))).await {
            self.promote_unverified(rec, state.current(), &pending.id).await;
            return Err(failed);
        }
        rec.report.version = Some(pending.id.clone());
        self.complete(rec, state.current(), &pending.id, &pending.doc).await?;
        Ok(Status::Rotated)
    }

    /// The store's write check on the credential's key, where it tells more than a read
    /// (see [`rekey_api::StoreCapabilities::write_check_is_a_read`]): run before the
    /// target is changed, so a store that would refuse the promote fails the run first.
    async fn store_writable(&self) -> rekey_api::ProviderResult<()> {
        if self.store.capabilities().write_check_is_a_read {
            return Ok(());
        }
        self.store.check_writable(&self.credential.key).await
    }

    /// The way out when a pending version is itself the problem (staged for another
    /// user, by something else): `e` says the document is not valid for this credential
    /// while the current secret, checked the same way, passes. A configuration or
    /// connection problem fails both, and dropping the pending version would not fix it.
    async fn abandon_pending_hint(&self, e: &ProviderError, current: Option<&SecretDoc>, check: Check) -> String {
        if e.kind() != ErrorKind::InvalidInput {
            return String::new();
        }
        let current_passes = match (current, check) {
            (Some(current), Check::Login) => self.target.login(current).await.is_ok(),
            (Some(current), Check::Verify) => self.target.verify(current).await.is_ok(),
            (None, _) => false,
        };
        if !current_passes {
            return String::new();
        }
        format!(
            "; if it was not staged for this credential, `rekey rotate {} --abandon-pending` drops it",
            self.credential.name
        )
    }

    /// Fresh logins with the new secret, retried with backoff for propagation delay. When
    /// `resumed` is set, `new` is a pending version found in the store (its id, and the
    /// current secret): a failure names `--abandon-pending` when the pending document is
    /// the problem.
    async fn verify_new(
        &self,
        rec: &mut Recorder,
        new: &SecretDoc,
        resumed: Option<(&str, Option<&SecretDoc>)>,
    ) -> Result<(), StepFailed> {
        rec.begin(Step::Verify)?;
        let started = (SystemTime::now(), Instant::now());
        let attempts = self.credential.verify_attempts;
        let mut delay = Duration::from_millis(250);
        let mut last: Option<ProviderError> = None;
        for attempt in 1..=attempts {
            match self.target.verify(new).await {
                Ok(()) => {
                    let detail = (attempt > 1).then(|| format!("accepted on attempt {attempt}"));
                    rec.ok_since(Step::Verify, detail, started);
                    return Ok(());
                }
                Err(e) => {
                    let again = e.is_retryable() || e.kind() == ErrorKind::AuthRejected;
                    last = Some(e);
                    if !again || attempt == attempts {
                        break;
                    }
                    tokio::time::sleep(delay).await;
                    delay = (delay * 2).min(Duration::from_secs(5));
                }
            }
        }
        let e = last.expect("at least one attempt");
        let hint = match resumed {
            Some((_, current)) => self.abandon_pending_hint(&e, current, Check::Verify).await,
            None => String::new(),
        };
        let message = match resumed {
            Some((id, _)) if !hint.is_empty() => {
                format!("pending version {id} cannot be used ({}){hint}", e.message())
            }
            _ => format!("the new secret does not work ({}){NEXT_RUN_FINISHES}", e.message()),
        };
        Err(rec.fail_since(Step::Verify, e.kind().into(), message, started))
    }

    /// Promote, revoke and prove dead, in the order the target's capabilities allow.
    async fn complete(
        &self,
        rec: &mut Recorder,
        previous: Option<&StoredVersion>,
        version: &str,
        new: &SecretDoc,
    ) -> Result<(), StepFailed> {
        let previous = previous.filter(|p| p.id != version);
        let incident = self.incident_for(version);
        rec.report.fingerprint = Some(new.fingerprint());
        if let Some(p) = previous {
            rec.report.previous_version = Some(p.id.clone());
            rec.report.previous_fingerprint = Some(p.doc.fingerprint());
        }
        if self.target.capabilities().apply_invalidates_previous {
            // Apply already replaced the old secret: prove it dead now, then promote and
            // record the revocation in one write.
            let proved = match previous {
                Some(p) => self.prove_dead(rec, &p.doc).await,
                None => {
                    rec.skipped(Step::ProveDead, "no previous secret stored");
                    Ok(())
                }
            };
            // The new secret works and the old one is gone at the target: promote now,
            // before anything that can fail for another reason (ending sessions), so
            // that applications reading the store never get the dead secret. In incident
            // mode the old version is recorded as revoked only once its sessions are
            // ended too; until then a rerun of the incident finishes just that.
            let sessions_left = previous.is_some() && incident;
            self.promote(rec, version, proved.is_ok() && previous.is_some() && !sessions_left)
                .await?;
            self.hold_if(rec, "after-promote").await;
            let hooks = self.run_hooks(rec, version).await;
            proved?;
            if let Some(p) = previous {
                self.end_sessions(rec, p, new, incident).await?;
                if sessions_left {
                    self.record_revoked(rec, &p.id).await?;
                }
            }
            return hooks;
        }
        self.promote(rec, version, false).await?;
        self.hold_if(rec, "after-promote").await;
        // Consumers reload while both secrets still work; a failing hook is reported,
        // and the rotation still completes.
        let hooks = self.run_hooks(rec, version).await;
        self.finish_complete(rec, previous, new, incident).await?;
        hooks
    }

    async fn finish_complete(
        &self,
        rec: &mut Recorder,
        previous: Option<&StoredVersion>,
        new: &SecretDoc,
        incident: bool,
    ) -> Result<(), StepFailed> {
        let Some(previous) = previous else {
            rec.skipped(Step::Revoke, "no previous secret stored");
            return Ok(());
        };
        let grace = self.grace(incident);
        if grace.is_zero() {
            self.revoke_and_prove(rec, previous, new, incident).await
        } else {
            if self.target.capabilities().retires_previous {
                let started = (SystemTime::now(), Instant::now());
                match self.target.retire(&previous.doc, new).await {
                    Ok(Some(done)) => rec.ok_since(Step::Retire, Some(done), started),
                    Ok(None) => {}
                    Err(e) => return Err(rec.fail_since(Step::Retire, e.kind().into(), e.message(), started)),
                }
            }
            let now = rec.now();
            let at = rfc3339(now.checked_add(grace).unwrap_or(now));
            rec.skipped(
                Step::Revoke,
                format!("deferred until {at} (grace); `rekey rotate --due` finishes it"),
            );
            Ok(())
        }
    }

    async fn finish_revocation(
        &self,
        rec: &mut Recorder,
        previous: &StoredVersion,
        current: &StoredVersion,
    ) -> Result<(), StepFailed> {
        let incident = self.incident_for(&current.id);
        self.revoke_and_prove(rec, previous, &current.doc, incident).await
    }

    /// Revokes `old`, proves it refused and records it; `incident`: also ends its
    /// sessions, and a failure to end them is [`FailureKind::SessionsNotEnded`].
    async fn revoke_and_prove(
        &self,
        rec: &mut Recorder,
        old: &StoredVersion,
        new: &SecretDoc,
        incident: bool,
    ) -> Result<(), StepFailed> {
        rec.begin(Step::Revoke)?;
        let started = (SystemTime::now(), Instant::now());
        match self.target.revoke(&old.doc, new, self.revoke_options(incident)).await {
            Ok(report) => {
                rec.report.sessions_terminated += report.sessions_terminated;
                let detail = revoke_detail(&report);
                rec.ok_since(Step::Revoke, detail, started);
            }
            Err(e) => {
                // The old secret may be gone already (the provider removed it and then
                // failed to end its sessions): prove it, so the report says which.
                let dead = matches!(self.target.login(&old.doc).await, Err(l) if l.kind() == ErrorKind::AuthRejected);
                let (kind, message) = if dead && incident {
                    (
                        FailureKind::SessionsNotEnded,
                        format!(
                            "rotated and promoted; the old secret is refused, but its sessions were NOT ended: {}; \
                             rerun `rekey rotate --leaked {}` once the admin may end them",
                            e.message(),
                            self.credential.name
                        ),
                    )
                } else {
                    (
                        e.kind().into(),
                        format!(
                            "rotated and promoted (the store's current secret works), but revoking the previous one failed: {}",
                            e.message()
                        ),
                    )
                };
                return Err(rec.fail_since(Step::Revoke, kind, message, started));
            }
        }
        self.prove_dead(rec, &old.doc).await?;
        self.record_revoked(rec, &old.id).await
    }

    /// `single` after promotion: apply already removed the old secret; revoke only ends
    /// its sessions where asked (incident mode or the target's `terminate_sessions`).
    async fn end_sessions(
        &self,
        rec: &mut Recorder,
        old: &StoredVersion,
        new: &SecretDoc,
        incident: bool,
    ) -> Result<(), StepFailed> {
        rec.begin(Step::Revoke)?;
        let started = (SystemTime::now(), Instant::now());
        match self.target.revoke(&old.doc, new, self.revoke_options(incident)).await {
            Ok(report) => {
                rec.report.sessions_terminated += report.sessions_terminated;
                let detail = revoke_detail(&report);
                rec.ok_since(Step::Revoke, detail, started);
                Ok(())
            }
            Err(e) => {
                let rerun = if incident {
                    format!(
                        "rerun `rekey rotate --leaked {}` once the admin may end them",
                        self.credential.name
                    )
                } else {
                    "the next rotation ends them".to_owned()
                };
                Err(rec.fail_since(
                    Step::Revoke,
                    FailureKind::SessionsNotEnded,
                    format!(
                        "rotated and promoted; the old secret is refused, but its sessions were NOT ended: {}; {rerun}",
                        e.message()
                    ),
                    started,
                ))
            }
        }
    }

    async fn promote(&self, rec: &mut Recorder, version: &str, previous_revoked: bool) -> Result<(), StepFailed> {
        rec.begin(Step::Promote)?;
        let started = (SystemTime::now(), Instant::now());
        match self
            .store
            .promote(&self.credential.key, version, previous_revoked)
            .await
        {
            Ok(()) => {
                rec.ok_since(Step::Promote, Some(format!("version {version} is current")), started);
                Ok(())
            }
            Err(e) => Err(rec.fail_since(Step::Promote, store_failure(&e), e.message(), started)),
        }
    }

    async fn record_revoked(&self, rec: &mut Recorder, version: &str) -> Result<(), StepFailed> {
        rec.begin(Step::Record)?;
        let started = (SystemTime::now(), Instant::now());
        match self.store.mark_revoked(&self.credential.key, version).await {
            Ok(()) => {
                rec.ok_since(Step::Record, None, started);
                Ok(())
            }
            Err(e) => Err(rec.fail_since(Step::Record, store_failure(&e), e.message(), started)),
        }
    }

    /// Verify of a new secret failed. For targets where apply already replaced the old
    /// secret, the store's current version may now be a secret the target refuses: if
    /// the old secret is proved refused, the applied one is promoted (the failure stays
    /// reported) so that applications never read a dead secret. Otherwise nothing
    /// changes: the new secret stays pending for the next run.
    async fn promote_unverified(&self, rec: &mut Recorder, current: Option<&StoredVersion>, version: &str) {
        if !self.target.capabilities().apply_invalidates_previous || rec.interrupt_requested() {
            return;
        }
        // Only when verify failed for a reason other than the new secret itself: a new
        // secret the target refuses stays pending (the next run applies it again).
        if rec
            .report
            .error
            .as_ref()
            .is_some_and(|e| e.kind == FailureKind::AuthRejected)
        {
            return;
        }
        let Some(current) = current.filter(|c| c.id != version) else {
            return;
        };
        let started = (SystemTime::now(), Instant::now());
        match self.target.login(&current.doc).await {
            Err(e) if e.kind() == ErrorKind::AuthRejected => {
                rec.ok_since(
                    Step::ProveDead,
                    Some("the previous secret is refused: apply replaced it".into()),
                    started,
                );
                // The old secret is dead and the applied one is the only candidate left:
                // applications must not keep reading a secret the target refuses.
                if self.promote(rec, version, true).await.is_ok() {
                    rec.report.version = Some(version.to_owned());
                    if let Some(error) = rec.report.error.as_mut() {
                        // Nothing is left for a next run: say what happened instead.
                        if let Some(cause) = error.message.strip_suffix(NEXT_RUN_FINISHES) {
                            error.message = format!(
                                "{cause}; the applied secret was promoted (the target refuses the old one): fix the cause, then check with `rekey verify`"
                            );
                        }
                    }
                    rec.report.warnings.push(
                        "promoted although verify failed: apply replaced the old secret, which the target now refuses"
                            .to_owned(),
                    );
                }
            }
            _ => rec.skipped(
                Step::Promote,
                "the previous secret is not proved dead: the new one stays pending",
            ),
        }
    }

    /// `--abandon-pending` on a pending version the store refuses to read (one no rekey
    /// run can resume, such as a value that is not a JSON object): take it out of the
    /// store before reading. The target never saw it.
    async fn abandon_unreadable(&self, rec: &mut Recorder) -> Result<(), StepFailed> {
        let started = (SystemTime::now(), Instant::now());
        match self.store.discard_unreadable_pending(&self.credential.key).await {
            Ok(None) => Ok(()),
            Ok(Some(id)) => {
                rec.ok_since(
                    Step::Abandon,
                    Some(format!(
                        "pending version {id} (unreadable, not rekey's) abandoned; kept in the store's history"
                    )),
                    started,
                );
                Ok(())
            }
            Err(e) => Err(rec.fail_since(
                Step::Abandon,
                store_failure(&e),
                format!(
                    "could not take the unreadable pending version out of the store: {}",
                    e.message()
                ),
                started,
            )),
        }
    }

    /// `--abandon-pending`: revoke the pending secret where it may live at the target
    /// (best effort, reported), then take it out of the store, keeping it in history.
    async fn abandon(&self, rec: &mut Recorder, state: &KeyState, pending: &StoredVersion) -> Result<(), StepFailed> {
        rec.begin(Step::Abandon)?;
        let started = (SystemTime::now(), Instant::now());
        let caps = self.target.capabilities();
        let current = state.current();
        // Never trade a pending secret that may be the live one for a dead current: the
        // target must be reachable and configured, and where one password replaces the
        // other, must accept the current secret.
        let refuse = |reason: String| {
            format!(
                "not abandoning pending version {}: {reason}; `rekey rotate {}` finishes it once the target answers",
                pending.id, self.credential.name
            )
        };
        if caps.apply_invalidates_previous {
            if let Some(current) = current {
                if let Err(e) = self.target.login(&current.doc).await {
                    let reason = if e.kind() == ErrorKind::AuthRejected {
                        "the target refuses the current secret, so the pending one may be the live password".to_owned()
                    } else {
                        format!("the current secret cannot be checked ({})", e.message())
                    };
                    return Err(rec.fail_since(Step::Abandon, e.kind().into(), refuse(reason), started));
                }
            }
        }
        let target_note = if caps.apply_invalidates_previous {
            // One user, one password: the fresh rotation that follows replaces whatever
            // the pending secret set.
            "the fresh rotation replaces it at the target".to_owned()
        } else {
            match current {
                Some(current) => match self
                    .target
                    .revoke(&pending.doc, &current.doc, RevokeOptions::default())
                    .await
                {
                    Ok(_) => "revoked at the target".to_owned(),
                    // Gone already (deleted by hand, never created) or refused as a login:
                    // nothing of it lives at the target.
                    Err(e) if matches!(e.kind(), ErrorKind::NotFound | ErrorKind::AuthRejected) => {
                        format!("already gone at the target ({})", e.message())
                    }
                    // It may still live at the target: dropping it from the store would
                    // forget a working secret.
                    Err(e) => {
                        let reason = format!("it could not be revoked at the target ({})", e.message());
                        return Err(rec.fail_since(Step::Abandon, e.kind().into(), refuse(reason), started));
                    }
                },
                None => "no current secret to revoke it with; check the target by hand".to_owned(),
            }
        };
        match self.store.discard_pending(&self.credential.key, &pending.id).await {
            Ok(()) => {
                rec.ok_since(
                    Step::Abandon,
                    Some(format!(
                        "pending version {} (staged {}) abandoned: {target_note}; kept in the store's history",
                        pending.id,
                        rfc3339(pending.created)
                    )),
                    started,
                );
                Ok(())
            }
            Err(e) => Err(rec.fail_since(
                Step::Abandon,
                store_failure(&e),
                format!(
                    "could not take pending version {} out of the store: {}",
                    pending.id,
                    e.message()
                ),
                started,
            )),
        }
    }

    /// The old secret must be refused with the target's own authentication error.
    async fn prove_dead(&self, rec: &mut Recorder, old: &SecretDoc) -> Result<(), StepFailed> {
        prove_dead(rec, self.target.as_ref(), old).await
    }
}

/// Logs in with `old`; only an authentication refusal counts as dead.
pub async fn prove_dead(rec: &mut Recorder, target: &dyn Target, old: &SecretDoc) -> Result<(), StepFailed> {
    rec.begin(Step::ProveDead)?;
    let started = (SystemTime::now(), Instant::now());
    match target.login(old).await {
        Err(e) if e.kind() == ErrorKind::AuthRejected => {
            rec.ok_since(
                Step::ProveDead,
                Some(format!("the previous secret is refused ({})", e.message())),
                started,
            );
            Ok(())
        }
        Ok(()) => Err(rec.fail_since(
            Step::ProveDead,
            FailureKind::StillValid,
            "the previous secret still works",
            started,
        )),
        Err(e) => Err(rec.fail_since(
            Step::ProveDead,
            e.kind().into(),
            format!("could not prove the previous secret dead: {}", e.message()),
            started,
        )),
    }
}

/// The previous version and the current one, when the previous is not yet revoked.
pub fn outstanding_revocation(state: &KeyState) -> Option<(&StoredVersion, &StoredVersion)> {
    let previous = state.previous().filter(|p| p.revoked.is_none())?;
    let current = state.current()?;
    (!current.doc.same_password(&previous.doc) || current.doc.username() != previous.doc.username())
        .then_some((previous, current))
}

/// Whether the key needs a rotation: no current version, or the current one is older
/// than the period.
pub fn is_due(state: &KeyState, every: Duration, now: SystemTime) -> bool {
    match state.current() {
        None => true,
        Some(c) => c.created + every <= now,
    }
}

/// A store write that lost a compare-and-set lost it to another runner doing the same
/// work (perhaps on another machine): that is "busy" (exit 3), not a failure.
fn store_failure(e: &ProviderError) -> FailureKind {
    if e.kind() == ErrorKind::Conflict {
        FailureKind::Busy
    } else {
        e.kind().into()
    }
}

/// What a revoke did, for the step's detail: sessions ended and the target's notes.
fn revoke_detail(report: &rekey_api::RevokeReport) -> Option<String> {
    let mut parts = Vec::new();
    if report.sessions_terminated > 0 {
        parts.push(format!("{} session(s) ended", report.sessions_terminated));
    }
    parts.extend(report.notes.iter().cloned());
    (!parts.is_empty()).then(|| parts.join("; "))
}
