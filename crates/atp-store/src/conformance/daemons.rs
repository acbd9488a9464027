//! Contract: daemon records and rescuing a dead daemon's tasks; schema.

use std::time::Duration;

use atp_core::{
    DaemonInfo, DeadRule, Status, StatusChange, Store, StoreExt, StoreOptions, TaskRef,
};

use super::*;
use crate::testing::TestDb;

/// The silence that declares a daemon dead: long enough that no test
/// machine lets it pass on its own, so only the moved clock does.
const SILENT_SECS: f64 = 30.0;

fn daemon(id: atp_core::DaemonId) -> DaemonInfo {
    let now = atp_core::time::now();
    DaemonInfo {
        id,
        host: "host-1".into(),
        pid: 4242,
        started_at: now,
        heartbeat_at: now,
        handlers: vec!["builtin:noop".into(), "exec:*".into()],
    }
}

/// Register, heartbeat, list and deregister a daemon.
pub async fn daemons_register_heartbeat_and_deregister(db: impl TestDb) {
    let (s, clock) = &clocked(&db).await;
    s.daemon_register(&daemon(DAEMON_A)).await.unwrap();
    s.daemon_register(&daemon(DAEMON_B)).await.unwrap();
    let listed = s.daemon_list().await.unwrap();
    assert_eq!(listed.len(), 2);
    let a = listed.iter().find(|d| d.id == DAEMON_A).unwrap();
    assert_eq!((a.host.as_str(), a.pid), ("host-1", 4242));
    assert_eq!(a.handlers, ["builtin:noop", "exec:*"]);

    clock.advance(Duration::from_millis(5));
    assert!(s.daemon_heartbeat(DAEMON_A).await.unwrap());
    let after = s.daemon_list().await.unwrap();
    let a2 = after.iter().find(|d| d.id == DAEMON_A).unwrap();
    assert!(a2.heartbeat_at > a.heartbeat_at);

    s.daemon_deregister(DAEMON_A).await.unwrap();
    assert!(
        !s.daemon_heartbeat(DAEMON_A).await.unwrap(),
        "a removed daemon learns it"
    );
    let ids: Vec<_> = s
        .daemon_list()
        .await
        .unwrap()
        .into_iter()
        .map(|d| d.id)
        .collect();
    assert_eq!(ids, [DAEMON_B]);
}

/// A reaping daemon never takes itself for dead, however long its own
/// heartbeat has been silent; another reaper does.
pub async fn a_daemon_never_reaps_itself(db: impl TestDb) {
    let (s, clock) = &clocked(&db).await;
    let t = register(s, task_type("t")).await;
    s.daemon_register(&daemon(DAEMON_A)).await.unwrap();
    let held = running(s, &t, "held", DAEMON_A).await;
    clock.advance(Duration::from_secs_f64(SILENT_SECS * 2.0));
    let rule = DeadRule::silent_for(SILENT_SECS);
    assert!(
        s.daemon_reap_dead(rule.sparing(DAEMON_A))
            .await
            .unwrap()
            .is_empty(),
        "a daemon reaped itself"
    );
    assert_eq!(status_of(s, held.task).await, Status::Running);
    let reaped = s.daemon_reap_dead(rule.sparing(DAEMON_B)).await.unwrap();
    assert_eq!(reaped.len(), 1, "{reaped:?}");
    assert_eq!(reaped[0].id, DAEMON_A);
    assert_eq!(status_of(s, held.task).await, Status::Accepted);
}

/// The short silence of [`DeadRule::gone_secs`] in these cases.
const GONE_SECS: f64 = 3.0;

/// This process's host, as a daemon records it.
fn this_host() -> String {
    nix::unistd::gethostname()
        .expect("this host's name")
        .into_string()
        .expect("a UTF-8 host name")
}

/// The pid of a process that has ended (and been waited for).
fn ended_pid() -> u32 {
    let mut child = std::process::Command::new("true")
        .spawn()
        .expect("running `true`");
    child.wait().expect("waiting for `true`");
    child.id()
}

