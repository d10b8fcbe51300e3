//! The stable-toolchain driver: runs a target over its seed corpus and a bounded,
//! deterministic stream of generated inputs, catching panics and slow inputs.
//!
//! Inputs come from a fixed-seed [`Rng`], so a run is reproducible: the same seed and
//! case count give the same inputs on every machine. Each generated input is one of
//!
//! - random bytes (short, any value);
//! - tokens from the target's dictionary, glued with whitespace and punctuation;
//! - the target's own structured generator, when it has one ([`Plan::generate`]);
//! - a seed file from `fuzz/corpus/<target>/` after 1 to 8 byte-level mutations (bit
//!   flips, dictionary insertions, deletions, duplications, splices with another seed,
//!   truncation, odd Unicode);
//! - now and then, a long repetition of one token, to catch superlinear behaviour.
//!
//! A panic, or an input that takes longer than [`hang_limit`], is saved to
//! `fuzz/artifacts/<target>/` and fails the run with the command that replays it.

use crate::Target;
use std::fmt::Write as _;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// Inputs generated per target when `REKEY_FUZZ_CASES` is not set.
pub const DEFAULT_CASES: usize = 20_000;

/// The generator's seed when `REKEY_FUZZ_SEED` is not set.
pub const DEFAULT_SEED: u64 = 0x5eed_2026_0913;

/// SplitMix64: small, fast, and good enough to drive mutations. Not for secrets.
#[derive(Debug, Clone)]
pub struct Rng(u64);

impl Rng {
    /// A generator starting from `seed`.
    pub fn new(seed: u64) -> Rng {
        Rng(seed)
    }

    /// The next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// A number in `0..n` (`0` when `n` is 0).
    pub fn below(&mut self, n: usize) -> usize {
        if n == 0 {
            0
        } else {
            (self.next_u64() % n as u64) as usize
        }
    }

    /// True with probability `1 / n`.
    pub fn one_in(&mut self, n: usize) -> bool {
        self.below(n) == 0
    }

    /// One element of a non-empty slice.
    pub fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        &items[self.below(items.len())]
    }
}

/// How the stable driver feeds one target.
#[derive(Clone, Copy)]
pub struct Plan {
    /// The target's name: its binary and its corpus directory.
    pub name: &'static str,
    /// The target itself.
    pub target: Target,
    /// Tokens worth inserting: the syntax the target's parser cares about.
    pub dictionary: &'static [&'static str],
    /// A structured generator: valid or nearly valid inputs built from random choices.
    pub generate: Option<fn(&mut Rng) -> Vec<u8>>,
}

/// What a run did.
#[derive(Debug, Clone, Default)]
pub struct Report {
    /// Seed files run.
    pub seeds: usize,
    /// Generated inputs run.
    pub generated: usize,
    /// The longest time one input took.
    pub slowest: Duration,
    /// The length of that input.
    pub slowest_len: usize,
    /// The total time.
    pub total: Duration,
}

/// The fuzz project's directory (`fuzz/`).
pub fn fuzz_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// The seed corpus directory of `target`.
pub fn corpus_dir(target: &str) -> PathBuf {
    fuzz_dir().join("corpus").join(target)
}

/// The hand-written seeds of `target`: the files named `seed-*` in its corpus directory,
/// sorted by name. What libFuzzer adds there (files named by their SHA-1, not tracked)
/// is left out, so that a stable run is the same on every machine; replay those with
/// the target's binary.
pub fn seeds(target: &str) -> Vec<(PathBuf, Vec<u8>)> {
    let mut out = Vec::new();
    let Ok(entries) = std::fs::read_dir(corpus_dir(target)) else {
        return out;
    };
    for entry in entries.flatten() {
        let path = entry.path();
        let is_seed = path
            .file_name()
            .and_then(|n| n.to_str())
            .is_some_and(|n| n.starts_with("seed-"));
        if is_seed && path.is_file() {
            if let Ok(bytes) = std::fs::read(&path) {
                out.push((path, bytes));
            }
        }
    }
    out.sort_by(|a, b| a.0.cmp(&b.0));
    out
}

/// How long one input may take before it counts as a hang: `REKEY_FUZZ_HANG_SECS`, else
/// 10 seconds (unoptimised builds are slow; a real hang does not end).
pub fn hang_limit() -> Duration {
    Duration::from_secs(env_number("REKEY_FUZZ_HANG_SECS").unwrap_or(10))
}

/// Inputs per target: `REKEY_FUZZ_CASES`, else [`DEFAULT_CASES`].
pub fn cases() -> usize {
    env_number("REKEY_FUZZ_CASES").map_or(DEFAULT_CASES, |n| n as usize)
}

