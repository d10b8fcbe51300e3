//! Version ids carry two facts about the rotation that made them, so that every store
//! keeps them without a field of its own: whether it was an incident's, and the grace
//! period promised on the command line (`--grace`) to the version it replaced.
//!
//! Format: `[incident-][grace<SECONDS>s-]<uuid>`, at most 64 characters (what AWS
//! Secrets Manager accepts as a ClientRequestToken).

use rekey_api::StoredVersion;
use std::time::{Duration, SystemTime};

/// Prefix of version ids made in incident mode.
pub const INCIDENT_PREFIX: &str = "incident-";
const GRACE_PREFIX: &str = "grace";

/// A new version id.
pub fn new_id(incident: bool, promised_grace: Option<Duration>) -> String {
    let mut id = String::new();
    if incident {
        id.push_str(INCIDENT_PREFIX);
    }
    if let Some(grace) = promised_grace.filter(|_| !incident) {
        id.push_str(&format!("{GRACE_PREFIX}{}s-", grace.as_secs()));
    }
    id.push_str(&uuid::Uuid::new_v4().to_string());
    id
}

/// Whether the version was made by an incident rotation.
pub fn is_incident(id: &str) -> bool {
    id.starts_with(INCIDENT_PREFIX)
}

/// The grace period promised, when the rotation that made `id` was given `--grace`.
pub fn promised_grace(id: &str) -> Option<Duration> {
    let rest = id.strip_prefix(INCIDENT_PREFIX).unwrap_or(id);
    let rest = rest.strip_prefix(GRACE_PREFIX)?;
    let (secs, _) = rest.split_once("s-")?;
    secs.parse().ok().map(Duration::from_secs)
}

/// When the version `current` replaced may be revoked: `current` was staged at
/// `created`; the grace is `override_grace` (this run's `--grace`), else the one promised
/// when `current` was made, else the configured one. Never overflows.
pub fn revoke_at(current: &StoredVersion, override_grace: Option<Duration>, configured: Duration) -> SystemTime {
    let grace = override_grace
        .or_else(|| promised_grace(&current.id))
        .unwrap_or(configured);
    current
        .created
        .checked_add(grace)
        .unwrap_or_else(|| SystemTime::UNIX_EPOCH + Duration::from_secs(u64::from(u32::MAX) * 16))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_carry_incident_and_grace() {
        let id = new_id(false, Some(Duration::from_secs(3600)));
        assert!(id.len() <= 64);
        assert_eq!(promised_grace(&id), Some(Duration::from_secs(3600)));
        assert!(!is_incident(&id));
        let id = new_id(true, None);
        assert!(is_incident(&id) && id.len() <= 64);
        assert_eq!(promised_grace(&id), None);
        assert_eq!(promised_grace(&uuid::Uuid::new_v4().to_string()), None);
        assert_eq!(promised_grace("grace12x-abc"), None);
    }
}
