//! [`RedactedDsn`]: a connection string that holds a password and prints without it.

use crate::secret::Secret;
use std::fmt;

/// A connection string (`postgres://user:pass@host/db`, or `host=h user=u password=p`)
/// that may embed a password. `Display` and `Debug` show it with the password replaced
/// by `****`; the full text comes out only through [`RedactedDsn::expose`].
#[derive(Clone, PartialEq, Eq)]
pub struct RedactedDsn(Secret);

impl RedactedDsn {
    /// Wraps a connection string.
    pub fn new(dsn: String) -> Self {
        RedactedDsn(Secret::new(dsn))
    }

    /// The full connection string, password included.
    pub fn expose(&self) -> &str {
        self.0.expose()
    }

    /// The connection string with its password masked.
    pub fn redacted(&self) -> String {
        redact(self.0.expose())
    }
}

/// Masks the password of a URL (`scheme://user:pass@host`, `?password=` and
/// `&password=` query parameters) or of a key=value string (`password=...`).
pub fn redact(dsn: &str) -> String {
    if let Some(scheme_end) = dsn.find("://") {
        let (scheme, rest) = dsn.split_at(scheme_end + 3);
        let authority_end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
        let (authority, tail) = rest.split_at(authority_end);
        let authority = match authority.rfind('@') {
            Some(at) => {
                let userinfo = &authority[..at];
                let host = &authority[at..];
                match userinfo.find(':') {
                    Some(colon) => format!("{}:****{host}", &userinfo[..colon]),
                    None => authority.to_owned(),
                }
            }
            None => authority.to_owned(),
        };
        format!("{scheme}{authority}{}", redact_query(tail))
    } else {
        redact_key_value(dsn)
    }
}

fn redact_query(tail: &str) -> String {
    let Some(q) = tail.find('?') else {
        return tail.to_owned();
    };
    let (path, query) = tail.split_at(q + 1);
    let parts: Vec<String> = query
        .split('&')
        .map(|pair| match pair.split_once('=') {
            Some((k, _)) if is_password_key(k) => format!("{k}=****"),
            _ => pair.to_owned(),
        })
        .collect();
    format!("{path}{}", parts.join("&"))
}

fn is_password_key(key: &str) -> bool {
    matches!(
        key.to_ascii_lowercase().as_str(),
        "password" | "pass" | "pwd" | "sslpassword"
    )
}

fn redact_key_value(dsn: &str) -> String {
    let mut out = Vec::new();
    let mut words = dsn.split_whitespace().peekable();
    while let Some(word) = words.next() {
        match word.split_once('=') {
            Some((k, v)) if is_password_key(k.trim()) => {
                out.push(format!("{k}=****"));
                // A quoted value may contain spaces: skip to its closing quote.
                if v.starts_with('\'') && (v.len() == 1 || !v.ends_with('\'')) {
                    for next in words.by_ref() {
                        if next.ends_with('\'') && !next.ends_with("\\'") {
                            break;
                        }
                    }
                }
            }
            _ => out.push(word.to_owned()),
        }
    }
    out.join(" ")
}

impl<'de> serde::Deserialize<'de> for RedactedDsn {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        String::deserialize(deserializer).map(RedactedDsn::new)
    }
}

impl fmt::Display for RedactedDsn {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.redacted())
    }
}

impl fmt::Debug for RedactedDsn {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "RedactedDsn({:?})", self.redacted())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls() {
        assert_eq!(
            redact("postgres://admin:pw@h:5/db?sslmode=require"),
            "postgres://admin:****@h:5/db?sslmode=require"
        );
        assert_eq!(
            redact("postgres://admin@h/db?password=pw&x=1"),
            "postgres://admin@h/db?password=****&x=1"
        );
        assert_eq!(redact("postgres://h/db"), "postgres://h/db");
        assert_eq!(redact("postgres://a:p@ss@h/db"), "postgres://a:****@h/db");
    }

    #[test]
    fn key_values() {
        assert_eq!(
            redact("host=h user=u password=pw dbname=d"),
            "host=h user=u password=**** dbname=d"
        );
        assert_eq!(
            redact("host=h password='p w x' dbname=d"),
            "host=h password=**** dbname=d"
        );
    }

    #[test]
    fn display_and_debug_hide() {
        let d = RedactedDsn::new("postgres://a:topsecret@h/db".into());
        assert!(!format!("{d} {d:?}").contains("topsecret"));
        assert_eq!(d.expose(), "postgres://a:topsecret@h/db");
    }
}
