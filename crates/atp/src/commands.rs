//! Producer and operator commands: types, enqueue, look-ups, clean-up.

use std::io::Read as _;
use std::time::Duration;

use anyhow::Context as _;
use atp_core::{
    Due, Handler, NewTask, Status, Store, TaskFilter, TaskIdentifier, TaskRef, TaskType, TypeName,
};
use atp_store::AnyStore;
use clap::{Args, Subcommand};
use serde_json::{Value, json};

use crate::output::{log_json, print_json, task_json, task_line, type_json};

/// `atp type …`
#[derive(Debug, Subcommand)]
pub enum TypeCommand {
    /// Register a task type, or update it when it exists.
    ///
    /// Example: atp type register SequenceSum builtin:sum --timeout 600 --max-starts 3
    Register {
        /// The type's name (1–64 characters).
        name: String,
        /// What runs its tasks: builtin:NAME, exec:PROGRAM ARG…, or a name a
        /// program registers.
        handler: String,
        /// Seconds one attempt may run, and a held task may go without an
        /// update before it counts as abandoned.
        #[arg(long, default_value_t = 3600.0)]
        timeout: f64,
        /// Seconds finished tasks are kept (0 or less: forever).
        #[arg(long, default_value_t = -1.0, allow_negative_numbers = true)]
        retention: f64,
        /// Starts a task gets before it FAILS instead of being retried.
        #[arg(long, default_value_t = 3)]
        max_starts: u32,
        /// The priority of its tasks enqueued without one (higher runs
        /// first).
        #[arg(long, default_value_t = 0, allow_negative_numbers = true)]
        priority: i32,
        /// Retry a failed task after this long (e.g. 10s), doubling at each
        /// failure (with jitter), while it has starts left. Without it a
        /// failure is final.
        #[arg(long, value_name = "DURATION", value_parser = parse_duration)]
        retry_delay: Option<Duration>,
        /// The longest delay between retries (default: 1h, or the first
        /// delay if longer).
        #[arg(long, value_name = "DURATION", value_parser = parse_duration, requires = "retry_delay")]
        retry_max_delay: Option<Duration>,
        /// At most this many of its tasks run at once, across every daemon
        /// and host (a paused task keeps its place).
        #[arg(long, value_name = "N")]
        max_running: Option<u32>,
        #[command(flatten)]
        about: Box<AboutArgs>,
    },
    /// Remove a type (refused while it has tasks, unless --force).
    ///
    /// Example: atp type unregister SequenceSum --force
    Unregister {
        /// The type's name.
        name: String,
        /// Also delete its tasks, their logs, inputs and responses.
        #[arg(long)]
        force: bool,
    },
    /// List the registered types (with their pause state).
    ///
    /// Example: atp type list --json
    List,
    /// Show one type: its settings, description and schemas.
    ///
    /// Example: atp type show SequenceSum
    Show {
        /// The type's name.
        name: String,
    },
    /// Pause a type: no daemon on any host claims its tasks until it is
    /// resumed. Running tasks go on; enqueues are still accepted. Kept
    /// across restarts and re-registrations.
    ///
    /// Example: atp type pause SequenceSum
    Pause {
        /// The type's name.
        name: String,
    },
    /// Resume a paused type: its queued tasks are claimed again, in order.
    ///
    /// Example: atp type resume SequenceSum
    Resume {
        /// The type's name.
        name: String,
    },
}

/// What `atp type register` says about a type beyond how it runs: enough
/// to publish it as an OGC API – Processes process.
#[derive(Debug, Args)]
pub struct AboutArgs {
    /// A short human title.
    #[arg(long)]
    title: Option<String>,
    /// What the type does, for people choosing it.
    #[arg(long)]
    description: Option<String>,
    /// A word to find it by (repeat for more).
    #[arg(long = "keyword", value_name = "WORD")]
    keywords: Vec<String>,
    /// The version of its interface (default 1.0.0).
    #[arg(long = "version", value_name = "VERSION")]
    version: Option<String>,
    /// A JSON Schema file every task input must satisfy (`-`: stdin). An
    /// enqueue whose input does not is refused, naming the failing path.
    #[arg(long, value_name = "FILE")]
    input_schema: Option<String>,
    /// A JSON Schema file describing its responses (published, not
    /// enforced).
    #[arg(long, value_name = "FILE")]
    output_schema: Option<String>,
    /// Let a client wait up to this long for one of its tasks in one
    /// request (OGC synchronous execution), e.g. 30s.
    #[arg(long, value_name = "DURATION", value_parser = parse_duration)]
    sync_wait: Option<Duration>,
}

