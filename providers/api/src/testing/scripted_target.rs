//! [`ScriptedTarget`]: a FAKE target that really checks secrets, with injectable faults.

use super::plan::{execute, lock, settle, Outcome, Plan};
use super::{Clock, Crash, Fault, TargetOp};
use crate::capability::TargetCapabilities;
use crate::conformance::random_password;
use crate::document::SecretDoc;
use crate::error::{ErrorKind, ProviderError, ProviderResult};
use crate::secret::Secret;
use crate::strategy::Strategy;
use crate::target::{RevokeOptions, RevokeReport, Target};
use async_trait::async_trait;
use std::collections::BTreeMap;
use std::fmt;
use std::sync::{Arc, Mutex};
use std::time::SystemTime;

/// The document field naming a minted key (with `password` holding its secret).
pub const ACCESS_KEY_ID: &str = "access_key_id";

/// The `engine` field [`ScriptedTarget`] writes into documents.
pub const FAKE_ENGINE: &str = "fake";

/// How many passwords (dual) or keys (minting) one user may hold at once.
pub(crate) const MAX_PER_USER: usize = 2;

/// What the fake target is. [`ScriptedTarget::new`] panics on a configuration no real
/// target could have (see there).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ScriptedTargetConfig {
    /// The configured strategy: `single` (apply replaces the user's password), `dual`
    /// (apply adds it; at most two held; revoke removes the old one) or `alternating`
    /// (two users take turns).
    pub strategy: Strategy,
    /// The target mints its own secrets, as IAM does (`dual` only): `prepare` creates a
    /// key (`access_key_id` plus its secret in `password`), accepted at once; revoke
    /// deletes it; a user holds at most two keys.
    pub mints_own_secret: bool,
    /// The target can end the sessions of an old secret (declared in
    /// [`TargetCapabilities::terminate_sessions`]). Revoke ends them when asked
    /// ([`RevokeOptions::terminate_sessions`]); without the ability, being asked is an
    /// error (`invalid_input`), so that a caller ignoring the capability shows.
    pub terminate_sessions: bool,
    /// Ending sessions is refused: a revoke asked to end sessions invalidates the old
    /// secret, then fails with [`ErrorKind::PermissionDenied`] (a PostgreSQL CREATEROLE
    /// admin without `pg_signal_backend`).
    pub deny_terminate_sessions: bool,
    /// The users: one for `single` and `dual`, two for `alternating`.
    pub usernames: Vec<String>,
}

impl Default for ScriptedTargetConfig {
    /// `single`, user `app`, sessions can be ended, nothing denied, nothing minted.
    fn default() -> Self {
        ScriptedTargetConfig {
            strategy: Strategy::Single,
            mints_own_secret: false,
            terminate_sessions: true,
            deny_terminate_sessions: false,
            usernames: vec!["app".to_owned()],
        }
    }
}

impl ScriptedTargetConfig {
    /// The default configuration for `strategy`: user `app`, or users `app_a` and
    /// `app_b` for `alternating`.
    pub fn for_strategy(strategy: Strategy) -> Self {
        let usernames = match strategy {
            Strategy::Alternating => vec!["app_a".to_owned(), "app_b".to_owned()],
            Strategy::Single | Strategy::Dual => vec!["app".to_owned()],
        };
        ScriptedTargetConfig {
            strategy,
            usernames,
            ..Self::default()
        }
    }

    /// `dual` with minted keys, as an IAM user's access keys (which cannot end sessions).
    pub fn minting() -> Self {
        ScriptedTargetConfig {
            mints_own_secret: true,
            terminate_sessions: false,
            ..Self::for_strategy(Strategy::Dual)
        }
    }
}

/// A **fake** [`Target`] for tests: no real system behind it, but it really checks
/// secrets. It holds, per user, the set of accepted passwords (or, when it mints its own
/// secrets, the user's access keys), and a login with anything else is
/// [`ErrorKind::AuthRejected`]. It passes every applicable rule of
/// [`crate::conformance::target`] under each strategy.
///
/// Clones share one state (users, keys, sessions, faults, call history). Faults are
/// queued per [`TargetOp`] with [`ScriptedTarget::fault`];
/// [`ScriptedTarget::accepts`] checks a document without faults.
///
/// Steps do exactly what they are told, with no safety net of their own (a revoke does
/// not first check that the new secret works), so an engine that calls them in the
/// wrong order breaks the "one stored secret always works" invariant visibly.
#[derive(Clone)]
pub struct ScriptedTarget {
    config: Arc<ScriptedTargetConfig>,
    capabilities: TargetCapabilities,
    state: Arc<Mutex<TargetState>>,
    plan: Arc<Mutex<Plan<TargetOp>>>,
    crash: Crash,
}

