//! [`PostgresTarget`]: one PostgreSQL role.

use crate::admin::AdminPool;
use crate::config::{PostgresTargetConfig, ValidUntil, VerifierPolicy};
use crate::conn::{connect, probe, Session};
use crate::error::pg_error;
use crate::notes;
use crate::sql::{alter_role_password, alter_role_password_until, md5_verifier, quote_ident, scram_verifier};
use crate::tls::TlsSetup;
use async_trait::async_trait;
use rekey_api::{
    ErrorCode, ErrorKind, ProviderError, ProviderResult, RevokeOptions, RevokeReport, Secret, SecretDoc, Strategy,
    Target, TargetCapabilities,
};
use std::fmt;
use std::sync::Arc;
use tokio_postgres::types::Type;

mod preflight;

/// Application name the target's own logins show in `pg_stat_activity`.
const LOGIN_APPLICATION_NAME: &str = "rekey";

/// A PostgreSQL role whose password rekey rotates (strategy `single`), or two roles
/// that take turns (strategy `alternating`).
///
/// With an admin connection the new password is installed with
/// `ALTER ROLE "role" PASSWORD 'SCRAM-SHA-256$4096:…'` on the admin connection shared by
/// every target of the host; without one (strategy `single` only) the role logs in
/// with its current password and runs `ALTER ROLE CURRENT_USER PASSWORD '…'`. Either
/// way only a SCRAM verifier computed on rekey's side reaches the server, so the
/// plaintext never appears in server logs, `pg_stat_activity` or `pg_stat_statements`.
///
/// Only the password changes: `VALID UNTIL` follows `valid_until` (kept by default, and a
/// rotation is refused when it would leave the new password expiring within the hour),
/// the verifier type follows `verifier` (SCRAM by default, md5 kept under `"keep"`), and
/// `plan` shows both; precheck also refuses when the role's `CONNECTION LIMIT` leaves no
/// slot for verify's login.
///
/// With `alternating`, the stored document's `username` names the live role. `prepare`
/// gives the new password to the other (idle) role, `apply` sets it, so the live role
/// keeps working untouched, and `revoke` sets the previous role's password to the
/// verifier of a random password that is never stored or shown: the role keeps its
/// privileges and memberships for its next turn, but nothing can log in as it.
///
/// Created by [`crate::PostgresProvider::postgres_target`].
pub struct PostgresTarget {
    config: PostgresTargetConfig,
    /// The configured role (`single`) or the two roles in configured order
    /// (`alternating`).
    roles: Vec<String>,
    strategy: Strategy,
    login_config: tokio_postgres::Config,
    tls: TlsSetup,
    admin: Option<Arc<AdminPool>>,
    capabilities: TargetCapabilities,
    endpoint: String,
    /// The admin connection goes to the host and port logins use, with their TLS
    /// setting: its `pg_hba.conf` line can stand for theirs ([`PostgresTarget::check_route`]).
    same_route: bool,
}

impl fmt::Debug for PostgresTarget {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PostgresTarget")
            .field("config", &self.config)
            .field("admin", &self.admin)
            .finish_non_exhaustive()
    }
}

/// The verifier a rotation computes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum VerifierKind {
    Scram,
    Md5,
}

impl PostgresTarget {
    pub(crate) fn new(
        config: PostgresTargetConfig,
        tls: TlsSetup,
        admin: Option<Arc<AdminPool>>,
        strategy: Strategy,
        same_route: bool,
    ) -> PostgresTarget {
        let mut login_config = tokio_postgres::Config::new();
        login_config
            .host(&config.host)
            .port(config.port)
            .dbname(&config.dbname)
            .application_name(LOGIN_APPLICATION_NAME);
        let endpoint = if config.host.contains(':') {
            format!("[{}]:{}", config.host, config.port)
        } else {
            format!("{}:{}", config.host, config.port)
        };
        PostgresTarget {
            capabilities: TargetCapabilities {
                strategies: vec![Strategy::Single, Strategy::Alternating],
                strategy,
                terminate_sessions: true,
                mints_own_secret: false,
                // Alternating: the previous role keeps its password until revoke.
                apply_invalidates_previous: strategy == Strategy::Single,
                retires_previous: false,
            },
            roles: config.roles().into_iter().map(str::to_owned).collect(),
            strategy,
            config,
            login_config,
            tls,
            admin,
            endpoint,
            same_route,
        }
    }

