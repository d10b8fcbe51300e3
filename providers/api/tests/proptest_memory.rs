//! Property tests of [`MemoryStore`]: random sequences of store operations, on a small
//! pool of keys and version ids, checked step by step against a simple model of what
//! the [`Store`] trait documents.
//!
//! After every operation:
//!
//! - the outcome (`Ok`, or the error's kind) is the model's: conflicts exactly when the
//!   trait says (`put_current` while a rotation is pending or on an id already used;
//!   `stage_pending` while another version is pending or on an id already used;
//!   `promote` of a version neither pending nor current; `discard_pending` of a version
//!   other than the pending one), `NotFound` for `mark_revoked` of an unknown version
//!   and `discard_pending` on an unknown key;
//! - every key reads as the model says: versions in order, each one's stage, whether it
//!   is revoked and its document; a missing key is `NotFound`;
//! - at most one version holds each of current, pending and previous, and none holds two
//!   stages;
//! - a refused operation changed nothing at all (timestamps included);
//! - a successful operation repeated at once succeeds and changes nothing (idempotency);
//! - what an operation did not touch kept its creation time, and a revocation time once
//!   set never changes.
//!
//! Deterministic: a fixed seed, no failure files. `PROPTEST_CASES` overrides the count.

use proptest::prelude::*;
use proptest::test_runner::{Config as ProptestConfig, RngSeed};
use rekey_api::testing::MemoryStore;
use rekey_api::{ErrorKind, KeyState, ProviderResult, SecretDoc, Stage, Store};
use std::collections::BTreeMap;
use std::time::SystemTime;

const KEYS: &[&str] = &["alpha", "beta"];
const IDS: &[&str] = &["v1", "v2", "v3", "v4", "v5", "v6"];
const DOCS: usize = 3;

/// Which version an operation names.
#[derive(Debug, Clone, Copy)]
enum Pick {
    /// A fixed id from [`IDS`].
    Id(usize),
    /// Whatever the model says holds this stage now (the first id when none does).
    Holding(Stage),
}

#[derive(Debug, Clone, Copy)]
enum Op {
    PutCurrent {
        key: usize,
        id: usize,
        doc: usize,
    },
    StagePending {
        key: usize,
        id: usize,
        doc: usize,
    },
    Promote {
        key: usize,
        pick: Pick,
        previous_revoked: bool,
    },
    MarkRevoked {
        key: usize,
        pick: Pick,
    },
    DiscardPending {
        key: usize,
        pick: Pick,
    },
}

fn pick() -> impl Strategy<Value = Pick> {
    prop_oneof![
        2 => (0..IDS.len()).prop_map(Pick::Id),
        2 => Just(Pick::Holding(Stage::Pending)),
        1 => Just(Pick::Holding(Stage::Current)),
        1 => Just(Pick::Holding(Stage::Previous)),
    ]
}

fn op() -> impl Strategy<Value = Op> {
    let key = 0..KEYS.len();
    let id = 0..IDS.len();
    let doc = 0..DOCS;
    prop_oneof![
        2 => (key.clone(), id.clone(), doc.clone()).prop_map(|(key, id, doc)| Op::PutCurrent { key, id, doc }),
        3 => (key.clone(), id, doc).prop_map(|(key, id, doc)| Op::StagePending { key, id, doc }),
        3 => (key.clone(), pick(), any::<bool>())
            .prop_map(|(key, pick, previous_revoked)| Op::Promote { key, pick, previous_revoked }),
        2 => (key.clone(), pick()).prop_map(|(key, pick)| Op::MarkRevoked { key, pick }),
        1 => (key, pick()).prop_map(|(key, pick)| Op::DiscardPending { key, pick }),
    ]
}

fn doc(n: usize) -> SecretDoc {
    let mut d = SecretDoc::new();
    d.set("username", "app");
    d.set("password", format!("pw-{n}"));
    d
}

/// One version as the model knows it.
#[derive(Debug, Clone, PartialEq)]
struct Version {
    id: String,
    stage: Option<Stage>,
    revoked: bool,
    doc: usize,
}

