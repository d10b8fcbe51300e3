//! Version ids and AWS `ClientRequestToken`s.
//!
//! Secrets Manager names a version by the `ClientRequestToken` that created it, which
//! must be 32 to 64 characters. The engine's version ids are UUIDs (36 characters) and
//! are used as they are, so a version id reads back exactly as AWS shows it. Shorter ids
//! (tests use `v1`) are encoded reversibly as `rekeyid-` + hex of the id, padded with
//! `-` to 32 characters; ids that fit neither way are refused.

use rekey_api::{ProviderError, ProviderResult};

/// Prefix of encoded ids. Not hex, so it never starts a UUID.
const PREFIX: &str = "rekeyid-";
const MIN: usize = 32;
const MAX: usize = 64;

/// The `ClientRequestToken` (AWS `VersionId`) for a version id.
pub(crate) fn token(version_id: &str) -> ProviderResult<String> {
    if version_id.is_empty() {
        return Err(ProviderError::invalid_input("version id is empty"));
    }
    let plain = (MIN..=MAX).contains(&version_id.len())
        && version_id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        && !version_id.starts_with(PREFIX);
    if plain {
        return Ok(version_id.to_owned());
    }
    let mut encoded = String::from(PREFIX);
    for byte in version_id.bytes() {
        encoded.push_str(&format!("{byte:02x}"));
    }
    if encoded.len() > MAX {
        return Err(ProviderError::invalid_input(format!(
            "version id {version_id:?} cannot name a Secrets Manager version: use 32 to 64 letters, digits, \
             `-` or `_` (a UUID), or at most {} bytes",
            (MAX - PREFIX.len()) / 2
        )));
    }
    while encoded.len() < MIN {
        encoded.push('-');
    }
    Ok(encoded)
}

/// The version id a `VersionId` stands for (the inverse of [`token`]); a version
/// written by anything else keeps its AWS id.
pub(crate) fn version_id(token: &str) -> String {
    decode(token).unwrap_or_else(|| token.to_owned())
}

fn decode(token: &str) -> Option<String> {
    let hex = token.strip_prefix(PREFIX)?.trim_end_matches('-');
    if hex.is_empty() || hex.len() % 2 != 0 {
        return None;
    }
    let bytes = (0..hex.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&hex[i..i + 2], 16).ok())
        .collect::<Option<Vec<u8>>>()?;
    String::from_utf8(bytes).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn uuids_are_used_as_they_are() {
        let id = "0b6d3b1e-3f1a-4c55-9a57-1d2a4c1b9e00";
        assert_eq!(token(id).unwrap(), id);
        assert_eq!(version_id(id), id);
    }

    #[test]
    fn short_ids_round_trip() {
        for id in ["v1", "v9", "run 2026/11/21", "é", "rekeyid-x"] {
            let t = token(id).unwrap();
            assert!((MIN..=MAX).contains(&t.len()), "{t}");
            assert_eq!(version_id(&t), id);
        }
        assert_ne!(token("v1").unwrap(), token("v2").unwrap());
    }

    #[test]
    fn unfit_ids_are_refused() {
        assert!(token("").is_err());
        assert!(token(&"x".repeat(65)).is_err());
        assert!(token(&"é".repeat(20)).is_err());
    }
}
