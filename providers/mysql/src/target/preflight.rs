//! Preflight: the read-only checks behind `plan` (`preflight`) and `precheck`, with an
//! admin (the account entries, plugins, TLS requirements, grants and what the stored
//! secrets log in as) or without one (the user checks itself).

use super::MysqlTarget;
use crate::account::{password_hashes, AccountPlan, HostEntry, Lifetime, OwnAccount, PluginKind, TlsRequirement};
use crate::admin::AdminPool;
use crate::config::{PasswordLifetime, TlsMode};
use crate::conn::close;
use crate::error::{mysql_error, server_code};
use crate::sql::{normalize_grants, quote_literal, Flavor, ServerInfo};
use mysql_async::prelude::Queryable;
use rekey_api::{ErrorKind, ProviderError, ProviderResult, SecretDoc, Strategy};
use std::sync::Arc;
use zeroize::Zeroizing;

/// What a login with a stored secret showed (see `check_login_account`).
struct LoginFacts {
    user: String,
    /// `VERSION()`; empty when the password has expired.
    version: String,
    /// The password has expired: the login works but every statement fails with 1820.
    expired: bool,
    /// The user's own `SHOW CREATE USER`, when asked for.
    own: Option<OwnAccount>,
}

impl MysqlTarget {
    /// Whether the server offers TLS (`@@have_ssl`), or `None` when it cannot be told.
    async fn server_offers_tls(&self, admin: &AdminPool) -> Option<(bool, String)> {
        let value: Option<String> = admin
            .run("reading @@have_ssl", |c| {
                Box::pin(async move { c.query_first::<String, _>("SELECT @@have_ssl").await })
            })
            .await
            .ok()
            .flatten();
        value.map(|v| (v.eq_ignore_ascii_case("YES"), v))
    }

    /// Refuses a rotation whose logins the server would refuse for want of TLS: an
    /// account with `REQUIRE SSL` under `tls = "disable"`, or any login that needs TLS
    /// (`REQUIRE SSL`, `tls = "require"`/`"verify-full"`) against a server that does not
    /// offer it. Returns a line for `plan`.
    fn check_tls(&self, plan: &AccountPlan, offers: Option<&(bool, String)>) -> ProviderResult<Option<String>> {
        let mode = self.config.tls;
        let endpoint = self.endpoint.label();
        let requiring: Vec<&HostEntry> = plan.rotate.iter().filter(|e| e.tls == TlsRequirement::Ssl).collect();
        if let Some(entry) = requiring.first() {
            if mode == TlsMode::Disable {
                return Err(ProviderError::invalid_input(format!(
                    "{} on {endpoint} has REQUIRE SSL but the target has tls = \"disable\": every login to verify \
                     the new password would be refused (set tls = \"prefer\", \"require\" or \"verify-full\")",
                    entry.account()
                )));
            }
        }
        let needs = !requiring.is_empty() || matches!(mode, TlsMode::Require | TlsMode::VerifyFull);
        match offers {
            Some((false, have_ssl)) if needs => {
                let why = match requiring.first() {
                    Some(entry) => format!(
                        "{} has REQUIRE SSL, so logins over plain TCP (what tls = \"{mode}\" falls back to) are \
                         refused (error 1045)",
                        entry.account()
                    ),
                    None => format!("tls = \"{mode}\" needs TLS"),
                };
                Err(ProviderError::invalid_input(format!(
                    "the server at {endpoint} does not offer TLS (have_ssl = {have_ssl}) and {why}: the new password \
                     could not be verified; enable TLS on the server or drop the requirement (ALTER USER … \
                     REQUIRE NONE)"
                )))
            }
            Some((true, _)) if !requiring.is_empty() => Ok(Some(format!(
                "{} has REQUIRE SSL and the server offers TLS: logins with tls = \"{mode}\" use it",
                requiring.iter().map(|e| e.account()).collect::<Vec<_>>().join(", ")
            ))),
            None if !requiring.is_empty() && mode == TlsMode::Prefer => Ok(Some(format!(
                "{} has REQUIRE SSL; whether the server offers TLS could not be read (@@have_ssl): with tls = \
                 \"prefer\" a server without TLS would refuse the logins",
                requiring.iter().map(|e| e.account()).collect::<Vec<_>>().join(", ")
            ))),
            _ => Ok(None),
        }
    }

