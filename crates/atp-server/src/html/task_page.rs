//! `/tasks/{type}/{identifier}`: one task (summary, log as a timeline,
//! input, response, progress) and its actions: cancel (while queued or
//! held), re-enqueue and delete.
//!
//! The actions are forms that POST with `confirm=yes` once the script's
//! `confirm()` dialog was accepted; without the script (or without the
//! field) the server answers with a confirmation page holding the same
//! form, so nothing is changed by one unconfirmed request.

use atp_core::payload::is_text_mime;
use atp_core::{LogRecord, Response as Stored, Status, Store, Task, Transition};
use axum::Form;
use axum::extract::State;
use axum::extract::rejection::FormRejection;
use axum::response::{IntoResponse, Redirect, Response};
use maud::{Markup, html};
use serde::Deserialize;

use super::dashboard::{holder, progress};
use super::error::HtmlResult;
use super::layout::{self, Chrome, Nav};
use super::snapshot::Snapshot;
use super::urls::{self, TaskKey, with_query};
use crate::AppState;

/// The most of a text response the page shows.
const PREVIEW_BYTES: usize = 64 * 1024;

/// `GET /tasks/{type}/{identifier}`.
pub async fn page(State(state): State<AppState>, key: TaskKey) -> HtmlResult<Markup> {
    let task_ref = key.task_ref()?;
    let task = state.store.task_get(&task_ref).await?;
    let log = state.store.task_log(&task_ref).await?;
    let input = state.store.task_input(&task_ref).await?;
    let response = state.store.task_response_get(&task_ref).await?;
    // A queued task of a paused type waits for the resume: say so, since
    // nothing else on the page would explain why it does not run.
    let waits_for_resume =
        task.status == Status::Accepted && state.store.task_type_get(&task.task_type).await?.paused;
    let snapshot = Snapshot::read(&state.store).await?;
    let title = format!("{} / {}", task.task_type, task.identifier);
    let chrome = Chrome {
        title: &title,
        page: "task",
        nav: Nav::Tasks,
        live: Some(&snapshot),
        logout: state.tokens.enabled(),
    };
    let (ty, id) = (task.task_type.as_str(), task.identifier.as_str());
    Ok(layout::page(
        &chrome,
        html! {
            nav.breadcrumb aria-label="Breadcrumb" {
                a href="/" { "Tasks" } " › "
                a href=(with_query("/", &[("type", Some(ty))])) { (ty) } " › "
                span aria-current="page" { (id) }
            }
            h1 #task-title data-type=(ty) data-identifier=(id) {
                span.muted { (ty) " / " } (id)
            }
            @if waits_for_resume {
                p #type-paused .notice role="status" {
                    "Type " a href="/types" { (ty) } " is paused: this task waits in the queue until it is resumed."
                }
            }
            (summary(&task, &state.ogc_prefix))
            section.panel aria-labelledby="h-log" {
                h2 #h-log { "Log" }
                (timeline(&log))
            }
            div.two {
                section.panel aria-labelledby="h-input" {
                    h2 #h-input { "Input" }
                    pre #input .code { (pretty_json(&input)) }
                }
                section.panel aria-labelledby="h-response" {
                    h2 #h-response { "Response" }
                    (response_part(ty, id, response.as_ref()))
                }
            }
        },
    ))
}

