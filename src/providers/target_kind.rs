//! [`TargetKind`]: everything the binary knows of one target type, implemented once per
//! provider in `src/providers/targets/TYPE.rs` and listed in the registry
//! ([`crate::providers`]), which generates [`crate::config::TargetConfig`] from the list.

use super::shared::Providers;
use crate::config::identity::{Expected, Identity, IdentityKey};
use rekey_api::{ProviderResult, RedactedDsn, SecretDoc, Strategy, Target};
use serde::de::DeserializeOwned;
use std::fmt;
use std::sync::Arc;
use zeroize::Zeroizing;

/// One target type: its `target = { type = "..." }` section (the provider crate's config
/// struct, boxed when it is large) and what the binary does with it. Only
/// [`TargetKind::TYPE`], [`TargetKind::default_strategy`] and [`TargetKind::build`] are
/// required; the rest defaults to "the configuration cannot tell".
pub(crate) trait TargetKind: DeserializeOwned + Clone + fmt::Debug {
    /// The spelling of `type` (`"postgres"`).
    const TYPE: &'static str;

    /// How `admin = { credential = "NAME" }` sets this target's admin from that
    /// credential's current secret. `None` (the default): the reference is refused.
    const SET_ADMIN: Option<fn(&mut Self, &AdminLogin<'_>)> = None;

    /// The strategy of a credential that sets none: the target's natural one.
    fn default_strategy(&self) -> Strategy;

    /// Fresh-login attempts when verifying a new secret, unless configured (more where
    /// a new secret takes seconds to propagate).
    fn default_verify_attempts(&self) -> u32 {
        3
    }

    /// The identities a credential on this target rotates, so that two credentials
    /// cannot rotate one account (none when the configuration cannot tell). `lookup`
    /// reads the environment the provider would fall back to.
    fn identities(&self, lookup: &dyn Fn(&str) -> Option<String>) -> Vec<Identity> {
        let _ = lookup;
        Vec::new()
    }

    /// The identity the configured administrator logs in as, so that a rotation cannot
    /// lock rekey out (`None` when there is no admin or its user cannot be told).
    fn admin_identity(&self) -> Option<IdentityKey> {
        None
    }

    /// The configured admin connection string, when the target has one (`leaked` tells
    /// a responder when what leaked is this admin's password, which rekey does not
    /// rotate).
    fn admin_dsn(&self) -> Option<&RedactedDsn> {
        None
    }

    /// What the documents of this target say of it, checked by `rekey import`.
    fn expected(&self) -> Expected<'_> {
        Expected::default()
    }

    /// The `host:port` the target connects to, when it has one (for the engine's
    /// per-endpoint circuit breaker).
    fn endpoint(&self) -> Option<String> {
        None
    }

    /// How long the target lets a new password live, when the configuration sets it
    /// (PostgreSQL `valid_until = "90d"`, MySQL `password_lifetime = "90d"`), with the
    /// setting as written: a credential rotated less often than that would be left
    /// with an expired password, so loading refuses it.
    fn password_lifetime(&self) -> Option<(std::time::Duration, String)> {
        None
    }

    /// The target of one credential. Nothing is connected yet.
    fn build(&self, ctx: &TargetContext<'_>) -> ProviderResult<Arc<dyn Target>>;
}

/// What building a target may use.
pub(crate) struct TargetContext<'a> {
    /// The run's providers ([`TargetContext::provider`]).
    pub providers: &'a Providers,
    /// The credential's name.
    pub name: &'a str,
    /// The credential's strategy.
    pub strategy: Strategy,
    /// Run-wide choices.
    pub options: super::ProviderOptions,
}

impl TargetContext<'_> {
    /// The run's provider of type `P`, created on first use and shared by every target
    /// and store of the run.
    pub fn provider<P: Clone + Default + Send + Sync + 'static>(&self) -> P {
        self.providers.get()
    }
}

/// An admin login read from another credential's current secret
/// (`admin = { credential = "NAME" }`): its user info (percent-encoded, zeroized on
/// drop) and `host[:port]`.
pub(crate) struct AdminLogin<'d> {
    /// The admin credential's current document.
    pub doc: &'d SecretDoc,
    /// `user:password`, each percent-encoded.
    pub userinfo: Zeroizing<String>,
    /// `host` or `host:port`.
    pub authority: String,
}

impl AdminLogin<'_> {
    /// `SCHEME://USER:PASSWORD@AUTHORITY{path}`.
    pub fn dsn(&self, scheme: &str, path: &str) -> RedactedDsn {
        RedactedDsn::new(format!(
            "{scheme}://{}@{}{path}",
            self.userinfo.as_str(),
            self.authority
        ))
    }

    /// A text field of the admin's document.
    pub fn field(&self, name: &str) -> Option<String> {
        self.doc.get_str(name).map(str::to_owned)
    }
}

/// Percent-encodes everything but RFC 3986's unreserved characters (for URL user info
/// and paths).
pub(crate) fn userinfo_encode(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for b in text.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// The [`TargetKind::endpoint`] of a target on a server: `host:port`, the host in
/// lower case.
pub(crate) fn server_endpoint(host: &str, port: u16) -> Option<String> {
    Some(format!("{}:{port}", host.to_ascii_lowercase()))
}
