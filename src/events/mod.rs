//! The download event log: what was downloaded, by whom, when, and what was
//! refused.
//!
//! An [`Event`] is built where the thing happens (the data plane, the customer
//! API, the admin API) and handed to the [`Recorder`], which never makes the
//! request wait on the store: a bounded queue feeds one writer task, and when
//! the store cannot take events they go to a local append-only spill file and
//! are replayed, in order, when it can.
//!
//! The store keeps the log ([`EventLog`]: a Redis Stream, or a SQLite table)
//! and, in the same atomic step as each append, the report counters — so a
//! report reads counters, never the log. Appends are idempotent per writer:
//! every event carries its writer's id and a sequence number, and the store
//! remembers the highest sequence it took from each writer, so a batch whose
//! acknowledgement was lost (and is therefore spilled and replayed) is not
//! logged twice.

#![allow(
    unused_qualifications,
    reason = "utoipa's generated schema code names types defined in this module by a qualified path"
)]

pub mod denials;
pub mod recorder;
pub mod report;
pub mod webhooks;

use std::sync::{Arc, Mutex};
use std::time::{Duration, UNIX_EPOCH};

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

pub use recorder::Recorder;
pub use report::{Dimension, ReportRow};

use crate::catalog::store::StoreError;
use crate::clock::Clock;

/// The event types. The names are part of the API and the storage layout.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, ToSchema)]
pub enum EventType {
    #[serde(rename = "download.initiated")]
    DownloadInitiated,
    #[serde(rename = "download.completed")]
    DownloadCompleted,
    #[serde(rename = "download.denied")]
    DownloadDenied,
    #[serde(rename = "release.published")]
    ReleasePublished,
    #[serde(rename = "release.yanked")]
    ReleaseYanked,
    #[serde(rename = "artifact.uploaded")]
    ArtifactUploaded,
    #[serde(rename = "entitlement.changed")]
    EntitlementChanged,
    #[serde(rename = "portal.signed_in")]
    PortalSignedIn,
    #[serde(rename = "portal.user_changed")]
    PortalUserChanged,
    #[serde(rename = "customer.changed")]
    CustomerChanged,
    #[serde(rename = "portal.viewed_as")]
    PortalViewedAs,
}

impl EventType {
    pub const ALL: [EventType; 11] = [
        EventType::DownloadInitiated,
        EventType::DownloadCompleted,
        EventType::DownloadDenied,
        EventType::ReleasePublished,
        EventType::ReleaseYanked,
        EventType::ArtifactUploaded,
        EventType::EntitlementChanged,
        EventType::PortalSignedIn,
        EventType::PortalUserChanged,
        EventType::CustomerChanged,
        EventType::PortalViewedAs,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            EventType::DownloadInitiated => "download.initiated",
            EventType::DownloadCompleted => "download.completed",
            EventType::DownloadDenied => "download.denied",
            EventType::ReleasePublished => "release.published",
            EventType::ReleaseYanked => "release.yanked",
            EventType::ArtifactUploaded => "artifact.uploaded",
            EventType::EntitlementChanged => "entitlement.changed",
            EventType::PortalSignedIn => "portal.signed_in",
            EventType::PortalUserChanged => "portal.user_changed",
            EventType::CustomerChanged => "customer.changed",
            EventType::PortalViewedAs => "portal.viewed_as",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|t| t.as_str() == s)
    }
}

/// How a download stream ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum Completion {
    /// Every byte of the response was sent.
    Complete,
    /// The client went away, or storage failed, before the end.
    Aborted,
}

/// What changed about an entitlement.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum Change {
    Created,
    Updated,
    Deleted,
}

