//! `cargo xtask bench`: release builds on loopback, driven by wrk, into BENCHMARKS.md.
//!
//! Every load run is bounded in time (`--seconds`, default 5) and goes only to
//! servers this command started on 127.0.0.1.

use crate::support::http::{http_get, http_get_with, http_request, metric, wait_for_200};
use crate::support::mariadb::MariaDb;
use crate::support::process::{Service, cpu_seconds, rss_mb};
use crate::support::redis::Redis;
use crate::support::services::{bin, seed, start_hardware, start_portal, use_bin_dir};
use crate::support::wrk::{Load, wrk, wrk_with};
use crate::support::{Result, build_release, free_port, provision, scratch, workspace_root};
use std::fmt::Write as _;
use std::net::TcpStream;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const SIZES: [usize; 3] = [2, 10_000, 100_000];
/// How long the services are watched doing nothing (no visitor) for their idle CPU.
const IDLE_WINDOW: Duration = Duration::from_secs(10);
const CONNECTIONS: [u32; 3] = [50, 200, 1000];
/// Rounds of every load and its yardstick, alternating.
const ROUNDS: usize = 3;
/// RSS "at rest" is read this long after launch: values filled, no visitor
/// for the idle window, and hardware's full-list rendering (kept 30 s after
/// its last use: the portal's first contact, the fill checks) dropped.
const AT_REST: Duration = Duration::from_secs(50);
const IMPORT_SIZES: [usize; 2] = [10_000, 100_000];

/// The bench's own write token (loopback services it started, nothing else).
const BENCH_TOKEN: &str = "bench-token-for-loopback-only";

struct SizeResult {
    n: usize,
    hardware_ready_ms: f64,
    portal_ready_ms: f64,
    cold_ttfb_ms: f64,
    cold_status: u16,
    filled_s: f64,
    page_bytes: usize,
    rss_idle: (f64, f64),
    rss_loaded: (f64, f64),
    probes: f64,
    /// CPU used with no visitor, in % of one core: hardware, portal.
    idle_cpu: (f64, f64),
    /// The full list on the wire: plain, gzip, and `304` for a conditional
    /// request with nothing changed (head and body bytes received).
    list_bytes: (usize, usize, usize),
    /// The change feed with nothing changed (`304`), and with one item
    /// renamed: bytes on the wire.
    feed_bytes: (usize, usize),
    /// One item renamed through the API: seconds until the portal's page
    /// shows it, and items the portal received meanwhile.
    change_shown_s: f64,
    change_items: f64,
    portal: Vec<(u32, Load)>,
    hardware: Vec<(u32, Load)>,
    /// The yardsticks of this row: bare servers answering as many bytes as
    /// the page, and as the full list, at the same connection counts.
    page_limit: Vec<(u32, Load)>,
    list_limit: Vec<(u32, Load)>,
    /// The page's body in each coding (plain, gzip, br), and the bytes on the
    /// wire of a reload of it with nothing changed (`304`).
    page_coded: (usize, usize, usize, usize),
    /// Warm `/` asked with `Accept-Encoding: br, gzip` at
    /// [`COMPRESSED_CONNECTIONS`], and its yardstick: a bare server sending
    /// the very brotli bytes the portal sends.
    compressed: Load,
    compressed_limit: Load,
}

/// The connection count of the compressed-page load.
const COMPRESSED_CONNECTIONS: u32 = 50;
/// What a browser asks for.
const BROWSER_CODINGS: [(&str, &str); 1] = [("Accept-Encoding", "br, gzip")];

/// A bare server answering every `GET /` with `bytes` bytes; its port.
fn yardstick(bytes: usize) -> Result<(Service, u16)> {
    yardstick_with(&["--bytes", &bytes.to_string()])
}

/// A bare server answering every `GET /` with the bytes of `file`, labelled
/// `Content-Encoding: coding`; its port.
fn yardstick_coded(file: &std::path::Path, coding: &str) -> Result<(Service, u16)> {
    yardstick_with(&["--file", &file.display().to_string(), "--encoding", coding])
}

