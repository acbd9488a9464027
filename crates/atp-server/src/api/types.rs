//! `/api/v1/types`: register, read, pause, resume and unregister task types.

use atp_core::{Handler, Store, TaskType, TypeName};
use axum::http::StatusCode;
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use crate::AppState;
use crate::extract::{Json, Path, Query};
use crate::problem::{ApiResult, Problem};
use crate::wire::TaskTypeView;
use axum::extract::State;

/// A type's settings, as registered (`PUT /api/v1/types/{name}`).
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct TypeBody {
    /// What runs its tasks: `builtin:NAME`, `exec:PROGRAM ARGS`, or a
    /// name a program registered.
    #[schema(value_type = super::schema::Handler)]
    pub handler: String,
    /// Seconds an unfinished task may go without an update before it is
    /// abandoned and re-enqueued (default 3600).
    #[schema(exclusive_minimum = 0, maximum = 1e11)]
    pub timeout_secs: Option<f64>,
    /// Seconds finished tasks are kept; negative keeps them (default -1).
    #[schema(maximum = 1e11)]
    pub retention_secs: Option<f64>,
    /// Starts before a task FAILS instead of being re-enqueued (default 3).
    #[schema(minimum = 1, maximum = 2147483647)]
    pub max_starts: Option<u32>,
    /// The priority of its tasks enqueued without one (default 0; higher
    /// runs first).
    pub priority: Option<i32>,
    /// Seconds before a failed task's first retry; each next waits twice
    /// as long (less up to 25 % jitter), while starts remain. Without it a
    /// failure is final.
    #[schema(exclusive_minimum = 0, maximum = 1e9)]
    pub retry_delay_secs: Option<f64>,
    /// The longest wait between retries (default: 3600, or the first delay
    /// if longer). Only with `retry_delay_secs`.
    #[schema(exclusive_minimum = 0, maximum = 1e9)]
    pub retry_max_delay_secs: Option<f64>,
    /// At most this many of its tasks run (are held) at once, across every
    /// daemon and host; leave it out for no limit.
    #[schema(minimum = 1, maximum = 2147483647)]
    pub max_running: Option<u32>,
    /// A short human title.
    pub title: Option<String>,
    /// What the type does, for people choosing it.
    pub description: Option<String>,
    /// Words to find it by (none empty).
    pub keywords: Option<Vec<String>>,
    /// The version of its interface (default `1.0.0`).
    pub version: Option<String>,
    /// A JSON Schema (draft 2020-12 unless its `$schema` says otherwise;
    /// no remote references) every task input must satisfy from now on.
    /// Leave it out for any input.
    pub input_schema: Option<serde_json::Value>,
    /// A JSON Schema of its responses, published for clients.
    pub output_schema: Option<serde_json::Value>,
    /// Seconds a client may wait for one of its tasks in one request (OGC
    /// synchronous execution); leave it out to make clients follow the
    /// task.
    #[schema(exclusive_minimum = 0, maximum = 600)]
    pub sync_wait_secs: Option<f64>,
}

/// A type's address.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Path)]
pub struct TypePath {
    /// The type's name.
    #[param(value_type = super::schema::TypeName)]
    pub name: String,
}

/// `?force=true` deletes the type's tasks with it.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct UnregisterQuery {
    /// Delete the type's tasks (with their logs, inputs and responses) too.
    #[serde(default)]
    pub force: bool,
}

/// What unregistering did.
#[derive(Debug, Serialize, ToSchema)]
pub struct Unregistered {
    /// The type removed.
    pub name: String,
    /// Its tasks deleted with it.
    pub tasks_deleted: u64,
}

pub(crate) fn type_name(name: &str) -> ApiResult<TypeName> {
    TypeName::new(name).map_err(|e| atp_core::Error::from(e).into())
}

/// Lists every task type, by name.
#[utoipa::path(get, path = "/api/v1/types", operation_id = "list_types", tag = "types",
    responses((status = 200, description = "All types", body = [TaskTypeView])))]
pub async fn list(State(state): State<AppState>) -> ApiResult<Json<Vec<TaskTypeView>>> {
    let types = state.store.task_type_list().await?;
    Ok(Json(types.iter().map(TaskTypeView::from).collect()))
}

