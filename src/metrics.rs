//! Prometheus metrics, served as text on the admin listener at `/metrics`.
//!
//! Hand-rolled: a few atomics, maps keyed by fixed strings, and fixed-bucket
//! histograms. Every label value is a route template, a status class, a
//! stable problem code, a store operation or a fixed word — never a string a
//! client sent — so the number of series is bounded.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::future::Future;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

/// Upper bounds of the latency buckets, in seconds.
const BUCKETS: [f64; 12] = [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 5.0];

#[derive(Debug, Default)]
struct Histogram {
    buckets: [AtomicU64; BUCKETS.len()],
    count: AtomicU64,
    /// Microseconds.
    sum: AtomicU64,
}

impl Histogram {
    fn observe(&self, seconds: f64) {
        for (i, bound) in BUCKETS.iter().enumerate() {
            if seconds <= *bound {
                self.buckets[i].fetch_add(1, Ordering::Relaxed);
            }
        }
        self.count.fetch_add(1, Ordering::Relaxed);
        self.sum.fetch_add((seconds * 1e6) as u64, Ordering::Relaxed);
    }
}

/// A family of counters keyed by label values.
#[derive(Debug, Default)]
struct Family(Mutex<BTreeMap<Vec<String>, u64>>);

impl Family {
    fn add(&self, labels: &[&str], n: u64) {
        let mut map = self.0.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        *map.entry(labels.iter().map(|s| (*s).to_owned()).collect()).or_default() += n;
    }

    fn snapshot(&self) -> Vec<(Vec<String>, u64)> {
        let map = self.0.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        map.iter().map(|(k, v)| (k.clone(), *v)).collect()
    }
}

#[derive(Debug, Default)]
struct Histograms(Mutex<BTreeMap<Vec<String>, std::sync::Arc<Histogram>>>);

impl Histograms {
    fn get(&self, labels: &[&str]) -> std::sync::Arc<Histogram> {
        let mut map = self.0.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        map.entry(labels.iter().map(|s| (*s).to_owned()).collect()).or_default().clone()
    }

    fn snapshot(&self) -> Vec<(Vec<String>, std::sync::Arc<Histogram>)> {
        let map = self.0.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        map.iter().map(|(k, v)| (k.clone(), v.clone())).collect()
    }
}

/// The process's metrics.
#[derive(Debug, Default)]
pub struct Metrics {
    requests: Family,
    downloads_initiated: AtomicU64,
    downloads_completed: AtomicU64,
    downloads_aborted: AtomicU64,
    downloads_denied: Family,
    sent_bytes: AtomicU64,
    quota_rejections: Family,
    rate_limit_rejections: Family,
    store_latency: Histograms,
    storage_latency: Histograms,
    pub events_written: AtomicU64,
    pub events_replayed: AtomicU64,
    pub events_queue_full: AtomicU64,
}

/// How a response body ended, for the download counters.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DownloadEnd {
    /// Every byte sent, up to the file's last.
    Completed,
    /// Every byte of a range that stops short of the file's end.
    Partial,
    /// Cut before its end.
    Aborted,
}

/// Figures read at scrape time from elsewhere.
#[derive(Debug, Clone, Copy, Default)]
pub struct Gauges {
    pub active_downloads: u64,
    pub events_queued: u64,
    pub events_spill_pending: u64,
    pub events_spilled: u64,
    pub events_lost: u64,
}

/// Which surface a route template belongs to.
pub fn surface(route: &str) -> &'static str {
    if route.starts_with("/d/") {
        "data_plane"
    } else if route.starts_with("/v1/") {
        "customer_api"
    } else if route.starts_with("/admin/") {
        "admin_api"
    } else {
        "other"
    }
}

impl Metrics {
    /// One answered request; `code` is the problem code of a refusal.
    pub fn request(&self, route: &str, status: u16, code: Option<&str>) {
        let surface = surface(route);
        let class = match status {
            100..=199 => "1xx",
            200..=299 => "2xx",
            300..=399 => "3xx",
            400..=499 => "4xx",
            _ => "5xx",
        };
        self.requests.add(&[surface, route, class], 1);
        match code {
            Some("rate_limited") => self.rate_limit_rejections.add(&[surface], 1),
            Some("quota_exceeded") => self.quota_rejections.add(&[surface], 1),
            _ => {}
        }
    }

    /// A download initiated (counted once per grant).
    pub fn download_initiated(&self) {
        self.downloads_initiated.fetch_add(1, Ordering::Relaxed);
    }

    /// A response body ended, having sent `bytes`.
    pub fn download_ended(&self, bytes: u64, end: DownloadEnd) {
        self.sent_bytes.fetch_add(bytes, Ordering::Relaxed);
        match end {
            DownloadEnd::Completed => {
                self.downloads_completed.fetch_add(1, Ordering::Relaxed);
            }
            DownloadEnd::Partial => {}
            DownloadEnd::Aborted => {
                self.downloads_aborted.fetch_add(1, Ordering::Relaxed);
            }
        }
    }