#[derive(Default)]
struct TargetState {
    /// Accepted passwords per user, oldest first.
    passwords: BTreeMap<String, Vec<Secret>>,
    /// Access keys by id (minting targets).
    keys: BTreeMap<String, AccessKey>,
    minted: u64,
    /// Open sessions, by the credential they authenticated with.
    sessions: Vec<Credential>,
    sessions_terminated: u64,
    clock: Clock,
}

struct AccessKey {
    user: String,
    secret: Secret,
    active: bool,
    minted: bool,
    created: SystemTime,
}

/// How a session or a document authenticates.
#[derive(Clone, PartialEq, Eq)]
enum Credential {
    Password { user: String, password: Secret },
    Key { id: String },
}

impl ScriptedTarget {
    /// A fake target with no accepted secret yet ([`ScriptedTarget::seed`] the first),
    /// on the system clock, with its own [`Crash`] handle.
    ///
    /// # Panics
    ///
    /// When the configuration is impossible: `single`/`dual` without exactly one user,
    /// `alternating` without exactly two distinct users, or `mints_own_secret` with a
    /// strategy other than `dual`.
    pub fn new(config: ScriptedTargetConfig) -> Self {
        let users = config.usernames.len();
        match config.strategy {
            Strategy::Single | Strategy::Dual => assert!(
                users == 1,
                "ScriptedTargetConfig: strategy {} needs exactly one username, got {users}",
                config.strategy
            ),
            Strategy::Alternating => assert!(
                users == 2 && config.usernames[0] != config.usernames[1],
                "ScriptedTargetConfig: strategy alternating needs two distinct usernames"
            ),
        }
        assert!(
            !config.mints_own_secret || config.strategy == Strategy::Dual,
            "ScriptedTargetConfig: a target that mints its own secrets holds two keys at once: use strategy dual"
        );
        let capabilities = TargetCapabilities {
            strategies: if config.mints_own_secret {
                vec![Strategy::Dual]
            } else {
                vec![Strategy::Single, Strategy::Dual, Strategy::Alternating]
            },
            strategy: config.strategy,
            terminate_sessions: config.terminate_sessions,
            mints_own_secret: config.mints_own_secret,
            apply_invalidates_previous: config.strategy == Strategy::Single,
            retires_previous: config.mints_own_secret,
        };
        let state = TargetState {
            passwords: config.usernames.iter().map(|u| (u.clone(), Vec::new())).collect(),
            ..TargetState::default()
        };
        ScriptedTarget {
            config: Arc::new(config),
            capabilities,
            state: Arc::new(Mutex::new(state)),
            plan: Arc::default(),
            crash: Crash::default(),
        }
    }

    /// Uses `crash` as this target's crash signal (share one handle with the store).
    /// Call it before cloning: clones made earlier keep the old handle.
    pub fn with_crash(mut self, crash: Crash) -> Self {
        self.crash = crash;
        self
    }

    /// Takes the creation time of keys from `clock` (a [`super::ManualClock`], a
    /// [`Clock`], or an `Arc<dyn Fn() -> SystemTime + Send + Sync>`).
    pub fn with_clock(self, clock: impl Into<Clock>) -> Self {
        lock(&self.state).clock = clock.into();
        self
    }

    /// This target's crash signal.
    pub fn crash(&self) -> &Crash {
        &self.crash
    }

    /// The configuration it was built with.
    pub fn config(&self) -> &ScriptedTargetConfig {
        &self.config
    }

    /// Queues `fault` for the next call of `op` that has no fault queued before it
    /// (first in, first out; each fault fires once). [`Fault::FailAfterEffect`] on
    /// `Apply` applies then fails; on `Revoke` revokes (and ends sessions) then fails;
    /// on `Prepare` of a minting target mints the key then fails (the key leaks); on the
    /// read-only `Precheck`, `Login` and `Verify` it only fails.
    pub fn fault(&self, op: TargetOp, fault: Fault) {
        lock(&self.plan).push(op, 0, fault);
    }

