//! Loopback ports for tests, bound and held until the router takes them (as sozu's
//! `e2e/src/port_registry.rs`): a port the OS picked for one test is never picked for another
//! test of the same process, even after its holder let go of it.

use std::collections::HashSet;
use std::net::{SocketAddr, TcpListener};
use std::sync::Mutex;

/// Every port handed out in this process. Test support only: the router itself has no
/// process-wide state.
static HANDED_OUT: Mutex<Option<HashSet<u16>>> = Mutex::new(None);

/// Hands out loopback ports that no other test of this process holds or held.
pub struct PortRegistry;

/// A port bound on 127.0.0.1 and held: nothing else can bind it until it is released or
/// its listener is taken.
#[derive(Debug)]
pub struct HeldPort {
    listener: TcpListener,
    addr: SocketAddr,
}

impl PortRegistry {
    /// A fresh port, bound now.
    pub fn hold() -> HeldPort {
        let mut handed_out = HANDED_OUT.lock().unwrap_or_else(|p| p.into_inner());
        let handed_out = handed_out.get_or_insert_with(HashSet::new);
        loop {
            let listener = TcpListener::bind("127.0.0.1:0").expect("bind a loopback port");
            let addr = listener
                .local_addr()
                .expect("a bound socket has an address");
            // A port another test held and released may come back from the OS: skip it, so
            // a router still starting on it never meets a second one.
            if handed_out.insert(addr.port()) {
                return HeldPort { listener, addr };
            }
        }
    }
}

impl HeldPort {
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The bound listener, for a server that takes one (the router's side listeners).
    pub fn into_listener(self) -> TcpListener {
        self.listener
    }

    /// Lets go of the port so that a server binding it itself (Pingora) can take it. The
    /// registry never hands it out again.
    pub fn release(self) -> SocketAddr {
        self.addr
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_released_port_is_never_handed_out_again() {
        let first = PortRegistry::hold();
        let port = first.release();
        let later: Vec<HeldPort> = (0..64).map(|_| PortRegistry::hold()).collect();
        assert!(later.iter().all(|held| held.addr() != port));
        let unique: HashSet<u16> = later.iter().map(|held| held.addr().port()).collect();
        assert_eq!(unique.len(), later.len());
    }

    #[test]
    fn a_held_port_cannot_be_bound_by_anyone_else() {
        let held = PortRegistry::hold();
        assert!(TcpListener::bind(held.addr()).is_err());
        let addr = held.release();
        TcpListener::bind(addr).expect("a released port can be bound");
    }
}
