use super::*;
use crate::DeadRule;
use crate::id::{TaskIdentifier, TypeName};

const HOLDER: DaemonId = DaemonId(0xABCD);
const OTHER: DaemonId = DaemonId(0x1234);

fn attempt() -> Attempt {
    Attempt {
        task: TaskId(7),
        holder: HOLDER,
        lease: 3,
    }
}

fn state(status: Status) -> TaskState {
    TaskState {
        status,
        holder: Some(HOLDER),
        lease: 3,
        starts: 1,
        max_starts: 3,
        retry: None,
    }
}

fn kinds() -> [(ChangeKind, StatusChange); 6] {
    let a = attempt();
    [
        (ChangeKind::Start, StatusChange::start(a)),
        (ChangeKind::Resume, StatusChange::resume(a, "m")),
        (ChangeKind::Pause, StatusChange::pause(a, "m")),
        (ChangeKind::Finish, StatusChange::finish(a, "m")),
        (ChangeKind::Fail, StatusChange::fail(a, "m")),
        (ChangeKind::HandBack, StatusChange::hand_back(a, "m")),
    ]
}

fn is_invalid(e: &Error, transition: Transition, from: Status) -> bool {
    matches!(e, Error::InvalidTransition { task: TaskId(7), source }
        if source.transition == transition && source.from == from)
}

/// Every kind a holder can ask for, from every status its attempt can see:
/// the legal rows of the transition table move, every other one is refused
/// as an invalid transition naming the move asked for.
#[test]
fn every_holder_change_follows_the_transition_table() {
    use Status::*;
    let legal: &[(ChangeKind, Status, Status)] = &[
        (ChangeKind::Resume, Paused, Running),
        (ChangeKind::Pause, Running, Paused),
        (ChangeKind::Finish, Scheduled, Finished),
        (ChangeKind::Finish, Running, Finished),
        (ChangeKind::Finish, Paused, Finished),
        (ChangeKind::Fail, Scheduled, Failed),
        (ChangeKind::Fail, Running, Failed),
        (ChangeKind::Fail, Paused, Failed),
        (ChangeKind::HandBack, Scheduled, Accepted),
        (ChangeKind::HandBack, Running, Accepted),
        (ChangeKind::HandBack, Paused, Accepted),
        (ChangeKind::Start, Scheduled, Running),
    ];
    // What a legal row writes beyond its status and the holder's message.
    let expected = |kind: ChangeKind, from: Status, to: Status| match (kind, from) {
        (ChangeKind::Start, _) => Move {
            counts_start: true,
            ..Move::new(from, to, messages::started(HOLDER, 2, 3))
        },
        (ChangeKind::HandBack, Scheduled) => Move {
            keeps_place: true,
            ..Move::new(from, to, "m".into())
        },
        _ => Move::new(from, to, "m".into()),
    };
    for (kind, asked) in kinds() {
        let transition = match kind {
            ChangeKind::Start => Transition::Start,
            ChangeKind::Resume => Transition::Resume,
            ChangeKind::Pause => Transition::Pause,
            ChangeKind::Finish => Transition::Finish,
            ChangeKind::Fail => Transition::Fail,
            _ => Transition::Reenqueue,
        };
        for from in [Scheduled, Running, Paused, Finished, Failed] {
            let decided = change(Some(&state(from)), &asked);
            match legal.iter().find(|(k, f, _)| *k == kind && *f == from) {
                Some((_, _, to)) => assert_eq!(
                    decided.unwrap(),
                    Some(expected(kind, from, *to)),
                    "{kind:?} from {from}"
                ),
                None => {
                    let e = decided.unwrap_err();
                    assert!(
                        is_invalid(&e, transition, from),
                        "{kind:?} from {from}: {e:?}"
                    );
                }
            }
        }
    }
}

#[test]
fn a_change_to_a_missing_task_is_not_found() {
    for (_, change) in kinds() {
        assert!(matches!(
            super::change(None, &change),
            Err(Error::TaskNotFound(_))
        ));
    }
}

