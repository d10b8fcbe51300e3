//! [`RedisTarget`]: one Redis ACL user.

use crate::acl::{acl_password_hash, change_passwords, quote_name, replace_passwords, text, UserInfo};
use crate::admin::{AclFile, AdminConn, AdminPool};
use crate::config::RedisTargetConfig;
use crate::conn::{open_authenticated, Endpoint, Identity, Session};
use crate::notes;
use async_trait::async_trait;
use redis::Value;
use rekey_api::{
    ErrorKind, ProviderError, ProviderResult, RevokeOptions, RevokeReport, Secret, SecretDoc, Strategy, Target,
    TargetCapabilities,
};
use std::fmt;
use std::sync::Arc;

/// A Redis ACL user whose password rekey rotates (strategy `dual` or `single`).
///
/// Passwords reach the server only as SHA-256 hashes (`ACL SETUSER user #<hash>`), never
/// as `>plaintext`, so the plaintext stays out of SLOWLOG, MONITOR, ACL LOG, the ACL
/// file and replication. With `dual`, `apply` adds the new hash beside the old one (and
/// removes any other password the user holds when it holds the current one) and
/// `revoke` removes every password but the new one (`!<hash>`); with `single`, `apply` runs
/// `ACL SETUSER user resetpass #<hash>`, so the new password is the only one at once.
/// Nothing but the passwords changes (flags, key, channel and command rules, selectors);
/// a `nopass` user, which a password would end, is refused unless `clear_nopass = true`.
///
/// With an admin URL the commands run on the admin connection shared by every target of
/// the host; without one the user logs in with its current password and changes its own
/// passwords (it needs the `acl|setuser` permission). When the server keeps its users in
/// an ACL file (`CONFIG GET aclfile`), every change is followed by `ACL SAVE`.
///
/// Created by [`crate::RedisProvider::redis_target`].
pub struct RedisTarget {
    config: RedisTargetConfig,
    endpoint: Endpoint,
    admin: Option<Arc<AdminPool>>,
    capabilities: TargetCapabilities,
}

impl fmt::Debug for RedisTarget {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RedisTarget")
            .field("config", &self.config)
            .field("admin", &self.admin)
            .field("strategy", &self.capabilities.strategy)
            .finish_non_exhaustive()
    }
}

/// What `ACL DRYRUN` said about a command.
enum DryRun {
    Allowed,
    Denied(String),
    /// Redis before 7, or the admin may not run `ACL DRYRUN`: say why.
    Unavailable(&'static str),
}

impl RedisTarget {
    pub(crate) fn new(
        config: RedisTargetConfig,
        endpoint: Endpoint,
        admin: Option<Arc<AdminPool>>,
        strategy: Strategy,
    ) -> RedisTarget {
        RedisTarget {
            capabilities: TargetCapabilities {
                strategies: vec![Strategy::Dual, Strategy::Single],
                strategy,
                terminate_sessions: true,
                mints_own_secret: false,
                apply_invalidates_previous: strategy == Strategy::Single,
                retires_previous: false,
            },
            config,
            endpoint,
            admin,
        }
    }

    /// The configuration this target was built from.
    pub fn config(&self) -> &RedisTargetConfig {
        &self.config
    }

    /// The configured strategy.
    pub fn strategy(&self) -> Strategy {
        self.capabilities.strategy
    }

    /// Whether an admin URL is configured.
    pub fn has_admin(&self) -> bool {
        self.admin.is_some()
    }

    /// The server's id (`CLIENT ID`) of the shared admin connection, opening it if
    /// needed, or `None` without an admin. Targets on the same host report the same id.
    pub async fn admin_client_id(&self) -> ProviderResult<Option<i64>> {
        let Some(admin) = &self.admin else { return Ok(None) };
        match admin
            .query("CLIENT ID", &redis::cmd("CLIENT").arg("ID").clone(), &[])
            .await?
        {
            Value::Int(id) => Ok(Some(id)),
            _ => Err(ProviderError::other(format!(
                "CLIENT ID as {}: unexpected reply",
                admin.label()
            ))),
        }
    }

    fn user(&self) -> &str {
        &self.config.username
    }

    /// `user "app" on 10.0.0.5:6379`.
    fn user_label(&self, user: &str) -> String {
        format!(
            "user {} on {}{}",
            quote_name(user),
            self.endpoint,
            self.endpoint.tls_note()
        )
    }

