//! Leaked admin passwords: a value found that is the password of a target's configured
//! `admin` connection. rekey does not rotate those (unless the admin is itself a managed
//! credential, referred to with `admin = { credential = "NAME" }`), so `leaked` says
//! whose admin it is and what to do, instead of "no configured credential holds it".

use crate::config::Config;
use crate::leaked::Candidate;
use zeroize::Zeroizing;

/// The credentials whose target's configured admin connection has one of `candidates`
/// as its password, in configuration order.
pub fn admin_holders(config: &Config, candidates: &[Candidate]) -> Vec<String> {
    config
        .credentials
        .iter()
        .filter(|c| !config.admin_refs.contains_key(&c.name))
        .filter(|c| {
            let Some(dsn) = config.targets.get(&c.name).and_then(|t| t.admin_dsn()) else {
                return false;
            };
            let passwords = dsn_passwords(dsn.expose());
            candidates
                .iter()
                .any(|candidate| passwords.iter().any(|p| candidate.matches(p)))
        })
        .map(|c| c.name.clone())
        .collect()
}

/// The password of a connection string, as written and percent-decoded: a URL's user
/// info (`scheme://user:PW@host`), its `password=` query parameter, or libpq's
/// `password=PW` (plain or single-quoted).
fn dsn_passwords(dsn: &str) -> Vec<Zeroizing<String>> {
    let mut out = Vec::new();
    let mut push = |raw: &str| {
        if raw.is_empty() {
            return;
        }
        if let Some(decoded) = rekey_net::percent_decode(raw) {
            if decoded.as_str() != raw {
                out.push(decoded);
            }
        }
        out.push(Zeroizing::new(raw.to_owned()));
    };
    if let Some((_, rest)) = dsn.split_once("://") {
        let (before_query, query) = match rest.split_once('?') {
            Some((b, q)) => (b, Some(q)),
            None => (rest, None),
        };
        // The user info ends at the last `@` before the path (a password may hold `@`).
        let authority_end = before_query.rfind('@').map_or(0, |at| at + 1);
        if authority_end > 0 {
            let userinfo = &before_query[..authority_end - 1];
            if let Some((_, password)) = userinfo.split_once(':') {
                push(password);
            }
        }
        for pair in query.unwrap_or_default().split('&') {
            if let Some(("password", value)) = pair.split_once('=') {
                push(value);
            }
        }
    } else {
        for word in dsn.split_whitespace() {
            if let Some(value) = word.strip_prefix("password=") {
                push(value.trim_matches('\''));
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn shown(dsn: &str) -> Vec<String> {
        dsn_passwords(dsn).iter().map(|p| p.to_string()).collect()
    }

    #[test]
    fn passwords_of_each_connection_string_form() {
        assert_eq!(
            shown("postgres://admin:s3cr%40t@db:5432/postgres"),
            ["s3cr@t", "s3cr%40t"]
        );
        assert_eq!(shown("redis://:only-pw@127.0.0.1:6379"), ["only-pw"]);
        assert_eq!(shown("mysql://root:p@ss@h:3306/"), ["p@ss"]);
        assert_eq!(shown("postgres://db/postgres?user=admin&password=q-pw"), ["q-pw"]);
        assert_eq!(shown("host=db user=admin password='kv-pw' dbname=x"), ["kv-pw"]);
        assert!(shown("postgres://postgres@127.0.0.1:5432/postgres").is_empty());
        assert!(shown("host=/run/postgresql user=postgres").is_empty());
    }
}
