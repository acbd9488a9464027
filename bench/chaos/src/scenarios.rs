//! The scenarios: each a baseline, a fault, a recovery; the drain and the
//! checks are [`Run::finish`]'s.

use std::time::Duration;

use anyhow::Context as _;
use rand::{Rng as _, SeedableRng as _, rngs::StdRng};

use crate::journal::mono_us;
use crate::pg::{Cluster, Shutdown};
use crate::run::{EXEC_TYPE, Engine, Outcome, Run, TYPE};

/// Every scenario, by name.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Scenario {
    /// SIGKILL one of two daemons, restart it 60 s later.
    Crash,
    /// SIGKILL a daemon every 20 s for two minutes (restarted at once).
    RepeatedKills,
    /// Restart PostgreSQL under load: fast, then immediate shutdown.
    PostgresRestart,
    /// pg_terminate_backend of ATP's connections twice a second for a minute.
    BackendKill,
    /// Another client holds all but a few connection slots for a minute.
    PoolExhaustion,
    /// Every handler fails for a minute (retries on), then recovers.
    RetryStorm,
    /// Cancel a third of the running tasks while daemons are being killed.
    CancelStorm,
    /// SIGKILL producers in the middle of batch enqueues.
    ProducerKill,
    /// SIGKILL daemons and producers at random, sharing one database.
    MixedKills,
    /// SQLite's file system fills up, then space is freed.
    DiskFull,
    /// Pressure: an idle-in-transaction session holds the xmin horizon
    /// back for five minutes.
    IdleTransaction,
    /// Pressure: REPEATABLE READ readers scan ATP's tables for three
    /// minutes.
    RepeatableRead,
    /// Pressure: producers offer 1.5× what the daemons can drain for two
    /// minutes.
    Overload,
    /// 1,000,000 tasks, three daemons, twenty SIGKILLs (three PostgreSQL
    /// restarts).
    Soak,
}

impl Scenario {
    /// The suite, in order (`all`; the soak is run on its own).
    pub const ALL: [Scenario; 13] = [
        Scenario::Crash,
        Scenario::RepeatedKills,
        Scenario::PostgresRestart,
        Scenario::BackendKill,
        Scenario::PoolExhaustion,
        Scenario::RetryStorm,
        Scenario::CancelStorm,
        Scenario::ProducerKill,
        Scenario::MixedKills,
        Scenario::DiskFull,
        Scenario::IdleTransaction,
        Scenario::RepeatableRead,
        Scenario::Overload,
    ];

    /// Its command-line name.
    pub fn name(self) -> String {
        clap::ValueEnum::to_possible_value(&self)
            .map(|v| v.get_name().to_owned())
            .unwrap_or_default()
    }

    /// Whether it applies to `engine`.
    pub fn applies(self, engine: Engine) -> bool {
        match self {
            Scenario::PostgresRestart
            | Scenario::BackendKill
            | Scenario::PoolExhaustion
            | Scenario::IdleTransaction
            | Scenario::RepeatableRead
            | Scenario::Overload => engine == Engine::Postgres,
            Scenario::DiskFull => engine == Engine::Sqlite,
            _ => true,
        }
    }
}

async fn sleep(d: Duration) {
    tokio::time::sleep(d).await;
}

/// The drain's deadline: long enough for today's rescue (a dead daemon is
/// noticed after 15 s of silence, plus the clean-up's period) and the
/// backlog.
fn drain(run: &Run) -> Duration {
    run.settings
        .pick(Duration::from_secs(180), Duration::from_secs(90))
}

/// The baseline phase before a fault.
pub(crate) fn baseline(run: &Run) -> Duration {
    run.settings
        .pick(Duration::from_secs(20), Duration::from_secs(4))
}

/// The recovery phase after a fault.
pub(crate) fn recovery(run: &Run) -> Duration {
    run.settings
        .pick(Duration::from_secs(30), Duration::from_secs(5))
}

