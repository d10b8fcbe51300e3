//! Runs one parsed command line and returns the exit code. All printing happens here
//! and in the reporters; the engine only returns reports.

use crate::cli::{Cli, Command, Output, RotateArgs, Selection, StageArg};
use crate::config::{config_path, Config};
use crate::engine::event::Fanout;
use crate::engine::report::Retain;
use crate::engine::{Engine, EngineSettings, ImportOptions, Interrupt, Reporter, RotateOptions, RunError, RunReport};
use crate::exit;
use crate::providers::{ConfiguredBackends, ProviderOptions};
use crate::report::{audit::AuditLog, human, json, junit};
use rekey_api::{SecretDoc, Stage};
use std::io::{Read, Write};
use std::path::Path;
use std::sync::Arc;
use zeroize::Zeroizing;

/// A failure that ends the command before or outside the per-credential work.
struct Stop {
    code: i32,
    message: String,
}

impl Stop {
    fn usage(message: impl Into<String>) -> Self {
        Stop {
            code: exit::USAGE,
            message: message.into(),
        }
    }
}

impl From<RunError> for Stop {
    fn from(e: RunError) -> Self {
        let code = match e {
            RunError::Config(_) => exit::USAGE,
            RunError::Busy(_) => exit::LOCKED,
            RunError::Lock(_) => exit::CREDENTIAL_FAILED,
            RunError::Input(_) => exit::USAGE,
        };
        Stop {
            code,
            message: e.to_string(),
        }
    }
}

/// Runs the command; returns the process exit code.
pub async fn run(cli: Cli) -> i32 {
    let output = cli.output;
    let command = cli.command.name();
    human::set_color(cli.color);
    match dispatch(cli).await {
        Ok(code) => code,
        Err(stop) => {
            let _ = write!(std::io::stderr(), "{}", human::error_line(&stop.message));
            if output == Output::Json {
                println!("{}", json::render_error(command, &stop.message, stop.code));
            }
            stop.code
        }
    }
}

fn verbosity(cli: &Cli) -> human::Verbosity {
    if cli.quiet {
        human::Verbosity::Quiet
    } else if cli.verbose > 0 {
        human::Verbosity::Verbose
    } else {
        human::Verbosity::Normal
    }
}

fn load(cli: &Cli) -> Result<Config, Stop> {
    Config::load_per_credential(&config_path(cli.config.as_deref())).map_err(|e| Stop::usage(e.to_string()))
}

/// The audit log of this process's command, kept so that [`finish`] can fail a run
/// whose audit records could not all be written. One process runs one command.
static AUDIT: std::sync::Mutex<Option<Arc<AuditLog>>> = std::sync::Mutex::new(None);

/// The `-o json` document's part of each credential, rendered by a reporter as the
/// credential finishes, when the run prints or writes that document: the engine then
/// keeps only a summary of each credential (see [`retain`]).
fn json_parts(wanted: bool) -> Option<Arc<json::Collector>> {
    wanted.then(Arc::default)
}

/// What the engine keeps of each finished credential: a summary (no step records) unless
/// an output made after the run lists steps: `[[notify]]` events and incident records.
fn retain(config: &Config, incident: bool) -> Retain {
    if incident || !config.notify.is_empty() {
        Retain::Everything
    } else {
        Retain::Summary
    }
}

fn reporter(
    cli: &Cli,
    config: &Config,
    command: &'static str,
    total: usize,
    json_parts: Option<&Arc<json::Collector>>,
) -> Result<Arc<dyn Reporter>, Stop> {
    let progress = human::Progress::new(verbosity(cli), total);
    reporter_with(config, command, progress, json_parts)
}

/// [`reporter`] with the live human output given.
fn reporter_with(
    config: &Config,
    command: &'static str,
    progress: human::Progress,
    json_parts: Option<&Arc<json::Collector>>,
) -> Result<Arc<dyn Reporter>, Stop> {
    let mut reporters: Vec<Box<dyn Reporter>> = vec![Box::new(progress)];
    if let Some(parts) = json_parts {
        reporters.push(Box::new(parts.clone()));
    }
    if let Some(path) = &config.defaults.audit_log {
        let log = Arc::new(AuditLog::open(path, command).map_err(|e| Stop::usage(e.to_string()))?);
        *AUDIT.lock().unwrap_or_else(|p| p.into_inner()) = Some(log.clone());
        reporters.push(Box::new(log));
    }
    Ok(Arc::new(Fanout(reporters)))
}

/// Exit 1 when audit records were lost (a full disk mid-run): the rotation itself was
/// brought to a consistent point, but its record is incomplete.
fn audit_verdict(code: i32) -> i32 {
    let audit = AUDIT.lock().unwrap_or_else(|p| p.into_inner()).clone();
    match audit {
        Some(log) if log.records_lost() > 0 => {
            let _ = writeln!(
                std::io::stderr(),
                "error: audit records missing: {} record(s) could not be written to {}",
                log.records_lost(),
                log.path().display()
            );
            if code == exit::SUCCESS {
                exit::CREDENTIAL_FAILED
            } else {
                code
            }
        }
        _ => code,
    }
}