#[test]
fn another_holder_another_lease_or_a_queued_task_makes_the_attempt_stale() {
    let mut other_holder = state(Status::Running);
    other_holder.holder = Some(OTHER);
    let mut other_lease = state(Status::Running);
    other_lease.lease = 4;
    let mut queued = state(Status::Accepted);
    queued.holder = None;
    let mut queued_same = state(Status::Accepted);
    queued_same.holder = Some(HOLDER);
    for s in [other_holder, other_lease, queued, queued_same] {
        for (_, c) in kinds() {
            assert!(
                matches!(
                    change(Some(&s), &c),
                    Err(Error::StaleAttempt {
                        task: TaskId(7),
                        holder: HOLDER,
                        lease: 3
                    })
                ),
                "{s:?}"
            );
        }
        assert!(matches!(
            start(Some(&s), &attempt()),
            Err(Error::StaleAttempt { .. })
        ));
        assert!(matches!(
            check_live(Some(&s), &attempt()),
            Err(Error::StaleAttempt { .. })
        ));
    }
}

#[test]
fn unless_terminal_leaves_an_ended_task_alone_and_acts_on_a_held_one() {
    let a = attempt();
    // The ends an attempt writes itself (CANCELLED is an operator's).
    for from in [Status::Finished, Status::Failed] {
        for c in [
            StatusChange::finish_unless_terminal(a, "m"),
            StatusChange::fail_unless_terminal(a, "m"),
        ] {
            assert_eq!(change(Some(&state(from)), &c).unwrap(), None);
        }
        // Without it, ending twice is refused.
        let e = change(Some(&state(from)), &StatusChange::finish(a, "m")).unwrap_err();
        assert!(is_invalid(&e, Transition::Finish, from));
    }
    let running = state(Status::Running);
    assert_eq!(
        change(
            Some(&running),
            &StatusChange::finish_unless_terminal(a, "m")
        )
        .unwrap(),
        Some(Move::new(Status::Running, Status::Finished, "m".into()))
    );
    assert_eq!(
        change(Some(&running), &StatusChange::fail_unless_terminal(a, "m")).unwrap(),
        Some(Move::new(Status::Running, Status::Failed, "m".into()))
    );
}

#[test]
fn a_hand_back_with_starts_used_up_fails_the_task() {
    let mut used = state(Status::Running);
    used.starts = 3;
    assert_eq!(
        change(Some(&used), &StatusChange::hand_back(attempt(), "bye")).unwrap(),
        Some(Move::new(
            Status::Running,
            Status::Failed,
            messages::released_failed("bye", 3)
        ))
    );
}

#[test]
fn start_leaves_only_scheduled_and_counts_the_start() {
    let a = attempt();
    let decided = start(Some(&state(Status::Scheduled)), &a).unwrap();
    assert_eq!(decided.from, Status::Scheduled);
    assert_eq!(decided.to, Status::Running);
    assert_eq!(decided.message, messages::started(HOLDER, 2, 3));
    let mut s = state(Status::Scheduled);
    s.apply(&decided);
    assert_eq!(
        (s.status, s.starts, s.holder),
        (Status::Running, 2, Some(HOLDER))
    );
    for from in [
        Status::Running,
        Status::Paused,
        Status::Finished,
        Status::Failed,
    ] {
        let e = start(Some(&state(from)), &a).unwrap_err();
        assert!(is_invalid(&e, Transition::Start, from), "{from}");
    }
    assert!(matches!(start(None, &a), Err(Error::TaskNotFound(_))));
}

#[test]
fn live_checks_refuse_an_ended_attempt() {
    let a = attempt();
    for from in Status::HELD {
        assert!(check_live(Some(&state(from)), &a).is_ok());
        assert!(check_held(Some(&state(from)), &a).is_ok());
    }
    for from in [Status::Finished, Status::Failed] {
        assert!(check_held(Some(&state(from)), &a).is_ok());
        assert!(matches!(
            check_live(Some(&state(from)), &a),
            Err(Error::StaleAttempt { .. })
        ));
    }
    assert!(matches!(check_live(None, &a), Err(Error::TaskNotFound(_))));
}

