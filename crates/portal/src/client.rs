//! Who a request comes from, and how much of the portal one client may hold.
//!
//! - [`ClientKey`]: the identity every per-client bound counts by — an IPv4
//!   address, or an IPv6 /64 (one subscriber usually holds a whole /64, so a
//!   /128 key would let one client be billions).
//! - [`TrustedProxies`] (`TRUSTED_PROXIES`): peers whose `Forwarded` /
//!   `X-Forwarded-For` is believed. Any other peer is the client itself,
//!   whatever headers it sends.
//! - [`Quota`]: a global and a per-client cap on something held open
//!   (connections, event streams), released when the [`Pass`] is dropped.

use axum::http::HeaderMap;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;
use std::collections::HashMap;
use std::fmt;
use std::net::{IpAddr, Ipv6Addr};
use std::str::FromStr;
use std::sync::{Arc, Mutex};

/// A client as the per-client bounds count it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct ClientKey(IpAddr);

impl ClientKey {
    /// IPv4 (and IPv4-mapped IPv6) as is; other IPv6 addresses by their /64.
    pub fn of(ip: IpAddr) -> Self {
        match ip {
            IpAddr::V4(_) => Self(ip),
            IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
                Some(v4) => Self(IpAddr::V4(v4)),
                None => Self(IpAddr::V6(Ipv6Addr::from(
                    u128::from(v6) & !u128::from(u64::MAX),
                ))),
            },
        }
    }
}

impl fmt::Display for ClientKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0 {
            IpAddr::V4(v4) => write!(f, "{v4}"),
            IpAddr::V6(v6) => write!(f, "{v6}/64"),
        }
    }
}

/// An address block such as `10.0.0.0/8`, `fd00::/8` or a single address.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cidr {
    network: IpAddr,
    prefix: u8,
}

impl FromStr for Cidr {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let text = text.trim();
        let (addr, prefix) = match text.split_once('/') {
            Some((addr, prefix)) => (addr, Some(prefix)),
            None => (text, None),
        };
        let network: IpAddr = addr
            .parse()
            .map_err(|_| format!("`{text}` is not an address or CIDR block"))?;
        let max = if network.is_ipv4() { 32 } else { 128 };
        let prefix = match prefix {
            None => max,
            Some(p) => p
                .parse::<u8>()
                .ok()
                .filter(|p| *p <= max)
                .ok_or_else(|| format!("`{text}`: the prefix length must be 0 to {max}"))?,
        };
        Ok(Self { network, prefix })
    }
}

impl fmt::Display for Cidr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.network, self.prefix)
    }
}

/// A comma-separated list of [`Cidr`] blocks; empty means none.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CidrList(pub Vec<Cidr>);

impl FromStr for CidrList {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        text.split(',')
            .map(str::trim)
            .filter(|block| !block.is_empty())
            .map(str::parse)
            .collect::<Result<Vec<_>, _>>()
            .map(Self)
    }
}

impl Cidr {
    pub fn contains(&self, ip: IpAddr) -> bool {
        let ip = match ip {
            IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
            v4 => v4,
        };
        match (self.network, ip) {
            (IpAddr::V4(net), IpAddr::V4(ip)) => {
                let mask = u32::MAX
                    .checked_shl(32 - u32::from(self.prefix))
                    .unwrap_or(0);
                u32::from(net) & mask == u32::from(ip) & mask
            }
            (IpAddr::V6(net), IpAddr::V6(ip)) => {
                let mask = u128::MAX
                    .checked_shl(128 - u32::from(self.prefix))
                    .unwrap_or(0);
                u128::from(net) & mask == u128::from(ip) & mask
            }
            _ => false,
        }
    }
}

/// The proxies whose forwarding headers are believed (`TRUSTED_PROXIES`).
#[derive(Debug, Clone, Default)]
pub struct TrustedProxies(Arc<[Cidr]>);

