//! `secret_fields = ["api_key"]` on a credential (issue 14's configuration contract):
//! which fields of the stored document are secret (redacted, zeroized, matched by
//! `leaked`) besides `password`.
//!
//! The targets whose documents have fields of their own (`http`, `exec`) read the list
//! from their configuration, so before anything is read the credential's key is moved
//! into its target table (after shared target blocks are merged). The older place,
//! `target = { ..., secret_fields = [...] }`, keeps working; both at once is an error,
//! as is the key on a target whose only secret is `password`.

use super::de::{DeError, Node};
use toml::de::DeValue;

/// Target types that read `secret_fields`.
const WITH_FIELDS: &[&str] = &["http", "exec"];

/// Moves each credential's `secret_fields` into its target table.
pub(crate) fn hoist(root: &mut Node<'_>) -> Result<(), DeError> {
    let DeValue::Table(table) = root.get_mut() else {
        return Ok(());
    };
    let Some(DeValue::Array(items)) = table.get_mut("credentials").map(|c| c.get_mut()) else {
        return Ok(());
    };
    for item in items.iter_mut() {
        let DeValue::Table(credential) = item.get_mut() else {
            continue;
        };
        let Some((key, fields)) = credential
            .get_key_value("secret_fields")
            .map(|(k, v)| (k.clone(), v.clone()))
        else {
            continue;
        };
        let owner = credential
            .get("name")
            .and_then(|n| n.get_ref().as_str())
            .map(|n| format!("credential `{n}`: "))
            .unwrap_or_default();
        let Some(DeValue::Table(target)) = credential.get_mut("target").map(|t| t.get_mut()) else {
            // No target table: reading the credential reports that.
            continue;
        };
        match target.get("type").and_then(|t| t.get_ref().as_str()) {
            Some(kind) if WITH_FIELDS.contains(&kind) => {}
            Some(kind) => {
                return Err(DeError::at(
                    key.span(),
                    format!(
                        "{owner}`secret_fields` names secret fields of documents that have their own (targets `http` \
                         and `exec`); a `{kind}` target's only secret is `password`"
                    ),
                ))
            }
            // A missing or bad `type` is reported when the target is read.
            None => continue,
        }
        if let Some(old) = target.get("secret_fields") {
            return Err(DeError::at(
                old.span(),
                format!(
                    "{owner}`secret_fields` is set twice, on the credential and in its target: keep the credential's"
                ),
            ));
        }
        credential.remove("secret_fields");
        if let Some(DeValue::Table(target)) = credential.get_mut("target").map(|t| t.get_mut()) {
            target.insert(key, fields);
        }
    }
    Ok(())
}
