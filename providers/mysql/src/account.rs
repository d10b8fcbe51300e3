//! An account's authentication state as the server keeps it, and the statement that
//! changes its password while keeping everything else: every authentication method of a
//! MariaDB `IDENTIFIED VIA a OR b` chain, the TLS requirement, the other host entries of
//! the user.
//!
//! Read with an admin from `mysql.global_priv` (MariaDB 10.4+, the JSON `Priv` column:
//! `plugin`, `authentication_string`, `auth_or`, `ssl_type`, `password_last_changed`,
//! `account_locked`) or `mysql.user` (MySQL); without one, from the user's own
//! `SHOW CREATE USER CURRENT_USER()`.

use crate::sql::{ed25519_password_hash, native_password_hash, quote_account, quote_literal, Flavor};
use rekey_api::Secret;
use std::fmt;
use zeroize::Zeroizing;

/// How rekey treats an authentication plugin.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PluginKind {
    /// `mysql_native_password`: rekey sends `*` + hex SHA1(SHA1(password)).
    Native,
    /// MariaDB `ed25519`: rekey sends the base64 public key derived from the password.
    Ed25519,
    /// No password at all: the identity comes from the operating system or Kerberos
    /// (`unix_socket`, `auth_socket`, `named_pipe`, `gssapi`, `authentication_windows`).
    /// Kept as it is.
    NoPassword,
    /// The password is checked outside the server (`pam`, LDAP): kept as it is, never
    /// changed by rekey.
    External,
    /// A password plugin whose hash rekey does not compute (`caching_sha2_password`,
    /// `sha256_password`, `parsec`, `mysql_old_password`, `mysql_clear_password`).
    Unhashable,
    /// Any other plugin.
    Unknown,
}

impl PluginKind {
    /// The kind of the plugin named `name` (as `mysql.user.plugin` spells it).
    pub fn of(name: &str) -> PluginKind {
        match name.to_ascii_lowercase().as_str() {
            "" | "mysql_native_password" => PluginKind::Native,
            "ed25519" | "client_ed25519" => PluginKind::Ed25519,
            "unix_socket" | "auth_socket" | "named_pipe" | "gssapi" | "authentication_windows" => {
                PluginKind::NoPassword
            }
            "pam" | "auth_pam" | "authentication_pam" | "authentication_ldap_simple" | "authentication_ldap_sasl" => {
                PluginKind::External
            }
            "caching_sha2_password" | "sha256_password" | "parsec" | "mysql_old_password" | "mysql_clear_password" => {
                PluginKind::Unhashable
            }
            _ => PluginKind::Unknown,
        }
    }

    /// Whether a method of this kind checks a password the server stores (the password
    /// rekey rotates).
    pub fn holds_password(self) -> bool {
        matches!(self, PluginKind::Native | PluginKind::Ed25519 | PluginKind::Unhashable)
    }
}

/// One authentication method of an account: its plugin and authentication string
/// (a password hash for password plugins). `Debug` never shows the string.
#[derive(Clone, PartialEq, Eq)]
pub struct Method {
    /// Plugin name, such as `mysql_native_password`, `unix_socket`, `ed25519`.
    pub plugin: String,
    /// `authentication_string`: the hash, a PAM service name, or empty.
    pub auth: Zeroizing<String>,
}

impl fmt::Debug for Method {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Method")
            .field("plugin", &self.plugin)
            .field("auth", &if self.auth.is_empty() { "" } else { "<redacted>" })
            .finish()
    }
}

impl Method {
    fn new(plugin: &str, auth: &str) -> Method {
        let plugin = if plugin.is_empty() {
            "mysql_native_password"
        } else {
            plugin
        };
        Method {
            plugin: plugin.to_owned(),
            auth: Zeroizing::new(auth.to_owned()),
        }
    }

    /// How rekey treats this method's plugin.
    pub fn kind(&self) -> PluginKind {
        PluginKind::of(&self.plugin)
    }
}

/// The TLS requirement of an account (`REQUIRE ...`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum TlsRequirement {
    /// `REQUIRE NONE`.
    #[default]
    None,
    /// `REQUIRE SSL`: any TLS connection.
    Ssl,
    /// `REQUIRE X509`: TLS with a valid client certificate.
    X509,
    /// `REQUIRE ISSUER/SUBJECT/CIPHER ...`.
    Specified,
}

