//! `/failed`: what ended badly, by type, at a glance: per type the count,
//! the newest tasks with their last log message (why they ended), and a
//! button that re-enqueues all of them (`POST /failed/reenqueue`, confirmed
//! first, all or nothing).
//!
//! "Ended badly" is [`ENDED_BADLY`]: a status added there (CANCELLED) gets
//! its own sections, counts and button with no other change.

use atp_core::{BulkReenqueue, Status, Store, TaskFilter, TaskWithMessage, TypeName};
use axum::extract::rejection::FormRejection;
use axum::extract::{Form, Query, State};
use axum::response::{IntoResponse, Redirect, Response};
use maud::{Markup, html};
use serde::Deserialize;

use super::error::{HtmlError, HtmlResult};
use super::layout::{self, Chrome, Nav};
use super::snapshot::Snapshot;
use super::urls::{self, with_query};
use crate::AppState;

/// The statuses of tasks that ended badly, in the order the page shows
/// them.
pub const ENDED_BADLY: &[Status] = &[Status::Failed, Status::Cancelled];

/// How many of each type's newest tasks the page lists.
const SHOWN: u32 = 10;

/// One section: the tasks of one type in one status.
struct Group {
    status: Status,
    task_type: TypeName,
    count: u64,
    newest: Vec<TaskWithMessage>,
}

/// The query string: how many tasks the last bulk re-enqueue moved.
#[derive(Debug, Default, Deserialize)]
pub struct FailedQuery {
    reenqueued: Option<u64>,
}

/// `GET /failed`. One listing per (status, type) that has tasks, each a
/// single statement with the last messages (no query per task).
pub async fn page(
    State(state): State<AppState>,
    Query(query): Query<FailedQuery>,
) -> HtmlResult<Markup> {
    // The snapshot's counts (by type too) say which sections there are.
    let snapshot = Snapshot::read(&state.store).await?;
    let by_type = &snapshot.counts.by_type;
    let mut groups = Vec::new();
    for &status in ENDED_BADLY {
        for (task_type, _, count) in by_type.iter().filter(|(_, s, _)| *s == status) {
            let page = state
                .store
                .task_list_with_last_message(&TaskFilter {
                    status: Some(status),
                    task_type: Some(task_type.clone()),
                    limit: SHOWN,
                    ..TaskFilter::default()
                })
                .await?;
            groups.push(Group {
                status,
                task_type: task_type.clone(),
                count: *count,
                newest: page.tasks,
            });
        }
    }
    let chrome = Chrome {
        title: "Failed tasks",
        page: "failed",
        nav: Nav::Failed,
        live: Some(&snapshot),
        logout: state.tokens.enabled(),
    };
    Ok(layout::page(
        &chrome,
        html! {
            h1 { "Failed tasks" }
            @if let Some(n) = query.reenqueued {
                p #reenqueued .notice role="status" { (tasks(n)) " re-enqueued." }
            }
            div #failed-list data-live {
                @if groups.is_empty() {
                    p.empty #nothing-failed { "No task ended badly." }
                }
                @for g in &groups {
                    (group(g))
                }
            }
        },
    ))
}

fn tasks(n: u64) -> String {
    format!("{n} task{}", if n == 1 { "" } else { "s" })
}

