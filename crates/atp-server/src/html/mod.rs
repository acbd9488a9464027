//! Server-rendered HTML: the original's views and the dashboard.

use axum::Router;

use crate::AppState;

/// The HTML routes.
pub fn routes() -> Router<AppState> {
    Router::new()
}
