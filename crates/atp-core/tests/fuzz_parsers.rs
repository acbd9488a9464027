//! Fuzzing every parser of outside input in the domain: names and ids,
//! status and catch-up names, cron expressions and time zones (and the
//! occurrence searches over them), the JSON a producer or an operator
//! sends (tasks, types, due times, retry policies), stored payloads.
//! Random bytes and strings, plus generators that know each format. No
//! input may panic, and none may take longer than [`DEADLINE`] (a search
//! that never ends is a hang, not a slow answer); where a rule is simple
//! enough, the verdict is compared with it.
//!
//! Cases: `ATP_FUZZ_CASES` (default 1,000 per property).

use std::sync::mpsc;
use std::time::Duration;

use atp_core::payload::{self, Encoding};
use atp_core::{
    CatchUp, DaemonId, Due, Handler, NewTask, Recurrence, RetryPolicy, ScheduleName, Status,
    TaskIdentifier, TaskType, TypeName,
};
use proptest::prelude::*;
use proptest::test_runner::{Config, TestCaseError};
use time::OffsetDateTime;

/// One input is handled within this, or it hangs.
const DEADLINE: Duration = Duration::from_secs(5);

fn config() -> Config {
    Config {
        cases: std::env::var("ATP_FUZZ_CASES")
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(1000),
        failure_persistence: None,
        ..Config::default()
    }
}

/// Runs `f` on a thread of its own and fails the case when it panics or
/// does not return within [`DEADLINE`].
fn bounded<T: Send + 'static>(
    what: String,
    f: impl FnOnce() -> T + Send + 'static,
) -> Result<T, TestCaseError> {
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(std::panic::catch_unwind(std::panic::AssertUnwindSafe(f)));
    });
    match rx.recv_timeout(DEADLINE) {
        Ok(Ok(value)) => Ok(value),
        Ok(Err(_)) => Err(TestCaseError::fail(format!("{what}: panicked"))),
        Err(_) => Err(TestCaseError::fail(format!(
            "{what}: no answer within {DEADLINE:?}"
        ))),
    }
}

/// The naming rules, written again from their documentation.
fn name_ok(value: &str, max_chars: usize) -> bool {
    let n = value.chars().count();
    n >= 1
        && n <= max_chars
        && !value.chars().any(char::is_control)
        && !value.starts_with(char::is_whitespace)
        && !value.ends_with(char::is_whitespace)
        && value != "."
        && value != ".."
}