fn group(g: &Group) -> Markup {
    let (status, ty) = (g.status.name(), g.task_type.as_str());
    let all = with_query("/", &[("status", Some(status)), ("type", Some(ty))]);
    html! {
        // `data-tasks`, not `data-count`: the script rewrites every
        // `[data-count]` with the live counts.
        section.failed-type data-type=(ty) data-task-status=(status) data-tasks=(g.count) {
            h2 {
                a.type-link href=(all) { (ty) } " "
                (layout::status(g.status)) " "
                span.count { (tasks(g.count)) }
            }
            div.table-wrap {
                table.tasks {
                    thead {
                        tr {
                            th scope="col" { "Identifier" }
                            th scope="col" { "Starts" }
                            th scope="col" { "Updated" }
                            th scope="col" { "Last message" }
                        }
                    }
                    tbody {
                        @for t in &g.newest {
                            tr.task data-identifier=(t.task.identifier) {
                                td.identifier {
                                    a.task-link href=(urls::task_page(ty, t.task.identifier.as_str())) {
                                        (t.task.identifier)
                                    }
                                }
                                td.num { (t.task.starts) }
                                td { (layout::time(t.task.updated_at)) }
                                td.last-message { (t.last_message) }
                            }
                        }
                    }
                }
            }
            div.actions {
                @if g.count > g.newest.len() as u64 {
                    a.all-link href=(all) { "All " (tasks(g.count)) " »" }
                }
                (reenqueue_form(g.status, &g.task_type, Some(g.count)))
            }
        }
    }
}

fn question(status: Status, task_type: &TypeName, count: Option<u64>) -> String {
    let which = match count {
        Some(n) => format!("all {}", tasks(n)),
        None => "all tasks".to_owned(),
    };
    format!(
        "Re-enqueue {which} {} of type {task_type}? They go back to the queue with their full number of starts.",
        status.name()
    )
}

/// The bulk re-enqueue form. With a count (the page's), it asks through
/// the script's dialog; without (the fallback page), it is confirmed.
fn reenqueue_form(status: Status, task_type: &TypeName, count: Option<u64>) -> Markup {
    html! {
        form.action-reenqueue-all method="post" action="/failed/reenqueue"
            data-confirm=[count.map(|n| question(status, task_type, Some(n)))] {
            input type="hidden" name="status" value=(status.name());
            input type="hidden" name="type" value=(task_type);
            input type="hidden" name="confirm" value=(if count.is_none() { "yes" } else { "" });
            button type="submit" { "Re-enqueue all" @if count.is_none() { " now" } }
        }
    }
}

/// The body of the bulk re-enqueue's POST.
#[derive(Debug, Deserialize)]
pub struct BulkForm {
    status: String,
    #[serde(rename = "type")]
    task_type: String,
    #[serde(default)]
    confirm: String,
}

/// `POST /failed/reenqueue`: unconfirmed, a confirmation page; confirmed,
/// every task of the type in the status goes back to the queue in one
/// transaction, then 303 to `/failed` saying how many.
pub async fn reenqueue(
    State(state): State<AppState>,
    form: Result<Form<BulkForm>, FormRejection>,
) -> HtmlResult<Response> {
    let Form(form) = form.map_err(|e| HtmlError::bad_request(e.body_text()))?;
    let status = form
        .status
        .parse::<Status>()
        .ok()
        .filter(|s| ENDED_BADLY.contains(s))
        .ok_or_else(|| {
            HtmlError::bad_request(format!(
                "{:?} is not a status of tasks that ended badly",
                form.status
            ))
        })?;
    let task_type =
        TypeName::new(form.task_type).map_err(|e| HtmlError::from(atp_core::Error::from(e)))?;
    if form.confirm != "yes" {
        return Ok(confirmation_page(&state, status, &task_type));
    }
    let n = state
        .store
        .task_reenqueue_all(&BulkReenqueue {
            status,
            task_type: Some(task_type),
            message: String::new(),
        })
        .await?;
    Ok(Redirect::to(&format!("/failed?reenqueued={n}")).into_response())
}

fn confirmation_page(state: &AppState, status: Status, task_type: &TypeName) -> Response {
    let title = format!("Re-enqueue all {} of {task_type}?", status.name());
    let chrome = Chrome {
        title: &title,
        page: "confirm",
        nav: Nav::Failed,
        live: None,
        logout: state.tokens.enabled(),
    };
    layout::page(
        &chrome,
        html! {
            h1 { (title) }
            p #confirm-question { (question(status, task_type, None)) }
            div.actions {
                (reenqueue_form(status, task_type, None))
                a #cancel href="/failed" { "Cancel" }
            }
        },
    )
    .into_response()
}
