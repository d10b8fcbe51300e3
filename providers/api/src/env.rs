//! `${NAME}` references to the environment inside configuration strings.

/// A reference that could not be resolved.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EnvError {
    /// The variable is not set (or not valid UTF-8).
    #[error("environment variable `{0}` is not set")]
    Missing(String),
    /// `${` without a closing `}` or with an invalid name.
    #[error("malformed environment reference in `{0}` (write ${{NAME}}; `$$` for a literal `$`)")]
    Malformed(String),
}

/// Expands every `${NAME}` in `input` using `lookup`; `$$` is a literal `$`. Any other
/// `$` is kept as it is. The error names the variable, never its value.
pub fn expand_with(input: &str, lookup: impl Fn(&str) -> Option<String>) -> Result<String, EnvError> {
    let mut out = String::with_capacity(input.len());
    let mut rest = input;
    while let Some(pos) = rest.find('$') {
        out.push_str(&rest[..pos]);
        let after = &rest[pos + 1..];
        if let Some(stripped) = after.strip_prefix('$') {
            out.push('$');
            rest = stripped;
        } else if let Some(body) = after.strip_prefix('{') {
            let end = body.find('}').ok_or_else(|| EnvError::Malformed(input_shape(input)))?;
            let name = &body[..end];
            let valid = !name.is_empty()
                && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
                && !name.starts_with(|c: char| c.is_ascii_digit());
            if !valid {
                return Err(EnvError::Malformed(input_shape(input)));
            }
            let value = lookup(name).ok_or_else(|| EnvError::Missing(name.to_owned()))?;
            out.push_str(&value);
            rest = &body[end + 1..];
        } else {
            out.push('$');
            rest = after;
        }
    }
    out.push_str(rest);
    Ok(out)
}

/// Expands references from the process environment.
pub fn expand(input: &str) -> Result<String, EnvError> {
    expand_with(input, |name| std::env::var(name).ok())
}

/// The configured text, which holds names rather than values, shortened for messages.
fn input_shape(input: &str) -> String {
    input.chars().take(60).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lookup(name: &str) -> Option<String> {
        (name == "A").then(|| "x".to_owned())
    }

    #[test]
    fn expands_and_escapes() {
        assert_eq!(expand_with("a${A}b$$c$d", lookup).unwrap(), "axb$c$d");
        assert_eq!(expand_with("${B}", lookup), Err(EnvError::Missing("B".into())));
        assert!(matches!(expand_with("${A", lookup), Err(EnvError::Malformed(_))));
        assert!(matches!(expand_with("${1A}", lookup), Err(EnvError::Malformed(_))));
    }
}
