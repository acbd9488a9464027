//! `atp bench`: enqueue rate, end-to-end no-op rate and pick-up latency
//! against the chosen database, with the code of the daemon's benchmark
//! (`atp_daemon::bench`). It works under task types of its own
//! (`atp-bench-…`) and deletes them afterwards.

use std::io::IsTerminal as _;
use std::time::Duration;

use atp_daemon::DaemonConfig;
use atp_daemon::bench::{pickup_latency, throughput};
use atp_store::AnyStore;
use clap::Args;
use serde_json::json;

/// `atp bench …`
#[derive(Debug, Args)]
pub struct BenchArgs {
    /// No-op tasks to queue and drain.
    #[arg(long, default_value_t = 20_000)]
    tasks: usize,
    /// The daemon's concurrency for the drain.
    #[arg(long, default_value_t = 8)]
    concurrency: usize,
    /// Pick-up latency samples.
    #[arg(long, default_value_t = 200)]
    samples: usize,
}

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

pub async fn run(store: &AnyStore, json: bool, args: BenchArgs) -> anyhow::Result<()> {
    anyhow::ensure!(
        args.tasks > 0 && args.samples > 0,
        "--tasks and --samples must be at least 1"
    );
    anyhow::ensure!(args.concurrency > 0, "--concurrency must be at least 1");
    let t = throughput(
        store,
        args.tasks,
        args.concurrency,
        progress("drain", args.tasks),
    )
    .await?;
    let config = DaemonConfig {
        concurrency: 1,
        poll_interval: Duration::from_millis(200),
        ..DaemonConfig::default()
    };
    let l = pickup_latency(
        store,
        args.samples,
        config,
        progress("pick-up", args.samples),
    )
    .await?;
    if json {
        crate::output::print_json(&json!({
            "engine": atp_core::Store::engine(store),
            "tasks": t.tasks,
            "concurrency": args.concurrency,
            "enqueue_per_sec": t.enqueue_per_sec,
            "end_to_end_per_sec": t.run_per_sec,
            "pickup_ms": {"samples": l.samples, "p50": l.p50_ms, "p99": l.p99_ms, "max": l.max_ms},
        }));
    } else {
        say!(
            "enqueue (batches of 1,000)   {:>9.0} tasks/s",
            t.enqueue_per_sec
        );
        say!(
            "end-to-end, concurrency {:<3} {:>9.0} tasks/s ({} no-op tasks)",
            args.concurrency,
            t.run_per_sec,
            t.tasks
        );
        say!(
            "pick-up latency              p50 {:.2} ms, p99 {:.2} ms, max {:.2} ms ({} samples)",
            l.p50_ms,
            l.p99_ms,
            l.max_ms,
            l.samples
        );
    }
    Ok(())
}
