//! The daemon under crashes and shutdowns: real `atp daemon` processes on a
//! real database, on each engine (`sqlite::…`, `postgres::…`).

mod common;

use std::collections::HashMap;
use std::time::Duration;

use atp_core::{Handler, NewTask, Status, Store, TaskType};
use atp_store::conformance::{ident, type_name};
use atp_store::testing::{TestDb, eventually};
use nix::sys::signal::Signal;
use serde_json::json;

use common::{DaemonProcess, all_tasks, count, daemon_id_of, log_messages};

fn sleep_type(name: &str, timeout_secs: f64, max_starts: u32) -> TaskType {
    let mut t = TaskType::new(type_name(name), Handler::new("builtin:sleep").unwrap());
    t.timeout_secs = timeout_secs;
    t.max_starts = max_starts;
    t
}

async fn enqueue_sleeps<S: Store>(store: &S, t: &TaskType, n: usize, seconds: f64) {
    store.task_type_upsert(t).await.unwrap();
    let batch = (0..n)
        .map(|i| {
            NewTask::new(t.name.clone(), ident(&format!("s{i:03}")))
                .with_input(json!({ "seconds": seconds }))
        })
        .collect();
    store.task_enqueue_many(batch).await.unwrap();
}

/// The tasks `daemon` holds RUNNING, once it holds `n`.
async fn running_under<S: Store>(
    s: &S,
    daemon: atp_core::DaemonId,
    n: usize,
) -> Vec<atp_core::TaskId> {
    eventually(
        Duration::from_secs(30),
        "the daemon to run its tasks",
        || async {
            let held: Vec<_> = all_tasks(s)
                .await
                .into_iter()
                .filter(|t| t.holder == Some(daemon) && t.status == Status::Running)
                .map(|t| t.id)
                .collect();
            (held.len() >= n).then_some(held)
        },
    )
    .await
}

/// With the default timing (heartbeat 1 s, dead after 15 s, gone after
/// 3 s), `kill -9` of a daemon puts its tasks back in the queue, and the
/// surviving daemon runs them, within 5 s of the kill (issue 12: it was
/// 18–23 s): the store shows the killed daemon's process gone (PostgreSQL:
/// its liveness lock freed with its connection; SQLite: its pid gone).
async fn a_killed_daemons_tasks_are_back_within_five_seconds(db: impl TestDb) {
    let s = db.store();
    let t = sleep_type("slow", 600.0, 3);
    enqueue_sleeps(s, &t, 2, 60.0).await;
    let mut victim = DaemonProcess::spawn_with_default_timing(&db, &["--concurrency", "2"]);
    let victim_id = daemon_id_of(s, victim.pid()).await;
    let held = running_under(s, victim_id, 2).await;
    let survivor = DaemonProcess::spawn_with_default_timing(&db, &["--concurrency", "2"]);
    let survivor_id = daemon_id_of(s, survivor.pid()).await;

    victim.signal(Signal::SIGKILL);
    let killed = std::time::Instant::now();
    victim.wait_exit(Duration::from_secs(5)).await;
    let rerun = running_under(s, survivor_id, 2).await;
    let healed = killed.elapsed();
    assert_eq!(
        {
            let mut r = rerun.clone();
            r.sort();
            r
        },
        {
            let mut h = held.clone();
            h.sort();
            h
        }
    );
    assert!(
        healed < Duration::from_secs(5),
        "the killed daemon's tasks ran again {healed:?} after the kill"
    );
    for task in held {
        let log = log_messages(s, task).await;
        assert!(
            log.iter()
                .any(|m| m.contains("Rescued") && m.contains(&victim_id.to_string())),
            "{log:?}"
        );
    }
}

