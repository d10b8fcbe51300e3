//! Every deployment recipe in `examples/deploy` (and the `Dockerfile`) works as written:
//! what this machine can run is run — the crontab lines under cron's minimal PATH and
//! environment, the systemd ExecStart with its EnvironmentFile and `systemd-analyze
//! verify`, the CI workflow's restore and verify steps, the Indexed Job's shard
//! arithmetic, a `docker build` where a Docker daemon answers — and the rest is parsed
//! and checked against the CLI, the configuration loader and each other.

use clap::Parser;
use rekey::cli::Cli;
use rekey::config::{Config, StoreConfig};
use std::collections::BTreeSet;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

const BIN: &str = env!("CARGO_BIN_EXE_rekey");
const ROOT: &str = env!("CARGO_MANIFEST_DIR");
/// Where the recipes install the binary.
const INSTALLED: &str = "/usr/local/bin/rekey";

fn deploy(name: &str) -> String {
    read(&format!("examples/deploy/{name}"))
}

fn read(relative: &str) -> String {
    std::fs::read_to_string(Path::new(ROOT).join(relative)).unwrap_or_else(|e| panic!("{relative}: {e}"))
}

/// Parses `rekey ARGS...` (argv[0] is ignored) as the real CLI would.
#[track_caller]
fn assert_cli(what: &str, args: &[&str]) {
    let mut argv = vec!["rekey"];
    argv.extend(args.iter().skip(1));
    if let Err(e) = Cli::try_parse_from(&argv) {
        panic!("{what}: `{}` is not a valid rekey command line: {e}", argv.join(" "));
    }
}

/// The words of a shell command from the rekey binary on (`exec /usr/local/bin/rekey a b`).
fn rekey_words(command: &str) -> Vec<&str> {
    let words: Vec<&str> = command.split_whitespace().collect();
    let start = words
        .iter()
        .position(|w| *w == INSTALLED || *w == "rekey")
        .unwrap_or_else(|| panic!("no rekey invocation in `{command}`"));
    words[start..].to_vec()
}

/// `${NAME}` references without a default in configuration text.
fn required_refs(text: &str) -> BTreeSet<String> {
    let mut found = BTreeSet::new();
    for line in text.lines().filter(|l| !l.trim_start().starts_with('#')) {
        let mut rest = line;
        while let Some(pos) = rest.find("${") {
            let body = &rest[pos + 2..];
            let end = body.find('}').expect("closed reference");
            if !body[..end].contains(":-") {
                found.insert(body[..end].to_owned());
            }
            rest = &body[end + 1..];
        }
    }
    found
}

