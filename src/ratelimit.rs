//! Request-rate limits: keyed GCRA limiters (`governor`) held in memory, per
//! gateway process. Three of them:
//!
//! - per API key on the customer API;
//! - per client address on the data plane (IPv6 counted per /64, since one
//!   host usually holds a whole /64);
//! - per client address for refused credentials (bad download tokens, bad API
//!   keys): past it, further refusals are `429`, so a flood of bad URLs costs
//!   one map lookup each.
//!
//! Memory stays bounded: [`RateLimits::evict_idle`] (run every minute by the
//! gateway) drops every key whose state is back to a full burst, i.e. any key
//! not seen for about one burst's worth of time.

use std::hash::Hash;
use std::net::{IpAddr, Ipv6Addr};
use std::num::NonZeroU32;
use std::time::Duration;

use governor::clock::{Clock, DefaultClock};
use governor::middleware::NoOpMiddleware;
use governor::state::keyed::DashMapStateStore;
use governor::{Quota, RateLimiter};

use crate::config::LimitsConfig;
use crate::signing::canonical_ip;

/// How often the gateway evicts idle keys.
pub const EVICT_EVERY: Duration = Duration::from_secs(60);

/// A governor limiter keyed by `K` in a concurrent map.
type Limiter<K, C> = RateLimiter<K, DashMapStateStore<K>, C, NoOpMiddleware<<C as Clock>::Instant>>;

/// One keyed limiter, or none when its rate is 0.
pub struct Keyed<K: Hash + Eq + Clone, C: Clock = DefaultClock> {
    limiter: Option<Limiter<K, C>>,
    clock: C,
}

impl<K: Hash + Eq + Clone, C: Clock + Clone> std::fmt::Debug for Keyed<K, C> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Keyed").field("enabled", &self.limiter.is_some()).field("keys", &self.len()).finish()
    }
}

impl<K: Hash + Eq + Clone, C: Clock + Clone> Keyed<K, C> {
    /// `rate` per `per`, bursts of `burst`; `None` when `rate` is 0.
    pub fn new(rate: u32, per: Duration, burst: u32, clock: C) -> Self {
        let quota = NonZeroU32::new(rate)
            .and_then(|r| Quota::with_period(per / r.get()))
            .map(|q| q.allow_burst(NonZeroU32::new(burst).unwrap_or(NonZeroU32::MIN)));
        let limiter = quota.map(|q| RateLimiter::dashmap_with_clock(q, clock.clone()));
        Self { limiter, clock }
    }

    /// Count one request for `key`: `Err(retry after)` when over the limit.
    pub fn check(&self, key: &K) -> Result<(), Duration> {
        match &self.limiter {
            None => Ok(()),
            Some(l) => l.check_key(key).map_err(|not_until| not_until.wait_time_from(self.clock.now())),
        }
    }

    /// Forget keys that are back to a full burst.
    pub fn evict_idle(&self) {
        if let Some(l) = &self.limiter {
            l.retain_recent();
            l.shrink_to_fit();
        }
    }

