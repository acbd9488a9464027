//! Live updates: `/events`, a server-sent event stream of the counts by
//! status and a change token, which the dashboard's script follows to
//! refresh the open page's `[data-live]` parts in place.
//!
//! Each connection reads the store once per second (one count query and
//! one single-row, index-ordered list) and sends only when something
//! changed. The stream ends when the client goes away (axum drops it at
//! the first failed write; a keep-alive comment every 5 s makes sure there
//! is one), at once when the server begins to shut down
//! ([`AppState::closed`]: an open tab must not hold a graceful stop back),
//! and in any case after [`LIFETIME`]; the browser reconnects by itself
//! after the `retry` delay.

use std::convert::Infallible;
use std::time::Duration;

use axum::extract::State;
use axum::http::HeaderName;
use axum::response::IntoResponse;
use axum::response::sse::{Event, KeepAlive, Sse};
use futures_util::stream;
use tokio::time::{Instant, Interval, MissedTickBehavior};

use super::snapshot::Snapshot;
use crate::AppState;

/// How often a connection looks for changes.
const TICK: Duration = Duration::from_secs(1);
/// How long one connection lasts before the browser is made to reconnect.
pub const LIFETIME: Duration = Duration::from_secs(10);
/// The reconnection delay the browser is told.
const RETRY: Duration = Duration::from_secs(1);

struct Follow {
    state: AppState,
    ticks: Interval,
    ends: Instant,
    last: Option<String>,
}

impl Follow {
    /// The next event: waits for a tick at which the snapshot differs from
    /// the last one sent; `None` once the connection has lived its time or
    /// the server is shutting down.
    async fn next(mut self) -> Option<(Result<Event, Infallible>, Follow)> {
        loop {
            tokio::select! {
                _ = self.ticks.tick() => {}
                () = self.state.closed() => return None,
            }
            if Instant::now() >= self.ends {
                return None;
            }
            match Snapshot::read(&self.state.store).await {
                Ok(snapshot) => {
                    let data = snapshot.to_json();
                    if self.last.as_ref() != Some(&data) {
                        let event = Event::default().retry(RETRY).data(&data);
                        self.last = Some(data);
                        return Some((Ok(event), self));
                    }
                }
                Err(e) => tracing::warn!(error = %e, "dashboard events: reading counts failed"),
            }
        }
    }
}

/// `GET /events`.
pub async fn events(State(state): State<AppState>) -> impl IntoResponse {
    let mut ticks = tokio::time::interval(TICK);
    ticks.set_missed_tick_behavior(MissedTickBehavior::Delay);
    let follow = Follow {
        state,
        ticks,
        ends: Instant::now() + LIFETIME,
        last: None,
    };
    let sse = Sse::new(stream::unfold(follow, Follow::next))
        .keep_alive(KeepAlive::new().interval(Duration::from_secs(5)));
    // Proxies such as nginx must not buffer the stream.
    ([(HeaderName::from_static("x-accel-buffering"), "no")], sse)
}
