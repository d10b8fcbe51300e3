//! TODO fuzz target `exec_response`: the exec plugin's response parser.
//!
//! NOT BUILT: this file is not listed as a `[[bin]]` in `fuzz/Cargo.toml`. The crate
//! `providers/exec` (`rekey-exec`) exists, but its response parser,
//! `protocol::interpret(label, &Output, &Masks)`, is `pub(crate)`: nothing public parses a
//! plugin's answer without running a plugin. When the crate exposes one (for instance a
//! `pub fn parse_answer(stdout: &[u8], exit_code: Option<i32>, stderr: &[u8]) ->
//! ProviderResult<...>`, or `interpret` behind a `fuzzing` feature):
//!
//! 1. add `rekey-exec = { path = "../providers/exec" }` to `[dependencies]`;
//! 2. put the target's logic in `fuzz/src/exec.rs` as `pub fn exec_response(data: &[u8])`:
//!    parse `data` as the plugin's stdout (and a slice of it as its stderr) with the
//!    public parser, require `Ok` or `Err` (never a panic), an error of one line, and no
//!    secret value of the request in the message (seeds spell them with `SECRET`, as the
//!    other targets do);
//! 3. move this file to `fuzz/fuzz_targets/exec_response.rs`, add a `[[bin]]` for it,
//!    a `Plan` in `fuzz/src/lib.rs`, a test in `fuzz/tests/stable.rs`, and seeds in
//!    `fuzz/corpus/exec_response/seed-*` (a success answer, an error answer, an answer
//!    with extra fields, another protocol version, a truncated one).
//!
//! Until then the parser can be reached only through `ExecTarget` running a real plugin
//! (say `/bin/cat FILE` printing the input): a process per input, so slow for fuzzing.

#![cfg_attr(fuzzing, no_main)]

#[cfg(fuzzing)]
libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    // rekey_fuzz::exec::exec_response(data)
    let _ = data;
});

#[cfg(not(fuzzing))]
fn main() {}