fn yardstick_with(body: &[&str]) -> Result<(Service, u16)> {
    let port = free_port()?;
    let baseline = Command::new(bin("baseline"))
        .args(["--listen", &format!("127.0.0.1:{port}")])
        .args(body)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .map(Service)
        .map_err(|e| format!("baseline: {e}"))?;
    wait_for_200(port, "/", Duration::from_secs(10))?;
    Ok((baseline, port))
}

fn measure_size(db: &MariaDb, n: usize, seconds: u64) -> Result<SizeResult> {
    seed(db, n)?;
    let (hw_port, portal_port, admin_port) = (free_port()?, free_port()?, free_port()?);
    let launched = Instant::now();
    let token = scratch("bench")?.join("admin-token");
    std::fs::write(&token, BENCH_TOKEN).map_err(|e| format!("{}: {e}", token.display()))?;
    let hardware = start_hardware(
        db,
        hw_port,
        &[("ADMIN_TOKEN_FILE", token.display().to_string())],
    )?;
    let hardware_ready = wait_for_200(hw_port, "/readyz", Duration::from_secs(30))?;
    let portal_launched = Instant::now();
    let portal = start_portal(
        &format!("http://127.0.0.1:{hw_port}"),
        portal_port,
        admin_port,
        true,
    )?;
    let portal_ready = {
        let mut waited = Duration::ZERO;
        while waited < Duration::from_secs(10) {
            if TcpStream::connect(("127.0.0.1", portal_port)).is_ok() {
                break;
            }
            std::thread::sleep(Duration::from_millis(1));
            waited = portal_launched.elapsed();
        }
        portal_launched.elapsed()
    };
    let (cold_status, _, cold_ttfb, _) = http_get(portal_port, "/")?;
    let mut filled = None;
    while launched.elapsed() < Duration::from_secs(180) {
        // A filtered page: its count, not the whole list, is read.
        let unknown = http_get_with(
            hw_port,
            "/hardware/?wait=0&availability=unknown&limit=1",
            &[],
        )?;
        if unknown.status == 200 && unknown.header("x-total-count") == Some("0") {
            filled = Some(launched.elapsed());
            break;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    std::thread::sleep(Duration::from_millis(1500)); // let the portal catch the last values
    let (_, page, ..) = http_get(portal_port, "/")?;
    let cpu_before = (cpu_seconds(hardware.0.id()), cpu_seconds(portal.0.id()));
    std::thread::sleep(IDLE_WINDOW);
    let share = |before: f64, after: f64| (after - before) / IDLE_WINDOW.as_secs_f64() * 100.0;
    let idle_cpu = (
        share(cpu_before.0, cpu_seconds(hardware.0.id())),
        share(cpu_before.1, cpu_seconds(portal.0.id())),
    );
    std::thread::sleep(AT_REST.saturating_sub(launched.elapsed()));
    let rss_idle = (rss_mb(&hardware.0), rss_mb(&portal.0));
    // The change feed: nothing changed, then one item renamed through the API.
    let version = http_get_with(hw_port, "/hardware/?wait=0", &[("Accept-Encoding", "gzip")])?
        .header("etag")
        .map(|tag| tag.trim_matches('"').to_owned())
        .unwrap_or_default();
    let changes_path = format!("/hardware/changes?since={version}");
    let feed_unchanged = http_get_with(hw_port, &changes_path, &[])?;
    if feed_unchanged.status != 304 {
        return Err(format!(
            "{n} items: the change feed with nothing changed answered {}, not 304",
            feed_unchanged.status
        ));
    }
    let first_id = {
        let (_, body, ..) = http_get(hw_port, "/hardware/?wait=0&limit=1")?;
        let body = String::from_utf8_lossy(&body).into_owned();
        body.split("\"id\":")
            .nth(1)
            .and_then(|rest| rest.split(|c: char| !c.is_ascii_digit()).next())
            .and_then(|id| id.parse::<u64>().ok())
            .ok_or_else(|| format!("{n} items: no first item in {body:.100}"))?
    };
    let received = || metric(admin_port, "portal_catalog_items_received_total", "");
    let items_before = received();
    let renamed = http_request(
        hw_port,
        "PUT",
        &format!("/hardware/{first_id}"),
        &[
            ("Authorization", &format!("Bearer {BENCH_TOKEN}")),
            ("Content-Type", "application/json"),
        ],
        br#"{"provider":"Amazon","name":"bench-renamed"}"#,
    )?;
    if renamed.status != 200 {
        return Err(format!(
            "{n} items: renaming an item answered {}",
            renamed.status
        ));
    }
    let renamed_at = Instant::now();
    let mut change_shown_s = f64::NAN;
    while renamed_at.elapsed() < Duration::from_secs(10) {
        let (_, body, ..) = http_get(portal_port, "/?q=bench-renamed")?;
        if String::from_utf8_lossy(&body).contains(">bench-renamed<") {
            change_shown_s = renamed_at.elapsed().as_secs_f64();
            break;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let feed_changed = http_get_with(hw_port, &changes_path, &[])?;
    std::thread::sleep(Duration::from_millis(1500)); // every refresh after it
    let change_items = received() - items_before;
    let plain = http_get_with(hw_port, "/hardware/?wait=0", &[])?;
    let gzip = http_get_with(hw_port, "/hardware/?wait=0", &[("Accept-Encoding", "gzip")])?;
    let tag = plain.header("etag").unwrap_or_default().to_owned();
    let unchanged = http_get_with(hw_port, "/hardware/?wait=0", &[("If-None-Match", &tag)])?;
    if unchanged.status != 304 {
        return Err(format!(
            "{n} items: a conditional list request with the current ETag answered {}, not 304",
            unchanged.status
        ));
    }
    let list_bytes = (plain.wire_bytes, gzip.wire_bytes, unchanged.wire_bytes);
    let list_body = http_get(hw_port, "/hardware/")?.1.len();
    // The page on the wire in each coding, and a reload of it with nothing changed.
    let page_plain = http_get_with(portal_port, "/", &[])?;
    let page_gzip = http_get_with(portal_port, "/", &[("Accept-Encoding", "gzip")])?;
    let page_br = http_get_with(portal_port, "/", &[("Accept-Encoding", "br")])?;
    for (reply, coding) in [(&page_gzip, "gzip"), (&page_br, "br")] {
        if reply.status != 200 || reply.header("content-encoding") != Some(coding) {
            return Err(format!(
                "{n} items: the page asked in {coding} answered {} in {:?}",
                reply.status,
                reply.header("content-encoding")
            ));
        }
    }
    let page_tag = page_br.header("etag").unwrap_or_default().to_owned();
    let reload = http_get_with(
        portal_port,
        "/",
        &[("Accept-Encoding", "br"), ("If-None-Match", &page_tag)],
    )?;
    if reload.status != 304 {
        return Err(format!(
            "{n} items: a reload of the unchanged page answered {}, not 304",
            reload.status
        ));
    }
    let page_coded = (
        page_plain.body.len(),
        page_gzip.body.len(),
        page_br.body.len(),
        reload.wire_bytes,
    );
    let br_file = scratch("bench")?.join(format!("page-{n}.br"));
    std::fs::write(&br_file, &page_br.body).map_err(|e| format!("{}: {e}", br_file.display()))?;
    // Each load right next to its yardstick's, with the same processes up
    // (hardware keeps probing, the portal keeps syncing): both meet the
    // same machine, not one of them a quieter one.
    let (page_yardstick, page_port) = yardstick(page.len())?;
    let (list_yardstick, list_port) = yardstick(list_body)?;
    let mut portal_loads = Vec::new();
    let mut hardware_loads = Vec::new();
    let mut page_limit = Vec::new();
    let mut list_limit = Vec::new();
    // In rounds, each load alternating with its yardstick's: a burst of
    // background work (a TTL's re-probes, a neighbour on the machine) falls
    // on both alike instead of on whichever ran during it.
    for c in CONNECTIONS {
        for (service, path, yardstick_port, loads, limits) in [
            (
                portal_port,
                "/",
                page_port,
                &mut portal_loads,
                &mut page_limit,
            ),
            (
                hw_port,
                "/hardware/",
                list_port,
                &mut hardware_loads,
                &mut list_limit,
            ),
        ] {
            let mut runs = Vec::new();
            let mut yardstick_runs = Vec::new();
            for _ in 0..ROUNDS {
                runs.push(wrk(service, path, c, seconds)?);
                yardstick_runs.push(wrk(yardstick_port, "/", c, seconds)?);
            }
            loads.push((c, Load::combine(&runs)));
            limits.push((c, Load::combine(&yardstick_runs)));
        }
    }
    drop(page_yardstick);
    drop(list_yardstick);
    // The page as browsers ask for it, against a bare server sending the
    // same brotli bytes, alternating as above.
    let (coded_yardstick, coded_port) = yardstick_coded(&br_file, "br")?;
    let mut coded_runs = Vec::new();
    let mut coded_yardstick_runs = Vec::new();
    for _ in 0..ROUNDS {
        coded_runs.push(wrk_with(
            portal_port,
            "/",
            COMPRESSED_CONNECTIONS,
            seconds,
            &BROWSER_CODINGS,
        )?);
        coded_yardstick_runs.push(wrk_with(
            coded_port,
            "/",
            COMPRESSED_CONNECTIONS,
            seconds,
            &BROWSER_CODINGS,
        )?);
    }
    drop(coded_yardstick);
    let rss_loaded = (rss_mb(&hardware.0), rss_mb(&portal.0));
    let probes = metric(hw_port, "hardware_availability_probes_total", "ok");
    drop(portal);
    drop(hardware);
    Ok(SizeResult {
        n,
        hardware_ready_ms: hardware_ready.as_secs_f64() * 1000.0,
        portal_ready_ms: portal_ready.as_secs_f64() * 1000.0,
        cold_ttfb_ms: cold_ttfb.as_secs_f64() * 1000.0,
        cold_status,
        filled_s: filled.map_or(f64::NAN, |d| d.as_secs_f64()),
        page_bytes: page.len(),
        rss_idle,
        rss_loaded,
        probes,
        idle_cpu,
        list_bytes,
        feed_bytes: (feed_unchanged.wire_bytes, feed_changed.wire_bytes),
        change_shown_s,
        change_items,
        portal: portal_loads,
        hardware: hardware_loads,
        page_limit,
        list_limit,
        page_coded,
        compressed: Load::combine(&coded_runs),
        compressed_limit: Load::combine(&coded_yardstick_runs),
    })
}

/// Probe calls per item per TTL window with three replicas, with and without Redis.
fn measure_replicas(db: &MariaDb, with_redis: bool) -> Result<(f64, f64)> {
    const N: usize = 200;
    const TTL_S: u64 = 6;
    seed(db, N)?;
    let redis = if with_redis {
        Some(Redis::start()?)
    } else {
        None
    };
    let mut replicas = Vec::new();
    let mut ports = Vec::new();
    for _ in 0..3 {
        let port = free_port()?;
        let mut envs = vec![
            ("PROBE_DELAY", "1s".to_owned()),
            ("AVAILABILITY_TTL", format!("{TTL_S}s")),
        ];
        if let Some(redis) = &redis {
            envs.push(("REDIS_URL", redis.url()));
            envs.push(("REDIS_KEY_PREFIX", format!("bench-{}", std::process::id())));
        }
        replicas.push(start_hardware(db, port, &envs)?);
        ports.push(port);
    }
    for port in &ports {
        wait_for_200(*port, "/readyz", Duration::from_secs(30))?;
    }
    // Three windows begin at 0, TTL and 2 TTL; stop before the fourth.
    std::thread::sleep(Duration::from_secs(TTL_S * 3 - 1));
    let probes: f64 = ports
        .iter()
        .map(|p| metric(*p, "hardware_availability_probes_total", "ok"))
        .sum();
    drop(replicas);
    drop(redis);
    let per_item_per_window = probes / N as f64 / 3.0;
    Ok((probes, per_item_per_window))
}

fn machine() -> String {
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("model name"))
                .and_then(|l| l.split(':').nth(1))
                .map(|m| m.trim().to_owned())
        })
        .unwrap_or_else(|| "unknown CPU".into());
    let cores = std::thread::available_parallelism().map_or(0, |n| n.get());
    let mem = std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|s| {
            s.lines()
                .next()
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|kb| kb.parse::<f64>().ok())
        })
        .map_or(0.0, |kb| kb / 1024.0 / 1024.0);
    let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default();
    format!(
        "{cores} cores ({cpu}), {mem:.0} GiB, Linux {}",
        kernel.trim()
    )
}

