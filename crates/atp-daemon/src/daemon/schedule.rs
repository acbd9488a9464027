//! The schedule job: enqueues the occurrences of periodic tasks. Every
//! daemon runs it (unless `DaemonConfig::schedules` is off); none leads.
//! Each pass reads every schedule, asks it which occurrences are due
//! ([`atp_core::Schedule::due`]) and hands each to
//! [`Store::schedule_enqueue`], whose compare-and-set lets exactly one
//! caller enqueue an occurrence: the others get `Passed`, which is not an
//! error.
//!
//! "Now" is the clock of the daemon's host: a host whose clock runs
//! behind enqueues late, one ahead enqueues early (never twice, and
//! never before the occurrence by the store's rules: the store compares
//! only with the schedule's own state).

use std::sync::Arc;
use std::time::Duration;

use atp_core::schedule::{ScheduleFired, ScheduleOccurrence};
use atp_core::{Error, Store};
use time::OffsetDateTime;
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn};

use super::Shared;

/// The longest a pass waits for the next one, so that schedules added,
/// changed or resumed by another process are seen within a second.
pub const RESCAN: Duration = Duration::from_secs(1);

/// How far past an occurrence the loop wakes: timers fire at their
/// deadline or after, but a host clock read a hair early would find the
/// occurrence not yet due and need a second pass.
const PAST_DEADLINE: Duration = Duration::from_millis(2);

/// Runs [`schedule_once`] at every occurrence, and at least every
/// [`RESCAN`], until `stop`.
pub(super) async fn schedule_loop<S: Store>(s: Arc<Shared<S>>, stop: CancellationToken) {
    loop {
        let now = OffsetDateTime::now_utc();
        let wait = match schedule_once(&s.store, now).await {
            Ok(report) => report
                .next
                .map_or(RESCAN, |next| until(next, OffsetDateTime::now_utc()))
                .min(RESCAN),
            Err(e) => {
                warn!(error = %e, "reading the schedules failed");
                RESCAN
            }
        };
        tokio::select! {
            () = tokio::time::sleep(wait) => {}
            () = stop.cancelled() => return,
        }
    }
}

/// How long from `now` until just past `next`.
fn until(next: OffsetDateTime, now: OffsetDateTime) -> Duration {
    Duration::try_from(next - now).unwrap_or(Duration::ZERO) + PAST_DEADLINE
}

/// What one pass did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ScheduleReport {
    /// Occurrences this pass enqueued as tasks.
    pub enqueued: Vec<String>,
    /// Occurrences another caller had enqueued already (or this schedule
    /// passed, was paused or removed meanwhile): a lost race, not an error.
    pub passed: usize,
    /// Occurrences whose task existed already (not enqueued again).
    pub existed: usize,
    /// Schedules whose occurrence the full queue refused: tried again at
    /// the next pass, and logged.
    pub queue_full: usize,
    /// Schedules whose occurrence failed otherwise (logged).
    pub failed: usize,
    /// The earliest next occurrence of any schedule not paused.
    pub next: Option<OffsetDateTime>,
}

