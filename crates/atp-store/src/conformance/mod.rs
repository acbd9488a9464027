//! The contract every engine passes: one async function per behaviour.
//!
//! [`conformance_tests!`](crate::conformance_tests) turns the whole list
//! into `#[tokio::test]`s for both engines, so `tests/contract.rs` runs each
//! behaviour as `sqlite::<name>` and `postgres::<name>`. A change to the
//! `Store` trait needs a change here.

pub mod about;
pub mod boundary;
pub mod cancel;
pub mod claim;
pub mod concurrency;
pub mod daemons;
pub mod due;
pub mod ended;
pub mod enqueue;
pub mod limit;
pub mod lookups;
pub mod pause;
pub mod queue;
pub mod reap;
pub mod retry;
pub mod schedule;
pub mod task_type;
pub mod wake;

use atp_core::store::ClaimParams;
use atp_core::{
    Attempt, ClaimedTask, DaemonId, Handler, NewTask, Status, StatusChange, Store, StoreExt,
    StoreOptions, Task, TaskIdentifier, TaskRef, TaskType, TestClock, TypeName,
};

pub use about::*;
pub use boundary::*;
pub use cancel::*;
pub use claim::*;
pub use concurrency::*;
pub use daemons::*;
pub use due::*;
pub use ended::*;
pub use enqueue::*;
pub use limit::*;
pub use lookups::*;
pub use pause::*;
pub use queue::*;
pub use reap::*;
pub use retry::*;
pub use schedule::*;
pub use task_type::*;
pub use wake::*;

