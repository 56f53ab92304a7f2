//! wrk runs, parsed.

use super::Result;
use std::process::Command;

/// What one wrk run measured.
#[derive(Debug, Default, Clone)]
pub struct Load {
    pub rps: f64,
    pub p50_ms: f64,
    pub p99_ms: f64,
    pub max_ms: f64,
    pub requests: u64,
    pub errors: u64,
}

fn to_ms(text: &str) -> f64 {
    let (number, unit) = text
        .find(|c: char| c.is_ascii_alphabetic())
        .map_or((text, "ms"), |i| text.split_at(i));
    let value: f64 = number.parse().unwrap_or(f64::NAN);
    match unit {
        "us" => value / 1000.0,
        "s" => value * 1000.0,
        "m" => value * 60_000.0,
        _ => value,
    }
}

impl Load {
    /// Rounds of the same load as one: mean req/s, median p50, the worst
    /// round's p99 and max (no better than the p99 of all requests
    /// together), summed counts.
    pub fn combine(runs: &[Load]) -> Load {
        let mut p50: Vec<f64> = runs.iter().map(|run| run.p50_ms).collect();
        p50.sort_by(f64::total_cmp);
        let worst = |pick: fn(&Load) -> f64| runs.iter().map(pick).fold(0.0, f64::max);
        Load {
            rps: runs.iter().map(|run| run.rps).sum::<f64>() / runs.len().max(1) as f64,
            p50_ms: p50.get(p50.len() / 2).copied().unwrap_or(f64::NAN),
            p99_ms: worst(|run| run.p99_ms),
            max_ms: worst(|run| run.max_ms),
            requests: runs.iter().map(|run| run.requests).sum(),
            errors: runs.iter().map(|run| run.errors).sum(),
        }
    }
}

pub fn wrk(port: u16, path: &str, connections: u32, seconds: u64) -> Result<Load> {
    wrk_with(port, path, connections, seconds, &[])
}

/// [`wrk`] sending these request headers with every request.
pub fn wrk_with(
    port: u16,
    path: &str,
    connections: u32,
    seconds: u64,
    headers: &[(&str, &str)],
) -> Result<Load> {
    let mut args = vec![
        "-t2".to_owned(),
        format!("-c{connections}"),
        format!("-d{seconds}s"),
        "--timeout".to_owned(),
        "5s".to_owned(),
        "--latency".to_owned(),
    ];
    for (name, value) in headers {
        args.push("-H".to_owned());
        args.push(format!("{name}: {value}"));
    }
    args.push(format!("http://127.0.0.1:{port}{path}"));
    let out = Command::new("sh")
        .args([
            "-c",
            "ulimit -n 65536 2>/dev/null || ulimit -n 4096; exec wrk \"$@\"",
            "wrk",
        ])
        .args(&args)
        .output()
        .map_err(|e| format!("wrk: {e}"))?;
    let text = String::from_utf8_lossy(&out.stdout);
    let mut load = Load::default();
    for line in text.lines() {
        let words: Vec<&str> = line.split_whitespace().collect();
        match words.as_slice() {
            ["Requests/sec:", rps] => load.rps = rps.parse().unwrap_or(0.0),
            ["Latency", _avg, _stdev, max, ..] => load.max_ms = to_ms(max),
            ["50%", value] => load.p50_ms = to_ms(value),
            ["99%", value] => load.p99_ms = to_ms(value),
            [n, "requests", "in", ..] => load.requests = n.parse().unwrap_or(0),
            ["Non-2xx", "or", "3xx", "responses:", n] => {
                load.errors += n.parse::<u64>().unwrap_or(0)
            }
            ["Socket", "errors:", rest @ ..] => {
                load.errors += rest
                    .iter()
                    .filter_map(|w| w.trim_end_matches(',').parse::<u64>().ok())
                    .sum::<u64>();
            }
            _ => {}
        }
    }
    if load.requests == 0 {
        return Err(format!(
            "wrk produced no result: {text}{}",
            String::from_utf8_lossy(&out.stderr)
        ));
    }
    Ok(load)
}
