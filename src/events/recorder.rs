//! Getting events into the log without making requests wait on the store.
//!
//! [`Recorder::record`] puts an event on a bounded queue and returns. One
//! writer task takes events off in batches and appends them to the store.
//! When the store fails (unreachable, timing out, refusing), the batch goes to
//! the spill file instead, an append-only file of JSON lines, synced to disk
//! before the writer moves on, and so does every later event until the file
//! is replayed, so the log keeps the order events were recorded in. Replays
//! are tried with backoff (0.5 s doubling to 30 s); a replayed event the store
//! already has (its acknowledgement was lost) is skipped by its writer's
//! sequence number. A spill file left by an earlier run is replayed at start.
//!
//! When the queue is full, `record` waits for room: that only happens when the
//! writer is behind, and the writer never waits on the store for longer than
//! the store's response timeout before spilling.

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use tokio::io::{AsyncBufReadExt, AsyncSeekExt, AsyncWriteExt};
use tokio::sync::{mpsc, oneshot};

use super::{Completion, Detail, Event, EventLog, Retention, Sequenced};
use crate::metrics::{DownloadEnd, Metrics};

/// Events appended to the store in one call, at most.
const BATCH: usize = 256;
/// How long the writer waits for more events once one has come, so that
/// under load one write carries many (one SQLite transaction, one Redis
/// script) instead of one each.
const LINGER: Duration = Duration::from_millis(2);
const RETRY_MIN: Duration = Duration::from_millis(500);
const RETRY_MAX: Duration = Duration::from_secs(30);

/// Where events wait and how long they are kept.
#[derive(Debug, Clone)]
pub struct Settings {
    /// Events the in-process queue holds.
    pub queue: usize,
    /// The spill file.
    pub spill_path: PathBuf,
    pub retention: Retention,
}

enum Msg {
    Event(Box<Event>),
    /// Answered once every event queued before it is in the store or spilled.
    Flush(oneshot::Sender<()>),
    /// Like `Flush`, then one last replay attempt, then the writer stops.
    Stop(oneshot::Sender<()>),
}

/// The recording side; cheap to clone.
#[derive(Clone)]
pub struct Recorder {
    tx: mpsc::Sender<Msg>,
    capacity: usize,
    metrics: Arc<Metrics>,
    spill: Arc<SpillGauge>,
}

impl std::fmt::Debug for Recorder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Recorder").field("queued", &self.queued()).finish_non_exhaustive()
    }
}

/// Spill figures shared with the metrics.
#[derive(Debug, Default)]
pub struct SpillGauge {
    /// Events in the spill file not yet replayed.
    pub pending: AtomicU64,
    /// Events ever written to the spill file.
    pub spilled: AtomicU64,
    /// Events that could be written neither to the store nor to the spill file.
    pub lost: AtomicU64,
}

impl Recorder {
    /// Start the writer task for `store`.
    pub fn start(store: Arc<dyn EventLog>, settings: Settings, metrics: Arc<Metrics>) -> Self {
        let capacity = settings.queue.max(1);
        let (tx, rx) = mpsc::channel(capacity);
        let spill = Arc::new(SpillGauge::default());
        let writer = Writer {
            store,
            rx,
            // New per run: sequence numbers start again at 1.
            id: super::process_name(),
            seq: 0,
            retention: settings.retention,
            spill: Spill { path: settings.spill_path, offset: 0, gauge: spill.clone() },
            metrics: metrics.clone(),
        };
        tokio::spawn(writer.run());
        Self { tx, capacity, metrics, spill }
    }

    /// Record an event. Returns once it is queued.
    pub async fn record(&self, event: Event) {
        count(&self.metrics, &event);
        let msg = Msg::Event(Box::new(event));
        let msg = match self.tx.try_send(msg) {
            Ok(()) => return,
            Err(mpsc::error::TrySendError::Full(m)) => {
                self.metrics.events_queue_full.fetch_add(1, Ordering::Relaxed);
                m
            }
            Err(mpsc::error::TrySendError::Closed(_)) => return self.lost(),
        };
        if self.tx.send(msg).await.is_err() {
            self.lost();
        }
    }

