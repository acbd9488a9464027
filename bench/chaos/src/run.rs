//! One scenario's run: its processes (workers, producers), the faults'
//! times, the drain, and the checks at the end.

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use anyhow::Context as _;
use atp_core::{Handler, RetryPolicy, Store as _, TaskType, TypeName};
use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use tokio::process::{Child, Command};

use crate::check::{self, Kill};
use crate::db::Db;
use crate::journal::mono_us;
use crate::worker::HANDLER;

/// The suite's main task type.
pub const TYPE: &str = "chaos";
/// The `exec:` type of the cancel storm.
pub const EXEC_TYPE: &str = "chaos-exec";

/// Settings shared by every scenario (from the command line).
#[derive(Debug, Clone)]
pub struct Settings {
    /// The CI version: shorter phases, lower rates.
    pub short: bool,
    /// Producer rate (tasks/s).
    pub rate: u32,
    /// Daemon processes.
    pub workers: usize,
    /// Attempts at once per daemon.
    pub concurrency: usize,
    /// The handler's sleep (ms).
    pub sleep_ms: u64,
    /// Tasks per enqueue call.
    pub batch: u32,
    /// The pick-up p99 a healed window must be under (µs), at least.
    pub pickup_limit: i64,
    /// Random seed (kills' moments, cancels' choice).
    pub seed: u64,
}

impl Settings {
    /// `full` in a full run, `short` in `--short`.
    pub fn pick(&self, full: Duration, short: Duration) -> Duration {
        if self.short { short } else { full }
    }
}

/// Which engine a run uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Engine {
    /// A private PostgreSQL cluster.
    Postgres,
    /// One SQLite file shared by every process.
    Sqlite,
}

impl Engine {
    /// Its name.
    pub fn name(self) -> &'static str {
        match self {
            Engine::Postgres => "postgres",
            Engine::Sqlite => "sqlite",
        }
    }
}

struct Proc {
    child: Child,
    pid: u32,
    /// A daemon's journal.
    journal: Option<PathBuf>,
}

/// A fault's interval (monotonic µs) and name.
#[derive(Debug, Clone)]
pub struct Fault {
    /// What it was.
    pub label: String,
    /// When it began.
    pub start: i64,
    /// When it ended (the system could begin to heal).
    pub end: i64,
    /// The throughput to compare the completions during the fault with
    /// (default: the baseline's).
    pub reference: Option<f64>,
    /// A pressure fault: throughput during it must stay within 20 % of the
    /// reference (a figure, met or MISSED; not a violation).
    pub pressure: bool,
}

/// The pressure suite's floor: completions during a pressure fault, as a
/// share of the reference.
pub const PRESSURE_FLOOR: f64 = 0.8;

/// A scenario in progress.
pub struct Run {
    /// Scenario name.
    pub name: String,
    /// The engine.
    pub engine: Engine,
    /// The database URL every process uses.
    pub url: String,
    /// The run's folder.
    pub dir: PathBuf,
    /// Settings.
    pub settings: Settings,
    /// The harness's own connection.
    pub db: Db,
    exe: PathBuf,
    workers: Vec<Option<Proc>>,
    worker_gen: usize,
    producers: Vec<Option<Proc>>,
    producer_gen: usize,
    atp_workers: Vec<Option<Proc>>,
    journals: Vec<PathBuf>,
    producer_logs: Vec<PathBuf>,
    /// SIGKILLs of daemons.
    pub kills: Vec<Kill>,
    /// The faults, in order.
    pub faults: Vec<Fault>,
    /// Tasks the harness cancelled (successfully).
    pub cancelled: HashSet<String>,
    /// When the producers started (monotonic µs).
    pub t0: i64,
    producers_stopped: Option<i64>,
    /// The retry storm's flag file (workers fail while it exists).
    pub fail_flag: Option<PathBuf>,
    /// Figures a scenario adds (name, value).
    pub figures: Vec<(String, String)>,
    /// Violations a scenario finds itself (e.g. an orphaned exec program).
    pub violations: Vec<String>,
    peak_rss_kb: u64,
}

