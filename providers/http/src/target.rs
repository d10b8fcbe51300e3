//! [`HttpTarget`]: the protocol's steps as configured HTTP requests.

use crate::client::{send, Outgoing, Reply, RetryOn, RetryPolicy, Sent};
use crate::plan::{Body, Plan, Step};
use crate::template::{encode_component, Missing, SecretValue, Values};
use rekey_api::document::PASSWORD;
use rekey_api::{
    ErrorCode, ErrorKind, ProviderError, ProviderResult, RevokeOptions, RevokeReport, Secret, SecretDoc, Strategy,
    Target, TargetCapabilities,
};
use reqwest::header::{HeaderName, HeaderValue, AUTHORIZATION};
use serde_json::Value;
use std::fmt;
use std::sync::Arc;
use std::time::{Duration, Instant};
use zeroize::Zeroizing;

/// Longest server text quoted in an error.
const MAX_SERVER_TEXT: usize = 200;

/// One credential on an HTTP API. Built by [`crate::HttpProvider::target`].
///
/// | step | request |
/// | --- | --- |
/// | `prepare` | `create` with the new document (dual, minting), else none (the generated password) |
/// | `apply` | `apply` with the new document (none for a minted key without `apply`) |
/// | `login`, `verify` | `login` with the checked document, without the management headers |
/// | `revoke` | `revoke` with the old document, then `login` with it until refused (`revoke_settle_secs`) |
/// | `preflight` | the `preflight` step, then `login` with the current document |
pub struct HttpTarget {
    credential: String,
    plan: Arc<Plan>,
    client: reqwest::Client,
    strategy: Strategy,
    capabilities: TargetCapabilities,
}

impl fmt::Debug for HttpTarget {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("HttpTarget")
            .field("credential", &self.credential)
            .field("base_url", &self.plan.base)
            .field("strategy", &self.strategy)
            .finish_non_exhaustive()
    }
}

/// Which document a step works on, for messages.
#[derive(Clone, Copy)]
enum Which {
    New,
    Checked,
    Old,
    Current,
    Minted,
}

impl Which {
    fn as_str(self) -> &'static str {
        match self {
            Which::New => "new",
            Which::Checked => "checked",
            Which::Old => "old",
            Which::Current => "current",
            Which::Minted => "minted",
        }
    }
}

/// A request plus what must be masked in anything quoted from its answer.
struct Prepared {
    out: Outgoing,
    label: String,
    masks: Vec<Zeroizing<String>>,
}

impl HttpTarget {
    pub(crate) fn new(credential: &str, plan: Arc<Plan>, client: reqwest::Client, strategy: Strategy) -> Self {
        let capabilities = TargetCapabilities {
            strategies: vec![Strategy::Single, Strategy::Dual],
            strategy,
            terminate_sessions: false,
            mints_own_secret: plan.create.is_some(),
            apply_invalidates_previous: strategy == Strategy::Single,
            retires_previous: false,
        };
        HttpTarget {
            credential: credential.to_owned(),
            plan,
            client,
            strategy,
            capabilities,
        }
    }

    fn values<'a>(&'a self, doc: &'a SecretDoc) -> Values<'a> {
        Values {
            credential: &self.credential,
            doc,
            primary: self.plan.primary.as_deref(),
        }
    }

    fn label(&self, step: &Step) -> String {
        format!(
            "{} {} {}{}",
            step.name.as_str(),
            step.method,
            self.plan.base,
            step.path_label
        )
    }

    fn missing(&self, label: &str, which: Which, m: Missing) -> ProviderError {
        if m.not_text {
            ProviderError::invalid_input(format!(
                "{label}: the {} secret's `{}` field is an object or array, not a value this step can send",
                which.as_str(),
                m.field
            ))
        } else {
            ProviderError::invalid_input(format!(
                "{label}: the {} secret has no `{}` field (this step needs it)",
                which.as_str(),
                m.field
            ))
        }
    }

