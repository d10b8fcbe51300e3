//! `-o json`: one JSON document on stdout per command.

use crate::engine::{RunReport, Status};
use serde::Serialize;

#[derive(Serialize)]
struct Summary {
    total: usize,
    failed: usize,
    rotated: usize,
    not_due: usize,
    revoked: usize,
}

#[derive(Serialize)]
struct Document<'a> {
    #[serde(flatten)]
    run: &'a RunReport,
    summary: Summary,
    exit_code: i32,
}

/// The run as a JSON document.
pub fn render(run: &RunReport, exit_code: i32) -> String {
    let summary = Summary {
        total: run.credentials.len(),
        failed: run.count(Status::Failed),
        rotated: run.count(Status::Rotated),
        not_due: run.count(Status::NotDue),
        revoked: run.count(Status::Revoked),
    };
    serde_json::to_string_pretty(&Document {
        run,
        summary,
        exit_code,
    })
    .expect("report serializes")
}

/// An error that stopped the command before it ran, as a JSON document.
pub fn render_error(message: &str, exit_code: i32) -> String {
    serde_json::json!({ "error": { "message": message, "exit_code": exit_code } }).to_string()
}