#[test]
fn a_move_into_the_queue_clears_the_holder() {
    let mut s = state(Status::Running);
    let decided = change(Some(&s), &StatusChange::hand_back(attempt(), "m"))
        .unwrap()
        .unwrap();
    assert!(decided.enters_queue());
    s.apply(&decided);
    assert_eq!((s.status, s.holder, s.starts), (Status::Accepted, None, 1));
}

#[test]
fn rescues_requeue_until_the_starts_are_used_up() {
    let dead = Release::HolderDead {
        holder: OTHER,
        silent_secs: 30.0,
    };
    let abandoned = Release::Abandoned { timeout_secs: 5.0 };
    // SCHEDULED has rules of its own (the next test).
    for from in [Status::Running, Status::Paused] {
        let mut s = state(from);
        assert_eq!(
            release(&s, abandoned).unwrap(),
            Move::new(
                from,
                Status::Accepted,
                messages::abandoned_requeued(5.0, 1, 3)
            )
        );
        assert_eq!(
            release(&s, dead).unwrap(),
            Move::new(from, Status::Accepted, messages::rescued(OTHER, 30.0))
        );
        assert_eq!(
            release(&s, Release::HandBack("r")).unwrap(),
            Move::new(from, Status::Accepted, "r".into())
        );
        s.starts = 3;
        // A rescue that fails the task clears its holder (the rescued
        // attempt is stale); a holder's own last hand-back keeps it.
        let cleared = |m: Move| Move {
            clears_holder: true,
            ..m
        };
        assert_eq!(
            release(&s, abandoned).unwrap(),
            cleared(Move::new(
                from,
                Status::Failed,
                messages::abandoned_failed(5.0, 3)
            ))
        );
        assert_eq!(
            release(&s, dead).unwrap(),
            cleared(Move::new(
                from,
                Status::Failed,
                messages::rescued_failed(OTHER, 30.0, 3)
            ))
        );
        let handed = release(&s, Release::HandBack("r")).unwrap();
        assert_eq!((handed.to, handed.clears_holder), (Status::Failed, false));
        let mut after = s;
        after.apply(&release(&s, dead).unwrap());
        assert_eq!(after.holder, None);
        assert!(matches!(
            check_held(Some(&after), &attempt()),
            Err(Error::StaleAttempt { .. })
        ));
    }
    for from in [Status::Accepted, Status::Finished, Status::Failed] {
        assert!(matches!(
            release(&state(from), abandoned),
            Err(Error::Corrupt(_))
        ));
    }
}

/// A task claimed ahead is SCHEDULED until its holder writes its start,
/// which may follow the handler's beginning: a rescue counts that start
/// (else a handler that kills its daemon at once would loop forever), a
/// holder's hand-back of it (it knows the handler never began) does not,
/// and puts it back in its place.
#[test]
fn a_rescue_of_a_scheduled_task_counts_the_start_it_may_have_made() {
    let dead = Release::HolderDead {
        holder: OTHER,
        silent_secs: 30.0,
    };
    let abandoned = Release::Abandoned { timeout_secs: 5.0 };
    let mut s = state(Status::Scheduled);
    let counted = |to: Status, message: String| Move {
        counts_start: true,
        clears_holder: true,
        ..Move::new(Status::Scheduled, to, message)
    };
    assert_eq!(
        release(&s, abandoned).unwrap(),
        counted(
            Status::Accepted,
            messages::with_unseen_start(&messages::abandoned_requeued(5.0, 2, 3), 2)
        )
    );
    assert_eq!(
        release(&s, dead).unwrap(),
        counted(
            Status::Accepted,
            messages::with_unseen_start(&messages::rescued(OTHER, 30.0), 2)
        )
    );
    let handed = release(&s, Release::HandBack("r")).unwrap();
    assert_eq!(
        handed,
        Move {
            keeps_place: true,
            ..Move::new(Status::Scheduled, Status::Accepted, "r".into())
        }
    );
    // The start it may have made was its last: FAILED, not looping.
    s.starts = 2;
    assert_eq!(
        release(&s, dead).unwrap(),
        counted(
            Status::Failed,
            messages::with_unseen_start(&messages::rescued_failed(OTHER, 30.0, 3), 3)
        )
    );
    let mut after = s;
    after.apply(&release(&s, abandoned).unwrap());
    assert_eq!((after.status, after.starts), (Status::Failed, 3));
    // Running, a rescue counts nothing more: the start was written.
    let running = state(Status::Running);
    assert!(!release(&running, dead).unwrap().counts_start);
}