/// A daemon whose process is shown gone is reaped after the short silence
/// of the rule, its tasks rescued at once; a live daemon just as silent
/// keeps its record and its tasks until the long one. "Gone" is what each
/// engine can check: the daemon registered through a handle that has
/// since closed (PostgreSQL: its liveness lock is free) and recorded a
/// process of this host that has ended (SQLite).
pub async fn a_daemon_shown_gone_is_reaped_after_the_short_silence(db: impl TestDb) {
    let (s, clock) = &clocked(&db).await;
    let t = register(s, task_type("t")).await;
    let rule = DeadRule::silent_for(SILENT_SECS).gone_after(GONE_SECS);
    let gone = DaemonInfo {
        host: this_host(),
        pid: ended_pid(),
        ..daemon(DAEMON_A)
    };
    let other = db
        .open(StoreOptions {
            clock: clock.clock(),
            ..StoreOptions::default()
        })
        .await;
    other.daemon_register(&gone).await.unwrap();
    let orphaned = running(&other, &t, "orphaned", DAEMON_A).await;
    drop(other);
    let live = DaemonInfo {
        host: this_host(),
        pid: std::process::id(),
        ..daemon(DAEMON_B)
    };
    s.daemon_register(&live).await.unwrap();
    let kept = running(s, &t, "kept", DAEMON_B).await;

    clock.advance(Duration::from_secs_f64(GONE_SECS * 0.5));
    assert!(
        s.daemon_reap_dead(rule).await.unwrap().is_empty(),
        "silent for less than the short threshold"
    );
    clock.advance(Duration::from_secs_f64(GONE_SECS));
    // PostgreSQL frees the closed handle's lock when the server sees its
    // connection end: a deadline, not a fixed wait.
    let reaped = crate::testing::eventually(
        Duration::from_secs(10),
        "the daemon shown gone to be reaped",
        || async {
            let reaped = s.daemon_reap_dead(rule).await.unwrap();
            (!reaped.is_empty()).then_some(reaped)
        },
    )
    .await;
    assert_eq!(reaped.len(), 1, "{reaped:?}");
    assert_eq!(reaped[0].id, DAEMON_A);
    assert_eq!(reaped[0].rescued.len(), 1);
    assert_eq!(reaped[0].rescued[0].outcome, Status::Accepted);
    assert_eq!(status_of(s, orphaned.task).await, Status::Accepted);
    let log = s.task_log(&TaskRef::Id(orphaned.task)).await.unwrap();
    assert!(
        log.last()
            .unwrap()
            .message
            .contains(&format!("more than {GONE_SECS} s")),
        "{log:?}"
    );
    // B is as silent, but alive: only the long threshold takes it.
    assert!(s.daemon_reap_dead(rule).await.unwrap().is_empty());
    assert_eq!(status_of(s, kept.task).await, Status::Running);
    clock.advance(Duration::from_secs_f64(SILENT_SECS));
    let reaped = s.daemon_reap_dead(rule).await.unwrap();
    assert_eq!(reaped.len(), 1, "{reaped:?}");
    assert_eq!(reaped[0].id, DAEMON_B);
    assert_eq!(status_of(s, kept.task).await, Status::Accepted);
    assert_queue_consistent(s).await;
}

/// A daemon silent for longer than the threshold loses its record and its
/// tasks (re-enqueued, or FAILED with starts used up), long before the
/// type's timeout; a live daemon keeps its tasks.
pub async fn dead_daemons_tasks_are_rescued(db: impl TestDb) {
    let (s, clock) = &clocked(&db).await;
    let t = register(s, task_type("t").with_max_starts(1)).await;
    let u = register(s, task_type("u").with_max_starts(3)).await;
    s.daemon_register(&daemon(DAEMON_A)).await.unwrap();
    s.daemon_register(&daemon(DAEMON_B)).await.unwrap();
    let spent = running(s, &t, "spent", DAEMON_A).await;
    let fresh = running(s, &u, "fresh", DAEMON_A).await;
    let scheduled = {
        enqueue(s, &u, "scheduled").await;
        claim_one(s, DAEMON_A).await.attempt
    };
    let alive = running(s, &u, "alive", DAEMON_B).await;

    clock.advance(Duration::from_secs_f64(SILENT_SECS * 1.5));
    assert!(s.daemon_heartbeat(DAEMON_B).await.unwrap());
    s.task_heartbeat(alive).await.unwrap();
    let reaped = s
        .daemon_reap_dead(DeadRule::silent_for(SILENT_SECS))
        .await
        .unwrap();
    assert_eq!(reaped.len(), 1);
    assert_eq!(reaped[0].id, DAEMON_A);
    let mut outcomes: Vec<_> = reaped[0]
        .rescued
        .iter()
        .map(|r| (r.identifier.to_string(), r.outcome))
        .collect();
    outcomes.sort();
    assert_eq!(
        outcomes,
        [
            ("fresh".to_string(), Status::Accepted),
            ("scheduled".to_string(), Status::Accepted),
            ("spent".to_string(), Status::Failed),
        ]
    );
    let log = s.task_log(&TaskRef::Id(fresh.task)).await.unwrap();
    assert!(log.last().unwrap().message.contains(&DAEMON_A.to_string()));
    assert!(
        s.task_log(&TaskRef::Id(spent.task))
            .await
            .unwrap()
            .last()
            .unwrap()
            .message
            .contains("max starts")
    );
    assert_eq!(status_of(s, alive.task).await, Status::Running);
    assert_eq!(status_of(s, scheduled.task).await, Status::Accepted);
    assert!(
        !s.daemon_heartbeat(DAEMON_A).await.unwrap(),
        "the dead daemon learns it"
    );
    assert!(matches!(
        s.task_set_status(StatusChange::finish(fresh, "late")).await,
        Err(atp_core::Error::StaleAttempt { .. })
    ));
    // Reaping again finds nothing: A is gone and B (heartbeating right
    // now, so a slow machine cannot make it look silent) keeps its task.
    assert!(s.daemon_heartbeat(DAEMON_B).await.unwrap());
    s.task_heartbeat(alive).await.unwrap();
    assert!(
        s.daemon_reap_dead(DeadRule::silent_for(SILENT_SECS))
            .await
            .unwrap()
            .is_empty()
    );
    assert_queue_consistent(s).await;
}

/// A fresh database is at the latest schema; opening it again changes
/// nothing and keeps the data.
pub async fn schema_is_at_the_latest_version_and_reopening_is_harmless(db: impl TestDb) {
    let s = db.store();
    let version = s.schema_version().await.unwrap();
    assert!(version >= 2, "version {version}");
    let t = register(s, task_type("t")).await;
    enqueue(s, &t, "x").await;
    let again = db.open(StoreOptions::default()).await;
    assert_eq!(again.schema_version().await.unwrap(), version);
    assert_eq!(again.task_counts().await.unwrap().total(), 1);
    assert_eq!(again.queue_size().await.unwrap(), 1);
}
