//! [`VaultAppRoleTarget`]: rotates the secret-id of a Vault AppRole role.

use crate::client::{allows, check_capabilities, Client};
use crate::http::{status_error, Context, Method};
use crate::model;
use async_trait::async_trait;
use rekey_api::{
    ErrorKind, ProviderError, ProviderResult, RevokeOptions, RevokeReport, Secret, SecretDoc, Strategy, Target,
    TargetCapabilities, Timestamp,
};
use serde_json::{json, Value};
use std::collections::HashSet;
use std::fmt;
use std::sync::Mutex;
use std::time::{Duration, SystemTime};

/// The `engine` field of the documents this target writes.
pub const ENGINE: &str = "vault-approle";
/// Document field: the role's role-id.
pub const ROLE_ID: &str = "role_id";
/// Document field: the secret-id (the same value as `password`).
pub const SECRET_ID: &str = "secret_id";
/// Document field: the secret-id's accessor (not secret; used to look it up and destroy it).
pub const SECRET_ID_ACCESSOR: &str = "secret_id_accessor";
/// Document field: the role's name.
pub const ROLE_NAME: &str = "role_name";
/// Document field: the AppRole auth mount.
pub const MOUNT: &str = "mount";
/// Metadata key set on every secret-id rekey mints from a current one that has an
/// accessor: that accessor (the secret-id the new one replaces; not a secret).
/// `sweep_unstored` removes only secret-ids whose predecessor is stored for the
/// credential, so secret-ids made by hand or by another credential on the same role are
/// never touched. Vault copies secret-id metadata into the tokens issued with it.
pub const REPLACES_METADATA: &str = "rekey_replaces";
/// Clock skew allowed between this machine and Vault when comparing a secret-id's
/// `creation_time` (whole seconds on rvault) with `since`.
const CLOCK_SKEW: Duration = Duration::from_secs(2);

/// A Vault AppRole role whose secret-id rekey rotates (strategy `dual`: a role holds
/// many secret-ids, so the old one keeps working until `revoke` destroys it).
///
/// Documents hold `engine = "vault-approle"`, `role_name`, `mount`, `role_id`,
/// `secret_id`, `secret_id_accessor`, and `password` (the secret-id again: the field
/// rekey's engine verifies, compares and searches for leaks; `login` uses it, falling
/// back to `secret_id`).
///
/// Secret-ids minted from a current one with an accessor carry that accessor in their
/// metadata ([`REPLACES_METADATA`]). `sweep_unstored` destroys a secret-id only when no
/// stored document names it, its predecessor *is* stored, and it was created at or after
/// `since` minus 2 s: the leftover of a rotation interrupted between mint and stage.
/// Secret-ids made by hand or for another credential on the same role are never touched.
///
/// Incident mode cannot end the tokens already issued with the leaked secret-id: Vault
/// (and rvault) cannot find tokens by secret-id; `incident_preflight` says so, with the
/// role's token TTLs, and `terminate_sessions` stays false.
///
/// Created by [`crate::VaultProvider::vault_approle_target`].
pub struct VaultAppRoleTarget {
    client: Client,
    mount: String,
    role: String,
    capabilities: TargetCapabilities,
    /// The role-id, once read from the server.
    role_id: Mutex<Option<String>>,
}

impl fmt::Debug for VaultAppRoleTarget {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("VaultAppRoleTarget")
            .field("client", &self.client)
            .field("mount", &self.mount)
            .field("role", &self.role)
            .finish_non_exhaustive()
    }
}

impl VaultAppRoleTarget {
    pub(crate) fn new(client: Client, mount: String, role: String, strategy: Strategy) -> Self {
        VaultAppRoleTarget {
            client,
            mount,
            role,
            capabilities: TargetCapabilities {
                strategies: vec![Strategy::Dual],
                strategy,
                terminate_sessions: false,
                mints_own_secret: true,
                apply_invalidates_previous: false,
                retires_previous: false,
            },
            role_id: Mutex::new(None),
        }
    }

    /// `auth/<mount>/role/<role>`.
    fn role_path(&self) -> String {
        format!("auth/{}/role/{}", self.mount, self.role)
    }

    fn label(&self) -> String {
        format!("AppRole role {:?} on auth/{}/", self.role, self.mount)
    }