#[test]
fn an_operator_reenqueues_from_anything_but_the_queue() {
    for from in Status::ALL {
        let decided = reenqueue(TaskId(7), from, "");
        if Transition::Reenqueue.allows(from) {
            assert_eq!(
                decided.unwrap(),
                Move::new(from, Status::Accepted, messages::REENQUEUED.into())
            );
        } else {
            assert!(
                is_invalid(&decided.unwrap_err(), Transition::Reenqueue, from),
                "{from}"
            );
        }
    }
    assert_eq!(
        reenqueue(TaskId(7), Status::Failed, "again")
            .unwrap()
            .message,
        "again"
    );
}

#[test]
fn a_bulk_reenqueue_is_decided_once_for_its_status() {
    for from in Status::ALL {
        match reenqueue_all(from, "") {
            Ok(decided) => {
                assert!(Transition::Reenqueue.allows(from), "{from}");
                assert_eq!(decided.message, messages::REENQUEUED);
            }
            Err(err) => {
                assert!(!Transition::Reenqueue.allows(from), "{from}");
                assert!(matches!(err, Error::InvalidArgument(_)), "{err:?}");
                assert!(err.to_string().contains(&from.to_string()), "{err}");
            }
        }
    }
}

#[test]
fn an_enqueued_task_is_queued_and_fresh() {
    let at = crate::time::now();
    let due_at = at + time::Duration::seconds(90);
    let t = enqueued(
        TaskId(9),
        TypeName::new("t").unwrap(),
        TaskIdentifier::new("x").unwrap(),
        at,
        crate::Queued {
            priority: 7,
            due_at,
        },
    );
    assert_eq!(t.status, Status::Accepted);
    assert_eq!((t.inserted_at, t.updated_at, t.enqueued_at), (at, at, at));
    assert_eq!((t.priority, t.due_at), (7, due_at));
    assert_eq!(
        (t.starts, t.lease, t.holder, t.progress),
        (0, 0, None, None)
    );
}

#[test]
fn nul_characters_become_replacement_characters_in_every_move() {
    assert_eq!(safe_text("a\0b\0"), "a\u{FFFD}b\u{FFFD}");
    assert!(matches!(
        safe_text("plain"),
        std::borrow::Cow::Borrowed("plain")
    ));
    let a = attempt();
    let decided = change(
        Some(&state(Status::Running)),
        &StatusChange::fail(a, "boom\0"),
    )
    .unwrap()
    .unwrap();
    assert_eq!(decided.message, "boom\u{FFFD}");
    let decided = release(&state(Status::Running), Release::HandBack("x\0")).unwrap();
    assert_eq!(decided.message, "x\u{FFFD}");
    assert_eq!(
        reenqueue(TaskId(7), Status::Failed, "\0").unwrap().message,
        "\u{FFFD}"
    );
}

