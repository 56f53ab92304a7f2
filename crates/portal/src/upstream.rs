//! The client for the hardware tier: every replica used, failures routed around.
//!
//! A pooled HTTP client pins itself to whichever replica it first connected to,
//! so spreading load is ours to do. We resolve every address behind
//! `HARDWARE_URL` (again every `UPSTREAM_RESOLVE_INTERVAL`), address requests to
//! replicas by IP in round-robin order (reqwest pools connections per address,
//! so each replica keeps its warm connections), retry an idempotent GET once on
//! another replica, and leave a failing replica out for `UPSTREAM_EJECT_FOR`.

use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::registry::Registry;
use serde::de::DeserializeOwned;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, RwLock};
use std::time::Duration;
use tokio::time::Instant;
use url::Url;

/// Client tuning, from the settings.
#[derive(Debug, Clone)]
pub struct UpstreamSettings {
    pub urls: Vec<Url>,
    pub timeout: Duration,
    pub connect_timeout: Duration,
    pub eject_for: Duration,
}

/// Why a call to hardware failed (after its retry).
#[derive(Debug, thiserror::Error)]
pub enum UpstreamError {
    #[error("no hardware replica is known (HARDWARE_URL did not resolve)")]
    NoReplica,
    #[error("hardware at {addr} failed: {source}")]
    Transport {
        addr: SocketAddr,
        #[source]
        source: reqwest::Error,
    },
    #[error("hardware at {addr} answered {status}")]
    Status {
        addr: SocketAddr,
        status: reqwest::StatusCode,
    },
}

#[derive(Debug, Clone)]
struct Replica {
    addr: SocketAddr,
    /// Left out of rotation until then.
    ejected_until: Option<Instant>,
}

/// Labels of `upstream_calls`: one series per resolved replica and outcome.
#[derive(Debug, Clone, Hash, PartialEq, Eq, prometheus_client::encoding::EncodeLabelSet)]
struct CallLabels {
    replica: String,
    outcome: &'static str,
}

#[derive(Debug, Clone)]
struct Metrics {
    calls: Family<CallLabels, Counter>,
    not_modified: Counter,
}

#[derive(Debug)]
struct Inner {
    client: reqwest::Client,
    settings: UpstreamSettings,
    replicas: RwLock<Vec<Replica>>,
    next: AtomicUsize,
    metrics: Metrics,
}

/// A successful answer and who gave it.
#[derive(Debug)]
pub struct Answer<T> {
    /// `None`: the replica answered `304 Not Modified` to `If-None-Match`.
    pub body: Option<T>,
    /// The replica's `x-served-by`.
    pub served_by: String,
    /// The replica's address.
    pub addr: SocketAddr,
    /// The version's `ETag`, to send back as `If-None-Match` next time.
    pub etag: Option<String>,
}

/// Handle to the hardware tier; cheap to clone.
#[derive(Debug, Clone)]
pub struct Upstream {
    inner: Arc<Inner>,
}

impl Upstream {
    pub fn new(settings: UpstreamSettings, registry: &mut Registry) -> anyhow::Result<Self> {
        let client = reqwest::Client::builder()
            .connect_timeout(settings.connect_timeout)
            .timeout(settings.timeout)
            .pool_idle_timeout(Duration::from_secs(60))
            .pool_max_idle_per_host(64)
            .tcp_nodelay(true)
            .build()?;
        let metrics = Metrics {
            calls: Family::default(),
            not_modified: Counter::default(),
        };
        registry.register(
            "upstream_not_modified",
            "Answers 304 Not Modified: the replica had the version this portal holds (no body sent)",
            metrics.not_modified.clone(),
        );
        registry.register(
            "upstream_calls",
            "Calls to hardware replicas, by replica address and outcome",
            metrics.calls.clone(),
        );
        Ok(Self {
            inner: Arc::new(Inner {
                client,
                settings,
                replicas: RwLock::new(Vec::new()),
                next: AtomicUsize::new(0),
                metrics,
            }),
        })
    }

