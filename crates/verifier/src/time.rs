//! The verification time: always an input, never read from a clock here.

use std::fmt;

/// Seconds since the Unix epoch (UTC).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct UnixTime(pub i64);

impl UnixTime {
    /// The current time, for callers at the edge (CLI, broker).
    pub fn now() -> Self {
        UnixTime(time::OffsetDateTime::now_utc().unix_timestamp())
    }

    /// Parses `--at` values: Unix seconds, an RFC 3339 timestamp, or a date
    /// (`2025-06-01`, taken as midnight UTC).
    pub fn parse(s: &str) -> Result<Self, String> {
        let s = s.trim();
        if !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()) {
            return s
                .parse::<i64>()
                .map(UnixTime)
                .map_err(|e| format!("invalid Unix time {s:?}: {e}"));
        }
        if let Ok(t) =
            time::OffsetDateTime::parse(s, &time::format_description::well_known::Rfc3339)
        {
            return Ok(UnixTime(t.unix_timestamp()));
        }
        let fmt = time::macros::format_description!("[year]-[month]-[day]");
        time::Date::parse(s, &fmt)
            .map(|d| UnixTime(d.midnight().assume_utc().unix_timestamp()))
            .map_err(|_| {
                format!("invalid time {s:?}: expected Unix seconds, RFC 3339 or YYYY-MM-DD")
            })
    }
}

impl fmt::Display for UnixTime {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match time::OffsetDateTime::from_unix_timestamp(self.0)
            .ok()
            .and_then(|t| {
                t.format(&time::format_description::well_known::Rfc3339)
                    .ok()
            }) {
            Some(s) => f.write_str(&s),
            None => write!(f, "@{}", self.0),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_forms() {
        assert_eq!(UnixTime::parse("0").unwrap(), UnixTime(0));
        assert_eq!(
            UnixTime::parse("2025-06-01T00:00:00Z").unwrap(),
            UnixTime(1_748_736_000)
        );
        assert_eq!(
            UnixTime::parse("2025-06-01").unwrap(),
            UnixTime(1_748_736_000)
        );
        assert!(UnixTime::parse("yesterday").is_err());
        assert_eq!(UnixTime(1_748_736_000).to_string(), "2025-06-01T00:00:00Z");
    }
}
