use time::macros::datetime;

use super::*;

/// No occurrences.
const NONE: [OffsetDateTime; 0] = [];

fn every(expression: &str, timezone: &str) -> Recurrence {
    Recurrence::new(expression, timezone).unwrap()
}

/// A schedule created at `created` (nothing enqueued yet).
fn schedule(expression: &str, catch_up: CatchUp, created: OffsetDateTime) -> Schedule {
    Schedule {
        name: ScheduleName::new("nightly").unwrap(),
        task_type: TypeName::new("Report").unwrap(),
        recurrence: every(expression, "UTC"),
        input: serde_json::Value::Null,
        catch_up,
        paused: false,
        last_enqueued: None,
        created_at: created,
        updated_at: created,
    }
}

#[test]
fn five_and_six_field_expressions_parse_and_bad_ones_say_why() {
    let minutely = every("*/5 * * * *", "UTC");
    assert_eq!(
        minutely.next_after(datetime!(2026-12-01 10:01:00 UTC)),
        Some(datetime!(2026-12-01 10:05:00 UTC))
    );
    let secondly = every("*/10 * * * * *", "UTC");
    assert_eq!(
        secondly.next_after(datetime!(2026-12-01 10:00:00 UTC)),
        Some(datetime!(2026-12-01 10:00:10 UTC))
    );
    for bad in ["", "* * *", "61 * * * *", "not cron", "* * * * * * *"] {
        let e = Recurrence::new(bad, "UTC").unwrap_err();
        assert!(
            matches!(e, InvalidSchedule::Expression { .. }),
            "{bad}: {e}"
        );
        assert!(e.to_string().contains("cron expression"), "{e}");
    }
    let never = Recurrence::new("0 0 30 2 *", "UTC").unwrap_err();
    assert!(never.to_string().contains("never"), "{never}");
    let tz = Recurrence::new("* * * * *", "Mars/Olympus").unwrap_err();
    assert_eq!(tz, InvalidSchedule::TimeZone("Mars/Olympus".into()));
    assert!("sometimes".parse::<CatchUp>().is_err());
    assert_eq!("last".parse::<CatchUp>(), Ok(CatchUp::Last));
}

#[test]
fn the_expression_is_read_in_its_time_zone() {
    let nine = every("0 9 * * *", "Europe/Vienna");
    assert_eq!(nine.timezone(), "Europe/Vienna");
    // CET (UTC+1) in winter, CEST (UTC+2) in summer.
    assert_eq!(
        nine.next_after(datetime!(2026-12-01 00:00:00 UTC)),
        Some(datetime!(2026-12-01 08:00:00 UTC))
    );
    assert_eq!(
        nine.next_after(datetime!(2026-07-01 00:00:00 UTC)),
        Some(datetime!(2026-07-01 07:00:00 UTC))
    );
}

#[test]
fn a_time_in_the_spring_gap_fires_right_after_it_and_wildcards_skip_it() {
    // Europe/Vienna, 2026-03-29: 02:00 CET jumps to 03:00 CEST (01:00 UTC).
    let half_past_two = every("30 2 * * *", "Europe/Vienna");
    assert_eq!(
        half_past_two.next_after(datetime!(2026-03-28 12:00:00 UTC)),
        Some(datetime!(2026-03-29 01:00:00 UTC)),
        "the first moment after the gap, once"
    );
    assert_eq!(
        half_past_two.next_after(datetime!(2026-03-29 01:00:00 UTC)),
        Some(datetime!(2026-03-30 00:30:00 UTC))
    );
    let quarterly = every("*/15 * * * *", "Europe/Vienna");
    // 01:45 CET is 00:45 UTC; the next real quarter is 03:00 CEST.
    assert_eq!(
        quarterly.next_after(datetime!(2026-03-29 00:45:00 UTC)),
        Some(datetime!(2026-03-29 01:00:00 UTC))
    );
}

