//! The original's views, at their original paths, refreshing every 15 s:
//! `/process/task`, `/process/status[/{type}/{id}]` and
//! `/process/response/{type}/{id}`. Unlike the original, every message is
//! escaped.

use atp_core::{LogRecord, Status, Store, Task, TaskFilter, TypeName};
use axum::extract::{Query, State};
use axum::http::{HeaderValue, header};
use axum::response::{IntoResponse, Response};
use futures_util::{StreamExt, TryStreamExt, stream};
use maud::{Markup, html};
use serde::Deserialize;

use super::error::{HtmlError, HtmlResult};
use super::layout;
use super::snapshot::statuses;
use super::urls::{self, TaskKey, with_query};
use crate::AppState;

/// Tasks per page of `/process/task`.
const TASKS_SHOWN: u32 = 1000;
/// `/process/status` shows the logs of this many most recently updated
/// tasks.
pub const LOGS_SHOWN: u32 = 200;

/// `/process/task`'s query.
#[derive(Debug, Default, Deserialize)]
pub struct TaskQuery {
    status: Option<String>,
    #[serde(rename = "type")]
    task_type: Option<String>,
    cursor: Option<String>,
}

fn given(value: &Option<String>) -> Option<&str> {
    value.as_deref().map(str::trim).filter(|s| !s.is_empty())
}

/// `GET /process/task[?status=S&type=T]`: tasks, newest update first.
pub async fn tasks(
    State(state): State<AppState>,
    Query(q): Query<TaskQuery>,
) -> HtmlResult<Markup> {
    let status = given(&q.status)
        .map(str::parse::<Status>)
        .transpose()
        .map_err(|e| HtmlError::bad_request(e.to_string()))?;
    let task_type = given(&q.task_type)
        .map(TypeName::new)
        .transpose()
        .map_err(|e| HtmlError::from(atp_core::Error::from(e)))?;
    let after = given(&q.cursor)
        .map(str::parse)
        .transpose()
        .map_err(HtmlError::from)?;
    let types = state.store.task_type_list().await?;
    let page = state
        .store
        .task_list(&TaskFilter {
            status,
            task_type: task_type.clone(),
            holder: None,
            identifier_prefix: None,
            limit: TASKS_SHOWN,
            after,
        })
        .await?;
    let (st, ty) = (
        status.map(Status::name),
        task_type.as_ref().map(TypeName::as_str),
    );
    let link = |s: Option<&str>, t: Option<&str>| {
        with_query("/process/task", &[("status", s), ("type", t)])
    };
    Ok(layout::original(
        "Tasks",
        html! {
            h1 { "Tasks" }
            p.filter-links #status-filters {
                "Status: "
                a href=(link(None, ty)) { "all" }
                @for s in statuses() {
                    " " a href=(link(Some(s.name()), ty)) { (layout::status(s)) }
                }
            }
            p.filter-links #type-filters {
                "Type: "
                a href=(link(st, None)) { "all" }
                @for t in &types {
                    " " a href=(link(st, Some(t.name.as_str()))) { (t.name) }
                }
            }
            @if page.tasks.is_empty() {
                p.empty { "No tasks." }
            } @else {
                div.table-wrap {
                    table #process-tasks .tasks {
                        thead { tr {
                            th scope="col" { "Type" } th scope="col" { "Identifier" }
                            th scope="col" { "Status" } th scope="col" { "Queue lock" }
                            th scope="col" { "Inserted" } th scope="col" { "Updated" }
                            th scope="col" { "Log" } th scope="col" { "Response" }
                        } }
                        tbody {
                            @for t in &page.tasks {
                                (task_row(t, &link, st, ty))
                            }
                        }
                    }
                }
            }
            @if let Some(next) = page.next {
                p { a #next-page rel="next" href=(with_query("/process/task", &[
                    ("status", st), ("type", ty), ("cursor", Some(&next.to_string())),
                ])) { "Older tasks »" } }
            }
        },
    ))
}

fn task_row(
    t: &Task,
    link: &impl Fn(Option<&str>, Option<&str>) -> String,
    st: Option<&str>,
    ty: Option<&str>,
) -> Markup {
    let (tt, id) = (t.task_type.as_str(), t.identifier.as_str());
    html! {
        tr.task data-type=(tt) data-identifier=(id) data-task-status=(t.status.name()) {
            td { a href=(link(st, Some(tt))) { (tt) } }
            td.identifier { a href=(urls::task_page(tt, id)) { (id) } }
            td { a href=(link(Some(t.status.name()), ty)) { (layout::status(t.status)) } }
            td {
                @match (t.status, t.holder) {
                    (s, Some(h)) if s.is_held() => code { (h) },
                    (Status::Accepted, _) => span.muted { "free" },
                    _ => {}
                }
            }
            td { (layout::time(t.inserted_at)) }
            td { (layout::time(t.updated_at)) }
            td { a href=(urls::process_status(tt, id)) { "log" } }
            td {
                @if t.status == Status::Finished {
                    a.response-link href=(urls::process_response(tt, id)) { "response" }
                }
            }
        }
    }
}

