//! The OGC API – Processes facade over real HTTP, with a daemon running
//! the jobs, on each engine.

mod common;

use std::time::Duration;

use atp_server::ServerConfig;
use atp_store::testing::{TestDb, eventually};
use common::{IntoAny, TestServer, start};
use reqwest::StatusCode;
use serde_json::{Value, json};

const EXCEPTIONS: &str = "http://www.opengis.net/def/exceptions/ogcapi-processes-1/1.0";

/// Asserts an OGC exception of `name` with `status`.
async fn exception(r: reqwest::Response, status: StatusCode, name: &str) -> Value {
    assert_eq!(r.status(), status, "{r:?}");
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["type"], format!("{EXCEPTIONS}/{name}"), "{body}");
    assert!(!body["detail"].as_str().unwrap().is_empty(), "{body}");
    body
}

async fn register(s: &TestServer, name: &str, body: Value) {
    let r = s
        .client
        .put(s.url(&format!("/api/v1/types/{name}")))
        .json(&body)
        .send()
        .await
        .unwrap();
    assert!(r.status().is_success(), "{:?}", r.text().await);
}

/// Posts an execute request (no Content-Type, as some clients send it);
/// the response.
async fn execute(
    s: &TestServer,
    process: &str,
    body: Value,
    prefer: Option<&str>,
) -> reqwest::Response {
    let mut request = s
        .client
        .post(s.url(&format!("/ogc/processes/{process}/execution")))
        .body(body.to_string());
    if let Some(prefer) = prefer {
        request = request.header("Prefer", prefer);
    }
    request.send().await.unwrap()
}

async fn wait_job(s: &TestServer, url: &str, want: &str) -> Value {
    eventually(
        Duration::from_secs(30),
        &format!("{url} {want}"),
        || async {
            let r = s.client.get(url).send().await.unwrap();
            assert_eq!(r.status(), StatusCode::OK);
            let info: Value = r.json().await.unwrap();
            (info["status"] == want).then_some(info)
        },
    )
    .await
}

fn rel<'a>(doc: &'a Value, rel: &str) -> &'a str {
    doc["links"]
        .as_array()
        .unwrap()
        .iter()
        .find(|l| l["rel"] == rel)
        .and_then(|l| l["href"].as_str())
        .unwrap_or_else(|| panic!("no {rel} link in {doc}"))
}

/// Landing page, conformance, processes and their descriptions.
async fn landing_conformance_and_processes<D: TestDb>(db: D)
where
    D::Store: IntoAny,
{
    let s = start(db, ServerConfig::default(), false).await;
    register(&s, "Echo", json!({"handler": "builtin:echo"})).await;
    register(&s, "Point", json!({
        "handler": "builtin:echo", "title": "A point", "description": "Echoes a point",
        "keywords": ["geo"], "version": "2.0.0", "sync_wait_secs": 10.0,
        "input_schema": {"type": "object", "properties": {
            "x": {"type": "number", "description": "east"}, "y": {"type": "number"}}, "required": ["x"]},
        "output_schema": {"type": "object"},
    }))
    .await;

    for path in ["/ogc/", "/ogc"] {
        let (code, landing) = s.get_json(path).await;
        assert_eq!(code, StatusCode::OK, "{path}");
        assert_eq!(rel(&landing, "self"), s.url("/ogc/"));
        let (code, api) = s
            .get_json(rel(&landing, "service-desc").strip_prefix(&s.base).unwrap())
            .await;
        assert_eq!(code, StatusCode::OK);
        assert_eq!(api["openapi"], "3.0.3");
    }
    let (_, conformance) = s.get_json("/ogc/conformance").await;
    let classes = conformance["conformsTo"].as_array().unwrap();
    for class in [
        "core",
        "json",
        "ogc-process-description",
        "job-list",
        "dismiss",
    ] {
        let uri = format!("http://www.opengis.net/spec/ogcapi-processes-1/1.0/conf/{class}");
        assert!(classes.contains(&json!(uri)), "{class}");
    }

    let (_, list) = s.get_json("/ogc/processes?limit=1").await;
    let processes = list["processes"].as_array().unwrap();
    assert_eq!(processes.len(), 1);
    assert_eq!(processes[0]["id"], "Echo");
    assert_eq!(processes[0]["version"], "1.0.0");
    assert_eq!(
        processes[0]["jobControlOptions"],
        json!(["async-execute", "dismiss"])
    );
    let next = rel(&list, "next").strip_prefix(&s.base).unwrap().to_owned();
    let (_, page2) = s.get_json(&next).await;
    assert_eq!(page2["processes"][0]["id"], "Point");
    assert!(
        page2["links"]
            .as_array()
            .unwrap()
            .iter()
            .all(|l| l["rel"] != "next")
    );

    let (code, echo) = s.get_json("/ogc/processes/Echo").await;
    assert_eq!(code, StatusCode::OK);
    assert_eq!(echo["inputs"]["input"]["schema"], json!({}));
    assert_eq!(echo["outputs"]["response"]["schema"], json!({}));
    let (_, point) = s.get_json("/ogc/processes/Point").await;
    assert_eq!(point["title"], "A point");
    assert_eq!(point["version"], "2.0.0");
    assert_eq!(
        point["jobControlOptions"],
        json!(["sync-execute", "async-execute", "dismiss"])
    );
    assert_eq!(point["inputs"]["x"]["minOccurs"], 1);
    assert_eq!(point["inputs"]["x"]["description"], "east");
    assert_eq!(point["inputs"]["y"]["minOccurs"], 0);
    assert_eq!(
        point["outputs"]["response"]["schema"],
        json!({"type": "object"})
    );

    let r = s
        .client
        .get(s.url("/ogc/processes/Nope"))
        .send()
        .await
        .unwrap();
    exception(r, StatusCode::NOT_FOUND, "no-such-process").await;
    let r = execute(&s, "Nope", json!({}), None).await;
    exception(r, StatusCode::NOT_FOUND, "no-such-process").await;
    let r = s.client.get(s.url("/ogc/jobs/nope")).send().await.unwrap();
    exception(r, StatusCode::NOT_FOUND, "no-such-job").await;
}

