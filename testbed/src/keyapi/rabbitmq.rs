//! The machine's RabbitMQ management HTTP API (a real server: users, passwords and
//! authentication are RabbitMQ's own).

use super::client::{basic_auth, request};
use crate::process::run;
use crate::TestbedError;
use std::process::Command;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// The management API on 127.0.0.1:15672 (or `REKEY_RABBITMQ_URL`), administered as
/// `guest`/`guest` (or `REKEY_RABBITMQ_ADMIN` = `user:password`).
#[derive(Clone, Debug)]
pub struct RabbitMq {
    url: String,
    admin: (String, String),
}

impl RabbitMq {
    /// The management API, enabling the `rabbitmq_management` plugin when nothing
    /// answers (`rabbitmq-plugins enable`, needs root; bounded waits), then waiting until
    /// the admin logs in.
    pub fn management() -> Result<RabbitMq, TestbedError> {
        static ENABLING: Mutex<()> = Mutex::new(());
        let url = std::env::var("REKEY_RABBITMQ_URL").unwrap_or_else(|_| "http://127.0.0.1:15672".into());
        let admin = std::env::var("REKEY_RABBITMQ_ADMIN")
            .ok()
            .and_then(|a| a.split_once(':').map(|(u, p)| (u.to_owned(), p.to_owned())))
            .unwrap_or_else(|| ("guest".into(), "guest".into()));
        let api = RabbitMq { url, admin };
        if api.admin_works() {
            return Ok(api);
        }
        let _guard = ENABLING.lock().unwrap_or_else(|p| p.into_inner());
        if api.admin_works() {
            return Ok(api);
        }
        let out = run(
            Command::new("rabbitmq-plugins").args(["enable", "rabbitmq_management"]),
            None,
            Duration::from_secs(120),
        )
        .map_err(TestbedError::new)?;
        if !out.status.success() {
            return Err(TestbedError::new(format!(
                "rabbitmq-plugins enable rabbitmq_management failed: {}",
                String::from_utf8_lossy(&out.stderr).trim()
            )));
        }
        let deadline = Instant::now() + Duration::from_secs(60);
        while Instant::now() < deadline {
            if api.admin_works() {
                return Ok(api);
            }
            std::thread::sleep(Duration::from_millis(250));
        }
        Err(TestbedError::new(format!(
            "the RabbitMQ management API at {} did not answer within 60s of enabling the plugin",
            api.url
        )))
    }

    fn admin_works(&self) -> bool {
        self.login_status(&self.admin.0, &self.admin.1) == Ok(200)
    }

    /// `http://127.0.0.1:15672`
    pub fn url(&self) -> &str {
        &self.url
    }

    /// The admin's user name and password.
    pub fn admin(&self) -> (&str, &str) {
        (&self.admin.0, &self.admin.1)
    }

    /// The status of `GET /api/whoami` as `user` with `password` (200 logs in, 401
    /// refused).
    pub fn login_status(&self, user: &str, password: &str) -> Result<u16, String> {
        request(
            "GET",
            &format!("{}/api/whoami", self.url),
            &[("Authorization", &basic_auth(user, password))],
            None,
        )
        .map(|r| r.status)
    }

    fn admin_request(&self, method: &str, path: &str, body: Option<&str>) -> Result<u16, TestbedError> {
        let auth = basic_auth(&self.admin.0, &self.admin.1);
        let reply = request(
            method,
            &format!("{}{path}", self.url),
            &[("Authorization", &auth), ("Content-Type", "application/json")],
            body,
        )
        .map_err(|e| TestbedError::new(format!("RabbitMQ {method} {path}: {e}")))?;
        Ok(reply.status)
    }

    /// Creates (or updates) a user with the `management` tag (the management API only
    /// authenticates users with at least that tag) and a password.
    pub fn create_user(&self, name: &str, password: &str) -> Result<RabbitUser, TestbedError> {
        let body = format!(r#"{{"password":{},"tags":"management"}}"#, super::json_string(password));
        let status = self.admin_request("PUT", &format!("/api/users/{name}"), Some(&body))?;
        if !matches!(status, 201 | 204) {
            return Err(TestbedError::new(format!(
                "RabbitMQ: creating user {name}: HTTP {status}"
            )));
        }
        Ok(RabbitUser {
            api: self.clone(),
            name: name.to_owned(),
        })
    }

    /// Deletes a user (a missing one is fine).
    pub fn delete_user(&self, name: &str) -> Result<(), TestbedError> {
        match self.admin_request("DELETE", &format!("/api/users/{name}"), None)? {
            204 | 404 => Ok(()),
            other => Err(TestbedError::new(format!(
                "RabbitMQ: deleting user {name}: HTTP {other}"
            ))),
        }
    }
}

/// A RabbitMQ user deleted when dropped.
#[derive(Debug)]
pub struct RabbitUser {
    api: RabbitMq,
    /// The user name.
    pub name: String,
}

impl Drop for RabbitUser {
    fn drop(&mut self) {
        let _ = self.api.delete_user(&self.name);
    }
}
