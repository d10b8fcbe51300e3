//! [`PostgresTarget`]: one PostgreSQL role.

use crate::admin::AdminPool;
use crate::alternating::{self, RoleProfile};
use crate::config::{PostgresTargetConfig, ValidUntil, VerifierPolicy};
use crate::conn::{connect, probe, Session};
use crate::error::pg_error;
use crate::notes;
use crate::sql::{alter_role_password, alter_role_password_until, md5_verifier, quote_ident, scram_verifier};
use crate::tls::TlsSetup;
use async_trait::async_trait;
use rekey_api::{
    ErrorKind, ProviderError, ProviderResult, RevokeOptions, RevokeReport, Secret, SecretDoc, Strategy, Target,
    TargetCapabilities,
};
use std::fmt;
use std::sync::Arc;
use tokio_postgres::types::Type;

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
    /// The admin connection goes to another endpoint (or with another TLS setting) than
    /// logins do, so precheck must see for itself that logins reach the server.
    probe_logins: bool,
}

impl fmt::Debug for PostgresTarget {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PostgresTarget")
            .field("config", &self.config)
            .field("admin", &self.admin)
            .finish_non_exhaustive()
    }
}

/// The one query behind `precheck` (and the admin part of `preflight`), run on the shared
/// admin connection: the admin's attributes and the server version, then one row per
/// configured role (`$1`, in order) with what the catalogs say of it and of its access to
/// the database `$2`, and whether the admin may end its sessions (the privileges of
/// `pg_signal_backend` or of the role, for [`Target::incident_preflight`]); the role's
/// and the database's connection limits with their open sessions, the role's
/// `VALID UNTIL` (and the seconds left), `password_encryption`, and whether the admin may
/// read `pg_authid` (verifier types). A missing
/// role or database still yields its row (`exists` or `db_exists` false), so one round
/// trip answers every check.
const PRECHECK_SQL: &str = "SELECT a.rolname::text, a.rolsuper, a.rolcreaterole, \
     current_setting('server_version_num')::int4, current_setting('server_version'), \
     n.name, r.oid IS NOT NULL, coalesce(r.rolsuper, false), coalesce(r.rolreplication, false), \
     coalesce(r.rolcanlogin, false), coalesce(r.rolvaliduntil < now(), false), \
     coalesce(pg_has_role(current_user, r.oid, 'MEMBER WITH ADMIN OPTION'), false), \
     d.oid IS NOT NULL, \
     CASE WHEN r.oid IS NULL OR d.oid IS NULL THEN false \
     ELSE d.datallowconn AND coalesce(has_database_privilege(r.oid, d.oid, 'CONNECT'), false) END, \
     pg_has_role(current_user, 'pg_signal_backend', 'USAGE'), \
     coalesce(pg_has_role(current_user, r.oid, 'USAGE'), false), \
     coalesce(pg_has_role(current_user, r.oid, 'MEMBER'), false), \
     coalesce(r.rolconnlimit, -1), \
     (SELECT count(*) FROM pg_stat_activity s WHERE s.usename = n.name), \
     r.rolvaliduntil::text, \
     CASE WHEN isfinite(r.rolvaliduntil) THEN extract(epoch FROM r.rolvaliduntil - now())::float8 END, \
     coalesce(d.datconnlimit, -1), \
     (SELECT count(*) FROM pg_stat_activity s WHERE s.datname = $2), \
     current_setting('password_encryption'), \
     has_table_privilege('pg_catalog.pg_authid', 'SELECT') \
     FROM pg_roles a \
     CROSS JOIN unnest($1::text[]) WITH ORDINALITY AS n(name, i) \
     LEFT JOIN pg_roles r ON r.rolname = n.name \
     LEFT JOIN pg_database d ON d.datname = $2 \
     WHERE a.rolname = current_user \
     ORDER BY n.i";

/// How close a kept `VALID UNTIL` may be before a rotation is refused: the new password
/// would die with it.
const NEAR_EXPIRY_SECS: f64 = 3600.0;

/// What renews an expiring role, appended to refusals.
const RENEW_HINT: &str = "; set valid_until = \"clear\" or a duration such as \"90d\" so that the rotation renews it";

/// The verifier a rotation computes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum VerifierKind {
    Scram,
    Md5,
}

