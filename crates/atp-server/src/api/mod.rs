//! The JSON API under `/api/v1`, `/healthz` and `/metrics`, and the
//! OpenAPI 3.1 document generated from the handlers' annotations.

use axum::Router;
use axum::routing::{get, post};
use utoipa::OpenApi;
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};

use crate::AppState;

pub mod ops;
pub mod tasks;
pub mod types;

/// The API's OpenAPI document.
#[derive(OpenApi)]
#[openapi(
    info(title = "ATP", description = "Durable asynchronous task processing: enqueue tasks, follow them, read their responses."),
    paths(
        types::list, types::get, types::put, types::delete,
        tasks::enqueue, tasks::enqueue_batch, tasks::list, tasks::get, tasks::input,
        tasks::log, tasks::response, tasks::reenqueue, tasks::delete,
        ops::stats, ops::daemons, ops::healthz, ops::metrics,
    ),
    components(schemas(crate::problem::Problem)),
    modifiers(&BearerAuth),
    tags(
        (name = "types", description = "Task types"),
        (name = "tasks", description = "Tasks"),
        (name = "operations", description = "Counts, daemons, health, metrics"),
    )
)]
pub struct ApiDoc;

/// Declares the bearer scheme and applies it to every operation; servers
/// without tokens simply do not check it.
struct BearerAuth;

impl utoipa::Modify for BearerAuth {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(HttpBuilder::new().scheme(HttpAuthScheme::Bearer).build()),
        );
        openapi.security = Some(vec![utoipa::openapi::security::SecurityRequirement::new(
            "bearer",
            Vec::<String>::new(),
        )]);
    }
}

/// The document as JSON.
pub fn openapi_json() -> String {
    ApiDoc::openapi()
        .to_pretty_json()
        .unwrap_or_else(|e| format!("{{\"error\": \"{e}\"}}"))
}

async fn openapi() -> impl axum::response::IntoResponse {
    (
        [(axum::http::header::CONTENT_TYPE, "application/json")],
        openapi_json(),
    )
}

/// The API routes.
pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/api/v1/openapi.json", get(openapi))
        .route("/api/v1/types", get(types::list))
        .route(
            "/api/v1/types/{name}",
            get(types::get).put(types::put).delete(types::delete),
        )
        .route("/api/v1/tasks", get(tasks::list).post(tasks::enqueue))
        .route("/api/v1/tasks/batch", post(tasks::enqueue_batch))
        .route(
            "/api/v1/tasks/{type}/{identifier}",
            get(tasks::get).delete(tasks::delete),
        )
        .route("/api/v1/tasks/{type}/{identifier}/input", get(tasks::input))
        .route("/api/v1/tasks/{type}/{identifier}/log", get(tasks::log))
        .route(
            "/api/v1/tasks/{type}/{identifier}/response",
            get(tasks::response),
        )
        .route(
            "/api/v1/tasks/{type}/{identifier}/reenqueue",
            post(tasks::reenqueue),
        )
        .route("/api/v1/stats", get(ops::stats))
        .route("/api/v1/daemons", get(ops::daemons))
        .route("/healthz", get(ops::healthz))
        .route("/metrics", get(ops::metrics))
}
