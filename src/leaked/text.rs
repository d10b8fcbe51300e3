//! Text as a responder pastes it: JSON documents wherever they start, then line by line
//! the `.env`/shell, YAML, URL, `key=value`, quoted and AWS forms; the whole input last.

use super::candidate::Origin;
use super::collect::{weight_of, Collector, Weight};
use super::json::{find_json, walk, Span};
use super::quote::quoted;
use super::url::{basic_password, scan_go_dsns, scan_key_values, scan_mysql_flags, scan_urls};
use zeroize::Zeroizing;

/// How deep values are searched inside values (a JSON string holding JSON holding a DSN).
const MAX_DEPTH: u8 = 3;

/// Quoted strings anywhere in a line count from this many characters.
const MIN_QUOTED: usize = 8;

/// Every form in `text`. `bare`: the text is what the responder pasted, so the whole of
/// it (and a line holding a single token) is a candidate too; scanner fields pass `false`
/// because the field itself is already one.
pub(super) fn extract_text(text: &str, bare: bool, out: &mut Collector) {
    let trimmed = text.trim();
    if trimmed.is_empty() {
        return;
    }
    let multi_line = trimmed.contains('\n');
    scan_block(trimmed, 0, bare && multi_line, out);
    if bare {
        if let Some((readings, end)) = quoted(trimmed, &mut out.budget) {
            if end + 1 == trimmed.len() {
                for r in &readings {
                    out.add(r, Origin::Bare, Weight::Neutral);
                }
            }
        }
        out.add(trimmed, Origin::Bare, Weight::Neutral);
        if !multi_line {
            // Spaces around a one-line value may belong to it: keep the line as typed too.
            let line = text.trim_matches(['\n', '\r']);
            if line != trimmed {
                out.add(line, Origin::Bare, Weight::Neutral);
            }
        }
    }
}

/// JSON documents first (each emitted when its first line comes up), then each line of
/// the text with the documents blanked out.
fn scan_block(text: &str, depth: u8, token_lines: bool, out: &mut Collector) {
    let spans = find_json(text);
    let masked = mask(text, &spans);
    let mut spans = spans.into_iter().peekable();
    let mut offset = 0;
    for line in masked.split('\n') {
        let end = offset + line.len();
        while let Some(span) = spans.next_if(|s| s.start <= end) {
            walk(span.value, None, depth, out);
        }
        scan_line(line.strip_suffix('\r').unwrap_or(line), depth, token_lines, out);
        offset = end + 1;
    }
    for span in spans {
        walk(span.value, None, depth, out);
    }
}

/// A copy of `text` with the JSON documents replaced by spaces (line breaks kept, byte
/// offsets unchanged).
fn mask(text: &str, spans: &[Span]) -> Zeroizing<String> {
    let mut out = Zeroizing::new(String::with_capacity(text.len()));
    let mut pos = 0;
    for span in spans {
        out.push_str(&text[pos..span.start]);
        for c in text[span.start..span.end].chars() {
            if c == '\n' {
                out.push('\n');
            } else {
                (0..c.len_utf8()).for_each(|_| out.push(' '));
            }
        }
        pos = span.end;
    }
    out.push_str(&text[pos..]);
    out
}

/// One line: the whole-line forms (`.env`/shell, else YAML), then the forms found
/// anywhere in it.
fn scan_line(line: &str, depth: u8, token_lines: bool, out: &mut Collector) {
    let before = out.accepted();
    let trimmed = line.trim();
    let body = strip_markers(trimmed);
    let structured = env_line(body, depth, out) || yaml_line(body, depth, out);
    scan_urls(line, false, out);
    scan_go_dsns(line, out);
    scan_mysql_flags(line, out);
    scan_aws(line, out);
    scan_key_values(line, depth, out);
    scan_quoted(line, depth, out);
    if token_lines
        && !structured
        && out.accepted() == before
        && !trimmed.is_empty()
        && !trimmed.contains(char::is_whitespace)
    {
        out.add(trimmed, Origin::Bare, Weight::Neutral);
    }
}

/// A line without its comment or quotation marker: a commented-out secret is still a
/// leaked one.
fn strip_markers(line: &str) -> &str {
    for marker in ["#", "//", ";", ">"] {
        if let Some(rest) = line.strip_prefix(marker) {
            return rest.trim_start();
        }
    }
    line
}

