//! SQL text building: literal quoting, account names, mysql_native_password hashes, the
//! password statements of each server flavour, and reading `SHOW GRANTS`.

use rekey_api::Secret;
use sha1::{Digest, Sha1};
use std::collections::BTreeSet;
use std::fmt::Write as _;
use zeroize::Zeroizing;

/// Quotes an SQL string literal: wrapped in `'`, with `\` and `'` escaped by a
/// backslash and NUL as `\0`. rekey's own sessions clear `NO_BACKSLASH_ESCAPES` from
/// `sql_mode` before running statements built with it, so this reading holds on every
/// server.
pub fn quote_literal(value: &str) -> String {
    let mut out = String::with_capacity(value.len() + 2);
    out.push('\'');
    for c in value.chars() {
        match c {
            '\'' => out.push_str("\\'"),
            '\\' => out.push_str("\\\\"),
            '\0' => out.push_str("\\0"),
            c => out.push(c),
        }
    }
    out.push('\'');
    out
}

/// An account name as SQL: `'user'@'host'`, both parts quoted with [`quote_literal`].
pub fn quote_account(user: &str, host: &str) -> String {
    format!("{}@{}", quote_literal(user), quote_literal(host))
}

/// Statements run first on every session rekey changes a password on: `sql_mode`
/// without `NO_BACKSLASH_ESCAPES`, so that [`quote_literal`]'s escapes mean what they
/// say, and a bounded wait for metadata locks.
pub(crate) const SESSION_SETUP: &str = "SET SESSION sql_mode = TRIM(BOTH ',' FROM \
     REPLACE(REPLACE(@@SESSION.sql_mode, 'NO_BACKSLASH_ESCAPES', ''), ',,', ',')), \
     SESSION lock_wait_timeout = 10";

/// The mysql_native_password hash of `password`: `*` followed by the uppercase hex of
/// SHA1(SHA1(password)), as both MySQL and MariaDB store it. This is what rekey sends
/// instead of the password.
///
/// ```
/// # use rekey_api::Secret;
/// assert_eq!(
///     *rekey_mysql::native_password_hash(&Secret::from("password")),
///     "*2470C0C06DEE42FD1618BB99005ADCA2EC9D1E19"
/// );
/// ```
pub fn native_password_hash(password: &Secret) -> Zeroizing<String> {
    let mut stage1 = Sha1::digest(password.expose().as_bytes());
    let stage2 = Sha1::digest(stage1);
    zeroize::Zeroize::zeroize(stage1.as_mut_slice());
    let mut out = Zeroizing::new(String::with_capacity(41));
    out.push('*');
    for byte in stage2 {
        let _ = write!(out, "{byte:02X}");
    }
    out
}

/// The MariaDB `ed25519` authentication string of `password`: the Ed25519 public key
/// whose secret scalar is the clamped first half of SHA-512(password), in base64 without
/// padding (43 characters), exactly what MariaDB stores for
/// `IDENTIFIED VIA ed25519 USING PASSWORD('…')`. rekey sends
/// `IDENTIFIED VIA ed25519 USING '<this>'` instead, so the plaintext never reaches the
/// server.
///
/// ```
/// # use rekey_api::Secret;
/// assert_eq!(
///     *rekey_mysql::ed25519_password_hash(&Secret::from("abc")),
///     "lEiAPNNMP1kq0dRsguIBKo/em5EPb9Y0272TblVhRUw"
/// );
/// ```
pub fn ed25519_password_hash(password: &Secret) -> Zeroizing<String> {
    use curve25519_dalek::scalar::{clamp_integer, Scalar};
    use curve25519_dalek::EdwardsPoint;
    use sha2::Sha512;
    let mut digest = Sha512::digest(password.expose().as_bytes());
    let mut seed = Zeroizing::new([0u8; 32]);
    seed.copy_from_slice(&digest[..32]);
    zeroize::Zeroize::zeroize(digest.as_mut_slice());
    let mut scalar = Scalar::from_bytes_mod_order(clamp_integer(*seed));
    let public = EdwardsPoint::mul_base(&scalar).compress();
    zeroize::Zeroize::zeroize(&mut scalar);
    base64_unpadded(public.as_bytes())
}