    fn check_username(&self, doc: &SecretDoc, which: &str) -> ProviderResult<()> {
        match doc.username() {
            Some(user) if user != self.user() => Err(ProviderError::invalid_input(format!(
                "the {which} secret's username {} is not the configured user {}",
                quote_name(user),
                quote_name(self.user())
            ))),
            _ => Ok(()),
        }
    }

    fn password_of(doc: &SecretDoc, which: &str) -> ProviderResult<Secret> {
        doc.password()
            .ok_or_else(|| ProviderError::invalid_input(format!("the {which} secret has no `password` field")))
    }

    /// A fresh, authenticated connection as `user`.
    async fn open_as(&self, user: &str, password: &Secret) -> ProviderResult<(Session, Identity)> {
        let timeout = self.config.connect_timeout();
        open_authenticated(
            &self.endpoint,
            timeout,
            timeout,
            user,
            Some(password),
            &self.user_label(user),
        )
        .await
    }

    /// Who runs the ACL commands of a change: the shared admin, or else the user itself,
    /// logged in with the first of `candidates` whose password it accepts.
    async fn admin_for_change(&self, candidates: &[(Option<&SecretDoc>, &str)]) -> ProviderResult<AdminConn<'_>> {
        if let Some(pool) = &self.admin {
            return Ok(AdminConn::Shared(pool));
        }
        let mut refused: Vec<&str> = Vec::new();
        let mut missing: Vec<&str> = Vec::new();
        let mut last_err = None;
        for (doc, which) in candidates {
            let Some(doc) = doc else {
                missing.push(which);
                continue;
            };
            self.check_username(doc, which)?;
            let password = Self::password_of(doc, which)?;
            match self.open_as(self.user(), &password).await {
                Ok((session, _)) => {
                    return Ok(AdminConn::Own {
                        session,
                        user: self.user().to_owned(),
                        label: self.user_label(self.user()),
                    })
                }
                Err(e) if e.kind() == ErrorKind::AuthRejected => {
                    refused.push(which);
                    last_err = Some(e);
                }
                Err(e) => return Err(e),
            }
        }
        let login = self.user_label(self.user());
        match (last_err, missing.is_empty()) {
            (Some(e), true) => Err(e.context(format!(
                "no admin is configured and {} logs in",
                match refused.as_slice() {
                    [one] => format!("the {one} secret no longer"),
                    many => format!("neither the {} secret", many.join(" nor the ")),
                }
            ))),
            _ => Err(ProviderError::invalid_input(format!(
                "no admin is configured and there is no {} secret{}: cannot log in as {login} to change its passwords",
                missing.join(" or "),
                match refused.as_slice() {
                    [] => String::new(),
                    r => format!(" (the {} secret is refused)", r.join(" and the ")),
                }
            ))),
        }
    }

    /// `ACL GETUSER`: the user, or `NotFound`. Checked before every `ACL SETUSER`, which
    /// would otherwise create a missing user.
    async fn get_user(&self, admin: &AdminConn<'_>) -> ProviderResult<UserInfo> {
        let reply = admin
            .query(
                &format!("ACL GETUSER {}", quote_name(self.user())),
                redis::cmd("ACL").arg("GETUSER").arg(self.user()),
                &[],
            )
            .await?;
        UserInfo::from_reply(&reply).ok_or_else(|| {
            ProviderError::not_found(format!(
                "user {} does not exist on {}",
                quote_name(self.user()),
                self.endpoint
            ))
        })
    }

    /// `ACL SAVE` when the server keeps users in an ACL file; nothing otherwise.
    async fn save_acl(&self, admin: &AdminConn<'_>) -> ProviderResult<()> {
        let file = admin.acl_file().await?;
        if file == AclFile::None {
            return Ok(());
        }
        match admin
            .query("ACL SAVE", &redis::cmd("ACL").arg("SAVE").clone(), &[])
            .await
        {
            Ok(_) => Ok(()),
            // The one "not found" ACL SAVE gives: no ACL file (error::ErrReply::NoAclFile).
            Err(e) if file == AclFile::Unknown && e.kind() == ErrorKind::NotFound => Ok(()),
            Err(e) => Err(e.context(format!(
                "the change to user {} is live but was not saved to the ACL file",
                quote_name(self.user())
            ))),
        }
    }

    /// Why a `nopass` user is not rotated without `clear_nopass = true`: the refusal
    /// `preflight` and `apply` give before changing anything.
    fn nopass_refused(&self) -> ProviderError {
        ProviderError::unsupported(format!(
            "user {} on {} is nopass: it logs in with any password, and a rotation would give it a password, after \
             which only the new one works (applications logging in with any other password would be refused); \
             rekey changes the password and nothing else unless told: set `clear_nopass = true` on the target to \
             let the rotation end nopass",
            quote_name(self.user()),
            self.endpoint
        ))
        .retryable(false)
    }

