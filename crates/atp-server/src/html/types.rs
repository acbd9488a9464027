//! `/types`: every task type with its limits, its queued tasks and its
//! pause state, and the pause and resume buttons.
//!
//! A pause is undone by a resume and loses nothing, so its forms POST
//! without a confirmation (unlike a task's delete); the same-origin check of
//! `mod.rs` applies as to every POST.

use atp_core::{Status, Store, TaskType, TypeName};
use axum::extract::{Path, State};
use axum::response::{IntoResponse, Redirect, Response};
use maud::{Markup, html};

use super::error::{HtmlError, HtmlResult};
use super::layout::{self, Chrome, Nav};
use super::snapshot::Snapshot;
use super::urls::{self, with_query};
use crate::AppState;

/// `GET /types`.
pub async fn page(State(state): State<AppState>) -> HtmlResult<Markup> {
    let snapshot = Snapshot::read(&state.store).await?;
    let types = state.store.task_type_list().await?;
    let queued = |name: &TypeName| {
        snapshot
            .counts
            .by_type
            .iter()
            .find(|(t, s, _)| t == name && *s == Status::Accepted)
            .map_or(0, |(_, _, n)| *n)
    };
    let chrome = Chrome {
        title: "Types",
        page: "types",
        nav: Nav::Types,
        live: Some(&snapshot),
        logout: state.tokens.enabled(),
    };
    Ok(layout::page(
        &chrome,
        html! {
            h1 { "Types" }
            div #type-list data-live {
                @if types.is_empty() {
                    p #no-types .empty { "No task types registered." }
                } @else {
                    div.table-wrap {
                        table #types {
                            thead { tr {
                                th { "Type" } th { "Handler" } th.num { "Queued" }
                                th.num { "Timeout (s)" } th.num { "Retention (s)" }
                                th.num { "Max starts" } th.num { "Priority" }
                                th { "Retries" } th.num { "Max running" } th { "State" } th {}
                            } }
                            tbody {
                                @for t in &types {
                                    (type_row(t, queued(&t.name)))
                                }
                            }
                        }
                    }
                }
            }
        },
    ))
}

fn type_row(t: &TaskType, queued: u64) -> Markup {
    let name = t.name.as_str();
    let tasks = with_query("/", &[("type", Some(name))]);
    html! {
        tr.task-type data-type=(name) data-paused=(t.paused) {
            td { a href=(tasks) { (name) } }
            td { code.handler { (t.handler) } }
            td.num data-field="queued" { (queued) }
            td.num { (t.timeout_secs) }
            td.num { (t.retention_secs) }
            td.num { (t.max_starts) }
            td.num data-field="priority" { (t.priority) }
            td data-field="retry" {
                @match &t.retry {
                    Some(r) => { (r.delay_secs) " s, doubling up to " (r.max_delay_secs) " s" }
                    None => span.muted { "none" },
                }
            }
            td.num data-field="max-running" {
                @match t.max_running {
                    Some(n) => (n),
                    None => span.muted { "—" },
                }
            }
            (layout::pause_cells(t.paused, "Running", name, urls::type_action))
        }
    }
}

/// `POST /types/{name}/pause`: 303 back to `/types`.
pub async fn pause(
    State(state): State<AppState>,
    Path(name): Path<String>,
) -> HtmlResult<Response> {
    set_paused(&state, &name, true).await
}

/// `POST /types/{name}/resume`: 303 back to `/types`.
pub async fn resume(
    State(state): State<AppState>,
    Path(name): Path<String>,
) -> HtmlResult<Response> {
    set_paused(&state, &name, false).await
}

async fn set_paused(state: &AppState, name: &str, paused: bool) -> HtmlResult<Response> {
    let name = TypeName::new(name).map_err(|e| HtmlError::from(atp_core::Error::from(e)))?;
    state.store.task_type_set_paused(&name, paused).await?;
    Ok(Redirect::to("/types").into_response())
}
