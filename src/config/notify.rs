//! `[[notify]]`: webhooks told about a run's failures, rotations and incidents.
//!
//! ```toml
//! [[notify]]
//! url = "${SLACK_WEBHOOK_URL}"        # http or https; ${ENV} allowed (and advised)
//! on = ["failure", "incident"]        # failure | rotation | incident
//! timeout = "10s"                     # per attempt
//! retries = 2                         # further attempts after the first
//! ```
//!
//! A webhook URL is itself a credential (Slack's carries its token in the path), so it is
//! never shown whole: messages name it by scheme, host and port only ([`Notify::shown`]).

use super::{duration, ConfigError};
use serde::Deserialize;
use std::fmt;
use std::time::Duration;

/// What a notification is sent for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum NotifyOn {
    /// The run exits 1: a credential failed (a busy lock or an interruption alone is not
    /// a failure).
    Failure,
    /// A credential was rotated (a new version promoted), also when a hook failed after.
    Rotation,
    /// An incident rotation ran (`rotate --leaked`, `leaked --rotate`), whatever its result.
    Incident,
}

impl NotifyOn {
    /// The configuration spelling, also the event's `event` field.
    pub fn as_str(self) -> &'static str {
        match self {
            NotifyOn::Failure => "failure",
            NotifyOn::Rotation => "rotation",
            NotifyOn::Incident => "incident",
        }
    }
}

/// One `[[notify]]` table as written.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawNotify {
    url: String,
    on: Option<Vec<NotifyOn>>,
    timeout: Option<String>,
    retries: Option<u32>,
}

impl fmt::Debug for RawNotify {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RawNotify")
            .field("url", &"****")
            .field("on", &self.on)
            .field("timeout", &self.timeout)
            .field("retries", &self.retries)
            .finish()
    }
}

/// One webhook, validated.
#[derive(Clone)]
pub struct Notify {
    /// The URL posted to (may hold a token: never print it; see [`Notify::shown`]).
    pub url: reqwest::Url,
    /// The events it wants.
    pub on: Vec<NotifyOn>,
    /// How long one attempt may take.
    pub timeout: Duration,
    /// Further attempts after a failed first one.
    pub retries: u32,
}

impl Notify {
    /// The URL as it may be shown: scheme, host and port (`https://hooks.slack.com/…`).
    pub fn shown(&self) -> String {
        shown(&self.url)
    }
}

impl fmt::Debug for Notify {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Notify")
            .field("url", &self.shown())
            .field("on", &self.on)
            .field("timeout", &self.timeout)
            .field("retries", &self.retries)
            .finish()
    }
}

fn shown(url: &reqwest::Url) -> String {
    let host = url.host_str().unwrap_or("?");
    let port = url.port().map(|p| format!(":{p}")).unwrap_or_default();
    format!("{}://{host}{port}/…", url.scheme())
}

/// Longest timeout of one attempt.
const MAX_TIMEOUT: Duration = Duration::from_secs(300);
/// Most retries of one notification.
const MAX_RETRIES: u32 = 10;