    fn cached_role_id(&self) -> Option<String> {
        self.role_id.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// The role-id, from the server on first use.
    pub async fn role_id(&self) -> ProviderResult<String> {
        if let Some(id) = self.cached_role_id() {
            return Ok(id);
        }
        let path = format!("{}/role-id", self.role_path());
        let reply = self.client.call(Method::Get, &path, None).await?;
        if !reply.is_success() {
            let e = self.client.error(Method::Get, &path, &reply);
            return Err(if e.kind() == ErrorKind::NotFound {
                ProviderError::not_found(format!(
                    "{} not found (or the auth mount is missing): {}",
                    self.label(),
                    e.message()
                ))
            } else {
                e
            });
        }
        let id = reply
            .data()
            .and_then(|d| d.get("role_id"))
            .and_then(Value::as_str)
            .filter(|s| !s.is_empty())
            .ok_or_else(|| {
                ProviderError::other(format!(
                    "vault {}: GET {path}: the answer holds no role_id",
                    self.client.conn().address()
                ))
            })?
            .to_owned();
        *self.role_id.lock().unwrap_or_else(|p| p.into_inner()) = Some(id.clone());
        Ok(id)
    }

    /// The secret-id a document holds: `password`, else `secret_id`.
    fn secret_of(doc: &SecretDoc, which: &str) -> ProviderResult<Secret> {
        doc.password()
            .or_else(|| doc.get_str(SECRET_ID).map(Secret::from))
            .filter(|s| !s.is_empty())
            .ok_or_else(|| {
                ProviderError::invalid_input(format!(
                    "the {which} secret has neither a `password` nor a `{SECRET_ID}` field"
                ))
            })
    }

    fn accessor_of(doc: &SecretDoc) -> Option<&str> {
        doc.get_str(SECRET_ID_ACCESSOR).filter(|s| !s.is_empty())
    }

    /// Looks a secret-id up by accessor: `Ok(Some(expiry))` when it exists, `Ok(None)`
    /// when Vault does not know it.
    async fn lookup_accessor(&self, accessor: &str) -> ProviderResult<Option<Option<String>>> {
        let Some(data) = self.lookup_entry(accessor).await? else {
            return Ok(None);
        };
        // Without a TTL a secret-id never expires, whatever `expiration_time` says
        // (Vault answers year 1; rvault, the creation time).
        let ttl = data.get("secret_id_ttl").and_then(Value::as_u64).unwrap_or(0);
        if ttl == 0 {
            return Ok(Some(None));
        }
        let expires = data
            .get("expiration_time")
            .and_then(Value::as_str)
            .filter(|t| !t.is_empty() && !t.starts_with("0001-01-01"))
            .map(str::to_owned);
        Ok(Some(expires))
    }

    /// The `data` of `secret-id-accessor/lookup` (accessor, times, TTL, metadata; no
    /// secret), `Value::Null` when Vault answers without a body; `None` when Vault does
    /// not know the accessor.
    async fn lookup_entry(&self, accessor: &str) -> ProviderResult<Option<Value>> {
        let path = format!("{}/secret-id-accessor/lookup", self.role_path());
        let reply = self
            .client
            .call(Method::Post, &path, Some(&json!({ "secret_id_accessor": accessor })))
            .await?;
        if reply.is_success() {
            return Ok(Some(reply.data().cloned().unwrap_or(Value::Null)));
        }
        // Vault answers an unknown accessor with 404 (newer) or 400/500 naming it.
        let unknown = reply.status == 404
            || (matches!(reply.status, 400 | 500)
                && (reply.error_mentions("failed to find accessor")
                    || reply.error_mentions("invalid secret_id_accessor")));
        if unknown {
            return Ok(None);
        }
        Err(self.client.error(Method::Post, &path, &reply))
    }

    /// Destroys a secret-id by accessor; `false` when it was already gone.
    async fn destroy_accessor(&self, accessor: &str) -> ProviderResult<bool> {
        let path = format!("{}/secret-id-accessor/destroy", self.role_path());
        let reply = self
            .client
            .call(Method::Post, &path, Some(&json!({ "secret_id_accessor": accessor })))
            .await?;
        if reply.is_success() {
            return Ok(true);
        }
        if reply.status == 404 || (matches!(reply.status, 400 | 500) && reply.error_mentions("failed to find accessor"))
        {
            return Ok(false);
        }
        Err(self.client.error(Method::Post, &path, &reply))
    }

    /// The accessors of the role's secret-ids (`LIST .../secret-id`); `None` when the
    /// token may not list them.
    async fn list_accessors(&self) -> ProviderResult<Option<Vec<String>>> {
        let path = format!("{}/secret-id", self.role_path());
        let reply = self.client.call(Method::List, &path, None).await?;
        if reply.status == 404 {
            // Vault answers an empty list with 404.
            return Ok(Some(Vec::new()));
        }
        if reply.status == 403 {
            return Ok(None);
        }
        if !reply.is_success() {
            return Err(self.client.error(Method::List, &path, &reply));
        }
        Ok(Some(
            reply
                .data()
                .and_then(|d| d.get("keys"))
                .and_then(Value::as_array)
                .map(|keys| keys.iter().filter_map(Value::as_str).map(str::to_owned).collect())
                .unwrap_or_default(),
        ))
    }

    /// `sweep_unstored`: destroys the secret-ids stored nowhere that rekey minted to
    /// replace a stored one, created since `since` (minus the clock skew allowance).
    async fn sweep(&self, stored: &[&SecretDoc], since: Timestamp) -> ProviderResult<Vec<String>> {
        let known: HashSet<&str> = stored.iter().filter_map(|d| Self::accessor_of(d)).collect();
        if known.is_empty() {
            return Ok(Vec::new());
        }
        let Some(accessors) = self.list_accessors().await? else {
            // Not allowed to list: nothing can be swept (preflight says so).
            return Ok(Vec::new());
        };
        let cutoff = since.checked_sub(CLOCK_SKEW).unwrap_or(since);
        let mut removed = Vec::new();
        for accessor in accessors {
            if known.contains(accessor.as_str()) {
                continue;
            }
            let Some(entry) = self.lookup_entry(&accessor).await? else {
                continue;
            };
            let replaces = entry
                .get("metadata")
                .and_then(|m| m.get(REPLACES_METADATA))
                .and_then(Value::as_str);
            if !replaces.is_some_and(|r| known.contains(r)) {
                // Not minted by rekey for this credential.
                continue;
            }
            let created = entry.get("creation_time").and_then(Value::as_str).and_then(parse_time);
            if created.is_none_or(|c| c < cutoff) {
                continue;
            }
            if self.destroy_accessor(&accessor).await? {
                removed.push(accessor);
            }
        }
        Ok(removed)
    }

    /// `incident_preflight`: what happens to the tokens issued with the leaked secret-id.
    async fn token_facts(&self) -> Vec<String> {
        let mut lines = vec![format!(
            "{}: tokens already issued with the leaked secret-id stay valid until they expire: Vault has no API to \
             find or revoke tokens by secret-id, so rekey destroys the secret-id only",
            self.label()
        )];
        let path = self.role_path();
        let ttl_line = match self.client.call(Method::Get, &path, None).await {
            Ok(reply) if reply.is_success() => match reply.data() {
                Some(data) => token_lifetime(data),
                None => "the role's token TTLs were not in Vault's answer".to_owned(),
            },
            Ok(reply) => format!(
                "the role's token TTLs could not be read: {}",
                self.client.error(Method::Get, &path, &reply).message()
            ),
            Err(e) => format!("the role's token TTLs could not be read: {}", e.message()),
        };
        lines.push(ttl_line);
        lines
    }

    /// Whether an RFC 3339 expiry lies in the past.
    fn expired(expires: Option<&str>) -> bool {
        expires.and_then(parse_time).is_some_and(|t| t <= SystemTime::now())
    }
}

/// An RFC 3339 time as Vault writes it: `2026-11-30T12:00:00Z`, with fractions of a
/// second, or with an offset (`-08:00`, Go's format on a server outside UTC).
fn parse_time(text: &str) -> Option<SystemTime> {
    let text = text.trim();
    let bytes = text.as_bytes();
    let n = bytes.len();
    // `...T12:00:00-08:00`: a sign 6 from the end, after the time of day.
    if n >= 16
        && matches!(bytes[n - 6], b'+' | b'-')
        && bytes[n - 3] == b':'
        && bytes[..n - 6].iter().any(|b| matches!(b, b'T' | b't' | b' '))
    {
        let hours: u64 = text[n - 5..n - 3].parse().ok()?;
        let minutes: u64 = text[n - 2..].parse().ok()?;
        let offset = Duration::from_secs(hours * 3600 + minutes * 60);
        let local = humantime::parse_rfc3339_weak(&text[..n - 6]).ok()?;
        // local = UTC + offset
        return if bytes[n - 6] == b'+' {
            local.checked_sub(offset)
        } else {
            local.checked_add(offset)
        };
    }
    humantime::parse_rfc3339_weak(text).ok()
}

/// How long the role's tokens live, from its configuration (`token_ttl`,
/// `token_max_ttl`, `token_period`; older Vaults say `period`).
fn token_lifetime(role: &Value) -> String {
    let secs = |name: &str| role.get(name).and_then(Value::as_u64).filter(|s| *s > 0);
    let show = |s: u64| humantime::format_duration(Duration::from_secs(s)).to_string();
    if let Some(period) = secs("token_period").or_else(|| secs("period")) {
        return format!(
            "the role issues periodic tokens (token_period {}): each renewal extends a token by that much with no \
             upper limit, so a token taken with the leaked secret-id lives as long as someone renews it",
            show(period)
        );
    }
    let ttl = match secs("token_ttl") {
        Some(t) => show(t),
        None => "the mount's or server's default TTL (token_ttl is not set; Vault's default is 768h)".to_owned(),
    };
    let max = match secs("token_max_ttl") {
        Some(t) => format!("renewable up to {}", show(t)),
        None => "renewable up to the mount's or server's maximum TTL (token_max_ttl is not set)".to_owned(),
    };
    format!("the role's tokens live {ttl} after login, {max}")
}

#[async_trait]
impl Target for VaultAppRoleTarget {
    fn capabilities(&self) -> &TargetCapabilities {
        &self.capabilities
    }

