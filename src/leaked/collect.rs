//! The [`Collector`] every form feeds: noise rules, key classification, deduplication.

use super::candidate::{Candidate, Origin};
use rekey_api::Secret;
use std::borrow::Borrow;
use std::collections::{HashMap, HashSet};
use std::hash::{Hash, Hasher};
use zeroize::Zeroizing;

/// How much a key name says about its value.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Weight {
    /// Found under a secret-like key (`password`, `token`...) or in a URL's user info.
    Strong,
    /// Found without a telling key (a quoted string, a JSON array item, `FOO=...`).
    Neutral,
    /// Found under a key that names something public (`host`, `port`, `user`, `dbname`):
    /// the value is dropped unless it is also found with [`Weight::Strong`].
    NotSecret,
}

/// A value as a hash key, zeroized on drop.
#[derive(PartialEq, Eq)]
struct Key(Zeroizing<String>);

impl Hash for Key {
    fn hash<H: Hasher>(&self, state: &mut H) {
        self.0.as_str().hash(state);
    }
}

impl Borrow<str> for Key {
    fn borrow(&self) -> &str {
        self.0.as_str()
    }
}

struct Entry {
    value: Zeroizing<String>,
    origin: Origin,
    strong: bool,
}

/// Candidates in the order they were first found, one per value.
pub(super) struct Collector {
    entries: Vec<Entry>,
    index: HashMap<Key, usize>,
    not_secret: HashSet<Key>,
    accepted: usize,
    /// The input holds an AWS access key id, so 40-character tokens are worth taking.
    pub(super) aws_context: bool,
    /// Bytes that quoted-string scans may still look at (see [`super::quote::quoted`]).
    pub(super) budget: usize,
}

impl Collector {
    /// A collector for an input of `input_len` bytes: the quote-scanning budget is
    /// proportional to it.
    pub(super) fn new(input_len: usize, aws_context: bool) -> Self {
        Collector {
            entries: Vec::new(),
            index: HashMap::new(),
            not_secret: HashSet::new(),
            accepted: 0,
            aws_context,
            budget: input_len.saturating_mul(32).saturating_add(1 << 20),
        }
    }

    /// Offers a value. Values that the noise rules reject are ignored; a value already
    /// found keeps its first origin.
    pub(super) fn add(&mut self, value: &str, origin: Origin, weight: Weight) {
        if is_noise(value) {
            return;
        }
        if weight == Weight::NotSecret {
            if !self.not_secret.contains(value) {
                self.not_secret.insert(Key(Zeroizing::new(value.to_owned())));
            }
            return;
        }
        self.accepted += 1;
        let strong = weight == Weight::Strong;
        if let Some(&i) = self.index.get(value) {
            self.entries[i].strong |= strong;
            return;
        }
        self.index
            .insert(Key(Zeroizing::new(value.to_owned())), self.entries.len());
        self.entries.push(Entry {
            value: Zeroizing::new(value.to_owned()),
            origin,
            strong,
        });
    }

    /// How many values have been accepted so far (duplicates included): a form that wants
    /// to know whether anything else matched compares this before and after.
    pub(super) fn accepted(&self) -> usize {
        self.accepted
    }

    /// The candidates, in order, without the values only ever seen under public keys.
    pub(super) fn finish(mut self) -> Vec<Candidate> {
        let not_secret = std::mem::take(&mut self.not_secret);
        self.entries
            .drain(..)
            .filter(|e| e.strong || !not_secret.contains(e.value.as_str()))
            .map(|mut e| Candidate {
                value: Secret::new(std::mem::take(&mut *e.value)),
                origin: e.origin,
            })
            .collect()
    }
}

/// The noise rules: values too short or too plain to be a secret anyone rotates.
pub(super) fn is_noise(value: &str) -> bool {
    let chars = value.chars().count();
    if chars < 4 {
        return true;
    }
    if value.bytes().all(|b| b.is_ascii_digit()) && chars < 8 {
        return true;
    }
    if value.bytes().all(|b| b == b'*') {
        return true;
    }
    if ["true", "false", "null", "none", "undefined", "redacted"]
        .iter()
        .any(|w| value.eq_ignore_ascii_case(w))
    {
        return true;
    }
    // A reference to a variable, not a value: ${NAME}, {{ name }}.
    if let Some(inner) = value.strip_prefix("${").and_then(|v| v.strip_suffix('}')) {
        if !inner.is_empty() && inner.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_') {
            return true;
        }
    }
    if value.starts_with("{{") && value.ends_with("}}") {
        return true;
    }
    false
}

