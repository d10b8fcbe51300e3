//! `rekey validate`: loads the configuration and checks it offline — syntax, unknown
//! keys, references, environment variables, paths and each target's settings — without
//! opening a store or contacting anything.

use crate::cli::{Cli, Output};
use crate::config::{config_path, Config, StoreConfig};
use crate::engine::Backends;
use crate::providers::{ConfiguredBackends, ProviderOptions};
use std::os::unix::fs::MetadataExt;

/// `validate` options.
#[derive(Debug, clap::Args)]
#[command(
    after_help = "Prints `ok: N credentials, M stores` and exits 0, or prints the one-line error and exits 2.\n\
Nothing is contacted: no store is opened, no target connected.\n\n\
Examples:\n  \
rekey validate\n  \
rekey -c conf/prod.toml validate -o json   # in CI, before deploying a config change"
)]
pub struct ValidateArgs {}

/// What the checks found: the configuration, and warnings (one line each) that do not
/// make it invalid.
pub struct Checked {
    /// The configuration, loaded.
    pub config: Config,
    /// Things to know that do not make the configuration invalid.
    pub warnings: Vec<Warning>,
}

/// One thing to know, about some credentials (about the whole file when none).
pub struct Warning {
    /// The credentials it concerns, by name.
    pub credentials: Vec<String>,
    /// One line.
    pub text: String,
}

/// Loads and checks the configuration at `path`; `Err` is the one-line error.
pub fn check(path: &std::path::Path) -> Result<Checked, String> {
    let config = Config::load(path).map_err(|e| e.to_string())?;
    let file = config.path.display().to_string();
    let mut warnings = Vec::new();
    for (name, store) in &config.stores {
        if let StoreConfig::File(f) = store {
            let shown = f.path.display();
            match std::fs::metadata(&f.path) {
                Ok(meta) if !meta.is_file() => {
                    return Err(format!("{file}: store `{name}`: {shown} is not a file"));
                }
                Ok(meta) if meta.mode() & 0o077 != 0 => {
                    return Err(format!(
                        "{file}: store `{name}`: {shown} has mode {:04o}, readable by others; the file store refuses it \
                         (chmod 600 {shown})",
                        meta.mode() & 0o7777
                    ));
                }
                Ok(_) => {}
                Err(_) => {
                    let dir = f.path.parent().filter(|d| !d.as_os_str().is_empty());
                    if let Some(dir) = dir.filter(|d| !d.is_dir()) {
                        return Err(format!(
                            "{file}: store `{name}`: directory {} of {shown} does not exist (a typo or a missing mount)",
                            dir.display()
                        ));
                    }
                    // One warning per store, however many credentials use it.
                    let credentials: Vec<String> = config
                        .credentials
                        .iter()
                        .filter(|c| &c.store == name)
                        .map(|c| c.name.clone())
                        .collect();
                    let import = match credentials.as_slice() {
                        // A store no credential uses: nothing will create it.
                        [] => continue,
                        [one] => format!("`rekey import {one}`"),
                        _ => "`rekey import NAME` (or `import --batch`)".to_owned(),
                    };
                    warnings.push(Warning {
                        text: format!(
                            "store `{name}`: {shown} does not exist yet; {import} or `rekey rotate --create-store` \
                             creates it"
                        ),
                        credentials,
                    });
                }
            }
        }
    }
    // Each target is built as a run would build it (nothing is connected): strategies
    // the target cannot do, missing `admin` for alternating roles, bad URLs.
    let options = ProviderOptions {
        plugins_must_answer: true,
        ..ProviderOptions::default()
    };
    let backends = ConfiguredBackends::new(&config, options);
    for credential in &config.credentials {
        // `admin = { credential = ... }`: the admin secret is read from a store at run
        // time; offline the target cannot be built with it.
        if config.admin_refs.contains_key(&credential.name) {
            continue;
        }
        if let Err(e) = backends.target(credential) {
            return Err(format!(
                "{file}: credential `{}`: configure target: {}",
                credential.name,
                e.message()
            ));
        }
    }
    Ok(Checked { config, warnings })
}

/// Runs `validate`; `Err` is a one-line configuration error (exit 2).
pub fn run(cli: &Cli, _args: &ValidateArgs) -> Result<i32, String> {
    let checked = check(&config_path(cli.config.as_deref()))?;
    let config = &checked.config;
    match cli.output {
        Output::Json => {
            let mut by_credential: std::collections::HashMap<&str, Vec<&str>> = std::collections::HashMap::new();
            for warning in &checked.warnings {
                for name in &warning.credentials {
                    by_credential.entry(name).or_default().push(&warning.text);
                }
            }
            let credentials = config
                .credentials
                .iter()
                .map(|c| {
                    let warnings = by_credential.get(c.name.as_str()).cloned().unwrap_or_default();
                    let mut item = serde_json::json!({
                        "name": c.name,
                        "status": "valid",
                        "store": c.store,
                        "key": c.key,
                        "steps": [],
                    });
                    if !warnings.is_empty() {
                        item["warnings"] = serde_json::json!(warnings);
                    }
                    item
                })
                .collect();
            let mut extra = serde_json::Map::new();
            extra.insert("config".into(), config.path.display().to_string().into());
            extra.insert(
                "stores".into(),
                serde_json::json!(config.stores.keys().collect::<Vec<_>>()),
            );
            println!(
                "{}",
                crate::report::json::envelope("validate", credentials, extra, crate::exit::SUCCESS)
            );
        }
        Output::Human => {
            if !cli.quiet {
                let mut err = std::io::stderr().lock();
                for warning in &checked.warnings {
                    let line = match warning.credentials.as_slice() {
                        [] => warning.text.clone(),
                        [one] => format!("{one}: {}", warning.text),
                        many => format!("{} ({} credentials)", warning.text, many.len()),
                    };
                    let _ = std::io::Write::write_all(&mut err, crate::report::human::warning_line(&line).as_bytes());
                }
                let (n, m) = (config.credentials.len(), config.stores.len());
                println!(
                    "{}: {n} credential{}, {m} store{}",
                    crate::report::human::ok_word("ok"),
                    if n == 1 { "" } else { "s" },
                    if m == 1 { "" } else { "s" }
                );
            }
        }
    }
    Ok(crate::exit::SUCCESS)
}
