//! Prometheus metrics for `/metrics`.
//!
//! Two kinds: counters and the pick-up histogram this process saw (tasks
//! enqueued through its API, attempts its daemon ran), and gauges read from
//! the database at scrape time (tasks by status, queue depth, live daemons),
//! which are the same whichever server of a cluster is scraped.

use std::sync::Mutex;

use atp_core::{AttemptSettled, Observer, StartedTask, Status, Store, TypeName};
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

/// The media type of the text exposition format.
pub const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct TypeLabel {
    r#type: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct StatusLabel {
    status: String,
}

/// The metrics of one server process.
pub struct Metrics {
    registry: Registry,
    enqueued: Family<TypeLabel, Counter>,
    finished: Family<TypeLabel, Counter>,
    failed: Family<TypeLabel, Counter>,
    requeued: Family<TypeLabel, Counter>,
    retried: Family<TypeLabel, Counter>,
    cancelled: Family<TypeLabel, Counter>,
    attempts_cancelled: Family<TypeLabel, Counter>,
    pickup: Histogram,
    tasks: Family<StatusLabel, Gauge>,
    queue_depth: Gauge,
    daemons: Gauge,
    /// Scrapes set the gauges then encode; one at a time.
    scrape: Mutex<()>,
}

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Metrics")
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    /// Registers every metric, all at zero.
    pub fn new() -> Self {
        let mut registry = Registry::with_prefix("atp");
        let enqueued = Family::<TypeLabel, Counter>::default();
        let finished = Family::<TypeLabel, Counter>::default();
        let failed = Family::<TypeLabel, Counter>::default();
        let requeued = Family::<TypeLabel, Counter>::default();
        let retried = Family::<TypeLabel, Counter>::default();
        let cancelled = Family::<TypeLabel, Counter>::default();
        let attempts_cancelled = Family::<TypeLabel, Counter>::default();
        // 0.5 ms … ~16 s: in-process pick-ups take well under a millisecond,
        // a busy queue's wait grows into seconds.
        let pickup = Histogram::new(exponential_buckets(0.0005, 2.0, 16));
        let tasks = Family::<StatusLabel, Gauge>::default();
        let queue_depth = Gauge::default();
        let daemons = Gauge::default();
        registry.register(
            "tasks_enqueued",
            "Tasks enqueued through this server's API",
            enqueued.clone(),
        );
        registry.register(
            "tasks_finished",
            "Attempts this process's daemon ended FINISHED",
            finished.clone(),
        );
        registry.register(
            "tasks_failed",
            "Attempts this process's daemon ended FAILED",
            failed.clone(),
        );
        registry.register(
            "tasks_requeued",
            "Attempts this process's daemon handed back to the queue",
            requeued.clone(),
        );
        // Two counts, since a cancel and the attempt it stops may be in
        // different processes: the operator's act where it was asked, the
        // stop where the attempt ran.
        registry.register(
            "tasks_cancelled",
            "Tasks cancelled through this server's API (queued or held)",
            cancelled.clone(),
        );
        registry.register(
            "attempts_cancelled",
            "Attempts this process's daemon stopped because their task was cancelled",
            attempts_cancelled.clone(),
        );
        registry.register(
            "tasks_retried",
            "Failed attempts this process's daemon put back in the queue for a retry (after the type's back-off or the handler's delay)",
            retried.clone(),
        );
        registry.register(
            "pickup_latency_seconds",
            "From when a task could run (its enqueue, or its due time after a delay or a retry's back-off) to the start of an attempt, for attempts this process's daemon started",
            pickup.clone(),
        );
        registry.register("tasks", "Tasks in the database by status", tasks.clone());
        registry.register(
            "queue_depth",
            "Tasks waiting in the queue (ACCEPTED)",
            queue_depth.clone(),
        );
        registry.register(
            "daemons",
            "Live daemons recorded in the database",
            daemons.clone(),
        );
        Metrics {
            registry,
            enqueued,
            finished,
            failed,
            requeued,
            retried,
            cancelled,
            attempts_cancelled,
            pickup,
            tasks,
            queue_depth,
            daemons,
            scrape: Mutex::new(()),
        }
    }

    /// Counts `n` tasks of `task_type` enqueued.
    pub fn enqueued(&self, task_type: &TypeName, n: u64) {
        self.enqueued
            .get_or_create(&TypeLabel {
                r#type: task_type.as_str().to_owned(),
            })
            .inc_by(n);
    }

    /// Counts a task of `task_type` cancelled through the API.
    pub fn cancelled(&self, task_type: &TypeName) {
        self.cancelled
            .get_or_create(&TypeLabel {
                r#type: task_type.as_str().to_owned(),
            })
            .inc();
    }

    /// Reads the gauges from `store` and renders everything in the text
    /// format.
    pub async fn render<S: Store>(&self, store: &S) -> atp_core::Result<String> {
        let counts = store.task_counts().await?;
        let queued = store.queue_size().await?;
        let daemons = store.daemon_list().await?.len();
        let _one_scrape = self.scrape.lock().unwrap_or_else(|e| e.into_inner());
        for status in Status::ALL.iter().filter(|s| **s != Status::Undefined) {
            let n = counts
                .by_status
                .iter()
                .find(|(s, _)| s == status)
                .map_or(0, |(_, n)| *n);
            self.tasks
                .get_or_create(&StatusLabel {
                    status: status.name().to_owned(),
                })
                .set(i64::try_from(n).unwrap_or(i64::MAX));
        }
        self.queue_depth
            .set(i64::try_from(queued).unwrap_or(i64::MAX));
        self.daemons.set(i64::try_from(daemons).unwrap_or(i64::MAX));
        let mut text = String::new();
        prometheus_client::encoding::text::encode(&mut text, &self.registry)
            .map_err(|e| atp_core::Error::InvalidArgument(format!("encoding metrics: {e}")))?;
        Ok(text)
    }
}

