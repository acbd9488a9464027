//! `atp`: the command line: the daemon (`atp daemon`, alias `atp worker`)
//! and the producer and operator commands. Exit codes: 0 success, 1 error, 2 usage, 3 not found,
//! 4 conflict, 5 queue full.

/// `println!` that ends the process quietly when stdout is a closed pipe
/// (`atp tasks | head -1`) instead of panicking.
macro_rules! say {
    ($($arg:tt)*) => { $crate::output::write_line(format_args!($($arg)*)) };
}

mod bench;
mod commands;
mod database;
mod demo;
mod logging;
mod output;
mod schedule;
mod serve;

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
    /// Machine-readable output on stdout (JSON, RFC 3339 UTC times).
    #[arg(long, global = true)]
    json: bool,
    /// How log lines on stderr look: `text` for people (coloured only on a
    /// terminal without NO_COLOR) or `json`, one object per line, for log
    /// collectors.
    #[arg(
        long,
        global = true,
        value_enum,
        default_value_t = logging::LogFormat::Text,
        env = "ATP_LOG_FORMAT"
    )]
    log_format: logging::LogFormat,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run a daemon: claim tasks from the queue and run them until SIGINT or
    /// SIGTERM (a second signal aborts running tasks; none is lost).
    ///
    /// Example: atp --database postgres://atp@db/atp daemon --concurrency 8
    #[command(visible_alias = "worker")]
    Daemon(DaemonArgs),
    /// Serve the HTTP API (/api/v1, OpenAPI at /api/v1/openapi.json),
    /// /metrics and the live dashboard (/), with a daemon in the same
    /// process unless --no-daemon.
    ///
    /// Example: atp serve --listen 127.0.0.1:8080 --concurrency 8
    Serve(serve::ServeArgs),
    /// Register, remove and list task types.
    #[command(subcommand)]
    Type(commands::TypeCommand),
    /// Periodic tasks: add, list, remove, pause and resume schedules
    /// (cron expressions, optionally with seconds, in an IANA time zone).
    #[command(subcommand)]
    Schedule(schedule::ScheduleCommand),
    /// Enqueue a task.
    ///
    /// Without an identifier, ATP makes one (a UUIDv7, so they sort by
    /// time) and prints it with the task (with --json, as `identifier`).
    ///
    /// Example: atp enqueue SequenceSum job-1 --input '[1, 2, 3]'
    ///
    /// Example, no identifier: atp --json enqueue SequenceSum --input '[4, 5]'
    Enqueue(commands::EnqueueArgs),
    /// A task's status.
    ///
    /// Example: atp status SequenceSum job-1 --json
    Status {
        /// The task's type.
        task_type: String,
        /// The task's identifier.
        identifier: String,
    },
    /// A task's log, oldest first.
    ///
    /// Example: atp log SequenceSum job-1
    Log {
        /// The task's type.
        task_type: String,
        /// The task's identifier.
        identifier: String,
    },
    /// List tasks, newest update first.
    ///
    /// Example: atp tasks --status failed --type SequenceSum --limit 20
    Tasks(commands::TasksArgs),
    /// Counts by status and type, queue size, live daemons.
    ///
    /// Example: atp stats --json
    Stats,
    /// A task's response: the raw bytes to stdout or a file; with --json,
    /// its MIME type, size and (for text) the text.
    ///
    /// Example: atp response SequenceSum job-1 --output result.txt
    Response {
        /// The task's type.
        task_type: String,
        /// The task's identifier.
        identifier: String,
        /// Write the bytes to this file.
        #[arg(long)]
        output: Option<String>,
    },
    /// Delete a task with its log, input and response.
    ///
    /// Example: atp delete SequenceSum job-1
    Delete {
        /// The task's type.
        task_type: String,
        /// The task's identifier.
        identifier: String,
    },
    /// Put a task back in the queue (any status but ACCEPTED); its start
    /// count starts again from 0. With --status instead of a task: every
    /// task in that status (of --type, if given), all in one transaction,
    /// and say how many.
    ///
    /// Examples: atp reenqueue SequenceSum job-1 --message "input fixed";
    /// atp reenqueue --status failed --type SequenceSum
    Reenqueue {
        /// The task's type.
        #[arg(required_unless_present = "status", conflicts_with = "status")]
        task_type: Option<String>,
        /// The task's identifier.
        #[arg(required_unless_present = "status", conflicts_with = "status")]
        identifier: Option<String>,
        /// Every task in this status (any but ACCEPTED; case-insensitive).
        #[arg(long)]
        status: Option<String>,
        /// With --status: only tasks of this type.
        #[arg(long = "type", value_name = "TYPE", requires = "status")]
        of_type: Option<String>,
        /// The log record's message.
        #[arg(long)]
        message: Option<String>,
    },
    /// Stop a task: a queued one never runs; a running or paused one is
    /// CANCELLED at once and its daemon stops the handler (an exec: program
    /// gets SIGTERM, then SIGKILL after the daemon's --cancel-grace).
    /// A task that ended already is refused (exit 4). Re-enqueue brings a
    /// cancelled task back.
    ///
    /// Example: atp cancel SequenceSum job-1 --message "wrong input"
    Cancel {
        /// The task's type.
        task_type: String,
        /// The task's identifier.
        identifier: String,
        /// Why (the log says "Cancelled: MESSAGE").
        #[arg(long)]
        message: Option<String>,
    },
    /// Wait until a task is FINISHED (exit 0), FAILED (exit 6) or CANCELLED
    /// (exit 8); exit 7 if --timeout runs out first. Shows a live status
    /// line on a terminal.
    ///
    /// Example: atp wait SequenceSum job-1 --timeout 60
    Wait {
        /// The task's type.
        task_type: String,
        /// The task's identifier.
        identifier: String,
        /// Give up after this many seconds.
        #[arg(long)]
        timeout: Option<f64>,
    },
    /// The original SequenceSum demo, end to end, in a temporary database:
    /// a few tasks (one with invalid input), a daemon in this process, the
    /// statuses as they change, then each task's log and response.
    ///
    /// Example: atp demo
    Demo,
    /// Measure the chosen database: enqueue rate, end-to-end no-op rate
    /// with one in-process daemon, and pick-up latency (p50/p99); with
    /// --producers, concurrent single enqueues; with --backlog, a deep
    /// queue; with --duration, a steady state instead.
    ///
    /// Example: atp --database postgres://postgres@127.0.0.1/postgres bench --tasks 20000
    Bench(bench::BenchArgs),
    /// Print a shell completion script.
    ///
    /// Example: atp completions bash > /etc/bash_completion.d/atp
    Completions {
        /// bash, zsh, fish, elvish or powershell.
        shell: clap_complete::Shell,
    },
    /// Version, database, engine, schema version and counts.
    ///
    /// Example: atp info --json
    Info,
    /// Re-enqueue abandoned tasks, delete retired ones and remove dead
    /// daemons, once, printing what was done.
    ///
    /// Example: atp cleanup
    Cleanup,
}