    fn describe(&self) -> String {
        format!(
            "vault-approle role {:?} on {}/auth/{}/",
            self.role,
            self.client.conn().label(),
            self.mount
        )
    }

    fn complete(&self, doc: &mut SecretDoc) {
        doc.set_default("engine", ENGINE);
        doc.set_default(ROLE_NAME, self.role.as_str());
        doc.set_default(MOUNT, self.mount.as_str());
        if doc.get_str(ROLE_ID).is_none() {
            if let Some(id) = self.cached_role_id() {
                doc.set(ROLE_ID, id);
            }
        }
        // `password` and `secret_id` name the same secret: fill whichever is missing.
        match (doc.password(), doc.get_str(SECRET_ID).map(Secret::from)) {
            (Some(p), None) => doc.set(SECRET_ID, p.expose()),
            (None, Some(s)) => doc.set_password(&s),
            _ => {}
        }
    }

    /// Vault cannot end the tokens issued with a secret-id: says so, with how long the
    /// role's tokens live (`token_ttl`, `token_max_ttl`, `token_period` of the role).
    /// Never an error: a role that cannot be read is named in the line.
    async fn incident_preflight(&self) -> ProviderResult<Vec<String>> {
        Ok(self.token_facts().await)
    }

    /// Destroys the role's secret-ids that no stored document names, that rekey minted
    /// to replace a stored one ([`REPLACES_METADATA`]), and that were created at or after
    /// `since` minus 2 s of clock skew (`LIST .../secret-id`, `secret-id-accessor/lookup`,
    /// `secret-id-accessor/destroy`). Nothing when nothing stored has an accessor or the
    /// token may not list secret-ids. Returns the accessors destroyed.
    async fn sweep_unstored(&self, stored: &[&SecretDoc], since: Timestamp) -> ProviderResult<Vec<String>> {
        self.sweep(stored, since).await
    }

