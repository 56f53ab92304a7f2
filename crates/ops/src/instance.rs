//! The instance name a process puts in `x-served-by`.

/// The host name (a container's id under Docker, the pod name under Kubernetes).
///
/// Read from `/proc/sys/kernel/hostname`, then `HOSTNAME`; `"unknown"` when neither exists.
pub fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .or_else(|| std::env::var("HOSTNAME").ok())
        .map(|name| name.trim().to_owned())
        .filter(|name| !name.is_empty())
        .unwrap_or_else(|| "unknown".to_owned())
}

/// The name to answer with: `configured` (`INSTANCE_ID`) when set, else the host name.
pub fn name(configured: Option<&str>) -> String {
    configured.map_or_else(hostname, str::to_owned)
}
