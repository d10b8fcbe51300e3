//! Rules every [`Store`] must follow. Each function takes a store and a key that does
//! not exist yet (use [`super::unique_name`]); it leaves the key behind for the caller
//! to clean up.
//!
//! Whether a rule applies is decided from the store's declared [`StoreCapabilities`] by
//! [`applicability`]; provider tests expand the rules with
//! [`crate::store_conformance_tests!`], which runs each through [`run_rule`].

use super::{random_password, unique_name};
use crate::capability::StoreCapabilities;
use crate::document::SecretDoc;
use crate::error::ErrorKind;
use crate::store::{Stage, Store};
use std::future::Future;
use std::sync::Arc;

/// Every store rule.
pub const RULES: &[&str] = &[
    "missing_key_is_not_found",
    "stage_promote_previous",
    "stage_is_idempotent_and_guarded",
    "pending_survives_reopen",
    "concurrent_writer_detected",
    "discard_pending_keeps_history",
    "discard_pending_is_idempotent",
    "discard_of_another_version_is_a_conflict",
    "discard_on_missing_key_is_not_found",
    "stage_after_discard",
    "read_many_matches_read",
    "read_for_rotation_matches_read",
];

/// Whether `rule` applies to a store declaring `caps`: `Err` carries the reason it does
/// not. Panics on a name that is not in [`RULES`].
pub fn applicability(rule: &str, caps: &StoreCapabilities) -> Result<(), &'static str> {
    match rule {
        "concurrent_writer_detected" if !caps.compare_and_set => {
            Err("writes are not conditional on the state read, so a concurrent writer \
             cannot be detected (capabilities: compare_and_set)")
        }
        r if RULES.contains(&r) => Ok(()),
        other => panic!("`{other}` is not a store conformance rule (see RULES)"),
    }
}

/// Panics, naming the rule and the reason, when `rule` does not apply to `store`.
fn require(rule: &str, store: &dyn Store) {
    if let Err(why) = applicability(rule, &store.capabilities()) {
        panic!(
            "conformance rule `{rule}` does not apply to {}: {why}. It is not counted as \
             passed: list it in the test's `skip = [{rule} => \"<reason>\"]` \
             (rekey_api::store_conformance_tests!)",
            store.describe()
        );
    }
}

/// Runs one rule, by name, on handles from `open` (each call opens a new handle on the
/// same backend: a reopen, or a second writer). This is what each test of
/// [`crate::store_conformance_tests!`] calls.
pub async fn run_rule<F, Fut>(rule: &str, open: &F)
where
    F: Fn() -> Fut,
    Fut: Future<Output = Arc<dyn Store>>,
{
    let store = open().await;
    require(rule, &*store);
    match rule {
        "missing_key_is_not_found" => {
            // An empty store, then one that holds other keys.
            missing_key_is_not_found(&*store, &unique_name("missing")).await;
            stage_promote_previous(&*store, &unique_name("other")).await;
            missing_key_is_not_found(&*store, &unique_name("missing")).await;
        }
        "stage_promote_previous" => stage_promote_previous(&*store, &unique_name("promote")).await,
        "stage_is_idempotent_and_guarded" => stage_is_idempotent_and_guarded(&*store, &unique_name("guarded")).await,
        "pending_survives_reopen" => {
            drop(store);
            pending_survives_reopen(open, &unique_name("durable")).await
        }
        "concurrent_writer_detected" => {
            let other = open().await;
            // Race repeatedly: one round could pass by luck of scheduling.
            for round in 0..20 {
                let key = unique_name(&format!("race{round}"));
                concurrent_writer_detected(store.clone(), other.clone(), &key).await;
            }
        }
        "discard_pending_keeps_history" => discard_pending_keeps_history(&*store, &unique_name("discard")).await,
        "discard_pending_is_idempotent" => discard_pending_is_idempotent(&*store, &unique_name("discard_twice")).await,
        "discard_of_another_version_is_a_conflict" => {
            discard_of_another_version_is_a_conflict(&*store, &unique_name("discard_other")).await
        }
        "discard_on_missing_key_is_not_found" => {
            // An empty store, then one that holds other keys.
            discard_on_missing_key_is_not_found(&*store, &unique_name("missing")).await;
            stage_after_discard(&*store, &unique_name("other")).await;
            discard_on_missing_key_is_not_found(&*store, &unique_name("missing")).await;
        }
        "stage_after_discard" => stage_after_discard(&*store, &unique_name("restage")).await,
        "read_many_matches_read" => {
            read_many_matches_read(&*store, &unique_name("many")).await;
            // A second handle (no cached state).
            let other = open().await;
            read_many_matches_read(&*other, &unique_name("many")).await;
        }
        "read_for_rotation_matches_read" => {
            read_for_rotation_matches_read(&*store, &unique_name("for-rotation")).await;
            let other = open().await;
            read_for_rotation_matches_read(&*other, &unique_name("for-rotation")).await;
        }
        other => panic!("`{other}` is not a store conformance rule (see RULES)"),
    }
}