/// `in 2d 3h`, `in 12m`, `3h ago`.
fn relative_time(secs: f64) -> String {
    let total = secs.abs() as u64;
    let (d, h, m) = (total / 86_400, total % 86_400 / 3_600, total % 3_600 / 60);
    let span = if d > 0 {
        format!("{d}d {h}h")
    } else if h > 0 {
        format!("{h}h {m}m")
    } else if m > 0 {
        format!("{m}m")
    } else {
        format!("{total}s")
    };
    if secs < 0.0 {
        format!("{span} ago")
    } else {
        format!("in {span}")
    }
}

/// A connection limit (`rolconnlimit` or `datconnlimit`, -1 for none) against the
/// sessions open now: the server refuses a new login once they reach it (superusers
/// excepted). A line for `plan`, or a `Conflict` (not retried) naming the limit, the
/// sessions and `fix`: verify's login would fail after apply changed the password.
fn check_slot(
    what: &str,
    limit: i32,
    sessions: i64,
    superuser: bool,
    fix: &str,
    endpoint: &str,
) -> ProviderResult<Option<String>> {
    if limit < 0 {
        return Ok(None);
    }
    if superuser {
        return Ok(Some(format!(
            "{what} has CONNECTION LIMIT {limit} ({sessions} session(s) open), not enforced for a superuser role"
        )));
    }
    if sessions >= i64::from(limit) {
        return Err(ProviderError::conflict(format!(
            "{what} on {endpoint} has CONNECTION LIMIT {limit} and {sessions} session(s) open: the login that \
             verifies the new password would be refused (too many connections) after the password was changed; \
             nothing was changed: wait for a session to end, or raise the limit ({fix})"
        ))
        .retryable(false));
    }
    Ok(Some(format!(
        "{what} has CONNECTION LIMIT {limit} with {sessions} session(s) open: the login that verifies the new \
         password has a slot (unless another session takes it meanwhile)"
    )))
}

/// What [`PRECHECK_SQL`] read.
struct AdminView {
    admin_user: String,
    admin_super: bool,
    admin_createrole: bool,
    server_version_num: i32,
    server_version: String,
    /// `pg_has_role(current_user, 'pg_signal_backend', 'USAGE')`: the admin has the
    /// privileges of `pg_signal_backend` (directly or through an inheriting membership).
    admin_signal_backend: bool,
    roles: Vec<RoleFacts>,
    /// `datconnlimit` of `dbname` (-1: none).
    db_connlimit: i32,
    /// Sessions open on `dbname`.
    db_sessions: i64,
    /// `password_encryption`: what a plaintext password would be stored as.
    password_encryption: String,
    /// The admin may read `pg_authid` (superusers): verifier types are known.
    can_read_authid: bool,
}

/// One configured role, from the catalogs.
struct RoleFacts {
    name: String,
    exists: bool,
    role_super: bool,
    role_replication: bool,
    can_login: bool,
    expired: bool,
    admin_option: bool,
    db_exists: bool,
    /// The database allows connections and the role has `CONNECT` on it.
    may_connect: bool,
    /// `pg_has_role(current_user, role, 'USAGE')`: the admin has the role's privileges.
    admin_usage: bool,
    /// `pg_has_role(current_user, role, 'MEMBER')`: the admin is a member of the role
    /// (perhaps without inheriting its privileges).
    admin_member: bool,
    /// `rolconnlimit` (-1: none).
    connlimit: i32,
    /// Sessions of the role open now.
    sessions: i64,
    /// `VALID UNTIL` as the server prints it, if set.
    valid_until: Option<String>,
    /// Seconds until `VALID UNTIL` (negative when past); `None` when unset or infinite.
    valid_for_secs: Option<f64>,
}

/// What the admin may do to the role, from the catalogs.
struct Privileges {
    admin_user: String,
    admin_super: bool,
    admin_createrole: bool,
    server_version_num: i32,
    role_super: bool,
    role_replication: bool,
    admin_option: bool,
}

