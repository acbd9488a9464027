//! Fuzzing the HTTP surface: random requests (every route with random
//! path segments, random paths, query strings, headers and bodies, both
//! raw bytes and JSON shaped like the API's bodies) go through the whole
//! router with `tower::ServiceExt::oneshot`, over a SQLite store holding a
//! few types, tasks and a schedule. Bad input must get a well-formed
//! refusal: never a panic, never a 5xx, never a hang (each request has a
//! deadline), and under `/api/` every error is an RFC 9457 problem whose
//! `status` is the response's. Twice: without authentication, and with a
//! token (so the token check sees random `Authorization` and cookies).
//!
//! Cases: `ATP_FUZZ_CASES` (default 1,000 per configuration).

use std::time::Duration;

use atp_core::{Handler, NewTask, Store, StoreOptions, TaskIdentifier, TaskType, TypeName};
use atp_server::{AppState, ServerConfig, Tokens};
use atp_store::AnyStore;
use axum::body::Body;
use axum::http::{Method, Request, header};
use proptest::prelude::*;
use proptest::test_runner::{Config, TestCaseError, TestRunner};
use tower::ServiceExt as _;

/// A request that takes longer has hung.
const DEADLINE: Duration = Duration::from_secs(10);

fn cases() -> u32 {
    std::env::var("ATP_FUZZ_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1000)
}

/// A request, as generated.
#[derive(Debug, Clone)]
struct Fuzzed {
    method: Method,
    path: String,
    query: Option<String>,
    headers: Vec<(String, Vec<u8>)>,
    body: Vec<u8>,
}

/// Every route, with its methods (G: GET, O: POST, P: PUT, D: DELETE).
const ROUTES: &[(&str, &str)] = &[
    ("/api/v1/openapi.json", "G"),
    ("/api/v1/types", "G"),
    ("/api/v1/types/{a}", "GPD"),
    ("/api/v1/types/{a}/pause", "O"),
    ("/api/v1/types/{a}/resume", "O"),
    ("/api/v1/tasks", "GO"),
    ("/api/v1/tasks/batch", "O"),
    ("/api/v1/tasks/reenqueue", "O"),
    ("/api/v1/tasks/{a}/{b}", "GD"),
    ("/api/v1/tasks/{a}/{b}/input", "G"),
    ("/api/v1/tasks/{a}/{b}/log", "G"),
    ("/api/v1/tasks/{a}/{b}/response", "G"),
    ("/api/v1/tasks/{a}/{b}/reenqueue", "O"),
    ("/api/v1/tasks/{a}/{b}/cancel", "O"),
    ("/api/v1/stats", "G"),
    ("/api/v1/daemons", "G"),
    ("/healthz", "G"),
    ("/api/v1/schedules", "GO"),
    ("/api/v1/schedules/{a}", "GD"),
    ("/api/v1/schedules/{a}/pause", "O"),
    ("/api/v1/schedules/{a}/resume", "O"),
    ("/metrics", "G"),
    ("/", "G"),
    ("/tasks/{a}/{b}", "G"),
    ("/tasks/{a}/{b}/reenqueue", "O"),
    ("/tasks/{a}/{b}/delete", "O"),
    ("/tasks/{a}/{b}/cancel", "O"),
    ("/failed", "G"),
    ("/failed/reenqueue", "O"),
    ("/daemons", "G"),
    ("/types", "G"),
    ("/types/{a}/pause", "O"),
    ("/types/{a}/resume", "O"),
    ("/schedules", "G"),
    ("/schedules/{a}/pause", "O"),
    ("/schedules/{a}/resume", "O"),
    ("/login", "GO"),
    ("/logout", "O"),
    ("/process/task", "G"),
    ("/process/status", "G"),
    ("/process/status/{a}/{b}", "G"),
    ("/process/response/{a}/{b}", "G"),
    ("/assets/atp.css", "G"),
    ("/nowhere/{a}", "G"),
];

/// Names that exist in the store, and ones that break the naming rules.
fn segment() -> impl Strategy<Value = String> {
    prop_oneof![
        3 => prop_oneof![Just("t"), Just("u"), Just("x1"), Just("nightly"), Just("none")]
            .prop_map(str::to_owned),
        2 => "[a-zA-Z0-9._~-]{0,12}",
        2 => any::<String>().prop_map(|s| percent(&s)),
        1 => proptest::collection::vec(any::<u8>(), 0..12).prop_map(|b| percent_bytes(&b)),
        1 => prop_oneof![Just("%2E"), Just("%2e%2E"), Just("%00"), Just("%FF%FE"), Just("%"), Just("%zz"), Just("a%2Fb")]
            .prop_map(str::to_owned),
        1 => "[a-z]{70,80}",
    ]
}

fn percent(s: &str) -> String {
    percent_bytes(s.as_bytes())
}

fn percent_bytes(b: &[u8]) -> String {
    b.iter()
        .map(|&c| {
            if c.is_ascii_alphanumeric() {
                (c as char).to_string()
            } else {
                format!("%{c:02X}")
            }
        })
        .collect()
}

fn path() -> impl Strategy<Value = String> {
    prop_oneof![
        6 => (proptest::sample::select(ROUTES), segment(), segment())
            .prop_map(|((t, _), a, b)| t.replace("{a}", &a).replace("{b}", &b)),
        1 => "/[ -~]{0,40}".prop_map(|p| p.replace(['?', '#', ' ', '"', '<', '>', '\\', '^', '`', '{', '|', '}'], "%20")),
        1 => proptest::collection::vec(segment(), 0..6).prop_map(|s| format!("/{}", s.join("/"))),
    ]
}

const QUERY_KEYS: &[&str] = &[
    "status",
    "type",
    "holder",
    "limit",
    "identifier_prefix",
    "cursor",
    "force",
    "page",
    "q",
    "identifier",
    "after",
    "token",
];

fn query_value() -> impl Strategy<Value = String> {
    prop_oneof![
        Just("RUNNING".to_owned()),
        Just("failed".to_owned()),
        Just("3".to_owned()),
        Just("-1".to_owned()),
        Just("4294967296".to_owned()),
        Just("true".to_owned()),
        Just("0x00000000000000D0".to_owned()),
        Just("0xZZ".to_owned()),
        "[0-9]{0,25}",
        any::<String>().prop_map(|s| percent(&s)),
        "[A-Za-z0-9_=+/-]{0,40}",
    ]
}

fn query() -> impl Strategy<Value = Option<String>> {
    prop_oneof![
        2 => Just(None),
        3 => proptest::collection::vec((proptest::sample::select(QUERY_KEYS), query_value()), 0..4)
            .prop_map(|kv| Some(kv.iter().map(|(k, v)| format!("{k}={v}")).collect::<Vec<_>>().join("&"))),
        1 => "[ -~]{0,30}".prop_map(|q| Some(percent(&q))),
    ]
}

fn header_value() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        proptest::collection::vec(32u8..127, 0..40),
        proptest::collection::vec(any::<u8>(), 0..20),
    ]
}

