//! [`PostgresProvider`]: builds targets and shares admin connections among them.

use crate::admin::{AdminPool, Route};
use crate::config::{PostgresTargetConfig, SslMode};
use crate::dsn::parse_admin_dsn;
use crate::target::PostgresTarget;
use crate::tls::TlsSetup;
use rekey_api::{ProviderError, ProviderResult, RedactedDsn, Strategy, Target};
use rekey_net::Registry;
use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

/// The port a connection string without one uses (libpq's and tokio-postgres's).
const DEFAULT_PORT: u16 = 5432;

/// Application name of admin connections in `pg_stat_activity`.
const ADMIN_APPLICATION_NAME: &str = "rekey admin";

/// What identifies one shared admin connection.
#[derive(PartialEq, Eq)]
struct AdminKey {
    host: String,
    port: u16,
    dsn: RedactedDsn,
    sslmode: SslMode,
    sslrootcert: Option<PathBuf>,
}

/// The PostgreSQL provider of one run. It builds [`PostgresTarget`]s and keeps **one
/// admin connection per target host** (per host, port, admin connection string and
/// TLS setting): every target on that host shares it, opened on first use and reopened
/// once if it was lost. tokio-postgres pipelines concurrent queries on one connection,
/// so parallel rotations on a host do not wait for each other's round trips.
///
/// Use one provider per run, inside one tokio runtime (the admin connections' tasks
/// run on the runtime that opened them). Dropping it closes them.
#[derive(Clone, Default)]
pub struct PostgresProvider {
    inner: Arc<Inner>,
}

#[derive(Default)]
struct Inner {
    admins: Registry<AdminKey, AdminPool>,
    /// TLS setups by mode and root file, shared by every target and admin connection
    /// that uses them: a `verify-full` setup holds a copy of the trusted roots (about
    /// 100 KB), which 200 targets would otherwise each hold.
    tls: Registry<TlsKey, TlsSetup>,
    admin_connections_opened: Arc<AtomicU64>,
}

/// What identifies one TLS setup.
type TlsKey = (SslMode, Option<PathBuf>);

impl fmt::Debug for PostgresProvider {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let admins = self.inner.admins.len();
        f.debug_struct("PostgresProvider")
            .field("admin_endpoints", &admins)
            .field("admin_connections_opened", &self.admin_connections_opened())
            .finish()
    }
}

impl PostgresProvider {
    /// A provider with no connection open yet.
    pub fn new() -> Self {
        Self::default()
    }

    /// The target for `config` under `strategy`, as the engine uses it. Nothing is
    /// connected until a step needs it.
    ///
    /// [`Strategy::Single`] takes `username`; [`Strategy::Alternating`] takes
    /// `usernames` (two roles) and an `admin`, which must not be one of the two.
    /// [`Strategy::Dual`] is impossible in PostgreSQL (`unsupported`). A mismatch
    /// between the strategy and the configured names is `invalid_input`.
    pub fn target(&self, config: &PostgresTargetConfig, strategy: Strategy) -> ProviderResult<Arc<dyn Target>> {
        Ok(Arc::new(self.postgres_target(config, strategy)?))
    }

    /// [`PostgresProvider::target`] returning the concrete type.
    pub fn postgres_target(&self, config: &PostgresTargetConfig, strategy: Strategy) -> ProviderResult<PostgresTarget> {
        if strategy == Strategy::Dual {
            return Err(ProviderError::unsupported(
                "postgres target: strategy \"dual\" is not possible (a PostgreSQL role holds one password); \
                 use \"single\", or \"alternating\" with two roles for zero-downtime rotation",
            ));
        }
        config.validate()?;
        match (strategy, &config.username, &config.usernames) {
            (Strategy::Alternating, Some(_), _) => {
                return Err(ProviderError::invalid_input(
                    "postgres target: strategy \"alternating\" takes `usernames = [\"a\", \"b\"]` (two roles \
                     taking turns) instead of `username`",
                ))
            }
            (Strategy::Single, _, Some(_)) => {
                return Err(ProviderError::invalid_input(
                    "postgres target: `usernames` is for strategy \"alternating\"; with strategy \"single\" \
                     set `username`",
                ))
            }
            _ => {}
        }
        if strategy == Strategy::Alternating && config.admin.is_none() {
            return Err(ProviderError::invalid_input(
                "postgres target: strategy \"alternating\" needs `admin`: the idle role's password is unknown \
                 to rekey (revoke replaced it with one nobody knows), so only an administrator can set it",
            ));
        }
        let tls = self.tls_setup(config.sslmode, config.sslrootcert.as_deref())?;
        let admin = match &config.admin {
            None => None,
            Some(dsn) => Some(self.admin_pool(config, dsn)?),
        };
        if strategy == Strategy::Alternating {
            if let Some(admin) = &admin {
                if config.roles().contains(&admin.user()) {
                    return Err(ProviderError::invalid_input(format!(
                        "postgres target: the admin {} is one of `usernames`: revoke invalidates the previous \
                         role's password, which would lock rekey out; use another administrator",
                        crate::sql::quote_ident(admin.user())
                    )));
                }
            }
        }
        // Whether the admin connection goes where logins go (host, port, TLS setting):
        // only then can its pg_hba.conf line stand for theirs.
        let same_route = admin.as_ref().is_some_and(|admin| {
            admin.same_route(&config.host, config.port, config.sslmode, config.sslrootcert.as_deref())
        });
        Ok(PostgresTarget::new(config.clone(), tls, admin, strategy, same_route))
    }

