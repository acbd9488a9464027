//! `/daemons`: the live daemons and, for each, the tasks it holds.

use atp_core::{Store, TaskFilter};
use axum::extract::State;
use maud::{Markup, html};

use super::dashboard::task_table;
use super::error::HtmlResult;
use super::layout::{self, Chrome, Nav};
use super::snapshot::Snapshot;
use crate::AppState;

/// The most held tasks shown per daemon.
const HELD_SHOWN: u32 = 100;

/// `GET /daemons`.
pub async fn page(State(state): State<AppState>) -> HtmlResult<Markup> {
    let snapshot = Snapshot::read(&state.store).await?;
    let daemons = state.store.daemon_list().await?;
    let mut held = Vec::with_capacity(daemons.len());
    for d in &daemons {
        let page = state
            .store
            .task_list(&TaskFilter {
                holder: Some(d.id),
                limit: HELD_SHOWN,
                ..TaskFilter::default()
            })
            .await?;
        held.push(page);
    }
    let chrome = Chrome {
        title: "Daemons",
        page: "daemons",
        nav: Nav::Daemons,
        live: Some(&snapshot),
        logout: state.tokens.enabled(),
    };
    Ok(layout::page(
        &chrome,
        html! {
            h1 { "Daemons" }
            div #daemon-list data-live {
                @if daemons.is_empty() {
                    p #no-daemons .empty { "No live daemons." }
                }
                @for (d, page) in daemons.iter().zip(&held) {
                    section.panel.daemon id={ "daemon-" (d.id) } data-daemon=(d.id.to_string())
                        aria-label={ "Daemon " (d.id) } {
                        h2 { code { (d.id) } }
                        dl.facts {
                            div { dt { "Host" } dd { (d.host) } }
                            div { dt { "PID" } dd { (d.pid) } }
                            div { dt { "Started" } dd { (layout::time(d.started_at)) } }
                            div { dt { "Heartbeat" } dd { (layout::time(d.heartbeat_at)) } }
                            div.wide { dt { "Handlers" } dd {
                                @for h in &d.handlers { code.handler { (h) } " " }
                            } }
                        }
                        h3 {
                            "Holding " (page.tasks.len())
                            @if page.next.is_some() { "+" }
                            @if page.tasks.len() == 1 { " task" } @else { " tasks" }
                        }
                        @if !page.tasks.is_empty() {
                            (task_table(&page.tasks, None))
                        }
                    }
                }
            }
        },
    ))
}