impl TlsRequirement {
    /// The `REQUIRE` clause, for messages.
    pub fn clause(self) -> &'static str {
        match self {
            TlsRequirement::None => "REQUIRE NONE",
            TlsRequirement::Ssl => "REQUIRE SSL",
            TlsRequirement::X509 => "REQUIRE X509",
            TlsRequirement::Specified => "REQUIRE ISSUER/SUBJECT/CIPHER",
        }
    }
}

/// The columns of MySQL's `mysql.user` that make a [`HostEntry`].
#[derive(Clone, Default)]
pub struct MysqlUserRow {
    /// `plugin`.
    pub plugin: String,
    /// `authentication_string` (read only for `mysql_native_password`).
    pub auth: Zeroizing<String>,
    /// `ssl_type`: empty, `ANY`, `X509` or `SPECIFIED`.
    pub ssl_type: String,
    /// `password_expired`: `Y` or `N`.
    pub expired: String,
    /// `account_locked`: `Y` or `N`.
    pub locked: String,
    /// `password_lifetime` in days, if set per account.
    pub lifetime: Option<i64>,
    /// `max_user_connections` (0: no limit of its own).
    pub max_user_connections: i64,
}

/// One host entry of a user (`'user'@'host'`) and its authentication state.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HostEntry {
    /// The user name.
    pub user: String,
    /// The host part.
    pub host: String,
    /// The authentication methods, in order (`IDENTIFIED VIA a OR b`); one for MySQL.
    pub methods: Vec<Method>,
    /// The TLS requirement.
    pub tls: TlsRequirement,
    /// `PASSWORD EXPIRE`: the password must be changed before anything else.
    pub expired: bool,
    /// `ACCOUNT LOCK`: every login is refused.
    pub locked: bool,
    /// The password lifetime policy (`PASSWORD EXPIRE DEFAULT | NEVER | INTERVAL n DAY`).
    pub lifetime: Lifetime,
    /// `MAX_USER_CONNECTIONS` of the entry: at most this many sessions at once (0: no
    /// limit of its own).
    pub max_user_connections: i64,
}

/// An account's password lifetime policy, as the server keeps it: MariaDB's
/// `password_lifetime` in `mysql.global_priv` (absent or -1: default, 0: never, n: days),
/// MySQL's `mysql.user.password_lifetime` (NULL: default, 0: never, n: days).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Lifetime {
    /// `PASSWORD EXPIRE DEFAULT`: the server's `default_password_lifetime` applies.
    #[default]
    Default,
    /// `PASSWORD EXPIRE NEVER`.
    Never,
    /// `PASSWORD EXPIRE INTERVAL n DAY`.
    Days(i64),
}

impl Lifetime {
    /// The policy of a stored `password_lifetime` value.
    pub fn from_stored(value: Option<i64>) -> Lifetime {
        match value {
            Some(0) => Lifetime::Never,
            Some(days) if days > 0 => Lifetime::Days(days),
            _ => Lifetime::Default,
        }
    }

    /// The clause that sets it: `PASSWORD EXPIRE INTERVAL 30 DAY`.
    pub fn clause(self) -> String {
        match self {
            Lifetime::Default => "PASSWORD EXPIRE DEFAULT".to_owned(),
            Lifetime::Never => "PASSWORD EXPIRE NEVER".to_owned(),
            Lifetime::Days(days) => format!("PASSWORD EXPIRE INTERVAL {days} DAY"),
        }
    }
}

impl HostEntry {
    /// `'user'@'host'`.
    pub fn account(&self) -> String {
        quote_account(&self.user, &self.host)
    }

