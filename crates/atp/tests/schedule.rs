//! Periodic tasks through the real binary: `atp schedule …` on each engine,
//! and three `atp daemon` processes enqueueing every occurrence of one
//! schedule exactly once between them (`sqlite::…`, `postgres::…`).

mod common;

use std::process::{Command, Output, Stdio};
use std::time::Duration;

use atp_core::schedule::ScheduleName;
use atp_core::{Handler, Status, Store, TaskType};
use atp_store::conformance::type_name;
use atp_store::testing::{TestDb, eventually};
use time::OffsetDateTime;

use common::{DaemonProcess, all_tasks, daemon_id_of};

/// `atp ARGS…` on `db`.
fn atp(db: &impl TestDb, args: &[&str]) -> Output {
    Command::new(common::ATP)
        .args(args)
        .envs(db.child_env())
        .stdin(Stdio::null())
        .output()
        .expect("running atp")
}

/// `atp ARGS…`, which must succeed; its stdout.
fn atp_ok(db: &impl TestDb, args: &[&str]) -> String {
    let out = atp(db, args);
    assert!(
        out.status.success(),
        "atp {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

/// A type no daemon can run (its handler is no built-in): its tasks stay
/// ACCEPTED, so each one's log is its enqueue alone.
async fn idle_type<S: Store>(s: &S, name: &str) {
    s.task_type_upsert(&TaskType::new(
        type_name(name),
        Handler::new("app:nobody-runs-this").unwrap(),
    ))
    .await
    .unwrap();
}

/// Three daemons, one schedule every second (added after they started):
/// for ten seconds and more,
/// every second from the first occurrence after the schedule's creation
/// to the last enqueued one is a task exactly once (no gap, no
/// duplicate), each with one ACCEPTED log record.
async fn three_daemons_enqueue_each_occurrence_exactly_once(db: impl TestDb) {
    let s = db.store();
    idle_type(s, "Tick").await;
    // A schedule whose next occurrence is months away: the daemons must
    // still see the one added after they started (they re-read every
    // second, not only at the next occurrence they know of).
    atp_ok(&db, &["schedule", "add", "yearly", "Tick", "0 0 0 1 1 *"]);
    let daemons = [
        DaemonProcess::spawn(&db, &["--concurrency", "1"]),
        DaemonProcess::spawn(&db, &["--concurrency", "1"]),
        DaemonProcess::spawn(&db, &["--concurrency", "1"]),
    ];
    for d in &daemons {
        daemon_id_of(s, d.pid()).await;
    }

    atp_ok(&db, &["schedule", "add", "tick", "Tick", "* * * * * *"]);
    let name = ScheduleName::new("tick").unwrap();
    let created = s.schedule_get(&name).await.unwrap().created_at;
    let count = || async { all_tasks(s).await.len() };
    eventually(
        Duration::from_secs(40),
        "ten occurrences enqueued",
        || async { (count().await >= 11).then_some(()) },
    )
    .await;
    atp_ok(&db, &["schedule", "pause", "tick"]);
    // The pause commits after (PostgreSQL: waits for) any enqueue under way,
    // so what is enqueued now is final.
    let schedule = s.schedule_get(&name).await.unwrap();
    assert!(schedule.paused);
    let last = schedule.last_enqueued.expect("occurrences were enqueued");

    let mut expected = Vec::new();
    let mut at = schedule.recurrence.next_after(created).unwrap();
    while at <= last {
        expected.push(schedule.identifier_for(at).to_string());
        at = schedule.recurrence.next_after(at).unwrap();
    }
    assert!(expected.len() >= 10, "{expected:?}");
    let tasks = all_tasks(s).await;
    let mut got: Vec<String> = tasks.iter().map(|t| t.identifier.to_string()).collect();
    got.sort();
    assert_eq!(got, expected, "every second once, no gap, no duplicate");
    for t in &tasks {
        assert_eq!(t.status, Status::Accepted);
        let log = s.task_log(&t.key()).await.unwrap();
        let accepted = log.iter().filter(|r| r.status == Status::Accepted).count();
        assert_eq!(accepted, 1, "{}: {log:?}", t.identifier);
    }
    // Paused: a later pass of any daemon adds nothing (seen after one
    // more second of every daemon's rescans).
    let now = OffsetDateTime::now_utc();
    assert!(schedule.due(now + time::Duration::seconds(2)).is_empty());
    let after = s.schedule_get(&name).await.unwrap();
    assert_eq!(after.last_enqueued, Some(last));
    drop(daemons);
}

/// The commands: add (bad expressions, time zones, names and unknown
/// types refused with the CLI's codes, nothing stored), list with --json,
/// pause, resume, remove.
async fn schedule_commands_validate_and_round_trip(db: impl TestDb) {
    let s = db.store();
    idle_type(s, "Report").await;
    let refused: [(&[&str], i32, &str); 5] = [
        (&["Report", "not cron"], 1, "cron expression"),
        (
            &["Report", "0 2 * * *", "--timezone", "Mars/Olympus"],
            1,
            "time zone",
        ),
        (
            &["Report", "0 2 * * *", "--catch-up", "sometimes"],
            2,
            "catch-up",
        ),
        (&["Unknown", "0 2 * * *"], 3, "Unknown"),
        (&["Report", "0 2 * * *", "--input", "{not json"], 1, "JSON"),
    ];
    for (args, code, says) in refused {
        let mut all = vec!["schedule", "add", "nightly"];
        all.extend_from_slice(args);
        let out = atp(&db, &all);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(code), "{all:?}: {stderr}");
        assert!(stderr.contains(says), "{all:?}: {stderr}");
    }
    let long = "n".repeat(44);
    assert_eq!(
        atp(&db, &["schedule", "add", &long, "Report", "* * * * *"])
            .status
            .code(),
        Some(1)
    );
    assert!(
        s.schedule_list().await.unwrap().is_empty(),
        "nothing stored"
    );

    let added = atp_ok(
        &db,
        &[
            "--json",
            "schedule",
            "add",
            "nightly",
            "Report",
            "0 2 * * *",
            "--timezone",
            "Europe/Vienna",
            "--input",
            r#"{"full": true}"#,
            "--catch-up",
            "last",
        ],
    );
    let added: serde_json::Value = serde_json::from_str(&added).unwrap();
    assert_eq!(added["name"], "nightly");
    assert_eq!(added["type"], "Report");
    assert_eq!(added["timezone"], "Europe/Vienna");
    assert_eq!(added["catch_up"], "last");
    assert_eq!(added["input"], serde_json::json!({"full": true}));
    assert_eq!(added["paused"], false);
    assert!(
        added["next_occurrence_at"]
            .as_str()
            .unwrap()
            .ends_with(":00:00Z")
    );
    let listed: serde_json::Value =
        serde_json::from_str(&atp_ok(&db, &["--json", "schedule", "list"])).unwrap();
    assert_eq!(listed.as_array().unwrap().len(), 1);
    assert_eq!(listed[0]["expression"], "0 2 * * *");
    assert!(atp_ok(&db, &["schedule", "list"]).contains("nightly"));

    let paused: serde_json::Value =
        serde_json::from_str(&atp_ok(&db, &["--json", "schedule", "pause", "nightly"])).unwrap();
    assert_eq!(paused["paused"], true);
    assert_eq!(paused["next_occurrence_at"], serde_json::Value::Null);
    assert!(atp_ok(&db, &["schedule", "list"]).contains("PAUSED"));
    atp_ok(&db, &["schedule", "resume", "nightly"]);
    assert!(!s.schedule_list().await.unwrap()[0].paused);
    atp_ok(&db, &["schedule", "remove", "nightly"]);
    for cmd in ["remove", "pause", "resume"] {
        let out = atp(&db, &["schedule", cmd, "nightly"]);
        assert_eq!(out.status.code(), Some(3), "{cmd}: no such schedule");
    }
}

/// A daemon started with --no-schedules enqueues nothing: beside one that
/// does, which enqueues every occurrence, its log never says it did one.
async fn a_daemon_without_schedules_enqueues_nothing(db: impl TestDb) {
    let s = db.store();
    idle_type(s, "Tick").await;
    let mut quiet = DaemonProcess::spawn_logged(&db, &["--no-schedules"]);
    daemon_id_of(s, quiet.pid()).await;
    atp_ok(&db, &["schedule", "add", "tick", "Tick", "* * * * * *"]);
    let mut busy = DaemonProcess::spawn_logged(&db, &[]);
    busy.log
        .as_mut()
        .unwrap()
        .wait_for("occurrence enqueued", Duration::from_secs(30));
    eventually(Duration::from_secs(30), "three occurrences", || async {
        (all_tasks(s).await.len() >= 3).then_some(())
    })
    .await;
    quiet.signal(nix::sys::signal::Signal::SIGTERM);
    quiet.wait_exit(Duration::from_secs(30)).await;
    let lines = quiet
        .log
        .as_mut()
        .unwrap()
        .until_end(Duration::from_secs(10));
    assert!(
        lines.iter().any(|l| l.contains("daemon started")),
        "{lines:#?}"
    );
    assert!(
        lines.iter().all(|l| !l.contains("occurrence enqueued")),
        "{lines:#?}"
    );
}

atp_store::per_engine_tests!(
    three_daemons_enqueue_each_occurrence_exactly_once,
    schedule_commands_validate_and_round_trip,
    a_daemon_without_schedules_enqueues_nothing,
);
