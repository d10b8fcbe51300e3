//! [`MysqlTarget`]: one MySQL/MariaDB user, or a pair of alternating users.

use crate::account::{password_hashes, AccountPlan, HostEntry, MysqlUserRow, OwnAccount, PluginKind};
use crate::admin::{AdminInfo, AdminPool, OpFuture};
use crate::config::MysqlTargetConfig;
use crate::conn::{close, connect, ConnectSpec, Endpoint, TlsSetup};
use crate::error::{mysql_error, server_code};
use crate::notes;
use crate::sql::{
    discard_old_password, ed25519_password_hash, native_password_hash, quote_account, quote_literal,
    set_own_password_hash, AdminGrants, Flavor, ServerInfo, SESSION_SETUP,
};
use async_trait::async_trait;
use mysql_async::prelude::Queryable;
use mysql_async::Conn;
use rand::RngCore;
use rekey_api::{
    ErrorCode, ErrorKind, ProviderError, ProviderResult, RevokeOptions, RevokeReport, Secret, SecretDoc, Strategy,
    Target, TargetCapabilities,
};
use std::fmt;
use std::sync::Arc;
use zeroize::Zeroizing;

mod preflight;

/// Sessions of a user, other than the connection asking, that are still alive.
/// With what the incident record says about each: client host (`host:port`, or
/// `localhost` for the socket), default database, command and seconds in it. Never
/// `INFO`, the statement text, which may hold anything.
const SESSIONS_OF_USER: &str = "SELECT ID, HOST, DB, COMMAND, TIME FROM information_schema.PROCESSLIST \
                                WHERE USER = ? AND ID <> CONNECTION_ID() AND COMMAND <> 'Killed' ORDER BY ID";

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
/// The statements keep everything but the password: every method of an
/// `IDENTIFIED VIA a OR b` chain (ed25519 methods get the Ed25519 public key of the new
/// password, computed here), and every other host entry of the user that stores the same
/// password gets the new one in the same statement. Accounts that cannot be rotated that
/// way (no password, unknown plugin, client certificate required, locked, `REQUIRE SSL`
/// against a server without TLS) are refused by `preflight` before anything changes.
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
                retires_previous: false,
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

    /// The user whose password the next rotation sets: the configured one, or with
    /// `alternating` the one `current` does not name (the first without a current secret).
    fn next_user(&self, current: Option<&SecretDoc>) -> ProviderResult<String> {
        match current {
            Some(doc) if self.strategy() == Strategy::Alternating => self.other_user(&self.user_of(doc, "current")?),
            _ => Ok(self.config.default_user().to_owned()),
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

    /// A fresh connection with `doc`'s user and password that may run statements: an
    /// expired password (`PASSWORD EXPIRE`) logs in but may only be changed (error 1820),
    /// which this reports as such rather than as a working login.
    async fn open_usable(&self, doc: &SecretDoc, which: &str) -> ProviderResult<(Conn, String)> {
        let (mut conn, user) = self.open_doc(doc, which).await?;
        if let Err(e) = conn.query_drop("DO 1").await {
            close(conn).await;
            return Err(mysql_error(
                &e,
                format_args!("logged in as {}", self.login_label(&user)),
            ));
        }
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

    /// `ALTER USER` giving `user` the password `password` through the admin connection,
    /// computed on rekey's side for each of its methods (mysql_native_password hash,
    /// ed25519 public key), keeping every other method of the account, and the same for
    /// each other host entry of the user that stores one of the `known` passwords (or the
    /// configured entry's): see [`AccountPlan`]. One statement for all entries. With
    /// `renew` (a password applications will use, not a retired user's throwaway one) the
    /// statement also carries `password_lifetime`'s `PASSWORD EXPIRE …` option, unless it
    /// is `"keep"`.
    async fn alter_password(
        &self,
        admin: &AdminPool,
        user: &str,
        password: &Secret,
        retain: bool,
        known: &[&Secret],
        renew: bool,
    ) -> ProviderResult<()> {
        let info = admin.info().await?;
        let mut hashes = password_hashes(password);
        for secret in known {
            hashes.extend(password_hashes(secret));
        }
        let plan = self.account_plan(admin, &info, user, &hashes).await?;
        drop(hashes);
        self.check_rotatable(&plan, &info)?;
        let lifetime = if renew {
            self.config.password_lifetime.clause()
        } else {
            None
        };
        let sql = Arc::new(plan.alter_statement(info.server.flavor, password, retain, lifetime.as_deref()));
        let accounts = plan
            .rotate
            .iter()
            .map(HostEntry::account)
            .collect::<Vec<_>>()
            .join(", ");
        admin
            .run(&format!("ALTER USER {accounts}"), |c| {
                let sql = sql.clone();
                Box::pin(async move { c.query_drop(sql.as_str()).await })
            })
            .await
            .map_err(|e| self.explain(e, user))
    }

    /// Every host entry of `user` (`'user'@'…'`) with its authentication state, read
    /// through the admin: `mysql.global_priv` on MariaDB 10.4+, `mysql.user` elsewhere.
    /// `PermissionDenied` naming the grant when the admin may not read it.
    async fn read_entries(&self, admin: &AdminPool, info: &AdminInfo, user: &str) -> ProviderResult<Vec<HostEntry>> {
        let name = user.to_owned();
        let global_priv = info.server.flavor == Flavor::MariaDb && info.server.version >= (10, 4, 0);
        let action = format!("reading the authentication state of user {}", quote_literal(user));
        let result = if global_priv {
            admin
                .run(&action, |c| {
                    let name = name.clone();
                    Box::pin(async move {
                        c.exec::<(String, String), _, _>(
                            "SELECT Host, Priv FROM mysql.global_priv WHERE User = ?",
                            (name,),
                        )
                        .await
                    })
                })
                .await
                .map(|rows| {
                    rows.into_iter()
                        .filter_map(|(host, json)| {
                            let json = Zeroizing::new(json);
                            HostEntry::from_mariadb_priv(user, &host, &json)
                        })
                        .collect::<Vec<_>>()
                })
        } else {
            let sql = if info.server.flavor == Flavor::MariaDb {
                // MariaDB before 10.4: no account locking, no per-account lifetime.
                "SELECT Host, plugin, IF(plugin IN ('', 'mysql_native_password'), authentication_string, ''), \
                 ssl_type, password_expired, 'N', NULL, max_user_connections FROM mysql.user WHERE User = ?"
            } else {
                "SELECT Host, plugin, IF(plugin = 'mysql_native_password', authentication_string, ''), \
                 ssl_type, password_expired, account_locked, password_lifetime, max_user_connections \
                 FROM mysql.user WHERE User = ?"
            };
            type Row = (String, String, String, String, String, String, Option<i64>, i64);
            admin
                .run(&action, |c| {
                    let name = name.clone();
                    Box::pin(async move { c.exec::<Row, _, _>(sql, (name,)).await })
                })
                .await
                .map(|rows| {
                    rows.into_iter()
                        .map(
                            |(host, plugin, auth, ssl_type, expired, locked, lifetime, max_user_connections)| {
                                let row = MysqlUserRow {
                                    plugin,
                                    auth: Zeroizing::new(auth),
                                    ssl_type,
                                    expired,
                                    locked,
                                    lifetime,
                                    max_user_connections,
                                };
                                HostEntry::from_mysql_user(user, &host, &row)
                            },
                        )
                        .collect()
                })
        };
        result.map_err(|e| {
            if e.kind() != ErrorKind::PermissionDenied {
                return e;
            }
            let table = if global_priv { "mysql.global_priv" } else { "mysql.user" };
            let admin_name = admin_account(info);
            ProviderError::permission_denied(format!(
                "admin {admin_name} may not read the authentication state of {} on {} ({table}): rekey reads it to \
                 keep the account's other authentication methods, host entries and TLS requirement \
                 (GRANT SELECT ON {table} TO {admin_name})",
                self.account(user),
                admin.endpoint()
            ))
        })
    }

    /// The host entries of `user` a rotation changes and those it leaves, or `NotFound`
    /// when the configured entry (`user_host`) does not exist.
    async fn account_plan(
        &self,
        admin: &AdminPool,
        info: &AdminInfo,
        user: &str,
        known: &[(String, Zeroizing<String>)],
    ) -> ProviderResult<AccountPlan> {
        let entries = self.read_entries(admin, info, user).await?;
        AccountPlan::new(entries, &self.config.user_host, known).ok_or_else(|| {
            ProviderError::not_found(format!(
                "user {} does not exist on {}",
                self.account(user),
                admin.endpoint()
            ))
        })
    }

    /// Refuses, before anything changes, an account whose password cannot be rotated
    /// keeping its other properties (see [`HostEntry::rotation_refused`]), or one that is
    /// locked (its new password could not be verified).
    fn check_rotatable(&self, plan: &AccountPlan, info: &AdminInfo) -> ProviderResult<()> {
        for entry in &plan.rotate {
            if let Some(why) = entry.rotation_refused(info.server.flavor, self.config.switch_plugin) {
                return Err(ProviderError::unsupported(format!(
                    "{why} (on {})",
                    self.endpoint.label()
                )));
            }
            if entry.locked {
                return Err(ProviderError::permission_denied(format!(
                    "{} on {} is locked (ACCOUNT LOCK): every login is refused (error 4151), so a new password \
                     could not be verified (ALTER USER {} ACCOUNT UNLOCK first)",
                    entry.account(),
                    self.endpoint.label(),
                    entry.account()
                )));
            }
        }
        Ok(())
    }

    /// Refuses, before anything changes, a rotation whose verify could not log in: an
    /// entry it changes has `MAX_USER_CONNECTIONS n` (or none of its own and the server's
    /// `max_user_connections` is `n`, read once per run) and the user already has `n`
    /// sessions open (`information_schema.PROCESSLIST`, which shows other users' threads
    /// only to an admin with `PROCESS`: without it nothing is counted, and verify tells).
    /// After apply, verify's login would be refused (error 1226, or 1203 for the server's
    /// limit) with the new password already set. `Conflict`, not retryable: a session
    /// must end or the limit rise.
    async fn check_login_slot(&self, admin: &AdminPool, plan: &AccountPlan) -> ProviderResult<()> {
        // An account's own limit, else the server's (for accounts without one).
        let server_limit = if plan.rotate.iter().any(|e| e.max_user_connections == 0) {
            admin.max_user_connections().await?
        } else {
            0
        };
        let Some((entry, limit)) = plan
            .rotate
            .iter()
            .map(|e| match e.max_user_connections {
                0 => (e, server_limit),
                own => (e, own),
            })
            .filter(|(_, limit)| *limit > 0)
            .min_by_key(|(_, limit)| *limit)
        else {
            return Ok(());
        };
        let user = entry.user.clone();
        let open = admin
            .run(&format!("counting the sessions of {}", entry.account()), |c| {
                let user = user.clone();
                Box::pin(async move {
                    c.exec_first::<i64, _, _>(
                        "SELECT COUNT(*) FROM information_schema.PROCESSLIST WHERE USER = ? AND COMMAND <> 'Killed'",
                        (user,),
                    )
                    .await
                })
            })
            .await?
            .unwrap_or(0);
        if open < limit {
            return Ok(());
        }
        let (limit_text, code, raise) = if entry.max_user_connections > 0 {
            (
                format!("MAX_USER_CONNECTIONS {limit}"),
                1226,
                format!("ALTER USER {} WITH MAX_USER_CONNECTIONS n", entry.account()),
            )
        } else {
            (
                format!("no MAX_USER_CONNECTIONS of its own, so the server's max_user_connections = {limit} applies,"),
                1203,
                format!(
                    "SET GLOBAL max_user_connections = n, or ALTER USER {} WITH MAX_USER_CONNECTIONS n",
                    entry.account()
                ),
            )
        };
        Err(ProviderError::conflict(format!(
            "{} on {} has {limit_text} and {open} session(s) open: verify's login with the new password would be \
             refused (error {code}) after apply had changed it, so nothing was changed; end a session or raise the \
             limit ({raise})",
            entry.account(),
            self.endpoint.label(),
        ))
        .retryable(false))
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
            ErrorKind::Unsupported if e.code() == Some(&ErrorCode::Mysql(1524)) => {
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
            let own = self.own_account(&mut conn, &label).await?;
            let kind = self.own_password_kind(&own, &server, &label)?;
            let (sql, what) = match (kind, server.flavor) {
                (PluginKind::Ed25519, _) => (
                    Zeroizing::new(format!(
                        "SET PASSWORD = {}",
                        quote_literal(&ed25519_password_hash(&new_password))
                    )),
                    "SET PASSWORD",
                ),
                (_, Flavor::MariaDb) => (
                    set_own_password_hash(server.flavor, &native_password_hash(&new_password)),
                    "SET PASSWORD",
                ),
                (_, Flavor::Mysql) => (
                    set_own_password_hash(server.flavor, &native_password_hash(&new_password)),
                    "ALTER USER CURRENT_USER()",
                ),
            };
            conn.query_drop(sql.as_str())
                .await
                .map_err(|e| mysql_error(&e, format_args!("{what} as {label}")))
        }
        .await;
        close(conn).await;
        result
    }

    /// The user's own `SHOW CREATE USER CURRENT_USER()`, read on `conn` (the path without
    /// an admin).
    async fn own_account(&self, conn: &mut Conn, label: &str) -> ProviderResult<OwnAccount> {
        let statement: Option<String> = conn.query_first("SHOW CREATE USER CURRENT_USER()").await.map_err(|e| {
            mysql_error(&e, format_args!("SHOW CREATE USER CURRENT_USER() as {label}")).context(
                "without an admin rekey reads the account's authentication methods from its own SHOW CREATE USER",
            )
        })?;
        let statement = Zeroizing::new(statement.unwrap_or_default());
        OwnAccount::parse(&statement).ok_or_else(|| {
            ProviderError::other(format!(
                "SHOW CREATE USER CURRENT_USER() as {label}: the answer could not be read"
            ))
        })
    }

    /// Without an admin, a user may change only a password that is its one method
    /// (mysql_native_password, or ed25519 on MariaDB): `SET PASSWORD` cannot keep the
    /// other methods of a chain, and refuses (after changing the password) when one of
    /// them is unix_socket. The kind of that method, or why not.
    fn own_password_kind(&self, own: &OwnAccount, server: &ServerInfo, label: &str) -> ProviderResult<PluginKind> {
        let account = self.account(self.config.default_user());
        let methods = own.plugins.join(" OR ");
        if let [plugin] = own.plugins.as_slice() {
            match PluginKind::of(plugin) {
                PluginKind::Native => return Ok(PluginKind::Native),
                PluginKind::Ed25519 if server.flavor == Flavor::MariaDb => return Ok(PluginKind::Ed25519),
                PluginKind::Unhashable if self.config.switch_plugin && server.flavor == Flavor::Mysql => {
                    return Ok(PluginKind::Unhashable)
                }
                PluginKind::Unhashable => {
                    return Err(ProviderError::unsupported(format!(
                        "{account} ({label}) authenticates via {methods}: rekey cannot compute that hash on its \
                         side (set `switch_plugin = true` to move it to mysql_native_password, MySQL only)"
                    )))
                }
                _ => {}
            }
        }
        Err(ProviderError::unsupported(format!(
            "{account} ({label}) authenticates via {methods}: without an admin rekey can change only an account \
             whose one method is a password (SET PASSWORD cannot keep the others); configure `admin`"
        )))
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
        let admin = admin_account(info);
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
    ///
    /// Returns how many ended and one note per session ended (at most
    /// [`notes::MAX_SESSION_NOTES`]), from the process list read just before the kills;
    /// the passwords of `old` and `via` are kept out of them.
    async fn terminate_sessions(
        &self,
        user: &str,
        old: &SecretDoc,
        via: &SecretDoc,
    ) -> ProviderResult<(u64, Vec<String>)> {
        let killed = self.kill_threads(user, via).await?;
        let passwords: Vec<Secret> = [old.password(), via.password()].into_iter().flatten().collect();
        let secrets: Vec<&str> = passwords.iter().map(Secret::expose).collect();
        let lines = killed.iter().map(|t| t.note(&secrets)).collect();
        Ok((killed.len() as u64, notes::capped(lines, killed.len())))
    }

    /// The kills of [`MysqlTarget::terminate_sessions`]: the threads ended.
    async fn kill_threads(&self, user: &str, via: &SecretDoc) -> ProviderResult<Vec<Thread>> {
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

/// The admin's account as SQL (`'rekey'@'%'`), from `CURRENT_USER()`.
fn admin_account(info: &AdminInfo) -> String {
    match info.current_user.rsplit_once('@') {
        Some((user, host)) => quote_account(user, host),
        None => quote_literal(&info.current_user),
    }
}

/// A session of the process list (`information_schema.PROCESSLIST`).
#[derive(Debug, Clone)]
struct Thread {
    id: u64,
    host: Option<String>,
    db: Option<String>,
    command: Option<String>,
    time: Option<i64>,
}

impl Thread {
    /// `session id 42 from 127.0.0.1:53412 (db orders, Sleep for 12 s) ended`.
    fn note(&self, secrets: &[&str]) -> String {
        let from = match self.host.as_deref() {
            Some("") | None => "an unknown host".to_owned(),
            Some("localhost") => "localhost (local socket)".to_owned(),
            Some(host) => notes::shown(host, secrets),
        };
        let mut what = Vec::new();
        if let Some(db) = self.db.as_deref().filter(|d| !d.is_empty()) {
            what.push(format!("db {}", notes::shown(db, secrets)));
        }
        match (self.command.as_deref(), self.time) {
            (Some(cmd), Some(t)) => what.push(format!("{} for {t} s", notes::shown(cmd, secrets))),
            (Some(cmd), None) => what.push(notes::shown(cmd, secrets)),
            (None, Some(t)) => what.push(format!("{t} s in its state")),
            (None, None) => {}
        }
        let what = if what.is_empty() {
            String::new()
        } else {
            format!(" ({})", what.join(", "))
        };
        format!("session id {} from {from}{what} ended", self.id)
    }
}

/// Ends every session of `user` except the connection asking; returns those ended, as
/// the process list showed them just before.
fn kill_sessions_of(c: &mut Conn, user: String) -> OpFuture<'_, Vec<Thread>> {
    Box::pin(async move {
        type Row = (u64, Option<String>, Option<String>, Option<String>, Option<i64>);
        let rows: Vec<Row> = c.exec(SESSIONS_OF_USER, (user,)).await?;
        let mut ended = Vec::new();
        for (id, host, db, command, time) in rows {
            match c.query_drop(format!("KILL CONNECTION {id}")).await {
                Ok(()) => ended.push(Thread {
                    id,
                    host,
                    db,
                    command,
                    time,
                }),
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
        // The entries storing the current password (or the new one, after a partial
        // apply) change together.
        let current_password = match current {
            Some(doc) if self.user_of(doc, "current")? == user => doc.password(),
            _ => None,
        };
        let known: Vec<&Secret> = current_password.iter().collect();
        match self.strategy() {
            Strategy::Single => self.alter_password(admin, &user, &password, false, &known, true).await,
            Strategy::Dual => {
                self.check_dual(&admin.info().await?.server)?;
                // RETAIN CURRENT PASSWORD keeps the *current* password as the secondary:
                // run twice, it would keep the new one and drop the old. Skip when the
                // new password is already the primary.
                if self.already_primary(admin, &user, &password).await? {
                    return Ok(());
                }
                self.alter_password(admin, &user, &password, true, &known, true).await
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
                self.alter_password(admin, &user, &password, false, &[], true).await
            }
        }
    }

    /// A fresh login that also runs `DO 1`: an expired password (`PASSWORD EXPIRE`),
    /// which the server lets in only to change it, is `PermissionDenied` saying so.
    async fn login(&self, doc: &SecretDoc) -> ProviderResult<()> {
        let (conn, _) = self.open_usable(doc, "given").await?;
        close(conn).await;
        Ok(())
    }

    async fn verify(&self, doc: &SecretDoc) -> ProviderResult<()> {
        let (mut conn, user) = self.open_usable(doc, "new").await?;
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
                let info = admin.info().await?;
                self.check_dual(&info.server)?;
                // Every entry that got the new password keeps an old one to discard.
                let hashes = password_hashes(&Self::password_of(new, "new")?);
                let plan = self.account_plan(admin, &info, &new_user, &hashes).await?;
                for entry in &plan.rotate {
                    let account = entry.account();
                    let sql = Arc::new(discard_old_password(&account));
                    admin
                        .run(&format!("ALTER USER {account} DISCARD OLD PASSWORD"), |c| {
                            let sql = sql.clone();
                            Box::pin(async move { c.query_drop(sql.as_str()).await })
                        })
                        .await
                        .map_err(|e| self.explain(e, &new_user))?;
                }
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
                // Every entry of the retired user that stores its old password.
                let old_password = Self::password_of(old, "old")?;
                self.alter_password(
                    admin,
                    &old_user,
                    &Self::throwaway_password(),
                    false,
                    &[&old_password],
                    false,
                )
                .await?;
                old_user
            }
        };
        if !terminate {
            return Ok(RevokeReport::default());
        }
        let (sessions_terminated, notes) = self.terminate_sessions(&retired, old, new).await?;
        Ok(RevokeReport {
            sessions_terminated,
            notes,
        })
    }
}