impl AboutArgs {
    fn into_about(self) -> anyhow::Result<atp_core::TypeAbout> {
        Ok(atp_core::TypeAbout {
            title: self.title,
            description: self.description,
            keywords: self.keywords,
            version: self.version,
            input_schema: self.input_schema.as_deref().map(read_schema).transpose()?,
            output_schema: self.output_schema.as_deref().map(read_schema).transpose()?,
            sync_wait_secs: self.sync_wait.map(|d| d.as_secs_f64()),
        })
    }
}

/// A JSON Schema from a file, or stdin for `-`.
fn read_schema(path: &str) -> anyhow::Result<Value> {
    let text = if path == "-" {
        let mut text = String::new();
        std::io::stdin()
            .read_to_string(&mut text)
            .context("cannot read the schema from stdin")?;
        text
    } else {
        std::fs::read_to_string(path).with_context(|| format!("cannot read schema file {path}"))?
    };
    serde_json::from_str(&text).with_context(|| format!("schema {path} is not valid JSON"))
}

/// `atp enqueue …`
#[derive(Debug, Args)]
pub struct EnqueueArgs {
    /// The task's type.
    task_type: String,
    /// The task's identifier, unique within its type. Leave it out when
    /// the task has no natural one: ATP makes one (a UUIDv7, so they sort
    /// by time) and prints it with the task.
    identifier: Option<String>,
    /// The input, as JSON (`-`: read it from stdin).
    #[arg(long, conflicts_with = "input_file")]
    input: Option<String>,
    /// Read the input (JSON) from this file, or `-` for stdin.
    #[arg(long)]
    input_file: Option<String>,
    /// The first log record's message.
    #[arg(long)]
    message: Option<String>,
    /// Higher runs first (default: the type's priority, 0 unless set).
    /// FIFO within a priority; a steady stream of higher-priority work
    /// starves lower-priority work.
    #[arg(long, allow_negative_numbers = true)]
    priority: Option<i32>,
    /// Run no sooner than this long from now, e.g. 90s, 15m, 1h 30m (on
    /// the database's clock). Queued at once, counted against the limit.
    #[arg(long = "in", value_name = "DURATION", value_parser = parse_duration, conflicts_with = "at")]
    delay: Option<std::time::Duration>,
    /// Run no sooner than this time, RFC 3339 (e.g. 2026-12-01T10:00:00Z).
    #[arg(long, value_name = "TIME", value_parser = parse_time)]
    at: Option<time::OffsetDateTime>,
}

/// A duration as people type it: `90s`, `15m`, `1h 30m`, `2days`.
pub fn parse_duration(text: &str) -> Result<std::time::Duration, String> {
    humantime::parse_duration(text).map_err(|e| format!("{e} (try e.g. 90s, 15m or 1h 30m)"))
}

/// An RFC 3339 date and time.
fn parse_time(text: &str) -> Result<time::OffsetDateTime, String> {
    time::OffsetDateTime::parse(text, &time::format_description::well_known::Rfc3339)
        .map_err(|e| format!("{e} (expected RFC 3339, e.g. 2026-12-01T10:00:00Z)"))
}

/// `atp tasks …`
#[derive(Debug, Args)]
pub struct TasksArgs {
    /// Only tasks in this status (name or code).
    #[arg(long)]
    status: Option<String>,
    /// Only tasks of this type.
    #[arg(long = "type")]
    task_type: Option<String>,
    /// At most this many, newest update first.
    #[arg(long, default_value_t = 100)]
    limit: u32,
}

