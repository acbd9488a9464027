//! [`HandlerError`] and [`HandlerResult`]: how a handler says it failed.
//! A module of their own so that the context, the built-ins and `exec:`
//! use them without depending on the registry (and the registry on them).

use std::fmt;

/// `Ok` leaves the task FINISHED unless the handler already gave it a final
/// status; `Err` leaves it FAILED with the error's text.
pub type HandlerResult = Result<(), HandlerError>;

/// Why a handler failed; its text becomes the FAILED log message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HandlerError(String);

impl HandlerError {
    /// An error with this message.
    pub fn new(message: impl Into<String>) -> Self {
        HandlerError(message.into())
    }

    /// The message.
    pub fn message(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for HandlerError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl<E: std::error::Error> From<E> for HandlerError {
    fn from(e: E) -> Self {
        HandlerError(e.to_string())
    }
}