/// Validates the `[[notify]]` tables in file order.
pub(super) fn resolve(file: &str, raw: Vec<RawNotify>) -> Result<Vec<Notify>, ConfigError> {
    raw.into_iter()
        .enumerate()
        .map(|(index, n)| {
            let owner = format!("[[notify]] #{}", index + 1);
            // The text may hold a token: errors describe it, never quote it.
            let url = reqwest::Url::parse(n.url.trim()).map_err(|e| {
                ConfigError::new(format!(
                    "{file}: {owner}: `url` is not a URL ({e}); write e.g. \"${{SLACK_WEBHOOK_URL}}\" or \
                     \"https://hooks.example.com/...\" (the value is not shown: it may hold a token)"
                ))
            })?;
            if !matches!(url.scheme(), "http" | "https") || url.host_str().is_none_or(str::is_empty) {
                return Err(ConfigError::new(format!(
                    "{file}: {owner}: `url` must be an http:// or https:// URL with a host (got {})",
                    if url.host_str().is_some() {
                        shown(&url)
                    } else {
                        format!("a `{}:` URL", url.scheme())
                    }
                )));
            }
            let mut on = n.on.unwrap_or_else(|| vec![NotifyOn::Failure, NotifyOn::Incident]);
            if on.is_empty() {
                return Err(ConfigError::new(format!(
                    "{file}: {owner}: `on` is empty: list at least one of \"failure\", \"rotation\", \"incident\""
                )));
            }
            on.sort();
            on.dedup();
            let timeout = duration(n.timeout.as_deref(), Duration::from_secs(10), "timeout", file, &owner)?;
            if timeout.is_zero() || timeout > MAX_TIMEOUT {
                return Err(ConfigError::new(format!(
                    "{file}: {owner}: `timeout` must be between 1ms and 5m"
                )));
            }
            let retries = n.retries.unwrap_or(2);
            if retries > MAX_RETRIES {
                return Err(ConfigError::new(format!(
                    "{file}: {owner}: `retries = {retries}` is too many (at most {MAX_RETRIES})"
                )));
            }
            Ok(Notify {
                url,
                on,
                timeout,
                retries,
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::super::Config;
    use super::NotifyOn;
    use std::path::Path;
    use std::time::Duration;

    const BASE: &str = "[stores.local]\ntype = \"file\"\npath = \"secrets.json\"\n";

    fn parse(notify: &str) -> Result<Config, String> {
        let text = format!("{BASE}\n{notify}");
        Config::parse(Path::new("/etc/rekey/rekey.toml"), &text, |name| {
            (name == "HOOK_URL").then(|| "https://hooks.example.com/services/T000/B000/s3cr3tt0ken".to_owned())
        })
        .map_err(|e| e.to_string())
    }

    #[test]
    fn notify_defaults_and_env() {
        let c = parse("[[notify]]\nurl = \"${HOOK_URL}\"\n").unwrap();
        assert_eq!(c.notify.len(), 1);
        let n = &c.notify[0];
        assert_eq!(n.on, vec![NotifyOn::Failure, NotifyOn::Incident]);
        assert_eq!(n.timeout, Duration::from_secs(10));
        assert_eq!(n.retries, 2);
        assert_eq!(n.url.path(), "/services/T000/B000/s3cr3tt0ken");
        assert_eq!(n.shown(), "https://hooks.example.com/…");
        let debug = format!("{c:?}");
        assert!(!debug.contains("s3cr3tt0ken"), "{debug}");
    }

    #[test]
    fn notify_full_entry() {
        let c = parse(
            "[[notify]]\nurl = \"http://127.0.0.1:9/x\"\non = [\"rotation\", \"failure\"]\ntimeout = \"2s\"\nretries = 0\n\
             [[notify]]\nurl = \"https://example.com/y\"\non = [\"incident\"]\n",
        )
        .unwrap();
        assert_eq!(c.notify.len(), 2);
        assert_eq!(c.notify[0].on, vec![NotifyOn::Failure, NotifyOn::Rotation]);
        assert_eq!(c.notify[0].timeout, Duration::from_secs(2));
        assert_eq!(c.notify[0].retries, 0);
        assert_eq!(c.notify[1].on, vec![NotifyOn::Incident]);
        assert!(parse("").unwrap().notify.is_empty());
    }

    #[test]
    fn notify_refusals() {
        let e = parse("[[notify]]\nurl = \"https://example.com/x\"\nretry = 2\n").unwrap_err();
        assert!(e.starts_with("/etc/rekey/rekey.toml:") && e.contains("retry"), "{e}");
        let e = parse("[[notify]]\nurl = \"https://example.com/x\"\non = [\"always\"]\n").unwrap_err();
        assert!(e.contains("always"), "{e}");
        let e = parse("[[notify]]\nurl = \"ftp://example.com/s3cr3tt0ken\"\n").unwrap_err();
        assert!(e.contains("http:// or https://") && !e.contains("s3cr3tt0ken"), "{e}");
        let e = parse("[[notify]]\nurl = \"not a url s3cr3tt0ken\"\n").unwrap_err();
        assert!(e.contains("not a URL") && !e.contains("s3cr3tt0ken"), "{e}");
        let e = parse("[[notify]]\nurl = \"https://example.com/x\"\non = []\n").unwrap_err();
        assert!(e.contains("`on` is empty"), "{e}");
        let e = parse("[[notify]]\nurl = \"https://example.com/x\"\ntimeout = \"1h\"\n").unwrap_err();
        assert!(e.contains("timeout"), "{e}");
        let e = parse("[[notify]]\nurl = \"https://example.com/x\"\nretries = 99\n").unwrap_err();
        assert!(e.contains("retries"), "{e}");
        let e = parse("[[notify]]\non = [\"failure\"]\n").unwrap_err();
        assert!(e.contains("url"), "{e}");
        let e = Config::parse(
            Path::new("r.toml"),
            &format!("{BASE}\n[[notify]]\nurl = \"${{MISSING_HOOK}}\"\n"),
            |_| None,
        )
        .unwrap_err()
        .to_string();
        assert!(e.contains("MISSING_HOOK") && e.contains("notify"), "{e}");
    }
}
