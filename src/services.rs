//! What every door onto the gateway shares, built once by [`crate::app`]: the
//! key ring, blob storage, the catalog, quotas and leases, the event recorder,
//! request-rate limits, the clock, and the policies read from configuration.
//!
//! The download lifecycle ([`crate::downloads`]) and the upload rules
//! ([`crate::uploads`]) are functions over these; the HTTP surfaces parse
//! requests, call them, and render what they return.

use std::sync::Arc;
use std::time::Duration;

use ipnet::IpNet;

use crate::admin_tokens::AdminTokens;
use crate::catalog::CatalogRepo;
use crate::clock::Clock;
use crate::cuts::Streams;
use crate::entitlement::access::UrlPolicy;
use crate::events::denials::Digest;
use crate::events::{Detail, Event, EventLog, Recorder, Subject};
use crate::metrics::{DownloadGauge, Metrics};
use crate::quota::{self, Leases, QuotaStore};
use crate::ratelimit::RateLimits;
use crate::signing::KeyRing;
use crate::storage::BlobStore;

/// How downloads are issued and redeemed.
#[derive(Debug, Clone)]
pub struct DownloadPolicy {
    /// Where download URLs point and how long they live.
    pub urls: UrlPolicy,
    /// Resume window, lease lifetime, default quota, store-failure mode.
    pub quota: quota::Settings,
    /// Seconds of clock difference tolerated on token times.
    pub clock_skew: u64,
    /// Longest wait for the next chunk from storage before a stream is cut.
    pub idle_timeout: Duration,
    /// Bind a started grant to its starting client's network.
    pub bind_started: Option<crate::config::GrantBinding>,
    /// Lifetime of the presigned URL a `redirect` delivery answers with.
    pub redirect_ttl: Duration,
}

/// How uploads are taken.
#[derive(Debug, Clone)]
pub struct UploadPolicy {
    /// How long a direct upload's presigned requests stay valid.
    pub url_ttl: Duration,
    /// Longest wait for the next chunk of an upload (or of a file read back
    /// to measure it) before it is given up.
    pub idle_timeout: Duration,
    /// A direct upload that has received nothing for this long is abandoned.
    pub abandon_idle_for: Duration,
}

/// Everything a request needs; shared by all requests.
#[derive(Debug)]
pub struct Services {
    pub clock: Arc<dyn Clock>,
    pub keys: KeyRing,
    pub storage: Arc<dyn BlobStore>,
    pub catalog: CatalogRepo,
    /// Quota counters, grant starts and leases in the state store.
    pub quotas: Arc<dyn QuotaStore>,
    /// The download event log in the state store (reading, groups); events
    /// are written through [`Services::events`].
    pub event_log: Arc<dyn EventLog>,
    /// The download leases this process holds.
    pub leases: Arc<Leases>,
    /// Where events go: the queue in front of the event log.
    pub events: Recorder,
    pub metrics: Arc<Metrics>,
    /// The number of response bodies being streamed right now.
    pub active_downloads: DownloadGauge,
    /// The download streams running here, for operators' cut orders.
    pub streams: Arc<Streams>,
    pub limits: Arc<RateLimits>,
    pub admin_tokens: AdminTokens,
    /// Peers whose `X-Forwarded-For` is believed.
    pub trusted_proxies: Vec<IpNet>,
    pub downloads: DownloadPolicy,
    pub uploads: UploadPolicy,
    /// The longest a readiness check waits for the dependencies.
    pub readiness_timeout: Duration,
    /// Repeated identical denials, recorded once per window.
    pub denials: Arc<Digest>,
    /// The CDNs `edge` products are delivered through.
    pub cdn: Arc<crate::cdn::Profiles>,
    /// The customer portal's settings.
    pub portal: crate::config::PortalConfig,
    /// The SMTP relay sign-in e-mails go through, when one is configured.
    pub mail: Option<crate::mail::Mailer>,
    /// What the portal shows of the vendor (configuration, or the admin
    /// API's, refreshed from the state store by `portal::branding_worker`).
    pub branding: std::sync::RwLock<crate::config::portal::Branding>,
    /// The OpenID providers portal users may sign in with.
    pub sso: crate::oidc::Providers,
}

impl Services {
    /// What the portal shows of the vendor, now.
    pub fn brand(&self) -> crate::config::portal::Branding {
        self.branding.read().map_or_else(|poisoned| poisoned.into_inner().clone(), |b| b.clone())
    }

    /// Record an event at the clock's current time.
    pub async fn record(&self, subject: Subject, detail: Detail) {
        self.events.record(Event::new(self.clock.now_millis(), subject, detail)).await;
    }

    /// Record a `download.denied`, unless it repeats one recorded within
    /// `events.denial_window` (then it is counted into that one's summary).
    pub async fn record_denial(&self, subject: Subject, detail: Detail) {
        if self.denials.admit(&subject, &detail, self.clock.now_millis()) {
            self.record(subject, detail).await;
        }
    }

    /// Record the summaries of the denial windows that have closed.
    pub async fn close_denial_windows(&self) {
        for (subject, detail) in self.denials.close(self.clock.now_millis()) {
            self.record(subject, detail).await;
        }
    }

    /// [`Services::close_denial_windows`] every half window, until dropped.
    pub async fn denial_worker(self: Arc<Self>) {
        let every = (self.denials.window() / 2).max(Duration::from_millis(100));
        let mut tick = tokio::time::interval(every);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            self.close_denial_windows().await;
        }
    }

    /// The same, without waiting (from a `Drop`).
    pub fn record_now(&self, subject: Subject, detail: Detail) {
        self.events.record_now(Event::new(self.clock.now_millis(), subject, detail));
    }
}