async fn dispatch(cli: Cli) -> Result<i32, Stop> {
    match &cli.command {
        Command::Init(args) => crate::commands::init::run(&cli, args).map_err(Stop::usage),
        Command::Validate(args) => crate::commands::validate::run(&cli, args).map_err(Stop::usage),
        Command::List(args) => crate::commands::list::run(&cli, args).map_err(Stop::usage),
        Command::Man(args) => Ok(crate::commands::man::run(args)),
        Command::Completions { shell } => {
            print!("{}", crate::commands::complete::script(*shell));
            Ok(exit::SUCCESS)
        }
        Command::Complete { what } => Ok(crate::commands::complete::run(&cli, *what)),
        Command::Plan {
            selection,
            due,
            leaked,
            parallel,
        } => {
            if *leaked {
                require_selection(selection, "plan --leaked")?;
            }
            let options = RotateOptions {
                due_only: *due,
                incident: *leaked,
                ..Default::default()
            };
            plan(&cli, selection, options, *parallel).await
        }
        Command::Rotate(args) => rotate(&cli, args).await,
        Command::Verify {
            selection,
            junit: junit_path,
            metrics_file,
            parallel,
        } => {
            let mut config = load(&cli)?;
            check_output_paths(&config, &[junit_path.as_deref(), metrics_file.as_deref()])?;
            check_metrics_file(metrics_file.as_deref())?;
            if let Some(path) = junit_path {
                claim_report_file(path)?;
            }
            if let Some(n) = parallel {
                config.defaults.parallel = usize::from(*n);
            }
            let chosen = choose(&config, selection)?;
            let parts = json_parts(cli.output == Output::Json);
            let engine = engine_for(
                &config,
                ProviderOptions::default(),
                reporter(&cli, &config, "verify", chosen.len(), parts.as_ref())?,
            )
            .await?
            .with_retain(retain(&config, false));
            // The engine holds what it needs: the configuration is not kept through a
            // run over many credentials.
            let notify = std::mem::take(&mut config.notify);
            drop(config);
            let run = engine.verify(chosen).await?;
            let code = finish(&cli, &run, parts.as_deref());
            // [[notify]] (issue 8): never changes the exit code.
            crate::report::notify::after_run(&notify, &run, code, false).await;
            write_metrics(metrics_file.as_deref(), &run);
            match junit_path {
                Some(path) => write_file(path, &junit::render(&run)).map(|()| code),
                None => Ok(code),
            }
        }
        Command::Status { selection } => {
            let config = load(&cli)?;
            let chosen = choose(&config, selection)?;
            // `-o json` lists each credential's steps from the run report; the table
            // needs only the summaries.
            let retain = match cli.output {
                Output::Json => Retain::Everything,
                Output::Human => retain(&config, false),
            };
            let engine = engine_for(
                &config,
                ProviderOptions::default(),
                Arc::new(human::Progress::new(human::Verbosity::Quiet, 0)),
            )
            .await?
            .with_retain(retain);
            let mut run = engine.status(chosen).await?;
            mark_missing_stores(&config, &mut run);
            mark_unresolved(&config, &mut run);
            Ok(finish(&cli, &run, None))
        }
        Command::Import {
            name: None,
            no_verify,
            force,
            ..
        } => {
            let config = load(&cli)?;
            let options = ImportOptions {
                check: !no_verify,
                force: *force,
            };
            import_batch(&cli, &config, options).await
        }
        Command::Import {
            name: Some(name),
            no_verify,
            force,
            ..
        } => {
            let config = load(&cli)?;
            let credential = one(&config, name)?;
            // A variable its target needs is not set: this credential fails (exit 1), as
            // in every other command, before its secret is read.
            if let Some(message) = config.unresolved.get(name) {
                return Err(Stop {
                    code: exit::CREDENTIAL_FAILED,
                    message: format!("{name}: import: {message}"),
                });
            }
            let checked = credential.clone();
            let read_doc = || {
                let value = read_secret_input(None, IMPORT_LIMIT, InputFor::Import)
                    .map_err(|s| format!("{name}: import: {}", s.message))?;
                let doc = parse_import(&value).map_err(|e| format!("{name}: import: {e}"))?;
                crate::config::check_import_identity(&config, &checked, &doc)
                    .map_err(|e| format!("{name}: import: {e}"))?;
                Ok(doc)
            };
            let options = ImportOptions {
                check: !no_verify,
                force: *force,
            };
            let engine = engine_for(
                &config,
                ProviderOptions {
                    create_store: true,
                    ..Default::default()
                },
                reporter(&cli, &config, "import", 1, None)?,
            )
            .await?;
            let run = engine.import(credential, read_doc, options).await?;
            Ok(finish(&cli, &run, None))
        }
        Command::Get { name, stage, field } => {
            let config = load(&cli)?;
            let credential = one(&config, name)?;
            let engine = engine_for(&config, ProviderOptions::default(), Arc::new(Fanout(Vec::new()))).await?;
            let stage = match stage {
                StageArg::Current => Stage::Current,
                StageArg::Pending => Stage::Pending,
                StageArg::Previous => Stage::Previous,
            };
            let doc = engine.get(&credential, stage).await.map_err(|m| Stop {
                code: exit::CREDENTIAL_FAILED,
                message: m,
            })?;
            let text: Zeroizing<String> = match field {
                None => doc.to_json(),
                Some(f) => match doc.get(f) {
                    Some(serde_json::Value::String(s)) => Zeroizing::new(s.clone()),
                    Some(other) => Zeroizing::new(other.to_string()),
                    None => {
                        return Err(Stop::usage(crate::commands::suggest::unknown_field(
                            name,
                            f,
                            doc.field_names(),
                        )))
                    }
                },
            };
            let mut out = std::io::stdout().lock();
            let _ = out.write_all(text.as_bytes());
            let _ = out.write_all(b"\n");
            Ok(exit::SUCCESS)
        }
        Command::Leaked {
            file,
            from,
            rotate,
            report,
        } => leaked(&cli, file.as_deref(), *from, *rotate, report.as_deref()).await,
    }
}

/// Most bytes `import --batch` reads.
const BATCH_LIMIT: usize = 64 << 20;

