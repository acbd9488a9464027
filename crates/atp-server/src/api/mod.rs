//! The JSON API under `/api/v1`, `/healthz` and `/metrics`, and the
//! OpenAPI 3.1 document generated from the handlers' annotations.

use axum::Router;
use axum::routing::{get, post};
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::{OpenApi, PartialSchema};

use crate::AppState;

pub mod cancel;
pub mod ops;
pub mod schedules;
pub mod schema;
pub mod tasks;
pub mod types;

/// The API's OpenAPI document.
#[derive(OpenApi)]
#[openapi(
    info(title = "ATP", description = "Durable asynchronous task processing: enqueue tasks, follow them, read their responses."),
    paths(
        types::list, types::get, types::put, types::delete, types::pause, types::resume,
        tasks::enqueue, tasks::enqueue_batch, tasks::list, tasks::reenqueue_all, tasks::get,
        tasks::input,
        tasks::log, tasks::response, tasks::reenqueue, tasks::delete,
        cancel::cancel,
        ops::stats, ops::daemons, ops::healthz, ops::metrics,
        schedules::list, schedules::create, schedules::get, schedules::delete,
        schedules::pause, schedules::resume,
    ),
    components(schemas(crate::problem::Problem)),
    modifiers(&BearerAuth, &StatusCodes),
    tags(
        (name = "types", description = "Task types"),
        (name = "tasks", description = "Tasks"),
        (name = "operations", description = "Counts, daemons, health, metrics"),
        (name = "schedules", description = "Periodic tasks: cron expressions that enqueue a task at every occurrence"),
    )
)]
pub struct ApiDoc;

/// Declares the bearer scheme and applies it to every operation but
/// `/healthz` (which is public); servers without tokens simply do not check
/// it. Adds the refusals any operation may give: 401 (when tokens are
/// configured) and 503 (the database does not answer).
struct BearerAuth;

/// The path anyone may fetch without a token (see `auth::is_public`).
const PUBLIC_PATH: &str = "/healthz";

impl utoipa::Modify for BearerAuth {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        use utoipa::openapi::{ContentBuilder, HeaderBuilder, Ref, RefOr, ResponseBuilder};

        let problem = || {
            ContentBuilder::new()
                .schema(Some(Ref::from_schema_name("Problem")))
                .build()
        };
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(HttpBuilder::new().scheme(HttpAuthScheme::Bearer).build()),
        );
        components.responses.insert(
            "Unauthorized".into(),
            ResponseBuilder::new()
                .description("This server needs a bearer token and got none or a wrong one")
                .content(crate::problem::PROBLEM_JSON, problem())
                .header(
                    "WWW-Authenticate",
                    HeaderBuilder::new()
                        .schema(String::schema())
                        .description(Some("`Bearer realm=\"atp\"`"))
                        .build(),
                )
                .build()
                .into(),
        );
        components.responses.insert(
            "Unavailable".into(),
            ResponseBuilder::new()
                .description("The database does not answer; retry after Retry-After seconds")
                .content(crate::problem::PROBLEM_JSON, problem())
                .header(
                    "Retry-After",
                    HeaderBuilder::new()
                        .schema(u64::schema())
                        .description(Some("Seconds to wait"))
                        .build(),
                )
                .build()
                .into(),
        );
        openapi.security = Some(vec![utoipa::openapi::security::SecurityRequirement::new(
            "bearer",
            Vec::<String>::new(),
        )]);
        for (path, item) in openapi.paths.paths.iter_mut() {
            for operation in [
                &mut item.get,
                &mut item.put,
                &mut item.post,
                &mut item.delete,
                &mut item.patch,
            ]
            .into_iter()
            .flatten()
            {
                let responses = &mut operation.responses.responses;
                if path == PUBLIC_PATH {
                    operation.security = Some(Vec::new());
                } else {
                    responses
                        .entry("401".into())
                        .or_insert_with(|| RefOr::Ref(Ref::from_response_name("Unauthorized")));
                }
                responses
                    .entry("503".into())
                    .or_insert_with(|| RefOr::Ref(Ref::from_response_name("Unavailable")));
            }
        }
    }
}

/// Writes the list of status codes ([`crate::wire::status_codes_text`],
/// built from `Status::ALL`) into every `status_code` field's description,
/// where a doc comment would be a copy that drifts.
struct StatusCodes;

/// The schemas with a `status_code` field.
const WITH_STATUS_CODE: [&str; 2] = ["TaskView", "LogRecordView"];

impl utoipa::Modify for StatusCodes {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        use utoipa::openapi::{RefOr, Schema};

        let text = crate::wire::status_codes_text();
        let Some(components) = openapi.components.as_mut() else {
            return;
        };
        for name in WITH_STATUS_CODE {
            if let Some(RefOr::T(Schema::Object(object))) = components.schemas.get_mut(name) {
                if let Some(RefOr::T(Schema::Object(field))) =
                    object.properties.get_mut("status_code")
                {
                    field.description = Some(text.clone());
                }
            }
        }
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
        .route("/api/v1/types/{name}/pause", post(types::pause))
        .route("/api/v1/types/{name}/resume", post(types::resume))
        .route("/api/v1/tasks", get(tasks::list).post(tasks::enqueue))
        .route("/api/v1/tasks/batch", post(tasks::enqueue_batch))
        .route("/api/v1/tasks/reenqueue", post(tasks::reenqueue_all))
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
        .route(
            "/api/v1/tasks/{type}/{identifier}/cancel",
            post(cancel::cancel),
        )
        .route("/api/v1/stats", get(ops::stats))
        .route("/api/v1/daemons", get(ops::daemons))
        .route("/healthz", get(ops::healthz))
        .route(
            "/api/v1/schedules",
            get(schedules::list).post(schedules::create),
        )
        .route(
            "/api/v1/schedules/{name}",
            get(schedules::get).delete(schedules::delete),
        )
        .route("/api/v1/schedules/{name}/pause", post(schedules::pause))
        .route("/api/v1/schedules/{name}/resume", post(schedules::resume))
        .route("/metrics", get(ops::metrics))
        .method_not_allowed_fallback(method_not_allowed)
}

/// A 405 is a problem like every other refusal; axum still adds `Allow`.
async fn method_not_allowed(
    method: axum::http::Method,
    uri: axum::http::Uri,
) -> crate::problem::Problem {
    crate::problem::Problem::method_not_allowed(&method, uri.path())
}
