//! The HTML views and the dashboard over real HTTP, on each engine: every
//! page, escaping, odd identifiers, the original's filters and response
//! view, the forms and their CSRF check, login, live events and assets.

mod common;

use std::time::Duration;

use atp_core::{
    ClaimParams, DaemonId, NewTask, Status, StatusChange, Store, StoreExt, TaskIdentifier, TaskRef,
    TypeName,
};
use atp_server::{ServerConfig, Tokens};
use atp_store::testing::{TestDb, eventually};
use common::{IntoAny, TestServer, start};
use percent_encoding::{NON_ALPHANUMERIC, utf8_percent_encode};
use reqwest::StatusCode;
use reqwest::header::{ACCEPT, CONTENT_TYPE, COOKIE, HeaderMap, LOCATION, ORIGIN};
use serde_json::{Value, json};

const XSS: &str = "<script>alert(1)</script>&\"'";

/// Every character but letters and digits percent-encoded: the server must
/// decode whatever a client escapes.
fn enc(s: &str) -> String {
    utf8_percent_encode(s, NON_ALPHANUMERIC).to_string()
}

fn key(task_type: &str, identifier: &str) -> TaskRef {
    TaskRef::Key(
        TypeName::new(task_type).unwrap(),
        TaskIdentifier::new(identifier).unwrap(),
    )
}

async fn enqueue(s: &TestServer, task_type: &str, identifier: &str, input: Value, message: &str) {
    let task = NewTask::new(
        TypeName::new(task_type).unwrap(),
        TaskIdentifier::new(identifier).unwrap(),
    )
    .with_input(input)
    .with_message(message);
    s.store.task_enqueue(task).await.unwrap();
}

/// Claims and finishes every queued task (as a daemon would), with `body`
/// as a text/plain response.
async fn finish_all(s: &TestServer, body: &str) {
    let started = s
        .store
        .task_claim_start(&ClaimParams::new(DaemonId(7), 100))
        .await
        .unwrap();
    for t in started {
        let change = StatusChange::finish(t.attempt, "done")
            .with_response(atp_core::Response::new("text/plain", body));
        s.store.task_set_status(change).await.unwrap();
    }
}

async fn get(s: &TestServer, path: &str) -> (StatusCode, HeaderMap, String) {
    let r = s
        .client
        .get(s.url(path))
        .header(ACCEPT, "text/html")
        .send()
        .await
        .unwrap();
    let (status, headers) = (r.status(), r.headers().clone());
    (status, headers, r.text().await.unwrap())
}