/// The part of an event that depends on its type; `type` and `data` in JSON.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(tag = "type", content = "data")]
pub enum Detail {
    /// A grant's first `GET`: the download counted against the quota.
    #[serde(rename = "download.initiated")]
    DownloadInitiated {
        grant: String,
        #[serde(skip_serializing_if = "Option::is_none", default)]
        client_ip: Option<String>,
        #[serde(skip_serializing_if = "Option::is_none", default)]
        user_agent: Option<String>,
        /// The `Range` header of the initiating request, if any.
        #[serde(skip_serializing_if = "Option::is_none", default)]
        range: Option<String>,
        /// `proxy`: the gateway streams the bytes.
        delivery: String,
        /// The door that issued the grant: `customer_api`, `portal`, or the
        /// update feed (`tauri`, `sparkle`, `electron`).
        #[serde(skip_serializing_if = "Option::is_none", default)]
        via: Option<String>,
        /// The portal user who asked for it (`via: portal`).
        #[serde(skip_serializing_if = "Option::is_none", default)]
        by: Option<String>,
    },
    /// One response body of a download ended (a resume or a parallel segment
    /// is a response of its own).
    #[serde(rename = "download.completed")]
    DownloadCompleted {
        /// `None` for an operator URL (`tollgate sign`).
        #[serde(skip_serializing_if = "Option::is_none", default)]
        grant: Option<String>,
        result: Completion,
        bytes_sent: u64,
        /// Bytes the response was to carry.
        bytes_expected: u64,
        duration_ms: u64,
        /// The response carried the file's last byte, and it was sent: with
        /// `result: complete`, this is what a report counts as a completion.
        reached_end: bool,
        #[serde(skip_serializing_if = "Option::is_none", default)]
        range: Option<String>,
    },
    /// A download URL or a download request was refused.
    #[serde(rename = "download.denied")]
    DownloadDenied {
        /// The problem's stable `code`.
        reason: String,
        status: u16,
        #[serde(skip_serializing_if = "Option::is_none", default)]
        grant: Option<String>,
        #[serde(skip_serializing_if = "Option::is_none", default)]
        client_ip: Option<String>,
        /// `customer_api` (asking for a URL) or `data_plane` (using one).
        surface: String,
        /// How many identical denials this event stands for: 1, or the
        /// repeats of a denial within `events.denial_window` after it was
        /// recorded, summed into one event when the window closes.
        #[serde(default = "one", skip_serializing_if = "is_one")]
        count: u64,
    },
    #[serde(rename = "release.published")]
    ReleasePublished { channel: String, critical: bool },
    #[serde(rename = "release.yanked")]
    ReleaseYanked {},
    #[serde(rename = "artifact.uploaded")]
    ArtifactUploaded { size: u64, sha256: String },
    #[serde(rename = "entitlement.changed")]
    EntitlementChanged { entitlement: String, change: Change },
    /// A customer's user signed in to the portal.
    #[serde(rename = "portal.signed_in")]
    PortalSignedIn {
        email: String,
        #[serde(skip_serializing_if = "Option::is_none", default)]
        client_ip: Option<String>,
        /// How: `link` (an e-mail link) or `sso:{provider}`.
        #[serde(skip_serializing_if = "Option::is_none", default)]
        via: Option<String>,
    },
    /// A portal user was added, changed role, or was removed.
    #[serde(rename = "portal.user_changed")]
    PortalUserChanged {
        email: String,
        change: Change,
        /// The role after the change; absent when removed.
        #[serde(skip_serializing_if = "Option::is_none", default)]
        role: Option<String>,
        /// The portal user who made the change (a customer's admin);
        /// absent: the vendor, through the admin API.
        #[serde(skip_serializing_if = "Option::is_none", default)]
        by: Option<String>,
        /// The change was "sign out everywhere": every session ended.
        #[serde(skip_serializing_if = "std::ops::Not::not", default)]
        sessions_ended: bool,
    },
    /// A customer was created, or its name, status, networks or quota
    /// changed.
    #[serde(rename = "customer.changed")]
    CustomerChanged {
        change: Change,
        /// The status after the change: `active` or `suspended`.
        status: String,
    },
    /// A vendor's person opened the customer's portal read-only from the
    /// console ("view as customer"); `actor` names them.
    #[serde(rename = "portal.viewed_as")]
    PortalViewedAs {
        /// When the view ends.
        until: crate::catalog::Timestamp,
        #[serde(skip_serializing_if = "Option::is_none", default)]
        client_ip: Option<String>,
    },
}