    /// A download refused, by problem code.
    pub fn download_denied(&self, reason: &str) {
        self.downloads_denied.add(&[reason], 1);
    }

    /// Time a state-store operation.
    pub async fn time_store<T>(&self, backend: &str, op: &str, f: impl Future<Output = T>) -> T {
        let started = Instant::now();
        let out = f.await;
        self.store_latency.get(&[backend, op]).observe(started.elapsed().as_secs_f64());
        out
    }

    /// Time a blob-storage operation (for a read: until the first byte can flow).
    pub async fn time_storage<T>(&self, backend: &str, op: &str, f: impl Future<Output = T>) -> T {
        let started = Instant::now();
        let out = f.await;
        self.storage_latency.get(&[backend, op]).observe(started.elapsed().as_secs_f64());
        out
    }

    /// The Prometheus text exposition (version 0.0.4).
    pub fn render(&self, g: Gauges) -> String {
        let mut out = String::with_capacity(8192);
        family(
            &mut out,
            "tollgate_http_requests_total",
            "counter",
            "Requests answered, by surface, route template and status class.",
            &["surface", "route", "status_class"],
            &self.requests.snapshot(),
        );
        scalar(
            &mut out,
            "tollgate_downloads_initiated_total",
            "counter",
            "Downloads started (a grant's first GET).",
            load(&self.downloads_initiated),
        );
        scalar(
            &mut out,
            "tollgate_downloads_completed_total",
            "counter",
            "Responses that delivered a file's last byte.",
            load(&self.downloads_completed),
        );
        scalar(
            &mut out,
            "tollgate_downloads_aborted_total",
            "counter",
            "Download responses cut before their end.",
            load(&self.downloads_aborted),
        );
        family(
            &mut out,
            "tollgate_downloads_denied_total",
            "counter",
            "Download URLs and download requests refused, by problem code.",
            &["reason"],
            &self.downloads_denied.snapshot(),
        );
        scalar(
            &mut out,
            "tollgate_download_sent_bytes_total",
            "counter",
            "Bytes of downloads sent.",
            load(&self.sent_bytes),
        );
        scalar(&mut out, "tollgate_downloads_active", "gauge", "Download responses streaming now.", g.active_downloads);
        family(
            &mut out,
            "tollgate_quota_rejections_total",
            "counter",
            "Requests refused with quota_exceeded, by surface.",
            &["surface"],
            &self.quota_rejections.snapshot(),
        );
        family(
            &mut out,
            "tollgate_rate_limit_rejections_total",
            "counter",
            "Requests refused with rate_limited, by surface.",
            &["surface"],
            &self.rate_limit_rejections.snapshot(),
        );
        histograms(
            &mut out,
            "tollgate_store_operation_duration_seconds",
            "State-store operations, by backend and operation.",
            &["backend", "op"],
            &self.store_latency.snapshot(),
        );
        histograms(
            &mut out,
            "tollgate_storage_operation_duration_seconds",
            "Blob-storage operations, by backend and operation.",
            &["backend", "op"],
            &self.storage_latency.snapshot(),
        );
        scalar(
            &mut out,
            "tollgate_events_queue_depth",
            "gauge",
            "Events waiting in the in-process queue.",
            g.events_queued,
        );
        scalar(
            &mut out,
            "tollgate_events_written_total",
            "counter",
            "Events appended to the event log.",
            load(&self.events_written),
        );
        scalar(
            &mut out,
            "tollgate_events_replayed_total",
            "counter",
            "Spilled events replayed into the log.",
            load(&self.events_replayed),
        );
        scalar(
            &mut out,
            "tollgate_events_spilled_total",
            "counter",
            "Events written to the spill file.",
            g.events_spilled,
        );
        scalar(
            &mut out,
            "tollgate_events_spill_pending",
            "gauge",
            "Events in the spill file awaiting replay.",
            g.events_spill_pending,
        );
        scalar(&mut out, "tollgate_events_lost_total", "counter", "Events neither logged nor spilled.", g.events_lost);
        scalar(
            &mut out,
            "tollgate_events_queue_full_total",
            "counter",
            "Times recording waited for room in the queue.",
            load(&self.events_queue_full),
        );
        out
    }
}

fn load(a: &AtomicU64) -> u64 {
    a.load(Ordering::Relaxed)
}

fn header(out: &mut String, name: &str, kind: &str, help: &str) {
    let _ = writeln!(out, "# HELP {name} {help}");
    let _ = writeln!(out, "# TYPE {name} {kind}");
}

fn scalar(out: &mut String, name: &str, kind: &str, help: &str, value: u64) {
    header(out, name, kind, help);
    let _ = writeln!(out, "{name} {value}");
}