/// An async execution is a task: 201 with Location and statusInfo, followed
/// to `successful`, its results read; the job list filters; a synchronous
/// wait answers the results at once; a schema violation stores nothing.
async fn jobs_run_are_listed_and_give_results<D: TestDb>(db: D)
where
    D::Store: IntoAny,
{
    let s = start(db, ServerConfig::default(), true).await;
    register(&s, "Echo", json!({"handler": "builtin:echo"})).await;
    register(&s, "Point", json!({
        "handler": "builtin:echo", "sync_wait_secs": 20.0,
        "input_schema": {"type": "object", "properties": {"x": {"type": "number"}}, "required": ["x"]},
    }))
    .await;

    let r = execute(
        &s,
        "Echo",
        json!({"inputs": {"input": {"value": [1, 2], "mediaType": "application/json"}}}),
        Some("respond-async"),
    )
    .await;
    assert_eq!(r.status(), StatusCode::CREATED);
    assert_eq!(r.headers()["preference-applied"], "respond-async");
    let location = r.headers()["location"].to_str().unwrap().to_owned();
    let info: Value = r.json().await.unwrap();
    let job_id = info["jobID"].as_str().unwrap().to_owned();
    assert_eq!(location, s.url(&format!("/ogc/jobs/{job_id}")));
    assert_eq!(info["type"], "process");
    assert_eq!(info["processID"], "Echo");
    assert!(
        ["accepted", "running", "successful"].contains(&info["status"].as_str().unwrap()),
        "{info}"
    );
    let done = wait_job(&s, &location, "successful").await;
    assert_eq!(done["progress"], 100);
    for field in ["created", "started", "finished", "updated"] {
        assert!(done[field].is_string(), "{field}: {done}");
    }
    // The job links its dashboard page, which links back.
    let page = s.client.get(rel(&done, "alternate")).send().await.unwrap();
    assert_eq!(page.status(), StatusCode::OK);
    let html = page.text().await.unwrap();
    assert!(
        html.contains(&format!("href=\"/ogc/jobs/{job_id}\"")),
        "{html}"
    );
    let (code, task) = s.get_json(&format!("/api/v1/tasks/Echo/{job_id}")).await;
    assert_eq!(code, StatusCode::OK, "the job is an ATP task: {task}");
    assert_eq!(task["status"], "FINISHED");
    let results = rel(&done, "http://www.opengis.net/def/rel/ogc/1.0/results").to_owned();
    let r = s.client.get(&results).send().await.unwrap();
    let doc: Value = r.json().await.unwrap();
    assert_eq!(
        doc,
        json!({"response": {"value": [1, 2], "mediaType": "application/json"}})
    );
    let r = s
        .client
        .get(format!("{results}?response=raw"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.headers()["content-type"], "application/json");
    assert_eq!(r.json::<Value>().await.unwrap(), json!([1, 2]));

    // Synchronous when preferred and allowed: the results themselves.
    let r = execute(&s, "Point", json!({"inputs": {"x": 3}}), Some("wait=20")).await;
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(r.json::<Value>().await.unwrap(), json!({"x": 3}));

    // A violation of the schema is refused and leaves nothing behind.
    let r = execute(&s, "Point", json!({"inputs": {"x": "three"}}), None).await;
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);
    let p: Value = r.json().await.unwrap();
    assert_eq!(p["violations"][0]["path"], "/x", "{p}");
    let (_, stats) = s.get_json("/api/v1/stats").await;
    assert_eq!(
        stats["by_status"]
            .as_object()
            .unwrap()
            .values()
            .map(|v| v.as_u64().unwrap())
            .sum::<u64>(),
        2
    );

    let (_, jobs) = s.get_json("/ogc/jobs?processID=Echo").await;
    let jobs = jobs["jobs"].as_array().unwrap();
    assert_eq!(jobs.len(), 1);
    assert_eq!(jobs[0]["jobID"], job_id.as_str());
    let (_, all) = s.get_json("/ogc/jobs?status=successful&limit=10").await;
    assert_eq!(all["jobs"].as_array().unwrap().len(), 2);
    let (_, none) = s.get_json("/ogc/jobs?status=failed").await;
    assert!(none["jobs"].as_array().unwrap().is_empty());
    let r = s
        .client
        .get(s.url("/ogc/jobs?status=bogus"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);
    let count = |doc: &Value| doc["jobs"].as_array().unwrap().len();
    for (query, want) in [
        ("datetime=../2000-01-01T00:00:00Z", 0),
        ("datetime=2000-01-01T00:00:00Z/..", 2),
        ("minDuration=3600", 0),
        ("maxDuration=3600&status=successful", 2),
        ("processID=Echo,Point", 2),
    ] {
        let (code, doc) = s.get_json(&format!("/ogc/jobs?{query}")).await;
        assert_eq!(code, StatusCode::OK, "{query}: {doc}");
        assert_eq!(count(&doc), want, "{query}: {doc}");
    }
    // Pages of one, through the next links, meet each job once.
    let (_, first) = s.get_json("/ogc/jobs?limit=1").await;
    assert_eq!(count(&first), 1);
    let next = rel(&first, "next").to_owned();
    let second: Value = s
        .client
        .get(&next)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(count(&second), 1, "{second}");
    assert_ne!(first["jobs"][0]["jobID"], second["jobs"][0]["jobID"]);
    assert!(
        second["links"]
            .as_array()
            .unwrap()
            .iter()
            .all(|l| l["rel"] != "next"),
        "{second}"
    );

    // Dismissing a finished job removes it.
    let r = s.client.delete(&location).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(r.json::<Value>().await.unwrap()["status"], "dismissed");
    let r = s.client.get(&location).send().await.unwrap();
    exception(r, StatusCode::NOT_FOUND, "no-such-job").await;
}

/// A running job dismissed is cancelled at once and reads `dismissed`;
/// its results are not ready; a job that fails answers its failure.
async fn a_running_job_is_dismissed_and_a_failure_is_an_exception<D: TestDb>(db: D)
where
    D::Store: IntoAny,
{
    let s = start(db, ServerConfig::default(), true).await;
    register(&s, "Sleep", json!({"handler": "builtin:sleep"})).await;
    register(
        &s,
        "Fail",
        json!({"handler": "builtin:fail", "max_starts": 1}),
    )
    .await;

    let r = s
        .client
        .post(s.url("/ogc/processes/Sleep/execution"))
        .header("atp-job-id", "my-job")
        .json(&json!({"inputs": {"input": {"seconds": 600}}}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::CREATED);
    let url = s.url("/ogc/jobs/my-job");
    wait_job(&s, &url, "running").await;
    let r = s.client.get(format!("{url}/results")).send().await.unwrap();
    exception(r, StatusCode::NOT_FOUND, "result-not-ready").await;
    let r = s.client.delete(&url).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    let info: Value = r.json().await.unwrap();
    assert_eq!(info["status"], "dismissed");
    let (_, task) = s.get_json("/api/v1/tasks/Sleep/my-job").await;
    assert_eq!(task["status"], "CANCELLED");
    assert_eq!(wait_job(&s, &url, "dismissed").await["jobID"], "my-job");
    let r = s
        .client
        .post(s.url("/ogc/processes/Sleep/execution"))
        .header("atp-job-id", "my-job")
        .json(&json!({}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::CONFLICT, "a job id is taken once");

    let r = execute(&s, "Fail", json!({"inputs": {}}), None).await;
    let url = r.headers()["location"].to_str().unwrap().to_owned();
    let failed = wait_job(&s, &url, "failed").await;
    assert!(!failed["message"].as_str().unwrap().is_empty(), "{failed}");
    let r = s.client.get(format!("{url}/results")).send().await.unwrap();
    exception(r, StatusCode::INTERNAL_SERVER_ERROR, "job-failed").await;
}

/// The facade moves with its prefix, and nothing is left at the default.
async fn a_configured_prefix_moves_the_facade<D: TestDb>(db: D)
where
    D::Store: IntoAny,
{
    let config = ServerConfig {
        ogc_prefix: "/services/processes".into(),
        ..ServerConfig::default()
    };
    let s = start(db, config, false).await;
    let (code, landing) = s.get_json("/services/processes/").await;
    assert_eq!(code, StatusCode::OK);
    assert_eq!(rel(&landing, "self"), s.url("/services/processes/"));
    let (code, _) = s.get_json("/services/processes/conformance").await;
    assert_eq!(code, StatusCode::OK);
    let r = s
        .client
        .get(s.url("/ogc/conformance"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::NOT_FOUND);
}

atp_store::per_engine_tests!(
    a_configured_prefix_moves_the_facade,
    landing_conformance_and_processes,
    jobs_run_are_listed_and_give_results,
    a_running_job_is_dismissed_and_a_failure_is_an_exception,
);