impl Detail {
    pub fn event_type(&self) -> EventType {
        match self {
            Detail::DownloadInitiated { .. } => EventType::DownloadInitiated,
            Detail::DownloadCompleted { .. } => EventType::DownloadCompleted,
            Detail::DownloadDenied { .. } => EventType::DownloadDenied,
            Detail::ReleasePublished { .. } => EventType::ReleasePublished,
            Detail::ReleaseYanked {} => EventType::ReleaseYanked,
            Detail::ArtifactUploaded { .. } => EventType::ArtifactUploaded,
            Detail::EntitlementChanged { .. } => EventType::EntitlementChanged,
            Detail::PortalSignedIn { .. } => EventType::PortalSignedIn,
            Detail::PortalUserChanged { .. } => EventType::PortalUserChanged,
            Detail::CustomerChanged { .. } => EventType::CustomerChanged,
            Detail::PortalViewedAs { .. } => EventType::PortalViewedAs,
        }
    }
}

/// Who and what an event is about; every field is optional because a refusal
/// may know little (a forged URL names no customer we can believe).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct Subject {
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub customer: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub product: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub version: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub filename: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub platform: Option<String>,
}

/// One event.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct Event {
    /// `ev_` and 32 hex digits: 48 bits of milliseconds, then 80 bits that are
    /// random per process and increase within it. Sorting ids sorts by time.
    pub id: String,
    /// When it happened: RFC 3339, UTC, milliseconds.
    #[serde(with = "millis")]
    #[schema(value_type = String, format = DateTime)]
    pub at: u64,
    #[serde(flatten)]
    pub subject: Subject,
    #[serde(flatten)]
    pub detail: Detail,
    /// Who made the change: `admin:<token id>` (the admin API, and so the
    /// CLI) or `console:<token id>` (the vendor console). Absent for what
    /// customers and the gateway itself do (their events name the person
    /// in `data.by` where there is one).
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub actor: Option<String>,
}

tokio::task_local! {
    /// The vendor identity on whose behalf the current request runs.
    static ACTOR: String;
}

/// Run `f` on behalf of `actor`: every event created in it (in this task)
/// names `actor`. Set by the admin API's authentication and by the
/// console for its forms, so a change is attributed wherever it is
/// recorded, with no parameter threaded through every layer.
pub async fn acting_as<F: Future>(actor: String, f: F) -> F::Output {
    ACTOR.scope(actor, f).await
}

/// The identity [`acting_as`] set for this task, if any.
pub fn current_actor() -> Option<String> {
    ACTOR.try_with(Clone::clone).ok()
}

impl Event {
    /// A new event at `at_ms` with a fresh id, attributed to the current
    /// [`acting_as`] identity.
    pub fn new(at_ms: u64, subject: Subject, detail: Detail) -> Self {
        Self { id: next_id(at_ms), at: at_ms, subject, detail, actor: current_actor() }
    }

    pub fn event_type(&self) -> EventType {
        self.detail.event_type()
    }

    /// The UTC day it happened, `2026-11-24`.
    pub fn day(&self) -> String {
        day_of(self.at / 1000)
    }
}

/// `2026-11-24` for a Unix time in seconds.
pub fn day_of(unix: u64) -> String {
    let text = humantime::format_rfc3339_seconds(UNIX_EPOCH + Duration::from_secs(unix)).to_string();
    text.get(..10).unwrap_or("1970-01-01").to_owned()
}

fn one() -> u64 {
    1
}

#[allow(clippy::trivially_copy_pass_by_ref, reason = "serde's skip_serializing_if passes a reference")]
fn is_one(n: &u64) -> bool {
    *n == 1
}

