//! JSON documents wherever they start in the text, and the walk over their values.

use super::candidate::Origin;
use super::collect::{weight_of, Collector, Weight};
use super::text::emit_value;
use serde_json::Value;
use zeroize::Zeroizing;

/// A JSON object or array found in the text, by byte range.
pub(super) struct Span {
    pub(super) start: usize,
    pub(super) end: usize,
    pub(super) value: Value,
}

/// Every JSON object or array in `text`, outermost only, left to right. Each `{` or `[`
/// is tried as the start of a document; the bytes read by failed attempts are counted
/// against a budget proportional to the input, so text full of brackets stays linear.
pub(super) fn find_json(text: &str) -> Vec<Span> {
    let bytes = text.as_bytes();
    let mut budget = bytes.len().saturating_mul(8).saturating_add(64 * 1024);
    let mut spans = Vec::new();
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] != b'{' && bytes[i] != b'[' {
            i += 1;
            continue;
        }
        if budget == 0 {
            break;
        }
        let mut stream = serde_json::Deserializer::from_str(&text[i..]).into_iter::<Value>();
        match stream.next() {
            Some(Ok(value)) => {
                let end = i + stream.byte_offset();
                spans.push(Span { start: i, end, value });
                i = end.max(i + 1);
            }
            Some(Err(e)) => {
                let read = offset_of(&text[i..], e.line(), e.column());
                budget = budget.saturating_sub(read.max(1));
                i += 1;
            }
            None => i += 1,
        }
    }
    spans
}

/// The byte offset of a 1-based line and column (as serde_json reports them).
fn offset_of(text: &str, line: usize, column: usize) -> usize {
    let before: usize = text
        .split_inclusive('\n')
        .take(line.saturating_sub(1))
        .map(str::len)
        .sum();
    before.saturating_add(column)
}

/// Emits every string (and every long number) in `value`, consuming it so that each
/// string ends up zeroized. A string's key names its weight (`password`, `host`); array
/// items take their array's key.
pub(super) fn walk(value: Value, key: Option<&str>, depth: u8, out: &mut Collector) {
    let weight = key.map_or(Weight::Neutral, weight_of);
    match value {
        Value::String(s) => {
            let s = Zeroizing::new(s);
            emit_value(&s, Origin::Json, weight, depth, out);
        }
        Value::Number(n) => {
            let s = Zeroizing::new(n.to_string());
            out.add(&s, Origin::Json, weight);
        }
        Value::Array(items) => {
            for item in items {
                walk(item, key, depth, out);
            }
        }
        Value::Object(map) => {
            for (k, v) in map {
                let k = Zeroizing::new(k);
                walk(v, Some(&k), depth, out);
            }
        }
        Value::Bool(_) | Value::Null => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_documents_inside_text() {
        let text = r#"log [info] {"a": [1, {"b": "c"}]} tail [1,2] {broken"#;
        let spans = find_json(text);
        let found: Vec<&str> = spans.iter().map(|s| &text[s.start..s.end]).collect();
        assert_eq!(found, [r#"{"a": [1, {"b": "c"}]}"#, "[1,2]"]);
    }

    #[test]
    fn brackets_everywhere_stay_bounded() {
        let text = "[".repeat(20_000) + &"{\"a\":".repeat(20_000);
        assert!(find_json(&text).is_empty());
    }
}