/// Standard base64 without `=` padding, as MariaDB prints ed25519 keys.
fn base64_unpadded(bytes: &[u8]) -> Zeroizing<String> {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = Zeroizing::new(String::with_capacity(bytes.len().div_ceil(3) * 4));
    for chunk in bytes.chunks(3) {
        let b = [chunk[0], *chunk.get(1).unwrap_or(&0), *chunk.get(2).unwrap_or(&0)];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        let chars = chunk.len() + 1;
        for i in 0..chars {
            out.push(ALPHABET[((n >> (18 - 6 * i)) & 63) as usize] as char);
        }
    }
    out
}

/// Whether `hash` has the shape of a mysql_native_password hash.
pub(crate) fn is_native_hash(hash: &str) -> bool {
    hash.len() == 41
        && hash.starts_with('*')
        && hash[1..]
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'A'..=b'F').contains(&b))
}

/// Which server rekey talks to, from `SELECT VERSION()`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Flavor {
    /// MariaDB: `IDENTIFIED BY PASSWORD '*hash'`, no dual passwords.
    MariaDb,
    /// MySQL (and Percona Server): `IDENTIFIED WITH mysql_native_password AS '*hash'`,
    /// dual passwords since 8.0.14.
    Mysql,
}

/// The server's flavour and version.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServerInfo {
    /// MariaDB or MySQL.
    pub flavor: Flavor,
    /// `(major, minor, patch)`.
    pub version: (u16, u16, u16),
    /// `VERSION()` as the server reported it.
    pub version_text: String,
}

impl ServerInfo {
    /// Reads `VERSION()`'s answer: `10.11.19-MariaDB-0+deb12u1`, `8.0.36`,
    /// `5.5.5-10.6.12-MariaDB` (the replication prefix is skipped).
    pub fn from_version(text: &str) -> ServerInfo {
        let flavor = if text.to_ascii_lowercase().contains("mariadb") {
            Flavor::MariaDb
        } else {
            Flavor::Mysql
        };
        let core = match flavor {
            Flavor::MariaDb => text.strip_prefix("5.5.5-").unwrap_or(text),
            Flavor::Mysql => text,
        };
        let mut numbers = core
            .split(|c: char| !c.is_ascii_digit())
            .take(3)
            .map(|n| n.parse::<u16>().unwrap_or(0));
        let version = (
            numbers.next().unwrap_or(0),
            numbers.next().unwrap_or(0),
            numbers.next().unwrap_or(0),
        );
        ServerInfo {
            flavor,
            version,
            version_text: text.to_owned(),
        }
    }

    /// `MariaDB 10.11.19` / `MySQL 8.0.36`.
    pub fn label(&self) -> String {
        let (a, b, c) = self.version;
        match self.flavor {
            Flavor::MariaDb => format!("MariaDB {a}.{b}.{c}"),
            Flavor::Mysql => format!("MySQL {a}.{b}.{c}"),
        }
    }

    /// The privilege besides `SUPER` that lets an account end other accounts'
    /// connections (`KILL CONNECTION`): `CONNECTION ADMIN` on MariaDB 10.5.2 and later,
    /// `CONNECTION_ADMIN` on MySQL 8.0 and later; `None` on older servers, where only
    /// `SUPER` does.
    pub fn connection_admin_privilege(&self) -> Option<&'static str> {
        match self.flavor {
            Flavor::MariaDb if self.version >= (10, 5, 2) => Some("CONNECTION ADMIN"),
            Flavor::Mysql if self.version >= (8, 0, 0) => Some("CONNECTION_ADMIN"),
            _ => None,
        }
    }

    /// Why this server cannot hold two passwords per user, or `None` if it can
    /// (MySQL 8.0.14 and later).
    pub fn dual_unsupported(&self) -> Option<String> {
        match self.flavor {
            Flavor::MariaDb => Some(format!(
                "MariaDB has no RETAIN CURRENT PASSWORD (two passwords per user; server: {}); \
                 use strategy = \"alternating\"",
                self.label()
            )),
            Flavor::Mysql if self.version < (8, 0, 14) => Some(format!(
                "{} has no RETAIN CURRENT PASSWORD (it came with MySQL 8.0.14); use strategy = \"alternating\"",
                self.label()
            )),
            Flavor::Mysql => None,
        }
    }
}

