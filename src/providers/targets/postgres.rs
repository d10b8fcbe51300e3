//! `type = "postgres"`: a PostgreSQL role ([`rekey_postgres`]).
//!
//! Identity: each role (`username`, or both `usernames`) on host and port; the admin
//! is the role its connection string names.

use crate::config::identity::{percent_decode, server_place, strip_scheme, url_user, Expected, Identity, IdentityKey};
use crate::providers::target_kind::{server_endpoint, userinfo_encode, AdminLogin, TargetContext, TargetKind};
use rekey_api::{ProviderResult, RedactedDsn, Strategy, Target};
use rekey_postgres::{PostgresProvider, PostgresTargetConfig};
use std::sync::Arc;
use zeroize::Zeroizing;

impl TargetKind for PostgresTargetConfig {
    const TYPE: &'static str = "postgres";

    const SET_ADMIN: Option<fn(&mut Self, &AdminLogin<'_>)> = Some(|c, login| {
        let db = login.field("dbname").unwrap_or_else(|| "postgres".to_owned());
        c.admin = Some(login.dsn("postgres", &format!("/{}", userinfo_encode(&db))));
    });

    /// `alternating` when `usernames` names two roles, else `single` (a role holds one
    /// password).
    fn default_strategy(&self) -> Strategy {
        if self.usernames.is_some() {
            Strategy::Alternating
        } else {
            Strategy::Single
        }
    }

    fn identities(&self, _: &dyn Fn(&str) -> Option<String>) -> Vec<Identity> {
        let (key, shown) = server_place(&self.host, self.port);
        self.roles()
            .into_iter()
            .map(|role| Identity {
                key: (Self::TYPE, key.clone(), role.to_owned()),
                shown: format!("postgres role `{role}` on {shown}"),
            })
            .collect()
    }

    fn admin_dsn(&self) -> Option<&RedactedDsn> {
        self.admin.as_ref()
    }

    fn admin_identity(&self) -> Option<IdentityKey> {
        let user = postgres_admin_user(self.admin.as_ref()?.expose())?;
        Some((Self::TYPE, server_place(&self.host, self.port).0, user))
    }

    fn expected(&self) -> Expected<'_> {
        Expected {
            engines: &["postgres", "postgresql", "aurora-postgresql"],
            host: Some(&self.host),
            port: Some(self.port),
            users: self.roles(),
            dbname: Some(&self.dbname),
            ..Expected::default()
        }
    }

    fn password_lifetime(&self) -> Option<(std::time::Duration, String)> {
        match self.valid_until {
            rekey_postgres::ValidUntil::For(lifetime) => {
                Some((lifetime, format!("valid_until = \"{}\"", self.valid_until)))
            }
            _ => None,
        }
    }

    fn endpoint(&self) -> Option<String> {
        server_endpoint(&self.host, self.port)
    }

    fn build(&self, ctx: &TargetContext<'_>) -> ProviderResult<Arc<dyn Target>> {
        ctx.provider::<PostgresProvider>().target(self, ctx.strategy)
    }
}

/// The role a PostgreSQL admin connection string (URL or key=value) names. The
/// password is skipped, never copied out.
fn postgres_admin_user(dsn: &str) -> Option<String> {
    if let Some(rest) = strip_scheme(dsn, &["postgres", "postgresql"]) {
        let query_user = rest.split_once('?').and_then(|(_, query)| {
            query
                .split('&')
                .filter_map(|pair| pair.split_once('='))
                .filter(|(k, _)| *k == "user")
                .filter_map(|(_, v)| percent_decode(v))
                .next_back()
        });
        return query_user.or_else(|| url_user(rest)).filter(|u| !u.is_empty());
    }
    key_value_user(dsn)
}

/// `user` of libpq key=value conninfo (values plain with `\` escapes, or single-quoted).
fn key_value_user(text: &str) -> Option<String> {
    let mut chars = text.chars().peekable();
    let mut user = None;
    loop {
        while chars.next_if(|c| c.is_whitespace()).is_some() {}
        if chars.peek().is_none() {
            return user;
        }
        let mut key = String::new();
        while let Some(c) = chars.next_if(|c| !c.is_whitespace() && *c != '=') {
            key.push(c);
        }
        while chars.next_if(|c| c.is_whitespace()).is_some() {}
        if key.is_empty() || chars.next() != Some('=') {
            return None;
        }
        while chars.next_if(|c| c.is_whitespace()).is_some() {}
        let mut value = Zeroizing::new(String::new());
        if chars.next_if_eq(&'\'').is_some() {
            loop {
                match chars.next()? {
                    '\'' => break,
                    '\\' => value.push(chars.next()?),
                    c => value.push(c),
                }
            }
        } else {
            while let Some(c) = chars.next_if(|c| !c.is_whitespace()) {
                value.push(if c == '\\' { chars.next()? } else { c });
            }
        }
        if key == "user" {
            user = Some(value.to_string()).filter(|u| !u.is_empty());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn admin_users_are_read_without_the_password() {
        assert_eq!(
            postgres_admin_user("postgres://app:p%40ss@h:5/db").as_deref(),
            Some("app")
        );
        assert_eq!(
            postgres_admin_user("postgresql://a%2Db:x@y@h/db").as_deref(),
            Some("a-b")
        );
        assert_eq!(
            postgres_admin_user("postgres://h/db?user=adm&sslmode=disable").as_deref(),
            Some("adm")
        );
        assert_eq!(postgres_admin_user("postgres://h:5432/db"), None);
        assert_eq!(
            postgres_admin_user("host=h user = 'o''k' password='a b'").as_deref(),
            None
        );
        assert_eq!(
            postgres_admin_user(r"host=h user='it\'s' password='a b'").as_deref(),
            Some("it's")
        );
        assert_eq!(
            postgres_admin_user("host=h password=x user=root ").as_deref(),
            Some("root")
        );
    }
}
