//! Log messages that stores write on their own, in one place so that every
//! engine writes the same words (the contract suite compares them).

use crate::id::DaemonId;

/// First log line of an enqueued task when the producer gave none.
pub const ENQUEUED: &str = "Enqueued";

/// Log line of an operator's re-enqueue when none was given.
pub const REENQUEUED: &str = "Re-enqueued by an operator";

/// The RUNNING record written by a start.
pub fn started(holder: DaemonId, start: u32, max_starts: u32) -> String {
    format!("Started by {holder} (start {start} of {max_starts})")
}

/// The ACCEPTED record written when an abandoned task is re-enqueued.
pub fn abandoned_requeued(timeout_secs: f64, starts: u32, max_starts: u32) -> String {
    format!(
        "Abandoned: no update within the {timeout_secs} s timeout; re-enqueued ({starts} of {max_starts} starts used)"
    )
}

/// A rescue's record of a task found SCHEDULED: claimed ahead, it may have
/// begun before its start was written, so that start is counted.
pub fn with_unseen_start(message: &str, start: u32) -> String {
    format!("{message} [found SCHEDULED: counted as start {start}, which may have begun]")
}

/// The FAILED record written when an abandoned task has no starts left.
pub fn abandoned_failed(timeout_secs: f64, max_starts: u32) -> String {
    format!(
        "Abandoned: no update within the {timeout_secs} s timeout and all {max_starts} starts used up (max starts reached); not retried"
    )
}

/// The FAILED record written when a holder hands back a task that has no
/// starts left.
pub fn released_failed(reason: &str, max_starts: u32) -> String {
    format!("{reason}; all {max_starts} starts used up (max starts reached), not retried")
}

/// The ACCEPTED record of a failed attempt that will be retried: start
/// `next` of `max_starts` comes after `delay`.
pub fn retrying(message: &str, next: u32, max_starts: u32, delay: std::time::Duration) -> String {
    format!(
        "Failed: {message}; start {next} of {max_starts} after {}",
        seconds(delay)
    )
}

/// The FAILED record of a failure that would be retried but has no start
/// left.
pub fn retries_exhausted(message: &str, max_starts: u32) -> String {
    format!("{message}; all {max_starts} starts used up, not retried")
}

/// A delay as people read it: "20 s", "1.5 s", "0.25 s".
fn seconds(d: std::time::Duration) -> String {
    let secs = d.as_secs_f64();
    let text = if secs >= 10.0 {
        format!("{secs:.0}")
    } else {
        format!("{secs:.2}")
            .trim_end_matches('0')
            .trim_end_matches('.')
            .to_owned()
    };
    format!("{text} s")
}

/// The ACCEPTED record of a task rescued from a daemon that stopped
/// heartbeating.
pub fn rescued(holder: DaemonId, silent_secs: f64) -> String {
    format!(
        "Rescued: holder {holder} stopped heartbeating (silent for more than {silent_secs} s); re-enqueued"
    )
}

/// The FAILED record of a task rescued from a dead daemon with no starts left.
pub fn rescued_failed(holder: DaemonId, silent_secs: f64, max_starts: u32) -> String {
    format!(
        "Rescued: holder {holder} stopped heartbeating (silent for more than {silent_secs} s) and all {max_starts} starts used up (max starts reached); not retried"
    )
}

/// Log line of an operator's cancellation when no message was given.
pub const CANCELLED: &str = "Cancelled by an operator";

/// The CANCELLED record: the operator's message, or [`CANCELLED`].
pub fn cancelled(message: Option<&str>) -> String {
    match message.map(str::trim) {
        Some(m) if !m.is_empty() => format!("Cancelled: {m}"),
        _ => CANCELLED.to_owned(),
    }
}