/// `import --batch`: JSON lines `{"name": ..., "value": ...}` on stdin.
async fn import_batch(cli: &Cli, config: &Config, options: ImportOptions) -> Result<i32, Stop> {
    let input = read_secret_input(None, BATCH_LIMIT, InputFor::Import)?;
    let mut items = Vec::new();
    let mut seen = std::collections::BTreeSet::new();
    for (index, line) in input.lines().enumerate() {
        let number = index + 1;
        if line.trim().is_empty() {
            continue;
        }
        // A SecretDoc zeroizes the parsed line when dropped.
        let parsed = rekey_api::SecretDoc::from_json(line)
            .map_err(|_| Stop::usage(format!("import --batch: line {number} is not a JSON object")))?;
        let name = parsed
            .get_str("name")
            .ok_or_else(|| Stop::usage(format!("import --batch: line {number} has no string \"name\"")))?;
        let credential = one(config, name)?;
        if !seen.insert(name.to_owned()) {
            return Err(Stop::usage(format!(
                "import --batch: line {number}: `{name}` appears twice"
            )));
        }
        let doc = match parsed.get("value") {
            Some(serde_json::Value::String(value)) => parse_import(value),
            Some(object @ serde_json::Value::Object(_)) => {
                rekey_api::SecretDoc::from_value(object.clone()).map_err(|e| e.message().to_owned())
            }
            _ => Err("\"value\" must be a string or a JSON object".to_owned()),
        }
        .map_err(|e| Stop::usage(format!("import --batch: line {number} ({name}): {e}")))?;
        crate::config::check_import_identity(config, &credential, &doc)
            .map_err(|e| Stop::usage(format!("import --batch: line {number} ({name}): {e}")))?;
        items.push((credential, doc));
    }
    drop(input);
    if items.is_empty() {
        return Err(Stop::usage("import --batch: no lines on stdin"));
    }
    let parts = json_parts(cli.output == Output::Json);
    let engine = engine_for(
        config,
        ProviderOptions {
            create_store: true,
            ..Default::default()
        },
        reporter(cli, config, "import", items.len(), parts.as_ref())?,
    )
    .await?
    .with_retain(retain(config, false));
    let run = engine.import_batch(items, options).await?;
    Ok(finish(cli, &run, parts.as_deref()))
}

/// The engine over the providers this configuration names.
async fn engine_for(config: &Config, options: ProviderOptions, reporter: Arc<dyn Reporter>) -> Result<Engine, Stop> {
    let settings = EngineSettings {
        parallel: config.defaults.parallel,
        lock_dir: config.defaults.lock_dir.clone(),
    };
    let mut backends = ConfiguredBackends::new(config, options);
    // `admin = { credential = ... }`: the admin secret is the other credential's current
    // version, read now (after that credential's own rotation, when it ran first).
    backends.resolve_admins(config).await;
    Ok(Engine::new(settings, Arc::new(backends), reporter).with_interrupt(Interrupt::global()))
}

/// Rotates `chosen`; credentials that are the admin (`admin = { credential = ... }`) of
/// other chosen ones go first, and the others run on providers built afterwards, so they
/// use the admin's new secret. One report, in selection order. The configuration is
/// dropped once the providers are built: it is not kept through the rotations.
async fn rotate_in_order(
    config: Config,
    chosen: Vec<crate::config::Credential>,
    options: RotateOptions,
    provider_options: ProviderOptions,
    reporter: Arc<dyn Reporter>,
    retain: Retain,
) -> Result<RunReport, Stop> {
    let admins: std::collections::HashSet<&str> = chosen
        .iter()
        .filter_map(|c| config.admin_refs.get(&c.name))
        .map(String::as_str)
        .collect();
    let first_names: std::collections::HashSet<String> = chosen
        .iter()
        .filter(|c| admins.contains(c.name.as_str()))
        .map(|c| c.name.clone())
        .collect();
    drop(admins);
    if first_names.is_empty() {
        let engine = engine_for(&config, provider_options, reporter)
            .await?
            .with_retain(retain);
        drop(config);
        return Ok(engine.rotate(chosen, options).await?);
    }
    let order: std::collections::HashMap<String, usize> =
        chosen.iter().enumerate().map(|(i, c)| (c.name.clone(), i)).collect();
    let (first, then): (Vec<_>, Vec<_>) = chosen.into_iter().partition(|c| first_names.contains(&c.name));
    let engine = engine_for(&config, provider_options, reporter.clone())
        .await?
        .with_retain(retain);
    let mut run = engine.rotate(first, options.clone()).await?;
    if !then.is_empty() {
        let engine = engine_for(&config, provider_options, reporter)
            .await?
            .with_retain(retain);
        drop(config);
        let rest = engine.rotate(then, options).await?;
        run.duration_ms += rest.duration_ms;
        run.credentials.extend(rest.credentials);
        run.credentials
            .sort_by_key(|c| order.get(&c.name).copied().unwrap_or(usize::MAX));
    }
    Ok(run)
}

/// The credentials a selection names (with did-you-mean on a miss), narrowed to its
/// `--shard K/N` partition.
fn choose(config: &Config, selection: &Selection) -> Result<Vec<crate::config::Credential>, Stop> {
    let chosen = crate::commands::suggest::select(config, &selection.names, &selection.tags).map_err(Stop::usage)?;
    Ok(match selection.shard {
        Some(shard) => chosen.into_iter().filter(|c| shard.holds(&c.name)).collect(),
        None => chosen,
    })
}

/// On a terminal, `rotate` with no names and no `--tag` over several credentials lists
/// them and asks; `--yes`, `--due` and no terminal (cron, CI) go ahead.
fn confirm_bulk_rotation(args: &RotateArgs, chosen: &[crate::config::Credential]) -> Result<(), Stop> {
    use std::io::IsTerminal;
    let bulk = args.selection.names.is_empty() && args.selection.tags.is_empty() && chosen.len() > 1;
    if !bulk || args.yes || args.due || !std::io::stdin().is_terminal() || !std::io::stderr().is_terminal() {
        return Ok(());
    }
    let mut err = std::io::stderr().lock();
    let _ = writeln!(err, "rotate would change {} credentials:", chosen.len());
    for c in chosen.iter().take(20) {
        let _ = writeln!(err, "  {}", c.name);
    }
    if chosen.len() > 20 {
        let _ = writeln!(err, "  ... and {} more", chosen.len() - 20);
    }
    let _ = write!(err, "rotate all of them now? [y/N] ");
    let _ = err.flush();
    let mut answer = String::new();
    let _ = std::io::stdin().read_line(&mut answer);
    if matches!(answer.trim(), "y" | "Y" | "yes" | "YES" | "Yes") {
        Ok(())
    } else {
        Err(Stop::usage(
            "nothing rotated: name the credentials, use --tag, or pass --yes to rotate them all",
        ))
    }
}