/// One hop of a forwarding header: an address, or something that is not one.
fn hop(text: &str) -> Option<IpAddr> {
    let text = text.trim().trim_matches('"');
    if let Some(rest) = text.strip_prefix('[') {
        // "[2001:db8::1]:4711"
        return rest.split(']').next()?.parse().ok();
    }
    if let Ok(ip) = text.parse() {
        return Some(ip);
    }
    // "192.0.2.1:4711"
    let (addr, port) = text.rsplit_once(':')?;
    port.parse::<u16>().ok()?;
    addr.parse().ok()
}

/// The hops a request passed through, nearest last: from `Forwarded` when
/// present (RFC 7239), else from `X-Forwarded-For`. `None` marks a hop that is
/// not an address (`unknown`, an obfuscated name, garbage).
fn hops(headers: &HeaderMap) -> Vec<Option<IpAddr>> {
    let forwarded: Vec<Option<IpAddr>> = headers
        .get_all("forwarded")
        .iter()
        .filter_map(|value| value.to_str().ok())
        .flat_map(|value| value.split(','))
        .filter_map(|element| {
            element.split(';').find_map(|pair| {
                let (name, value) = pair.split_once('=')?;
                name.trim().eq_ignore_ascii_case("for").then(|| hop(value))
            })
        })
        .collect();
    if !forwarded.is_empty() {
        return forwarded;
    }
    headers
        .get_all("x-forwarded-for")
        .iter()
        .filter_map(|value| value.to_str().ok())
        .flat_map(|value| value.split(','))
        .map(hop)
        .collect()
}

impl TrustedProxies {
    pub fn new(blocks: &[Cidr]) -> Self {
        Self(blocks.into())
    }

    pub fn trusts(&self, ip: IpAddr) -> bool {
        self.0.iter().any(|block| block.contains(ip))
    }

    /// The address of the client behind `peer`: `peer` itself unless it is a
    /// trusted proxy; then, walking the forwarding hops from the nearest, the
    /// first address that is not a trusted proxy (a hop that is not an
    /// address stops the walk at the proxy that wrote it).
    pub fn client_ip(&self, peer: IpAddr, headers: &HeaderMap) -> IpAddr {
        if !self.trusts(peer) {
            return peer;
        }
        let mut client = peer;
        for hop in hops(headers).into_iter().rev() {
            match hop {
                Some(ip) => {
                    client = ip;
                    if !self.trusts(ip) {
                        break;
                    }
                }
                None => break,
            }
        }
        client
    }
}

#[derive(Debug, Default)]
struct Held {
    total: usize,
    per_client: HashMap<ClientKey, usize>,
}

/// A global and a per-client cap on things held open.
#[derive(Debug, Clone)]
pub struct Quota {
    max_total: usize,
    max_per_client: usize,
    held: Arc<Mutex<Held>>,
    metrics: Option<QuotaMetrics>,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ReasonLabel {
    reason: &'static str,
}

/// What a [`Quota`] shows in `/metrics`: `<name>_open` and
/// `<name>_refused_total{reason="full"|"client_full"}`.
#[derive(Debug, Clone)]
pub struct QuotaMetrics {
    open: Gauge,
    refused: Family<ReasonLabel, Counter>,
}

impl QuotaMetrics {
    /// `what` names the things held ("Connections on the public listener");
    /// `caps` the settings behind the two reasons.
    pub fn register(registry: &mut Registry, name: &str, what: &str, caps: &str) -> Self {
        let metrics = Self {
            open: Gauge::default(),
            refused: Family::default(),
        };
        registry.register(
            format!("{name}_open"),
            format!("{what} open"),
            metrics.open.clone(),
        );
        registry.register(
            format!("{name}_refused"),
            format!("{what} refused: {caps}"),
            metrics.refused.clone(),
        );
        metrics
    }
}

/// Why a [`Quota`] said no.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refused {
    /// The global cap is reached.
    Full,
    /// This client holds its share already.
    ClientFull,
}

impl Refused {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Full => "full",
            Self::ClientFull => "client_full",
        }
    }
}

/// One thing held; dropping it gives the place back.
#[derive(Debug)]
pub struct Pass {
    quota: Quota,
    client: Option<ClientKey>,
}

