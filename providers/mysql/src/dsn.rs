//! Parsing the admin URL: `mysql://user:password@host:port/[db][?tls=…&tls_ca=…&socket=…]`.
//! Errors never quote the URL.

use crate::config::TlsMode;
use rekey_api::{ProviderError, ProviderResult};
use rekey_net::percent_decode;
use std::path::PathBuf;
use zeroize::Zeroizing;

/// An admin URL, parsed.
pub(crate) struct AdminDsn {
    pub(crate) user: String,
    pub(crate) password: Option<Zeroizing<String>>,
    /// `None` when the URL names no host (`mysql://u:p@/`): the target's host.
    pub(crate) host: Option<String>,
    /// `None` when the URL names no port.
    pub(crate) port: Option<u16>,
    pub(crate) db: Option<String>,
    pub(crate) tls: Option<TlsMode>,
    pub(crate) tls_ca: Option<PathBuf>,
    pub(crate) socket: Option<String>,
}

fn invalid(what: &str) -> ProviderError {
    ProviderError::invalid_input(format!("admin URL: {what} (expected mysql://user:password@host:port/)"))
}

/// Percent-decodes one part of the URL (into a zeroized buffer: it may be the password).
fn decode(part: &str, what: &str) -> ProviderResult<Zeroizing<String>> {
    percent_decode(part).ok_or_else(|| invalid(&format!("malformed percent-encoding in {what}")))
}

/// Parses `url`.
pub(crate) fn parse_admin_dsn(url: &str) -> ProviderResult<AdminDsn> {
    let url = url.trim();
    let rest = url
        .strip_prefix("mysql://")
        .or_else(|| url.strip_prefix("mariadb://"))
        .ok_or_else(|| invalid("the scheme must be mysql:// or mariadb://"))?;
    let (before_query, query) = match rest.split_once('?') {
        Some((b, q)) => (b, Some(q)),
        None => (rest, None),
    };
    let (authority, path) = match before_query.find('/') {
        Some(i) => (&before_query[..i], &before_query[i + 1..]),
        None => (before_query, ""),
    };
    let (userinfo, hostport) = match authority.rfind('@') {
        Some(at) => (&authority[..at], &authority[at + 1..]),
        None => return Err(invalid("no user name")),
    };
    let (user, password) = match userinfo.split_once(':') {
        Some((u, p)) => (u, Some(p)),
        None => (userinfo, None),
    };
    let user = decode(user, "the user name")?.to_string();
    if user.is_empty() {
        return Err(invalid("no user name"));
    }
    let password = match password {
        None => None,
        Some(p) => Some(decode(p, "the password")?),
    };
    let (host, port) = split_host_port(hostport)?;
    let db = match path.trim_end_matches('/') {
        "" => None,
        db => Some(decode(db, "the database")?.to_string()),
    };
    let mut dsn = AdminDsn {
        user,
        password,
        host,
        port,
        db,
        tls: None,
        tls_ca: None,
        socket: None,
    };
    for pair in query.unwrap_or("").split('&').filter(|p| !p.is_empty()) {
        let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
        let value = decode(value, "a parameter")?;
        match key {
            "tls" | "ssl-mode" | "sslmode" => {
                dsn.tls = Some(
                    TlsMode::parse(&value.to_ascii_lowercase())
                        .ok_or_else(|| invalid("unsupported tls mode (use disable, prefer, require or verify-full)"))?,
                )
            }
            "tls_ca" | "ssl-ca" | "sslrootcert" => dsn.tls_ca = Some(PathBuf::from(value.as_str())),
            "socket" => dsn.socket = Some(value.to_string()),
            other => {
                let shown: String = other
                    .chars()
                    .filter(|c| c.is_ascii_alphanumeric() || *c == '_' || *c == '-')
                    .take(40)
                    .collect();
                return Err(invalid(&format!(
                    "unknown parameter `{shown}` (known: tls, tls_ca, socket)"
                )));
            }
        }
    }
    Ok(dsn)
}

fn split_host_port(hostport: &str) -> ProviderResult<(Option<String>, Option<u16>)> {
    if hostport.is_empty() {
        return Ok((None, None));
    }
    let (host, port) = if let Some(rest) = hostport.strip_prefix('[') {
        let end = rest.find(']').ok_or_else(|| invalid("unclosed [ in the host"))?;
        let host = &rest[..end];
        match &rest[end + 1..] {
            "" => (host, None),
            p => (
                host,
                Some(p.strip_prefix(':').ok_or_else(|| invalid("malformed host"))?),
            ),
        }
    } else {
        match hostport.rsplit_once(':') {
            Some((h, p)) => (h, Some(p)),
            None => (hostport, None),
        }
    };
    let port = match port {
        None => None,
        Some(p) => Some(
            p.parse::<u16>()
                .ok()
                .filter(|p| *p != 0)
                .ok_or_else(|| invalid("malformed port"))?,
        ),
    };
    let host = percent_decode(host)
        .ok_or_else(|| invalid("malformed host"))?
        .to_string();
    Ok(((!host.is_empty()).then_some(host), port))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn full_url() {
        let d = parse_admin_dsn(
            "mysql://rekey%40ops:p%3Ass%2Fw@db.internal:3307/mysql?tls=verify-full&tls_ca=%2Fetc%2Fca.pem",
        )
        .unwrap();
        assert_eq!(d.user, "rekey@ops");
        assert_eq!(d.password.as_deref().map(String::as_str), Some("p:ss/w"));
        assert_eq!(d.host.as_deref(), Some("db.internal"));
        assert_eq!(d.port, Some(3307));
        assert_eq!(d.db.as_deref(), Some("mysql"));
        assert_eq!(d.tls, Some(TlsMode::VerifyFull));
        assert_eq!(d.tls_ca, Some(PathBuf::from("/etc/ca.pem")));
    }

    #[test]
    fn defaults_and_forms() {
        let d = parse_admin_dsn("mysql://root@/").unwrap();
        assert_eq!((d.host, d.port, d.password.is_none()), (None, None, true));
        let d = parse_admin_dsn("mariadb://a:b@[::1]:3306").unwrap();
        assert_eq!((d.host.as_deref(), d.port), (Some("::1"), Some(3306)));
        let d = parse_admin_dsn("mysql://root@localhost/?socket=%2Frun%2Fmysqld%2Fmysqld.sock").unwrap();
        assert_eq!(d.socket.as_deref(), Some("/run/mysqld/mysqld.sock"));
        // The password may contain '@': the last '@' ends the user info.
        let d = parse_admin_dsn("mysql://a:p@ss@h/").unwrap();
        assert_eq!(d.password.as_deref().map(String::as_str), Some("p@ss"));
        assert_eq!(d.host.as_deref(), Some("h"));
    }

    #[test]
    fn errors_do_not_quote_the_url() {
        for bad in [
            "postgres://u:s3cr3t-value@h/",
            "mysql://u:s3cr3t-value@h:notaport/",
            "mysql://u:s3cr3t-value@h/?bogus=1",
            "mysql://u:s3cr3t-value@h/?tls=bogus",
            "mysql://u:s3cr3t%zz@h/",
            "mysql://s3cr3t-value",
        ] {
            let err = parse_admin_dsn(bad).err().expect("must fail");
            assert!(!err.to_string().contains("s3cr3t"), "{err}");
            assert_eq!(err.kind(), rekey_api::ErrorKind::InvalidInput);
        }
    }
}