/// A port on 127.0.0.1 where nothing listens.
fn closed_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn output_text(out: &Output) -> String {
    format!(
        "exit {:?}\n--- stdout\n{}\n--- stderr\n{}",
        out.status.code(),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

fn mode(path: &Path) -> u32 {
    std::fs::metadata(path).unwrap().permissions().mode() & 0o777
}

fn is_under(path: &Path, dir: &str) -> bool {
    path.starts_with(dir)
}

// ---------------------------------------------------------------------------------
// A YAML subset parser: block mappings and sequences, flow sequences and mappings,
// quoted and plain scalars, literal block scalars (`|`, `|-`), comments and `---`.
// Anything else (anchors, tags, folded scalars) is refused, so the recipes stay inside
// what these tests can read. (No YAML crate is in the lock file.)

#[derive(Debug, Clone, PartialEq)]
enum Yaml {
    Str(String),
    List(Vec<Yaml>),
    Map(Vec<(String, Yaml)>),
}

impl Yaml {
    fn get(&self, key: &str) -> Option<&Yaml> {
        match self {
            Yaml::Map(m) => m.iter().find(|(k, _)| k == key).map(|(_, v)| v),
            _ => None,
        }
    }

    /// `a.b.0.c`: keys, and indices into sequences.
    #[track_caller]
    fn at(&self, path: &str) -> &Yaml {
        let mut current = self;
        for part in path.split('.') {
            let next = match (current, part.parse::<usize>()) {
                (Yaml::List(items), Ok(index)) => items.get(index),
                _ => current.get(part),
            };
            current = next.unwrap_or_else(|| panic!("no `{part}` (in `{path}`) in {current:?}"));
        }
        current
    }

    #[track_caller]
    fn str(&self) -> &str {
        match self {
            Yaml::Str(s) => s,
            other => panic!("not a string: {other:?}"),
        }
    }

    #[track_caller]
    fn list(&self) -> &[Yaml] {
        match self {
            Yaml::List(items) => items,
            other => panic!("not a sequence: {other:?}"),
        }
    }

    fn strs(&self) -> Vec<&str> {
        self.list().iter().map(Yaml::str).collect()
    }
}

struct Line {
    indent: usize,
    text: String,
    block: Option<String>,
}

fn indent_of(line: &str) -> usize {
    line.len() - line.trim_start_matches(' ').len()
}

/// The line without its comment (a `#` at the start or after a space, outside quotes).
fn strip_comment(line: &str) -> &str {
    let (mut single, mut double) = (false, false);
    let mut previous = ' ';
    for (i, c) in line.char_indices() {
        match c {
            '\'' if !double => single = !single,
            '"' if !single => double = !double,
            '#' if !single && !double && previous.is_whitespace() => return line[..i].trim_end(),
            _ => {}
        }
        previous = c;
    }
    line.trim_end()
}

fn yaml_lines(raw: &[&str]) -> Vec<Line> {
    let mut out = Vec::new();
    let mut i = 0;
    while i < raw.len() {
        let line = raw[i];
        i += 1;
        assert!(!line.starts_with('\t'), "tab indentation: {line}");
        let text = strip_comment(line);
        if text.trim().is_empty() {
            continue;
        }
        let indent = indent_of(text);
        let mut content = text.trim_start().to_owned();
        let mut block = None;
        for marker in ["|-", "|"] {
            let is_block = content == marker
                || content.ends_with(&format!(": {marker}"))
                || content.ends_with(&format!("- {marker}"));
            if !is_block {
                continue;
            }
            let mut body = Vec::new();
            while i < raw.len() && (raw[i].trim().is_empty() || indent_of(raw[i]) > indent) {
                body.push(raw[i]);
                i += 1;
            }
            while body.last().is_some_and(|l| l.trim().is_empty()) {
                body.pop();
            }
            let base = body
                .iter()
                .filter(|l| !l.trim().is_empty())
                .map(|l| indent_of(l))
                .min()
                .unwrap_or(0);
            let mut value = body
                .iter()
                .map(|l| l.get(base..).unwrap_or(""))
                .collect::<Vec<_>>()
                .join("\n");
            if marker == "|" {
                value.push('\n');
            }
            block = Some(value);
            content = content[..content.len() - marker.len()].trim_end().to_owned();
            break;
        }
        out.push(Line {
            indent,
            text: content,
            block,
        });
    }
    out
}

fn is_item(text: &str) -> bool {
    text == "-" || text.starts_with("- ")
}

/// `key: rest` (the first `:` outside quotes followed by a space or the end).
fn split_key(text: &str) -> Option<(String, String)> {
    if text.starts_with(['[', '{']) {
        return None;
    }
    let (mut single, mut double) = (false, false);
    let bytes = text.as_bytes();
    for (i, c) in text.char_indices() {
        match c {
            '\'' if !double => single = !single,
            '"' if !single => double = !double,
            ':' if !single && !double && (i + 1 == text.len() || bytes[i + 1] == b' ') => {
                let key = match scalar(text[..i].trim()) {
                    Yaml::Str(k) => k,
                    _ => unreachable!(),
                };
                return Some((key, text[i + 1..].trim().to_owned()));
            }
            _ => {}
        }
    }
    None
}

/// Splits a flow collection's inside at top-level commas.
fn flow_items(inner: &str) -> Vec<&str> {
    let (mut depth, mut single, mut double, mut start) = (0i32, false, false, 0);
    let mut items = Vec::new();
    for (i, c) in inner.char_indices() {
        match c {
            '\'' if !double => single = !single,
            '"' if !single => double = !double,
            '[' | '{' if !single && !double => depth += 1,
            ']' | '}' if !single && !double => depth -= 1,
            ',' if depth == 0 && !single && !double => {
                items.push(inner[start..i].trim());
                start = i + 1;
            }
            _ => {}
        }
    }
    if !inner[start..].trim().is_empty() {
        items.push(inner[start..].trim());
    }
    items
}

fn scalar(text: &str) -> Yaml {
    let text = text.trim();
    if let Some(inner) = text.strip_prefix('[') {
        let inner = inner.strip_suffix(']').unwrap_or_else(|| panic!("unclosed [: {text}"));
        return Yaml::List(flow_items(inner).into_iter().map(scalar).collect());
    }
    if let Some(inner) = text.strip_prefix('{') {
        let inner = inner.strip_suffix('}').unwrap_or_else(|| panic!("unclosed {{: {text}"));
        return Yaml::Map(
            flow_items(inner)
                .into_iter()
                .map(|item| {
                    let (k, v) = split_key(item).unwrap_or_else(|| panic!("not `key: value`: {item}"));
                    (k, scalar(&v))
                })
                .collect(),
        );
    }
    if let Some(inner) = text.strip_prefix('"') {
        let inner = inner.strip_suffix('"').unwrap_or_else(|| panic!("unclosed \": {text}"));
        return Yaml::Str(inner.replace("\\\"", "\"").replace("\\\\", "\\"));
    }
    if let Some(inner) = text.strip_prefix('\'') {
        let inner = inner.strip_suffix('\'').unwrap_or_else(|| panic!("unclosed ': {text}"));
        return Yaml::Str(inner.replace("''", "'"));
    }
    assert!(
        !text.starts_with(['&', '*', '!', '>', '|', '%', '@', '`']),
        "YAML beyond what these tests read: {text}"
    );
    Yaml::Str(text.to_owned())
}

fn parse_node(lines: &mut [Line], i: &mut usize, indent: usize) -> Yaml {
    if is_item(&lines[*i].text) {
        parse_list(lines, i, indent)
    } else {
        parse_map(lines, i, indent)
    }
}

fn parse_list(lines: &mut [Line], i: &mut usize, indent: usize) -> Yaml {
    let mut items = Vec::new();
    while *i < lines.len() && lines[*i].indent == indent && is_item(&lines[*i].text) {
        let text = lines[*i].text.clone();
        let rest = text[1..].trim_start().to_owned();
        let offset = indent + (text.len() - rest.len());
        if rest.is_empty() {
            if let Some(block) = lines[*i].block.take() {
                *i += 1;
                items.push(Yaml::Str(block));
            } else {
                *i += 1;
                let inner = lines[*i].indent;
                assert!(inner > indent, "empty sequence item");
                items.push(parse_node(lines, i, inner));
            }
        } else if is_item(&rest) {
            lines[*i].indent = offset;
            lines[*i].text = rest;
            items.push(parse_list(lines, i, offset));
        } else if split_key(&rest).is_some() && !rest.starts_with(['"', '\'']) {
            lines[*i].indent = offset;
            lines[*i].text = rest;
            items.push(parse_map(lines, i, offset));
        } else {
            items.push(scalar(&rest));
            *i += 1;
        }
    }
    Yaml::List(items)
}

fn parse_map(lines: &mut [Line], i: &mut usize, indent: usize) -> Yaml {
    let mut map = Vec::new();
    while *i < lines.len() && lines[*i].indent == indent && !is_item(&lines[*i].text) {
        let (key, rest) = split_key(&lines[*i].text).unwrap_or_else(|| panic!("not `key: value`: {}", lines[*i].text));
        let block = lines[*i].block.take();
        *i += 1;
        let value = if let Some(block) = block {
            Yaml::Str(block)
        } else if !rest.is_empty() {
            scalar(&rest)
        } else if *i < lines.len() && lines[*i].indent > indent {
            let inner = lines[*i].indent;
            parse_node(lines, i, inner)
        } else if *i < lines.len() && lines[*i].indent == indent && is_item(&lines[*i].text) {
            parse_list(lines, i, indent)
        } else {
            Yaml::Str(String::new())
        };
        assert!(map.iter().all(|(k, _)| *k != key), "key `{key}` appears twice");
        map.push((key, value));
    }
    if *i < lines.len() && lines[*i].indent > indent {
        panic!("unexpected indentation at `{}`", lines[*i].text);
    }
    Yaml::Map(map)
}

/// The documents of a YAML stream (empty ones left out).
fn yaml_docs(text: &str) -> Vec<Yaml> {
    let mut docs = Vec::new();
    let mut current: Vec<&str> = Vec::new();
    for line in text.lines() {
        if line.trim_end() == "---" {
            docs.push(std::mem::take(&mut current));
        } else {
            current.push(line);
        }
    }
    docs.push(current);
    docs.iter()
        .filter_map(|raw| {
            let mut lines = yaml_lines(raw);
            if lines.is_empty() {
                return None;
            }
            let mut i = 0;
            let indent = lines[0].indent;
            let doc = parse_node(&mut lines, &mut i, indent);
            assert_eq!(
                i,
                lines.len(),
                "unread YAML from `{}`",
                lines.get(i).map_or("", |l| &l.text)
            );
            Some(doc)
        })
        .collect()
}

#[test]
fn yaml_subset_parser_reads_what_the_recipes_use() {
    let text = "# comment\na: 1\nb:\n  c: \"x: y\" # trailing\n  d: ['p', \"q\", r]\n  e: {}\nlist:\n- name: one\n  value: 1\n- two\n- |\n  line 1\n  line 2\nrun: |-\n  echo '#' \"$X\"\n\n  done\nnested:\n  - - inner\n---\nsecond: doc\n";
    let docs = yaml_docs(text);
    assert_eq!(docs.len(), 2);
    let y = &docs[0];
    assert_eq!(y.at("a").str(), "1");
    assert_eq!(y.at("b.c").str(), "x: y");
    assert_eq!(y.at("b.d").strs(), ["p", "q", "r"]);
    assert_eq!(y.at("b.e"), &Yaml::Map(Vec::new()));
    assert_eq!(y.at("list.0.name").str(), "one");
    assert_eq!(y.at("list.0.value").str(), "1");
    assert_eq!(y.at("list.1").str(), "two");
    assert_eq!(y.at("list.2").str(), "line 1\nline 2\n");
    assert_eq!(y.at("run").str(), "echo '#' \"$X\"\n\ndone");
    assert_eq!(y.at("nested.0.0").str(), "inner");
    assert_eq!(docs[1].at("second").str(), "doc");
    assert!(std::panic::catch_unwind(|| yaml_docs("a: &anchor x\n")).is_err());
    assert!(std::panic::catch_unwind(|| yaml_docs("a:\n  b: 1\n   c: 2\n")).is_err());
}

// ---------------------------------------------------------------------------------
// The Dockerfile.

struct Instruction {
    keyword: String,
    args: String,
}

/// Instructions in order (continuation lines joined, comments and directives left out).
fn dockerfile(text: &str) -> Vec<Instruction> {
    let mut out = Vec::new();
    let mut pending = String::new();
    for line in text.lines() {
        let trimmed = line.trim();
        if trimmed.starts_with('#') || (trimmed.is_empty() && pending.is_empty()) {
            continue;
        }
        if let Some(part) = trimmed.strip_suffix('\\') {
            pending.push_str(part);
            pending.push(' ');
            continue;
        }
        pending.push_str(trimmed);
        let (keyword, args) = pending.split_once(' ').unwrap_or((&pending, ""));
        out.push(Instruction {
            keyword: keyword.to_ascii_uppercase(),
            args: args.trim().to_owned(),
        });
        pending.clear();
    }
    out
}

/// Stages: (name, base image, instructions after FROM).
fn stages(instructions: &[Instruction]) -> Vec<(String, String, Vec<&Instruction>)> {
    let mut stages: Vec<(String, String, Vec<&Instruction>)> = Vec::new();
    for i in instructions {
        if i.keyword == "FROM" {
            let words: Vec<&str> = i.args.split_whitespace().collect();
            let name = match words.as_slice() {
                [_, as_, name] if as_.eq_ignore_ascii_case("as") => (*name).to_owned(),
                _ => String::new(),
            };
            stages.push((name, words[0].to_owned(), Vec::new()));
        } else if let Some(stage) = stages.last_mut() {
            stage.2.push(i);
        }
    }
    stages
}

/// What the image runs and as whom, as the other recipes must use it.
struct Image {
    entrypoint: String,
    uid: u32,
    tags: Vec<String>,
}

fn image() -> Image {
    let text = read("Dockerfile");
    let instructions = dockerfile(&text);
    let stages = stages(&instructions);
    let (_, _, runtime) = stages.last().expect("a stage");
    let entrypoint: Vec<String> = serde_json::from_str(
        &runtime
            .iter()
            .rfind(|i| i.keyword == "ENTRYPOINT")
            .expect("ENTRYPOINT")
            .args,
    )
    .expect("ENTRYPOINT in exec form (a JSON array: no shell)");
    let user = &runtime.iter().rfind(|i| i.keyword == "USER").expect("USER").args;
    let uid: u32 = user
        .split(':')
        .next()
        .unwrap()
        .parse()
        .expect("a numeric USER (runAsNonRoot can check it)");
    let tags = text
        .lines()
        .filter_map(|l| l.split_once("docker build ").map(|(_, rest)| rest))
        .filter_map(|rest| {
            let words: Vec<&str> = rest.split_whitespace().collect();
            words.iter().position(|w| *w == "-t").map(|p| words[p + 1].to_owned())
        })
        .collect();
    Image {
        entrypoint: entrypoint[0].clone(),
        uid,
        tags,
    }
}

#[test]
fn dockerfile_builds_a_shell_less_non_root_image_of_the_binary_only() {
    let text = read("Dockerfile");
    let instructions = dockerfile(&text);
    let stages = stages(&instructions);
    assert!(stages.len() >= 2, "multi-stage");
    let (build_name, build_base, build) = &stages[0];
    assert!(build_base.starts_with("rust:"), "builds in a Rust image: {build_base}");
    let run = build
        .iter()
        .filter(|i| i.keyword == "RUN")
        .map(|i| i.args.as_str())
        .collect::<Vec<_>>()
        .join("\n");
    assert!(run.contains("cargo build --release --locked"), "{run}");
    // The builder's toolchain is at least the crate's rust-version.
    let rust_arg = instructions
        .iter()
        .find(|i| i.keyword == "ARG" && i.args.starts_with("RUST_VERSION="))
        .map(|i| i.args["RUST_VERSION=".len()..].to_owned())
        .expect("ARG RUST_VERSION");
    let msrv = read("Cargo.toml")
        .lines()
        .find_map(|l| {
            l.strip_prefix("rust-version = ")
                .map(|v| v.trim_matches('"').to_owned())
        })
        .expect("rust-version");
    let minor = |v: &str| v.split('.').nth(1).unwrap().parse::<u32>().unwrap();
    assert!(
        minor(&rust_arg) >= minor(&msrv),
        "RUST_VERSION {rust_arg} < rust-version {msrv}"
    );

    let (_, runtime_base, runtime) = stages.last().unwrap();
    assert!(
        runtime_base.contains("distroless") && !runtime_base.contains("debug"),
        "the default image has no shell: {runtime_base}"
    );
    assert!(
        runtime.iter().all(|i| i.keyword != "RUN"),
        "nothing runs in the runtime stage (there is no shell)"
    );
    let copies: Vec<&str> = runtime
        .iter()
        .filter(|i| i.keyword == "COPY")
        .map(|i| i.args.as_str())
        .collect();
    assert_eq!(copies.len(), 1, "the binary only: {copies:?}");
    assert!(
        copies[0].starts_with(&format!("--from={build_name} ")) && copies[0].ends_with(INSTALLED),
        "{}",
        copies[0]
    );
    let image = image();
    assert_eq!(image.entrypoint, INSTALLED);
    assert!(image.uid != 0, "non-root");
    assert!(!image.tags.is_empty());
    // The shell target (for the Indexed Job) is the same binary as the same user.
    let shell = stages.iter().find(|s| s.0 == "shell").expect("a `shell` target");
    assert!(shell
        .2
        .iter()
        .any(|i| i.keyword == "USER" && i.args.starts_with(&image.uid.to_string())));

    let ignored = read(".dockerignore");
    assert!(
        ignored.lines().any(|l| l.trim() == "target/" || l.trim() == "target"),
        "target/ stays out of the context"
    );
    assert!(
        ignored.lines().any(|l| l.trim().ends_with("secrets.json")),
        "no local store in the context"
    );

    // Build where a Docker daemon answers; this machine has only the client (no daemon
    // runs here), so then the structure above is all that is checked.
    let daemon = Command::new("docker")
        .arg("info")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if daemon {
        let tag = "rekey-examples-test:latest";
        let out = Command::new("docker")
            .args(["build", "-t", tag, ROOT])
            .output()
            .unwrap();
        assert!(out.status.success(), "docker build: {}", output_text(&out));
        let out = Command::new("docker")
            .args(["run", "--rm", tag, "--version"])
            .output()
            .unwrap();
        assert!(out.status.success(), "docker run: {}", output_text(&out));
        assert!(String::from_utf8_lossy(&out.stdout).contains("rekey"));
        let out = Command::new("docker")
            .args(["run", "--rm", "--entrypoint", "/bin/sh", tag, "-c", "true"])
            .output()
            .unwrap();
        assert!(!out.status.success(), "the runtime image has no shell");
    } else {
        eprintln!("no Docker daemon answers `docker info`: the Dockerfile's structure was checked, not built");
    }
}

// ---------------------------------------------------------------------------------
// The shared configuration and environment file.

/// `NAME='value'` lines of an environment file (comments and blanks left out).
fn env_file(text: &str) -> Vec<(String, String)> {
    text.lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .map(|l| {
            let (name, value) = l.split_once('=').unwrap_or_else(|| panic!("not NAME=value: {l}"));
            assert!(
                name.chars()
                    .all(|c| c.is_ascii_uppercase() || c.is_ascii_digit() || c == '_'),
                "{name}"
            );
            let value = value
                .strip_prefix('\'')
                .and_then(|v| v.strip_suffix('\''))
                .unwrap_or_else(|| panic!("{name}: single-quote the value (sh and systemd read it alike)"));
            assert!(!value.contains('\''), "{name}");
            (name.to_owned(), value.to_owned())
        })
        .collect()
}

/// The shipped rekey.toml, loaded as the recipes load it (at /etc/rekey/rekey.toml),
/// with `env` as the environment.
fn deploy_config(name: &str, env: &[(&str, &str)]) -> Config {
    let text = deploy(name);
    Config::parse(Path::new("/etc/rekey/rekey.toml"), &text, |var| {
        env.iter().find(|(n, _)| *n == var).map(|(_, v)| (*v).to_owned())
    })
    .unwrap_or_else(|e| panic!("{name}: {e}"))
}

/// Every path rekey writes under this configuration.
fn written_paths(config: &Config) -> Vec<PathBuf> {
    let mut paths = vec![config.defaults.lock_dir.clone()];
    paths.extend(config.defaults.audit_log.clone());
    for store in config.stores.values() {
        if let StoreConfig::File(f) = store {
            paths.push(f.path.clone());
        }
    }
    paths
}

#[test]
fn deploy_config_keeps_state_out_of_etc_and_its_secrets_in_the_environment_file() {
    let env = env_file(&deploy("rekey.env"));
    let names: BTreeSet<String> = env.iter().map(|(n, _)| n.clone()).collect();
    let text = deploy("rekey.toml");
    for var in required_refs(&text) {
        assert!(
            names.contains(&var),
            "rekey.toml needs ${{{var}}}; rekey.env does not set it"
        );
    }
    assert_eq!(
        env.iter().find(|(n, _)| n == "REKEY_CONFIG").map(|(_, v)| v.as_str()),
        Some("/etc/rekey/rekey.toml")
    );
    let values: Vec<(&str, &str)> = env.iter().map(|(n, v)| (n.as_str(), v.as_str())).collect();
    let config = deploy_config("rekey.toml", &values);
    assert!(!config.notify.is_empty());
    for path in written_paths(&config) {
        assert!(
            is_under(&path, "/var/lib/rekey"),
            "{} is not in the state directory",
            path.display()
        );
    }
    // REKEY_STATE_DIR moves all of it (CI).
    let mut moved = values.clone();
    moved.push(("REKEY_STATE_DIR", "/tmp/ci-state"));
    for path in written_paths(&deploy_config("rekey.toml", &moved)) {
        assert!(is_under(&path, "/tmp/ci-state"), "{}", path.display());
    }
    let crontab = deploy("crontab");
    assert!(
        crontab.contains("install -m 0600 -o rekey -g rekey examples/deploy/rekey.env /etc/rekey/env"),
        "the crontab recipe installs the environment file with mode 0600"
    );
}

/// A machine as the recipes set it up, in a temporary directory: the shipped config
/// (its database moved to a closed local port: nothing here leaves 127.0.0.1), the
/// environment file, a state directory and a store holding orders-db's current secret.
struct Site {
    dir: tempfile::TempDir,
    state: PathBuf,
    config: PathBuf,
    env_file: PathBuf,
    db_port: u16,
}

impl Site {
    fn new() -> Site {
        let dir = tempfile::tempdir().unwrap();
        let state = dir.path().join("state");
        std::fs::create_dir(&state).unwrap();
        std::fs::set_permissions(&state, std::fs::Permissions::from_mode(0o700)).unwrap();
        let db_port = closed_port();
        let shipped = deploy("rekey.toml");
        let moved = shipped.replace(
            "host = \"db.example.com\", port = 5432",
            &format!("host = \"127.0.0.1\", port = {db_port}"),
        );
        assert_ne!(moved, shipped);
        let config = dir.path().join("rekey.toml");
        std::fs::write(&config, moved).unwrap();
        let site = Site {
            state,
            config,
            env_file: dir.path().join("env"),
            db_port,
            dir,
        };
        // The shipped environment file with this site's values.
        let mut lines = Vec::new();
        for (name, _) in env_file(&deploy("rekey.env")) {
            let value = site
                .env()
                .into_iter()
                .find(|(n, _)| *n == name)
                .unwrap_or_else(|| panic!("no test value for {name}"))
                .1;
            lines.push(format!("{name}='{value}'"));
        }
        lines.push(format!("REKEY_STATE_DIR='{}'", site.state.display()));
        std::fs::write(&site.env_file, lines.join("\n") + "\n").unwrap();
        std::fs::set_permissions(&site.env_file, std::fs::Permissions::from_mode(0o600)).unwrap();
        let mut import = Command::new(BIN);
        import
            .env_clear()
            .envs(site.env())
            .env("REKEY_STATE_DIR", &site.state)
            .args(["import", "orders-db", "--no-verify"]);
        let out = feed(import, "current-orders-password");
        assert!(out.status.success(), "import: {}", output_text(&out));
        site
    }

    fn env(&self) -> Vec<(&'static str, String)> {
        vec![
            ("REKEY_CONFIG", self.config.display().to_string()),
            (
                "ORDERS_ADMIN_URL",
                format!("postgres://rotator:admin-pw@127.0.0.1:{}/postgres", self.db_port),
            ),
            ("REKEY_WEBHOOK_URL", format!("http://127.0.0.1:{}/hook", closed_port())),
        ]
    }

    /// A recipe's command with this site's paths for the installed ones.
    fn localize(&self, command: &str) -> String {
        command
            .replace(INSTALLED, BIN)
            .replace("/etc/rekey/env", &self.env_file.display().to_string())
            .replace("/var/lib/rekey", &self.state.display().to_string())
    }
}

fn feed(mut cmd: Command, stdin: &str) -> Output {
    use std::io::Write;
    cmd.stdin(Stdio::piped()).stdout(Stdio::piped()).stderr(Stdio::piped());
    let mut child = cmd.spawn().expect("spawn");
    child.stdin.take().unwrap().write_all(stdin.as_bytes()).unwrap();
    child.wait_with_output().unwrap()
}

// ---------------------------------------------------------------------------------
// cron

/// The crontab's entries: (schedule and user fields, command), in /etc/cron.d format.
fn cron_entries(text: &str) -> Vec<(Vec<String>, String)> {
    text.lines()
        .filter(|l| !l.trim().is_empty() && !l.trim_start().starts_with('#'))
        .filter(|l| {
            let first = l.split_whitespace().next().unwrap_or("");
            !(first.contains('=') && first.chars().next().is_some_and(|c| c.is_ascii_uppercase()))
        })
        .map(|l| {
            let mut rest = l.trim_start();
            let mut fields = Vec::new();
            for _ in 0..6 {
                let end = rest
                    .find(char::is_whitespace)
                    .expect("5 time fields, a user and a command");
                fields.push(rest[..end].to_owned());
                rest = rest[end..].trim_start();
            }
            (fields, rest.to_owned())
        })
        .collect()
}

#[test]
fn crontab_lines_run_under_crons_minimal_path_and_environment() {
    let text = deploy("crontab");
    let entries = cron_entries(&text);
    assert_eq!(entries.len(), 2, "{entries:?}");
    let site = Site::new();
    for (fields, command) in &entries {
        assert_eq!(fields[5], "rekey", "runs as the rekey user");
        assert!(!command.contains('%'), "cron turns % into a newline: {command}");
        assert!(
            command.contains(". /etc/rekey/env") && command.contains("set -a"),
            "exports the environment file: {command}"
        );
        let words = rekey_words(command);
        assert_eq!(words[0], INSTALLED, "an absolute path: cron's PATH is /usr/bin:/bin");
        assert_cli("crontab", &words);

        // Exactly as cron would: sh -c LINE with nothing but PATH and HOME.
        let line = site.localize(command);
        let out = Command::new("env")
            .args(["-i", "PATH=/usr/bin:/bin", "HOME=/tmp", "sh", "-c", &line])
            .output()
            .unwrap();
        if words.contains(&"rotate") {
            // Nothing is due (just imported): exit 0, quietly, and the report is written.
            assert_eq!(out.status.code(), Some(0), "{line}\n{}", output_text(&out));
            assert!(
                out.stdout.is_empty() && out.stderr.is_empty(),
                "-q: {}",
                output_text(&out)
            );
            let report = site.state.join("last-run.json");
            let report: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&report).unwrap()).unwrap();
            assert_eq!(report["credentials"][0]["status"], "not-due", "{report}");
            assert_eq!(mode(&site.state.join("secrets.json")), 0o600);
            assert!(
                site.state.join("audit.jsonl").exists(),
                "the audit log is in the state directory"
            );
        } else {
            // verify really checks the target: here it cannot be reached, which is exit
            // 1 with the error on stderr (what cron mails), and the failure notification
            // (to a closed port) is a warning, not another exit code.
            assert_eq!(out.status.code(), Some(1), "{line}\n{}", output_text(&out));
            let stderr = String::from_utf8_lossy(&out.stderr);
            assert!(
                stderr.contains("error: orders-db:") && stderr.contains("unreachable"),
                "{stderr}"
            );
            assert!(stderr.contains("warning: notification"), "{stderr}");
            assert!(!stderr.contains("admin-pw"), "{stderr}");
        }
    }
}

