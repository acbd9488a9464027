//! `/schedules`: every schedule (periodic task) with its expression, time
//! zone, catch-up, next and last enqueued occurrence and pause state, and
//! the pause and resume buttons.
//!
//! As on `/types`, a pause is undone by a resume and loses nothing, so its
//! forms POST without a confirmation; the same-origin check of `mod.rs`
//! applies as to every POST.

use atp_core::{Schedule, ScheduleName, Store};
use axum::extract::{Path, State};
use axum::response::{IntoResponse, Redirect, Response};
use maud::{Markup, html};
use time::OffsetDateTime;

use super::error::{HtmlError, HtmlResult};
use super::layout::{self, Chrome, Nav};
use super::snapshot::Snapshot;
use super::urls::{self, with_query};
use crate::AppState;

/// `GET /schedules`.
pub async fn page(State(state): State<AppState>) -> HtmlResult<Markup> {
    let snapshot = Snapshot::read(&state.store).await?;
    let schedules = state.store.schedule_list().await?;
    let now = OffsetDateTime::now_utc();
    let chrome = Chrome {
        title: "Schedules",
        page: "schedules",
        nav: Nav::Schedules,
        live: Some(&snapshot),
        logout: state.tokens.enabled(),
    };
    Ok(layout::page(
        &chrome,
        html! {
            h1 { "Schedules" }
            div #schedule-list data-live {
                @if schedules.is_empty() {
                    p #no-schedules .empty {
                        "No schedules. Add one with "
                        code { "atp schedule add NAME TYPE \"*/5 * * * *\"" }
                        " or POST /api/v1/schedules."
                    }
                } @else {
                    div.table-wrap {
                        table #schedules {
                            thead { tr {
                                th { "Schedule" } th { "Type" } th { "Expression" }
                                th { "Time zone" } th { "Catch-up" } th { "Next" }
                                th { "Last enqueued" } th { "State" } th {}
                            } }
                            tbody {
                                @for s in &schedules {
                                    (schedule_row(s, now))
                                }
                            }
                        }
                    }
                }
            }
        },
    ))
}

fn schedule_row(s: &Schedule, now: OffsetDateTime) -> Markup {
    let name = s.name.as_str();
    let tasks = with_query("/", &[("type", Some(s.task_type.as_str()))]);
    html! {
        tr.schedule data-schedule=(name) data-paused=(s.paused) {
            td { (name) }
            td { a href=(tasks) { (s.task_type) } }
            td { code.expression { (s.recurrence.expression()) } }
            td { (s.recurrence.timezone()) }
            td { (s.catch_up) }
            td data-field="next" {
                @if let Some(next) = s.next_occurrence(now) { (layout::time(next)) } @else { "—" }
            }
            td data-field="last" {
                @if let Some(last) = s.last_enqueued {
                    a href=(urls::task_page(s.task_type.as_str(), s.identifier_for(last).as_str())) {
                        (layout::time(last))
                    }
                } @else { "—" }
            }
            (layout::pause_cells(s.paused, "Active", name, urls::schedule_action))
        }
    }
}

/// `POST /schedules/{name}/pause`: 303 back to `/schedules`.
pub async fn pause(
    State(state): State<AppState>,
    Path(name): Path<String>,
) -> HtmlResult<Response> {
    set_paused(&state, &name, true).await
}

/// `POST /schedules/{name}/resume`: 303 back to `/schedules`.
pub async fn resume(
    State(state): State<AppState>,
    Path(name): Path<String>,
) -> HtmlResult<Response> {
    set_paused(&state, &name, false).await
}

async fn set_paused(state: &AppState, name: &str, paused: bool) -> HtmlResult<Response> {
    let name = ScheduleName::new(name).map_err(|e| HtmlError::from(atp_core::Error::from(e)))?;
    state.store.schedule_set_paused(&name, paused).await?;
    Ok(Redirect::to("/schedules").into_response())
}
