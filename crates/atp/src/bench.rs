//! `atp bench`: what a user needs to check their own setup, against the
//! chosen database, with the code of the daemon's benchmark
//! (`atp_daemon::bench`). It works under task types of its own
//! (`atp-bench-…`) and deletes them afterwards.
//!
//! Two modes:
//! - the default: batch enqueue rate, end-to-end no-op rate (optionally
//!   behind `--backlog` queued tasks) and pick-up latency, plus the rate of
//!   single enqueues from `--producers` concurrent producers;
//! - `--duration`: a steady state at `--rate` tasks a second in and out.
//!
//! `report` prints either as text or JSON; `sizes` samples the database's
//! table sizes during a steady run.

mod report;
mod sizes;

use std::io::IsTerminal as _;
use std::time::Duration;

use atp_core::Store as _;
use atp_daemon::DaemonConfig;
use atp_daemon::bench::{
    DrainParams, SteadyParams, drain, enqueue_single, pickup_latency, steady_state,
};
use atp_store::AnyStore;
use clap::Args;

use crate::commands::parse_duration;

/// `atp bench …`
#[derive(Debug, Args)]
pub struct BenchArgs {
    /// No-op tasks to queue and drain (timed). With --producers, also the
    /// tasks the producers enqueue one at a time.
    #[arg(long, default_value_t = 20_000)]
    tasks: usize,
    /// The daemon's concurrency.
    #[arg(long, default_value_t = 8)]
    concurrency: usize,
    /// Pick-up latency samples.
    #[arg(long, default_value_t = 200)]
    samples: usize,
    /// Also measure single enqueues: N concurrent producers enqueue --tasks
    /// tasks between them, one `task_enqueue` call at a time each (rate and
    /// call latency p50/p99; the pool has --pool-size connections). With
    /// --duration: the producers of the steady run [default there: 4].
    #[arg(long, value_name = "N")]
    producers: Option<usize>,
    /// Queue N more tasks before the timed ones, untimed, so the timed
    /// drain of --tasks runs with between N + --tasks and N tasks queued
    /// (compare with --backlog 0 to see whether the drain rate stays flat
    /// with a deep queue). What is left is deleted afterwards. Beyond the
    /// default queue limit of 100,000, add --max-queue-size 0.
    #[arg(long, value_name = "N", default_value_t = 0)]
    backlog: usize,
    /// A steady-state run instead: producers enqueue --rate tasks a second
    /// on a fixed schedule while one daemon runs them, for this long
    /// (e.g. 60s, 30m); reports completions per --interval, pick-up
    /// p50/p99 and the sizes of ATP's tables and indexes (PostgreSQL;
    /// SQLite: its files) at the start and at each interval's end.
    #[arg(long, value_name = "DURATION", value_parser = parse_duration, conflicts_with = "backlog")]
    duration: Option<Duration>,
    /// Steady state: tasks offered per second, all producers together.
    #[arg(long, default_value_t = 1_000.0, requires = "duration")]
    rate: f64,
    /// Steady state: how often to count completions and sample sizes.
    #[arg(long, value_name = "DURATION", value_parser = parse_duration, default_value = "10s", requires = "duration")]
    interval: Duration,
    /// Steady state: how long finished tasks are kept (the benchmark
    /// type's retention; the daemon's clean-up deletes them after).
    #[arg(long, value_name = "DURATION", value_parser = parse_duration, default_value = "5m", requires = "duration")]
    retention: Duration,
}

/// Producers of a steady run when --producers is not given: enough to
/// offer the default rate where one enqueue takes a few milliseconds.
const STEADY_PRODUCERS: usize = 4;

impl BenchArgs {
    /// Refuses what cannot be measured, before anything is enqueued.
    fn validate(&self, store: &AnyStore) -> anyhow::Result<()> {
        anyhow::ensure!(
            self.tasks > 0 && self.samples > 0,
            "--tasks and --samples must be at least 1"
        );
        anyhow::ensure!(self.concurrency > 0, "--concurrency must be at least 1");
        anyhow::ensure!(self.producers != Some(0), "--producers must be at least 1");
        if self.duration.is_some() {
            anyhow::ensure!(
                self.rate.is_finite() && self.rate > 0.0,
                "--rate must be a positive number of tasks per second"
            );
            anyhow::ensure!(!self.interval.is_zero(), "--interval must be positive");
        }
        anyhow::ensure!(
            self.duration.is_none_or(|d| !d.is_zero()),
            "--duration must be positive"
        );
        let limit = store.options().max_queue_size;
        let queued = (self.backlog + self.tasks) as u64;
        anyhow::ensure!(
            limit == 0 || queued <= limit,
            "--backlog {} and --tasks {} queue {queued} tasks, beyond the queue limit of {limit}: \
             add --max-queue-size 0",
            self.backlog,
            self.tasks
        );
        Ok(())
    }
}

/// A progress bar on stderr, when it is a terminal.
fn progress(label: &'static str, total: usize) -> impl FnMut(usize) {
    let live = std::io::stderr().is_terminal();
    let mut last = usize::MAX;
    move |done| {
        let percent = done * 100 / total.max(1);
        if live && percent != last {
            last = percent;
            let bar = "#".repeat(percent / 4);
            eprint!("\r\x1b[2K{label:<10} [{bar:<25}] {done}/{total}");
            if done >= total {
                eprintln!();
            }
        }
    }
}

/// Runs the benchmark `args` asks for on `store`, opened at `url`.
pub async fn run(store: &AnyStore, url: &str, json: bool, args: BenchArgs) -> anyhow::Result<()> {
    args.validate(store)?;
    match args.duration {
        Some(duration) => steady(store, url, json, &args, duration).await,
        None => standard(store, json, &args).await,
    }
}

/// The default mode: single enqueues (with --producers), batch enqueue and
/// drain, pick-up latency.
async fn standard(store: &AnyStore, json: bool, args: &BenchArgs) -> anyhow::Result<()> {
    let single = match args.producers {
        Some(producers) => Some(
            enqueue_single(
                store,
                args.tasks,
                producers,
                progress("enqueue", args.tasks),
            )
            .await?,
        ),
        None => None,
    };
    let params = DrainParams {
        tasks: args.tasks,
        backlog: args.backlog,
        concurrency: args.concurrency,
    };
    let drained = drain(store, params, progress("drain", args.tasks)).await?;
    let config = DaemonConfig {
        concurrency: 1,
        poll_interval: Duration::from_millis(200),
        ..DaemonConfig::default()
    };
    let pickup = pickup_latency(
        store,
        args.samples,
        config,
        progress("pick-up", args.samples),
    )
    .await?;
    let figures = report::Standard {
        engine: store.engine(),
        concurrency: args.concurrency,
        single,
        drained,
        pickup,
    };
    figures.print(json);
    Ok(())
}

/// `--duration`: the steady state.
async fn steady(
    store: &AnyStore,
    url: &str,
    json: bool,
    args: &BenchArgs,
    duration: Duration,
) -> anyhow::Result<()> {
    let params = SteadyParams {
        duration,
        interval: args.interval,
        rate: args.rate,
        producers: args.producers.unwrap_or(STEADY_PRODUCERS),
        concurrency: args.concurrency,
        retention: args.retention,
    };
    let mut sizes = sizes::Sizes::open(store, url).await?;
    let secs = duration.as_secs() as usize;
    let run = steady_state(store, params, &mut sizes, progress("steady", secs)).await?;
    report::print_steady(store.engine(), &run, json);
    Ok(())
}
