//! Did-you-mean: the closest known name to a mistyped one, and selections that match
//! nothing refused with a suggestion instead of silently doing nothing.

use crate::config::{Config, Credential};

/// Most names listed in a message before it says "`rekey list` shows them" instead.
const LIST_AT_MOST: usize = 8;

/// Edit distance (optimal string alignment: insertions, deletions, substitutions and
/// transpositions of neighbours each count 1), over characters, ignoring ASCII case.
pub fn distance(a: &str, b: &str) -> usize {
    let a: Vec<char> = a.chars().map(|c| c.to_ascii_lowercase()).collect();
    let b: Vec<char> = b.chars().map(|c| c.to_ascii_lowercase()).collect();
    let width = b.len() + 1;
    let mut d = vec![0usize; (a.len() + 1) * width];
    for i in 0..=a.len() {
        d[i * width] = i;
    }
    for (j, cell) in d.iter_mut().enumerate().take(width) {
        *cell = j;
    }
    for i in 1..=a.len() {
        for j in 1..=b.len() {
            let cost = usize::from(a[i - 1] != b[j - 1]);
            let mut best = (d[(i - 1) * width + j] + 1)
                .min(d[i * width + j - 1] + 1)
                .min(d[(i - 1) * width + j - 1] + cost);
            if i > 1 && j > 1 && a[i - 1] == b[j - 2] && a[i - 2] == b[j - 1] {
                best = best.min(d[(i - 2) * width + j - 2] + 1);
            }
            d[i * width + j] = best;
        }
    }
    d[a.len() * width + b.len()]
}

/// The known name closest to `word`, when it is close enough to be a typo of it (at
/// most a third of the word's length, at least one edit); the first of equals wins.
pub fn closest<'a>(word: &str, known: impl IntoIterator<Item = &'a str>) -> Option<&'a str> {
    let limit = (word.chars().count() / 3).max(1);
    known
        .into_iter()
        .map(|k| (distance(word, k), k))
        .filter(|(d, _)| *d <= limit)
        .min_by_key(|(d, _)| *d)
        .map(|(_, k)| k)
}

/// What to add to "unknown THING `word`": `; did you mean `x`?`, else the known names
/// when they are few, else how to see them.
pub fn hint(word: &str, known: &[&str], plural: &str, how_to_list: &str) -> String {
    if let Some(close) = closest(word, known.iter().copied()) {
        return format!("; did you mean `{close}`?");
    }
    match known.len() {
        0 => format!(" (no {plural} configured)"),
        n if n <= LIST_AT_MOST => format!(" (known: {})", known.join(", ")),
        n => format!(" ({n} {plural} configured; {how_to_list} shows them)"),
    }
}

/// The credentials chosen by `names` and `tags` (all when neither is given), or one
/// line saying why the selection is a usage error: an unknown name (with the closest
/// known one), a tag no credential has, a configuration without credentials, or names
/// and tags that select nothing together.
pub fn select(config: &Config, names: &[String], tags: &[String]) -> Result<Vec<Credential>, String> {
    let file = config.path.display();
    if config.credentials.is_empty() {
        return Err(format!(
            "{file} defines no credentials: add a [[credentials]] table (`rekey init` writes a starter config)"
        ));
    }
    let known: Vec<&str> = config.credentials.iter().map(|c| c.name.as_str()).collect();
    for name in names {
        if config.credential(name).is_none() {
            return Err(format!(
                "unknown credential `{name}` in {file}{}",
                hint(name, &known, "credentials", "`rekey list`")
            ));
        }
    }
    let mut all_tags: Vec<&str> = config
        .credentials
        .iter()
        .flat_map(|c| c.tags.iter().map(String::as_str))
        .collect();
    all_tags.sort_unstable();
    all_tags.dedup();
    for tag in tags {
        if !all_tags.contains(&tag.as_str()) {
            return Err(format!(
                "no credential has tag `{tag}` in {file}{}",
                hint(tag, &all_tags, "tags", "`rekey list`")
            ));
        }
    }
    let chosen = config.select(names, tags).map_err(|e| e.to_string())?;
    if chosen.is_empty() {
        return Err(format!(
            "no credential is both named ({}) and tagged ({}); drop the names or the --tag",
            names.join(", "),
            tags.join(", ")
        ));
    }
    Ok(chosen)
}