    /// Queues `fault` for a later call of `op`: after whatever is already queued for
    /// `op`, `skip` calls go through unharmed, then the next one gets `fault`.
    pub fn fault_nth(&self, op: TargetOp, skip: usize, fault: Fault) {
        lock(&self.plan).push(op, skip, fault);
    }

    /// Drops every queued fault (an outage set by [`ScriptedTarget::set_outage`] stays).
    pub fn clear_faults(&self) {
        lock(&self.plan).clear_faults();
    }

    /// How many queued faults have not fired yet.
    pub fn queued_faults(&self) -> usize {
        lock(&self.plan).queued()
    }

    /// While `Some(kind)`, every operation fails with `kind`, changes nothing and
    /// consumes no queued fault: `Some(ErrorKind::Unreachable)` is a target that is
    /// down. `None` ends it.
    pub fn set_outage(&self, kind: Option<ErrorKind>) {
        lock(&self.plan).set_outage(kind);
    }

    /// The operations called so far, in order, faulted ones included (calls made while
    /// crashed are not: they never happened).
    pub fn calls(&self) -> Vec<TargetOp> {
        lock(&self.plan).calls()
    }

    /// Forgets the call history.
    pub fn clear_calls(&self) {
        lock(&self.plan).clear_calls();
    }

    /// Makes `doc` accepted, as the target's state before any rotation. A document with
    /// an `access_key_id` becomes a live key (not counted as minted); otherwise its
    /// password is given to its user (the first configured user when it names none) as
    /// `apply` would: replacing the user's password (`single`, `alternating`) or adding
    /// it (`dual`).
    ///
    /// # Panics
    ///
    /// When `doc` has no `password`, or names a user that is not configured.
    pub fn seed(&self, doc: &SecretDoc) {
        let password = doc.password().expect("seed: the document has no password");
        let user = doc.username().unwrap_or(&self.config.usernames[0]).to_owned();
        assert!(
            self.config.usernames.contains(&user),
            "seed: user {user:?} is not one of the fake target's users"
        );
        let mut state = lock(&self.state);
        if let Some(id) = doc.get_str(ACCESS_KEY_ID) {
            let created = state.clock.now();
            state.keys.insert(
                id.to_owned(),
                AccessKey {
                    user,
                    secret: password,
                    active: true,
                    minted: false,
                    created,
                },
            );
        } else {
            self.give_password(&mut state, &user, password);
        }
    }

    /// Builds a working document for the first user (with a fresh key when the target
    /// mints its own secrets), [`ScriptedTarget::seed`]s it and returns it.
    pub fn seed_new(&self) -> SecretDoc {
        let mut doc = SecretDoc::new();
        self.complete(&mut doc);
        doc.set_password(&random_password(32));
        if self.config.mints_own_secret {
            doc.set(ACCESS_KEY_ID, new_key_id());
        }
        self.seed(&doc);
        doc
    }

    /// Whether a login with `doc` would succeed now, without faults, crash, call history
    /// or counters.
    pub fn accepts(&self, doc: &SecretDoc) -> bool {
        self.authenticate(&lock(&self.state), doc).is_ok()
    }

    /// Opens a session with `doc` (an application connected with it), without faults.
    /// Sessions outlive password changes until a revoke ends them.
    pub fn open_session(&self, doc: &SecretDoc) -> ProviderResult<()> {
        let mut state = lock(&self.state);
        let credential = self.authenticate(&state, doc)?;
        state.sessions.push(credential);
        Ok(())
    }

    /// How many open sessions authenticated with `doc`'s secret.
    pub fn open_sessions(&self, doc: &SecretDoc) -> usize {
        let Ok(credential) = self.credential_of(doc) else {
            return 0;
        };
        lock(&self.state).sessions.iter().filter(|s| **s == credential).count()
    }

    /// Sessions ended by revokes so far.
    pub fn sessions_terminated(&self) -> u64 {
        lock(&self.state).sessions_terminated
    }

    /// Keys minted by `prepare` so far (deleted ones included).
    pub fn minted_count(&self) -> u64 {
        lock(&self.state).minted
    }

