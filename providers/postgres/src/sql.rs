//! SQL text building: identifier and literal quoting, SCRAM verifiers.

use rekey_api::{ProviderError, ProviderResult, Secret};
use zeroize::Zeroizing;

/// Quotes an SQL identifier: wrapped in `"`, inner `"` doubled. Any other character,
/// `;`, spaces and non-ASCII included, is literal inside the quotes.
pub fn quote_ident(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

/// Quotes an SQL string literal: wrapped in `'`, inner `'` doubled. Backslashes are
/// doubled in an `E'...'` literal so the result does not depend on the server's
/// `standard_conforming_strings`.
pub fn quote_literal(value: &str) -> String {
    if value.contains('\\') {
        format!("E'{}'", value.replace('\\', "\\\\").replace('\'', "''"))
    } else {
        format!("'{}'", value.replace('\'', "''"))
    }
}

/// The SCRAM-SHA-256 verifier of `password` (`SCRAM-SHA-256$4096:salt$StoredKey:ServerKey`)
/// with a random salt, as PostgreSQL stores it. Computed on a blocking thread: it runs
/// 4096 PBKDF2 rounds.
pub async fn scram_verifier(password: &Secret) -> ProviderResult<Zeroizing<String>> {
    let password = password.clone();
    let verifier = tokio::task::spawn_blocking(move || {
        Zeroizing::new(postgres_protocol::password::scram_sha_256(password.expose().as_bytes()))
    })
    .await
    .map_err(|e| ProviderError::other(format!("computing the SCRAM verifier failed: {e}")))?;
    // The verifier is base64 plus `$`, `:` and digits; anything else would be a bug.
    if !verifier.starts_with("SCRAM-SHA-256$")
        || !verifier
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"$:+/=-".contains(&b))
    {
        return Err(ProviderError::other("computed SCRAM verifier has an unexpected shape"));
    }
    Ok(verifier)
}

/// `ALTER ROLE <role> PASSWORD '<verifier>'` (`role` already quoted or `CURRENT_USER`).
pub(crate) fn alter_role_password(role_sql: &str, verifier: &str) -> Zeroizing<String> {
    Zeroizing::new(format!("ALTER ROLE {role_sql} PASSWORD {}", quote_literal(verifier)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn identifiers() {
        assert_eq!(quote_ident("orders_app"), "\"orders_app\"");
        assert_eq!(quote_ident("a\"b; DROP ROLE x; --"), "\"a\"\"b; DROP ROLE x; --\"");
        assert_eq!(quote_ident("rôle ünïcode"), "\"rôle ünïcode\"");
    }

    #[test]
    fn literals() {
        assert_eq!(quote_literal("it's"), "'it''s'");
        assert_eq!(quote_literal("a\\b'c"), "E'a\\\\b''c'");
    }

    #[tokio::test]
    async fn verifier_shape() {
        let pw = Secret::from("correct horse battery staple");
        let v = scram_verifier(&pw).await.unwrap();
        assert!(v.starts_with("SCRAM-SHA-256$4096:"), "{}", *v);
        assert!(!v.contains(pw.expose()));
        let other = scram_verifier(&pw).await.unwrap();
        assert_ne!(*v, *other, "a fresh salt each time");
    }
}
