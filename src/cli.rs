//! The command-line interface (a stable contract: see DESIGN.md).

use clap::{Args, Parser, Subcommand, ValueEnum};
use std::path::PathBuf;

/// `--version`: the version, the git commit it was built from and that commit's date
/// (`unknown` when built outside a git checkout; see build.rs).
pub const VERSION: &str = concat!(
    env!("CARGO_PKG_VERSION"),
    " (",
    env!("REKEY_GIT_COMMIT"),
    " ",
    env!("REKEY_GIT_DATE"),
    ")"
);

/// The help heading of the options every command takes, shown after the command's own.
const GLOBAL: &str = "Global options";

/// rekey rotates credentials: it generates a new secret, makes it durable in the store,
/// installs it on the target, proves it works, promotes it, revokes the old one and
/// proves the old one dead.
#[derive(Debug, Parser)]
#[command(
    name = "rekey",
    version = VERSION,
    about = "Rotate database passwords and API keys: stage, apply, verify, promote, revoke, prove dead.",
    long_about = None,
    after_help = "Exit codes: 0 success; 1 a credential failed; 2 usage or configuration error (nothing changed);\n3 another run holds the lock (nothing changed); 130 interrupted.\n\nExamples:\n  rekey plan                      # what rotate would do, checked against the real systems\n  rekey rotate orders-db          # rotate one credential\n  rekey rotate --due -q           # from cron: rotate what is due, finish deferred revocations\n  rekey verify --junit report.xml # from CI: fail when a credential is broken, stale or half done\n  printf %s \"$PW\" | rekey import orders-db"
)]
pub struct Cli {
    /// Configuration file [default: ./rekey.toml]
    #[arg(
        short = 'c',
        long = "config",
        global = true,
        help_heading = GLOBAL,
        value_name = "FILE",
        env = "REKEY_CONFIG"
    )]
    pub config: Option<PathBuf>,

    /// Output format: human (default) or json (one JSON envelope on stdout, described by
    /// docs/output.schema.json).
    #[arg(short = 'o', long = "output", global = true, help_heading = GLOBAL, value_enum, default_value_t = Output::Human)]
    pub output: Output,

    /// Say more (-v: every step; -vv: debug logs). RUST_LOG overrides the log filter.
    #[arg(short = 'v', long = "verbose", global = true, help_heading = GLOBAL, action = clap::ArgAction::Count, conflicts_with = "quiet")]
    pub verbose: u8,

    /// Print errors only.
    #[arg(short = 'q', long = "quiet", global = true, help_heading = GLOBAL)]
    pub quiet: bool,

    /// Colour: auto (on a terminal, unless NO_COLOR is set), always or never.
    #[arg(long = "color", global = true, help_heading = GLOBAL, value_name = "WHEN", default_value = "auto")]
    pub color: clap::ColorChoice,

    /// The command to run.
    #[command(subcommand)]
    pub command: Command,
}

/// Output formats.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Output {
    /// Text for people.
    Human,
    /// One JSON envelope on stdout.
    Json,
}

/// Which credentials a command works on.
#[derive(Debug, Args, Clone, Default)]
pub struct Selection {
    /// Credential names (default: all).
    #[arg(value_name = "NAME")]
    pub names: Vec<String>,
    /// Only credentials with this tag (repeatable; any tag matches).
    #[arg(long = "tag", value_name = "T")]
    pub tags: Vec<String>,
    /// Only partition K of N (1-based) of the selected credentials, by a stable hash of
    /// the name: N runners (a Kubernetes Indexed Job) share a fleet.
    #[arg(long, value_name = "K/N", value_parser = Shard::parse)]
    pub shard: Option<Shard>,
}

/// `--shard K/N`: a stable partition of credentials by name.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Shard {
    /// This partition, 1-based.
    pub index: u32,
    /// How many partitions.
    pub count: u32,
}

