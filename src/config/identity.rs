//! Who a target's secret belongs to, and the configurations that rotate one identity
//! twice, or rotate the administrator rekey itself logs in as.
//!
//! An identity is a target type, a place and a principal:
//!
//! | type | place | principal |
//! |---|---|---|
//! | `postgres` | host and port | each role (`username`, or both `usernames`) |
//! | `mysql` | host and port | each user, with `user_host` |
//! | `redis` | host and port | the ACL user |
//! | `aws-iam` | endpoint and profile | the user (IAM names are case-insensitive) |
//! | `vault-approle` | address, namespace and mount | the role (case-insensitive, as Vault treats it) |
//!
//! Hosts compare case-insensitively, without a trailing dot or IPv6 brackets, and
//! `localhost`, `127.0.0.1` and `::1` are taken as one host: on one machine they reach
//! the same server in every setup rekey is meant for, and treating them as different
//! would let the duplicate through. Other names and addresses are not resolved.

use super::{Config, ConfigError, Credential, TargetConfig};
use rekey_api::SecretDoc;
use std::collections::BTreeMap;
use std::net::IpAddr;
use zeroize::Zeroizing;

/// A host as compared (see the module documentation).
pub(crate) fn host_key(host: &str) -> String {
    let trimmed = host.trim();
    let bare = trimmed
        .strip_prefix('[')
        .and_then(|h| h.strip_suffix(']'))
        .unwrap_or(trimmed)
        .trim_end_matches('.')
        .to_ascii_lowercase();
    match bare.parse::<IpAddr>() {
        Ok(ip) if ip.to_string() == "127.0.0.1" || ip.to_string() == "::1" => "localhost".to_owned(),
        Ok(ip) => ip.to_string(),
        Err(_) if bare == "localhost" => "localhost".to_owned(),
        Err(_) => bare,
    }
}