/// The generator's seed: `REKEY_FUZZ_SEED`, else [`DEFAULT_SEED`].
pub fn seed() -> u64 {
    env_number("REKEY_FUZZ_SEED").unwrap_or(DEFAULT_SEED)
}

/// Whether `REKEY_FUZZ_STRICT=1`: also fail on the findings already reported, which the
/// targets otherwise tolerate (each target lists them).
pub fn strict() -> bool {
    std::env::var("REKEY_FUZZ_STRICT").is_ok_and(|v| v == "1")
}

fn env_number(name: &str) -> Option<u64> {
    let text = std::env::var(name).ok()?;
    let text = text.trim();
    match text.strip_prefix("0x") {
        Some(hex) => u64::from_str_radix(hex, 16).ok(),
        None => text.parse().ok(),
    }
}

/// Unicode and byte oddities that parsers trip on.
const ODDITIES: &[&str] = &[
    "\0",
    "\u{7f}",
    "\u{a0}",
    "\u{e9}",
    "\u{feff}",
    "\u{2028}",
    "\u{202e}",
    "\u{1f511}",
    "\u{10ffff}",
    "\r\n",
    "\t",
    "\\",
    "\\u",
    "\\ud800",
    "%",
    "%ff",
    "%00",
];

/// Bytes worth setting: delimiters, quotes, escapes, high bytes.
const INTERESTING: &[u8] = &[
    0, 0x7f, 0x80, 0xc3, 0xff, b'"', b'\'', b'`', b'\\', b'\n', b'{', b'}', b'[', b']', b'=', b':', b'@', b'$', b'#',
    b',', b'%', b' ',
];

/// One generated input for `plan`, from `rng`, using `seeds` for mutation.
pub fn generate(plan: &Plan, rng: &mut Rng, seeds: &[Vec<u8>]) -> Vec<u8> {
    let kind = rng.below(20);
    match kind {
        0 => {
            let len = rng.below(64);
            (0..len).map(|_| rng.next_u64() as u8).collect()
        }
        1 | 2 => tokens(plan.dictionary, rng),
        3..=6 if plan.generate.is_some() => {
            let mut out = (plan.generate.expect("checked"))(rng);
            if rng.one_in(3) {
                mutate(&mut out, rng, plan.dictionary, seeds);
            }
            out
        }
        7 if rng.one_in(5) => long_repetition(plan.dictionary, rng, seeds),
        _ if seeds.is_empty() => tokens(plan.dictionary, rng),
        _ => {
            let mut out = rng.pick(seeds).clone();
            mutate(&mut out, rng, plan.dictionary, seeds);
            out
        }
    }
}

fn tokens(dictionary: &[&str], rng: &mut Rng) -> Vec<u8> {
    const GLUE: &[&str] = &["", "", " ", "\n", "=", ":", ", ", "\"", "'"];
    let mut out = Vec::new();
    for _ in 0..1 + rng.below(24) {
        if !dictionary.is_empty() && !rng.one_in(6) {
            out.extend_from_slice(rng.pick(dictionary).as_bytes());
        } else {
            out.extend_from_slice(rng.pick(ODDITIES).as_bytes());
        }
        out.extend_from_slice(rng.pick(GLUE).as_bytes());
    }
    out
}

/// One token (or a seed's slice) repeated thousands of times, possibly inside a seed.
fn long_repetition(dictionary: &[&str], rng: &mut Rng, seeds: &[Vec<u8>]) -> Vec<u8> {
    let unit: Vec<u8> = if !dictionary.is_empty() && rng.one_in(2) {
        rng.pick(dictionary).as_bytes().to_vec()
    } else {
        let pool = [
            b"\"".as_slice(),
            b"{",
            b"[",
            b"\\",
            b"=",
            b":",
            b"@",
            b"://",
            b"a=",
            b"'",
            b"%",
            b"\n",
        ];
        rng.pick(&pool).to_vec()
    };
    let times = 256 + rng.below(4096);
    let mut body = Vec::with_capacity(unit.len() * times);
    for _ in 0..times {
        body.extend_from_slice(&unit);
    }
    if seeds.is_empty() || rng.one_in(2) {
        return body;
    }
    let mut out = rng.pick(seeds).clone();
    let at = rng.below(out.len() + 1);
    out.splice(at..at, body);
    out
}

