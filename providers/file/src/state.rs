//! The store's state operations: each write ([`Op`]) checked against the keys' versions
//! and applied in memory, or refused with the model left exactly as it was. Messages name
//! keys, version ids and stages only, never a value.

use crate::model::{SecretValue, StageName, StoreFile, VersionEntry};
use rekey_api::{ProviderError, ProviderResult};
use std::time::SystemTime;

/// One write, queued for the writer.
pub(crate) enum Op {
    PutCurrent {
        key: String,
        id: String,
        value: SecretValue,
    },
    StagePending {
        key: String,
        id: String,
        value: SecretValue,
    },
    Promote {
        key: String,
        id: String,
        previous_revoked: bool,
    },
    MarkRevoked {
        key: String,
        id: String,
    },
    DiscardPending {
        key: String,
        id: String,
    },
}

impl Op {
    /// The key this write changes.
    pub(crate) fn key(&self) -> &str {
        let (Op::PutCurrent { key, .. }
        | Op::StagePending { key, .. }
        | Op::Promote { key, .. }
        | Op::MarkRevoked { key, .. }
        | Op::DiscardPending { key, .. }) = self;
        key
    }
}

impl StoreFile {
    /// Applies one write. Returns whether it changed anything (`false`: it had already
    /// taken effect). A refused write leaves the model exactly as it was.
    pub(crate) fn apply(&mut self, op: Op, now: SystemTime) -> ProviderResult<bool> {
        match op {
            Op::PutCurrent { key, id, value } => self.put_current(key, id, value, now),
            Op::StagePending { key, id, value } => self.stage_pending(key, id, value, now),
            Op::Promote {
                key,
                id,
                previous_revoked,
            } => self.promote(&key, &id, previous_revoked, now),
            Op::MarkRevoked { key, id } => self.mark_revoked(&key, &id, now),
            Op::DiscardPending { key, id } => self.discard_pending(&key, &id),
        }
    }

    fn put_current(&mut self, key: String, id: String, value: SecretValue, now: SystemTime) -> ProviderResult<bool> {
        if let Some(entry) = self.keys.get(&key) {
            if let Some(existing) = entry.version(&id) {
                if existing.has(StageName::Current) && existing.value == value {
                    return Ok(false);
                }
                let what = if existing.has(StageName::Current) {
                    "is already current with a different value".to_owned()
                } else {
                    format!("already exists ({})", existing.describe_stages())
                };
                return Err(ProviderError::conflict(format!(
                    "key {key:?}: version {id:?} {what}; use a new version id"
                )));
            }
            if let Some(pending) = entry.with_stage(StageName::Pending) {
                return Err(ProviderError::conflict(format!(
                    "key {key:?} has a pending rotation (version {:?}); finish it before importing",
                    pending.id
                )));
            }
        }
        let entry = self.keys.entry(key).or_default();
        for v in &mut entry.versions {
            v.remove(StageName::Current);
        }
        entry.versions.push(VersionEntry {
            id,
            stages: vec![StageName::Current],
            created: now,
            revoked: None,
            value,
        });
        entry.prune();
        Ok(true)
    }

    fn stage_pending(&mut self, key: String, id: String, value: SecretValue, now: SystemTime) -> ProviderResult<bool> {
        if let Some(entry) = self.keys.get(&key) {
            if let Some(existing) = entry.version(&id) {
                if existing.has(StageName::Pending) && existing.value == value {
                    return Ok(false);
                }
                let what = if existing.has(StageName::Pending) {
                    "is already pending with a different value".to_owned()
                } else {
                    format!("already exists ({})", existing.describe_stages())
                };
                return Err(ProviderError::conflict(format!(
                    "key {key:?}: version {id:?} {what}; use a new version id"
                )));
            }
            if let Some(pending) = entry.with_stage(StageName::Pending) {
                return Err(ProviderError::conflict(format!(
                    "key {key:?} already has a pending version {:?}; another rotation is in progress",
                    pending.id
                )));
            }
        }
        let entry = self.keys.entry(key).or_default();
        entry.versions.push(VersionEntry {
            id,
            stages: vec![StageName::Pending],
            created: now,
            revoked: None,
            value,
        });
        entry.prune();
        Ok(true)
    }

