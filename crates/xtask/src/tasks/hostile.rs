//! The hostile-client drill: what one anonymous client can make the public
//! portal hold, against a release portal with 1,000 items and rate limiting
//! off (so the other bounds are what is measured).
//!
//! Attacks, each alone and then all together, each bounded in time:
//! - views: thousands of distinct large views (100–500 rows), half of them
//!   asked compressed;
//! - methods: thousands of made-up HTTP methods (metric labels);
//! - heads: 800 connections holding unfinished heads, trickling a byte per
//!   look (spread over 20 loopback addresses, so the per-client cap does not
//!   hide the header timeout). Each head is judged against its own deadline,
//!   and the kernel's sockets on the port are counted once all are past it;
//! - streams: 300 event streams opened and never read (one address, then
//!   spread over 40 addresses so they are really held);
//! - burst: new connections from one client at a fixed rate ([`BURST_RATE`]).
//!
//! Throughout, a normal visitor on 127.0.0.2 loads `/` every 20 ms on a new
//! connection. Each phase prints the portal's idle and peak RSS, the
//! visitor's latencies and the SYNs the kernel dropped on a full accept
//! queue; checks: RSS within 64 MB of idle, the visitor's p99 within 100 ms
//! with every answer 200, unfinished heads closed by the server within the
//! header timeout, the process still up. Last, the accept queue: connections
//! queued while the portal is stopped are all answered once it runs, and the
//! time it takes is printed.
//!
//! Traffic goes only to the portal this drill started on 127.0.0.1.

use crate::support::http::{http_get, metric, wait_for_200};
use crate::support::mariadb::MariaDb;
use crate::support::process::{Service, rss_of_pid};
use crate::support::services::{seed, start_hardware, start_portal_with};
use crate::support::{Result, free_port};
use socket2::{Domain, SockAddr, Socket, Type};
use std::io::{ErrorKind, Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpStream};
use std::process::Command;
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
    connect_within(source, port, Duration::from_secs(2))
}