fn doc(tag: &str) -> SecretDoc {
    let mut d = SecretDoc::new();
    d.set("engine", "conformance");
    d.set("username", tag);
    d.set_password(&random_password(24));
    d
}

/// Reading a key that does not exist is [`ErrorKind::NotFound`].
pub async fn missing_key_is_not_found(store: &dyn Store, key: &str) {
    match store.read(key).await {
        Ok(state) => assert!(
            state.versions.is_empty(),
            "a missing key must read as not found or empty"
        ),
        Err(e) => assert_eq!(
            e.kind(),
            ErrorKind::NotFound,
            "a missing key must be not_found, got: {e}"
        ),
    }
}

/// Stage, promote and previous: pending becomes current, current becomes previous, the
/// previous before that keeps no stage, and documents read back unchanged.
pub async fn stage_promote_previous(store: &dyn Store, key: &str) {
    let first = doc("first");
    store
        .put_current(key, "v1", &first)
        .await
        .unwrap_or_else(|e| panic!("put_current: {e}"));
    let state = store.read(key).await.unwrap_or_else(|e| panic!("read: {e}"));
    assert!(
        state.current().expect("current after put_current").doc == first,
        "current reads back unchanged"
    );
    assert!(state.pending().is_none(), "no pending after put_current");

    let second = doc("second");
    store
        .stage_pending(key, "v2", &second)
        .await
        .unwrap_or_else(|e| panic!("stage_pending: {e}"));
    let state = store.read(key).await.unwrap();
    assert_eq!(state.pending().expect("pending after stage").id, "v2");
    assert!(state.pending().unwrap().doc == second, "pending reads back unchanged");
    assert_eq!(state.current().expect("current kept while pending").id, "v1");

    store
        .promote(key, "v2", false)
        .await
        .unwrap_or_else(|e| panic!("promote: {e}"));
    let state = store.read(key).await.unwrap();
    assert_eq!(state.current().unwrap().id, "v2");
    assert_eq!(state.previous().expect("previous after promote").id, "v1");
    assert!(state.pending().is_none(), "pending gone after promote");
    assert!(
        state.previous().unwrap().revoked.is_none(),
        "previous not revoked unless asked"
    );

    store
        .promote(key, "v2", false)
        .await
        .unwrap_or_else(|e| panic!("a repeated promote must succeed: {e}"));
    let state = store.read(key).await.unwrap();
    assert_eq!(state.previous().unwrap().id, "v1", "a repeated promote changes nothing");

    store
        .mark_revoked(key, "v1")
        .await
        .unwrap_or_else(|e| panic!("mark_revoked: {e}"));
    store
        .mark_revoked(key, "v1")
        .await
        .unwrap_or_else(|e| panic!("a repeated mark_revoked must succeed: {e}"));
    assert!(store.read(key).await.unwrap().previous().unwrap().revoked.is_some());

    store.stage_pending(key, "v3", &doc("third")).await.unwrap();
    store.promote(key, "v3", true).await.unwrap();
    let state = store.read(key).await.unwrap();
    assert_eq!(state.current().unwrap().id, "v3");
    assert_eq!(state.previous().unwrap().id, "v2");
    assert!(
        state.previous().unwrap().revoked.is_some(),
        "promote(previous_revoked) records it"
    );
    assert!(
        state.version("v1").map(|v| v.stages.is_empty()).unwrap_or(true),
        "the old previous keeps no stage"
    );
    assert_eq!(
        state.versions.iter().filter(|v| v.has(Stage::Current)).count(),
        1,
        "exactly one current"
    );
}