/// Runs `scenario` on a prepared run.
pub async fn run(
    scenario: Scenario,
    mut run: Run,
    cluster: Option<&mut Cluster>,
    tasks: Option<u64>,
) -> anyhow::Result<Outcome> {
    match scenario {
        Scenario::Crash => crash(&mut run).await?,
        Scenario::RepeatedKills => repeated_kills(&mut run).await?,
        Scenario::PostgresRestart => {
            postgres_restart(&mut run, cluster.context("a private cluster")?).await?
        }
        Scenario::BackendKill => backend_kill(&mut run).await?,
        Scenario::PoolExhaustion => pool_exhaustion(&mut run).await?,
        Scenario::RetryStorm => retry_storm(&mut run).await?,
        Scenario::CancelStorm => cancel_storm(&mut run).await?,
        Scenario::ProducerKill => producer_kill(&mut run).await?,
        Scenario::MixedKills => mixed_kills(&mut run).await?,
        Scenario::DiskFull => disk_full(&mut run).await?,
        Scenario::IdleTransaction => crate::pressure::idle_transaction(&mut run).await?,
        Scenario::RepeatableRead => crate::pressure::repeatable_read(&mut run).await?,
        Scenario::Overload => crate::pressure::overload(&mut run).await?,
        Scenario::Soak => return soak(run, cluster, tasks).await,
    }
    let d = drain(&run);
    run.finish(d).await
}

async fn crash(run: &mut Run) -> anyhow::Result<()> {
    run.start_workers(run.settings.workers.max(2))?;
    run.start_main_producer()?;
    sleep(baseline(run)).await;
    let at = run.kill_worker(0).await?;
    run.fault("kill of daemon 0", at, at);
    sleep(
        run.settings
            .pick(Duration::from_secs(60), Duration::from_secs(10)),
    )
    .await;
    run.start_worker(0)?;
    sleep(recovery(run)).await;
    Ok(())
}

async fn repeated_kills(run: &mut Run) -> anyhow::Result<()> {
    run.start_workers(run.settings.workers.max(2))?;
    run.start_main_producer()?;
    sleep(baseline(run)).await;
    let (every, n) = if run.settings.short {
        (Duration::from_secs(4), 3)
    } else {
        (Duration::from_secs(20), 6)
    };
    for i in 0..n {
        let slot = i % run.worker_slots();
        let at = run.kill_worker(slot).await?;
        // A supervisor restarts it at once.
        run.start_worker(slot)?;
        run.fault(format!("kill {}", i + 1), at, at);
        sleep(every).await;
    }
    sleep(recovery(run)).await;
    Ok(())
}

async fn postgres_restart(run: &mut Run, cluster: &mut Cluster) -> anyhow::Result<()> {
    run.start_workers(run.settings.workers)?;
    run.start_main_producer()?;
    sleep(baseline(run)).await;
    for (mode, label) in [
        (Shutdown::Fast, "fast restart"),
        (Shutdown::Immediate, "immediate restart"),
    ] {
        let start = mono_us();
        cluster.down(mode)?;
        cluster.up()?;
        let end = mono_us();
        run.fault(label, start, end);
        run.figures.push((
            format!("{label}: server down"),
            format!("{:.2} s", (end - start) as f64 / 1e6),
        ));
        sleep(
            run.settings
                .pick(Duration::from_secs(20), Duration::from_secs(5)),
        )
        .await;
    }
    sleep(recovery(run)).await;
    Ok(())
}

async fn backend_kill(run: &mut Run) -> anyhow::Result<()> {
    run.start_workers(run.settings.workers)?;
    run.start_main_producer()?;
    sleep(baseline(run)).await;
    let length = run
        .settings
        .pick(Duration::from_secs(60), Duration::from_secs(6));
    let start = mono_us();
    let began = tokio::time::Instant::now();
    let mut terminated = 0u64;
    let mut rounds = 0u64;
    while began.elapsed() < length {
        let client = run.db.pg().context("PostgreSQL")?;
        let rows = client
            .query(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity \
                 WHERE application_name = 'atp' AND pid <> pg_backend_pid()",
                &[],
            )
            .await?;
        terminated += rows.len() as u64;
        rounds += 1;
        sleep(Duration::from_millis(500)).await;
    }
    run.fault("backend kills", start, mono_us());
    run.figures.push((
        "backends terminated (rounds)".into(),
        format!("{terminated} ({rounds})"),
    ));
    sleep(recovery(run)).await;
    Ok(())
}

/// The cluster's `max_connections` in the pool-exhaustion scenario.
pub const POOL_MAX_CONNECTIONS: u32 = 40;

