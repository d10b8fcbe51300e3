//! `rekey list`: the configured credentials — names, tags, store, key, strategy, period
//! and target — from the configuration alone (nothing is opened, no secret or admin URL
//! is shown).

use crate::cli::{Cli, Output};
use crate::config::{config_path, Config, Credential};
use crate::engine::inspection::short_duration;
use crate::engine::Backends;
use crate::providers::{ConfiguredBackends, ProviderOptions};

/// `list` options.
#[derive(Debug, clap::Args)]
#[command(after_help = "Examples:\n  \
rekey list\n  \
rekey list --tag prod\n  \
rekey list -o json | jq -r '.credentials[].name'")]
pub struct ListArgs {
    /// Only credentials with this tag (repeatable; any tag matches).
    #[arg(long = "tag", value_name = "T")]
    pub tags: Vec<String>,
}

/// One credential as listed.
struct Row {
    name: String,
    tags: Vec<String>,
    store: String,
    store_description: String,
    key: String,
    strategy: &'static str,
    every: String,
    grace: String,
    target: String,
    target_type: &'static str,
    description: Option<String>,
}

fn row(config: &Config, backends: &ConfiguredBackends, c: &Credential) -> Row {
    let target_type = config.targets.get(&c.name).map_or("?", |t| t.type_name());
    // The target's own description, as run reports show it (built, not connected);
    // a target whose settings are wrong is shown by its type (`validate` says why).
    let target = backends
        .target(c)
        .map(|t| t.describe())
        .unwrap_or_else(|_| format!("{target_type} (invalid settings: see `rekey validate`)"));
    Row {
        name: c.name.clone(),
        tags: c.tags.clone(),
        store: c.store.clone(),
        store_description: config.stores.get(&c.store).map(|s| s.to_string()).unwrap_or_default(),
        key: c.key.clone(),
        strategy: c.strategy.as_str(),
        every: short_duration(c.every),
        grace: short_duration(c.grace),
        target,
        target_type,
        description: c.description.clone(),
    }
}

/// Runs `list`; `Err` is a one-line usage or configuration error (exit 2).
pub fn run(cli: &Cli, args: &ListArgs) -> Result<i32, String> {
    // A variable missing in one credential's target must not hide the others: that one
    // is listed as not configured (`validate` names the variable).
    let config = Config::load_per_credential(&config_path(cli.config.as_deref())).map_err(|e| e.to_string())?;
    let chosen = super::suggest::select(&config, &[], &args.tags)?;
    let backends = ConfiguredBackends::new(&config, ProviderOptions::default());
    let rows: Vec<Row> = chosen.iter().map(|c| row(&config, &backends, c)).collect();
    match cli.output {
        Output::Json => {
            let credentials = rows
                .iter()
                .map(|r| {
                    let mut item = serde_json::json!({
                        "name": r.name,
                        "status": "listed",
                        "tags": r.tags,
                        "store": r.store_description,
                        "store_name": r.store,
                        "key": r.key,
                        "strategy": r.strategy,
                        "every": r.every,
                        "grace": r.grace,
                        "target": r.target,
                        "target_type": r.target_type,
                        "steps": [],
                    });
                    if let Some(d) = &r.description {
                        item["description"] = d.clone().into();
                    }
                    item
                })
                .collect();
            let mut extra = serde_json::Map::new();
            extra.insert("config".into(), config.path.display().to_string().into());
            println!(
                "{}",
                crate::report::json::envelope("list", credentials, extra, crate::exit::SUCCESS)
            );
        }
        Output::Human if !cli.quiet => print!("{}", table(&rows)),
        Output::Human => {}
    }
    Ok(crate::exit::SUCCESS)
}

/// Aligned columns with a header; the target last (it is the longest).
fn table(rows: &[Row]) -> String {
    let header = ["NAME", "TAGS", "STORE", "KEY", "STRATEGY", "EVERY", "TARGET"];
    let cells: Vec<[String; 7]> = rows
        .iter()
        .map(|r| {
            [
                r.name.clone(),
                if r.tags.is_empty() {
                    "-".into()
                } else {
                    r.tags.join(",")
                },
                r.store.clone(),
                r.key.clone(),
                r.strategy.to_owned(),
                r.every.clone(),
                r.target.clone(),
            ]
        })
        .collect();
    let mut widths = header.map(str::len);
    for line in &cells {
        for (w, cell) in widths.iter_mut().zip(line) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let mut out = String::new();
    let mut push = |line: [&str; 7]| {
        let mut text = String::new();
        for (i, cell) in line.iter().enumerate() {
            if i + 1 == line.len() {
                text.push_str(cell);
            } else {
                text.push_str(&format!("{cell:<w$}  ", w = widths[i]));
            }
        }
        out.push_str(text.trim_end());
        out.push('\n');
    };
    push(header);
    for line in &cells {
        push([&line[0], &line[1], &line[2], &line[3], &line[4], &line[5], &line[6]]);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn durations_as_people_write_them() {
        let cases = [
            (0, "0s"),
            (12, "12s"),
            (192, "3m 12s"),
            (180, "3m"),
            (3600, "1h"),
            (3900, "1h 5m"),
            (3_456_000, "40d"),
            (273_600, "3d 4h"),
            (86_400 + 59, "1d"),
        ];
        for (secs, text) in cases {
            assert_eq!(short_duration(Duration::from_secs(secs)), text, "{secs}s");
        }
    }
}