    /// An entry from MariaDB's `mysql.global_priv.Priv` JSON. `None` for a role or text
    /// that is not a JSON object.
    pub fn from_mariadb_priv(user: &str, host: &str, json: &str) -> Option<HostEntry> {
        let value: serde_json::Value = serde_json::from_str(json).ok()?;
        let object = value.as_object()?;
        if object.get("is_role").and_then(serde_json::Value::as_bool) == Some(true) {
            return None;
        }
        let text =
            |v: &serde_json::Value, key: &str| v.get(key).and_then(serde_json::Value::as_str).unwrap_or("").to_owned();
        let top = Method::new(&text(&value, "plugin"), &text(&value, "authentication_string"));
        let methods = match object.get("auth_or").and_then(serde_json::Value::as_array) {
            Some(chain) if !chain.is_empty() => chain
                .iter()
                .map(|m| {
                    if m.get("plugin").is_some() {
                        Method::new(&text(m, "plugin"), &text(m, "authentication_string"))
                    } else {
                        // `{}` stands for the top-level plugin and string.
                        top.clone()
                    }
                })
                .collect(),
            _ => vec![top],
        };
        let number = |key: &str| object.get(key).and_then(serde_json::Value::as_i64);
        Some(HostEntry {
            user: user.to_owned(),
            host: host.to_owned(),
            methods,
            tls: match number("ssl_type") {
                Some(1) => TlsRequirement::Ssl,
                Some(2) => TlsRequirement::X509,
                Some(3) => TlsRequirement::Specified,
                _ => TlsRequirement::None,
            },
            expired: number("password_last_changed") == Some(0),
            locked: object.get("account_locked").and_then(serde_json::Value::as_bool) == Some(true),
            lifetime: Lifetime::from_stored(number("password_lifetime")),
            max_user_connections: number("max_user_connections").unwrap_or(0),
        })
    }

    /// An entry from MySQL's `mysql.user` columns.
    pub fn from_mysql_user(user: &str, host: &str, row: &MysqlUserRow) -> HostEntry {
        HostEntry {
            user: user.to_owned(),
            host: host.to_owned(),
            methods: vec![Method::new(&row.plugin, &row.auth)],
            tls: tls_from_text(&row.ssl_type),
            expired: row.expired.eq_ignore_ascii_case("Y"),
            locked: row.locked.eq_ignore_ascii_case("Y"),
            lifetime: Lifetime::from_stored(row.lifetime),
            max_user_connections: row.max_user_connections,
        }
    }

    /// The plugins, as `IDENTIFIED VIA` lists them: `unix_socket OR mysql_native_password`.
    pub fn methods_label(&self) -> String {
        self.methods
            .iter()
            .map(|m| m.plugin.as_str())
            .collect::<Vec<_>>()
            .join(" OR ")
    }

    /// Whether any method checks a password the server stores.
    pub fn has_password(&self) -> bool {
        self.methods.iter().any(|m| m.kind().holds_password())
    }

    /// The methods' plugins and strings that check a stored password.
    fn password_fingerprints(&self) -> impl Iterator<Item = (&str, &str)> {
        self.methods
            .iter()
            .filter(|m| m.kind().holds_password())
            .map(|m| (m.plugin.as_str(), m.auth.as_str()))
    }

    /// Whether this entry stores the password whose hashes are `hashes` (see
    /// [`password_fingerprints`]) or shares a stored password with `other`.
    pub fn shares_password(&self, other: Option<&HostEntry>, hashes: &[(String, Zeroizing<String>)]) -> bool {
        self.password_fingerprints().any(|(plugin, auth)| {
            hashes
                .iter()
                .any(|(p, h)| p.eq_ignore_ascii_case(plugin) && h.as_str() == auth)
                || other.is_some_and(|o| {
                    o.password_fingerprints()
                        .any(|(p, h)| p.eq_ignore_ascii_case(plugin) && h == auth)
                })
        })
    }

