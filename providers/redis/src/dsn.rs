//! Parsing the admin URL (`redis://user:pass@host:port`, `rediss://...`). Errors never
//! quote the URL.

use rekey_api::{ProviderError, ProviderResult, RedactedDsn, Secret};

/// An admin URL, parsed.
pub(crate) struct AdminDsn {
    pub(crate) host: String,
    pub(crate) port: u16,
    /// The ACL user; `None` for the `default` user.
    pub(crate) user: Option<String>,
    pub(crate) password: Option<Secret>,
    /// `rediss://`.
    pub(crate) tls: bool,
}

/// Parses `dsn`; messages show it redacted.
pub(crate) fn parse_admin_dsn(dsn: &RedactedDsn) -> ProviderResult<AdminDsn> {
    let text = dsn.expose().trim();
    let lower = text.get(..9).unwrap_or(text).to_ascii_lowercase();
    if !(lower.starts_with("redis://") || lower.starts_with("rediss://")) {
        // Without `scheme://` even the redacted form could show the password: show nothing.
        return Err(ProviderError::invalid_input(
            "the admin URL must start with redis:// or rediss://",
        ));
    }
    let bad = |why: String| ProviderError::invalid_input(format!("admin URL {}: {why}", dsn.redacted()));
    let url = url::Url::parse(text).map_err(|e| {
        // The URL did not parse, so even its redacted form may hold the password.
        ProviderError::invalid_input(format!("the admin URL is not a valid redis:// or rediss:// URL ({e})"))
    })?;
    let tls = url.scheme() == "rediss";
    let host = match url.host() {
        Some(url::Host::Domain(d)) if !d.is_empty() => d.to_owned(),
        Some(url::Host::Ipv4(ip)) => ip.to_string(),
        Some(url::Host::Ipv6(ip)) => ip.to_string(),
        _ => return Err(bad("it names no host".into())),
    };
    if url.fragment().is_some() {
        return Err(bad(
            "fragments such as #insecure are not supported (certificates are always checked; use tls_ca)".into(),
        ));
    }
    // The decoded buffers are zeroized (rekey-net); a malformed escape is refused.
    let decode = |s: &str| {
        rekey_net::percent_decode(s).ok_or_else(|| {
            bad("user name or password has a malformed %-escape or is not valid UTF-8 after percent-decoding".into())
        })
    };
    let user = match url.username() {
        "" => None,
        u => Some(decode(u)?.as_str().to_owned()),
    };
    let password = match url.password() {
        None => None,
        Some(p) => Some(Secret::new(std::mem::take(&mut *decode(p)?))),
    };
    if let Some(user) = &user {
        crate::acl::validate_username(user).map_err(|why| bad(format!("the user name is not valid: {why}")))?;
    }
    Ok(AdminDsn {
        host,
        port: url.port().unwrap_or(6379),
        user,
        password,
        tls,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(s: &str) -> ProviderResult<AdminDsn> {
        parse_admin_dsn(&RedactedDsn::new(s.to_owned()))
    }

    #[test]
    fn urls() {
        let d = parse("redis://admin:p%40ss%3Aw@cache.internal:6380/0").unwrap();
        assert_eq!((d.host.as_str(), d.port, d.tls), ("cache.internal", 6380, false));
        assert_eq!(d.user.as_deref(), Some("admin"));
        assert_eq!(d.password.unwrap().expose(), "p@ss:w");

        let d = parse("rediss://127.0.0.1").unwrap();
        assert_eq!((d.host.as_str(), d.port, d.tls), ("127.0.0.1", 6379, true));
        assert!(d.user.is_none() && d.password.is_none());

        let d = parse("redis://:only-pw@[::1]:7000").unwrap();
        assert_eq!((d.host.as_str(), d.port), ("::1", 7000));
        assert!(d.user.is_none());
        assert_eq!(d.password.unwrap().expose(), "only-pw");
    }

    #[test]
    fn errors_do_not_quote_the_password() {
        for bad in [
            "http://admin:s3cret@h",
            "redis://admin:s3cret@h:99999",
            "rediss://admin:s3cret@h#insecure",
            "admin:s3cret@h",
            "redis:admin:s3cret@h",
            "unix:///tmp/s3cret",
            "redis://admin:s3cret@",
            "redis://a%20b:s3cret@h",
            // A malformed escape is refused, not kept literally.
            "redis://admin:s3cret%zz@h",
        ] {
            let err = match parse(bad) {
                Ok(_) => panic!("{bad} parsed"),
                Err(e) => e,
            };
            assert_eq!(err.kind(), rekey_api::ErrorKind::InvalidInput, "{bad}");
            assert!(!err.to_string().contains("s3cret"), "{err}");
        }
    }
}
