//! Riding out an unreachable database: [`retry_unavailable`] and the
//! [`Backoff`] it (and the claim loop) waits with.

use std::future::Future;
use std::time::Duration;

use atp_core::Error as StoreError;
use tokio_util::sync::CancellationToken;
use tracing::warn;

/// First wait after a failure.
const FIRST: Duration = Duration::from_millis(50);

/// Longest wait between two tries.
const MOST: Duration = Duration::from_secs(5);

/// Calls `op` until it succeeds, fails for a reason other than the
/// database being unreachable, or `give_up` fires; backs off up to 5 s.
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
            other => return other,
        }
    }
}

/// Exponential back-off from 50 ms to 5 s, logging each failure.
pub(super) struct Backoff {
    next: Duration,
}

impl Backoff {
    pub(super) fn new() -> Self {
        Backoff { next: FIRST }
    }

    pub(super) fn reset(&mut self) {
        self.next = FIRST;
    }

    /// Logs `e` and waits the current back-off (or until `cut_short`),
    /// then doubles it.
    pub(super) async fn failed(
        &mut self,
        e: &StoreError,
        what: &str,
        cut_short: &CancellationToken,
    ) {
        warn!(error = %e, retry_in = ?self.next, "{what} failed");
        tokio::select! {
            () = tokio::time::sleep(self.next) => {}
            () = cut_short.cancelled() => {}
        }
        self.next = (self.next * 2).min(MOST);
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

    #[tokio::test(start_paused = true)]
    async fn the_back_off_doubles_up_to_its_cap_and_resets() {
        let never = CancellationToken::new();
        let mut b = Backoff::new();
        let mut waits = Vec::new();
        for _ in 0..9 {
            let before = tokio::time::Instant::now();
            b.failed(&unavailable(), "testing", &never).await;
            waits.push(before.elapsed());
        }
        let ms = |n| Duration::from_millis(n);
        assert_eq!(
            waits,
            [
                ms(50),
                ms(100),
                ms(200),
                ms(400),
                ms(800),
                ms(1600),
                ms(3200),
                MOST,
                MOST
            ]
        );
        b.reset();
        let before = tokio::time::Instant::now();
        b.failed(&unavailable(), "testing", &never).await;
        assert_eq!(before.elapsed(), FIRST);
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