    /// The configuration this target was built from.
    pub fn config(&self) -> &PostgresTargetConfig {
        &self.config
    }

    /// Whether an admin connection is configured.
    pub fn has_admin(&self) -> bool {
        self.admin.is_some()
    }

    /// The server process id of the shared admin connection (opening it if needed), or
    /// `None` without an admin. Targets on the same host report the same pid.
    pub async fn admin_backend_pid(&self) -> ProviderResult<Option<i32>> {
        let Some(admin) = &self.admin else { return Ok(None) };
        let pid = admin
            .run("reading the backend pid", |s| async move {
                s.client
                    .query_typed_one("SELECT pg_backend_pid()", &[])
                    .await
                    .map(|row| row.get::<_, i32>(0))
            })
            .await?;
        Ok(Some(pid))
    }

    /// The configured role (`single`), or the first of the two (`alternating`).
    fn role(&self) -> &str {
        &self.roles[0]
    }

    fn alternating(&self) -> bool {
        self.strategy == Strategy::Alternating
    }

    /// `"a", "b"`: the configured roles, quoted, for messages.
    fn roles_label(&self) -> String {
        self.roles.iter().map(|r| quote_ident(r)).collect::<Vec<_>>().join(", ")
    }

    /// Alternating: which of the two roles `doc` names (the first one when it names
    /// none, as [`Target::complete`] would fill in); an error for any other user.
    fn alternating_role<'a>(&'a self, doc: &SecretDoc, which: &str) -> ProviderResult<&'a str> {
        match doc.username() {
            None => Ok(self.role()),
            Some(user) => self
                .roles
                .iter()
                .find(|r| *r == user)
                .map(String::as_str)
                .ok_or_else(|| {
                    ProviderError::invalid_input(format!(
                        "the {which} secret's username {} is not one of the configured `usernames` ({})",
                        quote_ident(user),
                        self.roles_label()
                    ))
                }),
        }
    }

    /// Alternating: the live role, the one `current` names.
    fn live_role<'a>(&'a self, current: &SecretDoc) -> ProviderResult<&'a str> {
        self.alternating_role(current, "current")
            .map_err(|e| e.context("the live role"))
    }

    /// Without an admin: the current secret must log in, as apply logs in with it; on
    /// that session, the role's own `VALID UNTIL` is checked as with an admin (a role
    /// may read its `pg_roles` row). Its connection slot needs no check: apply's session
    /// takes the one this login just proved free, and verify's login follows it. Returns
    /// the `VALID UNTIL` line for `plan`.
    async fn current_logs_in_without_admin(&self, current: Option<&SecretDoc>) -> ProviderResult<String> {
        let Some(current) = current else {
            return Err(ProviderError::invalid_input(format!(
                "no admin is configured and there is no current secret: cannot log in as {} to change its password",
                self.login_label(self.role())
            )));
        };
        let session = self.open_doc(current, "current").await.map_err(|e| {
            if e.kind() == ErrorKind::AuthRejected {
                e.context("no admin is configured, so the current secret must log in")
            } else {
                e
            }
        })?;
        let row = session
            .client
            .query_typed_one(
                "SELECT rolvaliduntil::text, CASE WHEN isfinite(rolvaliduntil) \
                 THEN extract(epoch FROM rolvaliduntil - now())::float8 END FROM pg_roles WHERE rolname = current_user",
                &[],
            )
            .await;
        session.close().await;
        let row = row.map_err(|e| {
            pg_error(
                &e,
                format_args!("reading VALID UNTIL as {}", self.login_label(self.role())),
            )
        })?;
        self.check_valid_until(
            self.role(),
            row.get::<_, Option<String>>(0).as_deref(),
            row.get(1),
            &self.endpoint,
        )
    }

    /// Proves, before anything changes, that verify's login as `user` will reach the
    /// server and pass `pg_hba.conf` with this `sslmode`, which the admin's connection
    /// does not prove by itself (a `hostssl`-only or `reject` line for some roles). Free
    /// when the admin connection takes the same route and `pg_hba.conf`'s line for it
    /// admits every role and database ([`AdminPool::hba_admits_every_role`], read once
    /// per run); otherwise one probe ([`PostgresTarget::probe_login`]).
    pub(crate) async fn check_route(&self, admin: &AdminPool, user: &str) -> ProviderResult<()> {
        if self.same_route && admin.hba_admits_every_role().await {
            return Ok(());
        }
        self.probe_login(user).await
    }

    /// Proves that a login as `user` reaches the server (see [`probe`]), without a
    /// password: for [`PostgresTarget::check_route`] when `pg_hba.conf` cannot vouch.
    async fn probe_login(&self, user: &str) -> ProviderResult<()> {
        let mut config = self.login_config.clone();
        config.user(user);
        probe(
            &config,
            &self.tls,
            self.config.connect_timeout(),
            &self.login_label(user),
        )
        .await
    }

    /// Alternating: the role of the two that is not `role`.
    fn other_role(&self, role: &str) -> &str {
        if self.roles[0] == role {
            &self.roles[1]
        } else {
            &self.roles[0]
        }
    }

    fn required_admin(&self) -> ProviderResult<&AdminPool> {
        self.admin
            .as_deref()
            .ok_or_else(|| ProviderError::invalid_input("strategy \"alternating\" needs an admin connection (`admin`)"))
    }

    /// `role "app" on 10.0.0.5:5432/orders`.
    fn login_label(&self, user: &str) -> String {
        format!("role {} on {}/{}", quote_ident(user), self.endpoint, self.config.dbname)
    }

    fn check_username(&self, doc: &SecretDoc, which: &str) -> ProviderResult<()> {
        match doc.username() {
            Some(user) if user != self.role() => Err(ProviderError::invalid_input(format!(
                "the {which} secret's username {} is not the configured role {}",
                quote_ident(user),
                quote_ident(self.role())
            ))),
            _ => Ok(()),
        }
    }

    /// The passwords of `old` and `new` that they hold, to keep out of notes.
    fn passwords(old: &SecretDoc, new: &SecretDoc) -> Vec<Secret> {
        [old.password(), new.password()].into_iter().flatten().collect()
    }

    fn password_of(doc: &SecretDoc, which: &str) -> ProviderResult<Secret> {
        doc.password()
            .ok_or_else(|| ProviderError::invalid_input(format!("the {which} secret has no `password` field")))
    }

    /// A fresh connection as `user` with `password`.
    async fn open_as(&self, user: &str, password: &Secret) -> ProviderResult<Session> {
        let mut config = self.login_config.clone();
        config.user(user).password(password.expose());
        connect(
            &config,
            &self.tls,
            self.config.connect_timeout(),
            &self.login_label(user),
        )
        .await
    }

    /// A fresh connection with `doc`'s username (the configured role if it has none)
    /// and password.
    async fn open_doc(&self, doc: &SecretDoc, which: &str) -> ProviderResult<Session> {
        let password = Self::password_of(doc, which)?;
        let user = doc.username().unwrap_or(self.role()).to_owned();
        self.open_as(&user, &password).await
    }

    /// A login as `user` that the server refused with SQLSTATE 28P01 (password
    /// authentication failed): when an admin is configured, asks it (one query on the
    /// shared admin connection) whether the role's `VALID UNTIL` is past, and if so says
    /// so in front of the server's message, with the time. PostgreSQL answers an expired
    /// role exactly as a wrong password, and refuses every password of it, right or wrong,
    /// so the kind stays `AuthRejected` as the server's answer makes it: only the message
    /// gains the reason.
    /// Any other error, no admin, or a failed query: `refused` as it is.
    async fn explain_refusal(&self, user: &str, refused: ProviderError) -> ProviderError {
        const SQL: &str = "SELECT rolvaliduntil::text, CASE WHEN isfinite(rolvaliduntil) \
                           THEN extract(epoch FROM rolvaliduntil - now())::float8 END \
                           FROM pg_roles WHERE rolname = $1 AND rolvaliduntil < now()";
        let Some(admin) = &self.admin else { return refused };
        let password_refused = refused.kind() == ErrorKind::AuthRejected
            && matches!(refused.code(), Some(ErrorCode::Sqlstate(code)) if code == "28P01");
        if !password_refused {
            return refused;
        }
        let role = user.to_owned();
        let expired = admin
            .run(&format!("reading VALID UNTIL of role {}", quote_ident(user)), |s| {
                let role = role.clone();
                async move { s.client.query_typed_opt(SQL, &[(&role, Type::TEXT)]).await }
            })
            .await;
        let Ok(Some(row)) = expired else { return refused };
        let until: String = row.get(0);
        let ago = row
            .get::<_, Option<f64>>(1)
            .map(|secs| format!(" ({})", preflight::relative_time(secs)))
            .unwrap_or_default();
        refused.context(format_args!(
            "password expired: role {} is past its VALID UNTIL '{until}'{ago}, so the server refuses every \
             password for it, right or wrong{}",
            quote_ident(user),
            preflight::RENEW_HINT
        ))
    }

    /// Terminates `role`'s backends other than the connection running the query (the
    /// admin connection, or a login with `new` when there is no admin), and says who held
    /// them: one note per session ended (pid, client address or local socket,
    /// application name, start time), read in the same statement that ends them, at most
    /// [`notes::MAX_SESSION_NOTES`] of them. `secrets` (the old and new passwords) are kept
    /// out of the notes even if a client put one in its application name.
    async fn terminate_sessions(
        &self,
        role: &str,
        new: &SecretDoc,
        secrets: &[&str],
    ) -> ProviderResult<(u64, Vec<String>)> {
        // One statement: the rows describe exactly the backends it signals. Without
        // pg_read_all_stats (or the role's privileges) client_addr and backend_start of
        // another role's backends read as NULL; pid and application_name never do.
        const SQL: &str = "SELECT pid, host(client_addr), backend_start IS NOT NULL, application_name, \
                           to_char(backend_start AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS\"Z\"'), \
                           pg_terminate_backend(pid) FROM pg_stat_activity \
                           WHERE usename = $1 AND pid <> pg_backend_pid() ORDER BY backend_start, pid";
        let role = role.to_owned();
        let action = format!("ending the sessions of role {}", quote_ident(&role));
        let ended = match &self.admin {
            Some(admin) => {
                let result = admin
                    .run(&action, |s| {
                        let role = role.clone();
                        async move { s.client.query_typed(SQL, &[(&role, Type::TEXT)]).await }
                    })
                    .await;
                match result {
                    Ok(rows) => rows,
                    Err(e) if e.kind() == ErrorKind::PermissionDenied => {
                        return Err(self.explain_signal_denied(admin, &role, e).await)
                    }
                    Err(e) => return Err(e),
                }
            }
            None => {
                // A role may signal its own backends.
                let session = self.open_doc(new, "new").await?;
                let rows = session.client.query_typed(SQL, &[(&role, Type::TEXT)]).await;
                session.close().await;
                rows.map_err(|e| pg_error(&e, format_args!("{action} as {}", self.login_label(&role))))?
            }
        };
        let sessions: Vec<EndedSession> = ended
            .iter()
            .filter(|row| row.get::<_, Option<bool>>(5) == Some(true))
            .map(|row| EndedSession {
                pid: row.get(0),
                client_addr: row.get(1),
                visible: row.get::<_, Option<bool>>(2) == Some(true),
                application_name: row.get(3),
                since: row.get(4),
            })
            .collect();
        let count = sessions.len();
        let lines = sessions.iter().map(|s| s.note(secrets)).collect();
        Ok((count as u64, notes::capped(lines, count)))
    }

    /// `pg_terminate_backend` was refused (SQLSTATE 42501): the same reason
    /// [`Target::incident_preflight`] gives, read from the catalogs, with the SQLSTATE;
    /// `refused` itself if the catalogs say the admin may (or cannot be read).
    async fn explain_signal_denied(&self, admin: &AdminPool, role: &str, refused: ProviderError) -> ProviderError {
        let Ok(view) = self.read_view(admin).await else {
            return refused;
        };
        match self.check_signal(admin, &view, &[role]) {
            Err(e) if e.kind() == ErrorKind::PermissionDenied => {
                ProviderError::permission_denied(format!("{} (pg_terminate_backend: SQLSTATE 42501)", e.message()))
            }
            _ => refused,
        }
    }

    /// Sets `role`'s password to the verifier of `password` through the admin connection.
    /// With `renew` (the new password, not a retired role's unknowable one) the verifier
    /// follows `verifier` (an md5 role keeps md5 under `"keep"`) and the same statement
    /// applies `valid_until` (`'infinity'` for `"clear"`, now + the duration by the
    /// server's clock for a duration; nothing for `"keep"`).
    async fn apply_with_admin(
        &self,
        admin: &AdminPool,
        role: &str,
        password: &Secret,
        renew: bool,
    ) -> ProviderResult<()> {
        let kind = if renew && self.config.verifier == VerifierPolicy::Keep {
            let types = self.verifier_types(admin, true).await?;
            self.plan_verifier(role, types.as_deref(), "")?.0
        } else {
            VerifierKind::Scram
        };
        let verifier = match kind {
            VerifierKind::Scram => scram_verifier(password).await?,
            VerifierKind::Md5 => md5_verifier(password, role),
        };
        let valid_until = match (renew, self.config.valid_until) {
            (false, _) | (true, ValidUntil::Keep) => None,
            (true, ValidUntil::Clear) => Some("infinity".to_owned()),
            (true, ValidUntil::For(d)) => {
                let secs = d.as_secs_f64();
                let until: String = admin
                    .run("computing VALID UNTIL", |s| async move {
                        s.client
                            .query_typed_one(
                                "SELECT (now() + make_interval(secs => $1))::text",
                                &[(&secs, Type::FLOAT8)],
                            )
                            .await
                            .map(|row| row.get(0))
                    })
                    .await?;
                Some(until)
            }
        };
        let sql = Arc::new(alter_role_password_until(
            &quote_ident(role),
            &verifier,
            valid_until.as_deref(),
        ));
        admin
            .run(&format!("ALTER ROLE {}", quote_ident(role)), |s| {
                let sql = sql.clone();
                async move { s.client.batch_execute(&sql).await }
            })
            .await
    }

    async fn apply_as_role(&self, new: &SecretDoc, current: Option<&SecretDoc>) -> ProviderResult<()> {
        let new_password = Self::password_of(new, "new")?;
        let Some(current) = current else {
            // Nothing to log in with; fine only if the new secret is already in place.
            return match self.open_as(self.role(), &new_password).await {
                Ok(session) => {
                    session.close().await;
                    Ok(())
                }
                Err(e) if e.kind() == ErrorKind::AuthRejected => Err(ProviderError::invalid_input(format!(
                    "no admin is configured and there is no current secret: cannot log in as {} to change its password",
                    self.login_label(self.role())
                ))),
                Err(e) => Err(e),
            };
        };
        self.check_username(current, "current")?;
        let current_password = Self::password_of(current, "current")?;
        let session = match self.open_as(self.role(), &current_password).await {
            Ok(session) => session,
            Err(e) if e.kind() == ErrorKind::AuthRejected => {
                // Idempotence: a repeated apply finds the new secret already installed.
                return match self.open_as(self.role(), &new_password).await {
                    Ok(session) => {
                        session.close().await;
                        Ok(())
                    }
                    Err(e2) if e2.kind() == ErrorKind::AuthRejected => {
                        Err(e.context("no admin is configured and neither the current nor the new secret logs in"))
                    }
                    Err(e2) => Err(e2),
                };
            }
            Err(e) => return Err(e),
        };
        let verifier = scram_verifier(&new_password).await;
        let result = match verifier {
            Ok(verifier) => {
                let sql = alter_role_password("CURRENT_USER", &verifier);
                session.client.batch_execute(&sql).await.map_err(|e| {
                    pg_error(
                        &e,
                        format_args!("ALTER ROLE CURRENT_USER as {}", self.login_label(self.role())),
                    )
                })
            }
            Err(e) => Err(e),
        };
        session.close().await;
        result
    }
}