/// The contract, as `#[tokio::test]`s for every engine: expands
/// [`per_engine_tests!`](crate::per_engine_tests) with every case (modules
/// `sqlite` and `postgres`, each case on a fresh database). Invoke it where
/// the cases are in scope: `use atp_store::conformance::*;` then
/// `atp_store::conformance_tests!();`.
///
/// The list is written here once; [`CASES`] is made from it, and a unit
/// test compares it with the `pub async fn …(db: impl TestDb)` cases the
/// files of this folder define, so a case cannot be defined and forgotten.
#[macro_export]
macro_rules! conformance_tests {
    () => {
        $crate::conformance_tests!(@with $crate::per_engine_tests);
    };
    (@with $($then:tt)*) => {
        $($then)* ! {
            type_is_registered_read_listed_and_updated,
            type_with_bad_limits_is_refused,
            unknown_type_is_not_found_everywhere,
            type_with_tasks_is_not_unregistered_without_force,
            forced_unregister_deletes_tasks_and_all_they_own,
            a_paused_types_tasks_are_not_claimed,
            resume_makes_a_paused_types_tasks_claimable_in_fifo_order,
            a_pause_survives_reopening_and_re_registering,
            pausing_an_unknown_type_is_not_found,
            enqueue_creates_an_accepted_logged_task,
            enqueue_refuses_a_duplicate_and_changes_nothing,
            enqueue_many_is_all_or_nothing,
            enqueue_refuses_when_the_queue_is_full,
            a_duplicate_is_refused_as_such_even_when_the_queue_is_full,
            enqueue_refuses_an_input_over_the_limit,
            identifiers_round_trip_exactly,
            enqueue_with_a_generated_identifier,
            claim_is_fifo_across_types,
            claim_can_be_restricted_to_types,
            claim_marks_scheduled_and_logs_the_holder,
            start_counts_the_start_and_returns_what_the_handler_needs,
            claim_start_leaves_tasks_as_claim_then_start_would,
            a_claim_ahead_starts_the_first_and_schedules_the_rest,
            claim_start_again_counts_the_start_and_fences_the_old_attempt,
            start_carries_when_the_task_entered_the_queue,
            holder_changes_follow_the_transition_table,
            release_requeues_or_fails_at_max_starts,
            finish_unless_terminal_keeps_a_final_status,
            stale_attempt_changes_nothing_after_a_reenqueue,
            stale_attempt_after_a_rescue_and_reclaim_by_the_same_daemon,
            heartbeat_refreshes_without_a_log_record,
            progress_is_recorded_and_validated,
            response_is_stored_replaced_and_read_back,
            response_with_a_status_change_is_atomic,
            task_is_found_by_id_and_by_key,
            missing_task_is_not_found_everywhere,
            list_pages_newest_first_with_filters,
            list_filters_by_holder,
            counts_by_status_and_type,
            delete_removes_the_task_with_its_log_and_response,
            operator_reenqueue_follows_the_table_and_resets_starts,
            list_by_identifier_prefix_matches_exactly_what_starts_with_it,
            list_with_last_message_gives_each_tasks_newest_log_line,
            bulk_reenqueue_moves_every_task_in_the_status_and_counts_them,
            bulk_reenqueue_refuses_accepted_and_unknown_types,
            cancel_of_a_queued_task_takes_it_out_of_the_queue,
            cancel_of_a_held_task_fences_out_its_attempt,
            cancelling_an_ended_task_is_refused_and_changes_nothing,
            a_cancelled_task_is_reenqueued_alone_or_in_bulk,
            cancelled_tasks_are_retired_after_their_retention,
            cancel_tells_the_holder_s_watch,
            abandoned_tasks_are_requeued_or_failed,
            heartbeat_keeps_a_long_task_from_being_abandoned,
            a_rescue_that_fails_a_task_fences_out_its_attempt,
            retired_tasks_are_deleted_after_their_retention,
            daemons_register_heartbeat_and_deregister,
            dead_daemons_tasks_are_rescued,
            a_daemon_shown_gone_is_reaped_after_the_short_silence,
            a_daemon_never_reaps_itself,
            schema_is_at_the_latest_version_and_reopening_is_harmless,
            concurrent_claimers_take_each_task_exactly_once,
            concurrent_claim_starts_take_each_task_exactly_once,
            concurrent_cleanups_rescue_each_task_once,
            concurrent_producers_respect_the_queue_limit,
            thirty_two_producers_fill_the_queue_exactly_to_its_limit,
            wait_for_tasks_wakes_on_enqueue,
            wait_for_tasks_times_out_without_work,
            wait_for_tasks_wakes_on_a_hand_back,
            wait_for_tasks_wakes_on_a_resume,
            wait_for_tasks_wakes_on_a_bulk_reenqueue,
            nul_characters_in_messages_become_replacement_characters,
            an_input_with_a_nul_character_round_trips,
            a_pool_of_one_connection_serves_concurrent_calls,
            a_delayed_task_is_not_claimed_before_its_due_time,
            every_claim_path_waits_for_the_due_time,
            due_tasks_run_in_order_of_due_time_then_enqueue_time,
            delayed_tasks_count_towards_the_queue_limit,
            an_absurd_due_time_is_refused,
            next_due_reports_the_earliest_delayed_task,
            higher_priorities_run_first_fifo_within_a_priority,
            priorities_hold_under_sixteen_concurrent_claimers,
            a_cancelled_delayed_task_never_runs,
            a_started_delayed_task_is_ready_from_its_due_time,
            a_task_fails_twice_then_succeeds_with_the_policys_gaps,
            the_last_starts_failure_is_final,
            a_permanent_failure_or_no_policy_is_not_retried,
            an_abandonment_and_a_failure_spend_the_same_budget,
            a_handler_may_ask_to_run_again_after_a_delay,
            a_limited_type_is_never_claimed_beyond_its_limit,
            concurrent_claimers_never_exceed_a_types_limit,
            schedule_is_stored_read_listed_changed_and_removed,
            each_occurrence_is_enqueued_once_and_the_schedule_only_moves_forward,
            a_retired_occurrence_is_not_enqueued_again,
            an_occurrence_whose_task_exists_is_not_duplicated,
            a_paused_schedule_enqueues_nothing_until_resumed,
            a_full_queue_refuses_an_occurrence_and_it_goes_in_later,
            concurrent_daemons_enqueue_each_occurrence_exactly_once,
            a_types_description_round_trips,
            a_bad_input_schema_is_refused_at_register,
            an_input_that_fails_the_schema_is_refused_and_stores_nothing,
            a_schema_changed_by_another_handle_binds_at_once,
        }
    };
}

/// Names its arguments, for [`CASES`].
macro_rules! case_names {
    ($($case:ident),* $(,)?) => {
        &[$(stringify!($case)),*]
    };
}

/// Every contract case, by name, in the order they run.
pub const CASES: &[&str] = conformance_tests!(@with case_names);

/// A type name (panics on an invalid literal: tests only).
pub fn type_name(name: &str) -> TypeName {
    TypeName::new(name).expect("valid type name")
}

/// A task identifier (panics on an invalid literal: tests only).
pub fn ident(id: &str) -> TaskIdentifier {
    TaskIdentifier::new(id).expect("valid identifier")
}

/// A type with the default limits and `builtin:noop`.
pub fn task_type(name: &str) -> TaskType {
    TaskType::new(
        type_name(name),
        Handler::new("builtin:noop").expect("valid handler"),
    )
}

/// Registers `t`.
pub async fn register<S: Store>(store: &S, t: TaskType) -> TypeName {
    let name = t.name.clone();
    store
        .task_type_upsert(&t)
        .await
        .expect("registering a type");
    name
}

/// Enqueues a task with no input.
pub async fn enqueue<S: Store>(store: &S, t: &TypeName, id: &str) -> Task {
    store
        .task_enqueue(NewTask::new(t.clone(), ident(id)))
        .await
        .expect("enqueueing")
}

