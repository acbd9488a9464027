//! OGC API – Processes (Part 1: Core, 1.0) over ATP: every task type is a
//! process, every task of it a job (its identifier the job id), so an OGC
//! client's jobs get the whole of ATP behind them: the durable queue, many
//! daemons, rescue, fencing and the status log.
//!
//! Served under [`ServerConfig::ogc_prefix`](crate::ServerConfig) (default
//! `/ogc`), behind the server's tokens like every other route:
//! `landing.rs` (landing page, conformance, this facade's OpenAPI
//! document), `process.rs` (types as process summaries and descriptions),
//! `execute.rs` (execution requests), `job.rs` (statusInfo, job list,
//! results, dismiss), `exception.rs` (the OGC exception types as RFC 9457
//! problems), `link.rs` (absolute links from the request's host).

mod exception;
mod execute;
mod job;
mod landing;
mod link;
mod process;

pub use link::segment;
pub use process::TypeCache;

use axum::Router;
use axum::routing::{get, post};

use crate::AppState;

/// The facade's routes under `prefix` (no trailing slash; `""` serves it
/// at the root).
pub fn routes(prefix: &str) -> Router<AppState> {
    let at = |path: &str| format!("{prefix}{path}");
    let mut router = Router::new()
        .route(&at("/"), get(landing::landing))
        .route(&at("/conformance"), get(landing::conformance))
        .route(&at("/api"), get(landing::openapi))
        .route(&at("/processes"), get(process::list))
        .route(&at("/processes/{id}"), get(process::describe))
        .route(&at("/processes/{id}/execution"), post(execute::execute))
        .route(&at("/jobs"), get(job::list))
        .route(&at("/jobs/{id}"), get(job::status).delete(job::dismiss))
        .route(&at("/jobs/{id}/results"), get(job::results));
    if !prefix.is_empty() {
        router = router.route(prefix, get(landing::landing));
    }
    router
}