    /// Record without waiting, for code that cannot (a `Drop`): queued at
    /// once, or, when the queue is full, by a task that waits for room.
    pub fn record_now(&self, event: Event) {
        count(&self.metrics, &event);
        match self.tx.try_send(Msg::Event(Box::new(event))) {
            Ok(()) => {}
            Err(mpsc::error::TrySendError::Full(msg)) => {
                self.metrics.events_queue_full.fetch_add(1, Ordering::Relaxed);
                let me = self.clone();
                match tokio::runtime::Handle::try_current() {
                    Ok(rt) => {
                        rt.spawn(async move {
                            if me.tx.send(msg).await.is_err() {
                                me.lost();
                            }
                        });
                    }
                    Err(_) => self.lost(),
                }
            }
            Err(mpsc::error::TrySendError::Closed(_)) => self.lost(),
        }
    }

    fn lost(&self) {
        self.spill.lost.fetch_add(1, Ordering::Relaxed);
        tracing::error!("event recorder stopped: an event was dropped");
    }

    /// Events waiting in the queue.
    pub fn queued(&self) -> usize {
        self.capacity.saturating_sub(self.tx.capacity())
    }

    pub fn spill(&self) -> &SpillGauge {
        &self.spill
    }

    /// Wait until every event recorded so far is in the store or spilled.
    pub async fn flush(&self) {
        let (tx, rx) = oneshot::channel();
        if self.tx.send(Msg::Flush(tx)).await.is_ok() {
            let _ = rx.await;
        }
    }

    /// Write out what is queued (to the store, else the spill file) and stop
    /// the writer. Events recorded afterwards are dropped, and counted lost.
    pub async fn stop(&self) {
        let (tx, rx) = oneshot::channel();
        if self.tx.send(Msg::Stop(tx)).await.is_ok() {
            let _ = rx.await;
        }
    }
}

struct Writer {
    store: Arc<dyn EventLog>,
    rx: mpsc::Receiver<Msg>,
    id: String,
    seq: u64,
    retention: Retention,
    spill: Spill,
    metrics: Arc<Metrics>,
}

impl Writer {
    async fn run(mut self) {
        self.spill.open().await;
        let mut retry = RETRY_MIN;
        let mut next_replay = tokio::time::Instant::now();
        let mut buf = Vec::with_capacity(BATCH);
        loop {
            if self.spill.pending() && tokio::time::Instant::now() >= next_replay {
                // A few batches at a time, so the queue keeps moving (into the
                // spill file) while a long backlog is replayed.
                next_replay =
                    match self.spill.replay(&*self.store, &self.retention, &self.metrics, REPLAY_BATCHES).await {
                        Replay::Drained | Replay::Progress => {
                            retry = RETRY_MIN;
                            tokio::time::Instant::now()
                        }
                        Replay::Failed => {
                            retry = (retry * 2).min(RETRY_MAX);
                            tokio::time::Instant::now() + retry
                        }
                    };
            }
            let n = if self.spill.pending() {
                tokio::select! {
                    n = self.rx.recv_many(&mut buf, BATCH) => n,
                    () = tokio::time::sleep_until(next_replay) => continue,
                }
            } else {
                self.rx.recv_many(&mut buf, BATCH).await
            };
            if n == 0 {
                // Every sender is gone: nothing more can arrive.
                return;
            }
            self.linger(&mut buf).await;
            let mut answers = Vec::new();
            let mut stop = None;
            let events = self.sequence(buf.drain(..), &mut answers, &mut stop);
            self.write(events).await;
            if let Some(tx) = stop {
                // No more events from now on (a late `record` counts as lost);
                // what is already queued is written out.
                self.rx.close();
                let mut rest = Vec::new();
                while let Some(msg) = self.rx.recv().await {
                    rest.push(msg);
                }
                let events = self.sequence(rest.into_iter(), &mut answers, &mut None);
                self.write(events).await;
                if self.spill.pending() {
                    self.spill.replay(&*self.store, &self.retention, &self.metrics, usize::MAX).await;
                }
                answers.push(tx);
                for a in answers {
                    let _ = a.send(());
                }
                return;
            }
            for a in answers {
                let _ = a.send(());
            }
        }
    }

    /// Gather more events into `buf`, for at most [`LINGER`] and up to
    /// [`BATCH`]; a flush or stop request ends the wait at once.
    async fn linger(&mut self, buf: &mut Vec<Msg>) {
        let control = |m: &Msg| !matches!(m, Msg::Event(_));
        if buf.iter().any(control) {
            return;
        }
        let until = tokio::time::Instant::now() + LINGER;
        while buf.len() < BATCH {
            let before = buf.len();
            match tokio::time::timeout_at(until, self.rx.recv_many(buf, BATCH - before)).await {
                Ok(0) | Err(_) => return,
                Ok(_) if buf[before..].iter().any(control) => return,
                Ok(_) => {}
            }
        }
    }

