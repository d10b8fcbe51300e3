//! Quoted strings under the rules of shells, YAML, JSON, TOML and libpq. The same text
//! means different values under different rules (`"a\nb"` is four characters in a shell
//! and three in YAML), so every reading is returned and each becomes a candidate.

use zeroize::Zeroizing;

/// How far a quoted string is looked for: a longer one is not a password.
const MAX_QUOTED: usize = 8 * 1024;

/// A quoted string at the start of `text` (which starts with `"`, `'` or `` ` ``): its
/// readings, most likely first, and the byte index of the closing quote. `None` when the
/// quote is not closed within [`MAX_QUOTED`] bytes. The bytes looked at are taken from
/// `budget` (and nothing is looked at once it is spent), so that text made of stray
/// quotes and backslashes stays linear to read.
pub(super) fn quoted(text: &str, budget: &mut usize) -> Option<(Vec<Zeroizing<String>>, usize)> {
    let bytes = text.as_bytes();
    let q = *bytes.first()?;
    if !matches!(q, b'"' | b'\'' | b'`') {
        return None;
    }
    let limit = bytes.len().min(MAX_QUOTED).min(*budget);
    let (end, scanned) = escaped_end(bytes, q, limit);
    *budget -= scanned.min(*budget);
    let end = match end {
        Some(end) => end,
        None => {
            let plain = bytes.get(1..limit)?.iter().position(|&b| b == q);
            *budget -= plain.map_or(limit, |p| p + 1).min(*budget);
            plain? + 1
        }
    };
    let inner = &text[1..end];
    let quote = char::from(q);
    let mut readings: Vec<Zeroizing<String>> = Vec::with_capacity(4);
    let mut push = |r: Zeroizing<String>| {
        if !readings.iter().any(|x| x.as_str() == r.as_str()) {
            readings.push(r);
        }
    };
    if inner.contains('\\') {
        push(unescape(inner, false));
    }
    push(Zeroizing::new(inner.to_owned()));
    if inner.contains('\\') {
        push(unescape(inner, true));
    }
    let doubled = [quote, quote];
    let doubled: String = doubled.iter().collect();
    if inner.contains(doubled.as_str()) {
        push(Zeroizing::new(inner.replace(doubled.as_str(), &quote.to_string())));
    }
    Some((readings, end))
}

/// The closing quote when `\x` escapes a character and a doubled quote stands for itself,
/// and how many bytes were looked at.
fn escaped_end(bytes: &[u8], q: u8, limit: usize) -> (Option<usize>, usize) {
    let mut i = 1;
    while i < limit {
        match bytes[i] {
            b'\\' => i += 2,
            b if b == q => {
                if i + 1 < limit && bytes[i + 1] == q && i > 1 {
                    i += 2;
                } else {
                    return (Some(i), i);
                }
            }
            _ => i += 1,
        }
    }
    (None, limit)
}

/// Backslash escapes removed. `full`: also `\n`, `\t`, `\r` (YAML, JSON, TOML); otherwise
/// only the characters a shell's double quotes escape (`\"`, `\\`, `\$`, `` \` ``) and
/// quotes.
fn unescape(inner: &str, full: bool) -> Zeroizing<String> {
    let mut out = Zeroizing::new(String::with_capacity(inner.len()));
    let mut chars = inner.chars();
    while let Some(c) = chars.next() {
        if c != '\\' {
            out.push(c);
            continue;
        }
        match chars.next() {
            Some(e @ ('"' | '\'' | '\\' | '$' | '`')) => out.push(e),
            Some('/') if full => out.push('/'),
            Some('n') if full => out.push('\n'),
            Some('t') if full => out.push('\t'),
            Some('r') if full => out.push('\r'),
            Some(other) => {
                out.push('\\');
                out.push(other);
            }
            None => out.push('\\'),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn readings(text: &str) -> Vec<String> {
        quoted(text, &mut usize::MAX.clone())
            .map(|(r, _)| r.iter().map(|s| s.to_string()).collect())
            .unwrap_or_default()
    }

    #[test]
    fn readings_of_each_quoting_rule() {
        assert_eq!(readings(r#""plain" rest"#), ["plain"]);
        assert_eq!(readings(r#""a\"b\nc""#), [r#"a"b\nc"#, r#"a\"b\nc"#, "a\"b\nc"]);
        assert_eq!(readings("'it''s' x"), ["it''s", "it's"]);
        assert_eq!(readings(r"'it\'s secret' x"), [r"it's secret", r"it\'s secret"]);
        assert_eq!(readings("`back tick`"), ["back tick"]);
        assert!(quoted("\"never closed", &mut 1000).is_none());
        assert_eq!(quoted("\"\" x", &mut 1000).map(|(_, end)| end), Some(1));
        let mut budget = 10;
        assert!(quoted("\"longer than the budget\"", &mut budget).is_none());
        assert_eq!(budget, 0, "spent");
        assert!(
            quoted("\"ok\"", &mut budget).is_none(),
            "nothing is read once it is spent"
        );
    }
}