fn summary(task: &Task, ogc_prefix: &str) -> Markup {
    let (ty, id) = (task.task_type.as_str(), task.identifier.as_str());
    html! {
        div #task-summary .panel data-live {
            dl.facts {
                div { dt { "Status" } dd data-field="status" { (layout::status(task.status)) } }
                div { dt { "Starts" } dd data-field="starts" { (task.starts) } }
                div { dt { "Holder" } dd data-field="holder" { (holder(task)) } }
                div { dt { "Progress" } dd data-field="progress" {
                    @if task.progress.is_some() { (progress(task)) } @else { span.muted { "—" } }
                } }
                div { dt { "Enqueued" } dd data-field="enqueued" { (layout::time(task.enqueued_at)) } }
                div { dt { "Due" } dd data-field="due" { (layout::time(task.due_at)) } }
                div { dt { "Priority" } dd data-field="priority" { (task.priority) } }
                div { dt { "Inserted" } dd data-field="inserted" { (layout::time(task.inserted_at)) } }
                div { dt { "Updated" } dd data-field="updated" { (layout::time(task.updated_at)) } }
                div { dt { "Id" } dd data-field="id" { (task.id) } }
            }
            div.actions {
                @if Transition::Cancel.allows(task.status) {
                    (action_form(ty, id, Action::Cancel, false))
                }
                @if task.status != Status::Accepted {
                    (action_form(ty, id, Action::Reenqueue, false))
                }
                (action_form(ty, id, Action::Delete, false))
                a.original-log href=(urls::process_status(ty, id)) { "Log in the original view" }
                a.ogc-job href=(urls::ogc_job(ogc_prefix, id)) { "As an OGC job" }
            }
        }
    }
}

fn timeline(log: &[LogRecord]) -> Markup {
    html! {
        ol #timeline .timeline data-live {
            @for r in log {
                li.log-entry data-status=(r.status.name()) {
                    div.log-head { (layout::time(r.time)) " " (layout::status(r.status)) }
                    p.log-message { (r.message) }
                }
            }
        }
    }
}

fn pretty_json(value: &serde_json::Value) -> String {
    serde_json::to_string_pretty(value).unwrap_or_else(|_| value.to_string())
}

fn response_part(ty: &str, id: &str, response: Option<&Stored>) -> Markup {
    html! {
        div #response data-live {
            @match response {
                None => p #no-response .muted { "No response (yet)." },
                Some(r) => {
                    p.response-meta {
                        code #response-type { (r.mime_type) } ", " (r.body.len()) " bytes · "
                        a #response-open href=(urls::process_response(ty, id)) { "open" } " · "
                        a #response-download href=(urls::api_response(ty, id)) download { "download" }
                    }
                    @if is_text_mime(&r.mime_type) {
                        pre #response-preview .code { (preview(r)) }
                        @if r.body.len() > PREVIEW_BYTES {
                            p.muted { "The first 64 KiB." }
                        }
                    }
                }
            }
        }
    }
}

/// A text response for reading: JSON pretty-printed, anything else as
/// UTF-8 (lossy), cut at [`PREVIEW_BYTES`].
fn preview(r: &Stored) -> String {
    if r.mime_type.contains("json") && r.body.len() <= PREVIEW_BYTES {
        if let Ok(value) = serde_json::from_slice::<serde_json::Value>(&r.body) {
            return pretty_json(&value);
        }
    }
    let end = r.body.len().min(PREVIEW_BYTES);
    String::from_utf8_lossy(&r.body[..end]).into_owned()
}

/// What a task page's forms do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    /// Stopped: never runs, or its running attempt is stopped.
    Cancel,
    /// Back to the queue with its full starts.
    Reenqueue,
    /// Gone, with its log, input and response.
    Delete,
}

impl Action {
    fn path(self) -> &'static str {
        match self {
            Action::Cancel => "cancel",
            Action::Reenqueue => "reenqueue",
            Action::Delete => "delete",
        }
    }

    fn label(self) -> &'static str {
        match self {
            Action::Cancel => "Cancel",
            Action::Reenqueue => "Re-enqueue",
            Action::Delete => "Delete",
        }
    }

    fn question(self, ty: &str, id: &str) -> String {
        match self {
            Action::Cancel => format!(
                "Cancel task {ty} / {id}? It will not run; if it is running, its handler is stopped. Re-enqueue brings it back."
            ),
            Action::Reenqueue => format!(
                "Re-enqueue task {ty} / {id}? It goes back to the queue with its full number of starts."
            ),
            Action::Delete => format!(
                "Delete task {ty} / {id} with its log, input and response? This cannot be undone."
            ),
        }
    }
}

