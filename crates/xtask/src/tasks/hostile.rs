//! The hostile-client drill: what one anonymous client can make the public
//! portal hold, against a release portal with 1,000 items and rate limiting
//! off (so the other bounds are what is measured).
//!
//! Attacks, each alone and then all together, each bounded in time:
//! - views: thousands of distinct large views (100–500 rows);
//! - methods: thousands of made-up HTTP methods (metric labels);
//! - heads: 800 connections holding unfinished heads, trickling a byte a
//!   second (spread over 20 loopback addresses, so the per-client cap does
//!   not hide the header timeout);
//! - streams: 300 event streams opened and never read (one address, then
//!   spread over 40 addresses so they are really held);
//! - burst: new connections as fast as one client can open them.
//!
//! Throughout, a normal visitor on 127.0.0.2 loads `/` every 20 ms on a new
//! connection. Each phase prints the portal's idle and peak RSS and the
//! visitor's latencies; checks: RSS within 64 MB of idle, the visitor's p99
//! within 100 ms with every answer 200, unfinished heads closed by the server
//! within the header timeout, the process still up.
//!
//! Traffic goes only to the portal this drill started on 127.0.0.1.

use crate::support::http::{http_get, wait_for_200};
use crate::support::mariadb::MariaDb;
use crate::support::process::{Service, rss_of_pid};
use crate::support::services::{seed, start_hardware, start_portal_with};
use crate::support::{Result, free_port};
use socket2::{Domain, SockAddr, Socket, Type};
use std::io::{ErrorKind, Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpStream};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::thread;
use std::time::{Duration, Instant};

const ITEMS: usize = 1_000;
const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(5);
const PHASE: Duration = Duration::from_secs(8);
const RSS_BOUND_MB: f64 = 64.0;
const P99_BOUND_MS: f64 = 100.0;
const VISITOR: Ipv4Addr = Ipv4Addr::new(127, 0, 0, 2);
const ATTACKER: Ipv4Addr = Ipv4Addr::new(127, 0, 0, 1);

/// A TCP connection to the portal from `source` (any address of 127/8).
fn connect_from(source: Ipv4Addr, port: u16) -> std::io::Result<TcpStream> {
    let socket = Socket::new(Domain::IPV4, Type::STREAM, None)?;
    socket.bind(&SockAddr::from(SocketAddr::from((source, 0))))?;
    socket.connect_timeout(
        &SockAddr::from(SocketAddr::from(([127, 0, 0, 1], port))),
        Duration::from_secs(2),
    )?;
    Ok(socket.into())
}

/// Sends `request` on a new connection from `source` and reads the whole
/// answer: its status (0 when none) and how long it took.
fn exchange(source: Ipv4Addr, port: u16, request: &[u8]) -> (u16, Duration) {
    let started = Instant::now();
    let status = connect_from(source, port)
        .and_then(|mut stream| {
            stream.set_read_timeout(Some(Duration::from_secs(5)))?;
            stream.write_all(request)?;
            let mut answer = Vec::new();
            let _ = stream.read_to_end(&mut answer);
            Ok(String::from_utf8_lossy(&answer)
                .split_whitespace()
                .nth(1)
                .and_then(|code| code.parse().ok())
                .unwrap_or(0))
        })
        .unwrap_or(0);
    (status, started.elapsed())
}

fn get(path: &str) -> Vec<u8> {
    format!("GET {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n").into_bytes()
}

/// The normal visitor and the RSS sampler, for the length of a phase.
struct Watch {
    stop: Arc<AtomicBool>,
    visitor: thread::JoinHandle<Vec<(u16, Duration)>>,
    sampler: thread::JoinHandle<f64>,
}

impl Watch {
    fn start(port: u16, pid: u32) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let visitor = {
            let stop = Arc::clone(&stop);
            thread::spawn(move || {
                let mut seen = Vec::new();
                while !stop.load(Ordering::Relaxed) {
                    seen.push(exchange(VISITOR, port, &get("/")));
                    thread::sleep(Duration::from_millis(20));
                }
                seen
            })
        };
        let sampler = {
            let stop = Arc::clone(&stop);
            thread::spawn(move || {
                let mut peak: f64 = 0.0;
                while !stop.load(Ordering::Relaxed) {
                    peak = peak.max(rss_of_pid(pid));
                    thread::sleep(Duration::from_millis(50));
                }
                peak
            })
        };
        Self {
            stop,
            visitor,
            sampler,
        }
    }

    /// Stops both; returns (visitor answers, peak RSS in MB).
    fn finish(self) -> (Vec<(u16, Duration)>, f64) {
        self.stop.store(true, Ordering::Relaxed);
        let seen = self.visitor.join().unwrap_or_default();
        let peak = self.sampler.join().unwrap_or(0.0);
        (seen, peak)
    }
}

