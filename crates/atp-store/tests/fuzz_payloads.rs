//! Fuzzing what producers and handlers hand a store: task inputs (random
//! JSON, NUL characters, extreme numbers, deep nesting, Unicode keys),
//! log and progress messages, and responses (random MIME types and
//! bytes). On both engines, each comes back exactly as given (the input
//! through `task_input` and to the handler's start, the response through
//! `task_response_get`) or is refused with a typed error, never a panic or
//! a database error; every call has a deadline.
//!
//! Cases: `ATP_FUZZ_CASES` (default 300) on SQLite, `ATP_FUZZ_PG_CASES`
//! (default 100) on PostgreSQL when a server is configured.

use std::time::Duration;

use atp_core::{
    ClaimParams, DaemonId, Error, Handler, NewTask, Progress, Response, Status, StatusChange,
    Store, StoreExt, StoreOptions, TaskIdentifier, TaskRef, TaskType, TypeName,
};
use atp_store::testing::TestDb;
use proptest::prelude::*;
use proptest::test_runner::{Config, TestCaseError, TestRunner};
use serde_json::{Value, json};

const DEADLINE: Duration = Duration::from_secs(20);
const MAX_INPUT: usize = 64 * 1024;
const HOLDER: DaemonId = DaemonId(0xF0);

fn cases(var: &str, default: u32) -> u32 {
    std::env::var(var)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn text() -> impl Strategy<Value = String> {
    prop_oneof![
        3 => any::<String>(),
        1 => Just("\u{0}".to_owned()),
        1 => Just("a\u{0}b\u{0}".to_owned()),
        1 => Just("\\u0000".to_owned()),
        1 => Just("\u{FFFF}\u{10FFFF}\u{FEFF}".to_owned()),
        1 => Just("\u{D7FF}\u{E000}".to_owned()),
        1 => "[\"\\\\/\u{8}\u{c}\n\r\t]{0,8}",
    ]
}

fn leaf() -> impl Strategy<Value = Value> {
    prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(|n| json!(n)),
        any::<u64>().prop_map(|n| json!(n)),
        prop_oneof![
            Just(0.0f64),
            Just(-0.0),
            Just(1e308),
            Just(-1e308),
            Just(1e-300),
            Just(5e-324),
            Just(0.1),
            Just(1.0),
            Just(123_456_789.123_456_79),
            Just(9007199254740993.0),
            any::<f64>().prop_filter("finite", |f| f.is_finite()),
        ]
        .prop_map(|f| json!(f)),
        text().prop_map(Value::String),
    ]
}

fn input() -> impl Strategy<Value = Value> {
    prop_oneof![
        8 => leaf().prop_recursive(4, 48, 8, |inner| {
            prop_oneof![
                proptest::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
                proptest::collection::btree_map(text(), inner, 0..6)
                    .prop_map(|m| Value::Object(m.into_iter().collect())),
            ]
        }),
        1 => (1usize..120).prop_map(|depth| {
            let mut v = json!(1);
            for _ in 0..depth {
                v = json!([v]);
            }
            v
        }),
        1 => (MAX_INPUT - 16..MAX_INPUT + 16).prop_map(|n| json!("x".repeat(n))),
    ]
}

fn response() -> impl Strategy<Value = (String, Vec<u8>)> {
    (
        prop_oneof![
            Just("text/plain".to_owned()),
            Just("application/json".to_owned()),
            Just("application/octet-stream".to_owned()),
            Just("image/png".to_owned()),
            Just("text/plain; charset=utf-8".to_owned()),
            Just("".to_owned()),
            Just("text/".to_owned()),
            "[a-z]{1,8}/[a-z0-9.+-]{1,12}",
            any::<String>(),
        ],
        proptest::collection::vec(any::<u8>(), 0..2048),
    )
}

#[derive(Debug, Clone)]
struct Case {
    input: Value,
    message: String,
    progress: Option<f64>,
    progress_message: String,
    response: (String, Vec<u8>),
}

