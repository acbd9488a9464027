//! Addresses of the HTML pages, built with every name percent-encoded, and
//! [`TaskKey`], which reads a task's name back from the path.
//!
//! A task is addressed by two path segments (`/tasks/{type}/{identifier}`),
//! which axum percent-decodes after routing, so identifiers with `/`, `?`,
//! `#`, `%`, spaces or non-ASCII round-trip. (`.` and `..`, which no URL
//! can carry as a segment, are not valid names.)

use atp_core::{TaskIdentifier, TaskRef, TypeName};
use axum::extract::{FromRequestParts, Path};
use axum::http::request::Parts;
use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, utf8_percent_encode};

use super::error::HtmlError;

/// Everything but RFC 3986's unreserved characters is escaped, in path
/// segments and in query values alike.
const COMPONENT: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'.')
    .remove(b'_')
    .remove(b'~');

/// `value` percent-encoded for a path segment or a query value.
pub fn enc(value: &str) -> String {
    utf8_percent_encode(value, COMPONENT).to_string()
}

fn keyed(path: &str, task_type: &str, identifier: &str, suffix: &str) -> String {
    format!("{path}/{}/{}{suffix}", enc(task_type), enc(identifier))
}

/// The dashboard's page of a task.
pub fn task_page(task_type: &str, identifier: &str) -> String {
    keyed("/tasks", task_type, identifier, "")
}

/// Where a task page's form posts `action` (`reenqueue`, `delete`).
pub fn task_action(task_type: &str, identifier: &str, action: &str) -> String {
    keyed("/tasks", task_type, identifier, &format!("/{action}"))
}

/// Where the types page's forms post `action` (`pause`, `resume`).
pub fn type_action(task_type: &str, action: &str) -> String {
    format!("/types/{}/{action}", enc(task_type))
}

/// Where the schedules page's forms post `action` (`pause`, `resume`).
pub fn schedule_action(schedule: &str, action: &str) -> String {
    format!("/schedules/{}/{action}", enc(schedule))
}

/// The original's log view of one task.
pub fn process_status(task_type: &str, identifier: &str) -> String {
    keyed("/process/status", task_type, identifier, "")
}

/// The task as a job of the OGC API – Processes facade (its statusInfo).
pub fn ogc_job(prefix: &str, identifier: &str) -> String {
    format!("{prefix}/jobs/{}", crate::ogc::segment(identifier))
}

/// The original's response view of one task.
pub fn process_response(task_type: &str, identifier: &str) -> String {
    keyed("/process/response", task_type, identifier, "")
}

/// The API's address of a task's response (the download link).
pub fn api_response(task_type: &str, identifier: &str) -> String {
    format!(
        "{}/response",
        crate::api::tasks::task_url(task_type, identifier)
    )
}

/// `path` with the given query parameters (those with a value), encoded.
pub fn with_query(path: &str, params: &[(&str, Option<&str>)]) -> String {
    let mut url = path.to_owned();
    let mut sep = '?';
    for (name, value) in params {
        if let Some(value) = value {
            url.push(sep);
            url.push_str(name);
            url.push('=');
            url.push_str(&enc(value));
            sep = '&';
        }
    }
    url
}

/// A task named by the path segments `{type}` and `{identifier}`, decoded.
#[derive(Debug, Clone)]
pub struct TaskKey {
    /// The type's name.
    pub task_type: String,
    /// The identifier.
    pub identifier: String,
}

impl TaskKey {
    /// The store's reference, or a 400 page for an invalid name.
    pub fn task_ref(&self) -> Result<TaskRef, HtmlError> {
        let invalid = |e| HtmlError::from(atp_core::Error::from(e));
        Ok(TaskRef::Key(
            TypeName::new(self.task_type.clone()).map_err(invalid)?,
            TaskIdentifier::new(self.identifier.clone()).map_err(invalid)?,
        ))
    }
}

impl<S: Send + Sync> FromRequestParts<S> for TaskKey {
    type Rejection = HtmlError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, HtmlError> {
        let Path((task_type, identifier)) =
            Path::<(String, String)>::from_request_parts(parts, state)
                .await
                .map_err(|e| HtmlError::bad_request(e.body_text()))?;
        Ok(TaskKey {
            task_type,
            identifier,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_encoded_as_single_segments() {
        assert_eq!(
            task_page("T", "a/b?c#d%e f é"),
            "/tasks/T/a%2Fb%3Fc%23d%25e%20f%20%C3%A9"
        );
        assert_eq!(task_action("T", "x", "delete"), "/tasks/T/x/delete");
        assert_eq!(process_status("T", "x.y"), "/process/status/T/x.y");
        assert_eq!(process_response("a b", "~"), "/process/response/a%20b/~");
        assert_eq!(type_action("a/b c", "pause"), "/types/a%2Fb%20c/pause");
    }

    #[test]
    fn query_skips_missing_values() {
        assert_eq!(with_query("/", &[("a", None), ("b", None)]), "/");
        assert_eq!(
            with_query("/", &[("status", Some("RUNNING")), ("type", Some("a&b"))]),
            "/?status=RUNNING&type=a%26b"
        );
    }
}
