//! [`MysqlProvider`]: builds targets and shares admin connections among them.

use crate::admin::AdminPool;
use crate::config::{MysqlTargetConfig, TlsMode};
use crate::conn::{Endpoint, TlsSetup};
use crate::dsn::parse_admin_dsn;
use crate::target::MysqlTarget;
use rekey_api::{ProviderResult, RedactedDsn, Secret, Strategy, Target};
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
    tls: TlsMode,
    tls_ca: Option<PathBuf>,
}

/// The MySQL/MariaDB provider of one run. It builds [`MysqlTarget`]s and keeps **one
/// admin connection per target host** (per host, port, admin URL and TLS setting):
/// every target on that host shares it, opened on first use and reopened once if it
/// was lost.
///
/// Use one provider per run, inside one tokio runtime. Dropping it (and its targets)
/// closes the admin connections.
#[derive(Clone, Default)]
pub struct MysqlProvider {
    inner: Arc<Inner>,
}

#[derive(Default)]
struct Inner {
    admins: Registry<AdminKey, AdminPool>,
    admin_connections_opened: Arc<AtomicU64>,
}

impl fmt::Debug for MysqlProvider {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let admins = self.inner.admins.len();
        f.debug_struct("MysqlProvider")
            .field("admin_endpoints", &admins)
            .field("admin_connections_opened", &self.admin_connections_opened())
            .finish()
    }
}

impl MysqlProvider {
    /// A provider with no connection open yet.
    pub fn new() -> Self {
        Self::default()
    }

    /// The target for `config` under `strategy`, as the engine uses it. Nothing is
    /// connected until a step needs it. `alternating` needs `usernames` and `admin`;
    /// `dual` needs `admin` and a MySQL 8.0.14+ server (checked at preflight and apply).
    pub fn target(&self, config: &MysqlTargetConfig, strategy: Strategy) -> ProviderResult<Arc<dyn Target>> {
        Ok(Arc::new(self.mysql_target(config, strategy)?))
    }

    /// [`MysqlProvider::target`] returning the concrete type.
    pub fn mysql_target(&self, config: &MysqlTargetConfig, strategy: Strategy) -> ProviderResult<MysqlTarget> {
        config.validate_for(strategy)?;
        let tls = TlsSetup::new(config.tls, config.tls_ca.as_deref())?;
        let admin = match &config.admin {
            None => None,
            Some(dsn) => Some(self.admin_pool(config, dsn)?),
        };
        Ok(MysqlTarget::new(config.clone(), tls, admin, strategy))
    }

    /// How many admin connections this provider has opened (reconnections included).
    pub fn admin_connections_opened(&self) -> u64 {
        self.inner.admin_connections_opened.load(Ordering::Relaxed)
    }

    fn admin_pool(&self, config: &MysqlTargetConfig, dsn: &RedactedDsn) -> ProviderResult<Arc<AdminPool>> {
        let key = AdminKey {
            host: config.host.clone(),
            port: config.port,
            dsn: dsn.clone(),
            tls: config.tls,
            tls_ca: config.tls_ca.clone(),
        };
        self.inner.admins.get_or_try_insert(key, || {
            let parsed = parse_admin_dsn(dsn.expose())?;
            // Host and port default to the target's; a URL naming its own host keeps the
            // standard port.
            let (host, port) = match parsed.host {
                Some(host) => (host, parsed.port.unwrap_or(3306)),
                None => (config.host.clone(), parsed.port.unwrap_or(config.port)),
            };
            let endpoint = Endpoint {
                host,
                port,
                socket: parsed.socket,
            };
            let tls = TlsSetup::new(
                parsed.tls.unwrap_or(config.tls),
                parsed.tls_ca.or_else(|| config.tls_ca.clone()).as_deref(),
            )?;
            let password = parsed.password.map(|p| Secret::new(p.as_str().to_owned()));
            Ok(AdminPool::new(
                endpoint,
                parsed.user,
                password,
                parsed.db,
                tls,
                config.connect_timeout(),
                self.inner.admin_connections_opened.clone(),
            ))
        })
    }
}