/// Words in a key name that make its value worth taking wherever the key appears.
const SECRET_WORDS: &[&str] = &[
    "pass",
    "pwd",
    "secret",
    "token",
    "key",
    "auth",
    "cred",
    "private",
    "signature",
    "salt",
    "cookie",
];

/// Whether a key names a secret (`password`, `DB_PASS`, `api-key`, `--token`...).
pub(super) fn is_secret_key(key: &str) -> bool {
    // A "key" may be the first half of a value holding `=` (`abc=def`): zeroize the copy.
    let lower = Zeroizing::new(key.to_ascii_lowercase());
    if SECRET_WORDS.iter().any(|w| lower.contains(w)) {
        return true;
    }
    let short_word = segments(&lower).any(|s| matches!(s, "pw" | "sig" | "pat" | "psk"));
    short_word
}

/// Key names, as the last word of the key, whose values are public.
const PUBLIC_LAST: &[&str] = &[
    "host", "hostname", "hostaddr", "hosts", "server", "port", "user", "username", "dbname", "db", "database",
    "schema", "name", "sslmode", "engine", "region", "driver", "charset", "timeout",
];
/// Endings of a run-together key name (`PGHOST`, `MYSQLUSER`) whose values are public.
const PUBLIC_SUFFIX: &[&str] = &["host", "hostname", "port", "user", "username", "dbname"];

/// Whether a key clearly names something public (`HOST`, `DB_PORT`, `PGUSER`, `dbname`).
pub(super) fn is_public_key(key: &str) -> bool {
    if is_secret_key(key) {
        return false;
    }
    // A "key" may be the first half of a value holding `=` (`abc=def`): zeroize the copy.
    let lower = Zeroizing::new(key.to_ascii_lowercase());
    let Some(last) = segments(&lower).last() else {
        return false;
    };
    PUBLIC_LAST.contains(&last) || PUBLIC_SUFFIX.iter().any(|s| last.ends_with(s))
}

/// The weight of a value found under `key`.
pub(super) fn weight_of(key: &str) -> Weight {
    if is_secret_key(key) {
        Weight::Strong
    } else if is_public_key(key) {
        Weight::NotSecret
    } else {
        Weight::Neutral
    }
}

fn segments(lower: &str) -> impl Iterator<Item = &str> {
    lower
        .split(|c: char| !c.is_ascii_alphanumeric())
        .filter(|s| !s.is_empty())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn noise_rules() {
        for v in [
            "",
            "abc",
            "true",
            "FALSE",
            "null",
            "None",
            "1234567",
            "****",
            "${DB_PASSWORD}",
            "{{ .Values.pw }}",
        ] {
            assert!(is_noise(v), "{v}");
        }
        for v in [
            "abcd",
            "12345678",
            "hunter2!",
            "$ecret",
            "${not a var}",
            "changeme",
            "    x",
        ] {
            assert!(!is_noise(v), "{v}");
        }
    }

    #[test]
    fn key_classes() {
        for k in [
            "password",
            "DB_PASS",
            "api-key",
            "--token",
            "PGPASSWORD",
            "pw",
            "AWS_SECRET_ACCESS_KEY",
        ] {
            assert_eq!(weight_of(k), Weight::Strong, "{k}");
        }
        for k in [
            "HOST", "DB_PORT", "PGUSER", "dbname", "user", "DB_NAME", "sslmode", "Server",
        ] {
            assert_eq!(weight_of(k), Weight::NotSecret, "{k}");
        }
        for k in ["DATABASE_URL", "FOO", "value", "client_id", "dsn"] {
            assert_eq!(weight_of(k), Weight::Neutral, "{k}");
        }
    }

    #[test]
    fn dedup_keeps_first_origin_and_drops_public_values() {
        let mut c = Collector::new(0, false);
        c.add("first-value", Origin::Env, Weight::Neutral);
        c.add("first-value", Origin::Quoted, Weight::Strong);
        c.add("orders_app", Origin::Env, Weight::NotSecret);
        c.add("orders_app", Origin::Quoted, Weight::Neutral);
        c.add("same-as-user", Origin::Env, Weight::NotSecret);
        c.add("same-as-user", Origin::Env, Weight::Strong);
        let out = c.finish();
        let got: Vec<_> = out.iter().map(|c| (c.value.expose(), c.origin)).collect();
        assert_eq!(got, [("first-value", Origin::Env), ("same-as-user", Origin::Env)]);
    }
}
