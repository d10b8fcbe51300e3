//! `${NAME}` references to the environment in configuration strings.
//!
//! - `${NAME}` is the variable's value; unset is an error naming the variable.
//! - `${NAME:-default}` is the value, or `default` when the variable is unset or empty.
//!   The default is taken literally (it cannot hold `$` or `}`).
//! - `$$` is a literal `$`.
//! - `$NAME` (a `$` followed by a letter or `_`) is an error that shows the `${NAME}`
//!   form: the shell's spelling would otherwise reach a server as literal text.
//! - Any other `$` is kept as it is.
//!
//! Values that came from the environment are never expanded again and never shown.

use super::de::Node;
use super::include::Sources;
use super::ConfigError;
use std::borrow::Cow;
use std::collections::BTreeMap;
use toml::de::DeValue;

/// Why a string could not be expanded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum EnvError {
    /// `${NAME}` with `NAME` unset.
    Missing(String),
    /// `$NAME` without braces.
    Bare(String),
    /// `${` without a closing `}`, an invalid name, or `$` inside a default.
    Malformed,
}

/// Expands `input`. Returns the expanded text and whether it held a `${...}` reference.
pub(crate) fn expand(input: &str, lookup: &dyn Fn(&str) -> Option<String>) -> Result<(String, bool), EnvError> {
    let mut out = String::with_capacity(input.len());
    let mut referenced = false;
    let mut rest = input;
    while let Some(pos) = rest.find('$') {
        out.push_str(&rest[..pos]);
        let after = &rest[pos + 1..];
        if let Some(stripped) = after.strip_prefix('$') {
            out.push('$');
            rest = stripped;
        } else if let Some(body) = after.strip_prefix('{') {
            let end = body.find('}').ok_or(EnvError::Malformed)?;
            let (name, default) = match body[..end].split_once(":-") {
                Some((name, default)) => (name, Some(default)),
                None => (&body[..end], None),
            };
            if !valid_name(name) || default.is_some_and(|d| d.contains('$')) {
                return Err(EnvError::Malformed);
            }
            referenced = true;
            match (lookup(name), default) {
                (Some(value), Some(default)) if value.is_empty() => out.push_str(default),
                (Some(value), _) => out.push_str(&value),
                (None, Some(default)) => out.push_str(default),
                (None, None) => return Err(EnvError::Missing(name.to_owned())),
            }
            rest = &body[end + 1..];
        } else if after.starts_with(|c: char| c.is_ascii_alphabetic() || c == '_') {
            let name: String = after
                .chars()
                .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                .collect();
            return Err(EnvError::Bare(name));
        } else {
            out.push('$');
            rest = after;
        }
    }
    out.push_str(rest);
    Ok((out, referenced))
}

fn valid_name(name: &str) -> bool {
    !name.is_empty()
        && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
        && !name.starts_with(|c: char| c.is_ascii_digit())
}

/// Keys whose values may hold a secret: their text is never quoted in a message.
fn secret_bearing(key: &str) -> bool {
    let key = key.to_ascii_lowercase();
    key == "admin"
        || ["password", "secret", "token", "dsn", "url"]
            .iter()
            .any(|k| key.contains(k))
}

/// What [`expand_document`] did.
#[derive(Debug, Default)]
pub(crate) struct Expansion {
    /// For each string that held a reference: its span start and its text as written.
    pub refs: BTreeMap<usize, String>,
    /// Credentials (by index in `credentials`) whose target references a variable that
    /// is not set: the credential's name and the error. Their target is left as
    /// written; everything else is expanded.
    pub deferred: BTreeMap<usize, (String, ConfigError)>,
}

