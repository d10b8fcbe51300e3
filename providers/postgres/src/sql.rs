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

/// The md5 verifier of `password` for `role` (`md5` + hex MD5(password ‖ role)), as
/// PostgreSQL stores it and accepts pre-hashed: used only when `verifier = "keep"` finds
/// an md5 role.
pub fn md5_verifier(password: &Secret, role: &str) -> Zeroizing<String> {
    Zeroizing::new(postgres_protocol::password::md5(password.expose().as_bytes(), role))
}

/// `ALTER ROLE <role> PASSWORD '<verifier>' [VALID UNTIL '<until>']`.
pub(crate) fn alter_role_password_until(
    role_sql: &str,
    verifier: &str,
    valid_until: Option<&str>,
) -> Zeroizing<String> {
    let mut sql = alter_role_password(role_sql, verifier);
    if let Some(until) = valid_until {
        sql.push_str(" VALID UNTIL ");
        sql.push_str(&quote_literal(until));
    }
    sql
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

    #[test]
    fn md5_verifiers_and_validity() {
        // echo -n 'secretapp' | md5sum
        assert_eq!(
            *md5_verifier(&Secret::from("secret"), "app"),
            "md56a422f785c9e20873908ce25d1736ae2"
        );
        assert_eq!(
            *alter_role_password_until("\"app\"", "SCRAM-SHA-256$x", Some("infinity")),
            "ALTER ROLE \"app\" PASSWORD 'SCRAM-SHA-256$x' VALID UNTIL 'infinity'"
        );
        assert_eq!(
            *alter_role_password_until("\"app\"", "v", None),
            "ALTER ROLE \"app\" PASSWORD 'v'"
        );
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