fn connect_within(source: Ipv4Addr, port: u16, limit: Duration) -> std::io::Result<TcpStream> {
    let socket = Socket::new(Domain::IPV4, Type::STREAM, None)?;
    socket.bind(&SockAddr::from(SocketAddr::from((source, 0))))?;
    socket.connect_timeout(
        &SockAddr::from(SocketAddr::from(([127, 0, 0, 1], port))),
        limit,
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

/// Every other view asks for a compressed page, so the compressed forms the
/// page cache keeps are part of what is measured.
fn views(port: u16, until: Instant) -> thread::JoinHandle<u64> {
    hammer(16, until, move |n| {
        let path = view_path(n);
        let request = if n % 2 == 0 {
            get(&path)
        } else {
            format!(
                "GET {path} HTTP/1.1\r\nHost: localhost\r\nAccept-Encoding: br, gzip\r\nConnection: close\r\n\r\n"
            )
            .into_bytes()
        };
        exchange(ATTACKER, port, &request);
    })
}

fn methods(port: u16, until: Instant) -> thread::JoinHandle<u64> {
    hammer(4, until, move |n| {
        let request = format!("X{n} / HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n");
        exchange(ATTACKER, port, request.as_bytes());
    })
}

/// New connections a second the burst opens: a fixed rate (the same load on
/// a machine of any speed), far above what the per-client cap admits.
const BURST_RATE: u32 = 2_000;

/// Opens [`BURST_RATE`] connections a second from one client, each sending
/// half a head and then resetting (no TIME_WAIT left to run the client out
/// of ports).
fn burst(port: u16, until: Instant) -> thread::JoinHandle<u64> {
    const THREADS: u32 = 8;
    let interval = Duration::from_secs(1) * THREADS / BURST_RATE;
    paced(THREADS as usize, interval, until, move |_| {
        if let Ok(mut stream) = connect_from(ATTACKER, port) {
            let _ = stream.write_all(b"GET / HTTP/1.1\r\nHost: x\r\n");
            let _ = socket2::SockRef::from(&stream).set_linger(Some(Duration::ZERO));
        }
    })
}

/// Like [`hammer`], but each thread runs `work` once per `interval` (never
/// catching up in a rush after falling behind).
fn paced(
    threads: usize,
    interval: Duration,
    until: Instant,
    work: impl Fn(u64) + Send + Sync + 'static,
) -> thread::JoinHandle<u64> {
    hammer(threads, until, move |n| {
        let due = Instant::now() + interval;
        work(n);
        if let Some(rest) = due.checked_duration_since(Instant::now()) {
            thread::sleep(rest);
        }
    })
}

/// The kernel's view of the portal's public port right now: socket states
/// on the port, the listener's accept queue, and how many established
/// server-side sockets belong to peers in `peers` (a CIDR block).
fn server_side(port: u16, peers: &str) -> (String, usize) {
    let ss = |args: &[&str]| {
        Command::new("ss")
            .args(args)
            .output()
            .map(|out| String::from_utf8_lossy(&out.stdout).into_owned())
            .unwrap_or_default()
    };
    let on_port = format!("( sport = :{port} )");
    let mut states = std::collections::BTreeMap::<String, usize>::new();
    for line in ss(&["-Htan", "state", "all", &on_port]).lines() {
        if let Some(state) = line.split_whitespace().next() {
            *states.entry(state.to_owned()).or_default() += 1;
        }
    }
    let listen = ss(&["-Hltn", &on_port]);
    let mut fields = listen.split_whitespace().skip(1);
    let queue = fields.next().unwrap_or("?").to_owned();
    let backlog = fields.next().unwrap_or("?").to_owned();
    let held = ss(&[
        "-Htn",
        "state",
        "established",
        &format!("( sport = :{port} and dst {peers} )"),
    ])
    .lines()
    .count();
    let states: Vec<String> = states.iter().map(|(s, n)| format!("{s} {n}")).collect();
    (
        format!(
            "sockets on :{port}: {}; accept queue {queue} of {backlog}",
            states.join(", ")
        ),
        held,
    )
}

/// What happened to the unfinished heads.
struct Heads {
    opened: usize,
    /// Seconds the thread took to open every connection.
    connected_in: f64,
    /// Seconds from sending the unfinished head to the server's close, per
    /// connection (seen within the [`LOOK_EVERY`] between looks).
    closed_after: Vec<f64>,
    /// Connections the server still held past their own deadline (opened +
    /// header timeout + [`HEAD_MARGIN`]).
    overdue: usize,
    /// The portal's side once every head was closed or overdue.
    server: String,
    /// The portal's open-connection gauge at that moment.
    gauge: f64,
    /// Established server-side sockets whose peer is a head's address, then.
    held: usize,
}

/// The addresses the heads come from (127.0.1.1 ...).
const HEADS_FROM: &str = "127.0.1.0/24";
/// How often the watcher looks at every open head.
const LOOK_EVERY: Duration = Duration::from_millis(250);
/// What a head may take beyond the header timeout: the watcher's look, the
/// wake-up of the connection's timer on a loaded machine, the close's trip.
const HEAD_MARGIN: Duration = Duration::from_millis(1500);

/// One open head: the connection and when its head was sent.
type Head = Option<(TcpStream, Instant)>;

/// One look at every open head: trickles a byte into each, records the ones
/// the server closed.
fn look(open: &mut [Head], closed_after: &mut Vec<f64>) {
    let mut buf = [0u8; 512];
    for slot in open {
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
}

/// Opens `count` connections over `addresses` loopback sources, each sending
/// an unfinished head and then trickling a byte per look, and watches them
/// (also while still connecting) until the server has closed each one, or
/// each is past its own deadline. Connecting stops at `connect_by`.
fn heads(
    port: u16,
    admin: u16,
    count: usize,
    addresses: u8,
    connect_by: Instant,
) -> thread::JoinHandle<Heads> {
    thread::spawn(move || {
        let started = Instant::now();
        let mut open: Vec<Head> = Vec::new();
        let mut closed_after = Vec::new();
        let mut looked = Instant::now();
        for i in 0..count {
            if Instant::now() >= connect_by {
                break;
            }
            let source = Ipv4Addr::new(127, 0, 1, 1 + (i % usize::from(addresses)) as u8);
            if let Ok(mut stream) = connect_from(source, port) {
                let mut head = b"GET / HTTP/1.1\r\nHost: localhost\r\nX-Pad: ".to_vec();
                head.extend(std::iter::repeat_n(b'a', 8 * 1024));
                let _ = stream.write_all(&head);
                let _ = stream.set_nonblocking(true);
                open.push(Some((stream, Instant::now())));
            }
            if looked.elapsed() >= LOOK_EVERY {
                look(&mut open, &mut closed_after);
                looked = Instant::now();
            }
        }
        let connected_in = started.elapsed().as_secs_f64();
        let opened = open.len();
        // Every head's own deadline; the last one bounds the watch.
        let limit = HEADER_READ_TIMEOUT + HEAD_MARGIN;
        let last_deadline = open
            .iter()
            .flatten()
            .map(|(_, at)| *at + limit)
            .max()
            .unwrap_or_else(Instant::now);
        loop {
            look(&mut open, &mut closed_after);
            let now = Instant::now();
            if now >= last_deadline || open.iter().all(Option::is_none) {
                break;
            }
            thread::sleep(LOOK_EVERY.min(last_deadline - now));
        }
        let overdue = open.iter().filter(|s| s.is_some()).count();
        let gauge = metric(admin, "portal_connections_open", "");
        let (server, held) = server_side(port, HEADS_FROM);
        drop(open);
        Heads {
            opened,
            connected_in,
            closed_after,
            overdue,
            server,
            gauge,
            held,
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

/// The listener's accept queue right now: connections the kernel completed
/// and the portal has not accepted yet (`rx_queue` of its LISTEN line in
/// /proc/net/tcp).
fn accept_queue(port: u16) -> Option<u64> {
    let tcp = std::fs::read_to_string("/proc/net/tcp").ok()?;
    let local = format!(":{port:04X}");
    tcp.lines().skip(1).find_map(|line| {
        let fields: Vec<&str> = line.split_whitespace().collect();
        let (address, state, queues) = (fields.get(1)?, fields.get(3)?, fields.get(4)?);
        (address.ends_with(&local) && *state == "0A")
            .then(|| u64::from_str_radix(queues.split(':').nth(1)?, 16).ok())
            .flatten()
    })
}

/// Connections queued for the drain measurement (below the default backlog).
const QUEUED: usize = 2_000;

/// How fast the portal empties a full accept queue: with the portal stopped
/// (SIGSTOP), one client opens [`QUEUED`] connections, each sending a whole
/// request; the portal resumes and the queue is watched until empty. Returns
/// (connected, queued, milliseconds to drain, answered with 200, with 503).
fn drain(port: u16, pid: u32) -> (usize, u64, f64, usize, usize) {
    let signal = |name: &str| super::drill::signal_pid(pid, name);
    let source = Ipv4Addr::new(127, 0, 0, 3);
    signal("STOP");
    let mut streams = Vec::new();
    // A SYN the full queue drops is retried only after a second: stop there.
    while streams.len() < QUEUED {
        let Ok(mut stream) = connect_within(source, port, Duration::from_millis(500)) else {
            break;
        };
        let _ = stream.write_all(&get("/"));
        streams.push(stream);
    }
    let connected = streams.len();
    let queued = accept_queue(port).unwrap_or(0);
    let resumed = Instant::now();
    signal("CONT");
    while accept_queue(port).unwrap_or(0) > 0 && resumed.elapsed() < Duration::from_secs(10) {
        thread::sleep(Duration::from_micros(200));
    }
    let took = resumed.elapsed().as_secs_f64() * 1000.0;
    let (mut ok, mut refused) = (0, 0);
    for mut stream in streams {
        let _ = stream.set_read_timeout(Some(Duration::from_secs(5)));
        let mut line = [0u8; 12];
        match stream.read_exact(&mut line) {
            Ok(()) if line.ends_with(b"200") => ok += 1,
            Ok(()) if line.ends_with(b"503") => refused += 1,
            _ => {}
        }
    }
    (connected, queued, took, ok, refused)
}

/// The kernel's count of connections dropped because a listener's accept
/// queue was full (TcpExt ListenOverflows, this network namespace).
fn listen_overflows() -> u64 {
    let netstat = std::fs::read_to_string("/proc/net/netstat").unwrap_or_default();
    let mut lines = netstat.lines().filter(|l| l.starts_with("TcpExt:"));
    let (Some(names), Some(values)) = (lines.next(), lines.next()) else {
        return 0;
    };
    names
        .split_whitespace()
        .zip(values.split_whitespace())
        .find(|(name, _)| *name == "ListenOverflows")
        .and_then(|(_, value)| value.parse().ok())
        .unwrap_or(0)
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
        ("distinct large views", |port, _, until| {
            vec![Attack::Count("views", views(port, until))]
        }),
        ("made-up methods", |port, _, until| {
            vec![Attack::Count("methods", methods(port, until))]
        }),
        ("800 unfinished heads", |port, admin, until| {
            vec![Attack::Heads(heads(port, admin, 800, 20, until))]
        }),
        ("300 unread event streams", |port, _, until| {
            vec![
                Attack::Streams("one address", streams(port, 300, 1, until)),
                Attack::Streams("40 addresses", streams(port, 300, 40, until)),
            ]
        }),
        ("burst of new connections", |port, _, until| {
            vec![Attack::Count("connections", burst(port, until))]
        }),
        ("all together", |port, admin, until| {
            vec![
                Attack::Count("views", views(port, until)),
                Attack::Count("methods", methods(port, until)),
                Attack::Heads(heads(port, admin, 800, 20, until)),
                Attack::Streams("one address", streams(port, 300, 1, until)),
                Attack::Count("connections", burst(port, until)),
            ]
        }),
    ];
    for (name, start) in phases {
        println!("== hostile client: {name}");
        let overflows = listen_overflows();
        let watch = Watch::start(port, pid);
        let until = Instant::now() + PHASE;
        let attacks = start(port, admin, until);
        let mut notes = Vec::new();
        for attack in attacks {
            match attack {
                Attack::Count(what, handle) => {
                    let count = handle.join().unwrap_or(0);
                    notes.push(format!(
                        "{count} {what} ({:.0}/s)",
                        count as f64 / PHASE.as_secs_f64()
                    ));
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
                    let limit = (HEADER_READ_TIMEOUT + HEAD_MARGIN).as_secs_f64();
                    notes.push(format!(
                        "{} heads opened (in {:.1} s), {} closed by the server (the last {latest:.1} s after its head), {} held past the timeout (+{:.1} s); then portal_connections_open {}, {} established from {HEADS_FROM}, {}",
                        heads.opened,
                        heads.connected_in,
                        heads.closed_after.len(),
                        heads.overdue,
                        HEAD_MARGIN.as_secs_f64(),
                        heads.gauge,
                        heads.held,
                        heads.server
                    ));
                    check(
                        &format!("hostile {name}: all 800 unfinished heads connected"),
                        heads.opened >= 800,
                    );
                    check(
                        &format!(
                            "hostile {name}: every unfinished head closed by the server within the header timeout (+{:.1} s) of its own head",
                            HEAD_MARGIN.as_secs_f64()
                        ),
                        heads.overdue == 0
                            && heads.closed_after.len() == heads.opened
                            && latest <= limit,
                    );
                    check(
                        &format!(
                            "hostile {name}: the server side holds none of them after the last deadline ({} established from {HEADS_FROM})",
                            heads.held
                        ),
                        heads.held == 0,
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
            "drill figure: hostile {name}: {}; visitor: {} requests, p99 {p99_ms:.1} ms, max {max_ms:.1} ms, {not_ok} not 200; portal RSS idle {idle:.1} MB, peak {peak:.1} MB (+{:.1} MB); SYNs dropped on a full accept queue (ListenOverflows) +{}",
            notes.join(", "),
            seen.len(),
            peak - idle,
            listen_overflows().saturating_sub(overflows)
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
    println!("== accept queue: {QUEUED} connections queued while the portal is stopped");
    let (connected, queued, took, ok, refused) = drain(port, pid);
    println!(
        "drill figure: hostile: {connected} connected, an accept queue of {queued} drained in {took:.1} ms after SIGCONT ({:.0} connections/s); {ok} answered 200, {refused} refused with the one-line 503",
        queued as f64 / (took / 1000.0)
    );
    check(
        &format!(
            "hostile: every connection queued in the kernel is answered once the portal runs ({} of {connected})",
            ok + refused
        ),
        connected > 0 && ok + refused == connected,
    );
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
type Phase = fn(u16, u16, Instant) -> Vec<Attack>;

enum Attack {
    Count(&'static str, thread::JoinHandle<u64>),
    Heads(thread::JoinHandle<Heads>),
    Streams(&'static str, thread::JoinHandle<(usize, usize)>),
}
