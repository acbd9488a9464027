//! `/`: counts, the task table with filters (status, type, identifier
//! prefix) in the query string, and cursor pagination.
//!
//! The identifier search is a prefix (`TaskFilter::identifier_prefix`):
//! the tasks whose identifier starts with the text, exactly as typed
//! (case-sensitive), which both stores read as an index range, paged like
//! any other filter, so it finds old tasks as fast as new ones.

use atp_core::{Status, Store, Task, TaskCursor, TaskFilter, TypeName};
use axum::extract::{Query, State};
use maud::{Markup, html};
use serde::Deserialize;

use super::error::{HtmlError, HtmlResult};
use super::layout::{self, Chrome, Nav};
use super::snapshot::{Snapshot, statuses};
use super::urls::{self, with_query};
use crate::AppState;

/// Tasks per page.
const PAGE: u32 = 50;

/// The query string: every field optional, empty meaning absent (as an
/// "any" option submits it).
#[derive(Debug, Default, Deserialize)]
pub struct DashQuery {
    status: Option<String>,
    #[serde(rename = "type")]
    task_type: Option<String>,
    q: Option<String>,
    cursor: Option<String>,
}

fn given(value: &Option<String>) -> Option<&str> {
    value.as_deref().map(str::trim).filter(|s| !s.is_empty())
}

/// The filters of a task table, validated.
#[derive(Debug, Default)]
pub struct Filters {
    /// Only this status.
    pub status: Option<Status>,
    /// Only this type.
    pub task_type: Option<TypeName>,
    /// Identifier prefix searched for.
    pub search: Option<String>,
    /// Page position.
    pub cursor: Option<TaskCursor>,
}

impl Filters {
    fn parse(q: &DashQuery) -> HtmlResult<Filters> {
        Ok(Filters {
            status: given(&q.status)
                .map(|s| s.parse::<Status>())
                .transpose()
                .map_err(|e| HtmlError::bad_request(e.to_string()))?
                .filter(|s| *s != Status::Undefined),
            task_type: given(&q.task_type)
                .map(TypeName::new)
                .transpose()
                .map_err(|e| HtmlError::from(atp_core::Error::from(e)))?,
            search: given(&q.q).map(str::to_owned),
            cursor: given(&q.cursor)
                .map(str::parse)
                .transpose()
                .map_err(HtmlError::from)?,
        })
    }

    fn status_name(&self) -> Option<&'static str> {
        self.status.map(Status::name)
    }

    fn type_name(&self) -> Option<&str> {
        self.task_type.as_ref().map(TypeName::as_str)
    }

    /// The dashboard's address with these filters but `status` and `type`
    /// replaced (for links in the table) and no position.
    fn link(&self, status: Option<&str>, task_type: Option<&str>) -> String {
        with_query("/", &[("status", status), ("type", task_type)])
    }
}

/// What the table shows.
struct Listing {
    tasks: Vec<Task>,
    next: Option<TaskCursor>,
}

async fn list_page<S: Store>(store: &S, f: &Filters) -> atp_core::Result<Listing> {
    let page = store
        .task_list(&TaskFilter {
            status: f.status,
            task_type: f.task_type.clone(),
            holder: None,
            identifier_prefix: f.search.clone(),
            limit: PAGE,
            after: f.cursor,
        })
        .await?;
    Ok(Listing {
        tasks: page.tasks,
        next: page.next,
    })
}

/// `GET /`.
pub async fn page(
    State(state): State<AppState>,
    Query(query): Query<DashQuery>,
) -> HtmlResult<Markup> {
    let f = Filters::parse(&query)?;
    let snapshot = Snapshot::read(&state.store).await?;
    let types: Vec<TypeName> = state
        .store
        .task_type_list()
        .await?
        .into_iter()
        .map(|t| t.name)
        .collect();
    let listing = list_page(&state.store, &f).await?;
    let chrome = Chrome {
        title: "Tasks",
        page: "dashboard",
        nav: Nav::Tasks,
        live: Some(&snapshot),
        logout: state.tokens.enabled(),
    };
    Ok(layout::page(
        &chrome,
        html! {
            h1 { "Tasks" }
            (filter_form(&f, &types))
            div #task-list data-live {
                p.summary { (summary(&f, &listing)) }
                (task_table(&listing.tasks, Some(&f)))
                (pager(&f, &listing))
            }
        },
    ))
}

fn summary(f: &Filters, listing: &Listing) -> String {
    let n = listing.tasks.len();
    let mut text = format!("{n} task{}", if n == 1 { "" } else { "s" });
    if let Some(s) = f.status {
        text.push_str(&format!(" {}", s.name()));
    }
    if let Some(t) = &f.task_type {
        text.push_str(&format!(" of type {t}"));
    }
    if let Some(q) = &f.search {
        text.push_str(&format!(" whose identifier starts with “{q}”"));
    }
    text.push_str(if f.cursor.is_some() {
        ", continued, newest update first"
    } else {
        ", newest update first"
    });
    text.push('.');
    text
}