// ---------------------------------------------------------------------------------
// systemd

/// (section, key, value) of a unit file.
fn unit(text: &str) -> Vec<(String, String, String)> {
    let mut section = String::new();
    let mut out = Vec::new();
    for line in text.lines().map(str::trim) {
        if line.is_empty() || line.starts_with(['#', ';']) {
            continue;
        }
        if let Some(name) = line.strip_prefix('[').and_then(|l| l.strip_suffix(']')) {
            section = name.to_owned();
            continue;
        }
        let (key, value) = line.split_once('=').unwrap_or_else(|| panic!("not Key=value: {line}"));
        out.push((section.clone(), key.trim().to_owned(), value.trim().to_owned()));
    }
    out
}

fn unit_values<'a>(unit: &'a [(String, String, String)], section: &str, key: &str) -> Vec<&'a str> {
    unit.iter()
        .filter(|(s, k, _)| s == section && k == key)
        .map(|(_, _, v)| v.as_str())
        .collect()
}

#[track_caller]
fn unit_value<'a>(unit: &'a [(String, String, String)], section: &str, key: &str) -> &'a str {
    let values = unit_values(unit, section, key);
    assert_eq!(values.len(), 1, "[{section}] {key}: {values:?}");
    values[0]
}

#[test]
fn systemd_service_and_timer_verify_keep_state_out_of_etc_and_are_hardened() {
    let service_text = deploy("rekey-rotate.service");
    let timer_text = deploy("rekey-rotate.timer");
    let service = unit(&service_text);
    let timer = unit(&timer_text);
    let s = |key: &str| unit_value(&service, "Service", key);
    assert_eq!(s("Type"), "oneshot");
    assert!(!["root", "0"].contains(&s("User")), "not root");
    assert_eq!(s("StateDirectory"), "rekey");
    assert_eq!(s("WorkingDirectory"), "/var/lib/rekey");
    assert_eq!(s("EnvironmentFile"), "/etc/rekey/env");
    assert_eq!(s("Environment"), "REKEY_CONFIG=/etc/rekey/rekey.toml");
    assert_eq!(s("SuccessExitStatus"), "3");
    for (key, value) in [
        ("NoNewPrivileges", "yes"),
        ("ProtectSystem", "strict"),
        ("ProtectHome", "yes"),
        ("PrivateTmp", "yes"),
        ("PrivateDevices", "yes"),
        ("ProtectKernelTunables", "yes"),
        ("ProtectKernelModules", "yes"),
        ("ProtectControlGroups", "yes"),
        ("RestrictSUIDSGID", "yes"),
        ("LockPersonality", "yes"),
        ("MemoryDenyWriteExecute", "yes"),
        ("CapabilityBoundingSet", ""),
        ("UMask", "0077"),
    ] {
        assert_eq!(s(key), value, "{key}");
    }
    for rw in unit_values(&service, "Service", "ReadWritePaths") {
        assert!(!rw.contains("/etc"), "state stays out of /etc: ReadWritePaths={rw}");
    }
    let exec = s("ExecStart");
    let words = rekey_words(exec);
    assert_eq!(words[0], INSTALLED);
    assert_cli("ExecStart", &words);
    for w in &words {
        if w.starts_with('/') && *w != INSTALLED {
            assert!(
                w.starts_with("/var/lib/rekey/"),
                "writes only in the StateDirectory: {w}"
            );
        }
    }
    assert_eq!(unit_value(&timer, "Install", "WantedBy"), "timers.target");
    assert!(
        unit_values(&timer, "Timer", "Unit").is_empty(),
        "the timer starts its namesake service"
    );
    assert_eq!(unit_value(&timer, "Timer", "OnCalendar"), "hourly");

    let site = Site::new();
    // ExecStart as systemd would run it: Environment=, then EnvironmentFile= (which
    // wins), in the WorkingDirectory (the StateDirectory systemd creates).
    let mut env: Vec<(String, String)> = vec![("PATH".into(), "/usr/bin:/bin".into())];
    let (name, value) = s("Environment").split_once('=').unwrap();
    env.push((name.into(), value.into()));
    env.extend(env_file(&std::fs::read_to_string(&site.env_file).unwrap()));
    let line = site.localize(exec);
    let argv: Vec<&str> = line.split_whitespace().collect();
    let out = Command::new(argv[0])
        .args(&argv[1..])
        .env_clear()
        .envs(env)
        .current_dir(&site.state)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", output_text(&out));
    assert!(site.state.join("last-run.json").exists());

    // systemd's own check, where systemd-analyze is installed. It needs ExecStart's
    // binary to exist: the copy under test stands in for /usr/local/bin/rekey.
    if Command::new("systemd-analyze")
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success())
    {
        let units = site.dir.path().join("units");
        std::fs::create_dir(&units).unwrap();
        let binary = units.join("rekey");
        std::os::unix::fs::symlink(BIN, &binary).unwrap();
        let service_path = units.join("rekey-rotate.service");
        std::fs::write(
            &service_path,
            service_text.replace(INSTALLED, &binary.display().to_string()),
        )
        .unwrap();
        let timer_path = units.join("rekey-rotate.timer");
        std::fs::write(&timer_path, &timer_text).unwrap();
        let out = Command::new("systemd-analyze")
            .arg("verify")
            .arg(&service_path)
            .arg(&timer_path)
            .output()
            .unwrap();
        assert!(
            out.status.success() && out.stderr.is_empty(),
            "systemd-analyze verify: {}",
            output_text(&out)
        );
        // The exposure score systemd computes from the hardening (0 best, 10 worst).
        let out = Command::new("systemd-analyze")
            .args(["security", "--offline=yes", "--no-pager"])
            .arg(&service_path)
            .output()
            .unwrap();
        let text = String::from_utf8_lossy(&out.stdout);
        if let Some(score) = text
            .lines()
            .find_map(|l| l.split("Overall exposure level for rekey-rotate.service: ").nth(1))
        {
            let score: f64 = score.split_whitespace().next().unwrap().parse().unwrap();
            assert!(score <= 2.5, "exposure {score}:\n{text}");
        }
    } else {
        eprintln!("systemd-analyze is not installed: the units were checked by parsing only");
    }
}