/// The one-line error of `get --field F` for a field the stored secret lacks: the field
/// names it has (names only, never values), with the closest one first.
pub fn unknown_field<'a>(credential: &str, field: &str, fields: impl IntoIterator<Item = &'a str>) -> String {
    let mut fields: Vec<&str> = fields.into_iter().collect();
    fields.sort_unstable();
    let close = closest(field, fields.iter().copied())
        .map(|c| format!("did you mean `{c}`? "))
        .unwrap_or_default();
    format!(
        "{credential}: get: the stored secret has no field `{field}`; {close}its fields: {}",
        if fields.is_empty() {
            "none".to_owned()
        } else {
            fields.join(", ")
        }
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    #[test]
    fn distances() {
        assert_eq!(distance("", ""), 0);
        assert_eq!(distance("orders-db", "orders-db"), 0);
        assert_eq!(distance("ordrs-db", "orders-db"), 1);
        assert_eq!(distance("odrers-db", "orders-db"), 1, "a transposition is one edit");
        assert_eq!(distance("Orders-DB", "orders-db"), 0, "case is ignored");
        assert_eq!(distance("kitten", "sitting"), 3);
        assert_eq!(distance("", "abc"), 3);
    }

    #[test]
    fn closest_only_when_it_could_be_a_typo() {
        let known = ["orders-db", "billing-db", "cache"];
        assert_eq!(closest("ordrs-db", known), Some("orders-db"));
        assert_eq!(closest("pasword", ["password", "username"]), Some("password"));
        assert_eq!(closest("no-such-thing", known), None);
        assert_eq!(closest("x", known), None);
    }

    #[test]
    fn hints() {
        assert_eq!(
            hint("ordrs-db", &["orders-db"], "credentials", "`rekey list`"),
            "; did you mean `orders-db`?"
        );
        assert_eq!(
            hint("zzz", &["a", "b"], "credentials", "`rekey list`"),
            " (known: a, b)"
        );
        let many: Vec<String> = (0..20).map(|i| format!("credential-{i:02}")).collect();
        let many: Vec<&str> = many.iter().map(String::as_str).collect();
        let h = hint("zzz", &many, "credentials", "`rekey list`");
        assert_eq!(h, " (20 credentials configured; `rekey list` shows them)");
    }

    const CONFIG: &str = r#"
[stores.local]
type = "file"
path = "secrets.json"

[[credentials]]
name = "orders-db"
store = "local"
key = "orders/db"
tags = ["prod"]
target = { type = "postgres", host = "127.0.0.1", port = 5432, dbname = "orders", username = "orders_app" }

[[credentials]]
name = "billing-db"
store = "local"
key = "billing/db"
tags = ["staging"]
target = { type = "postgres", host = "127.0.0.1", port = 5432, dbname = "billing", username = "billing_app" }
"#;

    fn config(text: &str) -> Config {
        Config::parse(Path::new("/etc/rekey/rekey.toml"), text, |_| None).unwrap()
    }

    #[test]
    fn selections_that_match_nothing_are_refused_with_a_suggestion() {
        let c = config(CONFIG);
        assert_eq!(select(&c, &[], &[]).unwrap().len(), 2);
        assert_eq!(select(&c, &[], &["prod".into()]).unwrap().len(), 1);
        let e = select(&c, &["ordrs-db".into()], &[]).unwrap_err();
        assert_eq!(
            e,
            "unknown credential `ordrs-db` in /etc/rekey/rekey.toml; did you mean `orders-db`?"
        );
        let e = select(&c, &["payments".into()], &[]).unwrap_err();
        assert!(e.ends_with("(known: orders-db, billing-db)"), "{e}");
        let e = select(&c, &[], &["prdo".into()]).unwrap_err();
        assert_eq!(
            e,
            "no credential has tag `prdo` in /etc/rekey/rekey.toml; did you mean `prod`?"
        );
        let e = select(&c, &["orders-db".into()], &["staging".into()]).unwrap_err();
        assert!(e.starts_with("no credential is both named"), "{e}");
        let empty = config("[stores.local]\ntype = \"file\"\npath = \"s.json\"\n");
        let e = select(&empty, &[], &[]).unwrap_err();
        assert!(e.contains("defines no credentials") && e.contains("rekey init"), "{e}");
    }

    #[test]
    fn unknown_fields_list_names_only() {
        let e = unknown_field("orders-db", "pasword", ["username", "password", "host"]);
        assert_eq!(
            e,
            "orders-db: get: the stored secret has no field `pasword`; did you mean `password`? its fields: host, password, username"
        );
    }
}
