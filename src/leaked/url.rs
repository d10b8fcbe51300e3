//! URLs and DSNs: the password in a URL's user info, query parameters, and `key=value`
//! connection strings (libpq, ADO.NET/ODBC/JDBC, command-line flags).

use super::candidate::Origin;
use super::collect::{is_secret_key, weight_of, Collector, Weight};
use super::quote::quoted;
use super::text::{emit_unquoted, is_auth_scheme};
use zeroize::{Zeroize, Zeroizing};

/// How much of a URL is read: its user info and query are near the start.
const MAX_URL: usize = 4096;
/// How far the last `@` of a sloppy user info is looked for.
const MAX_USERINFO: usize = 1024;

/// Every `scheme://...` in `text`. In a line a URL ends at whitespace, a quote or an angle
/// bracket; in a value already unquoted (`in_value`) it is also read to the end of the
/// value, since a sloppy password may hold a space. At most [`MAX_URL`] bytes of each.
pub(super) fn scan_urls(text: &str, in_value: bool, out: &mut Collector) {
    let mut from = 0;
    // Each URL reads up to MAX_URL bytes, so input packed with `://` would cost
    // MAX_URL per 3 bytes: bound the total work to a multiple of the input's size.
    let mut budget = text.len().saturating_mul(16).saturating_add(1 << 20);
    while let Some(found) = text[from..].find("://") {
        let start = from + found + 3;
        from = start;
        let rest = prefix(&text[start..], MAX_URL);
        budget = match budget.checked_sub(rest.len().max(1)) {
            Some(left) => left,
            None => break,
        };
        let stop = rest
            .find(|c: char| c.is_whitespace() || (!in_value && matches!(c, '"' | '\'' | '`' | '<' | '>')))
            .unwrap_or(rest.len());
        url_parts(&rest[..stop], out);
        if in_value && stop < rest.len() {
            url_parts(rest.trim_end(), out);
        }
    }
}

/// The part of a URL after `://`.
fn url_parts(rest: &str, out: &mut Collector) {
    let authority_end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let authority = &rest[..authority_end];
    if let Some(at) = authority.rfind('@') {
        userinfo(&authority[..at], out);
    }
    // A password holding an unencoded `/`, `?`, `#` or `@`: everything up to the last `@`.
    if let Some(at) = prefix(rest, MAX_USERINFO).rfind('@') {
        if at >= authority_end {
            userinfo(&rest[..at], out);
        }
    }
    if let Some(q) = rest[authority_end..].find('?') {
        let query = &rest[authority_end + q + 1..];
        let query = &query[..query.find('#').unwrap_or(query.len())];
        for pair in query.split(['&', ';']) {
            let Some((key, value)) = pair.split_once('=') else {
                continue;
            };
            let weight = match percent_decode(key) {
                Some(k) => weight_of(&k),
                None => weight_of(key),
            };
            emit_decoded(value, Origin::UrlQuery, weight, true, out);
        }
    }
}

/// Go's MySQL driver DSN, `user:password@tcp(host:3306)/db` (also `@unix(`, `@tcp6(`,
/// `@udp(`): no `://`, so [`scan_urls`] does not see it. The user info starts after
/// whitespace, a quote or `=`.
pub(super) fn scan_go_dsns(text: &str, out: &mut Collector) {
    for marker in ["@tcp(", "@tcp6(", "@unix(", "@udp("] {
        let mut from = 0;
        while let Some(found) = text[from..].find(marker) {
            let at = from + found;
            from = at + marker.len();
            let start = text[..at]
                .rfind(|c: char| c.is_whitespace() || matches!(c, '"' | '\'' | '`' | '='))
                .map_or(0, |p| p + 1);
            let info = &text[start..at];
            if info.contains(':') {
                userinfo(info, out);
            }
        }
    }
}

/// The MySQL clients' `-pPASSWORD` (no space: `-p PW` asks for one instead), on a line
/// that runs one of them (`mysql`, `mysqldump`, `mysqladmin`, `mariadb`...); elsewhere
/// `-p8080` is a port.
pub(super) fn scan_mysql_flags(text: &str, out: &mut Collector) {
    let words = text.split_whitespace();
    let runs_client = text.split_whitespace().any(|w| {
        w.rsplit('/')
            .next()
            .is_some_and(|cmd| cmd.starts_with("mysql") || cmd.starts_with("mariadb"))
    });
    if !runs_client {
        return;
    }
    for word in words {
        let word = word.trim_matches(['"', '\'']);
        if let Some(password) = word.strip_prefix("-p").map(|p| p.trim_matches(['"', '\''])) {
            if !password.is_empty() {
                out.add(password, Origin::KeyValue, Weight::Strong);
            }
        }
    }
}

/// At most the first `max` bytes of `text`, cut at a character boundary.
fn prefix(text: &str, max: usize) -> &str {
    let mut end = max.min(text.len());
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    &text[..end]
}

