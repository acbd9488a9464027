//! Where and how `atp` logs: `tracing` events to stderr, as text for people
//! or as one JSON object per line for log collectors (`--log-format json`).
//!
//! Text is coloured only when stderr is a terminal and `NO_COLOR` is unset:
//! escape codes in a file, a pipe or journald are noise a reader has to
//! strip. The level comes from `ATP_LOG` (an `EnvFilter` directive), else
//! from the command (see `main`).

use std::io::IsTerminal as _;

use tracing_subscriber::EnvFilter;

/// The shape of log lines on stderr.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum LogFormat {
    /// One line per event for people: time, level, span fields, message.
    #[default]
    Text,
    /// One JSON object per event and line (tracing-subscriber's JSON
    /// format: `timestamp`, `level`, `fields`, `target`, `span`, `spans`).
    Json,
}

/// Whether text logs may carry colour: stderr is a terminal and `NO_COLOR`
/// is unset (the rule of `atp`'s own coloured lines, [`crate::output`]).
fn colour() -> bool {
    std::io::stderr().is_terminal() && !crate::output::no_color()
}

/// Installs the process's subscriber: `format` on stderr, at the level
/// `ATP_LOG` names, else `default_level`.
pub fn init(format: LogFormat, default_level: &str) {
    let filter =
        EnvFilter::try_from_env("ATP_LOG").unwrap_or_else(|_| EnvFilter::new(default_level));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    match format {
        LogFormat::Text => builder.with_ansi(colour()).init(),
        LogFormat::Json => builder.json().with_ansi(false).init(),
    }
}