impl Privileges {
    /// Why the admin may alter the role's password, or why not; mirrors the server's
    /// checks in `AlterRole` for PostgreSQL 15 and 16+.
    fn may_alter(&self, role: &str) -> Result<&'static str, String> {
        if self.admin_super {
            return Ok("superuser");
        }
        if self.admin_user == role {
            return Ok("its own role");
        }
        if self.role_super {
            return Err("only a superuser may alter a superuser role".into());
        }
        if !self.admin_createrole {
            return Err("the admin is neither superuser nor has CREATEROLE".into());
        }
        if self.server_version_num < 160000 {
            if self.role_replication {
                return Err("only a superuser may alter a REPLICATION role before PostgreSQL 16".into());
            }
            Ok("CREATEROLE")
        } else if self.admin_option {
            Ok("CREATEROLE with ADMIN OPTION on the role")
        } else {
            Err("since PostgreSQL 16, CREATEROLE also needs ADMIN OPTION on the role".into())
        }
    }
}

/// What decides whether the admin may end a role's sessions (`pg_terminate_backend`).
struct SignalFacts<'a> {
    admin_user: &'a str,
    admin_super: bool,
    /// The admin has the privileges of `pg_signal_backend`.
    admin_signal_backend: bool,
    role_super: bool,
    /// The admin has the role's privileges (`pg_has_role(…, 'USAGE')`; true for itself).
    admin_usage: bool,
    /// The admin is a member of the role, perhaps without inheriting its privileges.
    admin_member: bool,
}

impl SignalFacts<'_> {
    /// Why the admin may end the role's backends, or why not; mirrors the server's
    /// `pg_signal_backend()` check (the same in PostgreSQL 15, 16 and 17): a superuser's
    /// backends only by a superuser; otherwise the privileges of the role or of
    /// `pg_signal_backend` (both "has privileges of", so a `NOINHERIT` membership does
    /// not count).
    fn may_end_sessions(&self) -> Result<String, String> {
        let admin = quote_ident(self.admin_user);
        if self.admin_super {
            return Ok("superuser".into());
        }
        if self.role_super {
            return Err("only a superuser may end the sessions of a superuser role".into());
        }
        if self.admin_usage {
            return Ok("it has the privileges of the role".into());
        }
        if self.admin_signal_backend {
            return Ok("member of pg_signal_backend".into());
        }
        let fix = format!("it lacks pg_signal_backend (GRANT pg_signal_backend TO {admin})");
        if self.admin_member {
            Err(format!(
                "{fix}; its membership in the role does not count because it does not inherit the role's privileges"
            ))
        } else {
            Err(fix)
        }
    }
}

/// What decides whether the admin may alter `facts`' role.
fn privileges(view: &AdminView, facts: &RoleFacts) -> Privileges {
    Privileges {
        admin_user: view.admin_user.clone(),
        admin_super: view.admin_super,
        admin_createrole: view.admin_createrole,
        server_version_num: view.server_version_num,
        role_super: facts.role_super,
        role_replication: facts.role_replication,
        admin_option: facts.admin_option,
    }
}

impl PostgresTarget {
    pub(crate) fn new(
        config: PostgresTargetConfig,
        tls: TlsSetup,
        admin: Option<Arc<AdminPool>>,
        strategy: Strategy,
        probe_logins: bool,
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
            },
            roles: config.roles().into_iter().map(str::to_owned).collect(),
            strategy,
            config,
            login_config,
            tls,
            admin,
            endpoint,
            probe_logins,
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

    /// Proves that a login as `user` reaches the server (see [`probe`]), without a
    /// password: for precheck when the admin connection does not already prove it.
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

    async fn preflight_with_admin(
        &self,
        admin: &AdminPool,
        current: Option<&SecretDoc>,
    ) -> ProviderResult<Vec<String>> {
        let mut lines = Vec::new();
        let view = self.read_view(admin).await?;
        let next = self.next_role(current)?;
        self.check_view(admin, &view, next, &mut lines)?;
        let types = self.verifier_types(admin, view.can_read_authid).await?;
        let (_, line) = self.plan_verifier(next, types.as_deref(), &view.password_encryption)?;
        lines.push(line);
        if self.config.terminate_sessions {
            // Every revoke will end sessions: a rotation would fail there.
            let roles: Vec<&str> = self.roles.iter().map(String::as_str).collect();
            lines.extend(self.check_signal(admin, &view, &roles)?);
        }
        if self.alternating() {
            self.compare_roles(admin, &mut lines).await?;
        }
        if let Some(current) = current {
            let user = current.username().unwrap_or(self.role()).to_owned();
            match self.open_doc(current, "current").await {
                Ok(session) => {
                    session.close().await;
                    lines.push(format!("the current secret logs in as {}", self.login_label(&user)));
                }
                Err(e) if e.kind() == ErrorKind::AuthRejected => lines.push(if self.alternating() {
                    format!(
                        "the current secret is refused as {} (applications holding it cannot log in; the \
                         rotation moves them to role {})",
                        self.login_label(&user),
                        quote_ident(self.other_role(&user))
                    )
                } else {
                    format!(
                        "the current secret is refused as {} (the rotation will replace it)",
                        self.login_label(&user)
                    )
                }),
                Err(e) => return Err(e),
            }
        }
        Ok(lines)
    }

