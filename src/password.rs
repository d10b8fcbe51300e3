//! Password generation under a credential's policy.

use rand::rngs::{OsRng, StdRng};
use rand::{Rng, SeedableRng};
use rekey_api::Secret;
use serde::Deserialize;
use std::collections::BTreeSet;

/// Characters that are safe unquoted inside URLs, DSNs and shell strings.
const LOWER: &str = "abcdefghijklmnopqrstuvwxyz";
const UPPER: &str = "ABCDEFGHIJKLMNOPQRSTUVWXYZ";
const DIGIT: &str = "0123456789";
const DEFAULT_SYMBOLS: &str = "-_";

/// A class of characters a password may be required to contain.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum CharClass {
    /// `a`-`z`
    Lower,
    /// `A`-`Z`
    Upper,
    /// `0`-`9`
    Digit,
    /// the policy's `symbols` (default `-_`)
    Symbol,
}

/// `password = { length = 32, require = ["lower", "upper", "digit"], exclude = "0O1lI", symbols = "-_" }`.
/// Every field is optional; a credential's policy overrides `[defaults]` field by field.
#[derive(Debug, Clone, Default, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct PasswordPolicyConfig {
    /// Length in characters (default 32).
    pub length: Option<usize>,
    /// Classes that must each appear at least once (default lower, upper, digit).
    pub require: Option<Vec<CharClass>>,
    /// Characters never used.
    pub exclude: Option<String>,
    /// The symbol class's characters (default `-_`; empty for none).
    pub symbols: Option<String>,
}

impl PasswordPolicyConfig {
    /// This policy with unset fields taken from `base`.
    pub fn over(&self, base: &PasswordPolicyConfig) -> PasswordPolicyConfig {
        PasswordPolicyConfig {
            length: self.length.or(base.length),
            require: self.require.clone().or_else(|| base.require.clone()),
            exclude: self.exclude.clone().or_else(|| base.exclude.clone()),
            symbols: self.symbols.clone().or_else(|| base.symbols.clone()),
        }
    }

    /// Checks the policy and builds its alphabet. Refused, with the reason: a length
    /// outside [`MIN_LENGTH`]`..=`[`MAX_LENGTH`], symbols that are not printable ASCII, a
    /// required class whose every character is excluded (or, for `symbol`, an empty
    /// `symbols`), an empty alphabet, or fewer characters than required classes. (With
    /// at least 8 characters from at most 94, every required class appears in a uniform
    /// draw often enough that generation, which redraws until all do, ends quickly.)
    pub fn resolve(&self) -> Result<PasswordPolicy, String> {
        let length = self.length.unwrap_or(32);
        if !(MIN_LENGTH..=MAX_LENGTH).contains(&length) {
            return Err(format!(
                "password length {length} is out of range {MIN_LENGTH}..={MAX_LENGTH}"
            ));
        }
        let exclude: BTreeSet<char> = self.exclude.as_deref().unwrap_or("").chars().collect();
        let symbols = self.symbols.as_deref().unwrap_or(DEFAULT_SYMBOLS);
        if let Some(bad) = symbols
            .chars()
            .find(|c| c.is_whitespace() || c.is_control() || !c.is_ascii())
        {
            return Err(format!("password symbols must be printable ASCII, got {bad:?}"));
        }
        let require = self
            .require
            .clone()
            .unwrap_or_else(|| vec![CharClass::Lower, CharClass::Upper, CharClass::Digit]);
        let class_chars = |class: CharClass| -> BTreeSet<char> {
            let source = match class {
                CharClass::Lower => LOWER,
                CharClass::Upper => UPPER,
                CharClass::Digit => DIGIT,
                CharClass::Symbol => symbols,
            };
            source.chars().filter(|c| !exclude.contains(c)).collect()
        };
        let mut alphabet = BTreeSet::new();
        let mut required = Vec::new();
        for class in [CharClass::Lower, CharClass::Upper, CharClass::Digit, CharClass::Symbol] {
            let chars = class_chars(class);
            if require.contains(&class) {
                if chars.is_empty() {
                    return Err(if class == CharClass::Symbol && symbols.is_empty() {
                        "password class symbol is required but `symbols` is empty".to_owned()
                    } else {
                        format!(
                            "password class {} is required but every character of it is excluded",
                            class.name()
                        )
                    });
                }
                required.push(chars.iter().copied().collect::<Vec<char>>());
            }
            alphabet.extend(chars);
        }
        if alphabet.is_empty() {
            return Err("password alphabet is empty: every character is excluded".to_owned());
        }
        if required.len() > length {
            return Err(format!(
                "password length {length} is shorter than the {} required classes",
                required.len()
            ));
        }
        Ok(PasswordPolicy {
            length,
            alphabet: alphabet.into_iter().collect(),
            required: required.into(),
        })
    }
}

/// The shortest password a policy may ask for.
pub const MIN_LENGTH: usize = 8;
/// The longest password a policy may ask for.
pub const MAX_LENGTH: usize = 1024;

