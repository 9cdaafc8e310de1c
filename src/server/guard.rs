//! What bounds a connection before and between its requests, and how many
//! connections one address may hold.
//!
//! hyper bounds a request head once it has started (`header_read_timeout`),
//! and a stalled write is cut by [`super::WriteIdleTimeout`]; neither covers a
//! connection that sends nothing, sends the HTTP/2 preface slowly, or keeps
//! an HTTP/2 connection open with no streams while answering pings. The
//! connection's [`Activity`] does: a connection that has not started its
//! first request within `header_read_timeout`, or has had no request in
//! flight for `idle_timeout`, is closed.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex, PoisonError};

use ipnet::IpNet;
use tokio::time::{Duration, Instant};

/// Requests in flight on one connection, and since when it has had none.
#[derive(Debug)]
pub(super) struct Activity {
    state: Mutex<State>,
}

#[derive(Debug)]
struct State {
    in_flight: usize,
    idle_since: Instant,
    served: bool,
}

/// Held by a request from the moment hyper hands it over until its response
/// body is done (sent or dropped).
#[derive(Debug)]
pub(super) struct InFlight(Arc<Activity>);

impl Drop for InFlight {
    fn drop(&mut self) {
        let mut s = self.0.state.lock().unwrap_or_else(PoisonError::into_inner);
        s.in_flight = s.in_flight.saturating_sub(1);
        if s.in_flight == 0 {
            s.idle_since = Instant::now();
        }
    }
}

impl Activity {
    pub(super) fn new() -> Arc<Self> {
        Arc::new(Self { state: Mutex::new(State { in_flight: 0, idle_since: Instant::now(), served: false }) })
    }

    pub(super) fn begin(self: &Arc<Self>) -> InFlight {
        let mut s = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        s.in_flight += 1;
        s.served = true;
        InFlight(self.clone())
    }

    /// When the connection is to be closed if nothing changes: `first`
    /// after it opened without a request, `idle` after its last request
    /// ended; `None` while a request is in flight.
    pub(super) fn deadline(&self, first: Duration, idle: Duration) -> Option<Instant> {
        let s = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        if s.in_flight > 0 {
            return None;
        }
        Some(s.idle_since + if s.served { idle } else { first })
    }

    /// Resolves when the connection has been idle past its deadline.
    pub(super) async fn expired(&self, first: Duration, idle: Duration) {
        loop {
            match self.deadline(first, idle) {
                Some(at) if at <= Instant::now() => return,
                Some(at) => tokio::time::sleep_until(at).await,
                // A request is in flight; look again later (its end moves
                // the deadline).
                None => tokio::time::sleep(first.min(idle)).await,
            }
        }
    }
}

/// Open connections per client address, capped.
#[derive(Debug)]
pub(super) struct PerAddress {
    cap: usize,
    exempt: Vec<IpNet>,
    open: Mutex<HashMap<IpAddr, usize>>,
}

/// One connection's place in its address's count.
#[derive(Debug)]
pub(super) struct AddressSlot {
    owner: Arc<PerAddress>,
    ip: IpAddr,
}

impl Drop for AddressSlot {
    fn drop(&mut self) {
        let mut open = self.owner.open.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(n) = open.get_mut(&self.ip) {
            *n -= 1;
            if *n == 0 {
                open.remove(&self.ip);
            }
        }
    }
}

impl PerAddress {
    /// `cap` connections per address (0: no cap); `exempt` peers (trusted
    /// load balancers, whose connections carry many clients) are not capped.
    pub(super) fn new(cap: usize, exempt: Vec<IpNet>) -> Arc<Self> {
        Arc::new(Self { cap, exempt, open: Mutex::new(HashMap::new()) })
    }

    /// A place for a connection from `ip`, or `None` when the address holds
    /// its cap already. `None` is never returned for exempt peers.
    // SECURITY: without a cap, one address could take every connection slot
    // (the listener's `max_connections`) and starve everyone else.
    pub(super) fn admit(self: &Arc<Self>, ip: IpAddr) -> Option<Option<AddressSlot>> {
        let ip = crate::signing::canonical_ip(ip);
        if self.cap == 0 || self.exempt.iter().any(|n| n.contains(&ip)) {
            return Some(None);
        }
        let mut open = self.open.lock().unwrap_or_else(PoisonError::into_inner);
        let n = open.entry(ip).or_insert(0);
        if *n >= self.cap {
            return None;
        }
        *n += 1;
        Some(Some(AddressSlot { owner: self.clone(), ip }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_address_gets_its_cap_and_its_places_back() {
        let per = PerAddress::new(2, vec!["10.0.0.0/8".parse().unwrap()]);
        let a: IpAddr = "192.0.2.1".parse().unwrap();
        let mapped: IpAddr = "::ffff:192.0.2.1".parse().unwrap();
        let first = per.admit(a).unwrap();
        let second = per.admit(mapped).unwrap();
        assert!(per.admit(a).is_none(), "a third connection, mapped or not, is over the cap");
        drop(first);
        assert!(per.admit(a).is_some());
        drop(second);
        for _ in 0..10 {
            assert!(per.admit("10.1.2.3".parse().unwrap()).is_some(), "trusted peers are not capped");
        }
        assert!(PerAddress::new(0, Vec::new()).admit(a).is_some());
    }

    #[tokio::test(start_paused = true)]
    async fn a_connection_is_closed_when_idle_past_its_deadline() {
        let first = Duration::from_secs(10);
        let idle = Duration::from_secs(60);
        let act = Activity::new();
        let opened = Instant::now();
        assert_eq!(act.deadline(first, idle), Some(opened + first));
        let req = act.begin();
        assert_eq!(act.deadline(first, idle), None, "no deadline while a request is in flight");
        tokio::time::advance(Duration::from_secs(300)).await;
        drop(req);
        let ended = Instant::now();
        assert_eq!(act.deadline(first, idle), Some(ended + idle));
        let waited = Instant::now();
        act.expired(first, idle).await;
        assert_eq!(Instant::now() - waited, idle);
    }
}