/// GET `path`, asserting a 200 HTML page; its body.
async fn page(s: &TestServer, path: &str) -> String {
    let (status, headers, body) = get(s, path).await;
    assert_eq!(status, StatusCode::OK, "{path}: {body}");
    assert_eq!(headers[CONTENT_TYPE], "text/html; charset=utf-8", "{path}");
    assert!(body.starts_with("<!DOCTYPE html>"), "{path}");
    assert!(body.contains(r#"<meta charset="utf-8">"#), "{path}");
    assert!(body.contains("<title>"), "{path}");
    let csp = headers["content-security-policy"].to_str().unwrap();
    assert!(csp.contains("script-src 'self'"), "{path}: {csp}");
    body
}

/// A client that shows redirects instead of following them.
fn no_redirects() -> reqwest::Client {
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap()
}

/// Table rows of tasks in a page.
fn rows(body: &str) -> usize {
    body.matches(r#"<tr class="task""#).count()
}

/// The `href` of the element with `id`, unescaped.
fn href_of(body: &str, id: &str) -> Option<String> {
    let at = body.find(&format!(r#"id="{id}""#))?;
    let rest = &body[at..];
    let start = rest.find(r#"href=""#)? + 6;
    let end = start + rest[start..].find('"')?;
    Some(rest[start..end].replace("&amp;", "&"))
}

/// Waits until `task` has status `want`.
async fn wait_status(s: &TestServer, task: &TaskRef, want: Status) {
    eventually(
        Duration::from_secs(30),
        &format!("{task:?} {want}"),
        || async {
            let t = s.store.task_get(task).await.unwrap();
            (t.status == want).then_some(())
        },
    )
    .await;
}

async fn every_page_renders<D: TestDb>(db: D)
where
    D::Store: IntoAny,
{
    let s = start(db, ServerConfig::default(), false).await;
    s.register("Sum", "builtin:sum").await;
    enqueue(&s, "Sum", "first", json!([1, 2]), "Queued by the test").await;

    let dash = page(&s, "/").await;
    assert!(dash.contains(r#"data-page="dashboard""#));
    assert!(dash.contains(r#"id="counts""#));
    assert!(dash.contains(r#"<span class="count-n" data-count="ACCEPTED">1</span>"#));
    assert!(dash.contains(r#"data-events="/events""#));
    assert!(dash.contains(r#"id="filters""#));
    assert!(dash.contains(r#"href="/tasks/Sum/first""#));
    assert_eq!(rows(&dash), 1);
    // Live pages reload like the original only without JavaScript.
    assert!(dash.contains(r#"<noscript><meta http-equiv="refresh" content="15"></noscript>"#));

    let task = page(&s, "/tasks/Sum/first").await;
    assert!(task.contains(r#"data-page="task""#));
    assert!(task.contains(r#"id="timeline""#));
    assert!(task.contains("Queued by the test"));
    assert!(task.contains(r#"<span class="status" data-status="ACCEPTED">ACCEPTED</span>"#));
    assert!(task.contains(r#"id="delete-form""#));
    assert!(
        !task.contains(r#"id="reenqueue-form""#),
        "ACCEPTED cannot be re-enqueued"
    );
    assert!(task.contains(r#"id="no-response""#));
    assert!(
        task.contains("id=\"input\">[\n  1,\n  2\n]</pre>"),
        "{task}"
    );

    let daemons = page(&s, "/daemons").await;
    assert!(daemons.contains(r#"id="no-daemons""#));
    assert!(dash.contains(r#"<a href="/failed">Failed</a>"#), "{dash}");
    let failed = page(&s, "/failed").await;
    assert!(failed.contains(r#"data-page="failed""#));
    assert!(failed.contains(r#"id="nothing-failed""#), "{failed}");

    for path in [
        "/process/task",
        "/process/status",
        "/process/status/Sum/first",
    ] {
        let body = page(&s, path).await;
        assert!(
            body.contains(r#"<meta http-equiv="refresh" content="15">"#),
            "{path}"
        );
        assert!(body.contains("first"), "{path}");
    }
    assert!(
        page(&s, "/process/task")
            .await
            .contains(r#"href="/process/status/Sum/first""#)
    );
    assert!(
        page(&s, "/process/status")
            .await
            .contains("Queued by the test")
    );

    // Without tokens the login page has nothing to do.
    let r = no_redirects().get(s.url("/login")).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::SEE_OTHER);
    assert_eq!(r.headers()[LOCATION], "/");

    // Unknown tasks and bad names are HTML pages too.
    let (status, headers, body) = get(&s, "/tasks/Sum/missing").await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert_eq!(headers[CONTENT_TYPE], "text/html; charset=utf-8");
    assert!(body.contains("No such task"), "{body}");
    let (status, _, _) = get(&s, "/?status=NOPE").await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    let (status, _, _) = get(&s, "/process/task?status=NOPE").await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
}

async fn names_and_messages_are_escaped<D: TestDb>(db: D)
where
    D::Store: IntoAny,
{
    let s = start(db, ServerConfig::default(), false).await;
    s.register("T", "custom:none").await;
    enqueue(&s, "T", XSS, json!({ "x": XSS }), XSS).await;
    // Failed with the same text, for `/failed`'s last message.
    let started = s
        .store
        .task_claim_start(&ClaimParams::new(DaemonId(7), 1))
        .await
        .unwrap();
    s.store
        .task_set_status(StatusChange::fail(started[0].attempt, XSS))
        .await
        .unwrap();
    let paths = [
        "/".to_owned(),
        format!("/?q={}", enc("<script")),
        "/failed".to_owned(),
        format!("/tasks/T/{}", enc(XSS)),
        "/process/task".to_owned(),
        "/process/status".to_owned(),
        format!("/process/status/T/{}", enc(XSS)),
    ];
    for path in &paths {
        let body = page(&s, path).await;
        assert!(!body.contains("<script>alert(1)"), "{path}: {body}");
        assert!(
            body.contains("&lt;script&gt;alert(1)&lt;/script&gt;&amp;&quot;'"),
            "{path}: {body}"
        );
    }
}

async fn odd_identifiers_reach_their_pages<D: TestDb>(db: D)
where
    D::Store: IntoAny,
{
    let s = start(db, ServerConfig::default(), false).await;
    s.register("ty pe/x", "custom:none").await;
    let ids = [
        "a/b",
        "100%",
        "what?",
        "a#b",
        "with space",
        "ünï cødé ✓",
        "%2F",
        "...",
        "./..",
    ];
    for id in ids {
        enqueue(&s, "ty pe/x", id, json!(null), &format!("message of {id}")).await;
    }
    let dash = page(&s, "/").await;
    assert_eq!(rows(&dash), ids.len());
    assert!(
        dash.contains(r#"href="/tasks/ty%20pe%2Fx/a%2Fb""#),
        "{dash}"
    );
    assert!(
        dash.contains(r#"href="/tasks/ty%20pe%2Fx/.%2F..""#),
        "{dash}"
    );
    for id in ids {
        let task_page = format!("/tasks/{}/{}", enc("ty pe/x"), enc(id));
        let log_page = format!("/process/status/{}/{}", enc("ty pe/x"), enc(id));
        let message = format!("message of {id}");
        for path in [task_page, log_page] {
            let body = page(&s, &path).await;
            assert!(body.contains(&message), "{path}: {body}");
        }
    }
}

async fn original_views_filter_and_serve_responses<D: TestDb>(db: D)
where
    D::Store: IntoAny,
{
    let s = start(db, ServerConfig::default(), true).await;
    s.register("Echo", "builtin:echo").await;
    s.register("Idle", "custom:none").await;
    let input = json!({ "greeting": "<b>hello</b>", "n": [1, 2, 3] });
    enqueue(&s, "Echo", "e1", input.clone(), "echo me").await;
    enqueue(&s, "Idle", "i1", json!(null), "waits").await;
    wait_status(&s, &key("Echo", "e1"), Status::Finished).await;

    let finished = page(&s, "/process/task?status=FINISHED").await;
    assert_eq!(rows(&finished), 1, "{finished}");
    assert!(finished.contains(r#"data-identifier="e1""#));
    assert!(finished.contains(r#"href="/process/response/Echo/e1""#));
    let accepted = page(&s, "/process/task?status=1").await;
    assert_eq!(rows(&accepted), 1, "{accepted}");
    assert!(accepted.contains(r#"data-identifier="i1""#));
    assert!(
        accepted.contains("free"),
        "the queue lock of a waiting task"
    );
    let idle = page(&s, "/process/task?type=Idle").await;
    assert_eq!(rows(&idle), 1);
    assert_eq!(rows(&page(&s, "/process/task").await), 2);

    let r = s
        .client
        .get(s.url("/process/response/Echo/e1"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(r.headers()[CONTENT_TYPE], "application/json");
    assert_eq!(r.headers()["x-content-type-options"], "nosniff");
    assert_eq!(r.headers()["content-security-policy"], "sandbox");
    assert_eq!(
        r.bytes().await.unwrap(),
        serde_json::to_vec(&input).unwrap()
    );

    for path in [
        "/process/response/Idle/i1",
        "/process/response/Idle/missing",
    ] {
        let (status, headers, body) = get(&s, path).await;
        assert_eq!(status, StatusCode::NOT_FOUND, "{path}");
        assert_eq!(headers[CONTENT_TYPE], "text/html; charset=utf-8", "{path}");
        assert!(body.contains("<h1>"), "{path}");
    }

    // The task page previews the (text) response, escaped.
    let task = page(&s, "/tasks/Echo/e1").await;
    assert!(task.contains(r#"id="response-preview""#));
    assert!(task.contains("&lt;b&gt;hello&lt;/b&gt;"));
    assert!(task.contains(r#"href="/api/v1/tasks/Echo/e1/response""#));
    assert!(task.contains(r#"id="reenqueue-form""#));
}

async fn dashboard_filters_searches_and_pages<D: TestDb>(db: D)
where
    D::Store: IntoAny,
{
    let s = start(db, ServerConfig::default(), false).await;
    s.register("A", "custom:none").await;
    s.register("B", "custom:none").await;
    for i in 0..60 {
        enqueue(&s, "A", &format!("job-{i:02}"), json!(i), "queued").await;
    }
    enqueue(&s, "B", "job-07", json!(null), "queued").await;

    let first = page(&s, "/").await;
    assert_eq!(rows(&first), 50);
    assert!(!first.contains(r#"id="first-page""#));
    let next = href_of(&first, "next-page").expect("a next page");
    let second = page(&s, &next).await;
    assert_eq!(rows(&second), 11);
    assert_eq!(href_of(&second, "first-page").as_deref(), Some("/"));
    assert!(href_of(&second, "next-page").is_none());

    assert_eq!(rows(&page(&s, "/?type=B").await), 1);
    assert_eq!(rows(&page(&s, "/?status=ACCEPTED&type=A").await), 50);
    assert_eq!(rows(&page(&s, "/?status=FINISHED").await), 0);
    assert!(
        page(&s, "/?status=FINISHED")
            .await
            .contains(r#"id="no-tasks""#)
    );
    // An "any" select submits an empty value.
    assert_eq!(rows(&page(&s, "/?status=&type=&q=").await), 50);

    // A whole identifier in every type, or in the chosen one.
    assert_eq!(rows(&page(&s, "/?q=job-07").await), 2);
    assert_eq!(rows(&page(&s, "/?q=job-07&type=A").await), 1);
    // The start of an identifier, as typed: not a part elsewhere in it,
    // not another case.
    assert_eq!(rows(&page(&s, "/?q=job-5").await), 10);
    assert_eq!(rows(&page(&s, "/?q=job-1&type=A").await), 10);
    assert_eq!(rows(&page(&s, "/?q=-5").await), 0);
    assert_eq!(rows(&page(&s, "/?q=JOB-1&type=A").await), 0);
    assert_eq!(rows(&page(&s, "/?q=nothing").await), 0);
    assert_eq!(rows(&page(&s, "/?q=job-07&status=FINISHED").await), 0);
    // A search pages like any filter, keeping its text.
    let first = page(&s, "/?q=job-").await;
    assert_eq!(rows(&first), 50);
    assert!(
        first.contains("whose identifier starts with “job-”"),
        "{first}"
    );
    let next = href_of(&first, "next-page").expect("a next page");
    assert!(next.contains("q=job-"), "{next}");
    let second = page(&s, &next).await;
    assert_eq!(rows(&second), 11);
    assert_eq!(href_of(&second, "first-page").as_deref(), Some("/?q=job-"));
}

/// `/failed` groups FAILED tasks by type with counts and last messages,
/// and its button re-enqueues all of one type at once, confirmed and from
/// this site only.
async fn failed_view_groups_by_type_and_reenqueues_all<D: TestDb>(db: D)
where
    D::Store: IntoAny,
{
    let s = start(db, ServerConfig::default(), false).await;
    s.register("A", "custom:none").await;
    s.register("B", "custom:none").await;
    for i in 0..11 {
        enqueue(&s, "A", &format!("a{i:02}"), json!(null), "queued").await;
    }
    enqueue(&s, "B", "b1", json!(null), "queued").await;
    let started = s
        .store
        .task_claim_start(&ClaimParams::new(DaemonId(7), 100))
        .await
        .unwrap();
    for t in started {
        let why = format!("boom <{}> & {XSS}", t.identifier);
        s.store
            .task_set_status(StatusChange::fail(t.attempt, why))
            .await
            .unwrap();
    }
    enqueue(&s, "A", "still queued", json!(null), "queued").await;

    let body = page(&s, "/failed").await;
    assert!(
        body.contains(r#"<a href="/failed" aria-current="page">Failed</a>"#),
        "{body}"
    );
    assert!(
        body.contains(r#"data-type="A" data-task-status="FAILED" data-tasks="11""#),
        "{body}"
    );
    assert!(
        body.contains(r#"data-type="B" data-task-status="FAILED" data-tasks="1""#),
        "{body}"
    );
    assert_eq!(rows(&body), 10 + 1, "the newest ten of A, and B's one");
    assert!(
        body.contains("boom &lt;a10&gt; &amp; &lt;script&gt;"),
        "{body}"
    );
    assert!(!body.contains("<script>alert(1)"), "{body}");
    assert!(body.contains(r#"href="/tasks/B/b1""#), "{body}");
    assert!(
        body.contains(r#"href="/?status=FAILED&amp;type=A""#),
        "{body}"
    );
    assert!(!body.contains("still queued"), "{body}");
    assert!(
        body.contains(r#"data-confirm="Re-enqueue all 11 tasks FAILED of type A?"#),
        "{body}"
    );

    let c = no_redirects();
    let url = s.url("/failed/reenqueue");
    let fields =
        |confirm: &'static str| [("status", "FAILED"), ("type", "A"), ("confirm", confirm)];
    let failed_of_a = || async {
        s.store
            .task_counts()
            .await
            .unwrap()
            .by_type
            .iter()
            .find(|(t, st, _)| t.as_str() == "A" && *st == Status::Failed)
            .map_or(0, |(_, _, n)| *n)
    };
    // Unconfirmed: a confirmation page; from another site: refused.
    let r = c.post(&url).form(&fields("")).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    let confirm = r.text().await.unwrap();
    assert!(
        confirm.contains(r#"name="confirm" value="yes""#),
        "{confirm}"
    );
    let r = c
        .post(&url)
        .header(ORIGIN, "http://evil.example")
        .form(&fields("yes"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::FORBIDDEN);
    assert_eq!(failed_of_a().await, 11);
    // A status that did not end badly is refused.
    let r = c
        .post(&url)
        .header(ORIGIN, &s.base)
        .form(&[("status", "ACCEPTED"), ("type", "A"), ("confirm", "yes")])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);

    // Confirmed, from this site: all eleven, 303 to the page saying so.
    let r = c
        .post(&url)
        .header(ORIGIN, &s.base)
        .form(&fields("yes"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::SEE_OTHER);
    assert_eq!(r.headers()[LOCATION], "/failed?reenqueued=11");
    assert_eq!(failed_of_a().await, 0);
    assert_eq!(s.store.queue_size().await.unwrap(), 12);
    let body = page(&s, "/failed?reenqueued=11").await;
    assert!(body.contains("11 tasks re-enqueued."), "{body}");
    assert!(!body.contains(r#"data-type="A""#), "{body}");
    assert!(body.contains(r#"data-type="B""#), "{body}");
}

async fn forms_reenqueue_and_delete_same_origin_only<D: TestDb>(db: D)
where
    D::Store: IntoAny,
{
    let s = start(db, ServerConfig::default(), false).await;
    s.register("T", "custom:none").await;
    enqueue(&s, "T", "a/b", json!(null), "queued").await;
    finish_all(&s, "out").await;
    let c = no_redirects();
    let reenqueue = s.url(&format!("/tasks/T/{}/reenqueue", enc("a/b")));

    // Unconfirmed: a confirmation page, nothing changed.
    let r = c.post(&reenqueue).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    let body = r.text().await.unwrap();
    assert!(body.contains(r#"name="confirm" value="yes""#), "{body}");
    assert_eq!(
        s.store.task_get(&key("T", "a/b")).await.unwrap().status,
        Status::Finished
    );

    // From another site: refused.
    let r = c
        .post(&reenqueue)
        .header(ORIGIN, "http://evil.example")
        .form(&[("confirm", "yes")])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::FORBIDDEN);
    assert_eq!(
        s.store.task_get(&key("T", "a/b")).await.unwrap().status,
        Status::Finished
    );

    // Confirmed, from this site: back in the queue, 303 to the task.
    let r = c
        .post(&reenqueue)
        .header(ORIGIN, &s.base)
        .form(&[("confirm", "yes")])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::SEE_OTHER);
    assert_eq!(r.headers()[LOCATION], "/tasks/T/a%2Fb");
    assert_eq!(
        s.store.task_get(&key("T", "a/b")).await.unwrap().status,
        Status::Accepted
    );
    let body = page(&s, "/tasks/T/a%2Fb").await;
    assert!(
        body.contains(r#"<dd data-field="status"><span class="status" data-status="ACCEPTED">"#),
        "{body}"
    );

    // Again: the store refuses, shown as a page.
    let r = c
        .post(&reenqueue)
        .form(&[("confirm", "yes")])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::CONFLICT);

    // Delete, refused cross-site, then done.
    let delete = s.url(&format!("/tasks/T/{}/delete", enc("a/b")));
    let r = c
        .post(&delete)
        .header(ORIGIN, "null")
        .form(&[("confirm", "yes")])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::FORBIDDEN);
    assert!(s.store.task_get(&key("T", "a/b")).await.is_ok());
    let r = c
        .post(&delete)
        .header(ORIGIN, &s.base)
        .form(&[("confirm", "yes")])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::SEE_OTHER);
    assert_eq!(r.headers()[LOCATION], "/");
    assert!(
        s.store
            .task_get(&key("T", "a/b"))
            .await
            .unwrap_err()
            .is_not_found()
    );
}

/// `/types` shows every type's pause state and queued tasks; its buttons
/// pause and resume (same-origin POSTs, 303 back to the page), an unknown
/// type is a 404 page.
async fn types_page_pauses_and_resumes_same_origin_only<D: TestDb>(db: D)
where
    D::Store: IntoAny,
{
    let s = start(db, ServerConfig::default(), false).await;
    s.register("Nightly", "builtin:noop").await;
    s.register("Other", "builtin:noop").await;
    enqueue(&s, "Nightly", "a", json!(null), "queued").await;
    enqueue(&s, "Nightly", "b", json!(null), "queued").await;
    let paused = |s: &TestServer| {
        let store = s.store.clone();
        async move {
            store
                .task_type_get(&TypeName::new("Nightly").unwrap())
                .await
                .unwrap()
                .paused
        }
    };

    let body = page(&s, "/types").await;
    assert!(body.contains(r#"data-page="types""#), "{body}");
    assert!(
        body.contains(r#"<a href="/types" aria-current="page">"#),
        "{body}"
    );
    assert_eq!(
        body.matches(r#"<tr class="task-type""#).count(),
        2,
        "{body}"
    );
    assert!(
        body.contains(r#"<tr class="task-type" data-type="Nightly" data-paused="false">"#),
        "{body}"
    );
    assert!(
        body.contains(r#"<td class="num" data-field="queued">2</td>"#),
        "{body}"
    );
    assert!(body.contains(r#"action="/types/Nightly/pause""#), "{body}");
    assert!(body.contains("Running"), "{body}");
    // The type's controls: priority, retries, limit.
    s.store
        .task_type_upsert(
            &atp_core::TaskType::new(
                TypeName::new("Other").unwrap(),
                atp_core::Handler::new("builtin:noop").unwrap(),
            )
            .with_priority(4)
            .with_max_running(2)
            .with_retry(atp_core::RetryPolicy {
                delay_secs: 10.0,
                max_delay_secs: 600.0,
            }),
        )
        .await
        .unwrap();
    let body = page(&s, "/types").await;
    assert!(
        body.contains(r#"<td class="num" data-field="priority">4</td>"#),
        "{body}"
    );
    assert!(body.contains("10 s, doubling up to 600 s"), "{body}");
    assert!(
        body.contains(r#"<td class="num" data-field="max-running">2</td>"#),
        "{body}"
    );

    let c = no_redirects();
    let pause = s.url("/types/Nightly/pause");
    let r = c
        .post(&pause)
        .header(ORIGIN, "http://evil.example")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::FORBIDDEN);
    assert!(!paused(&s).await, "a cross-site POST changes nothing");

    let r = c.post(&pause).header(ORIGIN, &s.base).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::SEE_OTHER);
    assert_eq!(r.headers()[LOCATION], "/types");
    assert!(paused(&s).await);
    let body = page(&s, "/types").await;
    assert!(
        body.contains(r#"<tr class="task-type" data-type="Nightly" data-paused="true">"#),
        "{body}"
    );
    assert!(body.contains(r#"<span class="type-state" data-paused="true">Paused</span>"#));
    assert!(body.contains(r#"action="/types/Nightly/resume""#), "{body}");
    assert!(
        body.contains(r#"action="/types/Other/pause""#),
        "other types stay as they were"
    );
    let task = page(&s, "/tasks/Nightly/a").await;
    assert!(task.contains(r#"id="type-paused""#), "{task}");

    let r = c.post(s.url("/types/Ghost/pause")).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::NOT_FOUND);
    let body = r.text().await.unwrap();
    assert!(body.contains("Ghost"), "{body}");

    let r = c
        .post(s.url("/types/Nightly/resume"))
        .header(ORIGIN, &s.base)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::SEE_OTHER);
    assert!(!paused(&s).await);
    let task = page(&s, "/tasks/Nightly/a").await;
    assert!(!task.contains(r#"id="type-paused""#), "{task}");
}

async fn login_sets_a_cookie_that_admits<D: TestDb>(db: D)
where
    D::Store: IntoAny,
{
    let config = ServerConfig {
        tokens: Tokens::new(vec!["t".into()]),
        ..ServerConfig::default()
    };
    let s = start(db, config, false).await;
    let c = no_redirects();
    let r = c
        .get(s.url("/"))
        .header(ACCEPT, "text/html")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::SEE_OTHER);
    assert_eq!(r.headers()[LOCATION], "/login");

    let r = c.get(s.url("/login")).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    let form = r.text().await.unwrap();
    assert!(form.contains(r#"id="login-form""#), "{form}");
    assert!(form.contains(r#"name="token""#));

    let r = c
        .post(s.url("/login"))
        .form(&[("token", "wrong")])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    assert!(r.headers().get("set-cookie").is_none());
    assert!(r.text().await.unwrap().contains(r#"id="login-error""#));

    let r = c
        .post(s.url("/login"))
        .form(&[("token", "t")])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::SEE_OTHER);
    assert_eq!(r.headers()[LOCATION], "/");
    let cookie = r.headers()["set-cookie"].to_str().unwrap().to_owned();
    assert!(cookie.starts_with("atp_token=t;"), "{cookie}");
    for part in ["HttpOnly", "SameSite=Strict", "Path=/"] {
        assert!(cookie.contains(part), "{cookie}");
    }

    let r = c
        .get(s.url("/"))
        .header(ACCEPT, "text/html")
        .header(COOKIE, "atp_token=t")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    let body = r.text().await.unwrap();
    assert!(body.contains(r#"action="/logout""#));

    // Assets need no token (the login page uses them).
    let r = c.get(s.url("/assets/atp.css")).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::OK);
}

async fn events_send_counts<D: TestDb>(db: D)
where
    D::Store: IntoAny,
{
    let s = start(db, ServerConfig::default(), false).await;
    s.register("T", "custom:none").await;
    enqueue(&s, "T", "one", json!(null), "queued").await;
    let mut r = s.client.get(s.url("/events")).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(r.headers()[CONTENT_TYPE], "text/event-stream");
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    let mut seen = String::new();
    let data = loop {
        if let Some(line) = seen.lines().find(|l| l.starts_with("data:")) {
            break line["data:".len()..].trim().to_owned();
        }
        let chunk = tokio::time::timeout_at(deadline, r.chunk())
            .await
            .expect("an event within 5 s")
            .unwrap()
            .expect("the stream goes on");
        seen.push_str(&String::from_utf8_lossy(&chunk));
    };
    let event: Value = serde_json::from_str(&data).unwrap();
    assert_eq!(event["counts"]["ACCEPTED"], 1, "{event}");
    assert_eq!(event["counts"]["FINISHED"], 0, "{event}");
    assert_eq!(event["total"], 1, "{event}");
    assert!(
        event["token"].as_str().is_some_and(|t| !t.is_empty()),
        "{event}"
    );
}

/// An open event stream (a dashboard tab) ends as soon as the server is
/// asked to stop, and the stop completes: it does not wait for the
/// stream's own lifetime.
async fn events_end_when_the_server_shuts_down<D: TestDb>(db: D)
where
    D::Store: IntoAny,
{
    let mut s = start(db, ServerConfig::default(), false).await;
    let mut r = s.client.get(s.url("/events")).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    // The first event: the stream is open and being followed.
    let first = tokio::time::timeout(Duration::from_secs(5), r.chunk())
        .await
        .expect("an event within 5 s")
        .unwrap();
    assert!(first.is_some_and(|c| c.starts_with(b"retry:") || c.starts_with(b"data:")));
    let served = s.shut_down();
    // Well under the stream's lifetime and its keep-alive interval.
    let limit = atp_server::html::EVENTS_LIFETIME / 4;
    let ended =
        tokio::time::timeout(limit, async { while r.chunk().await.unwrap().is_some() {} }).await;
    assert!(ended.is_ok(), "the stream did not end within {limit:?}");
    tokio::time::timeout(limit, served)
        .await
        .expect("the server stopped")
        .unwrap();
}

async fn assets_are_served_with_their_types<D: TestDb>(db: D)
where
    D::Store: IntoAny,
{
    let s = start(db, ServerConfig::default(), false).await;
    let dash = page(&s, "/").await;
    let css = href_of(&dash.replace("rel=\"stylesheet\" ", "id=\"css\" "), "css").unwrap();
    assert!(css.starts_with("/assets/atp.css?v="), "{css}");
    let r = s.client.get(s.url(&css)).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(r.headers()[CONTENT_TYPE], "text/css; charset=utf-8");
    assert!(
        r.headers()["cache-control"]
            .to_str()
            .unwrap()
            .contains("max-age=31536000")
    );
    let text = r.text().await.unwrap();
    assert!(
        text.contains(r#"[data-status="FINISHED"] { --st: blue; }"#),
        "{text}"
    );
    assert!(dash.contains(r#"<script src="/assets/atp.js?v="#));
    let r = s.client.get(s.url("/assets/atp.js")).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(r.headers()[CONTENT_TYPE], "text/javascript; charset=utf-8");
    assert!(r.text().await.unwrap().contains("EventSource"));
    let r = s
        .client
        .get(s.url("/assets/missing.js"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::NOT_FOUND);
}

async fn daemons_page_shows_held_tasks<D: TestDb>(db: D)
where
    D::Store: IntoAny,
{
    let s = start(db, ServerConfig::default(), true).await;
    s.register("Sleep", "builtin:sleep").await;
    enqueue(&s, "Sleep", "long nap", json!({ "seconds": 60 }), "queued").await;
    wait_status(&s, &key("Sleep", "long nap"), Status::Running).await;
    let holder = s
        .store
        .task_get(&key("Sleep", "long nap"))
        .await
        .unwrap()
        .holder
        .unwrap();
    let body = page(&s, "/daemons").await;
    assert!(body.contains(&format!(r#"id="daemon-{holder}""#)), "{body}");
    assert!(body.contains(r#"data-identifier="long nap""#), "{body}");
    assert!(body.contains("builtin:sleep"));
    let dash = page(&s, "/?status=RUNNING").await;
    assert!(
        dash.contains(&format!(r#"href="/daemons#daemon-{holder}""#)),
        "{dash}"
    );
}

atp_store::per_engine_tests!(
    every_page_renders,
    names_and_messages_are_escaped,
    odd_identifiers_reach_their_pages,
    original_views_filter_and_serve_responses,
    dashboard_filters_searches_and_pages,
    failed_view_groups_by_type_and_reenqueues_all,
    forms_reenqueue_and_delete_same_origin_only,
    login_sets_a_cookie_that_admits,
    events_send_counts,
    events_end_when_the_server_shuts_down,
    assets_are_served_with_their_types,
    daemons_page_shows_held_tasks,
    types_page_pauses_and_resumes_same_origin_only,
);