    /// Number the events of `msgs` in order; collect flush and stop requests.
    fn sequence(
        &mut self,
        msgs: impl Iterator<Item = Msg>,
        answers: &mut Vec<oneshot::Sender<()>>,
        stop: &mut Option<oneshot::Sender<()>>,
    ) -> Vec<Sequenced> {
        let mut events = Vec::new();
        for msg in msgs {
            match msg {
                Msg::Event(e) => {
                    self.seq += 1;
                    events.push(Sequenced { writer: self.id.clone(), seq: self.seq, event: *e });
                }
                Msg::Flush(tx) => answers.push(tx),
                Msg::Stop(tx) => match stop {
                    Some(_) => answers.push(tx),
                    None => *stop = Some(tx),
                },
            }
        }
        events
    }

    /// To the store, unless events are already waiting in the spill file (the
    /// log's order must be the order of recording) or the store fails.
    async fn write(&mut self, events: Vec<Sequenced>) {
        // In batches: a shutdown drains the whole queue at once, and one
        // Redis script per batch keeps each short.
        for batch in events.chunks(BATCH) {
            if !self.spill.pending() {
                match self.store.append(batch, &self.retention).await {
                    Ok(_) => {
                        self.metrics.events_written.fetch_add(batch.len() as u64, Ordering::Relaxed);
                        continue;
                    }
                    Err(e) => {
                        tracing::warn!(error = %e, events = batch.len(), "event log unavailable: spilling events to disk");
                    }
                }
            }
            self.spill.append(batch).await;
        }
    }
}

/// How a replay step went.
enum Replay {
    /// The whole file is in the store; the file is emptied.
    Drained,
    /// Some batches went in; more remain.
    Progress,
    /// The store (or the file) failed; try again later.
    Failed,
}

/// Batches replayed per step of the writer's loop.
const REPLAY_BATCHES: usize = 8;

/// The spill file: JSON lines of [`Sequenced`] events; `offset` bytes of it
/// are already replayed.
struct Spill {
    path: PathBuf,
    offset: u64,
    gauge: Arc<SpillGauge>,
}

impl Spill {
    fn pending(&self) -> bool {
        self.gauge.pending.load(Ordering::Relaxed) > 0
    }

    /// Count what an earlier run left behind, and cut off a last line that
    /// run did not finish writing (later lines must start on a line of
    /// their own).
    async fn open(&mut self) {
        let Ok(file) = tokio::fs::File::open(&self.path).await else { return };
        let mut reader = tokio::io::BufReader::new(file);
        let (mut n, mut whole, mut total) = (0u64, 0u64, 0u64);
        let mut line = Vec::new();
        loop {
            line.clear();
            match reader.read_until(b'\n', &mut line).await {
                Ok(0) | Err(_) => break,
                Ok(read) => {
                    total += read as u64;
                    if line.ends_with(b"\n") {
                        n += 1;
                        whole = total;
                    }
                }
            }
        }
        if whole < total {
            tracing::warn!(path = %self.path.display(), bytes = total - whole, "cutting off an unfinished last line of the spill file");
            let cut = async {
                let f = tokio::fs::OpenOptions::new().write(true).open(&self.path).await?;
                f.set_len(whole).await?;
                f.sync_data().await
            };
            if let Err(e) = cut.await {
                tracing::error!(path = %self.path.display(), error = %e, "cannot cut the spill file");
            }
        }
        if n > 0 {
            tracing::info!(path = %self.path.display(), events = n, "replaying spilled events from an earlier run");
        }
        self.gauge.pending.store(n, Ordering::Relaxed);
    }

    async fn append(&mut self, events: &[Sequenced]) {
        let mut text = Vec::with_capacity(events.len() * 400);
        let mut n = 0u64;
        for e in events {
            if let Err(err) = serde_json::to_writer(&mut text, e) {
                self.gauge.lost.fetch_add(1, Ordering::Relaxed);
                tracing::error!(event = %e.event.id, error = %err, "cannot encode an event for the spill file: it is lost");
                continue;
            }
            text.push(b'\n');
            n += 1;
        }
        match self.write(&text).await {
            Ok(()) => {
                self.gauge.pending.fetch_add(n, Ordering::Relaxed);
                self.gauge.spilled.fetch_add(n, Ordering::Relaxed);
            }
            Err(e) => {
                self.gauge.lost.fetch_add(n, Ordering::Relaxed);
                tracing::error!(path = %self.path.display(), error = %e, events = n, "cannot spill events: they are lost");
            }
        }
    }

