//! The public types: where the input came from, what was found in it, and how a
//! found value is shown ([`fingerprint`]) and compared ([`matches`]).

use rekey_api::Secret;
use sha2::{Digest, Sha256};
use std::fmt;
use std::str::FromStr;
use subtle::ConstantTimeEq;

/// Where the input came from: what a responder pasted, or a secret scanner's report.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, clap::ValueEnum)]
pub enum Source {
    /// Text as found: a bare value, a URL or DSN, a `.env` or YAML file, JSON, a log line.
    #[default]
    Text,
    /// `trufflehog --json` output: one JSON object per line, the values in `Raw` and `RawV2`.
    Trufflehog,
    /// A gitleaks JSON report (`--report-format json`): an array of findings with `Secret`
    /// and `Match`.
    Gitleaks,
}

impl Source {
    /// The name used on the command line (`text`, `trufflehog`, `gitleaks`).
    pub fn as_str(self) -> &'static str {
        match self {
            Source::Text => "text",
            Source::Trufflehog => "trufflehog",
            Source::Gitleaks => "gitleaks",
        }
    }
}

impl fmt::Display for Source {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Source {
    type Err = String;

    /// Parses `text`, `trufflehog` or `gitleaks` (case-insensitive).
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.to_ascii_lowercase().as_str() {
            "text" => Ok(Source::Text),
            "trufflehog" => Ok(Source::Trufflehog),
            "gitleaks" => Ok(Source::Gitleaks),
            _ => Err(format!("unknown source {s:?}: expected text, trufflehog or gitleaks")),
        }
    }
}

/// The form a candidate was found in. Safe to print; it never holds the value.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Origin {
    /// The whole input (or a line holding a single token), taken as it is.
    Bare,
    /// The password in a URL's user info (`scheme://user:PASSWORD@host`).
    UrlUserinfo,
    /// A URL query parameter (`?password=...`, `&token=...`).
    UrlQuery,
    /// A `key=value` pair inside a line: a libpq or ADO.NET DSN, a command-line flag.
    KeyValue,
    /// A `.env` or shell line: `KEY=value`, `export KEY="value"`.
    Env,
    /// A YAML `key: value` line, at any indentation.
    Yaml,
    /// A string (or long number) inside a JSON document.
    Json,
    /// A quoted string of at least 8 characters anywhere in a line.
    Quoted,
    /// A trufflehog finding's `Raw` or `RawV2`.
    Trufflehog,
    /// A gitleaks finding's `Secret`.
    Gitleaks,
    /// An AWS access key id (`AKIA`/`ASIA` + 16 characters); it names the IAM key that
    /// holds the leaked secret.
    AwsAccessKeyId,
    /// A 40-character AWS secret access key shape, taken only when the input also holds an
    /// AWS access key id.
    AwsSecretAccessKey,
}

impl Origin {
    /// A short stable name: `bare`, `url-userinfo`, `url-query`, `key-value`, `env`,
    /// `yaml`, `json`, `quoted`, `trufflehog`, `gitleaks`, `aws-access-key-id`,
    /// `aws-secret-access-key`.
    pub fn as_str(self) -> &'static str {
        match self {
            Origin::Bare => "bare",
            Origin::UrlUserinfo => "url-userinfo",
            Origin::UrlQuery => "url-query",
            Origin::KeyValue => "key-value",
            Origin::Env => "env",
            Origin::Yaml => "yaml",
            Origin::Json => "json",
            Origin::Quoted => "quoted",
            Origin::Trufflehog => "trufflehog",
            Origin::Gitleaks => "gitleaks",
            Origin::AwsAccessKeyId => "aws-access-key-id",
            Origin::AwsSecretAccessKey => "aws-secret-access-key",
        }
    }
}

impl fmt::Display for Origin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl serde::Serialize for Origin {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(self.as_str())
    }
}

/// One value found in the input that may be a secret, with the form it was found in.
/// `Debug` shows `Secret(***)` for the value; print [`Candidate::fingerprint`] instead.
#[derive(Clone, Debug)]
pub struct Candidate {
    /// The value. Compare it with [`matches`]; never print it.
    pub value: Secret,
    /// The form it was found in (the first one, when it was found several times).
    pub origin: Origin,
}

impl Candidate {
    /// The value's [`fingerprint`], safe to print.
    pub fn fingerprint(&self) -> String {
        fingerprint(self.value.expose())
    }

    /// Whether this candidate equals `stored`, in constant time (see [`matches`]).
    pub fn matches(&self, stored: &str) -> bool {
        matches(&self.value, stored)
    }
}

/// Why nothing could be extracted. Messages never quote the input.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ExtractError {
    /// The input is empty or only whitespace.
    #[error("the leaked input is empty: paste the value, the file or the scanner output that was found")]
    Empty,
    /// A scanner's output does not have the expected shape.
    #[error("{scanner} output does not parse at line {line}: {reason}")]
    Scanner {
        /// The scanner (`trufflehog` or `gitleaks`).
        scanner: Source,
        /// The 1-based line of the input where parsing failed.
        line: usize,
        /// What was wrong, in words that never include the input.
        reason: &'static str,
    },
}

/// `sha256:` and the first 12 hex digits of the value's SHA-256: short, stable and safe to
/// print, so that a responder can tell candidates apart and match them with a report.
pub fn fingerprint(value: &str) -> String {
    let digest = Sha256::digest(value.as_bytes());
    let mut out = String::with_capacity(19);
    out.push_str("sha256:");
    for byte in digest.iter().take(6) {
        out.push(char::from(HEX[usize::from(byte >> 4)]));
        out.push(char::from(HEX[usize::from(byte & 0x0f)]));
    }
    out
}

const HEX: &[u8; 16] = b"0123456789abcdef";

/// Whether `candidate` equals `stored`: constant-time over the bytes when the lengths are
/// equal; different lengths are unequal (the length is not secret-dependent timing worth
/// hiding: it is also what [`Secret::len`] reports).
pub fn matches(candidate: &Secret, stored: &str) -> bool {
    candidate.expose().as_bytes().ct_eq(stored.as_bytes()).into()
}