/// A process's peak resident set (VmHWM, kB), while it lives.
fn peak_rss_kb(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmHWM:"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|v| v.parse().ok())
        })
        .unwrap_or(0)
}

fn signal(pid: u32, sig: Signal) {
    if let Ok(p) = i32::try_from(pid) {
        let _ = kill(Pid::from_raw(p), sig);
    }
}

impl Run {
    /// Sets up a run: the folder, the types.
    pub async fn new(
        name: &str,
        engine: Engine,
        url: String,
        dir: PathBuf,
        settings: Settings,
    ) -> anyhow::Result<Run> {
        std::fs::create_dir_all(&dir)?;
        let store = crate::produce::connect(&url).await?;
        // Many starts: a task may be caught in many kills (or failures of
        // the storm) and must still finish; a FAILED task counts as lost.
        let chaos = TaskType::new(TypeName::new(TYPE)?, Handler::new(HANDLER)?)
            .with_max_starts(10_000)
            .with_retry(RetryPolicy {
                delay_secs: 0.2,
                max_delay_secs: 2.0,
            });
        store.task_type_upsert(&chaos).await?;
        // Long enough that a kill lands while programs run, and that one
        // which outlived its daemon is still there to be seen.
        let exec = TaskType::new(TypeName::new(EXEC_TYPE)?, Handler::new("exec:sleep 2")?)
            .with_max_starts(10_000);
        store.task_type_upsert(&exec).await?;
        drop(store);
        let db = Db::connect(&url).await?;
        Ok(Run {
            name: name.to_owned(),
            engine,
            url,
            dir,
            settings,
            db,
            exe: std::env::current_exe()?,
            workers: Vec::new(),
            worker_gen: 0,
            producers: Vec::new(),
            producer_gen: 0,
            atp_workers: Vec::new(),
            journals: Vec::new(),
            producer_logs: Vec::new(),
            kills: Vec::new(),
            faults: Vec::new(),
            cancelled: HashSet::new(),
            t0: mono_us(),
            producers_stopped: None,
            fail_flag: None,
            figures: Vec::new(),
            violations: Vec::new(),
            peak_rss_kb: 0,
        })
    }

    fn spawn(&self, args: &[String], stderr: &Path) -> anyhow::Result<Proc> {
        let err = std::fs::File::create(stderr)?;
        let child = Command::new(&self.exe)
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(err)
            .kill_on_drop(true)
            .spawn()
            .context("starting a process")?;
        let pid = child.id().context("a started process has a pid")?;
        Ok(Proc {
            child,
            pid,
            journal: None,
        })
    }

    /// Starts (or restarts) daemon `slot`.
    pub fn start_worker(&mut self, slot: usize) -> anyhow::Result<()> {
        self.worker_gen += 1;
        let journal = self
            .dir
            .join(format!("journal-w{slot}-{}.log", self.worker_gen));
        let mut args = vec![
            "worker".to_owned(),
            "--database".to_owned(),
            self.url.clone(),
            "--journal".to_owned(),
            journal.display().to_string(),
            "--concurrency".to_owned(),
            self.settings.concurrency.to_string(),
        ];
        if let Some(flag) = &self.fail_flag {
            args.extend(["--fail-flag".to_owned(), flag.display().to_string()]);
        }
        let err = self
            .dir
            .join(format!("worker-w{slot}-{}.err", self.worker_gen));
        let mut proc = self.spawn(&args, &err)?;
        proc.journal = Some(journal.clone());
        self.journals.push(journal);
        if self.workers.len() <= slot {
            self.workers.resize_with(slot + 1, || None);
        }
        self.workers[slot] = Some(proc);
        Ok(())
    }

    /// Starts `n` daemons in slots 0..n.
    pub fn start_workers(&mut self, n: usize) -> anyhow::Result<()> {
        (0..n).try_for_each(|i| self.start_worker(i))
    }

