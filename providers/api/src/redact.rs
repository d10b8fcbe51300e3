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
/// `&password=` query parameters) or of a key=value string (`password=...`,
/// `password = '...'`). When in doubt it masks more, never less: in a URL everything
/// between the first `:` of the user info and the *last* `@` is masked, so a password
/// holding `/`, `?`, `#` or `@` stays hidden.
pub fn redact(dsn: &str) -> String {
    if let Some(scheme_end) = dsn.find("://") {
        let (scheme, rest) = dsn.split_at(scheme_end + 3);
        let (authority, tail) = match rest.rfind('@') {
            Some(at) => {
                let userinfo = &rest[..at];
                let shown = match userinfo.find(':') {
                    Some(colon) => format!("{}:****", &userinfo[..colon]),
                    None => userinfo.to_owned(),
                };
                let after = &rest[at..];
                let end = after.find(['/', '?', '#']).unwrap_or(after.len());
                (format!("{shown}{}", &after[..end]), &after[end..])
            }
            None => {
                let end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
                (rest[..end].to_owned(), &rest[end..])
            }
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
        key.trim().to_ascii_lowercase().as_str(),
        "password" | "pass" | "pwd" | "sslpassword"
    )
}

/// libpq-style `key = value` pairs; values may be quoted with `'` or `"` (backslash
/// escapes inside). Unparseable text after a password key is masked to the end.
fn redact_key_value(dsn: &str) -> String {
    let chars: Vec<char> = dsn.chars().collect();
    let mut out = Vec::new();
    let mut i = 0;
    let skip_space = |i: &mut usize| {
        while *i < chars.len() && chars[*i].is_whitespace() {
            *i += 1;
        }
    };
    loop {
        skip_space(&mut i);
        if i >= chars.len() {
            break;
        }
        let key_start = i;
        while i < chars.len() && chars[i] != '=' && !chars[i].is_whitespace() {
            i += 1;
        }
        let key: String = chars[key_start..i].iter().collect();
        skip_space(&mut i);
        if i >= chars.len() || chars[i] != '=' {
            out.push(key);
            continue;
        }
        i += 1;
        skip_space(&mut i);
        let value_start = i;
        if i < chars.len() && (chars[i] == '\'' || chars[i] == '"') {
            let quote = chars[i];
            i += 1;
            while i < chars.len() && chars[i] != quote {
                i += if chars[i] == '\\' { 2 } else { 1 };
            }
            i = (i + 1).min(chars.len());
        } else {
            while i < chars.len() && !chars[i].is_whitespace() {
                i += 1;
            }
        }
        let value: String = chars[value_start..i.min(chars.len())].iter().collect();
        if is_password_key(&key) {
            out.push(format!("{key}=****"));
        } else {
            out.push(format!("{key}={value}"));
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
    fn awkward_passwords_stay_hidden() {
        for dsn in [
            "postgres://admin:pa/ss@h/db",
            "postgres://admin:pa?ss@h/db",
            "postgres://admin:pa#ss@h/db",
            "postgres://admin:p@ss/w?rd@h:5432/db",
            "host=h password = hunter2 user=u",
            "host=h password=\"hunter 2\" user=u",
            "host=h password='it\\'s secret' user=u",
        ] {
            let shown = redact(dsn);
            for part in ["pa/ss", "pa?ss", "pa#ss", "ss/w?rd", "hunter", "secret"] {
                assert!(!shown.contains(part), "{dsn} -> {shown}");
            }
            assert!(shown.contains("****"), "{dsn} -> {shown}");
        }
        assert_eq!(
            redact("host=h password = hunter2 user=u"),
            "host=h password=**** user=u"
        );
        assert_eq!(
            redact("postgres://admin:pa/ss@h:5/db?sslmode=require"),
            "postgres://admin:****@h:5/db?sslmode=require"
        );
    }

    #[test]
    fn display_and_debug_hide() {
        let d = RedactedDsn::new("postgres://a:topsecret@h/db".into());
        assert!(!format!("{d} {d:?}").contains("topsecret"));
        assert_eq!(d.expose(), "postgres://a:topsecret@h/db");
    }
}
