//! Human output: progress and step lines on stderr while running, a summary on stdout
//! at the end. Colour only on a terminal, and never when `NO_COLOR` is set.

use crate::engine::event::{Event, Outcome, Reporter};
use crate::engine::inspection::short_duration;
use crate::engine::{RunReport, Status};
use std::io::{IsTerminal, Write};
use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// How much to say.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Verbosity {
    /// Errors only.
    Quiet,
    /// Results and summary.
    Normal,
    /// Also every step as it ends.
    Verbose,
}

/// `--color`: 0 auto, 1 always, 2 never (set once at start by [`set_color`]).
static COLOR: AtomicU8 = AtomicU8::new(0);

/// Applies `--color`: `always` colours even when piped (and over `NO_COLOR`, which only
/// changes the default), `never` never does, `auto` colours a terminal unless `NO_COLOR`
/// is set to a non-empty value.
pub fn set_color(choice: clap::ColorChoice) {
    let value = match choice {
        clap::ColorChoice::Auto => 0,
        clap::ColorChoice::Always => 1,
        clap::ColorChoice::Never => 2,
    };
    COLOR.store(value, Ordering::Relaxed);
}

/// Whether to colour a stream.
pub fn use_color(stream_is_terminal: bool) -> bool {
    match COLOR.load(Ordering::Relaxed) {
        1 => true,
        2 => false,
        _ => stream_is_terminal && std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty()),
    }
}

/// A word meaning success (`ok`, `rotated`), green where stdout is coloured.
pub fn ok_word(word: &str) -> String {
    paint(word, GREEN, use_color(std::io::stdout().is_terminal()))
}

/// `warning: TEXT` and a newline, for stderr; `warning` in yellow where stderr is coloured.
pub fn warning_line(text: &str) -> String {
    format!(
        "{}: {text}\n",
        paint("warning", YELLOW, use_color(std::io::stderr().is_terminal()))
    )
}

/// `error: TEXT` and a newline, for stderr; `error` in red where stderr is coloured.
pub fn error_line(text: &str) -> String {
    format!(
        "{}: {text}\n",
        paint("error", RED, use_color(std::io::stderr().is_terminal()))
    )
}

const GREEN: &str = "32";
const YELLOW: &str = "33";
const RED: &str = "1;31";

/// The colour of a status word: red for a failure, green for success, yellow for
/// "not due" and other states worth a look, none for the rest.
fn status_color(status: Status) -> Option<&'static str> {
    match status {
        Status::Failed => Some(RED),
        Status::Rotated | Status::Imported | Status::Revoked | Status::Planned | Status::Verified | Status::Listed => {
            Some(GREEN)
        }
        _ => None,
    }
}

fn paint(text: &str, code: &str, color: bool) -> String {
    if color {
        format!("\x1b[{code}m{text}\x1b[0m")
    } else {
        text.to_owned()
    }
}

/// Live events on stderr: step lines with `-v`, failpoint notices (always), and on a
/// terminal, for runs of several credentials, one status line redrawn in place: the
/// credentials in flight, counts done/failed/total and the elapsed time. The line is
/// removed when the last credential is done, before the final output; failures are not
/// printed here (the final output prints each once, with its reason).
pub struct Progress {
    verbosity: Verbosity,
    live: Option<Arc<Live>>,
}

/// The live status line's state, shared with the thread that redraws it every
/// [`REDRAW`] so that the elapsed time moves while a slow credential runs.
struct Live {
    total: usize,
    started: Instant,
    state: Mutex<LiveState>,
}

#[derive(Default)]
struct LiveState {
    in_flight: Vec<String>,
    done: usize,
    failed: usize,
    /// Whether the line is on screen (then it must be cleared before anything else).
    drawn: bool,
    /// The redraw thread runs.
    ticking: bool,
    /// Every credential is done: the line is gone for good.
    over: bool,
}

/// How often the status line is redrawn while nothing happens.
const REDRAW: Duration = Duration::from_millis(500);
/// Names shown in the status line; the rest are counted.
const NAMES_SHOWN: usize = 3;

