//! Notes a revoke records about the sessions it ended (who was using the old secret),
//! for the incident record ([`crate::RevokeReport::notes`]): addresses, names, ids and
//! times, never a secret. Shared by every provider that ends sessions.

/// The most sessions a revoke names one by one; the rest are counted in one more note.
pub const MAX_SESSION_NOTES: usize = 20;

/// The longest value from the server (a client or application name) shown in a note.
const MAX_VALUE_CHARS: usize = 64;

/// `notes` capped at [`MAX_SESSION_NOTES`], plus `... and N more sessions ended` for the
/// rest; `total` (at least `notes.len()`) is how many sessions ended in all.
pub fn capped(mut notes: Vec<String>, total: usize) -> Vec<String> {
    let total = total.max(notes.len());
    notes.truncate(MAX_SESSION_NOTES);
    if total > notes.len() {
        notes.push(format!("... and {} more sessions ended", total - notes.len()));
    }
    notes
}

/// A value the server reported and a client chose (an application or client name), fit
/// for a one-line note: control characters escaped, at most 64 characters, and withheld
/// altogether if it contains one of `secrets` (a client may put anything in its name).
pub fn shown(value: &str, secrets: &[&str]) -> String {
    if secrets.iter().any(|s| !s.is_empty() && value.contains(s)) {
        return "(name withheld: it contains a secret)".to_owned();
    }
    let mut out = String::new();
    for (i, c) in value.chars().enumerate() {
        if i == MAX_VALUE_CHARS {
            out.push('…');
            break;
        }
        if c.is_control() {
            out.extend(c.escape_default());
        } else {
            out.push(c);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn caps_at_twenty() {
        let notes: Vec<String> = (0..25).map(|i| format!("session {i}")).collect();
        let out = capped(notes, 25);
        assert_eq!(out.len(), MAX_SESSION_NOTES + 1);
        assert_eq!(out[19], "session 19");
        assert_eq!(out[20], "... and 5 more sessions ended");
        assert_eq!(capped(vec!["a".into()], 1), vec!["a".to_owned()]);
        assert_eq!(
            capped(vec!["a".into()], 3),
            vec!["a".to_owned(), "... and 2 more sessions ended".to_owned()]
        );
        assert!(capped(Vec::new(), 0).is_empty());
    }

    #[test]
    fn values_are_one_line_and_never_a_secret() {
        assert_eq!(shown("psql", &["hunter2"]), "psql");
        assert_eq!(shown("a\nb\tc", &[]), "a\\nb\\tc");
        assert_eq!(
            shown("app-hunter2-x", &["hunter2"]),
            "(name withheld: it contains a secret)"
        );
        assert_eq!(shown("app", &[""]), "app");
        let long = "x".repeat(100);
        assert_eq!(shown(&long, &[]).chars().count(), MAX_VALUE_CHARS + 1);
    }
}
