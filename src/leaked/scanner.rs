//! Secret scanners' reports: trufflehog's JSON lines and gitleaks' JSON array.

use super::candidate::{ExtractError, Origin, Source};
use super::collect::{Collector, Weight};
use super::text::extract_text;
use serde::{Deserialize, Deserializer};
use zeroize::Zeroizing;

/// A string field of a finding, zeroized on drop.
struct Field(Zeroizing<String>);

impl<'de> Deserialize<'de> for Field {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        String::deserialize(deserializer).map(|s| Field(Zeroizing::new(s)))
    }
}

/// The part of a trufflehog finding that holds the secret; other fields are skipped
/// unread.
#[derive(Deserialize)]
struct TrufflehogFinding {
    #[serde(rename = "Raw", default)]
    raw: Option<Field>,
    #[serde(rename = "RawV2", default)]
    raw_v2: Option<Field>,
}

/// The part of a gitleaks finding that holds the secret.
#[derive(Deserialize)]
struct GitleaksFinding {
    #[serde(rename = "Secret", default)]
    secret: Option<Field>,
    #[serde(rename = "Match", default)]
    matched: Option<Field>,
}

/// `trufflehog --json`: one object per line; blank lines and objects without `Raw` (log
/// lines, when stderr was captured too) are skipped.
pub(super) fn trufflehog(input: &str, out: &mut Collector) -> Result<(), ExtractError> {
    for (n, line) in input.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() {
            continue;
        }
        let error = |reason| ExtractError::Scanner {
            scanner: Source::Trufflehog,
            line: n + 1,
            reason,
        };
        if !line.starts_with('{') {
            return Err(error("expected one JSON object per line (trufflehog --json)"));
        }
        let finding: TrufflehogFinding = serde_json::from_str(line).map_err(|e| error(reason(&e)))?;
        for field in [finding.raw, finding.raw_v2].into_iter().flatten() {
            out.add(&field.0, Origin::Trufflehog, Weight::Strong);
            key_and_secret(&field.0, out);
            extract_text(&field.0, false, out);
        }
    }
    Ok(())
}

/// A gitleaks JSON report: an array of findings; `Secret` is a candidate and `Match` (the
/// text around it) goes through the text forms.
pub(super) fn gitleaks(input: &str, out: &mut Collector) -> Result<(), ExtractError> {
    let start = input.trim_start();
    if !start.starts_with('[') {
        let line = input.len() - start.len();
        let line = input[..line].matches('\n').count() + 1;
        return Err(ExtractError::Scanner {
            scanner: Source::Gitleaks,
            line,
            reason: "expected a JSON array of findings (gitleaks --report-format json)",
        });
    }
    let findings: Vec<GitleaksFinding> = serde_json::from_str(input).map_err(|e| ExtractError::Scanner {
        scanner: Source::Gitleaks,
        line: e.line(),
        reason: reason(&e),
    })?;
    for finding in findings {
        if let Some(secret) = &finding.secret {
            out.add(&secret.0, Origin::Gitleaks, Weight::Strong);
            extract_text(&secret.0, false, out);
        }
        if let Some(matched) = &finding.matched {
            extract_text(&matched.0, false, out);
        }
    }
    Ok(())
}

/// `RawV2` often joins an id and its secret with `:` (AWS `AKIA...:secret`): both halves,
/// split at the first and at the last colon, unless the value is a URL.
fn key_and_secret(value: &str, out: &mut Collector) {
    if value.contains("://") {
        return;
    }
    for split in [value.split_once(':'), value.rsplit_once(':')].into_iter().flatten() {
        out.add(split.0, Origin::Trufflehog, Weight::Strong);
        out.add(split.1, Origin::Trufflehog, Weight::Strong);
    }
}

/// Why serde_json failed, in words that never quote the input (its own messages may).
fn reason(e: &serde_json::Error) -> &'static str {
    match e.classify() {
        serde_json::error::Category::Syntax => "invalid JSON",
        serde_json::error::Category::Eof => "the JSON ends early",
        serde_json::error::Category::Data => "a field has an unexpected type",
        serde_json::error::Category::Io => "the input could not be read",
    }
}