/// One row of a throughput table: a load set against its yardstick's req/s.
fn load_row(out: &mut String, items: usize, bytes: usize, connections: u32, l: &Load, yard: f64) {
    let _ = writeln!(
        out,
        "| {items} | {bytes} | {connections} | {:.0} | {yard:.0} | {} | {:.2} ms | {:.2} ms | {:.1} ms | {} |",
        l.rps,
        pct(l.rps, yard),
        l.p50_ms,
        l.p99_ms,
        l.max_ms,
        l.errors
    );
}

fn pct(value: f64, of: f64) -> String {
    if of > 0.0 {
        format!("{:.0} %", value / of * 100.0)
    } else {
        "–".into()
    }
}

/// Flags of `cargo xtask bench`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// Length of every wrk run, in seconds.
    #[arg(long, default_value_t = 5, value_parser = clap::value_parser!(u64).range(1..=120))]
    seconds: u64,
    /// Run the hardware, portal and baseline binaries in this folder instead
    /// of building them (to compare another build, e.g. an older release).
    #[arg(long, value_name = "DIR")]
    bin_dir: Option<std::path::PathBuf>,
    /// Where the report goes.
    #[arg(long, value_name = "FILE", default_value = "BENCHMARKS.md")]
    output: std::path::PathBuf,
}

