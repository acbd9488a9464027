//! Cancelling over HTTP (`POST /api/v1/tasks/{type}/{identifier}/cancel`)
//! and from the task page, on each engine.

mod common;

use std::time::Duration;

use atp_server::{ServerConfig, Tokens};
use atp_store::testing::{TestDb, eventually};
use common::{IntoAny, TestServer, start};
use reqwest::StatusCode;
use serde_json::{Value, json};

async fn enqueue(s: &TestServer, task_type: &str, identifier: &str, input: Value) {
    let r = s
        .client
        .post(s.url("/api/v1/tasks"))
        .json(&json!({"type": task_type, "identifier": identifier, "input": input}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::CREATED);
}

async fn post(s: &TestServer, path: &str, body: Option<&str>) -> reqwest::Response {
    let mut request = s.client.post(s.url(path));
    if let Some(body) = body {
        request = request
            .header("content-type", "application/json")
            .body(body.to_owned());
    }
    request.send().await.unwrap()
}

async fn problem(r: reqwest::Response, status: StatusCode, kind: &str) -> Value {
    assert_eq!(r.status(), status, "{r:?}");
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["type"], format!("/api/v1/problems#{kind}"), "{body}");
    body
}

/// The endpoint returns the task object, logs the message, answers 409 for
/// a task that ended, 404 for a missing one, 400 for a bad body; re-enqueue
/// (one or all CANCELLED) brings tasks back; lists filter by CANCELLED.
async fn cancel_over_the_api<D: TestDb>(db: D)
where
    D::Store: IntoAny,
{
    let s = start(db, ServerConfig::default(), false).await;
    s.register("T", "custom:nobody-runs-this").await;
    for id in ["a", "b", "c", "d"] {
        enqueue(&s, "T", id, json!(null)).await;
    }
    let r = post(
        &s,
        "/api/v1/tasks/T/a/cancel",
        Some(r#"{"message": "wrong input"}"#),
    )
    .await;
    assert_eq!(r.status(), StatusCode::OK);
    let task: Value = r.json().await.unwrap();
    assert_eq!(
        (task["status"].clone(), task["status_code"].clone()),
        (json!("CANCELLED"), json!(7))
    );
    assert_eq!(task["identifier"], "a");
    let (_, log) = s.get_json("/api/v1/tasks/T/a/log").await;
    let last = log.as_array().unwrap().last().unwrap().clone();
    assert_eq!(last["message"], "Cancelled: wrong input", "{log}");
    assert_eq!(last["status"], "CANCELLED");

    // No body, `null`, and an empty object all cancel with the default line.
    for (id, body) in [("b", None), ("c", Some("null")), ("d", Some("{}"))] {
        let r = post(&s, &format!("/api/v1/tasks/T/{id}/cancel"), body).await;
        assert_eq!(r.status(), StatusCode::OK, "{id}");
        let (_, log) = s.get_json(&format!("/api/v1/tasks/T/{id}/log")).await;
        assert_eq!(
            log.as_array().unwrap().last().unwrap()["message"],
            "Cancelled by an operator"
        );
    }
    let r = post(&s, "/api/v1/tasks/T/a/cancel", None).await;
    let body = problem(r, StatusCode::CONFLICT, "invalid-transition").await;
    assert!(
        body["detail"]
            .as_str()
            .unwrap()
            .contains("cannot cancel a task that is CANCELLED"),
        "{body}"
    );
    problem(
        post(&s, "/api/v1/tasks/T/missing/cancel", None).await,
        StatusCode::NOT_FOUND,
        "task-not-found",
    )
    .await;
    for bad in [r#"{"x": 1}"#, r#"{"message": "a\u0000b"}"#, "not json"] {
        problem(
            post(&s, "/api/v1/tasks/T/b/cancel", Some(bad)).await,
            StatusCode::BAD_REQUEST,
            "invalid",
        )
        .await;
    }

    let (_, page) = s.get_json("/api/v1/tasks?status=CANCELLED").await;
    assert_eq!(page["tasks"].as_array().unwrap().len(), 4, "{page}");
    let (_, stats) = s.get_json("/api/v1/stats").await;
    assert!(stats.to_string().contains("CANCELLED"), "{stats}");
    let r = post(&s, "/api/v1/tasks/T/a/reenqueue", None).await;
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(r.json::<Value>().await.unwrap()["status"], "ACCEPTED");
    let r = s
        .client
        .post(s.url("/api/v1/tasks/reenqueue"))
        .json(&json!({"status": "CANCELLED"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.json::<Value>().await.unwrap(), json!({"reenqueued": 3}));
    assert_eq!(atp_core::Store::queue_size(&s.store).await.unwrap(), 4);

    let (_, doc) = s.get_json("/api/v1/openapi.json").await;
    let op = &doc["paths"]["/api/v1/tasks/{type}/{identifier}/cancel"]["post"];
    assert_eq!(op["operationId"], "cancel_task", "{op}");
    assert!(op["responses"].get("409").is_some(), "{op}");
    let names = doc["components"]["schemas"]["StatusName"].to_string();
    assert!(names.contains("CANCELLED"), "{names}");
}

/// A running `builtin:sleep` under the server's own daemon: the cancel
/// stops it at once, the task stays CANCELLED, and both counters count it.
async fn cancel_stops_the_servers_daemon_and_is_counted<D: TestDb>(db: D)
where
    D::Store: IntoAny,
{
    let s = start(db, ServerConfig::default(), true).await;
    s.register("Sleep", "builtin:sleep").await;
    enqueue(&s, "Sleep", "nap", json!({"seconds": 60})).await;
    eventually(Duration::from_secs(10), "RUNNING", || async {
        let (_, t) = s.get_json("/api/v1/tasks/Sleep/nap").await;
        (t["status"] == "RUNNING").then_some(())
    })
    .await;
    let r = post(&s, "/api/v1/tasks/Sleep/nap/cancel", None).await;
    assert_eq!(r.status(), StatusCode::OK);
    eventually(Duration::from_secs(10), "the attempt to stop", || async {
        let r = s.client.get(s.url("/metrics")).send().await.unwrap();
        let text = r.text().await.unwrap();
        text.contains("atp_attempts_cancelled_total{type=\"Sleep\"} 1")
            .then_some(text)
    })
    .await;
    let r = s.client.get(s.url("/metrics")).send().await.unwrap();
    let text = r.text().await.unwrap();
    assert!(
        text.contains("atp_tasks_cancelled_total{type=\"Sleep\"} 1"),
        "{text}"
    );
    assert!(text.contains("atp_tasks{status=\"CANCELLED\"} 1"), "{text}");
    let (_, t) = s.get_json("/api/v1/tasks/Sleep/nap").await;
    assert_eq!(t["status"], "CANCELLED");
    assert_eq!(t["holder"], Value::Null);
}

/// The cancel obeys tokens like every other POST.
async fn cancel_needs_a_token_when_configured<D: TestDb>(db: D)
where
    D::Store: IntoAny,
{
    let config = ServerConfig {
        tokens: Tokens::new(vec!["s3cret".into()]),
        ..ServerConfig::default()
    };
    let s = start(db, config, false).await;
    s.register("T", "custom:nobody-runs-this").await;
    atp_core::Store::task_enqueue(
        &s.store,
        atp_core::NewTask::new(
            atp_core::TypeName::new("T").unwrap(),
            atp_core::TaskIdentifier::new("a").unwrap(),
        ),
    )
    .await
    .unwrap();
    problem(
        post(&s, "/api/v1/tasks/T/a/cancel", None).await,
        StatusCode::UNAUTHORIZED,
        "unauthorized",
    )
    .await;
    let r = s
        .client
        .post(s.url("/api/v1/tasks/T/a/cancel"))
        .bearer_auth("s3cret")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
}

/// The task page offers Cancel only while the task can be cancelled; an
/// unconfirmed POST changes nothing and answers a confirmation page; the
/// confirmed one cancels and goes back to the task.
async fn the_task_page_cancels_after_a_confirmation<D: TestDb>(db: D)
where
    D::Store: IntoAny,
{
    let s = start(db, ServerConfig::default(), false).await;
    s.register("T", "custom:nobody-runs-this").await;
    enqueue(&s, "T", "a", json!(null)).await;
    let page = s
        .client
        .get(s.url("/tasks/T/a"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(page.contains("id=\"cancel-form\""), "{page}");
    assert!(page.contains("action=\"/tasks/T/a/cancel\""), "{page}");
    let origin = s.base.clone();
    let form = |confirm: &str| {
        s.client
            .post(s.url("/tasks/T/a/cancel"))
            .header("origin", origin.clone())
            .form(&[("confirm", confirm)])
            .send()
    };
    let r = form("").await.unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    let confirm = r.text().await.unwrap();
    assert!(confirm.contains("Cancel task T / a?"), "{confirm}");
    assert!(confirm.contains("value=\"yes\""), "{confirm}");
    let (_, t) = s.get_json("/api/v1/tasks/T/a").await;
    assert_eq!(
        t["status"], "ACCEPTED",
        "an unconfirmed POST changes nothing"
    );

    // From another site: refused, and nothing changes.
    let r = s
        .client
        .post(s.url("/tasks/T/a/cancel"))
        .header("origin", "http://evil.example")
        .form(&[("confirm", "yes")])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::FORBIDDEN);
    let (_, t) = s.get_json("/api/v1/tasks/T/a").await;
    assert_eq!(t["status"], "ACCEPTED");

    let no_redirects = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let r = no_redirects
        .post(s.url("/tasks/T/a/cancel"))
        .header("origin", origin.clone())
        .form(&[("confirm", "yes")])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::SEE_OTHER);
    assert_eq!(r.headers()["location"], "/tasks/T/a");
    let (_, t) = s.get_json("/api/v1/tasks/T/a").await;
    assert_eq!(t["status"], "CANCELLED");
    // A stale page's button: the task has ended, a 409 page says why.
    let r = form("yes").await.unwrap();
    assert_eq!(r.status(), StatusCode::CONFLICT);
    let said = r.text().await.unwrap();
    assert!(
        said.contains("cannot cancel a task that is CANCELLED"),
        "{said}"
    );
    let page = s
        .client
        .get(s.url("/tasks/T/a"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        !page.contains("id=\"cancel-form\""),
        "an ended task offers no cancel"
    );
    assert!(page.contains("data-status=\"CANCELLED\""), "{page}");
    let failed = s
        .client
        .get(s.url("/failed"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        failed.contains("CANCELLED"),
        "the failed view shows cancelled tasks"
    );
    let original = s
        .client
        .get(s.url("/process/task?status=CANCELLED"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        original.contains("data-task-status=\"CANCELLED\""),
        "{original}"
    );
    let css = s
        .client
        .get(s.url("/assets/atp.css"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        css.contains("[data-status=\"CANCELLED\"] { --st: grey; }"),
        "colour"
    );
}

atp_store::per_engine_tests!(
    cancel_over_the_api,
    cancel_stops_the_servers_daemon_and_is_counted,
    cancel_needs_a_token_when_configured,
    the_task_page_cancels_after_a_confirmation,
);