impl Progress {
    /// A progress reporter for `total` credentials; live on a terminal stderr.
    pub fn new(verbosity: Verbosity, total: usize) -> Self {
        let live = (std::io::stderr().is_terminal() && verbosity >= Verbosity::Normal && total > 1).then(|| {
            Arc::new(Live {
                total,
                started: Instant::now(),
                state: Mutex::new(LiveState::default()),
            })
        });
        Progress { verbosity, live }
    }
}

impl Live {
    fn lock(&self) -> std::sync::MutexGuard<'_, LiveState> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// `[3/10 done, 1 failed, 12s] orders-db, billing-db, cache +2 more`, cut to the
    /// terminal's width (a wrapped line could not be redrawn in place).
    fn line(&self, state: &LiveState) -> String {
        let mut text = format!("[{}/{} done", state.done, self.total);
        if state.failed > 0 {
            text.push_str(&format!(", {} failed", state.failed));
        }
        text.push_str(&format!(", {}]", short_duration(self.started.elapsed())));
        if !state.in_flight.is_empty() {
            let shown: Vec<&str> = state.in_flight.iter().take(NAMES_SHOWN).map(String::as_str).collect();
            text.push(' ');
            text.push_str(&shown.join(", "));
            if state.in_flight.len() > NAMES_SHOWN {
                text.push_str(&format!(" +{} more", state.in_flight.len() - NAMES_SHOWN));
            }
        }
        let width = crate::terminal::stderr_width().unwrap_or(80).saturating_sub(1).max(20);
        text.chars().take(width).collect()
    }

    /// Redraws the line in place (carriage return, clear line).
    fn draw(&self, state: &mut LiveState, err: &mut impl Write) {
        if state.over {
            return;
        }
        let _ = write!(err, "\r\x1b[2K{}", self.line(state));
        let _ = err.flush();
        state.drawn = true;
    }

    /// Takes the line off the screen (before other output, and at the end).
    fn clear(state: &mut LiveState, err: &mut impl Write) {
        if state.drawn {
            let _ = write!(err, "\r\x1b[2K");
            let _ = err.flush();
            state.drawn = false;
        }
    }

    /// Starts the redraw thread once; it ends when the run is over.
    fn tick(self: &Arc<Self>, state: &mut LiveState) {
        if state.ticking {
            return;
        }
        state.ticking = true;
        let live = Arc::downgrade(self);
        std::thread::spawn(move || loop {
            std::thread::sleep(REDRAW);
            let Some(live) = live.upgrade() else {
                return;
            };
            // stderr before the state, in the same order as `event`: the other order can
            // deadlock with a worker that holds stderr and waits for the state.
            let mut err = std::io::stderr().lock();
            let mut state = live.lock();
            if state.over {
                return;
            }
            live.draw(&mut state, &mut err);
        });
    }
}

impl Reporter for Progress {
    fn event(&self, event: &Event) {
        // Lock order: stderr, then the live state (the redraw thread takes them alike).
        let mut err = std::io::stderr().lock();
        let mut live = self.live.as_ref().map(|l| (l, l.lock()));
        // Anything printed below goes on a clean line; the status line comes back after.
        if let Some((_, state)) = live.as_mut() {
            Live::clear(state, &mut err);
        }
        match event {
            Event::Step { credential, record, .. } if self.verbosity >= Verbosity::Verbose => {
                let (word, extra) = match &record.outcome {
                    Outcome::Ok => ("ok", record.detail.clone().unwrap_or_default()),
                    Outcome::Skipped { reason } => ("skipped", reason.clone()),
                    Outcome::Failed { message, .. } => ("failed", message.clone()),
                };
                let _ = writeln!(
                    err,
                    "{credential}: {}: {word} ({:.1} ms){}{extra}",
                    record.step.as_str(),
                    record.duration.as_secs_f64() * 1000.0,
                    if extra.is_empty() { "" } else { " " }
                );
            }
            Event::CredentialStarted { credential } => {
                if let Some((l, state)) = live.as_mut() {
                    state.in_flight.push(credential.clone());
                    l.tick(state);
                }
            }
            Event::CredentialDone(report) => {
                if let Some((l, state)) = live.as_mut() {
                    state.in_flight.retain(|n| *n != report.name);
                    state.done += 1;
                    if report.status == Status::Failed {
                        state.failed += 1;
                    }
                    if state.done >= l.total {
                        state.over = true;
                    }
                }
            }
            Event::FailpointHeld { credential, name } => {
                let _ = writeln!(
                    err,
                    "rekey: failpoint {name} reached for {credential}; holding until killed"
                );
            }
            _ => {}
        }
        if let Some((l, state)) = live.as_mut() {
            if state.ticking {
                l.draw(state, &mut err);
            }
        }
    }
}