/// Commands that change credentials in bulk on purpose need an explicit selection.
fn require_selection(selection: &Selection, what: &str) -> Result<(), Stop> {
    if selection.names.is_empty() && selection.tags.is_empty() {
        return Err(Stop::usage(format!(
            "{what} needs credential names or --tag: an incident rotates what leaked, not everything \
             (find what holds a leaked value with `rekey leaked`)"
        )));
    }
    Ok(())
}

/// A missing file store is a typo or a missing mount until the user says otherwise:
/// rotating into it would set fresh secrets that no application reads.
fn check_stores_exist(config: &Config, chosen: &[crate::config::Credential]) -> Result<(), Stop> {
    for credential in chosen {
        if let Some(crate::config::StoreConfig::File(f)) = config.stores.get(&credential.store) {
            if !f.path.exists() {
                return Err(Stop::usage(format!(
                    "{}: store `{}`: file {} does not exist; check the path (a typo or a missing mount), \
                     or create it with `rekey import {}` or `rekey rotate --create-store`",
                    credential.name,
                    credential.store,
                    f.path.display(),
                    credential.name
                )));
            }
        }
    }
    Ok(())
}

/// `status`: a file store whose file does not exist reads as empty; say "store missing"
/// (a typo in its path or a missing mount) instead of "no secret".
fn mark_missing_stores(config: &Config, run: &mut RunReport) {
    use crate::engine::{FailureKind, Step};
    for report in &mut run.credentials {
        let Some(credential) = config.credential(&report.name) else {
            continue;
        };
        let Some(crate::config::StoreConfig::File(f)) = config.stores.get(&credential.store) else {
            continue;
        };
        let no_secret = report
            .error
            .as_ref()
            .is_some_and(|e| e.step == Step::CheckCurrent && e.kind == FailureKind::NotFound);
        if f.path.exists() || !no_secret {
            continue;
        }
        let message = format!(
            "store missing: store `{}`'s file {} does not exist; check the path (a typo or a missing mount), \
             or create it with `rekey import {}`",
            credential.store,
            f.path.display(),
            report.name
        );
        if let Some(error) = &mut report.error {
            error.step = Step::Read;
            error.message = message.clone();
        }
        if let Some(step) = report.steps.iter_mut().rev().find(|s| s.step == Step::CheckCurrent) {
            step.step = Step::Read;
            step.outcome = crate::engine::event::Outcome::Failed {
                kind: FailureKind::NotFound,
                message: message.clone(),
            };
        }
        report.problems = vec![message];
    }
}

/// `status` of a credential whose target cannot be configured (a variable it uses is not
/// set): the store may look fine, but no run can rotate or verify it, so it is not ok.
fn mark_unresolved(config: &Config, run: &mut RunReport) {
    use crate::engine::report::Failure;
    use crate::engine::{FailureKind, Status, Step};
    for report in &mut run.credentials {
        let Some(message) = config.unresolved.get(&report.name) else {
            continue;
        };
        let message = format!("misconfigured: {message}; set it, then `rekey verify {}`", report.name);
        if report.error.is_none() {
            report.status = Status::Failed;
            report.error = Some(Failure {
                step: Step::Preflight,
                kind: FailureKind::InvalidInput,
                message: message.clone(),
            });
        }
        report.problems.insert(0, message);
    }
}

/// Where a path really points: absolute, with its directory resolved (links, `..`).
fn resolved(path: &Path) -> std::path::PathBuf {
    let absolute = if path.is_absolute() {
        path.to_path_buf()
    } else {
        std::env::current_dir().unwrap_or_default().join(path)
    };
    match (
        absolute.parent().and_then(|d| d.canonicalize().ok()),
        absolute.file_name(),
    ) {
        (Some(dir), Some(name)) => dir.join(name),
        _ => absolute,
    }
}

/// Report, JUnit and metrics files are written over whatever is at their path: refuse
/// a path that is the configuration, a store file (or its lock) or the audit log, before
/// anything changes (a report written over the store would destroy every secret).
fn check_output_paths(config: &Config, outputs: &[Option<&Path>]) -> Result<(), Stop> {
    let mut protected = vec![(resolved(&config.path), "the configuration file".to_owned())];
    for (name, store) in &config.stores {
        if let crate::config::StoreConfig::File(f) = store {
            protected.push((resolved(&f.path), format!("store `{name}`'s file")));
            for (suffix, what) in [(".lock", "lock file"), (".journal", "journal")] {
                let mut sidecar = f.path.clone().into_os_string();
                sidecar.push(suffix);
                protected.push((resolved(Path::new(&sidecar)), format!("store `{name}`'s {what}")));
            }
        }
    }
    if let Some(audit) = &config.defaults.audit_log {
        protected.push((resolved(audit), "the audit log".to_owned()));
    }
    for path in outputs.iter().flatten() {
        let target = resolved(path);
        if let Some((_, what)) = protected.iter().find(|(p, _)| *p == target) {
            return Err(Stop::usage(format!(
                "{} is {what}; write the report somewhere else (nothing was changed)",
                path.display()
            )));
        }
    }
    Ok(())
}

/// Creates (or truncates) a report file before any work, so that a bad path stops the
/// run before anything changes rather than losing the record after it.
fn claim_report_file(path: &Path) -> Result<(), Stop> {
    use std::os::unix::fs::OpenOptionsExt;
    std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(path)
        .map(drop)
        .map_err(|e| {
            Stop::usage(format!(
                "cannot write report {}: {e}; nothing was changed",
                path.display()
            ))
        })
}

fn one(config: &Config, name: &str) -> Result<crate::config::Credential, Stop> {
    let mut chosen = crate::commands::suggest::select(config, &[name.to_owned()], &[]).map_err(Stop::usage)?;
    Ok(chosen.remove(0))
}

