//! `type = "mysql"`: a MySQL or MariaDB user ([`rekey_mysql`]).
//!
//! Identity: each user (`username`, or both `usernames`) with `user_host`, on host and
//! port; the admin is the user its URL names, with the target's `user_host` (the
//! account's host part is the server's choice).

use crate::config::identity::{percent_decode, server_place, strip_scheme, Expected, Identity, IdentityKey};
use crate::providers::target_kind::{server_endpoint, AdminLogin, TargetContext, TargetKind};
use rekey_api::{ProviderResult, RedactedDsn, Strategy, Target};
use rekey_mysql::{MysqlProvider, MysqlTargetConfig};
use std::sync::Arc;

impl TargetKind for MysqlTargetConfig {
    const TYPE: &'static str = "mysql";

    const SET_ADMIN: Option<fn(&mut Self, &AdminLogin<'_>)> = Some(|c, login| c.admin = Some(login.dsn("mysql", "")));

    /// `alternating` when `usernames` names two users, else `single`.
    fn default_strategy(&self) -> Strategy {
        if self.usernames.is_some() {
            Strategy::Alternating
        } else {
            Strategy::Single
        }
    }

    fn identities(&self, _: &dyn Fn(&str) -> Option<String>) -> Vec<Identity> {
        let (key, shown) = server_place(&self.host, self.port);
        self.users()
            .into_iter()
            .map(|user| Identity {
                key: (Self::TYPE, key.clone(), format!("{user}\0{}", self.user_host)),
                shown: format!("mysql user '{user}'@'{}' on {shown}", self.user_host),
            })
            .collect()
    }

    fn admin_dsn(&self) -> Option<&RedactedDsn> {
        self.admin.as_ref()
    }

    fn admin_identity(&self) -> Option<IdentityKey> {
        let user = mysql_admin_user(self.admin.as_ref()?.expose())?;
        Some((
            Self::TYPE,
            server_place(&self.host, self.port).0,
            format!("{user}\0{}", self.user_host),
        ))
    }

    fn expected(&self) -> Expected<'_> {
        Expected {
            engines: &["mysql", "mariadb", "aurora-mysql", "aurora"],
            host: Some(&self.host),
            port: Some(self.port),
            users: self.users(),
            ..Expected::default()
        }
    }

    fn password_lifetime(&self) -> Option<(std::time::Duration, String)> {
        match self.password_lifetime {
            rekey_mysql::PasswordLifetime::Days(days) => Some((
                std::time::Duration::from_secs(u64::from(days) * 86_400),
                format!("password_lifetime = \"{}\"", self.password_lifetime),
            )),
            _ => None,
        }
    }

    fn endpoint(&self) -> Option<String> {
        server_endpoint(&self.host, self.port)
    }

    fn build(&self, ctx: &TargetContext<'_>) -> ProviderResult<Arc<dyn Target>> {
        ctx.provider::<MysqlProvider>().target(self, ctx.strategy)
    }
}

/// The user a MySQL admin URL (`mysql://user:pw@host:port/`) names.
fn mysql_admin_user(url: &str) -> Option<String> {
    let rest = strip_scheme(url, &["mysql", "mariadb"])?;
    let before_query = rest.split('?').next().unwrap_or(rest);
    let authority = before_query.split('/').next().unwrap_or(before_query);
    let (userinfo, _) = authority.rsplit_once('@')?;
    percent_decode(userinfo.split(':').next().unwrap_or("")).filter(|u| !u.is_empty())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn admin_users_are_read_without_the_password() {
        assert_eq!(mysql_admin_user("mysql://root:pw@h:3306/").as_deref(), Some("root"));
        assert_eq!(mysql_admin_user("mariadb://r%40x:p@ss@h/").as_deref(), Some("r@x"));
        assert_eq!(mysql_admin_user("mysql://h/"), None);
    }
}
