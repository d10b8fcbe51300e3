//! [`Client`]: one connection plus the token it authenticates with: a fixed token, or an
//! AppRole login done on first use and again when Vault refuses the token it gave.

use crate::config::{AppRoleLogin, TokenSource};
use crate::http::{status_error, Conn, Context, Method, Reply};
use rekey_api::{ErrorCode, ProviderError, ProviderResult, Secret};
use serde_json::{json, Value};
use std::fmt;
use tokio::sync::Mutex;

/// How rekey authenticates to Vault.
enum Auth {
    Token(Secret),
    AppRole {
        login: AppRoleLogin,
        mount: String,
        /// The token of the last login; `None` until the first request.
        token: Mutex<Option<Secret>>,
    },
}

/// A connection and its authentication.
pub(crate) struct Client {
    conn: Conn,
    auth: Auth,
}

impl fmt::Debug for Client {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Client")
            .field("conn", &self.conn)
            .field("auth", &self.auth_label())
            .finish()
    }
}

impl Client {
    pub(crate) fn new(conn: Conn, token: TokenSource) -> ProviderResult<Client> {
        let auth = match token {
            TokenSource::Token(t) => Auth::Token(t),
            TokenSource::AppRole(login) => {
                let mount = crate::config::normalize_mount(&login.mount, "vault approle login", "mount")?;
                Auth::AppRole {
                    login,
                    mount,
                    token: Mutex::new(None),
                }
            }
        };
        Ok(Client { conn, auth })
    }

    pub(crate) fn conn(&self) -> &Conn {
        &self.conn
    }

    /// `token` or `AppRole login on auth/approle`, for preflight lines.
    pub(crate) fn auth_label(&self) -> String {
        match &self.auth {
            Auth::Token(_) => "token".to_owned(),
            Auth::AppRole { mount, .. } => format!("AppRole login on auth/{mount}"),
        }
    }

    /// The token to send, logging in first when needed. The flag says whether it was
    /// reused from an earlier login (and so may have expired since).
    async fn token(&self) -> ProviderResult<(Secret, bool)> {
        match &self.auth {
            Auth::Token(t) => Ok((t.clone(), false)),
            Auth::AppRole { login, mount, token } => {
                let mut cached = token.lock().await;
                if let Some(t) = cached.as_ref() {
                    return Ok((t.clone(), true));
                }
                let fresh = self.approle_login(login, mount).await?;
                *cached = Some(fresh.clone());
                Ok((fresh, false))
            }
        }
    }

    /// Forgets an AppRole token Vault refused, unless another task already replaced it.
    async fn forget(&self, refused: &Secret) {
        if let Auth::AppRole { token, .. } = &self.auth {
            let mut cached = token.lock().await;
            if cached.as_ref() == Some(refused) {
                *cached = None;
            }
        }
    }

    async fn approle_login(&self, login: &AppRoleLogin, mount: &str) -> ProviderResult<Secret> {
        let path = format!("auth/{mount}/login");
        let body = json!({ "role_id": login.role_id, "secret_id": login.secret_id.expose() });
        let reply = self.conn.send(Method::Post, &path, None, Some(&body), &[]).await;
        let mut body = body;
        crate::http::zeroize_value(&mut body);
        let reply = reply?;
        if !reply.is_success() {
            return Err(status_error(&self.conn, Method::Post, &path, &reply, Context::Login)
                .context("rekey's own AppRole login failed"));
        }
        reply
            .field("auth")
            .and_then(|a| a.get("client_token"))
            .and_then(Value::as_str)
            .filter(|t| !t.is_empty())
            .map(Secret::from)
            .ok_or_else(|| {
                ProviderError::other(format!(
                    "vault {}: POST {path}: the login answer holds no auth.client_token",
                    self.conn.address()
                ))
            })
    }

    /// Sends a request with rekey's token. When an AppRole token from an earlier login is
    /// refused (403: expired or revoked), logs in again once and retries.
    pub(crate) async fn call(&self, method: Method, path: &str, body: Option<&Value>) -> ProviderResult<Reply> {
        let (token, reused) = self.token().await?;
        let reply = self.conn.send(method, path, Some(&token), body, &[]).await?;
        if reply.status == 403 && reused {
            self.forget(&token).await;
            let (token, _) = self.token().await?;
            return self.conn.send(method, path, Some(&token), body, &[]).await;
        }
        Ok(reply)
    }

    /// Sends a request without a token (logins, seal status).
    pub(crate) async fn call_anonymous(
        &self,
        method: Method,
        path: &str,
        body: Option<&Value>,
        masks: &[&str],
    ) -> ProviderResult<Reply> {
        self.conn.send(method, path, None, body, masks).await
    }

    /// The error for a failed reply to a request made with rekey's token.
    pub(crate) fn error(&self, method: Method, path: &str, reply: &Reply) -> ProviderError {
        status_error(&self.conn, method, path, reply, Context::Managed)
    }

    /// Seal status: `Ok` when unsealed; `Unreachable` "Vault is sealed" otherwise.
    pub(crate) async fn check_unsealed(&self) -> ProviderResult<String> {
        let path = "sys/seal-status";
        let reply = self.call_anonymous(Method::Get, path, None, &[]).await?;
        if !reply.is_success() {
            return Err(self.error(Method::Get, path, &reply));
        }
        match reply.field("sealed").and_then(Value::as_bool) {
            Some(false) => Ok(format!("Vault at {} is reachable and unsealed", self.conn.label())),
            Some(true) => Err(ProviderError::unreachable(format!(
                "vault {}: Vault is sealed (sys/seal-status); unseal it and retry",
                self.conn.address()
            ))),
            None => Err(ProviderError::other(format!(
                "vault {}: GET {path}: the answer has no `sealed` field; is this a Vault server?",
                self.conn.address()
            ))),
        }
    }