#[test]
fn a_time_in_the_autumn_overlap_fires_once_and_wildcards_fire_in_both_passes() {
    // Europe/Vienna, 2026-10-25: 03:00 CEST falls back to 02:00 CET
    // (01:00 UTC); 02:00–03:00 local happens twice.
    let half_past_two = every("30 2 * * *", "Europe/Vienna");
    let first = half_past_two
        .next_after(datetime!(2026-10-24 12:00:00 UTC))
        .unwrap();
    assert_eq!(first, datetime!(2026-10-25 00:30:00 UTC), "02:30 CEST");
    assert_eq!(
        half_past_two.next_after(first),
        Some(datetime!(2026-10-26 01:30:00 UTC)),
        "not again at 02:30 CET"
    );
    let half_hourly = every("*/30 2 * * *", "Europe/Vienna");
    let mut at = datetime!(2026-10-24 23:59:00 UTC);
    let mut seen = Vec::new();
    for _ in 0..4 {
        at = half_hourly.next_after(at).unwrap();
        seen.push(at);
    }
    assert_eq!(
        seen,
        [
            datetime!(2026-10-25 00:00:00 UTC),
            datetime!(2026-10-25 00:30:00 UTC),
            datetime!(2026-10-25 01:00:00 UTC),
            datetime!(2026-10-25 01:30:00 UTC),
        ]
    );
    // A tick inside the overlap enqueues what is due by real time.
    let mut s = schedule(
        "*/30 2 * * *",
        CatchUp::None,
        datetime!(2026-10-24 00:00 UTC),
    );
    s.recurrence = half_hourly.clone();
    s.last_enqueued = Some(datetime!(2026-10-25 00:30:00 UTC));
    assert_eq!(
        s.due(datetime!(2026-10-25 01:00:05 UTC)),
        [datetime!(2026-10-25 01:00:00 UTC)]
    );
    assert!(half_hourly.is_occurrence(datetime!(2026-10-25 01:30:00 UTC)));
    assert!(!half_hourly.is_occurrence(datetime!(2026-10-25 01:15:00 UTC)));
}

#[test]
fn a_new_schedule_enqueues_nothing_from_before_its_creation() {
    let s = schedule(
        "* * * * * *",
        CatchUp::Last,
        datetime!(2026-12-01 10:00:00.5 UTC),
    );
    assert_eq!(s.due(datetime!(2026-12-01 10:00:00.9 UTC)), NONE);
    assert_eq!(
        s.due(datetime!(2026-12-01 10:00:02.1 UTC)),
        [
            datetime!(2026-12-01 10:00:01 UTC),
            datetime!(2026-12-01 10:00:02 UTC)
        ]
    );
    assert_eq!(
        s.next_occurrence(datetime!(2026-12-01 09:00:00 UTC)),
        Some(datetime!(2026-12-01 10:00:01 UTC))
    );
}

#[test]
fn late_occurrences_are_all_enqueued_and_the_last_enqueued_is_not_again() {
    let mut s = schedule(
        "* * * * * *",
        CatchUp::None,
        datetime!(2026-12-01 10:00 UTC),
    );
    s.last_enqueued = Some(datetime!(2026-12-01 10:00:07 UTC));
    let now = datetime!(2026-12-01 10:00:10.2 UTC);
    assert_eq!(
        s.due(now),
        [
            datetime!(2026-12-01 10:00:08 UTC),
            datetime!(2026-12-01 10:00:09 UTC),
            datetime!(2026-12-01 10:00:10 UTC)
        ]
    );
    s.last_enqueued = Some(datetime!(2026-12-01 10:00:10 UTC));
    assert_eq!(s.due(now), NONE);
    assert_eq!(
        s.next_occurrence(now),
        Some(datetime!(2026-12-01 10:00:11 UTC))
    );
}

#[test]
fn missed_occurrences_give_the_most_recent_under_last_and_nothing_under_none() {
    let created = datetime!(2026-12-01 08:00 UTC);
    let mut last = schedule("0 * * * *", CatchUp::Last, created);
    last.last_enqueued = Some(datetime!(2026-12-01 09:00 UTC));
    // Down from 09:10 to 12:20: 10:00, 11:00 and 12:00 were missed.
    let back = datetime!(2026-12-01 12:20 UTC);
    assert_eq!(last.due(back), [datetime!(2026-12-01 12:00 UTC)]);
    let mut none = last.clone();
    none.catch_up = CatchUp::None;
    assert_eq!(none.due(back), NONE);
    // Back within MISSED_AFTER of 12:00: late, not missed, in both modes;
    // the earlier missed ones stay skipped even under `last`.
    let soon = datetime!(2026-12-01 12:00:20 UTC);
    assert_eq!(none.due(soon), [datetime!(2026-12-01 12:00 UTC)]);
    assert_eq!(last.due(soon), [datetime!(2026-12-01 12:00 UTC)]);
    // Exactly MISSED_AFTER late is missed.
    assert_eq!(
        none.due(datetime!(2026-12-01 12:00 UTC) + MISSED_AFTER),
        NONE
    );
    // A schedule created after the last occurrence has missed nothing.
    let young = schedule("0 * * * *", CatchUp::Last, datetime!(2026-12-01 12:10 UTC));
    assert_eq!(young.due(back), NONE);
}

