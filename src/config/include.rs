//! `include = ["conf.d/*.toml"]`: credentials, stores and target blocks kept in other
//! files.
//!
//! - `include` is a top-level key of the main file: a list of paths relative to that
//!   file's directory, taken as written (no `${NAME}`). The last component may hold
//!   `*` and `?` (sorted by name; `*` does not match a leading `.`; a pattern matching
//!   nothing in an existing directory adds nothing, a missing directory is an error); a
//!   path without a wildcard must exist.
//! - An included file holds only `[[credentials]]`, `[stores.NAME]` and
//!   `[targets.NAME]` tables. No `[defaults]`, no `include` of its own (one level only,
//!   so there is no cycle to detect).
//! - A credential, store or target block defined in two files is an error naming both.
//!
//! The files are read as one document: the main text followed by each included text.
//! [`Sources`] maps every place in that document back to its file, line and column.

use super::de::Node;
use super::ConfigError;
use std::borrow::Cow;
use std::collections::BTreeMap;
use std::ops::Range;
use std::path::{Path, PathBuf};
use toml::de::{DeTable, DeValue};
use toml::Spanned;

/// The tables an included file may define.
const INCLUDABLE: &[&str] = &["credentials", "stores", "targets"];

/// The texts read as one document, and where each came from.
#[derive(Debug)]
pub(crate) struct Sources<'t> {
    /// The document: the main file's text alone when it includes nothing (not a copy:
    /// 2.4 MB for 10,000 credentials), else every file's text, each followed by a newline.
    pub text: Cow<'t, str>,
    parts: Vec<Part>,
}

#[derive(Debug)]
struct Part {
    file: String,
    range: Range<usize>,
}

impl Sources<'_> {
    /// The file holding byte `at` of [`Sources::text`], its text and `at` inside it.
    fn part(&self, at: usize) -> (&str, &str, usize) {
        let part = self
            .parts
            .iter()
            .find(|p| p.range.contains(&at))
            .or(self.parts.last())
            .expect("the main file is always a part");
        let local = at.saturating_sub(part.range.start).min(part.range.len());
        (&part.file, &self.text[part.range.clone()], local)
    }

    /// The name of the file holding byte `at`.
    pub(crate) fn file_at(&self, at: usize) -> &str {
        self.part(at).0
    }

    /// `message` about the place `span` of the document, as `file:line:col: message`.
    pub(crate) fn located(&self, span: Option<Range<usize>>, message: &str) -> ConfigError {
        match span {
            Some(span) => {
                let (file, text, start) = self.part(span.start);
                let end = start + span.len();
                super::located_span(file, text, Some(start..end.min(text.len())), message)
            }
            None => super::located_span(self.file_at(0), &self.text, None, message),
        }
    }

    /// Whether any file was included (else [`Sources::text`] is the main file's text).
    pub(crate) fn included_any(&self) -> bool {
        self.parts.len() > 1
    }

    /// The included files, in the order read.
    pub(crate) fn included(&self) -> Vec<PathBuf> {
        self.parts.iter().skip(1).map(|p| PathBuf::from(&p.file)).collect()
    }
}