/// Applies 1 to 8 random mutations to `data`.
pub fn mutate(data: &mut Vec<u8>, rng: &mut Rng, dictionary: &[&str], seeds: &[Vec<u8>]) {
    for _ in 0..1 + rng.below(8) {
        let len = data.len();
        match rng.below(11) {
            0 if len > 0 => {
                let i = rng.below(len);
                data[i] ^= 1 << rng.below(8);
            }
            1 if len > 0 => {
                let i = rng.below(len);
                data[i] = *rng.pick(INTERESTING);
            }
            2 | 3 => {
                let token = if !dictionary.is_empty() && !rng.one_in(4) {
                    rng.pick(dictionary)
                } else {
                    rng.pick(ODDITIES)
                };
                let at = rng.below(len + 1);
                data.splice(at..at, token.bytes());
            }
            4 if len > 0 => {
                let start = rng.below(len);
                let end = (start + 1 + rng.below(16)).min(len);
                data.drain(start..end);
            }
            5 if len > 0 => {
                let start = rng.below(len);
                let end = (start + 1 + rng.below(64)).min(len);
                let copy = data[start..end].to_vec();
                let at = rng.below(len + 1);
                data.splice(at..at, copy);
            }
            6 if !seeds.is_empty() => {
                let other = rng.pick(seeds);
                if !other.is_empty() {
                    let start = rng.below(other.len());
                    let end = (start + 1 + rng.below(128)).min(other.len());
                    let at = rng.below(len + 1);
                    data.splice(at..at, other[start..end].iter().copied());
                }
            }
            7 if len > 0 => data.truncate(rng.below(len)),
            8 if len > 1 => {
                // Swap two bytes: an unbalanced bracket or a quote in a new place.
                let (i, j) = (rng.below(len), rng.below(len));
                data.swap(i, j);
            }
            9 => {
                // A digit run made huge, negative or fractional.
                let at = rng.below(len + 1);
                let number = *rng.pick(&[
                    "99999999999999999999",
                    "-1",
                    "0",
                    "1e400",
                    "-0",
                    "0.5",
                    "65536",
                    "4294967296",
                ]);
                data.splice(at..at, number.bytes());
            }
            _ => {
                let at = rng.below(len + 1);
                data.splice(at..at, rng.pick(ODDITIES).bytes());
            }
        }
    }
}

/// Runs `plan.target` on every seed file, then on `cases` inputs generated from `seed`.
/// Panics (failing the test) on the first input that panics or exceeds [`hang_limit`],
/// after saving it under `fuzz/artifacts/<target>/`. With `REKEY_FUZZ_KEEP_GOING=1` it
/// runs every input first and then fails listing each distinct failure once.
pub fn run(plan: &Plan, cases: usize, seed: u64) -> Report {
    let start = Instant::now();
    let limit = hang_limit();
    let keep_going = std::env::var("REKEY_FUZZ_KEEP_GOING").is_ok_and(|v| v == "1");
    let files = seeds(plan.name);
    assert!(
        !files.is_empty(),
        "{}: no seed corpus in {}",
        plan.name,
        corpus_dir(plan.name).display()
    );
    let mut report = Report::default();
    let mut failures: Vec<(String, String)> = Vec::new();
    let mut record = |failure: Option<String>| {
        if let Some(failure) = failure {
            if !keep_going {
                panic!("{failure}");
            }
            let head: String = failure.lines().next().unwrap_or("").chars().take(100).collect();
            let class: String = head.chars().filter(|c| !c.is_ascii_digit()).collect();
            if !failures.iter().any(|(c, _)| *c == class) {
                failures.push((class, failure));
            }
        }
    };
    for (path, bytes) in &files {
        record(check(
            plan,
            bytes,
            &format!("seed {}", path.display()),
            limit,
            &mut report,
        ));
        report.seeds += 1;
    }
    let seed_bytes: Vec<Vec<u8>> = files.into_iter().map(|(_, b)| b).collect();
    let mut rng = Rng::new(seed ^ fnv64(plan.name.as_bytes()));
    for i in 0..cases {
        let input = generate(plan, &mut rng, &seed_bytes);
        record(check(
            plan,
            &input,
            &format!("generated input #{i} (seed {seed:#x})"),
            limit,
            &mut report,
        ));
        report.generated += 1;
    }
    report.total = start.elapsed();
    if !failures.is_empty() {
        let list: Vec<String> = failures.into_iter().map(|(_, f)| f).collect();
        panic!("{} distinct failures:\n\n{}", list.len(), list.join("\n\n"));
    }
    report
}

