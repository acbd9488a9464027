//! Riding out an unreachable database: [`retry_unavailable`] and the
//! [`Backoff`] it (and the claim loop) waits with.

use std::future::Future;
use std::time::Duration;

use atp_core::Error as StoreError;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

/// First wait after a failure.
const FIRST: Duration = Duration::from_millis(20);

/// Longest wait between two tries while the database is unreachable:
/// short, so that daemons claim again within 100 ms of its return (a
/// refused connection costs the server next to nothing).
const MOST_UNAVAILABLE: Duration = Duration::from_millis(100);

/// Longest wait between two tries after any other failure (a statement
/// the server refuses will likely be refused again).
const MOST: Duration = Duration::from_secs(5);

/// During a run of failures, a warning at most this often.
const WARN_EVERY: Duration = Duration::from_secs(10);

/// Calls `op` until it succeeds, fails for a reason other than the
/// database being unreachable, or `give_up` fires; backs off up to 100 ms.
pub(crate) async fn retry_unavailable<T, F, Fut>(
    give_up: &CancellationToken,
    what: &str,
    mut op: F,
) -> atp_core::Result<T>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = atp_core::Result<T>>,
{
    let mut backoff = Backoff::new();
    loop {
        match op().await {
            Err(e @ StoreError::Unavailable { .. }) if !give_up.is_cancelled() => {
                backoff.failed(&e, what, give_up).await;
            }
            other => {
                backoff.reset();
                return other;
            }
        }
    }
}

/// Exponential back-off from 20 ms to 100 ms while the database is
/// unreachable (to 5 s after other failures), logging the first failure
/// of a run, then at most every 10 s, and the recovery.
pub(super) struct Backoff {
    next: Duration,
    /// Failures since the last success.
    failures: u64,
    /// When the last warning was logged.
    warned: Option<Instant>,
}

impl Backoff {
    pub(super) fn new() -> Self {
        Backoff {
            next: FIRST,
            failures: 0,
            warned: None,
        }
    }

    /// A success: the next failure waits [`FIRST`] again.
    pub(super) fn reset(&mut self) {
        if self.failures > 0 {
            info!(failures = self.failures, "the database answers again");
        }
        self.next = FIRST;
        self.failures = 0;
        self.warned = None;
    }

    /// Logs `e` (see [`Backoff`]) and waits the current back-off (or until
    /// `cut_short`), then doubles it up to the cap for `e`'s kind.
    pub(super) async fn failed(
        &mut self,
        e: &StoreError,
        what: &str,
        cut_short: &CancellationToken,
    ) {
        self.failures += 1;
        if self.warned.is_none_or(|at| at.elapsed() >= WARN_EVERY) {
            self.warned = Some(Instant::now());
            warn!(error = %e, failures = self.failures, retry_in = ?self.next, "{what} failed");
        }
        tokio::select! {
            () = tokio::time::sleep(self.next) => {}
            () = cut_short.cancelled() => {}
        }
        let most = match e {
            StoreError::Unavailable { .. } => MOST_UNAVAILABLE,
            _ => MOST,
        };
        self.next = (self.next * 2).min(most);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn unavailable() -> StoreError {
        StoreError::Unavailable {
            message: "down".into(),
            source: "connection refused".into(),
        }
    }

    /// The waits of `n` failures in a row with `e`.
    async fn waits(b: &mut Backoff, e: &StoreError, n: usize) -> Vec<Duration> {
        let never = CancellationToken::new();
        let mut waits = Vec::new();
        for _ in 0..n {
            let before = tokio::time::Instant::now();
            b.failed(e, "testing", &never).await;
            waits.push(before.elapsed());
        }
        waits
    }

    #[tokio::test(start_paused = true)]
    async fn an_unreachable_database_is_tried_again_at_least_every_100_ms() {
        let mut b = Backoff::new();
        let ms = |n| Duration::from_millis(n);
        assert_eq!(
            waits(&mut b, &unavailable(), 6).await,
            [ms(20), ms(40), ms(80), ms(100), ms(100), ms(100)]
        );
        b.reset();
        assert_eq!(waits(&mut b, &unavailable(), 1).await, [FIRST]);
    }

    #[tokio::test(start_paused = true)]
    async fn other_failures_back_off_up_to_five_seconds() {
        let mut b = Backoff::new();
        let refused = StoreError::InvalidArgument("no".into());
        let ms = |n| Duration::from_millis(n);
        assert_eq!(
            waits(&mut b, &refused, 10).await,
            [
                ms(20),
                ms(40),
                ms(80),
                ms(160),
                ms(320),
                ms(640),
                ms(1280),
                ms(2560),
                MOST,
                MOST
            ]
        );
    }

    #[tokio::test(start_paused = true)]
    async fn only_an_unreachable_database_is_retried() {
        let never = CancellationToken::new();
        let mut calls = 0;
        let r: atp_core::Result<u32> = retry_unavailable(&never, "testing", || {
            calls += 1;
            let n = calls;
            async move { if n < 3 { Err(unavailable()) } else { Ok(n) } }
        })
        .await;
        assert_eq!(r.unwrap(), 3);
        let mut calls = 0;
        let r: atp_core::Result<()> = retry_unavailable(&never, "testing", || {
            calls += 1;
            async { Err(StoreError::InvalidArgument("no".into())) }
        })
        .await;
        assert!(matches!(r, Err(StoreError::InvalidArgument(_))));
        assert_eq!(calls, 1);
    }
}
