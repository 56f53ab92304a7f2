//! A TCP proxy that fails the way networks do: cleanly (every connection
//! reset, new ones refused) or **silently** (packets vanish: nothing is
//! answered and nothing is closed, so only the caller's own timeouts help).
//!
//! Used by the drills in front of MariaDB and Redis; only ever forwards to
//! the loopback address it was given.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;

/// What the proxy does with traffic.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// Forwards both ways.
    Open,
    /// Resets: open connections are closed, new ones closed on accept.
    Cut,
    /// Swallows: new connections are accepted and never answered, open ones
    /// stop forwarding; nothing is closed.
    Blackhole,
}

/// The proxy; dropping it closes everything it holds.
pub struct FaultProxy {
    pub addr: SocketAddr,
    mode: watch::Sender<Mode>,
    /// Connections swallowed by a blackhole, held open until the proxy goes.
    held: Arc<Mutex<Vec<TcpStream>>>,
    accept: tokio::task::JoinHandle<()>,
}

impl FaultProxy {
    pub async fn start(upstream: SocketAddr) -> Self {
        assert!(upstream.ip().is_loopback(), "drills only talk to loopback");
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr");
        let (mode, _) = watch::channel(Mode::Open);
        let held: Arc<Mutex<Vec<TcpStream>>> = Arc::default();
        let (modes, held2) = (mode.clone(), Arc::clone(&held));
        let accept = tokio::spawn(async move {
            while let Ok((inbound, _)) = listener.accept().await {
                let current = *modes.borrow();
                match current {
                    Mode::Cut => drop(inbound),
                    Mode::Blackhole => held2.lock().expect("lock").push(inbound),
                    Mode::Open => {
                        tokio::spawn(link(inbound, upstream, modes.subscribe(), held2.clone()));
                    }
                }
            }
        });
        Self {
            addr,
            mode,
            held,
            accept,
        }
    }

    pub fn set(&self, mode: Mode) {
        self.mode.send_replace(mode);
        if mode != Mode::Blackhole {
            // A network that comes back (or resets) ends what it swallowed.
            self.held.lock().expect("lock").clear();
        }
    }
}

impl Drop for FaultProxy {
    fn drop(&mut self) {
        self.accept.abort();
        self.mode.send_replace(Mode::Cut);
        self.held.lock().expect("lock").clear();
    }
}

/// One forwarded connection: copies until the mode leaves `Open`; then a cut
/// closes both sides and a blackhole keeps both open, silent.
async fn link(
    mut inbound: TcpStream,
    upstream: SocketAddr,
    mut mode: watch::Receiver<Mode>,
    held: Arc<Mutex<Vec<TcpStream>>>,
) {
    let Ok(mut outbound) = TcpStream::connect(upstream).await else {
        return;
    };
    tokio::select! {
        _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound) => return,
        _ = mode.wait_for(|m| *m != Mode::Open) => {}
    }
    if *mode.borrow() == Mode::Blackhole {
        let mut held = held.lock().expect("lock");
        held.push(inbound);
        held.push(outbound);
    }
}