    /// Ids of keys minted by `prepare` that are still accepted (not deleted, not
    /// deactivated), sorted.
    pub fn live_minted(&self) -> Vec<String> {
        lock(&self.state)
            .keys
            .iter()
            .filter(|(_, k)| k.minted && k.active)
            .map(|(id, _)| id.clone())
            .collect()
    }

    /// Ids of every accepted key, seeded or minted, sorted.
    pub fn live_keys(&self) -> Vec<String> {
        lock(&self.state)
            .keys
            .iter()
            .filter(|(_, k)| k.active)
            .map(|(id, _)| id.clone())
            .collect()
    }

    /// Ids of every key that exists, deactivated ones included (what counts towards the
    /// two-key limit), sorted.
    pub fn existing_keys(&self) -> Vec<String> {
        lock(&self.state).keys.keys().cloned().collect()
    }

    /// When key `id` was created, by the target's clock.
    pub fn key_created(&self, id: &str) -> Option<SystemTime> {
        lock(&self.state).keys.get(id).map(|k| k.created)
    }

    /// Deletes key `id` by hand (an operator cleaning up), without faults. Returns
    /// whether it existed.
    pub fn delete_key(&self, id: &str) -> bool {
        lock(&self.state).keys.remove(id).is_some()
    }

    /// How many passwords `user` holds now (0 for an unknown user).
    pub fn passwords_held(&self, user: &str) -> usize {
        lock(&self.state).passwords.get(user).map_or(0, Vec::len)
    }

    fn run<T>(&self, op: TargetOp, effect: impl FnOnce(&mut TargetState) -> ProviderResult<T>) -> Outcome<T> {
        execute(&self.crash, &self.plan, Some(op), "fake target", op, || {
            effect(&mut lock(&self.state))
        })
    }

    fn default_user(&self) -> &str {
        &self.config.usernames[0]
    }

    /// For `single` and `dual`: the document names the configured user, or no user.
    fn check_username(&self, doc: &SecretDoc, what: &str) -> ProviderResult<String> {
        let user = self.default_user();
        match doc.username() {
            None => Ok(user.to_owned()),
            Some(named) if named == user => Ok(user.to_owned()),
            Some(named) => Err(ProviderError::invalid_input(format!(
                "fake target: the {what} secret names user {named:?}, not {user:?}"
            ))),
        }
    }

    /// For `alternating`: the document names one of the two users.
    fn alternating_user(&self, doc: &SecretDoc, what: &str) -> ProviderResult<String> {
        match doc.username() {
            Some(named) if self.config.usernames.iter().any(|u| u == named) => Ok(named.to_owned()),
            Some(named) => Err(ProviderError::invalid_input(format!(
                "fake target: the {what} secret names user {named:?}, which is neither {:?} nor {:?}",
                self.config.usernames[0], self.config.usernames[1]
            ))),
            None => Err(ProviderError::invalid_input(format!(
                "fake target: the {what} secret names no user; alternating needs one"
            ))),
        }
    }

    fn other_user(&self, user: &str) -> String {
        let [a, b] = [&self.config.usernames[0], &self.config.usernames[1]];
        if user == a {
            b.clone()
        } else {
            a.clone()
        }
    }