async fn plan(cli: &Cli, selection: &Selection, options: RotateOptions, parallel: Option<u16>) -> Result<i32, Stop> {
    let mut config = load(cli)?;
    if let Some(n) = parallel {
        config.defaults.parallel = usize::from(n);
    }
    let chosen = choose(&config, selection)?;
    let parts = json_parts(cli.output == Output::Json);
    let mut progress = human::Progress::new(verbosity(cli), chosen.len());
    // Each credential's plan is written as it is made (the run keeps none of them).
    let stream = (cli.output == Output::Human && verbosity(cli) != human::Verbosity::Quiet)
        .then(|| human::PlanStream::new(chosen.iter().map(|c| c.name.as_str())));
    if let Some(stream) = &stream {
        progress = progress.with_plan(stream.clone());
    }
    let engine = engine_for(
        &config,
        ProviderOptions::default(),
        reporter_with(&config, "plan", progress, parts.as_ref())?,
    )
    .await?
    .with_retain(retain(&config, false));
    drop(config);
    let run = engine.plan(chosen, options).await?;
    if let Some(stream) = &stream {
        let mut out = std::io::BufWriter::new(std::io::stdout().lock());
        let _ = stream.finish(&run, &mut out).and_then(|()| out.flush());
    }
    Ok(finish(cli, &run, parts.as_deref()))
}

async fn rotate(cli: &Cli, args: &RotateArgs) -> Result<i32, Stop> {
    let detected = std::time::SystemTime::now();
    let options = RotateOptions {
        due_only: args.due,
        incident: args.leaked,
        grace: args.grace,
        abandon_pending: args.abandon_pending,
        wait: args.wait,
    };
    if args.leaked {
        require_selection(&args.selection, "rotate --leaked")?;
    }
    if args.abandon_pending && args.selection.names.is_empty() {
        return Err(Stop::usage(
            "rotate --abandon-pending needs the credentials named (not --tag): it throws away a pending secret",
        ));
    }
    if args.dry_run {
        return plan(cli, &args.selection, options, args.parallel).await;
    }
    let mut config = load(cli)?;
    check_output_paths(&config, &[args.report.as_deref(), args.metrics_file.as_deref()])?;
    check_metrics_file(args.metrics_file.as_deref())?;
    if let Some(n) = args.parallel {
        config.defaults.parallel = n as usize;
    }
    let chosen = choose(&config, &args.selection)?;
    if !args.create_store {
        check_stores_exist(&config, &chosen)?;
    }
    confirm_bulk_rotation(args, &chosen)?;
    if let Some(path) = &args.report {
        claim_report_file(path)?;
    }
    let provider_options = ProviderOptions {
        delete_inactive: args.delete_inactive,
        create_store: args.create_store,
        ..ProviderOptions::default()
    };
    // The JSON document is printed (`-o json`) or written (`--report`, but for an
    // incident the record, made from the reports).
    let parts = json_parts(!args.leaked && (cli.output == Output::Json || args.report.is_some()));
    let reporter = reporter(cli, &config, "rotate", chosen.len(), parts.as_ref())?;
    let retain = retain(&config, args.leaked);
    let notify = std::mem::take(&mut config.notify);
    let run = rotate_in_order(config, chosen, options, provider_options, reporter, retain).await?;
    let code = finish_with(cli, &run, parts.as_deref(), exit::SUCCESS, |code| {
        args.leaked.then(|| {
            crate::incident::record::IncidentRecord {
                incident_id: run.run_id.clone(),
                detected,
                operator: crate::incident::record::operator(),
                lookup: None,
                run: Some(&run),
                exit_code: code,
                open_admin: None,
            }
            .to_json()
        })
    });
    // [[notify]] (issue 8): never changes the exit code.
    crate::report::notify::after_run(&notify, &run, code, args.leaked).await;
    write_metrics(args.metrics_file.as_deref(), &run);
    match &args.report {
        Some(path) if args.leaked => {
            let record = crate::incident::record::IncidentRecord {
                incident_id: run.run_id.clone(),
                detected,
                operator: crate::incident::record::operator(),
                lookup: None,
                run: Some(&run),
                exit_code: code,
                open_admin: None,
            };
            write_record(path, &record).map(|()| code)
        }
        Some(path) => write_file_with(path, |out| json::write(out, &run, code, parts.as_deref())).map(|()| code),
        None => Ok(code),
    }
}

/// Most a leaked artefact may be (a whole `.env`, a scanner's report).
const LEAKED_LIMIT: usize = 16 << 20;
/// Most an imported secret may be.
const IMPORT_LIMIT: usize = 64 << 10;
/// Stores read at once while looking a leak up.
const LOOKUP_PARALLEL: usize = 16;