/// What the [`Store`] trait documents, on plain data.
#[derive(Debug, Default)]
struct Model {
    keys: BTreeMap<String, Vec<Version>>,
}

impl Model {
    fn holding(&self, key: &str, stage: Stage) -> Option<&Version> {
        self.keys.get(key)?.iter().find(|v| v.stage == Some(stage))
    }

    fn resolve(&self, key: &str, pick: Pick) -> String {
        match pick {
            Pick::Id(i) => IDS[i].to_owned(),
            Pick::Holding(stage) => self.holding(key, stage).map_or(IDS[0].to_owned(), |v| v.id.clone()),
        }
    }

    fn put_current(&mut self, key: &str, id: &str, doc: usize) -> Result<(), ErrorKind> {
        let versions = self.keys.entry(key.to_owned()).or_default();
        if let Some(existing) = versions.iter().find(|v| v.id == id) {
            return if existing.stage == Some(Stage::Current) && existing.doc == doc {
                Ok(())
            } else {
                Err(ErrorKind::Conflict)
            };
        }
        if versions.iter().any(|v| v.stage == Some(Stage::Pending)) {
            return Err(ErrorKind::Conflict);
        }
        for v in versions.iter_mut().filter(|v| v.stage == Some(Stage::Current)) {
            v.stage = None;
        }
        versions.push(Version {
            id: id.to_owned(),
            stage: Some(Stage::Current),
            revoked: false,
            doc,
        });
        Ok(())
    }

    fn stage_pending(&mut self, key: &str, id: &str, doc: usize) -> Result<(), ErrorKind> {
        let versions = self.keys.entry(key.to_owned()).or_default();
        if let Some(existing) = versions.iter().find(|v| v.id == id) {
            return if existing.stage == Some(Stage::Pending) && existing.doc == doc {
                Ok(())
            } else {
                Err(ErrorKind::Conflict)
            };
        }
        if versions.iter().any(|v| v.stage == Some(Stage::Pending)) {
            return Err(ErrorKind::Conflict);
        }
        versions.push(Version {
            id: id.to_owned(),
            stage: Some(Stage::Pending),
            revoked: false,
            doc,
        });
        Ok(())
    }

    fn promote(&mut self, key: &str, id: &str, previous_revoked: bool) -> Result<(), ErrorKind> {
        let Some(versions) = self.keys.get_mut(key) else {
            return Err(ErrorKind::Conflict);
        };
        let Some(index) = versions.iter().position(|v| v.id == id) else {
            return Err(ErrorKind::Conflict);
        };
        match versions[index].stage {
            Some(Stage::Current) => return Ok(()),
            Some(Stage::Pending) => {}
            _ => return Err(ErrorKind::Conflict),
        }
        for (i, v) in versions.iter_mut().enumerate() {
            if i == index {
                continue;
            }
            match v.stage {
                // The old previous keeps no stage.
                Some(Stage::Previous) => v.stage = None,
                // The old current becomes previous.
                Some(Stage::Current) => {
                    v.stage = Some(Stage::Previous);
                    v.revoked |= previous_revoked;
                }
                _ => {}
            }
        }
        versions[index].stage = Some(Stage::Current);
        Ok(())
    }

    fn mark_revoked(&mut self, key: &str, id: &str) -> Result<(), ErrorKind> {
        let version = self
            .keys
            .get_mut(key)
            .and_then(|versions| versions.iter_mut().find(|v| v.id == id));
        match version {
            Some(v) => {
                v.revoked = true;
                Ok(())
            }
            None => Err(ErrorKind::NotFound),
        }
    }

    fn discard_pending(&mut self, key: &str, id: &str) -> Result<(), ErrorKind> {
        let Some(versions) = self.keys.get_mut(key) else {
            return Err(ErrorKind::NotFound);
        };
        match versions.iter_mut().find(|v| v.stage == Some(Stage::Pending)) {
            Some(pending) if pending.id == id => {
                pending.stage = None;
                Ok(())
            }
            Some(_) => Err(ErrorKind::Conflict),
            None => Ok(()),
        }
    }