    /// Daemon slots in use.
    pub fn worker_slots(&self) -> usize {
        self.workers.len()
    }

    /// SIGKILLs daemon `slot` while it runs a handler (waiting up to 2 s
    /// for one, so that the kill cuts work); returns the kill's time.
    pub async fn kill_worker(&mut self, slot: usize) -> anyhow::Result<i64> {
        let journal = self.workers[slot]
            .as_ref()
            .and_then(|p| p.journal.clone())
            .with_context(|| format!("worker {slot} is not running"))?;
        let until = tokio::time::Instant::now() + Duration::from_secs(2);
        while !busy(&journal) && tokio::time::Instant::now() < until {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        let mut proc = self.workers[slot]
            .take()
            .with_context(|| format!("worker {slot} is not running"))?;
        self.peak_rss_kb = self.peak_rss_kb.max(peak_rss_kb(proc.pid));
        signal(proc.pid, Signal::SIGKILL);
        let at = mono_us();
        let utc = crate::journal::utc_us();
        let _ = proc.child.wait().await;
        self.kills.push(Kill {
            pid: proc.pid,
            mono: at,
            utc,
        });
        Ok(at)
    }

    /// Starts producer `slot` (or a new one in its place after a kill).
    pub fn start_producer(
        &mut self,
        slot: usize,
        task_type: &str,
        rate: u32,
        batch: u32,
        count: Option<u64>,
    ) -> anyhow::Result<()> {
        self.producer_gen += 1;
        let log = self
            .dir
            .join(format!("produce-p{slot}-{}.log", self.producer_gen));
        let mut args = vec![
            "produce".to_owned(),
            "--database".to_owned(),
            self.producer_url(),
            "--log".to_owned(),
            log.display().to_string(),
            "--type".to_owned(),
            task_type.to_owned(),
            "--rate".to_owned(),
            rate.to_string(),
            "--batch".to_owned(),
            batch.to_string(),
            "--prefix".to_owned(),
            format!("p{slot}g{}", self.producer_gen),
            "--sleep-ms".to_owned(),
            self.settings.sleep_ms.to_string(),
        ];
        if let Some(c) = count {
            args.extend(["--count".to_owned(), c.to_string()]);
        }
        let err = self
            .dir
            .join(format!("produce-p{slot}-{}.err", self.producer_gen));
        let mut proc = self.spawn(&args, &err)?;
        proc.journal = Some(log.clone());
        self.producer_logs.push(log);
        if self.producers.len() <= slot {
            self.producers.resize_with(slot + 1, || None);
        }
        if self.producers.iter().all(Option::is_none) && self.producer_gen == 1 {
            self.t0 = mono_us();
        }
        self.producers[slot] = Some(proc);
        Ok(())
    }

    /// The main producer at the run's rate.
    pub fn start_main_producer(&mut self) -> anyhow::Result<()> {
        let (rate, batch) = (self.settings.rate, self.settings.batch);
        self.start_producer(0, TYPE, rate, batch, None)
    }

    /// Producers connect as `chaos-producer`: the backend-kill fault is
    /// aimed at the daemons' connections (application_name `atp`).
    fn producer_url(&self) -> String {
        if self.engine == Engine::Postgres {
            let sep = if self.url.contains('?') { '&' } else { '?' };
            format!("{}{sep}application_name=chaos-producer", self.url)
        } else {
            self.url.clone()
        }
    }

    /// SIGKILLs producer `slot`, inside an enqueue call when it can (it
    /// waits up to 2 s for the log to end with an intent).
    pub async fn kill_producer(&mut self, slot: usize) -> anyhow::Result<()> {
        if let Some(log) = self.producers[slot]
            .as_ref()
            .and_then(|p| p.journal.clone())
        {
            let until = tokio::time::Instant::now() + Duration::from_secs(2);
            while !in_call(&log) && tokio::time::Instant::now() < until {
                tokio::time::sleep(Duration::from_micros(500)).await;
            }
        }
        let mut proc = self.producers[slot]
            .take()
            .with_context(|| format!("producer {slot} is not running"))?;
        signal(proc.pid, Signal::SIGKILL);
        let _ = proc.child.wait().await;
        Ok(())
    }

    /// Waits for producer `slot` to exit on its own (`--count`).
    pub async fn wait_producer(&mut self, slot: usize) -> anyhow::Result<()> {
        if let Some(mut p) = self.producers[slot].take() {
            p.child.wait().await?;
        }
        Ok(())
    }

    /// Whether producer `slot` still runs.
    pub fn producer_running(&mut self, slot: usize) -> bool {
        match &mut self.producers[slot] {
            Some(p) => matches!(p.child.try_wait(), Ok(None)),
            None => false,
        }
    }

    /// Starts a real `atp worker` (for `exec:` tasks) in `slot`.
    pub fn start_atp_worker(&mut self, slot: usize) -> anyhow::Result<()> {
        let atp = self
            .exe
            .parent()
            .context("the binary's folder")?
            .join("atp");
        anyhow::ensure!(
            atp.is_file(),
            "{} not found: build it (cargo build -p atp)",
            atp.display()
        );
        self.worker_gen += 1;
        let err = std::fs::File::create(
            self.dir
                .join(format!("atp-worker-{slot}-{}.err", self.worker_gen)),
        )?;
        let child = Command::new(&atp)
            .args([
                "--database",
                &self.url,
                "worker",
                "-c",
                "16",
                "--no-schedules",
            ])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(err)
            .kill_on_drop(true)
            .spawn()
            .context("starting atp worker")?;
        let pid = child.id().context("pid")?;
        if self.atp_workers.len() <= slot {
            self.atp_workers.resize_with(slot + 1, || None);
        }
        self.atp_workers[slot] = Some(Proc {
            child,
            pid,
            journal: None,
        });
        Ok(())
    }

    /// SIGKILLs `atp worker` `slot`, then looks, `after` later, for exec
    /// programs it started that still run: each is a violation (an exec
    /// program must die with its daemon).
    pub async fn kill_atp_worker(&mut self, slot: usize, after: Duration) -> anyhow::Result<()> {
        let mut proc = self.atp_workers[slot]
            .take()
            .context("atp worker not running")?;
        let children = descendants(proc.pid);
        signal(proc.pid, Signal::SIGKILL);
        let _ = proc.child.wait().await;
        tokio::time::sleep(after).await;
        let alive: Vec<u32> = children.into_iter().filter(|p| alive(*p)).collect();
        self.figures.push((
            format!(
                "exec programs alive {} ms after their daemon's kill",
                after.as_millis()
            ),
            alive.len().to_string(),
        ));
        if !alive.is_empty() {
            self.violations.push(format!(
                "exec programs {alive:?} outlived their SIGKILLed daemon (pid {}) by more than {} ms",
                proc.pid,
                after.as_millis()
            ));
            for p in alive {
                signal(p, Signal::SIGKILL);
            }
        }
        Ok(())
    }

    /// Records a fault.
    pub fn fault(&mut self, label: impl Into<String>, start: i64, end: i64) {
        self.faults.push(Fault {
            label: label.into(),
            start,
            end,
            reference: None,
            pressure: false,
        });
    }

    /// A pressure fault (old snapshots, overload): its throughput during
    /// is compared with `reference` (the baseline's when `None`).
    pub fn pressure_fault(
        &mut self,
        label: impl Into<String>,
        start: i64,
        end: i64,
        reference: Option<f64>,
    ) {
        self.faults.push(Fault {
            label: label.into(),
            start,
            end,
            reference,
            pressure: true,
        });
    }

    /// Per-second windows of the run so far, from the journals as they
    /// are now (a scenario that must measure while it runs).
    pub fn windows_now(&self) -> anyhow::Result<Vec<check::Window>> {
        let mut lines = Vec::new();
        for j in &self.journals {
            lines.extend(crate::journal::read(j)?);
        }
        let attempts = check::attempts(&lines, &self.kills);
        Ok(check::windows(&attempts, self.t0))
    }

    /// Stops producer `slot` (SIGTERM: it finishes its call and logs it).
    pub async fn stop_producer(&mut self, slot: usize) {
        if let Some(p) = self.producers.get_mut(slot).and_then(Option::take) {
            stop(p, Duration::from_secs(30)).await;
        }
    }

    /// Stops the producers (SIGTERM: each finishes its call and logs it).
    pub async fn stop_producers(&mut self) -> anyhow::Result<()> {
        for p in self.producers.iter_mut().filter_map(Option::take) {
            stop(p, Duration::from_secs(30)).await;
        }
        self.producers_stopped = Some(mono_us());
        Ok(())
    }

    /// Waits until no task of the suite is queued or held, for at most
    /// `deadline`; says how long it took, or that it ran out.
    pub async fn drain(&mut self, deadline: Duration) -> anyhow::Result<bool> {
        let began = tokio::time::Instant::now();
        loop {
            let open = match self.db.open_tasks().await {
                Ok(n) => n,
                Err(e) => {
                    // The harness's connection died with a fault: reconnect.
                    eprintln!("atp-chaos: counting open tasks: {e:#}; reconnecting");
                    if let Ok(db) = Db::connect(&self.url).await {
                        self.db = db;
                    }
                    u64::MAX
                }
            };
            if open == 0 {
                self.figures.push((
                    "drain".into(),
                    format!("{:.1} s", began.elapsed().as_secs_f64()),
                ));
                return Ok(true);
            }
            if began.elapsed() > deadline {
                self.figures.push((
                    "drain".into(),
                    format!("NOT DONE after {} s: {open} tasks open", deadline.as_secs()),
                ));
                return Ok(false);
            }
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
    }

    /// Stops every daemon (SIGTERM, then SIGKILL after the grace).
    pub async fn stop_workers(&mut self) {
        for p in self
            .workers
            .iter_mut()
            .chain(self.atp_workers.iter_mut())
            .filter_map(Option::take)
        {
            self.peak_rss_kb = self.peak_rss_kb.max(peak_rss_kb(p.pid));
            stop(p, Duration::from_secs(40)).await;
        }
    }

    /// Samples the workers' peak RSS now.
    pub fn sample_rss(&mut self) {
        for p in self.workers.iter().flatten() {
            self.peak_rss_kb = self.peak_rss_kb.max(peak_rss_kb(p.pid));
        }
    }

    /// The checks and the figures; returns the number of violations.
    pub async fn finish(mut self, drain: Duration) -> anyhow::Result<Outcome> {
        if self.producers.iter().any(Option::is_some) {
            self.stop_producers().await?;
        }
        let produced_until = self.producers_stopped.unwrap_or_else(mono_us);
        let drained = self.drain(drain).await?;
        self.sample_rss();
        self.stop_workers().await;
        let mut lines = Vec::new();
        for j in &self.journals {
            lines.extend(crate::journal::read(j)?);
        }
        let produced = crate::produce::read(&self.producer_logs)?;
        let facts = match self.db.facts().await {
            Ok(f) => f,
            Err(_) => {
                self.db = Db::connect(&self.url).await?;
                self.db.facts().await?
            }
        };
        let attempts = check::attempts(&lines, &self.kills);
        let report = check::check(&produced, &attempts, &facts, &self.cancelled);
        let windows = check::windows(&attempts, self.t0);
        let first_fault = self.faults.first().map_or(produced_until, |f| f.start);
        let base_to = usize::try_from((first_fault - self.t0) / 1_000_000).unwrap_or(0);
        let base = check::baseline(&windows, 2.min(base_to.saturating_sub(1)), base_to);
        let limit = self.settings.pickup_limit.max(2 * base.pickup_p99);

        let mut rows: Vec<(String, String)> = vec![
            ("engine".into(), self.engine.name().into()),
            (
                "run time".into(),
                format!("{:.0} s", (produced_until - self.t0) as f64 / 1e6),
            ),
            ("acknowledged".into(), report.acked.to_string()),
            ("finished".into(), report.finished.to_string()),
            (
                "cancelled (by the harness)".into(),
                report.cancelled.to_string(),
            ),
            ("attempts".into(), attempts.len().to_string()),
            (
                "attempts cut by SIGKILL".into(),
                report.killed_attempts.to_string(),
            ),
            (
                "batches unacknowledged: landed whole / absent".into(),
                format!("{} / {}", report.unacked_landed, report.unacked_absent),
            ),
            (
                "producer calls failed".into(),
                produced.failed_calls.to_string(),
            ),
            (
                "baseline throughput".into(),
                format!("{:.0} /s", base.throughput),
            ),
            (
                "baseline pick-up p99".into(),
                format!("{:.1} ms", base.pickup_p99 as f64 / 1e3),
            ),
            (
                "pick-up limit for healed".into(),
                format!("{:.1} ms", limit as f64 / 1e3),
            ),
        ];
        if let Some(m) = produced.failures.first() {
            rows.push(("first producer error".into(), m.clone()));
        }
        if !report.rescue_delays.is_empty() {
            rows.push((
                "kill → killed tasks running again: p50 / max".into(),
                format!(
                    "{:.1} s / {:.1} s",
                    check::percentile(&report.rescue_delays, 0.5) as f64 / 1e6,
                    check::percentile(&report.rescue_delays, 1.0) as f64 / 1e6
                ),
            ));
        }
        let requeued = check::requeue_delays(&attempts, &facts);
        if !requeued.is_empty() {
            rows.push((
                "kill → tasks back in the queue: n / p50 / max".into(),
                format!(
                    "{} / {:.1} s / {:.1} s",
                    requeued.len(),
                    check::percentile(&requeued, 0.5) as f64 / 1e6,
                    check::percentile(&requeued, 1.0) as f64 / 1e6
                ),
            ));
        }
        let all: Vec<i64> = windows.iter().flat_map(|w| w.pickups.clone()).collect();
        rows.push((
            "pick-up p50 / p99 / max (whole run)".into(),
            p50_p99_max_ms(&all),
        ));
        let mut heals = Vec::new();
        self.faults.sort_by_key(|f| f.start);
        for f in &self.faults {
            // Healing is watched until the next fault begins.
            let until = self
                .faults
                .iter()
                .filter(|n| n.start > f.end)
                .map(|n| n.start)
                .min()
                .unwrap_or(produced_until);
            let resumed = check::resumed(&attempts, f.start, f.end).unwrap_or(f.end);
            let h = check::heal(&windows, self.t0, f.end, resumed, until, base, limit);
            let first = check::first_start_after(&attempts, f.end);
            if f.pressure || f.end - f.start >= 3_000_000 {
                rows.push(during(f, &windows, self.t0, base));
            }
            rows.push((
                format!("{}: heal / first start after", f.label),
                format!(
                    "{} / {}",
                    h.map_or_else(
                        || format!("not within {:.0} s", (until - f.end) as f64 / 1e6),
                        |h| format!("{:.1} s", h as f64 / 1e6)
                    ),
                    first.map_or("none".into(), |t| format!("{:.0} ms", t as f64 / 1e3))
                ),
            ));
            heals.push(h);
        }
        rows.push((
            "window losses (success, then run again)".into(),
            report.window_losses.to_string(),
        ));
        let settled = check::settle_windows(&attempts, &facts);
        if !settled.is_empty() {
            rows.push((
                "handler's return → FINISHED written: p50 / p99 / max".into(),
                p50_p99_max_ms(&settled),
            ));
        }
        if self.peak_rss_kb > 0 {
            rows.push((
                "daemon peak RSS".into(),
                format!("{:.1} MiB", self.peak_rss_kb as f64 / 1024.0),
            ));
        }
        rows.append(&mut self.figures);
        if let Some(ic) = self.db.integrity_check().await? {
            if ic != "ok" {
                self.violations
                    .push(format!("PRAGMA integrity_check: {ic}"));
            }
            rows.push(("PRAGMA integrity_check".into(), ic));
        }
        if !drained {
            self.violations
                .push("the drain did not finish before its deadline".into());
        }
        rows.push(("lost".into(), report.lost.len().to_string()));
        rows.push((
            "partial batches".into(),
            report.partial_batches.len().to_string(),
        ));
        rows.push(("double completions".into(), report.double.len().to_string()));
        rows.push((
            "overlapping attempts".into(),
            report.overlaps.len().to_string(),
        ));
        let violations = report.violations() + self.violations.len();
        rows.push(("VIOLATIONS".into(), violations.to_string()));

        println!("\n== {} ({}) ==", self.name, self.engine.name());
        let width = rows.iter().map(|(k, _)| k.len()).max().unwrap_or(0);
        for (k, v) in &rows {
            println!("  {k:<width$}  {v}");
        }
        let detail = |title: &str, items: &[(String, String)]| {
            for (id, why) in items.iter().take(10) {
                println!("  {title}: {id}: {why}");
            }
            if items.len() > 10 {
                println!("  {title}: … and {} more", items.len() - 10);
            }
        };
        detail("LOST", &report.lost);
        detail("DOUBLE", &report.double);
        detail("OVERLAP", &report.overlaps);
        for (b, present, size) in &report.partial_batches {
            println!("  PARTIAL BATCH: {b}: {present} of {size} in the database");
        }
        for v in &self.violations {
            println!("  VIOLATION: {v}");
        }
        // The evidence of the first few: their journal lines and log records.
        let named: Vec<&String> = report
            .lost
            .iter()
            .chain(&report.double)
            .chain(&report.overlaps)
            .map(|(id, _)| id)
            .take(3)
            .collect();
        for id in named {
            for a in attempts.iter().filter(|a| &a.identifier == id) {
                println!("    journal {id}: {a:?}");
            }
            for l in self.db.log_of(id).await.unwrap_or_default() {
                println!("    log {id}: {l}");
            }
        }
        println!("  files: {}", self.dir.display());
        Ok(Outcome {
            violations,
            rows,
            heals,
        })
    }
}

/// `p50 / p99 / max ms` of durations in µs.
fn p50_p99_max_ms(values: &[i64]) -> String {
    format!(
        "{:.1} / {:.1} / {:.0} ms",
        check::percentile(values, 0.5) as f64 / 1e3,
        check::percentile(values, 0.99) as f64 / 1e3,
        check::percentile(values, 1.0) as f64 / 1e3
    )
}

/// The row of a fault's throughput and pick-up while it lasted: whole
/// windows inside it, their mean completions against the reference and
/// the p99 of their pick-ups; a pressure fault's also says whether it kept
/// [`PRESSURE_FLOOR`].
fn during(
    f: &Fault,
    windows: &[check::Window],
    t0: i64,
    base: check::Baseline,
) -> (String, String) {
    let first = usize::try_from((f.start - t0 + 999_999).max(0) / 1_000_000).unwrap_or(0);
    let last = usize::try_from((f.end - t0).max(0) / 1_000_000)
        .unwrap_or(0)
        .min(windows.len());
    let inside = windows.get(first..last).unwrap_or(&[]);
    let reference = f.reference.unwrap_or(base.throughput);
    let mean =
        inside.iter().map(|w| w.completions as f64).sum::<f64>() / inside.len().max(1) as f64;
    let pickups: Vec<i64> = inside.iter().flat_map(|w| w.pickups.clone()).collect();
    let share = if reference > 0.0 {
        mean / reference
    } else {
        0.0
    };
    let verdict = if f.pressure {
        if share >= PRESSURE_FLOOR {
            ", goal met"
        } else {
            ", goal MISSED"
        }
    } else {
        ""
    };
    (
        format!("{}: during: completions / pick-up p99", f.label),
        format!(
            "{mean:.0} /s ({:.0} % of {reference:.0}{verdict}) / {:.1} ms",
            share * 100.0,
            check::percentile(&pickups, 0.99) as f64 / 1e3
        ),
    )
}

/// A finished scenario.
#[derive(Debug)]
pub struct Outcome {
    /// Rules broken.
    pub violations: usize,
    /// Its table.
    pub rows: Vec<(String, String)>,
    /// Heal time per fault (µs).
    pub heals: Vec<Option<i64>>,
}

async fn stop(mut p: Proc, grace: Duration) {
    signal(p.pid, Signal::SIGTERM);
    if tokio::time::timeout(grace, p.child.wait()).await.is_err() {
        signal(p.pid, Signal::SIGKILL);
        let _ = p.child.wait().await;
    }
}

/// Whether a producer's log ends with an intent: it is inside a call.
fn in_call(log: &Path) -> bool {
    use std::io::{Read as _, Seek as _, SeekFrom};
    let Ok(mut f) = std::fs::File::open(log) else {
        return false;
    };
    let len = f.metadata().map_or(0, |m| m.len());
    let _ = f.seek(SeekFrom::Start(len.saturating_sub(4096)));
    let mut tail = String::new();
    if f.read_to_string(&mut tail).is_err() {
        return false;
    }
    tail.ends_with('\n')
        && tail
            .trim_end()
            .rsplit('\n')
            .next()
            .is_some_and(|l| l.starts_with("intent "))
}

/// Whether the journal's tail shows an attempt started and not ended.
fn busy(journal: &Path) -> bool {
    use std::io::{Read as _, Seek as _, SeekFrom};
    let Ok(mut f) = std::fs::File::open(journal) else {
        return false;
    };
    let len = f.metadata().map_or(0, |m| m.len());
    let _ = f.seek(SeekFrom::Start(len.saturating_sub(64 * 1024)));
    let mut tail = String::new();
    if f.read_to_string(&mut tail).is_err() {
        return false;
    }
    let mut open = HashSet::new();
    for line in tail.lines().filter_map(crate::journal::Line::parse) {
        match line {
            crate::journal::Line::Start {
                identifier, lease, ..
            } => {
                open.insert((identifier, lease));
            }
            crate::journal::Line::End {
                identifier, lease, ..
            } => {
                open.remove(&(identifier, lease));
            }
        }
    }
    !open.is_empty()
}

fn alive(pid: u32) -> bool {
    // A zombie is dead for this purpose.
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .ok()
        .and_then(|s| s.rsplit(')').next().map(|r| r.trim_start().to_owned()))
        .is_some_and(|r| !r.starts_with('Z'))
}

/// Every descendant of `pid` now (from /proc's parent links).
fn descendants(pid: u32) -> Vec<u32> {
    let mut parent_of = Vec::new();
    if let Ok(dir) = std::fs::read_dir("/proc") {
        for e in dir.flatten() {
            let Some(p) = e.file_name().to_str().and_then(|n| n.parse::<u32>().ok()) else {
                continue;
            };
            let ppid = std::fs::read_to_string(format!("/proc/{p}/stat"))
                .ok()
                .and_then(|s| {
                    s.rsplit(')')
                        .next()
                        .and_then(|r| r.split_whitespace().nth(1))
                        .and_then(|v| v.parse::<u32>().ok())
                });
            if let Some(pp) = ppid {
                parent_of.push((p, pp));
            }
        }
    }
    let mut out = Vec::new();
    let mut frontier = vec![pid];
    while let Some(x) = frontier.pop() {
        for (c, _) in parent_of.iter().filter(|(_, pp)| *pp == x) {
            out.push(*c);
            frontier.push(*c);
        }
    }
    out
}
