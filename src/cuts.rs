//! Cutting running downloads: of a release (a compromised build, yanked) or
//! of a customer (suspended). Yanking and suspending refuse new requests;
//! streams already running finish unless cut.
//!
//! Every download stream registers here for as long as it runs. An order to
//! cut is written to the state store (one record per scope, kind `cut`), so
//! that every replica sharing the store finds it: the replica that took the
//! order cuts its own streams at once, the others when they next read the
//! orders ([`follow`], every [`FOLLOW_EVERY`]). An order cuts the streams
//! that started before it; streams started after it are not touched (they
//! passed the checks of a release or customer as it then was).
//!
//! A stream is cut at its next chunk: the response ends in an error, never
//! as if complete, and `download.completed` is recorded with `aborted`.

use std::collections::HashMap;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::task::{Context, Poll};
use std::time::Duration;

use futures_util::Stream;
use futures_util::task::AtomicWaker;
use serde::{Deserialize, Serialize};

use crate::catalog::store::{Kind, MAX_PAGE, RecordStore, StoreError, decode_json, put_json};
use crate::clock::Clock;
use crate::storage::{ByteStream, StorageError};

/// How often a replica reads the cut orders written by others.
pub const FOLLOW_EVERY: Duration = Duration::from_secs(2);

/// How long an order is kept: long after every replica has read it.
const KEEP_ORDERS_MS: u64 = 24 * 3600 * 1000;

/// Whose downloads to cut.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "scope", rename_all = "snake_case")]
pub enum Scope {
    /// Every download of one release, whoever runs it (grant and operator
    /// URLs alike).
    Release { product: String, version: String },
    /// Every download of one customer.
    Customer { customer: String },
}

impl Scope {
    /// The order's record key.
    fn key(&self) -> String {
        match self {
            Scope::Release { product, version } => format!("release/{product}/{version}"),
            Scope::Customer { customer } => format!("customer/{customer}"),
        }
    }

    fn covers(&self, s: &Running) -> bool {
        match self {
            Scope::Release { product, version } => s.product == *product && s.version == *version,
            Scope::Customer { customer } => s.customer.as_deref() == Some(customer.as_str()),
        }
    }
}

/// An order to cut, as stored.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Order {
    #[serde(flatten)]
    pub scope: Scope,
    /// Unix milliseconds: streams started before it are cut.
    pub at_ms: u64,
}

/// What a stream is a download of.
#[derive(Debug, Clone)]
pub struct Running {
    pub customer: Option<String>,
    pub product: String,
    pub version: String,
}

/// One registered stream's switch.
#[derive(Debug, Default)]
struct Switch {
    cut: AtomicBool,
    waker: AtomicWaker,
}

#[derive(Debug)]
struct Entry {
    what: Running,
    started_ms: u64,
    switch: Arc<Switch>,
}

/// The download streams this process is running.
#[derive(Debug, Default)]
pub struct Streams {
    running: Mutex<HashMap<u64, Entry>>,
    next_id: AtomicU64,
    /// The newest order applied per scope key, so each is applied once.
    applied: Mutex<HashMap<String, u64>>,
}

impl Streams {
    /// Run `inner` as a download of `what`, started at `started_ms`: it can
    /// be cut until it ends or is dropped.
    pub fn watch(self: &Arc<Self>, inner: ByteStream, what: Running, started_ms: u64) -> ByteStream {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let switch = Arc::new(Switch::default());
        self.lock().insert(id, Entry { what, started_ms, switch: switch.clone() });
        Box::pin(Cuttable { inner, switch, registered: Registered { streams: self.clone(), id }, ended: false })
    }

    /// Cut the streams `scope` covers that started before `before_ms`; how
    /// many.
    pub fn cut(&self, scope: &Scope, before_ms: u64) -> usize {
        let running = self.lock();
        let mut n = 0;
        for e in running.values().filter(|e| e.started_ms <= before_ms && scope.covers(&e.what)) {
            if !e.switch.cut.swap(true, Ordering::AcqRel) {
                e.switch.waker.wake();
                n += 1;
            }
        }
        n
    }

