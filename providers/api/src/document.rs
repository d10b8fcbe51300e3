//! [`SecretDoc`]: the JSON object a credential is stored as.

use crate::error::{ErrorKind, ProviderError};
use crate::secret::Secret;
use serde_json::{Map, Value};
use std::fmt;
use zeroize::{Zeroize, Zeroizing};

/// The well-known field holding the password.
pub const PASSWORD: &str = "password";
/// The well-known field holding the user name.
pub const USERNAME: &str = "username";

/// A stored credential: a JSON object in the shape AWS's rotation functions use
/// (`engine`, `host`, `port`, `username`, `password`, `dbname`, plus fields of the
/// target's own). The whole object is treated as secret: `Debug` lists field names
/// only, there is no `Serialize`, string values are zeroized on drop, and the JSON
/// text comes out only through [`SecretDoc::to_json`].
#[derive(Clone, Default, PartialEq)]
pub struct SecretDoc {
    fields: Map<String, Value>,
}

impl SecretDoc {
    /// An empty document.
    pub fn new() -> Self {
        Self::default()
    }

    /// Parses a JSON object. Errors never quote the input.
    pub fn from_json(text: &str) -> Result<Self, ProviderError> {
        match serde_json::from_str::<Value>(text) {
            Ok(Value::Object(fields)) => Ok(SecretDoc { fields }),
            Ok(mut other) => {
                zeroize_value(&mut other);
                Err(ProviderError::new(
                    ErrorKind::InvalidInput,
                    "secret value is JSON but not an object",
                ))
            }
            Err(e) => Err(ProviderError::new(
                ErrorKind::InvalidInput,
                format!(
                    "secret value is not valid JSON (line {}, column {})",
                    e.line(),
                    e.column()
                ),
            )),
        }
    }

    /// Builds a document from a JSON value that must be an object.
    pub fn from_value(value: Value) -> Result<Self, ProviderError> {
        match value {
            Value::Object(fields) => Ok(SecretDoc { fields }),
            mut other => {
                zeroize_value(&mut other);
                Err(ProviderError::new(
                    ErrorKind::InvalidInput,
                    "secret value is not a JSON object",
                ))
            }
        }
    }

    /// The compact JSON text, in a buffer zeroized on drop. Use only to hand the
    /// document to a store.
    pub fn to_json(&self) -> Zeroizing<String> {
        Zeroizing::new(Value::Object(self.fields.clone()).to_string())
    }

    /// A copy of the JSON value, for stores that embed it in a larger document.
    /// The caller must zeroize or drop it with care; prefer [`SecretDoc::to_json`].
    pub fn to_value(&self) -> Value {
        Value::Object(self.fields.clone())
    }

    /// A string field, if present and a string.
    pub fn get_str(&self, field: &str) -> Option<&str> {
        self.fields.get(field).and_then(Value::as_str)
    }

    /// A field as a raw JSON value.
    pub fn get(&self, field: &str) -> Option<&Value> {
        self.fields.get(field)
    }

    /// An integer field, accepting a number or a numeric string.
    pub fn get_u64(&self, field: &str) -> Option<u64> {
        match self.fields.get(field)? {
            Value::Number(n) => n.as_u64(),
            Value::String(s) => s.parse().ok(),
            _ => None,
        }
    }

    /// The `password` field as a [`Secret`].
    pub fn password(&self) -> Option<Secret> {
        self.get_str(PASSWORD).map(Secret::from)
    }

    /// The `username` field.
    pub fn username(&self) -> Option<&str> {
        self.get_str(USERNAME)
    }

    /// Sets a field, zeroizing any value it replaces.
    pub fn set(&mut self, field: &str, value: impl Into<Value>) {
        if let Some(mut old) = self.fields.insert(field.to_owned(), value.into()) {
            zeroize_value(&mut old);
        }
    }

    /// Sets a field only when it is absent.
    pub fn set_default(&mut self, field: &str, value: impl Into<Value>) {
        if !self.fields.contains_key(field) {
            self.fields.insert(field.to_owned(), value.into());
        }
    }

    /// Sets the `password` field from a [`Secret`].
    pub fn set_password(&mut self, password: &Secret) {
        self.set(PASSWORD, password.expose());
    }

    /// Field names, in order (safe to print).
    pub fn field_names(&self) -> impl Iterator<Item = &str> {
        self.fields.keys().map(String::as_str)
    }

    /// `sha256:` and the first 12 hex digits of the SHA-256 of the `password` field (or
    /// `none`): short, stable and safe to print, so that a record can say which secret
    /// was replaced by which without showing either.
    pub fn fingerprint(&self) -> String {
        use sha2::{Digest, Sha256};
        let Some(password) = self.get_str(PASSWORD) else {
            return "none".to_owned();
        };
        let digest = Sha256::digest(password.as_bytes());
        let hex: String = digest.iter().take(6).map(|b| format!("{b:02x}")).collect();
        format!("sha256:{hex}")
    }

    /// Whether the two documents hold the same password (constant-time on equal lengths).
    pub fn same_password(&self, other: &SecretDoc) -> bool {
        match (self.get_str(PASSWORD), other.get_str(PASSWORD)) {
            (Some(a), Some(b)) => constant_time_eq(a.as_bytes(), b.as_bytes()),
            _ => false,
        }
    }

    /// Whether any string field equals `value` (used to find which credential holds a
    /// leaked value).
    pub fn contains_value(&self, value: &str) -> bool {
        self.fields.values().any(|v| {
            v.as_str()
                .is_some_and(|s| constant_time_eq(s.as_bytes(), value.as_bytes()))
        })
    }
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

fn zeroize_value(value: &mut Value) {
    match value {
        Value::String(s) => s.zeroize(),
        Value::Array(items) => items.iter_mut().for_each(zeroize_value),
        Value::Object(map) => map.values_mut().for_each(zeroize_value),
        _ => {}
    }
}

impl Drop for SecretDoc {
    fn drop(&mut self) {
        self.fields.values_mut().for_each(zeroize_value);
    }
}

impl fmt::Debug for SecretDoc {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SecretDoc")
            .field("fields", &self.fields.keys().collect::<Vec<_>>())
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_shows_field_names_only() {
        let doc = SecretDoc::from_json(r#"{"username":"app","password":"s3cr3t-value"}"#).unwrap();
        let shown = format!("{doc:?}");
        assert!(shown.contains("username"));
        assert!(!shown.contains("s3cr3t-value"));
        assert!(!shown.contains("app\""));
    }

    #[test]
    fn parse_errors_do_not_quote_input() {
        let err = SecretDoc::from_json("not json s3cr3t").unwrap_err();
        assert!(!err.to_string().contains("s3cr3t"));
        assert_eq!(err.kind(), ErrorKind::InvalidInput);
        let err = SecretDoc::from_json("\"s3cr3t\"").unwrap_err();
        assert!(!err.to_string().contains("s3cr3t"));
    }

    #[test]
    fn password_round_trip() {
        let mut doc = SecretDoc::new();
        doc.set_password(&Secret::from("pw"));
        assert_eq!(doc.password().unwrap().expose(), "pw");
        let back = SecretDoc::from_json(&doc.to_json()).unwrap();
        assert!(back.same_password(&doc));
        assert!(back.contains_value("pw"));
    }
}