fn type_name(text: &str) -> anyhow::Result<TypeName> {
    TypeName::new(text).with_context(|| format!("invalid type name {text:?}"))
}

fn identifier(text: &str) -> anyhow::Result<TaskIdentifier> {
    TaskIdentifier::new(text).with_context(|| format!("invalid task identifier {text:?}"))
}

fn key(task_type: &str, id: &str) -> anyhow::Result<TaskRef> {
    Ok(TaskRef::Key(type_name(task_type)?, identifier(id)?))
}

pub async fn type_command(store: &AnyStore, json: bool, cmd: TypeCommand) -> anyhow::Result<()> {
    match cmd {
        TypeCommand::Register {
            name,
            handler,
            timeout,
            retention,
            max_starts,
            priority,
            retry_delay,
            retry_max_delay,
            max_running,
            about,
        } => {
            let mut t = TaskType::new(
                type_name(&name)?,
                Handler::new(handler.as_str())
                    .with_context(|| format!("invalid handler {handler:?}"))?,
            );
            t.timeout_secs = timeout;
            t.retention_secs = retention;
            t.max_starts = max_starts;
            t.priority = priority;
            t.retry = retry_delay.map(|first| {
                let max = retry_max_delay.unwrap_or(Duration::from_secs(3600).max(first));
                atp_core::RetryPolicy {
                    delay_secs: first.as_secs_f64(),
                    max_delay_secs: max.as_secs_f64(),
                }
            });
            t.max_running = max_running;
            t.about = about.into_about()?;
            t.validate()?;
            store.task_type_upsert(&t).await?;
            // Read back: an existing type kept its pause.
            let t = store.task_type_get(&t.name).await?;
            if json {
                print_json(&type_json(&t));
            } else {
                say!("registered {} ({})", t.name.as_str(), t.handler.as_str());
            }
        }
        TypeCommand::Unregister { name, force } => {
            let deleted = store.task_type_delete(&type_name(&name)?, force).await?;
            if json {
                print_json(&json!({"name": name, "tasks_deleted": deleted}));
            } else {
                say!("unregistered {name} ({deleted} tasks deleted)");
            }
        }
        TypeCommand::List => {
            let types = store.task_type_list().await?;
            if json {
                print_json(&Value::Array(types.iter().map(type_json).collect()));
            } else {
                for t in &types {
                    let mut priority = if t.priority != 0 {
                        format!("  priority {}", t.priority)
                    } else {
                        String::new()
                    };
                    if let Some(n) = t.max_running {
                        priority.push_str(&format!("  max running {n}"));
                    }
                    if let Some(r) = &t.retry {
                        priority.push_str(&format!(
                            "  retry after {} s up to {} s",
                            r.delay_secs, r.max_delay_secs
                        ));
                    }
                    if t.about.input_schema.is_some() {
                        priority.push_str("  input schema");
                    }
                    say!(
                        "{:<24} {:<32} timeout {} s  retention {} s  max starts {}{priority}{}",
                        t.name.as_str(),
                        t.handler.as_str(),
                        t.timeout_secs,
                        t.retention_secs,
                        t.max_starts,
                        if t.paused { "  PAUSED" } else { "" }
                    );
                }
            }
        }
        TypeCommand::Show { name } => {
            let t = store.task_type_get(&type_name(&name)?).await?;
            if json {
                print_json(&type_json(&t));
            } else {
                show_type(&t);
            }
        }
        TypeCommand::Pause { name } => set_paused(store, json, &name, true).await?,
        TypeCommand::Resume { name } => set_paused(store, json, &name, false).await?,
    }
    Ok(())
}