    /// Installs the hash under the configured strategy; skips `ACL SETUSER` when the user
    /// is already in the wanted state, but always saves (a run may have crashed between
    /// the change and the save).
    ///
    /// `single`: `resetpass #new`, the only password. `dual`: adds the new hash and, when
    /// the user holds `current` (the password applications use now), removes every other
    /// password in the same command, so the user holds at most the current and the new
    /// one; without a known current password the others stay until revoke.
    async fn install(&self, admin: &AdminConn<'_>, hash: &str, current: Option<&str>) -> ProviderResult<()> {
        let info = self.get_user(admin).await?;
        // Adding a password (`#<hash>`, or `resetpass #<hash>`) ends nopass: only when allowed.
        if info.has_flag("nopass") && !self.config.clear_nopass {
            return Err(self.nopass_refused());
        }
        let action = format!("ACL SETUSER {}", quote_name(self.user()));
        match self.strategy() {
            Strategy::Single => {
                let done = info.passwords.len() == 1 && info.has_password(hash) && !info.has_flag("nopass");
                if !done {
                    admin
                        .query(&action, &replace_passwords(self.user(), hash), &[hash])
                        .await?;
                }
            }
            _ => {
                // A nopass user accepts any password, so the stored current one works
                // only by that; adding the new password would end it at once. Add the
                // current one first, so that both work until revoke (dual's promise).
                if let Some(current) = current.filter(|c| info.has_flag("nopass") && !info.has_password(c)) {
                    admin
                        .query(&action, &change_passwords(self.user(), Some(current), &[]), &[current])
                        .await?;
                }
                let extras: Vec<&str> = match current {
                    Some(current) if info.has_password(current) => info.others(&[current, hash]),
                    _ => Vec::new(),
                };
                let add = (!info.has_password(hash)).then_some(hash);
                if add.is_some() || !extras.is_empty() {
                    let mut scrub = extras.clone();
                    scrub.push(hash);
                    admin
                        .query(&action, &change_passwords(self.user(), add, &extras), &scrub)
                        .await?;
                }
            }
        }
        self.save_acl(admin).await
    }

    /// Dual: once the new hash is in place, removes every other password of the user
    /// (the old one and any extra one), so that only the new one works. Idempotent.
    /// Returns how many passwords besides the old one were removed.
    async fn remove_all_but_new(&self, admin: &AdminConn<'_>, old: &Secret, new: &Secret) -> ProviderResult<usize> {
        let old_hash = acl_password_hash(old);
        let new_hash = acl_password_hash(new);
        let action = format!("ACL SETUSER {}", quote_name(self.user()));
        let mut extras_removed = 0;
        for attempt in 0..2 {
            let info = self.get_user(admin).await?;
            let others: Vec<&str> = info.others(&[&new_hash]);
            if others.is_empty() {
                break;
            }
            if !info.has_password(&new_hash) {
                return Err(ProviderError::conflict(format!(
                    "user {} on {} does not hold the new password: refusing to remove the {} other password(s), \
                     which may be the only ones that work (was the user changed outside rekey?)",
                    quote_name(self.user()),
                    self.endpoint,
                    others.len()
                ))
                .retryable(false));
            }
            let mut scrub = others.clone();
            scrub.push(&old_hash);
            match admin
                .query(&action, &change_passwords(self.user(), None, &others), &scrub)
                .await
            {
                Ok(_) => {
                    extras_removed = others.iter().filter(|p| !p.eq_ignore_ascii_case(&old_hash)).count();
                    break;
                }
                // One vanished between GETUSER and SETUSER (nothing was removed): read again.
                // (The only conflict ACL SETUSER reports: error::ErrReply::PasswordToRemoveMissing.)
                Err(e) if attempt == 0 && e.kind() == ErrorKind::Conflict => {}
                Err(e) => return Err(e),
            }
        }
        self.save_acl(admin).await?;
        Ok(extras_removed)
    }

