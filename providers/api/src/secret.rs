//! [`Secret`]: a string that cannot be displayed, serialized or logged by accident.

use std::fmt;
use zeroize::Zeroizing;

/// A secret string (a password, a key). It has no `Display` and no `Serialize`; its
/// `Debug` prints `Secret(***)`; its memory is zeroized on drop. Read it only with
/// [`Secret::expose`], at the point where it must leave the process (a login, a hash).
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(Zeroizing<String>);

impl Secret {
    /// Wraps a value, taking ownership so that no unzeroized copy remains with the caller.
    pub fn new(value: String) -> Self {
        Secret(Zeroizing::new(value))
    }

    /// The plain value. Every call site is a place where the secret leaves rekey's care.
    pub fn expose(&self) -> &str {
        &self.0
    }

    /// Length in bytes (safe to report).
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// Whether the secret is the empty string.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl From<String> for Secret {
    fn from(value: String) -> Self {
        Secret::new(value)
    }
}

impl From<&str> for Secret {
    fn from(value: &str) -> Self {
        Secret::new(value.to_owned())
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(***)")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_redacts() {
        let s = Secret::from("hunter2-very-secret");
        assert_eq!(format!("{s:?}"), "Secret(***)");
        assert_eq!(format!("{:?}", Some(&s)), "Some(Secret(***))");
    }
}
