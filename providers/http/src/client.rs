//! The HTTP layer: the reqwest client (rustls, redirects only within one origin), one
//! request with bounded retries on 429 and 5xx, and answers read into zeroized buffers
//! with a size bound.

use rekey_api::{ProviderError, ProviderResult};
use reqwest::header::{HeaderName, HeaderValue, RETRY_AFTER};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::CertificateDer;
use rustls::RootCertStore;
use std::path::Path;
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};
use zeroize::Zeroizing;

/// Largest answer read; a bigger one is an error (a key API answers in kilobytes).
pub(crate) const MAX_ANSWER: usize = 1 << 20;
/// Redirects followed within the same origin.
const MAX_REDIRECTS: usize = 5;
/// First retry delay without `Retry-After`; doubled each time.
const FIRST_BACKOFF: Duration = Duration::from_millis(250);
/// Longest backoff without `Retry-After`.
const MAX_BACKOFF: Duration = Duration::from_secs(8);

/// Which answers are retried.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum RetryOn {
    /// 429 and every 5xx (idempotent steps).
    RateLimitAndServerErrors,
    /// 429 and 503 only: the answers that say the request was not processed (`create`,
    /// which a retry after a 500 could make mint twice).
    NotProcessed,
}

impl RetryOn {
    fn retries(self, status: u16) -> bool {
        match self {
            RetryOn::RateLimitAndServerErrors => status == 429 || (500..600).contains(&status),
            RetryOn::NotProcessed => status == 429 || status == 503,
        }
    }
}

/// One request, ready to send (and to resend).
pub(crate) struct Outgoing {
    pub method: reqwest::Method,
    /// The full URL: may hold a secret when the step allows it, so it is never shown.
    pub url: Zeroizing<String>,
    pub headers: Vec<(HeaderName, HeaderValue)>,
    /// (content type, bytes); the bytes are zeroized when the last copy is dropped.
    pub body: Option<(&'static str, bytes::Bytes)>,
}

/// An answer: status and body.
pub(crate) struct Reply {
    pub status: u16,
    pub reason: &'static str,
    pub body: Zeroizing<Vec<u8>>,
    pub content_type: Option<String>,
}

/// An answer and how it was obtained.
pub(crate) struct Sent {
    pub reply: Reply,
    pub attempts: u32,
    pub elapsed: Duration,
    /// Why retrying stopped early (a `Retry-After` beyond the bound).
    pub gave_up: Option<String>,
}

/// How many times and how long to retry.
#[derive(Clone, Copy, Debug)]
pub(crate) struct RetryPolicy {
    pub on: RetryOn,
    pub retries: u32,
    pub max_wait: Duration,
}

/// Builds a client: rustls with ring, the CA file's certificates as the only roots when
/// given, else the platform's and Mozilla's; redirects followed only to the same scheme,
/// host and port. Without `tls` (an `http://` base URL, which a redirect cannot leave)
/// no roots are loaded: reading the platform's takes a good part of a second.
pub(crate) fn build_client(ca_cert: Option<&Path>, tls: bool) -> ProviderResult<reqwest::Client> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let roots = match ca_cert {
        Some(path) => load_roots(path)?,
        None if tls => system_roots().clone(),
        None => RootCertStore::empty(),
    };
    let tls = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| ProviderError::invalid_input(format!("http target: TLS setup failed: {e}")))?
        .with_root_certificates(roots)
        .with_no_client_auth();
    reqwest::Client::builder()
        .tls_backend_preconfigured(tls)
        .redirect(reqwest::redirect::Policy::custom(|attempt| {
            let next = attempt.url();
            let Some(first) = attempt.previous().first() else {
                return attempt.follow();
            };
            let same = next.scheme() == first.scheme()
                && next.host_str() == first.host_str()
                && next.port_or_known_default() == first.port_or_known_default();
            if !same {
                let to = format!(
                    "{}://{}{}",
                    next.scheme(),
                    next.host_str().unwrap_or("?"),
                    next.port().map(|p| format!(":{p}")).unwrap_or_default()
                );
                attempt.error(RedirectRefused(to))
            } else if attempt.previous().len() > MAX_REDIRECTS {
                attempt.error(RedirectRefused("more than 5 redirects".to_owned()))
            } else {
                attempt.follow()
            }
        }))
        .no_proxy()
        .build()
        .map_err(|e| {
            ProviderError::invalid_input(format!(
                "http target: cannot build the HTTP client: {}",
                error_chain(&e)
            ))
        })
}