    /// `CLIENT KILL USER`: ends every connection of the user (except the one asking),
    /// returning how many. Refused (`NOPERM`), it fails with `PermissionDenied` and the
    /// reason [`Target::incident_preflight`] gives.
    async fn kill_sessions(&self, admin: &AdminConn<'_>) -> ProviderResult<u64> {
        let reply = admin
            .query(
                &format!("CLIENT KILL USER {}", quote_name(self.user())),
                redis::cmd("CLIENT").arg("KILL").arg("USER").arg(self.user()),
                &[],
            )
            .await
            .map_err(|e| {
                if e.kind() == ErrorKind::PermissionDenied {
                    // The change before it (apply, or removing the old password) went through.
                    ProviderError::permission_denied(format!(
                        "{} (CLIENT KILL USER refused: NOPERM)",
                        self.kill_denied(admin, Some(true))
                    ))
                } else {
                    e
                }
            })?;
        match reply {
            Value::Int(n) => Ok(u64::try_from(n).unwrap_or(0)),
            _ => Ok(0),
        }
    }

    /// The user's connections other than the one asking, as `CLIENT LIST USER <user>`
    /// shows them (on servers without that filter, Redis 7.0 and older, `CLIENT LIST`
    /// filtered on `user=`), for the notes of a revoke that ends them. `Err` says why
    /// they could not be listed (such as an admin without `+client|list`): ending them
    /// does not depend on it.
    async fn list_sessions(&self, admin: &AdminConn<'_>) -> Result<Vec<ClientInfo>, String> {
        let by_user = redis::cmd("CLIENT").arg("LIST").arg("USER").arg(self.user()).clone();
        let action = format!("CLIENT LIST USER {}", quote_name(self.user()));
        let reply = match admin.query(&action, &by_user, &[]).await {
            Ok(reply) => reply,
            Err(e) if e.kind() == ErrorKind::PermissionDenied => return Err(e.message().to_owned()),
            // No USER filter on this server: list all and filter here.
            Err(_) => admin
                .query("CLIENT LIST", &redis::cmd("CLIENT").arg("LIST").clone(), &[])
                .await
                .map_err(|e| e.message().to_owned())?,
        };
        let Some(listing) = text(&reply) else {
            return Err("CLIENT LIST: unexpected reply".to_owned());
        };
        let own = match admin
            .query("CLIENT ID", &redis::cmd("CLIENT").arg("ID").clone(), &[])
            .await
        {
            Ok(Value::Int(id)) => Some(id),
            _ => None,
        };
        Ok(listing
            .lines()
            .filter_map(ClientInfo::parse)
            .filter(|c| c.user.as_deref() == Some(self.user()) && c.id != own)
            .collect())
    }

    /// The notes of a revoke that ended `ended` connections, listed before as `listed`.
    /// (The error text names the command and the admin, never a secret.)
    fn session_notes(&self, listed: Result<Vec<ClientInfo>, String>, ended: u64, secrets: &[&str]) -> Vec<String> {
        let ended = usize::try_from(ended).unwrap_or(usize::MAX);
        match listed {
            Ok(clients) => {
                let shown: Vec<String> = clients.iter().take(ended).map(|c| c.note(secrets)).collect();
                notes::capped(shown, ended)
            }
            Err(_) if ended == 0 => Vec::new(),
            Err(why) => vec![format!(
                "{ended} connection(s) of user {} ended; who held them is unknown: listing them failed ({})",
                quote_name(self.user()),
                why.replace(['\n', '\r'], " ")
            )],
        }
    }