fn case() -> impl Strategy<Value = Case> {
    (
        input(),
        text(),
        proptest::option::of(prop_oneof![
            Just(0.0),
            Just(100.0),
            Just(-0.0),
            Just(1e-300),
            0.0f64..100.0
        ]),
        prop_oneof![text(), Just("é".repeat(1030))],
        response(),
    )
        .prop_map(
            |(input, message, progress, progress_message, response)| Case {
                input,
                message,
                progress,
                progress_message,
                response,
            },
        )
}

/// Serialized size as the store measures it.
fn size(v: &Value) -> usize {
    serde_json::to_vec(v).unwrap().len()
}

async fn one<S: Store>(s: &S, t: &TypeName, k: usize, c: &Case) -> Result<(), String> {
    let id = TaskIdentifier::new(format!("p{k}")).unwrap();
    let task = TaskRef::Key(t.clone(), id.clone());
    let new = NewTask::new(t.clone(), id.clone())
        .with_input(c.input.clone())
        .with_message(c.message.clone());
    match s.task_enqueue(new).await {
        Err(Error::InputTooLarge { .. }) if size(&c.input) > MAX_INPUT => return Ok(()),
        Err(e) => return Err(format!("enqueue: {e}")),
        Ok(_) if size(&c.input) > MAX_INPUT => {
            return Err("an input over the limit was taken".into());
        }
        Ok(_) => {}
    }
    let stored = s
        .task_input(&task)
        .await
        .map_err(|e| format!("input: {e}"))?;
    if stored != c.input {
        return Err(format!("the input came back as {stored}"));
    }
    let log = s.task_log(&task).await.map_err(|e| format!("log: {e}"))?;
    let first = &log[0].message;
    if !c.message.is_empty() && *first != c.message.replace('\0', "\u{FFFD}") {
        return Err(format!("the first log line came back as {first:?}"));
    }
    let mut started = s
        .task_claim_start(&ClaimParams::new(HOLDER, 1).with_types(vec![t.clone()]))
        .await
        .map_err(|e| format!("claim: {e}"))?;
    let started = started.pop().ok_or("nothing to claim")?;
    if started.identifier != id {
        return Err(format!("claimed {} instead", started.identifier));
    }
    if started.input != c.input {
        return Err(format!("the handler got the input as {}", started.input));
    }
    let a = started.attempt;
    let progress = Progress {
        percent: c.progress,
        message: c.progress_message.clone(),
    };
    match s.task_progress(a, &progress).await {
        Ok(()) => {
            let got = s.task_get(&task).await.map_err(|e| e.to_string())?.progress;
            let want = c.progress_message.replace('\0', "\u{FFFD}");
            // An empty report (no percent, no text) reads back as none.
            let empty = c.progress.is_none() && want.is_empty();
            let same = got.as_ref().map(|p| (p.percent, p.message.as_str()))
                == Some((c.progress, want.as_str()));
            if !(same || empty && got.is_none()) {
                return Err(format!("the progress came back as {got:?}"));
            }
        }
        Err(Error::InvalidArgument(_)) if c.progress_message.chars().count() > 1024 => {}
        Err(e) => return Err(format!("progress: {e}")),
    }
    let (mime, body) = &c.response;
    let response = Response::new(mime.clone(), body.clone());
    let valid_mime = atp_core::payload::validate_mime(mime).is_ok();
    match s
        .task_set_status(StatusChange::finish(a, c.message.clone()).with_response(response.clone()))
        .await
    {
        Ok(()) if valid_mime => {
            let got = s
                .task_response_get(&task)
                .await
                .map_err(|e| format!("response: {e}"))?;
            if got.as_ref() != Some(&response) {
                return Err(format!("the response came back as {got:?}"));
            }
            let status = s.task_get(&task).await.map_err(|e| e.to_string())?.status;
            if status != Status::Finished {
                return Err(format!("{status} after a finish"));
            }
        }
        Ok(()) => return Err(format!("a response of MIME type {mime:?} was stored")),
        Err(Error::InvalidArgument(_)) if !valid_mime => {}
        Err(e) => return Err(format!("finish: {e}")),
    }
    Ok(())
}