/// Reads every file that `text` (the main file at `path`, parsed as `main`) includes.
pub(crate) fn sources<'t>(path: &Path, text: &'t str, main: &DeTable<'_>) -> Result<Sources<'t>, ConfigError> {
    let file = path.display().to_string();
    let mut sources = Sources {
        text: Cow::Borrowed(text),
        parts: vec![Part {
            file: file.clone(),
            range: 0..text.len(),
        }],
    };
    let Some(include) = main.get("include") else {
        return Ok(sources);
    };
    sources.text = Cow::Owned(format!("{text}\n"));
    let patterns = patterns(include).map_err(|(span, m)| sources.located(Some(span), &m))?;
    // `-c rekey.toml` has an empty parent: the current directory.
    let base = path
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .map_or_else(|| PathBuf::from("."), Path::to_path_buf);
    let inline_credentials = main
        .get_key_value("credentials")
        .is_some_and(|(key, _)| text[key.span().end..].trim_start().starts_with('='));
    // Where each name was defined first: (kind, name) -> place.
    let mut defined: BTreeMap<(&'static str, String), String> = BTreeMap::new();
    note_definitions(main, &file, text, &mut defined)?;
    for (pattern, span) in patterns {
        let files = expand(&base, &pattern).map_err(|m| sources.located(Some(span.clone()), &m))?;
        for included in files {
            let name = included.display().to_string();
            if sources.parts.iter().any(|p| p.file == name) {
                continue;
            }
            let body = std::fs::read_to_string(&included).map_err(|e| {
                sources.located(
                    Some(span.clone()),
                    &format!("include: cannot read {name}: {}", super::io_reason(&e)),
                )
            })?;
            let parsed = DeTable::parse(&body).map_err(|e| super::located(&name, &body, &e))?;
            check_included(parsed.get_ref(), &name, &body)?;
            if let Some((key, _)) = parsed
                .get_ref()
                .get_key_value("credentials")
                .filter(|_| inline_credentials)
            {
                return Err(super::located_span(
                    &name,
                    &body,
                    Some(key.span()),
                    &format!(
                        "[[credentials]] cannot add to the inline `credentials = [...]` list of {file}: write                          the credentials there as [[credentials]] tables, or move them to an included file"
                    ),
                ));
            }
            note_definitions(parsed.get_ref(), &name, &body, &mut defined)?;
            let start = sources.text.len();
            let document = sources.text.to_mut();
            document.push_str(&body);
            document.push('\n');
            sources.parts.push(Part {
                file: name,
                range: start..start + body.len(),
            });
        }
    }
    Ok(sources)
}

/// Takes `include` out of the document read from [`Sources::text`].
pub(crate) fn take(root: &mut Node<'_>) {
    if let DeValue::Table(table) = root.get_mut() {
        table.remove("include");
    }
}

/// A path or pattern as written, and its place.
type Pattern = (String, Range<usize>);

/// `include` as written: a list of strings with their places.
fn patterns(include: &Spanned<DeValue<'_>>) -> Result<Vec<Pattern>, (Range<usize>, String)> {
    let wrong = || {
        (
            include.span(),
            "`include` must be a list of paths, e.g. include = [\"conf.d/*.toml\"]".to_owned(),
        )
    };
    let DeValue::Array(items) = include.get_ref() else {
        return Err(wrong());
    };
    items
        .iter()
        .map(|item| match item.get_ref().as_str() {
            Some(p) if p.contains('$') => Err((
                item.span(),
                "`include` paths are taken as written: `$` and `${NAME}` are not expanded".to_owned(),
            )),
            Some(p) if !p.trim().is_empty() => Ok((p.to_owned(), item.span())),
            _ => Err(wrong()),
        })
        .collect()
}

/// The files `pattern` names, relative to `base`, sorted.
fn expand(base: &Path, pattern: &str) -> Result<Vec<PathBuf>, String> {
    let full = base.join(pattern);
    let name = full
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let dir = full
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .map_or_else(|| PathBuf::from("."), Path::to_path_buf);
    if dir.to_string_lossy().contains(['*', '?']) {
        return Err(format!(
            "include `{pattern}`: wildcards are allowed in the file name only, not in directories"
        ));
    }
    if !name.contains(['*', '?']) {
        if !full.is_file() {
            return Err(format!("include `{pattern}`: no such file {}", full.display()));
        }
        return Ok(vec![full]);
    }
    let entries = match std::fs::read_dir(&dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return Err(format!(
                "include `{pattern}`: directory {} does not exist (a typo or a missing mount?)",
                dir.display()
            ))
        }
        Err(e) => {
            return Err(format!(
                "include `{pattern}`: cannot list {}: {}",
                dir.display(),
                super::io_reason(&e)
            ))
        }
    };
    let mut found: Vec<PathBuf> = entries
        .filter_map(Result::ok)
        .filter(|e| {
            let n = e.file_name().to_string_lossy().into_owned();
            matches(&name, &n) && e.path().is_file()
        })
        .map(|e| e.path())
        .collect();
    found.sort();
    Ok(found)
}

/// Whether `name` matches `pattern` (`*` any run, `?` one character; a leading `.` only
/// literally).
fn matches(pattern: &str, name: &str) -> bool {
    if name.starts_with('.') && !pattern.starts_with('.') {
        return false;
    }
    let p: Vec<char> = pattern.chars().collect();
    let n: Vec<char> = name.chars().collect();
    // Classic wildcard matching with one backtrack point.
    let (mut pi, mut ni) = (0, 0);
    let mut star: Option<(usize, usize)> = None;
    while ni < n.len() {
        if pi < p.len() && (p[pi] == '?' || p[pi] == n[ni]) {
            pi += 1;
            ni += 1;
        } else if pi < p.len() && p[pi] == '*' {
            star = Some((pi, ni));
            pi += 1;
        } else if let Some((sp, sn)) = star {
            pi = sp + 1;
            ni = sn + 1;
            star = Some((sp, sn + 1));
        } else {
            return false;
        }
    }
    p[pi..].iter().all(|c| *c == '*')
}

