//! Every JSON endpoint and every error code, over real HTTP against a
//! server on a random port, on each engine.

mod common;

use std::time::Duration;

use atp_core::StoreOptions;
use atp_server::{ServerConfig, Tokens};
use atp_store::testing::{TestDb, eventually};
use common::{IntoAny, TestServer, start, start_with_options};
use reqwest::StatusCode;
use serde_json::{Value, json};

/// Asserts an RFC 9457 problem with `status` and `kind`; returns its body.
async fn problem(response: reqwest::Response, status: StatusCode, kind: &str) -> Value {
    assert_eq!(response.status(), status, "{response:?}");
    assert_eq!(
        response.headers()["content-type"],
        "application/problem+json",
        "{response:?}"
    );
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["status"], status.as_u16(), "{body}");
    assert_eq!(body["type"], format!("/api/v1/problems#{kind}"), "{body}");
    assert!(!body["title"].as_str().unwrap().is_empty(), "{body}");
    assert!(!body["detail"].as_str().unwrap().is_empty(), "{body}");
    body
}

async fn put_type(s: &TestServer, name: &str, handler: &str) -> reqwest::Response {
    let name = percent_encoding::utf8_percent_encode(name, percent_encoding::NON_ALPHANUMERIC);
    s.client
        .put(s.url(&format!("/api/v1/types/{name}")))
        .json(&json!({"handler": handler}))
        .send()
        .await
        .unwrap()
}

async fn enqueue(
    s: &TestServer,
    task_type: &str,
    identifier: &str,
    input: Value,
) -> reqwest::Response {
    s.client
        .post(s.url("/api/v1/tasks"))
        .json(&json!({"type": task_type, "identifier": identifier, "input": input}))
        .send()
        .await
        .unwrap()
}

/// Waits until the task at `url` has status `want`; the task.
async fn wait_status(s: &TestServer, url: &str, want: &str) -> Value {
    eventually(
        Duration::from_secs(30),
        &format!("{url} {want}"),
        || async {
            let (code, task) = s.get_json(url).await;
            assert_eq!(code, StatusCode::OK, "{task}");
            (task["status"] == want).then_some(task)
        },
    )
    .await
}

