//! The macros that expand the conformance suites into one test per rule.
//!
//! ```ignore
//! rekey_api::target_conformance_tests! {
//!     // An async expression giving (a guard kept until the test ends, the target, a
//!     // document that works against it now).
//!     setup = async { let role = TestRole::new(pg, "conf"); let t = target(&role); (role, t, role.doc()) },
//!     // Optional: called after each rule that ran, with (&guard, &target, &before, &after).
//!     check = |_role, t: &PostgresTarget, _before, after| { /* ... */ },
//!     // Rules that do not apply to this backend, with the reason (reported as ignored).
//!     skip = [dual_holds_both_until_revoke => "a PostgreSQL role holds one password"],
//! }
//!
//! rekey_api::store_conformance_tests! {
//!     // An async expression giving (a guard, `open`): each `open()` call returns a new
//!     // `Arc<dyn Store>` handle on the same backend (a reopen, or a second writer).
//!     setup = async { let dir = tempdir(); let path = ...; (dir, move || ...) },
//!     skip = [concurrent_writer_detected => "KV v1 has no check-and-set"],
//! }
//! ```
//!
//! A rule listed in `skip` becomes `#[ignore = "not applicable: <reason>"]`; forced
//! with `--ignored`, it passes when the backend's capabilities say the rule does not
//! apply and runs the rule otherwise. A rule that is not listed but finds at run time
//! that it does not apply panics, telling the author to list it, so nothing is counted
//! as passed without running. A `skip` entry that names no rule does not compile.