    async fn preflight(&self, current: Option<&SecretDoc>) -> ProviderResult<Vec<String>> {
        let mut lines = vec![self.client.check_unsealed().await?, self.client.check_token().await?];
        let role_id = self.role_id().await?;
        lines.push(format!("{} exists", self.label()));
        let role_path = self.role_path();
        let reply = self.client.call(Method::Get, &role_path, None).await?;
        if reply.is_success() {
            let uses = reply
                .data()
                .and_then(|d| d.get("secret_id_num_uses"))
                .and_then(Value::as_u64)
                .unwrap_or(0);
            if uses > 0 {
                lines.push(format!(
                    "warning: the role limits each secret-id to {uses} uses; every verification login uses one"
                ));
            }
        }
        let secret_id_path = format!("{role_path}/secret-id");
        let lookup_path = format!("{role_path}/secret-id-accessor/lookup");
        let destroy_path = format!("{role_path}/secret-id-accessor/destroy");
        let needs: [(String, &[&str]); 3] = [
            (secret_id_path, &["update"]),
            (lookup_path, &["update"]),
            (destroy_path, &["update"]),
        ];
        lines.push(check_capabilities(&self.client, &needs).await?);
        let list_path = format!("{role_path}/secret-id");
        if let Some(found) = self.client.capabilities(std::slice::from_ref(&list_path)).await? {
            if !found.first().is_some_and(|caps| allows(caps, &["list"])) {
                lines.push(format!(
                    "warning: rekey's token may not list {list_path}: secret-ids minted by an interrupted rotation \
                     and stored nowhere are not swept"
                ));
            }
        }
        if let Some(current) = current {
            if let Some(doc_role_id) = current.get_str(ROLE_ID) {
                if doc_role_id != role_id {
                    return Err(ProviderError::invalid_input(format!(
                        "the current secret's role_id is not the role-id of {}",
                        self.label()
                    )));
                }
            }
            match Self::accessor_of(current) {
                Some(accessor) => match self.lookup_accessor(accessor).await? {
                    Some(expires) if Self::expired(expires.as_deref()) => {
                        lines.push(format!("the current secret-id (accessor {accessor}) has expired"))
                    }
                    Some(_) => lines.push(format!("the current secret-id (accessor {accessor}) exists")),
                    None => lines.push(format!(
                        "the current secret-id (accessor {accessor}) no longer exists on the role"
                    )),
                },
                None => lines.push("the current secret has no secret_id_accessor (not checked)".to_owned()),
            }
        }
        Ok(lines)
    }

