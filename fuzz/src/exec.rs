//! Target `exec_response`: [`rekey_exec::parse_answer`], the exec plugin's answer
//! parser, on what a plugin might print.
//!
//! The input is split into the plugin's stdout and stderr at the first `0xff` byte (no
//! such byte: all of it is stdout, and its last 64 bytes are stderr too); the exit status
//! comes from the input's hash (0 most often, 1, 2, or killed by a signal).
//!
//! Checked on every input, besides "returns, never panics" (the crate documents "never
//! a panic"):
//!
//! - `Ok` only from a plugin that exited 0, for a JSON object with `"protocol": 1` and
//!   `"ok": true`;
//! - every error is one line, starts with the label (which names the plugin and the
//!   operation), and holds none of the request's secrets ([`SECRETS`], spelled in the
//!   seeds and generated inputs around [`MARKER`]).

use crate::harness::{fnv64, Rng};
use rekey_exec::parse_answer;
use serde_json::Value;

/// Seeds and generated inputs spell the request's secrets with this.
pub const MARKER: &str = "SECRET";

/// The secrets of the request the answer replies to (masked in every message).
pub const SECRETS: &[&str] = &["pw-SECRET-new-0123", "pw-SECRET-old-4567", "tok_SECRET_admin"];

const LABEL: &str = "exec plugin /usr/lib/rekey/plugin: login";

/// Target `exec_response`.
pub fn exec_response(data: &[u8]) {
    let (stdout, stderr) = match data.iter().position(|&b| b == 0xff) {
        Some(at) => (&data[..at], &data[at + 1..]),
        None => (data, &data[data.len().saturating_sub(64)..]),
    };
    let code = match fnv64(data) % 8 {
        0..=4 => Some(0),
        5 => Some(1),
        6 => Some(2),
        _ => None,
    };
    match parse_answer(LABEL, stdout, code, stderr, SECRETS) {
        Ok(answer) => {
            assert_eq!(code, Some(0), "accepted from a plugin that exited {code:?}");
            assert_eq!(answer.get("ok"), Some(&Value::Bool(true)), "accepted without ok: true");
            assert_eq!(
                answer.get("protocol").and_then(Value::as_u64),
                Some(1),
                "accepted without protocol 1"
            );
            let debug = format!("{answer:?}");
            for secret in SECRETS {
                assert!(!debug.contains(secret), "an answer's Debug shows a secret: {debug}");
            }
        }
        Err(error) => {
            let message = error.to_string();
            assert!(
                !message.contains('\n') && !message.contains('\r'),
                "an error of more than one line: {message:?}"
            );
            assert!(message.contains(LABEL), "an error not naming the plugin: {message:?}");
            for secret in SECRETS {
                assert!(!message.contains(secret), "an error shows a secret: {message:?}");
            }
        }
    }
}

/// Tokens of the protocol worth inserting.
pub const DICTIONARY: &[&str] = &[
    "{",
    "}",
    "[",
    "]",
    ":",
    ",",
    "\"",
    "\\\"",
    "\\n",
    "\\u0000",
    "\"protocol\"",
    "\"ok\"",
    "\"error\"",
    "\"kind\"",
    "\"message\"",
    "\"doc\"",
    "\"strategies\"",
    "\"removed\"",
    "true",
    "false",
    "null",
    "1",
    "2",
    "1.0",
    "-1",
    "1e400",
    "18446744073709551617",
    "\"rejected\"",
    "\"unreachable\"",
    "\"retryable\"",
    "pw-SECRET-new-0123",
    "tok_SECRET_admin",
    "\n",
    "\u{ff}",
];

/// A plugin's answer: well-formed, nearly so, or with secrets in its words.
pub fn generate(rng: &mut Rng) -> Vec<u8> {
    let secret = *rng.pick(SECRETS);
    let protocol = *rng.pick(&["1", "1", "1", "2", "0", "\"1\"", "1.0", "null", "-1", "1e3"]);
    let ok = *rng.pick(&["true", "true", "false", "\"true\"", "1", "null"]);
    let kind = *rng.pick(&[
        "rejected",
        "unreachable",
        "denied",
        "invalid",
        "conflict",
        "not_found",
        "retryable",
        "bogus",
        "",
    ]);
    let message = match rng.below(5) {
        0 => format!("refused {secret}"),
        1 => format!("line one\\n{secret}\\r\\nline three"),
        2 => "x".repeat(rng.below(2000)),
        3 => format!("{}{}", &secret[..secret.len() / 2], &secret[secret.len() / 2..]),
        _ => String::new(),
    };
    let mut fields: Vec<String> = Vec::new();
    if !rng.one_in(8) {
        fields.push(format!("\"protocol\": {protocol}"));
    }
    if !rng.one_in(8) {
        fields.push(format!("\"ok\": {ok}"));
    }
    match rng.below(6) {
        0 => fields.push(format!(
            "\"error\": {{\"kind\": \"{kind}\", \"message\": \"{message}\"}}"
        )),
        1 => fields.push(format!("\"doc\": {{\"key_id\": \"k1\", \"api_key\": \"{secret}\"}}")),
        2 => fields.push("\"strategies\": [\"dual\"], \"mints\": true, \"sweeps\": true".to_owned()),
        3 => fields.push(format!("\"removed\": [\"k1\", \"{secret}\"]")),
        4 => fields.push(format!("\"error\": \"{message}\"")),
        _ => {}
    }
    let mut out = format!("{{{}}}", fields.join(", "));
    match rng.below(6) {
        0 => out.truncate(rng.below(out.len() + 1)),
        1 => out.push_str("\n{\"protocol\": 1, \"ok\": true}"),
        2 => out = format!("Traceback (most recent call last):\n  {secret}\n{out}"),
        _ => {}
    }
    let mut bytes = out.into_bytes();
    if rng.one_in(2) {
        bytes.push(0xff);
        bytes.extend_from_slice(format!("warning: using {secret}\nlast line").as_bytes());
    }
    bytes
}