#[test]
fn a_paused_schedule_enqueues_nothing_and_a_resume_back_fills_only_under_last() {
    let mut s = schedule(
        "*/5 * * * *",
        CatchUp::None,
        datetime!(2026-12-01 08:00 UTC),
    );
    s.last_enqueued = Some(datetime!(2026-12-01 09:00 UTC));
    s.paused = true;
    let now = datetime!(2026-12-01 09:30:01 UTC);
    assert_eq!(s.due(now), NONE);
    assert_eq!(s.next_occurrence(now), None);
    s.paused = false;
    assert_eq!(
        s.due(now),
        [datetime!(2026-12-01 09:30 UTC)],
        "late, not missed"
    );
    let later = datetime!(2026-12-01 09:33 UTC);
    assert_eq!(s.due(later), NONE, "`none` skips what passed while paused");
    s.catch_up = CatchUp::Last;
    assert_eq!(s.due(later), [datetime!(2026-12-01 09:30 UTC)]);
}

#[test]
fn one_tick_enqueues_at_most_the_late_window() {
    let s = schedule(
        "* * * * * *",
        CatchUp::None,
        datetime!(2026-12-01 10:00 UTC),
    );
    // Every second since a minute ago is due; the last 30 are late.
    let now = datetime!(2026-12-01 10:01:00 UTC);
    let due = s.due(now);
    assert_eq!(due.len(), 30);
    assert_eq!(due[0], now - MISSED_AFTER + time::Duration::SECOND);
}

#[test]
fn identifiers_are_the_name_and_the_utc_second_and_always_fit() {
    let s = schedule("0 9 * * *", CatchUp::None, datetime!(2026-12-01 00:00 UTC));
    let at = datetime!(2026-12-01 10:00:00 +01:00);
    assert_eq!(
        s.identifier_for(at).as_str(),
        "nightly@2026-12-01T09:00:00Z"
    );
    let longest = ScheduleName::new("n".repeat(ScheduleName::MAX_CHARS)).unwrap();
    assert_eq!(identifier_for(&longest, at).as_str().chars().count(), 64);
    assert!(ScheduleName::new("n".repeat(ScheduleName::MAX_CHARS + 1)).is_err());
    assert!(ScheduleName::new("").is_err());
    let task = s.task_for(at);
    assert_eq!(task.identifier, s.identifier_for(at));
    assert_eq!(task.task_type, s.task_type);
}

#[test]
fn odd_expressions_are_refused_or_parsed_quickly_never_panicking() {
    let started = std::time::Instant::now();
    for odd in [
        "*/0 * * * *",
        "0-99999999999 * * * *",
        "L W # ? *",
        "@reboot",
        "@hourly",
        "0 0 31 4 *",
        "0 0 30 2 *",
        "5-1 * * * *",
        "* * * * MON-SUN#9",
        "\u{0}",
        "1,,2 * * * *",
        "*/5 */5 */5 */5 */5 */5",
        "59 23 31 12 7",
        "0 0 29 2 1",
        &"1,".repeat(120),
    ] {
        let _ = Recurrence::new(odd, "UTC");
    }
    assert!(
        started.elapsed() < std::time::Duration::from_secs(5),
        "took {:?}",
        started.elapsed()
    );
    assert!(Recurrence::new("@hourly", "UTC").is_ok());
    assert!(
        Recurrence::new("0 0 31 4 *", "UTC").is_err(),
        "April has no 31st"
    );
    assert!(Recurrence::new(&"1".repeat(300), "UTC").is_err());
    assert!(Recurrence::new("* * * * *", "europe/vienna").is_ok());
}
