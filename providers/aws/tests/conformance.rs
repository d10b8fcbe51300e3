//! The store and target conformance suites from `rekey-api`, against moto's server with
//! signatures checked.

mod common;

use common::{admin_provider, create_user_with_key, iam_config, moto, sm_config};
use rekey_api::conformance::unique_name;
use rekey_api::{SecretDoc, Store, Strategy};
use rekey_aws::{IamOptions, IamTarget};
use std::sync::Arc;

/// The Secrets Manager store on a fresh provider: separate clients, connections and
/// credential caches, as another host or a restarted process (nothing cached survives
/// but what is in Secrets Manager).
fn store() -> Arc<dyn Store> {
    let server = moto();
    admin_provider(server)
        .secrets_manager_store(&sm_config(server))
        .unwrap()
}

mod secrets_manager {
    use super::*;

    rekey_api::store_conformance_tests! {
        setup = async { ((), || async { store() }) },
    }
}

mod iam_target {
    use super::*;

    rekey_api::target_conformance_tests! {
        setup = async {
            let server = moto();
            let user = unique_name("app");
            let first = create_user_with_key(server, &user).await;
            let target = admin_provider(server)
                .aws_iam_target(&iam_config(server, &user), Strategy::Dual, IamOptions::default())
                .unwrap();
            (user, target, first)
        },
        // IAM holds only the returned key: every rotation's revoke deleted the key before it.
        check = |user: &String, _: &IamTarget, _: &SecretDoc, after: &SecretDoc| {
            let keys = tokio::task::block_in_place(|| {
                tokio::runtime::Handle::current().block_on(common::list_keys(moto(), user))
            });
            assert_eq!(keys.len(), 1, "{keys:?}");
            assert_eq!(Some(keys[0].0.as_str()), after.get_str("access_key_id"));
        },
        skip = [alternating_uses_the_idle_user => "IAM access keys rotate under dual only (two keys per user)"],
    }
}