impl Quota {
    /// `max_per_client` of 0 means no per-client cap.
    pub fn new(max_total: usize, max_per_client: usize) -> Self {
        Self {
            max_total,
            max_per_client,
            held: Arc::default(),
            metrics: None,
        }
    }

    /// The same quota, counting what it holds and refuses in `metrics`.
    pub fn counted(self, metrics: QuotaMetrics) -> Self {
        Self {
            metrics: Some(metrics),
            ..self
        }
    }

    fn refuse(&self, why: Refused) -> Result<Pass, Refused> {
        if let Some(metrics) = &self.metrics {
            metrics
                .refused
                .get_or_create(&ReasonLabel {
                    reason: why.as_str(),
                })
                .inc();
        }
        Err(why)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Held> {
        self.held
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Takes a place for `client` (`None`: counted only globally, as for a
    /// trusted proxy carrying many clients).
    pub fn enter(&self, client: Option<ClientKey>) -> Result<Pass, Refused> {
        let mut held = self.lock();
        if held.total >= self.max_total {
            return self.refuse(Refused::Full);
        }
        if let Some(key) = client
            && self.max_per_client > 0
        {
            let mine = held.per_client.entry(key).or_default();
            if *mine >= self.max_per_client {
                return self.refuse(Refused::ClientFull);
            }
            *mine += 1;
        }
        held.total += 1;
        if let Some(metrics) = &self.metrics {
            metrics.open.inc();
        }
        Ok(Pass {
            quota: self.clone(),
            client: client.filter(|_| self.max_per_client > 0),
        })
    }

    /// Places held now.
    pub fn held(&self) -> usize {
        self.lock().total
    }
}

impl Drop for Pass {
    fn drop(&mut self) {
        if let Some(metrics) = &self.quota.metrics {
            metrics.open.dec();
        }
        let mut held = self.quota.lock();
        held.total = held.total.saturating_sub(1);
        if let Some(key) = self.client
            && let Some(mine) = held.per_client.get_mut(&key)
        {
            *mine = mine.saturating_sub(1);
            if *mine == 0 {
                held.per_client.remove(&key);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;

    fn ip(text: &str) -> IpAddr {
        text.parse().expect("ip")
    }

    fn trusted(list: &[&str]) -> TrustedProxies {
        let blocks: Vec<Cidr> = list.iter().map(|b| b.parse().expect("cidr")).collect();
        TrustedProxies::new(&blocks)
    }

    #[test]
    fn ipv6_clients_are_keyed_by_their_64() {
        assert_eq!(
            ClientKey::of(ip("2001:db8:1:2::1")),
            ClientKey::of(ip("2001:db8:1:2:ffff::9"))
        );
        assert_ne!(
            ClientKey::of(ip("2001:db8:1:2::1")),
            ClientKey::of(ip("2001:db8:1:3::1"))
        );
        assert_eq!(
            ClientKey::of(ip("::ffff:192.0.2.1")),
            ClientKey::of(ip("192.0.2.1"))
        );
        assert_eq!(
            ClientKey::of(ip("2001:db8::7")).to_string(),
            "2001:db8::/64"
        );
    }

    #[test]
    fn cidr_blocks_parse_and_match() {
        let block: Cidr = "10.0.0.0/8".parse().expect("cidr");
        assert!(block.contains(ip("10.1.2.3")));
        assert!(block.contains(ip("::ffff:10.1.2.3")));
        assert!(!block.contains(ip("11.0.0.1")));
        let single: Cidr = "192.0.2.7".parse().expect("cidr");
        assert!(single.contains(ip("192.0.2.7")) && !single.contains(ip("192.0.2.8")));
        let v6: Cidr = "fd00::/8".parse().expect("cidr");
        assert!(v6.contains(ip("fd12::1")) && !v6.contains(ip("fe80::1")));
        assert!(
            "0.0.0.0/0"
                .parse::<Cidr>()
                .expect("cidr")
                .contains(ip("1.2.3.4"))
        );
        assert!("10.0.0.0/33".parse::<Cidr>().is_err());
        assert!("proxy.local".parse::<Cidr>().is_err());
    }

    fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for (name, value) in pairs {
            map.append(*name, HeaderValue::from_str(value).expect("value"));
        }
        map
    }

    #[test]
    fn an_empty_list_trusts_nobody() {
        assert_eq!("".parse::<CidrList>(), Ok(CidrList::default()));
        assert_eq!(" , ".parse::<CidrList>(), Ok(CidrList::default()));
        assert_eq!(
            "10.0.0.0/8, ::1".parse::<CidrList>().map(|l| l.0.len()),
            Ok(2)
        );
        assert!("10.0.0.0/8,x".parse::<CidrList>().is_err());
    }

    #[test]
    fn forwarding_headers_count_only_from_trusted_proxies() {
        let proxies = trusted(&["10.0.0.0/8"]);
        let forwarded = headers(&[("x-forwarded-for", "198.51.100.7")]);
        assert_eq!(
            proxies.client_ip(ip("203.0.113.1"), &forwarded),
            ip("203.0.113.1"),
            "an untrusted peer's header is ignored"
        );
        assert_eq!(
            proxies.client_ip(ip("10.0.0.5"), &forwarded),
            ip("198.51.100.7")
        );
        assert_eq!(
            proxies.client_ip(ip("10.0.0.5"), &HeaderMap::new()),
            ip("10.0.0.5"),
            "a trusted peer with no header is the client"
        );
    }

    #[test]
    fn the_nearest_untrusted_hop_is_the_client() {
        let proxies = trusted(&["10.0.0.0/8"]);
        // The client wrote a fake first hop; the proxies appended the real ones.
        let chain = headers(&[("x-forwarded-for", "1.1.1.1, 198.51.100.7, 10.0.0.9")]);
        assert_eq!(
            proxies.client_ip(ip("10.0.0.5"), &chain),
            ip("198.51.100.7")
        );
        let garbage = headers(&[("x-forwarded-for", "198.51.100.7, nonsense")]);
        assert_eq!(
            proxies.client_ip(ip("10.0.0.5"), &garbage),
            ip("10.0.0.5"),
            "a hop that is not an address stops at the proxy that wrote it"
        );
    }

    #[test]
    fn forwarded_wins_over_x_forwarded_for() {
        let proxies = trusted(&["10.0.0.0/8"]);
        let both = headers(&[
            (
                "forwarded",
                "for=192.0.2.60;proto=http, for=\"[2001:db8::1]:4711\"",
            ),
            ("x-forwarded-for", "198.51.100.7"),
        ]);
        assert_eq!(proxies.client_ip(ip("10.0.0.5"), &both), ip("2001:db8::1"));
        let port = headers(&[("forwarded", "for=192.0.2.60:8080")]);
        assert_eq!(proxies.client_ip(ip("10.0.0.5"), &port), ip("192.0.2.60"));
    }

    #[test]
    fn a_quota_caps_each_client_and_the_total() {
        let quota = Quota::new(3, 2);
        let a = Some(ClientKey::of(ip("192.0.2.1")));
        let b = Some(ClientKey::of(ip("192.0.2.2")));
        let first = quota.enter(a).expect("a 1");
        let _second = quota.enter(a).expect("a 2");
        assert_eq!(quota.enter(a).expect_err("a 3"), Refused::ClientFull);
        let _third = quota.enter(b).expect("b 1");
        assert_eq!(quota.enter(b).expect_err("total"), Refused::Full);
        drop(first);
        let _again = quota.enter(a).expect("a place given back is reusable");
        assert_eq!(quota.held(), 3);
    }

    #[test]
    fn unkeyed_entries_count_only_globally() {
        let quota = Quota::new(3, 1);
        let passes: Vec<Pass> = (0..3).map(|_| quota.enter(None).expect("room")).collect();
        assert_eq!(quota.enter(None).expect_err("full"), Refused::Full);
        drop(passes);
        assert_eq!(quota.held(), 0);
        assert!(quota.lock().per_client.is_empty());
    }
}