/// The form of `action`. Unconfirmed, it carries an empty `confirm` field
/// the script fills in after its dialog; confirmed (the fallback page), it
/// carries `confirm=yes` and no dialog.
fn action_form(ty: &str, id: &str, action: Action, confirmed: bool) -> Markup {
    html! {
        form id=(format!("{}-form", action.path())) class=(format!("action-{}", action.path()))
            method="post" action=(urls::task_action(ty, id, action.path()))
            data-confirm=[(!confirmed).then(|| action.question(ty, id))] {
            input type="hidden" name="confirm" value=(if confirmed { "yes" } else { "" });
            button type="submit" .danger[action != Action::Reenqueue] {
                (action.label())
                @if confirmed { " now" }
            }
        }
    }
}

/// The body of an action's POST.
#[derive(Debug, Default, Deserialize)]
pub struct Confirm {
    #[serde(default)]
    confirm: String,
}

fn confirmed(form: Result<Form<Confirm>, FormRejection>) -> bool {
    form.is_ok_and(|Form(c)| c.confirm == "yes")
}

fn confirmation_page(state: &AppState, key: &TaskKey, action: Action) -> Response {
    let (ty, id) = (key.task_type.as_str(), key.identifier.as_str());
    let title = format!("{} {ty} / {id}?", action.label());
    let chrome = Chrome {
        title: &title,
        page: "confirm",
        nav: Nav::Tasks,
        live: None,
        logout: state.tokens.enabled(),
    };
    layout::page(
        &chrome,
        html! {
            h1 { (title) }
            p #confirm-question { (action.question(ty, id)) }
            div.actions {
                (action_form(ty, id, action, true))
                a #cancel href=(urls::task_page(ty, id)) {
                    @if action == Action::Cancel { "Keep it" } @else { "Cancel" }
                }
            }
        },
    )
    .into_response()
}

/// `POST /tasks/{type}/{identifier}/reenqueue`: 303 back to the task.
pub async fn reenqueue(
    State(state): State<AppState>,
    key: TaskKey,
    form: Result<Form<Confirm>, FormRejection>,
) -> HtmlResult<Response> {
    let task_ref = key.task_ref()?;
    if !confirmed(form) {
        return Ok(confirmation_page(&state, &key, Action::Reenqueue));
    }
    // An empty message: the store's own wording, as the CLI and API write.
    state.store.task_reenqueue(&task_ref, "").await?;
    Ok(Redirect::to(&urls::task_page(&key.task_type, &key.identifier)).into_response())
}

/// `POST /tasks/{type}/{identifier}/cancel`: 303 back to the task.
pub async fn cancel(
    State(state): State<AppState>,
    key: TaskKey,
    form: Result<Form<Confirm>, FormRejection>,
) -> HtmlResult<Response> {
    let task_ref = key.task_ref()?;
    if !confirmed(form) {
        return Ok(confirmation_page(&state, &key, Action::Cancel));
    }
    let task = state.store.task_cancel(&task_ref, None).await?;
    state.metrics.cancelled(&task.task_type);
    Ok(Redirect::to(&urls::task_page(&key.task_type, &key.identifier)).into_response())
}

/// `POST /tasks/{type}/{identifier}/delete`: 303 to the dashboard.
pub async fn delete(
    State(state): State<AppState>,
    key: TaskKey,
    form: Result<Form<Confirm>, FormRejection>,
) -> HtmlResult<Response> {
    let task_ref = key.task_ref()?;
    if !confirmed(form) {
        return Ok(confirmation_page(&state, &key, Action::Delete));
    }
    state.store.task_delete(&task_ref).await?;
    Ok(Redirect::to("/").into_response())
}