    fn replicas(&self) -> std::sync::RwLockReadGuard<'_, Vec<Replica>> {
        self.inner
            .replicas
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn replicas_mut(&self) -> std::sync::RwLockWriteGuard<'_, Vec<Replica>> {
        self.inner
            .replicas
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Resolves every URL's host; keeps the ejection state of known replicas.
    /// On a failed lookup the previous list is kept (DNS hiccups happen).
    pub async fn resolve(&self) {
        let mut found: Vec<SocketAddr> = Vec::new();
        for url in &self.inner.settings.urls {
            let (Some(host), Some(port)) = (url.host_str(), url.port_or_known_default()) else {
                continue;
            };
            let host = host.trim_start_matches('[').trim_end_matches(']');
            match tokio::net::lookup_host((host, port)).await {
                Ok(addrs) => found.extend(addrs),
                Err(err) => tracing::warn!(%url, error = %err, "cannot resolve the hardware host"),
            }
        }
        if found.is_empty() {
            return;
        }
        found.sort();
        found.dedup();
        let mut replicas = self.replicas_mut();
        let changed = replicas.len() != found.len()
            || replicas.iter().zip(&found).any(|(r, addr)| r.addr != *addr);
        if changed {
            tracing::info!(replicas = ?found, "hardware replicas");
            let previous = std::mem::take(&mut *replicas);
            *replicas = found
                .into_iter()
                .map(|addr| {
                    previous
                        .iter()
                        .find(|r| r.addr == addr)
                        .cloned()
                        .unwrap_or(Replica {
                            addr,
                            ejected_until: None,
                        })
                })
                .collect();
        }
    }

    /// Re-resolves every `period` until `shutdown`.
    pub async fn run_resolver(
        self,
        period: Duration,
        shutdown: impl std::future::Future<Output = ()>,
    ) {
        let upstream = &self;
        ops::periodic::every(period, shutdown, || upstream.resolve()).await;
    }

    /// The addresses currently known.
    pub fn known(&self) -> Vec<SocketAddr> {
        self.replicas().iter().map(|r| r.addr).collect()
    }

    /// Picks the next replica in round-robin order, skipping ejected ones and
    /// `avoid`. When every replica is ejected, ejection is ignored: trying a
    /// maybe-recovered replica beats failing without trying.
    fn pick(&self, avoid: Option<SocketAddr>) -> Option<SocketAddr> {
        let replicas = self.replicas();
        if replicas.is_empty() {
            return None;
        }
        let now = Instant::now();
        let start = self.inner.next.fetch_add(1, Ordering::Relaxed);
        let candidates = (0..replicas.len())
            .map(|offset| &replicas[(start + offset) % replicas.len()])
            .filter(|r| Some(r.addr) != avoid);
        let mut fallback = None;
        for replica in candidates {
            if replica.ejected_until.is_none_or(|until| until <= now) {
                return Some(replica.addr);
            }
            fallback.get_or_insert(replica.addr);
        }
        fallback
    }

    fn eject(&self, addr: SocketAddr) {
        let until = Instant::now() + self.inner.settings.eject_for;
        if let Some(replica) = self.replicas_mut().iter_mut().find(|r| r.addr == addr) {
            if replica.ejected_until.is_none_or(|t| t <= Instant::now()) {
                tracing::warn!(%addr, "hardware replica failing; left out for a while");
            }
            replica.ejected_until = Some(until);
        }
    }

    fn restore(&self, addr: SocketAddr) {
        let ejected = self
            .replicas()
            .iter()
            .any(|r| r.addr == addr && r.ejected_until.is_some());
        if ejected && let Some(replica) = self.replicas_mut().iter_mut().find(|r| r.addr == addr) {
            replica.ejected_until = None;
        }
    }

    fn count(&self, addr: SocketAddr, outcome: &'static str) {
        self.inner
            .metrics
            .calls
            .get_or_create(&CallLabels {
                replica: addr.to_string(),
                outcome,
            })
            .inc();
    }

    /// `GET path_and_query` as JSON from one replica, retried once on another.
    pub async fn get_json<T: DeserializeOwned>(
        &self,
        path_and_query: &str,
        if_none_match: Option<&str>,
        request_id: &str,
    ) -> Result<Answer<T>, UpstreamError> {
        self.get_json_for(
            |_| (path_and_query.to_owned(), if_none_match.map(str::to_owned)),
            request_id,
        )
        .await
    }

    /// Like [`Upstream::get_json`], with the request made for the replica
    /// picked: `request(addr)` gives the path and query and the
    /// `If-None-Match` to send it. A `4xx` is about the request, so it is
    /// not retried elsewhere.
    pub async fn get_json_for<T: DeserializeOwned>(
        &self,
        request: impl Fn(SocketAddr) -> (String, Option<String>),
        request_id: &str,
    ) -> Result<Answer<T>, UpstreamError> {
        if self.replicas().is_empty() {
            self.resolve().await;
        }
        let first = self.pick(None).ok_or(UpstreamError::NoReplica)?;
        let (path, tag) = request(first);
        match self
            .get_json_from(first, &path, tag.as_deref(), request_id)
            .await
        {
            Ok(answer) => Ok(answer),
            Err(err @ UpstreamError::Status { status, .. }) if status.is_client_error() => Err(err),
            Err(err) => {
                tracing::debug!(error = %err, "retrying on another replica");
                match self.pick(Some(first)) {
                    Some(second) => {
                        let (path, tag) = request(second);
                        self.get_json_from(second, &path, tag.as_deref(), request_id)
                            .await
                    }
                    None => Err(err),
                }
            }
        }
    }

