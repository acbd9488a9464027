//! ATP over HTTP: the JSON API under `/api/v1` (OpenAPI 3.1 at
//! `/api/v1/openapi.json`), `/healthz`, Prometheus `/metrics`, the
//! original's HTML views under `/process/` and the live dashboard at `/`.
//!
//! The server is a thin layer over one [`AnyStore`]: every rule (names,
//! transitions, queue limit, input size) is the store's, and every refusal
//! becomes an RFC 9457 problem in [`problem`]. `atp serve` (crate `atp`)
//! runs it next to a daemon in one process.
//!
//! ```no_run
//! # async fn f(store: atp_store::AnyStore) -> std::io::Result<()> {
//! let state = atp_server::AppState::new(store, atp_server::ServerConfig::default());
//! let listener = tokio::net::TcpListener::bind("127.0.0.1:8080").await?;
//! atp_server::serve(listener, state, std::future::pending()).await
//! # }
//! ```

use std::net::SocketAddr;
use std::sync::Arc;

use atp_store::AnyStore;
use axum::Router;

pub mod api;
pub mod auth;
pub mod extract;
pub mod html;
pub mod metrics;
pub mod ogc;
pub mod problem;
#[cfg(feature = "testing")]
pub mod testing;
pub mod wire;

pub use auth::Tokens;
pub use metrics::Metrics;

/// How a server behaves beyond its store.
#[derive(Debug, Clone)]
pub struct ServerConfig {
    /// Accepted bearer tokens; none means no authentication.
    pub tokens: Tokens,
    /// Largest request body, in bytes (413 beyond). The store's own
    /// `max_input_bytes` still limits each task's input.
    pub max_body_bytes: usize,
    /// Where the OGC API – Processes facade is served ([`ogc`]): a path
    /// without a trailing slash, `""` for the root.
    pub ogc_prefix: String,
}

impl ServerConfig {
    /// The OGC facade's default prefix.
    pub const DEFAULT_OGC_PREFIX: &'static str = "/ogc";

    /// Default body limit: 16 MiB, room for a batch of inputs at the
    /// store's default 1 MiB each.
    pub const DEFAULT_MAX_BODY_BYTES: usize = 16 * 1024 * 1024;
}

impl Default for ServerConfig {
    fn default() -> Self {
        ServerConfig {
            tokens: Tokens::default(),
            max_body_bytes: Self::DEFAULT_MAX_BODY_BYTES,
            ogc_prefix: Self::DEFAULT_OGC_PREFIX.to_owned(),
        }
    }
}

/// What every request handler shares. Cheap to clone.
#[derive(Clone)]
pub struct AppState(Arc<Inner>);

/// The shared parts of [`AppState`].
pub struct Inner {
    /// The database.
    pub store: AnyStore,
    /// Who may call.
    pub tokens: Tokens,
    /// Counters and histograms for `/metrics`; also the daemon's observer.
    pub metrics: Arc<Metrics>,
    /// See [`ServerConfig::max_body_bytes`].
    pub max_body_bytes: usize,
    /// See [`ServerConfig::ogc_prefix`].
    pub ogc_prefix: String,
    /// The OGC facade's short memory of types (see [`ogc::TypeCache`]).
    pub ogc_types: ogc::TypeCache,
    /// Turns `true` when [`serve`] begins its graceful shutdown. Written
    /// once by `serve`; read by responses that would otherwise stay open
    /// (the dashboard's event streams end on it, so an open tab never holds
    /// a stop back).
    pub closing: tokio::sync::watch::Sender<bool>,
}

impl std::ops::Deref for AppState {
    type Target = Inner;
    fn deref(&self) -> &Inner {
        &self.0
    }
}

impl AppState {
    /// A state over `store`.
    pub fn new(store: AnyStore, config: ServerConfig) -> Self {
        AppState(Arc::new(Inner {
            store,
            tokens: config.tokens,
            metrics: Arc::new(Metrics::new()),
            max_body_bytes: config.max_body_bytes,
            ogc_prefix: config.ogc_prefix,
            ogc_types: ogc::TypeCache::default(),
            closing: tokio::sync::watch::Sender::new(false),
        }))
    }

    /// Resolves once the server has begun to shut down (at once if it
    /// has): what long-lived responses wait on beside their own work.
    pub async fn closed(&self) {
        let mut closing = self.closing.subscribe();
        // `wait_for` errs only when the sender is gone, which `self` keeps.
        let _ = closing.wait_for(|closing| *closing).await;
    }
}

/// Every route: API, metrics, health, HTML; behind the token check.
pub fn router(state: AppState) -> Router {
    Router::new()
        .merge(api::routes())
        .merge(html::routes())
        .merge(ogc::routes(&state.ogc_prefix))
        .fallback(fallback)
        .layer(axum::extract::DefaultBodyLimit::max(state.max_body_bytes))
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            auth::require_token,
        ))
        .layer(tower_http::trace::TraceLayer::new_for_http())
        .with_state(state)
}

async fn fallback(uri: axum::http::Uri) -> problem::Problem {
    problem::Problem::no_route(uri.path())
}

/// Serves `state` on `listener` until `shutdown` resolves, then finishes
/// the requests in flight. Event streams are told to end at once (through
/// [`Inner::closing`]): they are not requests that finish by themselves.
pub async fn serve(
    listener: tokio::net::TcpListener,
    state: AppState,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let closing = state.clone();
    axum::serve(listener, router(state))
        .with_graceful_shutdown(async move {
            shutdown.await;
            closing.closing.send_replace(true);
        })
        .await
}

/// Why a server refuses to start.
#[derive(Debug, thiserror::Error)]
pub enum ListenError {
    /// A non-loopback address with no token and no `--insecure`.
    #[error(
        "refusing to listen on {0} without a token: anyone who can reach it could run and delete tasks; give --token (or ATP_TOKENS), listen on 127.0.0.1, or pass --insecure"
    )]
    OpenToTheNetwork(SocketAddr),
}

/// Refuses a non-loopback address unless tokens are set or `insecure`.
pub fn check_listen(addr: SocketAddr, tokens: &Tokens, insecure: bool) -> Result<(), ListenError> {
    if addr.ip().is_loopback() || tokens.enabled() || insecure {
        Ok(())
    } else {
        Err(ListenError::OpenToTheNetwork(addr))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn non_loopback_needs_a_token_or_insecure() {
        let open: SocketAddr = "0.0.0.0:8080".parse().unwrap();
        let local: SocketAddr = "127.0.0.1:8080".parse().unwrap();
        let local6: SocketAddr = "[::1]:8080".parse().unwrap();
        let none = Tokens::default();
        let some = Tokens::new(vec!["t".into()]);
        assert!(check_listen(open, &none, false).is_err());
        assert!(check_listen(open, &some, false).is_ok());
        assert!(check_listen(open, &none, true).is_ok());
        assert!(check_listen(local, &none, false).is_ok());
        assert!(check_listen(local6, &none, false).is_ok());
    }
}