/// `user:password` (the password is the candidate) or a lone user name, which for
/// `https://TOKEN@github.com` is the secret.
fn userinfo(info: &str, out: &mut Collector) {
    match info.split_once(':') {
        Some((_, password)) => emit_decoded(password, Origin::UrlUserinfo, Weight::Strong, false, out),
        None => emit_decoded(info, Origin::UrlUserinfo, Weight::Neutral, false, out),
    }
}

/// The percent-decoded value (and, for a query, with `+` read as a space), then the raw
/// value as written.
fn emit_decoded(raw: &str, origin: Origin, weight: Weight, query: bool, out: &mut Collector) {
    if let Some(decoded) = percent_decode(raw) {
        out.add(&decoded, origin, weight);
    }
    if query && raw.contains('+') {
        let spaced = Zeroizing::new(raw.replace('+', " "));
        match percent_decode(&spaced) {
            Some(decoded) => out.add(&decoded, origin, weight),
            None => out.add(&spaced, origin, weight),
        }
    }
    out.add(raw, origin, weight);
}

/// `%XX` escapes decoded; `None` when there are none or the result is not UTF-8 (it could
/// not equal a stored string). Lenient, unlike `rekey_net::percent_decode`: text pasted as
/// found may hold a stray `%` next to valid escapes, and each valid one still counts.
pub(super) fn percent_decode(raw: &str) -> Option<Zeroizing<String>> {
    if !raw.contains('%') {
        return None;
    }
    let bytes = raw.as_bytes();
    let mut buf = Zeroizing::new(Vec::with_capacity(bytes.len()));
    let mut changed = false;
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            if let (Some(h), Some(l)) = (
                bytes.get(i + 1).and_then(|&b| hex(b)),
                bytes.get(i + 2).and_then(|&b| hex(b)),
            ) {
                buf.push(h << 4 | l);
                changed = true;
                i += 3;
                continue;
            }
        }
        buf.push(bytes[i]);
        i += 1;
    }
    if !changed {
        return None;
    }
    match String::from_utf8(std::mem::take(&mut *buf)) {
        Ok(s) => Some(Zeroizing::new(s)),
        Err(e) => {
            e.into_bytes().zeroize();
            None
        }
    }
}

fn hex(b: u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        b'A'..=b'F' => Some(b - b'A' + 10),
        _ => None,
    }
}

/// `key=value` pairs anywhere in `text`, taken when the key names a secret: libpq
/// (`host=db password='p w'`), URL-ish (`&token=...`), ADO.NET/ODBC
/// (`Server=x;Password=PW;`, `PWD={p;w}`), flags (`--password=PW`, `--password PW`),
/// `password: PW` in the middle of a line, and `requirepass PW`-style directives. When the
/// text holds `;`, it is also read with `;` as the only separator, so that values may
/// hold spaces.
pub(super) fn scan_key_values(text: &str, depth: u8, out: &mut Collector) {
    scan_pairs(text, false, depth, out);
    if text.contains(';') {
        scan_pairs(text, true, depth, out);
    }
}

fn is_separator(b: u8) -> bool {
    b.is_ascii_whitespace()
        || matches!(
            b,
            b';' | b'&' | b'?' | b',' | b'(' | b')' | b'[' | b']' | b'"' | b'\'' | b'`'
        )
}

fn is_blank(b: u8) -> bool {
    b == b' ' || b == b'\t'
}

fn scan_pairs(text: &str, semicolon_only: bool, depth: u8, out: &mut Collector) {
    let b = text.as_bytes();
    let n = b.len();
    let mut i = 0;
    while i < n {
        while i < n && is_separator(b[i]) {
            i += 1;
        }
        let key_start = i;
        while i < n && !is_separator(b[i]) && b[i] != b'=' && b[i] != b':' {
            i += 1;
        }
        if i == key_start {
            i += 1;
            continue;
        }
        let key = &text[key_start..i];
        let mut j = i;
        // `"password": ...`: the key's closing quote.
        if j < n && matches!(b[j], b'"' | b'\'') {
            j += 1;
        }
        while j < n && is_blank(b[j]) {
            j += 1;
        }
        let equals = j < n && b[j] == b'=' && b.get(j + 1) != Some(&b'=');
        let colon = j < n && b[j] == b':' && b.get(j + 1).is_none_or(|&c| is_blank(c) || c == b'"' || c == b'\'');
        let secret = is_secret_key(key);
        let assigned = equals || (colon && secret);
        if !assigned {
            // `requirepass PW`, `--password PW`, `AUTH PW`: a secret-like word, then a value.
            if secret && i < n && is_blank(b[i]) {
                let mut v = i;
                while v < n && is_blank(b[v]) {
                    v += 1;
                }
                if v < n && b[v] != b'=' && b[v] != b':' {
                    let end = value_at(text, v, false, Origin::KeyValue, Weight::Neutral, depth, out);
                    i = end.max(i);
                }
            }
            continue;
        }
        let mut v = j + 1;
        while v < n && is_blank(b[v]) {
            v += 1;
        }
        let weight = if secret { Weight::Strong } else { weight_of(key) };
        if weight == Weight::Neutral {
            // Only keys that name a secret (or a public value, to suppress it) count here;
            // a whole `KEY=value` line is the env form's.
            i = v;
            continue;
        }
        let end = value_at(text, v, semicolon_only, Origin::KeyValue, weight, depth, out);
        i = end.max(v);
    }
}