/// `ALTER USER <account> ...` giving the account the mysql_native_password `hash`.
/// MariaDB: `IDENTIFIED BY PASSWORD '*hash'`; MySQL: `IDENTIFIED WITH
/// mysql_native_password AS '*hash'`, with `RETAIN CURRENT PASSWORD` when `retain`
/// (MySQL 8.0.14+, strategy `dual`).
pub fn alter_user_hash(flavor: Flavor, account_sql: &str, hash: &str, retain: bool) -> Zeroizing<String> {
    debug_assert!(is_native_hash(hash));
    let hash = quote_literal(hash);
    Zeroizing::new(match flavor {
        Flavor::MariaDb => format!("ALTER USER {account_sql} IDENTIFIED BY PASSWORD {hash}"),
        Flavor::Mysql if retain => {
            format!("ALTER USER {account_sql} IDENTIFIED WITH mysql_native_password AS {hash} RETAIN CURRENT PASSWORD")
        }
        Flavor::Mysql => format!("ALTER USER {account_sql} IDENTIFIED WITH mysql_native_password AS {hash}"),
    })
}

/// `ALTER USER <account> DISCARD OLD PASSWORD` (MySQL 8.0.14+, strategy `dual`).
pub fn discard_old_password(account_sql: &str) -> String {
    format!("ALTER USER {account_sql} DISCARD OLD PASSWORD")
}

/// The statement a user without privileges runs to change its own password to `hash`.
/// MariaDB: `SET PASSWORD = '*hash'` (a 41-character hash literal is taken as the hash;
/// anything else is refused). MySQL: `ALTER USER CURRENT_USER() IDENTIFIED WITH
/// mysql_native_password AS '*hash'` (MySQL's `SET PASSWORD = '...'` takes plaintext).
pub fn set_own_password_hash(flavor: Flavor, hash: &str) -> Zeroizing<String> {
    debug_assert!(is_native_hash(hash));
    let hash = quote_literal(hash);
    Zeroizing::new(match flavor {
        Flavor::MariaDb => format!("SET PASSWORD = {hash}"),
        Flavor::Mysql => format!("ALTER USER CURRENT_USER() IDENTIFIED WITH mysql_native_password AS {hash}"),
    })
}

/// A name as the server prints it in `SHOW GRANTS`: in backticks, inner backticks
/// doubled.
fn backtick(name: &str) -> String {
    format!("`{}`", name.replace('`', "``"))
}

/// The grants of `user`@`host` (lines of `SHOW GRANTS FOR`) in a form that can be
/// compared with another user's: the grantee becomes `<user>`, and authentication
/// clauses (`IDENTIFIED BY PASSWORD '*…'`, `IDENTIFIED VIA …`) are dropped, so that no
/// password hash survives.
pub fn normalize_grants(lines: &[String], user: &str, host: &str) -> BTreeSet<String> {
    let grantee_forms = [
        format!("{}@{}", backtick(user), backtick(host)),
        quote_account(user, host),
        format!("'{}'@'{}'", user.replace('\'', "''"), host.replace('\'', "''")),
    ];
    lines
        .iter()
        .map(|line| {
            let mut line = line.trim().to_owned();
            for form in &grantee_forms {
                line = line.replace(form.as_str(), "<user>");
            }
            scrub_hashes(&strip_identified(&line))
        })
        .collect()
}

/// Replaces anything shaped like a mysql_native_password hash with `*<hash>`, so that
/// text quoted from the server (grants, error messages) never carries one.
pub(crate) fn scrub_hashes(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = String::with_capacity(text.len());
    let mut i = 0;
    while i < text.len() {
        if bytes[i] == b'*' && i + 41 <= text.len() && bytes[i + 1..i + 41].iter().all(u8::is_ascii_hexdigit) {
            out.push_str("*<hash>");
            i += 41;
        } else {
            let c = text[i..].chars().next().unwrap_or_default();
            out.push(c);
            i += c.len_utf8().max(1);
        }
    }
    out
}