    /// Why the password of this entry cannot be rotated keeping its other properties, or
    /// `None`. `switch_plugin`: a password method rekey cannot hash may become
    /// mysql_native_password.
    pub fn rotation_refused(&self, flavor: Flavor, switch_plugin: bool) -> Option<String> {
        let account = self.account();
        if !self.has_password() {
            let external = self.methods.iter().any(|m| m.kind() == PluginKind::External);
            return Some(if external {
                format!(
                    "{account} authenticates via {} only: its password is checked outside the server, there is \
                     no password here for rekey to rotate",
                    self.methods_label()
                )
            } else {
                format!(
                    "{account} authenticates via {} only and has no password: rekey never gives an account a \
                     password it did not have (add one yourself with ALTER USER {account} IDENTIFIED VIA {} OR \
                     mysql_native_password USING PASSWORD('...') if that is what you want)",
                    self.methods_label(),
                    self.methods_label()
                )
            });
        }
        for method in &self.methods {
            match method.kind() {
                PluginKind::Unknown => {
                    return Some(format!(
                        "{account} authenticates via {}, and rekey does not know the plugin `{}`: it cannot tell \
                         whether it holds the password, so it will not rotate the account",
                        self.methods_label(),
                        method.plugin
                    ))
                }
                PluginKind::Unhashable if !switch_plugin => {
                    return Some(format!(
                        "{account} authenticates via {}: rekey cannot compute a `{}` hash on its side, and sending \
                         the password in plaintext is not an option; set `switch_plugin = true` to move that \
                         method to mysql_native_password at rotation",
                        self.methods_label(),
                        method.plugin
                    ))
                }
                PluginKind::Ed25519 if flavor == Flavor::Mysql => {
                    return Some(format!(
                        "{account} authenticates via ed25519, which MySQL does not have"
                    ))
                }
                PluginKind::Ed25519 => {
                    // rekey's client is built without ed25519 (its ed25519 login was seen
                    // refusing some correctly stored passwords), so a new password could not
                    // be verified (and a single rotation would leave no working one).
                    return Some(format!(
                        "{account} authenticates via ed25519: rekey's MariaDB client cannot log in with ed25519 \
                         (it is built without it), so a rotation could not be verified; change the account to \
                         mysql_native_password, or rotate it by hand"
                    ));
                }
                _ => {}
            }
            if !is_plugin_name(&method.plugin) {
                return Some(format!(
                    "{account} has an authentication plugin name rekey cannot quote"
                ));
            }
        }
        if flavor == Flavor::Mysql && self.methods.len() > 1 {
            return Some(format!(
                "{account} has several authentication methods, which rekey cannot keep on MySQL"
            ));
        }
        match self.tls {
            TlsRequirement::X509 | TlsRequirement::Specified => Some(format!(
                "{account} has {}: logins must present a client certificate, which rekey's logins do not, so \
                 the new password could never be verified",
                self.tls.clause()
            )),
            TlsRequirement::None | TlsRequirement::Ssl => None,
        }
    }

    /// The `IDENTIFIED ...` clause giving this entry the password `password`, keeping
    /// every other method as it is (in order, with its authentication string). The
    /// caller checked [`HostEntry::rotation_refused`].
    pub fn identified_clause(&self, flavor: Flavor, password: &Secret) -> Zeroizing<String> {
        let native = || native_password_hash(password);
        if flavor == Flavor::Mysql {
            return Zeroizing::new(format!(
                "IDENTIFIED WITH mysql_native_password AS {}",
                quote_literal(&native())
            ));
        }
        if let [only] = self.methods.as_slice() {
            if matches!(only.kind(), PluginKind::Native | PluginKind::Unhashable) {
                return Zeroizing::new(format!("IDENTIFIED BY PASSWORD {}", quote_literal(&native())));
            }
        }
        let mut clause = Zeroizing::new(String::from("IDENTIFIED VIA "));
        for (i, method) in self.methods.iter().enumerate() {
            if i > 0 {
                clause.push_str(" OR ");
            }
            match method.kind() {
                PluginKind::Native | PluginKind::Unhashable => {
                    clause.push_str("mysql_native_password USING ");
                    clause.push_str(&quote_literal(&native()));
                }
                PluginKind::Ed25519 => {
                    clause.push_str("ed25519 USING ");
                    clause.push_str(&quote_literal(&ed25519_password_hash(password)));
                }
                PluginKind::NoPassword | PluginKind::External | PluginKind::Unknown => {
                    clause.push_str(&method.plugin);
                    if !method.auth.is_empty() {
                        clause.push_str(" USING ");
                        clause.push_str(&quote_literal(&method.auth));
                    }
                }
            }
        }
        clause
    }
}

