//! `[targets.NAME]`: target configurations shared by many credentials.
//!
//! ```toml
//! [targets.pg-prod]
//! type = "postgres"
//! host = "db.example.com"
//! admin = "${PG_ADMIN_URL}"
//!
//! [[credentials]]
//! name = "orders-db"
//! key = "orders/db"
//! target = { use = "pg-prod", username = "orders_app" }
//! ```
//!
//! Before anything is read, each `target = { use = "NAME", ... }` is replaced by a
//! shallow merge of the two tables: the block's keys, then the credential's (which
//! override them), without `use`. The merged table is then read like a target written
//! in full, so every provider gets blocks for free, `deny_unknown_fields` still catches
//! typos, and every key keeps its place in the file (a typo in a block is reported at
//! the block's line). A block cannot `use` another one.
//!
//! A block that no credential uses is still read (type and keys checked, so a typo is
//! not found only on the day a credential starts to use it) and otherwise allowed: a
//! shared `conf.d/` file may define blocks for several configurations.

use super::de::{DeError, Node, Pass};
use std::collections::BTreeSet;
use toml::de::DeValue;
use toml::Spanned;

/// Replaces every `use` of a block by the merged table and removes `[targets]` from the
/// document. Errors carry the place of the offending key.
pub(crate) fn apply(root: &mut Node<'_>) -> Result<(), DeError> {
    let DeValue::Table(table) = root.get_mut() else {
        return Ok(());
    };
    let Some(blocks) = table.remove("targets") else {
        return check_no_use(table.get("credentials"));
    };
    let DeValue::Table(blocks) = blocks.get_ref() else {
        return Err(DeError::at(
            blocks.span(),
            "`targets` must be tables: [targets.NAME] with a `type` and the target's keys",
        ));
    };
    for (name, block) in blocks.iter() {
        let name: &str = name.get_ref();
        let Some(inner) = block.get_ref().as_table() else {
            return Err(DeError::at(
                block.span(),
                format!("target block `{name}` must be a table with a `type` and the target's keys"),
            ));
        };
        if let Some(chained) = inner.get("use") {
            return Err(DeError::at(
                chained.span(),
                format!("target block `{name}`: `use` is for credentials; a block cannot use another block"),
            ));
        }
    }
    let known: Vec<&str> = blocks.iter().map(|(k, _)| k.get_ref().as_ref()).collect();
    let mut used = BTreeSet::new();
    if let Some(credentials) = table.get_mut("credentials") {
        if let DeValue::Array(items) = credentials.get_mut() {
            for item in items.iter_mut() {
                let DeValue::Table(credential) = item.get_mut() else {
                    continue;
                };
                let owner = credential
                    .get("name")
                    .and_then(|n| n.get_ref().as_str())
                    .map(|n| format!("credential `{n}`: "))
                    .unwrap_or_default();
                let Some(target) = credential.get_mut("target") else {
                    continue;
                };
                let span = target.span();
                let DeValue::Table(own) = target.get_mut() else {
                    continue;
                };
                let Some(reference) = own.remove("use") else {
                    continue;
                };
                let Some(block_name) = reference.get_ref().as_str() else {
                    return Err(DeError::at(
                        reference.span(),
                        format!("{owner}`target.use` must be the name of a [targets.NAME] block"),
                    ));
                };
                let Some(block) = blocks.get(block_name) else {
                    let hint = crate::commands::suggest::hint(
                        block_name,
                        &known,
                        "target blocks",
                        "the configuration's [targets.NAME] tables",
                    );
                    return Err(DeError::at(
                        reference.span(),
                        format!("{owner}unknown target block `{block_name}`{hint}"),
                    ));
                };
                used.insert(block_name.to_owned());
                let mut merged = block.get_ref().as_table().cloned().unwrap_or_default();
                for (key, value) in std::mem::take(own) {
                    // Removed first so that the key, too, is the credential's (its place).
                    merged.remove(key.get_ref().as_ref());
                    merged.insert(key, value);
                }
                *target = Spanned::new(span, DeValue::Table(merged));
            }
        }
    }
    for (name, block) in blocks.iter() {
        let name: &str = name.get_ref();
        if used.contains(name) {
            continue;
        }
        // Checked as a target; an `admin = { credential = ... }` is taken out first, as
        // for a credential's target.
        let mut unused = block.clone();
        if let DeValue::Table(t) = unused.get_mut() {
            if matches!(t.get("admin").map(|a| a.get_ref()), Some(DeValue::Table(_))) {
                t.remove("admin");
            }
        }
        super::read_target(&unused, Pass::Raw)
            .map_err(|e| super::in_section(e, block, &format!("target block `{name}`")))?;
    }
    Ok(())
}

/// Without `[targets]`, a `use` can only be a mistake: say so where it is.
fn check_no_use(credentials: Option<&Node<'_>>) -> Result<(), DeError> {
    let Some(DeValue::Array(items)) = credentials.map(Spanned::get_ref) else {
        return Ok(());
    };
    for item in items {
        if let Some(reference) = item.get_ref().get("target").and_then(|t| t.get_ref().get("use")) {
            let name = reference.get_ref().as_str().unwrap_or("?");
            return Err(DeError::at(
                reference.span(),
                format!("unknown target block `{name}`: the configuration has no [targets.NAME] tables"),
            ));
        }
    }
    Ok(())
}
