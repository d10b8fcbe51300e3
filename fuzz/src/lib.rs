//! Fuzz targets for rekey's parsers of untrusted text (issue 13, item 9).
//!
//! Each target is a plain function taking any bytes: it returns normally, or panics on a
//! bug. The same functions run two ways:
//!
//! - under libFuzzer, through the binaries in `fuzz_targets/`
//!   (`cargo +nightly fuzz run <target> -- -max_total_time=60`);
//! - on the stable toolchain, through [`harness::run`]: the seed corpus in
//!   `fuzz/corpus/<target>/` plus a bounded, deterministic stream of generated and
//!   mutated inputs (`cargo test --manifest-path fuzz/Cargo.toml`).
//!
//! Beyond "no panic, no hang", every target checks properties the code documents, such
//! as "a configuration error is one line and never shows a value from the environment",
//! "a candidate's `Debug` never shows its value", or "a store file a write accepted reads
//! back whole". See each module.
//!
//! | target | what it feeds |
//! |---|---|
//! | `config_text` | [`rekey::config::Config::parse`] on arbitrary text |
//! | `config_structured` | the same on valid configurations with random mutations |
//! | `leaked_extract` | [`rekey::leaked::extract`] with every [`rekey::leaked::Source`] |
//! | `file_store` | [`rekey_file::FileStore::open`], `read` and one write on a store file holding the input |
//! | `exec_response` | [`rekey_exec::parse_answer`] on the input as a plugin's stdout, stderr and exit status |

#![forbid(unsafe_code)]

pub mod config;
pub mod exec;
pub mod file_store;
pub mod harness;
pub mod leaked;

/// A fuzz target: takes any bytes; returns normally, or panics on a bug.
pub type Target = fn(&[u8]);

/// Every target, with what the stable driver needs to feed it.
pub const PLANS: &[harness::Plan] = &[
    harness::Plan {
        name: "config_text",
        target: config::config_text,
        dictionary: config::DICTIONARY,
        generate: Some(config::generate_text),
    },
    harness::Plan {
        name: "config_structured",
        target: config::config_structured,
        dictionary: &[],
        generate: Some(config::generate_instructions),
    },
    harness::Plan {
        name: "leaked_extract",
        target: leaked::leaked_extract,
        dictionary: leaked::DICTIONARY,
        generate: Some(leaked::generate),
    },
    harness::Plan {
        name: "file_store",
        target: file_store::file_store,
        dictionary: file_store::DICTIONARY,
        generate: Some(file_store::generate),
    },
    harness::Plan {
        name: "exec_response",
        target: exec::exec_response,
        dictionary: exec::DICTIONARY,
        generate: Some(exec::generate),
    },
];

/// The plan of the target called `name`.
pub fn plan(name: &str) -> Option<&'static harness::Plan> {
    PLANS.iter().find(|p| p.name == name)
}
