//! Repeated identical denials, recorded once per window.
//!
//! A client hammering a refused URL (a suspended customer's, a yanked
//! release's) would otherwise write an event per request: each counted in
//! reports, pushed to webhooks, and pushing real events out of the capped
//! log. The first denial of a kind (same reason, status, surface, client
//! address, grant and subject) is recorded at once; identical ones within
//! `events.denial_window` after it are only counted, and when the window
//! closes one event with `count` set to how many they were stands for them
//! all. Reports and metrics add up `count`, so they still count every
//! denial (the repeated ones a window late).

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

use super::{Detail, Subject};

/// At most this many kinds of denial are being aggregated at once; past it
/// a new kind is recorded every time (memory stays bounded).
pub const MAX_KINDS: usize = 10_000;

#[derive(Debug)]
struct Window {
    /// When the window closes (Unix milliseconds).
    closes_at: u64,
    /// Denials since the recorded one.
    repeated: u64,
    /// The recorded denial, for the summary.
    subject: Subject,
    detail: Detail,
}

/// The denials seen in their current windows.
#[derive(Debug)]
pub struct Digest {
    window_ms: u64,
    state: Mutex<State>,
}

#[derive(Debug, Default)]
struct State {
    windows: HashMap<String, Window>,
    /// Summaries of windows that closed on a new denial of their kind,
    /// waiting for the next [`Digest::close`].
    closed: Vec<(Subject, Detail)>,
}

impl Digest {
    /// `window` zero: every denial is recorded.
    pub fn new(window: Duration) -> Self {
        Self { window_ms: u64::try_from(window.as_millis()).unwrap_or(u64::MAX), state: Mutex::default() }
    }

    /// How long a window lasts.
    pub fn window(&self) -> Duration {
        Duration::from_millis(self.window_ms)
    }

    /// Whether a denial seen at `now_ms` is to be recorded now (the first of
    /// its kind in a window), or only counted.
    pub fn admit(&self, subject: &Subject, detail: &Detail, now_ms: u64) -> bool {
        if self.window_ms == 0 {
            return true;
        }
        let key = kind(subject, detail);
        let mut state = self.state.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        let State { windows, closed } = &mut *state;
        let full = windows.len() >= MAX_KINDS;
        match windows.get_mut(&key) {
            Some(w) if now_ms < w.closes_at => {
                w.repeated += 1;
                return false;
            }
            Some(w) => closed.extend(summary(w)),
            None if full => return true,
            None => {}
        }
        let window = Window {
            closes_at: now_ms.saturating_add(self.window_ms),
            repeated: 0,
            subject: subject.clone(),
            detail: detail.clone(),
        };
        windows.insert(key, window);
        true
    }

    /// Close the windows that ended by `now_ms`: the summaries to record
    /// (one per window that saw repeats, its `count` set to them).
    pub fn close(&self, now_ms: u64) -> Vec<(Subject, Detail)> {
        let mut state = self.state.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        let State { windows, closed } = &mut *state;
        let mut summaries = std::mem::take(closed);
        windows.retain(|_, w| {
            if now_ms < w.closes_at {
                return true;
            }
            summaries.extend(summary(w));
            false
        });
        summaries
    }
}

/// The event that stands for a window's repeats, if it had any.
fn summary(w: &Window) -> Option<(Subject, Detail)> {
    let Detail::DownloadDenied { reason, status, grant, client_ip, surface, .. } = &w.detail else { return None };
    (w.repeated > 0).then(|| {
        let detail = Detail::DownloadDenied {
            reason: reason.clone(),
            status: *status,
            grant: grant.clone(),
            client_ip: client_ip.clone(),
            surface: surface.clone(),
            count: w.repeated,
        };
        (w.subject.clone(), detail)
    })
}

/// What makes two denials the same.
fn kind(subject: &Subject, detail: &Detail) -> String {
    let Detail::DownloadDenied { reason, status, grant, client_ip, surface, .. } = detail else {
        return String::new();
    };
    let s = |o: &Option<String>| o.clone().unwrap_or_default();
    [
        reason.clone(),
        status.to_string(),
        surface.clone(),
        s(client_ip),
        s(grant),
        s(&subject.customer),
        s(&subject.product),
        s(&subject.version),
        s(&subject.filename),
    ]
    .join("\u{1f}")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn denial(ip: &str) -> (Subject, Detail) {
        let subject = Subject { customer: Some("acme".into()), product: Some("app".into()), ..Subject::default() };
        let detail = Detail::DownloadDenied {
            reason: "customer_suspended".into(),
            status: 403,
            grant: Some("g1".into()),
            client_ip: Some(ip.into()),
            surface: "data_plane".into(),
            count: 1,
        };
        (subject, detail)
    }

    #[test]
    fn the_first_of_a_kind_is_recorded_and_the_rest_summed_when_the_window_closes() {
        let d = Digest::new(Duration::from_secs(60));
        let (s, a) = denial("192.0.2.1");
        let (_, b) = denial("192.0.2.2");
        assert!(d.admit(&s, &a, 1_000));
        assert!(d.admit(&s, &b, 1_000), "another address is another kind");
        for t in 1..=49 {
            assert!(!d.admit(&s, &a, 1_000 + t * 100));
        }
        assert!(d.close(60_999).is_empty(), "still open");
        let summaries = d.close(61_000);
        assert_eq!(summaries.len(), 1, "b saw no repeats: nothing to add");
        match &summaries[0].1 {
            Detail::DownloadDenied { count, client_ip, .. } => {
                assert_eq!((*count, client_ip.as_deref()), (49, Some("192.0.2.1")));
            }
            other => panic!("{other:?}"),
        }
        assert!(d.admit(&s, &a, 61_001), "a new window records again");
        // A window that closes on a new denial of its kind, before `close`
        // ran: its summary waits for the next `close`.
        assert!(!d.admit(&s, &a, 61_002));
        assert!(d.admit(&s, &a, 200_000));
        let summaries = d.close(200_001);
        assert_eq!(summaries.len(), 1);
        assert!(matches!(summaries[0].1, Detail::DownloadDenied { count: 1, .. }));
    }

    #[test]
    fn a_zero_window_records_everything() {
        let d = Digest::new(Duration::ZERO);
        let (s, a) = denial("192.0.2.1");
        assert!((0..5).all(|_| d.admit(&s, &a, 1)));
        assert!(d.close(u64::MAX).is_empty());
    }
}