async fn leaked(
    cli: &Cli,
    file: Option<&Path>,
    source: crate::leaked::Source,
    rotate_them: bool,
    report: Option<&Path>,
) -> Result<i32, Stop> {
    let detected = std::time::SystemTime::now();
    let config = load(cli)?;
    check_output_paths(&config, &[report])?;
    if let Some(path) = report {
        claim_report_file(path)?;
    }
    let input = read_secret_input(file, LEAKED_LIMIT, InputFor::Leaked)?;
    let candidates = crate::leaked::extract(&input, source).map_err(|e| Stop::usage(e.to_string()))?;
    drop(input);
    if candidates.is_empty() {
        return Err(Stop::usage("found nothing in the input that could be a secret"));
    }
    let audit = reporter(cli, &config, "leaked", 0, None)?;
    let engine = Arc::new(engine_for(&config, ProviderOptions::default(), Arc::new(Fanout(Vec::new()))).await?);
    let mut lookup = look_up(&engine, &config, &candidates).await;
    let admin_of = crate::incident::admin::admin_holders(&config, &candidates);
    drop(candidates);
    // An admin password rekey only uses: say whose, and what to do (never a match to
    // rotate: rekey would go on using the leaked admin).
    let admin_leak = (!admin_of.is_empty()).then(|| {
        format!(
            "a value found is the password of the admin connection configured for {}: rekey does not rotate \
             admin passwords it only uses; change it on the server (as another admin), then `admin` in the \
             configuration (or make it a credential rekey rotates, and refer to it with \
             `admin = {{ credential = \"NAME\" }}`)",
            admin_of.join(", ")
        )
    });
    // A match with a version already proved dead is re-proved now: still refused means
    // no emergency; accepted means the record was wrong and it must be rotated.
    for m in lookup.matches.iter_mut().filter(|m| m.already_dead()) {
        let Some(credential) = config.credential(&m.credential).cloned() else {
            continue;
        };
        let doc = match engine.read_versions(&credential).await {
            Ok(state) => state.version(&m.version).map(|v| v.doc.clone()),
            Err(_) => None,
        };
        let refused = match doc {
            Some(doc) => engine.is_refused(&credential, &doc).await.unwrap_or(false),
            None => false,
        };
        if !refused {
            m.revoked = None;
        }
    }
    for m in &lookup.matches {
        let matched = format!("{} {} version {}", m.credential, m.stage, m.version);
        audit.event(&crate::engine::Event::LeakLookup {
            run_id: engine.run_id().to_owned(),
            fingerprint: m.fingerprint.clone(),
            matched: Some(matched),
        });
    }
    for f in &lookup.unmatched {
        audit.event(&crate::engine::Event::LeakLookup {
            run_id: engine.run_id().to_owned(),
            fingerprint: f.clone(),
            matched: None,
        });
    }
    for message in &lookup.unreadable {
        let _ = writeln!(std::io::stderr(), "error: {message}");
    }
    if lookup.matches.is_empty() {
        let message = if let Some(admin) = &admin_leak {
            admin.clone()
        } else if lookup.unreadable.is_empty() {
            format!(
                "no configured credential holds any of the {} value(s) found in the input",
                lookup.unmatched.len()
            )
        } else {
            format!(
                "no match, but {} credential(s) could not be searched (their store cannot be read); the leaked value may be among them",
                lookup.unreadable.len()
            )
        };
        if let Some(path) = report {
            // The record says so too: what was looked for (fingerprints) and when.
            let record = crate::incident::record::IncidentRecord {
                incident_id: engine.run_id().to_owned(),
                detected,
                operator: crate::incident::record::operator(),
                lookup: Some(&lookup),
                run: None,
                exit_code: exit::CREDENTIAL_FAILED,
                open_admin: admin_leak.clone(),
            };
            write_record(path, &record)?;
        }
        return Err(Stop {
            code: exit::CREDENTIAL_FAILED,
            message,
        });
    }
    if let Some(admin) = &admin_leak {
        let _ = writeln!(std::io::stderr(), "warning: {admin}");
    }
    print_matches(cli, &config, &lookup, rotate_them);
    let live = lookup.live_credentials();
    let operator = crate::incident::record::operator();
    if !rotate_them || live.is_empty() {
        if live.is_empty() {
            let _ = writeln!(
                std::io::stderr(),
                "every match is a secret already revoked and still refused: nothing to rotate"
            );
        }
        // Not contained while a store could not be searched or an admin password leaked.
        let code = if lookup.unreadable.is_empty() && admin_leak.is_none() {
            exit::SUCCESS
        } else {
            exit::CREDENTIAL_FAILED
        };
        if let Some(path) = report {
            let record = crate::incident::record::IncidentRecord {
                incident_id: engine.run_id().to_owned(),
                detected,
                operator,
                lookup: Some(&lookup),
                run: None,
                exit_code: code,
                open_admin: admin_leak.clone(),
            };
            write_record(path, &record)?;
        }
        return Ok(code);
    }
    let mut config = config;
    if config.defaults.parallel == 0 {
        config.defaults.parallel = 1;
    }
    let chosen = config.select(&live, &[]).map_err(|e| Stop::usage(e.to_string()))?;
    check_stores_exist(&config, &chosen)?;
    let reporter = reporter(cli, &config, "rotate", chosen.len(), None)?;
    let options = RotateOptions {
        incident: true,
        ..Default::default()
    };
    let retain = retain(&config, true);
    let notify = std::mem::take(&mut config.notify);
    let run = rotate_in_order(config, chosen, options, ProviderOptions::default(), reporter, retain).await?;
    let not_contained = if admin_leak.is_some() {
        exit::CREDENTIAL_FAILED
    } else {
        exit::SUCCESS
    };
    let code = finish_with(cli, &run, None, not_contained, |code| {
        Some(
            crate::incident::record::IncidentRecord {
                incident_id: run.run_id.clone(),
                detected,
                operator: operator.clone(),
                lookup: Some(&lookup),
                run: Some(&run),
                exit_code: code,
                open_admin: admin_leak.clone(),
            }
            .to_json(),
        )
    });
    // [[notify]] (issue 8): an incident rotation; never changes the exit code.
    crate::report::notify::after_run(&notify, &run, code, true).await;
    if let Some(path) = report {
        let record = crate::incident::record::IncidentRecord {
            incident_id: run.run_id.clone(),
            detected,
            operator,
            lookup: Some(&lookup),
            run: Some(&run),
            exit_code: code,
            open_admin: admin_leak.clone(),
        };
        write_record(path, &record)?;
    }
    Ok(code)
}