    /// What a rotation does to `plan`'s entries, one line per fact, for `plan`.
    fn describe_plan(&self, plan: &AccountPlan, flavor: Flavor) -> Vec<String> {
        let mut lines = Vec::new();
        let main = plan.main();
        let account = main.account();
        let passwords: Vec<&str> = main
            .methods
            .iter()
            .filter(|m| m.kind().holds_password())
            .map(|m| match m.kind() {
                PluginKind::Ed25519 => "ed25519 (public key computed by rekey)",
                PluginKind::Unhashable => "a mysql_native_password hash instead of its plugin (switch_plugin = true)",
                _ => "mysql_native_password (hash computed by rekey)",
            })
            .collect();
        let kept: Vec<&str> = main
            .methods
            .iter()
            .filter(|m| !m.kind().holds_password())
            .map(|m| m.plugin.as_str())
            .collect();
        let mut line = format!(
            "{account} authenticates via {}: the rotation installs the new password as {}",
            main.methods_label(),
            passwords.join(" and ")
        );
        if !kept.is_empty() {
            line.push_str(&format!(" and keeps {}", kept.join(", ")));
        }
        if flavor == Flavor::Mysql && main.methods.iter().any(|m| m.kind() == PluginKind::Unhashable) {
            line.push_str(" (its plugin becomes mysql_native_password, as switch_plugin = true allows)");
        }
        lines.push(line);
        if main.expired {
            lines.push(format!(
                "the password of {account} has expired (PASSWORD EXPIRE): logins may only change it; the rotation's \
                 ALTER USER sets the new one and clears the expiry"
            ));
        }
        lines.push(self.describe_lifetime(main));
        for entry in plan.rotate.iter().skip(1) {
            lines.push(format!(
                "{} stores the same password: it gets the new password too (keeping its own methods, {})",
                entry.account(),
                entry.methods_label()
            ));
        }
        for (entry, why) in &plan.untouched {
            lines.push(format!("{} {why}", entry.account()));
        }
        lines
    }

    /// The password lifetime of `entry` (the configured entry) and what the rotation does
    /// to it under `password_lifetime`, for `plan`. The rotation's one `ALTER USER` sets
    /// the same option on every entry it changes.
    fn describe_lifetime(&self, entry: &HostEntry) -> String {
        let account = entry.account();
        let now = entry.lifetime.clause();
        let policy = self.config.password_lifetime;
        let expires = |days: i64| {
            format!("the new password expires {days} days after the rotation (rotate more often than that)")
        };
        let default = "the server's default_password_lifetime applies to the new password";
        match (policy, policy.clause()) {
            (PasswordLifetime::Keep, _) => {
                let then = match entry.lifetime {
                    Lifetime::Days(days) => expires(days),
                    Lifetime::Never => "the new password never expires".to_owned(),
                    Lifetime::Default => default.to_owned(),
                };
                format!(
                    "{account} has {now}: kept (password_lifetime = \"keep\"), {then}; set password_lifetime = \
                     \"clear\" or a number of days such as \"90d\" to change it"
                )
            }
            (_, Some(clause)) if clause == now => {
                format!("{account} has {now}: kept (password_lifetime = \"{policy}\" sets the same)")
            }
            (_, clause) => {
                let then = match policy {
                    PasswordLifetime::Days(days) => expires(i64::from(days)),
                    _ => "the new password never expires".to_owned(),
                };
                format!(
                    "{account} has {now}: the rotation sets {} (password_lifetime = \"{policy}\"), {then}",
                    clause.unwrap_or_default()
                )
            }
        }
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

    /// Logs in with `doc` and checks the login lands on one of the accounts `hosts` names
    /// (the configured one, or another entry the rotation also changes), not, say, on
    /// `'app'@'localhost'` left with the old password while `'app'@'%'` is rotated. An
    /// expired password (error 1820 on the first statement) is reported as
    /// [`LoginFacts::expired`]; with `read_own`, also reads the user's own
    /// `SHOW CREATE USER`.
    async fn check_login_account(
        &self,
        doc: &SecretDoc,
        which: &str,
        hosts: &[&str],
        read_own: bool,
    ) -> ProviderResult<LoginFacts> {
        let (mut conn, user) = self.open_doc(doc, which).await?;
        let label = self.login_label(&user);
        let row: Result<Option<(String, String)>, _> = conn.query_first("SELECT CURRENT_USER(), VERSION()").await;
        let row = match row {
            Err(e) if server_code(&e) == Some(1820) => {
                close(conn).await;
                return Ok(LoginFacts {
                    user,
                    version: String::new(),
                    expired: true,
                    own: None,
                });
            }
            Err(e) => {
                close(conn).await;
                return Err(mysql_error(&e, format_args!("reading CURRENT_USER() as {label}")));
            }
            Ok(row) => row,
        };
        let own = if read_own {
            match self.own_account(&mut conn, &label).await {
                Ok(own) => Some(own),
                Err(e) => {
                    close(conn).await;
                    return Err(e);
                }
            }
        } else {
            None
        };
        close(conn).await;
        let (account, version) = row.unwrap_or_default();
        let lands = account
            .rsplit_once('@')
            .is_some_and(|(u, h)| u == user && hosts.contains(&h));
        if !lands {
            return Err(ProviderError::invalid_input(format!(
                "logging in as {label} uses the account {account}, not {}: rotating {} would not change the \
                 password this login checks (set `user_host`)",
                self.account(&user),
                self.account(&user)
            )));
        }
        Ok(LoginFacts {
            user,
            version,
            expired: false,
            own,
        })
    }

    pub(super) async fn preflight_with_admin(
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
        let mut tls_offered = None;
        let mut rotated_hosts: Vec<(String, Vec<String>)> = Vec::new();
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
            let known: Vec<(String, Zeroizing<String>)> = match current {
                Some(doc) if self.user_of(doc, "current")? == user => {
                    doc.password().map(|p| password_hashes(&p)).unwrap_or_default()
                }
                _ => Vec::new(),
            };
            let plan = self.account_plan(admin, &info, user, &known).await?;
            self.check_rotatable(&plan, &info)?;
            if user == self.next_user(current)? {
                self.check_login_slot(admin, &plan).await?;
            }
            let main = plan.main();
            if self.strategy() == Strategy::Dual && main.methods.iter().any(|m| m.kind() != PluginKind::Native) {
                return Err(ProviderError::unsupported(format!(
                    "{account} authenticates via {}; RETAIN CURRENT PASSWORD cannot keep the current password \
                     while switching it to mysql_native_password (switch it once with ALTER USER, or use strategy \
                     \"alternating\")",
                    main.methods_label()
                )));
            }
            if tls_offered.is_none() {
                tls_offered = Some(self.server_offers_tls(admin).await);
            }
            lines.extend(self.check_tls(&plan, tls_offered.as_ref().and_then(Option::as_ref))?);
            lines.extend(self.describe_plan(&plan, info.server.flavor));
            rotated_hosts.push((
                user.to_owned(),
                plan.rotate.iter().map(|e| e.host.clone()).collect::<Vec<_>>(),
            ));
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
            let user = self.user_of(current, "current")?;
            let hosts: Vec<&str> = rotated_hosts
                .iter()
                .find(|(u, _)| *u == user)
                .map(|(_, hosts)| hosts.iter().map(String::as_str).collect())
                .unwrap_or_else(|| vec![self.config.user_host.as_str()]);
            match self.check_login_account(current, "current", &hosts, false).await {
                Ok(facts) if facts.expired => lines.push(format!(
                    "the current secret logs in as {} but has expired (error 1820: it may only be changed); the \
                     rotation replaces it through the admin",
                    self.login_label(&facts.user)
                )),
                Ok(facts) => lines.push(format!(
                    "the current secret logs in as {}",
                    self.login_label(&facts.user)
                )),
                Err(e) if e.kind() == ErrorKind::AuthRejected => lines.push(format!(
                    "the current secret is refused as {} (the rotation will replace it)",
                    self.login_label(&self.user_of(current, "current")?)
                )),
                Err(e) => return Err(e),
            }
        }
        Ok(lines)
    }

