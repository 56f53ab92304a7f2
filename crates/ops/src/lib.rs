//! Operational plumbing shared by the two services.
//!
//! # Layout
//! - [`telemetry`]: `tracing` subscriber set-up, JSON in containers, text on a terminal.
//! - [`http`]: the middleware stack every router gets: request id, trace span, `x-served-by`.
//! - [`metrics`]: per-route request counters and latency histograms in Prometheus format.
//! - [`shutdown`]: resolves on Ctrl-C or SIGTERM, for graceful drain.
//! - [`periodic`]: the loop behind every background refresh.
//! - [`healthcheck`]: the client behind `hardware healthcheck` / `portal healthcheck`, used by
//!   exec-form container healthchecks in images that have no shell or curl.
//! - [`instance`]: the name a process answers with in `x-served-by`.
//! - [`settings`]: checks of settings clap cannot express, naming the setting.

pub mod healthcheck;
pub mod http;
pub mod instance;
pub mod metrics;
pub mod periodic;
pub mod settings;
pub mod shutdown;
pub mod telemetry;

/// The process exit for a thin `main`: 0 on success, otherwise the whole
/// cause chain on one line of stderr (`<binary>: <error>: <cause>…`) and 1.
pub fn exit(binary: &str, result: anyhow::Result<()>) -> std::process::ExitCode {
    match result {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("{binary}: {err:#}");
            std::process::ExitCode::FAILURE
        }
    }
}
