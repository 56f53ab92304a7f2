//! Background loops that run a step every period until shutdown.

use std::future::Future;
use std::time::Duration;

/// Calls `step` at once and then every `period` (a slow step delays the next
/// one rather than piling up), until `shutdown` resolves. A step in progress
/// finishes before the loop notices the shutdown.
pub async fn every<F, Fut>(period: Duration, shutdown: impl Future<Output = ()>, mut step: F)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = ()>,
{
    tokio::pin!(shutdown);
    let mut ticker = tokio::time::interval(period);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            () = &mut shutdown => return,
            _ = ticker.tick() => step().await,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicU32, Ordering};

    #[tokio::test(start_paused = true)]
    async fn steps_run_at_once_then_every_period_until_shutdown() {
        let count = AtomicU32::new(0);
        let shutdown = tokio::time::sleep(Duration::from_millis(2500));
        every(Duration::from_secs(1), shutdown, || async {
            count.fetch_add(1, Ordering::SeqCst);
        })
        .await;
        assert_eq!(count.load(Ordering::SeqCst), 3, "at 0, 1 and 2 s");
    }
}
