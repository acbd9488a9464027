//! `atp-chaos produce`: a fixed-rate producer through the library.
//!
//! Before each batch it appends `intent BATCH ID,ID,…` to its log, calls
//! `task_enqueue_many`, and appends `ack BATCH` once the call returned Ok
//! (or `fail BATCH MESSAGE`). Acknowledged tasks are the ones the checks
//! hold the system to; a batch with an intent and no ack (the producer was
//! killed inside the call, or the call failed) must be in the database
//! whole or not at all.
//!
//! The rate is kept by a ticker that skips missed ticks: while the
//! database is away the producer does not pile up a burst to replay, so
//! the offered load stays the rate (what a fleet of request handlers
//! would do).

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::Context as _;
use atp_core::{NewTask, StoreOptions, TaskIdentifier, TypeName};
use atp_store::AnyStore;

/// `atp-chaos produce` flags.
#[derive(Debug, clap::Args)]
pub struct ProduceArgs {
    /// The database.
    #[arg(long)]
    pub database: String,
    /// The intent/ack log.
    #[arg(long)]
    pub log: PathBuf,
    /// The task type.
    #[arg(long = "type", default_value = "chaos")]
    pub task_type: String,
    /// Tasks per second.
    #[arg(long, default_value_t = 500)]
    pub rate: u32,
    /// Tasks per enqueue call (1: `task_enqueue`).
    #[arg(long, default_value_t = 10)]
    pub batch: u32,
    /// Identifier prefix, unique per producer process.
    #[arg(long)]
    pub prefix: String,
    /// The handler's sleep per task, in milliseconds.
    #[arg(long, default_value_t = 10)]
    pub sleep_ms: u64,
    /// Stop after this many tasks were tried (default: until SIGTERM).
    #[arg(long)]
    pub count: Option<u64>,
}

/// One line of a producer's log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LogLine {
    /// A batch about to be enqueued.
    Intent(u64, Vec<String>),
    /// The batch was enqueued (the call returned Ok).
    Ack(u64),
    /// The call returned an error.
    Fail(u64, String),
}

impl LogLine {
    fn render(&self) -> String {
        match self {
            LogLine::Intent(b, ids) => format!("intent {b} {}\n", ids.join(",")),
            LogLine::Ack(b) => format!("ack {b}\n"),
            LogLine::Fail(b, m) => format!("fail {b} {}\n", m.replace('\n', " ")),
        }
    }

    fn parse(line: &str) -> Option<LogLine> {
        let mut f = line.splitn(3, ' ');
        let kind = f.next()?;
        let batch = f.next()?.parse().ok()?;
        let rest = f.next().unwrap_or("");
        match kind {
            "intent" => Some(LogLine::Intent(
                batch,
                rest.split(',').map(str::to_owned).collect(),
            )),
            "ack" => Some(LogLine::Ack(batch)),
            "fail" => Some(LogLine::Fail(batch, rest.to_owned())),
            _ => None,
        }
    }
}

/// What a producer log says.
#[derive(Debug, Default, Clone)]
pub struct Produced {
    /// Identifiers of acknowledged batches.
    pub acked: Vec<String>,
    /// Batches with an intent and no ack: (batch, identifiers).
    pub unacked: Vec<(u64, Vec<String>)>,
    /// Error messages of failed calls (first few, and how many).
    pub failures: Vec<String>,
    /// How many calls failed.
    pub failed_calls: u64,
}

/// Reads producer logs (a torn last line is skipped).
pub fn read(paths: &[PathBuf]) -> anyhow::Result<Produced> {
    let mut out = Produced::default();
    for path in paths {
        let text = match std::fs::read_to_string(path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
            Err(e) => return Err(e).with_context(|| format!("reading {}", path.display())),
        };
        let mut pending: std::collections::BTreeMap<u64, Vec<String>> = Default::default();
        for line in text
            .split_inclusive('\n')
            .filter_map(|l| l.strip_suffix('\n'))
            .filter_map(LogLine::parse)
        {
            match line {
                LogLine::Intent(b, ids) => {
                    pending.insert(b, ids);
                }
                LogLine::Ack(b) => {
                    if let Some(ids) = pending.remove(&b) {
                        out.acked.extend(ids);
                    }
                }
                LogLine::Fail(b, m) => {
                    out.failed_calls += 1;
                    if out.failures.len() < 5 {
                        out.failures.push(m);
                    }
                    if let Some(ids) = pending.remove(&b) {
                        out.unacked.push((b, ids));
                    }
                }
            }
        }
        out.unacked.extend(pending);
    }
    Ok(out)
}

