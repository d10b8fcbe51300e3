//! Fuzz target `exec_response`: [`rekey_exec::parse_answer`], the exec plugin's answer
//! parser (stdout, stderr and exit status taken from the input).
//!
//! Under cargo-fuzz (nightly, `--cfg fuzzing`) this is a libFuzzer target:
//! `cargo +nightly fuzz run exec_response -- -max_total_time=60`. On stable it replays the
//! files or directories given as arguments (default: `fuzz/corpus/exec_response/`):
//! `cargo run --manifest-path fuzz/Cargo.toml --bin exec_response -- FILE...`.

#![cfg_attr(fuzzing, no_main)]

#[cfg(fuzzing)]
libfuzzer_sys::fuzz_target!(|data: &[u8]| rekey_fuzz::exec::exec_response(data));

#[cfg(not(fuzzing))]
fn main() {
    rekey_fuzz::harness::replay_main("exec_response", rekey_fuzz::exec::exec_response);
}
