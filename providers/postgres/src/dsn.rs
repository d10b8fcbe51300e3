//! Parsing the admin connection string (URL or key=value conninfo).
//!
//! tokio-postgres parses both forms but knows only `disable`, `prefer` and `require`
//! for `sslmode` and nothing of `sslrootcert`, so those two are taken out first and
//! handled by rekey's own TLS setup. Errors never quote the connection string.

use crate::config::SslMode;
use rekey_api::{ProviderError, ProviderResult};
use rekey_net::percent_decode;
use std::path::PathBuf;
use std::str::FromStr;
use zeroize::Zeroizing;

/// An admin connection string, parsed.
pub(crate) struct AdminDsn {
    /// Everything but TLS (host, port, user, password, dbname...).
    pub(crate) config: tokio_postgres::Config,
    /// `sslmode` from the string, if any.
    pub(crate) sslmode: Option<SslMode>,
    /// `sslrootcert` from the string, if any.
    pub(crate) sslrootcert: Option<PathBuf>,
}

/// Parses `dsn`.
pub(crate) fn parse_admin_dsn(dsn: &str) -> ProviderResult<AdminDsn> {
    let trimmed = dsn.trim();
    let (rest, tls) = if trimmed.starts_with("postgres://") || trimmed.starts_with("postgresql://") {
        split_url(trimmed)?
    } else {
        split_key_value(trimmed)?
    };
    let config = tokio_postgres::Config::from_str(&rest).map_err(|e| {
        let detail = std::error::Error::source(&e)
            .map(ToString::to_string)
            .filter(|d| d.starts_with("unknown option") || d.starts_with("invalid value for option"))
            .unwrap_or_else(|| "malformed connection string".to_owned());
        ProviderError::invalid_input(format!("admin connection string: {detail}"))
    })?;
    let sslmode = match tls.sslmode {
        None => None,
        Some(mode) => Some(SslMode::parse(&mode).ok_or_else(|| {
            ProviderError::invalid_input(
                "admin connection string: unsupported sslmode (use disable, prefer, require or verify-full)",
            )
        })?),
    };
    Ok(AdminDsn {
        config,
        sslmode,
        sslrootcert: tls.sslrootcert.map(PathBuf::from),
    })
}

#[derive(Default)]
struct TlsParams {
    sslmode: Option<String>,
    sslrootcert: Option<String>,
}

impl TlsParams {
    /// Takes the parameter if it is one of ours.
    fn take(&mut self, key: &str, value: &str) -> bool {
        match key {
            "sslmode" => self.sslmode = Some(value.to_owned()),
            "sslrootcert" => self.sslrootcert = Some(value.to_owned()),
            _ => return false,
        }
        true
    }
}

fn split_url(url: &str) -> ProviderResult<(Zeroizing<String>, TlsParams)> {
    let mut tls = TlsParams::default();
    let Some((base, query)) = url.split_once('?') else {
        return Ok((Zeroizing::new(url.to_owned()), tls));
    };
    let mut kept = Vec::new();
    for pair in query.split('&').filter(|p| !p.is_empty()) {
        let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
        let value = percent_decode(value)
            .ok_or_else(|| ProviderError::invalid_input("admin connection string: malformed percent-encoding"))?;
        if !tls.take(key, &value) {
            kept.push(pair);
        }
    }
    let rest = if kept.is_empty() {
        base.to_owned()
    } else {
        format!("{base}?{}", kept.join("&"))
    };
    Ok((Zeroizing::new(rest), tls))
}

/// Splits libpq key=value conninfo (values plain with `\` escapes, or single-quoted),
/// takes out the TLS parameters and writes the rest back in a canonical quoted form.
fn split_key_value(s: &str) -> ProviderResult<(Zeroizing<String>, TlsParams)> {
    let malformed = || ProviderError::invalid_input("admin connection string: malformed key=value conninfo");
    let mut tls = TlsParams::default();
    let mut out = Zeroizing::new(String::new());
    let mut chars = s.chars().peekable();
    loop {
        while chars.next_if(|c| c.is_whitespace()).is_some() {}
        if chars.peek().is_none() {
            break;
        }
        let mut key = String::new();
        while let Some(c) = chars.next_if(|c| !c.is_whitespace() && *c != '=') {
            key.push(c);
        }
        while chars.next_if(|c| c.is_whitespace()).is_some() {}
        if key.is_empty() || chars.next() != Some('=') {
            return Err(malformed());
        }
        while chars.next_if(|c| c.is_whitespace()).is_some() {}
        let mut value = Zeroizing::new(String::new());
        if chars.next_if_eq(&'\'').is_some() {
            loop {
                match chars.next() {
                    None => return Err(malformed()),
                    Some('\'') => break,
                    Some('\\') => value.push(chars.next().ok_or_else(malformed)?),
                    Some(c) => value.push(c),
                }
            }
        } else {
            while let Some(c) = chars.next_if(|c| !c.is_whitespace()) {
                if c == '\\' {
                    value.push(chars.next().ok_or_else(malformed)?);
                } else {
                    value.push(c);
                }
            }
        }
        if !tls.take(&key, &value) {
            out.push_str(&key);
            out.push_str("='");
            for c in value.chars() {
                if c == '\\' || c == '\'' {
                    out.push('\\');
                }
                out.push(c);
            }
            out.push_str("' ");
        }
    }
    Ok((out, tls))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn url_tls_parameters_are_taken_out() {
        let d = parse_admin_dsn(
            "postgres://admin:p%40ss@db:6432/maint?sslmode=verify-full&sslrootcert=%2Fetc%2Fca.pem&application_name=x",
        )
        .unwrap();
        assert_eq!(d.sslmode, Some(SslMode::VerifyFull));
        assert_eq!(d.sslrootcert, Some(PathBuf::from("/etc/ca.pem")));
        assert_eq!(d.config.get_user(), Some("admin"));
        assert_eq!(d.config.get_password(), Some(&b"p@ss"[..]));
        assert_eq!(d.config.get_ports(), &[6432]);
        assert_eq!(d.config.get_dbname(), Some("maint"));
        assert_eq!(d.config.get_application_name(), Some("x"));
    }

    #[test]
    fn key_value_with_quotes() {
        let d = parse_admin_dsn(r"host=h user = admin password='it\'s a \\ secret' sslmode=require dbname=d").unwrap();
        assert_eq!(d.sslmode, Some(SslMode::Require));
        assert_eq!(d.config.get_password(), Some(&br"it's a \ secret"[..]));
        assert_eq!(d.config.get_user(), Some("admin"));
        assert_eq!(d.config.get_dbname(), Some("d"));
    }

    #[test]
    fn errors_do_not_quote_the_string() {
        for bad in [
            "host=h password='s3cr3t-value",
            "postgres://u:s3cr3t-value@h/db?sslmode=bogus",
            "postgres://u:s3cr3t-value@h/db?bogus_option=1",
            "host=h password=s3cr3t-value nonsense",
        ] {
            let err = parse_admin_dsn(bad).err().expect("must fail");
            assert!(!err.to_string().contains("s3cr3t"), "{err}");
            assert_eq!(err.kind(), rekey_api::ErrorKind::InvalidInput);
        }
    }
}