#[derive(Debug)]
struct RedirectRefused(String);

impl std::fmt::Display for RedirectRefused {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.0.starts_with("more than") {
            write!(f, "redirect refused: {}", self.0)
        } else {
            write!(f, "redirect to another host ({}) refused", self.0)
        }
    }
}

impl std::error::Error for RedirectRefused {}

fn load_roots(path: &Path) -> ProviderResult<RootCertStore> {
    let certs = CertificateDer::pem_file_iter(path)
        .and_then(|iter| iter.collect::<Result<Vec<_>, _>>())
        .map_err(|e| ProviderError::invalid_input(format!("http target: ca_cert {}: {e}", path.display())))?;
    let mut roots = RootCertStore::empty();
    let (added, _ignored) = roots.add_parsable_certificates(certs);
    if added == 0 {
        return Err(ProviderError::invalid_input(format!(
            "http target: ca_cert {}: no usable certificate in the file",
            path.display()
        )));
    }
    Ok(roots)
}

/// The platform's roots plus Mozilla's, loaded once per process.
fn system_roots() -> &'static RootCertStore {
    static ROOTS: OnceLock<RootCertStore> = OnceLock::new();
    ROOTS.get_or_init(|| {
        let mut roots = RootCertStore {
            roots: webpki_roots::TLS_SERVER_ROOTS.to_vec(),
        };
        roots.add_parsable_certificates(rustls_native_certs::load_native_certs().certs);
        roots
    })
}

/// An error and its sources, one line.
pub(crate) fn error_chain(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        let s_text = s.to_string();
        if !text.contains(&s_text) {
            text.push_str(": ");
            text.push_str(&s_text);
        }
        source = s.source();
    }
    text
}

/// No answer: refused connection, DNS, TLS, timeout, a refused redirect, a cut answer.
/// `label` is `step METHOD base/path-template`; the URL itself is never shown.
fn transport_error(label: &str, timeout: Duration, e: reqwest::Error) -> ProviderError {
    let (redirect, timed_out, connect) = (e.is_redirect(), e.is_timeout(), e.is_connect());
    let detail = error_chain(&e.without_url());
    if redirect || detail.contains("redirect") && detail.contains("refused") {
        let cause = detail
            .split(": ")
            .find(|part| part.contains("refused"))
            .unwrap_or(&detail)
            .to_owned();
        return ProviderError::other(format!("{label}: {cause}")).retryable(false);
    }
    if timed_out {
        return ProviderError::unreachable(format!(
            "{label}: no answer within {}s (timeout_secs)",
            timeout.as_secs()
        ));
    }
    let tls = ["certificate", "tls", "handshake", "CertificateRequired"]
        .iter()
        .any(|w| detail.to_ascii_lowercase().contains(&w.to_ascii_lowercase()));
    let what = if tls {
        "TLS failure"
    } else if connect {
        "cannot connect"
    } else {
        "request failed"
    };
    let hint = if detail.contains("UnknownIssuer") {
        " (a private CA? set `ca_cert`)"
    } else {
        ""
    };
    ProviderError::unreachable(format!("{label}: {what}: {detail}{hint}"))
}

