//! `/api/v1/tasks`: enqueue (one or a batch), list, re-enqueue every task
//! in a status, and per task its status, input, log and response,
//! re-enqueue and delete.

use atp_core::{BulkReenqueue, DaemonId, Due, NewTask, Store, TaskFilter, TaskIdentifier, TaskRef};
use axum::extract::State;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, utf8_percent_encode};
use serde::{Deserialize, Serialize};
use time::format_description::well_known::Rfc3339;
use utoipa::{IntoParams, ToSchema};

use super::types::type_name;
use crate::AppState;
use crate::extract::{Body, Json, Path, Query};
use crate::problem::{ApiResult, Problem};
use crate::wire::{LogRecordView, StatusName, TaskView};

/// Most tasks one batch may hold.
pub const MAX_BATCH: usize = 10_000;

/// Everything but RFC 3986's unreserved characters is escaped in a path
/// segment, so every valid identifier (which may hold `/`, `?`, `%`, …)
/// round-trips.
pub(crate) const SEGMENT: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'.')
    .remove(b'_')
    .remove(b'~');

/// The address of a task's resource.
pub fn task_url(task_type: &str, identifier: &str) -> String {
    format!(
        "/api/v1/tasks/{}/{}",
        utf8_percent_encode(task_type, SEGMENT),
        utf8_percent_encode(identifier, SEGMENT)
    )
}

/// A task to enqueue.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct EnqueueBody {
    /// The task type's name.
    #[serde(rename = "type")]
    #[schema(value_type = super::schema::TypeName)]
    pub task_type: String,
    /// Unique within its type: 1–64 characters, no control characters, no
    /// white space at either end. Leave it out (or `null`) when the task
    /// has no natural one: ATP makes one, a UUIDv7 in its canonical
    /// lower-case text form (so they sort by time), and returns it in the
    /// task and its `Location`.
    #[schema(value_type = Option<super::schema::TaskIdentifier>)]
    pub identifier: Option<String>,
    /// Any JSON value, handed to the handler.
    #[serde(default)]
    #[schema(examples(json!([1, 2, 3])))]
    pub input: serde_json::Value,
    /// The message of the ACCEPTED log record (no NUL characters).
    #[schema(value_type = Option<super::schema::LogMessage>)]
    pub message: Option<String>,
    /// Higher runs first (default: the type's priority, 0 unless set).
    /// FIFO within a priority; a steady stream of higher-priority work
    /// starves lower-priority work.
    pub priority: Option<i32>,
    /// Not claimed before this time (RFC 3339, years 1970–9999). Queued,
    /// and counted against the queue limit, from the enqueue on. Not with
    /// `delay_secs`.
    #[schema(format = DateTime)]
    pub due_at: Option<String>,
    /// Not claimed before this many seconds after the enqueue, on the
    /// store's clock (0 to about a hundred years). Not with `due_at`.
    #[schema(minimum = 0, maximum = 3162240000_u64)]
    pub delay_secs: Option<f64>,
}

/// The due time of an enqueue body, checked at the boundary.
fn due_of(due_at: Option<String>, delay_secs: Option<f64>) -> ApiResult<Option<Due>> {
    match (due_at, delay_secs) {
        (Some(_), Some(_)) => Err(Problem::invalid(
            "give a due time (due_at) or a delay (delay_secs), not both",
        )),
        (Some(at), None) => {
            let at = time::OffsetDateTime::parse(&at, &Rfc3339).map_err(|e| {
                Problem::invalid(format!("due_at is not an RFC 3339 date and time: {e}"))
            })?;
            Ok(Some(Due::At(at)))
        }
        (None, Some(secs)) => {
            let delay = std::time::Duration::try_from_secs_f64(secs).map_err(|_| {
                Problem::invalid(format!(
                    "delay_secs must be a non-negative number of seconds, got {secs}"
                ))
            })?;
            Ok(Some(Due::After(delay)))
        }
        (None, None) => Ok(None),
    }
}

/// Refuses a log message with a NUL character, which PostgreSQL cannot
/// store: the same 400 on every engine instead of a 500 on one.
pub(super) fn check_message(message: &str) -> ApiResult<()> {
    if message.contains('\0') {
        Err(Problem::invalid(
            "a log message must not contain NUL (U+0000) characters",
        ))
    } else {
        Ok(())
    }
}