#[async_trait]
impl Target for PostgresTarget {
    fn capabilities(&self) -> &TargetCapabilities {
        &self.capabilities
    }

    fn describe(&self) -> String {
        if self.alternating() {
            format!(
                "postgres roles {} (alternating) on {}/{}",
                self.roles
                    .iter()
                    .map(|r| quote_ident(r))
                    .collect::<Vec<_>>()
                    .join(" and "),
                self.endpoint,
                self.config.dbname
            )
        } else {
            format!("postgres {}", self.login_label(self.role()))
        }
    }

    /// Fills `engine`, `host`, `port`, `username` (the configured role; with
    /// `alternating`, the first of `usernames`) and `dbname` where missing.
    fn complete(&self, doc: &mut SecretDoc) {
        doc.set_default("engine", "postgres");
        doc.set_default("host", self.config.host.as_str());
        doc.set_default("port", self.config.port);
        doc.set_default("username", self.role());
        doc.set_default("dbname", self.config.dbname.as_str());
    }

    /// With `alternating`, also checks that the live role (`current`'s username) is one
    /// of the two, that the admin may alter both, and that both have identical
    /// attributes, memberships, settings and privileges (an `invalid_input` error
    /// naming each difference otherwise).
    async fn preflight(&self, current: Option<&SecretDoc>) -> ProviderResult<Vec<String>> {
        let mut plan = None;
        if let Some(current) = current {
            if self.alternating() {
                let live = self.live_role(current)?;
                plan = Some(format!(
                    "role {} is live; the next rotation sets the password of role {} and then invalidates {}'s",
                    quote_ident(live),
                    quote_ident(self.other_role(live)),
                    quote_ident(live)
                ));
            } else {
                self.check_username(current, "current")?;
            }
        } else if self.alternating() {
            plan = Some(format!(
                "no current secret: the first rotation sets the password of role {}",
                quote_ident(self.role())
            ));
        }
        let mut lines = match &self.admin {
            Some(admin) => self.preflight_with_admin(admin, current).await?,
            None => {
                let valid_until = self.current_logs_in_without_admin(current).await?;
                vec![
                    format!("the current secret logs in as {}", self.login_label(self.role())),
                    format!(
                        "role {} will change its own password (no admin configured) to a SCRAM-SHA-256 verifier \
                         computed by rekey (its current verifier type cannot be read without a superuser)",
                        quote_ident(self.role())
                    ),
                    valid_until,
                ]
            }
        };
        lines.extend(plan);
        if self.config.terminate_sessions {
            lines.push(if self.alternating() {
                "sessions of the previous role will be ended at revoke".to_owned()
            } else {
                format!("sessions of role {} will be ended at revoke", quote_ident(self.role()))
            });
        }
        Ok(lines)
    }