    fn key_id<'d>(&self, doc: &'d SecretDoc, what: &str) -> ProviderResult<&'d str> {
        doc.get_str(ACCESS_KEY_ID).ok_or_else(|| {
            ProviderError::invalid_input(format!("fake target: the {what} secret has no {ACCESS_KEY_ID}"))
        })
    }

    /// The credential `doc` presents, unchecked.
    fn credential_of(&self, doc: &SecretDoc) -> ProviderResult<Credential> {
        if self.config.mints_own_secret {
            return Ok(Credential::Key {
                id: self.key_id(doc, "given")?.to_owned(),
            });
        }
        let password = doc
            .password()
            .ok_or_else(|| ProviderError::invalid_input("fake target: the secret has no password"))?;
        let user = match doc.username() {
            Some(user) => user.to_owned(),
            None if self.config.strategy == Strategy::Alternating => {
                return Err(ProviderError::invalid_input(
                    "fake target: the secret names no user; alternating needs one",
                ))
            }
            None => self.default_user().to_owned(),
        };
        Ok(Credential::Password { user, password })
    }

    /// A login: the credential `doc` presents, when the target accepts it.
    fn authenticate(&self, state: &TargetState, doc: &SecretDoc) -> ProviderResult<Credential> {
        let credential = self.credential_of(doc)?;
        match &credential {
            Credential::Key { id } => {
                let password = doc.password().ok_or_else(|| {
                    ProviderError::invalid_input("fake target: the secret has no password (the key's secret)")
                })?;
                match state.keys.get(id) {
                    Some(key)
                        if key.active && key.secret == password && doc.username().is_none_or(|u| u == key.user) =>
                    {
                        Ok(credential)
                    }
                    _ => Err(ProviderError::auth_rejected(format!(
                        "fake target: access key {id} is not valid"
                    ))),
                }
            }
            Credential::Password { user, password } => {
                if state.passwords.get(user).is_some_and(|held| held.contains(password)) {
                    Ok(credential)
                } else {
                    Err(ProviderError::auth_rejected(format!(
                        "fake target: password authentication failed for user {user:?}"
                    )))
                }
            }
        }
    }

    /// Gives `password` to `user` as the configured strategy's apply does.
    fn give_password(&self, state: &mut TargetState, user: &str, password: Secret) {
        let held = state.passwords.entry(user.to_owned()).or_default();
        match self.config.strategy {
            Strategy::Single | Strategy::Alternating => *held = vec![password],
            Strategy::Dual => {
                if !held.contains(&password) {
                    held.push(password);
                }
                // Like MySQL's RETAIN CURRENT PASSWORD: the oldest secondary is dropped.
                while held.len() > MAX_PER_USER {
                    held.remove(0);
                }
            }
        }
    }

    fn two_keys(&self, state: &TargetState, user: &str) -> ProviderResult<()> {
        let held: Vec<&String> = state
            .keys
            .iter()
            .filter(|(_, k)| k.user == user)
            .map(|(id, _)| id)
            .collect();
        if held.len() >= MAX_PER_USER {
            let listed: Vec<&str> = held.iter().map(|id| id.as_str()).collect();
            return Err(ProviderError::conflict(format!(
                "fake target: user {user:?} already has two access keys ({}); the limit is two",
                listed.join(", ")
            ))
            .retryable(false));
        }
        Ok(())
    }

    fn check(&self, state: &TargetState, current: Option<&SecretDoc>) -> ProviderResult<Vec<String>> {
        let mut lines = Vec::new();
        if let Some(current) = current {
            if self.config.strategy == Strategy::Alternating {
                self.alternating_user(current, "current")?;
            } else {
                self.check_username(current, "current")?;
            }
        }
        for user in &self.config.usernames {
            lines.push(format!("fake target: user {user:?} exists"));
        }
        if self.config.mints_own_secret {
            let user = self.default_user();
            let count = state.keys.values().filter(|k| k.user == user).count();
            lines.push(format!("fake target: user {user:?} has {count} access key(s)"));
            self.two_keys(state, user)?;
        }
        Ok(lines)
    }

    fn prepare_in(
        &self,
        state: &mut TargetState,
        current: Option<&SecretDoc>,
        password: &Secret,
    ) -> ProviderResult<SecretDoc> {
        if self.config.mints_own_secret {
            if let Some(current) = current {
                self.check_username(current, "current")?;
            }
            let user = self.default_user().to_owned();
            self.two_keys(state, &user)?;
            let id = new_key_id();
            let secret = random_password(40);
            let created = state.clock.now();
            state.keys.insert(
                id.clone(),
                AccessKey {
                    user: user.clone(),
                    secret: secret.clone(),
                    active: true,
                    minted: true,
                    created,
                },
            );
            state.minted += 1;
            let mut doc = SecretDoc::new();
            if let Some(current) = current {
                for name in current.field_names() {
                    if matches!(name, "password" | ACCESS_KEY_ID) {
                        continue;
                    }
                    if let Some(value) = current.get(name) {
                        doc.set(name, value.clone());
                    }
                }
            }
            doc.set("engine", FAKE_ENGINE);
            doc.set("username", user);
            doc.set(ACCESS_KEY_ID, id);
            doc.set_password(&secret);
            return Ok(doc);
        }
        let user = match (self.config.strategy, current) {
            (Strategy::Alternating, Some(current)) => {
                Some(self.other_user(&self.alternating_user(current, "current")?))
            }
            (Strategy::Alternating, None) => Some(self.default_user().to_owned()),
            (_, Some(current)) => {
                self.check_username(current, "current")?;
                None
            }
            (_, None) => None,
        };
        let mut doc = current.cloned().unwrap_or_default();
        self.complete(&mut doc);
        if let Some(user) = user {
            doc.set("username", user);
        }
        doc.set_password(password);
        Ok(doc)
    }

    fn apply_in(&self, state: &mut TargetState, new: &SecretDoc, current: Option<&SecretDoc>) -> ProviderResult<()> {
        if self.config.mints_own_secret {
            let id = self.key_id(new, "new")?;
            return match state.keys.get_mut(id) {
                Some(key) => {
                    key.active = true;
                    Ok(())
                }
                None => Err(ProviderError::not_found(format!(
                    "fake target: the new access key {id} no longer exists"
                ))),
            };
        }
        let password = new
            .password()
            .ok_or_else(|| ProviderError::invalid_input("fake target: the new secret has no password"))?;
        let user = if self.config.strategy == Strategy::Alternating {
            let user = self.alternating_user(new, "new")?;
            if let Some(current) = current {
                if self.alternating_user(current, "current")? == user {
                    return Err(ProviderError::invalid_input(format!(
                        "fake target: the new secret names user {user:?}, which is live (the current secret's); \
                         alternating gives the new password to the idle user"
                    )));
                }
            }
            user
        } else {
            self.check_username(new, "new")?
        };
        self.give_password(state, &user, password);
        Ok(())
    }

    fn retire_in(&self, state: &mut TargetState, old: &SecretDoc, new: &SecretDoc) -> ProviderResult<Option<String>> {
        if !self.config.mints_own_secret {
            return Ok(None);
        }
        let id = self.key_id(old, "old")?;
        if new.get_str(ACCESS_KEY_ID) == Some(id) {
            return Err(ProviderError::invalid_input(format!(
                "fake target: refusing to deactivate access key {id}: it is also the new key"
            )));
        }
        Ok(Some(match state.keys.get_mut(id) {
            Some(key) => {
                key.active = false;
                format!("deactivated access key {id}")
            }
            None => format!("access key {id} was already deleted"),
        }))
    }

    fn revoke_in(
        &self,
        state: &mut TargetState,
        old: &SecretDoc,
        new: &SecretDoc,
        options: RevokeOptions,
    ) -> ProviderResult<RevokeReport> {
        let old_credential = self.credential_of(old)?;
        if self.config.mints_own_secret {
            let id = self.key_id(old, "old")?;
            if new.get_str(ACCESS_KEY_ID) == Some(id) {
                return Err(ProviderError::invalid_input(format!(
                    "fake target: refusing to delete access key {id}: it is also the new key"
                )));
            }
            state.keys.remove(id);
        } else {
            match self.config.strategy {
                // Apply already replaced the old password.
                Strategy::Single => {}
                Strategy::Dual => {
                    let user = self.check_username(old, "old")?;
                    self.check_username(new, "new")?;
                    if old.same_password(new) {
                        return Err(ProviderError::invalid_input(
                            "fake target: refusing to remove the old password: it is also the new one",
                        ));
                    }
                    if let Some(held) = state.passwords.get_mut(&user) {
                        if let Some(password) = old.password() {
                            held.retain(|p| *p != password);
                        }
                    }
                }
                Strategy::Alternating => {
                    let previous = self.alternating_user(old, "old")?;
                    let next = self.alternating_user(new, "new")?;
                    if previous != next {
                        // The previous user's password becomes one nobody knows.
                        if let Some(held) = state.passwords.get_mut(&previous) {
                            held.clear();
                        }
                    }
                }
            }
        }
        let mut report = RevokeReport::default();
        if options.terminate_sessions && !self.config.terminate_sessions {
            // The engine reads the capability: asking a target that declares it cannot end
            // sessions is a bug this fake makes visible.
            return Err(ProviderError::invalid_input(
                "fake target: asked to end sessions, which its capabilities say it cannot",
            ));
        }
        if options.terminate_sessions {
            if self.config.deny_terminate_sessions {
                let user = match &old_credential {
                    Credential::Password { user, .. } => user.clone(),
                    Credential::Key { .. } => self.default_user().to_owned(),
                };
                return Err(ProviderError::permission_denied(format!(
                    "fake target: permission denied to terminate the sessions of user {user:?} \
                     (like a CREATEROLE admin without pg_signal_backend); the old secret was already invalidated"
                )));
            }
            let before = state.sessions.len();
            state.sessions.retain(|s| *s != old_credential);
            let ended = (before - state.sessions.len()) as u64;
            state.sessions_terminated += ended;
            report.sessions_terminated = ended;
        }
        Ok(report)
    }
}