fn filter_form(f: &Filters, types: &[TypeName]) -> Markup {
    let filtered = f.status.is_some() || f.task_type.is_some() || f.search.is_some();
    html! {
        form #filters .filters method="get" action="/" role="search" aria-label="Filter tasks" {
            div.field {
                label for="f-status" { "Status" }
                select #f-status name="status" data-autosubmit {
                    option value="" { "any" }
                    @for s in statuses() {
                        option value=(s.name()) selected[f.status == Some(s)] { (s.name()) }
                    }
                }
            }
            div.field {
                label for="f-type" { "Type" }
                select #f-type name="type" data-autosubmit {
                    option value="" { "any" }
                    @for t in types {
                        option value=(t) selected[f.task_type.as_ref() == Some(t)] { (t) }
                    }
                }
            }
            div.field {
                label for="f-q" { "Identifier" }
                input #f-q type="search" name="q" value=[f.search.as_deref()]
                    placeholder="start of an identifier" maxlength="64";
            }
            div.field.buttons {
                button type="submit" { "Filter" }
                @if filtered {
                    a #clear-filters href="/" { "Clear" }
                }
            }
        }
    }
}

fn pager(f: &Filters, listing: &Listing) -> Markup {
    let first = f.cursor.is_some();
    html! {
        @if first || listing.next.is_some() {
            nav.pager aria-label="Pages" {
                @if first {
                    a #first-page href=(with_query("/", &[
                        ("status", f.status_name()),
                        ("type", f.type_name()),
                        ("q", f.search.as_deref()),
                    ])) { "« First page" }
                }
                @if let Some(next) = listing.next {
                    a #next-page rel="next" href=(with_query("/", &[
                        ("status", f.status_name()),
                        ("type", f.type_name()),
                        ("q", f.search.as_deref()),
                        ("cursor", Some(&next.to_string())),
                    ])) { "Next page »" }
                }
            }
        }
    }
}

/// A table of tasks. With `filters`, type and status cells link to the
/// dashboard narrowed to them (keeping the other filter).
pub fn task_table(tasks: &[Task], filters: Option<&Filters>) -> Markup {
    let none = Filters::default();
    let f = filters.unwrap_or(&none);
    html! {
        @if tasks.is_empty() {
            p.empty #no-tasks { "No tasks." }
        } @else {
            div.table-wrap {
                table #tasks .tasks {
                    thead {
                        tr {
                            th scope="col" { "Type" }
                            th scope="col" { "Identifier" }
                            th scope="col" { "Status" }
                            th scope="col" { "Starts" }
                            th scope="col" { "Holder" }
                            th scope="col" { "Progress" }
                            th scope="col" { "Updated" }
                            th scope="col" { "Response" }
                        }
                    }
                    tbody {
                        @for t in tasks {
                            (task_row(t, f))
                        }
                    }
                }
            }
        }
    }
}

fn task_row(t: &Task, f: &Filters) -> Markup {
    let (ty, id) = (t.task_type.as_str(), t.identifier.as_str());
    html! {
        tr.task data-type=(ty) data-identifier=(id) data-task-status=(t.status.name()) {
            td { a.type-link href=(f.link(f.status_name(), Some(ty))) { (ty) } }
            td.identifier { a.task-link href=(urls::task_page(ty, id)) { (id) } }
            td {
                a.status-link href=(f.link(Some(t.status.name()), f.type_name())) { (layout::status(t.status)) }
                (queue_place(t))
            }
            td.num { (t.starts) }
            td { (holder(t)) }
            td { (progress(t)) }
            td { (layout::time(t.updated_at)) }
            td {
                @if t.status == Status::Finished {
                    a.response-link href=(urls::process_response(ty, id)) { "response" }
                }
            }
        }
    }
}

/// Where a queued task stands beyond FIFO: its due time while it is
/// delayed, its priority when not 0.
fn queue_place(t: &Task) -> Markup {
    html! {
        @if t.status == Status::Accepted && t.due_at > t.enqueued_at {
            " " small.due { "due " (layout::time(t.due_at)) }
        }
        @if t.priority != 0 {
            " " small.priority title="priority" { "p" (t.priority) }
        }
    }
}

/// The daemon holding a task (a link to it on the daemons page), or a dash.
pub fn holder(t: &Task) -> Markup {
    html! {
        @match t.holder.filter(|_| t.status.is_held()) {
            Some(h) => a.holder href={ "/daemons#daemon-" (h) } { code { (h) } },
            None => span.muted { "—" },
        }
    }
}

/// A task's progress: a bar where a percentage is known, and the message.
pub fn progress(t: &Task) -> Markup {
    html! {
        @if let Some(p) = &t.progress {
            span.progress {
                @if let Some(pc) = p.percent {
                    progress value=(pc) max="100" aria-label="Progress" { (format!("{pc:.0}%")) }
                    " " span.pct { (format!("{pc:.0}%")) }
                }
                @if !p.message.is_empty() {
                    " " span.progress-message { (p.message) }
                }
            }
        }
    }
}
