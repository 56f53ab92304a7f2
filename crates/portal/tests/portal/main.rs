//! Portal tests, compiled as one binary.
//!
//! - `pages`: the router driven with `oneshot`, against a stub hardware server
//!   (real HTTP, canned answers): rendering, escaping, filters, degradation.
//! - `end_to_end`: the real hardware service on a real MariaDB behind the portal.
//! - `spread`: three hardware replicas behind one portal.
//! - `browser`: headless Chromium through ChromeDriver.
//! - `edge`: timeouts, connection and stream caps, client identity through
//!   proxies, the shared first fetch, versions that mean the same everywhere.
//! - `tls`: HTTPS with rustls and a throwaway self-signed certificate.

mod browser;
mod edge;
mod end_to_end;
mod helpers;
mod pages;
mod spread;
mod tls;
mod webdriver;
