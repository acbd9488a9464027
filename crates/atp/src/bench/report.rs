//! How `atp bench` shows its figures: aligned lines for people, one JSON
//! object with every figure for `--json`. The default mode's lines and
//! keys are the ones BENCHMARKS.md quotes: new figures are added, never
//! renamed.

use atp_daemon::bench::{Latency, SingleEnqueue, Steady, Throughput};
use serde_json::{Value, json};

use super::sizes::Relation;

/// The default mode's figures.
pub struct Standard {
    pub engine: &'static str,
    pub concurrency: usize,
    /// With --producers.
    pub single: Option<SingleEnqueue>,
    pub drained: Throughput,
    pub pickup: Latency,
}

fn latency_json(l: &Latency) -> Value {
    json!({"samples": l.samples, "p50": l.p50_ms, "p99": l.p99_ms, "max": l.max_ms})
}

fn latency_text(l: &Latency) -> String {
    format!(
        "p50 {:.2} ms, p99 {:.2} ms, max {:.2} ms",
        l.p50_ms, l.p99_ms, l.max_ms
    )
}

impl Standard {
    pub fn print(&self, json: bool) {
        if json {
            crate::output::print_json(&self.json());
        } else {
            self.text();
        }
    }

    fn json(&self) -> Value {
        let t = &self.drained;
        json!({
            "engine": self.engine,
            "tasks": t.tasks,
            "backlog": t.backlog,
            "queued_at_start": t.queued_at_start,
            "concurrency": self.concurrency,
            "enqueue_per_sec": t.enqueue_per_sec,
            "enqueue_batch_size": 1_000,
            "enqueue_single": self.single.as_ref().map(|s| json!({
                "producers": s.producers,
                "tasks": s.tasks,
                "per_sec": s.per_sec,
                "call_ms": latency_json(&s.call),
            })),
            "end_to_end_per_sec": t.run_per_sec,
            "pickup_ms": latency_json(&self.pickup),
        })
    }

    fn text(&self) {
        if let Some(s) = &self.single {
            let plural = if s.producers == 1 { "" } else { "s" };
            let label = format!("enqueue single, {} producer{plural}", s.producers);
            say!(
                "{label:<28} {:>9.0} tasks/s (call {}; {} tasks)",
                s.per_sec,
                latency_text(&s.call),
                s.tasks
            );
        }
        let t = &self.drained;
        say!(
            "enqueue (batches of 1,000)   {:>9.0} tasks/s",
            t.enqueue_per_sec
        );
        let behind = if t.backlog > 0 {
            format!(" behind a backlog of {}", t.backlog)
        } else {
            String::new()
        };
        say!(
            "end-to-end, concurrency {:<3} {:>9.0} tasks/s ({} no-op tasks{behind})",
            self.concurrency,
            t.run_per_sec,
            t.tasks
        );
        say!(
            "pick-up latency              {} ({} samples)",
            latency_text(&self.pickup),
            self.pickup.samples
        );
    }
}

type Sample = Option<Vec<Relation>>;

/// Prints a steady-state run.
pub fn print_steady(engine: &'static str, run: &Steady<Sample>, json: bool) {
    if json {
        crate::output::print_json(&steady_json(engine, run));
    } else {
        steady_text(engine, run);
    }
}

fn steady_json(engine: &'static str, run: &Steady<Sample>) -> Value {
    let p = &run.params;
    let intervals: Vec<Value> = run
        .intervals
        .iter()
        .map(|i| {
            json!({
                "end_secs": i.end_secs,
                "secs": i.secs,
                "enqueued": i.enqueued,
                "completed": i.completed,
                "completed_per_sec": i.completed_per_sec(),
                "sizes": i.sample,
            })
        })
        .collect();
    json!({
        "engine": engine,
        "mode": "steady",
        "duration_secs": p.duration.as_secs_f64(),
        "interval_secs": p.interval.as_secs_f64(),
        "rate": p.rate,
        "producers": p.producers,
        "concurrency": p.concurrency,
        "retention_secs": p.retention.as_secs_f64(),
        "enqueued": run.enqueued,
        "completed": run.completed,
        "enqueued_per_sec": run.enqueued_per_sec(),
        "completed_per_sec": run.completed_per_sec(),
        "left_queued": run.left_queued(),
        "enqueue_call_ms": run.enqueue_call.as_ref().map(latency_json),
        "pickup_ms": run.pickup.as_ref().map(latency_json),
        "intervals": intervals,
        "sizes": {
            "start": run.start,
            "end": run.intervals.last().and_then(|i| i.sample.as_ref()),
        },
    })
}

fn steady_text(engine: &'static str, run: &Steady<Sample>) {
    let p = &run.params;
    say!(
        "steady state on {engine}: {:.0} tasks/s offered by {} producer{}, concurrency {}, for {:.0} s (retention {:.0} s)",
        p.rate,
        p.producers,
        if p.producers == 1 { "" } else { "s" },
        p.concurrency,
        p.duration.as_secs_f64(),
        p.retention.as_secs_f64()
    );
    say!("  until   enqueued/s  completed/s");
    for i in &run.intervals {
        say!(
            "  {:>5.0} s {:>10.0} {:>12.0}",
            i.end_secs,
            i.enqueued as f64 / i.secs,
            i.completed_per_sec()
        );
    }
    let call = run
        .enqueue_call
        .as_ref()
        .map_or_else(|| "no calls".into(), latency_text);
    say!(
        "enqueued      {:>9.0} tasks/s (call {call})",
        run.enqueued_per_sec()
    );
    say!(
        "completed     {:>9.0} tasks/s ({} of {} enqueued; {} left queued)",
        run.completed_per_sec(),
        run.completed,
        run.enqueued,
        run.left_queued()
    );
    match &run.pickup {
        Some(l) => say!("pick-up       {} ({} tasks)", latency_text(l), l.samples),
        None => say!("pick-up       no task ran"),
    }
    let end = run.intervals.last().and_then(|i| i.sample.as_ref());
    if let (Some(start), Some(end)) = (&run.start, end) {
        say!("sizes         start → end");
        for r in end {
            let before = start
                .iter()
                .find(|s| s.name == r.name)
                .map_or(0, |s| s.bytes);
            let indent = if r.kind == "index" { "    " } else { "  " };
            let dead = match r.dead_tuples {
                Some(d) => format!(" ({d} dead tuples at the end)"),
                None => String::new(),
            };
            say!(
                "{indent}{:<32} {:>10} → {:>10}{dead}",
                r.name,
                bytes(before),
                bytes(r.bytes)
            );
        }
    }
}

/// `12.3 MB`, in powers of 1,024 like PostgreSQL's `pg_size_pretty`.
fn bytes(n: i64) -> String {
    let mut value = n as f64;
    for unit in ["B", "kB", "MB", "GB"] {
        if value.abs() < 1024.0 || unit == "GB" {
            return if unit == "B" {
                format!("{n} B")
            } else {
                format!("{value:.1} {unit}")
            };
        }
        value /= 1024.0;
    }
    unreachable!("the loop returns at GB")
}