/// The error lines for stderr at the end of a run: every failure's, except for `status`
/// shown in full, whose rows carry each problem and its next step.
pub fn error_lines(run: &RunReport, verbosity: Verbosity) -> Vec<String> {
    if verbosity != Verbosity::Quiet && run.command == "status" {
        return Vec::new();
    }
    run.credentials.iter().filter_map(|c| c.error_line()).collect()
}

/// Writes the end-of-run text for stdout to `out` as it is made (a `plan` over 10,000
/// credentials is about 28 MB of text: never one string). Nothing when quiet.
pub fn write_results(run: &RunReport, verbosity: Verbosity, out: &mut impl Write) -> std::io::Result<()> {
    if verbosity == Verbosity::Quiet {
        return Ok(());
    }
    let color = use_color(std::io::stdout().is_terminal());
    let width = run.credentials.iter().map(|c| c.name.len()).max().unwrap_or(0);
    for c in &run.credentials {
        let status = match status_color(c.status) {
            Some(code) => paint(c.status.as_str(), code, color),
            None => c.status.as_str().to_owned(),
        };
        let status = format!("{status:<pad$}", pad = 8 + status.len() - visible_len(&status));
        let name = format!("{:<width$}", c.name);
        match run.command {
            "plan" => {
                writeln!(out, "{status} {name}  {}", c.target)?;
                if let Some(e) = &c.error {
                    writeln!(out, "         - {}: {}", e.step.as_str(), e.message)?;
                }
                for item in &c.plan {
                    let line = item.to_string();
                    let line = if item.warning {
                        paint(&line, YELLOW, color)
                    } else {
                        line
                    };
                    writeln!(out, "         - {line}")?;
                }
            }
            "status" => {
                let state = crate::engine::inspection::status_state(c);
                let word = match state {
                    "ok" => paint(state, GREEN, color),
                    "pending" | "revocation due" => paint(state, YELLOW, color),
                    _ => paint(state, RED, color),
                };
                let word = format!("{word:<pad$}", pad = 14 + word.len() - visible_len(&word));
                let mut parts = ages(c);
                parts.extend(c.problems.iter().cloned());
                if c.problems.is_empty() {
                    if let Some(e) = &c.error {
                        parts.push(e.message.clone());
                    }
                }
                writeln!(out, "{word} {name}  {}", parts.join("; "))?;
            }
            _ => {
                let mut parts = Vec::new();
                if let Some(e) = &c.error {
                    parts.push(format!("{}: {}", e.step.as_str(), e.message));
                    parts.extend(c.problems.iter().skip(1).cloned());
                } else {
                    if let Some(v) = &c.version {
                        parts.push(format!("version {}", short_id(v)));
                    }
                    if c.resumed {
                        parts.push("finished a pending rotation".into());
                    }
                    if c.sessions_terminated > 0 {
                        parts.push(format!("{} sessions ended", c.sessions_terminated));
                    }
                    if let Some(due) = &c.next_due {
                        parts.push(format!("due {due}"));
                    }
                    for (_, reason) in c.skipped_steps().filter(|(_, r)| r.starts_with("deferred")) {
                        parts.push(format!("revocation {reason}"));
                    }
                    for warning in &c.warnings {
                        parts.push(paint(&format!("warning: {warning}"), YELLOW, color));
                    }
                }
                parts.push(short_duration_ms(c.duration_ms));
                writeln!(out, "{status} {name}  {}", parts.join("; "))?;
            }
        }
    }
    let failed = run.count(Status::Failed);
    let total = run.credentials.len();
    if run.command == "status" {
        let mut states: Vec<(&str, usize)> = Vec::new();
        for c in &run.credentials {
            let state = crate::engine::inspection::status_state(c);
            match states.iter_mut().find(|(s, _)| *s == state) {
                Some((_, n)) => *n += 1,
                None => states.push((state, 1)),
            }
        }
        let parts: Vec<String> = states.iter().map(|(s, n)| format!("{n} {s}")).collect();
        writeln!(
            out,
            "{total} credential{}: {}",
            if total == 1 { "" } else { "s" },
            parts.join(", ")
        )?;
        return Ok(());
    }
    let mut summary = format!("{total} credential{}", if total == 1 { "" } else { "s" });
    let counted = [
        (Status::Rotated, "rotated"),
        (Status::Revoked, "revocation finished"),
        (Status::NotDue, "not due"),
        (Status::Imported, "imported"),
        (Status::Planned, "ready"),
        (Status::Verified, "verified"),
        (Status::Listed, "listed"),
    ];
    let mut parts: Vec<String> = counted
        .iter()
        .filter(|(s, _)| run.count(*s) > 0)
        .map(|(s, w)| format!("{} {w}", run.count(*s)))
        .collect();
    parts.push(format!("{failed} failed"));
    summary.push_str(&format!(": {}", parts.join(", ")));
    summary.push_str(&format!(" in {}", short_duration_ms(run.duration_ms)));
    if run.dry_run && matches!(run.command, "plan") {
        summary.push_str("; nothing was changed");
    }
    writeln!(out, "{summary}")
}