mod millis {
    use std::time::{Duration, UNIX_EPOCH};

    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(ms: &u64, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(&humantime::format_rfc3339_millis(UNIX_EPOCH + Duration::from_millis(*ms)))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<u64, D::Error> {
        let text = String::deserialize(d)?;
        let t = humantime::parse_rfc3339_weak(&text).map_err(serde::de::Error::custom)?;
        let ms = t.duration_since(UNIX_EPOCH).map_err(serde::de::Error::custom)?.as_millis();
        u64::try_from(ms).map_err(serde::de::Error::custom)
    }
}

/// The last id handed out: (milliseconds, 80-bit tail).
static LAST_ID: Mutex<(u64, u128)> = Mutex::new((0, 0));

const TAIL_BITS: u32 = 80;
const TAIL_MASK: u128 = (1 << TAIL_BITS) - 1;

/// A fresh id for an event at `at_ms`. Within a process ids strictly increase
/// (the tail counts up within a millisecond, and a clock that steps back is
/// treated as standing still); across processes the random tail keeps them
/// apart.
fn next_id(at_ms: u64) -> String {
    let mut last = LAST_ID.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
    let (ms, tail) = if at_ms > last.0 {
        (at_ms, random_tail() >> 1)
    } else {
        // Half the tail space is left above a fresh start, so counting up
        // within one millisecond does not run out.
        (last.0, (last.1 + 1) & TAIL_MASK)
    };
    *last = (ms, tail);
    format!("ev_{:012x}{:020x}", ms & 0xffff_ffff_ffff, tail)
}

fn random_tail() -> u128 {
    let mut bytes = [0u8; 16];
    // Without randomness the ids stay unique within the process (they count
    // up); only two processes starting in the same millisecond could collide.
    let _ = getrandom::fill(&mut bytes);
    u128::from_le_bytes(bytes) & TAIL_MASK
}

/// How often the log is trimmed to its retention.
pub const TRIM_EVERY: std::time::Duration = std::time::Duration::from_secs(600);

/// Trim the event log to `retention` every [`TRIM_EVERY`], until the task is
/// dropped.
pub async fn trim_worker(log: Arc<dyn EventLog>, clock: Arc<dyn Clock>, retention: Retention) {
    let mut tick = tokio::time::interval(TRIM_EVERY);
    loop {
        tick.tick().await;
        let now_ms = clock.now_unix().saturating_mul(1000);
        match log.trim(&retention, now_ms).await {
            Ok(0) => {}
            Ok(n) => tracing::info!(removed = n, "events past retention trimmed"),
            Err(e) => tracing::warn!(error = %e, "could not trim the event log"),
        }
    }
}

/// 16 hex digits naming this process (its event writer, its webhook
/// consumer): random, else the clock and the process id.
pub fn process_name() -> String {
    let mut bytes = [0u8; 8];
    if getrandom::fill(&mut bytes).is_err() {
        let now = std::time::SystemTime::now().duration_since(UNIX_EPOCH).unwrap_or_default();
        bytes = (now.as_nanos() as u64 ^ u64::from(std::process::id())).to_le_bytes();
    }
    hex::encode(bytes)
}

/// An event as a writer hands it to the store: with the writer's id and its
/// sequence number, which make appends idempotent.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Sequenced {
    #[serde(rename = "w")]
    pub writer: String,
    #[serde(rename = "s")]
    pub seq: u64,
    #[serde(rename = "e")]
    pub event: Event,
}

/// Which events a listing wants; every field set must match.
#[derive(Debug, Clone, Default)]
pub struct Filter {
    pub types: Vec<EventType>,
    pub customer: Option<String>,
    pub product: Option<String>,
}

impl Filter {
    pub fn matches(&self, e: &Event) -> bool {
        (self.types.is_empty() || self.types.contains(&e.event_type()))
            && self.customer.as_ref().is_none_or(|c| e.subject.customer.as_ref() == Some(c))
            && self.product.as_ref().is_none_or(|p| e.subject.product.as_ref() == Some(p))
    }
}

/// One page of the log.
#[derive(Debug, Clone)]
pub struct LogPage {
    /// Matching events, oldest first, each with its position in the log.
    pub items: Vec<(String, Event)>,
    /// Where to continue: after the last event examined (which may be past
    /// the last one returned). `None` if the log is empty.
    pub next: Option<String>,
    /// The page stopped before the end of the log.
    pub more: bool,
}

/// The first and last day of a report.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Days {
    pub from: String,
    pub to: String,
}

/// One counter cell as the store keeps it: on `day`, for the group `value`
/// of `dimension`, `metric` reached `n`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cell {
    pub day: String,
    pub dimension: Dimension,
    pub value: String,
    pub metric: String,
    pub n: u64,
}

/// A customer seen initiating on `day` in a group (for distinct counts).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Seen {
    pub day: String,
    pub dimension: Dimension,
    pub value: String,
    pub customer: String,
}