/// Strings near the naming rules' edges.
fn name_like() -> impl Strategy<Value = String> {
    prop_oneof![
        3 => any::<String>(),
        2 => "[ -~]{0,70}",
        1 => "\\PC{60,70}",
        1 => prop_oneof![Just("."), Just(".."), Just("..."), Just(" a"), Just("a "), Just("a\u{0}b"),
            Just("\u{a0}"), Just("a\u{2028}"), Just("\u{feff}x"), Just("")].prop_map(str::to_owned),
        1 => ("[a-z]{1,3}", 1020usize..1030).prop_map(|(s, n)| s.repeat(n / s.len() + 1)),
    ]
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn names_follow_their_rules_and_round_trip(value in name_like()) {
        let checks: [(&str, usize, Result<String, String>); 4] = [
            ("type", TypeName::MAX_CHARS, TypeName::new(value.clone()).map(|n| n.to_string()).map_err(|e| e.to_string())),
            ("identifier", TaskIdentifier::MAX_CHARS, TaskIdentifier::new(value.clone()).map(|n| n.to_string()).map_err(|e| e.to_string())),
            ("handler", Handler::MAX_CHARS, Handler::new(value.clone()).map(|n| n.to_string()).map_err(|e| e.to_string())),
            ("schedule", ScheduleName::MAX_CHARS, ScheduleName::new(value.clone()).map(|n| n.as_str().to_owned()).map_err(|e| e.to_string())),
        ];
        for (what, max, verdict) in checks {
            let expected = name_ok(&value, max);
            prop_assert_eq!(verdict.is_ok(), expected, "{} {:?}: {:?}", what, value, verdict);
            if let Ok(kept) = verdict {
                prop_assert_eq!(&kept, &value, "{} is kept byte for byte", what);
            }
        }
        // The JSON form agrees with the constructor.
        let json = serde_json::to_string(&value).unwrap();
        let parsed: Result<TaskIdentifier, _> = serde_json::from_str(&json);
        prop_assert_eq!(parsed.is_ok(), name_ok(&value, TaskIdentifier::MAX_CHARS));
    }

    #[test]
    fn daemon_ids_parse_only_their_hex_form(raw in prop_oneof![
        any::<String>(),
        "0[xX][0-9a-fA-F]{0,20}",
        any::<u64>().prop_map(|n| DaemonId(n).to_string()),
        "[+-]?0x[+-]?[0-9a-f]{1,16}",
    ]) {
        let parsed: Result<DaemonId, _> = serde_json::from_value(serde_json::Value::String(raw.clone()));
        if let Ok(id) = parsed {
            // Whatever was accepted names the id it prints as (up to case
            // and leading zeros).
            let hex = raw.get(2..).unwrap_or_default();
            prop_assert_eq!(u64::from_str_radix(hex, 16).ok(), Some(id.0), "{:?}", raw);
        }
        let n: u64 = raw.len() as u64 * 0x9E37_79B9;
        let shown = DaemonId(n).to_string();
        let back: DaemonId = serde_json::from_value(serde_json::Value::String(shown)).unwrap();
        prop_assert_eq!(back, DaemonId(n));
    }

    #[test]
    fn status_and_catch_up_names_parse_or_refuse(raw in prop_oneof![
        any::<String>(),
        "[ ]?[a-zA-Z]{0,10}[ ]?",
        "-?[0-9]{1,20}",
    ]) {
        if let Ok(status) = raw.parse::<Status>() {
            let trimmed = raw.trim();
            prop_assert!(
                status.name().eq_ignore_ascii_case(trimmed)
                    || trimmed.parse::<i64>().ok() == Some(i64::from(status.code())),
                "{:?} read as {}", raw, status
            );
        }
        let _ = raw.parse::<CatchUp>();
    }
}

/// A cron field: numbers (in and out of range), names, wildcards,
/// ranges, steps, lists and croner's specials.
fn cron_field() -> impl Strategy<Value = String> {
    let atom = prop_oneof![
        4 => (0u32..70).prop_map(|n| n.to_string()),
        1 => any::<u32>().prop_map(|n| n.to_string()),
        2 => Just("*".to_owned()),
        1 => Just("?".to_owned()),
        1 => prop_oneof![Just("JAN"), Just("dec"), Just("MON"), Just("sun"), Just("L"), Just("5L"), Just("LW"),
            Just("15W"), Just("2#3"), Just("5#5"), Just("0#1"), Just("7"), Just("-1"), Just("")].prop_map(str::to_owned),
    ];
    let part = (
        atom,
        proptest::option::of(prop_oneof![
            (0u32..70).prop_map(|n| format!("-{n}")),
            (0u32..70).prop_map(|n| format!("/{n}")),
            (0u32..70, 0u32..70).prop_map(|(a, b)| format!("-{a}/{b}")),
        ]),
    )
        .prop_map(|(a, r)| format!("{a}{}", r.unwrap_or_default()));
    proptest::collection::vec(part, 1..4).prop_map(|p| p.join(","))
}