    /// Renders `step` against `doc`.
    fn prepare_request(&self, step: &Step, doc: &SecretDoc, which: Which) -> ProviderResult<Prepared> {
        let label = self.label(step);
        let values = self.values(doc);
        let missing = |m| self.missing(&label, which, m);
        let path = step.path.render(&values, &encode_component).map_err(missing)?;
        let mut url = Zeroizing::new(String::with_capacity(self.plan.base.len() + path.len()));
        url.push_str(&self.plan.base);
        url.push_str(&path);

        let mut masks: Vec<Zeroizing<String>> = Vec::new();
        let mut headers: Vec<(HeaderName, HeaderValue)> = Vec::new();
        let mut add = |name: &HeaderName, value: Zeroizing<String>, masks: &mut Vec<Zeroizing<String>>| {
            let mut v = HeaderValue::from_str(&value).map_err(|_| {
                ProviderError::invalid_input(format!(
                    "{label}: header {name}: the value holds characters not allowed in an HTTP header"
                ))
            })?;
            v.set_sensitive(true);
            headers.retain(|(n, _)| n != name);
            headers.push((name.clone(), v));
            // `Bearer TOKEN`, `token KEY`: a service quoting the credential back quotes the
            // part after the scheme, which masking the whole value would not catch.
            for credential in value.split_whitespace().skip(1) {
                masks.push(Zeroizing::new(credential.to_owned()));
            }
            masks.push(value);
            Ok::<(), ProviderError>(())
        };
        if step.name.management() {
            for (name, t) in &self.plan.headers {
                add(name, t.render(&values, &|s| s.to_owned()).map_err(missing)?, &mut masks)?;
            }
        }
        for (name, t) in &step.headers {
            add(name, t.render(&values, &|s| s.to_owned()).map_err(missing)?, &mut masks)?;
        }
        let basic = match (&step.basic, step.name.management()) {
            (Some(b), _) => Some(b),
            // A step's own Authorization header wins over the target's basic.
            (None, true) if !step.headers.iter().any(|(n, _)| n == AUTHORIZATION) => self.plan.basic.as_ref(),
            (None, _) => None,
        };
        if let Some((user, password)) = basic {
            let user = user.render(&values, &|s| s.to_owned()).map_err(missing)?;
            let password = password.render(&values, &|s| s.to_owned()).map_err(missing)?;
            let mut plain = Zeroizing::new(Vec::with_capacity(user.len() + password.len() + 1));
            plain.extend_from_slice(user.as_bytes());
            plain.push(b':');
            plain.extend_from_slice(password.as_bytes());
            let value = Zeroizing::new(format!("Basic {}", base64(&plain)));
            add(&AUTHORIZATION, value, &mut masks)?;
            masks.push(password);
        }
        let body = match &step.body {
            Body::None => None,
            Body::Json(t) => {
                let bytes = t.render(&values).map_err(missing)?;
                Some(("application/json", bytes::Bytes::from_owner(bytes)))
            }
            Body::Form(items) => {
                let mut text = Zeroizing::new(String::new());
                for (i, (k, t)) in items.iter().enumerate() {
                    if i > 0 {
                        text.push('&');
                    }
                    text.push_str(&encode_component(k));
                    text.push('=');
                    text.push_str(&t.render(&values, &encode_component).map_err(missing)?);
                }
                let bytes = Zeroizing::new(std::mem::take(&mut *text).into_bytes());
                Some(("application/x-www-form-urlencoded", bytes::Bytes::from_owner(bytes)))
            }
        };
        for name in doc.field_names() {
            if let Some(s) = doc.get_str(name) {
                masks.push(Zeroizing::new(s.to_owned()));
            }
        }
        Ok(Prepared {
            out: Outgoing {
                method: step.method.clone(),
                url,
                headers,
                body,
            },
            label,
            masks,
        })
    }

    fn policy(&self, on: RetryOn) -> RetryPolicy {
        RetryPolicy {
            on,
            retries: self.plan.retries,
            max_wait: self.plan.max_wait,
        }
    }

    async fn send(&self, request: &Prepared, on: RetryOn) -> ProviderResult<Sent> {
        send(
            &self.client,
            &request.out,
            self.plan.timeout,
            &request.label,
            self.policy(on),
        )
        .await
    }

