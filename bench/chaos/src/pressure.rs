//! The pressure suite (PostgreSQL): old snapshots that pin dead rows, and
//! more work than the daemons can drain.
//!
//! Each scenario runs the usual daemons and producer, a baseline, the
//! pressure, a recovery; the drain and the checks are the suite's. While
//! it runs, a [`Sampler`] reads the dead tuples and the sizes of ATP's
//! tables and indexes every few seconds (`sizes.csv` in the run's folder;
//! a summary in the table), because what the pressure does to the hot
//! path's layout is the point: the independent benchmark saw `atp_task`
//! gather 280,000 dead tuples and its partial queue index triple while
//! REPEATABLE READ readers were active, and throughput fall to 69 %.

use std::fmt::Write as _;
use std::time::Duration;

use anyhow::Context as _;
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::journal::mono_us;
use crate::run::{Run, TYPE};
use crate::scenarios::{baseline, recovery};

/// Relations sampled: ATP's task tables and their indexes.
const SIZES: &str = "SELECT c.relname::text, pg_relation_size(c.oid), s.n_dead_tup, s.n_live_tup \
     FROM pg_class c LEFT JOIN pg_stat_user_tables s ON s.relid = c.oid \
     WHERE c.relname LIKE 'atp\\_task%' AND c.relkind IN ('r', 'i') \
     AND c.relnamespace = 'public'::regnamespace ORDER BY c.relname";

/// The oldest snapshot any session holds, in transactions.
const XMIN_AGE: &str = "SELECT coalesce(max(age(backend_xmin)), 0)::int8 FROM pg_stat_activity WHERE datname = current_database()";

/// One reading of the relations.
#[derive(Debug, Clone)]
struct Sample {
    /// Seconds since the run's start.
    at: f64,
    /// (relation, bytes, dead tuples, live tuples); tuples only for tables.
    relations: Vec<(String, i64, Option<i64>, Option<i64>)>,
    /// Age of the oldest snapshot (transactions).
    xmin_age: i64,
}

impl Sample {
    fn bytes(&self, name: &str) -> i64 {
        self.relations
            .iter()
            .find(|r| r.0 == name)
            .map_or(0, |r| r.1)
    }

    fn dead(&self, name: &str) -> i64 {
        self.relations
            .iter()
            .find(|r| r.0 == name)
            .and_then(|r| r.2)
            .unwrap_or(0)
    }

    /// Every index of `atp_task` together.
    fn task_indexes(&self) -> i64 {
        self.relations
            .iter()
            .filter(|r| r.0.starts_with("atp_task_") && r.2.is_none())
            .filter(|r| !r.0.starts_with("atp_task_log") && !r.0.starts_with("atp_task_type"))
            .filter(|r| !r.0.starts_with("atp_task_response"))
            .map(|r| r.1)
            .sum()
    }
}

/// Reads the sizes every `every` on its own connection until stopped.
pub struct Sampler {
    stop: watch::Sender<bool>,
    handle: JoinHandle<Vec<Sample>>,
}

impl Sampler {
    /// Starts sampling `url`'s relations; `t0` is the run's start
    /// (monotonic µs).
    pub async fn start(url: &str, t0: i64, every: Duration) -> anyhow::Result<Sampler> {
        let client = connect(url, "chaos-sampler").await?;
        let (stop, mut stopped) = watch::channel(false);
        let handle = tokio::spawn(async move {
            let mut samples = Vec::new();
            let mut tick = tokio::time::interval(every);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
            loop {
                tokio::select! {
                    _ = tick.tick() => {}
                    _ = stopped.changed() => break,
                }
                if let Ok(s) = sample(&client, t0).await {
                    samples.push(s);
                }
            }
            // One last reading: where the run left the relations.
            if let Ok(s) = sample(&client, t0).await {
                samples.push(s);
            }
            samples
        });
        Ok(Sampler { stop, handle })
    }