/// Runs one input; describes the failure, if any (the input is saved first).
fn check(plan: &Plan, input: &[u8], what: &str, limit: Duration, report: &mut Report) -> Option<String> {
    let start = Instant::now();
    let outcome = catch_unwind(AssertUnwindSafe(|| (plan.target)(input)));
    let elapsed = start.elapsed();
    if elapsed > report.slowest {
        report.slowest = elapsed;
        report.slowest_len = input.len();
    }
    match outcome {
        Err(payload) => {
            let message = payload
                .downcast_ref::<String>()
                .cloned()
                .or_else(|| payload.downcast_ref::<&str>().map(|s| (*s).to_owned()))
                .unwrap_or_else(|| "(non-string panic payload)".to_owned());
            let saved = save_artifact(plan.name, "crash", input);
            Some(format!(
                "{}: {what} panicked: {message}\n  saved to {}\n  replay: cargo run --manifest-path fuzz/Cargo.toml --bin {} -- {}\n  input ({} bytes): {}",
                plan.name,
                saved.display(),
                plan.name,
                saved.display(),
                input.len(),
                escape(input, 2048)
            ))
        }
        Ok(()) if elapsed > limit => {
            let saved = save_artifact(plan.name, "slow", input);
            Some(format!(
                "{}: {what} took {elapsed:?} (limit {limit:?}): a hang or superlinear work\n  saved to {}\n  input ({} bytes): {}",
                plan.name,
                saved.display(),
                input.len(),
                escape(input, 512)
            ))
        }
        Ok(()) => None,
    }
}

/// Writes `input` to `fuzz/artifacts/<target>/<kind>-<hash>` and returns the path.
pub fn save_artifact(target: &str, kind: &str, input: &[u8]) -> PathBuf {
    let dir = fuzz_dir().join("artifacts").join(target);
    let path = dir.join(format!("{kind}-{:016x}", fnv64(input)));
    let _ = std::fs::create_dir_all(&dir).and_then(|()| std::fs::write(&path, input));
    path
}

/// FNV-1a, for artifact names and per-target seeds.
pub fn fnv64(bytes: &[u8]) -> u64 {
    let mut hash = 0xcbf2_9ce4_8422_2325u64;
    for &b in bytes {
        hash ^= u64::from(b);
        hash = hash.wrapping_mul(0x0100_0000_01b3);
    }
    hash
}

/// `input` as a Rust-escaped string, cut after `max` bytes.
pub fn escape(input: &[u8], max: usize) -> String {
    let shown = &input[..input.len().min(max)];
    let mut out = String::from("\"");
    for chunk in shown.utf8_chunks() {
        for c in chunk.valid().chars() {
            out.extend(c.escape_debug());
        }
        for b in chunk.invalid() {
            let _ = write!(out, "\\x{b:02x}");
        }
    }
    out.push('"');
    if input.len() > max {
        let _ = write!(out, "... ({} more bytes)", input.len() - max);
    }
    out
}

/// The stable replacement for libFuzzer's `main`: runs `target` on every file named on
/// the command line (directories are walked one level), or on the target's seed corpus
/// when none is named, and prints one line per input. A panic ends the process with the
/// panic message, like a crash under libFuzzer.
pub fn replay_main(name: &str, target: Target) {
    let mut paths: Vec<PathBuf> = std::env::args_os().skip(1).map(PathBuf::from).collect();
    if paths.is_empty() {
        paths.push(corpus_dir(name));
    }
    let mut files = Vec::new();
    for path in paths {
        collect_files(&path, &mut files);
    }
    for file in &files {
        let bytes = std::fs::read(file).unwrap_or_else(|e| panic!("cannot read {}: {e}", file.display()));
        let start = Instant::now();
        target(&bytes);
        println!("ok {} ({} bytes, {:?})", file.display(), bytes.len(), start.elapsed());
    }
    println!("{name}: {} inputs ran without a panic", files.len());
}

fn collect_files(path: &Path, out: &mut Vec<PathBuf>) {
    if path.is_dir() {
        let mut entries: Vec<PathBuf> = std::fs::read_dir(path)
            .map(|d| d.flatten().map(|e| e.path()).filter(|p| p.is_file()).collect())
            .unwrap_or_default();
        entries.sort();
        out.extend(entries);
    } else {
        out.push(path.to_path_buf());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rng_is_deterministic() {
        let mut a = Rng::new(7);
        let mut b = Rng::new(7);
        for _ in 0..100 {
            assert_eq!(a.next_u64(), b.next_u64());
        }
        assert_eq!(Rng::new(1).below(0), 0);
    }

    #[test]
    fn escape_shows_invalid_bytes_and_cuts() {
        assert_eq!(escape(b"a\n\xff", 10), "\"a\\n\\xff\"");
        assert!(escape(&[b'x'; 20], 4).ends_with("(16 more bytes)"));
    }
}