async fn types_are_registered_read_and_unregistered<D: TestDb>(db: D)
where
    D::Store: IntoAny,
{
    let s = start(db, ServerConfig::default(), false).await;
    let r = put_type(&s, "Sum", "builtin:sum").await;
    assert_eq!(r.status(), StatusCode::CREATED);
    let created: Value = r.json().await.unwrap();
    assert_eq!(created["name"], "Sum");
    assert_eq!(created["max_starts"], 3);
    let r = s
        .client
        .put(s.url("/api/v1/types/Sum"))
        .json(&json!({"handler": "builtin:sum", "timeout_secs": 5.0, "retention_secs": 60.0, "max_starts": 2}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK, "an update is 200");
    let (code, t) = s.get_json("/api/v1/types/Sum").await;
    assert_eq!(code, StatusCode::OK);
    assert_eq!(
        t,
        json!({"name": "Sum", "handler": "builtin:sum", "timeout_secs": 5.0, "retention_secs": 60.0, "max_starts": 2, "paused": false, "priority": 0, "retry": null, "max_running": null, "title": null, "description": null, "keywords": [], "version": "1.0.0", "input_schema": null, "output_schema": null, "sync_wait_secs": null})
    );
    let (_, list) = s.get_json("/api/v1/types").await;
    assert_eq!(list.as_array().unwrap().len(), 1);

    // Refusals change nothing.
    let r = s
        .client
        .put(s.url("/api/v1/types/Sum"))
        .json(&json!({"handler": "builtin:sum", "timeout_secs": -1.0}))
        .send()
        .await
        .unwrap();
    problem(r, StatusCode::BAD_REQUEST, "invalid").await;
    let r = s
        .client
        .put(s.url("/api/v1/types/Sum"))
        .json(&json!({"handler": "builtin:sum", "colour": "red"}))
        .send()
        .await
        .unwrap();
    problem(r, StatusCode::BAD_REQUEST, "invalid").await;
    let r = put_type(&s, &"x".repeat(65), "builtin:sum").await;
    problem(r, StatusCode::BAD_REQUEST, "invalid").await;
    let (_, t) = s.get_json("/api/v1/types/Sum").await;
    assert_eq!(t["timeout_secs"], 5.0, "the refused update changed nothing");
    let r = s
        .client
        .get(s.url("/api/v1/types/Nope"))
        .send()
        .await
        .unwrap();
    problem(r, StatusCode::NOT_FOUND, "type-not-found").await;

    // A type with tasks is kept unless forced.
    assert_eq!(
        enqueue(&s, "Sum", "a", json!([1])).await.status(),
        StatusCode::CREATED
    );
    let r = s
        .client
        .delete(s.url("/api/v1/types/Sum"))
        .send()
        .await
        .unwrap();
    problem(r, StatusCode::CONFLICT, "type-has-tasks").await;
    let r = s
        .client
        .delete(s.url("/api/v1/types/Sum?force=true"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    let body: Value = r.json().await.unwrap();
    assert_eq!(body, json!({"name": "Sum", "tasks_deleted": 1}));
    let r = s
        .client
        .delete(s.url("/api/v1/types/Sum"))
        .send()
        .await
        .unwrap();
    problem(r, StatusCode::NOT_FOUND, "type-not-found").await;
    let r = s
        .client
        .delete(s.url("/api/v1/types/Sum?force=maybe"))
        .send()
        .await
        .unwrap();
    problem(r, StatusCode::BAD_REQUEST, "invalid").await;
}

async fn enqueue_answers_201_with_location_and_refuses_bad_input<D: TestDb>(db: D)
where
    D::Store: IntoAny,
{
    let s = start(db, ServerConfig::default(), false).await;
    put_type(&s, "Sum", "custom:nobody-runs-this").await;
    let r = s
        .client
        .post(s.url("/api/v1/tasks"))
        .json(&json!({"type": "Sum", "identifier": "job-1", "input": [1, 2], "message": "from the test"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::CREATED);
    let location = r.headers()["location"].to_str().unwrap().to_owned();
    assert_eq!(location, "/api/v1/tasks/Sum/job-1");
    let created: Value = r.json().await.unwrap();
    assert_eq!(created["status"], "ACCEPTED");
    assert_eq!(created["status_code"], 1);
    assert_eq!(created["starts"], 0);
    let (code, fetched) = s.get_json(&location).await;
    assert_eq!(code, StatusCode::OK);
    assert_eq!(fetched, created);
    let (_, input) = s.get_json(&format!("{location}/input")).await;
    assert_eq!(input, json!([1, 2]));
    let (_, log) = s.get_json(&format!("{location}/log")).await;
    assert_eq!(log[0]["status"], "ACCEPTED");
    assert_eq!(log[0]["message"], "from the test");

    let r = enqueue(&s, "Sum", "job-1", json!(null)).await;
    problem(r, StatusCode::CONFLICT, "duplicate-task").await;
    let r = enqueue(&s, "Nope", "job-2", json!(null)).await;
    problem(r, StatusCode::NOT_FOUND, "type-not-found").await;
    let r = enqueue(&s, "Sum", "bad\u{7}id", json!(null)).await;
    problem(r, StatusCode::BAD_REQUEST, "invalid").await;
    for bad in ["", "..", " padded"] {
        let r = enqueue(&s, "Sum", bad, json!(null)).await;
        problem(r, StatusCode::BAD_REQUEST, "invalid").await;
    }
    let r = s
        .client
        .post(s.url("/api/v1/tasks"))
        .header("content-type", "application/json")
        .body("{\"type\": \"Sum\", ")
        .send()
        .await
        .unwrap();
    problem(r, StatusCode::BAD_REQUEST, "invalid").await;
    let r = s
        .client
        .post(s.url("/api/v1/tasks"))
        .json(&json!({"identifier": "no-type"}))
        .send()
        .await
        .unwrap();
    problem(r, StatusCode::BAD_REQUEST, "invalid").await;
    let r = s
        .client
        .post(s.url("/api/v1/tasks"))
        .body("{}")
        .send()
        .await
        .unwrap();
    problem(r, StatusCode::BAD_REQUEST, "invalid").await;
    let (_, list) = s.get_json("/api/v1/tasks").await;
    assert_eq!(
        list["tasks"].as_array().unwrap().len(),
        1,
        "refusals added nothing"
    );
}

async fn limits_give_413_and_503<D: TestDb>(db: D)
where
    D::Store: IntoAny,
{
    let options = StoreOptions {
        max_queue_size: 2,
        max_input_bytes: 100,
        ..StoreOptions::default()
    };
    let config = ServerConfig {
        max_body_bytes: 1000,
        ..ServerConfig::default()
    };
    let s = start_with_options(db, options, config).await;
    put_type(&s, "Sum", "custom:nobody-runs-this").await;
    let r = enqueue(&s, "Sum", "big-input", json!("x".repeat(200))).await;
    problem(r, StatusCode::PAYLOAD_TOO_LARGE, "too-large").await;
    let r = enqueue(&s, "Sum", "big-body", json!("x".repeat(2000))).await;
    problem(r, StatusCode::PAYLOAD_TOO_LARGE, "too-large").await;
    assert_eq!(
        enqueue(&s, "Sum", "a", json!(1)).await.status(),
        StatusCode::CREATED
    );
    assert_eq!(
        enqueue(&s, "Sum", "b", json!(1)).await.status(),
        StatusCode::CREATED
    );
    let r = enqueue(&s, "Sum", "c", json!(1)).await;
    let retry: u64 = r.headers()["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!(retry > 0);
    let body = problem(r, StatusCode::SERVICE_UNAVAILABLE, "queue-full").await;
    assert_eq!(body["retry_after"], retry);
    let (_, stats) = s.get_json("/api/v1/stats").await;
    assert_eq!(stats["queue_size"], 2);
}

async fn every_valid_identifier_is_reachable<D: TestDb>(db: D)
where
    D::Store: IntoAny,
{
    let s = start(db, ServerConfig::default(), false).await;
    put_type(&s, "odd type/name", "custom:nobody-runs-this").await;
    let identifiers = [
        "a/b/c",
        "100%",
        "what?x=1#frag",
        "with space",
        "plus+sign",
        "ünïcødé €",
        "<script>alert(1)</script>",
        "...",
        "./x",
        "-",
    ];
    for id in identifiers {
        let r = enqueue(&s, "odd type/name", id, json!(id)).await;
        assert_eq!(r.status(), StatusCode::CREATED, "{id}");
        let location = r.headers()["location"].to_str().unwrap().to_owned();
        let (code, task) = s.get_json(&location).await;
        assert_eq!(code, StatusCode::OK, "{id} at {location}");
        assert_eq!(task["identifier"], id);
        assert_eq!(task["type"], "odd type/name");
        let (code, input) = s.get_json(&format!("{location}/input")).await;
        assert_eq!((code, input), (StatusCode::OK, json!(id)));
        let (code, _) = s.get_json(&format!("{location}/log")).await;
        assert_eq!(code, StatusCode::OK);
        let r = s.client.delete(s.url(&location)).send().await.unwrap();
        assert_eq!(r.status(), StatusCode::NO_CONTENT, "{id}");
        let r = s.client.get(s.url(&location)).send().await.unwrap();
        problem(r, StatusCode::NOT_FOUND, "task-not-found").await;
    }
}

async fn batches_are_all_or_nothing<D: TestDb>(db: D)
where
    D::Store: IntoAny,
{
    let s = start(db, ServerConfig::default(), false).await;
    put_type(&s, "Sum", "custom:nobody-runs-this").await;
    assert_eq!(
        enqueue(&s, "Sum", "taken", json!(1)).await.status(),
        StatusCode::CREATED
    );
    let batch = |ids: &[&str]| json!({"tasks": ids.iter().map(|i| json!({"type": "Sum", "identifier": i, "input": [1]})).collect::<Vec<_>>()});
    let post = |body: Value| {
        s.client
            .post(s.url("/api/v1/tasks/batch"))
            .json(&body)
            .send()
    };
    let r = post(batch(&["n1", "n2", "taken"])).await.unwrap();
    problem(r, StatusCode::CONFLICT, "duplicate-task").await;
    let r = post(batch(&["n1", "n1"])).await.unwrap();
    problem(r, StatusCode::CONFLICT, "duplicate-task").await;
    let r = post(json!({"tasks": [{"type": "Nope", "identifier": "x"}]}))
        .await
        .unwrap();
    problem(r, StatusCode::NOT_FOUND, "type-not-found").await;
    let r = post(json!({"tasks": []})).await.unwrap();
    problem(r, StatusCode::BAD_REQUEST, "invalid").await;
    let (_, stats) = s.get_json("/api/v1/stats").await;
    assert_eq!(stats["queue_size"], 1, "refused batches added nothing");

    let r = post(batch(&["b1", "b2", "b/3"])).await.unwrap();
    assert_eq!(r.status(), StatusCode::CREATED);
    let body: Value = r.json().await.unwrap();
    let tasks = body["tasks"].as_array().unwrap();
    assert_eq!(tasks.len(), 3);
    for (t, id) in tasks.iter().zip(["b1", "b2", "b/3"]) {
        assert_eq!(t["identifier"], id);
        let (code, task) = s.get_json(t["url"].as_str().unwrap()).await;
        assert_eq!(code, StatusCode::OK);
        assert_eq!(task["id"], t["id"]);
    }
}

/// A type's description and schemas round-trip; an input its schema
/// refuses is a 400 `input-invalid` naming the path, by a single enqueue
/// and a batch, and stores nothing; a bad schema is refused at register.
async fn input_schemas_are_enforced_over_http<D: TestDb>(db: D)
where
    D::Store: IntoAny,
{
    let s = start(db, ServerConfig::default(), false).await;
    let schema =
        json!({"type": "object", "properties": {"x": {"type": "number"}}, "required": ["x"]});
    let body = json!({
        "handler": "custom:nobody-runs-this",
        "title": "Point", "description": "Takes a point", "keywords": ["geo"],
        "version": "2.0.0", "input_schema": schema, "output_schema": {"type": "number"},
        "sync_wait_secs": 30.0,
    });
    let r = s
        .client
        .put(s.url("/api/v1/types/P"))
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::CREATED);
    let (_, t) = s.get_json("/api/v1/types/P").await;
    for field in [
        "title",
        "description",
        "keywords",
        "version",
        "input_schema",
        "output_schema",
        "sync_wait_secs",
    ] {
        assert_eq!(t[field], body[field], "{field}: {t}");
    }

    let r = enqueue(&s, "P", "bad", json!({"x": "one"})).await;
    let p = problem(r, StatusCode::BAD_REQUEST, "input-invalid").await;
    assert_eq!(p["violations"][0]["path"], "/x", "{p}");
    assert!(p["detail"].as_str().unwrap().contains("at /x"), "{p}");
    let r = s
        .client
        .post(s.url("/api/v1/tasks/batch"))
        .json(&json!({"tasks": [
            {"type": "P", "identifier": "ok", "input": {"x": 1}},
            {"type": "P", "identifier": "no", "input": {}},
        ]}))
        .send()
        .await
        .unwrap();
    let p = problem(r, StatusCode::BAD_REQUEST, "input-invalid").await;
    assert_eq!(p["violations"][0]["path"], "", "{p}");
    let (_, stats) = s.get_json("/api/v1/stats").await;
    assert_eq!(stats["queue_size"], 0, "refused inputs stored nothing");
    assert_eq!(
        enqueue(&s, "P", "ok", json!({"x": 1.5})).await.status(),
        StatusCode::CREATED
    );

    let r = s
        .client
        .put(s.url("/api/v1/types/Q"))
        .json(&json!({"handler": "builtin:noop", "input_schema": {"type": 7}}))
        .send()
        .await
        .unwrap();
    let p = problem(r, StatusCode::BAD_REQUEST, "invalid").await;
    assert!(
        p["detail"].as_str().unwrap().contains("input schema"),
        "{p}"
    );
    let r = s.client.get(s.url("/api/v1/types/Q")).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::NOT_FOUND);
}

/// A generated identifier: a UUIDv7 in canonical lower-case text.
fn assert_generated(identifier: &Value) -> &str {
    let text = identifier.as_str().expect("an identifier");
    let groups: Vec<usize> = text.split('-').map(str::len).collect();
    assert_eq!(groups, [8, 4, 4, 4, 12], "{text}");
    assert!(
        text.chars()
            .all(|c| matches!(c, '0'..='9' | 'a'..='f' | '-')),
        "lower-case hex: {text}"
    );
    assert_eq!(&text[14..15], "7", "version 7: {text}");
    text
}

async fn enqueue_without_an_identifier_generates_one<D: TestDb>(db: D)
where
    D::Store: IntoAny,
{
    let s = start(db, ServerConfig::default(), false).await;
    put_type(&s, "Sum", "custom:nobody-runs-this").await;
    let post = |body: Value| s.client.post(s.url("/api/v1/tasks")).json(&body).send();
    let r = post(json!({"type": "Sum", "input": [1, 2]})).await.unwrap();
    assert_eq!(r.status(), StatusCode::CREATED);
    let location = r.headers()["location"].to_str().unwrap().to_owned();
    let first: Value = r.json().await.unwrap();
    let id = assert_generated(&first["identifier"]);
    assert_eq!(location, format!("/api/v1/tasks/Sum/{id}"));
    let (code, fetched) = s.get_json(&location).await;
    assert_eq!((code, &fetched), (StatusCode::OK, &first));
    let (_, input) = s.get_json(&format!("{location}/input")).await;
    assert_eq!(input, json!([1, 2]));
    // `null` is the same as leaving it out, and later sorts after earlier.
    let r = post(json!({"type": "Sum", "identifier": null}))
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::CREATED);
    let second: Value = r.json().await.unwrap();
    assert!(assert_generated(&second["identifier"]) > id);
    // Bad input still changes nothing; a given identifier is still judged.
    let r = post(json!({"type": "Nope"})).await.unwrap();
    problem(r, StatusCode::NOT_FOUND, "type-not-found").await;
    let r = post(json!({"type": "Sum", "input": 1, "message": "a\u{0}b"}))
        .await
        .unwrap();
    problem(r, StatusCode::BAD_REQUEST, "invalid").await;
    let r = post(json!({"type": "Sum", "identifier": ""}))
        .await
        .unwrap();
    problem(r, StatusCode::BAD_REQUEST, "invalid").await;
    let (_, stats) = s.get_json("/api/v1/stats").await;
    assert_eq!(stats["queue_size"], 2, "refusals added nothing");

    let batch = |tasks: Value| {
        s.client
            .post(s.url("/api/v1/tasks/batch"))
            .json(&json!({ "tasks": tasks }))
            .send()
    };
    let r = batch(json!([{"type": "Sum"}, {"type": "Sum", "identifier": first["identifier"]}]))
        .await
        .unwrap();
    problem(r, StatusCode::CONFLICT, "duplicate-task").await;
    let (_, stats) = s.get_json("/api/v1/stats").await;
    assert_eq!(stats["queue_size"], 2, "all or nothing");
    let r = batch(json!([{"type": "Sum", "input": [3]}, {"type": "Sum", "identifier": "named"}, {"type": "Sum"}]))
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::CREATED);
    let body: Value = r.json().await.unwrap();
    let tasks = body["tasks"].as_array().unwrap();
    assert_eq!(tasks[1]["identifier"], "named");
    let (a, c) = (
        assert_generated(&tasks[0]["identifier"]),
        assert_generated(&tasks[2]["identifier"]),
    );
    assert!(second["identifier"].as_str().unwrap() < a && a < c);
    for t in tasks {
        let (code, task) = s.get_json(t["url"].as_str().unwrap()).await;
        assert_eq!(code, StatusCode::OK);
        assert_eq!(
            (&task["id"], &task["identifier"]),
            (&t["id"], &t["identifier"])
        );
    }
    let (_, input) = s
        .get_json(&format!("{}/input", tasks[0]["url"].as_str().unwrap()))
        .await;
    assert_eq!(input, json!([3]));
}

/// A due time and a priority go in through the enqueue body (and the
/// type's default priority through the type), come back in the task and
/// type objects, and bad ones are refused with nothing stored.
async fn due_times_and_priorities<D: TestDb>(db: D)
where
    D::Store: IntoAny,
{
    let s = start(db, ServerConfig::default(), false).await;
    let r = s
        .client
        .put(s.url("/api/v1/types/Urgent"))
        .json(&json!({"handler": "custom:nobody", "priority": 4}))
        .send()
        .await
        .unwrap();
    let ty: Value = r.json().await.unwrap();
    assert_eq!(ty["priority"], 4, "{ty}");
    put_type(&s, "Plain", "custom:nobody").await;
    let post = |body: Value| s.client.post(s.url("/api/v1/tasks")).json(&body).send();

    let r = post(json!({"type": "Urgent", "identifier": "a"}))
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::CREATED);
    let a: Value = r.json().await.unwrap();
    assert_eq!(a["priority"], 4, "the type's default: {a}");
    assert_eq!(a["due_at"], a["enqueued_at"], "due at once: {a}");

    let r = post(json!({"type": "Plain", "identifier": "b", "priority": -2, "delay_secs": 90}))
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::CREATED);
    let b: Value = r.json().await.unwrap();
    assert_eq!(b["priority"], -2);
    let at = |v: &Value| {
        time::OffsetDateTime::parse(
            v.as_str().unwrap(),
            &time::format_description::well_known::Rfc3339,
        )
        .unwrap()
    };
    assert_eq!(
        at(&b["due_at"]) - at(&b["enqueued_at"]),
        time::Duration::seconds(90),
        "{b}"
    );
    let r = post(json!({"type": "Plain", "identifier": "c", "due_at": "2099-01-02T03:04:05Z"}))
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::CREATED);
    let c: Value = r.json().await.unwrap();
    assert_eq!(c["due_at"], "2099-01-02T03:04:05Z");
    let (_, fetched) = s.get_json("/api/v1/tasks/Plain/c").await;
    assert_eq!(fetched["due_at"], c["due_at"]);

    for bad in [
        json!({"type": "Plain", "identifier": "x", "due_at": "tomorrow"}),
        json!({"type": "Plain", "identifier": "x", "due_at": "1900-01-01T00:00:00Z"}),
        json!({"type": "Plain", "identifier": "x", "delay_secs": -1}),
        json!({"type": "Plain", "identifier": "x", "delay_secs": 1e300}),
        json!({"type": "Plain", "identifier": "x", "delay_secs": 1, "due_at": "2099-01-01T00:00:00Z"}),
        json!({"type": "Plain", "identifier": "x", "priority": 3000000000_u64}),
    ] {
        let r = post(bad.clone()).await.unwrap();
        assert_eq!(r.status(), StatusCode::BAD_REQUEST, "{bad}");
    }
    let (_, stats) = s.get_json("/api/v1/stats").await;
    assert_eq!(stats["queue_size"], 3, "refusals added nothing");

    // A retry policy on a type.
    let put = |body: Value| {
        s.client
            .put(s.url("/api/v1/types/Retried"))
            .json(&body)
            .send()
    };
    let r = put(json!({"handler": "custom:nobody", "retry_delay_secs": 5}))
        .await
        .unwrap();
    let ty: Value = r.json().await.unwrap();
    assert_eq!(
        ty["retry"],
        json!({"delay_secs": 5.0, "max_delay_secs": 3600.0}),
        "{ty}"
    );
    let (_, plain) = s.get_json("/api/v1/types/Plain").await;
    assert_eq!(plain["retry"], Value::Null);
    for bad in [
        json!({"handler": "custom:nobody", "retry_max_delay_secs": 5}),
        json!({"handler": "custom:nobody", "retry_delay_secs": 0}),
        json!({"handler": "custom:nobody", "retry_delay_secs": 60, "retry_max_delay_secs": 5}),
    ] {
        let r = put(bad.clone()).await.unwrap();
        assert_eq!(r.status(), StatusCode::BAD_REQUEST, "{bad}");
    }
    let (_, kept) = s.get_json("/api/v1/types/Retried").await;
    assert_eq!(kept["retry"]["delay_secs"], 5.0);
    assert_eq!(kept["max_running"], Value::Null);
    let r = put(json!({"handler": "custom:nobody", "max_running": 3}))
        .await
        .unwrap();
    let limited: Value = r.json().await.unwrap();
    assert_eq!(limited["max_running"], 3, "{limited}");
    let r = put(json!({"handler": "custom:nobody", "max_running": 0}))
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);
}