/// Runs `work` on `threads` threads until `until`; returns how many times it ran.
fn hammer(
    threads: usize,
    until: Instant,
    work: impl Fn(u64) + Send + Sync + 'static,
) -> thread::JoinHandle<u64> {
    let work = Arc::new(work);
    let count = Arc::new(AtomicU64::new(0));
    thread::spawn(move || {
        let handles: Vec<_> = (0..threads)
            .map(|_| {
                let work = Arc::clone(&work);
                let count = Arc::clone(&count);
                thread::spawn(move || {
                    while Instant::now() < until {
                        let n = count.fetch_add(1, Ordering::Relaxed);
                        work(n);
                    }
                })
            })
            .collect();
        for handle in handles {
            let _ = handle.join();
        }
        count.load(Ordering::Relaxed)
    })
}

/// Distinct large views: per_page 100–500, five sorts, two orders, two pages.
fn view_path(n: u64) -> String {
    let sorts = ["id", "name", "provider", "availability", "checked"];
    let per_page = 100 + n % 401;
    let sort = sorts[(n / 401 % 5) as usize];
    let order = if (n / 2005).is_multiple_of(2) {
        "asc"
    } else {
        "desc"
    };
    let page = 1 + n / 4010 % 2;
    format!("/?q=m0&per_page={per_page}&sort={sort}&order={order}&page={page}")
}

fn views(port: u16, until: Instant) -> thread::JoinHandle<u64> {
    hammer(16, until, move |n| {
        exchange(ATTACKER, port, &get(&view_path(n)));
    })
}

fn methods(port: u16, until: Instant) -> thread::JoinHandle<u64> {
    hammer(4, until, move |n| {
        let request = format!("X{n} / HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n");
        exchange(ATTACKER, port, request.as_bytes());
    })
}

fn burst(port: u16, until: Instant) -> thread::JoinHandle<u64> {
    hammer(8, until, move |_| {
        if let Ok(mut stream) = connect_from(ATTACKER, port) {
            let _ = stream.write_all(b"GET / HTTP/1.1\r\nHost: x\r\n");
        }
    })
}

/// What happened to the unfinished heads.
struct Heads {
    opened: usize,
    /// Seconds from sending the unfinished head to the server's close, per
    /// connection (seen within the 250 ms the watcher sleeps between looks).
    closed_after: Vec<f64>,
    still_open: usize,
}

/// Opens `count` connections over `addresses` loopback sources, each sending
/// an unfinished head and then a byte a second, until the server closes them
/// or `limit` passes.
fn heads(port: u16, count: usize, addresses: u8, limit: Duration) -> thread::JoinHandle<Heads> {
    thread::spawn(move || {
        let started = Instant::now();
        let mut open: Vec<Option<(TcpStream, Instant)>> = Vec::new();
        let mut closed_after = Vec::new();
        for i in 0..count {
            let source = Ipv4Addr::new(127, 0, 1, 1 + (i % usize::from(addresses)) as u8);
            match connect_from(source, port) {
                Ok(mut stream) => {
                    let mut head = b"GET / HTTP/1.1\r\nHost: localhost\r\nX-Pad: ".to_vec();
                    head.extend(std::iter::repeat_n(b'a', 8 * 1024));
                    let _ = stream.write_all(&head);
                    let _ = stream.set_nonblocking(true);
                    open.push(Some((stream, Instant::now())));
                }
                Err(_) => closed_after.push(0.0),
            }
        }
        let opened = open.len();
        let mut buf = [0u8; 512];
        while started.elapsed() < limit && open.iter().any(Option::is_some) {
            for slot in &mut open {
                let Some((stream, opened)) = slot else {
                    continue;
                };
                let gone = match stream.read(&mut buf) {
                    Ok(0) => true,
                    Ok(_) => false,
                    Err(err) if err.kind() == ErrorKind::WouldBlock => {
                        matches!(stream.write(b"a"), Err(err) if err.kind() != ErrorKind::WouldBlock)
                    }
                    Err(_) => true,
                };
                if gone {
                    closed_after.push(opened.elapsed().as_secs_f64());
                    *slot = None;
                }
            }
            thread::sleep(Duration::from_millis(250));
        }
        Heads {
            opened,
            still_open: open.iter().filter(|s| s.is_some()).count(),
            closed_after,
        }
    })
}

