//! `atp bench`'s options for checking one's own setup (`--producers`,
//! `--backlog`, `--duration`), run as the real binary on a fresh SQLite
//! file with tiny counts. They check that every figure is there and sane,
//! never how fast anything is.

use std::process::{Command, Output, Stdio};

use serde_json::Value;

const ATP: &str = env!("CARGO_BIN_EXE_atp");

/// A fresh SQLite file.
struct Db {
    dir: tempfile::TempDir,
}

impl Db {
    fn new() -> Db {
        Db {
            dir: tempfile::tempdir().unwrap(),
        }
    }

    fn run(&self, args: &[&str]) -> Output {
        let url = format!(
            "sqlite://{}",
            self.dir.path().join("bench.sqlite").display()
        );
        Command::new(ATP)
            .arg("--database")
            .arg(url)
            .args(args)
            .stdin(Stdio::null())
            .output()
            .expect("running atp")
    }

    /// Runs a command that must succeed and returns its JSON output.
    fn json(&self, args: &[&str]) -> Value {
        let mut all = vec!["--json"];
        all.extend_from_slice(args);
        let out = self.run(&all);
        assert!(
            out.status.success(),
            "{args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        serde_json::from_slice(&out.stdout).unwrap_or_else(|e| panic!("{args:?}: {e}"))
    }

    /// Nothing of the benchmark's is left: no type, no task.
    fn assert_clean(&self) {
        let types = self.json(&["type", "list"]);
        assert_eq!(types, Value::Array(vec![]), "bench types removed");
        let tasks = self.json(&["tasks", "--limit", "1000"]);
        assert_eq!(tasks, Value::Array(vec![]), "bench tasks removed");
    }
}

fn number(v: &Value, path: &str) -> f64 {
    v.pointer(path)
        .and_then(Value::as_f64)
        .unwrap_or_else(|| panic!("{path} in {v}"))
}

/// A latency object: samples taken and p50 ≤ p99 ≤ max, none negative.
fn assert_latency(v: &Value, path: &str, samples: f64) {
    let (p50, p99, max) = (
        number(v, &format!("{path}/p50")),
        number(v, &format!("{path}/p99")),
        number(v, &format!("{path}/max")),
    );
    assert!(0.0 <= p50 && p50 <= p99 && p99 <= max, "{path}: {v}");
    assert_eq!(
        number(v, &format!("{path}/samples")),
        samples,
        "{path}: {v}"
    );
}

/// `--producers` adds the single-enqueue figures and `--backlog` queues
/// tasks behind the timed ones; the default figures stay, and everything
/// the run made is gone afterwards.
#[test]
fn producers_and_backlog_add_their_figures_to_the_default_ones() {
    let db = Db::new();
    let report = db.json(&[
        "bench",
        "--tasks",
        "120",
        "--samples",
        "5",
        "--producers",
        "3",
        "--backlog",
        "50",
    ]);
    assert_eq!(report["engine"], "sqlite");
    assert_eq!(report["tasks"], 120);
    assert_eq!(report["backlog"], 50);
    assert_eq!(report["queued_at_start"], 170, "the backlog was queued");
    assert_eq!(report["concurrency"], 8);
    assert_eq!(report["enqueue_single"]["producers"], 3);
    assert_eq!(report["enqueue_single"]["tasks"], 120);
    assert!(number(&report, "/enqueue_single/per_sec") > 0.0, "{report}");
    assert_latency(&report, "/enqueue_single/call_ms", 120.0);
    assert!(number(&report, "/enqueue_per_sec") > 0.0, "{report}");
    assert!(number(&report, "/end_to_end_per_sec") > 0.0, "{report}");
    assert_latency(&report, "/pickup_ms", 5.0);
    db.assert_clean();

    // Without them, no single-enqueue figures and no backlog.
    let report = db.json(&["bench", "--tasks", "20", "--samples", "2"]);
    assert_eq!(report["enqueue_single"], Value::Null);
    assert_eq!(report["backlog"], 0);
    assert_eq!(report["queued_at_start"], 20);
    let out = db.run(&["bench", "--tasks", "20", "--samples", "2"]);
    let text = String::from_utf8_lossy(&out.stdout);
    for line in [
        "enqueue (batches of 1,000)",
        "end-to-end, concurrency 8",
        "pick-up latency",
    ] {
        assert!(text.contains(line), "{line:?} in {text}");
    }
}

/// `--duration` runs producers at a fixed rate beside one daemon and
/// reports each interval, the rates, pick-up latency and the database's
/// size at the start and the end.
#[test]
fn a_steady_run_reports_each_interval_and_the_sizes() {
    let db = Db::new();
    let report = db.json(&[
        "bench",
        "--duration",
        "2s",
        "--interval",
        "1s",
        "--rate",
        "40",
        "--producers",
        "2",
        "--retention",
        "1s",
    ]);
    assert_eq!(report["mode"], "steady");
    assert_eq!(number(&report, "/duration_secs"), 2.0);
    assert_eq!(number(&report, "/rate"), 40.0);
    assert_eq!(report["producers"], 2);
    assert_eq!(number(&report, "/retention_secs"), 1.0);
    let intervals = report["intervals"].as_array().unwrap();
    assert_eq!(intervals.len(), 2, "{report}");
    let (mut enqueued, mut completed) = (0.0, 0.0);
    for (i, interval) in intervals.iter().enumerate() {
        assert_eq!(number(interval, "/end_secs"), (i + 1) as f64);
        assert_eq!(number(interval, "/secs"), 1.0);
        assert!(number(interval, "/completed_per_sec") >= 0.0);
        assert!(interval["sizes"].is_array(), "{interval}");
        enqueued += number(interval, "/enqueued");
        completed += number(interval, "/completed");
    }
    // At most the offered rate's worth, and the sum of the intervals.
    assert!(0.0 < enqueued && enqueued <= 80.0, "{report}");
    assert_eq!(number(&report, "/enqueued"), enqueued);
    assert_eq!(number(&report, "/completed"), completed);
    assert!(completed <= enqueued, "{report}");
    assert_eq!(
        number(&report, "/left_queued"),
        enqueued - completed,
        "{report}"
    );
    assert_latency(&report, "/enqueue_call_ms", enqueued);
    let picked = number(&report, "/pickup_ms/samples");
    assert!(0.0 < picked && picked <= enqueued, "{report}");
    assert_latency(&report, "/pickup_ms", picked);
    for at in ["start", "end"] {
        let files = report["sizes"][at].as_array().unwrap();
        assert_eq!(files.len(), 2, "database and WAL: {report}");
        assert!(files[0]["name"].as_str().unwrap().ends_with("bench.sqlite"));
        assert!(number(&files[0], "/bytes") > 0.0, "{report}");
    }
    db.assert_clean();
}

/// Options that cannot be measured are refused before anything is
/// enqueued: a backlog beyond the queue limit, steady-state options
/// without `--duration`.
#[test]
fn impossible_runs_are_refused_up_front() {
    let db = Db::new();
    let out = db.run(&[
        "--max-queue-size",
        "100",
        "bench",
        "--tasks",
        "60",
        "--backlog",
        "60",
    ]);
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("--max-queue-size 0"), "{err}");
    let out = db.run(&["bench", "--rate", "10"]);
    assert_eq!(out.status.code(), Some(2), "a usage error");
    let out = db.run(&["bench", "--duration", "1s", "--backlog", "10"]);
    assert_eq!(out.status.code(), Some(2), "a usage error");
    db.assert_clean();
}
