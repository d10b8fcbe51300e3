//! Human output: progress and step lines on stderr while running, a summary on stdout
//! at the end. Colour only on a terminal, and never when `NO_COLOR` is set.

use crate::engine::event::{Event, Outcome, Reporter};
use crate::engine::inspection::short_duration;
use crate::engine::{CredentialReport, RunReport, Status};
use std::collections::{BTreeMap, HashMap};
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
    plan: Option<Arc<PlanStream>>,
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
        Progress {
            verbosity,
            live,
            plan: None,
        }
    }

    /// Also writes `plan`'s blocks to stdout as credentials finish (between clearing
    /// the status line and drawing it again, so the two never mix on a terminal).
    pub fn with_plan(mut self, plan: Arc<PlanStream>) -> Self {
        self.plan = Some(plan);
        self
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
                if let Some(plan) = &self.plan {
                    plan.done(report, &mut std::io::stdout().lock());
                }
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

/// A status word padded to its column, coloured where `color`.
fn status_column(status: Status, color: bool) -> String {
    let word = match status_color(status) {
        Some(code) => paint(status.as_str(), code, color),
        None => status.as_str().to_owned(),
    };
    format!("{word:<pad$}", pad = 8 + word.len() - visible_len(&word))
}

/// `plan`'s block of one credential: its status, name and target, then its error and
/// plan items, one per line.
fn plan_block(c: &CredentialReport, width: usize, color: bool) -> String {
    use std::fmt::Write as _;
    let mut block = String::new();
    let status = status_column(c.status, color);
    let _ = writeln!(block, "{status} {:<width$}  {}", c.name, c.target);
    if let Some(e) = &c.error {
        let _ = writeln!(block, "         - {}: {}", e.step.as_str(), e.message);
    }
    for item in &c.plan {
        let line = item.to_string();
        let line = if item.warning {
            paint(&line, YELLOW, color)
        } else {
            line
        };
        let _ = writeln!(block, "         - {line}");
    }
    block
}

/// `plan`'s output on stdout, written as credentials finish and in the order they were
/// chosen: a block that finishes ahead of its turn waits here until the ones before it
/// are written (at most those still in flight, `--parallel`), so the run need not keep
/// every credential's plan until its end (about 11 MB over 10,000 credentials).
pub struct PlanStream {
    state: Mutex<PlanState>,
}

struct PlanState {
    /// Each chosen credential's place in the output.
    order: HashMap<String, usize>,
    /// The widest name, for the name column.
    width: usize,
    color: bool,
    /// The place of the next block to write: every one before it is written.
    next: usize,
    /// Blocks that finished ahead of their turn, by place.
    held: BTreeMap<usize, String>,
}

impl PlanStream {
    /// A stream for the credentials named by `names`, in this order.
    pub fn new<'a>(names: impl Iterator<Item = &'a str>) -> Arc<Self> {
        let mut width = 0;
        let order: HashMap<String, usize> = names
            .enumerate()
            .map(|(place, name)| {
                width = width.max(name.len());
                (name.to_owned(), place)
            })
            .collect();
        Arc::new(PlanStream {
            state: Mutex::new(PlanState {
                order,
                width,
                color: use_color(std::io::stdout().is_terminal()),
                next: 0,
                held: BTreeMap::new(),
            }),
        })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, PlanState> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Credential `report` is done: writes its block to `out` with every held one that
    /// follows it, or holds it until the ones before it are written.
    fn done(&self, report: &CredentialReport, out: &mut impl Write) {
        let mut guard = self.lock();
        let state = &mut *guard;
        let Some(&place) = state.order.get(&report.name) else {
            return;
        };
        if place < state.next || state.held.contains_key(&place) {
            return;
        }
        let block = plan_block(report, state.width, state.color);
        state.held.insert(place, block);
        let mut wrote = false;
        while let Some(block) = state.held.remove(&state.next) {
            let _ = out.write_all(block.as_bytes());
            state.next += 1;
            wrote = true;
        }
        if wrote {
            let _ = out.flush();
        }
    }

    /// The run is over: writes every block not yet written, in order; a credential that
    /// never reported itself done is written from `run`'s report of it.
    pub fn finish(&self, run: &RunReport, out: &mut impl Write) -> std::io::Result<()> {
        let mut state = self.lock();
        for (place, c) in run.credentials.iter().enumerate().skip(state.next) {
            let block = match state.held.remove(&place) {
                Some(block) => block,
                None => plan_block(c, state.width, state.color),
            };
            out.write_all(block.as_bytes())?;
        }
        state.next = state.next.max(run.credentials.len());
        state.held.clear();
        Ok(())
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
    // `plan`'s blocks were written while the run went, by [`PlanStream`].
    let rows = if run.command == "plan" {
        &[][..]
    } else {
        &run.credentials[..]
    };
    for c in rows {
        let status = status_column(c.status, color);
        let name = format!("{:<width$}", c.name);
        match run.command {
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::inspection::{PlanItem, PlanStep};
    use crate::engine::recorder::Recorder;

    fn planned(name: &str) -> CredentialReport {
        let reporter: Arc<dyn crate::engine::Reporter> = Arc::new(crate::engine::event::Fanout(Vec::new()));
        let mut rec = Recorder::new("run", reporter, name, "postgres role".into(), "s".into(), "k");
        rec.report.plan = vec![PlanItem::new(PlanStep::Apply, format!("set {name}"))];
        rec.finish(Ok(Status::Planned))
    }

    fn run_of(credentials: Vec<CredentialReport>) -> RunReport {
        RunReport {
            run_id: "r".into(),
            command: "plan",
            dry_run: true,
            started: "2026-11-30T00:00:00Z".into(),
            duration_ms: 1,
            credentials,
        }
    }

    #[test]
    fn plan_blocks_are_written_in_the_chosen_order_as_soon_as_their_turn_comes() {
        let stream = PlanStream::new(["a", "bb", "c"].into_iter());
        let mut out = Vec::new();
        stream.done(&planned("c"), &mut out);
        stream.done(&planned("bb"), &mut out);
        assert!(out.is_empty(), "nothing before the first credential is done");
        stream.done(&planned("a"), &mut out);
        let text = String::from_utf8(out).unwrap();
        assert_eq!(
            text,
            "ok       a   postgres role\n         - apply: set a\n\
             ok       bb  postgres role\n         - apply: set bb\n\
             ok       c   postgres role\n         - apply: set c\n"
        );
        // Nothing is held: the end of the run writes nothing more.
        let mut rest = Vec::new();
        stream
            .finish(&run_of(vec![planned("a"), planned("bb"), planned("c")]), &mut rest)
            .unwrap();
        assert!(rest.is_empty(), "{}", String::from_utf8_lossy(&rest));
    }

    #[test]
    fn a_credential_never_reported_done_is_written_at_the_end_from_the_run() {
        let stream = PlanStream::new(["a", "b", "c"].into_iter());
        let mut out = Vec::new();
        stream.done(&planned("c"), &mut out);
        assert!(out.is_empty());
        // The run's reports were compacted: `a` and `b` without plan items.
        let mut a = planned("a");
        a.compact();
        let mut b = planned("b");
        b.compact();
        stream.finish(&run_of(vec![a, b, planned("c")]), &mut out).unwrap();
        let text = String::from_utf8(out).unwrap();
        assert_eq!(
            text,
            "ok       a  postgres role\nok       b  postgres role\n\
             ok       c  postgres role\n         - apply: set c\n"
        );
    }
}
