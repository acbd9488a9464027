//! Errors as RFC 9457 `application/problem+json`.
//!
//! Every refusal the API gives goes through [`Problem`], so the status code
//! of an error kind is decided in one place ([`Problem::from`] for the
//! store's errors) and every body has the same shape.

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use utoipa::ToSchema;

/// The media type of problem bodies.
pub const PROBLEM_JSON: &str = "application/problem+json";

/// An RFC 9457 problem.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct Problem {
    /// A URI reference naming the kind of problem (relative to the API).
    #[serde(rename = "type")]
    pub kind: String,
    /// Short summary of the kind.
    pub title: String,
    /// The HTTP status code.
    pub status: u16,
    /// What went wrong with this request.
    pub detail: String,
    /// Seconds after which a retry may succeed (queue full, unavailable).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub retry_after: Option<u64>,
    /// Where and how an input fails its type's schema (`input-invalid`).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub violations: Vec<ViolationView>,
}

/// One way an input fails its type's input schema.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct ViolationView {
    /// Where in the input, as a JSON Pointer (`""`: the input itself).
    pub path: String,
    /// What is wrong there.
    pub message: String,
}

impl Problem {
    /// A problem of `kind` (a fragment of `/api/v1/problems`) with `status`.
    pub fn new(status: StatusCode, kind: &str, title: &str, detail: impl Into<String>) -> Self {
        Problem {
            kind: format!("/api/v1/problems#{kind}"),
            title: title.to_owned(),
            status: status.as_u16(),
            detail: detail.into(),
            retry_after: None,
            violations: Vec::new(),
        }
    }

    /// 400: the request is malformed or a value breaks a rule.
    pub fn invalid(detail: impl Into<String>) -> Self {
        Problem::new(
            StatusCode::BAD_REQUEST,
            "invalid",
            "Invalid request",
            detail,
        )
    }

    /// 401: no or a wrong bearer token.
    pub fn unauthorized() -> Self {
        Problem::new(
            StatusCode::UNAUTHORIZED,
            "unauthorized",
            "Unauthorized",
            "this server needs `Authorization: Bearer <token>`",
        )
    }

    /// 404 for a path no route serves.
    pub fn no_route(path: &str) -> Self {
        Problem::new(
            StatusCode::NOT_FOUND,
            "not-found",
            "Not found",
            format!("nothing is served at {path}"),
        )
    }

    /// 405 for a method a route does not serve (the router adds `Allow`).
    pub fn method_not_allowed(method: &axum::http::Method, path: &str) -> Self {
        Problem::new(
            StatusCode::METHOD_NOT_ALLOWED,
            "method-not-allowed",
            "Method not allowed",
            format!("{path} does not answer {method}; its Allow header lists what it does"),
        )
    }

    /// 413: the body or the input is too large.
    pub fn too_large(detail: impl Into<String>) -> Self {
        Problem::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "too-large",
            "Payload too large",
            detail,
        )
    }

    fn retry_after(mut self, secs: u64) -> Self {
        self.retry_after = Some(secs);
        self
    }

    fn status_code(&self) -> StatusCode {
        StatusCode::from_u16(self.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR)
    }
}

impl From<atp_core::Error> for Problem {
    fn from(e: atp_core::Error) -> Self {
        use atp_core::Error as E;
        let detail = e.to_string();
        match e {
            E::InvalidName(_) | E::InvalidArgument(_) => Problem::invalid(detail),
            E::TypeNotFound(_) => Problem::new(
                StatusCode::NOT_FOUND,
                "type-not-found",
                "Unknown task type",
                detail,
            ),
            E::TaskNotFound(_) => Problem::new(
                StatusCode::NOT_FOUND,
                "task-not-found",
                "No such task",
                detail,
            ),
            E::ScheduleNotFound(_) => Problem::new(
                StatusCode::NOT_FOUND,
                "schedule-not-found",
                "No such schedule",
                detail,
            ),
            E::DuplicateTask { .. } => Problem::new(
                StatusCode::CONFLICT,
                "duplicate-task",
                "Task exists already",
                detail,
            ),
            E::TypeHasTasks { .. } => Problem::new(
                StatusCode::CONFLICT,
                "type-has-tasks",
                "Task type still has tasks",
                detail,
            ),
            E::InvalidTransition { .. } => Problem::new(
                StatusCode::CONFLICT,
                "invalid-transition",
                "Status does not allow this",
                detail,
            ),
            E::QueueFull { .. } => Problem::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "queue-full",
                "Queue full",
                detail,
            )
            .retry_after(5),
            E::InputTooLarge { .. } => Problem::too_large(detail),
            E::InputInvalid { violations, .. } => {
                let mut p = Problem::new(
                    StatusCode::BAD_REQUEST,
                    "input-invalid",
                    "Input does not match the type's schema",
                    detail,
                );
                p.violations = violations
                    .into_iter()
                    .map(|v| ViolationView {
                        path: v.path,
                        message: v.message,
                    })
                    .collect();
                p
            }
            E::TypeChanged { .. } => Problem::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "type-changed",
                "Task type changed meanwhile",
                detail,
            )
            .retry_after(1),
            E::Unavailable { .. } => Problem::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "unavailable",
                "Database unavailable",
                detail,
            )
            .retry_after(2),
            _ => {
                tracing::error!(error = %detail, "request failed");
                Problem::new(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "internal",
                    "Internal error",
                    "the server could not complete the request; its log has the cause",
                )
            }
        }
    }
}

impl IntoResponse for Problem {
    fn into_response(self) -> Response {
        let status = self.status_code();
        let retry_after = self.retry_after;
        let body = serde_json::to_vec(&self).unwrap_or_default();
        let mut response = (status, body).into_response();
        let headers = response.headers_mut();
        headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(PROBLEM_JSON));
        if let Some(secs) = retry_after {
            headers.insert(header::RETRY_AFTER, HeaderValue::from(secs));
        }
        if status == StatusCode::UNAUTHORIZED {
            headers.insert(
                header::WWW_AUTHENTICATE,
                HeaderValue::from_static("Bearer realm=\"atp\""),
            );
        }
        response
    }
}

/// The result of an API handler.
pub type ApiResult<T> = Result<T, Problem>;