#[derive(Debug, Args)]
/// The daemon's flags, shared by `daemon` and `serve`.
pub struct DaemonArgs {
    /// Tasks run at once [default: the number of CPUs].
    #[arg(long, short = 'c')]
    concurrency: Option<usize>,
    /// Only tasks of these types (comma-separated).
    #[arg(long, value_delimiter = ',')]
    types: Option<Vec<String>>,
    /// Milliseconds an idle daemon waits before looking at the queue again.
    #[arg(long, default_value_t = default_config().poll_interval.as_millis())]
    poll_interval_ms: u128,
    /// Seconds between heartbeats.
    #[arg(long, default_value_t = default_config().heartbeat_interval.as_secs_f64())]
    heartbeat_secs: f64,
    /// Seconds of silence after which a daemon is dead and its tasks rescued.
    #[arg(long, default_value_t = default_config().dead_after.as_secs_f64())]
    dead_after_secs: f64,
    /// Seconds of silence after which a daemon whose process is shown gone
    /// (PostgreSQL: its connection closed; SQLite: its pid gone from this
    /// host) is dead and its tasks rescued.
    #[arg(long, default_value_t = default_config().gone_after.as_secs_f64())]
    gone_after_secs: f64,
    /// Seconds between clean-ups (abandoned, retired tasks, dead daemons).
    #[arg(long, default_value_t = default_config().cleanup_interval.as_secs_f64())]
    cleanup_interval_secs: f64,
    /// Seconds a graceful shutdown lets running tasks finish.
    #[arg(long, default_value_t = default_config().grace_period.as_secs_f64())]
    grace_secs: f64,
    /// How long an exec: program whose task is cancelled has to exit after
    /// SIGTERM before its whole process group is killed (e.g. 5s, 500ms).
    #[arg(long, value_name = "DURATION", value_parser = grace_duration,
          default_value = "5s")]
    cancel_grace: Duration,
    /// Run no `exec:` handlers (external programs): tasks of such types
    /// are left to other daemons. For daemons whose task types untrusted
    /// callers may register (e.g. over the HTTP API).
    #[arg(long)]
    no_exec: bool,
    /// Enqueue no schedules' occurrences (other daemons do; by default
    /// every daemon takes part, each occurrence enqueued once between them).
    #[arg(long)]
    no_schedules: bool,
}