impl CharClass {
    /// The configuration spelling.
    pub fn name(self) -> &'static str {
        match self {
            CharClass::Lower => "lower",
            CharClass::Upper => "upper",
            CharClass::Digit => "digit",
            CharClass::Symbol => "symbol",
        }
    }
}

/// A checked policy, ready to generate.
#[derive(Debug, Clone)]
pub struct PasswordPolicy {
    length: usize,
    // Shared by the clones: 10,000 credentials with one policy hold one alphabet.
    alphabet: std::sync::Arc<[char]>,
    required: std::sync::Arc<[Vec<char>]>,
}

impl PasswordPolicy {
    /// A new password from a CSPRNG seeded by the operating system: uniform over the alphabet,
    /// redrawn until every required class appears (rejection keeps it uniform over the
    /// passwords the policy allows).
    pub fn generate(&self) -> Secret {
        // One seed from the operating system per password, expanded by ChaCha (a CSPRNG),
        // rather than one system call per character.
        let mut rng = StdRng::from_rng(OsRng).expect("the operating system's random source works");
        loop {
            let candidate: String = (0..self.length)
                .map(|_| self.alphabet[rng.gen_range(0..self.alphabet.len())])
                .collect();
            if self
                .required
                .iter()
                .all(|class| candidate.chars().any(|c| class.contains(&c)))
            {
                return Secret::new(candidate);
            }
            let mut discard = candidate;
            zeroize::Zeroize::zeroize(&mut discard);
        }
    }

    /// The configured length.
    pub fn length(&self) -> usize {
        self.length
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_policy_is_url_and_shell_safe() {
        let policy = PasswordPolicyConfig::default().resolve().unwrap();
        for _ in 0..200 {
            let p = policy.generate();
            assert_eq!(p.len(), 32);
            assert!(p
                .expose()
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_'));
            assert!(p.expose().chars().any(|c| c.is_ascii_lowercase()));
            assert!(p.expose().chars().any(|c| c.is_ascii_uppercase()));
            assert!(p.expose().chars().any(|c| c.is_ascii_digit()));
        }
    }

    #[test]
    fn exclusions_and_required_symbols() {
        let cfg = PasswordPolicyConfig {
            length: Some(12),
            require: Some(vec![CharClass::Digit, CharClass::Symbol]),
            exclude: Some("0123456789".replace('7', "")),
            symbols: Some("!".into()),
        };
        let policy = cfg.resolve().unwrap();
        for _ in 0..100 {
            let p = policy.generate();
            assert!(p.expose().contains('7') && p.expose().contains('!'));
            assert!(!p.expose().contains('0'));
        }
    }

    #[test]
    fn impossible_policies_are_refused() {
        let all_digits_excluded = PasswordPolicyConfig {
            exclude: Some(DIGIT.into()),
            ..Default::default()
        };
        assert!(all_digits_excluded.resolve().is_err());
        let too_short = PasswordPolicyConfig {
            length: Some(4),
            ..Default::default()
        };
        assert!(too_short.resolve().is_err());
    }

    #[test]
    fn impossible_password_policies_are_refused_with_the_reason() {
        let refused = |cfg: PasswordPolicyConfig| cfg.resolve().expect_err("refused");
        let e = refused(PasswordPolicyConfig {
            length: Some(0),
            ..Default::default()
        });
        assert!(e.contains("length 0"), "{e}");
        let e = refused(PasswordPolicyConfig {
            length: Some(1025),
            ..Default::default()
        });
        assert!(e.contains("1025") && e.contains("1024"), "{e}");
        let e = refused(PasswordPolicyConfig {
            exclude: Some(UPPER.into()),
            ..Default::default()
        });
        assert!(e.contains("class upper is required"), "{e}");
        let e = refused(PasswordPolicyConfig {
            require: Some(vec![CharClass::Symbol]),
            symbols: Some(String::new()),
            ..Default::default()
        });
        assert!(e.contains("`symbols` is empty"), "{e}");
        let e = refused(PasswordPolicyConfig {
            require: Some(vec![]),
            exclude: Some(format!("{LOWER}{UPPER}{DIGIT}-_")),
            ..Default::default()
        });
        assert!(e.contains("alphabet is empty"), "{e}");
    }

    #[test]
    fn duplicate_characters_do_not_skew_the_alphabet() {
        let policy = PasswordPolicyConfig {
            symbols: Some("aa-".into()),
            ..Default::default()
        }
        .resolve()
        .unwrap();
        assert_eq!(policy.alphabet.len(), 26 + 26 + 10 + 1);
    }

    #[test]
    fn credential_policy_overrides_defaults_per_field() {
        let base = PasswordPolicyConfig {
            length: Some(40),
            exclude: Some("a".into()),
            ..Default::default()
        };
        let own = PasswordPolicyConfig {
            length: Some(20),
            ..Default::default()
        };
        let merged = own.over(&base);
        assert_eq!(merged.length, Some(20));
        assert_eq!(merged.exclude.as_deref(), Some("a"));
    }
}