/// `GET /process/status`: the log records of the [`LOGS_SHOWN`] most
/// recently updated tasks, newest first.
pub async fn status_all(State(state): State<AppState>) -> HtmlResult<Markup> {
    let page = state
        .store
        .task_list(&TaskFilter {
            limit: LOGS_SHOWN,
            ..TaskFilter::default()
        })
        .await?;
    let store = &state.store;
    let logs: Vec<(Task, Vec<LogRecord>)> = stream::iter(page.tasks)
        .map(|task| async move {
            match store.task_log(&task.key()).await {
                Ok(log) => Ok((task, log)),
                // Deleted meanwhile: nothing to show.
                Err(e) if e.is_not_found() => Ok((task, Vec::new())),
                Err(e) => Err(e),
            }
        })
        .buffered(8)
        .try_collect()
        .await?;
    let mut records: Vec<(&Task, &LogRecord)> = logs
        .iter()
        .flat_map(|(t, log)| log.iter().map(move |r| (t, r)))
        .collect();
    records.sort_by_key(|(_, r)| std::cmp::Reverse(r.time));
    Ok(layout::original(
        "Status log",
        html! {
            h1 { "Status log" }
            p.summary { "The log records of the " (LOGS_SHOWN) " most recently updated tasks, newest first." }
            @if records.is_empty() {
                p.empty { "No tasks." }
            } @else {
                div.table-wrap {
                    table #status-log .log {
                        thead { tr {
                            th scope="col" { "Time" } th scope="col" { "Type" }
                            th scope="col" { "Identifier" } th scope="col" { "Status" }
                            th scope="col" { "Message" }
                        } }
                        tbody {
                            @for (t, r) in &records {
                                tr.log-entry {
                                    td { (layout::time(r.time)) }
                                    td { (t.task_type) }
                                    td.identifier { a href=(urls::process_status(t.task_type.as_str(), t.identifier.as_str())) { (t.identifier) } }
                                    td { (layout::status(r.status)) }
                                    td.log-message { (r.message) }
                                }
                            }
                        }
                    }
                }
            }
        },
    ))
}

/// `GET /process/status/{type}/{id}`: one task's log, oldest first.
pub async fn status_one(State(state): State<AppState>, key: TaskKey) -> HtmlResult<Markup> {
    let task_ref = key.task_ref()?;
    let task = state.store.task_get(&task_ref).await?;
    let log = state.store.task_log(&task_ref).await?;
    let (ty, id) = (task.task_type.as_str(), task.identifier.as_str());
    let title = format!("Status log of {ty} / {id}");
    Ok(layout::original(
        &title,
        html! {
            h1 { (title) }
            p {
                "Now " (layout::status(task.status)) ". "
                a href=(urls::task_page(ty, id)) { "Task page" }
                @if task.status == Status::Finished {
                    " · " a.response-link href=(urls::process_response(ty, id)) { "response" }
                }
            }
            div.table-wrap {
                table #status-log .log {
                    thead { tr {
                        th scope="col" { "Time" } th scope="col" { "Status" } th scope="col" { "Message" }
                    } }
                    tbody {
                        @for r in &log {
                            tr.log-entry {
                                td { (layout::time(r.time)) }
                                td { (layout::status(r.status)) }
                                td.log-message { (r.message) }
                            }
                        }
                    }
                }
            }
        },
    ))
}

/// `GET /process/response/{type}/{id}`: the stored bytes with their MIME
/// type. They are user data: the browser is told not to guess another
/// type, and to treat them as a sandboxed page of no origin (no script, no
/// access to the dashboard's cookie-authenticated pages).
pub async fn response(State(state): State<AppState>, key: TaskKey) -> HtmlResult<Response> {
    let task_ref = key.task_ref()?;
    let stored = state
        .store
        .task_response_get(&task_ref)
        .await?
        .ok_or_else(|| {
            HtmlError::not_found(
                "No response",
                format!("task {task_ref} has no response (yet)"),
            )
        })?;
    let mime = HeaderValue::from_str(&stored.mime_type)
        .unwrap_or_else(|_| HeaderValue::from_static("application/octet-stream"));
    Ok((
        [
            (header::CONTENT_TYPE, mime),
            (
                header::X_CONTENT_TYPE_OPTIONS,
                HeaderValue::from_static("nosniff"),
            ),
            (
                header::CONTENT_SECURITY_POLICY,
                HeaderValue::from_static("sandbox"),
            ),
        ],
        stored.body,
    )
        .into_response())
}