/// `KEY=value`, `KEY="value"`, `KEY='value'`, `export KEY=...` (and `set`, `ENV`,
/// `$env:`, `declare -x`, `local`, `readonly`; `key = value` in INI and TOML files).
/// Returns whether the line had this shape.
fn env_line(body: &str, depth: u8, out: &mut Collector) -> bool {
    let mut rest = body;
    for prefix in ["export ", "declare -x ", "set ", "env ", "$env:", "local ", "readonly "] {
        if rest.get(..prefix.len()).is_some_and(|p| p.eq_ignore_ascii_case(prefix)) {
            rest = rest[prefix.len()..].trim_start();
            break;
        }
    }
    let kb = rest.as_bytes();
    if !kb.first().is_some_and(|c| c.is_ascii_alphabetic() || *c == b'_') {
        return false;
    }
    let key_len = kb
        .iter()
        .take_while(|c| c.is_ascii_alphanumeric() || matches!(c, b'_' | b'.' | b'-'))
        .count();
    let key = &rest[..key_len];
    let after = rest[key_len..].trim_start_matches([' ', '\t']);
    let Some(value) = after.strip_prefix('=') else {
        return false;
    };
    if value.starts_with('=') {
        return false;
    }
    let value = value.trim_start_matches([' ', '\t']);
    let weight = weight_of(key);
    if value.starts_with(['"', '\'', '`']) {
        if let Some((readings, _)) = quoted(value, &mut out.budget) {
            for r in &readings {
                emit_value(r, Origin::Env, weight, depth, out);
            }
            return true;
        }
    }
    let raw = value.trim_end();
    let uncommented = raw
        .find(" #")
        .or_else(|| raw.find("\t#"))
        .map_or(raw, |p| raw[..p].trim_end());
    if uncommented.is_empty() {
        return true;
    }
    if !has_inner_pairs(uncommented) {
        emit_unquoted(uncommented, Origin::Env, weight, depth, out);
    }
    if let Some(first) = uncommented.split_whitespace().next() {
        if first.len() != uncommented.len() {
            emit_unquoted(first, Origin::Env, weight, depth, out);
        }
    }
    true
}

/// Whether a value is itself a list of pairs (`db user=app password=PW`), whose parts the
/// `key=value` form reads.
fn has_inner_pairs(value: &str) -> bool {
    value.split_whitespace().skip(1).any(|word| {
        word.find('=').is_some_and(|p| {
            p > 0
                && word[..p]
                    .bytes()
                    .all(|c| c.is_ascii_alphanumeric() || c == b'_' || c == b'-')
        })
    })
}

/// YAML `key: value`, `key: "value"`, `"key": value` at any indentation, and `- value`
/// list items. Block scalars (`|`, `>`), aliases and empty values (a nested mapping
/// follows) are skipped. Returns whether the line had this shape.
fn yaml_line(body: &str, depth: u8, out: &mut Collector) -> bool {
    let (rest, item) = match body.strip_prefix("- ") {
        Some(r) => (r.trim_start(), true),
        None => (body, false),
    };
    let (key, after, quoted_key) = if rest.starts_with(['"', '\'']) {
        match quoted(rest, &mut out.budget) {
            Some((_, end)) => (&rest[1..end], &rest[end + 1..], true),
            None => return false,
        }
    } else {
        let len = rest.find(|c: char| c == ':' || c.is_whitespace()).unwrap_or(rest.len());
        (&rest[..len], &rest[len..], false)
    };
    let after_colon = after.trim_start_matches([' ', '\t']);
    let value = match after.strip_prefix(':').or(if quoted_key {
        after_colon.strip_prefix(':')
    } else {
        None
    }) {
        Some(v) if v.is_empty() || v.starts_with([' ', '\t']) || quoted_key => v.trim(),
        _ => {
            if item {
                scalar(rest, Origin::Yaml, Weight::Neutral, depth, out);
            }
            return item;
        }
    };
    if key.is_empty() {
        return false;
    }
    let mut value = value;
    // Anchors and tags before the value: `&name value`, `!!str value`.
    while value.starts_with(['&', '!']) {
        match value.find([' ', '\t']) {
            Some(p) => value = value[p..].trim_start(),
            None => return true,
        }
    }
    if !value.is_empty() && !value.starts_with(['|', '>', '#', '*']) {
        scalar(value, Origin::Yaml, weight_of(key), depth, out);
    }
    true
}

/// A YAML scalar: quoted (every reading), or plain up to a ` #` comment.
fn scalar(value: &str, origin: Origin, weight: Weight, depth: u8, out: &mut Collector) {
    if value.starts_with(['"', '\'']) {
        if let Some((readings, _)) = quoted(value, &mut out.budget) {
            for r in &readings {
                emit_value(r, origin, weight, depth, out);
            }
            return;
        }
    }
    let uncommented = value.find(" #").map_or(value, |p| &value[..p]).trim_end();
    emit_unquoted(uncommented, origin, weight, depth, out);
}