/// The daemon's observer (a core trait, so this crate needs no daemon).
impl Observer for Metrics {
    fn attempt_started(&self, task: &StartedTask) {
        let waited = time::OffsetDateTime::now_utc() - task.ready_at();
        self.pickup.observe(waited.as_seconds_f64().max(0.0));
    }

    fn attempt_settled(&self, end: &AttemptSettled<'_>) {
        let label = TypeLabel {
            r#type: end.task_type.as_str().to_owned(),
        };
        match end.status {
            Status::Finished => self.finished.get_or_create(&label).inc(),
            Status::Failed => self.failed.get_or_create(&label).inc(),
            _ if end.retried => self.retried.get_or_create(&label).inc(),
            _ => self.requeued.get_or_create(&label).inc(),
        };
    }

    fn attempt_cancelled(&self, cancelled: &AttemptSettled<'_>) {
        self.attempts_cancelled
            .get_or_create(&TypeLabel {
                r#type: cancelled.task_type.as_str().to_owned(),
            })
            .inc();
    }
}

#[cfg(test)]
mod tests {
    use atp_core::{
        Attempt, AttemptSettled, DaemonId, Observer, Status, StoreOptions, TaskId, TypeName,
    };

    use super::Metrics;

    /// A retried failure counts as a retry, not as a hand-back or a
    /// failure; a hand-back still counts as re-queued.
    #[tokio::test]
    async fn retried_failures_have_their_own_counter() {
        let store = atp_store::sqlite::SqliteStore::open_memory(StoreOptions::default())
            .await
            .unwrap();
        let m = Metrics::new();
        let t = TypeName::new("Flaky").unwrap();
        let a = Attempt {
            task: TaskId(1),
            holder: DaemonId(1),
            lease: 1,
        };
        m.attempt_settled(&AttemptSettled::new(a, 1, &t, Status::Accepted).retried(true));
        m.attempt_settled(&AttemptSettled::new(a, 2, &t, Status::Accepted).retried(true));
        m.attempt_settled(&AttemptSettled::new(a, 3, &t, Status::Accepted));
        let text = m.render(&store).await.unwrap();
        for line in [
            "atp_tasks_retried_total{type=\"Flaky\"} 2",
            "atp_tasks_requeued_total{type=\"Flaky\"} 1",
        ] {
            assert!(text.lines().any(|l| l == line), "no {line:?} in\n{text}");
        }
        assert!(
            !text.contains("atp_tasks_failed_total{type=\"Flaky\"}"),
            "{text}"
        );
    }
}