/// One task type.
#[utoipa::path(get, path = "/api/v1/types/{name}", operation_id = "get_type", tag = "types",
    params(TypePath),
    responses(
        (status = 200, description = "The type", body = TaskTypeView),
        (status = 400, description = "Invalid name", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "Unknown type", body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn get(
    State(state): State<AppState>,
    Path(TypePath { name }): Path<TypePath>,
) -> ApiResult<Json<TaskTypeView>> {
    let t = state.store.task_type_get(&type_name(&name)?).await?;
    Ok(Json(TaskTypeView::from(&t)))
}

/// Registers a type, or updates it when the name exists.
#[utoipa::path(put, path = "/api/v1/types/{name}", operation_id = "put_type", tag = "types",
    params(TypePath),
    request_body = TypeBody,
    responses(
        (status = 201, description = "Registered", body = TaskTypeView),
        (status = 200, description = "Updated", body = TaskTypeView),
        (status = 400, description = "Invalid name or settings", body = Problem, content_type = "application/problem+json"),
        (status = 413, description = "Body too large", body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn put(
    State(state): State<AppState>,
    Path(TypePath { name }): Path<TypePath>,
    Json(body): Json<TypeBody>,
) -> ApiResult<(StatusCode, Json<TaskTypeView>)> {
    let name = type_name(&name)?;
    let handler = Handler::new(body.handler).map_err(atp_core::Error::from)?;
    let mut t = TaskType::new(name.clone(), handler);
    if let Some(secs) = body.timeout_secs {
        t = t.with_timeout_secs(secs);
    }
    if let Some(secs) = body.retention_secs {
        t = t.with_retention_secs(secs);
    }
    if let Some(n) = body.max_starts {
        t = t.with_max_starts(n);
    }
    if let Some(p) = body.priority {
        t = t.with_priority(p);
    }
    t.max_running = body.max_running;
    t.about = atp_core::TypeAbout {
        title: body.title,
        description: body.description,
        keywords: body.keywords.unwrap_or_default(),
        version: body.version,
        input_schema: body.input_schema,
        output_schema: body.output_schema,
        sync_wait_secs: body.sync_wait_secs,
    };
    match (body.retry_delay_secs, body.retry_max_delay_secs) {
        (Some(delay_secs), max) => {
            t = t.with_retry(atp_core::RetryPolicy {
                delay_secs,
                max_delay_secs: max.unwrap_or(delay_secs.max(3600.0)),
            });
        }
        (None, Some(_)) => {
            return Err(crate::problem::Problem::invalid(
                "retry_max_delay_secs needs retry_delay_secs",
            ));
        }
        (None, None) => {}
    }
    t.validate()?;
    let existed = match state.store.task_type_get(&name).await {
        Ok(_) => true,
        Err(e) if e.is_not_found() => false,
        Err(e) => return Err(e.into()),
    };
    state.store.task_type_upsert(&t).await?;
    let code = if existed {
        StatusCode::OK
    } else {
        StatusCode::CREATED
    };
    // Read back: an existing type kept its pause, which the body does not
    // carry.
    let stored = state.store.task_type_get(&name).await?;
    Ok((code, Json(TaskTypeView::from(&stored))))
}

/// Pauses a type: from now on no daemon claims its tasks, until it is
/// resumed. Tasks already running go on; enqueues are still accepted. Kept
/// across restarts and re-registrations. Pausing a paused type changes
/// nothing.
#[utoipa::path(post, path = "/api/v1/types/{name}/pause", operation_id = "pause_type", tag = "types",
    params(TypePath),
    responses(
        (status = 200, description = "Paused", body = TaskTypeView),
        (status = 400, description = "Invalid name", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "Unknown type", body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn pause(
    State(state): State<AppState>,
    Path(TypePath { name }): Path<TypePath>,
) -> ApiResult<Json<TaskTypeView>> {
    set_paused(&state, &name, true).await
}

/// Resumes a paused type: its queued tasks are claimed again, in their
/// order. Resuming a running type changes nothing.
#[utoipa::path(post, path = "/api/v1/types/{name}/resume", operation_id = "resume_type", tag = "types",
    params(TypePath),
    responses(
        (status = 200, description = "Resumed", body = TaskTypeView),
        (status = 400, description = "Invalid name", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "Unknown type", body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn resume(
    State(state): State<AppState>,
    Path(TypePath { name }): Path<TypePath>,
) -> ApiResult<Json<TaskTypeView>> {
    set_paused(&state, &name, false).await
}

async fn set_paused(state: &AppState, name: &str, paused: bool) -> ApiResult<Json<TaskTypeView>> {
    let t = state
        .store
        .task_type_set_paused(&type_name(name)?, paused)
        .await?;
    Ok(Json(TaskTypeView::from(&t)))
}

/// Unregisters a type. Refused (409) while it has tasks, unless
/// `force=true`.
#[utoipa::path(delete, path = "/api/v1/types/{name}", operation_id = "delete_type", tag = "types",
    params(TypePath, UnregisterQuery),
    responses(
        (status = 200, description = "Unregistered", body = Unregistered),
        (status = 400, description = "Invalid name", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "Unknown type", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "The type still has tasks", body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn delete(
    State(state): State<AppState>,
    Path(TypePath { name }): Path<TypePath>,
    Query(query): Query<UnregisterQuery>,
) -> ApiResult<Json<Unregistered>> {
    let name = type_name(&name)?;
    let deleted = state.store.task_type_delete(&name, query.force).await?;
    Ok(Json(Unregistered {
        name: name.into_string(),
        tasks_deleted: deleted,
    }))
}