/// One pass at `now`: every due occurrence of every schedule, oldest first
/// within a schedule. A full queue or another error stops that schedule's
/// pass (its later occurrences wait for the earlier one) and is logged; the
/// other schedules go on. Only reading the list of schedules fails the pass.
pub async fn schedule_once<S: Store>(
    store: &S,
    now: OffsetDateTime,
) -> Result<ScheduleReport, Error> {
    let mut report = ScheduleReport::default();
    for schedule in store.schedule_list().await? {
        for at in schedule.due(now) {
            let occurrence = ScheduleOccurrence {
                schedule: schedule.name.clone(),
                at,
            };
            match store.schedule_enqueue(&occurrence).await {
                Ok(ScheduleFired::Enqueued(task)) => {
                    info!(schedule = %schedule.name, task = %task.identifier, "occurrence enqueued");
                    report.enqueued.push(task.identifier.to_string());
                }
                Ok(ScheduleFired::Passed) => report.passed += 1,
                Ok(ScheduleFired::Existed) => {
                    debug!(schedule = %schedule.name, %at, "occurrence's task exists already");
                    report.existed += 1;
                }
                Err(Error::ScheduleNotFound(_)) => {
                    report.passed += 1;
                    break;
                }
                Err(e @ Error::QueueFull { .. }) => {
                    warn!(schedule = %schedule.name, %at, error = %e, "occurrence not enqueued: the queue is full; trying again at the next pass");
                    report.queue_full += 1;
                    break;
                }
                Err(e) => {
                    warn!(schedule = %schedule.name, %at, error = %e, "occurrence not enqueued; trying again at the next pass");
                    report.failed += 1;
                    break;
                }
            }
        }
        if let Some(next) = schedule.next_occurrence(now) {
            report.next = Some(report.next.map_or(next, |n| n.min(next)));
        }
    }
    Ok(report)
}

#[cfg(test)]
mod tests {
    use atp_core::schedule::{CatchUp, NewSchedule, Recurrence, Schedule};
    use atp_core::{Status, TaskRef, TypeName};
    use atp_store::conformance::{enqueue, register, task_type};
    use atp_store::testing::TestDb;
    use time::Duration as Span;

    use super::*;

    /// A schedule of type `t` with `expression` (UTC) and `catch_up`.
    async fn add<S: Store>(s: &S, t: &TypeName, expression: &str, catch_up: CatchUp) -> Schedule {
        let new = NewSchedule::new(
            atp_core::ScheduleName::new(format!("job-{catch_up}")).unwrap(),
            t.clone(),
            Recurrence::new(expression, "UTC").unwrap(),
        )
        .with_catch_up(catch_up);
        s.schedule_upsert(&new).await.unwrap()
    }

    /// The first occurrence after the schedule's creation.
    fn first(s: &Schedule) -> OffsetDateTime {
        s.recurrence.next_after(s.created_at).unwrap()
    }

    /// Two daemons' passes at the same moments: each second of the window
    /// is enqueued once, by one of them; a pass in between enqueues what
    /// came due meanwhile and says when the next occurrence is.
    async fn passes_enqueue_each_occurrence_once(db: impl TestDb) {
        let s = db.store();
        let other = db.open(Default::default()).await;
        let t = register(s, task_type("tick")).await;
        let sch = add(s, &t, "* * * * * *", CatchUp::None).await;
        let t0 = first(&sch);
        let before = schedule_once(s, t0 - Span::milliseconds(10)).await.unwrap();
        assert!(before.enqueued.is_empty());
        assert_eq!(before.next, Some(t0));

        let a = schedule_once(s, t0 + Span::milliseconds(2_500))
            .await
            .unwrap();
        let b = schedule_once(&other, t0 + Span::milliseconds(2_500))
            .await
            .unwrap();
        assert_eq!(
            a.enqueued,
            [0, 1, 2].map(|i| sch.identifier_for(t0 + Span::seconds(i)).to_string())
        );
        assert!(b.enqueued.is_empty(), "{b:?}");
        assert_eq!(a.next, Some(t0 + Span::seconds(3)));
        let c = schedule_once(&other, t0 + Span::seconds(3)).await.unwrap();
        assert_eq!(
            c.enqueued,
            [sch.identifier_for(t0 + Span::seconds(3)).to_string()]
        );
        assert_eq!(s.queue_size().await.unwrap(), 4);
        let task = s
            .task_get(&TaskRef::Key(t.clone(), sch.identifier_for(t0)))
            .await
            .unwrap();
        assert_eq!(task.status, Status::Accepted);
    }

