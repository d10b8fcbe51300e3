//! Which configured credentials hold a leaked value: every candidate extracted from the
//! artefact is compared, in constant time, with the secret fields of every credential's
//! current, pending and previous versions.

use crate::leaked::Candidate;
use rekey_api::{KeyState, Stage, StoredVersion};
use std::time::SystemTime;

/// Document fields that describe where a secret is used rather than the secret itself.
/// Many credentials share them, so a leaked host name must not "match" every one.
/// (`access_key_id` is compared: it names exactly one credential.)
const NOT_SECRET_FIELDS: &[&str] = &[
    "engine",
    "host",
    "port",
    "username",
    "dbname",
    "user_host",
    "region",
    "role",
    "mount",
    "address",
    "sslmode",
    "masterarn",
    "secret_id_accessor",
];

/// One stored version holding a leaked value.
#[derive(Debug, Clone)]
pub struct Match {
    /// The credential.
    pub credential: String,
    /// The stage of the version that holds it.
    pub stage: Stage,
    /// The version id.
    pub version: String,
    /// When the version was proved dead, if it was.
    pub revoked: Option<SystemTime>,
    /// The candidate's fingerprint (never the value).
    pub fingerprint: String,
    /// The form the value was found in.
    pub origin: crate::leaked::Origin,
}

impl Match {
    /// A previous version already proved dead: not an emergency, once re-proved.
    pub fn already_dead(&self) -> bool {
        self.stage == Stage::Previous && self.revoked.is_some()
    }
}

/// The result of looking a leak up.
#[derive(Debug, Default)]
pub struct Lookup {
    /// Every stored version that holds a candidate.
    pub matches: Vec<Match>,
    /// Fingerprints of candidates that matched nothing.
    pub unmatched: Vec<String>,
    /// Credentials whose store could not be read (one line each).
    pub unreadable: Vec<String>,
}

impl Lookup {
    /// Names of the credentials with a match that is not already dead, in order, once each.
    pub fn live_credentials(&self) -> Vec<String> {
        let mut names: Vec<String> = Vec::new();
        for m in self.matches.iter().filter(|m| !m.already_dead()) {
            if !names.contains(&m.credential) {
                names.push(m.credential.clone());
            }
        }
        names
    }
}

/// Compares every candidate with one credential's stored versions; marks in `hit` the
/// candidates that matched.
pub fn match_state(credential: &str, state: &KeyState, candidates: &[Candidate], hit: &mut [bool]) -> Vec<Match> {
    let mut found = Vec::new();
    for stage in [Stage::Current, Stage::Pending, Stage::Previous] {
        let Some(version) = state.stage(stage) else {
            continue;
        };
        for (i, candidate) in candidates.iter().enumerate() {
            if holds(version, candidate) {
                hit[i] = true;
                found.push(Match {
                    credential: credential.to_owned(),
                    stage,
                    version: version.id.clone(),
                    revoked: version.revoked,
                    fingerprint: candidate.fingerprint(),
                    origin: candidate.origin,
                });
            }
        }
    }
    found
}

/// Whether one of the version's secret fields equals the candidate (constant time per
/// comparison; every field is compared).
fn holds(version: &StoredVersion, candidate: &Candidate) -> bool {
    let mut any = false;
    for field in version.doc.field_names() {
        if NOT_SECRET_FIELDS.contains(&field) {
            continue;
        }
        if let Some(value) = version.doc.get_str(field) {
            any |= candidate.matches(value);
        }
    }
    any
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::leaked::{extract, Source};
    use rekey_api::SecretDoc;

    fn state(password: &str) -> KeyState {
        let mut doc = SecretDoc::new();
        doc.set("engine", "postgres");
        doc.set("host", "db.internal");
        doc.set("username", "app");
        doc.set("password", password);
        KeyState {
            versions: vec![StoredVersion {
                id: "v1".into(),
                stages: vec![Stage::Current],
                created: SystemTime::now(),
                revoked: None,
                doc,
            }],
        }
    }

    #[test]
    fn a_dsn_in_an_env_file_matches_the_password_only() {
        let candidates = extract(
            "HOST=db.internal\nDATABASE_URL=postgresql://app:s3cr%40t-pw@db.internal:5432/x\n",
            Source::Text,
        )
        .unwrap();
        let mut hit = vec![false; candidates.len()];
        let found = match_state("orders-db", &state("s3cr@t-pw"), &candidates, &mut hit);
        assert_eq!(found.len(), 1, "{found:?}");
        assert_eq!(found[0].stage, Stage::Current);
        // The host name is a candidate too, but it is not a secret field: no match.
        let mut hit = vec![false; candidates.len()];
        assert!(match_state("other", &state("unrelated-pw"), &candidates, &mut hit).is_empty());
    }
}