impl Shard {
    fn parse(text: &str) -> Result<Shard, String> {
        let bad = || format!("`{text}` is not K/N with 1 <= K <= N (e.g. --shard 2/3)");
        let (k, n) = text.split_once('/').ok_or_else(bad)?;
        let (index, count): (u32, u32) = (
            k.trim().parse().map_err(|_| bad())?,
            n.trim().parse().map_err(|_| bad())?,
        );
        if index == 0 || count == 0 || index > count {
            return Err(bad());
        }
        Ok(Shard { index, count })
    }

    /// Whether the credential `name` falls in this partition (FNV-1a of the name, so the
    /// same on every machine and every release).
    pub fn holds(&self, name: &str) -> bool {
        let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
        for byte in name.bytes() {
            hash ^= u64::from(byte);
            hash = hash.wrapping_mul(0x0100_0000_01b3);
        }
        hash % u64::from(self.count) == u64::from(self.index - 1)
    }
}

#[cfg(test)]
mod shard_tests {
    use super::Shard;

    #[test]
    fn shards_partition_every_name_exactly_once() {
        let shards: Vec<Shard> = (1..=3).map(|k| Shard::parse(&format!("{k}/3")).unwrap()).collect();
        for i in 0..1000 {
            let name = format!("svc-{i}");
            assert_eq!(shards.iter().filter(|s| s.holds(&name)).count(), 1, "{name}");
        }
        assert!(Shard::parse("0/3").is_err() && Shard::parse("4/3").is_err() && Shard::parse("x").is_err());
    }
}

/// Commands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Write a commented starter configuration (mode 0600; an existing file needs --force).
    Init(crate::commands::init::InitArgs),
    /// Check the configuration offline: syntax, references, variables, paths, targets.
    Validate(crate::commands::validate::ValidateArgs),
    /// List the configured credentials: names, tags, stores, keys, targets.
    List(crate::commands::list::ListArgs),
    /// Show what rotate would do; connects and checks for real, changes nothing.
    #[command(
        after_help = "Examples:\n  rekey plan                       # every credential: checks and steps\n  \
rekey plan --due -o json         # what a cron run would do, for a script\n  \
rekey plan --leaked orders-db    # an incident rotation: can it end the sessions?"
    )]
    Plan {
        #[allow(missing_docs)] // flattened: its fields carry the help
        #[command(flatten)]
        selection: Selection,
        /// Only credentials that are due (and deferred revocations).
        #[arg(long)]
        due: bool,
        /// Plan an incident rotation (needs names or --tag): revoke at once, end sessions.
        #[arg(long)]
        leaked: bool,
        /// Credentials checked at once [default: from config, else 4].
        #[arg(long, value_name = "N", value_parser = clap::value_parser!(u16).range(1..=1024))]
        parallel: Option<u16>,
    },
    /// Rotate credentials: generate, stage, apply, verify, promote, revoke, prove dead.
    #[command(
        after_help = "Examples:\n  rekey rotate orders-db                 # one credential\n  \
rekey rotate --tag prod --parallel 8   # every credential tagged prod, 8 at a time\n  \
rekey rotate --due -q                  # from cron: what is due, plus deferred revocations\n  \
rekey rotate --leaked orders-db --report incident.json   # incident: revoke now, end sessions\n  \
rekey rotate --abandon-pending orders-db   # a rotation stuck on a pending secret: drop it, rotate afresh\n\n\
An unfinished rotation (a pending version in the store) is finished, never duplicated."
    )]
    Rotate(RotateArgs),
    /// Check that current secrets work, revoked ones are refused, none is older than
    /// policy and no rotation is half done.
    #[command(
        after_help = "Exit code 1 when any check fails, so a CI job fails with it.\n\nExamples:\n  \
rekey verify --junit rekey-verify.xml\n  \
rekey verify --tag prod --metrics-file /var/lib/node_exporter/rekey.prom"
    )]
    Verify {
        #[allow(missing_docs)] // flattened: its fields carry the help
        #[command(flatten)]
        selection: Selection,
        /// Also write a JUnit XML report.
        #[arg(long, value_name = "FILE")]
        junit: Option<PathBuf>,
        /// Also write Prometheus metrics (textfile collector format), atomically.
        #[arg(long, value_name = "FILE")]
        metrics_file: Option<PathBuf>,
        /// Credentials checked at once [default: from config, else 4].
        #[arg(long, value_name = "N", value_parser = clap::value_parser!(u16).range(1..=1024))]
        parallel: Option<u16>,
    },
    /// Show stored versions, ages and due dates (reads the store only).
    #[command(
        after_help = "Each credential's state: ok, no secret, overdue, pending, stuck, revocation due or store\n\
missing, with its age and next step; exit 1 when any is not ok.\n\nExamples:\n  \
rekey status                     # every credential\n  \
rekey status --tag prod -o json  # with timestamps and age_secs, for a script"
    )]
    Status {
        #[allow(missing_docs)] // flattened: its fields carry the help
        #[command(flatten)]
        selection: Selection,
    },
    /// Store an existing secret as current: a bare value or a JSON object on stdin.
    #[command(after_help = "Examples:\n  printf %s \"$PW\" | rekey import orders-db\n  \
