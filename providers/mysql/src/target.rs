//! [`MysqlTarget`]: one MySQL/MariaDB user, or a pair of alternating users.

use crate::admin::{AdminInfo, AdminPool, OpFuture};
use crate::config::MysqlTargetConfig;
use crate::conn::{close, connect, ConnectSpec, Endpoint, TlsSetup};
use crate::error::{mysql_error, server_code};
use crate::sql::{
    alter_user_hash, discard_old_password, native_password_hash, normalize_grants, quote_account, quote_literal,
    set_own_password_hash, AdminGrants, Flavor, ServerInfo, SESSION_SETUP,
};
use async_trait::async_trait;
use mysql_async::prelude::Queryable;
use mysql_async::Conn;
use rand::RngCore;
use rekey_api::{
    ErrorKind, ProviderError, ProviderResult, RevokeOptions, RevokeReport, Secret, SecretDoc, Strategy, Target,
    TargetCapabilities,
};
use std::fmt;
use std::sync::Arc;
use zeroize::Zeroizing;

/// Sessions of a user, other than the connection asking, that are still alive.
const SESSIONS_OF_USER: &str = "SELECT ID FROM information_schema.PROCESSLIST \
                                WHERE USER = ? AND ID <> CONNECTION_ID() AND COMMAND <> 'Killed'";

/// A MySQL or MariaDB user whose password rekey rotates.
///
/// The new password reaches the server only as its mysql_native_password hash
/// (`*` + hex SHA1(SHA1(password))), computed here:
///
/// - MariaDB: `ALTER USER 'u'@'h' IDENTIFIED BY PASSWORD '*…'`;
/// - MySQL: `ALTER USER 'u'@'h' IDENTIFIED WITH mysql_native_password AS '*…'`, with
///   `RETAIN CURRENT PASSWORD` under `dual` (8.0.14+) and `DISCARD OLD PASSWORD` at
///   revoke;
/// - without an admin (`single` only) the user logs in with its current password and
///   runs `SET PASSWORD = '*…'` (MariaDB) or `ALTER USER CURRENT_USER() IDENTIFIED WITH
///   mysql_native_password AS '*…'` (MySQL).
///
/// Under `alternating` the new password goes to the idle user of `usernames`; revoke
/// gives the retired user the hash of a random password that is never stored, so it
/// keeps its privileges for its next turn but nobody can log in as it.
///
/// Created by [`crate::MysqlProvider::mysql_target`].
pub struct MysqlTarget {
    config: MysqlTargetConfig,
    endpoint: Endpoint,
    tls: TlsSetup,
    admin: Option<Arc<AdminPool>>,
    capabilities: TargetCapabilities,
}

impl fmt::Debug for MysqlTarget {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MysqlTarget")
            .field("config", &self.config)
            .field("strategy", &self.capabilities.strategy)
            .field("admin", &self.admin)
            .finish_non_exhaustive()
    }
}

impl MysqlTarget {
    pub(crate) fn new(
        config: MysqlTargetConfig,
        tls: TlsSetup,
        admin: Option<Arc<AdminPool>>,
        strategy: Strategy,
    ) -> MysqlTarget {
        let endpoint = Endpoint {
            host: config.host.clone(),
            port: config.port,
            socket: None,
        };
        MysqlTarget {
            capabilities: TargetCapabilities {
                strategies: vec![Strategy::Single, Strategy::Alternating, Strategy::Dual],
                strategy,
                terminate_sessions: true,
                mints_own_secret: false,
                apply_invalidates_previous: strategy == Strategy::Single,
            },
            config,
            endpoint,
            tls,
            admin,
        }
    }

    /// The configuration this target was built from.
    pub fn config(&self) -> &MysqlTargetConfig {
        &self.config
    }

    /// Whether an admin connection is configured.
    pub fn has_admin(&self) -> bool {
        self.admin.is_some()
    }

    /// `CONNECTION_ID()` of the shared admin connection (opening it if needed), or
    /// `None` without an admin. Targets on the same host report the same id.
    pub async fn admin_connection_id(&self) -> ProviderResult<Option<u64>> {
        let Some(admin) = &self.admin else { return Ok(None) };
        admin
            .run("reading the connection id", |c| {
                Box::pin(async move { c.query_first::<u64, _>("SELECT CONNECTION_ID()").await })
            })
            .await
    }