/// Staging the same version twice is one version; staging another while one is
/// pending is a conflict; promoting a version that is not pending is a conflict.
pub async fn stage_is_idempotent_and_guarded(store: &dyn Store, key: &str) {
    store.put_current(key, "v1", &doc("first")).await.unwrap();
    let pending = doc("pending");
    store.stage_pending(key, "v2", &pending).await.unwrap();
    store
        .stage_pending(key, "v2", &pending)
        .await
        .unwrap_or_else(|e| panic!("a repeated stage must succeed: {e}"));
    let state = store.read(key).await.unwrap();
    assert_eq!(
        state.versions.iter().filter(|v| v.has(Stage::Pending)).count(),
        1,
        "one pending version"
    );

    let err = store
        .stage_pending(key, "v9", &doc("other"))
        .await
        .expect_err("a second pending must be refused");
    assert_eq!(
        err.kind(),
        ErrorKind::Conflict,
        "a second pending is a conflict, got: {err}"
    );
    let err = store
        .promote(key, "v9", false)
        .await
        .expect_err("promoting an unknown version must be refused");
    assert_eq!(
        err.kind(),
        ErrorKind::Conflict,
        "promoting a non-pending version is a conflict, got: {err}"
    );
    let err = store
        .put_current(key, "v8", &doc("import"))
        .await
        .expect_err("import over a pending rotation must be refused");
    assert_eq!(
        err.kind(),
        ErrorKind::Conflict,
        "import over a pending rotation is a conflict, got: {err}"
    );
    let state = store.read(key).await.unwrap();
    assert_eq!(state.pending().unwrap().id, "v2", "the refused writes changed nothing");
    assert!(state.pending().unwrap().doc == pending);
}

/// A pending version survives closing and reopening the store.
pub async fn pending_survives_reopen<F, Fut>(open: F, key: &str)
where
    F: Fn() -> Fut,
    Fut: Future<Output = Arc<dyn Store>>,
{
    let pending = doc("durable");
    {
        let store = open().await;
        store.put_current(key, "v1", &doc("first")).await.unwrap();
        store.stage_pending(key, "v2", &pending).await.unwrap();
    }
    let store = open().await;
    let state = store
        .read(key)
        .await
        .unwrap_or_else(|e| panic!("read after reopen: {e}"));
    let found = state.pending().expect("pending must survive a reopen");
    assert_eq!(found.id, "v2");
    assert!(found.doc == pending, "pending document survives unchanged");
}

/// Two handles on the same backend racing to stage different versions: exactly one
/// wins, the other gets a conflict, and the winner's document is what is stored.
///
/// Applies to stores with compare-and-set ([`applicability`]; [`run_rule`] refuses the
/// others). Called directly, it may also check two handles that share a lock in one
/// process, which holds without compare-and-set.
pub async fn concurrent_writer_detected(a: Arc<dyn Store>, b: Arc<dyn Store>, key: &str) {
    a.put_current(key, "v1", &doc("first")).await.unwrap();
    let da = doc("from-a");
    let db = doc("from-b");
    let (ra, rb) = {
        let (a2, b2, ka, kb) = (a.clone(), b.clone(), key.to_owned(), key.to_owned());
        let (da2, db2) = (da.clone(), db.clone());
        let fa = async move { a2.stage_pending(&ka, "va", &da2).await };
        let fb = async move { b2.stage_pending(&kb, "vb", &db2).await };
        join(fa, fb).await
    };
    let winners = [ra.is_ok(), rb.is_ok()].iter().filter(|ok| **ok).count();
    assert_eq!(winners, 1, "exactly one concurrent stage must win");
    let loser = match (&ra, &rb) {
        (Err(e), _) | (_, Err(e)) => e,
        _ => unreachable!("one of the two failed"),
    };
    assert_eq!(
        loser.kind(),
        ErrorKind::Conflict,
        "the loser must see a conflict, got: {loser}"
    );
    let state = b.read(key).await.unwrap();
    let pending = state.pending().expect("the winner's pending is stored");
    let expected = if ra.is_ok() { ("va", &da) } else { ("vb", &db) };
    assert_eq!(pending.id, expected.0);
    assert!(pending.doc == *expected.1, "the winner's document is not overwritten");
}