/// A field within its range (`lo..=hi`): a value, a range, a step, a
/// list, or the field's own specials.
fn ranged_field(lo: u32, hi: u32, specials: &'static [&'static str]) -> BoxedStrategy<String> {
    let value = lo..=hi;
    let part = prop_oneof![
        3 => value.clone().prop_map(|n| n.to_string()),
        2 => (value.clone(), value.clone()).prop_map(|(a, b)| format!("{}-{}", a.min(b), a.max(b))),
        1 => (value.clone(), 1u32..10).prop_map(move |(a, n)| format!("{a}-{hi}/{n}")),
        1 => proptest::sample::select(specials).prop_map(str::to_owned),
    ];
    // A wildcard (with or without a step) stands alone; croner refuses it
    // in a list.
    prop_oneof![
        2 => Just("*".to_owned()),
        1 => (1u32..=(hi - lo + 1)).prop_map(|n| format!("*/{n}")),
        4 => proptest::collection::vec(part, 1..3).prop_map(|p| p.join(",")),
    ]
    .boxed()
}

fn valid_cron() -> impl Strategy<Value = String> {
    let minute = ranged_field(0, 59, &["0"]);
    let hour = ranged_field(0, 23, &["12"]);
    let day = ranged_field(1, 31, &["L", "15W", "LW", "?"]);
    let month = ranged_field(1, 12, &["JAN", "feb", "DEC", "*/3"]);
    let weekday = ranged_field(0, 7, &["MON", "sun", "5L", "2#3", "1#5", "?"]);
    (
        proptest::option::of(ranged_field(0, 59, &["30"])),
        minute,
        hour,
        day,
        month,
        weekday,
    )
        .prop_map(|(sec, m, h, d, mo, w)| {
            let five = format!("{m} {h} {d} {mo} {w}");
            match sec {
                Some(s) => format!("{s} {five}"),
                None => five,
            }
        })
}

fn cron_expression() -> impl Strategy<Value = String> {
    prop_oneof![
        6 => valid_cron(),
        3 => proptest::collection::vec(cron_field(), 5..=6).prop_map(|f| f.join(" ")),
        1 => proptest::collection::vec(cron_field(), 0..9).prop_map(|f| f.join(" ")),
        1 => prop_oneof![Just("@yearly"), Just("@monthly"), Just("@weekly"), Just("@daily"), Just("@hourly"),
            Just("@reboot"), Just("@every 5m"), Just("0 0 29 2 1"), Just("0 0 30 2 *"), Just("59 23 31 12 5#5"),
            Just("0 0 L 2 *"), Just("0 0 31 4,6,9,11 *"), Just("* * * * * *")].prop_map(str::to_owned),
        1 => any::<String>(),
        1 => "[0-9*/,\\- LW#?]{0,300}",
    ]
}

fn time_zone() -> impl Strategy<Value = String> {
    prop_oneof![
        6 => prop_oneof![Just("UTC"), Just("Europe/Berlin"), Just("America/New_York"), Just("Australia/Lord_Howe"),
            Just("Pacific/Chatham"), Just("Asia/Kathmandu"), Just("America/Sao_Paulo"), Just("Pacific/Apia"),
            Just("America/St_Johns"), Just("Antarctica/Troll")].prop_map(str::to_owned),
        2 => prop_oneof![Just("UTC"), Just("Europe/Berlin"), Just("America/New_York"), Just("Australia/Lord_Howe"),
            Just("Pacific/Chatham"), Just("Asia/Kathmandu"), Just("America/Sao_Paulo"), Just("Etc/GMT+12"),
            Just("utc"), Just("europe/berlin"), Just("EST5EDT"), Just("Local"), Just("")].prop_map(str::to_owned),
        1 => any::<String>(),
        1 => "[A-Za-z_]{1,12}/[A-Za-z_+-]{1,14}",
        1 => Just("../../../../etc/passwd".to_owned()),
    ]
}

