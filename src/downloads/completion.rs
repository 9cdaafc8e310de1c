//! The completion guard: what a delivery carries along until its bytes are
//! done — the download gauge, the grant's lease, and what
//! `download.completed` will say.

use std::sync::Arc;

use crate::events::{self, Detail, Subject};
use crate::metrics::DownloadGuard;
use crate::quota::{Counter, LeaseGuard};
use crate::services::Services;
use crate::storage::StreamEnd;

pub(super) struct Completion {
    pub(super) services: Arc<Services>,
    pub(super) subject: Subject,
    pub(super) grant: Option<String>,
    pub(super) range: Option<String>,
    pub(super) expected: u64,
    /// The response ends at the file's last byte.
    pub(super) to_the_end: bool,
    pub(super) started: std::time::Instant,
    pub(super) _gauge: DownloadGuard,
    pub(super) _lease: Option<LeaseGuard>,
    /// What the bytes sent are recorded against (grant URLs only).
    pub(super) charge: Option<Charge>,
}

/// A grant stream's bytes, recorded when it ends: the grant's delivered
/// total (its bound), and what passes its file's size charged to the byte
/// quotas (the initiation charged the size).
#[derive(Debug)]
pub(super) struct Charge {
    pub(super) customer: String,
    pub(super) delivered: Counter,
    pub(super) size: u64,
    pub(super) counters: Vec<Counter>,
}

impl StreamEnd for Completion {
    fn end(&mut self, sent: u64, complete: bool) {
        if let Some(charge) = self.charge.take()
            && sent > 0
            && let Ok(rt) = tokio::runtime::Handle::try_current()
        {
            let (store, now) = (self.services.quotas.clone(), self.services.clock.now_unix());
            rt.spawn(async move {
                let Charge { customer, delivered, size, counters } = charge;
                if let Err(e) = store.record_delivery(&customer, &delivered, sent, size, &counters, now).await {
                    tracing::warn!(%customer, error = %e, sent, "could not record the bytes a grant delivered");
                }
            });
        }
        let detail = Detail::DownloadCompleted {
            grant: self.grant.take(),
            result: if complete { events::Completion::Complete } else { events::Completion::Aborted },
            bytes_sent: sent,
            bytes_expected: self.expected,
            duration_ms: u64::try_from(self.started.elapsed().as_millis()).unwrap_or(u64::MAX),
            reached_end: complete && self.to_the_end,
            range: self.range.take(),
        };
        // Queued before the drop returns, so a shutdown that follows the
        // last download finds it.
        self.services.record_now(std::mem::take(&mut self.subject), detail);
    }
}

impl std::fmt::Debug for Completion {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Completion")
            .field("grant", &self.grant)
            .field("expected", &self.expected)
            .finish_non_exhaustive()
    }
}