    /// Whether `admin` may run `CLIENT KILL` (`+client|kill`, what ending the user's
    /// connections runs): asked with `ACL DRYRUN` (Redis 7+), or, where that is not
    /// available, by running `CLIENT KILL ID 0`, which matches no connection (client ids
    /// start at 1) and so ends nothing: the ACL check comes before the command runs.
    /// `Ok(how it was checked)` or `Err(the server's refusal)`.
    async fn may_kill(&self, admin: &AdminConn<'_>) -> ProviderResult<Result<&'static str, String>> {
        match self.dry_run(admin, &["CLIENT", "KILL", "USER", self.user()]).await? {
            DryRun::Allowed => return Ok(Ok("ACL DRYRUN")),
            DryRun::Denied(why) => return Ok(Err(why)),
            DryRun::Unavailable(_) => {}
        }
        let probe = redis::cmd("CLIENT").arg("KILL").arg("ID").arg(0).clone();
        match admin
            .query("CLIENT KILL ID 0 (matches no connection)", &probe, &[])
            .await
        {
            Ok(_) => Ok(Ok("CLIENT KILL ID 0, which matches no connection")),
            Err(e) if e.kind() == ErrorKind::PermissionDenied => Ok(Err(e.message().to_owned())),
            // Allowed, and refused for its argument ("client-id should be greater than 0").
            Err(e) if e.kind() == ErrorKind::Other => Ok(Ok("CLIENT KILL ID 0, which matches no connection")),
            Err(e) => Err(e),
        }
    }

    /// The reason `admin` cannot end the user's connections, with the ACL rule that fixes
    /// it. `may_change`: whether it may change the user's passwords, if known.
    fn kill_denied(&self, admin: &AdminConn<'_>, may_change: Option<bool>) -> String {
        let user = quote_name(self.user());
        let fix = format!(
            "it may not run CLIENT KILL (ACL SETUSER {} +client|kill)",
            quote_name(admin.user_name())
        );
        match admin {
            AdminConn::Own { .. } => format!(
                "user {user} on {} may change its own passwords but not end its connections: {fix}",
                self.endpoint
            ),
            AdminConn::Shared(pool) => match may_change {
                Some(true) => format!(
                    "admin user {} may change the passwords of user {user} on {} but not end its connections: {fix}",
                    quote_name(pool.user_name()),
                    self.endpoint
                ),
                _ => format!(
                    "admin user {} may not end the connections of user {user} on {}: {fix}",
                    quote_name(pool.user_name()),
                    self.endpoint
                ),
            },
        }
    }

    /// Checks that `admin` may end the user's connections: one line, or
    /// `PermissionDenied` with [`RedisTarget::kill_denied`]'s reason.
    async fn check_kill(&self, admin: &AdminConn<'_>) -> ProviderResult<String> {
        match self.may_kill(admin).await? {
            Ok(how) => Ok(format!(
                "{} may end the connections of user {} (CLIENT KILL USER allowed; checked with {how})",
                admin.label(),
                quote_name(self.user())
            )),
            Err(_) => {
                let may_change = match self.dry_run(admin, &["ACL", "SETUSER", self.user()]).await? {
                    DryRun::Allowed => Some(true),
                    DryRun::Denied(_) => Some(false),
                    DryRun::Unavailable(_) => None,
                };
                Err(ProviderError::permission_denied(self.kill_denied(admin, may_change)))
            }
        }
    }

    /// `ACL DRYRUN <admin> <command...>` (Redis 7+).
    async fn dry_run(&self, admin: &AdminConn<'_>, command: &[&str]) -> ProviderResult<DryRun> {
        let mut cmd = redis::cmd("ACL");
        cmd.arg("DRYRUN").arg(admin.user_name());
        for arg in command {
            cmd.arg(*arg);
        }
        match admin.query("ACL DRYRUN", &cmd, &[]).await {
            Ok(Value::Okay) => Ok(DryRun::Allowed),
            Ok(reply) => match text(&reply) {
                Some(t) if t == "OK" => Ok(DryRun::Allowed),
                Some(t) => Ok(DryRun::Denied(t)),
                None => Ok(DryRun::Denied("unexpected reply".into())),
            },
            Err(e) if e.kind() == ErrorKind::Unsupported => Ok(DryRun::Unavailable("ACL DRYRUN needs Redis 7")),
            Err(e) if e.kind() == ErrorKind::PermissionDenied => {
                Ok(DryRun::Unavailable("the admin may not run ACL DRYRUN"))
            }
            Err(e) => Err(e),
        }
    }

    /// Checks that `admin` may run `command`, pushing a line; `Denied` is an error.
    async fn check_permission(
        &self,
        admin: &AdminConn<'_>,
        command: &[&str],
        shown: &str,
        lines: &mut Vec<String>,
    ) -> ProviderResult<()> {
        match self.dry_run(admin, command).await? {
            DryRun::Allowed => {
                lines.push(format!("{} may run {shown}", admin.label()));
                Ok(())
            }
            DryRun::Denied(why) => Err(ProviderError::permission_denied(format!(
                "{} may not run {shown}: {why}",
                admin.label()
            ))),
            DryRun::Unavailable(why) => {
                lines.push(format!(
                    "cannot check in advance that {} may run {shown} ({why}); it is checked when it runs",
                    admin.label()
                ));
                Ok(())
            }
        }
    }

    /// The read-only checks, run as whoever will make the change.
    async fn preflight_as(
        &self,
        admin: &AdminConn<'_>,
        current: Option<&SecretDoc>,
        lines: &mut Vec<String>,
    ) -> ProviderResult<()> {
        let user = self.user();
        self.check_permission(admin, &["ACL", "SETUSER", user], "ACL SETUSER", lines)
            .await?;

        let info = self.get_user(admin).await?;
        if info.has_flag("off") {
            return Err(ProviderError::permission_denied(format!(
                "user {} on {} is disabled (off): every login is refused whatever the password",
                quote_name(user),
                self.endpoint
            )));
        }
        let mut facts = format!(
            "user {} exists, is enabled and holds {} password(s)",
            quote_name(user),
            info.passwords.len()
        );
        if info.has_flag("nopass") {
            if !self.config.clear_nopass {
                return Err(self.nopass_refused());
            }
            facts.push_str(
                "; it is nopass (any password logs in): apply gives it the new password and ends nopass \
                 (clear_nopass = true), so only the new password logs in afterwards",
            );
        }
        lines.push(facts);
        let mut current_held = None;
        if let Some(current) = current {
            if let Some(password) = current.password() {
                let hash = acl_password_hash(&password);
                if info.has_password(&hash) {
                    lines.push("the current secret is one of the user's passwords".to_owned());
                    current_held = Some(hash);
                } else if !info.has_flag("nopass") {
                    lines.push(
                        "the current secret is NOT among the user's passwords: it is refused now \
                         (changed outside rekey?); a rotation installs a new one"
                            .to_owned(),
                    );
                }
            }
        }
        let others = match &current_held {
            Some(hash) => info.others(&[hash.as_str()]).len(),
            None => info.passwords.len(),
        };
        if others > 0 && (current_held.is_some() || current.is_some()) {
            let besides = if current_held.is_some() {
                format!(
                    "user {} holds {others} other password(s) besides the current secret, which no stored version \
                     holds",
                    quote_name(user)
                )
            } else {
                format!(
                    "user {} holds {others} password(s), none of them the current secret",
                    quote_name(user)
                )
            };
            lines.push(match (self.strategy(), current_held.is_some()) {
                (Strategy::Single, _) => format!("{besides}: apply replaces them with the new password"),
                (_, true) => format!(
                    "{besides}: apply removes them as it adds the new password (the user then holds the current \
                     and the new one), revoke leaves only the new one"
                ),
                (_, false) => format!(
                    "{besides}: apply keeps them beside the new password (it cannot tell which one applications \
                     use), revoke leaves only the new one"
                ),
            });
        }

        match admin.acl_file().await? {
            AclFile::Path(path) => {
                lines.push(format!(
                    "the server keeps users in ACL file {path}: every change is followed by ACL SAVE"
                ));
                self.check_permission(admin, &["ACL", "SAVE"], "ACL SAVE", lines)
                    .await?;
            }
            AclFile::None => lines.push(
                "the server has no ACL file: changes live in memory (ACL SAVE is not used; a server whose \
                 users are in redis.conf needs CONFIG REWRITE to keep them across restarts)"
                    .to_owned(),
            ),
            AclFile::Unknown => lines.push(format!(
                "{} may not run CONFIG GET aclfile: ACL SAVE is tried after each change and skipped if the server \
                 has no ACL file",
                admin.label()
            )),
        }

        if self.config.terminate_sessions {
            lines.push(self.check_kill(admin).await?);
            lines.push(format!(
                "connections of user {} will be ended at revoke (all of them: Redis cannot tell which password \
                 a connection used)",
                quote_name(user)
            ));
        }
        lines.push(match self.strategy() {
            Strategy::Single => format!(
                "strategy single: apply replaces every password of user {} with the new one (ACL SETUSER resetpass #<sha256>)",
                quote_name(user)
            ),
            _ => "strategy dual: apply adds the new password beside the current one (ACL SETUSER #<sha256>), \
                  revoke removes every other one (!<sha256>), so at most the current and the new password work \
                  until revoke and only the new one after it"
                .to_owned(),
        });
        Ok(())
    }
}

/// `redis_version:7.0.15` from `INFO server`, if the admin may read it.
async fn server_version(admin: &AdminConn<'_>) -> Option<String> {
    let reply = admin
        .query("INFO server", redis::cmd("INFO").arg("server"), &[])
        .await
        .ok()?;
    let info = text(&reply)?;
    info.lines()
        .find_map(|l| l.strip_prefix("redis_version:"))
        .map(|v| v.trim().to_owned())
}

#[async_trait]
impl Target for RedisTarget {
    fn capabilities(&self) -> &TargetCapabilities {
        &self.capabilities
    }