    /// Keys held right now.
    pub fn len(&self) -> usize {
        self.limiter.as_ref().map_or(0, RateLimiter::len)
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// The gateway's limiters.
#[derive(Debug)]
pub struct RateLimits {
    pub api_key: Keyed<String>,
    pub address: Keyed<IpAddr>,
    pub bad_credentials: Keyed<IpAddr>,
    /// Portal sign-in e-mails per address.
    pub sign_in_email: Keyed<String>,
    /// Portal sign-in requests per client address.
    pub sign_in_address: Keyed<IpAddr>,
}

impl RateLimits {
    pub fn from_config(l: &LimitsConfig, portal: &crate::config::PortalConfig) -> Self {
        let clock = DefaultClock::default();
        let second = Duration::from_secs(1);
        let hour = Duration::from_secs(3600);
        Self {
            sign_in_email: Keyed::new(
                portal.links_per_email_per_hour,
                hour,
                portal.links_per_email_per_hour,
                clock.clone(),
            ),
            sign_in_address: Keyed::new(
                portal.links_per_address_per_hour,
                hour,
                portal.links_per_address_per_hour,
                clock.clone(),
            ),
            api_key: Keyed::new(l.api_key_per_second, second, l.api_key_burst, clock.clone()),
            address: Keyed::new(l.address_per_second, second, l.address_burst, clock.clone()),
            bad_credentials: Keyed::new(
                l.bad_credentials_per_minute,
                Duration::from_secs(60),
                l.bad_credentials_burst,
                clock,
            ),
        }
    }

    /// Count a data-plane request from `client`.
    pub fn data_plane_request(&self, client: IpAddr) -> Result<(), Duration> {
        self.address.check(&address_key(client))
    }

    /// Count a refused credential (token, grant, API key) from `client`.
    pub fn refused_credential(&self, client: IpAddr) -> Result<(), Duration> {
        self.bad_credentials.check(&address_key(client))
    }

    /// Evict idle keys every [`EVICT_EVERY`], until the task is dropped.
    pub async fn evict_worker(self: std::sync::Arc<Self>) {
        let mut tick = tokio::time::interval(EVICT_EVERY);
        loop {
            tick.tick().await;
            self.evict_idle();
        }
    }

    pub fn evict_idle(&self) {
        self.api_key.evict_idle();
        self.address.evict_idle();
        self.bad_credentials.evict_idle();
        self.sign_in_email.evict_idle();
        self.sign_in_address.evict_idle();
    }

    /// Count a portal sign-in started with an OpenID provider from `client`
    /// (a record each, so limited as sign-in requests are).
    pub fn sso_start(&self, client: IpAddr) -> Result<(), Duration> {
        self.sign_in_address.check(&address_key(client))
    }

    /// Count a portal sign-in request for `email` from `client`.
    pub fn sign_in(&self, email: &str, client: IpAddr) -> Result<(), Duration> {
        self.sign_in_address.check(&address_key(client))?;
        self.sign_in_email.check(&email.to_owned())
    }
}

/// The key an address is limited under: IPv4 (and IPv4-mapped IPv6) as is,
/// other IPv6 addresses by their /64.
fn address_key(ip: IpAddr) -> IpAddr {
    match canonical_ip(ip) {
        IpAddr::V6(v6) => {
            let s = v6.segments();
            IpAddr::V6(Ipv6Addr::new(s[0], s[1], s[2], s[3], 0, 0, 0, 0))
        }
        v4 => v4,
    }
}

/// Whole seconds for a `Retry-After` header: rounded up, at least 1.
pub fn retry_after_secs(wait: Duration) -> u64 {
    (wait.as_secs() + u64::from(wait.subsec_nanos() > 0)).max(1)
}

#[cfg(test)]
mod tests {
    use governor::clock::FakeRelativeClock;

    use super::*;

    #[test]
    fn limits_bursts_then_recovers_at_the_rate() {
        let clock = FakeRelativeClock::default();
        let l: Keyed<&str, _> = Keyed::new(2, Duration::from_secs(1), 3, clock.clone());
        for _ in 0..3 {
            assert!(l.check(&"a").is_ok());
        }
        let wait = l.check(&"a").unwrap_err();
        assert_eq!(wait, Duration::from_millis(500), "2 per second: one every 500 ms");
        assert!(l.check(&"b").is_ok(), "keys are independent");
        clock.advance(Duration::from_millis(500));
        assert!(l.check(&"a").is_ok());
        assert!(l.check(&"a").is_err());
    }

    #[test]
    fn idle_keys_are_evicted_so_memory_stays_bounded() {
        let clock = FakeRelativeClock::default();
        let l: Keyed<u32, _> = Keyed::new(10, Duration::from_secs(1), 5, clock.clone());
        for key in 0..10_000 {
            assert!(l.check(&key).is_ok());
        }
        assert_eq!(l.len(), 10_000);
        l.evict_idle();
        assert_eq!(l.len(), 10_000, "just used: kept");
        clock.advance(Duration::from_secs(1));
        assert!(l.check(&7).is_ok());
        l.evict_idle();
        assert_eq!(l.len(), 1, "only the key still in use is kept");
    }

    #[test]
    fn zero_rate_means_no_limit() {
        let l: Keyed<u32, _> = Keyed::new(0, Duration::from_secs(1), 0, FakeRelativeClock::default());
        for _ in 0..1000 {
            assert!(l.check(&1).is_ok());
        }
        assert!(l.is_empty());
    }

    #[test]
    fn ipv6_is_limited_per_64_and_mapped_v4_as_v4() {
        let a: IpAddr = "2001:db8:1:2:aaaa::1".parse().unwrap();
        let b: IpAddr = "2001:db8:1:2:bbbb::9".parse().unwrap();
        let c: IpAddr = "2001:db8:1:3::1".parse().unwrap();
        assert_eq!(address_key(a), address_key(b));
        assert_ne!(address_key(a), address_key(c));
        let mapped: IpAddr = "::ffff:192.0.2.7".parse().unwrap();
        assert_eq!(address_key(mapped), "192.0.2.7".parse::<IpAddr>().unwrap());
    }

    #[test]
    fn retry_after_rounds_up() {
        assert_eq!(retry_after_secs(Duration::ZERO), 1);
        assert_eq!(retry_after_secs(Duration::from_millis(1)), 1);
        assert_eq!(retry_after_secs(Duration::from_secs(2)), 2);
        assert_eq!(retry_after_secs(Duration::from_millis(2001)), 3);
    }
}