/// Removes ` IDENTIFIED ...` up to ` REQUIRE `, ` WITH ` or the end.
fn strip_identified(line: &str) -> String {
    let Some(start) = line.find(" IDENTIFIED ") else {
        return line.to_owned();
    };
    let rest = &line[start + 1..];
    let end = [" REQUIRE ", " WITH "]
        .iter()
        .filter_map(|kw| rest.find(kw))
        .min()
        .map(|i| start + 1 + i)
        .unwrap_or(line.len());
    format!("{}{}", &line[..start], &line[end..])
}

/// What the admin's own grants (`SHOW GRANTS` lines) allow.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AdminGrants {
    /// How the admin may alter other users, if it may: `ALL PRIVILEGES`, `CREATE USER`
    /// or `UPDATE on mysql.*`.
    pub alter_users: Option<&'static str>,
    /// May read other users' grants (`SELECT` on `mysql.*`).
    pub read_grants: bool,
    /// May see other users' sessions (`PROCESS`).
    pub see_sessions: bool,
    /// May end other users' sessions (`CONNECTION ADMIN`/`CONNECTION_ADMIN` or `SUPER`).
    pub kill_sessions: bool,
}

impl AdminGrants {
    /// Reads `SHOW GRANTS` lines. Privileges that come only through roles the server
    /// does not list there are not seen.
    pub fn parse(lines: &[String]) -> AdminGrants {
        let mut grants = AdminGrants::default();
        for line in lines {
            let Some(rest) = line.trim().strip_prefix("GRANT ") else {
                continue;
            };
            let Some(on) = rest.find(" ON ") else { continue };
            let privileges: Vec<String> = rest[..on].split(',').map(|p| p.trim().to_ascii_uppercase()).collect();
            let target = rest[on + 4..].split(" TO ").next().unwrap_or("").trim();
            let has = |name: &str| {
                privileges
                    .iter()
                    .any(|p| p == name || p == "ALL PRIVILEGES" || p == "ALL")
            };
            match target {
                "*.*" => {
                    if privileges.iter().any(|p| p == "ALL PRIVILEGES" || p == "ALL") {
                        grants.alter_users = Some("ALL PRIVILEGES");
                    } else if has("CREATE USER") && grants.alter_users.is_none() {
                        grants.alter_users = Some("CREATE USER");
                    } else if has("UPDATE") && grants.alter_users.is_none() {
                        grants.alter_users = Some("UPDATE on *.*");
                    }
                    grants.read_grants |= has("SELECT");
                    grants.see_sessions |= has("PROCESS");
                    grants.kill_sessions |= has("SUPER") || has("CONNECTION ADMIN") || has("CONNECTION_ADMIN");
                }
                "`mysql`.*" | "mysql.*" => {
                    if has("UPDATE") && grants.alter_users.is_none() {
                        grants.alter_users = Some("UPDATE on mysql.*");
                    }
                    grants.read_grants |= has("SELECT");
                }
                _ => {}
            }
        }
        grants
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn native_hash_known_vector() {
        assert_eq!(
            *native_password_hash(&Secret::from("password")),
            "*2470C0C06DEE42FD1618BB99005ADCA2EC9D1E19"
        );
        // Empty password still hashes (MySQL stores '' for it, but the hash is well defined).
        assert!(is_native_hash(&native_password_hash(&Secret::from(""))));
        assert!(is_native_hash(&native_password_hash(&Secret::from("pässwörd ✓"))));
        assert!(!is_native_hash("*2470c0c06dee42fd1618bb99005adca2ec9d1e19"));
        assert!(!is_native_hash("password"));
    }

    #[test]
    fn ed25519_known_vectors() {
        // What MariaDB 10.11 stores for `IDENTIFIED VIA ed25519 USING PASSWORD('abc')`.
        assert_eq!(
            *ed25519_password_hash(&Secret::from("abc")),
            "lEiAPNNMP1kq0dRsguIBKo/em5EPb9Y0272TblVhRUw"
        );
        let other = ed25519_password_hash(&Secret::from("pässwörd ✓"));
        assert_eq!(other.len(), 43);
        assert!(other
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'+' || b == b'/'));
        assert_eq!(*base64_unpadded(b"f"), "Zg");
        assert_eq!(*base64_unpadded(b"fo"), "Zm8");
        assert_eq!(*base64_unpadded(b"foo"), "Zm9v");
        assert_eq!(*base64_unpadded(b"\xff\xfe\xfd\xfc"), "//79/A");
    }