// ---------------------------------------------------------------------------------
// Kubernetes

struct Mount<'a> {
    path: &'a str,
    read_only: bool,
    volume: &'a Yaml,
}

fn mounts<'a>(pod: &'a Yaml, container: &'a Yaml) -> Vec<Mount<'a>> {
    container
        .at("volumeMounts")
        .list()
        .iter()
        .map(|m| {
            let name = m.at("name").str();
            let volume = pod
                .at("volumes")
                .list()
                .iter()
                .find(|v| v.at("name").str() == name)
                .unwrap_or_else(|| panic!("no volume `{name}`"));
            Mount {
                path: m.at("mountPath").str(),
                read_only: m.get("readOnly").is_some_and(|r| r.str() == "true"),
                volume,
            }
        })
        .collect()
}

/// The words after `kubectl create KIND` in a recipe's comments: (name, flags).
fn kubectl_create(text: &str, kind: &str) -> (String, Vec<String>) {
    let line = text
        .lines()
        .find_map(|l| l.split_once(&format!("kubectl create {kind} ")).map(|(_, rest)| rest))
        .unwrap_or_else(|| panic!("no `kubectl create {kind}` in the comments"));
    let mut words = line.split_whitespace();
    let name = words.next().unwrap().to_owned();
    (name, words.map(str::to_owned).collect())
}