rekey import --batch < secrets.jsonl     # {\"name\": \"orders-db\", \"value\": \"...\"} per line; value may be a JSON object")]
    Import {
        /// The credential (not with --batch).
        #[arg(required_unless_present = "batch", conflicts_with = "batch")]
        name: Option<String>,
        /// Many credentials at once: JSON lines `{"name": ..., "value": ...}` on stdin, one
        /// process, one lock pass, checked in parallel.
        #[arg(long)]
        batch: bool,
        /// Store it without checking that it logs in.
        #[arg(long)]
        no_verify: bool,
        /// With --no-verify: replace a stored current secret even if it still logs in.
        #[arg(long, requires = "no_verify")]
        force: bool,
    },
    /// Print a stored secret (JSON object, or one field) to stdout.
    #[command(
        after_help = "Examples:\n  rekey get orders-db --field password   # the password alone\n  \
rekey get orders-db --stage previous   # the secret current replaced"
    )]
    Get {
        /// The credential.
        name: String,
        /// Which version.
        #[arg(long, value_enum, default_value_t = StageArg::Current)]
        stage: StageArg,
        /// Print only this field (e.g. password).
        #[arg(long, value_name = "F")]
        field: Option<String>,
    },
    /// Read a leaked value from stdin and name the credentials holding it.
    #[command(
        after_help = "What was found, as found: a bare value, a DSN or URL, a .env or shell file, JSON, YAML,\n\
a log line, or a scanner's output. Read from FILE or stdin, never from the command line.\n\n\
Examples:\n  pbpaste | rekey leaked                          # which credentials hold it?\n  \
rekey leaked leaked.env --rotate --report incident.md\n  \
trufflehog git file://. --json | rekey leaked --from trufflehog --rotate"
    )]
    Leaked {
        /// The artefact (file) holding what leaked; stdin when absent.
        #[arg(value_name = "FILE")]
        file: Option<PathBuf>,
        /// The input is a scanner's output.
        #[arg(long, value_enum, default_value_t = crate::leaked::Source::Text)]
        from: crate::leaked::Source,
        /// Rotate the matched credentials at once in incident mode.
        #[arg(long)]
        rotate: bool,
        /// Write the incident record: Markdown for FILE.md, JSON otherwise.
        #[arg(long, value_name = "FILE")]
        report: Option<PathBuf>,
    },
    /// Print the manual page (roff) generated from this command-line definition.
    Man(crate::commands::man::ManArgs),
    /// Print shell completions (they complete commands, options, credential names and tags).
    #[command(
        after_help = "Examples:\n  rekey completions bash > ~/.local/share/bash-completion/completions/rekey\n  \
rekey completions zsh > \"${fpath[1]}/_rekey\"\n  \
rekey completions fish > ~/.config/fish/completions/rekey.fish"
    )]
    Completions {
        /// The shell.
        shell: clap_complete::Shell,
    },
    /// For the completion scripts: the configured credential names or tags, one a line.
    #[command(name = "__complete", hide = true)]
    Complete {
        /// What to list.
        #[arg(value_enum)]
        what: crate::commands::complete::Candidates,
    },
}

