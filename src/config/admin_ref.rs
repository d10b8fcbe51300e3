//! `admin = { credential = "pg-admin" }`: a target's admin secret read from another
//! credential's current version instead of a URL in the environment, so that the admin
//! credential can itself be rotated (and rotated first when it leaked).
//!
//! At load the reference is taken out of the target table (the provider's own config
//! sees no `admin`), checked (the named credential exists, is no one's admin through a
//! cycle) and kept in [`crate::config::Config::admin_refs`]; the composition root turns
//! it into an admin URL from the store right before the run.

use super::de::Node;
use super::ConfigError;
use std::collections::BTreeMap;
use toml::de::DeValue;

/// Takes every `admin = { credential = "NAME" }` out of the credentials' target tables;
/// returns credential name -> admin credential name.
pub(crate) fn take(root: &mut Node<'_>, file: &str) -> Result<BTreeMap<String, String>, ConfigError> {
    let mut refs = BTreeMap::new();
    let DeValue::Table(table) = root.get_mut() else {
        return Ok(refs);
    };
    let Some(credentials) = table.get_mut("credentials") else {
        return Ok(refs);
    };
    let DeValue::Array(items) = credentials.get_mut() else {
        return Ok(refs);
    };
    for item in items.iter_mut() {
        let DeValue::Table(credential) = item.get_mut() else {
            continue;
        };
        let Some(name) = credential
            .get("name")
            .and_then(|n| n.get_ref().as_str())
            .map(str::to_owned)
        else {
            continue;
        };
        let Some(target) = credential.get_mut("target") else {
            continue;
        };
        let DeValue::Table(target) = target.get_mut() else {
            continue;
        };
        let is_reference = matches!(target.get("admin").map(|a| a.get_ref()), Some(DeValue::Table(_)));
        if !is_reference {
            continue;
        }
        let admin = target.remove("admin").expect("checked above");
        let DeValue::Table(admin) = admin.get_ref() else {
            unreachable!("checked above");
        };
        let keys: Vec<String> = admin.iter().map(|(k, _)| k.get_ref().to_string()).collect();
        let referenced = admin.get("credential").and_then(|c| c.get_ref().as_str());
        match (referenced, keys.len()) {
            (Some(other), 1) => {
                refs.insert(name, other.to_owned());
            }
            _ => {
                return Err(ConfigError::new(format!(
                    "{file}: credential `{name}`: `admin` is an admin URL or {{ credential = \"NAME\" }} \
                     (found a table with {})",
                    if keys.is_empty() {
                        "no keys".to_owned()
                    } else {
                        keys.join(", ")
                    }
                )))
            }
        }
    }
    Ok(refs)
}

/// Checks the references: the admin credential exists, is not the credential itself,
/// and no chain of admins loops.
pub(crate) fn check(refs: &BTreeMap<String, String>, names: &[&str], file: &str) -> Result<(), ConfigError> {
    for (credential, admin) in refs {
        if !names.contains(&admin.as_str()) {
            return Err(ConfigError::new(format!(
                "{file}: credential `{credential}`: admin credential `{admin}` is not defined"
            )));
        }
        let mut seen = vec![credential.as_str()];
        let mut next = admin.as_str();
        loop {
            if seen.contains(&next) {
                return Err(ConfigError::new(format!(
                    "{file}: credential `{credential}`: the admin credentials loop ({} -> {next}); \
                     one of them must change its own password or use an admin URL",
                    seen.join(" -> ")
                )));
            }
            seen.push(next);
            match refs.get(next) {
                Some(n) => next = n,
                None => break,
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unknown_and_looping_admins_are_refused() {
        let refs: BTreeMap<String, String> = [("app".to_owned(), "adm".to_owned())].into();
        assert!(check(&refs, &["app", "adm"], "f").is_ok());
        let e = check(&refs, &["app"], "f").unwrap_err().to_string();
        assert!(e.contains("admin credential `adm` is not defined"), "{e}");
        let looping: BTreeMap<String, String> =
            [("a".to_owned(), "b".to_owned()), ("b".to_owned(), "a".to_owned())].into();
        let e = check(&looping, &["a", "b"], "f").unwrap_err().to_string();
        assert!(e.contains("loop"), "{e}");
        let own: BTreeMap<String, String> = [("a".to_owned(), "a".to_owned())].into();
        assert!(check(&own, &["a"], "f").is_err());
    }
}
