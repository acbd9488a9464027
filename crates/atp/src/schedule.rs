//! `atp schedule …`: periodic tasks. Every argument is validated before the
//! store is asked (a bad expression, time zone or name is exit 1 and stores
//! nothing); an unknown type or schedule is exit 3.

use anyhow::Context as _;
use atp_core::{CatchUp, NewSchedule, Recurrence, ScheduleName, Store, TypeName};
use atp_store::AnyStore;
use clap::Subcommand;
use serde_json::Value;

use crate::output::{local_time, print_json, schedule_json};

/// `atp schedule …`
#[derive(Debug, Subcommand)]
pub enum ScheduleCommand {
    /// Add a schedule, or change the one with that name (which keeps its
    /// pause and its last enqueued occurrence). Every daemon (unless
    /// --no-schedules) enqueues each occurrence exactly once, as a task of
    /// TYPE named NAME@ and the occurrence's UTC time.
    ///
    /// Example: atp schedule add nightly Report "0 2 * * *" --timezone Europe/Vienna --input '{"full": true}'
    ///
    /// Example, every 10 seconds: atp schedule add ping Ping "*/10 * * * * *"
    Add {
        /// The schedule's name (1–43 characters).
        name: String,
        /// The type of the tasks it enqueues (registered).
        task_type: String,
        /// Cron expression: "min hour day month weekday", or six fields
        /// with seconds first.
        expression: String,
        /// The input of every task, as JSON.
        #[arg(long)]
        input: Option<String>,
        /// IANA time zone the expression is read in.
        #[arg(long, default_value = "UTC")]
        timezone: String,
        /// Occurrences missed while no daemon ran (or while paused), more
        /// than 30 s late: `none` skips them, `last` enqueues the most
        /// recent one once.
        #[arg(long, default_value = "none", value_parser = ["last", "none"])]
        catch_up: String,
    },
    /// List the schedules with their next and last enqueued occurrence.
    ///
    /// Example: atp schedule list --json
    List,
    /// Remove a schedule (the tasks it enqueued stay).
    ///
    /// Example: atp schedule remove nightly
    Remove {
        /// The schedule's name.
        name: String,
    },
    /// Pause a schedule: nothing is enqueued until it is resumed.
    ///
    /// Example: atp schedule pause nightly
    Pause {
        /// The schedule's name.
        name: String,
    },
    /// Resume a paused schedule (what it missed meanwhile follows its
    /// catch-up).
    ///
    /// Example: atp schedule resume nightly
    Resume {
        /// The schedule's name.
        name: String,
    },
}

fn schedule_name(text: &str) -> anyhow::Result<ScheduleName> {
    ScheduleName::new(text).with_context(|| format!("invalid schedule name {text:?}"))
}

/// Runs one `atp schedule` command.
pub async fn run(store: &AnyStore, json: bool, cmd: ScheduleCommand) -> anyhow::Result<()> {
    match cmd {
        ScheduleCommand::Add {
            name,
            task_type,
            expression,
            input,
            timezone,
            catch_up,
        } => {
            let name = schedule_name(&name)?;
            let task_type = TypeName::new(task_type.as_str())
                .with_context(|| format!("invalid type name {task_type:?}"))?;
            let recurrence = Recurrence::new(&expression, &timezone)?;
            let catch_up: CatchUp = catch_up.parse()?;
            let input: Value = match input {
                Some(text) => serde_json::from_str(&text).context("--input is not valid JSON")?,
                None => Value::Null,
            };
            let new = NewSchedule::new(name, task_type, recurrence)
                .with_input(input)
                .with_catch_up(catch_up);
            let s = store.schedule_upsert(&new).await?;
            if json {
                print_json(&schedule_json(&s));
            } else {
                let next = s
                    .next_occurrence(time::OffsetDateTime::now_utc())
                    .map_or_else(|| "none (paused)".to_owned(), local_time);
                say!(
                    "scheduled {} ({} \"{}\" in {}); next at {next}",
                    s.name,
                    s.task_type,
                    s.recurrence.expression(),
                    s.recurrence.timezone()
                );
            }
        }
        ScheduleCommand::List => {
            let schedules = store.schedule_list().await?;
            if json {
                print_json(&Value::Array(schedules.iter().map(schedule_json).collect()));
            } else {
                let now = time::OffsetDateTime::now_utc();
                for s in &schedules {
                    let next = s
                        .next_occurrence(now)
                        .map_or_else(|| "-".to_owned(), local_time);
                    let last = s.last_enqueued.map_or_else(|| "-".to_owned(), local_time);
                    say!(
                        "{:<24} {:<24} {:<20} {:<16} catch-up {}  next {next}  last {last}{}",
                        s.name.as_str(),
                        s.task_type.as_str(),
                        s.recurrence.expression(),
                        s.recurrence.timezone(),
                        s.catch_up,
                        if s.paused { "  PAUSED" } else { "" }
                    );
                }
            }
        }
        ScheduleCommand::Remove { name } => {
            let name = schedule_name(&name)?;
            store.schedule_delete(&name).await?;
            if json {
                print_json(&serde_json::json!({ "name": name.as_str() }));
            } else {
                say!("removed schedule {name}");
            }
        }
        ScheduleCommand::Pause { name } => set_paused(store, json, &name, true).await?,
        ScheduleCommand::Resume { name } => set_paused(store, json, &name, false).await?,
    }
    Ok(())
}

async fn set_paused(store: &AnyStore, json: bool, name: &str, paused: bool) -> anyhow::Result<()> {
    let s = store
        .schedule_set_paused(&schedule_name(name)?, paused)
        .await?;
    if json {
        print_json(&schedule_json(&s));
    } else if paused {
        say!("paused schedule {}", s.name);
    } else {
        say!("resumed schedule {}", s.name);
    }
    Ok(())
}