#[test]
fn entry_checks_refuse_empty_claims_and_bad_silences() {
    let mut p = ClaimParams::new(HOLDER, 1);
    assert!(!claims_nothing(&p));
    p.types = Some(vec![]);
    assert!(claims_nothing(&p));
    p.types = Some(vec![TypeName::new("t").unwrap()]);
    assert!(!claims_nothing(&p));
    p.limit = 0;
    assert!(claims_nothing(&p));
    assert!(check_silence(&DeadRule::silent_for(0.5)).is_ok());
    assert!(check_silence(&DeadRule::silent_for(15.0).gone_after(3.0)).is_ok());
    for bad in [0.0, -1.0, f64::NAN, f64::INFINITY] {
        for rule in [
            DeadRule::silent_for(bad),
            DeadRule::silent_for(15.0).gone_after(bad),
        ] {
            assert!(
                matches!(check_silence(&rule), Err(Error::InvalidArgument(_))),
                "{rule:?}"
            );
        }
    }
    // The threshold for daemons shown gone is the shorter one.
    assert!(matches!(
        check_silence(&DeadRule::silent_for(3.0).gone_after(15.0)),
        Err(Error::InvalidArgument(_))
    ));
}

#[test]
fn claims_and_starts_are_the_table_s_moves() {
    assert_eq!(CLAIM, (Status::Accepted.code(), Status::Scheduled.code()));
    assert_eq!(START, (Status::Scheduled.code(), Status::Running.code()));
    assert_eq!(Transition::Claim.sources(), [Status::Accepted]);
    assert_eq!(Transition::Start.sources(), [Status::Scheduled]);
}

fn retried(mut state: TaskState) -> TaskState {
    state.retry = Some(RetryPolicy {
        delay_secs: 10.0,
        max_delay_secs: 3600.0,
    });
    state
}

/// With a retry policy and starts left, a failure goes back to the queue,
/// due after the policy's delay for the start that failed, logged with the
/// next start; the last start's failure is final. Without a policy, or
/// when the handler says so, a failure is final at once.
#[test]
fn a_failure_is_retried_by_the_policy_while_starts_remain() {
    let a = attempt();
    let running = retried(state(Status::Running));
    let decided = change(Some(&running), &StatusChange::fail(a, "boom"))
        .unwrap()
        .unwrap();
    assert_eq!(
        (decided.from, decided.to),
        (Status::Running, Status::Accepted)
    );
    let delay = decided.due_in.expect("due later");
    let policy = running.retry.unwrap();
    assert_eq!(delay, policy.delay(a.task.0, 1));
    assert!(
        decided
            .message
            .starts_with("Failed: boom; start 2 of 3 after "),
        "{}",
        decided.message
    );
    assert!(decided.enters_queue());

    let last = TaskState {
        starts: 3,
        ..running
    };
    let decided = change(Some(&last), &StatusChange::fail(a, "boom"))
        .unwrap()
        .unwrap();
    assert_eq!((decided.to, decided.due_in), (Status::Failed, None));
    assert!(
        decided.message.contains("all 3 starts used up"),
        "{}",
        decided.message
    );

    let never = change(
        Some(&running),
        &StatusChange::fail_permanently(a, "bad input"),
    )
    .unwrap()
    .unwrap();
    assert_eq!(
        (never.to, never.message.as_str()),
        (Status::Failed, "bad input")
    );

    let plain = change(
        Some(&state(Status::Running)),
        &StatusChange::fail(a, "boom"),
    )
    .unwrap()
    .unwrap();
    assert_eq!(
        (plain.to, plain.due_in),
        (Status::Failed, None),
        "no policy"
    );
}

/// A handler may ask for another start after a delay of its choosing, with
/// or without a policy, within the same start budget.
#[test]
fn a_handler_may_ask_to_run_again_after_a_delay() {
    let a = attempt();
    let delay = std::time::Duration::from_millis(1500);
    for s in [state(Status::Running), retried(state(Status::Paused))] {
        let decided = change(Some(&s), &StatusChange::retry_after(a, "busy", delay))
            .unwrap()
            .unwrap();
        assert_eq!(
            (decided.to, decided.due_in),
            (Status::Accepted, Some(delay))
        );
        assert_eq!(decided.message, "Failed: busy; start 2 of 3 after 1.5 s");
    }
    let spent = TaskState {
        starts: 3,
        ..state(Status::Running)
    };
    let decided = change(Some(&spent), &StatusChange::retry_after(a, "busy", delay))
        .unwrap()
        .unwrap();
    assert_eq!(decided.to, Status::Failed);
    // "Unless terminal" still leaves an ended task alone.
    let ended = state(Status::Finished);
    let c = StatusChange::fail_unless_terminal(a, "late");
    assert_eq!(change(Some(&retried(ended)), &c).unwrap(), None);
}