    /// `GET path_and_query` as JSON from the replica at `addr`, not retried.
    pub async fn get_json_from<T: DeserializeOwned>(
        &self,
        addr: SocketAddr,
        path_and_query: &str,
        if_none_match: Option<&str>,
        request_id: &str,
    ) -> Result<Answer<T>, UpstreamError> {
        // Plain HTTP: the settings refuse any other scheme.
        let url = format!("http://{addr}{path_and_query}");
        let result = async {
            let mut request = self
                .inner
                .client
                .get(&url)
                .header(wire::REQUEST_ID, request_id);
            if let Some(tag) = if_none_match {
                request = request.header(reqwest::header::IF_NONE_MATCH, tag);
            }
            let response = request
                .send()
                .await
                .map_err(|source| UpstreamError::Transport { addr, source })?;
            let status = response.status();
            let not_modified = status == reqwest::StatusCode::NOT_MODIFIED;
            if !status.is_success() && !not_modified {
                return Err(UpstreamError::Status { addr, status });
            }
            let header = |name: &str| {
                response
                    .headers()
                    .get(name)
                    .and_then(|v| v.to_str().ok())
                    .map(str::to_owned)
            };
            let served_by = header(wire::SERVED_BY).unwrap_or_else(|| "unknown".to_owned());
            let etag = header(reqwest::header::ETAG.as_str());
            let body = if not_modified {
                self.inner.metrics.not_modified.inc();
                None
            } else {
                Some(
                    response
                        .json::<T>()
                        .await
                        .map_err(|source| UpstreamError::Transport { addr, source })?,
                )
            };
            Ok(Answer {
                body,
                served_by,
                addr,
                etag,
            })
        }
        .await;
        match &result {
            Ok(_) => {
                self.count(addr, "ok");
                self.restore(addr);
            }
            // A 4xx is about the request, not the replica: keep it in rotation.
            Err(UpstreamError::Status { status, .. }) if status.is_client_error() => {
                self.count(addr, "rejected");
            }
            Err(_) => {
                self.count(addr, "error");
                self.eject(addr);
            }
        }
        result
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn upstream(replicas: &[SocketAddr]) -> Upstream {
        let settings = UpstreamSettings {
            urls: vec![],
            timeout: Duration::from_secs(1),
            connect_timeout: Duration::from_secs(1),
            eject_for: Duration::from_secs(60),
        };
        let upstream = Upstream::new(settings, &mut Registry::default()).expect("client");
        *upstream.replicas_mut() = replicas
            .iter()
            .map(|&addr| Replica {
                addr,
                ejected_until: None,
            })
            .collect();
        upstream
    }

    fn addr(n: u8) -> SocketAddr {
        SocketAddr::from(([10, 0, 0, n], 5001))
    }

    fn picks(upstream: &Upstream, n: usize, avoid: Option<SocketAddr>) -> Vec<SocketAddr> {
        (0..n).filter_map(|_| upstream.pick(avoid)).collect()
    }

    #[test]
    fn picks_go_round_robin_over_every_replica() {
        let upstream = upstream(&[addr(1), addr(2), addr(3)]);
        let seen = picks(&upstream, 6, None);
        for replica in [addr(1), addr(2), addr(3)] {
            assert_eq!(
                seen.iter().filter(|&&a| a == replica).count(),
                2,
                "{seen:?}"
            );
        }
        assert_eq!(self::upstream(&[]).pick(None), None);
    }

    #[test]
    fn an_ejected_replica_is_skipped_until_restored() {
        let upstream = upstream(&[addr(1), addr(2)]);
        upstream.eject(addr(1));
        assert!(picks(&upstream, 4, None).iter().all(|&a| a == addr(2)));
        upstream.restore(addr(1));
        assert!(picks(&upstream, 4, None).contains(&addr(1)));
    }

    #[test]
    fn the_retry_avoids_the_replica_that_just_failed() {
        let upstream = upstream(&[addr(1), addr(2), addr(3)]);
        assert!(
            picks(&upstream, 6, Some(addr(2)))
                .iter()
                .all(|&a| a != addr(2))
        );
        // Only the failed one left: nothing else to try.
        assert_eq!(self::upstream(&[addr(1)]).pick(Some(addr(1))), None);
    }

    #[test]
    fn when_every_replica_is_ejected_one_is_still_tried() {
        let upstream = upstream(&[addr(1), addr(2)]);
        upstream.eject(addr(1));
        upstream.eject(addr(2));
        assert!(
            upstream.pick(None).is_some(),
            "trying beats failing untried"
        );
        assert_eq!(upstream.pick(Some(addr(1))), Some(addr(2)));
    }
}
