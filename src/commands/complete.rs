//! Completions that know the configuration: `rekey completions SHELL` prints clap's
//! static script with hooks that call the hidden `rekey __complete names|tags`, which
//! lists the credential names or tags of the configuration (read offline: nothing is
//! contacted, no secret read, and nothing printed on error, so a broken config only
//! means no suggestions).

use crate::cli::Cli;
use crate::config::{config_path, Config};
use std::collections::BTreeSet;
use std::io::Write;

/// What `__complete` lists.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Candidates {
    /// Credential names.
    Names,
    /// Tags.
    Tags,
}

/// `rekey __complete names|tags`: one candidate a line; always exit 0.
pub fn run(cli: &Cli, what: Candidates) -> i32 {
    let path = config_path(cli.config.as_deref());
    let words: BTreeSet<String> = match Config::load(&path) {
        Ok(config) => config
            .credentials
            .iter()
            .flat_map(|c| match what {
                Candidates::Names => vec![c.name.clone()],
                Candidates::Tags => c.tags.clone(),
            })
            .collect(),
        // A config that does not load (an unset variable in another credential's admin
        // URL, a typo being fixed) still has its names and tags.
        Err(_) => raw_candidates(&path, what),
    };
    let mut out = std::io::stdout().lock();
    for word in words {
        let _ = writeln!(out, "{word}");
    }
    crate::exit::SUCCESS
}

/// Names or tags read from the file as plain TOML (`[[credentials]]` tables), without
/// resolving anything.
fn raw_candidates(path: &std::path::Path, what: Candidates) -> BTreeSet<String> {
    let Ok(text) = std::fs::read_to_string(path) else {
        return BTreeSet::new();
    };
    let Ok(doc) = text.parse::<toml::Table>() else {
        return BTreeSet::new();
    };
    let credentials = doc
        .get("credentials")
        .and_then(|c| c.as_array())
        .cloned()
        .unwrap_or_default();
    credentials
        .iter()
        .flat_map(|c| -> Vec<String> {
            match what {
                Candidates::Names => c
                    .get("name")
                    .and_then(|n| n.as_str())
                    .map(str::to_owned)
                    .into_iter()
                    .collect(),
                Candidates::Tags => c
                    .get("tags")
                    .and_then(|t| t.as_array())
                    .map(|tags| tags.iter().filter_map(|t| t.as_str().map(str::to_owned)).collect())
                    .unwrap_or_default(),
            }
        })
        .collect()
}

/// Commands whose positional arguments are credential names.
const NAMED: &[&str] = &["plan", "rotate", "verify", "status", "import", "get"];

/// The completion script for `shell`: clap's, with credential names and tags completed
/// by `rekey __complete` (bash, zsh and fish; other shells get clap's script as it is).
pub fn script(shell: clap_complete::Shell) -> String {
    let mut command = <Cli as clap::CommandFactory>::command();
    let mut generated = Vec::new();
    clap_complete::generate(shell, &mut command, "rekey", &mut generated);
    let text = String::from_utf8_lossy(&generated).into_owned();
    match shell {
        clap_complete::Shell::Bash => bash(&text),
        clap_complete::Shell::Zsh => zsh(&text),
        clap_complete::Shell::Fish => fish(&text),
        _ => text,
    }
}

/// Bash: `_rekey_dynamic` answers names and tags and hands everything else to clap's
/// `_rekey`; it is what `complete` registers. `-c FILE` on the line is honoured.
fn bash(generated: &str) -> String {
    let hook = format!(
        r#"
# Credential names and tags, from the configuration (rekey __complete).
_rekey_dynamic() {{
    local cur="${{COMP_WORDS[COMP_CWORD]}}" prev="" cmd="" w i=1
    local -a config=()
    (( COMP_CWORD > 0 )) && prev="${{COMP_WORDS[COMP_CWORD-1]}}"
    while (( i < COMP_CWORD )); do
        w="${{COMP_WORDS[i]}}"
        case "$w" in
            -c|--config) config=(-c "${{COMP_WORDS[i+1]}}"); i=$((i + 2)); continue ;;
            --config=*) config=(-c "${{w#--config=}}") ;;
            -o|--output|--color|--tag|--shard|--parallel|--grace|--report|--wait|--junit|--metrics-file|--stage|--field|--from)
                i=$((i + 2)); continue ;;
            -*) ;;
            *) [[ -z "$cmd" ]] && cmd="$w" ;;
        esac
        i=$((i + 1))
    done
    if [[ "$prev" == "--tag" ]]; then
        COMPREPLY=( $(compgen -W "$("${{COMP_WORDS[0]}}" "${{config[@]}}" __complete tags 2>/dev/null)" -- "$cur") )
        return 0
    fi
    if [[ "$cur" != -* ]]; then
        case "$cmd" in
            {named})
                COMPREPLY=( $(compgen -W "$("${{COMP_WORDS[0]}}" "${{config[@]}}" __complete names 2>/dev/null)" -- "$cur") )
                return 0 ;;
        esac
    fi
    _rekey "$@"
}}
"#,
        named = NAMED.join("|")
    );
    let registered = generated.replace("complete -F _rekey ", "complete -F _rekey_dynamic ");
    match registered.find("\nif [[ \"${BASH_VERSINFO[0]}\"") {
        Some(at) => format!("{}{hook}{}", &registered[..at], &registered[at..]),
        None => format!("{registered}{hook}complete -F _rekey_dynamic -o bashdefault -o default rekey\n"),
    }
}

/// Zsh: the name and `--tag` specs of clap's `_arguments` call `_rekey_names` and
/// `_rekey_tags`.
fn zsh(generated: &str) -> String {
    let mut out = String::new();
    for line in generated.lines() {
        let is_name = line.starts_with("'*::names -- ")
            || line.starts_with("':name -- The credential")
            || line.starts_with("'::name -- The credential");
        let line = if is_name {
            line.replace(":_default'", ":_rekey_names'")
        } else if line.contains("--tag=[") {
            line.replace(":T:_default'", ":T:_rekey_tags'")
        } else {
            line.to_owned()
        };
        out.push_str(&line);
        out.push('\n');
    }
    let hook = r#"
# Credential names and tags, from the configuration (rekey __complete).
_rekey_names() {
    local -a names
    names=(${(f)"$(rekey __complete names 2>/dev/null)"})
    compadd -a names
}
_rekey_tags() {
    local -a tags
    tags=(${(f)"$(rekey __complete tags 2>/dev/null)"})
    compadd -a tags
}
"#;
    match out.find("\nif [ \"$funcstack[1]\" = \"_rekey\" ]") {
        Some(at) => format!("{}{hook}{}", &out[..at], &out[at..]),
        None => format!("{out}{hook}"),
    }
}

/// Fish: `--tag` values and the named commands' arguments from `rekey __complete`.
fn fish(generated: &str) -> String {
    let mut out = String::new();
    for line in generated.lines() {
        out.push_str(line);
        if line.starts_with("complete -c rekey ") && line.contains(" -l tag ") && line.ends_with(" -r") {
            out.push_str(" -f -a \"(rekey __complete tags 2>/dev/null)\"");
        }
        out.push('\n');
    }
    out.push_str("# Credential names, from the configuration (rekey __complete).\n");
    for command in NAMED {
        out.push_str(&format!(
            "complete -c rekey -n \"__fish_rekey_using_subcommand {command}\" -f -a \"(rekey __complete names 2>/dev/null)\"\n"
        ));
    }
    out
}