    /// Applies `op` (already resolved to an id); a refused op leaves the model as it was.
    fn apply(&mut self, step: &Step) -> Result<(), ErrorKind> {
        let before = self.keys.clone();
        let outcome = match step.op {
            Op::PutCurrent { doc, .. } => self.put_current(&step.key, &step.id, doc),
            Op::StagePending { doc, .. } => self.stage_pending(&step.key, &step.id, doc),
            Op::Promote { previous_revoked, .. } => self.promote(&step.key, &step.id, previous_revoked),
            Op::MarkRevoked { .. } => self.mark_revoked(&step.key, &step.id),
            Op::DiscardPending { .. } => self.discard_pending(&step.key, &step.id),
        };
        if outcome.is_err() {
            self.keys = before;
        }
        // A key is created only by a write that succeeded.
        self.keys.retain(|_, versions| !versions.is_empty());
        outcome
    }
}

/// An operation with its key and version id resolved against the model.
#[derive(Debug)]
struct Step {
    op: Op,
    key: String,
    id: String,
}

impl Step {
    fn new(op: Op, model: &Model) -> Step {
        let (key, id) = match op {
            Op::PutCurrent { key, id, .. } | Op::StagePending { key, id, .. } => (KEYS[key], IDS[id].to_owned()),
            Op::Promote { key, pick, .. } | Op::MarkRevoked { key, pick } | Op::DiscardPending { key, pick } => {
                (KEYS[key], model.resolve(KEYS[key], pick))
            }
        };
        Step {
            op,
            key: key.to_owned(),
            id,
        }
    }

    async fn run(&self, store: &dyn Store) -> ProviderResult<()> {
        let (key, id) = (self.key.as_str(), self.id.as_str());
        match self.op {
            Op::PutCurrent { doc: d, .. } => store.put_current(key, id, &doc(d)).await,
            Op::StagePending { doc: d, .. } => store.stage_pending(key, id, &doc(d)).await,
            Op::Promote { previous_revoked, .. } => store.promote(key, id, previous_revoked).await,
            Op::MarkRevoked { .. } => store.mark_revoked(key, id).await,
            Op::DiscardPending { .. } => store.discard_pending(key, id).await,
        }
    }
}

/// One version exactly as read, for "nothing changed" comparisons.
#[derive(Debug, Clone, PartialEq)]
struct Exact {
    id: String,
    stages: Vec<Stage>,
    created: SystemTime,
    revoked: Option<SystemTime>,
    doc: SecretDoc,
}

type Snapshot = BTreeMap<String, Vec<Exact>>;

async fn snapshot(store: &dyn Store) -> Result<Snapshot, TestCaseError> {
    let mut out = Snapshot::new();
    for key in KEYS {
        match store.read(key).await {
            Ok(state) => {
                check_invariants(key, &state)?;
                out.insert((*key).to_owned(), exact(&state));
            }
            Err(e) => prop_assert_eq!(e.kind(), ErrorKind::NotFound, "read {}: {}", key, e),
        }
    }
    Ok(out)
}

fn exact(state: &KeyState) -> Vec<Exact> {
    state
        .versions
        .iter()
        .map(|v| Exact {
            id: v.id.clone(),
            stages: v.stages.clone(),
            created: v.created,
            revoked: v.revoked,
            doc: v.doc.clone(),
        })
        .collect()
}

fn check_invariants(key: &str, state: &KeyState) -> Result<(), TestCaseError> {
    for stage in [Stage::Current, Stage::Pending, Stage::Previous] {
        let holders = state.versions.iter().filter(|v| v.has(stage)).count();
        prop_assert!(holders <= 1, "key {}: {} versions hold {}", key, holders, stage);
    }
    for v in &state.versions {
        prop_assert!(
            v.stages.len() <= 1,
            "key {}: version {} holds {:?}",
            key,
            v.id,
            v.stages
        );
    }
    Ok(())
}