/// Opens `count` event streams (since=0: each wants the full snapshot) over
/// `addresses` sources and never reads them; holds them until `until`.
fn streams(
    port: u16,
    count: usize,
    addresses: u8,
    until: Instant,
) -> thread::JoinHandle<(usize, usize)> {
    thread::spawn(move || {
        let mut held = Vec::new();
        let (mut accepted, mut refused) = (0, 0);
        for i in 0..count {
            let source = if addresses <= 1 {
                ATTACKER
            } else {
                Ipv4Addr::new(127, 0, 2, 1 + (i % usize::from(addresses)) as u8)
            };
            let Ok(mut stream) = connect_from(source, port) else {
                refused += 1;
                continue;
            };
            let _ = stream.write_all(&get("/events?since=0"));
            // Peek at the status line only; the rest is never read.
            let _ = stream.set_read_timeout(Some(Duration::from_secs(2)));
            let mut line = [0u8; 12];
            match stream.read_exact(&mut line) {
                Ok(()) if line.ends_with(b"200") => {
                    accepted += 1;
                    held.push(stream);
                }
                _ => refused += 1,
            }
        }
        while Instant::now() < until {
            thread::sleep(Duration::from_millis(100));
        }
        drop(held);
        (accepted, refused)
    })
}

fn p99(seen: &[(u16, Duration)]) -> (f64, f64, usize) {
    let mut ms: Vec<f64> = seen.iter().map(|(_, d)| d.as_secs_f64() * 1000.0).collect();
    ms.sort_by(f64::total_cmp);
    let at = |q: f64| {
        ms.get(((ms.len() as f64 * q).ceil() as usize).saturating_sub(1))
            .copied()
            .unwrap_or(f64::NAN)
    };
    let not_ok = seen.iter().filter(|(status, _)| *status != 200).count();
    (at(0.99), ms.last().copied().unwrap_or(f64::NAN), not_ok)
}

fn series(admin: u16) -> usize {
    http_get(admin, "/metrics")
        .map(|(_, body, ..)| {
            String::from_utf8_lossy(&body)
                .lines()
                .filter(|l| l.starts_with("portal_http_requests_total"))
                .count()
        })
        .unwrap_or(0)
}