fn tls_from_text(ssl_type: &str) -> TlsRequirement {
    match ssl_type.to_ascii_uppercase().as_str() {
        "ANY" => TlsRequirement::Ssl,
        "X509" => TlsRequirement::X509,
        "SPECIFIED" => TlsRequirement::Specified,
        _ => TlsRequirement::None,
    }
}

/// A plugin name rekey writes unquoted into `IDENTIFIED VIA`.
fn is_plugin_name(name: &str) -> bool {
    !name.is_empty() && name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_')
}

/// The hashes of `password` under every plugin rekey can hash, to find the entries that
/// store it.
pub fn password_hashes(password: &Secret) -> Vec<(String, Zeroizing<String>)> {
    vec![
        ("mysql_native_password".to_owned(), native_password_hash(password)),
        ("ed25519".to_owned(), ed25519_password_hash(password)),
    ]
}

/// What a rotation does to the host entries of one user.
#[derive(Debug, Clone, Default)]
pub struct AccountPlan {
    /// The entries that get the new password: the configured one first, then the other
    /// entries that store the same password.
    pub rotate: Vec<HostEntry>,
    /// The other entries, left as they are, each with why.
    pub untouched: Vec<(HostEntry, String)>,
}

impl AccountPlan {
    /// Splits `entries` of one user: `configured` (its host) and every other entry that
    /// stores a password `known` hashes to, or the configured entry's password, get the
    /// new password; the rest are left with the reason.
    pub fn new(
        mut entries: Vec<HostEntry>,
        configured: &str,
        known: &[(String, Zeroizing<String>)],
    ) -> Option<AccountPlan> {
        let index = entries.iter().position(|e| e.host == configured)?;
        let main = entries.remove(index);
        let mut plan = AccountPlan::default();
        entries.sort_by(|a, b| a.host.cmp(&b.host));
        for entry in entries {
            if !entry.has_password() {
                let why = format!(
                    "authenticates via {} without a password: left as it is",
                    entry.methods_label()
                );
                plan.untouched.push((entry, why));
            } else if entry.shares_password(Some(&main), known) {
                plan.rotate.push(entry);
            } else {
                plan.untouched.push((
                    entry,
                    "has another password: left as it is (the rotated password does not log in through it)".to_owned(),
                ));
            }
        }
        plan.rotate.insert(0, main);
        Some(plan)
    }

    /// The configured entry.
    pub fn main(&self) -> &HostEntry {
        &self.rotate[0]
    }

    /// The `ALTER USER` statement giving every entry of [`AccountPlan::rotate`] the new
    /// password, each keeping its other methods; with `retain`, `RETAIN CURRENT
    /// PASSWORD` (MySQL 8.0.14+); with `lifetime`, that `PASSWORD EXPIRE …` option for
    /// every entry (without it each keeps its own).
    pub fn alter_statement(
        &self,
        flavor: Flavor,
        password: &Secret,
        retain: bool,
        lifetime: Option<&str>,
    ) -> Zeroizing<String> {
        let mut sql = alter_entries(&self.rotate, flavor, password, retain);
        if let Some(option) = lifetime {
            sql.push(' ');
            sql.push_str(option);
        }
        sql
    }
}

/// `ALTER USER a IDENTIFIED ..., b IDENTIFIED ...` for `entries`.
pub fn alter_entries(entries: &[HostEntry], flavor: Flavor, password: &Secret, retain: bool) -> Zeroizing<String> {
    let mut sql = Zeroizing::new(String::from("ALTER USER "));
    for (i, entry) in entries.iter().enumerate() {
        if i > 0 {
            sql.push_str(", ");
        }
        sql.push_str(&entry.account());
        sql.push(' ');
        sql.push_str(&entry.identified_clause(flavor, password));
        if retain && flavor == Flavor::Mysql {
            sql.push_str(" RETAIN CURRENT PASSWORD");
        }
    }
    sql
}

/// What the user's own `SHOW CREATE USER CURRENT_USER()` says (the path without an
/// admin): the plugins of its methods and the TLS requirement.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct OwnAccount {
    /// Plugin names in order.
    pub plugins: Vec<String>,
    /// The TLS requirement.
    pub tls: TlsRequirement,
}