impl EnqueueBody {
    fn into_new_task(self) -> ApiResult<NewTask> {
        let task_type = type_name(&self.task_type)?;
        let task = match self.identifier {
            Some(given) => NewTask::new(
                task_type,
                TaskIdentifier::new(given).map_err(atp_core::Error::from)?,
            ),
            None => NewTask::generated(task_type),
        };
        let mut task = task.with_input(self.input);
        if let Some(m) = self.message {
            check_message(&m)?;
            task = task.with_message(m);
        }
        task.priority = self.priority;
        task.due = due_of(self.due_at, self.delay_secs)?;
        if let Some(due) = &task.due {
            due.validate()?;
        }
        Ok(task)
    }
}

/// Tasks to enqueue all together, or none of them.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(examples(json!({"tasks": [
    {"type": "SequenceSum", "identifier": "job-2", "input": [4, 5]},
    {"type": "SequenceSum", "identifier": "job-3", "input": ["6", 7.5]},
    {"type": "SequenceSum", "input": [8]},
]})))]
pub struct BatchBody {
    /// 1 to 10,000 tasks.
    #[schema(min_items = 1, max_items = 10000)]
    pub tasks: Vec<EnqueueBody>,
}

/// A task a batch created.
#[derive(Debug, Serialize, ToSchema)]
pub struct Enqueued {
    /// Database id.
    pub id: i64,
    /// Its type.
    #[serde(rename = "type")]
    pub task_type: String,
    /// Its identifier.
    pub identifier: String,
    /// Its address.
    pub url: String,
}

/// What a batch created, in the order given.
#[derive(Debug, Serialize, ToSchema)]
pub struct BatchEnqueued {
    /// One entry per task.
    pub tasks: Vec<Enqueued>,
}

/// Filters and position of a task listing.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ListQuery {
    /// Only tasks in this status.
    pub status: Option<StatusName>,
    /// Only tasks of this type.
    #[serde(rename = "type")]
    #[param(rename = "type", value_type = Option<super::schema::TypeName>)]
    pub task_type: Option<String>,
    /// Only tasks held by this daemon (`0x…`).
    #[param(pattern = "^0[xX][0-9A-Fa-f]{1,16}$")]
    pub holder: Option<String>,
    /// Page size, 1–10,000 (default 100).
    #[param(minimum = 1, maximum = 10000)]
    pub limit: Option<u32>,
    /// Only tasks whose identifier starts with this text, character for
    /// character (case-sensitive, no wildcards: `%` and `_` are plain
    /// characters); empty means no filter. Read as an index range. At most
    /// 64 characters, as an identifier.
    #[param(max_length = 64)]
    pub identifier_prefix: Option<String>,
    /// `next_cursor` of the previous page.
    pub cursor: Option<String>,
}

/// One page of tasks, newest update first.
#[derive(Debug, Serialize, ToSchema)]
pub struct TaskList {
    /// The tasks.
    pub tasks: Vec<TaskView>,
    /// Pass as `cursor` for the next page; `null` on the last page.
    pub next_cursor: Option<String>,
}

/// Optional body of a re-enqueue.
#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ReenqueueBody {
    /// The log message (default: the store's; no NUL characters).
    #[schema(value_type = Option<super::schema::LogMessage>)]
    pub message: Option<String>,
}

/// A task's address: its type and identifier, percent-decoded.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Path)]
pub struct TaskPath {
    /// The task type's name.
    #[serde(rename = "type")]
    #[param(rename = "type", value_type = super::schema::TypeName)]
    pub task_type: String,
    /// The task's identifier (percent-encode `/` and other reserved
    /// characters).
    #[param(value_type = super::schema::TaskIdentifier)]
    pub identifier: String,
}

impl TaskPath {
    pub(super) fn task_ref(&self) -> ApiResult<TaskRef> {
        Ok(TaskRef::Key(
            type_name(&self.task_type)?,
            TaskIdentifier::new(self.identifier.clone()).map_err(atp_core::Error::from)?,
        ))
    }
}

/// A stored response's bytes, unchanged, in whatever media type its
/// handler gave: any value at all as far as the document is concerned (a
/// JSON response may be `null`, a text one any text).
pub struct RawBody;