/// Whether `store` lists versions that hold no stage (history) in its reads: after an
/// import replaces the current version, is the replaced one still read back? Secrets
/// Manager, for one, reads only staged versions (AWS calls the others deprecated).
async fn lists_history(store: &dyn Store, key: &str) -> bool {
    store
        .put_current(key, "v0", &doc("zeroth"))
        .await
        .unwrap_or_else(|e| panic!("put_current: {e}"));
    store
        .put_current(key, "v1", &doc("first"))
        .await
        .unwrap_or_else(|e| panic!("a second put_current: {e}"));
    let state = store.read(key).await.unwrap_or_else(|e| panic!("read: {e}"));
    match state.version("v0") {
        Some(v) => {
            assert!(v.stages.is_empty(), "the version an import replaced keeps no stage");
            true
        }
        None => false,
    }
}

/// Discarding the pending version (`rotate --abandon-pending`) takes its stage away and
/// changes nothing else: the key has no pending version, current and its document are
/// unchanged, and the discarded version stays in the key's history with no stage and its
/// document unchanged. A store that lists history in its reads (it shows the version an
/// import replaced) must list the discarded version too; one that reads staged versions
/// only may leave it out, but must never show it with a stage.
pub async fn discard_pending_keeps_history(store: &dyn Store, key: &str) {
    let history = lists_history(store, key).await;
    let current = store
        .read(key)
        .await
        .unwrap()
        .current()
        .expect("current after put_current")
        .doc
        .clone();
    let pending = doc("abandoned");
    store
        .stage_pending(key, "v2", &pending)
        .await
        .unwrap_or_else(|e| panic!("stage_pending: {e}"));
    store
        .discard_pending(key, "v2")
        .await
        .unwrap_or_else(|e| panic!("discard_pending: {e}"));
    let state = store
        .read(key)
        .await
        .unwrap_or_else(|e| panic!("read after discard: {e}"));
    assert!(state.pending().is_none(), "no pending version after discard_pending");
    let found = state.current().expect("current kept after discard_pending");
    assert_eq!(found.id, "v1", "current unchanged by discard_pending");
    assert!(found.doc == current, "current document unchanged by discard_pending");
    assert_eq!(
        state.versions.iter().filter(|v| v.has(Stage::Current)).count(),
        1,
        "exactly one current"
    );
    match state.version("v2") {
        Some(v) => {
            assert!(
                v.stages.is_empty(),
                "the discarded version keeps no stage, has {:?}",
                v.stages
            );
            assert!(v.doc == pending, "the discarded version's document is kept unchanged");
        }
        None => assert!(
            !history,
            "this store lists history, so the discarded version must stay in it"
        ),
    }
}