/// One identity: compared by `key`, shown as `shown`.
#[derive(Debug, Clone)]
struct Identity {
    key: (&'static str, String, String),
    shown: String,
}

/// An endpoint URL as compared: scheme, host as [`host_key`], port (the scheme's
/// default when absent) and path, without a trailing `/`.
fn address_key(address: &str) -> String {
    let text = address.trim().trim_end_matches('/');
    let Some((scheme, rest)) = text.split_once("://") else {
        return text.to_ascii_lowercase();
    };
    let scheme = scheme.to_ascii_lowercase();
    let (authority, path) = rest.split_at(rest.find('/').unwrap_or(rest.len()));
    let authority = authority.rsplit_once('@').map_or(authority, |(_, hostport)| hostport);
    let (host, port) = match authority.rsplit_once(':') {
        Some((host, port)) if !port.is_empty() && port.chars().all(|c| c.is_ascii_digit()) => (host, port.to_owned()),
        _ => (
            authority,
            match scheme.as_str() {
                "https" => "443".to_owned(),
                _ => "80".to_owned(),
            },
        ),
    };
    format!("{scheme}://{}:{port}{path}", host_key(host))
}

/// The identities a target rotates. `lookup` supplies `VAULT_ADDR`/`VAULT_NAMESPACE`
/// when the configuration leaves them to the environment.
fn identities(target: &TargetConfig, lookup: &dyn Fn(&str) -> Option<String>) -> Vec<Identity> {
    let place = |host: &str, port: u16| (format!("{}:{port}", host_key(host)), format!("{host}:{port}"));
    match target {
        TargetConfig::Postgres(c) => {
            let (key, shown) = place(&c.host, c.port);
            c.roles()
                .into_iter()
                .map(|role| Identity {
                    key: ("postgres", key.clone(), role.to_owned()),
                    shown: format!("postgres role `{role}` on {shown}"),
                })
                .collect()
        }
        TargetConfig::Mysql(c) => {
            let (key, shown) = place(&c.host, c.port);
            c.users()
                .into_iter()
                .map(|user| Identity {
                    key: ("mysql", key.clone(), format!("{user}\0{}", c.user_host)),
                    shown: format!("mysql user '{user}'@'{}' on {shown}", c.user_host),
                })
                .collect()
        }
        TargetConfig::Redis(c) => {
            let (key, shown) = place(&c.host, c.port);
            vec![Identity {
                key: ("redis", key, c.username.clone()),
                shown: format!("redis user `{}` on {shown}", c.username),
            }]
        }
        TargetConfig::AwsIam(c) => {
            let endpoint = c
                .endpoint_url
                .as_deref()
                .map(|e| e.trim_end_matches('/').to_ascii_lowercase());
            let place = format!(
                "{}|{}",
                endpoint.as_deref().unwrap_or("aws"),
                c.profile.as_deref().unwrap_or("")
            );
            let at = match &c.endpoint_url {
                Some(e) => format!(" at {}", rekey_api::redact::redact(e)),
                None => String::new(),
            };
            vec![Identity {
                key: ("aws-iam", place, c.user.to_ascii_lowercase()),
                shown: format!("aws-iam user `{}`{at}", c.user),
            }]
        }
        TargetConfig::VaultApprole(c) => {
            let address = c.address.clone().or_else(|| lookup("VAULT_ADDR"));
            let namespace = c.namespace.clone().or_else(|| lookup("VAULT_NAMESPACE"));
            let mount = c.mount.trim_matches('/');
            let place = format!(
                "{}|{}|{mount}",
                address.as_deref().map(address_key).unwrap_or_default(),
                namespace.as_deref().unwrap_or("").trim().trim_matches('/')
            );
            vec![Identity {
                key: ("vault-approle", place, c.role.to_ascii_lowercase()),
                shown: format!(
                    "vault-approle role `{}` (mount `{mount}`) on {}",
                    c.role,
                    address.as_deref().unwrap_or("$VAULT_ADDR")
                ),
            }]
        }
        // What an http target rotates is not known from its configuration.
        TargetConfig::Http(_) | TargetConfig::Exec(_) => Vec::new(),
    }
}

/// The identity an administrator connection string logs in as, for the targets that
/// take one: its user on the target's server (the admin must reach that server to
/// change the user). `None` when there is no admin or its user cannot be told.
fn admin_key(target: &TargetConfig) -> Option<(&'static str, String, String)> {
    let place = |host: &str, port: u16| format!("{}:{port}", host_key(host));
    match target {
        TargetConfig::Postgres(c) => {
            let user = postgres_admin_user(c.admin.as_ref()?.expose())?;
            Some(("postgres", place(&c.host, c.port), user))
        }
        TargetConfig::Mysql(c) => {
            // The account's host part is the server's choice: take the target's.
            let user = mysql_admin_user(c.admin.as_ref()?.expose())?;
            Some(("mysql", place(&c.host, c.port), format!("{user}\0{}", c.user_host)))
        }
        TargetConfig::Redis(c) => {
            let user = redis_admin_user(c.admin.as_ref()?.expose())?;
            Some(("redis", place(&c.host, c.port), user))
        }
        TargetConfig::AwsIam(_) | TargetConfig::VaultApprole(_) | TargetConfig::Http(_) | TargetConfig::Exec(_) => None,
    }
}

/// Refuses two credentials rotating one identity, and a credential whose administrator
/// is an identity that a credential (itself or another) rotates.
pub(crate) fn check(
    file: &str,
    targets: &[(&str, &TargetConfig)],
    lookup: &dyn Fn(&str) -> Option<String>,
) -> Result<(), ConfigError> {
    let mut rotated: BTreeMap<(&'static str, String, String), (&str, String)> = BTreeMap::new();
    for (name, target) in targets {
        for identity in identities(target, lookup) {
            if let Some((other, _)) = rotated.get(&identity.key) {
                if other != name {
                    return Err(ConfigError::new(format!(
                        "{file}: credential `{name}`: rotates {}, which credential `{other}` rotates too: each \
                         rotation would leave the other's stored secret dead; configure one credential per identity",
                        identity.shown
                    )));
                }
            }
            rotated.insert(identity.key, (name, identity.shown));
        }
    }
    for (name, target) in targets {
        let Some(admin) = admin_key(target) else { continue };
        let Some((owner, shown)) = rotated.get(&admin) else {
            continue;
        };
        let message = if owner == name {
            format!(
                "{file}: credential `{name}`: `admin` logs in as {shown}, the identity this credential rotates: \
                 after the first rotation the password in `admin` no longer works and rekey is locked out; \
                 use a separate administrator"
            )
        } else {
            format!(
                "{file}: credential `{name}`: `admin` logs in as {shown}, which credential `{owner}` rotates: \
                 once it is rotated the password in `admin` no longer works; use a separate administrator"
            )
        };
        return Err(ConfigError::new(message));
    }
    Ok(())
}

/// A user name, percent-decoded (`None` for a malformed escape or non-UTF-8).
fn percent_decode(text: &str) -> Option<String> {
    rekey_net::percent_decode(text).map(|user| user.as_str().to_owned())
}

fn strip_scheme<'t>(text: &'t str, schemes: &[&str]) -> Option<&'t str> {
    let (scheme, rest) = text.trim().split_once("://")?;
    schemes.iter().any(|s| s.eq_ignore_ascii_case(scheme)).then_some(rest)
}