/// `atp type show NAME` for people: one setting a line, schemas as
/// indented JSON.
fn show_type(t: &TaskType) {
    let about = &t.about;
    say!("name          {}", t.name.as_str());
    say!("handler       {}", t.handler.as_str());
    if let Some(title) = &about.title {
        say!("title         {title}");
    }
    say!("version       {}", about.version_or_default());
    if !about.keywords.is_empty() {
        say!("keywords      {}", about.keywords.join(", "));
    }
    say!("timeout       {} s", t.timeout_secs);
    say!("retention     {} s", t.retention_secs);
    say!("max starts    {}", t.max_starts);
    say!("priority      {}", t.priority);
    if let Some(r) = &t.retry {
        say!(
            "retry         after {} s, up to {} s",
            r.delay_secs,
            r.max_delay_secs
        );
    }
    if let Some(n) = t.max_running {
        say!("max running   {n}");
    }
    if let Some(secs) = about.sync_wait_secs {
        say!("sync wait     {secs} s");
    }
    say!("paused        {}", if t.paused { "yes" } else { "no" });
    if let Some(d) = &about.description {
        say!("description   {d}");
    }
    for (what, schema) in [
        ("input schema", &about.input_schema),
        ("output schema", &about.output_schema),
    ] {
        if let Some(schema) = schema {
            let text = serde_json::to_string_pretty(schema).unwrap_or_default();
            say!("{what}:");
            for line in text.lines() {
                say!("  {line}");
            }
        }
    }
}

/// `atp type pause|resume NAME`: an unknown type is not found (exit 3).
async fn set_paused(store: &AnyStore, json: bool, name: &str, paused: bool) -> anyhow::Result<()> {
    let t = store
        .task_type_set_paused(&type_name(name)?, paused)
        .await?;
    if json {
        print_json(&type_json(&t));
    } else if t.paused {
        say!("paused {name}: no daemon claims its tasks until it is resumed");
    } else {
        say!("resumed {name}");
    }
    Ok(())
}

fn read_input(args: &EnqueueArgs) -> anyhow::Result<Option<Value>> {
    let from_stdin = args.input.as_deref() == Some("-")
        || (args.input.is_none() && args.input_file.as_deref() == Some("-"));
    let text = match (&args.input, &args.input_file) {
        _ if from_stdin => {
            let mut text = String::new();
            std::io::stdin()
                .read_to_string(&mut text)
                .context("reading the input from stdin")?;
            text
        }
        (Some(text), _) => text.clone(),
        (None, Some(path)) => std::fs::read_to_string(path)
            .with_context(|| format!("reading the input file {path}"))?,
        (None, None) => return Ok(None),
    };
    let value = serde_json::from_str(&text).context("the input is not valid JSON")?;
    Ok(Some(value))
}

pub async fn enqueue(store: &AnyStore, json: bool, args: EnqueueArgs) -> anyhow::Result<()> {
    let input = read_input(&args)?;
    let task_type = type_name(&args.task_type)?;
    let mut task = match &args.identifier {
        Some(id) => NewTask::new(task_type, identifier(id)?),
        None => NewTask::generated(task_type),
    };
    if let Some(input) = input {
        task = task.with_input(input);
    }
    if let Some(message) = &args.message {
        task = task.with_message(message.clone());
    }
    task.priority = args.priority;
    task.due = match (args.delay, args.at) {
        (Some(delay), _) => Some(Due::After(delay)),
        (None, Some(at)) => Some(Due::At(at)),
        (None, None) => None,
    };
    let task = store.task_enqueue(task).await?;
    if json {
        print_json(&task_json(&task));
    } else {
        say!("{}", task_line(&task));
    }
    Ok(())
}

pub async fn status(store: &AnyStore, json: bool, task_type: &str, id: &str) -> anyhow::Result<()> {
    let task = store.task_get(&key(task_type, id)?).await?;
    if json {
        print_json(&task_json(&task));
    } else {
        say!("{}", task_line(&task));
    }
    Ok(())
}

pub async fn log(store: &AnyStore, json: bool, task_type: &str, id: &str) -> anyhow::Result<()> {
    let log = store.task_log(&key(task_type, id)?).await?;
    if json {
        print_json(&Value::Array(log.iter().map(log_json).collect()));
    } else {
        for r in &log {
            say!(
                "{}  {}  {}",
                crate::output::local_time(r.time),
                crate::output::status_text(r.status),
                r.message
            );
        }
    }
    Ok(())
}

