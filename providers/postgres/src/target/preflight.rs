//! Preflight: the read-only checks behind `plan` (`preflight`), `precheck` and
//! `incident_preflight`: one catalog query on the shared admin connection, what it says
//! about the admin's privileges, the role, `VALID UNTIL`, connection limits, the
//! verifier type and (for `alternating`) the two roles' differences.

use super::{PostgresTarget, VerifierKind};
use crate::admin::AdminPool;
use crate::alternating::{self, RoleProfile};
use crate::config::{ValidUntil, VerifierPolicy};
use crate::error::pg_error;
use crate::sql::quote_ident;
use rekey_api::{ErrorKind, ProviderError, ProviderResult, SecretDoc};
use std::sync::Arc;
use tokio_postgres::types::Type;
use zeroize::Zeroizing;

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

/// The type of each named role's stored verifier (`$1`), never the verifier itself.
const VERIFIER_TYPES_SQL: &str = "SELECT rolname::text, CASE WHEN rolpassword IS NULL THEN 'none' \
     WHEN rolpassword LIKE 'md5%' THEN 'md5' WHEN rolpassword LIKE 'SCRAM-SHA-256$%' THEN 'scram-sha-256' \
     ELSE 'other' END FROM pg_catalog.pg_authid WHERE rolname = ANY($1)";

/// Each role's stored verifier, for `plan`'s check of a current secret without a login
/// (superusers only). Compared in memory (wiped when dropped), never shown or logged.
const VERIFIERS_SQL: &str = "SELECT rolname::text, rolpassword FROM pg_catalog.pg_authid WHERE rolname = ANY($1)";

/// How close a kept `VALID UNTIL` may be before a rotation is refused: the new password
/// would die with it.
const NEAR_EXPIRY_SECS: f64 = 3600.0;

/// What renews an expiring role, appended to refusals.
pub(super) const RENEW_HINT: &str =
    "; set valid_until = \"clear\" or a duration such as \"90d\" so that the rotation renews it";