pub fn run(args: &Args) -> Result {
    let seconds = args.seconds;
    provision::ensure_mariadb()?;
    provision::ensure_redis()?;
    if provision::find("wrk").is_none() {
        provision::ensure_packages(&["wrk"], "wrk")?;
    }
    match &args.bin_dir {
        Some(dir) => {
            for name in ["hardware", "portal", "baseline"] {
                if !dir.join(name).is_file() {
                    return Err(format!(
                        "--bin-dir {}: no `{name}` binary there",
                        dir.display()
                    ));
                }
            }
            use_bin_dir(dir.clone());
        }
        None => build_release(&["hardware", "portal", "baseline"])?,
    }
    let db = MariaDb::start()?;
    // Apply the migrations once with a short-lived hardware.
    {
        let port = free_port()?;
        let _migrator = start_hardware(&db, port, &[])?;
        wait_for_200(port, "/readyz", Duration::from_secs(30))?;
    }
    let mut results = Vec::new();
    for n in SIZES {
        eprintln!("bench: {n} items");
        results.push(measure_size(&db, n, seconds)?);
    }
    eprintln!("bench: three replicas");
    let alone = measure_replicas(&db, false)?;
    let shared = measure_replicas(&db, true)?;
    eprintln!("bench: import");
    let imports = measure_import(&db)?;
    drop(db);
    let report = render(&results, alone, shared, &imports, seconds);
    let path = workspace_root().join(&args.output);
    std::fs::write(&path, report).map_err(|e| e.to_string())?;
    eprintln!("bench: wrote {}", path.display());
    Ok(())
}