    /// Append whole lines, synced; a failed write is cut back off, so the
    /// next lines do not run into a torn one.
    async fn write(&self, text: &[u8]) -> std::io::Result<()> {
        if let Some(dir) = self.path.parent() {
            tokio::fs::create_dir_all(dir).await?;
        }
        let mut file = tokio::fs::OpenOptions::new().create(true).append(true).open(&self.path).await?;
        let before = file.metadata().await?.len();
        let written = async {
            file.write_all(text).await?;
            // tokio's file writes in the background: `flush` is what reports
            // that write's failure (sync_data alone would not).
            file.flush().await?;
            file.sync_data().await
        }
        .await;
        if written.is_err() {
            let _ = file.set_len(before).await;
        }
        written
    }

    /// Replay up to `max_batches` batches from `offset`; the file is emptied
    /// once drained.
    async fn replay(
        &mut self,
        store: &dyn EventLog,
        retention: &Retention,
        metrics: &Metrics,
        max_batches: usize,
    ) -> Replay {
        let file = match tokio::fs::File::open(&self.path).await {
            Ok(f) => f,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                self.offset = 0;
                self.gauge.pending.store(0, Ordering::Relaxed);
                return Replay::Drained;
            }
            Err(e) => {
                tracing::error!(path = %self.path.display(), error = %e, "cannot read the spill file");
                return Replay::Failed;
            }
        };
        let mut reader = tokio::io::BufReader::new(file);
        if reader.seek(std::io::SeekFrom::Start(self.offset)).await.is_err() {
            return Replay::Failed;
        }
        let mut line = Vec::new();
        for _ in 0..max_batches {
            let mut batch = Vec::with_capacity(BATCH);
            let mut consumed = 0u64;
            let mut unreadable = 0u64;
            while batch.len() < BATCH {
                line.clear();
                let read = match reader.read_until(b'\n', &mut line).await {
                    Ok(n) => n,
                    Err(e) => {
                        tracing::error!(path = %self.path.display(), error = %e, "cannot read the spill file");
                        return Replay::Failed;
                    }
                };
                if read == 0 {
                    break;
                }
                consumed += read as u64;
                match serde_json::from_slice::<Sequenced>(line.trim_ascii_end()) {
                    Ok(e) => batch.push(e),
                    Err(e) => {
                        // Damaged on disk; the lines around it are intact.
                        unreadable += 1;
                        tracing::error!(error = %e, "an unreadable line of the spill file: that event is lost");
                    }
                }
            }
            if consumed == 0 {
                return self.drained().await;
            }
            if let Err(e) = store.append(&batch, retention).await {
                tracing::info!(error = %e, pending = self.gauge.pending.load(Ordering::Relaxed), "event log still unavailable; will retry");
                return Replay::Failed;
            }
            self.offset += consumed;
            let n = batch.len() as u64;
            metrics.events_written.fetch_add(n, Ordering::Relaxed);
            metrics.events_replayed.fetch_add(n, Ordering::Relaxed);
            self.gauge.lost.fetch_add(unreadable, Ordering::Relaxed);
            let _ = self
                .gauge
                .pending
                .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |p| Some(p.saturating_sub(n + unreadable)));
        }
        Replay::Progress
    }

    /// Everything is replayed: start the file afresh.
    async fn drained(&mut self) -> Replay {
        if let Err(e) = tokio::fs::File::create(&self.path).await {
            tracing::error!(path = %self.path.display(), error = %e, "cannot empty the replayed spill file");
            return Replay::Failed;
        }
        self.offset = 0;
        self.gauge.pending.store(0, Ordering::Relaxed);
        tracing::info!("spilled events replayed into the event log");
        Replay::Drained
    }
}

/// What an event adds to the download metrics; called for every event
/// recorded, so the metrics count exactly what the log holds.
fn count(metrics: &Metrics, e: &Event) {
    match &e.detail {
        Detail::DownloadInitiated { .. } => metrics.download_initiated(),
        Detail::DownloadCompleted { result, bytes_sent, reached_end, .. } => {
            let end = match result {
                Completion::Complete if *reached_end => DownloadEnd::Completed,
                Completion::Complete => DownloadEnd::Partial,
                Completion::Aborted => DownloadEnd::Aborted,
            };
            metrics.download_ended(*bytes_sent, end);
        }
        Detail::DownloadDenied { reason, count, .. } => {
            for _ in 0..*count {
                metrics.download_denied(reason);
            }
        }
        _ => {}
    }
}
