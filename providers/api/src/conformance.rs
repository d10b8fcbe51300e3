//! The conformance suites: public async functions every target and every store must
//! pass, called by each provider crate's tests against its real backend.
//!
//! Each function panics with a message naming the broken rule, so a provider's test
//! is as small as `rekey_api::conformance::target::run_all(&target, current).await`.

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
