//! Probes for tests (the `test-util` feature; never in a release build).

use super::probe::{Probe, ProbeError, Target};
use futures_util::future::BoxFuture;
use wire::Availability;

/// Wraps a probe and counts what it is asked: calls per item and the most calls
/// ever in flight at once. Tests use it to prove singleflight and concurrency
/// bounds; it costs one short lock per probe, nothing per request.
#[derive(Debug, Default)]
pub struct CountingProbe<P> {
    inner: P,
    counts: std::sync::Mutex<Counts>,
}

#[derive(Debug, Default, Clone)]
struct Counts {
    per_item: std::collections::HashMap<u64, usize>,
    running: usize,
    max_running: usize,
}

impl<P> CountingProbe<P> {
    pub fn new(inner: P) -> Self {
        Self {
            inner,
            counts: std::sync::Mutex::default(),
        }
    }

    fn counts(&self) -> std::sync::MutexGuard<'_, Counts> {
        self.counts
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// How many times `id` was probed.
    pub fn calls(&self, id: u64) -> usize {
        self.counts().per_item.get(&id).copied().unwrap_or(0)
    }

    /// Probes started in all.
    pub fn total_calls(&self) -> usize {
        self.counts().per_item.values().sum()
    }

    /// The most probes that ever ran at the same time.
    pub fn max_concurrent(&self) -> usize {
        self.counts().max_running
    }
}

impl<P: Probe> Probe for CountingProbe<P> {
    fn check<'a>(&'a self, target: &'a Target) -> BoxFuture<'a, Result<Availability, ProbeError>> {
        Box::pin(async move {
            {
                let mut counts = self.counts();
                *counts.per_item.entry(target.id).or_default() += 1;
                counts.running += 1;
                counts.max_running = counts.max_running.max(counts.running);
            }
            // Decrement even if the probe future is dropped (timeout, shutdown).
            struct Running<'c, P>(&'c CountingProbe<P>);
            impl<P> Drop for Running<'_, P> {
                fn drop(&mut self) {
                    self.0.counts().running -= 1;
                }
            }
            let _running = Running(self);
            self.inner.check(target).await
        })
    }
}

/// A probe that fails every time: for tests of what a failing process leaves behind.
#[derive(Debug, Clone, Copy, Default)]
pub struct FailingProbe;

impl Probe for FailingProbe {
    fn check<'a>(&'a self, _target: &'a Target) -> BoxFuture<'a, Result<Availability, ProbeError>> {
        Box::pin(async { Err(ProbeError("simulated failure".into())) })
    }
}

/// A probe held until its [`Gate`] opens, then answering `HIGH` at once:
/// values stay pending exactly as long as a test needs them pending, however
/// slow the machine (a timed probe would race with the test's own steps).
#[derive(Debug, Clone)]
pub struct GatedProbe {
    open: tokio::sync::watch::Receiver<bool>,
}

/// Opens a [`GatedProbe`]; dropping it fails the probes still waiting.
#[derive(Debug)]
pub struct Gate(tokio::sync::watch::Sender<bool>);

impl GatedProbe {
    pub fn new() -> (Self, Gate) {
        let (open, gate) = tokio::sync::watch::channel(false);
        (Self { open: gate }, Gate(open))
    }
}

impl Gate {
    /// From now on every probe answers.
    pub fn open(&self) {
        self.0.send_replace(true);
    }
}

impl Probe for GatedProbe {
    fn check<'a>(&'a self, _target: &'a Target) -> BoxFuture<'a, Result<Availability, ProbeError>> {
        let mut open = self.open.clone();
        Box::pin(async move {
            open.wait_for(|open| *open)
                .await
                .map_err(|_| ProbeError("the gate was dropped".into()))?;
            Ok(Availability::High)
        })
    }
}
