//! What leaked: every candidate secret in an artefact as a responder pastes it.
//!
//! In an incident the responder pastes what was found, not the bare value: a
//! `DATABASE_URL=postgresql://app:PW@db:5432/x` line, `export DB_PASS="PW"`, a JSON or
//! YAML snippet, a log line, a whole `.env` file, a secret scanner's report. [`extract`]
//! turns any of these into a list of [`Candidate`]s; the caller compares each one with
//! the stored secrets using [`matches`] (constant time) and shows it only as its
//! [`fingerprint`].
//!
//! # Recall first
//!
//! A missed value costs an incident; an extra candidate costs one constant-time
//! comparison. So the forms below over-collect: a quoted string may be read under
//! several quoting rules, a URL's password is taken both percent-decoded and as written,
//! and the whole input is always a candidate too. The consequence for the caller:
//! **candidates include values that are not secret**, so compare them with a stored
//! credential's secret fields (`password`, secret keys) and with identifiers that name
//! the leaked credential (`access_key_id`), not with `host`, `username`, `dbname` or
//! options, which many credentials share.
//!
//! # Forms ([`Source::Text`])
//!
//! - **JSON** (`json`): every object or array anywhere in the text (the whole input, or
//!   one inside a log line), at any depth: every string value, and numbers of 8 digits
//!   or more. Strings are searched further like any value (below).
//! - **`.env` and shell** (`env`): `KEY=value`, `KEY="value"`, `KEY='value'`, with an
//!   optional `export`, `set`, `ENV`, `$env:`, `declare -x`, `local` or `readonly`;
//!   `key = value` lines of INI and TOML files too. Unquoted values lose a ` # comment`;
//!   a value with spaces is taken whole and as its first word.
//! - **YAML** (`yaml`): `key: value`, `key: "value"`, `"key": value` at any indentation,
//!   and `- value` list items. Block scalars (`|`, `>`) are not read.
//! - **URLs and DSNs** of any scheme (`url-userinfo`, `url-query`): the user info's
//!   password, percent-decoded and raw (a lone user name too, as in
//!   `https://TOKEN@github.com`); an unencoded `/ ? # @` in a password is handled by
//!   also reading the user info up to the last `@`. Every query parameter except those
//!   under public keys, decoded (with `+` as a space too) and raw.
//! - **`key=value` pairs** anywhere in a line (`key-value`) when the key names a secret:
//!   libpq (`host=db user=app password='p w'`), ADO.NET/ODBC (`Server=x;Password=PW;`,
//!   `PWD={...}`), flags (`--password=PW`, `--password PW`), `password: PW` mid-line,
//!   directives such as `requirepass PW`, and `Authorization: Bearer TOKEN` (an HTTP
//!   Basic credential is decoded to its password). Keys are case-insensitive; values may
//!   be single- or double-quoted.
//! - **Quoted strings** of at least 8 characters anywhere (`quoted`): `"..."`, `'...'`
//!   and `` `...` ``, as in `connecting with password "PW"`.
//! - **AWS** (`aws-access-key-id`): `AKIA`/`ASIA` + 16 of `A-Z0-9` anywhere; it names
//!   the IAM key that holds the leaked secret. When the input holds one, 40-character
//!   tokens of `A-Za-z0-9/+` are taken as secret access keys (`aws-secret-access-key`),
//!   as in the console's `accessKeys.csv`.
//! - **Bare** (`bare`): the whole input, trimmed, is always a candidate, listed last (so
//!   a one-line input with no structure is the single candidate); when it is wrapped in
//!   quotes, its unquoted readings too; a one-line input is also kept with its
//!   surrounding spaces. In a multi-line input, a line that is a single token and matched
//!   no other form is a candidate.
//!
//! Lines are read with a leading `#`, `//`, `;` or `>` removed: a commented-out secret
//! is still a leaked one. A value found in a form is searched again, up to three levels
//! deep, for URLs, `key=value` pairs, JSON text and AWS key ids.
//!
//! Quoted values are read under every plausible rule: raw, with shell escapes, with
//! YAML/JSON escapes (`\n`), with a doubled quote standing for itself.
//!
//! # Scanners
//!
//! - [`Source::Trufflehog`]: `trufflehog --json` output, one object per line: `Raw` and
//!   `RawV2` are candidates, both halves of an `id:secret` value (AWS's `RawV2`), and the
//!   text forms run over both (a URI detector's `Raw` is a URL). Lines that are JSON
//!   objects without `Raw` (log lines) are skipped.
//! - [`Source::Gitleaks`]: a gitleaks JSON report (an array of findings): `Secret` is a
//!   candidate, and the text forms run over `Secret` and `Match`.
//!
//! A report that does not parse is an [`ExtractError::Scanner`] naming the line.
//!
//! # Noise rules
//!
//! Dropped: values shorter than 4 characters; `true`, `false`, `null`, `none`,
//! `undefined`, `redacted` (any case); numbers of fewer than 8 digits; all-`*` masks;
//! variable references `${NAME}` and templates `{{ ... }}`; values found only under a
//! key that clearly names something public (`host`, `hostname`, `server`, `port`,
//! `user`, `username`, `db`, `dbname`, `database`, `schema`, `name`, `sslmode`,
//! `engine`, `region`, `driver`, `charset`, `timeout`, as the key's last word, or
//! `PGHOST`-style endings) unless the key also names a secret (`DB_PASSWORD_USER` keeps
//! its value) or the same value is also found under a secret-like key.
//!
//! # Hygiene
//!
//! Every intermediate copy of a value is held in [`zeroize::Zeroizing`] or moved into a
//! [`rekey_api::Secret`]; [`Candidate`]'s `Debug` shows `Secret(***)`; errors name a line
//! and a reason, never the input. (serde_json's own parse buffers are outside this
//! module's reach.) [`extract`] never panics, whatever the input.

mod candidate;
mod collect;
mod extract;
mod json;
mod quote;
mod scanner;
mod text;
mod url;

#[cfg(test)]
mod tests;

pub use candidate::{fingerprint, matches, Candidate, ExtractError, Origin, Source};
pub use extract::extract;