impl utoipa::PartialSchema for RawBody {
    fn schema() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
        utoipa::openapi::ObjectBuilder::new()
            .schema_type(utoipa::openapi::schema::SchemaType::AnyValue)
            .description(Some(
                "The stored bytes, unchanged, in the media type the handler gave",
            ))
            .into()
    }
}

impl ToSchema for RawBody {}

fn created(location: &str, body: impl IntoResponse) -> Response {
    let mut response = (StatusCode::CREATED, body).into_response();
    if let Ok(value) = HeaderValue::from_str(location) {
        response.headers_mut().insert(header::LOCATION, value);
    }
    response
}

/// Enqueues one task (with a generated identifier when the body has none).
#[utoipa::path(post, path = "/api/v1/tasks", operation_id = "enqueue_task", tag = "tasks",
    request_body = EnqueueBody,
    responses(
        (status = 201, description = "Enqueued; Location names it", body = TaskView,
            headers(("Location" = String, description = "The task's address"))),
        (status = 400, description = "Invalid request", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "Unknown type", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "A task of this type and identifier exists", body = Problem, content_type = "application/problem+json"),
        (status = 413, description = "Input too large", body = Problem, content_type = "application/problem+json"),
        (status = 503, description = "Queue full (or the database does not answer); retry after Retry-After seconds", body = Problem, content_type = "application/problem+json",
            headers(("Retry-After" = u64, description = "Seconds to wait"))),
    ))]
pub async fn enqueue(
    State(state): State<AppState>,
    Json(body): Json<EnqueueBody>,
) -> ApiResult<Response> {
    let task = state.store.task_enqueue(body.into_new_task()?).await?;
    state.metrics.enqueued(&task.task_type, 1);
    let url = task_url(task.task_type.as_str(), task.identifier.as_str());
    Ok(created(&url, Json(TaskView::from(&task))))
}

/// Enqueues every task or none: a duplicate, an unknown type or a full
/// queue refuses the whole batch. Tasks without an identifier get a
/// generated one, returned in the answer.
#[utoipa::path(post, path = "/api/v1/tasks/batch", operation_id = "enqueue_batch", tag = "tasks",
    request_body = BatchBody,
    responses(
        (status = 201, description = "All enqueued", body = BatchEnqueued),
        (status = 400, description = "Invalid request", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "Unknown type", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "A task exists already (or appears twice)", body = Problem, content_type = "application/problem+json"),
        (status = 413, description = "Input too large", body = Problem, content_type = "application/problem+json"),
        (status = 503, description = "Queue full (or the database does not answer); retry after Retry-After seconds", body = Problem, content_type = "application/problem+json",
            headers(("Retry-After" = u64, description = "Seconds to wait"))),
    ))]
pub async fn enqueue_batch(
    State(state): State<AppState>,
    Json(body): Json<BatchBody>,
) -> ApiResult<Response> {
    if body.tasks.is_empty() || body.tasks.len() > MAX_BATCH {
        return Err(Problem::invalid(format!(
            "a batch holds 1 to {MAX_BATCH} tasks, this one {}",
            body.tasks.len()
        )));
    }
    let tasks = body
        .tasks
        .into_iter()
        .map(EnqueueBody::into_new_task)
        .collect::<ApiResult<Vec<_>>>()?;
    let keys: Vec<_> = tasks
        .iter()
        .map(|t| (t.task_type.clone(), t.identifier.clone()))
        .collect();
    let ids = state.store.task_enqueue_many(tasks).await?;
    for (task_type, _) in &keys {
        state.metrics.enqueued(task_type, 1);
    }
    let tasks = ids
        .into_iter()
        .zip(keys)
        .map(|(id, (t, i))| Enqueued {
            id: id.0,
            url: task_url(t.as_str(), i.as_str()),
            task_type: t.into_string(),
            identifier: i.into_string(),
        })
        .collect();
    Ok((StatusCode::CREATED, Json(BatchEnqueued { tasks })).into_response())
}