    /// Stops it; writes `sizes.csv` to `run`'s folder and adds the summary
    /// figures: dead tuples, table and index sizes before the pressure
    /// (`from`, monotonic µs), at their peak, and at the end.
    pub async fn finish(self, run: &mut Run, from: i64) -> anyhow::Result<()> {
        let _ = self.stop.send(true);
        let samples = self.handle.await?;
        anyhow::ensure!(!samples.is_empty(), "the sampler read nothing");
        write_csv(&run.dir.join("sizes.csv"), &samples)?;
        let from_s = (from - run.t0) as f64 / 1e6;
        let before = samples
            .iter()
            .rfind(|s| s.at <= from_s)
            .unwrap_or(&samples[0]);
        let last = samples.last().unwrap_or(before);
        let figure = |name: &str, f: &dyn Fn(&Sample) -> i64, unit: Unit| {
            let peak = samples.iter().map(f).max().unwrap_or(0);
            (
                format!("{name}: before / peak / end"),
                format!(
                    "{} / {} / {}",
                    unit.show(f(before)),
                    unit.show(peak),
                    unit.show(f(last))
                ),
            )
        };
        run.figures.push(figure(
            "atp_task dead tuples",
            &|s| s.dead("atp_task"),
            Unit::Count,
        ));
        run.figures.push(figure(
            "atp_task_log dead tuples",
            &|s| s.dead("atp_task_log"),
            Unit::Count,
        ));
        run.figures.push(figure(
            "atp_task size",
            &|s| s.bytes("atp_task"),
            Unit::Bytes,
        ));
        run.figures.push(figure(
            "atp_task_queue index size",
            &|s| s.bytes("atp_task_queue"),
            Unit::Bytes,
        ));
        run.figures.push(figure(
            "atp_task's indexes, all",
            &Sample::task_indexes,
            Unit::Bytes,
        ));
        run.figures.push(figure(
            "oldest snapshot age (xacts)",
            &|s| s.xmin_age,
            Unit::Count,
        ));
        // A few readings over time, for the report.
        let step = (samples.len() / 8).max(1);
        let mut series = String::new();
        for s in samples.iter().step_by(step).chain(std::iter::once(last)) {
            let _ = write!(
                series,
                "{:.0}s: {} dead, {}, queue {}; ",
                s.at,
                s.dead("atp_task"),
                Unit::Bytes.show(s.bytes("atp_task")),
                Unit::Bytes.show(s.bytes("atp_task_queue"))
            );
        }
        run.figures
            .push(("atp_task over time".into(), series.trim_end().to_owned()));
        Ok(())
    }
}

#[derive(Clone, Copy)]
enum Unit {
    Count,
    Bytes,
}

impl Unit {
    fn show(self, v: i64) -> String {
        match self {
            Unit::Count => v.to_string(),
            Unit::Bytes if v >= 10 << 20 => format!("{:.0} MiB", v as f64 / 1_048_576.0),
            Unit::Bytes => format!("{:.1} MiB", v as f64 / 1_048_576.0),
        }
    }
}

async fn sample(client: &tokio_postgres::Client, t0: i64) -> anyhow::Result<Sample> {
    let relations = client
        .query(SIZES, &[])
        .await?
        .iter()
        .map(|r| (r.get(0), r.get(1), r.get(2), r.get(3)))
        .collect();
    let xmin_age = client.query_one(XMIN_AGE, &[]).await?.get(0);
    Ok(Sample {
        at: (mono_us() - t0) as f64 / 1e6,
        relations,
        xmin_age,
    })
}

fn write_csv(path: &std::path::Path, samples: &[Sample]) -> anyhow::Result<()> {
    let mut out = String::from("seconds,relation,bytes,dead_tuples,live_tuples,oldest_xmin_age\n");
    for s in samples {
        for (name, bytes, dead, live) in &s.relations {
            let opt = |v: &Option<i64>| v.map(|v| v.to_string()).unwrap_or_default();
            let _ = writeln!(
                out,
                "{:.1},{name},{bytes},{},{},{}",
                s.at,
                opt(dead),
                opt(live),
                s.xmin_age
            );
        }
    }
    std::fs::write(path, out).with_context(|| format!("writing {}", path.display()))
}

async fn connect(url: &str, name: &str) -> anyhow::Result<tokio_postgres::Client> {
    let mut config: tokio_postgres::Config = url.parse().context("PostgreSQL URL")?;
    config.application_name(name);
    config.connect_timeout(Duration::from_secs(5));
    let (client, conn) = config.connect(tokio_postgres::NoTls).await?;
    tokio::spawn(async move {
        let _ = conn.await;
    });
    Ok(client)
}

