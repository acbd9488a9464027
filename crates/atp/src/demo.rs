//! `atp demo`: the original's SequenceSum demo, end to end, in a few
//! seconds and with no set-up: a database in a temporary folder, a daemon
//! in this process, statuses shown as they change, then each task's log
//! and response.

use std::collections::HashMap;
use std::time::Duration;

use anyhow::Context as _;
use atp_core::{Handler, NewTask, Status, Store, TaskIdentifier, TaskRef, TaskType, TypeName};
use atp_daemon::{Daemon, DaemonConfig, Registry, Shutdown};
use serde_json::json;

pub async fn run(json: bool) -> anyhow::Result<()> {
    let dir = tempfile::tempdir().context("creating a temporary folder for the demo")?;
    let url = format!("sqlite://{}", dir.path().join("demo.sqlite").display());
    let store = atp_store::open(&url, Default::default()).await?;
    let say = |line: String| {
        if !json {
            say!("{line}");
        }
    };
    say(format!("demo database: {url}"));

    let sum = TypeName::new("SequenceSum")?;
    let mut t = TaskType::new(sum.clone(), Handler::new("builtin:sum")?);
    t.timeout_secs = 60.0;
    store.task_type_upsert(&t).await?;
    let slow = TypeName::new("Nap")?;
    store
        .task_type_upsert(&TaskType::new(slow.clone(), Handler::new("builtin:sleep")?))
        .await?;
    say("registered SequenceSum (builtin:sum) and Nap (builtin:sleep)".into());

    let inputs = [
        (sum.clone(), "small", json!([1, 2, 3])),
        (sum.clone(), "strings", json!(["1.5", "2.5", 4])),
        (sum.clone(), "invalid", json!([1, "two", 3])),
        (slow.clone(), "nap", json!({"seconds": 1.5})),
        (
            sum.clone(),
            "large",
            json!((1..=1000).collect::<Vec<i64>>()),
        ),
    ];
    let mut keys = Vec::new();
    for (t, id, input) in inputs {
        let id = TaskIdentifier::new(id)?;
        store
            .task_enqueue(NewTask::new(t.clone(), id.clone()).with_input(input))
            .await?;
        keys.push(TaskRef::Key(t, id));
    }
    say(format!(
        "enqueued {} tasks (one with invalid input)",
        keys.len()
    ));

    let daemon = Daemon::new(
        store.clone(),
        Registry::with_builtins(),
        DaemonConfig {
            concurrency: 2,
            poll_interval: Duration::from_millis(50),
            ..DaemonConfig::default()
        },
    );
    let shutdown = Shutdown::new();
    let running = {
        let shutdown = shutdown.clone();
        tokio::spawn(async move { daemon.run(shutdown).await })
    };

    // Show each status change as it happens.
    let mut seen: HashMap<String, Status> = HashMap::new();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        let mut done = 0;
        for k in &keys {
            let task = store.task_get(k).await?;
            let name = format!("{}/{}", task.task_type.as_str(), task.identifier.as_str());
            if seen.get(&name) != Some(&task.status) {
                say(format!("  {:<22} {}", name, task.status.name()));
                seen.insert(name, task.status);
            }
            done += usize::from(task.status.is_terminal());
        }
        if done == keys.len() {
            break;
        }
        anyhow::ensure!(
            tokio::time::Instant::now() < deadline,
            "the demo's tasks did not finish within 30 s"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    shutdown.stop();
    running.await.context("the demo daemon")??;

    let mut report = Vec::new();
    for k in &keys {
        let task = store.task_get(k).await?;
        let log = store.task_log(k).await?;
        let response = store.task_response_get(k).await?;
        let text = response
            .as_ref()
            .map(|r| String::from_utf8_lossy(&r.body).into_owned());
        say(format!(
            "\n{}/{}: {}",
            task.task_type.as_str(),
            task.identifier.as_str(),
            task.status.name()
        ));
        for r in &log {
            say(format!(
                "  {}  {}  {}",
                crate::output::local_time(r.time),
                crate::output::status_text(r.status),
                r.message
            ));
        }
        if let Some(text) = &text {
            say(format!("  response: {text}"));
        }
        report.push(json!({
            "type": task.task_type.as_str(),
            "identifier": task.identifier.as_str(),
            "status": task.status.name(),
            "log": log.iter().map(crate::output::log_json).collect::<Vec<_>>(),
            "response": text,
        }));
    }
    drop(store);
    dir.close().context("removing the demo folder")?;
    if json {
        crate::output::print_json(&serde_json::Value::Array(report));
    } else {
        say!("\ndemo database removed");
    }
    Ok(())
}
