//! [`VaultAppRoleTarget`]: rotates the secret-id of a Vault AppRole role.

use crate::client::{check_capabilities, Client};
use crate::http::{status_error, Context, Method};
use crate::model;
use async_trait::async_trait;
use rekey_api::{
    ErrorKind, ProviderError, ProviderResult, RevokeOptions, RevokeReport, Secret, SecretDoc, Strategy, Target,
    TargetCapabilities,
};
use serde_json::{json, Value};
use std::fmt;
use std::sync::Mutex;

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

/// A Vault AppRole role whose secret-id rekey rotates (strategy `dual`: a role holds
/// many secret-ids, so the old one keeps working until `revoke` destroys it).
///
/// Documents hold `engine = "vault-approle"`, `role_name`, `mount`, `role_id`,
/// `secret_id`, `secret_id_accessor`, and `password` (the secret-id again: the field
/// rekey's engine verifies, compares and searches for leaks; `login` uses it, falling
/// back to `secret_id`).
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
        let path = format!("{}/secret-id-accessor/lookup", self.role_path());
        let reply = self
            .client
            .call(Method::Post, &path, Some(&json!({ "secret_id_accessor": accessor })))
            .await?;
        if reply.is_success() {
            // Without a TTL a secret-id never expires, whatever `expiration_time` says
            // (Vault answers year 1; rvault, the creation time).
            let ttl = reply
                .data()
                .and_then(|d| d.get("secret_id_ttl"))
                .and_then(Value::as_u64)
                .unwrap_or(0);
            if ttl == 0 {
                return Ok(Some(None));
            }
            let expires = reply
                .data()
                .and_then(|d| d.get("expiration_time"))
                .and_then(Value::as_str)
                .filter(|t| !t.is_empty() && !t.starts_with("0001-01-01"))
                .map(str::to_owned);
            return Ok(Some(expires));
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

    /// Whether an RFC 3339 expiry lies in the past.
    fn expired(expires: Option<&str>) -> bool {
        expires
            .and_then(|t| humantime::parse_rfc3339_weak(t).ok())
            .is_some_and(|t| t <= std::time::SystemTime::now())
    }
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
        let reply = self.client.call(Method::Post, &path, Some(&json!({}))).await?;
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