    fn describe(&self) -> String {
        format!("redis ACL {}", self.user_label(self.user()))
    }

    fn complete(&self, doc: &mut SecretDoc) {
        doc.set_default("engine", "redis");
        doc.set_default("host", self.config.host.as_str());
        doc.set_default("port", self.config.port);
        doc.set_default("username", self.user());
    }

    async fn preflight(&self, current: Option<&SecretDoc>) -> ProviderResult<Vec<String>> {
        let mut lines = Vec::new();
        if let Some(current) = current {
            self.check_username(current, "current")?;
        }
        let admin = match &self.admin {
            Some(pool) => {
                pool.ensure_connected().await?;
                let admin = AdminConn::Shared(pool);
                let version = server_version(&admin).await;
                lines.push(format!(
                    "connected to {}{} as {} ({})",
                    pool.endpoint(),
                    pool.endpoint().tls_note(),
                    quote_name(pool.user_name()),
                    version.map_or_else(|| "Redis version not readable".to_owned(), |v| format!("Redis {v}"))
                ));
                admin
            }
            None => {
                let Some(doc) = current else {
                    return Err(ProviderError::invalid_input(format!(
                        "no admin is configured and there is no current secret: cannot log in as {} to check it",
                        self.user_label(self.user())
                    )));
                };
                let admin = self.admin_for_change(&[(Some(doc), "current")]).await?;
                let version = server_version(&admin).await;
                lines.push(format!(
                    "the current secret logs in as {} ({})",
                    self.user_label(self.user()),
                    version.map_or_else(|| "Redis version not readable".to_owned(), |v| format!("Redis {v}"))
                ));
                lines.push(format!(
                    "user {} will change its own passwords (no admin configured)",
                    quote_name(self.user())
                ));
                admin
            }
        };
        let result = self.preflight_as(&admin, current, &mut lines).await;
        admin.close().await;
        result.map(|()| lines)
    }