async fn pool_exhaustion(run: &mut Run) -> anyhow::Result<()> {
    run.start_workers(run.settings.workers)?;
    run.start_main_producer()?;
    sleep(baseline(run)).await;
    let few = 3;
    let mut hog = Vec::new();
    let url = run.url.clone();
    let start = mono_us();
    loop {
        let mut config: tokio_postgres::Config = url.parse()?;
        config.application_name("chaos-hog");
        config.connect_timeout(Duration::from_secs(2));
        match config.connect(tokio_postgres::NoTls).await {
            Ok((client, conn)) => {
                let task = tokio::spawn(async move {
                    let _ = conn.await;
                });
                hog.push((client, task));
            }
            Err(_) => break,
        }
        if hog.len() > 1_000 {
            break;
        }
    }
    for _ in 0..few.min(hog.len()) {
        hog.pop();
    }
    run.figures.push((
        format!("connections held (max_connections {POOL_MAX_CONNECTIONS})"),
        hog.len().to_string(),
    ));
    sleep(
        run.settings
            .pick(Duration::from_secs(60), Duration::from_secs(6)),
    )
    .await;
    drop(hog);
    run.fault("pool exhaustion", start, mono_us());
    sleep(recovery(run)).await;
    Ok(())
}

async fn retry_storm(run: &mut Run) -> anyhow::Result<()> {
    let flag = run.dir.join("fail-flag");
    run.fail_flag = Some(flag.clone());
    run.start_workers(run.settings.workers)?;
    run.start_main_producer()?;
    sleep(baseline(run)).await;
    let start = mono_us();
    std::fs::write(&flag, b"storm")?;
    sleep(
        run.settings
            .pick(Duration::from_secs(60), Duration::from_secs(6)),
    )
    .await;
    std::fs::remove_file(&flag)?;
    run.fault("retry storm", start, mono_us());
    sleep(recovery(run)).await;
    Ok(())
}

async fn cancel_storm(run: &mut Run) -> anyhow::Result<()> {
    // Longer handlers at a lower rate: there are running tasks to cancel.
    run.settings.sleep_ms = 200;
    let rate = (run.settings.rate / 4).max(20);
    run.start_workers(run.settings.workers.max(2))?;
    let exec = run.start_atp_worker(0);
    let exec_ok = match exec {
        Ok(()) => true,
        Err(e) => {
            run.figures.push(("exec: skipped".into(), format!("{e:#}")));
            false
        }
    };
    let batch = run.settings.batch;
    run.start_producer(0, TYPE, rate, batch, None)?;
    if exec_ok {
        run.start_producer(1, EXEC_TYPE, 4, 1, None)?;
    }
    sleep(baseline(run)).await;
    let store = crate::produce::connect(&run.url).await?;
    let length = run
        .settings
        .pick(Duration::from_secs(60), Duration::from_secs(8));
    let kill_every = run
        .settings
        .pick(Duration::from_secs(10), Duration::from_secs(3));
    let exec_kill_every = run
        .settings
        .pick(Duration::from_secs(20), Duration::from_secs(4));
    let mut rng = StdRng::seed_from_u64(run.settings.seed);
    let start = mono_us();
    let began = tokio::time::Instant::now();
    let (mut next_kill, mut next_exec_kill, mut kills) = (kill_every, exec_kill_every, 0usize);
    let (mut tried, mut refused) = (0u64, 0u64);
    while began.elapsed() < length {
        let filter = atp_core::TaskFilter {
            status: Some(atp_core::Status::Running),
            task_type: Some(atp_core::TypeName::new(TYPE)?),
            limit: 1_000,
            ..Default::default()
        };
        if let Ok(page) = atp_core::Store::task_list(&store, &filter).await {
            for t in page.tasks.iter().filter(|_| rng.random_ratio(1, 3)) {
                tried += 1;
                match atp_core::Store::task_cancel(&store, &t.key(), Some("chaos: cancel storm"))
                    .await
                {
                    Ok(_) => {
                        run.cancelled.insert(t.identifier.to_string());
                    }
                    Err(_) => refused += 1,
                }
            }
        }
        if began.elapsed() >= next_kill {
            let slot = kills % run.worker_slots();
            let at = run.kill_worker(slot).await?;
            run.start_worker(slot)?;
            run.fault(format!("kill {}", kills + 1), at, at);
            kills += 1;
            next_kill += kill_every;
        }
        if exec_ok && began.elapsed() >= next_exec_kill {
            run.kill_atp_worker(0, Duration::from_secs(1)).await?;
            run.start_atp_worker(0)?;
            next_exec_kill += exec_kill_every;
        }
        sleep(Duration::from_millis(250)).await;
    }
    run.fault("cancel storm", start, mono_us());
    run.figures.push((
        "cancels: done / tried".into(),
        format!(
            "{} / {tried} ({refused} refused: already ended)",
            run.cancelled.len()
        ),
    ));
    sleep(recovery(run)).await;
    Ok(())
}