    async fn prepare(&self, current: Option<&SecretDoc>, password: Secret) -> ProviderResult<SecretDoc> {
        // The target mints its own secret: the generated password is not used.
        drop(password);
        let role_id = self.role_id().await?;
        let path = format!("{}/secret-id", self.role_path());
        // Name the secret-id this one replaces, so a sweep can tell it is this
        // credential's if it is never stored (Vault takes metadata as a JSON string).
        let body = match current.and_then(Self::accessor_of) {
            Some(replaces) => json!({ "metadata": json!({ REPLACES_METADATA: replaces }).to_string() }),
            None => json!({}),
        };
        let reply = self.client.call(Method::Post, &path, Some(&body)).await?;
        if !reply.is_success() {
            let e = self.client.error(Method::Post, &path, &reply);
            return Err(if e.kind() == ErrorKind::NotFound {
                ProviderError::not_found(format!("{} not found: {}", self.label(), e.message()))
            } else {
                e
            });
        }
        let data = reply.data();
        let field = |name: &str| {
            data.and_then(|d| d.get(name))
                .and_then(Value::as_str)
                .filter(|s| !s.is_empty())
                .ok_or_else(|| {
                    ProviderError::other(format!(
                        "vault {}: POST {path}: the answer holds no {name}",
                        self.client.conn().address()
                    ))
                })
        };
        let secret_id = Secret::from(field(SECRET_ID)?);
        let accessor = field(SECRET_ID_ACCESSOR)?.to_owned();
        let mut doc = current.cloned().unwrap_or_default();
        doc.set("engine", ENGINE);
        doc.set(ROLE_NAME, self.role.as_str());
        doc.set(MOUNT, self.mount.as_str());
        doc.set(ROLE_ID, role_id);
        doc.set(SECRET_ID, secret_id.expose());
        doc.set_password(&secret_id);
        doc.set(SECRET_ID_ACCESSOR, accessor);
        Ok(doc)
    }

    async fn apply(&self, new: &SecretDoc, _current: Option<&SecretDoc>) -> ProviderResult<()> {
        // `prepare` created the secret-id on the role already: check it is still there.
        let accessor = Self::accessor_of(new).ok_or_else(|| {
            ProviderError::invalid_input(format!(
                "the new secret has no `{SECRET_ID_ACCESSOR}`: it was not prepared by the vault-approle target"
            ))
        })?;
        match self.lookup_accessor(accessor).await? {
            Some(expires) if Self::expired(expires.as_deref()) => Err(ProviderError::not_found(format!(
                "the new secret-id (accessor {accessor}) of {} has expired; start a new rotation",
                self.label()
            ))),
            Some(_) => Ok(()),
            None => Err(ProviderError::not_found(format!(
                "the new secret-id (accessor {accessor}) no longer exists on {}; start a new rotation",
                self.label()
            ))),
        }
    }