pub async fn tasks(store: &AnyStore, json: bool, args: TasksArgs) -> anyhow::Result<()> {
    let status = args
        .status
        .as_deref()
        .map(|s| {
            s.parse::<Status>()
                .map_err(|e| anyhow::anyhow!("--status: {e}"))
        })
        .transpose()?;
    let filter = TaskFilter {
        status,
        task_type: args.task_type.as_deref().map(type_name).transpose()?,
        limit: args.limit,
        ..TaskFilter::default()
    };
    let page = store.task_list(&filter).await?;
    if json {
        print_json(&Value::Array(page.tasks.iter().map(task_json).collect()));
    } else {
        say!(
            "{:>8}  {:<9}  TYPE/IDENTIFIER, STARTS, LAST UPDATE, PROGRESS",
            "ID",
            "STATUS"
        );
        for t in &page.tasks {
            say!("{}", task_line(t));
        }
    }
    Ok(())
}

pub async fn stats(store: &AnyStore, json: bool) -> anyhow::Result<()> {
    let counts = store.task_counts().await?;
    let queued = store.queue_size().await?;
    let daemons = store.daemon_list().await?;
    if json {
        print_json(&crate::output::to_json(&atp_server::wire::StatsView::new(
            &counts,
            queued,
            daemons.len(),
        )));
    } else {
        for (s, n) in &counts.by_status {
            say!("{:<9} {n}", s.name());
        }
        say!("queued    {queued}");
        say!("daemons   {}", daemons.len());
    }
    Ok(())
}

pub async fn cleanup(store: &AnyStore, json: bool) -> anyhow::Result<()> {
    // The same clean-up a daemon runs, with a daemon's default settings.
    let defaults = atp_daemon::DaemonConfig::default();
    let report = atp_daemon::cleanup_once(store, defaults.dead_rule(), defaults.retire_batch).await;
    if json {
        print_json(&json!({
            "abandoned": report.abandoned,
            "retired": report.retired,
            "dead_daemons": report.dead_daemons,
            "rescued": report.rescued,
        }));
    } else {
        say!(
            "abandoned tasks handled: {}, retired tasks deleted: {}, dead daemons removed: {} ({} tasks rescued)",
            report.abandoned,
            report.retired,
            report.dead_daemons,
            report.rescued
        );
    }
    Ok(())
}

pub async fn response(
    store: &AnyStore,
    json: bool,
    task_type: &str,
    id: &str,
    output: Option<&str>,
) -> anyhow::Result<()> {
    let task = key(task_type, id)?;
    let Some(response) = store.task_response_get(&task).await? else {
        anyhow::bail!("task {task_type}/{id} has no response yet");
    };
    if let Some(path) = output {
        std::fs::write(path, &response.body).with_context(|| format!("writing {path}"))?;
    }
    if json {
        let mut value = json!({"mime_type": response.mime_type, "size": response.body.len()});
        if output.is_none() {
            match std::str::from_utf8(&response.body) {
                Ok(text) => value["text"] = json!(text),
                Err(_) => value["note"] = json!("binary body: use --output FILE"),
            }
        }
        print_json(&value);
    } else if output.is_none() {
        use std::io::Write as _;
        std::io::stdout()
            .write_all(&response.body)
            .context("writing the response to stdout")?;
    }
    Ok(())
}

pub async fn delete(store: &AnyStore, json: bool, task_type: &str, id: &str) -> anyhow::Result<()> {
    store.task_delete(&key(task_type, id)?).await?;
    if json {
        print_json(&json!({"deleted": {"type": task_type, "identifier": id}}));
    } else {
        say!("deleted {task_type}/{id}");
    }
    Ok(())
}

pub async fn reenqueue(
    store: &AnyStore,
    json: bool,
    task_type: &str,
    id: &str,
    message: Option<&str>,
) -> anyhow::Result<()> {
    let task = store
        .task_reenqueue(&key(task_type, id)?, message.unwrap_or(""))
        .await?;
    if json {
        print_json(&task_json(&task));
    } else {
        say!("{}", task_line(&task));
    }
    Ok(())
}