/// The store's state is the model's: same keys, same versions in order, same stages,
/// revocations and documents.
fn check_model(model: &Model, read: &Snapshot) -> Result<(), TestCaseError> {
    let keys: Vec<&String> = read.keys().collect();
    let expected: Vec<&String> = model.keys.keys().collect();
    prop_assert_eq!(keys, expected, "keys that exist");
    for (key, versions) in &model.keys {
        let got: Vec<Version> = read[key]
            .iter()
            .map(|v| Version {
                id: v.id.clone(),
                stage: v.stages.first().copied(),
                revoked: v.revoked.is_some(),
                doc: (0..DOCS).find(|&n| doc(n) == v.doc).unwrap_or(usize::MAX),
            })
            .collect();
        prop_assert_eq!(&got, versions, "key {}", key);
    }
    Ok(())
}

/// What an operation did not touch kept its creation time; a revocation time, once set,
/// never changes.
fn check_stable(before: &Snapshot, after: &Snapshot) -> Result<(), TestCaseError> {
    for (key, versions) in before {
        for old in versions {
            let Some(new) = after.get(key).and_then(|vs| vs.iter().find(|v| v.id == old.id)) else {
                continue;
            };
            prop_assert_eq!(
                new.created,
                old.created,
                "key {} version {}: created changed",
                key,
                &old.id
            );
            if old.revoked.is_some() {
                prop_assert_eq!(
                    new.revoked,
                    old.revoked,
                    "key {} version {}: revoked changed",
                    key,
                    &old.id
                );
            }
        }
    }
    Ok(())
}

/// Runs `ops` on `store` and checks every step against the model.
async fn run_sequence(store: &dyn Store, ops: &[Op]) -> Result<Model, TestCaseError> {
    let mut model = Model::default();
    for op in ops {
        let step = Step::new(*op, &model);
        let before = snapshot(store).await?;
        let expected = model.apply(&step);
        let outcome = step.run(store).await;
        prop_assert_eq!(
            outcome.as_ref().map(|_| ()).map_err(|e| e.kind()),
            expected,
            "{:?}: {:?}",
            step,
            outcome.as_ref().err().map(|e| e.to_string())
        );
        let after = snapshot(store).await?;
        check_model(&model, &after)?;
        check_stable(&before, &after)?;
        if outcome.is_err() {
            prop_assert_eq!(&after, &before, "{:?} was refused but changed the store", step);
            continue;
        }
        let again = step.run(store).await;
        prop_assert!(
            again.is_ok(),
            "{:?} repeated: {:?}",
            step,
            again.err().map(|e| e.to_string())
        );
        let repeated = snapshot(store).await?;
        prop_assert_eq!(&repeated, &after, "{:?} repeated changed the store", step);
    }
    Ok(model)
}

/// `cases` cases (or `PROPTEST_CASES`), a fixed seed, no failure files.
fn config(cases: u32) -> ProptestConfig {
    let cases = std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(cases);
    ProptestConfig {
        cases,
        failure_persistence: None,
        rng_seed: RngSeed::Fixed(0x5eed_0013),
        ..ProptestConfig::default()
    }
}

fn block_on<T>(future: impl std::future::Future<Output = T>) -> T {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime")
        .block_on(future)
}

proptest! {
    #![proptest_config(config(512))]

    /// Random operation sequences against the model.
    #[test]
    fn memory_store_follows_the_model(ops in prop::collection::vec(op(), 1..48)) {
        let store = MemoryStore::new();
        block_on(run_sequence(&store, &ops))?;
    }

    /// A clone is the same store reopened: it reads exactly what the original reads.
    #[test]
    fn a_clone_reads_the_same_state(ops in prop::collection::vec(op(), 1..24)) {
        let store = MemoryStore::new();
        block_on(async {
            let model = run_sequence(&store, &ops).await?;
            let reopened = store.clone();
            let original = snapshot(&store).await?;
            let again = snapshot(&reopened).await?;
            check_model(&model, &again)?;
            prop_assert_eq!(again, original);
            Ok(())
        })?;
    }
}