/// One `hardware items import` measurement.
struct ImportFigure {
    rows: usize,
    first_s: f64,
    first_summary: String,
    again_s: f64,
    again_summary: String,
}

/// `hardware items import` of generated CSV files into an empty inventory,
/// then the same file again (nothing to change), against a release hardware.
fn measure_import(db: &MariaDb) -> Result<Vec<ImportFigure>> {
    let dir = workspace_root().join("target/xtask/bench");
    std::fs::create_dir_all(&dir).map_err(|e| e.to_string())?;
    let token = dir.join("admin-token");
    std::fs::write(&token, "bench-admin-token-0123456789\n").map_err(|e| e.to_string())?;
    let mut figures = Vec::new();
    for rows in IMPORT_SIZES {
        seed(db, 0)?;
        let port = free_port()?;
        let _hardware = start_hardware(
            db,
            port,
            &[("ADMIN_TOKEN_FILE", token.display().to_string())],
        )?;
        wait_for_200(port, "/readyz", Duration::from_secs(30))?;
        let file = dir.join(format!("import-{rows}.csv"));
        let mut csv = String::from("provider,name\n");
        for i in 0..rows {
            let _ = writeln!(csv, "Provider {},\"model {i:06}, imported\"", i % 7);
        }
        std::fs::write(&file, csv).map_err(|e| e.to_string())?;
        let import = || -> Result<(f64, String)> {
            let started = Instant::now();
            let out = Command::new(bin("hardware"))
                .args(["items", "import"])
                .arg(&file)
                .env("ADMIN_TOKEN_FILE", &token)
                .env("HARDWARE_API_URL", format!("http://127.0.0.1:{port}/"))
                .env("RUST_LOG", "warn")
                .output()
                .map_err(|e| format!("hardware items import: {e}"))?;
            let took = started.elapsed().as_secs_f64();
            let summary = String::from_utf8_lossy(&out.stdout).trim().to_owned();
            if !out.status.success() {
                return Err(format!(
                    "hardware items import failed: {summary} {}",
                    String::from_utf8_lossy(&out.stderr)
                ));
            }
            Ok((took, summary))
        };
        let (first_s, first_summary) = import()?;
        let (again_s, again_summary) = import()?;
        figures.push(ImportFigure {
            rows,
            first_s,
            first_summary,
            again_s,
            again_summary,
        });
    }
    Ok(figures)
}

