//! The entry point: [`extract`].

use super::candidate::{Candidate, ExtractError, Source};
use super::collect::Collector;
use super::scanner;
use super::text::{aws_key_ids, extract_text};

/// Every candidate secret in `input`, deduplicated by value (each keeps the origin it was
/// first found with), in a stable order: the order in which the forms find them, line by
/// line, with the whole input (`bare`) last. See the [module docs](super) for the forms
/// and the noise rules.
///
/// Errors: [`ExtractError::Empty`] when the input is only whitespace;
/// [`ExtractError::Scanner`] when `source` is a scanner and its output does not parse.
/// An input in which nothing is found gives an empty list, not an error. Never panics.
pub fn extract(input: &str, source: Source) -> Result<Vec<Candidate>, ExtractError> {
    if input.trim().is_empty() {
        return Err(ExtractError::Empty);
    }
    let mut out = Collector::new(input.len(), aws_key_ids(input).next().is_some());
    match source {
        Source::Text => extract_text(input, true, &mut out),
        Source::Trufflehog => scanner::trufflehog(input, &mut out)?,
        Source::Gitleaks => scanner::gitleaks(input, &mut out)?,
    }
    Ok(out.finish())
}
