//! Times and records each step of one credential, and tells the reporter.

use super::event::{Event, Outcome, Reporter, Step, StepRecord};
use super::failure::FailureKind;
use super::interrupt::Interrupt;
use super::report::{CredentialReport, Failure, Status};
use rekey_api::ProviderError;
use std::future::Future;
use std::sync::Arc;
use std::time::{Instant, SystemTime};

/// A step that failed: which one, and why.
#[derive(Debug)]
pub struct StepFailed;

/// Records the steps of one credential's run.
pub struct Recorder {
    run_id: String,
    reporter: Arc<dyn Reporter>,
    interrupt: Interrupt,
    clock: super::schedule::Clock,
    started: Instant,
    /// The report being built.
    pub report: CredentialReport,
}

impl Recorder {
    /// Starts a report for a credential.
    pub fn new(
        run_id: &str,
        reporter: Arc<dyn Reporter>,
        name: &str,
        target: String,
        store: String,
        key: &str,
    ) -> Self {
        Recorder {
            run_id: run_id.to_owned(),
            reporter,
            interrupt: Interrupt::default(),
            clock: super::schedule::system_clock(),
            started: Instant::now(),
            report: CredentialReport::new(name, target, store, key),
        }
    }

    /// Stops this recorder's steps when `interrupt` is requested.
    pub fn with_interrupt(mut self, interrupt: Interrupt) -> Self {
        self.interrupt = interrupt;
        self
    }

    /// Decides with `clock` instead of the system clock (tests inject one).
    pub fn with_clock(mut self, clock: super::schedule::Clock) -> Self {
        self.clock = clock;
        self
    }

    /// "Now" for the engine's decisions (due, windows, grace, stuck).
    pub fn now(&self) -> SystemTime {
        (self.clock)()
    }

    /// Whether a stop was requested for this run.
    pub fn interrupt_requested(&self) -> bool {
        self.interrupt.requested()
    }

    /// The step boundary: fails `step` before it starts when a stop was requested.
    pub fn begin(&mut self, step: Step) -> Result<(), StepFailed> {
        if self.interrupt.requested() {
            return Err(self.fail(
                step,
                FailureKind::Interrupted,
                "interrupted before this step; the next run finishes the rotation",
            ));
        }
        Ok(())
    }

    fn push(&mut self, step: Step, outcome: Outcome, detail: Option<String>, started: SystemTime, took: Instant) {
        let record = StepRecord {
            step,
            outcome,
            detail,
            started,
            duration: took.elapsed(),
        };
        tracing::debug!(
            credential = %self.report.name,
            step = record.step.as_str(),
            outcome = ?record.outcome,
            duration_ms = record.duration.as_secs_f64() * 1e3,
            "step finished"
        );
        self.reporter.event(&Event::Step {
            run_id: self.run_id.clone(),
            credential: self.report.name.clone(),
            record: record.clone(),
        });
        self.report.steps.push(record);
    }

    /// Runs `work` as `step`; on error records the failure and returns [`StepFailed`].
    pub async fn run<T, F>(&mut self, step: Step, work: F) -> Result<T, StepFailed>
    where
        F: Future<Output = Result<T, ProviderError>>,
    {
        self.begin(step)?;
        let (started, took) = (SystemTime::now(), Instant::now());
        match work.await {
            Ok(value) => {
                self.push(step, Outcome::Ok, None, started, took);
                Ok(value)
            }
            Err(e) => {
                self.fail_with(step, e.kind().into(), e.message().to_owned(), started, took);
                Err(StepFailed)
            }
        }
    }

    /// Records a step that succeeded, with a detail line.
    pub fn ok(&mut self, step: Step, detail: impl Into<String>) {
        self.push(
            step,
            Outcome::Ok,
            Some(detail.into()),
            SystemTime::now(),
            Instant::now(),
        );
    }

    /// Records a step that succeeded at `started`, with a detail line.
    pub fn ok_since(&mut self, step: Step, detail: Option<String>, started: (SystemTime, Instant)) {
        self.push(step, Outcome::Ok, detail, started.0, started.1);
    }

    /// Records a step that was not needed.
    pub fn skipped(&mut self, step: Step, reason: impl Into<String>) {
        let reason = reason.into();
        self.push(
            step,
            Outcome::Skipped { reason },
            None,
            SystemTime::now(),
            Instant::now(),
        );
    }

    /// Records a failure found by the engine itself (not a provider error).
    pub fn fail(&mut self, step: Step, kind: FailureKind, message: impl Into<String>) -> StepFailed {
        self.fail_with(step, kind, message.into(), SystemTime::now(), Instant::now());
        StepFailed
    }

    /// Records a failure with its start time.
    pub fn fail_since(
        &mut self,
        step: Step,
        kind: FailureKind,
        message: impl Into<String>,
        started: (SystemTime, Instant),
    ) -> StepFailed {
        self.fail_with(step, kind, message.into(), started.0, started.1);
        StepFailed
    }

    fn fail_with(&mut self, step: Step, kind: FailureKind, message: String, started: SystemTime, took: Instant) {
        if self.report.error.is_none() {
            self.report.error = Some(Failure {
                step,
                kind,
                message: message.clone(),
            });
        }
        self.push(step, Outcome::Failed { kind, message }, None, started, took);
    }

    /// Closes the report with `status` (failed if any step failed) and tells the reporter.
    pub fn finish(mut self, status: Result<Status, StepFailed>) -> CredentialReport {
        self.report.status = match status {
            Ok(s) if self.report.error.is_none() => s,
            _ => Status::Failed,
        };
        self.report.duration_ms = self.started.elapsed().as_millis() as u64;
        self.reporter
            .event(&Event::CredentialDone(Box::new(self.report.clone())));
        self.report
    }

    /// Tells the reporter a failpoint was reached.
    pub fn failpoint(&self, name: &str) {
        self.reporter.event(&Event::FailpointHeld {
            credential: self.report.name.clone(),
            name: name.to_owned(),
        });
    }
}

/// The current time as RFC 3339 UTC, seconds precision.
pub fn rfc3339(t: SystemTime) -> String {
    humantime::format_rfc3339_seconds(t).to_string()
}