    /// What ending the old secret's connections needs: the admin may run `CLIENT KILL`
    /// (`+client|kill`; `CLIENT LIST`, which revoke runs first to note who held the
    /// connections, is not required), asked with
    /// `ACL DRYRUN <admin> CLIENT KILL USER <user>` on Redis 7, or else with a
    /// `CLIENT KILL ID 0` that matches no connection. `PermissionDenied` names the admin,
    /// the user and the ACL rule that fixes it. Without an admin the user ends its own
    /// connections, logged in with the new password, which needs `+client|kill` for it:
    /// that cannot be checked without logging in as it, and is said so.
    async fn incident_preflight(&self) -> ProviderResult<Vec<String>> {
        let user = quote_name(self.user());
        let Some(pool) = &self.admin else {
            return Ok(vec![format!(
                "user {user} will end its own connections, logged in with the new password: that needs \
                 +client|kill for it, which is not checked in advance without an admin"
            )]);
        };
        pool.ensure_connected().await?;
        let admin = AdminConn::Shared(pool);
        let line = self.check_kill(&admin).await?;
        Ok(vec![
            line,
            format!(
                "every connection of user {user} will be ended, also those already using the new password \
                 (Redis cannot tell which password a connection used)"
            ),
        ])
    }

    async fn prepare(&self, current: Option<&SecretDoc>, password: Secret) -> ProviderResult<SecretDoc> {
        if let Some(current) = current {
            self.check_username(current, "current")?;
        }
        let mut doc = current.cloned().unwrap_or_default();
        self.complete(&mut doc);
        doc.set_password(&password);
        Ok(doc)
    }

    async fn apply(&self, new: &SecretDoc, current: Option<&SecretDoc>) -> ProviderResult<()> {
        self.check_username(new, "new")?;
        let hash = acl_password_hash(&Self::password_of(new, "new")?);
        let current_hash = match current {
            Some(doc) if doc.username().is_none_or(|u| u == self.user()) => {
                doc.password().map(|p| acl_password_hash(&p))
            }
            _ => None,
        };
        let admin = self
            .admin_for_change(&[(current, "current"), (Some(new), "new")])
            .await?;
        let result = self.install(&admin, &hash, current_hash.as_deref()).await;
        admin.close().await;
        result
    }

    async fn login(&self, doc: &SecretDoc) -> ProviderResult<()> {
        let password = Self::password_of(doc, "given")?;
        let user = doc.username().unwrap_or(self.user()).to_owned();
        let (session, _) = self.open_as(&user, &password).await?;
        session.close().await;
        Ok(())
    }