/// Names given with `--from-literal=NAME=...`.
fn literal_names(flags: &[String]) -> BTreeSet<String> {
    flags
        .iter()
        .filter_map(|f| f.strip_prefix("--from-literal="))
        .map(|f| f.split('=').next().unwrap().to_owned())
        .collect()
}

/// Checks a pod that runs the image: non-root as the image's user, read-only root,
/// config read-only from the named ConfigMap, secrets from the named Secret, every path
/// the config writes in a writable volume. Returns the container.
fn check_pod<'a>(what: &str, recipe: &str, pod: &'a Yaml, config_file: &str, env: &[(&str, &str)]) -> &'a Yaml {
    let image = image();
    assert_eq!(pod.at("restartPolicy").str(), "Never", "{what}");
    let security = pod.at("securityContext");
    assert_eq!(security.at("runAsNonRoot").str(), "true", "{what}");
    assert_eq!(
        security.at("runAsUser").str(),
        image.uid.to_string(),
        "{what}: the image's USER"
    );
    assert_eq!(security.at("fsGroupChangePolicy").str(), "OnRootMismatch", "{what}");
    assert_eq!(security.at("seccompProfile.type").str(), "RuntimeDefault", "{what}");
    let containers = pod.at("containers").list();
    assert_eq!(containers.len(), 1, "{what}");
    let container = &containers[0];
    assert!(
        image.tags.iter().any(|t| t == container.at("image").str()),
        "{what}: image {} is one the Dockerfile's comments build ({:?})",
        container.at("image").str(),
        image.tags
    );
    let c = container.at("securityContext");
    assert_eq!(c.at("readOnlyRootFilesystem").str(), "true", "{what}");
    assert_eq!(c.at("allowPrivilegeEscalation").str(), "false", "{what}");
    assert_eq!(c.at("capabilities.drop").strs(), ["ALL"], "{what}");

    let mounts = mounts(pod, container);
    let config_mount = mounts
        .iter()
        .find(|m| m.path == "/etc/rekey")
        .expect("config at /etc/rekey");
    assert!(config_mount.read_only, "{what}: the config mount is read-only");
    let (configmap, flags) = kubectl_create(recipe, "configmap");
    assert_eq!(config_mount.volume.at("configMap.name").str(), configmap, "{what}");
    assert!(
        flags.contains(&format!("--from-file=rekey.toml=examples/deploy/{config_file}")),
        "{what}: {flags:?}"
    );
    let (secret, flags) = kubectl_create(recipe, "secret generic");
    let secret_ref = container.at("envFrom.0.secretRef.name").str();
    assert_eq!(
        secret_ref, secret,
        "{what}: secrets come from the Secret as environment variables"
    );
    let given = literal_names(&flags);
    for var in required_refs(&deploy(config_file)) {
        assert!(
            given.contains(&var),
            "{what}: {config_file} needs ${{{var}}}; the Secret lacks it"
        );
    }
    assert!(
        container.get("env").is_none_or(|e| e
            .list()
            .iter()
            .all(|v| v.get("value").is_none_or(|v| !v.str().contains("://")))),
        "{what}: no secret in the manifest"
    );
    let config = deploy_config(config_file, env);
    for path in written_paths(&config) {
        let mount = mounts
            .iter()
            .filter(|m| path.starts_with(m.path))
            .max_by_key(|m| m.path.len())
            .unwrap_or_else(|| panic!("{what}: {} is on the read-only root filesystem", path.display()));
        assert!(!mount.read_only, "{what}: {} is on a read-only mount", path.display());
        assert!(
            mount.volume.get("persistentVolumeClaim").is_some(),
            "{what}: {} is kept between runs",
            path.display()
        );
    }
    assert!(
        mounts.iter().any(|m| m.path == "/tmp" && !m.read_only),
        "{what}: a writable /tmp"
    );
    container
}