    /// Nobody ran for a while: `none` skips what was missed and goes on
    /// with the next occurrence; `last` enqueues the most recent missed one
    /// once. A late one (within `MISSED_AFTER`) is enqueued under both.
    async fn missed_occurrences_follow_the_catch_up(db: impl TestDb) {
        let s = db.store();
        let t = register(s, task_type("minutely")).await;
        for catch_up in [CatchUp::None, CatchUp::Last] {
            let sch = add(s, &t, "0 * * * * *", catch_up).await;
            let m0 = first(&sch);
            // Late: 10 s after the occurrence.
            let late = schedule_once(s, m0 + Span::seconds(10)).await.unwrap();
            assert_eq!(
                late.enqueued,
                [sch.identifier_for(m0).to_string()],
                "{catch_up}"
            );
            // Down for three minutes: m1, m2, m3 missed; back 40 s after m3.
            let back = m0 + Span::minutes(3) + Span::seconds(40);
            let pass = schedule_once(s, back).await.unwrap();
            match catch_up {
                CatchUp::None => assert!(pass.enqueued.is_empty(), "{pass:?}"),
                CatchUp::Last => assert_eq!(
                    pass.enqueued,
                    [sch.identifier_for(m0 + Span::minutes(3)).to_string()]
                ),
            }
            assert_eq!(pass.next, Some(m0 + Span::minutes(4)));
            // Passes go on as usual; none back-fills more.
            assert!(
                schedule_once(s, back + Span::seconds(1))
                    .await
                    .unwrap()
                    .enqueued
                    .is_empty()
            );
            let next = schedule_once(s, m0 + Span::minutes(4)).await.unwrap();
            assert_eq!(
                next.enqueued,
                [sch.identifier_for(m0 + Span::minutes(4)).to_string()]
            );
            s.schedule_delete(&sch.name).await.unwrap();
        }
    }

    /// A paused schedule enqueues nothing and has no next occurrence; the
    /// resume under `none` does not back-fill.
    async fn a_paused_schedule_is_skipped_and_its_resume_does_not_back_fill(db: impl TestDb) {
        let s = db.store();
        let t = register(s, task_type("tick")).await;
        let sch = add(s, &t, "0 * * * * *", CatchUp::None).await;
        let m0 = first(&sch);
        s.schedule_set_paused(&sch.name, true).await.unwrap();
        let paused = schedule_once(s, m0 + Span::seconds(1)).await.unwrap();
        assert!(paused.enqueued.is_empty());
        assert_eq!(paused.next, None);
        s.schedule_set_paused(&sch.name, false).await.unwrap();
        let resumed = schedule_once(s, m0 + Span::seconds(45)).await.unwrap();
        assert!(resumed.enqueued.is_empty(), "{resumed:?}");
        assert_eq!(resumed.next, Some(m0 + Span::minutes(1)));
    }

    /// A full queue stops the pass for that schedule, is counted, and the
    /// same occurrence goes in at a later pass once there is room.
    async fn a_full_queue_is_retried_at_the_next_pass(db: impl TestDb) {
        let s = db
            .open(atp_core::StoreOptions {
                max_queue_size: 1,
                ..Default::default()
            })
            .await;
        let t = register(&s, task_type("tick")).await;
        let sch = add(&s, &t, "* * * * * *", CatchUp::None).await;
        let t0 = first(&sch);
        let filler = enqueue(&s, &t, "filler").await;
        let full = schedule_once(&s, t0 + Span::milliseconds(1_500))
            .await
            .unwrap();
        assert_eq!(full.queue_full, 1);
        assert!(full.enqueued.is_empty());
        s.task_delete(&TaskRef::Id(filler.id)).await.unwrap();
        let later = schedule_once(&s, t0 + Span::milliseconds(1_600))
            .await
            .unwrap();
        assert_eq!(later.enqueued, [sch.identifier_for(t0).to_string()]);
        assert_eq!(later.queue_full, 1, "t0 + 1 s waits for room");
    }

    atp_store::per_engine_tests! {
        passes_enqueue_each_occurrence_once,
        missed_occurrences_follow_the_catch_up,
        a_paused_schedule_is_skipped_and_its_resume_does_not_back_fill,
        a_full_queue_is_retried_at_the_next_pass,
    }
}
