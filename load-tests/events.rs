//! Event throughput into the log, on the embedded SQLite and on a local
//! `redis-server`, in process (no HTTP):
//!
//! - `append`: batches of 256 straight into the log, as the recorder's writer
//!   sends them (each batch one transaction / one Lua script, counters
//!   included);
//! - `recorded`: 8 tasks recording through the [`Recorder`] (queue, writer
//!   task, batching), timed until a flush confirms everything is in the log;
//! - `read`: paging through the whole log 1000 at a time, as
//!   `GET /admin/v1/events` does.
//!
//! `cargo bench --bench events` records 100 000 events per series;
//! `cargo test` runs 500 so that it cannot rot. Loopback only; bounded.

#![expect(clippy::print_stdout, reason = "a load test reports its figures on stdout")]

#[path = "support.rs"]
mod support;

use std::sync::Arc;
use std::time::{Duration, Instant};

use support::{fail, start_redis};
use tollgate::events::EventLog;
use tollgate::events::recorder::Settings;
use tollgate::events::{Detail, Event, Filter, Recorder, Retention, Sequenced, Subject};

const RETENTION: Retention =
    Retention { max_age: Duration::from_secs(90 * 86_400), max_events: 10_000_000, report_days: 400 };

fn event(i: u64) -> Event {
    let subject = Subject {
        customer: Some(format!("customer-{}", i % 50)),
        product: Some("app".into()),
        version: Some(format!("1.{}.0", i % 5)),
        filename: Some("app-linux-x86_64.tar.gz".into()),
        platform: Some("linux-x86_64".into()),
    };
    let detail = if i.is_multiple_of(2) {
        Detail::DownloadInitiated {
            grant: format!("{i:024x}.e1"),
            client_ip: Some("203.0.113.9".into()),
            user_agent: Some("curl/8.5.0".into()),
            range: None,
            delivery: "proxy".into(),
            via: Some("customer_api".into()),
            by: None,
        }
    } else {
        Detail::DownloadCompleted {
            grant: Some(format!("{:024x}.e1", i - 1)),
            result: tollgate::events::Completion::Complete,
            bytes_sent: 52_428_800,
            bytes_expected: 52_428_800,
            duration_ms: 4_200,
            reached_end: true,
            range: None,
        }
    };
    Event::new(1_795_478_400_000 + i, subject, detail)
}

fn rate(n: u64, took: Duration) -> String {
    format!("{:>9.0} events/s  ({n} in {:.2} s)", n as f64 / took.as_secs_f64(), took.as_secs_f64())
}

async fn series(name: &str, store: Arc<dyn EventLog>, n: u64, spill: &std::path::Path) {
    // Straight into the log.
    let started = Instant::now();
    let events: Vec<Sequenced> =
        (0..n).map(|i| Sequenced { writer: "bench".into(), seq: i + 1, event: event(i) }).collect();
    for batch in events.chunks(256) {
        store.append(batch, &RETENTION).await.unwrap_or_else(|e| fail(format!("append: {e}")));
    }
    println!("{name:<7} append    {}", rate(n, started.elapsed()));

    // Through the recorder.
    let metrics = Arc::new(tollgate::metrics::Metrics::default());
    let settings = Settings { queue: 10_000, spill_path: spill.to_owned(), retention: RETENTION };
    let recorder = Recorder::start(store.clone(), settings, metrics.clone());
    let started = Instant::now();
    let tasks: Vec<_> = (0..8)
        .map(|t| {
            let recorder = recorder.clone();
            tokio::spawn(async move {
                for i in (t..n).step_by(8) {
                    recorder.record(event(n + i)).await;
                }
            })
        })
        .collect();
    for t in tasks {
        t.await.unwrap_or_else(|e| fail(e.to_string()));
    }
    recorder.flush().await;
    let took = started.elapsed();
    let written = metrics.events_written.load(std::sync::atomic::Ordering::Relaxed);
    if written != n || recorder.spill().spilled.load(std::sync::atomic::Ordering::Relaxed) != 0 {
        fail(format!("{name}: {written} of {n} events written straight to the log"));
    }
    println!("{name:<7} recorded  {}", rate(n, took));
    recorder.stop().await;

    // Reading it back.
    let started = Instant::now();
    let mut after: Option<String> = None;
    let mut read = 0u64;
    loop {
        let page = store
            .read(after.as_deref(), &Filter::default(), 1000, 10_000)
            .await
            .unwrap_or_else(|e| fail(format!("read: {e}")));
        read += page.items.len() as u64;
        after = page.next.or(after);
        if !page.more {
            break;
        }
    }
    if read != 2 * n {
        fail(format!("{name}: read {read} events, expected {}", 2 * n));
    }
    println!("{name:<7} read      {}", rate(read, started.elapsed()));
}

fn main() {
    let full = std::env::args().any(|a| a == "--bench");
    let n: u64 = if full { 100_000 } else { 500 };
    let build = if cfg!(debug_assertions) { "debug" } else { "optimised" };
    println!("event log throughput: {build} build, in process, {n} events per series");
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap_or_else(|e| fail(e.to_string()));
    let dir = tempfile::tempdir().unwrap_or_else(|e| fail(e.to_string()));
    runtime.block_on(async {
        let sqlite =
            tollgate::db::sqlite::SqliteDb::open(&dir.path().join("events.db")).unwrap_or_else(|e| fail(e.to_string()));
        series("sqlite", Arc::new(sqlite), n, &dir.path().join("spill-sqlite.jsonl")).await;
        let redis = start_redis(dir.path());
        let client =
            redis::Client::open(format!("redis://127.0.0.1:{}/", redis.1)).unwrap_or_else(|e| fail(e.to_string()));
        let store =
            tollgate::db::redis::RedisDb::connect(client, "bench", Duration::from_secs(2), Duration::from_secs(10))
                .await
                .unwrap_or_else(|e| fail(e.to_string()));
        series("redis", Arc::new(store), n, &dir.path().join("spill-redis.jsonl")).await;
    });
}