#[test]
fn kubernetes_cronjob_runs_the_image_read_only_with_state_in_a_volume() {
    let text = deploy("kubernetes-cronjob.yaml");
    let docs = yaml_docs(&text);
    let kinds: Vec<&str> = docs.iter().map(|d| d.at("kind").str()).collect();
    assert_eq!(kinds, ["PersistentVolumeClaim", "CronJob"]);
    let cron = &docs[1];
    assert_eq!(cron.at("apiVersion").str(), "batch/v1");
    assert_eq!(cron.at("spec.concurrencyPolicy").str(), "Forbid");
    let pod = cron.at("spec.jobTemplate.spec.template.spec");
    let env = [
        ("ORDERS_ADMIN_URL", "postgres://rotator:pw@db.example.com:5432/postgres"),
        ("REKEY_WEBHOOK_URL", "https://hooks.example.com/x"),
    ];
    let container = check_pod("CronJob", &text, pod, "rekey.toml", &env);
    assert_eq!(container.at("command").strs(), [image().entrypoint.as_str()]);
    let mut argv = vec!["rekey"];
    argv.extend(container.at("args").strs());
    assert_cli("CronJob", &argv);
    assert_eq!(argv[1..3], ["-c", "/etc/rekey/rekey.toml"]);
    assert!(argv.ends_with(&["rotate", "--due"]), "{argv:?}");
    let claim = pod
        .at("volumes")
        .list()
        .iter()
        .find_map(|v| v.get("persistentVolumeClaim"))
        .unwrap()
        .at("claimName")
        .str();
    assert_eq!(claim, docs[0].at("metadata.name").str());
    assert!(
        text.contains("rekey cannot write it to stdout") && text.contains("audit_log = \"-\""),
        "the recipe says why the audit log is in the volume"
    );
}

/// Kubernetes' `$(VAR)` expansion of command and args (`$$` escapes; an unknown or
/// malformed reference stays as written).
fn kubernetes_expand(input: &str, vars: &[(&str, &str)]) -> String {
    let mut out = String::new();
    let mut rest = input;
    while let Some(pos) = rest.find('$') {
        out.push_str(&rest[..pos]);
        let after = &rest[pos + 1..];
        if let Some(after) = after.strip_prefix('$') {
            out.push('$');
            rest = after;
        } else if let Some(body) = after.strip_prefix('(') {
            match body.find(')') {
                Some(end) => {
                    let name = &body[..end];
                    match vars.iter().find(|(n, _)| *n == name) {
                        Some((_, v)) => out.push_str(v),
                        None => out.push_str(&format!("$({name})")),
                    }
                    rest = &body[end + 1..];
                }
                None => {
                    out.push_str("$(");
                    rest = body;
                }
            }
        } else {
            out.push('$');
            rest = after;
        }
    }
    out.push_str(rest);
    out
}