/// The identifiers a claim of `params` takes, in the order it returns them.
pub async fn claimed<S: Store>(s: &S, params: ClaimParams) -> Vec<String> {
    s.task_claim(&params)
        .await
        .expect("claiming")
        .into_iter()
        .map(|c| c.identifier.to_string())
        .collect()
}

/// Claims exactly one task for `holder`.
pub async fn claim_one<S: Store>(store: &S, holder: DaemonId) -> ClaimedTask {
    let mut claimed = store
        .task_claim(&ClaimParams::new(holder, 1))
        .await
        .expect("claiming");
    assert_eq!(claimed.len(), 1, "expected one task to claim");
    claimed.pop().expect("one claimed task")
}

/// Enqueues, claims and starts one task; returns its attempt.
pub async fn running<S: Store>(store: &S, t: &TypeName, id: &str, holder: DaemonId) -> Attempt {
    enqueue(store, t, id).await;
    let claimed = claim_one(store, holder).await;
    store
        .task_start(claimed.attempt)
        .await
        .expect("starting")
        .attempt
}

/// Another handle on `db` whose clock the test moves, and that clock: time
/// passes for this handle when the test says so, not while it sleeps.
pub async fn clocked<D: crate::testing::TestDb>(db: &D) -> (D::Store, TestClock) {
    let clock = TestClock::new();
    let store = db
        .open(StoreOptions {
            clock: clock.clock(),
            ..StoreOptions::default()
        })
        .await;
    (store, clock)
}

/// The holder's change that asks for `status`, through its named
/// constructor (for tests that walk statuses).
pub fn change_to(a: Attempt, status: Status, message: &str) -> StatusChange {
    match status {
        Status::Running => StatusChange::resume(a, message),
        Status::Paused => StatusChange::pause(a, message),
        Status::Finished => StatusChange::finish(a, message),
        Status::Failed => StatusChange::fail(a, message),
        Status::Accepted => StatusChange::hand_back(a, message),
        other => panic!("a holder cannot ask for {other}"),
    }
}

/// The task's status.
pub async fn status_of<S: Store>(store: &S, task: impl Into<TaskRef>) -> Status {
    store
        .task_get(&task.into())
        .await
        .expect("reading a task")
        .status
}

/// Number of log records of a task.
pub async fn log_len<S: Store>(store: &S, task: impl Into<TaskRef>) -> usize {
    store
        .task_log(&task.into())
        .await
        .expect("reading a log")
        .len()
}

/// The queue counter agrees with the number of ACCEPTED rows.
pub async fn assert_queue_consistent<S: Store>(store: &S) {
    let counts = store.task_counts().await.expect("counting");
    assert_eq!(
        store.queue_size().await.expect("queue size"),
        counts.status(Status::Accepted),
        "queue counter drifted from the ACCEPTED rows"
    );
}

/// Daemon ids for tests.
pub const DAEMON_A: DaemonId = DaemonId(0xA000_0000_0000_000A);
/// A second daemon.
pub const DAEMON_B: DaemonId = DaemonId(0xB000_0000_0000_000B);

#[cfg(test)]
mod tests {
    /// The files that define cases, as compiled into this crate.
    const SOURCES: &[&str] = &[
        include_str!("about.rs"),
        include_str!("boundary.rs"),
        include_str!("cancel.rs"),
        include_str!("claim.rs"),
        include_str!("concurrency.rs"),
        include_str!("daemons.rs"),
        include_str!("due.rs"),
        include_str!("ended.rs"),
        include_str!("enqueue.rs"),
        include_str!("limit.rs"),
        include_str!("lookups.rs"),
        include_str!("pause.rs"),
        include_str!("queue.rs"),
        include_str!("reap.rs"),
        include_str!("retry.rs"),
        include_str!("schedule.rs"),
        include_str!("task_type.rs"),
        include_str!("wake.rs"),
    ];

    /// Every `pub async fn name(db: impl TestDb)` of the folder is in the
    /// list, once, and the list names nothing else.
    #[test]
    fn the_case_list_names_every_case_defined() {
        let mut defined: Vec<&str> = SOURCES
            .iter()
            .flat_map(|source| source.lines())
            .filter_map(|line| {
                let rest = line.strip_prefix("pub async fn ")?;
                let (name, args) = rest.split_once('(')?;
                args.starts_with("db: impl TestDb").then_some(name)
            })
            .collect();
        defined.sort_unstable();
        let mut listed = super::CASES.to_vec();
        listed.sort_unstable();
        let before = listed.len();
        listed.dedup();
        assert_eq!(listed.len(), before, "a case is listed twice");
        assert_eq!(listed, defined);
    }

    /// Every file of the folder is read above.
    #[test]
    fn every_case_file_is_searched() {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("src/conformance");
        let mut files: Vec<String> = std::fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .filter(|name| name.ends_with(".rs") && name != "mod.rs")
            .collect();
        files.sort();
        assert_eq!(files.len(), SOURCES.len(), "{files:?}");
    }
}
