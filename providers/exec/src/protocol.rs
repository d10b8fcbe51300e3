//! Protocol version 1: the request written to the plugin's stdin and the reading of its
//! answer. Nothing the plugin printed is quoted without every known secret masked.

use crate::run::{Output, MAX_ANSWER};
use rekey_api::{ErrorKind, ProviderError, ProviderResult, SecretDoc};
use serde_json::{Map, Value};
use zeroize::{Zeroize, Zeroizing};

/// The protocol version rekey speaks.
pub const PROTOCOL: u64 = 1;
/// Longest plugin text (error message, stderr) quoted in an error.
const MAX_QUOTED: usize = 300;

/// The operations of protocol version 1.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Op {
    Describe,
    Preflight,
    Create,
    Apply,
    Login,
    Revoke,
    Sweep,
}

impl Op {
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Op::Describe => "describe",
            Op::Preflight => "preflight",
            Op::Create => "create",
            Op::Apply => "apply",
            Op::Login => "login",
            Op::Revoke => "revoke",
            Op::Sweep => "sweep",
        }
    }
}

/// One request.
pub(crate) struct Request<'a> {
    pub op: Op,
    pub credential: &'a str,
    pub settings: &'a Map<String, Value>,
    pub new: Option<&'a SecretDoc>,
    pub current: Option<&'a SecretDoc>,
    pub old: Option<&'a SecretDoc>,
    pub terminate_sessions: bool,
    /// `sweep`: every stored version's document (sent as `"stored"`).
    pub stored: &'a [&'a SecretDoc],
    /// `sweep`: the newest stored version's creation, Unix seconds (sent as `"since"`).
    pub since: Option<u64>,
}

/// A JSON value zeroized on drop.
pub(crate) struct SecretValue(pub Value);

impl Drop for SecretValue {
    fn drop(&mut self) {
        zeroize_value(&mut self.0);
    }
}

fn zeroize_value(value: &mut Value) {
    match value {
        Value::String(s) => s.zeroize(),
        Value::Array(items) => items.iter_mut().for_each(zeroize_value),
        Value::Object(map) => map.values_mut().for_each(zeroize_value),
        _ => {}
    }
}

impl Request<'_> {
    /// The JSON text, in a buffer zeroized on drop.
    pub(crate) fn encode(&self) -> Zeroizing<Vec<u8>> {
        let doc = |d: Option<&SecretDoc>| d.map(SecretDoc::to_value).unwrap_or(Value::Null);
        let mut body = Map::new();
        body.insert("protocol".into(), PROTOCOL.into());
        body.insert("operation".into(), self.op.as_str().into());
        body.insert("credential".into(), self.credential.into());
        body.insert("settings".into(), Value::Object(self.settings.clone()));
        body.insert("new".into(), doc(self.new));
        body.insert("current".into(), doc(self.current));
        body.insert("old".into(), doc(self.old));
        body.insert("terminate_sessions".into(), self.terminate_sessions.into());
        if self.op == Op::Sweep {
            let stored = self.stored.iter().map(|d| d.to_value()).collect();
            body.insert("stored".into(), Value::Array(stored));
            body.insert("since".into(), self.since.map(Value::from).unwrap_or(Value::Null));
        }
        let value = SecretValue(Value::Object(body));
        let mut text = Zeroizing::new(serde_json::to_vec(&value.0).unwrap_or_default());
        text.push(b'\n');
        text
    }
}

/// Secrets to mask in what the plugin says.
pub(crate) struct Masks(Vec<Zeroizing<String>>);

impl Masks {
    /// Every string of the documents and the settings whose name says it is secret.
    pub(crate) fn of(request: &Request<'_>) -> Masks {
        let mut out = Vec::new();
        let docs = [request.new, request.current, request.old].into_iter().flatten();
        for doc in docs.chain(request.stored.iter().copied()) {
            for name in doc.field_names() {
                if let Some(s) = doc.get_str(name) {
                    out.push(Zeroizing::new(s.to_owned()));
                }
            }
        }
        for (name, value) in request.settings {
            let lower = name.to_ascii_lowercase();
            let secret = ["password", "secret", "token", "key", "credential", "auth"]
                .iter()
                .any(|w| lower.contains(w));
            if let (true, Some(s)) = (secret, value.as_str()) {
                out.push(Zeroizing::new(s.to_owned()));
            }
        }
        Masks::sorted(out)
    }