/// The user of a URL's authority (`user[:password]@host`), percent-decoded. The
/// authority ends at the first `/`, `?` or `#`; the user info at its last `@`.
fn url_user(rest: &str) -> Option<String> {
    let authority = &rest[..rest.find(['/', '?', '#']).unwrap_or(rest.len())];
    let (userinfo, _) = authority.rsplit_once('@')?;
    let user = userinfo.split(':').next().unwrap_or("");
    percent_decode(user)
}

/// The role a PostgreSQL admin connection string (URL or key=value) names. The
/// password is skipped, never copied out.
pub(crate) fn postgres_admin_user(dsn: &str) -> Option<String> {
    if let Some(rest) = strip_scheme(dsn, &["postgres", "postgresql"]) {
        let query_user = rest.split_once('?').and_then(|(_, query)| {
            query
                .split('&')
                .filter_map(|pair| pair.split_once('='))
                .filter(|(k, _)| *k == "user")
                .filter_map(|(_, v)| percent_decode(v))
                .next_back()
        });
        return query_user.or_else(|| url_user(rest)).filter(|u| !u.is_empty());
    }
    key_value_user(dsn)
}

/// `user` of libpq key=value conninfo (values plain with `\` escapes, or single-quoted).
fn key_value_user(text: &str) -> Option<String> {
    let mut chars = text.chars().peekable();
    let mut user = None;
    loop {
        while chars.next_if(|c| c.is_whitespace()).is_some() {}
        if chars.peek().is_none() {
            return user;
        }
        let mut key = String::new();
        while let Some(c) = chars.next_if(|c| !c.is_whitespace() && *c != '=') {
            key.push(c);
        }
        while chars.next_if(|c| c.is_whitespace()).is_some() {}
        if key.is_empty() || chars.next() != Some('=') {
            return None;
        }
        while chars.next_if(|c| c.is_whitespace()).is_some() {}
        let mut value = Zeroizing::new(String::new());
        if chars.next_if_eq(&'\'').is_some() {
            loop {
                match chars.next()? {
                    '\'' => break,
                    '\\' => value.push(chars.next()?),
                    c => value.push(c),
                }
            }
        } else {
            while let Some(c) = chars.next_if(|c| !c.is_whitespace()) {
                value.push(if c == '\\' { chars.next()? } else { c });
            }
        }
        if key == "user" {
            user = Some(value.to_string()).filter(|u| !u.is_empty());
        }
    }
}