/// Reads every credential's store concurrently and compares every candidate.
async fn look_up(
    engine: &Arc<Engine>,
    config: &Config,
    candidates: &[crate::leaked::Candidate],
) -> crate::incident::Lookup {
    // One batch read per store (a file store parses its file once for all keys); the
    // stores are read concurrently, at most LOOKUP_PARALLEL at once.
    let mut by_store: std::collections::BTreeMap<&str, Vec<usize>> = std::collections::BTreeMap::new();
    for (index, credential) in config.credentials.iter().enumerate() {
        by_store.entry(credential.store.as_str()).or_default().push(index);
    }
    let semaphore = Arc::new(tokio::sync::Semaphore::new(LOOKUP_PARALLEL));
    let mut reads = tokio::task::JoinSet::new();
    for indices in by_store.into_values() {
        let engine = engine.clone();
        let credentials: Vec<crate::config::Credential> =
            indices.iter().map(|&i| config.credentials[i].clone()).collect();
        let semaphore = semaphore.clone();
        reads.spawn(async move {
            let _permit = semaphore.acquire_owned().await.expect("never closed");
            (indices, engine.read_versions_many(&credentials).await)
        });
    }
    let mut states: Vec<Option<Result<rekey_api::KeyState, String>>> =
        (0..config.credentials.len()).map(|_| None).collect();
    while let Some(Ok((indices, results))) = reads.join_next().await {
        for (index, result) in indices.into_iter().zip(results) {
            states[index] = Some(result);
        }
    }
    let mut lookup = crate::incident::Lookup::default();
    let mut hit = vec![false; candidates.len()];
    for (credential, state) in config.credentials.iter().zip(states) {
        match state {
            Some(Ok(state)) => lookup.matches.extend(crate::incident::lookup::match_state(
                &credential.name,
                &state,
                candidates,
                &mut hit,
            )),
            Some(Err(message)) => lookup.unreadable.push(message),
            None => lookup
                .unreadable
                .push(format!("{}: read: the lookup task failed", credential.name)),
        }
    }
    lookup.unmatched = candidates
        .iter()
        .zip(&hit)
        .filter(|(_, hit)| !**hit)
        .map(|(c, _)| c.fingerprint())
        .collect();
    lookup
}

fn print_matches(cli: &Cli, config: &Config, lookup: &crate::incident::Lookup, rotating: bool) {
    if cli.output == Output::Json && !rotating {
        let matches: Vec<serde_json::Value> = lookup
            .matches
            .iter()
            .map(|m| {
                let credential = config.credential(&m.credential);
                serde_json::json!({
                    "credential": m.credential,
                    "store": credential.map(|c| c.store.as_str()),
                    "key": credential.map(|c| c.key.as_str()),
                    "stage": m.stage.as_str(),
                    "version": m.version,
                    "fingerprint": m.fingerprint,
                    "found_as": m.origin,
                    "already_dead_since": m.revoked.filter(|_| m.already_dead()).map(crate::engine::recorder::rfc3339),
                })
            })
            .collect();
        let code = if lookup.unreadable.is_empty() { 0 } else { 1 };
        println!(
            "{}",
            json::render_leaked(matches, &lookup.unmatched, &lookup.unreadable, code)
        );
        return;
    }
    // The list is the command's output (stdout); while rotating, stdout is the rotation's.
    let mut out: Box<dyn Write> = if rotating {
        Box::new(std::io::stderr().lock())
    } else {
        Box::new(std::io::stdout().lock())
    };
    for m in &lookup.matches {
        let credential = config.credential(&m.credential);
        let note = match m.revoked {
            Some(t) if m.already_dead() => format!("already dead since {}", crate::engine::recorder::rfc3339(t)),
            _ => "LIVE".to_owned(),
        };
        let _ = writeln!(
            out,
            "{}\t{}\tstore {} key {}\tversion {}\t{}\t{} ({})",
            m.credential,
            m.stage,
            credential.map_or("?", |c| c.store.as_str()),
            credential.map_or("?", |c| c.key.as_str()),
            m.version,
            note,
            m.fingerprint,
            m.origin
        );
    }
    if !lookup.unmatched.is_empty() {
        let _ = writeln!(
            std::io::stderr(),
            "{} other value(s) found matched nothing: {}",
            lookup.unmatched.len(),
            lookup.unmatched.join(", ")
        );
    }
}

fn write_record(path: &Path, record: &crate::incident::record::IncidentRecord<'_>) -> Result<(), Stop> {
    let text = if path.extension().is_some_and(|e| e == "md") {
        record.to_markdown()
    } else {
        serde_json::to_string_pretty(&record.to_json()).expect("record serializes")
    };
    write_file(path, &text)
}

fn exit_code(run: &RunReport) -> i32 {
    // A signal stopped the run (its credentials failed at a step boundary, or a step
    // failed because its plugin was stopped): the process exits 130 whatever the
    // failures say, and the results printed must say the same.
    if Interrupt::global().requested() {
        return exit::INTERRUPTED;
    }
    run.exit_code()
}

/// Prints the run's results (`json_parts`: the `-o json` parts collected while it ran)
/// and returns its exit code.
fn finish(cli: &Cli, run: &RunReport, json_parts: Option<&json::Collector>) -> i32 {
    finish_with(cli, run, json_parts, exit::SUCCESS, |_| None)
}

/// [`finish`]; for incident runs `incident` gives the record (as JSON, from the exit
/// code) that `-o json` includes. The exit code is at least `at_least` (a leak the run
/// could not contain: an admin password found beside the rotated secrets).
fn finish_with(
    cli: &Cli,
    run: &RunReport,
    json_parts: Option<&json::Collector>,
    at_least: i32,
    incident: impl FnOnce(i32) -> Option<serde_json::Value>,
) -> i32 {
    let code = audit_verdict(exit_code(run)).max(at_least);
    match cli.output {
        Output::Json => match incident(code) {
            Some(record) => println!("{}", json::render_incident(run, code, record)),
            None => {
                // Written as it is made: the document of a large run is never one string.
                let mut out = std::io::BufWriter::new(std::io::stdout().lock());
                let _ = json::write(&mut out, run, code, json_parts)
                    .and_then(|()| out.write_all(b"\n"))
                    .and_then(|()| out.flush());
            }
        },
        Output::Human => {
            {
                // Written as it is made; a closed stdout does not stop the errors below.
                let mut out = std::io::BufWriter::new(std::io::stdout().lock());
                let _ = human::write_results(run, verbosity(cli), &mut out).and_then(|()| out.flush());
            }
            let errors = human::error_lines(run, verbosity(cli));
            // Each failure once: when stdout and stderr are the same screen, the rows just
            // printed carry every failure's reason (quiet prints no rows).
            use std::io::IsTerminal;
            let one_screen = std::io::stdout().is_terminal() && std::io::stderr().is_terminal();
            if !one_screen || cli.quiet {
                let mut err = std::io::stderr().lock();
                for line in errors {
                    let _ = write!(err, "{}", human::error_line(&line));
                }
            }
        }
    }
    if run.credentials.is_empty() && cli.output == Output::Human && !cli.quiet {
        let _ = writeln!(std::io::stderr(), "warning: no credential matched");
    }
    code
}