    /// The server's flavour and version, read through the admin connection, or `None`
    /// without an admin.
    pub async fn server_info(&self) -> ProviderResult<Option<ServerInfo>> {
        match &self.admin {
            Some(admin) => Ok(Some(admin.info().await?.server)),
            None => Ok(None),
        }
    }

    fn strategy(&self) -> Strategy {
        self.capabilities.strategy
    }

    /// `user 'app' on 10.0.0.5:3306`.
    fn login_label(&self, user: &str) -> String {
        format!("user {} on {}", quote_literal(user), self.endpoint.label())
    }

    /// `'app'@'%'`.
    fn account(&self, user: &str) -> String {
        self.config.account(user)
    }

    /// The user a document belongs to: its `username`, or the configured default;
    /// refused when it is not one of the configured users.
    fn user_of(&self, doc: &SecretDoc, which: &str) -> ProviderResult<String> {
        let users = self.config.users();
        match doc.username() {
            None => Ok(self.config.default_user().to_owned()),
            Some(user) if users.contains(&user) => Ok(user.to_owned()),
            Some(user) => {
                let configured = users.iter().map(|u| quote_literal(u)).collect::<Vec<_>>().join(" or ");
                Err(ProviderError::invalid_input(format!(
                    "the {which} secret's username {} is not the configured user {configured}",
                    quote_literal(user)
                )))
            }
        }
    }

    /// The other user of the alternating pair.
    fn other_user(&self, user: &str) -> ProviderResult<String> {
        match &self.config.usernames {
            Some([a, b]) if a == user => Ok(b.clone()),
            Some([a, b]) if b == user => Ok(a.clone()),
            _ => Err(ProviderError::invalid_input(format!(
                "{} is not one of the alternating users",
                quote_literal(user)
            ))),
        }
    }

    fn password_of(doc: &SecretDoc, which: &str) -> ProviderResult<Secret> {
        doc.password()
            .ok_or_else(|| ProviderError::invalid_input(format!("the {which} secret has no `password` field")))
    }

    /// A fresh connection as `user` with `password`.
    async fn open_as(&self, user: &str, password: &Secret, init: &[&str]) -> ProviderResult<Conn> {
        connect(&ConnectSpec {
            endpoint: &self.endpoint,
            user,
            password: Some(password.expose()),
            db: None,
            tls: &self.tls,
            timeout: self.config.connect_timeout(),
            init,
            label: &self.login_label(user),
        })
        .await
    }

    /// A fresh connection with `doc`'s user and password.
    async fn open_doc(&self, doc: &SecretDoc, which: &str) -> ProviderResult<(Conn, String)> {
        let user = self.user_of(doc, which)?;
        let password = Self::password_of(doc, which)?;
        let conn = self.open_as(&user, &password, &[]).await?;
        Ok((conn, user))
    }

    /// Whether `password` already logs in as `user` (for idempotent applies).
    async fn logs_in(&self, user: &str, password: &Secret) -> ProviderResult<bool> {
        match self.open_as(user, password, &[]).await {
            Ok(conn) => {
                close(conn).await;
                Ok(true)
            }
            Err(e) if e.kind() == ErrorKind::AuthRejected => Ok(false),
            Err(e) => Err(e),
        }
    }

    /// The admin, or the error for a step that needs one.
    fn admin(&self, step: &str) -> ProviderResult<&Arc<AdminPool>> {
        self.admin.as_ref().ok_or_else(|| {
            ProviderError::invalid_input(format!(
                "mysql target: {step} under strategy \"{}\" needs `admin`",
                self.strategy()
            ))
        })
    }

    /// Refuses `dual` on a server without dual passwords.
    fn check_dual(&self, server: &ServerInfo) -> ProviderResult<()> {
        if self.strategy() != Strategy::Dual {
            return Ok(());
        }
        match server.dual_unsupported() {
            Some(why) => Err(ProviderError::unsupported(format!(
                "strategy \"dual\" for {}: {why}",
                self.describe()
            ))),
            None => Ok(()),
        }
    }