    #[test]
    fn literals_and_accounts() {
        assert_eq!(quote_literal("app"), "'app'");
        assert_eq!(quote_literal("o'brien"), "'o\\'brien'");
        assert_eq!(quote_literal("a\\b"), "'a\\\\b'");
        assert_eq!(quote_literal("x'; DROP USER root; --"), "'x\\'; DROP USER root; --'");
        assert_eq!(quote_literal("ünï"), "'ünï'");
        assert_eq!(quote_account("app", "%"), "'app'@'%'");
        assert_eq!(quote_account("o'b", "10.0.%"), "'o\\'b'@'10.0.%'");
    }

    #[test]
    fn mariadb_statements() {
        let hash = "*2470C0C06DEE42FD1618BB99005ADCA2EC9D1E19";
        assert_eq!(
            *alter_user_hash(Flavor::MariaDb, "'app'@'%'", hash, false),
            "ALTER USER 'app'@'%' IDENTIFIED BY PASSWORD '*2470C0C06DEE42FD1618BB99005ADCA2EC9D1E19'"
        );
        assert_eq!(
            *set_own_password_hash(Flavor::MariaDb, hash),
            "SET PASSWORD = '*2470C0C06DEE42FD1618BB99005ADCA2EC9D1E19'"
        );
    }

    /// MySQL 8 statements, checked against the documented grammar only: no MySQL 8
    /// server is available where these tests run.
    #[test]
    fn mysql8_statements() {
        let hash = "*2470C0C06DEE42FD1618BB99005ADCA2EC9D1E19";
        assert_eq!(
            *alter_user_hash(Flavor::Mysql, "'app'@'%'", hash, false),
            "ALTER USER 'app'@'%' IDENTIFIED WITH mysql_native_password AS '*2470C0C06DEE42FD1618BB99005ADCA2EC9D1E19'"
        );
        assert_eq!(
            *alter_user_hash(Flavor::Mysql, "'app'@'%'", hash, true),
            "ALTER USER 'app'@'%' IDENTIFIED WITH mysql_native_password AS \
             '*2470C0C06DEE42FD1618BB99005ADCA2EC9D1E19' RETAIN CURRENT PASSWORD"
        );
        assert_eq!(
            discard_old_password("'app'@'%'"),
            "ALTER USER 'app'@'%' DISCARD OLD PASSWORD"
        );
        assert_eq!(
            *set_own_password_hash(Flavor::Mysql, hash),
            "ALTER USER CURRENT_USER() IDENTIFIED WITH mysql_native_password AS \
             '*2470C0C06DEE42FD1618BB99005ADCA2EC9D1E19'"
        );
    }

    #[test]
    fn server_versions() {
        let m = ServerInfo::from_version("10.11.19-MariaDB-0+deb12u1");
        assert_eq!((m.flavor, m.version), (Flavor::MariaDb, (10, 11, 19)));
        assert!(m.dual_unsupported().unwrap().contains("alternating"));
        let m = ServerInfo::from_version("5.5.5-10.6.12-MariaDB");
        assert_eq!((m.flavor, m.version), (Flavor::MariaDb, (10, 6, 12)));
        let my = ServerInfo::from_version("8.0.36");
        assert_eq!((my.flavor, my.version), (Flavor::Mysql, (8, 0, 36)));
        assert_eq!(my.dual_unsupported(), None);
        assert!(ServerInfo::from_version("8.0.13").dual_unsupported().is_some());
        assert!(ServerInfo::from_version("5.7.44-log").dual_unsupported().is_some());
        assert_eq!(ServerInfo::from_version("8.4.0").label(), "MySQL 8.4.0");
        let connection_admin = |v: &str| ServerInfo::from_version(v).connection_admin_privilege();
        assert_eq!(connection_admin("10.11.19-MariaDB-0+deb12u1"), Some("CONNECTION ADMIN"));
        assert_eq!(connection_admin("10.5.1-MariaDB"), None);
        assert_eq!(connection_admin("8.0.36"), Some("CONNECTION_ADMIN"));
        assert_eq!(connection_admin("5.7.44-log"), None);
    }

