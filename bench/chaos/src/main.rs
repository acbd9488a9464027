//! `atp-chaos`: ATP's chaos suite and soak.
//!
//! ```text
//! atp-chaos <SCENARIO>|all [--engine postgres|sqlite] [--short] [--rate N] [--workers N] …
//! atp-chaos soak [--tasks N] [--engine …]
//! atp-chaos worker --database URL --journal FILE     (run by the harness)
//! atp-chaos produce --database URL --log FILE …      (run by the harness)
//! ```
//!
//! Every scenario runs real processes — daemons (`worker`: the library's
//! daemon with `DaemonConfig::default()` and a journaling handler, plus
//! real `atp worker`s for `exec:` tasks in the cancel storm) and fixed-rate
//! producers — on a private PostgreSQL cluster or one SQLite file; a
//! baseline, the fault, a recovery, a drain; then the checks of
//! [`check`] and a table of figures. The exit status is 1 when any rule
//! was broken (lost, double completion, overlap, partial batch, …).

mod check;
mod db;
mod journal;
mod pg;
mod pressure;
mod produce;
mod run;
mod scenarios;
mod worker;

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context as _;
use clap::Parser as _;

use crate::run::{Engine, Run, Settings};
use crate::scenarios::Scenario;

/// The harness's processes.
#[derive(Debug, clap::Parser)]
#[command(name = "atp-chaos")]
enum Internal {
    /// A daemon with the journaling handler (run by the harness).
    Worker(worker::WorkerArgs),
    /// A fixed-rate producer (run by the harness).
    Produce(produce::ProduceArgs),
}

/// The suite.
#[derive(Debug, clap::Parser)]
#[command(
    name = "atp-chaos",
    about = "ATP's chaos suite: real daemons and producers, faults, and checks that nothing is lost, run twice or at once",
    after_help = "Scenarios: crash, repeated-kills, postgres-restart, backend-kill, pool-exhaustion, retry-storm, cancel-storm, producer-kill, mixed-kills, disk-full; pressure (PostgreSQL): idle-transaction, repeatable-read, overload; all; and soak.\nInternal: atp-chaos worker …, atp-chaos produce …"
)]
struct Suite {
    /// A scenario, `all` (every scenario), or `soak`.
    scenario: String,
    /// Only this engine (default: every engine the scenario applies to).
    #[arg(long, value_enum)]
    engine: Option<Engine>,
    /// The CI version: short phases, a lower rate.
    #[arg(long)]
    short: bool,
    /// Producer rate, tasks/s (default 500; 100 with --short).
    #[arg(long)]
    rate: Option<u32>,
    /// Daemon processes (default 2).
    #[arg(long, default_value_t = 2)]
    workers: usize,
    /// Attempts at once per daemon (default 16: 32 in all, as the
    /// independent benchmark's 32 workers).
    #[arg(long, default_value_t = 16)]
    concurrency: usize,
    /// The handler's sleep, ms (default 10).
    #[arg(long, default_value_t = 10)]
    sleep_ms: u64,
    /// Tasks per enqueue call (default 10).
    #[arg(long, default_value_t = 10)]
    batch: u32,
    /// Tasks of the soak (default 1,000,000).
    #[arg(long)]
    tasks: Option<u64>,
    /// Pick-up p99 a healed second must be under, ms (at least twice the
    /// baseline's p99).
    #[arg(long, default_value_t = 10.0)]
    pickup_limit_ms: f64,
    /// Random seed (moments of kills, choice of cancels); default: the time.
    #[arg(long)]
    seed: Option<u64>,
    /// Where the runs' files go (default: a new folder under /tmp).
    #[arg(long)]
    out: Option<PathBuf>,
}

