//! [`RedisProvider`]: builds targets and shares admin connections among them.

use crate::admin::AdminPool;
use crate::config::RedisTargetConfig;
use crate::conn::Endpoint;
use crate::dsn::parse_admin_dsn;
use crate::target::RedisTarget;
use crate::tls::client_config;
use rekey_api::{ProviderError, ProviderResult, RedactedDsn, Strategy, Target};
use rekey_net::Registry;
use std::fmt;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

/// What identifies one shared admin connection.
#[derive(PartialEq, Eq)]
struct AdminKey {
    host: String,
    port: u16,
    dsn: RedactedDsn,
    tls: bool,
    tls_ca: Option<PathBuf>,
}

/// The Redis provider of one run. It builds [`RedisTarget`]s and keeps **one admin
/// connection per target host** (per host, port, admin URL and TLS setting): every
/// target on that host shares it, opened on first use and reopened once if it was lost.
/// The connection is multiplexed, so parallel rotations on a host pipeline their
/// commands on it instead of waiting for each other.
///
/// Use one provider per run, inside one tokio runtime (the connections' tasks run on the
/// runtime that opened them). Dropping it (and its targets) closes them.
#[derive(Clone, Default)]
pub struct RedisProvider {
    inner: Arc<Inner>,
}

#[derive(Default)]
struct Inner {
    admins: Registry<AdminKey, AdminPool>,
    admin_connections_opened: Arc<AtomicU64>,
}

impl fmt::Debug for RedisProvider {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let admins = self.inner.admins.len();
        f.debug_struct("RedisProvider")
            .field("admin_endpoints", &admins)
            .field("admin_connections_opened", &self.admin_connections_opened())
            .finish()
    }
}

impl RedisProvider {
    /// A provider with no connection open yet.
    pub fn new() -> Self {
        Self::default()
    }

    /// The target for `config` under `strategy`, as the engine uses it. Nothing is
    /// connected until a step needs it. [`Strategy::Dual`] and [`Strategy::Single`] are
    /// supported.
    pub fn target(&self, config: &RedisTargetConfig, strategy: Strategy) -> ProviderResult<Arc<dyn Target>> {
        Ok(Arc::new(self.redis_target(config, strategy)?))
    }

    /// [`RedisProvider::target`] returning the concrete type.
    pub fn redis_target(&self, config: &RedisTargetConfig, strategy: Strategy) -> ProviderResult<RedisTarget> {
        match strategy {
            Strategy::Dual | Strategy::Single => {}
            Strategy::Alternating => {
                return Err(ProviderError::unsupported(
                    "redis target: strategy \"alternating\" is not implemented; use \"dual\" (a Redis user holds \
                     several passwords at once) or \"single\"",
                ))
            }
        }
        config.validate()?;
        let tls = match config.tls {
            true => Some(client_config(config.tls_ca.as_deref())?),
            false => None,
        };
        let endpoint = Endpoint {
            host: config.host.clone(),
            port: config.port,
            tls: tls.clone(),
        };
        let admin = match &config.admin {
            None => None,
            Some(dsn) => Some(self.admin_pool(config, dsn, tls)?),
        };
        if admin.as_ref().is_some_and(|a| a.user_name() == config.username) {
            return Err(ProviderError::invalid_input(format!(
                "redis target: the admin URL logs in as the user being rotated ({}), so its password would go \
                 stale; leave `admin` unset to let the user change its own password",
                crate::acl::quote_name(&config.username)
            )));
        }
        Ok(RedisTarget::new(config.clone(), endpoint, admin, strategy))
    }

    /// How many admin connections this provider has opened (reconnections included).
    pub fn admin_connections_opened(&self) -> u64 {
        self.inner.admin_connections_opened.load(Ordering::Relaxed)
    }

    fn admin_pool(
        &self,
        config: &RedisTargetConfig,
        dsn: &RedactedDsn,
        tls: Option<Arc<rustls::ClientConfig>>,
    ) -> ProviderResult<Arc<AdminPool>> {
        let key = AdminKey {
            host: config.host.clone(),
            port: config.port,
            dsn: dsn.clone(),
            tls: config.tls,
            tls_ca: config.tls_ca.clone(),
        };
        self.inner.admins.get_or_try_insert(key, || {
            let parsed = parse_admin_dsn(dsn)?;
            // `rediss://` or `tls = true`: never send the admin password in the clear when
            // the target is configured for TLS.
            let tls = match (tls, parsed.tls) {
                (Some(tls), _) => Some(tls),
                (None, true) => Some(client_config(config.tls_ca.as_deref())?),
                (None, false) => None,
            };
            let endpoint = Endpoint {
                host: parsed.host,
                port: parsed.port,
                tls,
            };
            Ok(AdminPool::new(
                endpoint,
                parsed.user,
                parsed.password,
                config.connect_timeout(),
                self.inner.admin_connections_opened.clone(),
            ))
        })
    }
}