async fn lists_filter_and_page_with_a_cursor<D: TestDb>(db: D)
where
    D::Store: IntoAny,
{
    let s = start(db, ServerConfig::default(), false).await;
    put_type(&s, "A", "custom:nobody-runs-this").await;
    put_type(&s, "B", "custom:nobody-runs-this").await;
    for i in 0..5 {
        enqueue(&s, "A", &format!("a{i}"), json!(i)).await;
    }
    enqueue(&s, "B", "b0", json!(0)).await;
    s.client
        .delete(s.url("/api/v1/tasks/A/a4"))
        .send()
        .await
        .unwrap();

    let mut seen = Vec::new();
    let mut path = "/api/v1/tasks?type=A&limit=2".to_owned();
    loop {
        let (code, page) = s.get_json(&path).await;
        assert_eq!(code, StatusCode::OK, "{page}");
        let tasks = page["tasks"].as_array().unwrap();
        assert!(tasks.len() <= 2);
        seen.extend(
            tasks
                .iter()
                .map(|t| t["identifier"].as_str().unwrap().to_owned()),
        );
        match page["next_cursor"].as_str() {
            Some(c) => path = format!("/api/v1/tasks?type=A&limit=2&cursor={c}"),
            None => break,
        }
    }
    seen.sort();
    assert_eq!(seen, ["a0", "a1", "a2", "a3"]);
    let (_, page) = s.get_json("/api/v1/tasks?status=ACCEPTED&type=B").await;
    assert_eq!(page["tasks"].as_array().unwrap().len(), 1);
    let (_, page) = s.get_json("/api/v1/tasks?status=FINISHED").await;
    assert_eq!(page["tasks"].as_array().unwrap().len(), 0);
    for bad in [
        "status=DONE",
        "limit=0",
        "limit=10001",
        "limit=-1",
        "cursor=nope",
        "holder=12",
        "type=",
    ] {
        let r = s
            .client
            .get(s.url(&format!("/api/v1/tasks?{bad}")))
            .send()
            .await
            .unwrap();
        problem(r, StatusCode::BAD_REQUEST, "invalid").await;
    }
}

