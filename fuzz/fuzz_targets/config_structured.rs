//! Fuzz target `config_structured`: [`rekey::config::Config::parse`] on valid configurations with random mutations.
//!
//! Under cargo-fuzz (nightly, `--cfg fuzzing`) this is a libFuzzer target:
//! `cargo +nightly fuzz run config_structured -- -max_total_time=60`. On stable it replays the
//! files or directories given as arguments (default: `fuzz/corpus/config_structured/`):
//! `cargo run --manifest-path fuzz/Cargo.toml --bin config_structured -- FILE...`.

#![cfg_attr(fuzzing, no_main)]

#[cfg(fuzzing)]
libfuzzer_sys::fuzz_target!(|data: &[u8]| rekey_fuzz::config::config_structured(data));

#[cfg(not(fuzzing))]
fn main() {
    rekey_fuzz::harness::replay_main("config_structured", rekey_fuzz::config::config_structured);
}