/// Strings of at least [`MIN_QUOTED`] characters between `"`, `'` or `` ` `` anywhere in a
/// line (an apostrophe inside a word does not open one).
fn scan_quoted(line: &str, depth: u8, out: &mut Collector) {
    let b = line.as_bytes();
    let mut i = 0;
    while i < b.len() {
        let c = b[i];
        let opens = matches!(c, b'"' | b'`') || (c == b'\'' && (i == 0 || !b[i - 1].is_ascii_alphanumeric()));
        if opens {
            if let Some((readings, end)) = quoted(&line[i..], &mut out.budget) {
                for r in &readings {
                    if r.chars().count() >= MIN_QUOTED {
                        emit_value(r, Origin::Quoted, Weight::Neutral, depth, out);
                    }
                }
                i += end + 1;
                continue;
            }
        }
        i += 1;
    }
}

/// AWS access key ids anywhere (`AKIA`/`ASIA` + 16 of `A-Z0-9`, on word boundaries); and,
/// when the input holds one, 40-character secret access key shapes.
fn scan_aws(text: &str, out: &mut Collector) {
    for id in aws_key_ids(text) {
        out.add(id, Origin::AwsAccessKeyId, Weight::Strong);
    }
    if !out.aws_context {
        return;
    }
    let b = text.as_bytes();
    let is_key_char = |c: u8| c.is_ascii_alphanumeric() || c == b'/' || c == b'+';
    let mut i = 0;
    while i < b.len() {
        if !is_key_char(b[i]) {
            i += 1;
            continue;
        }
        let start = i;
        while i < b.len() && is_key_char(b[i]) {
            i += 1;
        }
        if i - start == 40 && b.get(i) != Some(&b'=') {
            out.add(&text[start..i], Origin::AwsSecretAccessKey, Weight::Strong);
        }
    }
}

/// The AWS access key ids in `text`.
pub(super) fn aws_key_ids(text: &str) -> impl Iterator<Item = &str> {
    let b = text.as_bytes();
    (0..b.len().saturating_sub(19)).filter_map(move |i| {
        let prefix = &b[i..i + 4];
        let is_id = (prefix == b"AKIA" || prefix == b"ASIA")
            && (i == 0 || !b[i - 1].is_ascii_alphanumeric())
            && b[i + 4..i + 20]
                .iter()
                .all(|c| c.is_ascii_uppercase() || c.is_ascii_digit())
            && b.get(i + 20).is_none_or(|c| !c.is_ascii_alphanumeric());
        is_id.then(|| &text[i..i + 20])
    })
}

/// A value found in a structured form, and its trimmed reading when it ends in
/// punctuation that usually belongs to the surrounding text (`,`, `;`, `)`, a quote).
pub(super) fn emit_unquoted(value: &str, origin: Origin, weight: Weight, depth: u8, out: &mut Collector) {
    emit_value(value, origin, weight, depth, out);
    let trimmed = value.trim_end_matches([',', ';', '.', ')', ']', '}', '"', '\'', '`']);
    if trimmed.len() != value.len() {
        emit_value(trimmed, origin, weight, depth, out);
    }
}

/// A value found in a structured form: the value itself, then what it holds (a URL's
/// password, a DSN's password, an `Authorization` scheme's token, JSON text, an AWS
/// key id), searched [`MAX_DEPTH`] levels deep.
pub(super) fn emit_value(value: &str, origin: Origin, weight: Weight, depth: u8, out: &mut Collector) {
    out.add(value, origin, weight);
    if depth >= MAX_DEPTH {
        return;
    }
    let depth = depth + 1;
    if let Some((scheme, token)) = value.trim().split_once([' ', '\t']) {
        let token = token.trim();
        if is_auth_scheme(scheme) && !token.is_empty() && !token.contains(char::is_whitespace) {
            out.add(token, origin, Weight::Strong);
            if scheme.eq_ignore_ascii_case("basic") {
                if let Some(password) = basic_password(token) {
                    out.add(&password, origin, Weight::Strong);
                }
            }
        }
    }
    if value.trim_start().starts_with(['{', '[']) {
        scan_block(value.trim(), depth, false, out);
    }
    if value.contains("://") {
        scan_urls(value, true, out);
    }
    if value.contains(['=', ':']) {
        scan_key_values(value, depth, out);
    }
    scan_aws(value, out);
}

/// `Bearer`, `Basic`, `Token`, `Digest` (case-insensitive).
pub(super) fn is_auth_scheme(word: &str) -> bool {
    ["bearer", "basic", "token", "digest"]
        .iter()
        .any(|s| word.eq_ignore_ascii_case(s))
}