    /// The error for an answer that is neither `ok` nor (for login) `rejected`.
    fn status_error(&self, step: &Step, request: &Prepared, sent: &Sent) -> ProviderError {
        let reply = &sent.reply;
        let status = reply.status;
        let mut text = format!("{}: HTTP {status} {}", request.label, reply.reason);
        let text_mut = &mut text;
        if sent.attempts > 1 {
            text_mut.push_str(&format!(
                ", still failing after {} attempts over {:.1}s",
                sent.attempts,
                sent.elapsed.as_secs_f64()
            ));
        }
        if let Some(why) = &sent.gave_up {
            text_mut.push_str(&format!(" ({why})"));
        }
        let (kind, what) = match status {
            429 => (ErrorKind::Unreachable, Some("rate limited")),
            500..=599 => (ErrorKind::Unreachable, Some("the service failed")),
            401 | 403 if step.name.management() => (
                ErrorKind::PermissionDenied,
                Some("the management credential (`headers` or `basic`) was refused or may not do this"),
            ),
            401 | 403 => (ErrorKind::PermissionDenied, None),
            404 => (ErrorKind::NotFound, None),
            409 => (ErrorKind::Conflict, None),
            400 | 422 => (ErrorKind::InvalidInput, Some("the service refused the request")),
            200..=399 => (
                ErrorKind::Other,
                Some(if step.ok.is_empty() {
                    "unexpected status"
                } else {
                    "unexpected status (not in `ok`)"
                }),
            ),
            _ => (ErrorKind::Other, None),
        };
        if let Some(what) = what {
            text.push_str(&format!(": {what}"));
        }
        if status >= 400 {
            if let Some(words) = server_words(reply, &request.masks) {
                text.push_str(&format!(": {words}"));
            }
        }
        let error = ProviderError::new(kind, text).with_code(ErrorCode::Http(status));
        if kind == ErrorKind::Conflict {
            error.retryable(false)
        } else {
            error
        }
    }

    /// Runs a management step (apply, revoke, preflight) against `doc`.
    async fn run_step(&self, step: &Step, doc: &SecretDoc, which: Which, on: RetryOn) -> ProviderResult<u16> {
        let request = self.prepare_request(step, doc, which)?;
        let sent = self.send(&request, on).await?;
        if step.is_ok(sent.reply.status) {
            Ok(sent.reply.status)
        } else {
            Err(self.status_error(step, &request, &sent))
        }
    }

    /// The document `create` renders against: the current one's non-secret fields plus
    /// the generated password.
    fn create_input(&self, current: Option<&SecretDoc>, password: &Secret) -> SecretDoc {
        let mut doc = SecretDoc::new();
        if let Some(current) = current {
            for name in current.field_names() {
                if self.plan.is_secret(name) {
                    continue;
                }
                if let Some(v) = current.get(name) {
                    doc.set(name, v.clone());
                }
            }
        }
        doc.set_password(password);
        doc
    }