/// Sends `out`, retrying on the statuses `policy` names (at most `policy.retries` times,
/// honouring `Retry-After` up to `policy.max_wait`). Transport failures are not retried:
/// the request may have been processed.
pub(crate) async fn send(
    client: &reqwest::Client,
    out: &Outgoing,
    timeout: Duration,
    label: &str,
    policy: RetryPolicy,
) -> ProviderResult<Sent> {
    let started = Instant::now();
    let mut attempts = 0u32;
    loop {
        attempts += 1;
        let reply = send_once(client, out, timeout, label).await?;
        if !policy.on.retries(reply.0.status) || attempts > policy.retries {
            return Ok(Sent {
                reply: reply.0,
                attempts,
                elapsed: started.elapsed(),
                gave_up: None,
            });
        }
        let wait = match reply.1 {
            Some(after) if after > policy.max_wait => {
                return Ok(Sent {
                    reply: reply.0,
                    attempts,
                    elapsed: started.elapsed(),
                    gave_up: Some(format!(
                        "Retry-After {}s is beyond retry_max_wait_secs ({})",
                        after.as_secs(),
                        policy.max_wait.as_secs()
                    )),
                })
            }
            Some(after) => after,
            None => backoff(attempts).min(policy.max_wait),
        };
        tokio::time::sleep(wait).await;
    }
}

fn backoff(attempt: u32) -> Duration {
    use rand::Rng;
    let base = FIRST_BACKOFF
        .saturating_mul(1 << attempt.saturating_sub(1).min(10))
        .min(MAX_BACKOFF);
    // ±25% jitter so that parallel rotations do not retry in lockstep.
    let factor = rand::thread_rng().gen_range(0.75..1.25);
    base.mul_f64(factor)
}

/// One request: the reply and its `Retry-After` (seconds form).
async fn send_once(
    client: &reqwest::Client,
    out: &Outgoing,
    timeout: Duration,
    label: &str,
) -> ProviderResult<(Reply, Option<Duration>)> {
    let mut request = client.request(out.method.clone(), out.url.as_str()).timeout(timeout);
    for (name, value) in &out.headers {
        request = request.header(name.clone(), value.clone());
    }
    if let Some((content_type, bytes)) = &out.body {
        request = request
            .header(reqwest::header::CONTENT_TYPE, *content_type)
            .body(reqwest::Body::from(bytes.clone()));
    }
    let mut response = request.send().await.map_err(|e| transport_error(label, timeout, e))?;
    let status = response.status();
    let retry_after = response
        .headers()
        .get(RETRY_AFTER)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<u64>().ok())
        .map(Duration::from_secs);
    let content_type = response
        .headers()
        .get(reqwest::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    let mut body = Zeroizing::new(Vec::new());
    loop {
        match response.chunk().await {
            Ok(Some(chunk)) => {
                if body.len() + chunk.len() > MAX_ANSWER {
                    return Err(ProviderError::other(format!(
                        "{label}: the answer (HTTP {}) is larger than 1 MiB",
                        status.as_u16()
                    )));
                }
                body.extend_from_slice(&chunk);
            }
            Ok(None) => break,
            Err(e) => return Err(transport_error(label, timeout, e)),
        }
    }
    Ok((
        Reply {
            status: status.as_u16(),
            reason: status.canonical_reason().unwrap_or(""),
            body,
            content_type,
        },
        retry_after,
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retry_classes() {
        assert!(RetryOn::RateLimitAndServerErrors.retries(500));
        assert!(RetryOn::RateLimitAndServerErrors.retries(429));
        assert!(!RetryOn::RateLimitAndServerErrors.retries(404));
        assert!(!RetryOn::NotProcessed.retries(500));
        assert!(RetryOn::NotProcessed.retries(503));
        assert!(RetryOn::NotProcessed.retries(429));
    }

    #[test]
    fn backoff_grows_and_is_bounded() {
        assert!(backoff(1) < Duration::from_millis(400));
        assert!(backoff(3) >= Duration::from_millis(700));
        assert!(backoff(30) <= MAX_BACKOFF.mul_f64(1.25));
    }
}