    #[test]
    fn grants_normalize_without_hashes() {
        let a = vec![
            "GRANT USAGE ON *.* TO `app_a`@`%` IDENTIFIED BY PASSWORD '*2470C0C06DEE42FD1618BB99005ADCA2EC9D1E19'"
                .to_owned(),
            "GRANT SELECT, INSERT ON `orders`.* TO `app_a`@`%`".to_owned(),
        ];
        let b = vec![
            "GRANT USAGE ON *.* TO `app_b`@`%` IDENTIFIED BY PASSWORD '*0000000000000000000000000000000000000000' \
             WITH MAX_USER_CONNECTIONS 5"
                .to_owned(),
            "GRANT SELECT, INSERT ON `orders`.* TO `app_b`@`%`".to_owned(),
        ];
        let na = normalize_grants(&a, "app_a", "%");
        let nb = normalize_grants(&b, "app_b", "%");
        assert!(na.contains("GRANT USAGE ON *.* TO <user>"), "{na:?}");
        assert!(
            nb.contains("GRANT USAGE ON *.* TO <user> WITH MAX_USER_CONNECTIONS 5"),
            "{nb:?}"
        );
        assert!(na.contains("GRANT SELECT, INSERT ON `orders`.* TO <user>"));
        assert!(!format!("{na:?}{nb:?}").contains("*2470"));
        assert_eq!(
            scrub_hashes("near '*2470C0C06DEE42FD1618BB99005ADCA2EC9D1E19' ü at line 1"),
            "near '*<hash>' ü at line 1"
        );
        let odd = vec!["GRANT USAGE ON *.* TO `o'q``x`@`%`".to_owned()];
        assert!(normalize_grants(&odd, "o'q`x", "%").contains("GRANT USAGE ON *.* TO <user>"));
    }

    #[test]
    fn admin_grants() {
        let lines = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        let all = AdminGrants::parse(&lines(&[
            "GRANT ALL PRIVILEGES ON *.* TO `root`@`localhost` IDENTIFIED VIA unix_socket WITH GRANT OPTION",
        ]));
        assert_eq!(all.alter_users, Some("ALL PRIVILEGES"));
        assert!(all.read_grants && all.see_sessions && all.kill_sessions);
        let minimal = AdminGrants::parse(&lines(&[
            "GRANT PROCESS, CREATE USER, CONNECTION ADMIN ON *.* TO `rekey`@`%` IDENTIFIED BY PASSWORD '*AB'",
            "GRANT SELECT ON `mysql`.* TO `rekey`@`%`",
        ]));
        assert_eq!(
            minimal,
            AdminGrants {
                alter_users: Some("CREATE USER"),
                read_grants: true,
                see_sessions: true,
                kill_sessions: true
            }
        );
        let none = AdminGrants::parse(&lines(&[
            "GRANT USAGE ON *.* TO `x`@`%`",
            "GRANT SELECT ON `app`.* TO `x`@`%`",
        ]));
        assert_eq!(none, AdminGrants::default());
        let mysql8 = AdminGrants::parse(&lines(&[
            "GRANT PROCESS, CREATE USER ON *.* TO `rekey`@`%`",
            "GRANT CONNECTION_ADMIN ON *.* TO `rekey`@`%`",
            "GRANT UPDATE ON `mysql`.* TO `rekey`@`%`",
        ]));
        assert_eq!(mysql8.alter_users, Some("CREATE USER"));
        assert!(mysql8.kill_sessions && mysql8.see_sessions && !mysql8.read_grants);
    }
}