/// Any representable instant in the years 1970 to 9999, to the nanosecond.
fn instant() -> impl Strategy<Value = OffsetDateTime> {
    prop_oneof![
        3 => (0i64..4_102_444_800).prop_map(|s| OffsetDateTime::from_unix_timestamp(s).unwrap()),
        1 => (0i64..253_402_300_799, 0u32..1_000_000_000).prop_map(|(s, n)| {
            OffsetDateTime::from_unix_timestamp(s).unwrap().replace_nanosecond(n).unwrap()
        }),
    ]
}

/// Cron expressions and zones parse or are refused within the deadline;
/// a valid one's searches answer within it too and agree with each other.
/// Counted, so that a generator that stops making valid expressions shows.
#[test]
fn cron_expressions_and_zones_parse_or_refuse_in_time() {
    let mut runner = proptest::test_runner::TestRunner::new(config());
    let valid = std::sync::atomic::AtomicU32::new(0);
    let result = runner.run(
        &(cron_expression(), time_zone(), instant()),
        |(expression, zone, t)| {
            let what = format!("Recurrence::new({expression:?}, {zone:?}) at {t}");
            let checked = bounded(what.clone(), move || {
                let r = Recurrence::new(&expression, &zone).ok()?;
                let next = r.next_after(t);
                let latest = r.latest_at_or_before(t);
                let next_is = next.map(|n| r.is_occurrence(n));
                let latest_is = latest.map(|l| r.is_occurrence(l));
                Some((next, latest, next_is, latest_is))
            })?;
            if let Some((next, latest, next_is, latest_is)) = checked {
                valid.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                if let Some(n) = next {
                    prop_assert!(n > t, "{}: next {} is not after", what, n);
                    prop_assert_eq!(next_is, Some(true), "{}: next {} is no occurrence", what, n);
                }
                if let Some(l) = latest {
                    prop_assert!(l <= t, "{}: latest {} is after", what, l);
                    prop_assert_eq!(
                        latest_is,
                        Some(true),
                        "{}: latest {} is no occurrence",
                        what,
                        l
                    );
                }
                if let (Some(n), Some(l)) = (next, latest) {
                    prop_assert!(l < n, "{}", what);
                }
            }
            Ok(())
        },
    );
    if let Err(e) = result {
        panic!("{e}");
    }
    let valid = valid.into_inner();
    eprintln!("{valid} of {} recurrences were valid", config().cases);
    assert!(
        valid >= config().cases / 5,
        "only {valid} valid recurrences"
    );
}