    /// The checks whose failure would make the rotation fail after it changed something
    /// (staged a secret, applied it), with the same errors as [`Target::preflight`], so a
    /// rotation that cannot succeed changes nothing:
    ///
    /// - `current` names the configured role (`single`) or one of the two (`alternating`);
    /// - with an admin: one query on the shared admin connection (which it opens if
    ///   needed, so a wrong admin password or an unreachable host fails here): the role
    ///   (both roles, for `alternating`) exists, the admin may alter it, it may log in,
    ///   is not expired and may connect to `dbname`; for the role that gets the new
    ///   password, `VALID UNTIL` is not past or within the hour under
    ///   `valid_until = "keep"`, and a login slot is free (`CONNECTION LIMIT` of the role
    ///   and of the database against the sessions open), else verify's login would fail
    ///   after apply. With `verifier = "keep"`, a second query reads the role's verifier
    ///   type (`pg_authid`). No login with the current secret: apply does not need it.
    ///   Beside the query it checks the login route (`check_route`: `pg_hba_file_rules`
    ///   read once per run, or a probe where that cannot vouch):
    ///   verify must reach the server and pass `pg_hba.conf` as this role with this
    ///   `sslmode`, which the admin's connection does not prove (a `hostssl`-only or
    ///   `reject` line for the role);
    /// - without an admin: the current secret logs in, since apply logs in with it.
    ///
    /// With `alternating` it also compares the two roles' privileges, as `preflight`
    /// does: apply would succeed, but the rotation would move the applications to a role
    /// that lacks something they use. It skips what only `plan` reports: the current
    /// secret's login when an admin is configured.
    async fn precheck(&self, current: Option<&SecretDoc>) -> ProviderResult<()> {
        // The role the rotation's logins (verify) will use.
        let mut next = self.role();
        if let Some(current) = current {
            if self.alternating() {
                next = self.other_role(self.live_role(current)?);
            } else {
                self.check_username(current, "current")?;
            }
        }
        match &self.admin {
            Some(admin) => {
                let mut lines = Vec::new();
                // The admin's success says nothing of the login's own route: pg_hba.conf
                // may refuse this role, or this role without TLS, from here. Verify would
                // fail after apply; the route check finds it now, while the catalog read
                // runs.
                let (view, probe) = tokio::join!(self.read_view(admin), self.check_route(admin, next));
                let view = view?;
                self.check_view(admin, &view, next, &mut lines)?;
                probe?;
                if self.config.verifier == VerifierPolicy::Keep {
                    // Apply must know whether to compute an md5 or a SCRAM verifier.
                    let types = self.verifier_types(admin, view.can_read_authid).await?;
                    self.plan_verifier(next, types.as_deref(), &view.password_encryption)?;
                }
                if self.alternating() {
                    // Not needed by apply, but a rotation between roles that differ would
                    // move the applications to a role that lacks what they use.
                    self.compare_roles(admin, &mut lines).await?;
                }
                Ok(())
            }
            None => self.current_logs_in_without_admin(current).await.map(drop),
        }
    }