fn main() -> ExitCode {
    let first = std::env::args().nth(1).unwrap_or_default();
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("atp-chaos: {e}");
            return ExitCode::FAILURE;
        }
    };
    let result = if first == "worker" || first == "produce" {
        let level = if first == "worker" { "info" } else { "warn" };
        tracing_subscriber::fmt()
            .with_env_filter(
                tracing_subscriber::EnvFilter::try_from_default_env()
                    .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(level)),
            )
            .with_writer(std::io::stderr)
            .with_ansi(false)
            .init();
        match Internal::parse() {
            Internal::Worker(a) => runtime.block_on(worker::run(a)),
            Internal::Produce(a) => runtime.block_on(produce::run(a)),
        }
        .map(|()| true)
    } else {
        let args = Suite::parse();
        runtime.block_on(async {
            // On SIGINT or SIGTERM the suite's future is dropped: its
            // processes (kill_on_drop) and the cluster (Drop) go with it.
            let mut term =
                tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
            tokio::select! {
                r = suite(args) => r,
                _ = tokio::signal::ctrl_c() => anyhow::bail!("interrupted"),
                _ = term.recv() => anyhow::bail!("terminated"),
            }
        })
    };
    match result {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::FAILURE,
        Err(e) => {
            eprintln!("atp-chaos: {e:#}");
            ExitCode::from(2)
        }
    }
}

fn scenarios(name: &str) -> anyhow::Result<Vec<Scenario>> {
    if name == "all" {
        return Ok(Scenario::ALL.to_vec());
    }
    let s = <Scenario as clap::ValueEnum>::from_str(name, false)
        .map_err(|_| anyhow::anyhow!("unknown scenario {name:?} (see --help)"))?;
    Ok(vec![s])
}

/// Runs the scenarios; `Ok(false)` when a rule was broken.
async fn suite(args: Suite) -> anyhow::Result<bool> {
    let list = scenarios(&args.scenario)?;
    let seed = args
        .seed
        .unwrap_or_else(|| u64::try_from(journal::utc_us()).unwrap_or(0) % 1_000_000);
    let out = args
        .out
        .clone()
        .unwrap_or_else(|| std::env::temp_dir().join(format!("atp-chaos-{}", std::process::id())));
    std::fs::create_dir_all(&out)?;
    // The server runs as the postgres user when we are root: it must be
    // able to reach its folder inside this one.
    std::fs::set_permissions(&out, std::os::unix::fs::PermissionsExt::from_mode(0o755))?;
    let settings = Settings {
        short: args.short,
        rate: args.rate.unwrap_or(if args.short { 100 } else { 500 }),
        workers: args.workers.max(1),
        concurrency: args.concurrency.max(1),
        sleep_ms: args.sleep_ms,
        batch: args.batch.max(1),
        pickup_limit: (args.pickup_limit_ms * 1000.0) as i64,
        seed,
    };
    println!(
        "atp-chaos: seed {seed}, rate {}/s, {} daemons × {}, files in {}",
        settings.rate,
        // The soak runs three daemons whatever --workers says.
        if list == [Scenario::Soak] {
            3
        } else {
            settings.workers
        },
        settings.concurrency,
        out.display()
    );
    let engines: Vec<Engine> = match args.engine {
        Some(e) => vec![e],
        None => vec![Engine::Postgres, Engine::Sqlite],
    };
    let mut summary = Vec::new();
    let mut ok = true;
    for engine in engines {
        let todo: Vec<Scenario> = list.iter().copied().filter(|s| s.applies(engine)).collect();
        if todo.is_empty() {
            continue;
        }
        let mut cluster = match engine {
            Engine::Postgres => Some(pg::Cluster::start(&out.join("pg"))?),
            Engine::Sqlite => None,
        };
        for (i, scenario) in todo.into_iter().enumerate() {
            let name = scenario.name();
            let dir = out.join(format!("{name}-{}", engine.name()));
            let began = tokio::time::Instant::now();
            let result = one(
                scenario,
                engine,
                &dir,
                i,
                cluster.as_mut(),
                settings.clone(),
                args.tasks,
            )
            .await;
            let took = began.elapsed().as_secs_f64();
            match result {
                Ok(Some(o)) => {
                    ok &= o.violations == 0;
                    let heals: Vec<String> = o
                        .heals
                        .iter()
                        .map(|h| h.map_or("—".into(), |h| format!("{:.1}", h as f64 / 1e6)))
                        .collect();
                    summary.push(format!(
                        "{name:<18} {:<9} {:>4} violations  {took:>5.0} s  heal (s): {}",
                        engine.name(),
                        o.violations,
                        heals.join(" ")
                    ));
                }
                Ok(None) => summary.push(format!("{name:<18} {:<9} skipped", engine.name())),
                Err(e) => {
                    ok = false;
                    eprintln!("atp-chaos: {name} ({}): {e:#}", engine.name());
                    summary.push(format!("{name:<18} {:<9} ERROR: {e:#}", engine.name()));
                }
            }
        }
    }
    println!("\n== summary (seed {seed}) ==");
    for line in &summary {
        println!("  {line}");
    }
    Ok(ok)
}