    /// Masks of these secret values.
    pub(crate) fn of_values(secrets: &[&str]) -> Masks {
        Masks::sorted(secrets.iter().map(|s| Zeroizing::new((*s).to_owned())).collect())
    }

    fn sorted(mut out: Vec<Zeroizing<String>>) -> Masks {
        // Longest first, so that a secret containing another is masked whole.
        out.sort_by_key(|s| std::cmp::Reverse(s.len()));
        Masks(out)
    }

    fn mask(&self, mut text: String) -> String {
        for secret in &self.0 {
            if secret.len() >= 4 && text.contains(secret.as_str()) {
                text = text.replace(secret.as_str(), "****");
            }
        }
        text
    }

    /// `text` on one line, every secret of 4 characters or more replaced by `****`,
    /// shortened to its last [`MAX_QUOTED`] characters (`tail`) or its first.
    pub(crate) fn quote(&self, text: &str, tail: bool) -> String {
        // Masked before and after the lines are joined: a secret spanning a line break
        // is masked whole, and one that the joining spells is masked too.
        let text = self.mask(text.to_owned());
        let text: String = text
            .split(['\n', '\r'])
            .map(str::trim)
            .filter(|l| !l.is_empty())
            .collect::<Vec<_>>()
            .join(" | ");
        let mut text = self.mask(text);
        let chars = text.chars().count();
        if chars > MAX_QUOTED {
            text = if tail {
                format!("…{}", text.chars().skip(chars - MAX_QUOTED).collect::<String>())
            } else {
                format!("{}…", text.chars().take(MAX_QUOTED).collect::<String>())
            };
        }
        text
    }
}

fn status_text(output: &Output) -> String {
    match (output.code, output.signal) {
        (Some(code), _) => format!("exited with status {code}"),
        (None, Some(signal)) => format!("was killed by signal {signal}"),
        (None, None) => "ended".to_owned(),
    }
}

fn with_stderr(message: String, output: &Output, masks: &Masks) -> String {
    let stderr = String::from_utf8_lossy(&output.stderr);
    let quoted = masks.quote(&stderr, true);
    if quoted.is_empty() {
        message
    } else {
        format!("{message}; stderr: {quoted}")
    }
}

/// A plugin's successful answer (`"protocol": 1, "ok": true`), a JSON object whose
/// strings are zeroized on drop.
pub struct Answer(pub(crate) SecretValue);

impl std::fmt::Debug for Answer {
    /// The number of fields only: the answer may hold a minted secret, in a value or
    /// (from a careless plugin) in a field's name.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let fields = self.0 .0.as_object().map_or(0, |m| m.len());
        f.debug_struct("Answer").field("fields", &fields).finish()
    }
}

impl Answer {
    /// A field of the answer (`"doc"`, `"strategies"`, ...).
    pub fn get(&self, key: &str) -> Option<&Value> {
        self.0 .0.get(key)
    }

    /// Takes a field out (the caller owns its zeroization).
    pub(crate) fn take(&mut self, key: &str) -> Option<Value> {
        self.0 .0.as_object_mut()?.remove(key)
    }
}

fn refused(label: &str, message: String) -> ProviderError {
    ProviderError::other(format!("{label}: {message}")).retryable(false)
}

/// Reads a plugin's answer as rekey does after a run, without running anything (the
/// entry point of the `exec_response` fuzz target).
///
/// `label` starts every error message (rekey passes `exec plugin PATH: OPERATION`);
/// `stdout` is what the plugin printed (at most 1 MiB in a real run), `exit_code` its
/// exit status (`None`: killed by a signal), `stderr` what it printed there (its end is
/// quoted in some errors), and every string of `secrets` (4 characters or more) is
/// masked as `****` in whatever the plugin's own text contributes to a message.
///
/// `Ok` only for a JSON object with `"protocol": 1` and `"ok": true` from a plugin that
/// exited 0; a plugin's `"ok": false` answer is its typed error; everything else is a
/// one-line error of kind `other`, never a panic.
pub fn parse_answer(
    label: &str,
    stdout: &[u8],
    exit_code: Option<i32>,
    stderr: &[u8],
    secrets: &[&str],
) -> ProviderResult<Answer> {
    if stdout.len() > MAX_ANSWER {
        return Err(too_big(label));
    }
    let output = Output {
        code: exit_code,
        signal: if exit_code.is_none() { Some(libc::SIGKILL) } else { None },
        stdout: Zeroizing::new(stdout.to_vec()),
        stderr: Zeroizing::new(stderr.to_vec()),
    };
    interpret(label, &output, &Masks::of_values(secrets))
}

