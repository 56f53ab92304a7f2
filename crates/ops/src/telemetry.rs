//! Logging set-up: one `tracing` subscriber per process.

use std::io::IsTerminal;
use tracing_subscriber::{EnvFilter, fmt, prelude::*};

/// How log lines are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum LogFormat {
    /// JSON when stderr is not a terminal (containers, CI), text otherwise.
    Auto,
    /// One JSON object a line, for log shippers.
    Json,
    /// Human-readable lines.
    Text,
}

impl LogFormat {
    fn wants_json(self) -> bool {
        match self {
            Self::Json => true,
            Self::Text => false,
            Self::Auto => !std::io::stderr().is_terminal(),
        }
    }
}

/// Installs the global subscriber. `RUST_LOG` filters (default `info`).
///
/// Logs go to stderr so stdout stays free for command output (`migrate`, `healthcheck`).
pub fn init(format: LogFormat) {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let registry = tracing_subscriber::registry().with(filter);
    // `try_init` so a second call (tests that build several apps) is harmless.
    let result = if format.wants_json() {
        registry
            .with(
                fmt::layer()
                    .json()
                    .flatten_event(true)
                    .with_current_span(true)
                    .with_span_list(false)
                    .with_writer(std::io::stderr),
            )
            .try_init()
    } else {
        registry
            .with(
                fmt::layer()
                    .with_ansi(std::io::stderr().is_terminal())
                    .with_writer(std::io::stderr),
            )
            .try_init()
    };
    drop(result);
}
