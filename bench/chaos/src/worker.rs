//! `atp-chaos worker`: the daemon `atp worker` runs (the library's
//! `Daemon` with `DaemonConfig::default()` and the builtins), plus the
//! journaling handler `chaos:journal`.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use atp_core::StoreOptions;
use atp_daemon::{Daemon, DaemonConfig, HandlerError, HandlerResult, Registry, TaskContext};

use crate::journal::{self, Journal, Line, Outcome};

/// The handler name of the journaling handler.
pub const HANDLER: &str = "chaos:journal";

/// `atp-chaos worker` flags.
#[derive(Debug, clap::Args)]
pub struct WorkerArgs {
    /// The database (as `atp --database`).
    #[arg(long)]
    pub database: String,
    /// This process's journal file.
    #[arg(long)]
    pub journal: PathBuf,
    /// Attempts at once (`atp worker -c`); the library's default otherwise.
    #[arg(long)]
    pub concurrency: Option<usize>,
    /// While this file exists, every attempt fails (the retry storm).
    #[arg(long)]
    pub fail_flag: Option<PathBuf>,
}

/// Runs the daemon until SIGTERM/SIGINT (or its death).
pub async fn run(args: WorkerArgs) -> anyhow::Result<()> {
    // Signals first, as `atp worker` does.
    let shutdown = atp_daemon::shutdown_on_signals();
    let journal = Arc::new(Journal::open(&args.journal)?);
    let store = atp_store::open(&args.database, StoreOptions::default())
        .await
        .with_context(|| format!("opening {}", args.database))?;
    let mut registry = Registry::with_builtins();
    // `exec:` types are for the real `atp worker` processes of the cancel
    // storm; these daemons run only the journaling handler (and builtins).
    registry.allow_exec(false);
    let fail_flag = args.fail_flag.map(Arc::new);
    let pid = std::process::id();
    registry.register(HANDLER, move |ctx: TaskContext| {
        let journal = journal.clone();
        let fail_flag = fail_flag.clone();
        async move { handle(ctx, &journal, fail_flag.as_deref(), pid).await }
    });
    let defaults = DaemonConfig::default();
    let config = DaemonConfig {
        concurrency: args.concurrency.unwrap_or(defaults.concurrency),
        ..defaults
    };
    Daemon::new(store, registry, config).run(shutdown).await?;
    Ok(())
}

/// One attempt: `start` line, the input's sleep (so that two attempts of
/// one task could be seen to overlap), `end` line, success — or failure
/// while the storm's flag file exists.
async fn handle(
    ctx: TaskContext,
    journal: &Journal,
    fail_flag: Option<&PathBuf>,
    pid: u32,
) -> HandlerResult {
    let identifier = ctx.identifier().to_string();
    let lease = ctx.attempt().lease;
    journal.append(&Line::Start {
        identifier: identifier.clone(),
        lease,
        pid,
        mono: journal::mono_us(),
        utc: journal::utc_us(),
        ready: journal::micros(ctx.enqueued_at()),
        start: ctx.start(),
    })?;
    let sleep_ms = ctx
        .input()
        .get("sleep_ms")
        .and_then(|v| v.as_u64())
        .unwrap_or(10);
    let cancelled = tokio::select! {
        () = tokio::time::sleep(Duration::from_millis(sleep_ms)) => false,
        () = ctx.cancelled() => true,
    };
    let outcome = if cancelled {
        Outcome::Cancelled
    } else if fail_flag.is_some_and(|f| f.exists()) {
        Outcome::Fail
    } else {
        Outcome::Ok
    };
    journal.append(&Line::End {
        identifier,
        lease,
        pid,
        mono: journal::mono_us(),
        utc: journal::utc_us(),
        outcome,
    })?;
    match outcome {
        Outcome::Ok => Ok(()),
        Outcome::Fail => Err(HandlerError::new("chaos: the retry storm's flag is up")),
        Outcome::Cancelled => Err(HandlerError::new("chaos: attempt cancelled")),
    }
}
