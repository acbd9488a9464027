//! [`HandlerError`] and [`HandlerResult`]: how a handler says it failed.
//! A module of their own so that the context, the built-ins and `exec:`
//! use them without depending on the registry (and the registry on them).

use std::fmt;

use atp_core::task::Retry;

/// `Ok` leaves the task FINISHED unless the handler already gave it a final
/// status; `Err` leaves it FAILED with the error's text, or, when its type
/// has a retry policy and starts remain, back in the queue for a later start
/// (see [`HandlerError`]'s kinds).
pub type HandlerResult = Result<(), HandlerError>;

/// Why a handler failed; its text becomes the log message of the failure.
///
/// Three kinds: [`HandlerError::new`] (retried as the type's policy says),
/// [`HandlerError::permanent`] (never retried: bad input, a missing file)
/// and [`HandlerError::retry_after`] (run again after a delay the handler
/// knows, such as a rate limit's; within the same start budget).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HandlerError {
    message: String,
    retry: Retry,
}

impl HandlerError {
    /// An error with this message, retried as the type's policy says.
    pub fn new(message: impl Into<String>) -> Self {
        HandlerError {
            message: message.into(),
            retry: Retry::ByPolicy,
        }
    }

    /// A failure no retry can help: FAILED at once, whatever the policy.
    pub fn permanent(message: impl Into<String>) -> Self {
        HandlerError {
            retry: Retry::Never,
            ..HandlerError::new(message)
        }
    }

    /// A failure after which the task should run again in `delay` (with or
    /// without a policy; FAILED when its starts are used up).
    pub fn retry_after(message: impl Into<String>, delay: std::time::Duration) -> Self {
        HandlerError {
            retry: Retry::After(delay),
            ..HandlerError::new(message)
        }
    }

    /// The message.
    pub fn message(&self) -> &str {
        &self.message
    }

    /// Whether and when the failure may be retried.
    pub fn retry(&self) -> Retry {
        self.retry
    }

    /// The same error, retried as `retry` says.
    pub fn with_retry(mut self, retry: Retry) -> Self {
        self.retry = retry;
        self
    }
}

impl fmt::Display for HandlerError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl<E: std::error::Error> From<E> for HandlerError {
    fn from(e: E) -> Self {
        HandlerError::new(e.to_string())
    }
}