fn labels(names: &[&str], values: &[String]) -> String {
    let parts: Vec<String> = names.iter().zip(values).map(|(n, v)| format!("{n}=\"{}\"", escape(v))).collect();
    parts.join(",")
}

fn escape(v: &str) -> String {
    v.replace('\\', "\\\\").replace('"', "\\\"").replace('\n', "\\n")
}

fn family(out: &mut String, name: &str, kind: &str, help: &str, names: &[&str], rows: &[(Vec<String>, u64)]) {
    header(out, name, kind, help);
    for (values, n) in rows {
        let _ = writeln!(out, "{name}{{{}}} {n}", labels(names, values));
    }
}

fn histograms(
    out: &mut String,
    name: &str,
    help: &str,
    names: &[&str],
    rows: &[(Vec<String>, std::sync::Arc<Histogram>)],
) {
    header(out, name, "histogram", help);
    for (values, h) in rows {
        let l = labels(names, values);
        for (i, bound) in BUCKETS.iter().enumerate() {
            let _ = writeln!(out, "{name}_bucket{{{l},le=\"{bound}\"}} {}", load(&h.buckets[i]));
        }
        let count = load(&h.count);
        let _ = writeln!(out, "{name}_bucket{{{l},le=\"+Inf\"}} {count}");
        let _ = writeln!(out, "{name}_sum{{{l}}} {}", load(&h.sum) as f64 / 1e6);
        let _ = writeln!(out, "{name}_count{{{l}}} {count}");
    }
}

/// A sample's value from a rendered exposition: `name` with exactly these
/// labels (`name{a="b"}` as written), for tests and the CLI.
pub fn sample(text: &str, series: &str) -> Option<f64> {
    text.lines().find_map(|line| {
        let rest = line.strip_prefix(series)?;
        rest.strip_prefix(' ')?.trim().parse().ok()
    })
}

/// The number of response bodies being streamed right now.
#[derive(Debug, Clone, Default)]
pub struct DownloadGauge(std::sync::Arc<std::sync::atomic::AtomicUsize>);

impl DownloadGauge {
    pub fn get(&self) -> usize {
        self.0.load(Ordering::SeqCst)
    }

    /// Count one download until the returned guard is dropped.
    pub fn start(&self) -> DownloadGuard {
        self.0.fetch_add(1, Ordering::SeqCst);
        DownloadGuard(self.0.clone())
    }
}

#[derive(Debug)]
pub struct DownloadGuard(std::sync::Arc<std::sync::atomic::AtomicUsize>);

impl Drop for DownloadGuard {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_counters_labels_and_histograms() {
        let m = Metrics::default();
        m.request("/d/{*path}", 200, None);
        m.request("/d/{*path}", 403, Some("expired"));
        m.request("/v1/downloads", 429, Some("quota_exceeded"));
        m.request("/v1/downloads", 429, Some("rate_limited"));
        m.store_latency.get(&["redis", "get"]).observe(0.002);
        let text = m.render(Gauges { active_downloads: 3, ..Gauges::default() });
        let got = |s| sample(&text, s);
        assert_eq!(
            got("tollgate_http_requests_total{surface=\"data_plane\",route=\"/d/{*path}\",status_class=\"2xx\"}"),
            Some(1.0)
        );
        assert_eq!(
            got("tollgate_http_requests_total{surface=\"customer_api\",route=\"/v1/downloads\",status_class=\"4xx\"}"),
            Some(2.0)
        );
        assert_eq!(got("tollgate_quota_rejections_total{surface=\"customer_api\"}"), Some(1.0));
        assert_eq!(got("tollgate_rate_limit_rejections_total{surface=\"customer_api\"}"), Some(1.0));
        assert_eq!(got("tollgate_downloads_active"), Some(3.0));
        assert_eq!(
            got("tollgate_store_operation_duration_seconds_bucket{backend=\"redis\",op=\"get\",le=\"0.001\"}"),
            Some(0.0)
        );
        assert_eq!(
            got("tollgate_store_operation_duration_seconds_bucket{backend=\"redis\",op=\"get\",le=\"0.0025\"}"),
            Some(1.0)
        );
        assert_eq!(got("tollgate_store_operation_duration_seconds_count{backend=\"redis\",op=\"get\"}"), Some(1.0));
    }

    #[test]
    fn label_values_are_escaped() {
        assert_eq!(labels(&["a"], &["x\"y\\z\n".to_owned()]), "a=\"x\\\"y\\\\z\\n\"");
    }

    #[test]
    fn gauge_counts_until_guard_drops() {
        let g = DownloadGauge::default();
        let a = g.start();
        let b = g.start();
        assert_eq!(g.get(), 2);
        drop(a);
        drop(b);
        assert_eq!(g.get(), 0);
    }
}