/// One scenario on one engine; `None` when skipped.
async fn one(
    scenario: Scenario,
    engine: Engine,
    dir: &std::path::Path,
    index: usize,
    cluster: Option<&mut pg::Cluster>,
    settings: Settings,
    tasks: Option<u64>,
) -> anyhow::Result<Option<run::Outcome>> {
    let _ = std::fs::remove_dir_all(dir);
    std::fs::create_dir_all(dir)?;
    match engine {
        Engine::Postgres => {
            let cluster = cluster.context("a cluster for PostgreSQL")?;
            let small = scenario == Scenario::PoolExhaustion;
            let wanted = if small {
                scenarios::POOL_MAX_CONNECTIONS
            } else {
                200
            };
            if cluster.max_connections != wanted {
                cluster.max_connections = wanted;
                cluster.down(pg::Shutdown::Fast)?;
                cluster.up()?;
            }
            let database = format!("chaos_{index}_{}", scenario.name().replace('-', "_"));
            let admin = db::Db::connect(&cluster.url()).await?;
            let client = admin.pg().context("PostgreSQL")?;
            // Two statements: DROP DATABASE refuses an implicit transaction.
            client
                .batch_execute(&format!("DROP DATABASE IF EXISTS {database}"))
                .await?;
            client
                .batch_execute(&format!("CREATE DATABASE {database}"))
                .await?;
            let url = cluster.url_of(&database);
            let run = Run::new(&scenario.name(), engine, url, dir.to_owned(), settings).await?;
            Ok(Some(
                scenarios::run(scenario, run, Some(cluster), tasks).await?,
            ))
        }
        Engine::Sqlite => {
            let mut mounted = None;
            let file = if scenario == Scenario::DiskFull {
                let fs = dir.join("fs");
                std::fs::create_dir_all(&fs)?;
                if !nix::unistd::Uid::effective().is_root() {
                    println!(
                        "\n== disk-full (sqlite) ==\n  skipped: mounting a small tmpfs needs root"
                    );
                    return Ok(None);
                }
                let status = std::process::Command::new("mount")
                    .args(["-t", "tmpfs", "-o", "size=48m", "tmpfs"])
                    .arg(&fs)
                    .status()?;
                if !status.success() {
                    println!("\n== disk-full (sqlite) ==\n  skipped: mount -t tmpfs failed");
                    return Ok(None);
                }
                mounted = Some(fs.clone());
                fs.join("atp.sqlite")
            } else {
                dir.join("atp.sqlite")
            };
            let url = format!("sqlite://{}", file.display());
            let result = async {
                let run = Run::new(&scenario.name(), engine, url, dir.to_owned(), settings).await?;
                scenarios::run(scenario, run, None, tasks).await
            }
            .await;
            if let Some(fs) = mounted {
                // Wait for the last handle to go before unmounting.
                tokio::time::sleep(Duration::from_millis(200)).await;
                let _ = std::process::Command::new("umount").arg(&fs).status();
            }
            Ok(Some(result?))
        }
    }
}