    /// Token lookup: `Ok` with a description of the token (never the token itself).
    pub(crate) async fn check_token(&self) -> ProviderResult<String> {
        let path = "auth/token/lookup-self";
        let reply = self.call(Method::Get, path, None).await?;
        if !reply.is_success() {
            if matches!(reply.status, 401 | 403) {
                let text = reply.error_text();
                return Err(ProviderError::permission_denied(format!(
                    "vault {}: GET {path}: rekey's {} was refused: invalid, expired or revoked token (HTTP {}){}",
                    self.conn.address(),
                    self.auth_label(),
                    reply.status,
                    if text.is_empty() {
                        String::new()
                    } else {
                        format!(": {text}")
                    }
                ))
                .with_code(ErrorCode::Http(reply.status)));
            }
            return Err(self.error(Method::Get, path, &reply));
        }
        let data = reply.data();
        let policies = data
            .and_then(|d| d.get("policies"))
            .and_then(Value::as_array)
            .map(|p| p.iter().filter_map(Value::as_str).collect::<Vec<_>>().join(", "))
            .unwrap_or_default();
        let ttl = data.and_then(|d| d.get("ttl")).and_then(Value::as_u64);
        let ttl = match ttl {
            Some(0) | None => "no expiry".to_owned(),
            Some(s) => format!(
                "expires in {}",
                humantime::format_duration(std::time::Duration::from_secs(s))
            ),
        };
        Ok(format!(
            "rekey's {} is valid (policies: {}; {ttl})",
            self.auth_label(),
            if policies.is_empty() { "none listed" } else { &policies }
        ))
    }

    /// What `sys/capabilities-self` says the token may do on each path, or `None` when
    /// the server cannot tell (no such endpoint, or not allowed to ask).
    pub(crate) async fn capabilities(&self, paths: &[String]) -> ProviderResult<Option<Vec<Vec<String>>>> {
        let path = "sys/capabilities-self";
        let reply = self.call(Method::Post, path, Some(&json!({ "paths": paths }))).await?;
        if !reply.is_success() {
            if reply.status == 503 {
                return Err(self.error(Method::Post, path, &reply));
            }
            return Ok(None);
        }
        let mut result = Vec::new();
        for p in paths {
            let caps = reply
                .data()
                .and_then(|d| d.get(p.as_str()))
                .or_else(|| reply.field(p))
                .or_else(|| (paths.len() == 1).then(|| reply.field("capabilities")).flatten())
                .and_then(Value::as_array);
            match caps {
                Some(c) => result.push(c.iter().filter_map(Value::as_str).map(str::to_owned).collect()),
                None => return Ok(None),
            }
        }
        Ok(Some(result))
    }
}

/// Whether `caps` (from `sys/capabilities-self`) allows every one of `needed`.
pub(crate) fn allows(caps: &[String], needed: &[&str]) -> bool {
    if caps.iter().any(|c| c == "root") {
        return true;
    }
    if caps.iter().any(|c| c == "deny") {
        return false;
    }
    needed.iter().all(|n| caps.iter().any(|c| c == n))
}

/// Checks the capabilities `needed` on each of `paths`: a line saying what was checked,
/// `PermissionDenied` naming the first path and capability missing, or a "not checked"
/// line when the server cannot tell.
pub(crate) async fn check_capabilities(client: &Client, needs: &[(String, &[&str])]) -> ProviderResult<String> {
    let paths: Vec<String> = needs.iter().map(|(p, _)| p.clone()).collect();
    match client.capabilities(&paths).await? {
        Some(found) => judge_capabilities(client, needs, &found),
        None => Ok(not_checked(&paths)),
    }
}

/// The line for a server that does not answer `sys/capabilities-self` (or not to this
/// token): nothing is refused on that account.
pub(crate) fn not_checked(paths: &[String]) -> String {
    format!(
        "capabilities on {} not checked (the server does not answer sys/capabilities-self)",
        paths.join(", ")
    )
}

/// [`check_capabilities`] on capabilities already read (`found`, one list per path of
/// `needs`, in order).
pub(crate) fn judge_capabilities(
    client: &Client,
    needs: &[(String, &[&str])],
    found: &[Vec<String>],
) -> ProviderResult<String> {
    for ((path, needed), caps) in needs.iter().zip(found) {
        if !allows(caps, needed) {
            let missing: Vec<&str> = needed
                .iter()
                .copied()
                .filter(|n| !caps.iter().any(|c| c == n))
                .collect();
            return Err(ProviderError::permission_denied(format!(
                "vault {}: rekey's {} lacks {} on {path} (it has: {})",
                client.conn().address(),
                client.auth_label(),
                missing.join(", "),
                if caps.is_empty() {
                    "none".to_owned()
                } else {
                    caps.join(", ")
                }
            )));
        }
    }
    let described: Vec<String> = needs.iter().map(|(p, n)| format!("{} on {p}", n.join("+"))).collect();
    Ok(format!("token may {}", described.join(", ")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn capability_rules() {
        let caps = |c: &[&str]| c.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        assert!(allows(&caps(&["root"]), &["read", "update"]));
        assert!(allows(&caps(&["read", "create", "update"]), &["read", "update"]));
        assert!(!allows(&caps(&["read"]), &["read", "update"]));
        assert!(!allows(&caps(&["deny", "read"]), &["read"]));
    }
}