/// Expands to one `#[tokio::test]` per target conformance rule, each on a fresh
/// fixture from `setup`. See the [module documentation](crate::conformance) and
/// `conformance/macros.rs` for the syntax.
#[macro_export]
macro_rules! target_conformance_tests {
    (
        setup = $setup:expr
        $(, check = $check:expr)?
        $(, skip = [$($skip:ident => $why:literal),* $(,)?])?
        $(,)?
    ) => {
        const _: () = {
            $($(#[allow(unused_imports)] use $crate::conformance::target::$skip as _;)*)?
        };
        $crate::__rekey_conformance_rule!(__rekey_target_conformance_emit [$setup; $($check)?] capabilities_are_consistent [$($($skip => $why),*)?]);
        $crate::__rekey_conformance_rule!(__rekey_target_conformance_emit [$setup; $($check)?] current_works [$($($skip => $why),*)?]);
        $crate::__rekey_conformance_rule!(__rekey_target_conformance_emit [$setup; $($check)?] wrong_secret_is_auth_rejected [$($($skip => $why),*)?]);
        $crate::__rekey_conformance_rule!(__rekey_target_conformance_emit [$setup; $($check)?] apply_then_verify [$($($skip => $why),*)?]);
        $crate::__rekey_conformance_rule!(__rekey_target_conformance_emit [$setup; $($check)?] prepare_uses_the_declared_secret [$($($skip => $why),*)?]);
        $crate::__rekey_conformance_rule!(__rekey_target_conformance_emit [$setup; $($check)?] apply_is_idempotent [$($($skip => $why),*)?]);
        $crate::__rekey_conformance_rule!(__rekey_target_conformance_emit [$setup; $($check)?] revoked_secret_is_rejected [$($($skip => $why),*)?]);
        $crate::__rekey_conformance_rule!(__rekey_target_conformance_emit [$setup; $($check)?] dual_holds_both_until_revoke [$($($skip => $why),*)?]);
        $crate::__rekey_conformance_rule!(__rekey_target_conformance_emit [$setup; $($check)?] alternating_uses_the_idle_user [$($($skip => $why),*)?]);
    };
}

/// Expands to one `#[tokio::test]` per store conformance rule, each on a fresh backend
/// from `setup`. See the [module documentation](crate::conformance) and
/// `conformance/macros.rs` for the syntax.
#[macro_export]
macro_rules! store_conformance_tests {
    (
        setup = $setup:expr
        $(, skip = [$($skip:ident => $why:literal),* $(,)?])?
        $(,)?
    ) => {
        const _: () = {
            $($(#[allow(unused_imports)] use $crate::conformance::store::$skip as _;)*)?
        };
        $crate::__rekey_conformance_rule!(__rekey_store_conformance_emit [$setup] missing_key_is_not_found [$($($skip => $why),*)?]);
        $crate::__rekey_conformance_rule!(__rekey_store_conformance_emit [$setup] stage_promote_previous [$($($skip => $why),*)?]);
        $crate::__rekey_conformance_rule!(__rekey_store_conformance_emit [$setup] stage_is_idempotent_and_guarded [$($($skip => $why),*)?]);
        $crate::__rekey_conformance_rule!(__rekey_store_conformance_emit [$setup] pending_survives_reopen [$($($skip => $why),*)?]);
        $crate::__rekey_conformance_rule!(__rekey_store_conformance_emit [$setup] concurrent_writer_detected [$($($skip => $why),*)?]);
        $crate::__rekey_conformance_rule!(__rekey_store_conformance_emit [$setup] discard_pending_keeps_history [$($($skip => $why),*)?]);
        $crate::__rekey_conformance_rule!(__rekey_store_conformance_emit [$setup] discard_pending_is_idempotent [$($($skip => $why),*)?]);
        $crate::__rekey_conformance_rule!(__rekey_store_conformance_emit [$setup] discard_of_another_version_is_a_conflict [$($($skip => $why),*)?]);
        $crate::__rekey_conformance_rule!(__rekey_store_conformance_emit [$setup] discard_on_missing_key_is_not_found [$($($skip => $why),*)?]);
        $crate::__rekey_conformance_rule!(__rekey_store_conformance_emit [$setup] stage_after_discard [$($($skip => $why),*)?]);
        $crate::__rekey_conformance_rule!(__rekey_store_conformance_emit [$setup] read_many_matches_read [$($($skip => $why),*)?]);
        $crate::__rekey_conformance_rule!(__rekey_store_conformance_emit [$setup] read_for_rotation_matches_read [$($($skip => $why),*)?]);
    };
}

/// Looks `rule` up in the skip list and has `$emit` write a test that runs or an
/// ignored one (macro_rules cannot compare two identifiers, so each rule has its arm).
#[doc(hidden)]
#[macro_export]
macro_rules! __rekey_conformance_rule {
    ($emit:ident $ctx:tt $rule:ident []) => {
        $crate::$emit!(@run $ctx $rule);
    };
    ($emit:ident $ctx:tt capabilities_are_consistent [capabilities_are_consistent => $why:literal $(, $($rest:tt)*)?]) => {
        $crate::$emit!(@skip $ctx capabilities_are_consistent $why);
    };
    ($emit:ident $ctx:tt current_works [current_works => $why:literal $(, $($rest:tt)*)?]) => {
        $crate::$emit!(@skip $ctx current_works $why);
    };
    ($emit:ident $ctx:tt wrong_secret_is_auth_rejected [wrong_secret_is_auth_rejected => $why:literal $(, $($rest:tt)*)?]) => {
        $crate::$emit!(@skip $ctx wrong_secret_is_auth_rejected $why);
    };
    ($emit:ident $ctx:tt apply_then_verify [apply_then_verify => $why:literal $(, $($rest:tt)*)?]) => {
        $crate::$emit!(@skip $ctx apply_then_verify $why);
    };
    ($emit:ident $ctx:tt prepare_uses_the_declared_secret [prepare_uses_the_declared_secret => $why:literal $(, $($rest:tt)*)?]) => {
        $crate::$emit!(@skip $ctx prepare_uses_the_declared_secret $why);
    };
    ($emit:ident $ctx:tt apply_is_idempotent [apply_is_idempotent => $why:literal $(, $($rest:tt)*)?]) => {
        $crate::$emit!(@skip $ctx apply_is_idempotent $why);
    };
    ($emit:ident $ctx:tt revoked_secret_is_rejected [revoked_secret_is_rejected => $why:literal $(, $($rest:tt)*)?]) => {
        $crate::$emit!(@skip $ctx revoked_secret_is_rejected $why);
    };
    ($emit:ident $ctx:tt dual_holds_both_until_revoke [dual_holds_both_until_revoke => $why:literal $(, $($rest:tt)*)?]) => {
        $crate::$emit!(@skip $ctx dual_holds_both_until_revoke $why);
    };
    ($emit:ident $ctx:tt alternating_uses_the_idle_user [alternating_uses_the_idle_user => $why:literal $(, $($rest:tt)*)?]) => {
        $crate::$emit!(@skip $ctx alternating_uses_the_idle_user $why);
    };
    ($emit:ident $ctx:tt missing_key_is_not_found [missing_key_is_not_found => $why:literal $(, $($rest:tt)*)?]) => {
        $crate::$emit!(@skip $ctx missing_key_is_not_found $why);
    };
    ($emit:ident $ctx:tt stage_promote_previous [stage_promote_previous => $why:literal $(, $($rest:tt)*)?]) => {
        $crate::$emit!(@skip $ctx stage_promote_previous $why);
    };
    ($emit:ident $ctx:tt stage_is_idempotent_and_guarded [stage_is_idempotent_and_guarded => $why:literal $(, $($rest:tt)*)?]) => {
        $crate::$emit!(@skip $ctx stage_is_idempotent_and_guarded $why);
    };
    ($emit:ident $ctx:tt pending_survives_reopen [pending_survives_reopen => $why:literal $(, $($rest:tt)*)?]) => {
        $crate::$emit!(@skip $ctx pending_survives_reopen $why);
    };
    ($emit:ident $ctx:tt concurrent_writer_detected [concurrent_writer_detected => $why:literal $(, $($rest:tt)*)?]) => {
        $crate::$emit!(@skip $ctx concurrent_writer_detected $why);
    };
    ($emit:ident $ctx:tt discard_pending_keeps_history [discard_pending_keeps_history => $why:literal $(, $($rest:tt)*)?]) => {
        $crate::$emit!(@skip $ctx discard_pending_keeps_history $why);
    };
    ($emit:ident $ctx:tt discard_pending_is_idempotent [discard_pending_is_idempotent => $why:literal $(, $($rest:tt)*)?]) => {
        $crate::$emit!(@skip $ctx discard_pending_is_idempotent $why);
    };
    ($emit:ident $ctx:tt discard_of_another_version_is_a_conflict [discard_of_another_version_is_a_conflict => $why:literal $(, $($rest:tt)*)?]) => {
        $crate::$emit!(@skip $ctx discard_of_another_version_is_a_conflict $why);
    };
    ($emit:ident $ctx:tt discard_on_missing_key_is_not_found [discard_on_missing_key_is_not_found => $why:literal $(, $($rest:tt)*)?]) => {
        $crate::$emit!(@skip $ctx discard_on_missing_key_is_not_found $why);
    };
    ($emit:ident $ctx:tt stage_after_discard [stage_after_discard => $why:literal $(, $($rest:tt)*)?]) => {
        $crate::$emit!(@skip $ctx stage_after_discard $why);
    };
    ($emit:ident $ctx:tt read_many_matches_read [read_many_matches_read => $why:literal $(, $($rest:tt)*)?]) => {
        $crate::$emit!(@skip $ctx read_many_matches_read $why);
    };
    ($emit:ident $ctx:tt read_for_rotation_matches_read [read_for_rotation_matches_read => $why:literal $(, $($rest:tt)*)?]) => {
        $crate::$emit!(@skip $ctx read_for_rotation_matches_read $why);
    };
    ($emit:ident $ctx:tt $rule:ident [$other:ident => $why:literal $(, $($rest:tt)*)?]) => {
        $crate::__rekey_conformance_rule!($emit $ctx $rule [$($($rest)*)?]);
    };
}

#[doc(hidden)]
#[macro_export]
macro_rules! __rekey_target_conformance_emit {
    (@run [$setup:expr; $($check:expr)?] $rule:ident) => {
        #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
        async fn $rule() {
            let (guard, target, before) = $setup.await;
            let after = $crate::conformance::target::$rule(&target, before.clone()).await;
            $(($check)(&guard, &target, &before, &after);)?
            drop(target);
            drop(guard);
        }
    };
    (@skip [$setup:expr; $($check:expr)?] $rule:ident $why:literal) => {
        #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
        #[ignore = concat!("not applicable: ", $why)]
        async fn $rule() {
            let (guard, target, before) = $setup.await;
            let caps = $crate::Target::capabilities(&target);
            if $crate::conformance::target::applicability(stringify!($rule), caps).is_ok() {
                // Listed in `skip`, yet the capabilities say it applies: run it.
                let after = $crate::conformance::target::$rule(&target, before.clone()).await;
                $(($check)(&guard, &target, &before, &after);)?
            }
            drop(target);
            drop(guard);
        }
    };
}

#[doc(hidden)]
#[macro_export]
macro_rules! __rekey_store_conformance_emit {
    (@run [$setup:expr] $rule:ident) => {
        #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
        async fn $rule() {
            let (guard, open) = $setup.await;
            $crate::conformance::store::run_rule(stringify!($rule), &open).await;
            drop(guard);
        }
    };
    (@skip [$setup:expr] $rule:ident $why:literal) => {
        #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
        #[ignore = concat!("not applicable: ", $why)]
        async fn $rule() {
            let (guard, open) = $setup.await;
            let caps = $crate::Store::capabilities(&*open().await);
            if $crate::conformance::store::applicability(stringify!($rule), &caps).is_ok() {
                // Listed in `skip`, yet the capabilities say it applies: run it.
                $crate::conformance::store::run_rule(stringify!($rule), &open).await;
            }
            drop(guard);
        }
    };
}