async fn producer_kill(run: &mut Run) -> anyhow::Result<()> {
    run.start_workers(run.settings.workers)?;
    // Two producers with big batches: a kill lands inside a call often.
    let rate = run.settings.rate / 2;
    run.start_producer(0, TYPE, rate, 50, None)?;
    run.start_producer(1, TYPE, rate, 50, None)?;
    sleep(baseline(run)).await;
    let length = run
        .settings
        .pick(Duration::from_secs(60), Duration::from_secs(8));
    let mut rng = StdRng::seed_from_u64(run.settings.seed);
    let began = tokio::time::Instant::now();
    let mut kills = 0;
    while began.elapsed() < length {
        sleep(Duration::from_millis(rng.random_range(300..1_500))).await;
        let slot = kills % 2;
        run.kill_producer(slot).await?;
        run.start_producer(slot, TYPE, rate, 50, None)?;
        kills += 1;
    }
    run.figures
        .push(("producer SIGKILLs".into(), kills.to_string()));
    Ok(())
}

async fn mixed_kills(run: &mut Run) -> anyhow::Result<()> {
    run.start_workers(run.settings.workers.max(2))?;
    let rate = run.settings.rate / 2;
    run.start_producer(0, TYPE, rate, 20, None)?;
    run.start_producer(1, TYPE, rate, 20, None)?;
    sleep(baseline(run)).await;
    let length = run
        .settings
        .pick(Duration::from_secs(60), Duration::from_secs(10));
    let mut rng = StdRng::seed_from_u64(run.settings.seed);
    let began = tokio::time::Instant::now();
    let (mut daemon_kills, mut producer_kills) = (0, 0);
    while began.elapsed() < length {
        sleep(Duration::from_millis(rng.random_range(1_000..4_000))).await;
        if rng.random_bool(0.5) {
            let slot = rng.random_range(0..run.worker_slots());
            let at = run.kill_worker(slot).await?;
            run.start_worker(slot)?;
            run.fault(format!("daemon kill {}", daemon_kills + 1), at, at);
            daemon_kills += 1;
        } else {
            let slot = rng.random_range(0..2);
            run.kill_producer(slot).await?;
            run.start_producer(slot, TYPE, rate, 20, None)?;
            producer_kills += 1;
        }
    }
    run.figures.push((
        "SIGKILLs: daemons / producers".into(),
        format!("{daemon_kills} / {producer_kills}"),
    ));
    sleep(recovery(run)).await;
    Ok(())
}

async fn disk_full(run: &mut Run) -> anyhow::Result<()> {
    // The run's database lives on a small tmpfs (see `main`); fill it.
    let fs = run.dir.join("fs");
    run.start_workers(run.settings.workers)?;
    run.start_main_producer()?;
    sleep(baseline(run)).await;
    let ballast = fs.join("ballast");
    let start = mono_us();
    fill(&ballast)?;
    run.figures.push((
        "ballast".into(),
        format!(
            "{:.1} MiB (free space left: {} kB)",
            std::fs::metadata(&ballast)?.len() as f64 / 1_048_576.0,
            free_kb(&fs)
        ),
    ));
    sleep(
        run.settings
            .pick(Duration::from_secs(20), Duration::from_secs(6)),
    )
    .await;
    std::fs::remove_file(&ballast)?;
    run.fault("disk full", start, mono_us());
    sleep(recovery(run)).await;
    let errors = worker_errors(&run.dir);
    run.figures.push((
        "first daemon error while full".into(),
        errors.unwrap_or_else(|| "none".into()),
    ));
    Ok(())
}

