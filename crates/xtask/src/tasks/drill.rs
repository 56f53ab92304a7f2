//! `cargo xtask drill`: fault drills against release builds on loopback.
//!
//! The hostile-client drill (what one anonymous client can make the portal
//! hold) lives in `hostile.rs`.
//!
//! Each drill is bounded in time, sends traffic only to processes this command
//! started on 127.0.0.1, prints its figures and ends with a PASS or FAIL line;
//! the last line is "drill: N passed, M failed".

use crate::support::http::{http_get, metric, wait_for_200};
use crate::support::mariadb::MariaDb;
use crate::support::process::{Service, rss_mb};
use crate::support::services::{start_hardware, start_portal};
use crate::support::wrk::wrk;
use crate::support::{Result, build_release, free_port, provision};
use std::process::Command;
use std::time::{Duration, Instant};

struct Tally {
    passed: u32,
    failed: u32,
}

impl Tally {
    fn check(&mut self, what: &str, ok: bool) {
        if ok {
            self.passed += 1;
            println!("drill PASS: {what}");
        } else {
            self.failed += 1;
            println!("drill FAIL: {what}");
        }
    }
}

fn signal(service: &Service, name: &str) {
    signal_pid(service.0.id(), name);
}

/// Sends signal `name` (e.g. `STOP`) to a process this drill started.
pub(super) fn signal_pid(pid: u32, name: &str) {
    let _ = Command::new("kill")
        .args([format!("-{name}"), pid.to_string()])
        .status();
}

/// Flags of `cargo xtask drill`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// Length of the soak (steady load while nothing fails), in seconds.
    #[arg(long, default_value_t = 60, value_parser = clap::value_parser!(u64).range(5..=3600))]
    soak_seconds: u64,
    /// Only the hostile-client drill.
    #[arg(long)]
    hostile_only: bool,
}

impl Default for Args {
    fn default() -> Self {
        Self {
            soak_seconds: 60,
            hostile_only: false,
        }
    }
}

pub fn run(args: &Args) -> Result {
    let Args {
        soak_seconds,
        hostile_only,
    } = *args;
    provision::ensure_mariadb()?;
    provision::ensure_packages(&["wrk"], "wrk")?;
    build_release(&["hardware", "portal"])?;
    let db = MariaDb::start()?;
    let mut tally = Tally {
        passed: 0,
        failed: 0,
    };
    if !hostile_only {
        faults(&db, &mut tally, soak_seconds)?;
    }
    // One hostile client against the public edge.
    super::hostile::run(&db, &mut |what, ok| tally.check(what, ok))?;
    drop(db);
    println!("drill: {} passed, {} failed", tally.passed, tally.failed);
    if tally.failed == 0 {
        Ok(())
    } else {
        Err(format!("{} drill(s) failed", tally.failed))
    }
}