/// The daemon crate's defaults: the flags' defaults come from here, so
/// `--help` and a daemon started without flags agree with the library.
fn default_config() -> DaemonConfig {
    DaemonConfig::default()
}

/// The handlers a daemon started with these flags can run.
pub fn registry(args: &DaemonArgs) -> Registry {
    let mut registry = Registry::with_builtins();
    registry.allow_exec(!args.no_exec);
    registry
}

fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    // Before any thread starts: reading the local offset is only sound then.
    output::init_human();
    // The daemon narrates; one-shot commands speak only of trouble.
    let default_level = if matches!(cli.command, Command::Daemon(_) | Command::Serve(_)) {
        "info"
    } else {
        "warn"
    };
    logging::init(cli.log_format, default_level);
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("atp: cannot start the async runtime: {e}");
            return std::process::ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(cli)) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        // `wait`'s outcomes are exit codes, not errors to print.
        Err(e) if e.downcast_ref::<Exit>().is_some() => {
            std::process::ExitCode::from(output::exit_code(&e))
        }
        Err(e) => {
            eprintln!("atp: {e:#}");
            std::process::ExitCode::from(output::exit_code(&e))
        }
    }
}

async fn run(cli: Cli) -> anyhow::Result<()> {
    let json = cli.json;
    match cli.command {
        Command::Daemon(args) => return daemon(&cli.database, args).await,
        Command::Serve(args) => return serve::run(&cli.database, args).await,
        Command::Demo => return demo::run(json).await,
        Command::Completions { shell } => {
            use clap::CommandFactory as _;
            use std::io::Write as _;
            // Into a buffer first: clap_complete panics when its writer fails
            // (`atp completions bash | head`).
            let mut script = Vec::new();
            clap_complete::generate(shell, &mut Cli::command(), "atp", &mut script);
            return match std::io::stdout().write_all(&script) {
                Err(e) if e.kind() != std::io::ErrorKind::BrokenPipe => {
                    Err(anyhow::Error::new(e).context("writing the completion script"))
                }
                _ => Ok(()),
            };
        }
        _ => {}
    }
    let store = cli.database.open().await?;
    match cli.command {
        Command::Daemon(_) | Command::Serve(_) | Command::Demo | Command::Completions { .. } => {
            unreachable!("handled above")
        }
        Command::Bench(args) => bench::run(&store, &cli.database.url()?, json, args).await,
        Command::Type(cmd) => commands::type_command(&store, json, cmd).await,
        Command::Schedule(cmd) => schedule::run(&store, json, cmd).await,
        Command::Enqueue(args) => commands::enqueue(&store, json, args).await,
        Command::Status {
            task_type,
            identifier,
        } => commands::status(&store, json, &task_type, &identifier).await,
        Command::Log {
            task_type,
            identifier,
        } => commands::log(&store, json, &task_type, &identifier).await,
        Command::Tasks(args) => commands::tasks(&store, json, args).await,
        Command::Stats => commands::stats(&store, json).await,
        Command::Cleanup => commands::cleanup(&store, json).await,
        Command::Response {
            task_type,
            identifier,
            output,
        } => commands::response(&store, json, &task_type, &identifier, output.as_deref()).await,
        Command::Delete {
            task_type,
            identifier,
        } => commands::delete(&store, json, &task_type, &identifier).await,
        Command::Reenqueue {
            task_type: Some(task_type),
            identifier: Some(identifier),
            status: None,
            message,
            ..
        } => commands::reenqueue(&store, json, &task_type, &identifier, message.as_deref()).await,
        Command::Reenqueue {
            status: Some(status),
            of_type,
            message,
            ..
        } => {
            commands::reenqueue_all(
                &store,
                json,
                &status,
                of_type.as_deref(),
                message.as_deref(),
            )
            .await
        }
        Command::Reenqueue { .. } => {
            unreachable!("clap requires a task or --status, not both")
        }
        Command::Cancel {
            task_type,
            identifier,
            message,
        } => commands::cancel(&store, json, &task_type, &identifier, message.as_deref()).await,
        Command::Wait {
            task_type,
            identifier,
            timeout,
        } => match commands::wait(&store, json, &task_type, &identifier, timeout).await? {
            commands::Waited::Finished => Ok(()),
            commands::Waited::Failed => Err(Exit(output::exit::FAILED).into()),
            commands::Waited::Cancelled => Err(Exit(output::exit::CANCELLED).into()),
            commands::Waited::TimedOut => Err(Exit(output::exit::TIMED_OUT).into()),
        },
        Command::Info => commands::info(&store, json, &cli.database.url()?).await,
    }
}

