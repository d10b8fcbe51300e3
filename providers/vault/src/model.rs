//! The versions document rekey keeps beside each key, how the state applications see is
//! reconciled with it, and the store operations applied to it in memory.
//!
//! ```json
//! {
//!   "format": 1,
//!   "about": "rekey versions of secret/orders/db; applications read secret/orders/db",
//!   "versions": [
//!     { "id": "run-1", "stages": ["previous"], "created": "2026-10-21T18:00:00Z",
//!       "revoked": "2026-11-21T18:00:09Z", "value": { "username": "...", "password": "..." } },
//!     { "id": "run-2", "stages": ["current"], "created": "2026-11-21T18:00:00Z",
//!       "revoked": null, "value": { "username": "...", "password": "..." } }
//!   ]
//! }
//! ```
//!
//! Versions are kept oldest first. The document is parsed by hand so that every error
//! names a field and never quotes a value.

use crate::http::{zeroize_value, SecretJson};
use rekey_api::{KeyState, ProviderError, ProviderResult, SecretDoc, Stage, StoredVersion};
use serde_json::{json, Map, Value};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// The versions document format this crate reads and writes.
pub(crate) const FORMAT: u64 = 1;

/// How many stage-less versions (history) each key keeps in its versions document.
pub const HISTORY_LIMIT: usize = 3;

/// Id given to a value found at the key that rekey did not write (a secret that was
/// there before rekey, or one changed by hand).
pub(crate) const ADOPTED_ID: &str = "adopted";

/// One version.
#[derive(Clone, PartialEq, Debug)]
pub(crate) struct Version {
    pub id: String,
    pub stage: Option<Stage>,
    pub created: SystemTime,
    pub revoked: Option<SystemTime>,
    pub value: SecretJson,
}

/// Every version of one key, oldest first.
#[derive(Clone, PartialEq, Debug, Default)]
pub(crate) struct Versions {
    pub list: Vec<Version>,
}

/// What applications see at the key itself.
pub(crate) struct Live<'a> {
    pub value: &'a Value,
    /// When it was written, if the engine knows (KV v2 metadata).
    pub created: Option<SystemTime>,
}