async fn a_daemon_runs_tasks_and_the_api_shows_their_ends<D: TestDb>(db: D)
where
    D::Store: IntoAny,
{
    let s = start(db, ServerConfig::default(), true).await;
    put_type(&s, "Echo", "builtin:echo").await;
    put_type(&s, "Fail", "builtin:fail").await;
    put_type(&s, "Idle", "custom:nobody-runs-this").await;
    let r = enqueue(&s, "Echo", "e/1", json!({"hello": "world"})).await;
    let echo = r.headers()["location"].to_str().unwrap().to_owned();
    let r = enqueue(&s, "Fail", "f1", json!("boom")).await;
    let fail = r.headers()["location"].to_str().unwrap().to_owned();
    enqueue(&s, "Idle", "i1", json!(null)).await;

    let done = wait_status(&s, &echo, "FINISHED").await;
    assert_eq!(done["starts"], 1);
    let r = s
        .client
        .get(s.url(&format!("{echo}/response")))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(r.headers()["content-type"], "application/json");
    let body: Value = r.json().await.unwrap();
    assert_eq!(body, json!({"hello": "world"}));
    let (_, log) = s.get_json(&format!("{echo}/log")).await;
    let statuses: Vec<&str> = log
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["status"].as_str().unwrap())
        .collect();
    assert_eq!(statuses, ["ACCEPTED", "SCHEDULED", "RUNNING", "FINISHED"]);

    wait_status(&s, &fail, "FAILED").await;
    let r = s
        .client
        .get(s.url("/api/v1/tasks/Idle/i1/response"))
        .send()
        .await
        .unwrap();
    problem(r, StatusCode::NOT_FOUND, "no-response").await;

    // Re-enqueue: from FINISHED back to the queue, and it runs again; an
    // ACCEPTED task cannot be re-enqueued.
    let r = s
        .client
        .post(s.url(&format!("{echo}/reenqueue")))
        .json(&json!({"message": "once more"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    let again = wait_status(&s, &echo, "FINISHED").await;
    assert_eq!(again["starts"], 1, "the start count was reset");
    let (_, log) = s.get_json(&format!("{echo}/log")).await;
    assert!(
        log.as_array()
            .unwrap()
            .iter()
            .any(|r| r["message"] == "once more"),
        "{log}"
    );
    let r = s
        .client
        .post(s.url("/api/v1/tasks/Idle/i1/reenqueue"))
        .send()
        .await
        .unwrap();
    problem(r, StatusCode::CONFLICT, "invalid-transition").await;
    let r = s
        .client
        .post(s.url(&format!("{fail}/reenqueue")))
        .body("not json")
        .send()
        .await
        .unwrap();
    problem(r, StatusCode::BAD_REQUEST, "invalid").await;
    let r = s
        .client
        .post(s.url("/api/v1/tasks/Idle/nope/reenqueue"))
        .send()
        .await
        .unwrap();
    problem(r, StatusCode::NOT_FOUND, "task-not-found").await;

    // Stats, daemons, health and metrics.
    let (_, stats) = s.get_json("/api/v1/stats").await;
    assert_eq!(stats["by_status"]["FINISHED"], 1, "{stats}");
    assert_eq!(stats["by_status"]["FAILED"], 1, "{stats}");
    assert_eq!(stats["by_status"]["ACCEPTED"], 1, "{stats}");
    assert_eq!(stats["queue_size"], 1);
    assert_eq!(stats["daemons"], 1);
    let (_, daemons) = s.get_json("/api/v1/daemons").await;
    assert!(
        daemons[0]["id"].as_str().unwrap().starts_with("0x"),
        "{daemons}"
    );
    assert!(
        daemons[0]["handlers"]
            .as_array()
            .unwrap()
            .iter()
            .any(|h| h == "builtin:echo"),
        "{daemons}"
    );
    let (code, health) = s.get_json("/healthz").await;
    assert_eq!(code, StatusCode::OK);
    assert_eq!(health["status"], "ok");
    let r = s.client.get(s.url("/metrics")).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    assert!(
        r.headers()["content-type"]
            .to_str()
            .unwrap()
            .contains("text")
    );
    let text = r.text().await.unwrap();
    for line in [
        "atp_tasks_enqueued_total{type=\"Echo\"} 1",
        "atp_tasks_finished_total{type=\"Echo\"} 2",
        "atp_tasks_failed_total{type=\"Fail\"} 1",
        "atp_pickup_latency_seconds_count 3",
        "atp_tasks{status=\"ACCEPTED\"} 1",
        "atp_queue_depth 1",
        "atp_daemons 1",
    ] {
        assert!(text.lines().any(|l| l == line), "no {line:?} in\n{text}");
    }
}

async fn post_type(s: &TestServer, name: &str, action: &str) -> reqwest::Response {
    s.client
        .post(s.url(&format!("/api/v1/types/{name}/{action}")))
        .send()
        .await
        .unwrap()
}

/// `POST …/pause` and `…/resume` answer with the type, whose `paused` every
/// read shows; a re-registration keeps it; enqueues are still accepted;
/// unknown and invalid names are 404 and 400 problems.
async fn types_are_paused_and_resumed<D: TestDb>(db: D)
where
    D::Store: IntoAny,
{
    let s = start(db, ServerConfig::default(), false).await;
    put_type(&s, "Sum", "builtin:sum").await;
    let r = post_type(&s, "Sum", "pause").await;
    assert_eq!(r.status(), StatusCode::OK);
    let t: Value = r.json().await.unwrap();
    assert_eq!((&t["name"], &t["paused"]), (&json!("Sum"), &json!(true)));
    let (_, t) = s.get_json("/api/v1/types/Sum").await;
    assert_eq!(t["paused"], true);
    let (_, list) = s.get_json("/api/v1/types").await;
    assert_eq!(list[0]["paused"], true);

    let r = put_type(&s, "Sum", "builtin:sum").await;
    assert_eq!(r.status(), StatusCode::OK);
    let t: Value = r.json().await.unwrap();
    assert_eq!(t["paused"], true, "registering again keeps the pause: {t}");
    assert_eq!(
        enqueue(&s, "Sum", "a", json!([1])).await.status(),
        StatusCode::CREATED
    );
    let (_, task) = s.get_json("/api/v1/tasks/Sum/a").await;
    assert_eq!(task["status"], "ACCEPTED");

    problem(
        post_type(&s, "Nope", "pause").await,
        StatusCode::NOT_FOUND,
        "type-not-found",
    )
    .await;
    problem(
        post_type(&s, "Nope", "resume").await,
        StatusCode::NOT_FOUND,
        "type-not-found",
    )
    .await;
    let long = "x".repeat(65);
    problem(
        post_type(&s, &long, "pause").await,
        StatusCode::BAD_REQUEST,
        "invalid",
    )
    .await;
    let r = s
        .client
        .get(s.url("/api/v1/types/Sum/pause"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::METHOD_NOT_ALLOWED);

    let r = post_type(&s, "Sum", "resume").await;
    assert_eq!(r.status(), StatusCode::OK);
    let t: Value = r.json().await.unwrap();
    assert_eq!(t["paused"], false);
    let (_, t) = s.get_json("/api/v1/types/Sum").await;
    assert_eq!(t["paused"], false);
}

async fn tokens_are_required_when_configured<D: TestDb>(db: D)
where
    D::Store: IntoAny,
{
    let config = ServerConfig {
        tokens: Tokens::new(vec!["s3cret".into(), "second".into()]),
        ..ServerConfig::default()
    };
    let s = start(db, config, false).await;
    for path in [
        "/api/v1/types",
        "/api/v1/stats",
        "/metrics",
        "/api/v1/openapi.json",
    ] {
        let r = s.client.get(s.url(path)).send().await.unwrap();
        assert!(
            r.headers()["www-authenticate"]
                .to_str()
                .unwrap()
                .starts_with("Bearer")
        );
        problem(r, StatusCode::UNAUTHORIZED, "unauthorized").await;
        let r = s
            .client
            .get(s.url(path))
            .bearer_auth("wrong")
            .send()
            .await
            .unwrap();
        problem(r, StatusCode::UNAUTHORIZED, "unauthorized").await;
        for token in ["s3cret", "second"] {
            let r = s
                .client
                .get(s.url(path))
                .bearer_auth(token)
                .send()
                .await
                .unwrap();
            assert_eq!(r.status(), StatusCode::OK, "{path} with {token}");
        }
    }
    let r = s
        .client
        .put(s.url("/api/v1/types/T"))
        .json(&json!({"handler": "builtin:noop"}))
        .send()
        .await
        .unwrap();
    problem(r, StatusCode::UNAUTHORIZED, "unauthorized").await;
    let (_, types) = s.get_json("/healthz").await;
    assert_eq!(types["status"], "ok", "/healthz needs no token");
}

/// `identifier_prefix` lists what starts with it, paged; the bulk
/// re-enqueue answers how many it moved, all of a type or of every type,
/// and refuses ACCEPTED (400), an unknown type (404) and bad bodies (400).
async fn prefix_search_and_bulk_reenqueue<D: TestDb>(db: D)
where
    D::Store: IntoAny,
{
    use atp_core::{ClaimParams, DaemonId, StatusChange, Store, StoreExt};

    let s = start(db, ServerConfig::default(), false).await;
    put_type(&s, "A", "custom:nobody-runs-this").await;
    put_type(&s, "B", "custom:nobody-runs-this").await;
    for id in [
        "order-1", "order-2", "order-10", "Order-3", "other", "order_x",
    ] {
        enqueue(&s, "A", id, json!(null)).await;
    }
    enqueue(&s, "B", "order-9", json!(null)).await;
    let mut seen = Vec::new();
    let mut path = "/api/v1/tasks?identifier_prefix=order-&limit=2".to_owned();
    loop {
        let (code, page) = s.get_json(&path).await;
        assert_eq!(code, StatusCode::OK, "{page}");
        seen.extend(
            page["tasks"]
                .as_array()
                .unwrap()
                .iter()
                .map(|t| t["identifier"].as_str().unwrap().to_owned()),
        );
        match page["next_cursor"].as_str() {
            Some(c) => path = format!("/api/v1/tasks?identifier_prefix=order-&limit=2&cursor={c}"),
            None => break,
        }
    }
    seen.sort();
    assert_eq!(seen, ["order-1", "order-10", "order-2", "order-9"]);
    let (_, page) = s
        .get_json("/api/v1/tasks?identifier_prefix=order-1&type=A")
        .await;
    assert_eq!(page["tasks"].as_array().unwrap().len(), 2, "{page}");
    let long = "x".repeat(65);
    for bad in [long.as_str(), "a%00"] {
        let r = s
            .client
            .get(s.url(&format!("/api/v1/tasks?identifier_prefix={bad}")))
            .send()
            .await
            .unwrap();
        problem(r, StatusCode::BAD_REQUEST, "invalid").await;
    }

    // Everything fails.
    let started = s
        .store
        .task_claim_start(&ClaimParams::new(DaemonId(7), 100))
        .await
        .unwrap();
    for t in started {
        s.store
            .task_set_status(StatusChange::fail(t.attempt, "boom"))
            .await
            .unwrap();
    }
    let bulk = |body: Value| {
        s.client
            .post(s.url("/api/v1/tasks/reenqueue"))
            .json(&body)
            .send()
    };
    let r = bulk(json!({"status": "FAILED", "type": "A"}))
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(r.json::<Value>().await.unwrap(), json!({"reenqueued": 6}));
    let (_, page) = s.get_json("/api/v1/tasks?status=FAILED").await;
    assert_eq!(page["tasks"].as_array().unwrap().len(), 1, "B's is left");
    let r = bulk(json!({"status": "FAILED", "message": "all again"}))
        .await
        .unwrap();
    assert_eq!(r.json::<Value>().await.unwrap(), json!({"reenqueued": 1}));
    let (_, log) = s.get_json("/api/v1/tasks/B/order-9/log").await;
    let last = log.as_array().unwrap().last().unwrap().clone();
    assert_eq!(last["message"], "all again", "{log}");

    let r = bulk(json!({"status": "ACCEPTED"})).await.unwrap();
    let body = problem(r, StatusCode::BAD_REQUEST, "invalid").await;
    assert!(
        body["detail"].as_str().unwrap().contains("ACCEPTED"),
        "{body}"
    );
    let r = bulk(json!({"status": "FAILED", "type": "Nope"}))
        .await
        .unwrap();
    problem(r, StatusCode::NOT_FOUND, "type-not-found").await;
    for bad in [
        json!({}),
        json!({"status": "DONE"}),
        json!({"status": "FAILED", "x": 1}),
    ] {
        let r = bulk(bad).await.unwrap();
        problem(r, StatusCode::BAD_REQUEST, "invalid").await;
    }
    assert_eq!(s.store.queue_size().await.unwrap(), 7);
}

async fn openapi_document_and_unknown_routes<D: TestDb>(db: D)
where
    D::Store: IntoAny,
{
    let s = start(db, ServerConfig::default(), false).await;
    let (code, doc) = s.get_json("/api/v1/openapi.json").await;
    assert_eq!(code, StatusCode::OK);
    // Every status code, from the table itself, in every status_code field.
    for schema in ["TaskView", "LogRecordView"] {
        let field = &doc["components"]["schemas"][schema]["properties"]["status_code"];
        let text = field["description"].as_str().unwrap_or_default();
        for status in atp_core::Status::ALL {
            let entry = format!("{} {}", status.code(), status.name());
            assert!(text.contains(&entry), "{schema}: {entry} missing: {field}");
        }
    }
    assert!(
        doc["openapi"].as_str().unwrap().starts_with("3.1"),
        "{}",
        doc["openapi"]
    );
    // The identifier may be left out of an enqueue; the type may not.
    let body = &doc["components"]["schemas"]["EnqueueBody"];
    let required = body["required"].as_array().unwrap();
    assert!(required.contains(&json!("type")), "{body}");
    assert!(!required.contains(&json!("identifier")), "{body}");
    let described = body["properties"]["identifier"].to_string();
    assert!(described.contains("UUIDv7"), "{described}");
    let list = doc["paths"]["/api/v1/tasks"]["get"]["parameters"].to_string();
    assert!(list.contains("identifier_prefix"), "{list}");
    let paths = doc["paths"].as_object().unwrap();
    for path in [
        "/api/v1/types",
        "/api/v1/types/{name}",
        "/api/v1/types/{name}/pause",
        "/api/v1/types/{name}/resume",
        "/api/v1/tasks",
        "/api/v1/tasks/batch",
        "/api/v1/tasks/reenqueue",
        "/api/v1/tasks/{type}/{identifier}",
        "/api/v1/tasks/{type}/{identifier}/input",
        "/api/v1/tasks/{type}/{identifier}/log",
        "/api/v1/tasks/{type}/{identifier}/response",
        "/api/v1/tasks/{type}/{identifier}/reenqueue",
        "/api/v1/stats",
        "/api/v1/daemons",
        "/healthz",
        "/metrics",
    ] {
        assert!(paths.contains_key(path), "{path} missing from the document");
    }
    let type_fields = &doc["components"]["schemas"]["TaskTypeView"]["properties"];
    assert!(
        type_fields.get("paused").is_some(),
        "the type object documents its pause: {type_fields}"
    );
    let r = s
        .client
        .get(s.url("/api/v1/nothing-here"))
        .send()
        .await
        .unwrap();
    problem(r, StatusCode::NOT_FOUND, "not-found").await;
    let r = s.client.patch(s.url("/api/v1/tasks")).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::METHOD_NOT_ALLOWED);
}

atp_store::per_engine_tests!(
    types_are_registered_read_and_unregistered,
    types_are_paused_and_resumed,
    enqueue_answers_201_with_location_and_refuses_bad_input,
    limits_give_413_and_503,
    every_valid_identifier_is_reachable,
    batches_are_all_or_nothing,
    input_schemas_are_enforced_over_http,
    enqueue_without_an_identifier_generates_one,
    lists_filter_and_page_with_a_cursor,
    due_times_and_priorities,
    a_daemon_runs_tasks_and_the_api_shows_their_ends,
    tokens_are_required_when_configured,
    prefix_search_and_bulk_reenqueue,
    openapi_document_and_unknown_routes,
);