    /// How many admin connections this provider has opened (reconnections included).
    pub fn admin_connections_opened(&self) -> u64 {
        self.inner.admin_connections_opened.load(Ordering::Relaxed)
    }

    /// The TLS setup for `mode` and `rootcert`, built on first use and then shared.
    fn tls_setup(&self, mode: SslMode, rootcert: Option<&Path>) -> ProviderResult<TlsSetup> {
        let key = (mode, rootcert.map(Path::to_path_buf));
        let setup = self
            .inner
            .tls
            .get_or_try_insert(key, || TlsSetup::new(mode, rootcert))?;
        Ok(TlsSetup::clone(&setup))
    }

    fn admin_pool(&self, config: &PostgresTargetConfig, dsn: &RedactedDsn) -> ProviderResult<Arc<AdminPool>> {
        let key = AdminKey {
            host: config.host.clone(),
            port: config.port,
            dsn: dsn.clone(),
            sslmode: config.sslmode,
            sslrootcert: config.sslrootcert.clone(),
        };
        self.inner
            .admins
            .get_or_try_insert(key, || self.new_admin_pool(config, dsn))
    }

    /// The admin connection for `config` and its admin connection string, not opened yet.
    fn new_admin_pool(&self, config: &PostgresTargetConfig, dsn: &RedactedDsn) -> ProviderResult<AdminPool> {
        let parsed = parse_admin_dsn(dsn.expose())?;
        let mut pg = parsed.config;
        if pg.get_user().is_none_or(str::is_empty) {
            return Err(ProviderError::invalid_input(format!(
                "admin connection string {} names no user",
                dsn.redacted()
            )));
        }
        // Host and port default to the target's; a string naming its own host keeps
        // libpq's default port.
        if pg.get_hosts().is_empty() {
            pg.host(&config.host);
            if pg.get_ports().is_empty() {
                pg.port(config.port);
            }
        }
        if pg.get_dbname().is_none() {
            pg.dbname("postgres");
        }
        if pg.get_application_name().is_none() {
            pg.application_name(ADMIN_APPLICATION_NAME);
        }
        let (sslmode, rootcert) = match parsed.sslmode {
            Some(mode) => (mode, parsed.sslrootcert.or_else(|| config.sslrootcert.clone())),
            None => (
                config.sslmode,
                parsed.sslrootcert.or_else(|| config.sslrootcert.clone()),
            ),
        };
        let tls = self.tls_setup(sslmode, rootcert.as_deref())?;
        let endpoint = endpoint_of(&pg, config);
        let route = Route {
            host: match pg.get_hosts() {
                [tokio_postgres::config::Host::Tcp(host)] => Some(host.clone()),
                _ => None,
            },
            port: match pg.get_ports() {
                [] => Some(DEFAULT_PORT),
                [port] => Some(*port),
                _ => None,
            },
            sslmode,
            sslrootcert: rootcert,
        };
        Ok(AdminPool::new(
            pg,
            tls,
            route,
            config.connect_timeout(),
            endpoint,
            self.inner.admin_connections_opened.clone(),
        ))
    }
}

/// `host:port` of the admin connection, for messages.
fn endpoint_of(pg: &tokio_postgres::Config, config: &PostgresTargetConfig) -> String {
    let host = match pg.get_hosts().first() {
        Some(tokio_postgres::config::Host::Tcp(h)) => h.clone(),
        Some(tokio_postgres::config::Host::Unix(p)) => p.display().to_string(),
        None => config.host.clone(),
    };
    let port = pg.get_ports().first().copied().unwrap_or(config.port);
    if host.contains(':') {
        format!("[{host}]:{port}")
    } else {
        format!("{host}:{port}")
    }
}