/// Reads the value starting at byte `v`, emits it, and returns the index after it.
fn value_at(
    text: &str,
    v: usize,
    loose: bool,
    origin: Origin,
    weight: Weight,
    depth: u8,
    out: &mut Collector,
) -> usize {
    let b = text.as_bytes();
    let n = b.len();
    if v >= n {
        return n;
    }
    if matches!(b[v], b'"' | b'\'' | b'`') {
        if let Some((readings, end)) = quoted(&text[v..], &mut out.budget) {
            for r in &readings {
                super::text::emit_value(r, origin, weight, depth, out);
            }
            return v + end + 1;
        }
    }
    if b[v] == b'{' {
        // ODBC: PWD={p;w}, with `}}` standing for `}`.
        if let Some(close) = text[v + 1..].find('}') {
            let inner = &text[v + 1..v + 1 + close];
            out.add(inner, origin, weight);
        }
    }
    let mut end = v;
    while end < n {
        let c = b[end];
        let stop = if loose {
            c == b';' || c == b'\n'
        } else {
            c.is_ascii_whitespace() || c == b';' || c == b'&'
        };
        if stop {
            break;
        }
        end += 1;
    }
    let value = text[v..end].trim_end();
    // `Authorization: Bearer TOKEN` read word by word: the token follows the scheme.
    if !loose && is_auth_scheme(value) {
        let mut t = end;
        while t < n && is_blank(b[t]) {
            t += 1;
        }
        let mut e = t;
        while e < n && !b[e].is_ascii_whitespace() {
            e += 1;
        }
        if e > t {
            emit_unquoted(&text[t..e], origin, Weight::Strong, depth, out);
            return e;
        }
    }
    emit_unquoted(value, origin, weight, depth, out);
    end
}

/// The password of an HTTP Basic credential (`base64(user:password)`), if `token` is one.
pub(super) fn basic_password(token: &str) -> Option<Zeroizing<String>> {
    let decoded = base64_decode(token)?;
    let colon = decoded.find(':')?;
    Some(Zeroizing::new(decoded[colon + 1..].to_owned()))
}

/// Standard or URL-safe base64, padding optional; `None` unless it decodes to UTF-8.
fn base64_decode(text: &str) -> Option<Zeroizing<String>> {
    let text = text.trim_end_matches('=');
    let mut buf = Zeroizing::new(Vec::with_capacity(text.len() * 3 / 4 + 1));
    let mut acc: u32 = 0;
    let mut bits = 0;
    for c in text.bytes() {
        let v = match c {
            b'A'..=b'Z' => c - b'A',
            b'a'..=b'z' => c - b'a' + 26,
            b'0'..=b'9' => c - b'0' + 52,
            b'+' | b'-' => 62,
            b'/' | b'_' => 63,
            _ => return None,
        };
        acc = (acc << 6) | u32::from(v);
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            buf.push((acc >> bits) as u8);
            acc &= (1 << bits) - 1;
        }
    }
    acc.zeroize();
    match String::from_utf8(std::mem::take(&mut *buf)) {
        Ok(s) => Some(Zeroizing::new(s)),
        Err(e) => {
            e.into_bytes().zeroize();
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percent_decoding() {
        assert_eq!(
            percent_decode("p%40ss%2Fw").as_deref().map(String::as_str),
            Some("p@ss/w")
        );
        assert!(percent_decode("plain").is_none());
        assert!(percent_decode("100%").is_none());
        assert!(percent_decode("%zz%4").is_none());
        assert!(percent_decode("%ff").is_none(), "not UTF-8");
        assert_eq!(percent_decode("%e2%82%ac").as_deref().map(String::as_str), Some("€"));
    }

    #[test]
    fn basic_credentials() {
        // base64("app:s3cr3t pw")
        assert_eq!(
            basic_password("YXBwOnMzY3IzdCBwdw==").as_deref().map(String::as_str),
            Some("s3cr3t pw")
        );
        assert_eq!(
            basic_password("YXBwOnMzY3IzdCBwdw").as_deref().map(String::as_str),
            Some("s3cr3t pw")
        );
        assert!(basic_password("bm8tY29sb24").is_none());
        assert!(basic_password("not base64!").is_none());
    }
}
