//! The library in one screen: open the embedded SQLite store, register the
//! original SequenceSum type, enqueue three tasks (one with bad input), run
//! them with a tiny in-process consumer, and print each task's log and
//! response.
//!
//! ```text
//! cargo run --release -p atp-store --example quickstart [-- sqlite://PATH]
//! ```
//! (The real daemon is `atp worker`; this consumer only shows the calls.)

use atp_core::{
    ClaimParams, DaemonId, Handler, NewTask, Response, StatusChange, Store, TaskIdentifier,
    TaskType, TypeName,
};
use serde_json::{Value, json};

/// SequenceSum: the sum of numbers or numeric strings.
fn sequence_sum(input: &Value) -> Result<String, String> {
    let bad = || "Input must be a sequence of numbers!".to_string();
    let items = input.as_array().ok_or_else(bad)?;
    let mut sum = 0.0;
    for item in items {
        sum += match item {
            Value::Number(n) => n.as_f64().ok_or_else(bad)?,
            Value::String(s) => s.trim().parse::<f64>().map_err(|_| bad())?,
            _ => return Err(bad()),
        };
    }
    Ok(sum.to_string())
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let dir = tempfile::tempdir()?;
    let url = std::env::args().nth(1).unwrap_or_else(|| {
        format!(
            "sqlite://{}",
            dir.path().join("quickstart.sqlite").display()
        )
    });
    let store = atp_store::open(&url, Default::default()).await?;
    println!(
        "database: {url} ({} engine, schema v{})",
        store.engine(),
        store.schema_version().await?
    );

    let sum = TypeName::new("SequenceSum")?;
    store
        .task_type_upsert(
            &TaskType::new(sum.clone(), Handler::new("builtin:sum")?).with_timeout_secs(60.0),
        )
        .await?;
    let inputs = [
        ("small", json!([1, 2, 3])),
        ("mixed", json!(["1.5", 2, "40"])),
        ("broken", json!([1, "two", 3])),
    ];
    for (id, input) in inputs.clone() {
        let task = store
            .task_enqueue(
                NewTask::new(sum.clone(), TaskIdentifier::new(id)?)
                    .with_input(input)
                    .with_message("Enqueued by the quickstart"),
            )
            .await?;
        println!(
            "enqueued {}/{} as #{} ({})",
            task.task_type, task.identifier, task.id, task.status
        );
    }

    let me = DaemonId(rand_id());
    loop {
        let claimed = store.task_claim(&ClaimParams::new(me, 8)).await?;
        if claimed.is_empty() {
            break;
        }
        let attempts: Vec<_> = claimed.iter().map(|c| c.attempt).collect();
        let mut changes = Vec::new();
        for started in store.task_start_many(&attempts).await? {
            let started = started?;
            changes.push(match sequence_sum(&started.input) {
                Ok(total) => StatusChange::finish(started.attempt, "Sum computed")
                    .with_response(Response::new("text/plain", total)),
                Err(message) => StatusChange::fail(started.attempt, message),
            });
        }
        for result in store.task_set_status_many(&changes).await? {
            result?;
        }
    }

    for (id, _) in inputs {
        let key = atp_core::TaskRef::Key(sum.clone(), TaskIdentifier::new(id)?);
        let task = store.task_get(&key).await?;
        println!(
            "\n{}/{}: {} after {} start(s)",
            task.task_type, task.identifier, task.status, task.starts
        );
        for record in store.task_log(&key).await? {
            println!(
                "  {}  {:<9}  {}",
                record.time,
                record.status.name(),
                record.message
            );
        }
        if let Some(response) = store.task_response_get(&key).await? {
            println!(
                "  response ({}): {}",
                response.mime_type,
                String::from_utf8_lossy(&response.body)
            );
        }
    }
    Ok(())
}

fn rand_id() -> u64 {
    use std::hash::{BuildHasher, RandomState};
    RandomState::new().hash_one(std::process::id())
}