fn fuzz<D: TestDb>(rt: &tokio::runtime::Runtime, db: &D, n: u32, name: &str) {
    let s = rt.block_on(db.open(StoreOptions {
        max_input_bytes: MAX_INPUT,
        max_queue_size: 0,
        ..StoreOptions::default()
    }));
    let t = TypeName::new("payloads").unwrap();
    rt.block_on(s.task_type_upsert(&TaskType::new(
        t.clone(),
        Handler::new("builtin:noop").unwrap(),
    )))
    .unwrap();
    let counter = std::sync::atomic::AtomicUsize::new(0);
    let mut runner = TestRunner::new(Config {
        cases: n,
        failure_persistence: None,
        ..Config::default()
    });
    let started = std::time::Instant::now();
    let result = runner.run(&case(), |c| {
        let k = counter.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        rt.block_on(async {
            let result = match tokio::time::timeout(DEADLINE, one(&s, &t, k, &c)).await {
                Ok(r) => r,
                Err(_) => Err(format!("no answer within {DEADLINE:?}")),
            };
            // Whatever happened, the next case's claim must find its own task.
            let id = TaskIdentifier::new(format!("p{k}")).unwrap();
            let _ = s.task_delete(&TaskRef::Key(t.clone(), id)).await;
            result
        })
        .map_err(TestCaseError::fail)
    });
    eprintln!(
        "{name}: {n} cases in {:.1} s",
        started.elapsed().as_secs_f64()
    );
    if let Err(e) = result {
        panic!("{name}: {e}");
    }
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
}

#[test]
fn sqlite_keeps_inputs_messages_and_responses_exactly() {
    let rt = runtime();
    let db = rt.block_on(atp_store::testing::sqlite_db()).unwrap();
    fuzz(&rt, &db, cases("ATP_FUZZ_CASES", 300), "sqlite");
}

#[test]
fn postgres_keeps_inputs_messages_and_responses_exactly() {
    let rt = runtime();
    let Some(db) = rt.block_on(atp_store::testing::postgres_db()) else {
        return;
    };
    fuzz(&rt, &db, cases("ATP_FUZZ_PG_CASES", 100), "postgres");
    drop(db);
}

/// The numbers the fuzzing found changed by a unit in the last place on
/// the way from the producer to the handler (serde_json's default float
/// parser; the workspace now enables `float_roundtrip`), on each engine.
async fn input_numbers_come_back_to_the_bit<D: TestDb>(db: D) {
    let s = db.store();
    let t = TypeName::new("numbers").unwrap();
    s.task_type_upsert(&TaskType::new(
        t.clone(),
        Handler::new("builtin:noop").unwrap(),
    ))
    .await
    .unwrap();
    let input = json!({"": 123456789.12345679, "big": [-7.712669621403043e65], "tiny": 5e-324});
    let id = TaskIdentifier::new("n").unwrap();
    s.task_enqueue(NewTask::new(t.clone(), id.clone()).with_input(input.clone()))
        .await
        .unwrap();
    let stored = s.task_input(&TaskRef::Key(t.clone(), id)).await.unwrap();
    for key in ["", "big", "tiny"] {
        let (want, got) = (&input[key], &stored[key]);
        assert_eq!(
            want.to_string(),
            got.to_string(),
            "{key}: {want} came back as {got}"
        );
    }
    let started = s
        .task_claim_start(&ClaimParams::new(HOLDER, 1))
        .await
        .unwrap();
    assert_eq!(started[0].input, input);
}

#[test]
fn sqlite_input_numbers_come_back_to_the_bit() {
    let rt = runtime();
    rt.block_on(async {
        input_numbers_come_back_to_the_bit(atp_store::testing::sqlite_db().await.unwrap()).await
    });
}

#[test]
fn postgres_input_numbers_come_back_to_the_bit() {
    let rt = runtime();
    rt.block_on(async {
        if let Some(db) = atp_store::testing::postgres_db().await {
            input_numbers_come_back_to_the_bit(db).await;
        }
    });
}