    async fn mint(&self, step: &Step, current: Option<&SecretDoc>, password: Secret) -> ProviderResult<SecretDoc> {
        let input = self.create_input(current, &password);
        let request = self.prepare_request(step, &input, Which::New)?;
        let sent = self.send(&request, RetryOn::NotProcessed).await?;
        let reply = &sent.reply;
        let status_ok = step.is_ok(reply.status);
        if !status_ok && !(200..300).contains(&reply.status) {
            return Err(self.status_error(step, &request, &sent));
        }
        // From here the service may have minted a key: whatever goes wrong, try to
        // revoke it again so that nothing minted is left alive and stored nowhere.
        // The new document: the input without the fields the answer provides (never the
        // current key's id: a partial document may be revoked below) and without the
        // generated password unless the request sent it.
        let keep_password = step.placeholders().contains(&PASSWORD);
        let mut doc = SecretDoc::new();
        for name in input.field_names() {
            if (name == PASSWORD && !keep_password) || step.fields.iter().any(|(f, _)| f == name) {
                continue;
            }
            if let Some(v) = input.get(name) {
                doc.set(name, v.clone());
            }
        }
        drop(input);
        let mut problem = if status_ok {
            None
        } else {
            Some(format!(
                "HTTP {} {}: unexpected status (not in `ok`)",
                reply.status, reply.reason
            ))
        };
        match parse_json(reply) {
            Err(why) => {
                problem.get_or_insert(why);
            }
            Ok(body) => {
                for (field, pointer) in &step.fields {
                    match body.0.pointer(pointer) {
                        Some(Value::String(s)) if !s.is_empty() => doc.set(field, s.as_str()),
                        Some(v @ (Value::Number(_) | Value::Bool(_))) if !self.plan.is_secret(field) => {
                            doc.set(field, v.clone())
                        }
                        Some(Value::Number(n)) => doc.set(field, n.to_string()),
                        Some(Value::Null) | None => {
                            problem.get_or_insert(format!(
                                "the answer (HTTP {}) has no `{pointer}` (for field `{field}`)",
                                reply.status
                            ));
                        }
                        Some(_) => {
                            problem.get_or_insert(format!(
                                "the answer's `{pointer}` (for field `{field}`) is empty or not a string"
                            ));
                        }
                    }
                }
            }
        }
        match problem {
            None => Ok(doc),
            Some(problem) => {
                let outcome = self.discard_minted(&doc, step).await;
                Err(ProviderError::other(format!("{}: {problem}; {outcome}", request.label)).retryable(false))
            }
        }
    }

    /// Revokes a key whose `create` answer could not be turned into a document.
    async fn discard_minted(&self, partial: &SecretDoc, create: &Step) -> String {
        let ids: Vec<String> = create
            .fields
            .iter()
            .filter(|(f, _)| !self.plan.is_secret(f))
            .filter_map(|(f, _)| partial.get(f).map(|v| format!("{f}={}", plain(v))))
            .collect();
        let which = if ids.is_empty() {
            "the key it may have minted".to_owned()
        } else {
            format!("the key it minted ({})", ids.join(", "))
        };
        let Some(revoke) = &self.plan.revoke else {
            return format!("{which} could not be revoked again (no `revoke` step): remove it by hand");
        };
        match self
            .run_step(revoke, partial, Which::Minted, RetryOn::RateLimitAndServerErrors)
            .await
        {
            Ok(_) => format!("{which} was revoked again"),
            Err(e) => format!(
                "{which} could not be revoked again ({}): remove it by hand",
                e.message()
            ),
        }
    }

    /// Polls `login` with `old` until the service refuses it or the settle time is over.
    async fn settle(&self, old: &SecretDoc) {
        let deadline = Instant::now() + self.plan.settle;
        let mut delay = Duration::from_millis(50);
        loop {
            match self.login(old).await {
                Ok(()) => {}
                // Refused: done. Anything else: the engine's prove-dead reports it.
                Err(_) => return,
            }
            if Instant::now() + delay > deadline {
                return;
            }
            tokio::time::sleep(delay).await;
            delay = (delay * 2).min(Duration::from_secs(1));
        }
    }
}