#[test]
fn kubernetes_indexed_job_shards_rotate_every_credential_exactly_once() {
    let text = deploy("kubernetes-indexed-job.yaml");
    let docs = yaml_docs(&text);
    let job = docs.iter().find(|d| d.at("kind").str() == "Job").expect("a Job");
    assert_eq!(job.at("spec.completionMode").str(), "Indexed");
    let n: usize = job.at("spec.completions").str().parse().unwrap();
    assert_eq!(job.at("spec.parallelism").str(), n.to_string());
    let pod = job.at("spec.template.spec");
    let env = [
        (
            "FLEET_PG_ADMIN_URL",
            "postgres://rotator:pw@db.example.com:5432/postgres",
        ),
        ("FLEET_REDIS_ADMIN_URL", "redis://rotator:pw@cache.example.com:6379"),
        ("REKEY_WEBHOOK_URL", "https://hooks.example.com/x"),
    ];
    let container = check_pod("Indexed Job", &text, pod, "rekey-fleet.toml", &env);
    assert!(
        container.at("image").str().ends_with("-shell"),
        "the image with a shell"
    );
    let command = container.at("command").strs();
    assert_eq!(command, ["/busybox/sh", "-c"]);
    let args = container.at("args").strs();
    assert_eq!(args.len(), 1);
    // What the container receives after Kubernetes' own expansion.
    let script = kubernetes_expand(args[0], &[("JOB_COMPLETION_INDEX", "0")]);
    assert_eq!(script, args[0], "Kubernetes leaves the shell arithmetic alone");
    assert!(
        script.contains(&format!("--shard $((JOB_COMPLETION_INDEX+1))/{n}")),
        "{script}"
    );
    let words = rekey_words(&script);
    assert_eq!(words[0], INSTALLED);

    // Run every index's command with sh, as the pods would, against the fleet config
    // with its store replaced by a local file (shards share it) and its targets by a
    // closed port: nothing is due, so no target is contacted.
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("state");
    std::fs::create_dir(&state).unwrap();
    let port = closed_port().to_string();
    let mut fleet = deploy("rekey-fleet.toml")
        .replace(
            "type = \"vault-kv\"\nmount = \"secret\"\nkv_version = 2",
            "type = \"file\"\npath = \"/var/lib/rekey/secrets.json\"",
        )
        .replace("/var/lib/rekey", &state.display().to_string());
    for host in [
        "orders.db.example.com",
        "billing.db.example.com",
        "sessions.cache.example.com",
    ] {
        fleet = fleet.replace(host, "127.0.0.1");
    }
    fleet = fleet
        .replace("port = 5432", &format!("port = {port}"))
        .replace("port = 6379", &format!("port = {port}"));
    assert!(fleet.contains("type = \"file\""));
    let config = dir.path().join("rekey.toml");
    std::fs::write(&config, &fleet).unwrap();
    let names: Vec<String> = fleet
        .lines()
        .filter_map(|l| l.strip_prefix("name = \"").map(|n| n.trim_end_matches('"').to_owned()))
        .collect();
    assert!(names.len() >= n, "{names:?}");
    let local = format!("127.0.0.1:{port}");
    let run_env = |cmd: &mut Command| {
        cmd.env_clear().env("PATH", "/usr/bin:/bin");
        for (k, v) in env {
            let v = v
                .replace("db.example.com:5432", &local)
                .replace("cache.example.com:6379", &local)
                .replace("https://hooks.example.com", &format!("http://{local}"));
            assert!(v.contains(&local), "{k} stays on this machine");
            cmd.env(k, v);
        }
    };
    for name in &names {
        let mut import = Command::new(BIN);
        run_env(&mut import);
        import.arg("-c").arg(&config).args(["import", name, "--no-verify"]);
        let out = feed(import, "current-secret-value");
        assert!(out.status.success(), "import {name}: {}", output_text(&out));
    }
    let mut seen = Vec::new();
    for index in 0..n {
        let line = script
            .replace(INSTALLED, BIN)
            .replace("/etc/rekey/rekey.toml", &config.display().to_string());
        let mut sh = Command::new("sh");
        run_env(&mut sh);
        sh.args(["-c", &line]).env("JOB_COMPLETION_INDEX", index.to_string());
        let out = sh.output().unwrap();
        assert_eq!(out.status.code(), Some(0), "index {index}: {}", output_text(&out));
        let report: serde_json::Value = serde_json::from_slice(&out.stdout).expect("-o json on stdout");
        for c in report["credentials"].as_array().unwrap() {
            assert_eq!(c["status"], "not-due");
            seen.push(c["name"].as_str().unwrap().to_owned());
        }
        assert!(
            state.join(format!("audit-{index}.jsonl")).exists(),
            "each pod its own audit log"
        );
    }
    seen.sort();
    let mut expected = names.clone();
    expected.sort();
    assert_eq!(seen, expected, "every credential in exactly one shard");
}

// ---------------------------------------------------------------------------------
// CI

#[test]
fn ci_workflow_installs_restores_the_store_0600_verifies_and_publishes_junit() {
    let text = deploy("ci-verify.yml");
    let docs = yaml_docs(&text);
    assert_eq!(docs.len(), 1);
    let workflow = &docs[0];
    assert!(workflow.at("on").get("schedule").is_some());
    let jobs = match workflow.at("jobs") {
        Yaml::Map(m) => m,
        other => panic!("{other:?}"),
    };
    assert_eq!(jobs.len(), 1);
    let steps = jobs[0].1.at("steps").list();
    let position = |pred: &dyn Fn(&Yaml) -> bool, what: &str| {
        steps
            .iter()
            .position(pred)
            .unwrap_or_else(|| panic!("no step that {what}"))
    };
    let run_of = |s: &Yaml| s.get("run").map(|r| r.str().to_owned()).unwrap_or_default();
    let uses_of = |s: &Yaml| s.get("uses").map(|r| r.str().to_owned()).unwrap_or_default();
    let checkout = position(&|s| uses_of(s).starts_with("actions/checkout@"), "checks out");
    let install = position(
        &|s| run_of(s).contains("cargo install --locked --path ."),
        "installs rekey",
    );
    let restore = position(&|s| run_of(s).contains("chmod 600"), "restores the store 0600");
    let verify = position(&|s| run_of(s).contains("verify --junit"), "runs verify --junit");
    let upload = position(
        &|s| uses_of(s).starts_with("actions/upload-artifact@"),
        "uploads the report",
    );
    let publish = position(&|s| uses_of(s).contains("junit-report"), "publishes the report");
    assert!(checkout < install && install < verify && restore < verify && verify < upload.min(publish));

    let verify_line = run_of(&steps[verify]);
    let words = rekey_words(verify_line.trim());
    assert_cli("CI verify step", &words);
    let junit = words[words.iter().position(|w| *w == "--junit").unwrap() + 1];
    for (index, key) in [(upload, "with.path"), (publish, "with.report_paths")] {
        assert_eq!(steps[index].at(key).str(), junit, "publishes the file verify wrote");
        assert_eq!(
            steps[index].at("if").str(),
            "always()",
            "published also when verify fails"
        );
    }
    let config = words[words.iter().position(|w| *w == "-c").unwrap() + 1];
    assert!(Path::new(ROOT).join(config).exists(), "{config} is in the repository");

    // Run the restore and verify steps as the runner would (bash, the step's env, the
    // values later steps get through $GITHUB_ENV), in a copy of the checkout whose
    // config points the database at a closed local port; `rekey` is on PATH as
    // `cargo install` leaves it.
    let site = Site::new();
    let root = site.dir.path().join("checkout");
    let runner_temp = site.dir.path().join("runner-temp");
    let bin_dir = site.dir.path().join("cargo-bin");
    for d in [&root.join("examples/deploy"), &runner_temp, &bin_dir] {
        std::fs::create_dir_all(d).unwrap();
    }
    std::fs::copy(&site.config, root.join(config)).unwrap();
    std::os::unix::fs::symlink(BIN, bin_dir.join("rekey")).unwrap();
    let github_env = site.dir.path().join("github-env");
    std::fs::write(&github_env, "").unwrap();
    let store = std::fs::read_to_string(site.state.join("secrets.json")).unwrap();
    let secrets: Vec<(String, String)> = site
        .env()
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v))
        .chain([("REKEY_STORE_JSON".to_owned(), store.clone())])
        .collect();
    let step_env = |step: &Yaml| -> Vec<(String, String)> {
        let Some(Yaml::Map(env)) = step.get("env") else {
            return Vec::new();
        };
        env.iter()
            .map(|(k, v)| {
                let value = v.str();
                let secret = value
                    .strip_prefix("${{ secrets.")
                    .and_then(|s| s.strip_suffix(" }}"))
                    .unwrap_or_else(|| panic!("{k}: only secrets here: {value}"));
                let (_, test_value) = secrets
                    .iter()
                    .find(|(name, _)| name == secret)
                    .unwrap_or_else(|| panic!("no test value for secret {secret}"));
                (k.clone(), test_value.clone())
            })
            .collect()
    };
    let run_step = |step: &Yaml| -> Output {
        let exported: Vec<(String, String)> = std::fs::read_to_string(&github_env)
            .unwrap()
            .lines()
            .filter_map(|l| l.split_once('=').map(|(k, v)| (k.to_owned(), v.to_owned())))
            .collect();
        Command::new("bash")
            .args(["-e", "-c", &run_of(step)])
            .current_dir(&root)
            .env_clear()
            .env("PATH", format!("{}:/usr/bin:/bin", bin_dir.display()))
            .env("HOME", site.dir.path())
            .env("RUNNER_TEMP", &runner_temp)
            .env("GITHUB_ENV", &github_env)
            .envs(exported)
            .envs(step_env(step))
            .output()
            .unwrap()
    };
    let out = run_step(&steps[restore]);
    assert!(out.status.success(), "restore: {}", output_text(&out));
    let restored = runner_temp.join("rekey/secrets.json");
    assert_eq!(std::fs::read_to_string(&restored).unwrap(), store);
    assert_eq!(mode(&restored), 0o600, "rekey refuses a store file others can read");

    let out = run_step(&steps[verify]);
    // The database is unreachable here: verify fails (exit 1) and still writes the report.
    assert_eq!(out.status.code(), Some(1), "verify: {}", output_text(&out));
    let report = std::fs::read_to_string(root.join(junit)).expect("the JUnit report is written");
    assert!(
        report.contains("<testsuite") && report.contains("orders-db") && report.contains("<failure"),
        "{report}"
    );
    assert!(
        runner_temp.join("rekey/audit.jsonl").exists(),
        "state in $RUNNER_TEMP via REKEY_STATE_DIR"
    );
}