/// Reads the plugin's answer. `label` is `exec plugin PATH: OP`.
pub(crate) fn interpret(label: &str, output: &Output, masks: &Masks) -> ProviderResult<Answer> {
    let text = &output.stdout;
    if text.iter().all(u8::is_ascii_whitespace) {
        let what = if output.code == Some(0) {
            "answered nothing on stdout".to_owned()
        } else {
            format!("{} without an answer", status_text(output))
        };
        return Err(refused(label, with_stderr(what, output, masks)));
    }
    let value = match serde_json::from_slice::<Value>(text) {
        Ok(v) => SecretValue(v),
        Err(_) => {
            let mut what = format!(
                "printed something that is not a JSON answer ({} bytes on stdout)",
                text.len()
            );
            if output.code != Some(0) {
                what.push_str(&format!(" and {}", status_text(output)));
            }
            return Err(refused(label, with_stderr(what, output, masks)));
        }
    };
    if !value.0.is_object() {
        return Err(refused(label, "its answer is JSON but not an object".to_owned()));
    }
    match value.0.get("protocol") {
        Some(Value::Number(n)) if n.as_u64() == Some(PROTOCOL) => {}
        None => {
            return Err(refused(
                label,
                "its answer has no \"protocol\": 1 (refused: rekey speaks protocol 1)".to_owned(),
            ))
        }
        Some(other) => {
            let shown = match other {
                Value::Number(n) => n.to_string(),
                _ => "a non-number".to_owned(),
            };
            return Err(refused(
                label,
                format!("it speaks protocol {shown}; rekey speaks protocol 1 (refused)"),
            ));
        }
    }
    let ok = match value.0.get("ok") {
        Some(Value::Bool(b)) => *b,
        _ => return Err(refused(label, "its answer has no boolean \"ok\"".to_owned())),
    };
    if !ok {
        let error = value.0.get("error");
        let kind_name = error.and_then(|e| e.get("kind")).and_then(Value::as_str).unwrap_or("");
        let message = error
            .and_then(|e| e.get("message"))
            .and_then(Value::as_str)
            .map(|m| masks.quote(m, false))
            .filter(|m| !m.is_empty())
            .unwrap_or_else(|| "(no message)".to_owned());
        let (kind, retryable) = match kind_name {
            "rejected" => (ErrorKind::AuthRejected, false),
            "unreachable" => (ErrorKind::Unreachable, true),
            "denied" => (ErrorKind::PermissionDenied, false),
            "invalid" => (ErrorKind::InvalidInput, false),
            "conflict" => (ErrorKind::Conflict, false),
            "not_found" => (ErrorKind::NotFound, false),
            "retryable" => (ErrorKind::Other, true),
            _ => {
                return Err(refused(
                    label,
                    format!(
                        "failed with an unknown error kind ({}): {message}",
                        if kind_name.is_empty() {
                            "none"
                        } else {
                            "not one of rejected, unreachable, denied, invalid, conflict, not_found, retryable"
                        }
                    ),
                ))
            }
        };
        return Err(ProviderError::new(kind, format!("{label}: {message}")).retryable(retryable));
    }
    if output.code != Some(0) {
        return Err(refused(
            label,
            with_stderr(format!("answered ok but {}", status_text(output)), output, masks),
        ));
    }
    Ok(Answer(value))
}

/// The message for an answer over the size bound.
pub(crate) fn too_big(label: &str) -> ProviderError {
    refused(
        label,
        format!(
            "its answer is over {} MiB (refused; the plugin was killed)",
            MAX_ANSWER >> 20
        ),
    )
}