/// Writes `path` until the file system is full.
fn fill(path: &std::path::Path) -> anyhow::Result<()> {
    use std::io::Write as _;
    let mut f = std::fs::File::create(path)?;
    let block = vec![0u8; 64 * 1024];
    loop {
        match f.write(&block) {
            Ok(0) => break,
            Ok(_) => {}
            Err(e) if e.raw_os_error() == Some(28) => break,
            Err(e) => return Err(e.into()),
        }
    }
    let _ = f.flush();
    Ok(())
}

fn free_kb(path: &std::path::Path) -> u64 {
    nix::sys::statvfs::statvfs(path)
        .map(|s| s.blocks_available() * s.fragment_size() / 1024)
        .unwrap_or(0)
}

/// The first line of a daemon's stderr that speaks of the full disk.
fn worker_errors(dir: &std::path::Path) -> Option<String> {
    let mut names: Vec<_> = std::fs::read_dir(dir)
        .ok()?
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|x| x == "err"))
        .collect();
    names.sort();
    names.iter().find_map(|p| {
        std::fs::read_to_string(p).ok()?.lines().find_map(|l| {
            let low = l.to_lowercase();
            (low.contains("full") || low.contains("disk") || low.contains("space"))
                .then(|| l.chars().take(300).collect())
        })
    })
}

/// The soak: `tasks` through three daemons, twenty SIGKILLs (and three
/// PostgreSQL restarts) at random moments.
async fn soak(
    mut run: Run,
    cluster: Option<&mut Cluster>,
    tasks: Option<u64>,
) -> anyhow::Result<Outcome> {
    let total = tasks.unwrap_or(1_000_000);
    let rate = run.settings.rate;
    run.start_workers(3)?;
    run.start_producer(0, TYPE, rate, run.settings.batch, Some(total))?;
    let expected = Duration::from_secs_f64(total as f64 / f64::from(rate.max(1)));
    let mut rng = StdRng::seed_from_u64(run.settings.seed);
    let mut events: Vec<(Duration, bool)> = (0..20)
        .map(|_| (expected.mul_f64(rng.random_range(0.05..0.95)), false))
        .collect();
    if cluster.is_some() {
        events.extend((0..3).map(|_| (expected.mul_f64(rng.random_range(0.05..0.95)), true)));
    }
    events.sort();
    let began = tokio::time::Instant::now();
    let mut kills = 0;
    let mut restarts = 0;
    for (at, restart) in events {
        if let Some(wait) = at.checked_sub(began.elapsed()) {
            sleep(wait).await;
        }
        run.sample_rss();
        if restart {
            let c = cluster.as_deref().context("cluster")?;
            let start = mono_us();
            c.down(if restarts % 2 == 0 {
                Shutdown::Fast
            } else {
                Shutdown::Immediate
            })?;
            c.up()?;
            restarts += 1;
            run.fault(format!("PostgreSQL restart {restarts}"), start, mono_us());
        } else {
            let slot = rng.random_range(0..3);
            let t = run.kill_worker(slot).await?;
            run.start_worker(slot)?;
            kills += 1;
            run.fault(format!("kill {kills}"), t, t);
        }
    }
    while run.producer_running(0) {
        run.sample_rss();
        sleep(Duration::from_secs(1)).await;
    }
    run.wait_producer(0).await?;
    // A producer that could not write its log stops (it could no longer
    // say what it enqueued): the soak then covers what it acknowledged.
    let wall = began.elapsed();
    run.figures.push((
        "soak: SIGKILLs / PostgreSQL restarts".into(),
        format!("{kills} / {restarts}"),
    ));
    let d = Duration::from_secs(300);
    let mut outcome = run.finish(d).await?;
    let finished = outcome
        .rows
        .iter()
        .find(|(k, _)| k == "finished")
        .and_then(|(_, v)| v.parse::<f64>().ok())
        .unwrap_or(0.0);
    let total_wall = began.elapsed();
    let lines = [
        (
            "soak: producing".to_owned(),
            format!(
                "{finished:.0} of {total} tasks finished, produced in {:.0} s: {:.0} tasks/s",
                wall.as_secs_f64(),
                finished / wall.as_secs_f64()
            ),
        ),
        (
            "soak: wall time with drain and checks".to_owned(),
            format!("{:.0} s", total_wall.as_secs_f64()),
        ),
    ];
    for (k, v) in &lines {
        println!("  {k}  {v}");
    }
    outcome.rows.extend(lines);
    Ok(outcome)
}
