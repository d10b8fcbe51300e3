//! Rotation strategies.

use serde::Deserialize;
use std::fmt;

/// How a target moves from the old secret to the new one.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum Strategy {
    /// One user; the new password replaces the old one at apply.
    #[default]
    Single,
    /// The target holds two secrets at once; the old one is removed at revoke.
    Dual,
    /// Two users take turns; the idle one gets the new secret.
    Alternating,
}

impl Strategy {
    /// The configuration spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            Strategy::Single => "single",
            Strategy::Dual => "dual",
            Strategy::Alternating => "alternating",
        }
    }
}

impl fmt::Display for Strategy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}
