//! Timestamps: UTC with microsecond precision on both engines.

use time::OffsetDateTime;

/// Microseconds since the Unix epoch.
pub fn to_micros(t: OffsetDateTime) -> i64 {
    (t.unix_timestamp_nanos() / 1_000) as i64
}

/// The inverse of [`to_micros`]; out-of-range values clamp to the epoch.
pub fn from_micros(micros: i64) -> OffsetDateTime {
    OffsetDateTime::from_unix_timestamp_nanos(i128::from(micros) * 1_000)
        .unwrap_or(OffsetDateTime::UNIX_EPOCH)
}

/// Now, truncated to microseconds.
pub fn now() -> OffsetDateTime {
    from_micros(to_micros(OffsetDateTime::now_utc()))
}

/// Whole microseconds in `secs` seconds (for timeouts and retention).
pub fn secs_to_micros(secs: f64) -> i64 {
    (secs * 1_000_000.0).round() as i64
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn micros_round_trip_and_truncate() {
        let t = now();
        assert_eq!(from_micros(to_micros(t)), t);
        assert_eq!(t.nanosecond() % 1_000, 0);
        assert_eq!(secs_to_micros(1.5), 1_500_000);
    }
}
