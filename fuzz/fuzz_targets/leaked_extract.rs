//! Fuzz target `leaked_extract`: [`rekey::leaked::extract`] with every source.
//!
//! Under cargo-fuzz (nightly, `--cfg fuzzing`) this is a libFuzzer target:
//! `cargo +nightly fuzz run leaked_extract -- -max_total_time=60`. On stable it replays the
//! files or directories given as arguments (default: `fuzz/corpus/leaked_extract/`):
//! `cargo run --manifest-path fuzz/Cargo.toml --bin leaked_extract -- FILE...`.

#![cfg_attr(fuzzing, no_main)]

#[cfg(fuzzing)]
libfuzzer_sys::fuzz_target!(|data: &[u8]| rekey_fuzz::leaked::leaked_extract(data));

#[cfg(not(fuzzing))]
fn main() {
    rekey_fuzz::harness::replay_main("leaked_extract", rekey_fuzz::leaked::leaked_extract);
}
