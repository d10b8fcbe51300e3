//! Parsing a long configuration in pieces, one `[[credentials]]` table at a time
//! (issue 11).
//!
//! The TOML parser keeps every token and every parse event of the text it is given
//! until it has built the document: for 10,000 credentials (2.4 MB) that was about
//! 40 MB on top of the document itself, most of the memory a `validate` used. Split
//! before each line that starts with `[[credentials]]`, each piece is parsed alone, its
//! places moved to where the piece is in the whole text, and the credentials put
//! together in one array: the same document, with the same places, as parsing the
//! whole text at once.
//!
//! Only a plain layout is read in pieces: the text before the first `[[credentials]]`
//! does not define `credentials`, and each piece defines nothing but its credential
//! (its own sub-tables included). Anything else — and any piece that does not parse,
//! such as one cut inside a multi-line string — makes the whole text parsed at once,
//! so that what is accepted, and every error with its place, stays exactly as it was.

use toml::de::{DeTable, DeValue};
use toml::Spanned;

/// Below this many `[[credentials]]` tables the text is parsed at once.
const MIN_PIECES: usize = 64;

/// The line that starts a piece.
const HEADER: &str = "[[credentials]]";

/// The document of `text`, as [`DeTable::parse`] gives it.
pub(crate) fn parse(text: &str) -> Result<Spanned<DeTable<'_>>, toml::de::Error> {
    match in_pieces(text) {
        Some(document) => Ok(document),
        None => DeTable::parse(text),
    }
}

/// Where each line starting with `[[credentials]]` (after spaces) starts.
fn header_lines(text: &str) -> Vec<usize> {
    let mut starts = Vec::new();
    let mut at = 0;
    for line in text.split_inclusive('\n') {
        if line.trim_start_matches([' ', '\t']).starts_with(HEADER) {
            starts.push(at);
        }
        at += line.len();
    }
    starts
}

/// The document read piece by piece, or `None` when it must be read at once.
fn in_pieces(text: &str) -> Option<Spanned<DeTable<'_>>> {
    let starts = header_lines(text);
    if starts.len() < MIN_PIECES {
        return None;
    }
    let mut document = DeTable::parse(&text[..starts[0]]).ok()?;
    if document.get_ref().contains_key("credentials") {
        return None;
    }
    let mut credentials: Option<(Spanned<toml::de::DeString<'_>>, Spanned<DeValue<'_>>)> = None;
    for (i, &start) in starts.iter().enumerate() {
        let end = starts.get(i + 1).copied().unwrap_or(text.len());
        let piece = DeTable::parse(&text[start..end]).ok()?.into_inner();
        let mut entries = piece.into_iter();
        let (key, value) = entries.next()?;
        if entries.next().is_some() || key.get_ref() != "credentials" {
            return None;
        }
        let value = moved(value, start);
        match &mut credentials {
            None => {
                let span = key.span();
                let key = Spanned::new(span.start + start..span.end + start, key.into_inner());
                credentials = Some((key, value));
            }
            Some((_, all)) => {
                let (DeValue::Array(all), DeValue::Array(items)) = (all.get_mut(), value.into_inner()) else {
                    return None;
                };
                for item in items {
                    all.push(item);
                }
            }
        }
    }
    let (key, value) = credentials?;
    if !matches!(value.get_ref(), DeValue::Array(_)) {
        return None;
    }
    document.get_mut().insert(key, value);
    Some(document)
}

/// Configuration texts at least this long are followed by [`release_freed_memory`].
pub(crate) const LARGE_TEXT: usize = 256 * 1024;

/// Gives the memory freed after loading a large configuration back to the operating
/// system. Reading 10,000 credentials peaks at about 40 MB of heap (the parsed
/// document, freed before the configuration is built), and the C allocator keeps freed
/// memory mapped: the rest of the run allocates mostly on other threads (the async
/// runtime's workers, other malloc arenas), so without this the freed pages stayed in
/// the process's resident size until it exited (`status` over 10,000: 83 -> 80 MB).
#[cfg(all(target_os = "linux", target_env = "gnu"))]
#[allow(unsafe_code)] // one libc call; SAFETY comment at the block
pub(crate) fn release_freed_memory() {
    // SAFETY: malloc_trim only returns free memory of the allocator's own heaps to the
    // system (madvise); it is thread-safe and touches no memory in use.
    unsafe {
        libc::malloc_trim(0);
    }
}

/// Other C libraries: nothing to do (or nothing this knows how to do).
#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
pub(crate) fn release_freed_memory() {}

