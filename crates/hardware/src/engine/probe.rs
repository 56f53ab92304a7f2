//! Where availability values come from.

use futures_util::future::BoxFuture;
use rand::Rng;
use std::sync::Arc;
use std::time::Duration;
use wire::Availability;

/// What a probe is asked about. Its texts are shared (a clone copies two
/// counts): the inventory snapshot, the engine and every list made from them
/// hold one copy of an item's texts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    pub id: u64,
    pub provider: Arc<str>,
    pub name: Arc<str>,
}

/// Why a probe gave no value.
#[derive(Debug, thiserror::Error)]
#[error("probe failed: {0}")]
pub struct ProbeError(pub String);

/// The slow process that tells how available an item is.
///
/// The simulated one sleeps; a real one would call a cloud provider's API. The
/// engine calls it off the request path, at most once per item at a time.
pub trait Probe: Send + Sync + 'static {
    fn check<'a>(&'a self, target: &'a Target) -> BoxFuture<'a, Result<Availability, ProbeError>>;
}

/// The stand-in for the real process: waits `delay`, then answers a random level.
#[derive(Debug, Clone)]
pub struct SimulatedProbe {
    delay: Duration,
}

impl SimulatedProbe {
    pub fn new(delay: Duration) -> Self {
        Self { delay }
    }
}

impl Probe for SimulatedProbe {
    fn check<'a>(&'a self, _target: &'a Target) -> BoxFuture<'a, Result<Availability, ProbeError>> {
        Box::pin(async move {
            tokio::time::sleep(self.delay).await;
            let level = match rand::rng().random_range(0..3) {
                0 => Availability::High,
                1 => Availability::Medium,
                _ => Availability::Low,
            };
            Ok(level)
        })
    }
}

impl<P: Probe + ?Sized> Probe for std::sync::Arc<P> {
    fn check<'a>(&'a self, target: &'a Target) -> BoxFuture<'a, Result<Availability, ProbeError>> {
        (**self).check(target)
    }
}
