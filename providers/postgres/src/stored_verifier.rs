//! Whether a password is the one behind a verifier as PostgreSQL stores it
//! (`pg_authid.rolpassword`), computed here as the server's password check computes it.
//!
//! `plan` checks the current secret of 1,000 roles: a login each costs the server a
//! backend process (about 3 ms of its CPU here) and fills its log with connections.
//! Where `pg_hba.conf` asks every role on this route for a password checked against
//! `pg_authid` and the admin may read it, the answer is the same without a login: the
//! password's SCRAM-SHA-256 keys under the stored salt and iteration count, or its md5
//! hash, equal the stored ones. Everything else (another verifier form, an iteration
//! count out of range, a password SASLprep would change) is "cannot tell" and `plan`
//! logs in.

use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;
use hmac::{Hmac, KeyInit, Mac};
use sha2::{Digest, Sha256};
use zeroize::Zeroizing;

/// The largest SCRAM iteration count checked here (PostgreSQL's default is 4,096;
/// `scram_iterations` may raise it): bounds the work a stored verifier can ask for.
const MAX_ITERATIONS: u32 = 1_000_000;

/// Whether `password` matches `stored` (role `role`'s `rolpassword`): `Some(true)` or
/// `Some(false)`, `None` when this cannot be decided here.
pub(crate) fn password_matches(stored: &str, password: &[u8], role: &str) -> Option<bool> {
    if let Some(scram) = stored.strip_prefix("SCRAM-SHA-256$") {
        return scram_matches(scram, password);
    }
    if stored.len() == 35 && stored.starts_with("md5") {
        let computed = Zeroizing::new(postgres_protocol::password::md5(password, role));
        return Some(same(computed.as_bytes(), stored.as_bytes()));
    }
    None
}

/// `<iterations>:<salt>$<StoredKey>:<ServerKey>` (base64) against `password`.
fn scram_matches(scram: &str, password: &[u8]) -> Option<bool> {
    let (params, keys) = scram.split_once('$')?;
    let (iterations, salt) = params.split_once(':')?;
    let (stored_key, server_key) = keys.split_once(':')?;
    let iterations: u32 = iterations.parse().ok().filter(|i| (1..=MAX_ITERATIONS).contains(i))?;
    let salt = STANDARD.decode(salt).ok()?;
    let stored_key = Zeroizing::new(STANDARD.decode(stored_key).ok()?);
    let server_key = Zeroizing::new(STANDARD.decode(server_key).ok()?);
    // The server prepares a password with SASLprep before deriving its keys; printable
    // ASCII is left as it is, and anything else is left to a real login.
    if !password.iter().all(|b| (0x20..0x7f).contains(b)) {
        return None;
    }
    let salted = salted_password(password, &salt, iterations);
    let client_key = Zeroizing::new(hmac_of(&salted[..], b"Client Key"));
    let computed_stored = Zeroizing::new(Sha256::digest(&client_key[..]).to_vec());
    let computed_server = Zeroizing::new(hmac_of(&salted[..], b"Server Key"));
    Some(same(&computed_stored, &stored_key) & same(&computed_server[..], &server_key))
}

/// PBKDF2-HMAC-SHA-256, one block (RFC 5802's `Hi`), keying HMAC once.
fn salted_password(password: &[u8], salt: &[u8], iterations: u32) -> Zeroizing<[u8; 32]> {
    let keyed = Hmac::<Sha256>::new_from_slice(password).expect("HMAC takes keys of any length");
    let mut mac = keyed.clone();
    mac.update(salt);
    mac.update(&1u32.to_be_bytes());
    let mut previous = Zeroizing::new(<[u8; 32]>::from(mac.finalize().into_bytes()));
    let mut result = Zeroizing::new(*previous);
    for _ in 1..iterations {
        let mut mac = keyed.clone();
        mac.update(&previous[..]);
        *previous = mac.finalize().into_bytes().into();
        for (r, p) in result.iter_mut().zip(previous.iter()) {
            *r ^= p;
        }
    }
    result
}

fn hmac_of(key: &[u8], message: &[u8]) -> Vec<u8> {
    let mut mac = Hmac::<Sha256>::new_from_slice(key).expect("HMAC takes keys of any length");
    mac.update(message);
    mac.finalize().into_bytes().to_vec()
}

/// Equality that does not stop at the first differing byte.
fn same(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |d, (x, y)| d | (x ^ y)) == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_verifier_made_by_postgres_protocol_matches_its_password_only() {
        for password in ["s3cret-Pa55", "with space and 'quote'", "x"] {
            let verifier = postgres_protocol::password::scram_sha_256(password.as_bytes());
            assert_eq!(password_matches(&verifier, password.as_bytes(), "app"), Some(true));
            assert_eq!(
                password_matches(&verifier, format!("{password}!").as_bytes(), "app"),
                Some(false)
            );
        }
    }

    #[test]
    fn a_verifier_made_by_the_server_matches() {
        // SELECT rolpassword FROM pg_authid after `CREATE ROLE t PASSWORD 'pencil'`
        // (PostgreSQL 15, password_encryption = scram-sha-256).
        let verifier = "SCRAM-SHA-256$4096:fNl29jI08fMhc56//e/QKw==$\
                        uvHc8D7asbeAWcU2SC3xmKAJQApqqAYA2IKmn3mTAeY=:\
                        H3W2PW/7W8yaBAnfA9/LLJt/WEzNt1Xacvsz9VW5WQs=";
        let matched = password_matches(verifier, b"pencil", "t");
        let other = password_matches(verifier, b"pencil2", "t");
        assert_eq!(other, Some(false));
        // The fixture was copied from a server: computed the way the server computes it.
        assert_eq!(matched, Some(true), "the server's verifier of 'pencil'");
    }

    #[test]
    fn md5_verifiers_are_salted_with_the_role_name() {
        // echo -n 'secretapp' | md5sum
        let stored = "md56a422f785c9e20873908ce25d1736ae2";
        assert_eq!(password_matches(stored, b"secret", "app"), Some(true));
        assert_eq!(password_matches(stored, b"secret", "other"), Some(false));
        assert_eq!(password_matches(stored, b"Secret", "app"), Some(false));
    }

    #[test]
    fn what_cannot_be_checked_here_is_left_to_a_login() {
        let verifier = postgres_protocol::password::scram_sha_256(b"x");
        // SASLprep would map or refuse these: the server's keys may differ from ours.
        assert_eq!(password_matches(&verifier, "caf\u{e9}".as_bytes(), "app"), None);
        assert_eq!(password_matches(&verifier, b"tab\there", "app"), None);
        for stored in [
            "",
            "plain",
            "md5short",
            "SCRAM-SHA-256$",
            "SCRAM-SHA-256$0:AAAA$AAAA:AAAA",
            "SCRAM-SHA-256$99999999:AAAA$AAAA:AAAA",
            "SCRAM-SHA-256$4096:not base64!$AAAA:AAAA",
        ] {
            assert_eq!(password_matches(stored, b"x", "app"), None, "{stored:?}");
        }
    }
}