#[test]
fn an_operator_cancels_queued_and_held_tasks_only() {
    use Status::*;
    for from in Status::ALL {
        match cancel(TaskId(7), from, None) {
            Ok(c) => {
                assert!(
                    matches!(from, Accepted | Scheduled | Running | Paused),
                    "{from}"
                );
                assert_eq!(
                    c.decided,
                    Move::new(from, Cancelled, messages::CANCELLED.into())
                );
                assert_eq!(c.leaves_queue, from == Accepted, "{from}");
                assert_eq!(c.was_held, from.is_held(), "{from}");
            }
            Err(e) => {
                assert!(
                    matches!(from, Undefined | Finished | Failed | Cancelled),
                    "{from}"
                );
                assert!(is_invalid(&e, Transition::Cancel, from), "{e:?}");
                if from.is_terminal() {
                    assert_eq!(
                        e.to_string(),
                        format!("task 7: cannot cancel a task that is {from}")
                    );
                }
            }
        }
    }
    let said = cancel(TaskId(7), Running, Some("wrong input\0")).unwrap();
    assert_eq!(said.decided.message, "Cancelled: wrong input\u{FFFD}");
    let blank = cancel(TaskId(7), Running, Some("  ")).unwrap();
    assert_eq!(blank.decided.message, messages::CANCELLED);
}

#[test]
fn a_cancelled_task_fences_out_its_attempt_even_with_its_holder_and_lease() {
    let cancelled = state(Status::Cancelled);
    assert!(matches!(
        check_held(Some(&cancelled), &attempt()),
        Err(Error::StaleAttempt { .. })
    ));
    for (_, c) in kinds() {
        assert!(
            matches!(
                change(Some(&cancelled), &c),
                Err(Error::StaleAttempt { .. })
            ),
            "{c:?}"
        );
    }
    let finish = StatusChange::finish_unless_terminal(attempt(), "late");
    assert!(matches!(
        change(Some(&cancelled), &finish),
        Err(Error::StaleAttempt { .. })
    ));
    // Its own ends still count as its own.
    assert!(check_held(Some(&state(Status::Failed)), &attempt()).is_ok());
}

#[test]
fn a_cancelled_task_can_be_reenqueued() {
    let decided = reenqueue(TaskId(7), Status::Cancelled, "").unwrap();
    assert_eq!(decided.to, Status::Accepted);
    assert_eq!(
        reenqueue_all(Status::Cancelled, "").unwrap().to,
        Status::Accepted
    );
}

/// A failure that would be retried (by the type's policy or the handler's
/// own delay) from a task its attempt already ended is refused like any
/// failure of an ended task: it must not put a FINISHED or FAILED task
/// back in the queue. Found by the store's model-based test (claim, finish,
/// then a late `fail` of the same attempt on a type with a retry policy
/// re-enqueued the finished task).
#[test]
fn a_retried_failure_of_an_ended_task_is_refused() {
    let policy = crate::task_type::RetryPolicy {
        delay_secs: 8.0,
        max_delay_secs: 8.0,
    };
    let a = attempt();
    for from in [Status::Finished, Status::Failed] {
        let ended = TaskState {
            retry: Some(policy),
            ..state(from)
        };
        for c in [
            StatusChange::fail(a, "late"),
            StatusChange::retry_after(a, "late", std::time::Duration::from_secs(5)),
        ] {
            let e = change(Some(&ended), &c).unwrap_err();
            assert!(is_invalid(&e, Transition::Fail, from), "{from}: {e:?}");
        }
    }
    // A held task is still retried.
    let held = TaskState {
        retry: Some(policy),
        ..state(Status::Running)
    };
    let decided = change(Some(&held), &StatusChange::fail(a, "boom"))
        .unwrap()
        .unwrap();
    assert_eq!(decided.to, Status::Accepted);
}
