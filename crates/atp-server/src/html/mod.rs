//! Server-rendered HTML: the original's views and the live dashboard.
//!
//! Every page is built with maud, which escapes every interpolated value;
//! task names, messages, inputs and responses are user data and are never
//! inserted unescaped. Pages load one stylesheet and one small script from
//! `/assets/` and run under a Content-Security-Policy that allows nothing
//! else (no inline script or style).
//!
//! # Layout
//! - [`routes`] (here) and the same-origin check of state-changing requests.
//! - `layout.rs`: the page shell, status badges, times, the counts bar.
//! - `urls.rs`: addresses with percent-encoded names, and `TaskKey`, which
//!   reads them back.
//! - `original.rs`: `/process/task`, `/process/status[/{type}/{id}]`,
//!   `/process/response/{type}/{id}`.
//! - `dashboard.rs`: `/`, the task table with filters and pages.
//! - `task_page.rs`: `/tasks/{type}/{identifier}` and its actions.
//! - `failed.rs`: `/failed`, what ended badly by type with last messages,
//!   and its bulk re-enqueue.
//! - `daemons.rs`: `/daemons`.
//! - `types.rs`: `/types`, every type with its pause state, and its pause
//!   and resume buttons.
//! - `snapshot.rs`: the counts and change token live pages and `/events`
//!   share.
//! - `live.rs`: `/events`, the stream of snapshots for live refresh.
//! - `login.rs`: `/login`, `/logout`.
//! - `assets.rs`, `assets/`: the stylesheet, the script and the icon.
//! - `error.rs`: refusals as HTML pages.

use axum::Router;
use axum::extract::Request;
use axum::http::{HeaderMap, HeaderName, HeaderValue, Method, StatusCode, Uri, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use tower_http::set_header::SetResponseHeaderLayer;

use crate::AppState;

pub use live::LIFETIME as EVENTS_LIFETIME;

mod assets;
mod daemons;
mod dashboard;
mod error;
mod failed;
mod layout;
mod live;
mod login;
mod original;
mod schedules;
mod snapshot;
mod task_page;
mod types;
pub(crate) mod urls;

/// What pages may load: their own stylesheet, script and event stream,
/// nothing inline, no framing. Responses set their own where they differ.
const PAGE_POLICY: &str = "default-src 'none'; script-src 'self'; style-src 'self'; \
    img-src 'self'; connect-src 'self'; form-action 'self'; frame-ancestors 'none'; \
    base-uri 'none'";

/// The HTML routes.
pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/", get(dashboard::page))
        .route("/tasks/{type}/{identifier}", get(task_page::page))
        .route(
            "/tasks/{type}/{identifier}/reenqueue",
            post(task_page::reenqueue),
        )
        .route("/tasks/{type}/{identifier}/delete", post(task_page::delete))
        .route("/tasks/{type}/{identifier}/cancel", post(task_page::cancel))
        .route("/failed", get(failed::page))
        .route("/failed/reenqueue", post(failed::reenqueue))
        .route("/daemons", get(daemons::page))
        .route("/types", get(types::page))
        .route("/types/{name}/pause", post(types::pause))
        .route("/types/{name}/resume", post(types::resume))
        .route("/schedules", get(schedules::page))
        .route("/schedules/{name}/pause", post(schedules::pause))
        .route("/schedules/{name}/resume", post(schedules::resume))
        .route("/events", get(live::events))
        .route("/login", get(login::form).post(login::submit))
        .route("/logout", post(login::logout))
        .route("/process/task", get(original::tasks))
        .route("/process/status", get(original::status_all))
        .route(
            "/process/status/{type}/{identifier}",
            get(original::status_one),
        )
        .route(
            "/process/response/{type}/{identifier}",
            get(original::response),
        )
        .route("/assets/atp.css", get(assets::css))
        .route("/assets/atp.js", get(assets::js))
        .route(assets::ICON_HREF, get(assets::icon))
        .layer(middleware::from_fn(same_origin))
        .layer(SetResponseHeaderLayer::if_not_present(
            header::CONTENT_SECURITY_POLICY,
            HeaderValue::from_static(PAGE_POLICY),
        ))
        .layer(SetResponseHeaderLayer::if_not_present(
            header::X_CONTENT_TYPE_OPTIONS,
            HeaderValue::from_static("nosniff"),
        ))
        .layer(SetResponseHeaderLayer::if_not_present(
            header::X_FRAME_OPTIONS,
            HeaderValue::from_static("DENY"),
        ))
        .layer(SetResponseHeaderLayer::if_not_present(
            header::REFERRER_POLICY,
            HeaderValue::from_static("same-origin"),
        ))
}

/// Refuses (403) a state-changing request whose `Origin` names another
/// site than the one it was sent to. The cookie's `SameSite=Strict`
/// already keeps other sites' forms from acting as the user; this also
/// covers browsers and set-ups where it does not hold. Requests without
/// `Origin` (programs, old browsers) are let through.
async fn same_origin(request: Request, next: Next) -> Response {
    let safe = matches!(
        *request.method(),
        Method::GET | Method::HEAD | Method::OPTIONS
    );
    if !safe {
        if let Some(origin) = request.headers().get(header::ORIGIN) {
            if !origin_matches(origin, request.headers(), request.uri()) {
                return error::HtmlError::new(
                    StatusCode::FORBIDDEN,
                    "Cross-site request refused",
                    "this form was sent from another site",
                )
                .into_response();
            }
        }
    }
    next.run(request).await
}

/// Whether `origin` (`scheme://host[:port]`) names the host the request
/// was sent to: its `Host` header, the proxy's `X-Forwarded-Host`, or the
/// URI's authority (HTTP/2). Default ports are ignored on both sides.
fn origin_matches(origin: &HeaderValue, headers: &HeaderMap, uri: &Uri) -> bool {
    let Some((scheme, host)) = origin.to_str().ok().and_then(|o| o.split_once("://")) else {
        // `null` (sandboxed or privacy-sensitive contexts) or garbage.
        return false;
    };
    let normalise = |host: &str| {
        let host = host.trim().trim_end_matches('/').to_ascii_lowercase();
        match (scheme, host.rsplit_once(':')) {
            ("http", Some((h, "80"))) | ("https", Some((h, "443"))) => h.to_owned(),
            _ => host,
        }
    };
    let origin_host = normalise(host);
    let forwarded = HeaderName::from_static("x-forwarded-host");
    headers
        .get(header::HOST)
        .into_iter()
        .chain(headers.get(&forwarded))
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(str::to_owned)
        .chain(uri.authority().map(|a| a.to_string()))
        .any(|h| normalise(&h) == origin_host)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn matches(origin: &str, host: &str) -> bool {
        let mut headers = HeaderMap::new();
        headers.insert(header::HOST, host.parse().unwrap());
        origin_matches(&origin.parse().unwrap(), &headers, &Uri::from_static("/x"))
    }

    #[test]
    fn same_host_and_port_match() {
        assert!(matches("http://127.0.0.1:8080", "127.0.0.1:8080"));
        assert!(matches("http://Example.com", "example.com:80"));
        assert!(matches("https://example.com", "example.com"));
    }

    #[test]
    fn other_hosts_ports_and_null_do_not() {
        assert!(!matches("http://evil.example", "127.0.0.1:8080"));
        assert!(!matches("http://127.0.0.1:9090", "127.0.0.1:8080"));
        assert!(!matches("null", "127.0.0.1:8080"));
    }
}