    /// One round trip on the shared admin connection: who the admin is, the server's
    /// version, and for each configured role whether it exists, what the admin may do to
    /// it, whether it may log in, and whether it may connect to `dbname`.
    async fn read_view(&self, admin: &AdminPool) -> ProviderResult<AdminView> {
        let roles = Arc::new(self.roles.clone());
        let dbname = Arc::new(self.config.dbname.clone());
        let action = format!(
            "reading the attributes of the admin and of role(s) {}",
            self.roles_label()
        );
        let rows = admin
            .run(&action, |s| {
                let (roles, dbname) = (roles.clone(), dbname.clone());
                async move {
                    s.client
                        .query_typed(PRECHECK_SQL, &[(&*roles, Type::TEXT_ARRAY), (&*dbname, Type::TEXT)])
                        .await
                }
            })
            .await?;
        let Some(first) = rows.first() else {
            return Err(ProviderError::other(format!(
                "{action} as {}: the admin's own role is missing from pg_roles",
                admin.label()
            )));
        };
        let mut view = AdminView {
            admin_user: first.get(0),
            admin_super: first.get(1),
            admin_createrole: first.get(2),
            server_version_num: first.get(3),
            server_version: first.get(4),
            admin_signal_backend: first.get(14),
            roles: Vec::with_capacity(rows.len()),
            db_connlimit: first.get(21),
            db_sessions: first.get(22),
            password_encryption: first.get(23),
            can_read_authid: first.get(24),
        };
        for row in &rows {
            view.roles.push(RoleFacts {
                name: row.get(5),
                exists: row.get(6),
                role_super: row.get(7),
                role_replication: row.get(8),
                can_login: row.get(9),
                expired: row.get(10),
                admin_option: row.get(11),
                db_exists: row.get(12),
                may_connect: row.get(13),
                admin_usage: row.get(15),
                admin_member: row.get(16),
                connlimit: row.get(17),
                sessions: row.get(18),
                valid_until: row.get(19),
                valid_for_secs: row.get(20),
            });
        }
        Ok(view)
    }

    /// Checks what [`PostgresTarget::read_view`] read, in the order `preflight` always
    /// reported it: the admin, then for each role its existence, whether the admin may
    /// alter it, `LOGIN`, `VALID UNTIL`, and the database. Pushes one line per fact.
    ///
    /// `next` is the role whose password the rotation sets: for it, also `VALID UNTIL`
    /// under `valid_until` and a free login slot (role and database connection limits).
    fn check_view(
        &self,
        admin: &AdminPool,
        view: &AdminView,
        next: &str,
        lines: &mut Vec<String>,
    ) -> ProviderResult<()> {
        let version = view.server_version.split_whitespace().next().unwrap_or_default();
        lines.push(format!(
            "connected to {} as admin {} (PostgreSQL {version})",
            admin.endpoint(),
            quote_ident(&view.admin_user)
        ));
        if self.alternating() && self.roles.contains(&view.admin_user) {
            return Err(ProviderError::invalid_input(format!(
                "the admin connection logs in as {}, one of `usernames`: revoke invalidates the previous \
                 role's password, which would lock rekey out; use another administrator",
                quote_ident(&view.admin_user)
            )));
        }
        for role in &self.roles {
            let facts = view.roles.iter().find(|f| &f.name == role).filter(|f| f.exists);
            let Some(facts) = facts else {
                return Err(ProviderError::not_found(format!(
                    "role {} does not exist on {}",
                    quote_ident(role),
                    admin.endpoint()
                )));
            };
            self.check_role(admin, view, facts, facts.name == next, lines)?;
        }
        Ok(())
    }

