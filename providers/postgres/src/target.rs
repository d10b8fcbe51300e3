//! [`PostgresTarget`]: one PostgreSQL role.

use crate::admin::AdminPool;
use crate::config::PostgresTargetConfig;
use crate::conn::{connect, Session};
use crate::error::pg_error;
use crate::sql::{alter_role_password, quote_ident, scram_verifier};
use crate::tls::TlsSetup;
use async_trait::async_trait;
use rekey_api::{
    ErrorKind, ProviderError, ProviderResult, RevokeOptions, RevokeReport, Secret, SecretDoc, Strategy, Target,
    TargetCapabilities,
};
use std::fmt;
use std::sync::Arc;

/// Application name the target's own logins show in `pg_stat_activity`.
const LOGIN_APPLICATION_NAME: &str = "rekey";

/// A PostgreSQL role whose password rekey rotates (strategy `single`).
///
/// With an admin connection the new password is installed with
/// `ALTER ROLE "role" PASSWORD 'SCRAM-SHA-256$4096:…'` on the admin connection shared by
/// every target of the host; without one the role logs in with its current password
/// and runs `ALTER ROLE CURRENT_USER PASSWORD '…'`. Either way only a SCRAM verifier
/// computed on rekey's side reaches the server, so the plaintext never appears in
/// server logs, `pg_stat_activity` or `pg_stat_statements`.
///
/// Created by [`crate::PostgresProvider::postgres_target`].
pub struct PostgresTarget {
    config: PostgresTargetConfig,
    login_config: tokio_postgres::Config,
    tls: TlsSetup,
    admin: Option<Arc<AdminPool>>,
    capabilities: TargetCapabilities,
    endpoint: String,
}