/// Expands every string of the document in place. A variable missing in a credential's
/// target is deferred (only that credential fails); any other problem is an error.
pub(crate) fn expand_document(
    root: &mut Node<'_>,
    lookup: &dyn Fn(&str) -> Option<String>,
    sources: &Sources<'_>,
) -> Result<Expansion, ConfigError> {
    let mut out = Expansion::default();
    let refs = &mut out.refs;
    let main = sources.file_at(0);
    let DeValue::Table(table) = root.get_mut() else {
        return Ok(out);
    };
    for (section, value) in table.iter_mut() {
        let section: &str = section.get_ref();
        match (section, value.get_mut()) {
            ("credentials", DeValue::Array(items)) => {
                for (index, item) in items.iter_mut().enumerate() {
                    let name = item
                        .get_ref()
                        .get("name")
                        .and_then(|n| n.get_ref().as_str())
                        .map(str::to_owned);
                    let owner = name
                        .as_ref()
                        .map(|n| format!("credential `{n}`"))
                        .unwrap_or_else(|| format!("credential #{}", index + 1));
                    let file = sources.file_at(item.span().start);
                    let DeValue::Table(fields) = item.get_mut() else {
                        continue;
                    };
                    for (key, field) in fields.iter_mut() {
                        let key: &str = key.get_ref();
                        if key != "target" {
                            walk(
                                field,
                                key,
                                &owner,
                                &mut Walk {
                                    lookup,
                                    file,
                                    refs: &mut *refs,
                                    missing: None,
                                },
                            )?;
                            continue;
                        }
                        // The target is expanded on a copy: when a variable it uses is
                        // missing, it stays as written and only this credential fails.
                        let mut copy = field.clone();
                        let mut found = BTreeMap::new();
                        let mut w = Walk {
                            lookup,
                            file,
                            refs: &mut found,
                            missing: None,
                        };
                        let result = walk(&mut copy, "target", &owner, &mut w);
                        match (result, w.missing.is_some(), &name) {
                            (Ok(()), _, _) => {
                                *field = copy;
                                refs.extend(found);
                            }
                            (Err(e), true, Some(name)) => {
                                out.deferred.insert(index, (name.clone(), e));
                            }
                            (Err(e), _, _) => return Err(e),
                        }
                    }
                }
            }
            ("stores", DeValue::Table(stores)) => {
                for (name, store) in stores.iter_mut() {
                    let owner = format!("store `{}`", name.get_ref());
                    let file = sources.file_at(store.span().start);
                    walk(
                        store,
                        "",
                        &owner,
                        &mut Walk {
                            lookup,
                            file,
                            refs: &mut *refs,
                            missing: None,
                        },
                    )?;
                }
            }
            _ => {
                let owner = format!("[{section}]");
                walk(
                    value,
                    "",
                    &owner,
                    &mut Walk {
                        lookup,
                        file: main,
                        refs: &mut *refs,
                        missing: None,
                    },
                )?;
            }
        }
    }
    Ok(out)
}

struct Walk<'w> {
    lookup: &'w dyn Fn(&str) -> Option<String>,
    file: &'w str,
    refs: &'w mut BTreeMap<usize, String>,
    /// The variable whose absence stopped the walk.
    missing: Option<String>,
}