/// First download of a release by a customer.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Adoption {
    pub customer: String,
    /// Milliseconds of the first initiation.
    pub first_initiated: Option<u64>,
    /// Milliseconds of the first completion (the last byte sent).
    pub first_completed: Option<u64>,
}

/// How long the log and the counters are kept.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Retention {
    /// Events older than this are trimmed.
    pub max_age: Duration,
    /// At most about this many events are kept.
    pub max_events: u64,
    /// Daily report counters are kept this long.
    pub report_days: u64,
}

/// The event log and its report counters, kept in the state store.
#[async_trait::async_trait]
pub trait EventLog: Send + Sync + std::fmt::Debug {
    /// Append in order the events the store has not taken yet (by writer and
    /// sequence), updating the report counters and the writer's mark with
    /// each, in one transaction (SQLite) or script (Redis). Returns how many
    /// were new. A batch that fails part-way (a Redis script is not rolled
    /// back) may be partly taken; appending it again adds only the rest.
    async fn append(&self, events: &[Sequenced], retention: &Retention) -> Result<usize, StoreError>;

    /// Events strictly after the position `after`, oldest first, matching
    /// `filter`: at most `limit` of them, examining at most `scan` entries.
    async fn read(
        &self,
        after: Option<&str>,
        filter: &Filter,
        limit: usize,
        scan: usize,
    ) -> Result<LogPage, StoreError>;

    /// The newest events matching `filter`, newest first: at most `limit`,
    /// examining at most `scan` entries where the store cannot select by
    /// the filter (Redis reads back from the end; SQLite uses its customer
    /// index).
    async fn recent(&self, filter: &Filter, limit: usize, scan: usize) -> Result<Vec<Event>, StoreError>;

    /// Is `cursor` a position this log could have handed out?
    fn valid_cursor(&self, cursor: &str) -> bool;

    /// The position of the newest event (where a live tail starts); `None`
    /// while the log is empty.
    async fn end(&self) -> Result<Option<String>, StoreError>;

    /// The counter cells and seen customers of `dimension` over `days`.
    async fn cells(&self, days: &Days, dimension: Dimension) -> Result<(Vec<Cell>, Vec<Seen>), StoreError>;

    /// Who has downloaded `product`/`version`, and when first.
    async fn adoption(&self, product: &str, version: &str) -> Result<Vec<Adoption>, StoreError>;

    /// Drop events and counters past retention; returns events removed (an
    /// estimate on Redis).
    async fn trim(&self, retention: &Retention, now_ms: u64) -> Result<u64, StoreError>;

    /// Start the consumer group `group` at the end of the log (creating it,
    /// or moving an old one there): it is handed the events appended from now
    /// on.
    async fn reset_group(&self, group: &str) -> Result<(), StoreError>;

    /// Up to `count` events of `group` for `consumer`, oldest first, as the
    /// JSON stored: first those it took before and has not acknowledged (it
    /// restarted), then those another consumer took and has not touched for
    /// `idle_ms` (it may have died), then new ones. Each stays the
    /// consumer's until acknowledged. A missing group has nothing.
    async fn claim(
        &self,
        group: &str,
        consumer: &str,
        count: usize,
        idle_ms: u64,
    ) -> Result<Vec<(String, Vec<u8>)>, StoreError>;

    /// Is the event at `position` still `consumer`'s? If so, it is marked as
    /// touched now, so no other consumer takes it over for `idle_ms` more.
    async fn keep(&self, group: &str, consumer: &str, position: &str) -> Result<bool, StoreError>;

    /// Done with the event at `position`.
    async fn ack(&self, group: &str, position: &str) -> Result<(), StoreError>;

    async fn delete_group(&self, group: &str) -> Result<(), StoreError>;
}

/// What appending one event does to the counters: computed once, here, and
/// applied by either backend in the append's transaction.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Effects {
    pub day: String,
    /// (dimension, group value, metric, amount)
    pub add: Vec<(Dimension, String, String, u64)>,
    /// (dimension, group value, customer)
    pub seen: Vec<(Dimension, String, String)>,
    /// (`product/version`, customer, first initiated?, ms) for adoption.
    pub adopted: Option<(String, String, bool, u64)>,
}