    fn promote(&mut self, key: &str, id: &str, previous_revoked: bool, now: SystemTime) -> ProviderResult<bool> {
        let Some(entry) = self.keys.get_mut(key) else {
            return Err(ProviderError::conflict(format!(
                "key {key:?} does not exist; cannot promote version {id:?}"
            )));
        };
        let Some(index) = entry.versions.iter().position(|v| v.id == id) else {
            return Err(ProviderError::conflict(format!(
                "key {key:?} has no version {id:?} to promote"
            )));
        };
        let target = &entry.versions[index];
        if target.has(StageName::Current) {
            return Ok(false);
        }
        if !target.has(StageName::Pending) {
            return Err(ProviderError::conflict(format!(
                "key {key:?}: version {id:?} is neither pending nor current ({})",
                target.describe_stages()
            )));
        }
        for (i, v) in entry.versions.iter_mut().enumerate() {
            if i == index {
                continue;
            }
            if v.has(StageName::Previous) {
                v.remove(StageName::Previous);
            } else if v.has(StageName::Current) {
                v.remove(StageName::Current);
                v.add(StageName::Previous);
                if previous_revoked && v.revoked.is_none() {
                    v.revoked = Some(now);
                }
            }
        }
        let target = &mut entry.versions[index];
        target.remove(StageName::Pending);
        target.add(StageName::Current);
        entry.prune();
        Ok(true)
    }

    fn mark_revoked(&mut self, key: &str, id: &str, now: SystemTime) -> ProviderResult<bool> {
        let version = self
            .keys
            .get_mut(key)
            .and_then(|entry| entry.versions.iter_mut().find(|v| v.id == id));
        let Some(version) = version else {
            return Err(ProviderError::not_found(format!("key {key:?} has no version {id:?}")));
        };
        if version.revoked.is_some() {
            return Ok(false);
        }
        version.revoked = Some(now);
        Ok(true)
    }