/// The user a MySQL admin URL (`mysql://user:pw@host:port/`) names.
pub(crate) fn mysql_admin_user(url: &str) -> Option<String> {
    let rest = strip_scheme(url, &["mysql", "mariadb"])?;
    let before_query = rest.split('?').next().unwrap_or(rest);
    let authority = before_query.split('/').next().unwrap_or(before_query);
    let (userinfo, _) = authority.rsplit_once('@')?;
    percent_decode(userinfo.split(':').next().unwrap_or("")).filter(|u| !u.is_empty())
}

/// The ACL user a Redis admin URL names: `default` when it names none.
pub(crate) fn redis_admin_user(url: &str) -> Option<String> {
    let rest = strip_scheme(url, &["redis", "rediss"])?;
    match url_user(rest) {
        Some(user) if !user.is_empty() => Some(user),
        Some(_) | None => Some("default".to_owned()),
    }
}

/// What a target says of the fields of its documents.
struct Expected<'t> {
    engines: &'static [&'static str],
    host: Option<&'t str>,
    port: Option<u16>,
    users: Vec<&'t str>,
    dbname: Option<&'t str>,
}

impl<'t> Expected<'t> {
    fn of(target: &'t TargetConfig) -> Self {
        let none = Expected {
            engines: &[],
            host: None,
            port: None,
            users: Vec::new(),
            dbname: None,
        };
        match target {
            TargetConfig::Postgres(c) => Expected {
                engines: &["postgres", "postgresql", "aurora-postgresql"],
                host: Some(&c.host),
                port: Some(c.port),
                users: c.roles(),
                dbname: Some(&c.dbname),
            },
            TargetConfig::Mysql(c) => Expected {
                engines: &["mysql", "mariadb", "aurora-mysql", "aurora"],
                host: Some(&c.host),
                port: Some(c.port),
                users: c.users(),
                ..none
            },
            TargetConfig::Redis(c) => Expected {
                engines: &["redis"],
                host: Some(&c.host),
                port: Some(c.port),
                users: vec![c.username.as_str()],
                ..none
            },
            TargetConfig::AwsIam(c) => Expected {
                engines: &[rekey_aws::ENGINE],
                users: vec![c.user.as_str()],
                ..none
            },
            TargetConfig::VaultApprole(_) => Expected {
                engines: &[rekey_vault::ENGINE],
                ..none
            },
            TargetConfig::Http(_) | TargetConfig::Exec(_) => none,
        }
    }
}

