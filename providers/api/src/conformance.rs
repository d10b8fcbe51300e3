//! The conformance suites: public async functions every target and every store must
//! pass, called by each provider crate's tests against its real backend.
//!
//! Each function panics with a message naming the broken rule. A provider's tests
//! expand the suites into one test per rule with [`crate::target_conformance_tests!`]
//! and [`crate::store_conformance_tests!`]; a rule that does not apply to a backend (by
//! its declared capabilities) is listed in the invocation's `skip` with the reason and
//! reported as ignored, never counted as passed.

mod macros;
pub mod store;
pub mod target;

pub use crate::secret::Secret;

/// A random password from a URL-safe alphabet, for suites and test fixtures.
pub fn random_password(length: usize) -> Secret {
    use rand::Rng;
    const ALPHABET: &[u8] = b"ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz23456789-_";
    let mut rng = rand::thread_rng();
    Secret::new(
        (0..length)
            .map(|_| ALPHABET[rng.gen_range(0..ALPHABET.len())] as char)
            .collect(),
    )
}

/// A unique name with a prefix, for keys, roles and users created by tests.
pub fn unique_name(prefix: &str) -> String {
    use rand::Rng;
    let n: u64 = rand::thread_rng().gen();
    format!("{prefix}_{:012x}", n & 0xffff_ffff_ffff)
}

/// Runs `future`, turning a panic into `Err` with the panic's message, so a suite can
/// go on after a failing rule and report every failure at the end.
pub(crate) async fn catch_unwind<F: std::future::Future>(future: F) -> Result<F::Output, String> {
    use std::panic::{catch_unwind, AssertUnwindSafe};
    let mut future = std::pin::pin!(future);
    std::future::poll_fn(|cx| match catch_unwind(AssertUnwindSafe(|| future.as_mut().poll(cx))) {
        Ok(std::task::Poll::Ready(v)) => std::task::Poll::Ready(Ok(v)),
        Ok(std::task::Poll::Pending) => std::task::Poll::Pending,
        Err(payload) => std::task::Poll::Ready(Err(panic_message(payload.as_ref()))),
    })
    .await
}

fn panic_message(payload: &(dyn std::any::Any + Send)) -> String {
    if let Some(s) = payload.downcast_ref::<&str>() {
        (*s).to_owned()
    } else if let Some(s) = payload.downcast_ref::<String>() {
        s.clone()
    } else {
        "(a panic without a message)".to_owned()
    }
}