/// The drill; results go to `check` (what, passed).
pub fn run(db: &MariaDb, check: &mut dyn FnMut(&str, bool)) -> Result {
    let hardware_port = free_port()?;
    let _hardware = start_hardware(
        db,
        hardware_port,
        &[
            ("PROBE_DELAY", "200ms".to_owned()),
            ("AVAILABILITY_TTL", "5s".to_owned()),
        ],
    )?;
    wait_for_200(hardware_port, "/readyz", Duration::from_secs(30))?;
    // After the start: the schema exists; hardware picks the rows up within
    // its inventory refresh.
    seed(db, ITEMS)?;
    let (port, admin) = (free_port()?, free_port()?);
    let timeout = format!("{}s", HEADER_READ_TIMEOUT.as_secs());
    let portal: Service = start_portal_with(
        &format!("http://127.0.0.1:{hardware_port}"),
        port,
        admin,
        &[
            ("RATE_LIMIT_PER_SECOND", "0"),
            ("HEADER_READ_TIMEOUT", &timeout),
        ],
    )?;
    wait_for_200(port, "/", Duration::from_secs(10))?;
    let pid = portal.0.id();
    // Warm: the inventory picked up and probed, the page rendered a few times.
    thread::sleep(Duration::from_secs(4));
    for _ in 0..20 {
        exchange(VISITOR, port, &get("/"));
    }
    let idle = rss_of_pid(pid);
    println!(
        "drill figure: hostile: release portal, {ITEMS} items, rate limit off, header timeout {timeout}; idle RSS {idle:.1} MB"
    );
    let series_before = series(admin);

    let phases: [(&str, Phase); 6] = [
        ("distinct large views", |port, until| {
            vec![Attack::Count("views", views(port, until))]
        }),
        ("made-up methods", |port, until| {
            vec![Attack::Count("methods", methods(port, until))]
        }),
        ("800 unfinished heads", |port, _| {
            vec![Attack::Heads(heads(
                port,
                800,
                20,
                HEADER_READ_TIMEOUT + Duration::from_secs(4),
            ))]
        }),
        ("300 unread event streams", |port, until| {
            vec![
                Attack::Streams("one address", streams(port, 300, 1, until)),
                Attack::Streams("40 addresses", streams(port, 300, 40, until)),
            ]
        }),
        ("burst of new connections", |port, until| {
            vec![Attack::Count("connections", burst(port, until))]
        }),
        ("all together", |port, until| {
            vec![
                Attack::Count("views", views(port, until)),
                Attack::Count("methods", methods(port, until)),
                Attack::Heads(heads(
                    port,
                    800,
                    20,
                    HEADER_READ_TIMEOUT + Duration::from_secs(4),
                )),
                Attack::Streams("one address", streams(port, 300, 1, until)),
                Attack::Count("connections", burst(port, until)),
            ]
        }),
    ];
    for (name, start) in phases {
        println!("== hostile client: {name}");
        let watch = Watch::start(port, pid);
        let until = Instant::now() + PHASE;
        let attacks = start(port, until);
        let mut notes = Vec::new();
        for attack in attacks {
            match attack {
                Attack::Count(what, handle) => {
                    notes.push(format!("{} {what}", handle.join().unwrap_or(0)));
                }
                Attack::Streams(how, handle) => {
                    let (accepted, refused) = handle.join().unwrap_or((0, 0));
                    notes.push(format!(
                        "streams from {how}: {accepted} held, {refused} refused"
                    ));
                }
                Attack::Heads(handle) => {
                    let heads = handle.join().map_err(|_| "heads thread panicked")?;
                    let latest = heads.closed_after.iter().copied().fold(0.0, f64::max);
                    let limit = HEADER_READ_TIMEOUT.as_secs_f64() + 1.5;
                    notes.push(format!(
                        "{} heads opened, {} closed by the server (the last after {latest:.1} s), {} still open",
                        heads.opened,
                        heads.closed_after.len(),
                        heads.still_open
                    ));
                    check(
                        &format!(
                            "hostile {name}: every unfinished head closed by the server within the header timeout (+1.5 s)"
                        ),
                        heads.opened >= 800 && heads.still_open == 0 && latest <= limit,
                    );
                }
            }
        }
        // Let the last answers finish before the visitor stops.
        while Instant::now() < until {
            thread::sleep(Duration::from_millis(50));
        }
        let (seen, peak) = watch.finish();
        let (p99_ms, max_ms, not_ok) = p99(&seen);
        println!(
            "drill figure: hostile {name}: {}; visitor: {} requests, p99 {p99_ms:.1} ms, max {max_ms:.1} ms, {not_ok} not 200; portal RSS idle {idle:.1} MB, peak {peak:.1} MB (+{:.1} MB)",
            notes.join(", "),
            seen.len(),
            peak - idle
        );
        check(
            &format!("hostile {name}: portal RSS within {RSS_BOUND_MB} MB of idle"),
            peak - idle <= RSS_BOUND_MB,
        );
        check(
            &format!("hostile {name}: the visitor's / answers 200 within {P99_BOUND_MS} ms p99"),
            !seen.is_empty() && not_ok == 0 && p99_ms <= P99_BOUND_MS,
        );
    }
    let series_after = series(admin);
    println!(
        "drill figure: hostile: request series in /metrics {series_before} before, {series_after} after"
    );
    check(
        "hostile: made-up methods create no metric series (≤ 10 new)",
        series_after <= series_before + 10,
    );
    let mut portal = portal;
    let alive = matches!(portal.0.try_wait(), Ok(None));
    check("hostile: the portal is still up at the end", alive);
    Ok(())
}

/// Starts a phase's attacks against the portal's port, to end by the instant given.
type Phase = fn(u16, Instant) -> Vec<Attack>;

enum Attack {
    Count(&'static str, thread::JoinHandle<u64>),
    Heads(thread::JoinHandle<Heads>),
    Streams(&'static str, thread::JoinHandle<(usize, usize)>),
}