/// Discarding is idempotent: discarding the same version again succeeds without a change,
/// and so does discarding a version that was promoted meanwhile (it is no longer pending:
/// discard never takes current away).
pub async fn discard_pending_is_idempotent(store: &dyn Store, key: &str) {
    store.put_current(key, "v1", &doc("first")).await.unwrap();
    store.stage_pending(key, "v2", &doc("abandoned")).await.unwrap();
    store
        .discard_pending(key, "v2")
        .await
        .unwrap_or_else(|e| panic!("discard_pending: {e}"));
    store
        .discard_pending(key, "v2")
        .await
        .unwrap_or_else(|e| panic!("a repeated discard_pending must succeed: {e}"));
    let state = store.read(key).await.unwrap();
    assert!(state.pending().is_none(), "no pending after a repeated discard");
    assert_eq!(state.current().expect("current kept").id, "v1");
    if let Some(v) = state.version("v2") {
        assert!(
            v.stages.is_empty(),
            "a repeated discard leaves the version without stage"
        );
    }

    let promoted = doc("promoted");
    store.stage_pending(key, "v3", &promoted).await.unwrap();
    store.promote(key, "v3", false).await.unwrap();
    store
        .discard_pending(key, "v3")
        .await
        .unwrap_or_else(|e| panic!("discarding a version promoted meanwhile must succeed: {e}"));
    let state = store.read(key).await.unwrap();
    let current = state.current().expect("current kept");
    assert_eq!(current.id, "v3", "discard_pending never takes current away");
    assert!(current.doc == promoted);
    assert_eq!(state.previous().expect("previous kept").id, "v1");
    assert!(state.pending().is_none());
}

/// Discarding a version that is not the pending one is [`ErrorKind::Conflict`] while
/// another version is pending (an unknown id, or the current version's), and changes
/// nothing: the pending version stays pending with its document.
pub async fn discard_of_another_version_is_a_conflict(store: &dyn Store, key: &str) {
    store.put_current(key, "v1", &doc("first")).await.unwrap();
    let pending = doc("pending");
    store.stage_pending(key, "v2", &pending).await.unwrap();
    for other in ["v9", "v1"] {
        let err = store
            .discard_pending(key, other)
            .await
            .expect_err("discarding a version that is not the pending one must be refused");
        assert_eq!(
            err.kind(),
            ErrorKind::Conflict,
            "discarding {other} while v2 is pending is a conflict, got: {err}"
        );
    }
    let state = store.read(key).await.unwrap();
    let found = state.pending().expect("the refused discards left the pending version");
    assert_eq!(found.id, "v2");
    assert!(found.doc == pending, "the refused discards changed nothing");
    assert_eq!(state.current().unwrap().id, "v1");
}

/// Discarding on a key that does not exist is [`ErrorKind::NotFound`], and creates nothing.
pub async fn discard_on_missing_key_is_not_found(store: &dyn Store, key: &str) {
    let err = store
        .discard_pending(key, "v1")
        .await
        .expect_err("discarding on a missing key must be refused");
    assert_eq!(
        err.kind(),
        ErrorKind::NotFound,
        "discarding on a missing key is not_found, got: {err}"
    );
    missing_key_is_not_found(store, key).await;
}

/// After a discard a new rotation can start: a new version can be staged and promoted,
/// and the old current (not the discarded version) becomes previous.
pub async fn stage_after_discard(store: &dyn Store, key: &str) {
    store.put_current(key, "v1", &doc("first")).await.unwrap();
    store.stage_pending(key, "v2", &doc("abandoned")).await.unwrap();
    store.discard_pending(key, "v2").await.unwrap();
    let next = doc("next");
    store
        .stage_pending(key, "v3", &next)
        .await
        .unwrap_or_else(|e| panic!("staging after a discard must succeed: {e}"));
    let state = store.read(key).await.unwrap();
    let found = state.pending().expect("pending after staging again");
    assert_eq!(found.id, "v3");
    assert!(found.doc == next);
    store
        .promote(key, "v3", false)
        .await
        .unwrap_or_else(|e| panic!("promoting after a discard: {e}"));
    let state = store.read(key).await.unwrap();
    assert_eq!(state.current().unwrap().id, "v3");
    assert_eq!(
        state.previous().expect("previous after promote").id,
        "v1",
        "the old current becomes previous, not the discarded version"
    );
    assert!(state.pending().is_none());
    if let Some(v) = state.version("v2") {
        assert!(v.stages.is_empty(), "the discarded version still keeps no stage");
    }
}