    /// `ALTER USER` giving `user` the hash of `password` through the admin connection.
    async fn alter_password(
        &self,
        admin: &AdminPool,
        user: &str,
        password: &Secret,
        retain: bool,
    ) -> ProviderResult<()> {
        let info = admin.info().await?;
        let hash = native_password_hash(password);
        let sql = Arc::new(alter_user_hash(info.server.flavor, &self.account(user), &hash, retain));
        drop(hash);
        admin
            .run(&format!("ALTER USER {}", self.account(user)), |c| {
                let sql = sql.clone();
                Box::pin(async move { c.query_drop(sql.as_str()).await })
            })
            .await
            .map_err(|e| self.explain(e, user))
    }

    /// Adds a hint to errors whose cause is known.
    fn explain(&self, e: ProviderError, user: &str) -> ProviderError {
        match e.kind() {
            ErrorKind::NotFound => e.context(format!(
                "user {} does not exist on {}",
                self.account(user),
                self.endpoint.label()
            )),
            ErrorKind::PermissionDenied => e.context(format!(
                "the admin may not alter {} (it needs the global CREATE USER privilege)",
                self.account(user)
            )),
            ErrorKind::Unsupported if e.message().contains("error 1524") => {
                e.context("mysql_native_password is disabled on this server (MySQL 8.4+: mysql_native_password=ON)")
            }
            _ => e,
        }
    }

    /// Single strategy without admin: log in with the current password and change it.
    async fn apply_as_user(&self, new: &SecretDoc, current: Option<&SecretDoc>) -> ProviderResult<()> {
        let user = self.user_of(new, "new")?;
        let new_password = Self::password_of(new, "new")?;
        let no_current = || {
            ProviderError::invalid_input(format!(
                "no admin is configured and there is no current secret: cannot log in as {} to change its password",
                self.login_label(&user)
            ))
        };
        let Some(current) = current else {
            // Nothing to log in with; fine only if the new secret is already in place.
            return if self.logs_in(&user, &new_password).await? {
                Ok(())
            } else {
                Err(no_current())
            };
        };
        self.user_of(current, "current")?;
        let current_password = Self::password_of(current, "current")?;
        let mut conn = match self.open_as(&user, &current_password, &[SESSION_SETUP]).await {
            Ok(conn) => conn,
            Err(e) if e.kind() == ErrorKind::AuthRejected => {
                // Idempotence: a repeated apply finds the new secret already installed.
                return if self.logs_in(&user, &new_password).await? {
                    Ok(())
                } else {
                    Err(e.context("no admin is configured and neither the current nor the new secret logs in"))
                };
            }
            Err(e) => return Err(e),
        };
        let label = self.login_label(&user);
        let result = async {
            let version: Option<String> = conn
                .query_first("SELECT VERSION()")
                .await
                .map_err(|e| mysql_error(&e, format_args!("reading the server version as {label}")))?;
            let server = ServerInfo::from_version(version.as_deref().unwrap_or_default());
            let hash = native_password_hash(&new_password);
            let sql = set_own_password_hash(server.flavor, &hash);
            let what = match server.flavor {
                Flavor::MariaDb => "SET PASSWORD",
                Flavor::Mysql => "ALTER USER CURRENT_USER()",
            };
            conn.query_drop(sql.as_str())
                .await
                .map_err(|e| mysql_error(&e, format_args!("{what} as {label}")))
        }
        .await;
        close(conn).await;
        result
    }

    /// Why the admin may not end the sessions of the configured user(s), with the fix,
    /// or `None` when its grants allow it. The rule: global `PROCESS` (without it
    /// `information_schema.PROCESSLIST` hides other users' threads, so none would be
    /// found) and a global privilege that lets `KILL CONNECTION` end another user's
    /// thread: `CONNECTION ADMIN` (MariaDB 10.5.2+) or `CONNECTION_ADMIN` (MySQL 8.0+),
    /// or `SUPER` (or `ALL PRIVILEGES`), as listed by the admin's own `SHOW GRANTS`
    /// (which on MariaDB includes the grants of its active role).
    fn sessions_denied(&self, info: &AdminInfo, grants: &AdminGrants) -> Option<String> {
        let kill = match info.server.connection_admin_privilege() {
            Some(name) => format!("{name} or SUPER"),
            None => "SUPER".to_owned(),
        };
        let grant_kill = info.server.connection_admin_privilege().unwrap_or("SUPER");
        let admin = match info.current_user.rsplit_once('@') {
            Some((user, host)) => quote_account(user, host),
            None => quote_literal(&info.current_user),
        };
        let why = match (grants.see_sessions, grants.kill_sessions) {
            (true, true) => return None,
            (false, false) => format!(
                "it lacks PROCESS (to see them) and {kill} (to end them) (GRANT PROCESS, {grant_kill} ON *.* TO {admin})"
            ),
            (false, true) => format!(
                "it lacks PROCESS, without which they are invisible to it (GRANT PROCESS ON *.* TO {admin})"
            ),
            (true, false) => format!("it lacks {kill} (GRANT {grant_kill} ON *.* TO {admin})"),
        };
        let (subject, its) = match &self.config.usernames {
            Some([a, b]) => (format!("users {} and {}", self.account(a), self.account(b)), "their"),
            None => (format!("user {}", self.account(self.config.default_user())), "its"),
        };
        let endpoint = self.endpoint.label();
        Some(if grants.alter_users.is_some() {
            format!(
                "admin {admin} may change the password of {subject} on {endpoint} but not end {its} sessions: {why}"
            )
        } else {
            format!("admin {admin} may not end the sessions of {subject} on {endpoint}: {why}")
        })
    }