fn new_key_id() -> String {
    use rand::Rng;
    format!("FAKE{:016X}", rand::thread_rng().gen::<u64>())
}

impl fmt::Debug for ScriptedTarget {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ScriptedTarget")
            .field("config", &self.config)
            .field("crash", &self.crash)
            .finish_non_exhaustive()
    }
}

#[async_trait]
impl Target for ScriptedTarget {
    fn capabilities(&self) -> &TargetCapabilities {
        &self.capabilities
    }

    /// `fake target user "app"`; other strategies say which, and alternating names both
    /// users.
    fn describe(&self) -> String {
        let users = &self.config.usernames;
        match (self.config.strategy, self.config.mints_own_secret) {
            (Strategy::Single, _) => format!("fake target user {:?}", users[0]),
            (Strategy::Dual, false) => format!("fake target user {:?} (dual)", users[0]),
            (Strategy::Dual, true) => format!("fake target user {:?} (dual, minted keys)", users[0]),
            (Strategy::Alternating, _) => {
                format!("fake target users {:?} and {:?} (alternating)", users[0], users[1])
            }
        }
    }

    /// Sets `engine` to `fake` and `username` to the first user, when missing.
    fn complete(&self, doc: &mut SecretDoc) {
        doc.set_default("engine", FAKE_ENGINE);
        doc.set_default("username", self.default_user());
    }