/// A non-secret value for a message.
fn plain(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

/// The answer as JSON, or why not (never quoting it).
fn parse_json(reply: &Reply) -> Result<SecretValue, String> {
    if reply.oversized {
        return Err(format!("the answer (HTTP {}) is larger than 1 MiB", reply.status));
    }
    if reply.body.iter().all(u8::is_ascii_whitespace) {
        return Err(format!(
            "the answer (HTTP {}) has an empty body, not JSON",
            reply.status
        ));
    }
    serde_json::from_slice::<Value>(&reply.body)
        .map(SecretValue)
        .map_err(|_| {
            format!(
                "the answer (HTTP {}, {} bytes{}) is not JSON",
                reply.status,
                reply.body.len(),
                reply
                    .content_type
                    .as_deref()
                    .map(|c| format!(", {}", c.split(';').next().unwrap_or(c).trim()))
                    .unwrap_or_default()
            )
        })
}

/// The service's own error words from a JSON error body (`error`, `message`, `reason`,
/// `detail`...), one line, shortened, with every secret of the request masked.
fn server_words(reply: &Reply, masks: &[Zeroizing<String>]) -> Option<String> {
    let body = serde_json::from_slice::<Value>(&reply.body).ok().map(SecretValue)?;
    fn look<'a>(v: &'a Value, words: &mut Vec<&'a str>) {
        for key in ["error", "message", "reason", "detail", "error_description", "title"] {
            match v.get(key) {
                Some(Value::String(s)) if !s.trim().is_empty() && !words.contains(&s.as_str()) => words.push(s),
                Some(inner @ Value::Object(_)) => {
                    if let Some(Value::String(s)) = inner.get("message") {
                        words.push(s);
                    }
                }
                _ => {}
            }
        }
    }
    let mut words: Vec<&str> = Vec::new();
    look(&body.0, &mut words);
    if let Some(Value::Array(errors)) = body.0.get("errors") {
        if let Some(first) = errors.first() {
            match first {
                Value::String(s) => words.push(s),
                other => look(other, &mut words),
            }
        }
    }
    if words.is_empty() {
        return None;
    }
    let mut text = words.join(": ").replace(['\n', '\r'], " ");
    for secret in masks {
        // Short values (such as "1" or "app") are ordinary words; masking them would
        // mangle the message.
        if secret.len() >= 6 && text.contains(secret.as_str()) {
            text = text.replace(secret.as_str(), "****");
        }
    }
    if text.len() > MAX_SERVER_TEXT {
        let mut end = MAX_SERVER_TEXT;
        while !text.is_char_boundary(end) {
            end -= 1;
        }
        text.truncate(end);
        text.push('…');
    }
    Some(text)
}

/// Standard base64 with padding (for basic authentication).
fn base64(input: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::with_capacity(input.len().div_ceil(3) * 4);
    for chunk in input.chunks(3) {
        let b = [chunk[0], *chunk.get(1).unwrap_or(&0), *chunk.get(2).unwrap_or(&0)];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        out.push(ALPHABET[(n >> 18) as usize & 63] as char);
        out.push(ALPHABET[(n >> 12) as usize & 63] as char);
        out.push(if chunk.len() > 1 {
            ALPHABET[(n >> 6) as usize & 63] as char
        } else {
            '='
        });
        out.push(if chunk.len() > 2 {
            ALPHABET[n as usize & 63] as char
        } else {
            '='
        });
    }
    out
}

#[async_trait::async_trait]
impl Target for HttpTarget {
    fn capabilities(&self) -> &TargetCapabilities {
        &self.capabilities
    }

    fn describe(&self) -> String {
        let how = if self.plan.create.is_some() {
            "key minted by `create`"
        } else {
            "password set by `apply`"
        };
        format!("http API {} ({how}, {})", self.plan.base, self.strategy)
    }

    fn complete(&self, _doc: &mut SecretDoc) {}

    async fn preflight(&self, current: Option<&SecretDoc>) -> ProviderResult<Vec<String>> {
        let mut lines = vec![self.describe()];
        if let Some(step) = &self.plan.preflight {
            let empty = SecretDoc::new();
            let status = self
                .run_step(
                    step,
                    current.unwrap_or(&empty),
                    Which::Current,
                    RetryOn::RateLimitAndServerErrors,
                )
                .await?;
            lines.push(format!("{}: HTTP {status}", self.label(step)));
        }
        if let Some(doc) = current {
            match self.login(doc).await {
                Ok(()) => lines.push(format!("the current secret logs in ({})", self.label(&self.plan.login))),
                Err(e) if e.kind() == ErrorKind::AuthRejected => {
                    lines.push(format!("warning: the current secret is refused: {}", e.message()))
                }
                Err(e) => return Err(e),
            }
        }
        Ok(lines)
    }

    async fn precheck(&self, current: Option<&SecretDoc>) -> ProviderResult<()> {
        if let Some(step) = &self.plan.preflight {
            let empty = SecretDoc::new();
            self.run_step(
                step,
                current.unwrap_or(&empty),
                Which::Current,
                RetryOn::RateLimitAndServerErrors,
            )
            .await?;
        }
        Ok(())
    }

