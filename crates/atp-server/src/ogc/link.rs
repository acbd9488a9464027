//! Links as OGC clients follow them: absolute, built from the address the
//! client used (its `Host`, and `X-Forwarded-Proto` behind a proxy), so a
//! link works from wherever the request came.

use axum::extract::FromRequestParts;
use axum::http::header;
use axum::http::request::Parts;
use percent_encoding::utf8_percent_encode;
use serde_json::{Value, json};

use crate::AppState;
use crate::api::tasks::SEGMENT;

/// The facade's absolute base URL for this request: `http://host/ogc`.
#[derive(Debug, Clone)]
pub struct Base(pub String);

impl FromRequestParts<AppState> for Base {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &AppState,
    ) -> Result<Self, Self::Rejection> {
        let text = |name| {
            parts
                .headers
                .get(name)
                .and_then(|v| v.to_str().ok())
                .filter(|v| !v.is_empty() && !v.contains(['/', ' ', '"']))
        };
        let host = text(header::HOST)
            .or(parts.uri.authority().map(|a| a.as_str()))
            .unwrap_or("localhost");
        let scheme = match text(header::HeaderName::from_static("x-forwarded-proto")) {
            Some("https") => "https",
            _ => "http",
        };
        Ok(Base(format!("{scheme}://{host}{}", state.ogc_prefix)))
    }
}

impl Base {
    /// `base` + `path` (which starts with `/`).
    pub fn at(&self, path: &str) -> String {
        format!("{}{path}", self.0)
    }

    /// The absolute URL of a server path outside the facade (`/api/v1/…`).
    pub fn server(&self, path: &str, prefix: &str) -> String {
        let root = self.0.strip_suffix(prefix).unwrap_or(&self.0);
        format!("{root}{path}")
    }

    /// A process's URL.
    pub fn process(&self, id: &str) -> String {
        self.at(&format!("/processes/{}", segment(id)))
    }

    /// A job's URL.
    pub fn job(&self, id: &str) -> String {
        self.at(&format!("/jobs/{}", segment(id)))
    }
}

/// A path segment, percent-encoded.
pub fn segment(text: &str) -> String {
    utf8_percent_encode(text, SEGMENT).to_string()
}

/// A link object.
pub fn link(href: String, rel: &str, media_type: &str, title: &str) -> Value {
    json!({"href": href, "rel": rel, "type": media_type, "title": title})
}
