//! Refusals as HTML pages. The status code and wording of a store error
//! come from [`Problem`] (one mapping for the API and the pages); 5xx
//! causes are logged there and never shown.

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use maud::html;

use super::layout;
use crate::problem::Problem;

/// An error page: status, title and what went wrong.
#[derive(Debug)]
pub struct HtmlError {
    /// The HTTP status.
    pub status: StatusCode,
    /// The heading.
    pub title: String,
    /// The explanation (escaped like everything else).
    pub detail: String,
}

impl HtmlError {
    /// An error page with `status`.
    pub fn new(status: StatusCode, title: &str, detail: impl Into<String>) -> Self {
        HtmlError {
            status,
            title: title.to_owned(),
            detail: detail.into(),
        }
    }

    /// 400.
    pub fn bad_request(detail: impl Into<String>) -> Self {
        HtmlError::new(StatusCode::BAD_REQUEST, "Invalid request", detail)
    }

    /// 404.
    pub fn not_found(title: &str, detail: impl Into<String>) -> Self {
        HtmlError::new(StatusCode::NOT_FOUND, title, detail)
    }
}

impl From<Problem> for HtmlError {
    fn from(p: Problem) -> Self {
        HtmlError {
            status: StatusCode::from_u16(p.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR),
            title: p.title,
            detail: p.detail,
        }
    }
}

impl From<atp_core::Error> for HtmlError {
    fn from(e: atp_core::Error) -> Self {
        Problem::from(e).into()
    }
}

impl IntoResponse for HtmlError {
    fn into_response(self) -> Response {
        let body = html! {
            h1 { (self.title) }
            p.error-detail role="alert" { (self.detail) }
            p { a href="/" { "Back to the dashboard" } }
        };
        (self.status, layout::bare(&self.title, body)).into_response()
    }
}

/// What an HTML handler returns.
pub type HtmlResult<T> = Result<T, HtmlError>;
