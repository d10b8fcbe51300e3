//! Target `leaked_extract`: [`rekey::leaked::extract`] with every
//! [`rekey::leaked::Source`] on the same input.
//!
//! Checked on every input, besides "returns, never panics" (the module documents
//! "[`extract`] never panics, whatever the input"):
//!
//! - [`ExtractError::Empty`] exactly when the input is only whitespace; with
//!   [`Source::Text`] any other input gives `Ok` (only scanners can fail to parse);
//! - candidates are deduplicated by value;
//! - a candidate's `Debug` never shows its value, and an error never quotes the input:
//!   values holding [`MARKER`] must not appear in either.

use crate::harness::Rng;
use rekey::leaked::{extract, Candidate, ExtractError, Source};
use std::collections::HashSet;

/// Seeds and generated inputs spell their secret values with this, so that a value
/// showing up where it must not is recognised.
pub const MARKER: &str = "SECRET";

/// Target `leaked_extract`: any bytes (invalid UTF-8 replaced) through all three sources.
pub fn leaked_extract(data: &[u8]) {
    let input = String::from_utf8_lossy(data);
    for source in [Source::Text, Source::Trufflehog, Source::Gitleaks] {
        check(&input, source);
    }
}

fn check(input: &str, source: Source) {
    match extract(input, source) {
        Ok(candidates) => {
            assert!(!input.trim().is_empty(), "{source}: whitespace input gave candidates");
            check_candidates(&candidates, source);
        }
        Err(ExtractError::Empty) => {
            assert!(input.trim().is_empty(), "{source}: non-blank input reported as empty");
        }
        Err(error) => {
            assert!(source != Source::Text, "text input failed to parse: {error}");
            let message = error.to_string();
            assert!(
                !message.contains(MARKER),
                "{source}: an error quotes the input: {message:?}"
            );
        }
    }
}

fn check_candidates(candidates: &[Candidate], source: Source) {
    let mut seen = HashSet::new();
    for candidate in candidates {
        let value = candidate.value.expose();
        assert!(
            seen.insert(value.to_owned()),
            "{source}: a value is listed twice (origin {})",
            candidate.origin
        );
        if value.contains(MARKER) {
            let debug = format!("{candidate:?}");
            assert!(!debug.contains(value), "{source}: Debug shows the value: {debug}");
        }
    }
}

const SEPARATORS: &[&str] = &["\n", "\r\n", " ", ""];

/// Structured generator: artefacts as a responder would paste them, from random parts.
pub fn generate(rng: &mut Rng) -> Vec<u8> {
    let secret = format!(
        "{}{}{}",
        rng.pick(&["pw-", "", "tok_", "s3cr3t/", "a b ", "p@ss:", "%41"]),
        MARKER,
        rng.pick(&["-1234", "", "'\"", "==", "/?#@", "\\n", "\u{e9}", "$$", "}}"])
    );
    let mut out = String::new();
    for _ in 0..1 + rng.below(4) {
        let line = match rng.below(16) {
            0 => format!("DATABASE_URL=postgresql://app:{secret}@db:5432/orders"),
            1 => format!("export DB_PASS=\"{secret}\""),
            2 => format!("{{\"password\": \"{secret}\", \"host\": \"db\", \"port\": 5432}}"),
            3 => format!("password: '{secret}'"),
            4 => format!("host=db user=app password='{secret}' dbname=x"),
            5 => format!("Server=db;User Id=app;Password={secret};"),
            6 => format!("curl -H 'Authorization: Bearer {secret}' https://api"),
            7 => format!("2026-01-01 INFO connecting with password \"{secret}\""),
            8 => format!("AKIAABCDEFGHIJKLMNOP {secret}"),
            9 => format!(
                "{{\"SourceMetadata\":{{}},\"DetectorName\":\"URI\",\"Raw\":\"{secret}\",\"RawV2\":\"id:{secret}\"}}"
            ),
            10 => format!("[{{\"Secret\":\"{secret}\",\"Match\":\"password={secret}\",\"File\":\"a\"}}]"),
            11 => format!("https://{secret}@github.com/x/y.git?token={secret}&x=1"),
            12 => format!("  - {secret}"),
            13 => format!("# PGPASSWORD={secret}"),
            14 => format!("--password {secret} --user app"),
            _ => secret.clone(),
        };
        out.push_str(&line);
        let separator: &&str = rng.pick(SEPARATORS);
        out.push_str(separator);
    }
    out.into_bytes()
}

/// Tokens for mutations: the syntax of every form the extractor reads.
pub const DICTIONARY: &[&str] = &[
    "://",
    "@",
    ":",
    "=",
    "\"",
    "'",
    "`",
    "\\\"",
    "%2F",
    "%",
    "+",
    "?",
    "&",
    "#",
    ";",
    "{",
    "}",
    "[",
    "]",
    ",",
    "\n",
    "export ",
    "declare -x ",
    "$env:",
    "set ",
    "password=",
    "PASSWORD=",
    "Password=",
    "PWD={",
    "--password ",
    "token: ",
    "requirepass ",
    "Authorization: Bearer ",
    "Authorization: Basic ",
    "dXNlcjpwYXNz",
    "postgresql://",
    "user:SECRET@",
    "AKIA",
    "AKIAABCDEFGHIJKLMNOP",
    "ASIA",
    "wJalrXUtnFEMI/K7MDENG/bPxRfiCYSECRETKEY",
    "{\"Raw\":\"",
    "\"RawV2\":\"",
    "\"Secret\":\"",
    "\"Match\":\"",
    "[{",
    "}]",
    "${",
    "{{",
    "}}",
    "- ",
    ": ",
    "|",
    ">",
    "//",
    "\\",
    "\\n",
    "\\u00",
    "****",
    "null",
    "12345678",
    "SECRET",
];
