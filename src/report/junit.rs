//! `verify --junit FILE`: one test case per credential, for CI systems.

use crate::engine::{RunReport, Status};
use std::fmt::Write;

fn escape(text: &str) -> String {
    text.chars()
        .map(|c| match c {
            '&' => "&amp;".into(),
            '<' => "&lt;".into(),
            '>' => "&gt;".into(),
            '"' => "&quot;".into(),
            '\'' => "&apos;".into(),
            c if (c as u32) < 0x20 && !matches!(c, '\n' | '\t') => " ".into(),
            c => c.to_string(),
        })
        .collect()
}

/// The run as a JUnit XML document.
pub fn render(run: &RunReport) -> String {
    let failures = run.count(Status::Failed);
    let seconds = run.duration_ms as f64 / 1000.0;
    let mut out = String::from("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n");
    let _ = writeln!(
        out,
        "<testsuites name=\"rekey {}\" tests=\"{}\" failures=\"{failures}\" time=\"{seconds:.3}\">",
        run.command,
        run.credentials.len()
    );
    let _ = writeln!(
        out,
        "  <testsuite name=\"rekey {}\" tests=\"{}\" failures=\"{failures}\" errors=\"0\" time=\"{seconds:.3}\" timestamp=\"{}\">",
        run.command,
        run.credentials.len(),
        escape(&run.started)
    );
    for c in &run.credentials {
        let _ = write!(
            out,
            "    <testcase classname=\"rekey.{}\" name=\"{}\" time=\"{:.3}\"",
            run.command,
            escape(&c.name),
            c.duration_ms as f64 / 1000.0
        );
        if c.status == Status::Failed {
            let mut problems = c.problems.clone();
            if problems.is_empty() {
                problems.extend(c.error_line());
            }
            let first = problems.first().cloned().unwrap_or_default();
            let _ = writeln!(
                out,
                ">\n      <failure message=\"{}\" type=\"{}\">{}</failure>\n    </testcase>",
                escape(&first),
                c.error.as_ref().map_or("failed", |e| e.kind.as_str()),
                escape(&problems.join("\n"))
            );
        } else {
            out.push_str("/>\n");
        }
    }
    out.push_str("  </testsuite>\n</testsuites>\n");
    out
}
