//! The signal that starts a graceful drain.

/// Resolves when the process receives Ctrl-C (SIGINT) or SIGTERM.
///
/// Containers are stopped with SIGTERM, and PID 1 ignores it unless the program
/// handles it, so both are awaited. If a handler cannot be installed the
/// corresponding branch never resolves rather than shutting down at once.
pub async fn signal() {
    let ctrl_c = async {
        if tokio::signal::ctrl_c().await.is_err() {
            std::future::pending::<()>().await;
        }
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut stream) => {
                stream.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();

    tokio::select! {
        () = ctrl_c => tracing::info!("received Ctrl-C, draining"),
        () = terminate => tracing::info!("received SIGTERM, draining"),
    }
}