/// The counter changes of many events, summed: what one append applies
/// (one upsert per cell, however many events of the batch touch it).
#[derive(Debug, Default)]
pub struct MergedEffects {
    /// (day, dimension, group value, metric) → amount
    pub add: std::collections::BTreeMap<(String, Dimension, String, String), u64>,
    /// (day, dimension, group value, customer)
    pub seen: std::collections::BTreeSet<(String, Dimension, String, String)>,
    /// (`product/version`, customer, first initiated?) → the earliest ms
    pub adopted: std::collections::BTreeMap<(String, String, bool), u64>,
}

impl MergedEffects {
    pub fn push(&mut self, fx: Effects) {
        for (dimension, value, metric, n) in fx.add {
            *self.add.entry((fx.day.clone(), dimension, value, metric)).or_default() += n;
        }
        for (dimension, value, customer) in fx.seen {
            self.seen.insert((fx.day.clone(), dimension, value, customer));
        }
        if let Some((release, customer, initiated, at)) = fx.adopted {
            let first = self.adopted.entry((release, customer, initiated)).or_insert(at);
            *first = (*first).min(at);
        }
    }
}

/// Metric names in counter cells.
pub mod metric {
    pub const INITIATED: &str = "initiated";
    pub const COMPLETED: &str = "completed";
    pub const ABORTED: &str = "aborted";
    pub const BYTES: &str = "bytes";
    /// `denied:<reason>`
    pub const DENIED_PREFIX: &str = "denied:";
}

/// The group value of `dimension` for an event; `-` where unknown.
fn group_of(e: &Event, dimension: Dimension, day: &str) -> String {
    let s = &e.subject;
    let or_dash = |v: &Option<String>| v.clone().unwrap_or_else(|| "-".to_owned());
    match dimension {
        Dimension::Customer => or_dash(&s.customer),
        Dimension::Product => or_dash(&s.product),
        Dimension::Release => match (&s.product, &s.version) {
            (Some(p), Some(v)) => format!("{p}/{v}"),
            _ => "-".to_owned(),
        },
        Dimension::Artifact => match (&s.product, &s.version, &s.filename) {
            (Some(p), Some(v), Some(f)) => format!("{p}/{v}/{f}"),
            _ => "-".to_owned(),
        },
        Dimension::Platform => or_dash(&s.platform),
        Dimension::Day => day.to_owned(),
    }
}

/// The counter changes an event makes; admin events make none.
pub fn effects(e: &Event) -> Effects {
    let day = e.day();
    let mut fx = Effects { day: day.clone(), ..Effects::default() };
    let (metrics, seen): (Vec<(String, u64)>, bool) = match &e.detail {
        Detail::DownloadInitiated { .. } => (vec![(metric::INITIATED.to_owned(), 1)], true),
        Detail::DownloadCompleted { result, bytes_sent, reached_end, .. } => {
            let mut m = vec![(metric::BYTES.to_owned(), *bytes_sent)];
            match result {
                Completion::Complete if *reached_end => m.push((metric::COMPLETED.to_owned(), 1)),
                Completion::Complete => {}
                Completion::Aborted => m.push((metric::ABORTED.to_owned(), 1)),
            }
            (m, false)
        }
        Detail::DownloadDenied { reason, count, .. } => {
            (vec![(format!("{}{reason}", metric::DENIED_PREFIX), *count)], false)
        }
        _ => return fx,
    };
    for dimension in Dimension::ALL {
        let value = group_of(e, dimension, &day);
        for (m, n) in &metrics {
            if *n > 0 {
                fx.add.push((dimension, value.clone(), m.clone(), *n));
            }
        }
        if seen && let Some(c) = &e.subject.customer {
            fx.seen.push((dimension, value, c.clone()));
        }
    }
    if let (Some(c), Some(p), Some(v)) = (&e.subject.customer, &e.subject.product, &e.subject.version) {
        let first = match &e.detail {
            Detail::DownloadInitiated { .. } => Some(true),
            Detail::DownloadCompleted { result: Completion::Complete, reached_end: true, .. } => Some(false),
            _ => None,
        };
        if let Some(initiated) = first {
            fx.adopted = Some((format!("{p}/{v}"), c.clone(), initiated, e.at));
        }
    }
    fx
}

#[cfg(test)]
mod tests;