    /// What ending the old secret's sessions needs (`pg_terminate_backend` on the role's
    /// backends), checked read-only on the shared admin connection with the catalogs'
    /// answer to the server's own rule: the admin is a superuser, or (for a role that is
    /// not a superuser) has the privileges of `pg_signal_backend` or of the role
    /// (`pg_has_role(current_user, …, 'USAGE')`: a `NOINHERIT` membership does not
    /// count). With `alternating`, for both roles. `PermissionDenied` names the admin,
    /// the role and the fix (`GRANT pg_signal_backend TO "admin"`); a missing role is
    /// `NotFound`. Without an admin the role ends its own backends, which any role may.
    async fn incident_preflight(&self) -> ProviderResult<Vec<String>> {
        let Some(admin) = &self.admin else {
            return Ok(vec![format!(
                "role {} will end its own sessions, logged in with the new password (a role may always end its \
                 own backends)",
                quote_ident(self.role())
            )]);
        };
        let view = self.read_view(admin).await?;
        let roles: Vec<&str> = self.roles.iter().map(String::as_str).collect();
        let mut lines = self.check_signal(admin, &view, &roles)?;
        lines.push(if self.alternating() {
            "every session of the previous role will be ended at revoke".to_owned()
        } else {
            format!(
                "every session of role {} will be ended, also those already using the new password (PostgreSQL \
                 cannot tell which password a session logged in with)",
                quote_ident(self.role())
            )
        });
        Ok(lines)
    }