fn headers() -> impl Strategy<Value = Vec<(String, Vec<u8>)>> {
    let content_type = prop_oneof![
        Just(b"application/json".to_vec()),
        Just(b"application/json; charset=utf-8".to_vec()),
        Just(b"application/x-www-form-urlencoded".to_vec()),
        Just(b"text/plain".to_vec()),
        Just(b"multipart/form-data; boundary=x".to_vec()),
        header_value(),
    ];
    let auth = prop_oneof![
        4 => Just(b"Bearer secret".to_vec()),
        1 => Just(b"Bearer wrong".to_vec()),
        1 => Just(b"Bearer ".to_vec()),
        1 => Just(b"Basic dXNlcjpwYXNz".to_vec()),
        1 => header_value(),
    ];
    let cookie = prop_oneof![
        Just(b"atp_token=secret".to_vec()),
        Just(b"atp_token=; other=1".to_vec()),
        header_value(),
    ];
    let origin = prop_oneof![
        Just(b"http://localhost".to_vec()),
        Just(b"https://evil.example".to_vec()),
        Just(b"null".to_vec()),
        header_value(),
    ];
    (
        proptest::option::of(content_type),
        proptest::option::weighted(0.8, auth),
        proptest::option::of(cookie),
        proptest::option::of(origin),
        proptest::option::of(header_value()),
        proptest::option::of(header_value()),
    )
        .prop_map(|(ct, auth, cookie, origin, accept, host)| {
            let mut h = Vec::new();
            for (name, value) in [
                ("content-type", ct),
                ("authorization", auth),
                ("cookie", cookie),
                ("origin", origin),
                ("accept", accept),
                ("host", host),
            ] {
                if let Some(v) = value {
                    h.push((name.to_owned(), v));
                }
            }
            h
        })
}