    async fn login(&self, doc: &SecretDoc) -> ProviderResult<()> {
        let secret_id = Self::secret_of(doc, "given")?;
        let role_id = match doc.get_str(ROLE_ID) {
            Some(id) if !id.is_empty() => id.to_owned(),
            _ => self.role_id().await?,
        };
        let path = format!("auth/{}/login", self.mount);
        let body = json!({ "role_id": role_id, "secret_id": secret_id.expose() });
        let reply = self
            .client
            .call_anonymous(Method::Post, &path, Some(&body), &[secret_id.expose()])
            .await;
        model::scrub(body);
        let reply = reply?;
        if !reply.is_success() {
            return Err(
                status_error(self.client.conn(), Method::Post, &path, &reply, Context::Login)
                    .context(format!("login with a secret-id of {}", self.label())),
            );
        }
        // Logged in: give the token back at once, so verification leaves none behind.
        let token = reply
            .field("auth")
            .and_then(|a| a.get("client_token"))
            .and_then(Value::as_str)
            .map(Secret::from)
            .ok_or_else(|| {
                ProviderError::other(format!(
                    "vault {}: POST {path}: the login answer holds no auth.client_token",
                    self.client.conn().address()
                ))
            })?;
        let _ = self
            .client
            .conn()
            .send(Method::Post, "auth/token/revoke-self", Some(&token), None, &[])
            .await;
        Ok(())
    }

    async fn revoke(&self, old: &SecretDoc, new: &SecretDoc, options: RevokeOptions) -> ProviderResult<RevokeReport> {
        // Tokens issued with the old secret-id live on until their TTL: Vault cannot list
        // them by secret-id (the capability says so).
        let _ = options;
        let old_accessor = Self::accessor_of(old);
        if old_accessor.is_some() && old_accessor == Self::accessor_of(new) {
            return Err(ProviderError::invalid_input(format!(
                "refusing to destroy the secret-id (accessor {}) of {}: the new secret holds it too",
                old_accessor.unwrap_or_default(),
                self.label()
            )));
        }
        let (path, body, masks) = match old_accessor {
            Some(accessor) => (
                format!("{}/secret-id-accessor/destroy", self.role_path()),
                json!({ "secret_id_accessor": accessor }),
                None,
            ),
            // An imported secret-id without its accessor: destroy it by value.
            None => {
                let secret = Self::secret_of(old, "old")?;
                if Self::secret_of(new, "new").is_ok_and(|n| n == secret) {
                    return Err(ProviderError::invalid_input(format!(
                        "refusing to destroy the secret-id of {}: the new secret holds the same one",
                        self.label()
                    )));
                }
                (
                    format!("{}/secret-id/destroy", self.role_path()),
                    json!({ SECRET_ID: secret.expose() }),
                    Some(secret),
                )
            }
        };
        let reply = self.client.call(Method::Post, &path, Some(&body)).await;
        model::scrub(body);
        drop(masks);
        let reply = reply?;
        let gone = reply.is_success()
            || reply.status == 404
            || (matches!(reply.status, 400 | 500) && reply.error_mentions("failed to find accessor"));
        if gone {
            return Ok(RevokeReport::default());
        }
        Err(self.client.error(Method::Post, &path, &reply))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::UNIX_EPOCH;

    #[test]
    fn vault_times() {
        let at = |s: u64| Some(UNIX_EPOCH + Duration::from_secs(s));
        // 2025-11-30T12:00:00Z = 1764504000
        assert_eq!(parse_time("2025-11-30T12:00:00Z"), at(1_764_504_000));
        assert_eq!(parse_time("2025-11-30T04:00:00-08:00"), at(1_764_504_000));
        assert_eq!(parse_time("2025-11-30T13:30:00+01:30"), at(1_764_504_000));
        assert_eq!(
            parse_time("2025-11-30T04:00:00.5-08:00"),
            Some(UNIX_EPOCH + Duration::from_millis(1_764_504_000_500))
        );
        assert_eq!(parse_time("+00:00"), None);
        assert_eq!(parse_time("soon"), None);
    }

    #[test]
    fn token_lifetimes() {
        let line = token_lifetime(&json!({"token_ttl": 3600, "token_max_ttl": 14400, "token_period": 0}));
        assert_eq!(line, "the role's tokens live 1h after login, renewable up to 4h");
        let line = token_lifetime(&json!({"token_ttl": 0, "token_max_ttl": 0}));
        assert!(
            line.contains("token_ttl is not set") && line.contains("token_max_ttl is not set"),
            "{line}"
        );
        let line = token_lifetime(&json!({"token_ttl": 60, "period": 1800}));
        assert!(line.contains("periodic tokens (token_period 30m)"), "{line}");
    }
}