async fn join<A: Future, B: Future>(a: A, b: B) -> (A::Output, B::Output) {
    use std::pin::pin;
    use std::task::Poll;
    let mut a = pin!(a);
    let mut b = pin!(b);
    let mut ra = None;
    let mut rb = None;
    std::future::poll_fn(|cx| {
        if ra.is_none() {
            if let Poll::Ready(v) = a.as_mut().poll(cx) {
                ra = Some(v);
            }
        }
        if rb.is_none() {
            if let Poll::Ready(v) = b.as_mut().poll(cx) {
                rb = Some(v);
            }
        }
        if ra.is_some() && rb.is_some() {
            Poll::Ready(())
        } else {
            Poll::Pending
        }
    })
    .await;
    (ra.unwrap(), rb.unwrap())
}

/// `read_for_rotation` answers what `read` answers, except that it may leave out a
/// revoked version that holds only the previous stage: the same current and pending
/// versions (ids and values), and every version it returns is as `read` returns it.
pub async fn read_for_rotation_matches_read(store: &dyn Store, key: &str) {
    store.put_current(key, "v1", &doc("first")).await.expect("put_current");
    store.stage_pending(key, "v2", &doc("second")).await.expect("stage v2");
    store.promote(key, "v2", true).await.expect("promote v2");
    store.stage_pending(key, "v3", &doc("third")).await.expect("stage v3");
    store.promote(key, "v3", true).await.expect("promote v3");
    store.stage_pending(key, "v4", &doc("fourth")).await.expect("stage v4");
    let full = store.read(key).await.expect("read");
    let lean = store.read_for_rotation(key).await.expect("read_for_rotation");
    assert_eq!(
        full.previous().map(|v| v.revoked.is_some()),
        Some(true),
        "v2 was recorded revoked"
    );
    for stage in [Stage::Current, Stage::Pending] {
        let (a, b) = (
            full.stage(stage).expect("in read"),
            lean.stage(stage).expect("in read_for_rotation"),
        );
        assert_eq!(a.id, b.id, "{stage}");
        assert!(a.doc == b.doc, "{stage}: the same value");
    }
    for version in &lean.versions {
        let same = full
            .version(&version.id)
            .expect("a version read_for_rotation returns exists");
        assert_eq!(same.stages, version.stages, "{}", version.id);
        assert_eq!(same.revoked, version.revoked, "{}", version.id);
        assert!(same.doc == version.doc, "{}: the same value", version.id);
    }
    for version in &full.versions {
        if lean.version(&version.id).is_none() {
            assert!(
                version.revoked.is_some() && version.stages == [Stage::Previous],
                "only a revoked previous version may be left out, not {} {:?}",
                version.id,
                version.stages
            );
        }
    }
    let missing = store.read_for_rotation(&format!("{key}-missing")).await.map(|_| ());
    assert_eq!(missing.unwrap_err().kind(), ErrorKind::NotFound);
}

/// `read_many` answers, slot by slot, what `read` answers: the same versions for keys
/// that exist, not found for one that does not.
pub async fn read_many_matches_read(store: &dyn Store, prefix: &str) {
    let keys: Vec<String> = (0..3).map(|i| format!("{prefix}-{i}")).collect();
    for (i, key) in keys.iter().enumerate() {
        let mut doc = SecretDoc::new();
        doc.set("password", format!("read-many-{i}-value"));
        store
            .put_current(key, &format!("v{i}"), &doc)
            .await
            .expect("put_current");
    }
    let mut asked = keys.clone();
    asked.insert(1, format!("{prefix}-missing"));
    let many = store.read_many(&asked).await;
    assert_eq!(many.len(), asked.len(), "one answer per key");
    for (key, answer) in asked.iter().zip(&many) {
        match store.read(key).await {
            Ok(one) => {
                let many_state = answer.as_ref().expect("read_many agrees that the key exists");
                assert_eq!(
                    one.current().map(|v| v.id.clone()),
                    many_state.current().map(|v| v.id.clone())
                );
                assert!(one
                    .current()
                    .unwrap()
                    .doc
                    .same_password(&many_state.current().unwrap().doc));
            }
            Err(e) => {
                assert_eq!(e.kind(), ErrorKind::NotFound, "{e}");
                assert_eq!(answer.as_ref().map(|_| ()).unwrap_err().kind(), ErrorKind::NotFound);
            }
        }
    }
}