    /// With `alternating`, the new document names the idle role: the one of `usernames`
    /// that `current` does not name (the first one when there is no current secret).
    async fn prepare(&self, current: Option<&SecretDoc>, password: Secret) -> ProviderResult<SecretDoc> {
        let mut user = None;
        if let Some(current) = current {
            if self.alternating() {
                user = Some(self.other_role(self.alternating_role(current, "current")?).to_owned());
            } else {
                self.check_username(current, "current")?;
            }
        }
        let mut doc = current.cloned().unwrap_or_default();
        self.complete(&mut doc);
        if let Some(user) = user {
            doc.set("username", user);
        }
        doc.set_password(&password);
        Ok(doc)
    }

    /// With `alternating`, sets the password of the role `new` names, which must not be
    /// the live one (`current`'s): the live role is never touched.
    async fn apply(&self, new: &SecretDoc, current: Option<&SecretDoc>) -> ProviderResult<()> {
        if self.alternating() {
            let user = self.alternating_role(new, "new")?;
            if let Some(current) = current {
                if self.alternating_role(current, "current")? == user {
                    return Err(ProviderError::invalid_input(format!(
                        "the new secret names role {}, which is live (the current secret's): with strategy \
                         \"alternating\" the new password goes to the idle role {}",
                        quote_ident(user),
                        quote_ident(self.other_role(user))
                    )));
                }
            }
            let admin = self.required_admin()?;
            return self
                .apply_with_admin(admin, user, &Self::password_of(new, "new")?, true)
                .await;
        }
        self.check_username(new, "new")?;
        match &self.admin {
            Some(admin) => {
                self.apply_with_admin(admin, self.role(), &Self::password_of(new, "new")?, true)
                    .await
            }
            None => self.apply_as_role(new, current).await,
        }
    }