    /// Ends the sessions of `user` (other than the connection asking). With an admin
    /// it needs PROCESS (to see them) and CONNECTION ADMIN or SUPER (to end them), and
    /// fails with `PermissionDenied` and the reason [`Target::incident_preflight`] gives
    /// when it lacks them; without one, `via` logs in as the same user, which may end
    /// its own sessions.
    async fn terminate_sessions(&self, user: &str, via: &SecretDoc) -> ProviderResult<u64> {
        let action = format!("ending the sessions of {}", self.account(user));
        let op = kill_sessions_of;
        match &self.admin {
            Some(admin) => {
                let info = admin.info().await?;
                let grants = self.admin_grants(admin).await?;
                let denied = self.sessions_denied(&info, &grants);
                if !grants.see_sessions {
                    // Finding no session would look like success.
                    if let Some(why) = denied {
                        return Err(ProviderError::permission_denied(why));
                    }
                }
                admin
                    .run(&action, |c| op(c, user.to_owned()))
                    .await
                    .map_err(|e| match (e.kind(), denied) {
                        // KILL refused (error 1095, "not owner of thread"): the same reason.
                        (ErrorKind::PermissionDenied, Some(why)) => ProviderError::permission_denied(format!(
                            "{why} (KILL CONNECTION refused: {})",
                            e.message()
                        )),
                        (ErrorKind::PermissionDenied, None) => {
                            e.context("the admin needs CONNECTION ADMIN (MariaDB) / CONNECTION_ADMIN (MySQL) or SUPER")
                        }
                        _ => e,
                    })
            }
            None => {
                let (mut conn, login_user) = self.open_doc(via, "new").await?;
                let result = op(&mut conn, user.to_owned())
                    .await
                    .map_err(|e| mysql_error(&e, format_args!("{action} as {}", self.login_label(&login_user))));
                close(conn).await;
                result
            }
        }
    }

    /// The admin's own grants, read-only.
    async fn admin_grants(&self, admin: &AdminPool) -> ProviderResult<AdminGrants> {
        let lines: Vec<String> = admin
            .run("reading the admin's grants", |c| {
                Box::pin(async move { c.query("SHOW GRANTS").await })
            })
            .await?;
        Ok(AdminGrants::parse(&lines))
    }