fn sample_every(run: &Run) -> Duration {
    run.settings
        .pick(Duration::from_secs(5), Duration::from_secs(1))
}

/// An idle-in-transaction session holds the xmin horizon back (five
/// minutes; 15 s with `--short`): no dead row version made meanwhile can
/// be vacuumed.
pub async fn idle_transaction(run: &mut Run) -> anyhow::Result<()> {
    run.start_workers(run.settings.workers)?;
    run.start_main_producer()?;
    let sampler = Sampler::start(&run.url, run.t0, sample_every(run)).await?;
    tokio::time::sleep(baseline(run)).await;
    let idle = connect(&run.url, "chaos-idle").await?;
    // A transaction id of its own: the horizon stays behind it for as
    // long as the transaction is open, whatever its isolation level.
    idle.batch_execute("BEGIN; SELECT txid_current()").await?;
    let start = mono_us();
    tokio::time::sleep(
        run.settings
            .pick(Duration::from_secs(300), Duration::from_secs(15)),
    )
    .await;
    idle.batch_execute("COMMIT").await?;
    drop(idle);
    run.pressure_fault("idle transaction", start, mono_us(), None);
    tokio::time::sleep(recovery(run)).await;
    sampler.finish(run, start).await
}

/// REPEATABLE READ readers scan ATP's tables: each holds its snapshot for
/// a minute (the whole fault with `--short`) while it counts tasks by
/// status and reads their logs, then begins again; two of them, staggered,
/// so an old snapshot is always open (three minutes; 15 s with
/// `--short`).
pub async fn repeatable_read(run: &mut Run) -> anyhow::Result<()> {
    run.start_workers(run.settings.workers)?;
    run.start_main_producer()?;
    let sampler = Sampler::start(&run.url, run.t0, sample_every(run)).await?;
    tokio::time::sleep(baseline(run)).await;
    let length = run
        .settings
        .pick(Duration::from_secs(180), Duration::from_secs(15));
    let hold = run.settings.pick(Duration::from_secs(60), length);
    let (stop, stopped) = watch::channel(false);
    let start = mono_us();
    let mut readers = Vec::new();
    for i in 0..2u32 {
        let client = connect(&run.url, "chaos-reader").await?;
        let stopped = stopped.clone();
        // The second begins half a hold later: while one renews its
        // snapshot, the other's is old.
        let offset = hold.mul_f64(f64::from(i) / 2.0);
        readers.push(tokio::spawn(reader(client, hold, offset, stopped)));
    }
    tokio::time::sleep(length).await;
    let _ = stop.send(true);
    let mut scans = 0u64;
    for r in readers {
        scans += r.await??;
    }
    run.pressure_fault("repeatable read readers", start, mono_us(), None);
    run.figures
        .push(("reader scans (2 readers)".into(), scans.to_string()));
    tokio::time::sleep(recovery(run)).await;
    sampler.finish(run, start).await
}

/// One REPEATABLE READ reader: transactions of `hold`, a scan of the
/// tasks by status and of the newest log records every 200 ms; returns
/// the scans it made.
async fn reader(
    client: tokio_postgres::Client,
    hold: Duration,
    offset: Duration,
    mut stopped: watch::Receiver<bool>,
) -> anyhow::Result<u64> {
    let mut scans = 0;
    if stopped_within(offset, &mut stopped).await {
        return Ok(0);
    }
    'outer: loop {
        client
            .batch_execute("BEGIN ISOLATION LEVEL REPEATABLE READ")
            .await?;
        let began = tokio::time::Instant::now();
        while began.elapsed() < hold {
            client
                .query("SELECT status, count(*) FROM atp_task GROUP BY status", &[])
                .await?;
            client
                .query(
                    "SELECT count(*), max(id) FROM atp_task_log WHERE id > (SELECT max(id) - 10000 FROM atp_task_log)",
                    &[],
                )
                .await?;
            scans += 1;
            if stopped_within(Duration::from_millis(200), &mut stopped).await {
                client.batch_execute("COMMIT").await?;
                break 'outer;
            }
        }
        client.batch_execute("COMMIT").await?;
    }
    Ok(scans)
}