/// An exit code that is an answer, not an error (`atp wait`).
#[derive(Debug)]
pub struct Exit(pub u8);

impl std::fmt::Display for Exit {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "exit {}", self.0)
    }
}

impl std::error::Error for Exit {}

/// A duration as people write it: a non-negative number with an optional
/// unit, `ms`, `s` (the default) or `m`: `5s`, `500ms`, `1.5`, `1m`.
fn grace_duration(text: &str) -> Result<Duration, String> {
    let text = text.trim();
    let (number, unit) = match text.find(|c: char| c.is_ascii_alphabetic()) {
        Some(at) => text.split_at(at),
        None => (text, "s"),
    };
    let scale = match unit {
        "ms" => 0.001,
        "s" => 1.0,
        "m" => 60.0,
        _ => return Err(format!("unknown unit {unit:?} (use ms, s or m)")),
    };
    number
        .trim()
        .parse::<f64>()
        .ok()
        .and_then(|n| Duration::try_from_secs_f64(n * scale).ok())
        .ok_or_else(|| format!("{text:?} is not a duration such as 5s or 500ms"))
}

fn seconds(name: &str, value: f64) -> anyhow::Result<Duration> {
    Duration::try_from_secs_f64(value)
        .ok()
        .filter(|d| !d.is_zero())
        .with_context(|| format!("--{name} must be a positive number of seconds, not {value}"))
}

async fn daemon(db: &database::DatabaseArgs, args: DaemonArgs) -> anyhow::Result<()> {
    let config = daemon_config(&args)?;
    // Signals first: a SIGTERM soon after start must stop gracefully.
    let shutdown = atp_daemon::shutdown_on_signals();
    let store = db.open().await?;
    let daemon = Daemon::new(store, registry(&args), config);
    daemon.run(shutdown).await?;
    Ok(())
}

