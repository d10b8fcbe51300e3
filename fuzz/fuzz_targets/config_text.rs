//! Fuzz target `config_text`: [`rekey::config::Config::parse`] on arbitrary text.
//!
//! Under cargo-fuzz (nightly, `--cfg fuzzing`) this is a libFuzzer target:
//! `cargo +nightly fuzz run config_text -- -max_total_time=60`. On stable it replays the
//! files or directories given as arguments (default: `fuzz/corpus/config_text/`):
//! `cargo run --manifest-path fuzz/Cargo.toml --bin config_text -- FILE...`.

#![cfg_attr(fuzzing, no_main)]

#[cfg(fuzzing)]
libfuzzer_sys::fuzz_target!(|data: &[u8]| rekey_fuzz::config::config_text(data));

#[cfg(not(fuzzing))]
fn main() {
    rekey_fuzz::harness::replay_main("config_text", rekey_fuzz::config::config_text);
}