    async fn revoke(&self, old: &SecretDoc, new: &SecretDoc, options: RevokeOptions) -> ProviderResult<RevokeReport> {
        let terminate = options.terminate_sessions || self.config.terminate_sessions;
        let dual = self.strategy() != Strategy::Single;
        // Single: apply already replaced every password; only sessions remain.
        if !dual && !terminate {
            return Ok(RevokeReport::default());
        }
        self.check_username(old, "old")?;
        let admin = self.admin_for_change(&[(Some(new), "new")]).await?;
        let mut result = Ok(0);
        if dual {
            // Every password but the new one goes: the old one and any other the user
            // held (incident mode included), so the leaked one cannot survive as an
            // extra.
            result = match (Self::password_of(old, "old"), Self::password_of(new, "new")) {
                (Ok(old), Ok(new)) => self.remove_all_but_new(&admin, &old, &new).await,
                (Err(e), _) | (_, Err(e)) => Err(e),
            };
        }
        let mut notes = Vec::new();
        let result = match result {
            Ok(extras) => {
                if extras > 0 {
                    notes.push(format!("{extras} other password(s) of the user removed"));
                }
                if terminate {
                    // Who held them, read just before they end.
                    let listed = self.list_sessions(&admin).await;
                    let ended = self.kill_sessions(&admin).await;
                    if let Ok(ended) = ended {
                        let passwords: Vec<Secret> = [old.password(), new.password()].into_iter().flatten().collect();
                        let secrets: Vec<&str> = passwords.iter().map(Secret::expose).collect();
                        notes.extend(self.session_notes(listed, ended, &secrets));
                    }
                    ended
                } else {
                    Ok(0)
                }
            }
            Err(e) => Err(e),
        };
        admin.close().await;
        Ok(RevokeReport {
            sessions_terminated: result?,
            notes,
        })
    }
}

/// One connection as `CLIENT LIST` shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
struct ClientInfo {
    id: Option<i64>,
    addr: Option<String>,
    name: Option<String>,
    age: Option<u64>,
    user: Option<String>,
}

impl ClientInfo {
    /// A `CLIENT LIST` line: space-separated `field=value` pairs (a client name cannot
    /// hold a space).
    fn parse(line: &str) -> Option<ClientInfo> {
        let mut c = ClientInfo {
            id: None,
            addr: None,
            name: None,
            age: None,
            user: None,
        };
        for field in line.split_ascii_whitespace() {
            let Some((key, value)) = field.split_once('=') else {
                continue;
            };
            match key {
                "id" => c.id = value.parse().ok(),
                "addr" => c.addr = Some(value.to_owned()),
                "name" => c.name = Some(value.to_owned()).filter(|v| !v.is_empty()),
                "age" => c.age = value.parse().ok(),
                "user" => c.user = Some(value.to_owned()),
                _ => {}
            }
        }
        c.id.is_some().then_some(c)
    }

    /// `connection id 12 from 127.0.0.1:53412 (billing-worker), open 42 s, ended`.
    fn note(&self, secrets: &[&str]) -> String {
        let id = self.id.map_or_else(|| "?".to_owned(), |i| i.to_string());
        let from = match self.addr.as_deref() {
            Some(addr) if addr.starts_with('/') || addr.is_empty() => "local socket".to_owned(),
            Some(addr) => notes::shown(addr, secrets),
            None => "an unknown address".to_owned(),
        };
        let name = match self.name.as_deref() {
            Some(name) => format!(" ({})", notes::shown(name, secrets)),
            None => String::new(),
        };
        let age = match self.age {
            Some(age) => format!(", open {age} s,"),
            None => String::new(),
        };
        format!("connection id {id} from {from}{name}{age} ended")
    }
}

#[cfg(test)]
mod client_list_tests {
    use super::ClientInfo;

    #[test]
    fn parses_client_list_lines() {
        let line = "id=12 addr=127.0.0.1:53412 laddr=127.0.0.1:6379 fd=9 name=billing age=42 idle=3 flags=N db=0 \
                    sub=0 psub=0 ssub=0 multi=-1 qbuf=0 user=app redir=-1 resp=2";
        let c = ClientInfo::parse(line).unwrap();
        assert_eq!(c.user.as_deref(), Some("app"));
        assert_eq!(
            c.note(&[]),
            "connection id 12 from 127.0.0.1:53412 (billing), open 42 s, ended"
        );
        let unnamed = ClientInfo::parse("id=3 addr=/tmp/redis.sock:0 name= age=1 user=app").unwrap();
        assert_eq!(unnamed.note(&[]), "connection id 3 from local socket, open 1 s, ended");
        assert_eq!(ClientInfo::parse(""), None);
        let sneaky = ClientInfo::parse("id=4 addr=1.2.3.4:5 name=pw-hunter2 age=1 user=app").unwrap();
        assert!(!sneaky.note(&["hunter2"]).contains("hunter2"));
    }
}