struct Log {
    file: std::fs::File,
}

impl Log {
    fn open(path: &Path) -> anyhow::Result<Log> {
        let file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
            .with_context(|| format!("opening {}", path.display()))?;
        Ok(Log { file })
    }

    /// One `write(2)` per line (`O_APPEND`): a kill leaves whole lines.
    fn append(&self, line: &LogLine) -> anyhow::Result<()> {
        use std::io::Write as _;
        let text = line.render();
        let n = (&self.file).write(text.as_bytes())?;
        anyhow::ensure!(n == text.len(), "short write to the producer log");
        Ok(())
    }
}

/// Runs the producer until SIGTERM or `--count`.
pub async fn run(args: ProduceArgs) -> anyhow::Result<()> {
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
    let log = Log::open(&args.log)?;
    let store = connect(&args.database).await?;
    let task_type = TypeName::new(&args.task_type)?;
    let batch = u64::from(args.batch.max(1));
    let period = Duration::from_secs_f64(batch as f64 / f64::from(args.rate.max(1)));
    let mut ticker = tokio::time::interval(period);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    let input = serde_json::json!({ "sleep_ms": args.sleep_ms });
    let mut sent = 0u64;
    let mut number = 0u64;
    loop {
        if args.count.is_some_and(|c| sent >= c) {
            return Ok(());
        }
        tokio::select! {
            _ = ticker.tick() => {}
            _ = term.recv() => return Ok(()),
        }
        let n = args.count.map_or(batch, |c| batch.min(c - sent));
        let ids: Vec<String> = (sent..sent + n)
            .map(|i| format!("{}-{i}", args.prefix))
            .collect();
        let tasks = ids
            .iter()
            .map(|id| {
                Ok(NewTask::new(task_type.clone(), TaskIdentifier::new(id)?)
                    .with_input(input.clone()))
            })
            .collect::<anyhow::Result<Vec<_>>>()?;
        log.append(&LogLine::Intent(number, ids))?;
        let result = if tasks.len() == 1 {
            let task = tasks.into_iter().next().expect("one task");
            atp_core::Store::task_enqueue(&store, task)
                .await
                .map(|_| ())
        } else {
            atp_core::Store::task_enqueue_many(&store, tasks)
                .await
                .map(|_| ())
        };
        match result {
            Ok(()) => log.append(&LogLine::Ack(number))?,
            Err(e) => log.append(&LogLine::Fail(number, e.to_string()))?,
        }
        sent += n;
        number += 1;
    }
}

/// Opens the store, retrying while the database is unreachable (a
/// producer restarted during a fault must not give up), for up to a minute.
pub async fn connect(url: &str) -> anyhow::Result<AnyStore> {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    loop {
        match atp_store::open(url, StoreOptions::default()).await {
            Ok(s) => return Ok(s),
            Err(e) if tokio::time::Instant::now() < deadline => {
                eprintln!("atp-chaos: opening {url}: {e}; retrying");
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
            Err(e) => return Err(e).with_context(|| format!("opening {url}")),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_intent_without_ack_is_unacked_and_an_acked_batch_counts_whole() {
        let dir = std::env::temp_dir().join(format!("atp-chaos-produce-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("p.log");
        std::fs::write(
            &path,
            "intent 0 a,b\nack 0\nintent 1 c,d\nfail 1 boom\nintent 2 e,f\nack 2\nintent 3 g,h\nac",
        )
        .unwrap();
        let got = read(std::slice::from_ref(&path)).unwrap();
        assert_eq!(got.acked, vec!["a", "b", "e", "f"]);
        assert_eq!(
            got.unacked,
            vec![
                (1, vec!["c".to_owned(), "d".to_owned()]),
                (3, vec!["g".to_owned(), "h".to_owned()])
            ]
        );
        assert_eq!(got.failed_calls, 1);
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