/// `--metrics-file`, before any work: a file can be made in its directory (where the
/// metrics are written and renamed over it), so that a bad path stops the run before
/// anything changes (exit 2).
fn check_metrics_file(path: Option<&Path>) -> Result<(), Stop> {
    let Some(path) = path else {
        return Ok(());
    };
    crate::report::metrics::check_writable(path).map_err(|e| {
        Stop::usage(format!(
            "cannot write metrics file {}: {e}; nothing was changed",
            path.display()
        ))
    })
}

/// `--metrics-file`: the run's metrics, written atomically (mode 0600). Written after
/// the results were printed: a failure now (a full disk) is said on stderr and leaves
/// the exit code, like the one JSON document already printed, as the run decided.
fn write_metrics(path: Option<&Path>, run: &RunReport) {
    let Some(path) = path else {
        return;
    };
    let text = crate::report::metrics::render(run, std::time::SystemTime::now());
    if let Err(e) = crate::report::metrics::write_atomically(path, &text) {
        let _ = writeln!(
            std::io::stderr(),
            "warning: cannot write metrics file {}: {e} (the run's results above stand)",
            path.display()
        );
    }
}

/// Writes a report file readable by its owner only (mode 0600, also when it existed).
fn write_file(path: &Path, text: &str) -> Result<(), Stop> {
    write_file_with(path, |out| out.write_all(text.as_bytes()))
}

/// [`write_file`] with the content written by `write` as it is made.
fn write_file_with(path: &Path, write: impl FnOnce(&mut dyn Write) -> std::io::Result<()>) -> Result<(), Stop> {
    use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
    let written = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(path)
        .and_then(|f| {
            f.set_permissions(std::fs::Permissions::from_mode(0o600))?;
            let mut out = std::io::BufWriter::new(f);
            write(&mut out)?;
            out.flush()
        });
    written.map_err(|e| Stop {
        code: exit::CREDENTIAL_FAILED,
        message: format!("cannot write {}: {e}", path.display()),
    })
}

/// What a secret input is read for: what it may hold and what to say when it is empty.
#[derive(Clone, Copy, PartialEq, Eq)]
enum InputFor {
    /// `import`: the secret itself, which must be UTF-8 as stored.
    Import,
    /// `leaked`: text as found; bytes that are not UTF-8 (a Latin-1 comment in a `.env`)
    /// cannot be part of a stored secret and are read as U+FFFD.
    Leaked,
}

/// Reads a secret input from `file` or stdin, at most `limit` bytes. On a terminal the
/// input is not echoed (a hidden prompt on stderr). Empty input is a usage error.
fn read_secret_input(file: Option<&Path>, limit: usize, purpose: InputFor) -> Result<Zeroizing<String>, Stop> {
    let mut buffer = Zeroizing::new(Vec::new());
    let too_big = || Stop::usage(format!("the input is larger than {} KiB; refusing it", limit >> 10));
    match file {
        Some(path) => {
            let f =
                std::fs::File::open(path).map_err(|e| Stop::usage(format!("cannot read {}: {e}", path.display())))?;
            f.take(limit as u64 + 1)
                .read_to_end(&mut buffer)
                .map_err(|e| Stop::usage(format!("cannot read {}: {e}", path.display())))?;
        }
        None => {
            let _echo_off =
                crate::terminal::HiddenInput::begin("paste the secret, then press Ctrl-D (input is hidden)");
            std::io::stdin()
                .take(limit as u64 + 1)
                .read_to_end(&mut buffer)
                .map_err(|e| Stop::usage(format!("cannot read stdin: {e}")))?;
        }
    }
    if buffer.len() > limit {
        return Err(too_big());
    }
    let text = match std::str::from_utf8(&buffer) {
        Ok(text) => Zeroizing::new(text.to_owned()),
        Err(e) if purpose == InputFor::Leaked => {
            let _ = writeln!(
                std::io::stderr(),
                "warning: the input is not valid UTF-8 (first at byte {}); such bytes are read as U+FFFD \
                 (no stored secret holds them)",
                e.valid_up_to()
            );
            Zeroizing::new(String::from_utf8_lossy(&buffer).into_owned())
        }
        Err(e) => {
            return Err(Stop::usage(format!(
                "the input is not valid UTF-8 (at byte {}); a stored secret is UTF-8 text",
                e.valid_up_to()
            )))
        }
    };
    if text.trim().is_empty() {
        return Err(Stop::usage(match purpose {
            InputFor::Import => "the input is empty: pipe the secret in, e.g. `printf %s \"$PW\" | rekey import NAME`",
            InputFor::Leaked => {
                "the input is empty: pipe what was found in (`pbpaste | rekey leaked`, `rekey leaked < found.txt`) or \
                 name a file (`rekey leaked FILE`)"
            }
        }));
    }
    Ok(text)
}

/// A bare value (one line) or a JSON object.
fn parse_import(text: &str) -> Result<SecretDoc, String> {
    let trimmed = text.trim_end_matches(['\n', '\r']);
    if trimmed.trim().is_empty() {
        return Err("stdin is empty; pipe the existing secret in, e.g. `printf %s \"$PW\" | rekey import NAME`".into());
    }
    if trimmed.trim_start().starts_with('{') {
        let doc = SecretDoc::from_json(trimmed).map_err(|e| e.message().to_owned())?;
        if doc.password().is_none() && doc.get("password").is_some() {
            return Err("the JSON object's `password` must be a string".into());
        }
        return Ok(doc);
    }
    if trimmed.contains('\n') {
        return Err("a bare secret must be one line (or pass a JSON object)".into());
    }
    let mut doc = SecretDoc::new();
    doc.set("password", trimmed);
    Ok(doc)
}
