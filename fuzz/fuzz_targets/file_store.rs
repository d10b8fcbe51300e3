//! Fuzz target `file_store`: the file store's on-disk JSON, through `rekey_file::FileStore`.
//!
//! Under cargo-fuzz (nightly, `--cfg fuzzing`) this is a libFuzzer target:
//! `cargo +nightly fuzz run file_store -- -max_total_time=60`. On stable it replays the
//! files or directories given as arguments (default: `fuzz/corpus/file_store/`):
//! `cargo run --manifest-path fuzz/Cargo.toml --bin file_store -- FILE...`.

#![cfg_attr(fuzzing, no_main)]

#[cfg(fuzzing)]
libfuzzer_sys::fuzz_target!(|data: &[u8]| rekey_fuzz::file_store::file_store(data));

#[cfg(not(fuzzing))]
fn main() {
    rekey_fuzz::harness::replay_main("file_store", rekey_fuzz::file_store::file_store);
}