    async fn login(&self, doc: &SecretDoc) -> ProviderResult<()> {
        let session = self.open_doc(doc, "given").await?;
        session.close().await;
        Ok(())
    }

    /// A refused login (SQLSTATE 28P01) says so when the role's `VALID UNTIL` has passed
    /// (asked on the admin connection, see [`PostgresTarget::explain_refusal`]).
    async fn verify(&self, doc: &SecretDoc) -> ProviderResult<()> {
        let session = match self.open_doc(doc, "new").await {
            Ok(session) => session,
            Err(e) => {
                let user = doc.username().unwrap_or(self.role());
                return Err(self.explain_refusal(user, e).await);
            }
        };
        let result = match &self.config.check_query {
            None => Ok(()),
            Some(query) => session.client.simple_query(query).await.map(drop).map_err(|e| {
                pg_error(
                    &e,
                    format_args!(
                        "check query as {}",
                        self.login_label(doc.username().unwrap_or(self.role()))
                    ),
                )
            }),
        };
        session.close().await;
        result
    }

    /// `single`: apply already replaced the old password; only sessions are ended, when
    /// asked. `alternating`: first proves that `new` logs in, then sets the previous
    /// role's password to the verifier of a fresh random password that is never stored
    /// (the role keeps its privileges for its next turn), then ends the previous role's
    /// sessions when asked. If `old` and `new` name the same role, apply already
    /// replaced its password and it is handled as with `single`.
    async fn revoke(&self, old: &SecretDoc, new: &SecretDoc, options: RevokeOptions) -> ProviderResult<RevokeReport> {
        let terminate = options.terminate_sessions || self.config.terminate_sessions;
        if !self.alternating() {
            if !terminate {
                return Ok(RevokeReport::default());
            }
            let secrets = Self::passwords(old, new);
            let secrets: Vec<&str> = secrets.iter().map(Secret::expose).collect();
            let (sessions_terminated, notes) = self.terminate_sessions(self.role(), new, &secrets).await?;
            return Ok(RevokeReport {
                sessions_terminated,
                notes,
            });
        }
        let previous = self.alternating_role(old, "old")?;
        let next = self.alternating_role(new, "new")?;
        if previous != next {
            let admin = self.required_admin()?;
            // Never leave no working secret: the new one must log in first.
            if let Err(e) = self.login(new).await {
                let why = format!(
                    "refusing to invalidate role {}: the new secret does not log in as {}",
                    quote_ident(previous),
                    self.login_label(next)
                );
                return Err(if e.kind() == ErrorKind::AuthRejected {
                    ProviderError::conflict(format!("{why} ({})", e.message())).retryable(false)
                } else {
                    e.context(why)
                });
            }
            let unknown = unknowable_password();
            self.apply_with_admin(admin, previous, &unknown, false)
                .await
                .map_err(|e| {
                    e.context(format_args!(
                        "invalidating the password of role {}",
                        quote_ident(previous)
                    ))
                })?;
        }
        let (sessions_terminated, notes) = if terminate {
            let secrets = Self::passwords(old, new);
            let secrets: Vec<&str> = secrets.iter().map(Secret::expose).collect();
            self.terminate_sessions(previous, new, &secrets).await?
        } else {
            (0, Vec::new())
        };
        Ok(RevokeReport {
            sessions_terminated,
            notes,
        })
    }
}