/// Checks that a document to be imported for `credential` is about its configured
/// target: each of `engine`, `host`, `port`, `username` and `dbname` that the document
/// holds and the target has must agree with the configuration. Missing fields are fine
/// (the target completes them). Hosts compare as in duplicate detection (`localhost`
/// and `127.0.0.1` are one host); `username` may be either of alternating `usernames`.
///
/// The error names every differing field with both values (none of these fields is
/// secret), for the caller to prefix with the credential and step, e.g. `NAME: import:`.
pub fn check_import_identity(config: &Config, credential: &Credential, doc: &SecretDoc) -> Result<(), String> {
    let Some(target) = config.targets.get(&credential.name) else {
        if let Some(message) = config.unresolved.get(&credential.name) {
            return Err(message.clone());
        }
        return Err(format!("credential `{}` has no target configured", credential.name));
    };
    let Expected {
        engines,
        host,
        port,
        users,
        dbname,
    } = Expected::of(target);
    let mut differences = Vec::new();
    let mut text_field = |field: &str, agrees: &dyn Fn(&str) -> bool, configured: String| match doc.get(field) {
        None => {}
        Some(serde_json::Value::String(found)) if agrees(found) => {}
        Some(serde_json::Value::String(found)) => {
            differences.push(format!("{field} {found:?} (configured {configured})"))
        }
        Some(_) => differences.push(format!("{field} is not a string (configured {configured})")),
    };
    // A target without a known engine (http) does not check the field.
    if let Some(first) = engines.first() {
        text_field(
            "engine",
            &|found| engines.iter().any(|e| e.eq_ignore_ascii_case(found.trim())),
            format!("{first:?}"),
        );
    }
    if let Some(host) = host {
        text_field("host", &|found| host_key(found) == host_key(host), format!("{host:?}"));
    }
    if !users.is_empty() {
        let iam = matches!(target, TargetConfig::AwsIam(_));
        let shown = users.iter().map(|u| format!("{u:?}")).collect::<Vec<_>>().join(" or ");
        text_field(
            "username",
            &|found| {
                users
                    .iter()
                    .any(|u| *u == found || (iam && u.eq_ignore_ascii_case(found)))
            },
            shown,
        );
    }
    if let Some(dbname) = dbname {
        text_field("dbname", &|found| found == dbname, format!("{dbname:?}"));
    }
    if let TargetConfig::VaultApprole(c) = target {
        let role = c.role.clone();
        text_field(
            rekey_vault::ROLE_NAME,
            &|found| found.eq_ignore_ascii_case(&role),
            format!("{role:?}"),
        );
        let mount = c.mount.trim_matches('/').to_owned();
        text_field(
            rekey_vault::MOUNT,
            &|found| found.trim_matches('/') == mount,
            format!("{mount:?}"),
        );
    }
    if let Some(port) = port {
        match doc.get("port") {
            None => {}
            Some(value) => {
                let found = match value {
                    serde_json::Value::Number(n) => n.as_u64(),
                    serde_json::Value::String(s) => s.trim().parse::<u64>().ok(),
                    _ => None,
                };
                if found != Some(u64::from(port)) {
                    differences.push(format!("port {value} (configured {port})"));
                }
            }
        }
    }
    if differences.is_empty() {
        Ok(())
    } else {
        Err(format!(
            "the secret's fields contradict the configured {} target: {}; fix the document or the configuration",
            target.type_name(),
            differences.join(", ")
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hosts_compare_loosely() {
        assert_eq!(host_key("DB.Internal."), "db.internal");
        assert_eq!(host_key("localhost"), host_key("127.0.0.1"));
        assert_eq!(host_key("[::1]"), host_key("localhost"));
        assert_ne!(host_key("127.0.0.2"), host_key("localhost"));
        assert_eq!(host_key("[2001:db8::1]"), host_key("2001:DB8:0::1"));
        assert_eq!(
            address_key("HTTP://LocalHost:8200/"),
            address_key("http://127.0.0.1:8200")
        );
        assert_eq!(
            address_key("https://vault.internal"),
            address_key("https://vault.internal:443/")
        );
        assert_ne!(address_key("http://vault:8200"), address_key("http://vault:8201"));
    }

    #[test]
    fn admin_users_are_read_without_the_password() {
        assert_eq!(
            postgres_admin_user("postgres://app:p%40ss@h:5/db").as_deref(),
            Some("app")
        );
        assert_eq!(
            postgres_admin_user("postgresql://a%2Db:x@y@h/db").as_deref(),
            Some("a-b")
        );
        assert_eq!(
            postgres_admin_user("postgres://h/db?user=adm&sslmode=disable").as_deref(),
            Some("adm")
        );
        assert_eq!(postgres_admin_user("postgres://h:5432/db"), None);
        assert_eq!(
            postgres_admin_user("host=h user = 'o''k' password='a b'").as_deref(),
            None
        );
        assert_eq!(
            postgres_admin_user(r"host=h user='it\'s' password='a b'").as_deref(),
            Some("it's")
        );
        assert_eq!(
            postgres_admin_user("host=h password=x user=root ").as_deref(),
            Some("root")
        );
        assert_eq!(mysql_admin_user("mysql://root:pw@h:3306/").as_deref(), Some("root"));
        assert_eq!(mysql_admin_user("mariadb://r%40x:p@ss@h/").as_deref(), Some("r@x"));
        assert_eq!(mysql_admin_user("mysql://h/"), None);
        assert_eq!(redis_admin_user("redis://adm:pw@h:6379").as_deref(), Some("adm"));
        assert_eq!(redis_admin_user("rediss://:pw@h").as_deref(), Some("default"));
        assert_eq!(redis_admin_user("redis://127.0.0.1:6379").as_deref(), Some("default"));
    }
}