/// An included file defines only credentials, stores and target blocks, each under its
/// table header (a key before the first header would belong to the including file's
/// last table).
fn check_included(table: &DeTable<'_>, file: &str, text: &str) -> Result<(), ConfigError> {
    for (key, _) in table.iter() {
        let name: &str = key.get_ref();
        if !INCLUDABLE.contains(&name) {
            let why = match name {
                "include" => "an included file cannot include others (one level of include only)".to_owned(),
                "defaults" => "[defaults] belongs in the main configuration file".to_owned(),
                _ => format!(
                    "an included file holds only [[credentials]], [stores.NAME] and [targets.NAME], not `{name}`"
                ),
            };
            return Err(super::located_span(file, text, Some(key.span()), &why));
        }
    }
    // `[credentials.window]` (or `[credentials]`) with no `[[credentials]]` before it
    // would, once the files are read together, add to the including file's last
    // credential: an included file's credentials are `[[credentials]]` tables only.
    if let Some((key, value)) = table.get_key_value("credentials") {
        if !matches!(value.get_ref(), DeValue::Array(_)) {
            return Err(super::located_span(
                file,
                text,
                Some(key.span()),
                "an included file defines credentials as [[credentials]] tables; a [credentials.KEY] table \
                 before them would change the including file's last credential",
            ));
        }
    }
    let mut offset = 0;
    for line in text.split_inclusive('\n') {
        let trimmed = line.trim();
        if trimmed.is_empty() || trimmed.starts_with('#') {
            offset += line.len();
            continue;
        }
        if !trimmed.starts_with('[') {
            return Err(super::located_span(
                file,
                text,
                Some(offset..offset + line.trim_end().len()),
                "an included file starts with a table header ([[credentials]], [stores.NAME] or [targets.NAME]): \
                 a key before it would belong to the including file's last table",
            ));
        }
        break;
    }
    Ok(())
}

/// Records each credential, store and target block of one file; a name already
/// defined in another file is an error naming both. (Twice in one file is reported
/// by the TOML parser, or for credentials later with the usual message.)
fn note_definitions(
    table: &DeTable<'_>,
    file: &str,
    text: &str,
    defined: &mut BTreeMap<(&'static str, String), String>,
) -> Result<(), ConfigError> {
    let mut found: Vec<(&'static str, String, Range<usize>)> = Vec::new();
    for (kind, section) in [("store", "stores"), ("target block", "targets")] {
        if let Some(DeValue::Table(items)) = table.get(section).map(Spanned::get_ref) {
            for (name, _) in items.iter() {
                found.push((kind, name.get_ref().to_string(), name.span()));
            }
        }
    }
    if let Some(DeValue::Array(items)) = table.get("credentials").map(Spanned::get_ref) {
        for item in items {
            if let Some(name) = item.get_ref().get("name") {
                if let Some(n) = name.get_ref().as_str() {
                    found.push(("credential", n.to_owned(), name.span()));
                }
            }
        }
    }
    let lines = LineStarts::of(text);
    let mut here = BTreeMap::new();
    for (kind, name, span) in found {
        let place = format!("{file}:{}", lines.line(span.start));
        if let Some(first) = defined.get(&(kind, name.clone())) {
            return Err(super::located_span(
                file,
                text,
                Some(span),
                &format!("{kind} `{name}` is defined in two files: here and at {first}"),
            ));
        }
        here.entry((kind, name)).or_insert(place);
    }
    defined.extend(here);
    Ok(())
}

/// Where each line of a text starts, to tell the line of many places in one pass over
/// the text (counting the newlines before each place would be quadratic).
struct LineStarts(Vec<usize>);

impl LineStarts {
    fn of(text: &str) -> LineStarts {
        LineStarts(text.match_indices('\n').map(|(at, _)| at + 1).collect())
    }

    /// The 1-based line holding byte `at`.
    fn line(&self, at: usize) -> usize {
        self.0.partition_point(|&start| start <= at) + 1
    }
}

#[cfg(test)]
mod tests {
    use super::matches;

    #[test]
    fn line_of_a_place() {
        let lines = super::LineStarts::of("a\nbc\n\nd");
        let expected = [1, 1, 2, 2, 2, 3, 4];
        for (at, line) in expected.iter().enumerate() {
            assert_eq!(lines.line(at), *line, "byte {at}");
        }
        assert_eq!(super::LineStarts::of("").line(0), 1);
    }

    #[test]
    fn wildcards() {
        assert!(matches("*.toml", "a.toml"));
        assert!(!matches("*.toml", ".hidden.toml"));
        assert!(matches(".*.toml", ".hidden.toml"));
        assert!(matches("db-?.toml", "db-1.toml"));
        assert!(!matches("db-?.toml", "db-12.toml"));
        assert!(matches("*", "x"));
        assert!(matches("a*b*c", "aXbYc"));
        assert!(!matches("a*b*c", "aXbY"));
        assert!(!matches("*.toml", "a.toml.bak"));
    }
}