    async fn preflight(&self, current: Option<&SecretDoc>) -> ProviderResult<Vec<String>> {
        settle(self.run(TargetOp::Precheck, |s| self.check(s, current))).await
    }

    async fn precheck(&self, current: Option<&SecretDoc>) -> ProviderResult<()> {
        settle(self.run(TargetOp::Precheck, |s| self.check(s, current).map(|_| ()))).await
    }

    async fn prepare(&self, current: Option<&SecretDoc>, password: Secret) -> ProviderResult<SecretDoc> {
        settle(self.run(TargetOp::Prepare, |s| self.prepare_in(s, current, &password))).await
    }

    async fn apply(&self, new: &SecretDoc, current: Option<&SecretDoc>) -> ProviderResult<()> {
        settle(self.run(TargetOp::Apply, |s| self.apply_in(s, new, current))).await
    }

    async fn login(&self, doc: &SecretDoc) -> ProviderResult<()> {
        settle(self.run(TargetOp::Login, |s| self.authenticate(s, doc).map(|_| ()))).await
    }

    async fn verify(&self, doc: &SecretDoc) -> ProviderResult<()> {
        settle(self.run(TargetOp::Verify, |s| self.authenticate(s, doc).map(|_| ()))).await
    }

    async fn sweep_unstored(&self, stored: &[&SecretDoc], since: SystemTime) -> ProviderResult<Vec<String>> {
        let stored: Vec<String> = stored
            .iter()
            .filter_map(|d| d.get_str(ACCESS_KEY_ID).map(str::to_owned))
            .collect();
        settle(self.run(TargetOp::Prepare, |s| {
            let orphans: Vec<String> = s
                .keys
                .iter()
                .filter(|(id, k)| k.minted && k.created >= since && !stored.contains(id))
                .map(|(id, _)| id.clone())
                .collect();
            for id in &orphans {
                s.keys.remove(id);
            }
            Ok(orphans)
        }))
        .await
    }

    async fn retire(&self, old: &SecretDoc, new: &SecretDoc) -> ProviderResult<Option<String>> {
        settle(self.run(TargetOp::Retire, |s| self.retire_in(s, old, new))).await
    }

    async fn revoke(&self, old: &SecretDoc, new: &SecretDoc, options: RevokeOptions) -> ProviderResult<RevokeReport> {
        settle(self.run(TargetOp::Revoke, |s| self.revoke_in(s, old, new, options))).await
    }
}