fn walk(node: &mut Node<'_>, path: &str, owner: &str, w: &mut Walk<'_>) -> Result<(), ConfigError> {
    let start = node.span().start;
    match node.get_mut() {
        DeValue::String(s) => {
            if !s.contains('$') {
                return Ok(());
            }
            let file = w.file;
            let leaf = path.rsplit(['.', ']']).next().unwrap_or(path);
            let at = if path.is_empty() {
                String::new()
            } else {
                format!("`{path}`: ")
            };
            match expand(s, w.lookup) {
                Ok((expanded, referenced)) => {
                    if referenced {
                        w.refs.insert(start, s.to_string());
                    }
                    *s = Cow::Owned(expanded);
                }
                Err(EnvError::Missing(name)) => {
                    let e = ConfigError::new(format!("{file}: {owner}: environment variable `{name}` is not set"));
                    w.missing = Some(name);
                    return Err(e);
                }
                Err(EnvError::Bare(_)) if secret_bearing(leaf) => {
                    return Err(ConfigError::new(format!(
                        "{file}: {owner}: {at}a `$` followed by a name is not expanded: write `${{NAME}}` for an \
                         environment variable, or `$$` for a literal `$` (the value is not shown: it may hold a secret)"
                    )))
                }
                Err(EnvError::Bare(name)) => {
                    return Err(ConfigError::new(format!(
                        "{file}: {owner}: {at}`${name}` is not expanded: write `${{{name}}}` for the environment \
                         variable, or `$${name}` for a literal `$`"
                    )))
                }
                Err(EnvError::Malformed) => {
                    let shown = if secret_bearing(leaf) {
                        String::new()
                    } else {
                        format!(" in \"{}\"", s.chars().take(60).collect::<String>())
                    };
                    return Err(ConfigError::new(format!(
                        "{file}: {owner}: {at}malformed environment reference{shown} (write `${{NAME}}` or \
                         `${{NAME:-default}}`; `$$` for a literal `$`)"
                    )));
                }
            }
        }
        DeValue::Array(items) => {
            for (index, item) in items.iter_mut().enumerate() {
                walk(item, &format!("{path}[{index}]"), owner, w)?;
            }
        }
        DeValue::Table(table) => {
            for (key, value) in table.iter_mut() {
                let key: &str = key.get_ref();
                let child = if path.is_empty() {
                    key.to_owned()
                } else {
                    format!("{path}.{key}")
                };
                walk(value, &child, owner, w)?;
            }
        }
        _ => {}
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lookup(name: &str) -> Option<String> {
        match name {
            "A" => Some("x".into()),
            "EMPTY" => Some(String::new()),
            "DOLLAR" => Some("${A}".into()),
            _ => None,
        }
    }

    #[test]
    fn expands_escapes_and_defaults() {
        assert_eq!(expand("a${A}b$$c$1 $", &lookup).unwrap(), ("axb$c$1 $".into(), true));
        assert_eq!(expand("plain $$HOME", &lookup).unwrap(), ("plain $HOME".into(), false));
        assert_eq!(expand("${B}", &lookup), Err(EnvError::Missing("B".into())));
        assert_eq!(expand("${B:-5432}", &lookup).unwrap().0, "5432");
        assert_eq!(expand("${EMPTY:-d}", &lookup).unwrap().0, "d");
        assert_eq!(expand("${A:-d}", &lookup).unwrap().0, "x");
        assert_eq!(expand("${B:-}", &lookup).unwrap().0, "");
        // A value from the environment is not expanded again.
        assert_eq!(expand("${DOLLAR}", &lookup).unwrap().0, "${A}");
        assert_eq!(expand("${A", &lookup), Err(EnvError::Malformed));
        assert_eq!(expand("${1A}", &lookup), Err(EnvError::Malformed));
        assert_eq!(expand("${B:-$A}", &lookup), Err(EnvError::Malformed));
    }

    #[test]
    fn bare_dollar_name_is_an_error() {
        assert_eq!(expand("$HOME/x", &lookup), Err(EnvError::Bare("HOME".into())));
        assert_eq!(expand("a$_x", &lookup), Err(EnvError::Bare("_x".into())));
        assert_eq!(expand("cost $5", &lookup).unwrap().0, "cost $5");
    }
}

#[cfg(test)]
mod document_tests {
    use super::*;
    use std::path::Path;
    use toml::Spanned;

    fn lookup(name: &str) -> Option<String> {
        (name == "PORT").then(|| "6543".to_owned())
    }

    /// A variable missing in a credential's target is deferred to that credential (its
    /// target left as written); elsewhere it is an error.
    #[test]
    fn a_missing_variable_in_a_target_is_deferred_to_its_credential() {
        let text = "[[credentials]]\nname = \"a\"\ndescription = \"port ${PORT:-1}\"\n\
                    target = { port = \"${PORT}\", admin = \"${MISSING}\" }\n\n\
                    [[credentials]]\nname = \"b\"\ntarget = { port = \"${PORT}\" }\n";
        let main = toml::de::DeTable::parse(text).unwrap();
        let sources = crate::config::include::sources(Path::new("r.toml"), text, main.get_ref()).unwrap();
        let document = toml::de::DeTable::parse(&sources.text).unwrap();
        let mut root: Node<'_> = Spanned::new(document.span(), DeValue::Table(document.into_inner()));
        let expansion = expand_document(&mut root, &lookup, &sources).unwrap();
        let (name, e) = &expansion.deferred[&0];
        assert_eq!(name, "a");
        assert_eq!(
            e.to_string(),
            "r.toml: credential `a`: environment variable `MISSING` is not set"
        );
        assert_eq!(expansion.deferred.len(), 1);
        let credentials = root.get_ref().get("credentials").unwrap().get_ref().as_array().unwrap();
        let field = |i: usize, path: &[&str]| {
            let mut node = &credentials[i];
            for key in path {
                node = node.get_ref().get(*key).unwrap();
            }
            node.get_ref().as_str().unwrap().to_owned()
        };
        // The deferred target is as written, the rest of its credential expanded.
        assert_eq!(field(0, &["target", "port"]), "${PORT}");
        assert_eq!(field(0, &["description"]), "port 6543");
        assert_eq!(field(1, &["target", "port"]), "6543");
        // Outside a target: an error for the whole file.
        let text = "[stores.s]\npath = \"${MISSING}\"\n";
        let main = toml::de::DeTable::parse(text).unwrap();
        let sources = crate::config::include::sources(Path::new("r.toml"), text, main.get_ref()).unwrap();
        let document = toml::de::DeTable::parse(&sources.text).unwrap();
        let mut root: Node<'_> = Spanned::new(document.span(), DeValue::Table(document.into_inner()));
        let e = expand_document(&mut root, &lookup, &sources).unwrap_err();
        assert_eq!(
            e.to_string(),
            "r.toml: store `s`: environment variable `MISSING` is not set"
        );
    }
}
