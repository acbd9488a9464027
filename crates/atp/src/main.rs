//! `atp`: the command line. For now the daemon (`atp worker`); the producer
//! and operator commands follow (issue 4).

mod database;

use std::time::Duration;

use anyhow::Context as _;
use atp_core::TypeName;
use atp_daemon::{Daemon, DaemonConfig, Registry};
use clap::{Args, Parser, Subcommand};

#[derive(Debug, Parser)]
#[command(
    name = "atp",
    version,
    about = "ATP: durable asynchronous task processing"
)]
struct Cli {
    #[command(flatten)]
    database: database::DatabaseArgs,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run a daemon: claim tasks from the queue and run them until SIGINT or
    /// SIGTERM (a second signal aborts running tasks; none is lost).
    ///
    /// Example: atp --database postgres://atp@db/atp worker --concurrency 8
    Worker(WorkerArgs),
}

#[derive(Debug, Args)]
struct WorkerArgs {
    /// Tasks run at once [default: the number of CPUs].
    #[arg(long, short = 'c')]
    concurrency: Option<usize>,
    /// Only tasks of these types (comma-separated).
    #[arg(long, value_delimiter = ',')]
    types: Option<Vec<String>>,
    /// Milliseconds an idle daemon waits before looking at the queue again.
    #[arg(long, default_value_t = 200)]
    poll_interval_ms: u64,
    /// Seconds between heartbeats.
    #[arg(long, default_value_t = 2.0)]
    heartbeat_secs: f64,
    /// Seconds of silence after which a daemon is dead and its tasks rescued.
    #[arg(long, default_value_t = 15.0)]
    dead_after_secs: f64,
    /// Seconds between clean-ups (abandoned, retired tasks, dead daemons).
    #[arg(long, default_value_t = 10.0)]
    cleanup_interval_secs: f64,
    /// Seconds a graceful shutdown lets running tasks finish.
    #[arg(long, default_value_t = 30.0)]
    grace_secs: f64,
}

fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("ATP_LOG")
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .init();
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("atp: cannot start the async runtime: {e}");
            return std::process::ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(cli)) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("atp: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

async fn run(cli: Cli) -> anyhow::Result<()> {
    match cli.command {
        Command::Worker(args) => worker(&cli.database, args).await,
    }
}

fn seconds(name: &str, value: f64) -> anyhow::Result<Duration> {
    Duration::try_from_secs_f64(value)
        .ok()
        .filter(|d| !d.is_zero())
        .with_context(|| format!("--{name} must be a positive number of seconds, not {value}"))
}

async fn worker(db: &database::DatabaseArgs, args: WorkerArgs) -> anyhow::Result<()> {
    let defaults = DaemonConfig::default();
    let types = args
        .types
        .map(|names| {
            names
                .iter()
                .map(|n| TypeName::new(n.trim()).with_context(|| format!("--types: {n:?}")))
                .collect::<anyhow::Result<Vec<_>>>()
        })
        .transpose()?;
    let config = DaemonConfig {
        concurrency: args.concurrency.unwrap_or(defaults.concurrency),
        types,
        poll_interval: Duration::from_millis(args.poll_interval_ms.max(1)),
        heartbeat_interval: seconds("heartbeat-secs", args.heartbeat_secs)?,
        dead_after: seconds("dead-after-secs", args.dead_after_secs)?,
        cleanup_interval: seconds("cleanup-interval-secs", args.cleanup_interval_secs)?,
        grace_period: Duration::try_from_secs_f64(args.grace_secs)
            .context("--grace-secs must be a non-negative number of seconds")?,
        ..defaults
    };
    let store = db.open().await?;
    let daemon = Daemon::new(store, Registry::with_builtins(), config);
    daemon.run(atp_daemon::shutdown_on_signals()).await?;
    Ok(())
}