/// The fault drills: soak, a replica killed, hardware hung, down, never reached.
fn faults(db: &MariaDb, tally: &mut Tally, soak_seconds: u64) -> Result {
    let fast = [
        ("PROBE_DELAY", "200ms".to_owned()),
        ("AVAILABILITY_TTL", "5s".to_owned()),
    ];
    let ports = [free_port()?, free_port()?, free_port()?];
    let mut replicas = Vec::new();
    for port in ports {
        replicas.push(Some(start_hardware(db, port, &fast)?));
    }
    for port in ports {
        wait_for_200(port, "/readyz", Duration::from_secs(30))?;
    }
    let urls: Vec<String> = ports
        .iter()
        .map(|p| format!("http://127.0.0.1:{p}"))
        .collect();
    let (portal_port, admin_port) = (free_port()?, free_port()?);
    let portal = start_portal(&urls.join(","), portal_port, admin_port, true)?;
    wait_for_200(portal_port, "/", Duration::from_secs(10))?;
    std::thread::sleep(Duration::from_secs(2));

    // 1. Soak: sustained load, no errors, no memory growth.
    println!("== soak: {soak_seconds} s at 256 connections on /");
    let _warm = wrk(portal_port, "/", 256, 3)?;
    let rss_before = rss_mb(&portal.0);
    // Sample once the 256 connections and their buffers have settled, then
    // at the end: growth between the two is what a leak would show; the ramp
    // up to the working set is reported but not counted as growth.
    let settle = soak_seconds / 4;
    let soak = std::thread::spawn(move || wrk(portal_port, "/", 256, soak_seconds));
    std::thread::sleep(Duration::from_secs(settle));
    let rss_settled = rss_mb(&portal.0);
    let soak = soak
        .join()
        .map_err(|_| "load thread panicked".to_owned())??;
    let rss_after = rss_mb(&portal.0);
    println!(
        "drill figure: {} requests, {:.0} req/s, p99 {:.2} ms, {} errors; portal RSS {rss_before:.1} MB before, {rss_settled:.1} MB after {settle} s, {rss_after:.1} MB at the end",
        soak.requests, soak.rps, soak.p99_ms, soak.errors
    );
    tally.check("soak: 0 errors", soak.errors == 0);
    tally.check(
        "soak: portal RSS growth ≤ 10 % once the load has settled",
        rss_after <= rss_settled * 1.10,
    );

    // 2. One of three replicas killed under load; it rejoins when restarted.
    println!("== one hardware replica killed under load");
    let victim = ports[0];
    let load = std::thread::spawn(move || wrk(portal_port, "/", 64, 8));
    std::thread::sleep(Duration::from_secs(2));
    if let Some(mut service) = replicas[0].take() {
        let _ = service.0.kill();
        let _ = service.0.wait();
        std::mem::forget(service);
    }
    let killed = load
        .join()
        .map_err(|_| "load thread panicked".to_owned())??;
    let share = killed.errors as f64 / killed.requests.max(1) as f64;
    println!(
        "drill figure: {} of {} portal requests failed",
        killed.errors, killed.requests
    );
    tally.check("replica killed: ≤ 0.1 % failed requests", share <= 0.001);
    let calls_ok = |port: u16| {
        metric(
            admin_port,
            "portal_upstream_calls_total",
            &format!("127.0.0.1:{port}\",outcome=\"ok"),
        )
    };
    let before = calls_ok(victim);
    replicas[0] = Some(start_hardware(db, victim, &fast)?);
    wait_for_200(victim, "/readyz", Duration::from_secs(30))?;
    // Ejection lasts 10 s by default; give it that plus a few refreshes.
    let rejoined = {
        let started = Instant::now();
        let mut seen = false;
        while started.elapsed() < Duration::from_secs(20) {
            if calls_ok(victim) > before {
                seen = true;
                break;
            }
            std::thread::sleep(Duration::from_millis(250));
        }
        println!(
            "drill figure: restarted replica served the portal again after {:.1} s",
            started.elapsed().as_secs_f64()
        );
        seen
    };
    tally.check("the restarted replica rejoins", rejoined);

    // 3. Hardware hung (SIGSTOP): pages still answer within the timeout.
    println!("== every hardware replica hung (SIGSTOP)");
    for service in replicas.iter().flatten() {
        signal(service, "STOP");
    }
    std::thread::sleep(Duration::from_secs(6)); // past STALE_AFTER
    let started = Instant::now();
    let answer = http_get(portal_port, "/");
    let took = started.elapsed();
    let (status, body) = answer.map(|(s, b, ..)| (s, String::from_utf8_lossy(&b).into_owned()))?;
    println!(
        "drill figure: / answered {status} in {:.1} ms with hardware hung",
        took.as_secs_f64() * 1000.0
    );
    tally.check(
        "hung hardware: / answers 200 within 3 s",
        status == 200 && took <= Duration::from_secs(3),
    );
    tally.check(
        "hung hardware: the page shows the stale banner",
        body.contains("role=\"alert\" >"),
    );
    for service in replicas.iter().flatten() {
        signal(service, "CONT");
    }

    // 4. All hardware down: last-known-good (200), never a 500.
    println!("== every hardware replica stopped");
    drop(replicas);
    std::thread::sleep(Duration::from_secs(2));
    let (status, body, ..) = http_get(portal_port, "/")?;
    tally.check(
        "all hardware down: 200 with last-known-good data and the stale banner",
        status == 200 && String::from_utf8_lossy(&body).contains("role=\"alert\" >"),
    );
    drop(portal);

    // 5. A portal that never saw hardware: a friendly 503, quickly.
    let (lonely_port, lonely_admin) = (free_port()?, free_port()?);
    let lonely = start_portal(
        &format!("http://127.0.0.1:{}", free_port()?),
        lonely_port,
        lonely_admin,
        true,
    )?;
    std::thread::sleep(Duration::from_millis(500));
    let started = Instant::now();
    let (status, body, ..) = http_get(lonely_port, "/")?;
    let took = started.elapsed();
    println!(
        "drill figure: / with no hardware ever reached answered {status} in {:.1} ms",
        took.as_secs_f64() * 1000.0
    );
    tally.check(
        "nothing cached, hardware down: friendly 503 within 3 s",
        status == 503
            && took <= Duration::from_secs(3)
            && String::from_utf8_lossy(&body).contains("<html"),
    );
    drop(lonely);
    Ok(())
}
