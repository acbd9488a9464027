//! The limits every layer agrees on, each written once: the store refuses
//! what exceeds them, and producers (the daemon's `exec:` protocol, say)
//! cut or check their input against the same numbers instead of copies.

use std::borrow::Cow;
use std::ops::RangeInclusive;

/// Longest progress message a store accepts, in characters (not bytes:
/// a message is cut where a reader sees it end).
pub const MAX_PROGRESS_CHARS: usize = 1024;

/// The percents a progress report may carry: 0 to 100, both included.
pub const PROGRESS_PERCENT: RangeInclusive<f64> = 0.0..=100.0;

/// Longest log message a store accepts, in bytes (64 KiB).
pub const MAX_MESSAGE_BYTES: usize = 64 * 1024;

/// Whether `percent` is a progress a store accepts: finite and within
/// [`PROGRESS_PERCENT`].
pub fn is_progress_percent(percent: f64) -> bool {
    percent.is_finite() && PROGRESS_PERCENT.contains(&percent)
}

/// `message` cut to at most [`MAX_PROGRESS_CHARS`] characters, at a
/// character boundary.
pub fn cut_progress_message(message: &str) -> &str {
    match message.char_indices().nth(MAX_PROGRESS_CHARS) {
        Some((end, _)) => &message[..end],
        None => message,
    }
}

/// `message` cut to at most [`MAX_MESSAGE_BYTES`], at a character
/// boundary, ending in `…` when it was cut: for messages that come from
/// outside (a handler's error, a panic) and must not make the store refuse
/// the status they go with.
pub fn cut_message(message: &str) -> Cow<'_, str> {
    if message.len() <= MAX_MESSAGE_BYTES {
        return Cow::Borrowed(message);
    }
    let mut end = MAX_MESSAGE_BYTES - '…'.len_utf8();
    while !message.is_char_boundary(end) {
        end -= 1;
    }
    Cow::Owned(format!("{}…", &message[..end]))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percents_outside_the_range_or_not_finite_are_refused() {
        for ok in [0.0, 42.5, 100.0] {
            assert!(is_progress_percent(ok), "{ok}");
        }
        for bad in [-0.1, 100.1, f64::NAN, f64::INFINITY] {
            assert!(!is_progress_percent(bad), "{bad}");
        }
    }

    #[test]
    fn progress_messages_are_cut_in_characters() {
        let long = "ü".repeat(MAX_PROGRESS_CHARS + 10);
        assert_eq!(
            cut_progress_message(&long).chars().count(),
            MAX_PROGRESS_CHARS
        );
        let exact = "a".repeat(MAX_PROGRESS_CHARS);
        assert_eq!(cut_progress_message(&exact), exact);
        assert_eq!(cut_progress_message("short"), "short");
    }

    #[test]
    fn log_messages_are_cut_in_bytes_at_a_character_boundary() {
        let fits = "a".repeat(MAX_MESSAGE_BYTES);
        assert!(matches!(cut_message(&fits), Cow::Borrowed(_)));
        let long = "é".repeat(MAX_MESSAGE_BYTES);
        let cut = cut_message(&long);
        assert!(cut.len() <= MAX_MESSAGE_BYTES, "{}", cut.len());
        assert!(cut.len() > MAX_MESSAGE_BYTES - 8);
        assert!(cut.ends_with('…'));
    }
}