/// One page of tasks, newest update first, with a cursor for the next.
#[utoipa::path(get, path = "/api/v1/tasks", operation_id = "list_tasks", tag = "tasks",
    params(ListQuery),
    responses(
        (status = 200, description = "A page of tasks", body = TaskList),
        (status = 400, description = "Invalid filter or cursor", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "Unknown type in the `type` filter", body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn list(
    State(state): State<AppState>,
    Query(query): Query<ListQuery>,
) -> ApiResult<Json<TaskList>> {
    let filter = TaskFilter {
        status: query.status.map(Into::into),
        task_type: query.task_type.as_deref().map(type_name).transpose()?,
        holder: query
            .holder
            .as_deref()
            .map(|h| {
                h.strip_prefix("0x")
                    .or_else(|| h.strip_prefix("0X"))
                    .and_then(|hex| u64::from_str_radix(hex, 16).ok())
                    .map(DaemonId)
                    .ok_or_else(|| {
                        Problem::invalid(format!(
                            "invalid daemon id {h:?} (expected 0x and 16 hex digits)"
                        ))
                    })
            })
            .transpose()?,
        limit: match query.limit {
            Some(n @ 1..=TaskFilter::MAX_LIMIT) => n,
            None => TaskFilter::DEFAULT_LIMIT,
            Some(n) => {
                return Err(Problem::invalid(format!(
                    "limit must be 1 to {}, not {n}",
                    TaskFilter::MAX_LIMIT
                )));
            }
        },
        identifier_prefix: match query.identifier_prefix {
            Some(p) if p.chars().count() > TaskIdentifier::MAX_CHARS => {
                return Err(Problem::invalid(format!(
                    "identifier_prefix is longer than an identifier ({} characters)",
                    TaskIdentifier::MAX_CHARS
                )));
            }
            other => other,
        },
        after: query.cursor.as_deref().map(str::parse).transpose()?,
    };
    let page = state.store.task_list(&filter).await?;
    Ok(Json(TaskList {
        tasks: page.tasks.iter().map(TaskView::from).collect(),
        next_cursor: page.next.map(|c| c.to_string()),
    }))
}

/// One task, as `atp --json status` prints it.
#[utoipa::path(get, path = "/api/v1/tasks/{type}/{identifier}", operation_id = "get_task", tag = "tasks",
    params(TaskPath),
    responses(
        (status = 200, description = "The task", body = TaskView),
        (status = 400, description = "Invalid name", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such task", body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn get(
    State(state): State<AppState>,
    Path(path): Path<TaskPath>,
) -> ApiResult<Json<TaskView>> {
    let task = state.store.task_get(&path.task_ref()?).await?;
    Ok(Json(TaskView::from(&task)))
}

/// The input given at enqueue (`null` when none).
#[utoipa::path(get, path = "/api/v1/tasks/{type}/{identifier}/input", operation_id = "get_task_input", tag = "tasks",
    params(TaskPath),
    responses(
        (status = 200, description = "The input", body = serde_json::Value),
        (status = 400, description = "Invalid name", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such task", body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn input(
    State(state): State<AppState>,
    Path(path): Path<TaskPath>,
) -> ApiResult<Json<serde_json::Value>> {
    Ok(Json(state.store.task_input(&path.task_ref()?).await?))
}

/// Every status change of the task, oldest first.
#[utoipa::path(get, path = "/api/v1/tasks/{type}/{identifier}/log", operation_id = "get_task_log", tag = "tasks",
    params(TaskPath),
    responses(
        (status = 200, description = "The log", body = [LogRecordView]),
        (status = 400, description = "Invalid name", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such task", body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn log(
    State(state): State<AppState>,
    Path(path): Path<TaskPath>,
) -> ApiResult<Json<Vec<LogRecordView>>> {
    let records = state.store.task_log(&path.task_ref()?).await?;
    Ok(Json(records.iter().map(LogRecordView::from).collect()))
}

/// The stored response: its bytes with its MIME type.
#[utoipa::path(get, path = "/api/v1/tasks/{type}/{identifier}/response", operation_id = "get_task_response", tag = "tasks",
    params(TaskPath),
    responses(
        (status = 200, description = "The response body, with the stored Content-Type", content_type = "*/*", body = RawBody),
        (status = 400, description = "Invalid name", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such task, or no response yet", body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn response(
    State(state): State<AppState>,
    Path(path): Path<TaskPath>,
) -> ApiResult<Response> {
    let task = path.task_ref()?;
    let stored = state.store.task_response_get(&task).await?.ok_or_else(|| {
        Problem::new(
            StatusCode::NOT_FOUND,
            "no-response",
            "No response",
            format!("task {task} has no response (yet)"),
        )
    })?;
    let mime = HeaderValue::from_str(&stored.mime_type)
        .unwrap_or_else(|_| HeaderValue::from_static("application/octet-stream"));
    Ok(([(header::CONTENT_TYPE, mime)], stored.body).into_response())
}

/// Puts the task back in the queue (from any status but ACCEPTED), with
/// its full number of starts.
#[utoipa::path(post, path = "/api/v1/tasks/{type}/{identifier}/reenqueue", operation_id = "reenqueue_task", tag = "tasks",
    params(TaskPath),
    request_body(content = Option<ReenqueueBody>, description = "Optional log message"),
    responses(
        (status = 200, description = "Back in the queue", body = TaskView),
        (status = 400, description = "Invalid request", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such task", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "The task is waiting already", body = Problem, content_type = "application/problem+json"),
        (status = 413, description = "Body too large", body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn reenqueue(
    State(state): State<AppState>,
    Path(path): Path<TaskPath>,
    Body(body): Body,
) -> ApiResult<Json<TaskView>> {
    // The body is optional: none, `null` (as documented), or a JSON object.
    let body: ReenqueueBody = if body.iter().all(u8::is_ascii_whitespace) {
        ReenqueueBody::default()
    } else {
        serde_json::from_slice::<Option<ReenqueueBody>>(&body)
            .map_err(|e| Problem::invalid(format!("invalid JSON body: {e}")))?
            .unwrap_or_default()
    };
    // Empty: the store's own message.
    let message = body.message.unwrap_or_default();
    check_message(&message)?;
    let task = state
        .store
        .task_reenqueue(&path.task_ref()?, &message)
        .await?;
    Ok(Json(TaskView::from(&task)))
}

/// Which tasks to put back in the queue all at once.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(examples(json!({"status": "FAILED", "type": "SequenceSum"})))]
pub struct BulkReenqueueBody {
    /// Every task in this status (any but ACCEPTED).
    pub status: StatusName,
    /// Only tasks of this type; every type when left out.
    #[serde(rename = "type")]
    #[schema(value_type = Option<super::schema::TypeName>)]
    pub task_type: Option<String>,
    /// The message of each task's ACCEPTED log record; the default one when
    /// left out or empty.
    #[schema(value_type = Option<super::schema::LogMessage>)]
    pub message: Option<String>,
}

/// What a bulk re-enqueue did.
#[derive(Debug, Serialize, ToSchema)]
pub struct BulkReenqueued {
    /// How many tasks went back to the queue (0 when none matched).
    pub reenqueued: u64,
}

/// Puts every task in a status (of one type, or of all) back in the queue
/// with its full number of starts, all in one transaction: all or none.
/// Operators' re-enqueues are not bound by the queue limit.
#[utoipa::path(post, path = "/api/v1/tasks/reenqueue", operation_id = "reenqueue_tasks", tag = "tasks",
    request_body = BulkReenqueueBody,
    responses(
        (status = 200, description = "How many went back to the queue", body = BulkReenqueued),
        (status = 400, description = "Invalid request, or a status that cannot be re-enqueued (ACCEPTED)", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "Unknown type", body = Problem, content_type = "application/problem+json"),
        (status = 413, description = "Body too large", body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn reenqueue_all(
    State(state): State<AppState>,
    Json(body): Json<BulkReenqueueBody>,
) -> ApiResult<Json<BulkReenqueued>> {
    let message = body.message.unwrap_or_default();
    check_message(&message)?;
    let bulk = BulkReenqueue {
        status: body.status.into(),
        task_type: body.task_type.as_deref().map(type_name).transpose()?,
        message,
    };
    let reenqueued = state.store.task_reenqueue_all(&bulk).await?;
    Ok(Json(BulkReenqueued { reenqueued }))
}

/// Deletes the task with its log, input and response.
#[utoipa::path(delete, path = "/api/v1/tasks/{type}/{identifier}", operation_id = "delete_task", tag = "tasks",
    params(TaskPath),
    responses(
        (status = 204, description = "Deleted"),
        (status = 400, description = "Invalid name", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such task", body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn delete(
    State(state): State<AppState>,
    Path(path): Path<TaskPath>,
) -> ApiResult<StatusCode> {
    state.store.task_delete(&path.task_ref()?).await?;
    Ok(StatusCode::NO_CONTENT)
}
