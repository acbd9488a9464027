//! The handlers' journal: what ran, outside the database.
//!
//! Each worker process appends to its own file, one `write(2)` per line on
//! a file opened with `O_APPEND`, so a SIGKILL leaves at worst a missing
//! line, never a torn one in the middle (a torn last line is skipped when
//! read). Lines:
//!
//! ```text
//! start IDENTIFIER LEASE PID MONO_US UTC_US READY_US START
//! end   IDENTIFIER LEASE PID MONO_US UTC_US ok|fail|cancelled
//! ```
//!
//! `MONO_US` is `CLOCK_MONOTONIC` (one clock for every process on the
//! machine, never stepped), which the overlap check compares with the
//! harness's kill times; `UTC_US` and `READY_US` (when the task last
//! entered the queue, as the store said) are wall-clock times, which the
//! pick-up latency and the comparison with the database's log need.

use std::fs::File;
use std::io::Write as _;
use std::path::Path;

use anyhow::Context as _;

/// Microseconds of `CLOCK_MONOTONIC`: comparable across the processes of
/// one machine.
pub fn mono_us() -> i64 {
    let ts = nix::time::clock_gettime(nix::time::ClockId::CLOCK_MONOTONIC)
        .expect("CLOCK_MONOTONIC is always available on Linux");
    ts.tv_sec() * 1_000_000 + ts.tv_nsec() / 1_000
}

/// Microseconds since the Unix epoch (UTC).
pub fn utc_us() -> i64 {
    micros(time::OffsetDateTime::now_utc())
}

/// A wall-clock time as microseconds since the epoch.
pub fn micros(t: time::OffsetDateTime) -> i64 {
    i64::try_from(t.unix_timestamp_nanos() / 1_000).unwrap_or(i64::MAX)
}

/// How an attempt's handler ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// Returned success: the work is done (a completion).
    Ok,
    /// Returned a failure (retry storm).
    Fail,
    /// Saw its attempt cancelled and stopped.
    Cancelled,
}

impl Outcome {
    fn word(self) -> &'static str {
        match self {
            Outcome::Ok => "ok",
            Outcome::Fail => "fail",
            Outcome::Cancelled => "cancelled",
        }
    }
}

/// One journal line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Line {
    /// A handler began.
    Start {
        /// The task's identifier.
        identifier: String,
        /// The attempt's lease (claim count).
        lease: u64,
        /// The worker process.
        pid: u32,
        /// Monotonic time.
        mono: i64,
        /// Wall-clock time.
        utc: i64,
        /// When the task last entered the queue (wall clock).
        ready: i64,
        /// Which start this is.
        start: u32,
    },
    /// A handler returned.
    End {
        /// The task's identifier.
        identifier: String,
        /// The attempt's lease.
        lease: u64,
        /// The worker process.
        pid: u32,
        /// Monotonic time.
        mono: i64,
        /// Wall-clock time.
        utc: i64,
        /// How it ended.
        outcome: Outcome,
    },
}

impl Line {
    /// The line as written, with its newline.
    pub fn render(&self) -> String {
        match self {
            Line::Start {
                identifier,
                lease,
                pid,
                mono,
                utc,
                ready,
                start,
            } => format!("start {identifier} {lease} {pid} {mono} {utc} {ready} {start}\n"),
            Line::End {
                identifier,
                lease,
                pid,
                mono,
                utc,
                outcome,
            } => format!(
                "end {identifier} {lease} {pid} {mono} {utc} {}\n",
                outcome.word()
            ),
        }
    }

    /// Parses one line (without its newline); `None` for a torn or foreign
    /// line.
    pub fn parse(text: &str) -> Option<Line> {
        let f: Vec<&str> = text.split(' ').collect();
        match f.as_slice() {
            ["start", id, lease, pid, mono, utc, ready, start] => Some(Line::Start {
                identifier: (*id).to_owned(),
                lease: lease.parse().ok()?,
                pid: pid.parse().ok()?,
                mono: mono.parse().ok()?,
                utc: utc.parse().ok()?,
                ready: ready.parse().ok()?,
                start: start.parse().ok()?,
            }),
            ["end", id, lease, pid, mono, utc, outcome] => Some(Line::End {
                identifier: (*id).to_owned(),
                lease: lease.parse().ok()?,
                pid: pid.parse().ok()?,
                mono: mono.parse().ok()?,
                utc: utc.parse().ok()?,
                outcome: match *outcome {
                    "ok" => Outcome::Ok,
                    "fail" => Outcome::Fail,
                    "cancelled" => Outcome::Cancelled,
                    _ => return None,
                },
            }),
            _ => None,
        }
    }
}

/// An append-only journal file.
#[derive(Debug)]
pub struct Journal {
    file: File,
}

impl Journal {
    /// Opens (creating) `path` for appending.
    pub fn open(path: &Path) -> anyhow::Result<Journal> {
        let file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
            .with_context(|| format!("opening the journal {}", path.display()))?;
        Ok(Journal { file })
    }

    /// Appends one line in one `write(2)`: with `O_APPEND` the kernel puts
    /// it whole at the end, and a kill cannot split it.
    pub fn append(&self, line: &Line) -> std::io::Result<()> {
        let text = line.render();
        let written = (&self.file).write(text.as_bytes())?;
        if written != text.len() {
            return Err(std::io::Error::other(format!(
                "short journal write: {written} of {} bytes",
                text.len()
            )));
        }
        Ok(())
    }
}

/// Reads every whole line of a journal file (a missing file reads empty).
pub fn read(path: &Path) -> anyhow::Result<Vec<Line>> {
    let text = match std::fs::read_to_string(path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(e).with_context(|| format!("reading {}", path.display())),
    };
    // A line without its newline was cut by a kill: skip it.
    Ok(text
        .split_inclusive('\n')
        .filter_map(|l| l.strip_suffix('\n'))
        .filter_map(Line::parse)
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_read_back_as_written_and_a_torn_tail_is_skipped() {
        let dir = std::env::temp_dir().join(format!("atp-chaos-journal-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("j.log");
        let _ = std::fs::remove_file(&path);
        let start = Line::Start {
            identifier: "p0-1".into(),
            lease: 2,
            pid: 7,
            mono: 10,
            utc: 20,
            ready: 15,
            start: 1,
        };
        let end = Line::End {
            identifier: "p0-1".into(),
            lease: 2,
            pid: 7,
            mono: 30,
            utc: 40,
            outcome: Outcome::Fail,
        };
        let j = Journal::open(&path).unwrap();
        j.append(&start).unwrap();
        j.append(&end).unwrap();
        (&j.file).write_all(b"start p0-2 3 7 5").unwrap();
        assert_eq!(read(&path).unwrap(), vec![start, end]);
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