/// One write.
pub(crate) enum Op<'a> {
    PutCurrent { id: &'a str, value: &'a Value },
    StagePending { id: &'a str, value: &'a Value },
    Promote { id: &'a str, previous_revoked: bool },
    MarkRevoked { id: &'a str },
    DiscardPending { id: &'a str },
}

/// Now, to the second (what the document keeps).
pub(crate) fn now() -> SystemTime {
    let secs = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    UNIX_EPOCH + Duration::from_secs(secs)
}

fn shape_error(place: &str, problem: &str) -> ProviderError {
    ProviderError::invalid_input(format!(
        "{place} is not a rekey versions document: {problem}; fix or delete it (it is rewritten from the key's \
         current value)"
    ))
}

fn parse_time(value: &Value, place: &str, field: &str) -> ProviderResult<SystemTime> {
    value
        .as_str()
        .and_then(|t| humantime::parse_rfc3339_weak(t).ok())
        .ok_or_else(|| shape_error(place, &format!("`{field}` is not an RFC 3339 timestamp")))
}

fn stage_name(stage: Stage) -> &'static str {
    stage.as_str()
}

fn time_text(t: SystemTime) -> String {
    humantime::format_rfc3339_seconds(t).to_string()
}

impl Versions {
    /// Parses a versions document read from `place` (a path, for messages).
    pub(crate) fn parse(value: &Value, place: &str) -> ProviderResult<Versions> {
        let Value::Object(top) = value else {
            return Err(shape_error(place, "it is not a JSON object"));
        };
        match top.get("format").and_then(Value::as_u64) {
            Some(FORMAT) => {}
            Some(other) => {
                return Err(ProviderError::invalid_input(format!(
                    "{place} is in versions format {other}, which this rekey does not know (it knows {FORMAT}); \
                     upgrade rekey"
                )))
            }
            None => return Err(shape_error(place, "`format` is missing or not a number")),
        }
        if let Some(unknown) = top
            .keys()
            .find(|k| !matches!(k.as_str(), "format" | "about" | "versions"))
        {
            return Err(shape_error(place, &format!("unknown field `{unknown}`")));
        }
        let Some(Value::Array(items)) = top.get("versions") else {
            return Err(shape_error(place, "`versions` is missing or not an array"));
        };
        let mut list = Vec::with_capacity(items.len());
        for (i, item) in items.iter().enumerate() {
            let at = |field: &str| format!("versions[{i}].{field}");
            let Value::Object(v) = item else {
                return Err(shape_error(place, &format!("versions[{i}] is not an object")));
            };
            if let Some(unknown) = v
                .keys()
                .find(|k| !matches!(k.as_str(), "id" | "stages" | "created" | "revoked" | "value"))
            {
                return Err(shape_error(place, &format!("unknown field `{}`", at(unknown))));
            }
            let id = v
                .get("id")
                .and_then(Value::as_str)
                .filter(|s| !s.is_empty())
                .ok_or_else(|| shape_error(place, &format!("`{}` is missing or not a string", at("id"))))?
                .to_owned();
            let stages = v
                .get("stages")
                .and_then(Value::as_array)
                .ok_or_else(|| shape_error(place, &format!("`{}` is missing or not an array", at("stages"))))?;
            let mut stage = None;
            for s in stages {
                let parsed = s.as_str().and_then(Stage::parse).ok_or_else(|| {
                    shape_error(
                        place,
                        &format!("`{}` holds something other than a stage name", at("stages")),
                    )
                })?;
                if stage.replace(parsed).is_some() {
                    return Err(shape_error(
                        place,
                        &format!("`{}` holds more than one stage", at("stages")),
                    ));
                }
            }
            let created = parse_time(v.get("created").unwrap_or(&Value::Null), place, &at("created"))?;
            let revoked = match v.get("revoked") {
                None | Some(Value::Null) => None,
                Some(t) => Some(parse_time(t, place, &at("revoked"))?),
            };
            let value = match v.get("value") {
                Some(obj @ Value::Object(_)) => SecretJson(obj.clone()),
                _ => {
                    return Err(shape_error(
                        place,
                        &format!("`{}` is missing or not a JSON object", at("value")),
                    ))
                }
            };
            if list.iter().any(|x: &Version| x.id == id) {
                return Err(shape_error(
                    place,
                    &format!("version id of `{}` appears twice", at("id")),
                ));
            }
            list.push(Version {
                id,
                stage,
                created,
                revoked,
                value,
            });
        }
        for stage in [Stage::Current, Stage::Pending, Stage::Previous] {
            if list.iter().filter(|v| v.stage == Some(stage)).count() > 1 {
                return Err(shape_error(place, &format!("more than one version is {stage}")));
            }
        }
        Ok(Versions { list })
    }

    /// The document to store, as a JSON value (holding secrets: zeroize it after use).
    pub(crate) fn to_value(&self, about: &str) -> SecretJson {
        let versions: Vec<Value> = self
            .list
            .iter()
            .map(|v| {
                let mut m = Map::new();
                m.insert("id".into(), json!(v.id));
                m.insert(
                    "stages".into(),
                    json!(v.stage.map(stage_name).into_iter().collect::<Vec<_>>()),
                );
                m.insert("created".into(), json!(time_text(v.created)));
                m.insert(
                    "revoked".into(),
                    v.revoked.map(time_text).map_or(Value::Null, Value::from),
                );
                m.insert("value".into(), v.value.get().clone());
                Value::Object(m)
            })
            .collect();
        SecretJson(json!({ "format": FORMAT, "about": about, "versions": versions }))
    }

    pub(crate) fn with_stage(&self, stage: Stage) -> Option<&Version> {
        self.list.iter().find(|v| v.stage == Some(stage))
    }

    fn index_of_stage(&self, stage: Stage) -> Option<usize> {
        self.list.iter().position(|v| v.stage == Some(stage))
    }

    fn index_of(&self, id: &str) -> Option<usize> {
        self.list.iter().position(|v| v.id == id)
    }

    /// An id for an adopted value not used by any version yet.
    fn adopted_id(&self) -> String {
        if self.index_of(ADOPTED_ID).is_none() {
            return ADOPTED_ID.to_owned();
        }
        (2..)
            .map(|n| format!("{ADOPTED_ID}-{n}"))
            .find(|id| self.index_of(id).is_none())
            .expect("an unused id exists")
    }

    /// The state as applications and the engine must see it, from the stored versions
    /// document (`doc`) and the value at the key itself (`live`).
    ///
    /// When they agree (the document's current value is the live value) that is the
    /// document. Otherwise a write was interrupted or someone changed the key by hand:
    /// - the document's current is not live yet (a promote or import stopped between its
    ///   two writes): it is reported as pending, so the engine resumes and promotes it
    ///   again, and the version whose value is live is reported as current;
    /// - the live value is in no version (changed by hand, or a secret that was there
    ///   before rekey): it is adopted as a new current version, and the document's
    ///   current keeps no stage.
    pub(crate) fn effective(doc: Option<&Versions>, live: Option<Live<'_>>) -> Versions {
        let mut state = doc.cloned().unwrap_or_default();
        let current = state.index_of_stage(Stage::Current);
        let consistent = match (&live, current) {
            (Some(live), Some(i)) => state.list[i].value.get() == live.value,
            (None, None) => true,
            _ => false,
        };
        if consistent {
            return state;
        }
        let has_pending = state.index_of_stage(Stage::Pending).is_some();
        let Some(live) = live else {
            // The document's current was never written to the key.
            let i = current.expect("inconsistent only with a current");
            state.list[i].stage = (!has_pending).then_some(Stage::Pending);
            return state;
        };
        // The newest version (other than a pending one) whose value is live.
        let matching = state
            .list
            .iter()
            .rposition(|v| v.stage != Some(Stage::Pending) && v.value.get() == live.value);
        match matching {
            Some(j) => {
                if let Some(i) = current {
                    state.list[i].stage = (!has_pending).then_some(Stage::Pending);
                }
                state.list[j].stage = Some(Stage::Current);
            }
            None => {
                if let Some(i) = current {
                    state.list[i].stage = None;
                }
                let id = state.adopted_id();
                state.list.push(Version {
                    id,
                    stage: Some(Stage::Current),
                    // Unknown age (KV v1): the epoch, so age-based policies find it due.
                    created: live.created.unwrap_or(UNIX_EPOCH),
                    revoked: None,
                    value: SecretJson(live.value.clone()),
                });
            }
        }
        state
    }

    /// Applies `op`, checking its precondition against this state. `Ok(true)` when the
    /// state changed, `Ok(false)` when the write had already taken effect.
    pub(crate) fn apply(&mut self, op: &Op<'_>, key: &str, now: SystemTime) -> ProviderResult<bool> {
        match *op {
            Op::PutCurrent { id, value } => {
                if let Some(p) = self.with_stage(Stage::Pending) {
                    return Err(ProviderError::conflict(format!(
                        "key {key:?}: cannot import version {id:?}: version {:?} is pending (an unfinished \
                         rotation; finish it first)",
                        p.id
                    )));
                }
                if let Some(i) = self.index_of(id) {
                    let v = &self.list[i];
                    if v.stage == Some(Stage::Current) && v.value.get() == value {
                        return Ok(false);
                    }
                    return Err(ProviderError::conflict(format!(
                        "key {key:?}: version {id:?} already exists with another value or stage"
                    )));
                }
                if let Some(i) = self.index_of_stage(Stage::Current) {
                    self.list[i].stage = None;
                }
                self.list.push(Version {
                    id: id.to_owned(),
                    stage: Some(Stage::Current),
                    created: now,
                    revoked: None,
                    value: SecretJson(value.clone()),
                });
                Ok(true)
            }
            Op::StagePending { id, value } => {
                if let Some(i) = self.index_of(id) {
                    let v = &self.list[i];
                    if v.stage == Some(Stage::Pending) && v.value.get() == value {
                        return Ok(false);
                    }
                    return Err(ProviderError::conflict(format!(
                        "key {key:?}: version {id:?} already exists with another value or stage"
                    )));
                }
                if let Some(p) = self.with_stage(Stage::Pending) {
                    return Err(ProviderError::conflict(format!(
                        "key {key:?}: cannot stage version {id:?}: version {:?} is already pending",
                        p.id
                    )));
                }
                self.list.push(Version {
                    id: id.to_owned(),
                    stage: Some(Stage::Pending),
                    created: now,
                    revoked: None,
                    value: SecretJson(value.clone()),
                });
                Ok(true)
            }
            Op::Promote { id, previous_revoked } => {
                let Some(i) = self.index_of(id) else {
                    return Err(ProviderError::conflict(format!(
                        "key {key:?}: cannot promote version {id:?}: no such version"
                    )));
                };
                match self.list[i].stage {
                    Some(Stage::Current) => return Ok(false),
                    Some(Stage::Pending) => {}
                    other => {
                        return Err(ProviderError::conflict(format!(
                            "key {key:?}: cannot promote version {id:?}: it is {}, not pending",
                            other.map_or("without a stage", stage_name)
                        )))
                    }
                }
                if let Some(p) = self.index_of_stage(Stage::Previous) {
                    self.list[p].stage = None;
                }
                if let Some(c) = self.index_of_stage(Stage::Current) {
                    self.list[c].stage = Some(Stage::Previous);
                    if previous_revoked && self.list[c].revoked.is_none() {
                        self.list[c].revoked = Some(now);
                    }
                }
                self.list[i].stage = Some(Stage::Current);
                Ok(true)
            }
            Op::MarkRevoked { id } => {
                let Some(i) = self.index_of(id) else {
                    return Err(ProviderError::not_found(format!(
                        "key {key:?}: cannot mark version {id:?} revoked: no such version"
                    )));
                };
                if self.list[i].revoked.is_some() {
                    return Ok(false);
                }
                self.list[i].revoked = Some(now);
                Ok(true)
            }
            Op::DiscardPending { id } => {
                let Some(p) = self.index_of_stage(Stage::Pending) else {
                    // Discarded or promoted already, or never staged.
                    return Ok(false);
                };
                if self.list[p].id != id {
                    return Err(ProviderError::conflict(format!(
                        "key {key:?}: cannot discard version {id:?}: the pending version is {:?}",
                        self.list[p].id
                    )));
                }
                self.list[p].stage = None;
                Ok(true)
            }
        }
    }

    /// Drops the oldest stage-less versions beyond [`HISTORY_LIMIT`].
    pub(crate) fn prune(&mut self) {
        let stageless = self.list.iter().filter(|v| v.stage.is_none()).count();
        let mut excess = stageless.saturating_sub(HISTORY_LIMIT);
        self.list.retain(|v| {
            if excess > 0 && v.stage.is_none() {
                excess -= 1;
                false
            } else {
                true
            }
        });
    }

    /// The engine's view.
    pub(crate) fn to_key_state(&self) -> ProviderResult<KeyState> {
        let mut versions = Vec::with_capacity(self.list.len());
        for v in &self.list {
            versions.push(StoredVersion {
                id: v.id.clone(),
                stages: v.stage.into_iter().collect(),
                created: v.created,
                revoked: v.revoked,
                doc: SecretDoc::from_value(v.value.get().clone())?,
            });
        }
        Ok(KeyState { versions })
    }
}

/// Zeroizes a JSON value built for a request once it is sent.
pub(crate) fn scrub(mut value: Value) {
    zeroize_value(&mut value);
}

#[cfg(test)]
mod tests {
    use super::*;
    use rekey_api::ErrorKind;

    fn val(pw: &str) -> Value {
        json!({ "username": "app", "password": pw })
    }

    fn state(entries: &[(&str, Option<Stage>, &str)]) -> Versions {
        Versions {
            list: entries
                .iter()
                .map(|(id, stage, pw)| Version {
                    id: (*id).to_owned(),
                    stage: *stage,
                    created: UNIX_EPOCH,
                    revoked: None,
                    value: SecretJson(val(pw)),
                })
                .collect(),
        }
    }

    fn stages(v: &Versions) -> Vec<(String, Option<Stage>)> {
        v.list.iter().map(|v| (v.id.clone(), v.stage)).collect()
    }

    #[test]
    fn round_trip() {
        let mut s = state(&[("v1", Some(Stage::Previous), "a"), ("v2", Some(Stage::Current), "b")]);
        s.list[0].revoked = Some(UNIX_EPOCH + Duration::from_secs(1_800_000_000));
        let text = s.to_value("about");
        assert_eq!(Versions::parse(text.get(), "p").unwrap(), s);
    }

    #[test]
    fn shape_errors_never_quote_values() {
        for bad in [
            json!("s3cr3t-top"),
            json!({"format": 1, "versions": "s3cr3t-versions"}),
            json!({"format": 1, "versions": [{"id": "v", "stages": [], "created": "s3cr3t-time", "value": {}}]}),
            json!({"format": 1, "versions": [{"id": "v", "stages": ["s3cr3t-stage"], "created": "2020-01-01T00:00:00Z", "value": {}}]}),
            json!({"format": 1, "versions": [{"id": "v", "stages": [], "created": "2020-01-01T00:00:00Z", "value": "s3cr3t-value"}]}),
            json!({"password": "s3cr3t-pw"}),
        ] {
            let e = Versions::parse(&bad, "secret/.rekey/k").unwrap_err();
            assert_eq!(e.kind(), ErrorKind::InvalidInput);
            assert!(!e.to_string().contains("s3cr3t"), "{e}");
            assert!(e.to_string().contains("secret/.rekey/k"), "{e}");
        }
    }

    #[test]
    fn consistent_state_is_the_document() {
        let doc = state(&[("v1", Some(Stage::Current), "a"), ("v2", Some(Stage::Pending), "b")]);
        let live = val("a");
        let eff = Versions::effective(
            Some(&doc),
            Some(Live {
                value: &live,
                created: None,
            }),
        );
        assert_eq!(eff, doc);
    }

    #[test]
    fn interrupted_promote_reads_as_pending() {
        // The document says v2 is current, but the key still holds v1's value.
        let doc = state(&[
            ("v0", None, "z"),
            ("v1", Some(Stage::Previous), "a"),
            ("v2", Some(Stage::Current), "b"),
        ]);
        let live = val("a");
        let mut eff = Versions::effective(
            Some(&doc),
            Some(Live {
                value: &live,
                created: None,
            }),
        );
        assert_eq!(
            stages(&eff),
            vec![
                ("v0".into(), None),
                ("v1".into(), Some(Stage::Current)),
                ("v2".into(), Some(Stage::Pending))
            ]
        );
        // Promoting again gives back exactly the stored document.
        assert!(eff
            .apply(
                &Op::Promote {
                    id: "v2",
                    previous_revoked: false
                },
                "k",
                UNIX_EPOCH
            )
            .unwrap());
        assert_eq!(eff, doc);
    }

    #[test]
    fn first_import_interrupted_reads_as_pending() {
        let doc = state(&[("v1", Some(Stage::Current), "a")]);
        let eff = Versions::effective(Some(&doc), None);
        assert_eq!(stages(&eff), vec![("v1".into(), Some(Stage::Pending))]);
    }

    #[test]
    fn hand_written_value_is_adopted() {
        let live = val("by-hand");
        let eff = Versions::effective(
            None,
            Some(Live {
                value: &live,
                created: None,
            }),
        );
        assert_eq!(stages(&eff), vec![(ADOPTED_ID.into(), Some(Stage::Current))]);
        assert_eq!(eff.list[0].created, UNIX_EPOCH);

        let doc = state(&[("adopted", None, "x"), ("v1", Some(Stage::Current), "a")]);
        let eff = Versions::effective(
            Some(&doc),
            Some(Live {
                value: &live,
                created: None,
            }),
        );
        assert_eq!(
            stages(&eff),
            vec![
                ("adopted".into(), None),
                ("v1".into(), None),
                ("adopted-2".into(), Some(Stage::Current))
            ]
        );
    }

    #[test]
    fn preconditions() {
        let now = UNIX_EPOCH;
        let mut s = Versions::default();
        let (a, b, c) = (val("a"), val("b"), val("c"));
        assert!(s.apply(&Op::PutCurrent { id: "v1", value: &a }, "k", now).unwrap());
        assert!(!s.apply(&Op::PutCurrent { id: "v1", value: &a }, "k", now).unwrap());
        assert!(s.apply(&Op::StagePending { id: "v2", value: &b }, "k", now).unwrap());
        assert!(!s.apply(&Op::StagePending { id: "v2", value: &b }, "k", now).unwrap());
        let kind = |r: ProviderResult<bool>| r.unwrap_err().kind();
        assert_eq!(
            kind(s.apply(&Op::StagePending { id: "v3", value: &c }, "k", now)),
            ErrorKind::Conflict
        );
        assert_eq!(
            kind(s.apply(&Op::StagePending { id: "v2", value: &c }, "k", now)),
            ErrorKind::Conflict
        );
        assert_eq!(
            kind(s.apply(&Op::PutCurrent { id: "v4", value: &c }, "k", now)),
            ErrorKind::Conflict
        );
        assert_eq!(
            kind(s.apply(
                &Op::Promote {
                    id: "v9",
                    previous_revoked: false
                },
                "k",
                now
            )),
            ErrorKind::Conflict
        );
        assert!(s
            .apply(
                &Op::Promote {
                    id: "v2",
                    previous_revoked: true
                },
                "k",
                now
            )
            .unwrap());
        assert!(!s
            .apply(
                &Op::Promote {
                    id: "v2",
                    previous_revoked: true
                },
                "k",
                now
            )
            .unwrap());
        assert!(s.with_stage(Stage::Previous).unwrap().revoked.is_some());
        assert_eq!(
            kind(s.apply(&Op::MarkRevoked { id: "v9" }, "k", now)),
            ErrorKind::NotFound
        );
        assert!(!s.apply(&Op::MarkRevoked { id: "v1" }, "k", now).unwrap());
    }

    #[test]
    fn discard_pending_keeps_the_version_without_stage() {
        let now = UNIX_EPOCH;
        let (a, b, c) = (val("a"), val("b"), val("c"));
        let mut s = Versions::default();
        s.apply(&Op::PutCurrent { id: "v1", value: &a }, "k", now).unwrap();
        assert!(!s.apply(&Op::DiscardPending { id: "v1" }, "k", now).unwrap());
        s.apply(&Op::StagePending { id: "v2", value: &b }, "k", now).unwrap();
        let before = s.clone();
        for other in ["v1", "v9"] {
            let e = s.apply(&Op::DiscardPending { id: other }, "k", now).unwrap_err();
            assert_eq!(e.kind(), ErrorKind::Conflict);
            assert!(e.to_string().contains("\"v2\""), "{e}");
        }
        assert_eq!(s, before, "refusals change nothing");
        assert!(s.apply(&Op::DiscardPending { id: "v2" }, "k", now).unwrap());
        assert!(!s.apply(&Op::DiscardPending { id: "v2" }, "k", now).unwrap());
        assert_eq!(
            stages(&s),
            vec![("v1".into(), Some(Stage::Current)), ("v2".into(), None)]
        );
        assert_eq!(s.list[1].value.get(), &b, "the value is kept");
        // The id stays taken.
        assert_eq!(
            s.apply(&Op::StagePending { id: "v2", value: &b }, "k", now)
                .unwrap_err()
                .kind(),
            ErrorKind::Conflict
        );
        s.apply(&Op::StagePending { id: "v3", value: &c }, "k", now).unwrap();
        s.apply(
            &Op::Promote {
                id: "v3",
                previous_revoked: false,
            },
            "k",
            now,
        )
        .unwrap();
        assert_eq!(
            stages(&s),
            vec![
                ("v1".into(), Some(Stage::Previous)),
                ("v2".into(), None),
                ("v3".into(), Some(Stage::Current))
            ]
        );
    }

    #[test]
    fn history_is_bounded() {
        let mut s = Versions::default();
        for i in 0..10 {
            let v = val(&format!("pw{i}"));
            s.apply(
                &Op::PutCurrent {
                    id: &format!("v{i}"),
                    value: &v,
                },
                "k",
                UNIX_EPOCH,
            )
            .unwrap();
            s.prune();
        }
        assert_eq!(s.list.len(), HISTORY_LIMIT + 1);
        assert_eq!(s.with_stage(Stage::Current).unwrap().id, "v9");
        assert_eq!(s.list[0].id, "v6");
    }
}