/// Whether the stop came within `d` (else `d` passed).
async fn stopped_within(d: Duration, stopped: &mut watch::Receiver<bool>) -> bool {
    if *stopped.borrow() {
        return true;
    }
    tokio::select! {
        _ = tokio::time::sleep(d) => false,
        _ = stopped.changed() => true,
    }
}

/// More work than the daemons can drain: a probe measures their capacity
/// (a burst far above it, then the drain rate while the burst's backlog
/// lasts); then producers offer 1.5× that for two minutes (20 s with
/// `--short`). Completions must stay near the capacity while the backlog
/// grows (the claim must not slow down with it), and the backlog must
/// drain afterwards.
pub async fn overload(run: &mut Run) -> anyhow::Result<()> {
    run.start_workers(run.settings.workers)?;
    run.start_main_producer()?;
    let sampler = Sampler::start(&run.url, run.t0, sample_every(run)).await?;
    tokio::time::sleep(baseline(run)).await;

    // The probe: a backlog enqueued in a burst, then the drain rate
    // while it lasts (every slot busy, no producer in the way but the
    // main one).
    let burst: u64 = if run.settings.short { 12_000 } else { 100_000 };
    let probe_start = mono_us();
    run.start_producer(1, TYPE, 50_000, 500, Some(burst))?;
    run.wait_producer(1).await?;
    let measure_from = mono_us() + 1_000_000;
    tokio::time::sleep(
        run.settings
            .pick(Duration::from_secs(10), Duration::from_secs(3)),
    )
    .await;
    let probe_end = mono_us();
    let left = run.db.open_tasks().await?;
    let windows = run.windows_now()?;
    let from = usize::try_from((measure_from - run.t0) / 1_000_000)?;
    let to = usize::try_from((probe_end - run.t0) / 1_000_000)?.min(windows.len());
    let busy = windows.get(from..to).unwrap_or(&[]);
    anyhow::ensure!(!busy.is_empty(), "the capacity probe saw no completions");
    let capacity = busy.iter().map(|w| w.completions as f64).sum::<f64>() / busy.len() as f64;
    run.fault("capacity probe", probe_start, probe_end);
    run.figures.push((
        "capacity (drain rate of a backlog)".into(),
        format!(
            "{capacity:.0} /s ({burst} enqueued at once; {left} still open at the end{})",
            if left < u64::from(run.settings.rate) {
                ": ran out, a lower bound"
            } else {
                ""
            }
        ),
    ));
    wait_for_backlog_below(run, u64::from(run.settings.rate), Duration::from_secs(300)).await?;

    // 1.5× the capacity, the main producer's rate included.
    let extra = (1.5 * capacity - f64::from(run.settings.rate)).max(1.0) as u32;
    let length = run
        .settings
        .pick(Duration::from_secs(120), Duration::from_secs(20));
    let start = mono_us();
    run.start_producer(1, TYPE, extra, run.settings.batch.max(10), None)?;
    tokio::time::sleep(length).await;
    run.stop_producer(1).await;
    let end = mono_us();
    run.pressure_fault("overload at 1.5× capacity", start, end, Some(capacity));
    let backlog = run.db.open_tasks().await?;
    let drained =
        wait_for_backlog_below(run, u64::from(run.settings.rate), Duration::from_secs(600)).await?;
    run.figures.push((
        "backlog at the overload's end / drained in".into(),
        format!("{backlog} / {:.1} s", drained.as_secs_f64()),
    ));
    tokio::time::sleep(recovery(run)).await;
    sampler.finish(run, start).await
}

/// Waits until fewer than `n` tasks are open (the main producer keeps a
/// few in flight), for at most `deadline`; how long it took.
async fn wait_for_backlog_below(
    run: &mut Run,
    n: u64,
    deadline: Duration,
) -> anyhow::Result<Duration> {
    let began = tokio::time::Instant::now();
    loop {
        let open = run.db.open_tasks().await?;
        if open < n.max(1) {
            return Ok(began.elapsed());
        }
        anyhow::ensure!(
            began.elapsed() < deadline,
            "the backlog ({open} tasks) did not drain within {} s",
            deadline.as_secs()
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}
