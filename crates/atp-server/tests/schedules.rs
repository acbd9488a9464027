//! Schedules over real HTTP on each engine: the JSON API under
//! `/api/v1/schedules` (and its place in the OpenAPI document and behind
//! tokens) and the dashboard's `/schedules` page.

mod common;

use atp_core::{ScheduleName, Store};
use atp_server::{ServerConfig, Tokens};
use atp_store::testing::TestDb;
use common::{IntoAny, TestServer, start};
use reqwest::StatusCode;
use reqwest::header::{LOCATION, ORIGIN};
use serde_json::{Value, json};

/// Asserts an RFC 9457 problem with `status` and `kind`.
async fn problem(response: reqwest::Response, status: StatusCode, kind: &str) -> Value {
    assert_eq!(response.status(), status, "{response:?}");
    assert_eq!(
        response.headers()["content-type"],
        "application/problem+json"
    );
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["type"], format!("/api/v1/problems#{kind}"), "{body}");
    body
}

async fn create(s: &TestServer, body: Value) -> reqwest::Response {
    s.client
        .post(s.url("/api/v1/schedules"))
        .json(&body)
        .send()
        .await
        .unwrap()
}

async fn post(s: &TestServer, path: &str) -> reqwest::Response {
    s.client.post(s.url(path)).send().await.unwrap()
}

