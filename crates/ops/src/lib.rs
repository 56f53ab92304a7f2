//! Operational plumbing shared by the two services.
//!
//! # Layout
//! - [`telemetry`]: `tracing` subscriber set-up, JSON in containers, text on a terminal.
//! - [`http`]: the middleware stack every router gets: request id, trace span, `x-served-by`.
//! - [`metrics`]: per-route request counters and latency histograms in Prometheus format.
//! - [`shutdown`]: resolves on Ctrl-C or SIGTERM, for graceful drain.
//! - [`periodic`]: the loop behind every background refresh.
//! - [`memory`]: hands freed memory back to the system, so RSS is what is live.
//! - [`healthcheck`]: the client behind `hardware healthcheck` / `portal healthcheck`, used by
//!   exec-form container healthchecks in images that have no shell or curl.
//! - [`instance`]: the name a process answers with in `x-served-by`.
//! - [`settings`]: checks of settings clap cannot express, naming the setting.

pub mod healthcheck;
pub mod http;
pub mod instance;
pub mod memory;
pub mod metrics;
pub mod periodic;
pub mod settings;
pub mod shutdown;
pub mod telemetry;

/// Runs a binary's async `main` on a multi-threaded runtime and exits
/// promptly when it returns. First it sets the allocator to give large
/// blocks back as they are freed ([`heap::keep_large_blocks_apart`]).
///
/// `#[tokio::main]` drops its runtime by waiting for every blocking task,
/// and a DNS lookup is one: when a dependency's container is removed first,
/// Docker's resolver forwards its vanished name upstream, where (no internet
/// here, or a slow resolver anywhere) the lookup hangs ~10 s. A service that
/// had already drained was then killed by the container runtime's grace
/// period (`docker compose down`: 12–14 s). Half a second is enough for any
/// task that is really finishing.
pub fn run(
    main: impl std::future::Future<Output = std::process::ExitCode>,
) -> std::process::ExitCode {
    // Before any thread or buffer exists (see `heap`): large transient
    // buffers then never leave holes in the heap.
    heap::keep_large_blocks_apart();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(err) => {
            eprintln!("cannot start the async runtime: {err}");
            return std::process::ExitCode::FAILURE;
        }
    };
    let code = runtime.block_on(main);
    runtime.shutdown_timeout(std::time::Duration::from_millis(500));
    code
}

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
