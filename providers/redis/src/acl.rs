//! ACL commands, password hashes and user names.
//!
//! Every command is built from separate arguments (RESP bulk strings), never by
//! interpolating names into a command line, so no user name can inject anything. A new
//! password leaves rekey only as `#<sha256 hex>`, never as `>plaintext`.

use redis::Value;
use rekey_api::Secret;
use sha2::{Digest, Sha256};

/// The SHA-256 of a password in lowercase hex: what Redis stores and what `ACL SETUSER
/// user #<hash>` accepts, so the plaintext never reaches the server (or its SLOWLOG,
/// MONITOR output, ACL LOG or replication stream).
pub fn acl_password_hash(password: &Secret) -> String {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let digest = Sha256::digest(password.expose().as_bytes());
    let mut out = String::with_capacity(64);
    for byte in digest.iter() {
        out.push(HEX[usize::from(byte >> 4)] as char);
        out.push(HEX[usize::from(byte & 0x0f)] as char);
    }
    out
}

/// Why `name` cannot be a Redis ACL user name, if it cannot. Redis itself refuses names
/// with ASCII whitespace or NUL (`ACL SETUSER`: "Usernames can't contain spaces or null
/// characters"); rekey also refuses other control characters, which would garble logs
/// and the ACL file.
pub fn validate_username(name: &str) -> Result<(), &'static str> {
    if name.is_empty() {
        return Err("it is empty");
    }
    if name.chars().any(|c| c.is_whitespace()) {
        return Err("Redis user names cannot contain whitespace");
    }
    if name.chars().any(|c| c.is_control()) {
        return Err("Redis user names cannot contain NUL or control characters");
    }
    Ok(())
}

/// A user name quoted for messages: `"orders_app"` (Rust string escaping).
pub(crate) fn quote_name(name: &str) -> String {
    format!("{name:?}")
}

/// `ACL SETUSER <user> resetpass #<hash>`: the hash becomes the only password (and
/// `nopass` is cleared).
pub(crate) fn replace_passwords(user: &str, hash: &str) -> redis::Cmd {
    let mut cmd = redis::cmd("ACL");
    cmd.arg("SETUSER").arg(user).arg("resetpass").arg(format!("#{hash}"));
    cmd
}

/// `ACL SETUSER <user> [#<add>] !<remove>...`: adds a password and removes others in one
/// command (atomic on the server).
pub(crate) fn change_passwords(user: &str, add: Option<&str>, remove: &[&str]) -> redis::Cmd {
    let mut cmd = redis::cmd("ACL");
    cmd.arg("SETUSER").arg(user);
    if let Some(hash) = add {
        cmd.arg(format!("#{hash}"));
    }
    for hash in remove {
        cmd.arg(format!("!{hash}"));
    }
    cmd
}

/// What `ACL GETUSER` says about a user (the parts rekey uses).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct UserInfo {
    /// `on`/`off`, `nopass`, `skip-sanitize-payload`...
    pub(crate) flags: Vec<String>,
    /// SHA-256 hex of each password.
    pub(crate) passwords: Vec<String>,
}

impl UserInfo {
    /// Parses the reply of `ACL GETUSER` (a RESP2 flat list or a RESP3 map); `None` for
    /// a nil reply (no such user).
    pub(crate) fn from_reply(reply: &Value) -> Option<UserInfo> {
        let pairs: Vec<(&Value, &Value)> = match reply {
            Value::Nil => return None,
            Value::Array(items) => items.chunks(2).filter_map(|c| Some((c.first()?, c.get(1)?))).collect(),
            Value::Map(items) => items.iter().map(|(k, v)| (k, v)).collect(),
            _ => return Some(UserInfo::default()),
        };
        let mut info = UserInfo::default();
        for (key, value) in pairs {
            match text(key).as_deref() {
                Some("flags") => info.flags = strings(value),
                Some("passwords") => info.passwords = strings(value),
                _ => {}
            }
        }
        Some(info)
    }

    pub(crate) fn has_flag(&self, flag: &str) -> bool {
        self.flags.iter().any(|f| f == flag)
    }

