//! The HTTP layer: the reqwest client (rustls, redirects only within one origin), one
//! request with bounded retries on 429 and 5xx, and answers read into zeroized buffers
//! with a size bound.

use rekey_api::{ProviderError, ProviderResult};
use rekey_net::error_chain;
use rekey_net::rustls;
use rekey_net::tls::{rustls_error, ClientTls, Roots};
use reqwest::header::{HeaderName, HeaderValue, RETRY_AFTER};
use std::path::Path;
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
    /// The body was over [`MAX_ANSWER`]: not read (`body` is empty). The status still
    /// counts (a `create` that answered 201 may have minted a key).
    pub oversized: bool,
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
    let roots = match ca_cert {
        Some(path) => Roots::CaFile {
            path,
            setting: "ca_cert",
        },
        None if tls => Roots::System,
        None => Roots::Empty,
    };
    let tls = ClientTls::verified(roots)
        .build()
        .map_err(|e| ProviderError::invalid_input(format!("http target: {e}")))?;
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

/// The first error of type `T` along `e`'s source chain.
fn find_source<'a, T: std::error::Error + 'static>(e: &'a (dyn std::error::Error + 'static)) -> Option<&'a T> {
    let mut next = Some(e);
    while let Some(e) = next {
        if let Some(found) = e.downcast_ref::<T>() {
            return Some(found);
        }
        next = e.source();
    }
    None
}

/// No answer: refused connection, DNS, TLS, timeout, a refused redirect, a cut answer.
/// `label` is `step METHOD base/path-template`; the URL itself is never shown.
fn transport_error(label: &str, timeout: Duration, e: reqwest::Error) -> ProviderError {
    let (redirect, timed_out, connect) = (e.is_redirect(), e.is_timeout(), e.is_connect());
    // Without the URL, which may hold a secret (a key in the query string); what is left
    // of the chain (hyper, I/O, rustls, a refused redirect) becomes the error's source.
    let e = e.without_url();
    classify_transport(label, timeout, &e, redirect, timed_out, connect).with_source(&e)
}

/// The error [`transport_error`] returns, before its source is attached.
fn classify_transport(
    label: &str,
    timeout: Duration,
    e: &reqwest::Error,
    redirect: bool,
    timed_out: bool,
    connect: bool,
) -> ProviderError {
    let detail = error_chain(e);
    // Classified by the error's type along its source chain, never by its text.
    if let Some(refused) = find_source::<RedirectRefused>(e) {
        return ProviderError::other(format!("{label}: {refused}")).retryable(false);
    }
    if redirect {
        return ProviderError::other(format!("{label}: {detail}")).retryable(false);
    }
    if timed_out {
        return ProviderError::unreachable(format!(
            "{label}: no answer within {}s (timeout_secs)",
            timeout.as_secs()
        ));
    }
    let tls_error = rustls_error(e);
    let tls = tls_error.is_some();
    let what = if tls {
        "TLS failure"
    } else if connect {
        "cannot connect"
    } else {
        "request failed"
    };
    let hint = if matches!(
        tls_error,
        Some(rustls::Error::InvalidCertificate(
            rustls::CertificateError::UnknownIssuer
        ))
    ) {
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
    let mut oversized = false;
    loop {
        match response.chunk().await {
            Ok(Some(chunk)) => {
                if body.len() + chunk.len() > MAX_ANSWER {
                    oversized = true;
                    body = Zeroizing::new(Vec::new());
                    break;
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
            oversized,
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
