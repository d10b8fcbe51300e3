//! Who a target's secret belongs to, and the configurations that rotate one identity
//! twice, or rotate the administrator rekey itself logs in as.
//!
//! An identity is a target type, a place and a principal ([`Identity`]). Each target
//! kind says which identities its credentials rotate, which one its admin logs in as
//! and what its documents hold ([`crate::providers::target_kind::TargetKind`], in
//! `src/providers/targets/TYPE.rs`); a kind that cannot tell says none, and is not
//! checked. This module compares them.
//!
//! Hosts compare case-insensitively, without a trailing dot or IPv6 brackets, and
//! `localhost`, `127.0.0.1` and `::1` are taken as one host: on one machine they reach
//! the same server in every setup rekey is meant for, and treating them as different
//! would let the duplicate through. Other names and addresses are not resolved.

use super::{Config, ConfigError, Credential, TargetConfig};
use rekey_api::SecretDoc;
use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

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
        Ok(IpAddr::V4(ip)) if ip == Ipv4Addr::LOCALHOST => "localhost".to_owned(),
        Ok(IpAddr::V6(ip)) if ip == Ipv6Addr::LOCALHOST => "localhost".to_owned(),
        Ok(ip) => ip.to_string(),
        Err(_) if bare == "localhost" => "localhost".to_owned(),
        Err(_) => bare,
    }
}

/// What an identity is compared by: the target type, the place (host and port as
/// [`host_key`], or the provider's equivalent) and the principal.
pub(crate) type IdentityKey = (&'static str, String, String);

/// The place of a server target: `host:port` as compared ([`host_key`]) and as shown.
pub(crate) fn server_place(host: &str, port: u16) -> (String, String) {
    (format!("{}:{port}", host_key(host)), format!("{host}:{port}"))
}

/// One identity: compared by `key`, shown as `shown` (e.g. "postgres role `app` on
/// db:5432").
#[derive(Debug, Clone)]
pub(crate) struct Identity {
    /// What it is compared by.
    pub key: IdentityKey,
    /// How messages name it.
    pub shown: String,
}

/// An endpoint URL as compared: scheme, host as [`host_key`], port (the scheme's
/// default when absent) and path, without a trailing `/`.
pub(crate) fn address_key(address: &str) -> String {
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

/// Refuses two credentials rotating one identity, and a credential whose administrator
/// is an identity that a credential (itself or another) rotates.
pub(crate) fn check(
    file: &str,
    targets: &[(&str, &TargetConfig)],
    lookup: &dyn Fn(&str) -> Option<String>,
) -> Result<(), ConfigError> {
    // Hashed, not ordered: at 10,000 credentials the keys' string comparisons in an
    // ordered map were a tenth of loading the configuration.
    let mut rotated: HashMap<IdentityKey, (&str, String)> = HashMap::with_capacity(targets.len());
    for (name, target) in targets {
        for identity in target.identities(lookup) {
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
        let Some(admin) = target.admin_identity() else { continue };
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
pub(crate) fn percent_decode(text: &str) -> Option<String> {
    rekey_net::percent_decode(text).map(|user| user.as_str().to_owned())
}

/// What follows `SCHEME://` when the scheme (any case) is one of `schemes`.
pub(crate) fn strip_scheme<'t>(text: &'t str, schemes: &[&str]) -> Option<&'t str> {
    let (scheme, rest) = text.trim().split_once("://")?;
    schemes.iter().any(|s| s.eq_ignore_ascii_case(scheme)).then_some(rest)
}

/// The user of a URL's authority (`user[:password]@host`), percent-decoded. The
/// authority ends at the first `/`, `?` or `#`; the user info at its last `@`.
pub(crate) fn url_user(rest: &str) -> Option<String> {
    let authority = &rest[..rest.find(['/', '?', '#']).unwrap_or(rest.len())];
    let (userinfo, _) = authority.rsplit_once('@')?;
    let user = userinfo.split(':').next().unwrap_or("");
    percent_decode(user)
}

/// What a target says of the fields of its documents ([`check_import_identity`]); each
/// field left empty is not checked.
#[derive(Default)]
pub(crate) struct Expected<'t> {
    /// The spellings of `engine` (the first is shown).
    pub engines: &'static [&'static str],
    /// `host`, compared as [`host_key`].
    pub host: Option<&'t str>,
    /// `port`.
    pub port: Option<u16>,
    /// The names `username` may hold.
    pub users: Vec<&'t str>,
    /// Whether `username` compares case-insensitively (IAM user names).
    pub users_ignore_case: bool,
    /// `dbname`.
    pub dbname: Option<&'t str>,
    /// Further text fields of the provider's own, checked after `dbname`.
    pub fields: Vec<ExpectedField<'t>>,
}

/// A text field a target's documents must agree with.
pub(crate) struct ExpectedField<'t> {
    /// The field's name in the document.
    pub name: &'static str,
    /// The configured value as messages show it.
    pub configured: String,
    /// Whether a found value agrees with the configuration.
    pub agrees: Box<dyn Fn(&str) -> bool + 't>,
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
        users_ignore_case,
        dbname,
        fields,
    } = target.expected();
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
        let shown = users.iter().map(|u| format!("{u:?}")).collect::<Vec<_>>().join(" or ");
        text_field(
            "username",
            &|found| {
                users
                    .iter()
                    .any(|u| *u == found || (users_ignore_case && u.eq_ignore_ascii_case(found)))
            },
            shown,
        );
    }
    if let Some(dbname) = dbname {
        text_field("dbname", &|found| found == dbname, format!("{dbname:?}"));
    }
    for field in fields {
        text_field(field.name, &*field.agrees, field.configured);
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
}
