//! `/api/v1/schedules`: create, read, list, pause, resume and remove
//! schedules (periodic tasks). Bodies are validated here, before any store
//! call: a bad expression, an unknown time zone or a bad name is a 400 and
//! stores nothing; an unknown type is a 404.

use atp_core::{ScheduleName, Store};
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use crate::AppState;
use crate::extract::{Json, Path};
use crate::problem::{ApiResult, Problem};
use crate::wire::{NewScheduleBody, ScheduleView};

/// A schedule's address.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Path)]
pub struct SchedulePath {
    /// The schedule's name.
    #[param(value_type = super::schema::ScheduleName)]
    pub name: String,
}

/// What removing a schedule did.
#[derive(Debug, Serialize, ToSchema)]
pub struct ScheduleRemoved {
    /// The schedule removed (the tasks it enqueued stay).
    pub name: String,
}

fn schedule_name(name: &str) -> ApiResult<ScheduleName> {
    ScheduleName::new(name).map_err(|e| atp_core::Error::from(e).into())
}

fn view(s: &atp_core::Schedule) -> ScheduleView {
    ScheduleView::new(s, time::OffsetDateTime::now_utc())
}

/// Lists every schedule, by name, with its next occurrence.
#[utoipa::path(get, path = "/api/v1/schedules", operation_id = "list_schedules", tag = "schedules",
    responses((status = 200, description = "All schedules", body = [ScheduleView])))]
pub async fn list(State(state): State<AppState>) -> ApiResult<Json<Vec<ScheduleView>>> {
    let schedules = state.store.schedule_list().await?;
    Ok(Json(schedules.iter().map(view).collect()))
}

/// Creates a schedule, or changes the one with that name (which keeps its
/// pause and its last enqueued occurrence). Every daemon enqueues its
/// occurrences, each exactly once, as tasks named `NAME@` and the
/// occurrence's UTC time; occurrences before its creation never are.
#[utoipa::path(post, path = "/api/v1/schedules", operation_id = "create_schedule", tag = "schedules",
    request_body = NewScheduleBody,
    responses(
        (status = 201, description = "Stored", body = ScheduleView,
            headers(("Location" = String, description = "The schedule's URL"))),
        (status = 400, description = "Invalid name, expression, time zone or catch-up", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "Unknown type", body = Problem, content_type = "application/problem+json"),
        (status = 413, description = "Body or input too large", body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn create(
    State(state): State<AppState>,
    Json(body): Json<NewScheduleBody>,
) -> ApiResult<(StatusCode, HeaderMap, Json<ScheduleView>)> {
    let new = body.validate()?;
    let stored = state.store.schedule_upsert(&new).await?;
    let mut headers = HeaderMap::new();
    let location = format!(
        "/api/v1/schedules/{}",
        crate::html::urls::enc(stored.name.as_str())
    );
    if let Ok(value) = HeaderValue::from_str(&location) {
        headers.insert(header::LOCATION, value);
    }
    Ok((StatusCode::CREATED, headers, Json(view(&stored))))
}

/// One schedule.
#[utoipa::path(get, path = "/api/v1/schedules/{name}", operation_id = "get_schedule", tag = "schedules",
    params(SchedulePath),
    responses(
        (status = 200, description = "The schedule", body = ScheduleView),
        (status = 400, description = "Invalid name", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "Unknown schedule", body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn get(
    State(state): State<AppState>,
    Path(SchedulePath { name }): Path<SchedulePath>,
) -> ApiResult<Json<ScheduleView>> {
    let s = state.store.schedule_get(&schedule_name(&name)?).await?;
    Ok(Json(view(&s)))
}

/// Removes a schedule; the tasks it enqueued stay.
#[utoipa::path(delete, path = "/api/v1/schedules/{name}", operation_id = "delete_schedule", tag = "schedules",
    params(SchedulePath),
    responses(
        (status = 200, description = "Removed", body = ScheduleRemoved),
        (status = 400, description = "Invalid name", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "Unknown schedule", body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn delete(
    State(state): State<AppState>,
    Path(SchedulePath { name }): Path<SchedulePath>,
) -> ApiResult<Json<ScheduleRemoved>> {
    let name = schedule_name(&name)?;
    state.store.schedule_delete(&name).await?;
    Ok(Json(ScheduleRemoved {
        name: name.as_str().to_owned(),
    }))
}

/// Pauses a schedule: nothing is enqueued until it is resumed. Pausing a
/// paused schedule changes nothing.
#[utoipa::path(post, path = "/api/v1/schedules/{name}/pause", operation_id = "pause_schedule", tag = "schedules",
    params(SchedulePath),
    responses(
        (status = 200, description = "Paused", body = ScheduleView),
        (status = 400, description = "Invalid name", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "Unknown schedule", body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn pause(
    State(state): State<AppState>,
    Path(SchedulePath { name }): Path<SchedulePath>,
) -> ApiResult<Json<ScheduleView>> {
    set_paused(&state, &name, true).await
}

/// Resumes a schedule. Occurrences that passed while it was paused are
/// missed: skipped under catch-up `none`, the most recent one enqueued
/// under `last`.
#[utoipa::path(post, path = "/api/v1/schedules/{name}/resume", operation_id = "resume_schedule", tag = "schedules",
    params(SchedulePath),
    responses(
        (status = 200, description = "Resumed", body = ScheduleView),
        (status = 400, description = "Invalid name", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "Unknown schedule", body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn resume(
    State(state): State<AppState>,
    Path(SchedulePath { name }): Path<SchedulePath>,
) -> ApiResult<Json<ScheduleView>> {
    set_paused(&state, &name, false).await
}

async fn set_paused(state: &AppState, name: &str, paused: bool) -> ApiResult<Json<ScheduleView>> {
    let s = state
        .store
        .schedule_set_paused(&schedule_name(name)?, paused)
        .await?;
    Ok(Json(view(&s)))
}