    async fn sweep_unstored(&self, stored: &[&SecretDoc], _since: rekey_api::Timestamp) -> ProviderResult<Vec<String>> {
        let (Some(list), Some(create)) = (&self.plan.list, &self.plan.create) else {
            return Ok(Vec::new());
        };
        let empty = SecretDoc::new();
        let request = self.prepare_request(list, &empty, Which::Current)?;
        let sent = self.send(&request, RetryOn::RateLimitAndServerErrors).await?;
        if !list.is_ok(sent.reply.status) {
            return Err(self.status_error(list, &request, &sent));
        }
        let body = parse_json(&sent.reply).map_err(|why| ProviderError::other(format!("{}: {why}", request.label)))?;
        let Some(Value::Array(items)) = body.0.pointer(&list.items) else {
            return Err(ProviderError::other(format!(
                "{}: the answer has no array at `{}`",
                request.label,
                if list.items.is_empty() { "/" } else { &list.items }
            )));
        };
        // The fields that identify a key in both the listing and the stored documents.
        let ids: Vec<&str> = list
            .fields
            .iter()
            .map(|(f, _)| f.as_str())
            .filter(|f| create.fields.iter().any(|(c, _)| c == f))
            .collect();
        let values = self.values(&empty);
        let mut removed = Vec::new();
        for item in items {
            let mut listed = SecretDoc::new();
            for (field, pointer) in &list.fields {
                if let Some(v @ (Value::String(_) | Value::Number(_) | Value::Bool(_))) = item.pointer(pointer) {
                    listed.set(field, v.clone());
                }
            }
            let mine = list.mine.iter().all(|(field, template)| {
                let wanted = template.render(&values, &|s| s.to_owned());
                matches!((listed.get_str(field), wanted), (Some(got), Ok(w)) if got == w.as_str())
            });
            if !mine || ids.iter().any(|f| listed.get(f).is_none()) {
                continue;
            }
            let is_stored = stored.iter().any(|doc| ids.iter().all(|f| doc.get(f) == listed.get(f)));
            if is_stored {
                continue;
            }
            let shown = ids
                .iter()
                .filter_map(|f| listed.get(f).map(|v| format!("{f}={}", plain(v))))
                .collect::<Vec<_>>()
                .join(", ");
            let Some(revoke) = &self.plan.revoke else { break };
            self.run_step(revoke, &listed, Which::Minted, RetryOn::RateLimitAndServerErrors)
                .await
                .map_err(|e| e.context(format_args!("sweeping the unstored key {shown}")))?;
            removed.push(shown);
        }
        Ok(removed)
    }

    async fn prepare(&self, current: Option<&SecretDoc>, password: Secret) -> ProviderResult<SecretDoc> {
        if let Some(create) = &self.plan.create {
            return self.mint(create, current, password).await;
        }
        let mut doc = current.cloned().unwrap_or_default();
        doc.set_password(&password);
        Ok(doc)
    }

    async fn apply(&self, new: &SecretDoc, _current: Option<&SecretDoc>) -> ProviderResult<()> {
        match &self.plan.apply {
            Some(step) => self
                .run_step(step, new, Which::New, RetryOn::RateLimitAndServerErrors)
                .await
                .map(|_| ()),
            None => Ok(()),
        }
    }

    async fn login(&self, doc: &SecretDoc) -> ProviderResult<()> {
        let step = &self.plan.login;
        let request = self.prepare_request(step, doc, Which::Checked)?;
        let sent = self.send(&request, RetryOn::RateLimitAndServerErrors).await?;
        let status = sent.reply.status;
        if step.is_ok(status) {
            Ok(())
        } else if step.rejected.contains(&status) {
            Err(ProviderError::auth_rejected(format!(
                "{}: the secret was refused (HTTP {status} {})",
                request.label, sent.reply.reason
            ))
            .with_code(ErrorCode::Http(status)))
        } else {
            Err(self.status_error(step, &request, &sent))
        }
    }