/// The margin: a daemon stalled (SIGSTOP) for 6 s, twice the short
/// threshold and well past its heartbeats, is not shown gone (its process
/// and its connections live on), so no other daemon takes its tasks; once
/// it goes on (SIGCONT) they finish under it, started once. Only the long
/// threshold (15 s) would take a stalled daemon for dead.
async fn a_stalled_daemon_keeps_its_tasks(db: impl TestDb) {
    let s = db.store();
    let t = sleep_type("slow", 600.0, 3);
    enqueue_sleeps(s, &t, 2, 8.0).await;
    let stalled = DaemonProcess::spawn_with_default_timing(&db, &["--concurrency", "2"]);
    let stalled_id = daemon_id_of(s, stalled.pid()).await;
    let held = running_under(s, stalled_id, 2).await;
    let _watcher = DaemonProcess::spawn_with_default_timing(&db, &["--concurrency", "2"]);

    stalled.signal(Signal::SIGSTOP);
    // That nothing is taken can only be watched for a while: 6 s, a
    // deadline of observation (twice the short threshold), not a wait for
    // something to happen.
    let until = tokio::time::Instant::now() + Duration::from_secs(6);
    while tokio::time::Instant::now() < until {
        for task in all_tasks(s).await {
            assert_eq!(
                (task.holder, task.status),
                (Some(stalled_id), Status::Running),
                "a stalled daemon's task was taken"
            );
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    stalled.signal(Signal::SIGCONT);
    eventually(Duration::from_secs(30), "both tasks to finish", || async {
        (count(s, Status::Finished).await == 2).then_some(())
    })
    .await;
    for task in held {
        let log = log_messages(s, task).await;
        assert!(!log.iter().any(|m| m.contains("Rescued")), "{log:?}");
        assert_eq!(
            all_tasks(s)
                .await
                .iter()
                .find(|t| t.id == task)
                .unwrap()
                .starts,
            1
        );
    }
}

/// `kill -9` one of three daemons mid-task: every task still ends FINISHED;
/// the interrupted ones were rescued (their log says so) and started twice.
async fn a_killed_daemons_tasks_are_rescued_and_finish(db: impl TestDb) {
    let s = db.store();
    let t = sleep_type("slow", 60.0, 3);
    enqueue_sleeps(s, &t, 12, 1.5).await;
    let mut victim = DaemonProcess::spawn(&db, &["--concurrency", "2"]);
    let _b = DaemonProcess::spawn(&db, &["--concurrency", "2"]);
    let _c = DaemonProcess::spawn(&db, &["--concurrency", "2"]);
    let victim_id = daemon_id_of(s, victim.pid()).await;

    let held = eventually(
        Duration::from_secs(30),
        "the victim to run a task",
        || async {
            let held: Vec<_> = all_tasks(s)
                .await
                .into_iter()
                .filter(|t| t.holder == Some(victim_id) && t.status == Status::Running)
                .map(|t| t.id)
                .collect();
            (!held.is_empty()).then_some(held)
        },
    )
    .await;
    victim.signal(Signal::SIGKILL);
    victim.wait_exit(Duration::from_secs(5)).await;

    eventually(Duration::from_secs(60), "every task to finish", || async {
        (count(s, Status::Finished).await == 12).then_some(())
    })
    .await;
    for task in all_tasks(s).await {
        let log = log_messages(s, task.id).await;
        if held.contains(&task.id) {
            assert_eq!(task.starts, 2, "an interrupted task runs again: {log:?}");
            assert!(
                log.iter()
                    .any(|m| m.contains("Rescued") && m.contains(&victim_id.to_string())),
                "the rescue is in the log: {log:?}"
            );
        }
        assert!(task.starts >= 1 && task.starts <= 2, "{log:?}");
    }
}

/// An attempt that always overruns its type's timeout is aborted by the
/// daemon each time and ends FAILED after max starts, saying why.
async fn an_attempt_that_always_overruns_fails_after_max_starts(db: impl TestDb) {
    let s = db.store();
    let t = sleep_type("overrun", 0.5, 2);
    enqueue_sleeps(s, &t, 1, 30.0).await;
    let _w = DaemonProcess::spawn(&db, &["--concurrency", "1"]);
    let task = eventually(Duration::from_secs(30), "the task to fail", || async {
        let task = s
            .task_get(&atp_core::TaskRef::Key(t.name.clone(), ident("s000")))
            .await
            .unwrap();
        (task.status == Status::Failed).then_some(task)
    })
    .await;
    let log = log_messages(s, task.id).await;
    assert_eq!(task.starts, 2, "{log:?}");
    assert_eq!(
        log.iter().filter(|m| m.contains("overran")).count(),
        2,
        "{log:?}"
    );
    let last = log.last().unwrap();
    assert!(
        last.starts_with("FAILED") && last.contains("max starts"),
        "{log:?}"
    );
}

/// SIGTERM with tasks running and queued: running ones finish within the
/// grace period, queued ones stay queued, the daemon exits 0 holding
/// nothing; a new daemon finishes the rest.
async fn graceful_shutdown_finishes_running_tasks_and_loses_none(db: impl TestDb) {
    let s = db.store();
    let t = sleep_type("graceful", 60.0, 3);
    enqueue_sleeps(s, &t, 8, 1.0).await;
    let mut w = DaemonProcess::spawn(&db, &["--concurrency", "3", "--grace-secs", "20"]);
    eventually(Duration::from_secs(30), "three running tasks", || async {
        (count(s, Status::Running).await == 3).then_some(())
    })
    .await;
    w.signal(Signal::SIGTERM);
    assert_eq!(w.wait_exit(Duration::from_secs(20)).await, 0);
    let counts = s.task_counts().await.unwrap();
    assert_eq!(counts.status(Status::Finished), 3, "{counts:?}");
    assert_eq!(counts.status(Status::Accepted), 5, "{counts:?}");
    assert!(s.daemon_list().await.unwrap().is_empty(), "record removed");

    let _again = DaemonProcess::spawn(&db, &["--concurrency", "4"]);
    eventually(Duration::from_secs(30), "every task to finish", || async {
        (count(s, Status::Finished).await == 8).then_some(())
    })
    .await;
    for task in all_tasks(s).await {
        assert_eq!(task.starts, 1, "no task ran twice");
    }
}

/// When the grace period runs out, running attempts are aborted and handed
/// back with a log line; the daemon still exits 0 and nothing is lost.
async fn grace_period_over_hands_running_tasks_back(db: impl TestDb) {
    let s = db.store();
    let t = sleep_type("long", 60.0, 3);
    enqueue_sleeps(s, &t, 2, 30.0).await;
    let mut w = DaemonProcess::spawn(&db, &["--concurrency", "2", "--grace-secs", "0.5"]);
    eventually(Duration::from_secs(30), "two running tasks", || async {
        (count(s, Status::Running).await == 2).then_some(())
    })
    .await;
    w.signal(Signal::SIGTERM);
    assert_eq!(w.wait_exit(Duration::from_secs(15)).await, 0);
    for task in all_tasks(s).await {
        assert_eq!(task.status, Status::Accepted);
        assert_eq!(task.holder, None);
        let log = log_messages(s, task.id).await;
        assert!(
            log.last().unwrap().contains("shut down"),
            "the log says why: {log:?}"
        );
    }
}

/// A second signal aborts at once, still handing every task back.
async fn a_second_signal_aborts_at_once(db: impl TestDb) {
    let s = db.store();
    let t = sleep_type("abort", 60.0, 3);
    enqueue_sleeps(s, &t, 2, 30.0).await;
    let mut w = DaemonProcess::spawn_logged(&db, &["--concurrency", "2", "--grace-secs", "60"]);
    eventually(Duration::from_secs(30), "two running tasks", || async {
        (count(s, Status::Running).await == 2).then_some(())
    })
    .await;
    w.signal(Signal::SIGTERM);
    // The daemon took the first signal and is waiting out the grace period.
    let log = w.log.as_mut().unwrap();
    log.wait_for("stopping gracefully", Duration::from_secs(10));
    w.signal(Signal::SIGINT);
    assert_eq!(w.wait_exit(Duration::from_secs(10)).await, 0);
    assert_eq!(count(s, Status::Accepted).await, 2);
}

/// `kill -9` of a daemon takes its `exec:` program with it, even one that
/// ignores SIGTERM and neither reads nor writes its pipes (so no SIGPIPE
/// or end of input would ever stop it): it must not go on beside the
/// attempt the rescue starts. Without the parent-death signal it lived on
/// for its whole minute.
async fn an_exec_program_dies_with_its_killed_daemon(db: impl TestDb) {
    let s = db.store();
    let dir = tempfile::tempdir().unwrap();
    let pid_file = dir.path().join("pid");
    // `exec` makes the program the shell itself: the daemon's direct child.
    let handler = format!(
        "exec:sh -c 'trap \"\" TERM; echo $$ > {}; exec sleep 60'",
        pid_file.display()
    );
    let mut t = TaskType::new(type_name("stubborn"), Handler::new(&handler).unwrap());
    t.timeout_secs = 600.0;
    s.task_type_upsert(&t).await.unwrap();
    s.task_enqueue(NewTask::new(t.name.clone(), ident("x")))
        .await
        .unwrap();
    let mut victim = DaemonProcess::spawn(&db, &["--concurrency", "1"]);
    let pid = eventually(Duration::from_secs(30), "the program to start", || async {
        let text = std::fs::read_to_string(&pid_file).ok()?;
        text.trim().parse::<i32>().ok()
    })
    .await;
    let program = nix::unistd::Pid::from_raw(pid);
    assert!(nix::sys::signal::kill(program, None).is_ok(), "it runs");
    victim.signal(Signal::SIGKILL);
    victim.wait_exit(Duration::from_secs(5)).await;
    eventually(Duration::from_secs(5), "the program to die", || async {
        // Gone, or a zombie waiting for its new parent to reap it.
        let gone = match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
            Err(_) => true,
            Ok(stat) => stat
                .rsplit(')')
                .next()
                .is_some_and(|rest| rest.trim_start().starts_with('Z')),
        };
        gone.then_some(())
    })
    .await;
}

/// Three daemons × concurrency 4, 5,000 tasks whose exec handler appends
/// the task's identifier to a file: each identifier is there exactly once.
async fn three_daemons_run_each_exec_task_exactly_once(db: impl TestDb) {
    let s = db.store();
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("ran.txt");
    let handler = format!(
        "exec:sh -c 'echo \"$ATP_TASK_IDENTIFIER\" >> {}'",
        out.display()
    );
    let mut t = TaskType::new(type_name("append"), Handler::new(&handler).unwrap());
    t.timeout_secs = 60.0;
    s.task_type_upsert(&t).await.unwrap();
    const N: usize = 5_000;
    let batch = (0..N)
        .map(|i| NewTask::new(t.name.clone(), ident(&format!("a{i:05}"))))
        .collect();
    s.task_enqueue_many(batch).await.unwrap();
    let _daemons: Vec<_> = (0..3)
        .map(|_| DaemonProcess::spawn(&db, &["--concurrency", "4"]))
        .collect();
    eventually(Duration::from_secs(120), "every task to finish", || async {
        (count(s, Status::Finished).await == N as u64).then_some(())
    })
    .await;
    let text = std::fs::read_to_string(&out).unwrap();
    let mut seen: HashMap<&str, usize> = HashMap::new();
    for line in text.lines() {
        *seen.entry(line).or_default() += 1;
    }
    assert_eq!(seen.len(), N, "every identifier ran");
    assert!(seen.values().all(|n| *n == 1), "no identifier ran twice");
    let holders: std::collections::HashSet<_> = s
        .daemon_list()
        .await
        .unwrap()
        .iter()
        .map(|d| d.id)
        .collect();
    assert_eq!(holders.len(), 3);
}

/// `atp TYPE-COMMAND…` on `db`, which must succeed.
fn atp_type(db: &impl TestDb, args: &[&str]) {
    let out = std::process::Command::new(common::ATP)
        .arg("type")
        .args(args)
        .envs(db.child_env())
        .stdin(std::process::Stdio::null())
        .output()
        .expect("running atp type");
    assert!(
        out.status.success(),
        "atp type {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A type paused (with `atp type pause`) under two running daemons, whose
/// lists of runnable types still name it (a daemon lists types by handler;
/// the claim itself skips paused ones): neither claims its tasks while
/// both provably keep claiming (each finishes tasks of another type
/// enqueued after the paused ones); once resumed, every one of them
/// finishes, started once.
async fn a_paused_type_is_claimed_by_no_daemon_until_resumed(db: impl TestDb) {
    let s = db.store();
    let held = sleep_type("held", 60.0, 3);
    let probe = sleep_type("probe", 60.0, 3);
    s.task_type_upsert(&held).await.unwrap();
    s.task_type_upsert(&probe).await.unwrap();
    let a = DaemonProcess::spawn(&db, &["--concurrency", "2"]);
    let b = DaemonProcess::spawn(&db, &["--concurrency", "2"]);
    let daemons = [
        daemon_id_of(s, a.pid()).await,
        daemon_id_of(s, b.pid()).await,
    ];

    atp_type(&db, &["pause", "held"]);
    // Registering again (as `enqueue_sleeps` does) keeps the pause.
    enqueue_sleeps(s, &held, 6, 0.0).await;
    assert!(s.task_type_get(&held.name).await.unwrap().paused);

    // Probes of 0.3 s, a batch at a time, until each daemon has finished
    // one: a daemon at two running probes cannot take a third, so the other
    // one does.
    let batches = std::sync::atomic::AtomicUsize::new(0);
    let batches = &batches;
    let (held_name, probe_name) = (&held.name, &probe.name);
    eventually(
        Duration::from_secs(60),
        "each daemon to finish a probe enqueued after the paused tasks",
        || async move {
            let tasks = all_tasks(s).await;
            for t in tasks.iter().filter(|t| &t.task_type == held_name) {
                assert_eq!(
                    (t.status, t.starts),
                    (Status::Accepted, 0),
                    "a paused type's task was claimed: {:?}",
                    log_messages(s, t.id).await
                );
            }
            let probes: Vec<_> = tasks
                .iter()
                .filter(|t| &t.task_type == probe_name)
                .collect();
            let mut finished_by = std::collections::HashSet::new();
            for t in probes.iter().filter(|t| t.status == Status::Finished) {
                let log = log_messages(s, t.id).await;
                for d in daemons {
                    if log.iter().any(|m| m.contains(&d.to_string())) {
                        finished_by.insert(d);
                    }
                }
            }
            if finished_by.len() == daemons.len() {
                return Some(());
            }
            if probes.iter().all(|t| t.status == Status::Finished) {
                let batch = batches.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                let tasks = (0..4)
                    .map(|i| {
                        NewTask::new(probe_name.clone(), ident(&format!("p{batch}-{i}")))
                            .with_input(json!({ "seconds": 0.3 }))
                    })
                    .collect();
                s.task_enqueue_many(tasks).await.unwrap();
            }
            None
        },
    )
    .await;

    atp_type(&db, &["resume", "held"]);
    eventually(
        Duration::from_secs(30),
        "every task of the resumed type to finish",
        || async {
            let finished = all_tasks(s)
                .await
                .into_iter()
                .filter(|t| t.task_type == held.name && t.status == Status::Finished)
                .count();
            (finished == 6).then_some(())
        },
    )
    .await;
    for t in all_tasks(s).await {
        assert_eq!(t.starts, 1, "{:?}", log_messages(s, t.id).await);
    }
}

/// Four daemon processes at concurrency 8, a type limited to three running
/// tasks: a sampler polling the database never sees more than three of
/// them held, and all finish, each started once. (The tasks' log times
/// cannot show it on PostgreSQL: a limited claim's records carry its
/// transaction's start, taken before it waited for the type's lock.)
async fn a_types_limit_holds_across_four_daemon_processes(db: impl TestDb) {
    let s = db.store();
    let mut t = sleep_type("limited", 60.0, 3);
    t.max_running = Some(3);
    const N: usize = 30;
    enqueue_sleeps(s, &t, N, 0.15).await;
    let _daemons: Vec<_> = (0..4)
        .map(|_| DaemonProcess::spawn(&db, &["--concurrency", "8"]))
        .collect();
    let mut most = 0;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(120);
    loop {
        let counts = s.task_counts().await.unwrap();
        let running = counts.status(Status::Running) + counts.status(Status::Scheduled);
        most = most.max(running);
        assert!(running <= 3, "the sampler saw {running} held at once");
        if counts.status(Status::Finished) == N as u64 {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "not all finished: {counts:?}"
        );
        tokio::task::yield_now().await;
    }
    assert!(
        most >= 2,
        "the limit was never approached ({most}): the test proves nothing"
    );
    for task in all_tasks(s).await {
        assert_eq!((task.status, task.starts), (Status::Finished, 1));
    }
}

atp_store::per_engine_tests!(
    a_killed_daemons_tasks_are_back_within_five_seconds,
    an_exec_program_dies_with_its_killed_daemon,
    a_stalled_daemon_keeps_its_tasks,
    a_types_limit_holds_across_four_daemon_processes,
    a_paused_type_is_claimed_by_no_daemon_until_resumed,
    a_killed_daemons_tasks_are_rescued_and_finish,
    an_attempt_that_always_overruns_fails_after_max_starts,
    graceful_shutdown_finishes_running_tasks_and_loses_none,
    grace_period_over_hands_running_tasks_back,
    a_second_signal_aborts_at_once,
    three_daemons_run_each_exec_task_exactly_once,
);
