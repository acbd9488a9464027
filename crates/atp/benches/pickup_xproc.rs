//! Pick-up latency across processes on SQLite: a real `atp daemon` process
//! and a producer (this process) share one database file. SQLite has no
//! cross-process signal; the daemon's store watches the file's data
//! version (`sqlite/wake.rs`), so the latency should be a few milliseconds
//! whatever the poll interval.
//!
//! ```text
//! cargo bench -p atp --bench pickup_xproc -- [--samples N] [--poll-ms MS]
//! ```
//! The handler is `exec:date +%s%N`: it prints the wall clock when it runs,
//! so each figure also includes starting that program (about 1–2 ms).

use std::process::{Command, Stdio};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use atp_core::{
    Handler, NewTask, Status, Store, StoreOptions, TaskIdentifier, TaskRef, TaskType, TypeName,
};

const ATP: &str = env!("CARGO_BIN_EXE_atp");

fn arg(args: &[String], name: &str, default: u64) -> u64 {
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1))
        .map_or(default, |n| n.parse().expect("a number"))
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let args: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| a != "--bench")
        .collect();
    let samples = arg(&args, "--samples", 100);
    let poll_ms = arg(&args, "--poll-ms", 200);
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", dir.path().join("xproc.sqlite").display());
    let store = atp_store::open(&url, StoreOptions::default())
        .await
        .unwrap();
    let t = TypeName::new("probe").unwrap();
    store
        .task_type_upsert(&TaskType::new(
            t.clone(),
            Handler::new("exec:date +%s%N").unwrap(),
        ))
        .await
        .unwrap();
    let mut daemon = Command::new(ATP)
        .args([
            "daemon",
            "--concurrency",
            "1",
            "--poll-interval-ms",
            &poll_ms.to_string(),
        ])
        .env("ATP_DATABASE_URL", &url)
        .env("ATP_LOG", "warn")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    tokio::time::sleep(Duration::from_millis(500)).await;
    let mut ms = Vec::new();
    for i in 0..samples {
        let id = TaskIdentifier::new(format!("p{i}")).unwrap();
        store
            .task_enqueue(NewTask::new(t.clone(), id.clone()))
            .await
            .unwrap();
        let enqueued = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap()
            .as_nanos();
        let key = TaskRef::Key(t.clone(), id);
        loop {
            if store.task_get(&key).await.unwrap().status == Status::Finished {
                break;
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        let response = store.task_response_get(&key).await.unwrap().unwrap();
        let ran: u128 = String::from_utf8(response.body)
            .unwrap()
            .trim()
            .parse()
            .unwrap();
        ms.push(ran.saturating_sub(enqueued) as f64 / 1e6);
        // Spread the enqueues over the poll cycle (a waiting loop would
        // otherwise lock onto the daemon's polling phase).
        tokio::time::sleep(Duration::from_millis(i * 73 % poll_ms.max(1))).await;
    }
    let _ = daemon.kill();
    let _ = daemon.wait();
    ms.sort_by(f64::total_cmp);
    let at = |q: f64| ms[((ms.len() - 1) as f64 * q).round() as usize];
    println!(
        "SQLite across processes, poll interval {poll_ms} ms, {samples} samples: p50 {:.1} ms, p99 {:.1} ms, max {:.1} ms",
        at(0.5),
        at(0.99),
        at(1.0)
    );
}