// ---------------------------------------------------------------------------------

#[test]
fn every_deploy_file_is_exercised_here() {
    let dir = Path::new(ROOT).join("examples/deploy");
    let found: BTreeSet<String> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    let exercised: BTreeSet<String> = [
        "ci-verify.yml",
        "crontab",
        "kubernetes-cronjob.yaml",
        "kubernetes-indexed-job.yaml",
        "rekey-fleet.toml",
        "rekey-rotate.service",
        "rekey-rotate.timer",
        "rekey.env",
        "rekey.toml",
    ]
    .into_iter()
    .map(str::to_owned)
    .collect();
    assert_eq!(found, exercised, "a new recipe needs a test in tests/examples.rs");
}

#[test]
fn a_wrong_flag_would_be_caught() {
    let words = rekey_words("exec /usr/local/bin/rekey rotate --overdue");
    assert!(std::panic::catch_unwind(|| assert_cli("test", &words)).is_err());
    let words = rekey_words("exec /usr/local/bin/rekey rotate --due");
    assert_cli("test", &words);
}

/// The commented SaaS configurations (not tested against the services: no network here)
/// parse, and `rekey validate` builds their targets offline.
#[test]
fn saas_examples_validate_offline() {
    for name in ["sendgrid", "datadog", "twilio"] {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join(format!("examples/saas/{name}.toml"));
        let text = std::fs::read_to_string(&path).unwrap();
        assert!(text.contains("NOT TESTED HERE"), "{name} says it is untested");
        let out = Command::new(env!("CARGO_BIN_EXE_rekey"))
            .args(["-c", path.to_str().unwrap(), "validate"])
            .env("SENDGRID_ADMIN_KEY", "x")
            .env("DD_ADMIN_API_KEY", "x")
            .env("DD_APP_KEY", "x")
            .env("TWILIO_ACCOUNT_SID", "AC00000000000000000000000000000000")
            .env("TWILIO_AUTH_TOKEN", "x")
            .env_remove("REKEY_CONFIG")
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(0), "{name}: {}", output_text(&out));
    }
}

// ---------------------------------------------------------------------------------
// Configurations that scale

const FLEET_ENV: [(&str, &str); 3] = [
    ("FLEET_PG_ADMIN_URL", "postgres://rotator:pw@127.0.0.1:5432/postgres"),
    ("FLEET_MYSQL_ADMIN_URL", "mysql://rotator:pw@127.0.0.1:3306"),
    ("FLEET_REDIS_ADMIN_URL", "redis://rotator:pw@127.0.0.1:6379"),
];

/// `examples/fleet.toml`: 50 credentials in a few dozen lines, through an included
/// file of target blocks, a default store and one line per credential; each resolves
/// to its block's target with its own overrides.
#[test]
fn fleet_example_resolves_fifty_credentials_through_blocks_default_store_and_include() {
    use rekey::config::TargetConfig;
    let path = Path::new(ROOT).join("examples/fleet.toml");
    let text = read("examples/fleet.toml");
    assert!(text.lines().count() <= 80, "a few dozen lines");
    let config = Config::parse(&path, &text, |var| {
        FLEET_ENV.iter().find(|(n, _)| *n == var).map(|(_, v)| (*v).to_owned())
    })
    .unwrap_or_else(|e| panic!("fleet.toml: {e}"));
    assert_eq!(config.included, [Path::new(ROOT).join("examples/conf.d/targets.toml")]);
    assert_eq!(config.credentials.len(), 50);
    let (mut pg, mut mysql, mut redis) = (0, 0, 0);
    for c in &config.credentials {
        assert_eq!(c.store, "local", "{}: the default store", c.name);
        // Every key is `<kind>/<service>`, and the service's user is `<service>_app`.
        let (kind, service) = c.key.split_once('/').unwrap();
        let user = format!("{service}_app");
        let admin_host = |admin: String| admin.contains("@127.0.0.1");
        match &config.targets[&c.name] {
            TargetConfig::Postgres(t) => {
                pg += 1;
                assert_eq!(kind, "pg");
                assert_eq!((t.host.as_str(), t.port), ("127.0.0.1", 5432), "{}", c.name);
                assert_eq!(t.username.as_deref(), Some(user.as_str()));
                assert_eq!(t.dbname, service, "{}: its own dbname overrides the block's", c.name);
                assert!(t.terminate_sessions, "{}: the block's setting", c.name);
                assert!(t.admin.as_ref().is_some_and(|a| admin_host(a.expose().to_owned())));
            }
            TargetConfig::Mysql(t) => {
                mysql += 1;
                assert_eq!(kind, "mysql");
                assert_eq!((t.host.as_str(), t.port), ("127.0.0.1", 3306));
                assert_eq!(t.username.as_deref(), Some(user.as_str()));
                assert!(t.admin.as_ref().is_some_and(|a| admin_host(a.expose().to_owned())));
            }
            TargetConfig::Redis(t) => {
                redis += 1;
                assert_eq!(kind, "redis");
                assert_eq!((t.host.as_str(), t.port), ("127.0.0.1", 6379));
                assert_eq!(t.username, user);
                assert!(t.admin.as_ref().is_some_and(|a| admin_host(a.expose().to_owned())));
            }
            other => panic!("{}: unexpected target {}", c.name, other.type_name()),
        }
    }
    assert_eq!((pg, mysql, redis), (30, 10, 10));

    // The binary agrees, offline.
    let out = Command::new(BIN)
        .args(["-c", path.to_str().unwrap(), "validate"])
        .envs(FLEET_ENV)
        .env_remove("REKEY_CONFIG")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", output_text(&out));
}