    async fn revoke(&self, old: &SecretDoc, new: &SecretDoc, _options: RevokeOptions) -> ProviderResult<RevokeReport> {
        if let Some(step) = &self.plan.revoke {
            let request = self.prepare_request(step, old, Which::Old)?;
            if self.strategy == Strategy::Dual {
                // The same request for both documents would remove the new secret too.
                if let Ok(for_new) = self.prepare_request(step, new, Which::New) {
                    if same_request(&request.out, &for_new.out) {
                        return Err(ProviderError::conflict(format!(
                            "{}: refusing to revoke: the request for the old secret is the one for the new secret \
                             too (the old and new documents name the same key)",
                            request.label
                        ))
                        .retryable(false));
                    }
                }
            }
            let sent = self.send(&request, RetryOn::RateLimitAndServerErrors).await?;
            if !step.is_ok(sent.reply.status) {
                return Err(self.status_error(step, &request, &sent));
            }
        }
        if !self.plan.settle.is_zero() {
            self.settle(old).await;
        }
        Ok(RevokeReport::default())
    }
}

fn same_request(a: &Outgoing, b: &Outgoing) -> bool {
    a.url == b.url && a.body.as_ref().map(|(_, b)| b) == b.body.as_ref().map(|(_, b)| b) && a.headers == b.headers
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base64_matches_rfc4648() {
        for (input, out) in [
            ("", ""),
            ("f", "Zg=="),
            ("fo", "Zm8="),
            ("foo", "Zm9v"),
            ("foob", "Zm9vYg=="),
            ("guest:guest", "Z3Vlc3Q6Z3Vlc3Q="),
        ] {
            assert_eq!(base64(input.as_bytes()), out);
        }
    }

    /// Found trying it: a service that quoted the management token back (`token adm_…
    /// not allowed`) had it printed, because only the whole `Bearer adm_…` was masked.
    #[test]
    fn the_credential_after_an_auth_scheme_is_masked_too() {
        let config: crate::HttpTargetConfig = serde_json::from_value(serde_json::json!({
            "base_url": "http://127.0.0.1:9",
            "headers": {"Authorization": "Bearer adm_0123456789abcdef", "X-Api-Key": "k3y-value-1"},
            "secret_fields": ["api_key"],
            "create": {"method": "POST", "path": "/v1/keys", "ok": [201],
                       "fields": {"api_key": "/data/secret", "key_id": "/data/id"}},
            "login": {"method": "GET", "path": "/v1/me", "headers": {"Authorization": "Bearer {{api_key}}"}, "ok": [200]},
            "revoke": {"method": "DELETE", "path": "/v1/keys/{{key_id}}", "ok": [204]}
        }))
        .unwrap();
        let target = crate::HttpProvider::new()
            .http_target(&config, "billing-api", Strategy::Dual)
            .unwrap();
        let create = target.plan.create.as_ref().unwrap();
        let request = target
            .prepare_request(create, &SecretDoc::default(), Which::New)
            .unwrap();
        let reply = Reply {
            status: 400,
            reason: "Bad Request",
            body: Zeroizing::new(
                br#"{"error":"token adm_0123456789abcdef not allowed with k3y-value-1 (Bearer rules)"}"#.to_vec(),
            ),
            content_type: None,
            oversized: false,
        };
        let words = server_words(&reply, &request.masks).unwrap();
        assert_eq!(words, "token **** not allowed with **** (Bearer rules)");
    }

    #[test]
    fn server_words_are_masked_and_short() {
        let reply = Reply {
            status: 400,
            reason: "Bad Request",
            body: Zeroizing::new(br#"{"error":"bad_request","reason":"password s3cr3t-value too weak"}"#.to_vec()),
            content_type: None,
            oversized: false,
        };
        let words = server_words(&reply, &[Zeroizing::new("s3cr3t-value".to_owned())]).unwrap();
        assert_eq!(words, "bad_request: password **** too weak");
        let reply = Reply {
            status: 500,
            reason: "",
            body: Zeroizing::new(b"<html>oops</html>".to_vec()),
            content_type: None,
            oversized: false,
        };
        assert!(server_words(&reply, &[]).is_none());
    }
}
