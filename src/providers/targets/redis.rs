//! `type = "redis"`: a Redis ACL user ([`rekey_redis`]).
//!
//! Identity: the ACL user on host and port; the admin is the user its URL names
//! (`default` when it names none).

use crate::config::identity::{server_place, strip_scheme, url_user, Expected, Identity, IdentityKey};
use crate::providers::target_kind::{server_endpoint, AdminLogin, TargetContext, TargetKind};
use rekey_api::{ProviderResult, RedactedDsn, Strategy, Target};
use rekey_redis::{RedisProvider, RedisTargetConfig};
use std::sync::Arc;

impl TargetKind for RedisTargetConfig {
    const TYPE: &'static str = "redis";

    const SET_ADMIN: Option<fn(&mut Self, &AdminLogin<'_>)> = Some(|c, login| c.admin = Some(login.dsn("redis", "")));

    /// `dual`: an ACL user holds several passwords at once.
    fn default_strategy(&self) -> Strategy {
        Strategy::Dual
    }

    fn identities(&self, _: &dyn Fn(&str) -> Option<String>) -> Vec<Identity> {
        let (key, shown) = server_place(&self.host, self.port);
        vec![Identity {
            key: (Self::TYPE, key, self.username.clone()),
            shown: format!("redis user `{}` on {shown}", self.username),
        }]
    }

    fn admin_dsn(&self) -> Option<&RedactedDsn> {
        self.admin.as_ref()
    }

    fn admin_identity(&self) -> Option<IdentityKey> {
        let user = redis_admin_user(self.admin.as_ref()?.expose())?;
        Some((Self::TYPE, server_place(&self.host, self.port).0, user))
    }

    fn expected(&self) -> Expected<'_> {
        Expected {
            engines: &["redis"],
            host: Some(&self.host),
            port: Some(self.port),
            users: vec![self.username.as_str()],
            ..Expected::default()
        }
    }

    fn endpoint(&self) -> Option<String> {
        server_endpoint(&self.host, self.port)
    }

    fn build(&self, ctx: &TargetContext<'_>) -> ProviderResult<Arc<dyn Target>> {
        ctx.provider::<RedisProvider>().target(self, ctx.strategy)
    }
}

/// The ACL user a Redis admin URL names: `default` when it names none.
fn redis_admin_user(url: &str) -> Option<String> {
    let rest = strip_scheme(url, &["redis", "rediss"])?;
    match url_user(rest) {
        Some(user) if !user.is_empty() => Some(user),
        Some(_) | None => Some("default".to_owned()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn admin_users_are_read_without_the_password() {
        assert_eq!(redis_admin_user("redis://adm:pw@h:6379").as_deref(), Some("adm"));
        assert_eq!(redis_admin_user("rediss://:pw@h").as_deref(), Some("default"));
        assert_eq!(redis_admin_user("redis://127.0.0.1:6379").as_deref(), Some("default"));
    }
}