/// `in 2d 3h`, `in 12m`, `3h ago`.
pub(super) fn relative_time(secs: f64) -> String {
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
pub(super) struct AdminView {
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
    pub(super) password_encryption: String,
    /// The admin may read `pg_authid` (superusers): verifier types are known.
    pub(super) can_read_authid: bool,
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

/// The admin's facts of a [`PRECHECK_SQL`] row (the same in every row), with room for
/// `roles` roles.
fn admin_facts(first: &tokio_postgres::Row, roles: usize) -> AdminView {
    AdminView {
        admin_user: first.get(0),
        admin_super: first.get(1),
        admin_createrole: first.get(2),
        server_version_num: first.get(3),
        server_version: first.get(4),
        admin_signal_backend: first.get(14),
        roles: Vec::with_capacity(roles),
        db_connlimit: first.get(21),
        db_sessions: first.get(22),
        password_encryption: first.get(23),
        can_read_authid: first.get(24),
    }
}

/// The role's facts of a [`PRECHECK_SQL`] row.
fn role_facts(row: &tokio_postgres::Row) -> RoleFacts {
    RoleFacts {
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
    }
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
    pub(super) async fn preflight_with_admin(
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
        // Verify will log in as `next` over the login route, which the admin's connection
        // does not prove (pg_hba.conf may turn this role away, or away without TLS). The
        // current secret's login below proves it for its own role.
        if current.is_none() || self.alternating() {
            self.check_route(admin, next).await?;
        }
        if let Some(current) = current {
            let user = current.username().unwrap_or(self.role()).to_owned();
            match self.matches_stored_verifier(admin, &view, &user, current).await {
                Some((true, method)) => {
                    lines.push(format!(
                        "the current secret is the password of {} (checked against its stored verifier, which \
                         pg_hba.conf's {method} line checks every login here against; no login made)",
                        self.login_label(&user)
                    ));
                }
                Some((false, _)) => {
                    lines.push(format!(
                        "the current secret is refused as {} (it does not match the stored verifier; the rotation \
                         will replace it)",
                        self.login_label(&user)
                    ));
                }
                None => self.current_logs_in(current, &user, &mut lines).await?,
            }
        }
        Ok(lines)
    }

    /// `plan`'s login with the current secret as `user`: a line saying it logs in or is
    /// refused, or the login's error when it is refused whatever the password.
    async fn current_logs_in(&self, current: &SecretDoc, user: &str, lines: &mut Vec<String>) -> ProviderResult<()> {
        match self.open_doc(current, "current").await {
            Ok(session) => {
                session.close().await;
                lines.push(format!("the current secret logs in as {}", self.login_label(user)));
            }
            Err(e) if e.kind() == ErrorKind::AuthRejected && !refuses_any_password(&e) => {
                lines.push(if self.alternating() {
                    format!(
                        "the current secret is refused as {} (applications holding it cannot log in; the \
                         rotation moves them to role {})",
                        self.login_label(user),
                        quote_ident(self.other_role(user))
                    )
                } else {
                    format!(
                        "the current secret is refused as {} (the rotation will replace it)",
                        self.login_label(user)
                    )
                })
            }
            Err(e) => return Err(e),
        }
        Ok(())
    }

    /// `plan`'s check of the current secret without a login, where that gives a login's
    /// answer: the admin connects over the same route as logins, `pg_hba.conf`'s first
    /// line for that route admits every role with a method that checks the password
    /// against `pg_authid` and nothing else (`scram-sha-256`, `md5`, `password`, and no
    /// option such as `clientcert` asking more), the admin may read `pg_authid`, the
    /// strategy is `single` (whose role's login slots precheck counts) and the role has
    /// not expired. Whether `current`'s password is the one behind `user`'s stored
    /// verifier, with the method; `None`: log in instead.
    async fn matches_stored_verifier(
        &self,
        admin: &AdminPool,
        view: &AdminView,
        user: &str,
        current: &SecretDoc,
    ) -> Option<(bool, String)> {
        if self.alternating() || !self.same_route || !view.can_read_authid {
            return None;
        }
        if view.roles.iter().any(|f| f.name == user && f.expired) {
            return None;
        }
        let method = admin
            .hba_rule()
            .await
            .filter(|rule| rule.checks_stored_password_only())?
            .method
            .as_str();
        let verifiers = self
            .coalesced_roles_read(
                admin,
                &admin.batch.verifiers,
                VERIFIERS_SQL,
                "reading the roles' stored verifiers (pg_authid)",
                |r| (r.get(0), r.get::<_, Option<String>>(1).map(Zeroizing::new)),
            )
            .await?;
        let stored = verifiers.iter().find(|(role, _)| role == user)?.1.clone()?;
        // `md5` lines use SCRAM for a SCRAM verifier; `scram-sha-256` refuses an md5 one,
        // whatever the password: left to the login's own error.
        if method == "scram-sha-256" && !stored.starts_with("SCRAM-SHA-256$") {
            return None;
        }
        let password = current.password()?;
        let role = user.to_owned();
        let matched = tokio::task::spawn_blocking(move || {
            crate::stored_verifier::password_matches(&stored, password.expose().as_bytes(), &role)
        })
        .await
        .ok()??;
        Some((matched, method.to_owned()))
    }

    /// `sql` (whose `$1` is a list of role names) over this target's roles and those of
    /// every other target asking meanwhile, on the shared admin connection, as one read
    /// ([`crate::preflight_batch`]): each row as `row` makes it. `None` when the read
    /// failed; the caller then reads alone for its own error.
    async fn coalesced_roles_read<T>(
        &self,
        admin: &AdminPool,
        batch: &crate::preflight_batch::Coalesce<Vec<T>>,
        sql: &'static str,
        action: &'static str,
        row: fn(&tokio_postgres::Row) -> T,
    ) -> Option<Arc<Vec<T>>> {
        batch
            .read("", &self.roles, |all| async move {
                let all = Arc::new(all);
                let rows = admin
                    .run(action, |s| {
                        let all = all.clone();
                        async move { s.query_prepared(sql, &[(&*all, Type::TEXT_ARRAY)]).await }
                    })
                    .await
                    .ok()?;
                Some(rows.iter().map(row).collect())
            })
            .await
    }

    /// One round trip on the shared admin connection: who the admin is, the server's
    /// version, and for each configured role whether it exists, what the admin may do to
    /// it, whether it may log in, and whether it may connect to `dbname`. The question is
    /// coalesced with those of other targets on the same connection asked while a read is
    /// in flight ([`crate::preflight_batch`]): one read answers all of them.
    pub(super) async fn read_view(&self, admin: &AdminPool) -> ProviderResult<AdminView> {
        let dbname = &self.config.dbname;
        let batched = admin
            .batch
            .views
            .read(dbname, &self.roles, |all| async move {
                let (all, dbname) = (Arc::new(all), Arc::new(dbname.clone()));
                admin
                    .run("reading the attributes of the admin and of roles", |s| {
                        let (all, dbname) = (all.clone(), dbname.clone());
                        async move {
                            s.query_prepared(PRECHECK_SQL, &[(&*all, Type::TEXT_ARRAY), (&*dbname, Type::TEXT)])
                                .await
                        }
                    })
                    .await
                    .ok()
            })
            .await;
        if let Some(view) = batched.and_then(|rows| self.view_of(&rows)) {
            return Ok(view);
        }
        // The coalesced read failed: read alone, for this target's own error.
        self.read_view_alone(admin).await
    }

    /// This target's view from the rows of a coalesced [`PRECHECK_SQL`] (one per role
    /// asked, of every target): the admin's facts and this target's roles, in its order,
    /// as its own read would have given. `None` if a row is missing.
    fn view_of(&self, rows: &[tokio_postgres::Row]) -> Option<AdminView> {
        let first = rows.first()?;
        let mut view = admin_facts(first, self.roles.len());
        for role in &self.roles {
            let row = rows.iter().find(|row| row.get::<_, &str>(5) == role)?;
            view.roles.push(role_facts(row));
        }
        Some(view)
    }

    /// [`PostgresTarget::read_view`] of this target's roles alone.
    async fn read_view_alone(&self, admin: &AdminPool) -> ProviderResult<AdminView> {
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
                    s.query_prepared(PRECHECK_SQL, &[(&*roles, Type::TEXT_ARRAY), (&*dbname, Type::TEXT)])
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
        let mut view = admin_facts(first, rows.len());
        for row in &rows {
            view.roles.push(role_facts(row));
        }
        Ok(view)
    }

    /// Checks what [`PostgresTarget::read_view`] read, in the order `preflight` always
    /// reported it: the admin, then for each role its existence, whether the admin may
    /// alter it, `LOGIN`, `VALID UNTIL`, and the database. Pushes one line per fact.
    ///
    /// `next` is the role whose password the rotation sets: for it, also `VALID UNTIL`
    /// under `valid_until` and a free login slot (role and database connection limits).
    pub(super) fn check_view(
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
    pub(super) fn check_valid_until(
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
    pub(super) async fn verifier_types(
        &self,
        admin: &AdminPool,
        may_read: bool,
    ) -> ProviderResult<Option<Vec<(String, String)>>> {
        if !may_read {
            return Ok(None);
        }
        // Coalesced with the other targets' reads on this connection, as `read_view`.
        let batched = self
            .coalesced_roles_read(
                admin,
                &admin.batch.verifier_types,
                VERIFIER_TYPES_SQL,
                "reading the roles' verifier types (pg_authid)",
                |r| (r.get(0), r.get(1)),
            )
            .await;
        if let Some(types) = batched {
            let mine = types.iter().filter(|(role, _)| self.roles.contains(role));
            return Ok(Some(mine.cloned().collect()));
        }
        // The coalesced read failed: read alone, for this target's own answer or error.
        const SQL: &str = VERIFIER_TYPES_SQL;
        let roles = Arc::new(self.roles.clone());
        let rows = admin
            .run("reading the roles' verifier types (pg_authid)", |s| {
                let roles = roles.clone();
                async move { s.query_prepared(SQL, &[(&*roles, Type::TEXT_ARRAY)]).await }
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
    pub(super) fn plan_verifier(
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
    pub(super) fn check_signal(
        &self,
        admin: &AdminPool,
        view: &AdminView,
        roles: &[&str],
    ) -> ProviderResult<Vec<String>> {
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
    pub(super) async fn compare_roles(&self, admin: &AdminPool, lines: &mut Vec<String>) -> ProviderResult<()> {
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

/// Whether a refused login says nothing of the password: SQLSTATE 28000 is pg_hba.conf
/// turning the connection away (or a role that may not log in), which a new password
/// would not change, so plan reports it as the failure it is.
fn refuses_any_password(err: &ProviderError) -> bool {
    matches!(err.code(), Some(rekey_api::ErrorCode::Sqlstate(code)) if code == "28000")
}

#[cfg(test)]
mod tests {
    use super::*;

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