    /// How many streams are registered.
    pub fn len(&self) -> usize {
        self.lock().len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Apply `order` unless it was applied already; how many streams it cut.
    fn apply(&self, order: &Order) -> usize {
        {
            let mut applied = self.applied.lock().unwrap_or_else(PoisonError::into_inner);
            let seen = applied.entry(order.scope.key()).or_default();
            if *seen >= order.at_ms {
                return 0;
            }
            *seen = order.at_ms;
        }
        self.cut(&order.scope, order.at_ms)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<u64, Entry>> {
        self.running.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// Order a cut: written to the store for the other replicas, applied here at
/// once. Returns the order and how many of this process's streams it cut.
pub async fn order(
    store: &dyn RecordStore,
    streams: &Streams,
    clock: &dyn Clock,
    scope: Scope,
) -> Result<(Order, usize), StoreError> {
    let order = Order { scope, at_ms: clock.now_millis() };
    put_json(store, Kind::Cut, &order.scope.key(), &order).await?;
    let n = streams.apply(&order);
    Ok((order, n))
}

/// Read the cut orders every [`FOLLOW_EVERY`] and apply the new ones, until
/// the task is dropped; orders older than a day are removed.
pub async fn follow(store: Arc<dyn RecordStore>, streams: Arc<Streams>, clock: Arc<dyn Clock>) {
    let mut tick = tokio::time::interval(FOLLOW_EVERY);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        if let Err(e) = follow_once(store.as_ref(), &streams, clock.as_ref()).await {
            tracing::debug!(error = %e, "could not read the cut orders");
        }
    }
}

/// One reading of the orders; how many streams were cut.
pub async fn follow_once(store: &dyn RecordStore, streams: &Streams, clock: &dyn Clock) -> Result<usize, StoreError> {
    let now = clock.now_millis();
    let mut cut = 0;
    let mut after: Option<String> = None;
    loop {
        let page = store.list(Kind::Cut, "", after.as_deref(), MAX_PAGE).await?;
        let Some((last, _)) = page.last() else { break };
        after = Some(last.clone());
        for (key, bytes) in &page {
            let order: Order = decode_json(Kind::Cut, key, bytes)?;
            if order.at_ms.saturating_add(KEEP_ORDERS_MS) < now {
                store.delete(Kind::Cut, key).await?;
                continue;
            }
            let n = streams.apply(&order);
            if n > 0 {
                tracing::warn!(scope = %key, streams = n, "running downloads cut by an operator's order");
            }
            cut += n;
        }
        if page.len() < MAX_PAGE {
            break;
        }
    }
    Ok(cut)
}

/// A stream's place in the registry, left when the stream is dropped.
#[derive(Debug)]
struct Registered {
    streams: Arc<Streams>,
    id: u64,
}

impl Drop for Registered {
    fn drop(&mut self) {
        self.streams.lock().remove(&self.id);
    }
}

/// A byte stream that ends in an error once its switch is thrown.
struct Cuttable {
    inner: ByteStream,
    switch: Arc<Switch>,
    registered: Registered,
    /// The cut's error was yielded: nothing follows it.
    ended: bool,
}

impl Stream for Cuttable {
    type Item = Result<bytes::Bytes, StorageError>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        if self.ended {
            return Poll::Ready(None);
        }
        self.switch.waker.register(cx.waker());
        if self.switch.cut.load(Ordering::Acquire) {
            tracing::info!(stream = self.registered.id, "download cut by an operator's order");
            self.ended = true;
            return Poll::Ready(Some(Err(StorageError::Cut)));
        }
        self.inner.as_mut().poll_next(cx)
    }
}

#[cfg(test)]
mod tests {
    use futures_util::StreamExt as _;

    use super::*;

    fn endless() -> ByteStream {
        Box::pin(futures_util::stream::repeat_with(|| Ok(bytes::Bytes::from_static(b"data"))))
    }

    fn running(customer: &str, version: &str) -> Running {
        Running { customer: Some(customer.into()), product: "app".into(), version: version.into() }
    }

    #[tokio::test]
    async fn an_order_cuts_what_it_covers_and_started_before_it() {
        let streams = Arc::new(Streams::default());
        let mut acme_1 = streams.watch(endless(), running("acme", "1.0.0"), 100);
        let mut acme_2 = streams.watch(endless(), running("acme", "2.0.0"), 100);
        let mut globex_1 = streams.watch(endless(), running("globex", "1.0.0"), 100);
        let mut late = streams.watch(endless(), running("globex", "1.0.0"), 300);
        let order = Order { scope: Scope::Release { product: "app".into(), version: "1.0.0".into() }, at_ms: 200 };
        assert_eq!(streams.apply(&order), 2);
        assert_eq!(streams.apply(&order), 0, "an order applies once");
        assert!(matches!(acme_1.next().await, Some(Err(StorageError::Cut))));
        assert!(acme_1.next().await.is_none(), "nothing follows the error");
        assert!(matches!(globex_1.next().await, Some(Err(StorageError::Cut))));
        assert!(matches!(acme_2.next().await, Some(Ok(_))), "another release runs on");
        assert!(matches!(late.next().await, Some(Ok(_))), "a stream started after the order runs on");
        let order = Order { scope: Scope::Customer { customer: "acme".into() }, at_ms: 400 };
        assert_eq!(streams.apply(&order), 1);
        assert!(matches!(acme_2.next().await, Some(Err(StorageError::Cut))));
        drop((acme_1, acme_2, globex_1));
        assert_eq!(streams.len(), 1, "dropped streams leave the registry");
    }

    #[tokio::test]
    async fn a_stream_waiting_for_data_is_woken_by_the_cut() {
        let streams = Arc::new(Streams::default());
        let mut pending = streams.watch(Box::pin(futures_util::stream::pending()), running("acme", "1.0.0"), 1);
        let cutter = streams.clone();
        tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(50)).await;
            cutter.cut(&Scope::Customer { customer: "acme".into() }, 10);
        });
        let next = tokio::time::timeout(Duration::from_secs(5), pending.next()).await;
        assert!(matches!(next, Ok(Some(Err(StorageError::Cut)))));
    }
}
