//! Operations: stats, live daemons, health and metrics.

use atp_core::Store;
use axum::extract::State;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use utoipa::ToSchema;

use crate::AppState;
use crate::extract::Json;
use crate::problem::{ApiResult, Problem};
use crate::wire::{DaemonView, StatsView};

/// Counts by status and type, the queue size and the number of live
/// daemons, as `atp --json stats` prints them.
#[utoipa::path(get, path = "/api/v1/stats", operation_id = "get_stats", tag = "operations",
    responses((status = 200, description = "Counts", body = StatsView)))]
pub async fn stats(State(state): State<AppState>) -> ApiResult<Json<StatsView>> {
    let counts = state.store.task_counts().await?;
    let queued = state.store.queue_size().await?;
    let daemons = state.store.daemon_list().await?;
    Ok(Json(StatsView::new(&counts, queued, daemons.len())))
}

/// Live daemons, oldest first.
#[utoipa::path(get, path = "/api/v1/daemons", operation_id = "list_daemons", tag = "operations",
    responses((status = 200, description = "Live daemons", body = [DaemonView])))]
pub async fn daemons(State(state): State<AppState>) -> ApiResult<Json<Vec<DaemonView>>> {
    let daemons = state.store.daemon_list().await?;
    Ok(Json(daemons.iter().map(DaemonView::from).collect()))
}

/// Health: the database answers.
#[derive(Debug, Serialize, ToSchema)]
pub struct Health {
    /// Always `ok` in a 200.
    pub status: String,
    /// `sqlite` or `postgres`.
    pub engine: String,
    /// The database's schema version.
    pub schema_version: u32,
}

/// 200 when the database answers, else a 503 problem.
#[utoipa::path(get, path = "/healthz", operation_id = "healthz", tag = "operations",
    responses(
        (status = 200, description = "Healthy", body = Health),
        (status = 503, description = "The database does not answer", body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn healthz(State(state): State<AppState>) -> ApiResult<Json<Health>> {
    let version = state.store.schema_version().await.map_err(|e| {
        Problem::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "unavailable",
            "Database unavailable",
            e.to_string(),
        )
    })?;
    Ok(Json(Health {
        status: "ok".into(),
        engine: state.store.engine().into(),
        schema_version: version,
    }))
}

/// Prometheus metrics in the OpenMetrics text format.
#[utoipa::path(get, path = "/metrics", operation_id = "metrics", tag = "operations",
    responses((status = 200, description = "Metrics", content_type = "application/openmetrics-text", body = String)))]
pub async fn metrics(State(state): State<AppState>) -> ApiResult<Response> {
    let text = state.metrics.render(&state.store).await?;
    Ok((
        [(
            header::CONTENT_TYPE,
            HeaderValue::from_static(crate::metrics::CONTENT_TYPE),
        )],
        text,
    )
        .into_response())
}