    pub(crate) fn has_password(&self, hash: &str) -> bool {
        self.passwords.iter().any(|p| p.eq_ignore_ascii_case(hash))
    }

    /// The user's passwords other than `keep` (hashes).
    pub(crate) fn others(&self, keep: &[&str]) -> Vec<&str> {
        self.passwords
            .iter()
            .map(String::as_str)
            .filter(|p| !keep.iter().any(|k| p.eq_ignore_ascii_case(k)))
            .collect()
    }
}

/// A reply as text (bulk, simple or verbatim string).
pub(crate) fn text(value: &Value) -> Option<String> {
    match value {
        Value::BulkString(bytes) => Some(String::from_utf8_lossy(bytes).into_owned()),
        Value::SimpleString(s) => Some(s.clone()),
        Value::VerbatimString { text, .. } => Some(text.clone()),
        Value::Okay => Some("OK".to_owned()),
        _ => None,
    }
}

fn strings(value: &Value) -> Vec<String> {
    match value {
        Value::Array(items) | Value::Set(items) => items.iter().filter_map(text).collect(),
        other => text(other).into_iter().collect(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hash_matches_sha256() {
        // sha256("pw1"), as `printf pw1 | sha256sum` prints it.
        assert_eq!(
            acl_password_hash(&Secret::from("pw1")),
            "c592df4a86933b92addc9842402ddf198c638ea9be58916ee6e3734e1e3152f8"
        );
        assert_eq!(
            acl_password_hash(&Secret::from("")),
            "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
        );
    }

    #[test]
    fn user_names() {
        assert!(validate_username("orders_app").is_ok());
        assert!(validate_username("q\"';ü日").is_ok());
        for bad in ["", "a b", "a\tb", "a\u{0}b", "a\rb", "a\u{7f}b", "a\u{a0}b"] {
            assert!(validate_username(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn commands_carry_the_hash_as_one_argument() {
        let hash = acl_password_hash(&Secret::from("pw1"));
        let packed = String::from_utf8(replace_passwords("a;b\"c", &hash).get_packed_command()).unwrap();
        assert_eq!(
            packed,
            format!("*5\r\n$3\r\nACL\r\n$7\r\nSETUSER\r\n$5\r\na;b\"c\r\n$9\r\nresetpass\r\n$65\r\n#{hash}\r\n")
        );
        let packed = String::from_utf8(change_passwords("u", Some(&hash), &[]).get_packed_command()).unwrap();
        assert!(packed.ends_with(&format!("$65\r\n#{hash}\r\n")));
        let packed = String::from_utf8(change_passwords("u", None, &[&hash]).get_packed_command()).unwrap();
        assert!(packed.ends_with(&format!("$65\r\n!{hash}\r\n")));
        let packed = String::from_utf8(change_passwords("u", Some(&hash), &["ab", "cd"]).get_packed_command()).unwrap();
        assert!(
            packed.ends_with(&format!("$65\r\n#{hash}\r\n$3\r\n!ab\r\n$3\r\n!cd\r\n")),
            "{packed}"
        );
    }

    #[test]
    fn getuser_replies() {
        assert_eq!(UserInfo::from_reply(&Value::Nil), None);
        let reply = Value::Array(vec![
            Value::BulkString(b"flags".to_vec()),
            Value::Array(vec![Value::BulkString(b"on".to_vec())]),
            Value::BulkString(b"passwords".to_vec()),
            Value::Array(vec![
                Value::BulkString(b"abc".to_vec()),
                Value::BulkString(b"def".to_vec()),
            ]),
            Value::BulkString(b"commands".to_vec()),
            Value::BulkString(b"+@all".to_vec()),
        ]);
        let info = UserInfo::from_reply(&reply).unwrap();
        assert!(info.has_flag("on") && !info.has_flag("nopass"));
        assert!(info.has_password("def") && !info.has_password("xyz"));
        let map = Value::Map(vec![(
            Value::SimpleString("flags".into()),
            Value::Set(vec![Value::SimpleString("off".into())]),
        )]);
        assert!(UserInfo::from_reply(&map).unwrap().has_flag("off"));
    }
}