/// JSON values of every kind, extreme numbers included.
fn json_leaf() -> impl Strategy<Value = serde_json::Value> {
    use serde_json::{Value, json};
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
            Just(f64::MIN_POSITIVE),
            Just(4294967296.5),
            any::<f64>().prop_filter("finite", |f| f.is_finite()),
        ]
        .prop_map(|f| json!(f)),
        prop_oneof![
            Just("t"),
            Just("u"),
            Just("x1"),
            Just("builtin:noop"),
            Just("exec:"),
            Just("exec:'unterminated"),
            Just("* * * * *"),
            Just("0 0 30 2 *"),
            Just("@yearly"),
            Just("Europe/Berlin"),
            Just("Mars/Olympus"),
            Just("RUNNING"),
            Just("ACCEPTED"),
            Just("2026-12-01T00:00:00Z"),
            Just("9999-12-31T23:59:59Z"),
            Just("0000-01-01T00:00:00Z"),
            Just("last"),
            Just("."),
            Just(""),
        ]
        .prop_map(|s| json!(s)),
        any::<String>().prop_map(Value::String),
    ]
}

const BODY_KEYS: &[&str] = &[
    "type",
    "identifier",
    "input",
    "message",
    "priority",
    "due_at",
    "delay_secs",
    "tasks",
    "handler",
    "timeout_secs",
    "retention_secs",
    "max_starts",
    "retry_delay_secs",
    "retry_max_delay_secs",
    "max_running",
    "status",
    "name",
    "expression",
    "timezone",
    "catch_up",
    "force",
    "paused",
];

fn json_value() -> impl Strategy<Value = serde_json::Value> {
    json_leaf().prop_recursive(3, 24, 6, |inner| {
        prop_oneof![
            proptest::collection::vec(inner.clone(), 0..4).prop_map(serde_json::Value::Array),
            proptest::collection::vec((proptest::sample::select(BODY_KEYS), inner), 0..8).prop_map(
                |kv| {
                    serde_json::Value::Object(
                        kv.into_iter().map(|(k, v)| (k.to_owned(), v)).collect(),
                    )
                }
            ),
        ]
    })
}

fn body() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        2 => Just(Vec::new()),
        4 => json_value().prop_map(|v| v.to_string().into_bytes()),
        1 => proptest::collection::vec(any::<u8>(), 0..64),
        1 => "[ -~]{0,60}".prop_map(String::into_bytes),
        1 => json_value().prop_map(|v| {
            // Cut short: a truncated document.
            let mut bytes = v.to_string().into_bytes();
            bytes.truncate(bytes.len() / 2);
            bytes
        }),
    ]
}

fn any_method() -> impl Strategy<Value = Method> {
    prop_oneof![
        4 => Just(Method::GET),
        4 => Just(Method::POST),
        2 => Just(Method::PUT),
        2 => Just(Method::DELETE),
        1 => Just(Method::PATCH),
        1 => Just(Method::HEAD),
        1 => Just(Method::OPTIONS),
    ]
}

/// Mostly a route's own method (so the request reaches its handler and
/// extractors), sometimes any.
fn method_for(path: &str) -> BoxedStrategy<Method> {
    let own = ROUTES
        .iter()
        .find(|(t, _)| {
            let t: Vec<_> = t.split('/').collect();
            let p: Vec<_> = path.split('/').collect();
            t.len() == p.len() && t.iter().zip(&p).all(|(t, p)| t.starts_with('{') || t == p)
        })
        .map(|(_, m)| {
            m.chars()
                .map(|c| match c {
                    'G' => Method::GET,
                    'O' => Method::POST,
                    'P' => Method::PUT,
                    _ => Method::DELETE,
                })
                .collect::<Vec<_>>()
        });
    match own {
        Some(own) => prop_oneof![5 => proptest::sample::select(own), 1 => any_method()].boxed(),
        None => any_method().boxed(),
    }
}

fn request() -> impl Strategy<Value = Fuzzed> {
    path()
        .prop_flat_map(|path| (method_for(&path), Just(path)))
        .prop_flat_map(|(method, path)| (Just(method), Just(path), query(), headers(), body()))
        .prop_map(|(method, path, query, headers, body)| Fuzzed {
            method,
            path,
            query,
            headers,
            body,
        })
}

fn build(f: &Fuzzed) -> Option<Request<Body>> {
    let uri = match &f.query {
        Some(q) => format!("{}?{q}", f.path),
        None => f.path.clone(),
    };
    let mut b = Request::builder().method(f.method.clone()).uri(uri);
    for (name, value) in &f.headers {
        let Ok(value) = header::HeaderValue::from_bytes(value) else {
            continue;
        };
        b = b.header(name.as_str(), value);
    }
    // A URI or header the HTTP layer refuses never reaches the router.
    b.body(Body::from(f.body.clone())).ok()
}