impl OwnAccount {
    /// Reads the `CREATE USER` statement: `IDENTIFIED BY PASSWORD '…'`,
    /// `IDENTIFIED VIA a [USING '…'] OR b …` (MariaDB) or `IDENTIFIED WITH 'a' AS '…'`
    /// (MySQL), and `REQUIRE …`. `None` when it cannot be read.
    pub fn parse(statement: &str) -> Option<OwnAccount> {
        let tokens = tokenize(statement)?;
        let word = |i: usize| match tokens.get(i) {
            Some(Token::Word(w)) => Some(w.to_ascii_uppercase()),
            _ => None,
        };
        let name = |i: usize| match tokens.get(i) {
            Some(Token::Word(w) | Token::Quoted(w)) => Some(w.clone()),
            _ => None,
        };
        let mut own = OwnAccount::default();
        let mut i = 0;
        while i < tokens.len() {
            match word(i).as_deref() {
                Some("IDENTIFIED") => match word(i + 1).as_deref() {
                    Some("BY") => {
                        own.plugins = vec!["mysql_native_password".to_owned()];
                        i += 2;
                    }
                    Some("VIA" | "WITH") => {
                        i += 2;
                        loop {
                            own.plugins.push(name(i)?);
                            i += 1;
                            if matches!(word(i).as_deref(), Some("USING" | "AS" | "BY")) {
                                i += 2;
                            }
                            if word(i).as_deref() == Some("OR") {
                                i += 1;
                            } else {
                                break;
                            }
                        }
                    }
                    _ => i += 1,
                },
                Some("REQUIRE") => {
                    own.tls = match word(i + 1).as_deref() {
                        Some("SSL") => TlsRequirement::Ssl,
                        Some("X509") => TlsRequirement::X509,
                        Some("NONE") => TlsRequirement::None,
                        _ => TlsRequirement::Specified,
                    };
                    i += 2;
                }
                _ => i += 1,
            }
        }
        if own.plugins.is_empty() {
            // `CREATE USER 'u'@'h'` alone: no password, the default plugin.
            own.plugins.push("mysql_native_password".to_owned());
        }
        Some(own)
    }
}

#[derive(Debug, PartialEq, Eq)]
enum Token {
    Word(String),
    /// A `'…'`, `"…"` or `` `…` `` string, unescaped.
    Quoted(String),
    Punct(char),
}

/// Splits a statement into words, quoted strings (with `\` and doubled-quote escapes)
/// and punctuation. `None` for an unterminated string.
fn tokenize(text: &str) -> Option<Vec<Token>> {
    let mut tokens = Vec::new();
    let mut chars = text.chars().peekable();
    while let Some(c) = chars.next() {
        if c.is_whitespace() {
            continue;
        }
        if c == '\'' || c == '"' || c == '`' {
            let mut value = String::new();
            loop {
                let next = chars.next()?;
                if next == '\\' && c != '`' {
                    value.push(chars.next()?);
                } else if next == c {
                    if chars.peek() == Some(&c) {
                        chars.next();
                        value.push(c);
                    } else {
                        break;
                    }
                } else {
                    value.push(next);
                }
            }
            tokens.push(Token::Quoted(value));
        } else if c.is_alphanumeric() || c == '_' || c == '$' {
            let mut word = String::from(c);
            while let Some(&n) = chars.peek() {
                if n.is_alphanumeric() || n == '_' || n == '$' {
                    word.push(n);
                    chars.next();
                } else {
                    break;
                }
            }
            tokens.push(Token::Word(word));
        } else {
            tokens.push(Token::Punct(c));
        }
    }
    Some(tokens)
}

#[cfg(test)]
mod tests {
    use super::*;

    const NATIVE: &str = "*0D3CED9BEC10A777AEC23CCC353A8C08A633045E";

    fn entry(json: &str) -> HostEntry {
        HostEntry::from_mariadb_priv("app", "%", json).unwrap()
    }

