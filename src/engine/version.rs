//! Version ids carry facts about the rotation that made them, so that every store keeps
//! them without a field of its own: whether it was an incident's, the grace period
//! promised on the command line (`--grace`) to the version it replaced, and which
//! machine staged it (so a fresh pending version of another runner is left to it).
//!
//! Format: `[incident-][g<SECONDS>s-]h<8 hex>-<uuid>`, at most 64 characters (what AWS
//! Secrets Manager accepts as a ClientRequestToken).

use rekey_api::StoredVersion;
use std::time::{Duration, SystemTime};

/// Prefix of version ids made in incident mode.
pub const INCIDENT_PREFIX: &str = "incident-";
const GRACE_PREFIX: &str = "g";
const HOST_PREFIX: &str = "h";

/// This machine's runner tag: 8 hex digits of a hash of its host name (FNV-1a). Read
/// once per process (a version id is made per rotation; the host name of a running
/// process is not expected to change under it).
pub fn host_tag() -> String {
    static TAG: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    TAG.get_or_init(|| tag_of(&std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap_or_default()))
        .clone()
}

fn tag_of(host_name: &str) -> String {
    let mut hash: u32 = 0x811c_9dc5;
    for byte in host_name.trim().bytes() {
        hash ^= u32::from(byte);
        hash = hash.wrapping_mul(0x0100_0193);
    }
    format!("{hash:08x}")
}

/// A new version id.
pub fn new_id(incident: bool, promised_grace: Option<Duration>) -> String {
    let mut id = String::new();
    if incident {
        id.push_str(INCIDENT_PREFIX);
    }
    if let Some(grace) = promised_grace.filter(|_| !incident) {
        id.push_str(&format!("{GRACE_PREFIX}{}s-", grace.as_secs()));
    }
    id.push_str(&format!("{HOST_PREFIX}{}-", host_tag()));
    id.push_str(&uuid::Uuid::new_v4().to_string());
    id
}

/// The runner tag of the machine that staged `id`, when the id carries one.
pub fn runner_of(id: &str) -> Option<&str> {
    id.split('-')
        .take(3)
        .find(|part| {
            part.len() == 9 && part.starts_with(HOST_PREFIX) && part[1..].bytes().all(|b| b.is_ascii_hexdigit())
        })
        .map(|part| &part[1..])
}

/// The first 8 characters of the id's UUID, keeping an `incident-` mark: how people see
/// a version.
pub fn short(id: &str) -> String {
    let mark = if is_incident(id) { INCIDENT_PREFIX } else { "" };
    let uuid = id.get(id.len().saturating_sub(36)..).unwrap_or(id);
    format!("{mark}{}", &uuid[..uuid.len().min(8)])
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
/// when `current` was made, else the configured one. Never overflows. A version made by
/// an incident rotation replaced a leaked secret: that one gets no grace, whatever the
/// run that finishes it is given.
pub fn revoke_at(current: &StoredVersion, override_grace: Option<Duration>, configured: Duration) -> SystemTime {
    if is_incident(&current.id) {
        return current.created;
    }
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
        assert_eq!(promised_grace("g12x-abc"), None);
        assert_eq!(runner_of(&id), Some(host_tag().as_str()));
        assert_eq!(runner_of(&uuid::Uuid::new_v4().to_string()), None);
        let long = new_id(false, Some(Duration::from_secs(3_153_600_000)));
        assert!(long.len() <= 64, "{long}");
        assert_eq!(short(&id).len(), "incident-".len() + 8);
    }

    #[test]
    fn a_leaked_secret_gets_no_grace() {
        let created = SystemTime::UNIX_EPOCH + Duration::from_secs(1_000_000);
        let version = |id: String| StoredVersion {
            id,
            stages: vec![],
            created,
            revoked: None,
            doc: rekey_api::SecretDoc::default(),
        };
        let hour = Duration::from_secs(3600);
        let routine = version(new_id(false, Some(hour)));
        assert_eq!(revoke_at(&routine, None, Duration::ZERO), created + hour);
        assert_eq!(revoke_at(&routine, Some(2 * hour), Duration::ZERO), created + 2 * hour);
        let incident = version(new_id(true, None));
        assert_eq!(revoke_at(&incident, None, hour), created);
        assert_eq!(revoke_at(&incident, Some(hour), hour), created);
    }

    #[test]
    fn host_tag_is_the_hash_of_the_host_name() {
        // FNV-1a of the empty string is its offset basis; surrounding whitespace is ignored.
        assert_eq!(tag_of(""), "811c9dc5");
        assert_eq!(tag_of("db1\n"), tag_of("db1"));
        assert_ne!(tag_of("db1"), tag_of("db2"));
        let name = std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap_or_default();
        assert_eq!(host_tag(), tag_of(&name));
        assert_eq!(host_tag(), host_tag());
    }
}