async fn store_with_data() -> (tempfile::TempDir, AnyStore) {
    let dir = tempfile::tempdir().expect("a temporary folder");
    let store = atp_store::open(
        &format!("sqlite://{}", dir.path().join("atp.sqlite").display()),
        StoreOptions {
            max_queue_size: 50,
            max_input_bytes: 4096,
            ..StoreOptions::default()
        },
    )
    .await
    .expect("a SQLite store");
    for name in ["t", "u"] {
        store
            .task_type_upsert(&TaskType::new(
                TypeName::new(name).unwrap(),
                Handler::new("builtin:noop").unwrap(),
            ))
            .await
            .unwrap();
    }
    for id in ["x1", "x2", "none"] {
        store
            .task_enqueue(NewTask::new(
                TypeName::new("t").unwrap(),
                TaskIdentifier::new(id).unwrap(),
            ))
            .await
            .unwrap();
    }
    let recurrence = atp_core::Recurrence::new("0 3 * * *", "Europe/Berlin").unwrap();
    store
        .schedule_upsert(&atp_core::NewSchedule::new(
            atp_core::ScheduleName::new("nightly").unwrap(),
            TypeName::new("t").unwrap(),
            recurrence,
        ))
        .await
        .unwrap();
    (dir, store)
}

/// Sends `f` and checks the answer; the status, or `None` when the
/// request could not be built.
async fn check(router: axum::Router, f: &Fuzzed) -> Result<Option<u16>, String> {
    let Some(request) = build(f) else {
        return Ok(None);
    };
    let response = router
        .oneshot(request)
        .await
        .map_err(|e| format!("the router failed: {e}"))?;
    let status = response.status();
    let content_type = response
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_owned();
    if content_type.starts_with("text/event-stream") {
        // The dashboard's live stream stays open: its head is the answer.
        return Ok(Some(status.as_u16()));
    }
    let body = axum::body::to_bytes(response.into_body(), 64 * 1024 * 1024)
        .await
        .map_err(|e| format!("reading the body: {e}"))?;
    if status.is_server_error() {
        return Err(format!("{status}: {}", String::from_utf8_lossy(&body)));
    }
    if f.path.starts_with("/api/") && status.is_client_error() && f.method != Method::HEAD {
        if content_type != atp_server::problem::PROBLEM_JSON {
            return Err(format!(
                "{status} with content type {content_type:?}, not a problem"
            ));
        }
        let problem: serde_json::Value = serde_json::from_slice(&body)
            .map_err(|e| format!("{status}: the problem is not JSON ({e})"))?;
        if problem["status"] != status.as_u16() || !problem["detail"].is_string() {
            return Err(format!("{status}: a malformed problem {problem}"));
        }
    }
    Ok(Some(status.as_u16()))
}

fn fuzz(tokens: Tokens, name: &str) {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let (_dir, store) = rt.block_on(store_with_data());
    let state = AppState::new(
        store,
        ServerConfig {
            tokens,
            max_body_bytes: 16 * 1024,
            ..ServerConfig::default()
        },
    );
    let router = atp_server::router(state);
    let mut runner = TestRunner::new(Config {
        cases: cases(),
        failure_persistence: None,
        ..Config::default()
    });
    let started = std::time::Instant::now();
    let statuses = std::sync::Mutex::new(std::collections::BTreeMap::<u16, u32>::new());
    let result = runner.run(&request(), |f| {
        let outcome = rt.block_on(async {
            match tokio::time::timeout(DEADLINE, check(router.clone(), &f)).await {
                Ok(r) => r,
                Err(_) => Err(format!("no answer within {DEADLINE:?}")),
            }
        });
        if let Ok(Some(status)) = outcome {
            *statuses.lock().unwrap().entry(status).or_default() += 1;
        }
        outcome.map(|_| ()).map_err(TestCaseError::fail)
    });
    let statuses = statuses.into_inner().unwrap();
    eprintln!(
        "{name}: {} cases in {:.1} s, answers by status: {statuses:?}",
        cases(),
        started.elapsed().as_secs_f64()
    );
    if let Err(e) = result {
        panic!("{name}: {e}");
    }
    let sent: u32 = statuses.values().sum();
    assert!(
        sent >= cases() / 2,
        "only {sent} of {} generated requests could be sent",
        cases()
    );
    assert!(
        statuses.keys().any(|s| (200..300).contains(s)),
        "no request was answered with a success: the generator misses the routes"
    );
}

#[test]
fn random_requests_get_a_well_formed_answer_without_authentication() {
    fuzz(Tokens::default(), "open");
}

#[test]
fn random_requests_get_a_well_formed_answer_with_a_token() {
    fuzz(Tokens::new(vec!["secret".to_owned()]), "token");
}