impl fmt::Debug for PostgresTarget {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PostgresTarget")
            .field("config", &self.config)
            .field("admin", &self.admin)
            .finish_non_exhaustive()
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

impl PostgresTarget {
    pub(crate) fn new(
        config: PostgresTargetConfig,
        tls: TlsSetup,
        admin: Option<Arc<AdminPool>>,
        strategy: Strategy,
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
                strategies: vec![Strategy::Single],
                strategy,
                terminate_sessions: true,
                mints_own_secret: false,
                apply_invalidates_previous: true,
            },
            config,
            login_config,
            tls,
            admin,
            endpoint,
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
                    .query_one("SELECT pg_backend_pid()", &[])
                    .await
                    .map(|row| row.get::<_, i32>(0))
            })
            .await?;
        Ok(Some(pid))
    }

    fn role(&self) -> &str {
        &self.config.username
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

    /// Terminates the role's backends other than the connection running the query.
    async fn terminate_sessions(&self, new: &SecretDoc) -> ProviderResult<u64> {
        const SQL: &str = "SELECT pg_terminate_backend(pid) FROM pg_stat_activity \
                           WHERE usename = $1 AND pid <> pg_backend_pid()";
        let role = self.role().to_owned();
        let action = format!("ending the sessions of role {}", quote_ident(&role));
        let ended = match &self.admin {
            Some(admin) => {
                admin
                    .run(&action, |s| {
                        let role = role.clone();
                        async move { s.client.query(SQL, &[&role]).await }
                    })
                    .await?
            }
            None => {
                // A role may signal its own backends.
                let session = self.open_doc(new, "new").await?;
                let rows = session.client.query(SQL, &[&role]).await;
                session.close().await;
                rows.map_err(|e| pg_error(&e, format_args!("{action} as {}", self.login_label(&role))))?
            }
        };
        Ok(ended
            .iter()
            .filter(|row| row.get::<_, Option<bool>>(0) == Some(true))
            .count() as u64)
    }

    async fn apply_with_admin(&self, admin: &AdminPool, password: &Secret) -> ProviderResult<()> {
        let verifier = scram_verifier(password).await?;
        let sql = Arc::new(alter_role_password(&quote_ident(self.role()), &verifier));
        admin
            .run(&format!("ALTER ROLE {}", quote_ident(self.role())), |s| {
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
        let role = self.role().to_owned();
        let dbname = self.config.dbname.clone();
        let mut lines = Vec::new();
        let (admin_user, admin_super, admin_createrole, version_num, version): (String, bool, bool, i32, String) =
            admin
                .run("reading the admin's attributes", |s| async move {
                    let row = s
                        .client
                        .query_one(
                            "SELECT current_user::text, r.rolsuper, r.rolcreaterole, \
                         current_setting('server_version_num')::int4, current_setting('server_version') \
                         FROM pg_roles r WHERE r.rolname = current_user",
                            &[],
                        )
                        .await?;
                    Ok((row.get(0), row.get(1), row.get(2), row.get(3), row.get(4)))
                })
                .await?;
        let version = version.split_whitespace().next().unwrap_or_default();
        lines.push(format!(
            "connected to {} as admin {} (PostgreSQL {version})",
            admin.endpoint(),
            quote_ident(&admin_user)
        ));

        let role_row = admin
            .run("reading the role's attributes", |s| {
                let role = role.clone();
                async move {
                    let rows = s
                        .client
                        .query(
                            "SELECT rolsuper, rolreplication, rolcanlogin, coalesce(rolvaliduntil < now(), false), \
                             pg_has_role(current_user, oid, 'MEMBER WITH ADMIN OPTION') \
                             FROM pg_roles WHERE rolname = $1",
                            &[&role],
                        )
                        .await?;
                    Ok(rows.first().map(|r| {
                        (
                            r.get::<_, bool>(0),
                            r.get::<_, bool>(1),
                            r.get::<_, bool>(2),
                            r.get::<_, bool>(3),
                            r.get::<_, bool>(4),
                        )
                    }))
                }
            })
            .await?;
        let Some((role_super, role_replication, can_login, expired, admin_option)) = role_row else {
            return Err(ProviderError::not_found(format!(
                "role {} does not exist on {}",
                quote_ident(&role),
                admin.endpoint()
            )));
        };
        let privileges = Privileges {
            admin_user: admin_user.clone(),
            admin_super,
            admin_createrole,
            server_version_num: version_num,
            role_super,
            role_replication,
            admin_option,
        };
        match privileges.may_alter(&role) {
            Ok(reason) => lines.push(format!(
                "admin {} may alter role {} ({reason})",
                quote_ident(&admin_user),
                quote_ident(&role)
            )),
            Err(why) => {
                return Err(ProviderError::permission_denied(format!(
                    "admin {} may not alter role {} on {}: {why}",
                    quote_ident(&admin_user),
                    quote_ident(&role),
                    admin.endpoint()
                )))
            }
        }
        if !can_login {
            return Err(ProviderError::permission_denied(format!(
                "role {} on {} has NOLOGIN: a password for it can neither be used nor verified",
                quote_ident(&role),
                admin.endpoint()
            )));
        }
        if expired {
            return Err(ProviderError::permission_denied(format!(
                "role {} on {} is past its VALID UNTIL date: every login is refused whatever the password",
                quote_ident(&role),
                admin.endpoint()
            )));
        }
        lines.push(format!("role {} exists and may log in", quote_ident(&role)));

        let db_row = admin
            .run("reading the database", |s| {
                let (role, dbname) = (role.clone(), dbname.clone());
                async move {
                    let rows = s
                        .client
                        .query(
                            "SELECT has_database_privilege($1::name, datname::text, 'CONNECT'), datallowconn \
                             FROM pg_database WHERE datname = $2",
                            &[&role, &dbname],
                        )
                        .await?;
                    Ok(rows.first().map(|r| (r.get::<_, bool>(0), r.get::<_, bool>(1))))
                }
            })
            .await?;
        match db_row {
            None => {
                return Err(ProviderError::not_found(format!(
                    "database {} does not exist on {}",
                    quote_ident(&dbname),
                    admin.endpoint()
                )))
            }
            Some((false, _)) | Some((_, false)) => {
                return Err(ProviderError::permission_denied(format!(
                    "role {} may not connect to database {} on {}",
                    quote_ident(&role),
                    quote_ident(&dbname),
                    admin.endpoint()
                )))
            }
            Some(_) => lines.push(format!(
                "role {} may connect to database {}",
                quote_ident(&role),
                quote_ident(&dbname)
            )),
        }

        if let Some(current) = current {
            match self.open_doc(current, "current").await {
                Ok(session) => {
                    session.close().await;
                    lines.push(format!("the current secret logs in as {}", self.login_label(&role)));
                }
                Err(e) if e.kind() == ErrorKind::AuthRejected => lines.push(format!(
                    "the current secret is refused as {} (the rotation will replace it)",
                    self.login_label(&role)
                )),
                Err(e) => return Err(e),
            }
        }
        Ok(lines)
    }
}

#[async_trait]
impl Target for PostgresTarget {
    fn capabilities(&self) -> &TargetCapabilities {
        &self.capabilities
    }

    fn describe(&self) -> String {
        format!("postgres {}", self.login_label(self.role()))
    }

    fn complete(&self, doc: &mut SecretDoc) {
        doc.set_default("engine", "postgres");
        doc.set_default("host", self.config.host.as_str());
        doc.set_default("port", self.config.port);
        doc.set_default("username", self.config.username.as_str());
        doc.set_default("dbname", self.config.dbname.as_str());
    }

    async fn preflight(&self, current: Option<&SecretDoc>) -> ProviderResult<Vec<String>> {
        if let Some(current) = current {
            self.check_username(current, "current")?;
        }
        let mut lines = match &self.admin {
            Some(admin) => self.preflight_with_admin(admin, current).await?,
            None => {
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
                session.close().await;
                vec![
                    format!("the current secret logs in as {}", self.login_label(self.role())),
                    format!(
                        "role {} will change its own password (no admin configured)",
                        quote_ident(self.role())
                    ),
                ]
            }
        };
        if self.config.terminate_sessions {
            lines.push(format!(
                "sessions of role {} will be ended at revoke",
                quote_ident(self.role())
            ));
        }
        Ok(lines)
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
        match &self.admin {
            Some(admin) => self.apply_with_admin(admin, &Self::password_of(new, "new")?).await,
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

    async fn revoke(&self, _old: &SecretDoc, new: &SecretDoc, options: RevokeOptions) -> ProviderResult<RevokeReport> {
        // Strategy single: apply already replaced the old password. Only sessions remain.
        if !(options.terminate_sessions || self.config.terminate_sessions) {
            return Ok(RevokeReport::default());
        }
        let sessions_terminated = self.terminate_sessions(new).await?;
        Ok(RevokeReport { sessions_terminated })
    }
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