/// JSON values shaped like what producers and operators send: the keys of
/// tasks, types and due times with values of every kind.
fn json_value() -> impl Strategy<Value = serde_json::Value> {
    use serde_json::{Value, json};
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(|n| json!(n)),
        any::<u64>().prop_map(|n| json!(n)),
        prop_oneof![
            Just(1e308f64),
            Just(-1e308),
            Just(-0.0),
            Just(1e-300),
            Just(4294967296.0),
            Just(1e19),
            any::<f64>().prop_filter("finite", |f| f.is_finite())
        ]
        .prop_map(|f| json!(f)),
        prop_oneof![
            Just("t"),
            Just("builtin:noop"),
            Just("2026-12-01T00:00:00Z"),
            Just("0000-01-01T00:00:00Z"),
            Just("+275760-09-13T00:00:00Z"),
            Just("9999-12-31T23:59:59.999999999Z"),
            Just("1969-12-31T23:59:59Z"),
            Just("2026-13-45T25:61:61Z"),
            Just(""),
            Just(".")
        ]
        .prop_map(|s| json!(s)),
        any::<String>().prop_map(Value::String),
    ];
    const KEYS: &[&str] = &[
        "type",
        "identifier",
        "input",
        "message",
        "priority",
        "due",
        "at",
        "after",
        "secs",
        "nanos",
        "name",
        "handler",
        "timeout_secs",
        "retention_secs",
        "max_starts",
        "paused",
        "retry",
        "delay_secs",
        "max_delay_secs",
        "max_running",
    ];
    leaf.prop_recursive(3, 32, 8, |inner| {
        prop_oneof![
            proptest::collection::vec(inner.clone(), 0..4).prop_map(Value::Array),
            proptest::collection::vec((proptest::sample::select(KEYS), inner), 0..10).prop_map(
                |kv| Value::Object(kv.into_iter().map(|(k, v)| (k.to_owned(), v)).collect())
            ),
        ]
    })
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn task_and_type_json_parse_validate_and_compute_without_panic(
        value in json_value(),
        bytes in proptest::collection::vec(any::<u8>(), 0..64),
        seed in any::<i64>(),
        start in any::<u32>(),
    ) {
        let what = format!("{value}");
        bounded(what, move || {
            for doc in [value.to_string().into_bytes(), bytes] {
                if let Ok(task) = serde_json::from_slice::<NewTask>(&doc)
                    && let Some(due) = task.due
                {
                    let _ = due.validate();
                }
                let _ = serde_json::from_slice::<Due>(&doc).map(|d| d.validate());
                if let Ok(t) = serde_json::from_slice::<TaskType>(&doc)
                    && t.validate().is_ok()
                    && let Some(policy) = t.retry
                {
                    let _ = policy.delay(seed, start);
                }
                if let Ok(policy) = serde_json::from_slice::<RetryPolicy>(&doc)
                    && policy.validate().is_ok()
                {
                    let _ = policy.delay(seed, start);
                }
            }
        })?;
    }

    #[test]
    fn a_valid_retry_policy_gives_a_delay_for_every_start(
        delay in prop_oneof![any::<f64>(), 0.0f64..2e9, Just(1e9), Just(f64::MIN_POSITIVE)],
        max in prop_oneof![any::<f64>(), 0.0f64..2e9, Just(1e9)],
        seed in any::<i64>(),
        start in any::<u32>(),
    ) {
        let policy = RetryPolicy { delay_secs: delay, max_delay_secs: max };
        if policy.validate().is_ok() {
            let d = bounded(format!("{policy:?}.delay({seed}, {start})"), move || policy.delay(seed, start))?;
            prop_assert!(d.as_secs_f64() <= max + 1e-6, "{:?} > {}", d, max);
            prop_assert!(d.as_secs_f64() >= 0.75 * delay.min(max) - 1e-6 || start == 0, "{:?}", d);
        }
    }

    #[test]
    fn due_times_anywhere_are_checked_without_panic(
        secs in any::<i64>(),
        nanos in 0u32..1_000_000_000,
        after_secs in any::<u64>(),
        after_nanos in 0u32..1_000_000_000,
    ) {
        if let Ok(t) = OffsetDateTime::from_unix_timestamp(secs / 100) {
            let _ = Due::At(t.replace_nanosecond(nanos).unwrap()).validate();
        }
        let _ = Due::After(Duration::new(after_secs, after_nanos)).validate();
    }

    #[test]
    fn stored_payloads_decode_or_refuse_and_round_trip(
        code in prop_oneof![0i64..3, any::<i64>()],
        stored in proptest::collection::vec(any::<u8>(), 0..256),
        mime in prop_oneof![Just("text/plain".to_owned()), Just("application/json".to_owned()),
            Just("application/octet-stream".to_owned()), any::<String>(), "[a-z]{0,8}/[a-z+.-]{0,12}"],
        body in proptest::collection::vec(any::<u8>(), 0..512),
    ) {
        if let Ok(encoding) = Encoding::from_code(code) {
            let _ = payload::decode(encoding, stored.clone());
        }
        // A zlib header on random bytes.
        let mut zlib = vec![0x78, 0x9C];
        zlib.extend_from_slice(&stored);
        let _ = payload::decode(Encoding::Zlib, zlib);
        let _ = payload::validate_mime(&mime);
        let (encoding, encoded) = payload::encode(&mime, &body);
        prop_assert_eq!(payload::decode(encoding, encoded).unwrap(), body);
    }
}
