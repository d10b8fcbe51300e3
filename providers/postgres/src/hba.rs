//! Whether `pg_hba.conf` can treat a role's login differently from the admin's.
//!
//! Precheck must know, before apply, that verify's login as the role will pass
//! `pg_hba.conf` (a `hostssl`-only or `reject` line for some roles turns it away, and
//! then apply has already changed the password). A probe connection answers that for
//! any server, but costs the server a process per credential. When the admin may read
//! `pg_hba_file_rules` and connects over the same route as logins (same host, port and
//! TLS setting, so the same client address and TLS state), one read per run can settle
//! it: if the first line that this address and TLS state select admits every database
//! and every user and is not `reject`, it is the first matching line for every role's
//! login too, and no probe is needed. Anything this module cannot evaluate (a host
//! name, `samehost`/`samenet`, a line with an error, an unknown connection type) means
//! "cannot tell", and precheck probes.

use serde::Deserialize;
use std::net::IpAddr;

/// One line of `pg_hba_file_rules`, as read.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub(crate) struct HbaLine {
    /// `local`, `host`, `hostssl`, `hostnossl`, `hostgssenc`, `hostnogssenc`.
    #[serde(rename = "type")]
    pub kind: Option<String>,
    pub database: Option<Vec<String>>,
    pub user_name: Option<Vec<String>>,
    pub address: Option<String>,
    pub netmask: Option<String>,
    pub auth_method: Option<String>,
    /// `clientcert=verify-full` and the like: what the line asks beyond its method.
    pub options: Option<Vec<String>>,
    pub error: Option<String>,
}

/// The line every role's login over one route meets ([`every_role_rule`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct RouteRule {
    /// Its authentication method (`scram-sha-256`, `md5`, `trust`...).
    pub method: String,
    /// Whether it asks more than the method (options such as `clientcert`).
    pub has_options: bool,
}

impl RouteRule {
    /// Whether a login over this route is decided by the password against the role's
    /// stored verifier (`pg_authid.rolpassword`) and nothing else: a method that checks
    /// it (`scram-sha-256`, `md5`, `password`) and no option asking more.
    pub(crate) fn checks_stored_password_only(&self) -> bool {
        matches!(self.method.as_str(), "scram-sha-256" | "md5" | "password") && !self.has_options
    }
}

/// The query: the admin connection's client address and TLS state, and the lines of
/// `pg_hba.conf` in file order (JSON). Fails for a role that may not read the view.
pub(crate) const HBA_QUERY: &str = "SELECT host(inet_client_addr()), \
     coalesce((SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()), false), \
     coalesce((SELECT json_agg(json_build_object('type', type, 'database', database, 'user_name', user_name, \
     'address', address, 'netmask', netmask, 'auth_method', auth_method, 'options', options, 'error', error) ORDER BY line_number) \
     FROM pg_hba_file_rules), '[]')::text";

/// Whether every role's login from `client` (with TLS or not, as `ssl` says) meets the
/// same first line as any other: that line admits all databases and all users and is
/// not `reject`. `false` when it cannot tell.
#[cfg(test)]
pub(crate) fn admits_every_role(lines: &[HbaLine], client: Option<IpAddr>, ssl: bool) -> bool {
    every_role_rule(lines, client, ssl).is_some()
}

/// The first line that every role's login from `client` meets, when that line admits
/// all databases and all users and is not `reject`; `None` when there is no such line
/// or it cannot tell.
pub(crate) fn every_role_rule(lines: &[HbaLine], client: Option<IpAddr>, ssl: bool) -> Option<RouteRule> {
    let client = client?;
    for line in lines {
        if line.error.is_some() {
            return None;
        }
        let selects = match line.kind.as_deref() {
            Some("local") | Some("hostgssenc") => false,
            Some("host") | Some("hostnogssenc") => true,
            Some("hostssl") => ssl,
            Some("hostnossl") => !ssl,
            _ => return None,
        };
        if !selects {
            continue;
        }
        match address_matches(line, client) {
            Some(true) => {}
            Some(false) => continue,
            None => return None,
        }
        let all = |list: &Option<Vec<String>>| list.as_deref() == Some(&["all".to_owned()][..]);
        let admits = all(&line.database) && all(&line.user_name) && line.auth_method.as_deref() != Some("reject");
        return line.auth_method.clone().filter(|_| admits).map(|method| RouteRule {
            method,
            has_options: line.options.as_ref().is_some_and(|o| !o.is_empty()),
        });
    }
    None
}