impl Command {
    /// The command's name as typed (`rotate`), also the JSON envelope's `command`.
    pub fn name(&self) -> &'static str {
        match self {
            Command::Plan { .. } => "plan",
            Command::Rotate(_) => "rotate",
            Command::Verify { .. } => "verify",
            Command::Status { .. } => "status",
            Command::Import { .. } => "import",
            Command::Get { .. } => "get",
            Command::Leaked { .. } => "leaked",
            Command::Init(_) => "init",
            Command::Validate(_) => "validate",
            Command::List(_) => "list",
            Command::Man(_) => "man",
            Command::Completions { .. } => "completions",
            Command::Complete { .. } => "__complete",
        }
    }
}

/// `rotate` options.
#[derive(Debug, Args)]
pub struct RotateArgs {
    #[allow(missing_docs)] // flattened: its fields carry the help
    #[command(flatten)]
    pub selection: Selection,
    /// Only rotate what is due; also finish deferred revocations.
    #[arg(long)]
    pub due: bool,
    /// Check and show the steps without changing anything (same as plan).
    #[arg(long)]
    pub dry_run: bool,
    /// Incident mode: revoke at once and end the old secret's sessions.
    #[arg(long)]
    pub leaked: bool,
    /// Credentials rotated at once [default: from config, else 4].
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u16).range(1..=1024))]
    pub parallel: Option<u16>,
    /// Keep the previous secret valid this long (e.g. 1h, 7d), overriding config.
    #[arg(long, value_name = "DURATION", value_parser = parse_duration)]
    pub grace: Option<std::time::Duration>,
    /// Write the run report (JSON) to FILE; with --leaked, the incident record (Markdown for
    /// FILE.md, JSON otherwise).
    #[arg(long, value_name = "FILE")]
    pub report: Option<PathBuf>,
    /// IAM: delete a user's extra access key to make room, when it is inactive and not stored.
    #[arg(long)]
    pub delete_inactive: bool,
    /// Get out of a stuck rotation (named credentials only): revoke the pending secret at
    /// the target where it lives, take it out of the store (kept in history), then rotate.
    #[arg(long)]
    pub abandon_pending: bool,
    /// Create a file store that does not exist yet (otherwise a missing store file is an
    /// error: a typo in its path must not put fresh secrets where no application reads).
    #[arg(long)]
    pub create_store: bool,
    /// Do not ask: on a terminal, rotating every credential (no names, no --tag) asks first.
    #[arg(long, short = 'y')]
    pub yes: bool,
    /// Also write Prometheus metrics (textfile collector format), atomically.
    #[arg(long, value_name = "FILE")]
    pub metrics_file: Option<PathBuf>,
    /// Wait this long (e.g. 5m) for another run's locks instead of exiting 3 at once.
    #[arg(long, value_name = "DURATION", value_parser = parse_duration)]
    pub wait: Option<std::time::Duration>,
}

/// A stage on the command line.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum StageArg {
    /// What applications use.
    Current,
    /// An unfinished rotation's secret.
    Pending,
    /// The secret current replaced.
    Previous,
}

fn parse_duration(text: &str) -> Result<std::time::Duration, String> {
    humantime::parse_duration(text).map_err(|e| format!("{e} (write e.g. 30m, 12h, 7d)"))
}