fn render(
    results: &[SizeResult],
    alone: (f64, f64),
    shared: (f64, f64),
    imports: &[ImportFigure],
    seconds: u64,
) -> String {
    let limit = |loads: &[(u32, Load)], c: u32| {
        loads
            .iter()
            .find(|(lc, _)| *lc == c)
            .map_or(0.0, |(_, l)| l.rps)
    };
    let mut out = String::new();
    let _ = writeln!(out, "# Benchmarks\n");
    let _ = writeln!(
        out,
        "Written by `cargo xtask bench` (release builds, loopback, wrk on the same machine, \
{seconds} s per run). Rerun it to refresh every figure; nothing here is edited by hand.\n"
    );
    let _ = writeln!(out, "- Machine: {}", machine());
    let _ = writeln!(
        out,
        "- Date: {}",
        Command::new("date")
            .arg("-u")
            .arg("+%Y-%m-%d %H:%M UTC")
            .output()
            .map_or_else(
                |_| "unknown".into(),
                |o| String::from_utf8_lossy(&o.stdout).trim().to_owned()
            )
    );
    let _ = writeln!(
        out,
        "- Services: `PROBE_DELAY=5s`, `AVAILABILITY_TTL=60s`, portal defaults (50 rows a page). \
Load: `wrk -t2 -cC -dDs --latency`.\n"
    );
    let _ = writeln!(
        out,
        "Every throughput row is set against its own yardstick, measured in the same run: a bare \
axum server (`crates/baseline`) answering a fixed body of exactly as many bytes as that row's \
response (the dashboard page, or the full list), at the same connection count, with the same \
services up (hardware probing, the portal syncing): {ROUNDS} rounds of the load and then the \
yardstick, alternating, so both meet the same machine. req/s is the mean of the rounds, p50 \
the median round's, p99 and max the worst round's.\n"
    );
    for (title, pick) in [
        ("Warm portal `/` (the dashboard)", 0usize),
        ("Warm hardware `/hardware/` (the full JSON list, plain)", 1),
    ] {
        let _ = writeln!(out, "## {title}\n");
        let _ = writeln!(
            out,
            "| items | body bytes | connections | req/s | yardstick req/s | share | p50 | p99 | max | errors |\n|---|---|---|---|---|---|---|---|---|---|"
        );
        for r in results {
            let (loads, limits, bytes) = if pick == 0 {
                (&r.portal, &r.page_limit, r.page_bytes)
            } else {
                (&r.hardware, &r.list_limit, r.list_bytes.0)
            };
            for (c, l) in loads {
                load_row(&mut out, r.n, bytes, *c, l, limit(limits, *c));
            }
        }
        let _ = writeln!(out);
    }
    let _ = writeln!(
        out,
        "## Warm portal `/` as browsers ask for it (`Accept-Encoding: br, gzip`)\n"
    );
    let _ = writeln!(
        out,
        "The yardstick sends the very brotli bytes the portal sends (`baseline --file --encoding br`).\n"
    );
    let _ = writeln!(
        out,
        "| items | br body bytes | connections | req/s | yardstick req/s | share | p50 | p99 | max | errors |\n|---|---|---|---|---|---|---|---|---|---|"
    );
    for r in results {
        load_row(
            &mut out,
            r.n,
            r.page_coded.2,
            COMPRESSED_CONNECTIONS,
            &r.compressed,
            r.compressed_limit.rps,
        );
    }
    let _ = writeln!(out);
    let _ = writeln!(out, "## The page on the wire\n");
    let _ = writeln!(
        out,
        "Bytes of the dashboard's body per view in each coding, and every byte of a reload of an \
unchanged view (`If-None-Match` with its `ETag`: a `304`, head only).\n"
    );
    let _ = writeln!(
        out,
        "| items | plain | gzip | br | reload, nothing changed (`304`) |\n|---|---|---|---|---|"
    );
    for r in results {
        let (plain, gzip, br, reload) = r.page_coded;
        let _ = writeln!(
            out,
            "| {} | {plain} | {gzip} ({}) | {br} ({}) | {reload} |",
            r.n,
            pct(gzip as f64, plain as f64),
            pct(br as f64, plain as f64),
        );
    }
    let _ = writeln!(out);
    let _ = writeln!(
        out,
        "## At rest: CPU with no visitor ({} s), the list on the wire\n",
        IDLE_WINDOW.as_secs()
    );
    let _ = writeln!(
        out,
        "| items | hardware CPU | portal CPU (refreshing every 1 s) | `GET /hardware/` plain | with `Accept-Encoding: gzip` | conditional, nothing changed (`304`) |\n|---|---|---|---|---|---|"
    );
    for r in results {
        let (plain, gzip, unchanged) = r.list_bytes;
        let _ = writeln!(
            out,
            "| {} | {:.1} % of a core | {:.1} % of a core | {plain} B | {gzip} B ({:.1} × fewer) | {unchanged} B |",
            r.n,
            r.idle_cpu.0,
            r.idle_cpu.1,
            plain as f64 / gzip.max(1) as f64
        );
    }
    let _ = writeln!(
        out,
        "\n## Sync by change (the portal's refresh: `GET /hardware/changes?since=<version>`)\n"
    );
    let _ = writeln!(
        out,
        "| items | a refresh with nothing changed (`304`) | one item renamed: the change on the wire | items the portal received for it | shown on the portal's page after (`REFRESH_INTERVAL` 1 s) |\n|---|---|---|---|---|"
    );
    for r in results {
        let _ = writeln!(
            out,
            "| {} | {} B | {} B | {:.0} | {:.2} s |",
            r.n, r.feed_bytes.0, r.feed_bytes.1, r.change_items, r.change_shown_s
        );
    }
    let _ = writeln!(out, "\n## Cold start (empty cache, `PROBE_DELAY=5s`)\n");
    let _ = writeln!(
        out,
        "| items | hardware ready | portal listening | first `/`: status, time to first byte | every value filled (from hardware launch) | probes | page bytes |\n|---|---|---|---|---|---|---|"
    );
    for r in results {
        let _ = writeln!(
            out,
            "| {} | {:.0} ms | {:.0} ms | {}, {:.1} ms | {:.2} s ({:.2} × delay) | {:.0} | {} |",
            r.n,
            r.hardware_ready_ms,
            r.portal_ready_ms,
            r.cold_status,
            r.cold_ttfb_ms,
            r.filled_s,
            r.filled_s / 5.0,
            r.probes,
            r.page_bytes
        );
    }
    let _ = writeln!(out, "\n## Memory (RSS)\n");
    let _ = writeln!(
        out,
        "At rest: {} s after launch (values filled, no visitor for the idle window). Per item: the \
difference from the 2-item row, divided by the items.\n",
        AT_REST.as_secs()
    );
    let _ = writeln!(
        out,
        "| items | hardware at rest | portal at rest | per item (hardware / portal) | hardware after load | portal after load |\n|---|---|---|---|---|---|"
    );
    let small = results.first().map_or((0.0, 0.0), |r| r.rss_idle);
    for r in results {
        let per_item = |now: f64, base: f64| {
            if r.n > 2 {
                format!("{:.0} B", (now - base) * 1e6 / r.n as f64)
            } else {
                "—".to_owned()
            }
        };
        let _ = writeln!(
            out,
            "| {} | {:.1} MB | {:.1} MB | {} / {} | {:.1} MB | {:.1} MB |",
            r.n,
            r.rss_idle.0,
            r.rss_idle.1,
            per_item(r.rss_idle.0, small.0),
            per_item(r.rss_idle.1, small.1),
            r.rss_loaded.0,
            r.rss_loaded.1
        );
    }
    let _ = writeln!(
        out,
        "\n## Probes across three hardware replicas (200 items, TTL 6 s, 3 windows)\n"
    );
    let _ = writeln!(
        out,
        "| shared cache | probes | per item per TTL window |\n|---|---|---|"
    );
    let _ = writeln!(
        out,
        "| none (each replica alone) | {:.0} | {:.2} |",
        alone.0, alone.1
    );
    let _ = writeln!(
        out,
        "| Redis (`REDIS_URL`) | {:.0} | {:.2} |",
        shared.0, shared.1
    );
    let _ = writeln!(
        out,
        "\n## Import (`hardware items import FILE`, CSV, into an empty inventory; then the same file again)\n"
    );
    let _ = writeln!(
        out,
        "| rows | first import | rows/s | its summary | again (nothing to change) | its summary |\n|---|---|---|---|---|---|"
    );
    for f in imports {
        let _ = writeln!(
            out,
            "| {} | {:.2} s | {:.0} | {} | {:.2} s | {} |",
            f.rows,
            f.first_s,
            f.rows as f64 / f.first_s.max(1e-9),
            f.first_summary,
            f.again_s,
            f.again_summary
        );
    }
    let _ = writeln!(
        out,
        "\nThe reference Flask version serves 9.75 req/s at c=50 (5 s per page, one thread per row)."
    );
    let _ = writeln!(out, "\n## How to read this\n");
    let _ = writeln!(
        out,
        "- The load generator shares the 2 cores with the server, so every figure, the limit \
included, is what is left after wrk takes its part.\n\
- `/` renders from the portal's in-memory catalog and reuses a rendered page for the same \
view, data version and second; its cost hardly depends on the number of items.\n\
- `/hardware/` returns every item (≈ 100 bytes each): from a few thousand items on it is bound \
by the bytes it moves, as its yardstick is. Clients that need less use `limit`/`offset` or the \
filters; the portal fetches it only on first contact with a replica and then asks the change \
feed (`GET /hardware/changes?since=`): a `304` when nothing changed, the changed items otherwise.\n\
- \"Shown on the portal's page after\" is from the API write's answer to the first page showing \
the new name: at most one `REFRESH_INTERVAL` plus a page render, whatever the inventory's size.\n\
- RSS after load includes buffers kept by the allocator after 1000 concurrent connections; both \
services hand freed memory back every few seconds when RSS grew (see RSS at rest)."
    );
    out
}