/// Whether `line`'s address selects `client`; `None` when it cannot be evaluated here.
fn address_matches(line: &HbaLine, client: IpAddr) -> Option<bool> {
    let address = line.address.as_deref()?;
    if address == "all" {
        return Some(true);
    }
    let address: IpAddr = address.parse().ok()?;
    let mask: IpAddr = line.netmask.as_deref()?.parse().ok()?;
    Some(match (address, mask, client) {
        (IpAddr::V4(a), IpAddr::V4(m), IpAddr::V4(c)) => u32::from(a) & u32::from(m) == u32::from(c) & u32::from(m),
        (IpAddr::V6(a), IpAddr::V6(m), IpAddr::V6(c)) => u128::from(a) & u128::from(m) == u128::from(c) & u128::from(m),
        _ => false,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn line(kind: &str, db: &str, user: &str, address: Option<(&str, &str)>, method: &str) -> HbaLine {
        HbaLine {
            kind: Some(kind.to_owned()),
            database: Some(vec![db.to_owned()]),
            user_name: Some(vec![user.to_owned()]),
            address: address.map(|(a, _)| a.to_owned()),
            netmask: address.map(|(_, m)| m.to_owned()),
            auth_method: Some(method.to_owned()),
            options: None,
            error: None,
        }
    }

    const LOOPBACK: Option<(&str, &str)> = Some(("127.0.0.1", "255.255.255.255"));
    fn client() -> Option<IpAddr> {
        Some("127.0.0.1".parse().unwrap())
    }

    #[test]
    fn the_default_file_admits_every_role() {
        let lines = [
            line("local", "all", "all", None, "trust"),
            line("host", "all", "all", LOOPBACK, "scram-sha-256"),
            line(
                "host",
                "all",
                "all",
                Some(("::1", "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff")),
                "scram-sha-256",
            ),
        ];
        assert!(admits_every_role(&lines, client(), false));
        assert!(admits_every_role(&lines, client(), true));
        assert!(admits_every_role(&lines, Some("::1".parse().unwrap()), false));
        // From elsewhere no line matches: the login would be refused, so cannot tell.
        assert!(!admits_every_role(&lines, Some("10.0.0.9".parse().unwrap()), false));
        // A unix socket (no client address): cannot tell.
        assert!(!admits_every_role(&lines, None, false));
    }

    #[test]
    fn the_line_every_role_meets_says_whether_it_checks_the_stored_password_only() {
        let rule = |kind: &str, auth: &str, options: Option<&str>| {
            let mut one = line(kind, "all", "all", LOOPBACK, auth);
            one.options = options.map(|o| vec![o.to_owned()]);
            every_role_rule(&[one], client(), false)
        };
        let only = |kind: &str, auth: &str, options: Option<&str>| {
            rule(kind, auth, options).is_some_and(|r| r.checks_stored_password_only())
        };
        assert_eq!(
            rule("host", "scram-sha-256", None).map(|r| r.method).as_deref(),
            Some("scram-sha-256")
        );
        assert!(only("host", "scram-sha-256", None));
        assert!(only("hostnossl", "md5", None));
        assert!(only("host", "password", None));
        for auth in ["trust", "ldap", "cert", "peer", "radius"] {
            assert!(rule("host", auth, None).is_some(), "{auth}");
            assert!(!only("host", auth, None), "{auth}");
        }
        // A client certificate asked on top of the password: a login needs more.
        assert!(!only("host", "scram-sha-256", Some("clientcert=verify-full")));
        assert_eq!(rule("host", "reject", None), None);
        assert_eq!(
            rule("hostssl", "scram-sha-256", None),
            None,
            "no line for a login without TLS"
        );
    }

    #[test]
    fn a_line_for_some_roles_or_databases_first_means_cannot_tell() {
        let tail = line("host", "all", "all", LOOPBACK, "scram-sha-256");
        for first in [
            line("hostnossl", "all", "+tls_only", LOOPBACK, "reject"),
            line("host", "orders", "all", LOOPBACK, "scram-sha-256"),
            line("host", "all", "app", LOOPBACK, "md5"),
        ] {
            assert!(
                !admits_every_role(&[first.clone(), tail.clone()], client(), false),
                "{first:?}"
            );
        }
        // A hostnossl line does not select a TLS login, nor hostssl a plain one.
        let nossl = line("hostnossl", "all", "+tls_only", LOOPBACK, "reject");
        assert!(admits_every_role(&[nossl, tail.clone()], client(), true));
        let ssl = line("hostssl", "all", "+x", LOOPBACK, "reject");
        assert!(admits_every_role(&[ssl, tail.clone()], client(), false));
        // Another network's line does not select this client.
        let other = line("host", "all", "+x", Some(("10.0.0.0", "255.0.0.0")), "reject");
        assert!(admits_every_role(&[other, tail], client(), false));
    }

    #[test]
    fn reject_for_everyone_and_what_cannot_be_evaluated_mean_no() {
        let reject = line("host", "all", "all", LOOPBACK, "reject");
        assert!(!admits_every_role(&[reject], client(), false));
        let tail = line("host", "all", "all", LOOPBACK, "scram-sha-256");
        for first in [
            line("host", "all", "+x", Some(("samenet", "")), "reject"),
            line("host", "all", "+x", Some(("db.example.com", "")), "reject"),
            HbaLine {
                error: Some("invalid IP address".to_owned()),
                ..line("host", "all", "all", LOOPBACK, "scram-sha-256")
            },
            HbaLine {
                kind: Some("hostgssenc2".to_owned()),
                ..line("host", "all", "all", LOOPBACK, "scram-sha-256")
            },
        ] {
            assert!(
                !admits_every_role(&[first.clone(), tail.clone()], client(), false),
                "{first:?}"
            );
        }
        // Lines of `all` address select everyone.
        let all = HbaLine {
            address: Some("all".to_owned()),
            netmask: None,
            ..line("host", "all", "all", None, "scram-sha-256")
        };
        assert!(admits_every_role(&[all], Some("10.1.2.3".parse().unwrap()), false));
    }
}
