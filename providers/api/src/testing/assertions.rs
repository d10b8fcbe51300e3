//! Assertions on errors shared by every provider's tests.

use crate::{ErrorKind, ProviderError, Secret};

/// Asserts that `err` is of `kind`, that its text (kind and message) mentions every
/// one of `needles`, is one line, and holds none of `secrets`.
pub fn assert_error(err: &ProviderError, kind: ErrorKind, needles: &[&str], secrets: &[&Secret]) {
    assert_error_hiding(err, kind, needles, secrets, |_| None);
}

/// [`assert_error`], also checking that no derived form of a secret appears: `derived`
/// gives the form the target stores (a password hash), `None` for none.
pub fn assert_error_hiding(
    err: &ProviderError,
    kind: ErrorKind,
    needles: &[&str],
    secrets: &[&Secret],
    derived: impl Fn(&Secret) -> Option<String>,
) {
    let text = err.to_string();
    assert_eq!(err.kind(), kind, "unexpected kind: {text}");
    for needle in needles {
        assert!(text.contains(needle), "`{text}` should mention `{needle}`");
    }
    for secret in secrets {
        assert!(!text.contains(secret.expose()), "`{text}` leaks a secret");
        if let Some(form) = derived(secret) {
            assert!(!text.contains(&form), "`{text}` leaks a password hash");
        }
    }
    assert!(!text.contains('\n'), "one line: {text}");
}

#[cfg(test)]
mod tests {
    use super::*;

    fn err() -> ProviderError {
        ProviderError::auth_rejected("login as \"app\" refused (hash abc123)")
    }

    #[test]
    fn passes_on_a_matching_error() {
        assert_error(
            &err(),
            ErrorKind::AuthRejected,
            &["\"app\"", "refused"],
            &[&Secret::from("s3cret")],
        );
    }

    #[test]
    #[should_panic(expected = "unexpected kind")]
    fn fails_on_another_kind() {
        assert_error(&err(), ErrorKind::Unreachable, &[], &[]);
    }

    #[test]
    #[should_panic(expected = "should mention")]
    fn fails_on_a_missing_needle() {
        assert_error(&err(), ErrorKind::AuthRejected, &["orders"], &[]);
    }

    #[test]
    #[should_panic(expected = "leaks a secret")]
    fn fails_on_a_leaked_secret() {
        assert_error(&err(), ErrorKind::AuthRejected, &[], &[&Secret::from("refused")]);
    }

    #[test]
    #[should_panic(expected = "leaks a password hash")]
    fn fails_on_a_leaked_derived_form() {
        assert_error_hiding(&err(), ErrorKind::AuthRejected, &[], &[&Secret::from("pw-1")], |_| {
            Some("abc123".to_owned())
        });
    }
}