/// The daemon's settings from its flags (shared by `serve`).
pub fn daemon_config(args: &DaemonArgs) -> anyhow::Result<DaemonConfig> {
    let defaults = DaemonConfig::default();
    let types = args
        .types
        .as_ref()
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
        poll_interval: Duration::from_millis(
            u64::try_from(args.poll_interval_ms.max(1))
                .context("--poll-interval-ms is too large")?,
        ),
        heartbeat_interval: seconds("heartbeat-secs", args.heartbeat_secs)?,
        dead_after: seconds("dead-after-secs", args.dead_after_secs)?,
        gone_after: seconds("gone-after-secs", args.gone_after_secs)?,
        cleanup_interval: seconds("cleanup-interval-secs", args.cleanup_interval_secs)?,
        grace_period: Duration::try_from_secs_f64(args.grace_secs)
            .context("--grace-secs must be a non-negative number of seconds")?,
        schedules: !args.no_schedules,
        cancel_grace: args.cancel_grace,
        ..defaults
    };
    Ok(config)
}

#[cfg(test)]
mod tests {
    use clap::Parser as _;

    use super::*;

    fn daemon_args(args: &[&str]) -> DaemonArgs {
        let cli = Cli::try_parse_from(["atp", "daemon"].iter().chain(args)).unwrap();
        match cli.command {
            Command::Daemon(args) => args,
            other => panic!("parsed as {other:?}"),
        }
    }

    #[test]
    fn a_daemon_without_flags_has_the_libraries_defaults() {
        let got = daemon_config(&daemon_args(&[])).unwrap();
        let want = DaemonConfig::default();
        assert_eq!(got.poll_interval, want.poll_interval);
        assert_eq!(got.heartbeat_interval, want.heartbeat_interval);
        assert_eq!(got.dead_after, want.dead_after);
        assert_eq!(got.gone_after, want.gone_after);
        assert_eq!(got.cleanup_interval, want.cleanup_interval);
        assert_eq!(got.grace_period, want.grace_period);
        assert_eq!(got.retire_batch, want.retire_batch);
        assert_eq!(got.concurrency, want.concurrency);
        assert!(got.schedules, "every daemon enqueues schedules by default");
        assert!(
            !daemon_config(&daemon_args(&["--no-schedules"]))
                .unwrap()
                .schedules
        );
        assert_eq!(got.cancel_grace, want.cancel_grace);
    }

    #[test]
    fn the_cancel_grace_is_a_duration_people_write() {
        let grace = |text: &str| daemon_config(&daemon_args(&["--cancel-grace", text]));
        assert_eq!(
            grace("500ms").unwrap().cancel_grace,
            Duration::from_millis(500)
        );
        assert_eq!(grace("2s").unwrap().cancel_grace, Duration::from_secs(2));
        assert_eq!(
            grace("1.5").unwrap().cancel_grace,
            Duration::from_millis(1500)
        );
        assert_eq!(grace("1m").unwrap().cancel_grace, Duration::from_secs(60));
        assert_eq!(grace("0s").unwrap().cancel_grace, Duration::ZERO);
        for bad in ["-1s", "5h", "soon", ""] {
            let parsed = Cli::try_parse_from(["atp", "daemon", "--cancel-grace", bad]);
            assert!(parsed.is_err(), "{bad:?} was accepted");
        }
    }

    #[test]
    fn worker_and_no_workers_are_the_old_names() {
        let cli = Cli::try_parse_from(["atp", "worker", "-c", "3"]).unwrap();
        assert!(matches!(
            cli.command,
            Command::Daemon(DaemonArgs {
                concurrency: Some(3),
                ..
            })
        ));
        let cli = Cli::try_parse_from(["atp", "serve", "--no-workers"]).unwrap();
        let Command::Serve(args) = cli.command else {
            panic!("not serve")
        };
        assert!(args.no_daemon);
    }
}