    pub(super) async fn preflight_as_user(&self, current: Option<&SecretDoc>) -> ProviderResult<Vec<String>> {
        let user = self.config.default_user().to_owned();
        let Some(current) = current else {
            return Err(ProviderError::invalid_input(format!(
                "no admin is configured and there is no current secret: cannot log in as {} to change its password",
                self.login_label(&user)
            )));
        };
        let hosts = [self.config.user_host.as_str()];
        let facts = self
            .check_login_account(current, "current", &hosts, true)
            .await
            .map_err(|e| {
                if e.kind() == ErrorKind::AuthRejected {
                    e.context("no admin is configured, so the current secret must log in")
                } else {
                    e
                }
            })?;
        let label = self.login_label(&facts.user);
        if facts.expired {
            return Err(ProviderError::permission_denied(format!(
                "the current password of {} has expired (PASSWORD EXPIRE: error 1820 on every statement as \
                 {label}): without an admin rekey cannot read the account's authentication methods to change it \
                 safely; configure `admin`, whose ALTER USER replaces it and clears the expiry",
                self.account(&facts.user)
            )));
        }
        let server = ServerInfo::from_version(&facts.version);
        let own = facts.own.unwrap_or_default();
        let kind = self.own_password_kind(&own, &server, &label)?;
        if own.tls == TlsRequirement::X509 || own.tls == TlsRequirement::Specified {
            return Err(ProviderError::unsupported(format!(
                "{} has {}: logins must present a client certificate, which rekey's logins do not",
                self.account(&facts.user),
                own.tls.clause()
            )));
        }
        let how = match kind {
            PluginKind::Ed25519 => "as an ed25519 public key computed by rekey",
            PluginKind::Unhashable => "as a mysql_native_password hash (switch_plugin = true changes its plugin)",
            _ => "as a mysql_native_password hash computed by rekey",
        };
        Ok(vec![
            format!("the current secret logs in as {label} ({})", server.label()),
            format!(
                "user {} authenticates via {}; it will change its own password {how} (no admin configured: other \
                 host entries of the user are not visible and are not changed)",
                self.account(&facts.user),
                own.plugins.join(" OR ")
            ),
        ])
    }
}