/// A backend `revoke` ended, as `pg_stat_activity` showed it in the same statement.
struct EndedSession {
    pid: Option<i32>,
    /// `None` for a Unix socket (or when not `visible`).
    client_addr: Option<String>,
    /// Whether the admin may read the backend's details (`backend_start` is not NULL).
    visible: bool,
    application_name: Option<String>,
    /// `backend_start`, RFC 3339 UTC.
    since: Option<String>,
}

impl EndedSession {
    /// `session pid 4242 from 10.0.0.5 (psql) since 2026-11-30T04:01:02Z ended`.
    fn note(&self, secrets: &[&str]) -> String {
        let pid = self.pid.map_or_else(|| "?".to_owned(), |p| p.to_string());
        let app = match self.application_name.as_deref() {
            Some(name) if !name.is_empty() => format!(" ({})", notes::shown(name, secrets)),
            _ => String::new(),
        };
        if !self.visible {
            return format!(
                "session pid {pid}{app} ended (its address and start time are hidden from the admin: \
                 pg_read_all_stats would show them)"
            );
        }
        let from = match &self.client_addr {
            Some(addr) => addr.clone(),
            None => "local socket".to_owned(),
        };
        let since = self.since.as_deref().unwrap_or("?");
        format!("session pid {pid} from {from}{app} since {since} ended")
    }
}

/// 48 random bytes, hex-encoded: a password nobody knows, whose verifier replaces the
/// previous alternating role's. Dropped (and zeroized) once the verifier is computed.
fn unknowable_password() -> Secret {
    use rand::RngCore;
    let mut bytes = zeroize::Zeroizing::new([0u8; 48]);
    rand::rngs::OsRng.fill_bytes(&mut bytes[..]);
    let mut hex = String::with_capacity(96);
    for b in bytes.iter() {
        hex.push(char::from_digit(u32::from(b >> 4), 16).unwrap_or('0'));
        hex.push(char::from_digit(u32::from(b & 0xf), 16).unwrap_or('0'));
    }
    Secret::new(hex)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unknowable_passwords_are_long_and_fresh() {
        let (a, b) = (unknowable_password(), unknowable_password());
        assert_eq!(a.len(), 96);
        assert_ne!(a, b);
        assert!(a.expose().bytes().all(|c| c.is_ascii_hexdigit()));
    }
}