/// `status`: the ages of a credential's versions as people say them: `rotated 3d ago`,
/// `due in 27d` (or `due 2d ago`), `pending for 12m`, `previous not yet revoked`.
/// Computed from the ages the engine read, so the same clock decides.
fn ages(c: &crate::engine::CredentialReport) -> Vec<String> {
    let stage = |name: &str| c.versions.iter().find(|v| v.stages.contains(&name));
    let mut parts = Vec::new();
    if let Some(current) = stage("current") {
        parts.push(format!(
            "rotated {} ago",
            short_duration(Duration::from_secs(current.age_secs))
        ));
        let due = c.next_due.as_deref().and_then(|d| humantime::parse_rfc3339(d).ok());
        let created = humantime::parse_rfc3339(&current.created).ok();
        if let (Some(due), Some(created)) = (due, created) {
            let now = created + Duration::from_secs(current.age_secs);
            parts.push(match due.duration_since(now) {
                Ok(left) => format!("due in {}", short_duration(left)),
                Err(past) => format!("due {} ago", short_duration(past.duration())),
            });
        }
    }
    if let Some(pending) = stage("pending") {
        parts.push(format!(
            "pending for {}",
            short_duration(Duration::from_secs(pending.age_secs))
        ));
    }
    if let Some(previous) = stage("previous") {
        if previous.revoked.is_none() {
            parts.push("previous not yet revoked".to_owned());
        }
    }
    parts
}

fn visible_len(text: &str) -> usize {
    let mut len = 0;
    let mut in_escape = false;
    for c in text.chars() {
        match (in_escape, c) {
            (false, '\x1b') => in_escape = true,
            (true, 'm') => in_escape = false,
            (true, _) => {}
            (false, _) => len += 1,
        }
    }
    len
}

/// The first 8 characters of a version id's UUID, keeping an `incident-` mark.
fn short_id(id: &str) -> String {
    crate::engine::version::short(id)
}

fn short_duration_ms(ms: u64) -> String {
    if ms < 1000 {
        format!("{ms} ms")
    } else if ms < 60_000 {
        format!("{:.1}s", ms as f64 / 1000.0)
    } else {
        short_duration(Duration::from_millis(ms))
    }
}