    /// `SHOW GRANTS FOR` the user: `Ok(Some(lines))`, `Ok(None)` when the admin may not
    /// read other users' grants, `NotFound` when the user does not exist.
    async fn user_grants(&self, admin: &AdminPool, user: &str) -> ProviderResult<Option<Vec<String>>> {
        let sql = Arc::new(format!("SHOW GRANTS FOR {}", self.account(user)));
        let result = admin
            .run(&format!("reading the grants of {}", self.account(user)), |c| {
                let sql = sql.clone();
                Box::pin(async move { c.query::<String, _>(sql.as_str()).await })
            })
            .await;
        match result {
            Ok(lines) => Ok(Some(lines)),
            Err(e) if e.kind() == ErrorKind::NotFound => Err(ProviderError::not_found(format!(
                "user {} does not exist on {}",
                self.account(user),
                admin.endpoint()
            ))),
            Err(e) if e.kind() == ErrorKind::PermissionDenied => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// The authentication plugin of the user, if the admin may read `mysql.user`.
    async fn user_plugin(&self, admin: &AdminPool, user: &str) -> ProviderResult<Option<String>> {
        let (user, host) = (user.to_owned(), self.config.user_host.clone());
        let result = admin
            .run("reading the user's authentication plugin", |c| {
                let params = (user.clone(), host.clone());
                Box::pin(async move {
                    c.exec_first::<String, _, _>("SELECT plugin FROM mysql.user WHERE User = ? AND Host = ?", params)
                        .await
                })
            })
            .await;
        match result {
            Ok(plugin) => Ok(plugin),
            Err(e) if e.kind() == ErrorKind::PermissionDenied => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// Whether `password` is already the user's (primary) password: its hash is the
    /// stored one, read from `mysql.user`; without read access, whether it logs in
    /// (one failed login otherwise, which servers with failed-login limits count).
    async fn already_primary(&self, admin: &AdminPool, user: &str, password: &Secret) -> ProviderResult<bool> {
        let (name, host) = (user.to_owned(), self.config.user_host.clone());
        let stored = admin
            .run("reading the stored password hash", |c| {
                let params = (name.clone(), host.clone());
                Box::pin(async move {
                    c.exec_first::<String, _, _>(
                        "SELECT authentication_string FROM mysql.user WHERE User = ? AND Host = ?",
                        params,
                    )
                    .await
                })
            })
            .await;
        match stored {
            Ok(stored) => {
                let stored = Zeroizing::new(stored.unwrap_or_default());
                Ok(*stored == *native_password_hash(password))
            }
            Err(e) if e.kind() == ErrorKind::PermissionDenied => self.logs_in(user, password).await,
            Err(e) => Err(e),
        }
    }

    /// Whether MySQL has mysql_native_password enabled (MySQL 8.4 disables it by
    /// default, 9.0 removed it). MariaDB always has it.
    async fn native_plugin_active(&self, admin: &AdminPool) -> ProviderResult<bool> {
        let status: Option<String> = admin
            .run("reading the plugins", |c| {
                Box::pin(async move {
                    c.query_first(
                        "SELECT PLUGIN_STATUS FROM information_schema.PLUGINS \
                         WHERE PLUGIN_NAME = 'mysql_native_password'",
                    )
                    .await
                })
            })
            .await?;
        Ok(status.as_deref() == Some("ACTIVE"))
    }

    /// Logs in with `doc` and checks the login lands on the configured account (not,
    /// say, `'app'@'localhost'` when `'app'@'%'` is rotated). Returns the server's
    /// version text.
    async fn check_login_account(&self, doc: &SecretDoc, which: &str) -> ProviderResult<(String, String)> {
        let (mut conn, user) = self.open_doc(doc, which).await?;
        let label = self.login_label(&user);
        let row: Result<Option<(String, String)>, _> = conn.query_first("SELECT CURRENT_USER(), VERSION()").await;
        close(conn).await;
        let (account, version) = row
            .map_err(|e| mysql_error(&e, format_args!("reading CURRENT_USER() as {label}")))?
            .unwrap_or_default();
        let expected = format!("{}@{}", user, self.config.user_host);
        if account != expected {
            return Err(ProviderError::invalid_input(format!(
                "logging in as {label} uses the account {account}, not {}: rotating {} would not change the \
                 password this login checks (set `user_host`)",
                self.account(&user),
                self.account(&user)
            )));
        }
        Ok((user, version))
    }

    async fn preflight_with_admin(
        &self,
        admin: &AdminPool,
        current: Option<&SecretDoc>,
    ) -> ProviderResult<Vec<String>> {
        let mut lines = Vec::new();
        let info = admin.info().await?;
        lines.push(format!(
            "connected to {} as admin {} ({})",
            admin.endpoint(),
            info.current_user,
            info.server.label()
        ));
        self.check_dual(&info.server)?;
        if self.strategy() == Strategy::Dual {
            lines.push(format!(
                "{} supports two passwords per user (RETAIN CURRENT PASSWORD)",
                info.server.label()
            ));
        }

        let grants = self.admin_grants(admin).await?;
        match grants.alter_users {
            Some(how) => lines.push(format!("admin {} may alter users ({how})", info.current_user)),
            None => {
                return Err(ProviderError::permission_denied(format!(
                    "admin {} on {} may not alter users: it needs the global CREATE USER privilege \
                     (or UPDATE on mysql.*)",
                    info.current_user,
                    admin.endpoint()
                )))
            }
        }

        if info.server.flavor == Flavor::Mysql && !self.native_plugin_active(admin).await? {
            return Err(ProviderError::unsupported(format!(
                "{} on {} has mysql_native_password disabled; rekey installs pre-hashed mysql_native_password \
                 passwords (enable it with mysql_native_password=ON)",
                info.server.label(),
                admin.endpoint()
            )));
        }

        let mut normalized = Vec::new();
        for user in self.config.users() {
            let account = self.account(user);
            match self.user_grants(admin, user).await? {
                Some(grant_lines) => {
                    lines.push(format!("user {account} exists"));
                    normalized.push((user, normalize_grants(&grant_lines, user, &self.config.user_host)));
                }
                None if self.strategy() == Strategy::Alternating => {
                    return Err(ProviderError::permission_denied(format!(
                        "admin {} may not read the grants of {account}: comparing the alternating users' \
                         privileges needs SELECT on mysql.*",
                        info.current_user
                    )))
                }
                None => lines.push(format!(
                    "could not check that {account} exists (the admin lacks SELECT on mysql.*); apply will tell"
                )),
            }
            match self.user_plugin(admin, user).await? {
                Some(plugin) if plugin == "mysql_native_password" || plugin.is_empty() => {}
                Some(plugin) if self.strategy() == Strategy::Dual => {
                    return Err(ProviderError::unsupported(format!(
                        "{account} authenticates with {plugin}; RETAIN CURRENT PASSWORD cannot keep the current \
                         password while switching it to mysql_native_password (switch it once with ALTER USER, \
                         or use strategy \"alternating\")"
                    )))
                }
                Some(plugin) => lines.push(format!(
                    "{account} authenticates with {plugin}; the rotation switches it to mysql_native_password"
                )),
                None => {}
            }
        }

        if let [(a, grants_a), (b, grants_b)] = normalized.as_slice() {
            if grants_a != grants_b {
                let only = |x: &std::collections::BTreeSet<String>, y: &std::collections::BTreeSet<String>| {
                    x.difference(y).cloned().collect::<Vec<_>>().join("; ")
                };
                let (only_a, only_b) = (only(grants_a, grants_b), only(grants_b, grants_a));
                let mut diff = Vec::new();
                if !only_a.is_empty() {
                    diff.push(format!("only {}: {only_a}", quote_literal(a)));
                }
                if !only_b.is_empty() {
                    diff.push(format!("only {}: {only_b}", quote_literal(b)));
                }
                return Err(ProviderError::invalid_input(format!(
                    "users {} and {} have different privileges: {}",
                    quote_literal(a),
                    quote_literal(b),
                    diff.join("; ")
                )));
            }
            lines.push(format!(
                "users {} and {} have identical privileges",
                quote_literal(a),
                quote_literal(b)
            ));
        }

        match self.sessions_denied(&info, &grants) {
            None => lines.push(format!(
                "admin {} may end sessions (PROCESS, CONNECTION ADMIN or SUPER)",
                info.current_user
            )),
            Some(why) if self.config.terminate_sessions => {
                return Err(ProviderError::permission_denied(format!(
                    "terminate_sessions is set but {why}"
                )))
            }
            Some(why) => lines.push(format!("ending sessions (incident mode) would fail: {why}")),
        }

        if let Some(current) = current {
            match self.check_login_account(current, "current").await {
                Ok((user, _)) => lines.push(format!("the current secret logs in as {}", self.login_label(&user))),
                Err(e) if e.kind() == ErrorKind::AuthRejected => lines.push(format!(
                    "the current secret is refused as {} (the rotation will replace it)",
                    self.login_label(&self.user_of(current, "current")?)
                )),
                Err(e) => return Err(e),
            }
        }
        Ok(lines)
    }

    async fn preflight_as_user(&self, current: Option<&SecretDoc>) -> ProviderResult<Vec<String>> {
        let user = self.config.default_user().to_owned();
        let Some(current) = current else {
            return Err(ProviderError::invalid_input(format!(
                "no admin is configured and there is no current secret: cannot log in as {} to change its password",
                self.login_label(&user)
            )));
        };
        let (user, version) = self.check_login_account(current, "current").await.map_err(|e| {
            if e.kind() == ErrorKind::AuthRejected {
                e.context("no admin is configured, so the current secret must log in")
            } else {
                e
            }
        })?;
        let server = ServerInfo::from_version(&version);
        Ok(vec![
            format!(
                "the current secret logs in as {} ({})",
                self.login_label(&user),
                server.label()
            ),
            format!(
                "user {} will change its own password (no admin configured)",
                self.account(&user)
            ),
        ])
    }

    /// A hash nobody knows the password of: SHA1 of 32 random bytes, hashed again.
    fn throwaway_password() -> Secret {
        let mut bytes = Zeroizing::new([0u8; 32]);
        rand::rngs::OsRng.fill_bytes(bytes.as_mut());
        let mut text = Zeroizing::new(String::with_capacity(64));
        for b in bytes.iter() {
            use std::fmt::Write as _;
            let _ = write!(text, "{b:02x}");
        }
        Secret::new(text.as_str().to_owned())
    }
}

/// Ends every session of `user` except the connection asking; returns how many.
fn kill_sessions_of(c: &mut Conn, user: String) -> OpFuture<'_, u64> {
    Box::pin(async move {
        let ids: Vec<u64> = c.exec(SESSIONS_OF_USER, (user,)).await?;
        let mut ended = 0;
        for id in ids {
            match c.query_drop(format!("KILL CONNECTION {id}")).await {
                Ok(()) => ended += 1,
                // ER_NO_SUCH_THREAD: it ended by itself meanwhile.
                Err(e) if server_code(&e) == Some(1094) => {}
                Err(e) => return Err(e),
            }
        }
        Ok(ended)
    })
}

#[async_trait]
impl Target for MysqlTarget {
    fn capabilities(&self) -> &TargetCapabilities {
        &self.capabilities
    }

    fn describe(&self) -> String {
        match &self.config.usernames {
            Some([a, b]) => format!(
                "mysql users {} / {} on {} (alternating)",
                self.account(a),
                self.account(b),
                self.endpoint.label()
            ),
            None => format!(
                "mysql user {} on {}",
                self.account(self.config.default_user()),
                self.endpoint.label()
            ),
        }
    }

    fn complete(&self, doc: &mut SecretDoc) {
        doc.set_default("engine", "mysql");
        doc.set_default("host", self.config.host.as_str());
        doc.set_default("port", self.config.port);
        doc.set_default("username", self.config.default_user());
    }

    async fn preflight(&self, current: Option<&SecretDoc>) -> ProviderResult<Vec<String>> {
        if let Some(current) = current {
            self.user_of(current, "current")?;
        }
        let mut lines = match &self.admin {
            Some(admin) => self.preflight_with_admin(admin, current).await?,
            None => self.preflight_as_user(current).await?,
        };
        if self.config.terminate_sessions {
            lines.push("sessions of the retired user will be ended at revoke".to_owned());
        }
        Ok(lines)
    }

    /// What ending the old secret's sessions needs, checked read-only on the shared admin
    /// connection from the admin's own `SHOW GRANTS` (see the crate README): global
    /// `PROCESS` to find the user's threads, and `CONNECTION ADMIN` (MariaDB 10.5.2+) /
    /// `CONNECTION_ADMIN` (MySQL 8.0+) or `SUPER` to `KILL` them. `PermissionDenied`
    /// names the admin, the user and the `GRANT` that fixes it. Without an admin the
    /// user ends its own threads, which needs no privilege.
    async fn incident_preflight(&self) -> ProviderResult<Vec<String>> {
        let Some(admin) = &self.admin else {
            return Ok(vec![format!(
                "user {} will end its own sessions, logged in with the new password (a user may always end its \
                 own connections)",
                self.account(self.config.default_user())
            )]);
        };
        let info = admin.info().await?;
        let grants = self.admin_grants(admin).await?;
        if let Some(why) = self.sessions_denied(&info, &grants) {
            return Err(ProviderError::permission_denied(why));
        }
        let (subject, which) = match &self.config.usernames {
            Some([a, b]) => (
                format!("users {} and {}", self.account(a), self.account(b)),
                "of the retired user",
            ),
            None => (
                format!("user {}", self.account(self.config.default_user())),
                "of the user, also those already using the new password (the server cannot tell which password a \
                 session logged in with)",
            ),
        };
        let kill = match info.server.connection_admin_privilege() {
            Some(name) => format!("{name} or SUPER"),
            None => "SUPER".to_owned(),
        };
        Ok(vec![
            format!(
                "admin {} may end the sessions of {subject} (PROCESS to see them, {kill} to end them)",
                info.current_user
            ),
            format!("every session {which} will be ended"),
        ])
    }

    async fn prepare(&self, current: Option<&SecretDoc>, password: Secret) -> ProviderResult<SecretDoc> {
        let mut doc = current.cloned().unwrap_or_default();
        self.complete(&mut doc);
        let live = self.user_of(&doc, "current")?;
        if self.strategy() == Strategy::Alternating {
            let idle = self.other_user(&live)?;
            doc.set("username", idle);
        }
        doc.set_password(&password);
        Ok(doc)
    }

    async fn apply(&self, new: &SecretDoc, current: Option<&SecretDoc>) -> ProviderResult<()> {
        let user = self.user_of(new, "new")?;
        let password = Self::password_of(new, "new")?;
        let Some(admin) = &self.admin else {
            return self.apply_as_user(new, current).await;
        };
        match self.strategy() {
            Strategy::Single => self.alter_password(admin, &user, &password, false).await,
            Strategy::Dual => {
                self.check_dual(&admin.info().await?.server)?;
                // RETAIN CURRENT PASSWORD keeps the *current* password as the secondary:
                // run twice, it would keep the new one and drop the old. Skip when the
                // new password is already the primary.
                if self.already_primary(admin, &user, &password).await? {
                    return Ok(());
                }
                self.alter_password(admin, &user, &password, true).await
            }
            Strategy::Alternating => {
                if let Some(current) = current {
                    let live = self.user_of(current, "current")?;
                    if live == user {
                        return Err(ProviderError::invalid_input(format!(
                            "alternating: the new secret is for the live user {}; it must go to the idle one",
                            quote_literal(&user)
                        )));
                    }
                }
                self.alter_password(admin, &user, &password, false).await
            }
        }
    }

    async fn login(&self, doc: &SecretDoc) -> ProviderResult<()> {
        let (conn, _) = self.open_doc(doc, "given").await?;
        close(conn).await;
        Ok(())
    }

    async fn verify(&self, doc: &SecretDoc) -> ProviderResult<()> {
        let (mut conn, user) = self.open_doc(doc, "new").await?;
        let result = match &self.config.check_query {
            None => Ok(()),
            Some(query) => conn
                .query_drop(query.as_str())
                .await
                .map_err(|e| mysql_error(&e, format_args!("check query as {}", self.login_label(&user)))),
        };
        close(conn).await;
        result
    }

    async fn revoke(&self, old: &SecretDoc, new: &SecretDoc, options: RevokeOptions) -> ProviderResult<RevokeReport> {
        let terminate = options.terminate_sessions || self.config.terminate_sessions;
        let new_user = self.user_of(new, "new")?;
        let old_user = self.user_of(old, "old")?;
        let retired = match self.strategy() {
            // apply already replaced the old password. Only sessions remain.
            Strategy::Single => new_user,
            Strategy::Dual => {
                let admin = self.admin("revoke")?;
                self.check_dual(&admin.info().await?.server)?;
                let sql = Arc::new(discard_old_password(&self.account(&new_user)));
                admin
                    .run(
                        &format!("ALTER USER {} DISCARD OLD PASSWORD", self.account(&new_user)),
                        |c| {
                            let sql = sql.clone();
                            Box::pin(async move { c.query_drop(sql.as_str()).await })
                        },
                    )
                    .await
                    .map_err(|e| self.explain(e, &new_user))?;
                new_user
            }
            Strategy::Alternating => {
                let admin = self.admin("revoke")?;
                if old_user == new_user {
                    return Err(ProviderError::invalid_input(format!(
                        "alternating: the old and the new secret are both for {}; refusing to retire the live user",
                        quote_literal(&new_user)
                    )));
                }
                // A password nobody knows: the user keeps its privileges for its next
                // turn, but no one can log in as it.
                self.alter_password(admin, &old_user, &Self::throwaway_password(), false)
                    .await?;
                old_user
            }
        };
        if !terminate {
            return Ok(RevokeReport::default());
        }
        let sessions_terminated = self.terminate_sessions(&retired, new).await?;
        Ok(RevokeReport { sessions_terminated })
    }
}