    /// An existing `role` may be altered by the admin, may log in and connect to `dbname`.
    fn check_role(
        &self,
        admin: &AdminPool,
        view: &AdminView,
        facts: &RoleFacts,
        is_next: bool,
        lines: &mut Vec<String>,
    ) -> ProviderResult<()> {
        let role = &facts.name;
        let admin_user = &view.admin_user;
        match privileges(view, facts).may_alter(role) {
            Ok(reason) => lines.push(format!(
                "admin {} may alter role {} ({reason})",
                quote_ident(admin_user),
                quote_ident(role)
            )),
            Err(why) => {
                return Err(ProviderError::permission_denied(format!(
                    "admin {} may not alter role {} on {}: {why}",
                    quote_ident(admin_user),
                    quote_ident(role),
                    admin.endpoint()
                )))
            }
        }
        if !facts.can_login {
            return Err(ProviderError::permission_denied(format!(
                "role {} on {} has NOLOGIN: a password for it can neither be used nor verified",
                quote_ident(role),
                admin.endpoint()
            )));
        }
        let renews = is_next && self.config.valid_until != ValidUntil::Keep;
        if facts.expired && !renews {
            return Err(ProviderError::permission_denied(format!(
                "role {} on {} is past its VALID UNTIL date ({}): every login is refused whatever the password{}",
                quote_ident(role),
                admin.endpoint(),
                facts.valid_until.as_deref().unwrap_or("?"),
                if is_next { RENEW_HINT } else { "" }
            )));
        }
        lines.push(format!("role {} exists and may log in", quote_ident(role)));
        if is_next {
            lines.push(self.check_valid_until(
                role,
                facts.valid_until.as_deref(),
                facts.valid_for_secs,
                admin.endpoint(),
            )?);
            lines.extend(check_slot(
                &format!("role {}", quote_ident(role)),
                facts.connlimit,
                facts.sessions,
                facts.role_super,
                &format!("ALTER ROLE {} CONNECTION LIMIT n", quote_ident(role)),
                admin.endpoint(),
            )?);
        }
        let dbname = &self.config.dbname;
        if !facts.db_exists {
            return Err(ProviderError::not_found(format!(
                "database {} does not exist on {}",
                quote_ident(dbname),
                admin.endpoint()
            )));
        }
        if !facts.may_connect {
            return Err(ProviderError::permission_denied(format!(
                "role {} may not connect to database {} on {}",
                quote_ident(role),
                quote_ident(dbname),
                admin.endpoint()
            )));
        }
        lines.push(format!(
            "role {} may connect to database {}",
            quote_ident(role),
            quote_ident(dbname)
        ));
        if is_next {
            lines.extend(check_slot(
                &format!("database {}", quote_ident(dbname)),
                view.db_connlimit,
                view.db_sessions,
                facts.role_super,
                &format!("ALTER DATABASE {} CONNECTION LIMIT n", quote_ident(dbname)),
                admin.endpoint(),
            )?);
        }
        Ok(())
    }

    /// `VALID UNTIL` of the role that gets the new password, under `valid_until`: a line
    /// for `plan`, or (with `"keep"`) `PermissionDenied` when it is less than an hour
    /// away, naming the option that renews it.
    fn check_valid_until(
        &self,
        role: &str,
        valid_until: Option<&str>,
        secs_left: Option<f64>,
        endpoint: &str,
    ) -> ProviderResult<String> {
        let role_q = quote_ident(role);
        let policy = self.config.valid_until;
        let Some(until) = valid_until.filter(|u| *u != "infinity") else {
            return Ok(match policy {
                ValidUntil::Keep | ValidUntil::Clear => format!("role {role_q} has no VALID UNTIL"),
                ValidUntil::For(_) => format!(
                    "role {role_q} has no VALID UNTIL: the rotation sets it to {policy} after the rotation \
                     (valid_until = \"{policy}\")"
                ),
            });
        };
        let when = secs_left.map(relative_time).unwrap_or_default();
        match policy {
            ValidUntil::Keep => {
                if secs_left.is_some_and(|s| s < NEAR_EXPIRY_SECS) {
                    return Err(ProviderError::permission_denied(format!(
                        "role {role_q} on {endpoint} has VALID UNTIL '{until}' ({when}): the new password would \
                         expire with it, less than an hour after the rotation (valid_until = \"keep\"){RENEW_HINT}"
                    )));
                }
                Ok(format!(
                    "role {role_q} has VALID UNTIL '{until}' ({when}): kept (valid_until = \"keep\"), so the new \
                     password stops working then too; set valid_until = \"clear\" or a duration to renew it at \
                     each rotation"
                ))
            }
            ValidUntil::Clear => Ok(format!(
                "role {role_q} has VALID UNTIL '{until}' ({when}): the rotation removes it (valid_until = \"clear\")"
            )),
            ValidUntil::For(_) => Ok(format!(
                "role {role_q} has VALID UNTIL '{until}' ({when}): the rotation sets it to {policy} after the \
                 rotation (valid_until = \"{policy}\")"
            )),
        }
    }