    /// Takes the pending stage away from version `id`, which stays as history. Nothing to
    /// do when no version is pending (or `id` is no longer); a conflict when another
    /// version is pending.
    fn discard_pending(&mut self, key: &str, id: &str) -> ProviderResult<bool> {
        let Some(entry) = self.keys.get_mut(key) else {
            return Err(ProviderError::not_found(format!(
                "key {key:?} does not exist; there is no pending version {id:?} to discard"
            )));
        };
        let Some(index) = entry.versions.iter().position(|v| v.has(StageName::Pending)) else {
            return Ok(false);
        };
        let pending = &mut entry.versions[index];
        if pending.id != id {
            return Err(ProviderError::conflict(format!(
                "key {key:?}: cannot discard version {id:?}: the pending version is {:?}",
                pending.id
            )));
        }
        pending.remove(StageName::Pending);
        entry.prune();
        Ok(true)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::HISTORY_LIMIT;
    use rekey_api::ErrorKind;
    use rekey_api::SecretDoc;

    fn value(tag: &str) -> SecretValue {
        let mut doc = SecretDoc::new();
        doc.set("username", tag);
        doc.set("password", format!("pw-{tag}"));
        SecretValue::from_doc(&doc)
    }

    fn stages(file: &StoreFile, key: &str) -> Vec<(String, Vec<&'static str>)> {
        file.keys[key]
            .versions
            .iter()
            .map(|v| (v.id.clone(), v.stages.iter().map(|s| s.as_str()).collect()))
            .collect()
    }

    fn put(file: &mut StoreFile, id: &str) -> ProviderResult<bool> {
        file.apply(
            Op::PutCurrent {
                key: "k".into(),
                id: id.into(),
                value: value(id),
            },
            SystemTime::now(),
        )
    }

    fn stage(file: &mut StoreFile, id: &str) -> ProviderResult<bool> {
        file.apply(
            Op::StagePending {
                key: "k".into(),
                id: id.into(),
                value: value(id),
            },
            SystemTime::now(),
        )
    }

    fn promote(file: &mut StoreFile, id: &str) -> ProviderResult<bool> {
        file.apply(
            Op::Promote {
                key: "k".into(),
                id: id.into(),
                previous_revoked: false,
            },
            SystemTime::now(),
        )
    }

    #[test]
    fn history_is_bounded() {
        let mut file = StoreFile::default();
        put(&mut file, "v0").unwrap();
        for i in 1..20 {
            stage(&mut file, &format!("v{i}")).unwrap();
            promote(&mut file, &format!("v{i}")).unwrap();
        }
        let versions = stages(&file, "k");
        assert_eq!(versions.len(), HISTORY_LIMIT + 2, "current + previous + history");
        assert_eq!(versions.last().unwrap(), &("v19".to_owned(), vec!["current"]));
        assert_eq!(versions[versions.len() - 2], ("v18".to_owned(), vec!["previous"]));
        assert_eq!(versions[0].0, "v13", "the oldest history was dropped");
    }

    #[test]
    fn refused_writes_change_nothing() {
        let mut file = StoreFile::default();
        put(&mut file, "v1").unwrap();
        stage(&mut file, "v2").unwrap();
        let before = serde_json::to_string(&file).unwrap();
        assert_eq!(stage(&mut file, "v3").unwrap_err().kind(), ErrorKind::Conflict);
        assert_eq!(put(&mut file, "v4").unwrap_err().kind(), ErrorKind::Conflict);
        assert_eq!(promote(&mut file, "v9").unwrap_err().kind(), ErrorKind::Conflict);
        assert!(!promote(&mut file, "v1").unwrap(), "v1 is current already");
        // Same id, different value: refused rather than silently kept.
        let err = file
            .apply(
                Op::StagePending {
                    key: "k".into(),
                    id: "v2".into(),
                    value: value("other"),
                },
                SystemTime::now(),
            )
            .unwrap_err();
        assert_eq!(err.kind(), ErrorKind::Conflict);
        assert!(!err.to_string().contains("pw-"));
        assert_eq!(serde_json::to_string(&file).unwrap(), before);
    }

    fn discard(file: &mut StoreFile, key: &str, id: &str) -> ProviderResult<bool> {
        file.apply(
            Op::DiscardPending {
                key: key.into(),
                id: id.into(),
            },
            SystemTime::now(),
        )
    }

    #[test]
    fn discard_pending_keeps_the_version_without_stage() {
        let mut file = StoreFile::default();
        assert_eq!(discard(&mut file, "k", "v1").unwrap_err().kind(), ErrorKind::NotFound);
        put(&mut file, "v1").unwrap();
        assert!(!discard(&mut file, "k", "v1").unwrap(), "nothing pending: no change");
        stage(&mut file, "v2").unwrap();
        let before = serde_json::to_string(&file).unwrap();
        for other in ["v1", "v9"] {
            let err = discard(&mut file, "k", other).unwrap_err();
            assert_eq!(err.kind(), ErrorKind::Conflict);
            assert!(!err.to_string().contains("pw-"), "{err}");
        }
        assert_eq!(serde_json::to_string(&file).unwrap(), before, "refusals change nothing");
        assert!(discard(&mut file, "k", "v2").unwrap());
        assert!(!discard(&mut file, "k", "v2").unwrap(), "idempotent");
        assert_eq!(
            stages(&file, "k"),
            vec![("v1".to_owned(), vec!["current"]), ("v2".to_owned(), vec![])]
        );
        // The id stays taken: a discarded version is not staged again.
        assert_eq!(stage(&mut file, "v2").unwrap_err().kind(), ErrorKind::Conflict);
        stage(&mut file, "v3").unwrap();
        promote(&mut file, "v3").unwrap();
        assert_eq!(
            stages(&file, "k"),
            vec![
                ("v1".to_owned(), vec!["previous"]),
                ("v2".to_owned(), vec![]),
                ("v3".to_owned(), vec!["current"])
            ]
        );
    }

    #[test]
    fn mark_revoked_missing_version_is_not_found() {
        let mut file = StoreFile::default();
        let err = file
            .apply(
                Op::MarkRevoked {
                    key: "k".into(),
                    id: "v1".into(),
                },
                SystemTime::now(),
            )
            .unwrap_err();
        assert_eq!(err.kind(), ErrorKind::NotFound);
    }
}