/// `atp cancel T ID [--message M]`: the task as it now is (CANCELLED).
/// A task that ended already is refused (exit 4, the store's
/// `InvalidTransition`).
pub async fn cancel(
    store: &AnyStore,
    json: bool,
    task_type: &str,
    id: &str,
    message: Option<&str>,
) -> anyhow::Result<()> {
    let task = store.task_cancel(&key(task_type, id)?, message).await?;
    if json {
        print_json(&task_json(&task));
    } else {
        say!("{}", task_line(&task));
    }
    Ok(())
}

/// `atp reenqueue --status S [--type T]`: every such task back in the
/// queue in one transaction; prints how many.
pub async fn reenqueue_all(
    store: &AnyStore,
    json: bool,
    status: &str,
    task_type: Option<&str>,
    message: Option<&str>,
) -> anyhow::Result<()> {
    let status = status
        .parse::<Status>()
        .map_err(|e| anyhow::anyhow!("--status: {e}"))?;
    let bulk = atp_core::BulkReenqueue {
        status,
        task_type: task_type.map(type_name).transpose()?,
        message: message.unwrap_or("").to_owned(),
    };
    let n = store.task_reenqueue_all(&bulk).await?;
    if json {
        print_json(&json!({
            "reenqueued": n,
            "status": status.name(),
            "type": task_type,
        }));
    } else {
        let of_type = task_type
            .map(|t| format!(" of type {t}"))
            .unwrap_or_default();
        say!(
            "re-enqueued {n} {} task{}{of_type}",
            status.name(),
            if n == 1 { "" } else { "s" }
        );
    }
    Ok(())
}

/// How `atp wait` ended.
pub enum Waited {
    /// FINISHED (exit 0).
    Finished,
    /// FAILED (exit 6).
    Failed,
    /// CANCELLED by an operator (exit 8): it will not finish either.
    Cancelled,
    /// Still not done when the timeout ran out (exit 7).
    TimedOut,
}

pub async fn wait(
    store: &AnyStore,
    json: bool,
    task_type: &str,
    id: &str,
    timeout: Option<f64>,
) -> anyhow::Result<Waited> {
    use std::io::IsTerminal as _;
    let task_ref = key(task_type, id)?;
    let deadline = match timeout {
        Some(secs) => Some(
            tokio::time::Instant::now()
                + Duration::try_from_secs_f64(secs)
                    .context("--timeout must be a non-negative number of seconds")?,
        ),
        None => None,
    };
    let live = !json && std::io::stderr().is_terminal();
    loop {
        let task = store.task_get(&task_ref).await?;
        if live {
            eprint!("\r\x1b[2K{}", task_line(&task));
        }
        let outcome = match task.status {
            Status::Finished => Some(Waited::Finished),
            Status::Failed => Some(Waited::Failed),
            Status::Cancelled => Some(Waited::Cancelled),
            _ if deadline.is_some_and(|d| tokio::time::Instant::now() >= d) => {
                Some(Waited::TimedOut)
            }
            _ => None,
        };
        if let Some(outcome) = outcome {
            if live {
                eprintln!();
            }
            if json {
                print_json(&task_json(&task));
            } else if !live {
                say!("{}", task_line(&task));
            }
            return Ok(outcome);
        }
        store.wait_for_tasks(Duration::from_millis(200)).await;
    }
}

pub async fn info(store: &AnyStore, json: bool, url: &str) -> anyhow::Result<()> {
    let version = store.schema_version().await?;
    let counts = store.task_counts().await?;
    let total: u64 = counts.by_status.iter().map(|(_, n)| n).sum();
    let types = store.task_type_list().await?.len();
    if json {
        print_json(&json!({
            "version": env!("CARGO_PKG_VERSION"),
            "database": url,
            "engine": store.engine(),
            "schema_version": version,
            "types": types,
            "tasks": total,
            "queue_size": store.queue_size().await?,
        }));
    } else {
        say!("atp {}", env!("CARGO_PKG_VERSION"));
        say!("database        {url}");
        say!("engine          {}", store.engine());
        say!("schema version  {version}");
        say!("types           {types}");
        say!("tasks           {total}");
    }
    Ok(())
}