    /// The role that gets the new password: the configured one, or with `alternating`
    /// the one `current` does not name.
    fn next_role<'a>(&'a self, current: Option<&SecretDoc>) -> ProviderResult<&'a str> {
        match current {
            Some(current) if self.alternating() => Ok(self.other_role(self.live_role(current)?)),
            _ => Ok(self.role()),
        }
    }

    /// The type of each configured role's stored verifier, read from `pg_authid` (which
    /// only a superuser may read): `md5`, `scram-sha-256`, `none` or `other`; never the
    /// verifier itself. `None` when the admin may not read it.
    async fn verifier_types(&self, admin: &AdminPool, may_read: bool) -> ProviderResult<Option<Vec<(String, String)>>> {
        if !may_read {
            return Ok(None);
        }
        const SQL: &str = "SELECT rolname::text, CASE WHEN rolpassword IS NULL THEN 'none' \
             WHEN rolpassword LIKE 'md5%' THEN 'md5' WHEN rolpassword LIKE 'SCRAM-SHA-256$%' THEN 'scram-sha-256' \
             ELSE 'other' END FROM pg_catalog.pg_authid WHERE rolname = ANY($1)";
        let roles = Arc::new(self.roles.clone());
        let rows = admin
            .run("reading the roles' verifier types (pg_authid)", |s| {
                let roles = roles.clone();
                async move { s.client.query_typed(SQL, &[(&*roles, Type::TEXT_ARRAY)]).await }
            })
            .await;
        match rows {
            Ok(rows) => Ok(Some(rows.iter().map(|r| (r.get(0), r.get(1))).collect())),
            Err(e) if e.kind() == ErrorKind::PermissionDenied => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// The verifier type `role` will be stored with under `verifier`, with a line for
    /// `plan`; with `"keep"`, `InvalidInput` when the current type cannot be read.
    fn plan_verifier(
        &self,
        role: &str,
        types: Option<&[(String, String)]>,
        password_encryption: &str,
    ) -> ProviderResult<(VerifierKind, String)> {
        let role_q = quote_ident(role);
        let current = types
            .and_then(|t| t.iter().find(|(r, _)| r == role))
            .map(|(_, k)| k.as_str());
        let stored = match current {
            Some("md5") => "md5".to_owned(),
            Some("scram-sha-256") => "SCRAM-SHA-256".to_owned(),
            Some("none") => "nothing (no password yet)".to_owned(),
            Some(other) => format!("an unrecognised form ({other})"),
            None => "unknown (pg_authid is readable by superusers only)".to_owned(),
        };
        let prefix =
            format!("password_encryption = {password_encryption}; role {role_q}'s password is stored as {stored}");
        match (self.config.verifier, current) {
            (VerifierPolicy::ScramSha256, Some("md5")) => Ok((
                VerifierKind::Scram,
                format!(
                    "{prefix}: the rotation installs a SCRAM-SHA-256 verifier (verifier = \"scram-sha-256\"), so \
                     clients that only speak md5 stop logging in; set verifier = \"keep\" to keep md5"
                ),
            )),
            (VerifierPolicy::ScramSha256, _) => Ok((
                VerifierKind::Scram,
                format!("{prefix}: the rotation installs a SCRAM-SHA-256 verifier computed by rekey"),
            )),
            (VerifierPolicy::Keep, Some("md5")) => Ok((
                VerifierKind::Md5,
                format!(
                    "{prefix}: kept (verifier = \"keep\"): the rotation installs an md5 verifier computed by rekey"
                ),
            )),
            (VerifierPolicy::Keep, Some(_)) => Ok((
                VerifierKind::Scram,
                format!(
                    "{prefix}: the rotation installs a SCRAM-SHA-256 verifier computed by rekey (verifier = \"keep\")"
                ),
            )),
            (VerifierPolicy::Keep, None) => Err(ProviderError::invalid_input(format!(
                "verifier = \"keep\" needs the type of role {role_q}'s stored password, and the admin may not read \
                 pg_authid (superusers only): use a superuser admin, or verifier = \"scram-sha-256\""
            ))),
        }
    }

    /// Whether the admin may end the sessions of each of `roles`, from what
    /// [`PostgresTarget::read_view`] read: one line per role, or `PermissionDenied`
    /// naming the first role it may not (and whether it may at least change its
    /// password), with the fix.
    fn check_signal(&self, admin: &AdminPool, view: &AdminView, roles: &[&str]) -> ProviderResult<Vec<String>> {
        let mut lines = Vec::new();
        let admin_user = &view.admin_user;
        for role in roles {
            let facts = view.roles.iter().find(|f| f.name == *role).filter(|f| f.exists);
            let Some(facts) = facts else {
                return Err(ProviderError::not_found(format!(
                    "role {} does not exist on {}",
                    quote_ident(role),
                    admin.endpoint()
                )));
            };
            let signal = SignalFacts {
                admin_user,
                admin_super: view.admin_super,
                admin_signal_backend: view.admin_signal_backend,
                role_super: facts.role_super,
                admin_usage: facts.admin_usage,
                admin_member: facts.admin_member,
            };
            match signal.may_end_sessions() {
                Ok(why) => lines.push(format!(
                    "admin {} may end the sessions of role {} ({why})",
                    quote_ident(admin_user),
                    quote_ident(role)
                )),
                Err(why) => {
                    let message = if privileges(view, facts).may_alter(role).is_ok() {
                        format!(
                            "admin role {} may change the password of role {} on {} but not end its sessions: {why}",
                            quote_ident(admin_user),
                            quote_ident(role),
                            admin.endpoint()
                        )
                    } else {
                        format!(
                            "admin role {} may not end the sessions of role {} on {}: {why}",
                            quote_ident(admin_user),
                            quote_ident(role),
                            admin.endpoint()
                        )
                    };
                    return Err(ProviderError::permission_denied(message));
                }
            }
        }
        Ok(lines)
    }

    /// Alternating: the two roles must be interchangeable (see [`crate::alternating`]).
    /// Shared catalogs are read on the admin connection; the target database's own
    /// catalogs on the admin connection if it uses that database, otherwise on a
    /// short-lived admin connection to it.
    async fn compare_roles(&self, admin: &AdminPool, lines: &mut Vec<String>) -> ProviderResult<()> {
        let dbname = self.config.dbname.clone();
        let read_shared = |role: &String| {
            let action = format!("reading the attributes and memberships of role {}", quote_ident(role));
            let (role, dbname) = (role.clone(), dbname.clone());
            async move {
                admin
                    .run(&action, |s| {
                        let (role, dbname) = (role.clone(), dbname.clone());
                        async move { alternating::read_shared(&s.client, &role, &dbname).await }
                    })
                    .await
            }
        };
        let same_database = admin.dbname() == Some(dbname.as_str());
        let open_separate = async {
            if same_database {
                return Ok(None);
            }
            admin.open_in(&dbname).await.map(Some).map_err(|e| {
                e.context(format_args!(
                    "comparing the privileges of roles {} in database {}",
                    self.roles_label(),
                    quote_ident(&dbname)
                ))
            })
        };
        // Both roles' reads are pipelined on the admin connection, while the connection
        // to the target database (if another one is needed) is opened.
        let (first, second, separate) =
            tokio::try_join!(read_shared(&self.roles[0]), read_shared(&self.roles[1]), open_separate)?;
        let mut profiles: [RoleProfile; 2] = [first, second];
        let read_objects = |role: &String| {
            let action = format!(
                "reading the privileges of role {} in database {}",
                quote_ident(role),
                quote_ident(&dbname)
            );
            let role = role.clone();
            let separate = separate.as_ref();
            async move {
                match separate {
                    None => {
                        admin
                            .run(&action, |s| {
                                let role = role.clone();
                                async move { alternating::read_objects(&s.client, &role).await }
                            })
                            .await
                    }
                    Some(session) => alternating::read_objects(&session.client, &role)
                        .await
                        .map_err(|e| pg_error(&e, format_args!("{action} as {}", admin.label()))),
                }
            }
        };
        let objects = tokio::try_join!(read_objects(&self.roles[0]), read_objects(&self.roles[1]));
        if let Some(session) = separate {
            session.close().await;
        }
        let (first, second) = objects?;
        profiles[0].objects = first;
        profiles[1].objects = second;
        let (a, b) = (&self.roles[0], &self.roles[1]);
        let found = alternating::differences(a, &profiles[0], b, &profiles[1]);
        if !found.is_empty() {
            return Err(ProviderError::invalid_input(alternating::describe_differences(
                a, b, &found,
            )));
        }
        let groups: Vec<&str> = profiles[0].memberships.keys().map(String::as_str).collect();
        lines.push(format!(
            "roles {} and {} have identical attributes, memberships ({}), settings and privileges in database {}",
            quote_ident(a),
            quote_ident(b),
            if groups.is_empty() {
                "none".to_owned()
            } else {
                groups.join(", ")
            },
            quote_ident(&dbname)
        ));
        Ok(())
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
    ///   type (`pg_authid`). No login with the current secret:
    ///   apply does not need it. Only when the admin connection goes to another host or
    ///   port, or with another TLS setting, than logins do does it also probe the login
    ///   endpoint, without a password (a connection that ends where the server asks for
    ///   one): verify must reach it;
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
                let view = self.read_view(admin).await?;
                self.check_view(admin, &view, next, &mut lines)?;
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
                if self.probe_logins {
                    // Apply would succeed through the admin connection and verify fail.
                    self.probe_login(next).await?;
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

    async fn verify(&self, doc: &SecretDoc) -> ProviderResult<()> {
        let session = self.open_doc(doc, "new").await?;
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

    fn privileges(
        admin_super: bool,
        createrole: bool,
        version: i32,
        role_super: bool,
        admin_option: bool,
    ) -> Privileges {
        Privileges {
            admin_user: "admin".into(),
            admin_super,
            admin_createrole: createrole,
            server_version_num: version,
            role_super,
            role_replication: false,
            admin_option,
        }
    }

    fn signal(
        admin_super: bool,
        signal_backend: bool,
        role_super: bool,
        usage: bool,
        member: bool,
    ) -> SignalFacts<'static> {
        SignalFacts {
            admin_user: "ops",
            admin_super,
            admin_signal_backend: signal_backend,
            role_super,
            admin_usage: usage,
            admin_member: member,
        }
    }

    #[test]
    fn who_may_end_sessions() {
        assert_eq!(
            signal(true, false, true, false, false).may_end_sessions().unwrap(),
            "superuser"
        );
        assert!(signal(false, true, true, false, false)
            .may_end_sessions()
            .unwrap_err()
            .contains("only a superuser"));
        assert_eq!(
            signal(false, true, false, false, false).may_end_sessions().unwrap(),
            "member of pg_signal_backend"
        );
        assert!(signal(false, false, false, true, true).may_end_sessions().is_ok());
        assert_eq!(
            signal(false, false, false, false, false)
                .may_end_sessions()
                .unwrap_err(),
            "it lacks pg_signal_backend (GRANT pg_signal_backend TO \"ops\")"
        );
        assert!(signal(false, false, false, false, true)
            .may_end_sessions()
            .unwrap_err()
            .contains("does not inherit"));
    }

    #[test]
    fn who_may_alter() {
        assert_eq!(
            privileges(true, false, 150000, true, false).may_alter("r"),
            Ok("superuser")
        );
        assert!(privileges(false, true, 150000, true, false).may_alter("r").is_err());
        assert_eq!(
            privileges(false, true, 150000, false, false).may_alter("r"),
            Ok("CREATEROLE")
        );
        assert!(privileges(false, false, 150000, false, false).may_alter("r").is_err());
        assert!(privileges(false, true, 160000, false, false).may_alter("r").is_err());
        assert!(privileges(false, true, 160000, false, true).may_alter("r").is_ok());
        assert_eq!(
            privileges(false, false, 160000, false, false).may_alter("admin"),
            Ok("its own role")
        );
        let mut replication = privileges(false, true, 150000, false, false);
        replication.role_replication = true;
        assert!(replication.may_alter("r").is_err());
    }
}
