//! When routine rotation may happen: rotation windows (days and hours, UTC) and a
//! deterministic per-credential jitter that spreads a fleet's due times. Incidents
//! ignore both.

use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// Where the engine reads "now" for its decisions (due dates, windows, grace, stuck
/// pending versions): the system clock, or a test's.
pub type Clock = Arc<dyn Fn() -> SystemTime + Send + Sync>;

/// The system clock.
pub fn system_clock() -> Clock {
    Arc::new(SystemTime::now)
}

/// Days and hours (UTC) in which `rotate --due` may start a rotation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Window {
    /// Allowed weekdays, 0 = Sunday ... 6 = Saturday.
    pub days: Vec<u8>,
    /// Allowed hours: `start <= hour < end` (UTC), 0..=24.
    pub start_hour: u8,
    /// End of the allowed hours (exclusive).
    pub end_hour: u8,
}

const DAY_NAMES: [&str; 7] = ["sun", "mon", "tue", "wed", "thu", "fri", "sat"];

impl Window {
    /// Parses `days = ["mon", ...]` (empty: every day) and `hours = "09-17"` (start
    /// inclusive, end exclusive, UTC; empty: all day).
    pub fn parse(days: &[String], hours: Option<&str>) -> Result<Window, String> {
        let mut parsed = Vec::new();
        for day in days {
            let lower = day.to_ascii_lowercase();
            let index = DAY_NAMES
                .iter()
                .position(|d| lower.starts_with(d))
                .ok_or_else(|| format!("window: unknown day `{day}` (use mon, tue, wed, thu, fri, sat, sun)"))?;
            parsed.push(index as u8);
        }
        if parsed.is_empty() {
            parsed = (0..7).collect();
        }
        let (start_hour, end_hour) = match hours {
            None => (0, 24),
            Some(text) => {
                let bad = || format!("window: hours `{text}` must be START-END in whole UTC hours, e.g. \"09-17\"");
                let (a, b) = text.split_once('-').ok_or_else(bad)?;
                let (a, b): (u8, u8) = (
                    a.trim().parse().map_err(|_| bad())?,
                    b.trim().parse().map_err(|_| bad())?,
                );
                if a >= b || b > 24 {
                    return Err(bad());
                }
                (a, b)
            }
        };
        Ok(Window {
            days: parsed,
            start_hour,
            end_hour,
        })
    }

    /// Whether `t` falls inside the window.
    pub fn contains(&self, t: SystemTime) -> bool {
        let secs = t.duration_since(UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0);
        let weekday = ((secs / 86_400 + 4) % 7) as u8; // 1970-01-01 was a Thursday.
        let hour = (secs % 86_400 / 3600) as u8;
        self.days.contains(&weekday) && self.start_hour <= hour && hour < self.end_hour
    }

    /// The next instant at or after `t` inside the window (hour resolution).
    pub fn next_open(&self, t: SystemTime) -> SystemTime {
        if self.contains(t) {
            return t;
        }
        let secs = t.duration_since(UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0);
        let mut hour_start = secs - secs % 3600 + 3600;
        for _ in 0..(8 * 24) {
            let at = UNIX_EPOCH + Duration::from_secs(hour_start);
            if self.contains(at) {
                return at;
            }
            hour_start += 3600;
        }
        t
    }

    /// How it reads: `mon,tue 09-17 UTC`.
    pub fn describe(&self) -> String {
        let days: Vec<&str> = self.days.iter().map(|d| DAY_NAMES[usize::from(*d)]).collect();
        format!("{} {:02}-{:02} UTC", days.join(","), self.start_hour, self.end_hour)
    }
}

/// The credential's jitter offset: a stable fraction of `jitter` from its name (FNV-1a),
/// so a fleet rotated at once spreads out, and the same credential always gets the same.
pub fn jitter_offset(name: &str, jitter: Duration) -> Duration {
    if jitter.is_zero() {
        return Duration::ZERO;
    }
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for byte in name.bytes() {
        hash ^= u64::from(byte);
        hash = hash.wrapping_mul(0x0100_0000_01b3);
    }
    Duration::from_secs(hash % jitter.as_secs().max(1))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(text: &str) -> SystemTime {
        humantime::parse_rfc3339(text).unwrap()
    }

    #[test]
    fn windows_by_day_and_hour_utc() {
        let w = Window::parse(&["mon".into(), "Tuesday".into()], Some("09-17")).unwrap();
        assert!(w.contains(at("2026-11-30T09:00:00Z")), "a Monday 09:00");
        assert!(w.contains(at("2026-12-01T16:59:59Z")), "a Tuesday 16:59");
        assert!(!w.contains(at("2026-12-01T17:00:00Z")), "end is exclusive");
        assert!(!w.contains(at("2026-12-02T10:00:00Z")), "a Wednesday");
        assert_eq!(w.next_open(at("2026-12-01T18:30:00Z")), at("2026-12-07T09:00:00Z"));
        assert!(Window::parse(&["funday".into()], None).is_err());
        assert!(Window::parse(&[], Some("17-09")).is_err());
        assert_eq!(w.describe(), "mon,tue 09-17 UTC");
    }

    #[test]
    fn jitter_is_stable_and_bounded() {
        let j = Duration::from_secs(600);
        assert_eq!(jitter_offset("orders-db", j), jitter_offset("orders-db", j));
        let spread: std::collections::BTreeSet<u64> = (0..50)
            .map(|i| jitter_offset(&format!("svc-{i}"), j).as_secs())
            .collect();
        assert!(spread.len() > 20 && spread.iter().all(|s| *s < 600));
        assert_eq!(jitter_offset("x", Duration::ZERO), Duration::ZERO);
    }
}