    #[test]
    fn mariadb_chains() {
        let e = entry(&format!(
            r#"{{"access":0,"plugin":"mysql_native_password","authentication_string":"{NATIVE}",
               "auth_or":[{{"plugin":"unix_socket"}},{{}}],"ssl_type":1,"password_last_changed":0,
               "password_lifetime":-1}}"#
        ));
        assert_eq!(e.methods_label(), "unix_socket OR mysql_native_password");
        assert_eq!(e.methods[1].auth.as_str(), NATIVE);
        assert_eq!((e.tls, e.expired, e.locked), (TlsRequirement::Ssl, true, false));
        assert_eq!(e.rotation_refused(Flavor::MariaDb, false), None);
        let pw = Secret::from("password");
        assert_eq!(
            *e.identified_clause(Flavor::MariaDb, &pw),
            "IDENTIFIED VIA unix_socket OR mysql_native_password USING '*2470C0C06DEE42FD1618BB99005ADCA2EC9D1E19'"
        );
        assert!(!format!("{e:?}").contains("0D3CED"), "Debug hides hashes");

        let plain = entry(&format!(
            r#"{{"plugin":"mysql_native_password","authentication_string":"{NATIVE}"}}"#
        ));
        assert_eq!(
            *plain.identified_clause(Flavor::MariaDb, &pw),
            "IDENTIFIED BY PASSWORD '*2470C0C06DEE42FD1618BB99005ADCA2EC9D1E19'"
        );

        let ed = entry(
            r#"{"plugin":"mysql_native_password","authentication_string":"*AB",
               "auth_or":[{"plugin":"ed25519","authentication_string":"x"},{"plugin":"pam","authentication_string":"svc'1"},{}]}"#,
        );
        assert_eq!(
            *ed.identified_clause(Flavor::MariaDb, &Secret::from("abc")),
            "IDENTIFIED VIA ed25519 USING 'lEiAPNNMP1kq0dRsguIBKo/em5EPb9Y0272TblVhRUw' OR pam USING 'svc\\'1' OR \
             mysql_native_password USING '*0D3CED9BEC10A777AEC23CCC353A8C08A633045E'"
        );
        assert!(HostEntry::from_mariadb_priv("r", "", r#"{"is_role":true}"#).is_none());
    }

    #[test]
    fn refusals() {
        let socket = entry(r#"{"plugin":"unix_socket","authentication_string":""}"#);
        assert!(socket
            .rotation_refused(Flavor::MariaDb, true)
            .unwrap()
            .contains("has no password"));
        let pam = entry(r#"{"plugin":"pam","authentication_string":""}"#);
        assert!(pam
            .rotation_refused(Flavor::MariaDb, false)
            .unwrap()
            .contains("outside the server"));
        let odd = entry(
            r#"{"plugin":"mysql_native_password","authentication_string":"","auth_or":[{"plugin":"webauthn"},{}]}"#,
        );
        assert!(odd
            .rotation_refused(Flavor::MariaDb, true)
            .unwrap()
            .contains("`webauthn`"));
        let row = |plugin: &str, auth: &str, ssl: &str| MysqlUserRow {
            plugin: plugin.into(),
            auth: Zeroizing::new(auth.into()),
            ssl_type: ssl.into(),
            expired: "N".into(),
            locked: "N".into(),
            lifetime: None,
            max_user_connections: 0,
        };
        let sha2 = HostEntry::from_mysql_user("app", "%", &row("caching_sha2_password", "", ""));
        assert!(sha2
            .rotation_refused(Flavor::Mysql, false)
            .unwrap()
            .contains("switch_plugin = true"));
        assert_eq!(sha2.rotation_refused(Flavor::Mysql, true), None);
        let x509 = HostEntry::from_mysql_user("app", "%", &row("mysql_native_password", NATIVE, "X509"));
        assert!(x509
            .rotation_refused(Flavor::Mysql, false)
            .unwrap()
            .contains("client certificate"));
    }

    #[test]
    fn plans_keep_other_passwords() {
        let pw = Secret::from("abc");
        let mk = |host: &str, json: &str| HostEntry::from_mariadb_priv("app", host, json).unwrap();
        let same = format!(r#"{{"plugin":"mysql_native_password","authentication_string":"{NATIVE}"}}"#);
        let entries = vec![
            mk("localhost", &same),
            mk("%", &same),
            mk(
                "10.%",
                r#"{"plugin":"mysql_native_password","authentication_string":"*FFFF"}"#,
            ),
            mk("127.0.0.1", r#"{"plugin":"unix_socket"}"#),
        ];
        let plan = AccountPlan::new(entries.clone(), "%", &[]).unwrap();
        let hosts: Vec<&str> = plan.rotate.iter().map(|e| e.host.as_str()).collect();
        assert_eq!(hosts, ["%", "localhost"]);
        assert_eq!(plan.untouched.len(), 2);
        // Through the known password, even when the configured entry already changed.
        let mut changed = entries.clone();
        changed[1] = mk(
            "%",
            r#"{"plugin":"mysql_native_password","authentication_string":"*1234"}"#,
        );
        assert_eq!(AccountPlan::new(changed.clone(), "%", &[]).unwrap().rotate.len(), 1);
        assert_eq!(
            AccountPlan::new(changed, "%", &password_hashes(&pw))
                .unwrap()
                .rotate
                .len(),
            2
        );
        assert!(AccountPlan::new(entries, "nowhere", &[]).is_none());
        let sql = plan.alter_statement(Flavor::MariaDb, &pw, false, None);
        assert!(
            sql.starts_with("ALTER USER 'app'@'%' IDENTIFIED BY PASSWORD '*0D3C"),
            "{}",
            *sql
        );
        assert!(
            sql.contains(", 'app'@'localhost' IDENTIFIED BY PASSWORD '*0D3C"),
            "{}",
            *sql
        );
        assert!(!sql.contains("EXPIRE"), "keep: each entry keeps its own: {}", *sql);
        // A lifetime option once, after every entry: it applies to all of them.
        let sql = plan.alter_statement(Flavor::MariaDb, &pw, false, Some("PASSWORD EXPIRE INTERVAL 90 DAY"));
        assert!(sql.ends_with("' PASSWORD EXPIRE INTERVAL 90 DAY"), "{}", *sql);
        assert_eq!(sql.matches("PASSWORD EXPIRE").count(), 1, "{}", *sql);
    }

    #[test]
    fn lifetimes() {
        let lifetime = |value: &str| {
            entry(&format!(
                r#"{{"plugin":"mysql_native_password","authentication_string":"{NATIVE}"{value}}}"#
            ))
            .lifetime
        };
        assert_eq!(lifetime(""), Lifetime::Default);
        assert_eq!(lifetime(r#","password_lifetime":-1"#), Lifetime::Default);
        assert_eq!(lifetime(r#","password_lifetime":0"#), Lifetime::Never);
        assert_eq!(lifetime(r#","password_lifetime":30"#), Lifetime::Days(30));
        assert_eq!(Lifetime::Days(30).clause(), "PASSWORD EXPIRE INTERVAL 30 DAY");
        assert_eq!(Lifetime::from_stored(None), Lifetime::Default);
        assert_eq!(Lifetime::from_stored(Some(0)).clause(), "PASSWORD EXPIRE NEVER");
    }

    #[test]
    fn own_show_create_user() {
        let own = OwnAccount::parse(
            "CREATE USER `rkz`@`%` IDENTIFIED VIA ed25519 USING 'lEiA' OR unix_socket OR mysql_native_password \
             USING '*0D3C' REQUIRE SSL",
        )
        .unwrap();
        assert_eq!(own.plugins, ["ed25519", "unix_socket", "mysql_native_password"]);
        assert_eq!(own.tls, TlsRequirement::Ssl);
        let plain = OwnAccount::parse("CREATE USER `a`@`%` IDENTIFIED BY PASSWORD '*0D3C'").unwrap();
        assert_eq!(plain.plugins, ["mysql_native_password"]);
        assert_eq!(plain.tls, TlsRequirement::None);
        let mysql = OwnAccount::parse(
            "CREATE USER `a`@`%` IDENTIFIED WITH 'caching_sha2_password' AS '$A$005$x\\'y' REQUIRE NONE \
             PASSWORD EXPIRE DEFAULT ACCOUNT UNLOCK",
        )
        .unwrap();
        assert_eq!(mysql.plugins, ["caching_sha2_password"]);
        assert!(OwnAccount::parse("CREATE USER 'a").is_none());
    }
}