/// `node` with every place in it (its own, its keys', its items') `by` bytes later.
fn moved(node: Spanned<DeValue<'_>>, by: usize) -> Spanned<DeValue<'_>> {
    let span = node.span();
    let mut value = node.into_inner();
    match &mut value {
        DeValue::Table(table) => {
            for (key, item) in std::mem::take(table) {
                let at = key.span();
                table.insert(
                    Spanned::new(at.start + by..at.end + by, key.into_inner()),
                    moved(item, by),
                );
            }
        }
        DeValue::Array(items) => {
            for item in items.iter_mut() {
                let taken = std::mem::replace(item, Spanned::new(0..0, DeValue::Boolean(false)));
                *item = moved(taken, by);
            }
        }
        _ => {}
    }
    Spanned::new(span.start + by..span.end + by, value)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Asserts that two documents are the same, places included.
    fn same(a: &Spanned<DeValue<'_>>, b: &Spanned<DeValue<'_>>, path: &str) {
        assert_eq!(a.span(), b.span(), "place of {path}");
        match (a.get_ref(), b.get_ref()) {
            (DeValue::Table(x), DeValue::Table(y)) => {
                let xs: Vec<_> = x.iter().collect();
                let ys: Vec<_> = y.iter().collect();
                assert_eq!(xs.len(), ys.len(), "keys of {path}");
                for ((kx, vx), (ky, vy)) in xs.into_iter().zip(ys) {
                    assert_eq!(kx.get_ref(), ky.get_ref(), "key order of {path}");
                    assert_eq!(kx.span(), ky.span(), "place of key {path}.{}", kx.get_ref());
                    same(vx, vy, &format!("{path}.{}", kx.get_ref()));
                }
            }
            (DeValue::Array(x), DeValue::Array(y)) => {
                assert_eq!(x.len(), y.len(), "items of {path}");
                for (i, (vx, vy)) in x.iter().zip(y.iter()).enumerate() {
                    same(vx, vy, &format!("{path}[{i}]"));
                }
            }
            (x, y) => assert_eq!(format!("{x:?}"), format!("{y:?}"), "value of {path}"),
        }
    }

    fn same_as_at_once(text: &str) {
        let whole = DeTable::parse(text).unwrap();
        let pieces = in_pieces(text).expect("read in pieces");
        let whole = Spanned::new(whole.span(), DeValue::Table(whole.into_inner()));
        let pieces = Spanned::new(pieces.span(), DeValue::Table(pieces.into_inner()));
        same(&pieces, &whole, "");
    }

    fn credential(i: usize) -> String {
        let extra = match i % 5 {
            0 => "tags = [\"a\", \"b\"]  # trailing comment\n".to_owned(),
            1 => "\n[credentials.window]\ndays = [\"mon\"]\nhours = \"09-17\"\n".to_owned(),
            2 => "description = \"\"\"\nline one\n  [[not-a-header]]\n\"\"\"\non_rotate = [\n  [\"systemctl\", \"reload\", \"x\"],\n]\n"
                .to_owned(),
            3 => "\n  # indented header next\n".to_owned(),
            _ => "password = { length = 40 }\n".to_owned(),
        };
        let indent = if i % 7 == 3 { "  " } else { "" };
        format!(
            "{indent}[[credentials]]\nname = \"c{i}\"\nkey = \"app/{i}\"\n\
             target = {{ type = \"postgres\", host = \"127.0.0.1\", port = 5432, username = \"u{i}\", admin = \"${{ADMIN}}\" }}\n{extra}\n"
        )
    }

    fn document(n: usize) -> String {
        let mut text = String::from(
            "# rekey\n[defaults]\nparallel = 4\nstore = \"local\"\n\n[stores.local]\ntype = \"file\"\npath = \"s.json\"\n\n\
             [targets.pg]\ntype = \"postgres\"\nhost = \"db\"\n\n",
        );
        for i in 0..n {
            text.push_str(&credential(i));
        }
        text
    }

    #[test]
    fn pieces_give_the_document_of_the_whole_text() {
        same_as_at_once(&document(MIN_PIECES + 13));
        // Windows line ends, and no newline at the end.
        same_as_at_once(&document(MIN_PIECES).replace('\n', "\r\n"));
        same_as_at_once(document(MIN_PIECES).trim_end());
    }

    #[test]
    fn few_credentials_are_read_at_once() {
        assert!(in_pieces(&document(MIN_PIECES - 1)).is_none());
    }

    /// What only the whole text can tell is read at once: the same result, or the same
    /// error at the same place.
    #[test]
    fn other_layouts_and_errors_are_read_at_once() {
        let base = document(MIN_PIECES + 1);
        // A table after the credentials.
        let text = format!("{base}[stores.late]\ntype = \"file\"\npath = \"l.json\"\n");
        assert!(in_pieces(&text).is_none());
        assert!(parse(&text)
            .unwrap()
            .get_ref()
            .get("stores")
            .unwrap()
            .get_ref()
            .get("late")
            .is_some());
        // `credentials` defined before the first header: an error for the whole text.
        let text = format!("credentials = []\n{base}");
        assert!(in_pieces(&text).is_none());
        assert_eq!(
            parse(&text).unwrap_err().to_string(),
            DeTable::parse(&text).unwrap_err().to_string()
        );
        // A header inside a multi-line string is no place to cut.
        let text = base.replacen("line one\n", "line one\n[[credentials]]\n", 1);
        assert!(in_pieces(&text).is_none());
        same(
            &{
                let d = parse(&text).unwrap();
                Spanned::new(d.span(), DeValue::Table(d.into_inner()))
            },
            &{
                let d = DeTable::parse(&text).unwrap();
                Spanned::new(d.span(), DeValue::Table(d.into_inner()))
            },
            "",
        );
        // A syntax error in one credential: the error of the whole text, at its place.
        let text = base.replacen("key = \"app/40\"", "key = \"app/40", 1);
        let e = parse(&text).unwrap_err();
        let whole = DeTable::parse(&text).unwrap_err();
        assert_eq!((e.to_string(), e.span()), (whole.to_string(), whole.span()));
        // A name defined twice across pieces stays the later check's business; a key
        // defined twice inside one is the parser's error.
        let text = base.replacen("key = \"app/40\"", "key = \"app/40\"\nkey = \"again\"", 1);
        assert_eq!(
            parse(&text).unwrap_err().to_string(),
            DeTable::parse(&text).unwrap_err().to_string()
        );
    }
}