/// Create (201, Location, the stored object), read, list, pause, resume,
/// delete; bad names, expressions, time zones, catch-ups and fields are
/// 400 and store nothing; an unknown type or schedule is 404.
async fn schedules_are_created_read_paused_and_deleted<D: TestDb>(db: D)
where
    D::Store: IntoAny,
{
    let s = start(db, ServerConfig::default(), false).await;
    s.register("Report", "builtin:noop").await;
    let bad = [
        json!({"name": "n", "type": "Report", "expression": "not cron"}),
        json!({"name": "n", "type": "Report", "expression": "0 2 * * *", "timezone": "Mars/Olympus"}),
        json!({"name": "n", "type": "Report", "expression": "0 2 * * *", "catch_up": "sometimes"}),
        json!({"name": "n".repeat(44), "type": "Report", "expression": "0 2 * * *"}),
        json!({"name": "n", "type": "Report", "expression": "0 2 * * *", "extra": 1}),
        json!({"name": "n", "type": "Report"}),
    ];
    for body in bad {
        let r = create(&s, body.clone()).await;
        assert_eq!(r.status(), StatusCode::BAD_REQUEST, "{body}");
    }
    let r = create(
        &s,
        json!({"name": "n", "type": "Nope", "expression": "0 2 * * *"}),
    )
    .await;
    problem(r, StatusCode::NOT_FOUND, "type-not-found").await;
    assert!(
        s.store.schedule_list().await.unwrap().is_empty(),
        "nothing stored"
    );

    let r = create(
        &s,
        json!({"name": "nightly report", "type": "Report", "expression": "0 2 * * *",
               "timezone": "Europe/Vienna", "input": {"full": true}, "catch_up": "last"}),
    )
    .await;
    assert_eq!(r.status(), StatusCode::CREATED);
    assert_eq!(r.headers()[LOCATION], "/api/v1/schedules/nightly%20report");
    let created: Value = r.json().await.unwrap();
    assert_eq!(created["name"], "nightly report");
    assert_eq!(created["type"], "Report");
    assert_eq!(created["expression"], "0 2 * * *");
    assert_eq!(created["timezone"], "Europe/Vienna");
    assert_eq!(created["input"], json!({"full": true}));
    assert_eq!(created["catch_up"], "last");
    assert_eq!(created["paused"], false);
    assert_eq!(created["last_enqueued_at"], Value::Null);
    let next = created["next_occurrence_at"].as_str().unwrap();
    assert!(
        next.ends_with(":00:00Z"),
        "02:00 in Vienna is a whole UTC hour: {next}"
    );

    let (code, got) = s.get_json("/api/v1/schedules/nightly%20report").await;
    assert_eq!(code, StatusCode::OK);
    assert_eq!(got, created);
    let (_, list) = s.get_json("/api/v1/schedules").await;
    assert_eq!(list, json!([created]));

    let r = post(&s, "/api/v1/schedules/nightly%20report/pause").await;
    assert_eq!(r.status(), StatusCode::OK);
    let paused: Value = r.json().await.unwrap();
    assert_eq!(paused["paused"], true);
    assert_eq!(paused["next_occurrence_at"], Value::Null);
    let r = post(&s, "/api/v1/schedules/nightly%20report/resume").await;
    let resumed: Value = r.json().await.unwrap();
    assert_eq!(resumed["paused"], false);

    let r = s
        .client
        .delete(s.url("/api/v1/schedules/nightly%20report"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    for r in [
        s.client
            .get(s.url("/api/v1/schedules/nightly%20report"))
            .send()
            .await
            .unwrap(),
        s.client
            .delete(s.url("/api/v1/schedules/nightly%20report"))
            .send()
            .await
            .unwrap(),
        post(&s, "/api/v1/schedules/nightly%20report/pause").await,
        post(&s, "/api/v1/schedules/nightly%20report/resume").await,
    ] {
        problem(r, StatusCode::NOT_FOUND, "schedule-not-found").await;
    }
}

/// The document lists every schedule path and object.
async fn schedules_are_documented<D: TestDb>(db: D)
where
    D::Store: IntoAny,
{
    let s = start(db, ServerConfig::default(), false).await;
    let (_, doc) = s.get_json("/api/v1/openapi.json").await;
    let paths = doc["paths"].as_object().unwrap();
    for path in [
        "/api/v1/schedules",
        "/api/v1/schedules/{name}",
        "/api/v1/schedules/{name}/pause",
        "/api/v1/schedules/{name}/resume",
    ] {
        assert!(paths.contains_key(path), "{path} missing");
    }
    let view = &doc["components"]["schemas"]["ScheduleView"]["properties"];
    for field in [
        "next_occurrence_at",
        "last_enqueued_at",
        "paused",
        "catch_up",
    ] {
        assert!(view.get(field).is_some(), "{field}: {view}");
    }
    assert!(
        doc["components"]["schemas"]
            .get("NewScheduleBody")
            .is_some()
    );
    drop(s);
}

/// With tokens, the schedules need one like everything else.
async fn schedules_need_a_token_when_configured<D: TestDb>(db: D)
where
    D::Store: IntoAny,
{
    let config = ServerConfig {
        tokens: Tokens::new(vec!["s3cret".into()]),
        ..ServerConfig::default()
    };
    let s = start(db, config, false).await;
    s.register("Report", "builtin:noop").await;
    let r = s
        .client
        .get(s.url("/api/v1/schedules"))
        .send()
        .await
        .unwrap();
    problem(r, StatusCode::UNAUTHORIZED, "unauthorized").await;
    let body = json!({"name": "n", "type": "Report", "expression": "0 2 * * *"});
    let r = create(&s, body.clone()).await;
    problem(r, StatusCode::UNAUTHORIZED, "unauthorized").await;
    assert!(s.store.schedule_list().await.unwrap().is_empty());
    let r = s
        .client
        .post(s.url("/api/v1/schedules"))
        .bearer_auth("s3cret")
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::CREATED);
    let r = s
        .client
        .get(s.url("/api/v1/schedules"))
        .bearer_auth("s3cret")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
}

/// `/schedules` (in the nav) lists every schedule with its next and last
/// enqueued occurrence and state; its buttons pause and resume
/// (same-origin POSTs, 303 back); an unknown schedule is a 404 page.
async fn schedules_page_lists_and_pauses_same_origin_only<D: TestDb>(db: D)
where
    D::Store: IntoAny,
{
    let s = start(db, ServerConfig::default(), false).await;
    s.register("Report", "builtin:noop").await;
    let body = s
        .client
        .get(s.url("/schedules"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(body.contains(r#"id="no-schedules""#), "{body}");
    create(
        &s,
        json!({"name": "<b>nightly</b>", "type": "Report", "expression": "*/5 * * * *"}),
    )
    .await;
    let name = ScheduleName::new("<b>nightly</b>").unwrap();
    let sch = s.store.schedule_get(&name).await.unwrap();
    let at = sch.recurrence.next_after(sch.created_at).unwrap();
    s.store
        .schedule_enqueue(&atp_core::ScheduleOccurrence {
            schedule: name.clone(),
            at,
        })
        .await
        .unwrap();

    let body = s
        .client
        .get(s.url("/schedules"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(body.contains(r#"data-page="schedules""#), "{body}");
    assert!(
        body.contains(r#"<a href="/schedules" aria-current="page">"#),
        "{body}"
    );
    assert!(!body.contains("<b>nightly"), "escaped: {body}");
    assert!(body.contains("&lt;b&gt;nightly&lt;/b&gt;"), "{body}");
    assert!(body.contains("*/5 * * * *"), "{body}");
    assert!(body.contains(r#"data-field="next"><time"#), "{body}");
    let identifier = sch.identifier_for(at);
    const UNRESERVED: &percent_encoding::AsciiSet = &percent_encoding::NON_ALPHANUMERIC
        .remove(b'-')
        .remove(b'.')
        .remove(b'_')
        .remove(b'~');
    let task_link = format!(
        r#"data-field="last"><a href="/tasks/Report/{}">"#,
        percent_encoding::utf8_percent_encode(identifier.as_str(), UNRESERVED)
    );
    assert!(body.contains(&task_link), "{task_link}: {body}");
    let pause = "/schedules/%3Cb%3Enightly%3C%2Fb%3E/pause";
    assert!(body.contains(&format!(r#"action="{pause}""#)), "{body}");

    let c = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let r = c
        .post(s.url(pause))
        .header(ORIGIN, "http://evil.example")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::FORBIDDEN);
    assert!(!s.store.schedule_get(&name).await.unwrap().paused);
    let r = c
        .post(s.url(pause))
        .header(ORIGIN, &s.base)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::SEE_OTHER);
    assert_eq!(r.headers()[LOCATION], "/schedules");
    assert!(s.store.schedule_get(&name).await.unwrap().paused);
    let body = s
        .client
        .get(s.url("/schedules"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        body.contains(r#"data-paused="true">Paused</span>"#),
        "{body}"
    );
    assert!(body.contains("/resume"), "{body}");
    let r = c
        .post(s.url("/schedules/%3Cb%3Enightly%3C%2Fb%3E/resume"))
        .header(ORIGIN, &s.base)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::SEE_OTHER);
    assert!(!s.store.schedule_get(&name).await.unwrap().paused);
    let r = c
        .post(s.url("/schedules/ghost/pause"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::NOT_FOUND);
}

atp_store::per_engine_tests!(
    schedules_are_created_read_paused_and_deleted,
    schedules_are_documented,
    schedules_need_a_token_when_configured,
    schedules_page_lists_and_pauses_same_origin_only,
);
