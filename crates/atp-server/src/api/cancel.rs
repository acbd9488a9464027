//! `POST /api/v1/tasks/{type}/{identifier}/cancel`: an operator's
//! cancellation (see `Store::task_cancel`).

use atp_core::Store;
use axum::extract::State;
use serde::Deserialize;
use utoipa::ToSchema;

use super::tasks::{TaskPath, check_message};
use crate::AppState;
use crate::extract::{Body, Json, Path};
use crate::problem::{ApiResult, Problem};
use crate::wire::TaskView;

/// Optional body of a cancel.
#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(examples(json!({"message": "wrong input"})))]
pub struct CancelBody {
    /// Why: the CANCELLED log record says "Cancelled: MESSAGE" (default
    /// "Cancelled by an operator"; no NUL characters).
    #[schema(value_type = Option<super::schema::LogMessage>)]
    pub message: Option<String>,
}

/// Cancels the task: a queued one never runs; a held one (SCHEDULED,
/// RUNNING, PAUSED) is CANCELLED at once, its daemon is told and stops the
/// attempt (an `exec:` program gets SIGTERM, then its process group
/// SIGKILL after the daemon's grace), and the attempt's late result is
/// refused. Re-enqueue brings it back.
#[utoipa::path(post, path = "/api/v1/tasks/{type}/{identifier}/cancel", operation_id = "cancel_task", tag = "tasks",
    params(TaskPath),
    request_body(content = Option<CancelBody>, description = "Optional reason for the log"),
    responses(
        (status = 200, description = "Cancelled", body = TaskView),
        (status = 400, description = "Invalid request", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such task", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "The task has ended already (FINISHED, FAILED or CANCELLED)", body = Problem, content_type = "application/problem+json"),
        (status = 413, description = "Body too large", body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn cancel(
    State(state): State<AppState>,
    Path(path): Path<TaskPath>,
    Body(body): Body,
) -> ApiResult<Json<TaskView>> {
    // The body is optional: none, `null`, or a JSON object.
    let body: CancelBody = if body.iter().all(u8::is_ascii_whitespace) {
        CancelBody::default()
    } else {
        serde_json::from_slice::<Option<CancelBody>>(&body)
            .map_err(|e| Problem::invalid(format!("invalid JSON body: {e}")))?
            .unwrap_or_default()
    };
    let message = body.message.unwrap_or_default();
    check_message(&message)?;
    let message = Some(message.as_str()).filter(|m| !m.is_empty());
    let task = state.store.task_cancel(&path.task_ref()?, message).await?;
    state.metrics.cancelled(&task.task_type);
    Ok(Json(TaskView::from(&task)))
}
