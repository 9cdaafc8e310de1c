//! The download event log against real stores (SQLite, Redis, Redis Cluster):
//! idempotent appends, cursor paging under concurrent writes, report
//! counters; then on a real gateway: a mixed scenario on which the events
//! API, the report (JSON and CSV), the adoption view and the metrics agree,
//! and a Redis outage in the middle of downloads that loses and duplicates
//! nothing.
#![allow(clippy::unwrap_used, clippy::expect_used, reason = "tests")]

#[macro_use]
mod common;

use std::collections::{BTreeMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use common::{
    Admin, Backend, RedisServer, StoreKind, artifact_path, ask, customer, durable_redis, no_rate_limits, release,
    request, send, store_fixture, test_bytes, url,
};
use http_body_util::BodyExt;
use serde_json::{Value, json};
use tollgate::config::Config;
use tollgate::events::{
    Completion, Days, Detail, Dimension, Event, EventLog, Filter, Retention, Sequenced, Subject, report,
};

backend_suite!(
    sqlite = super::StoreKind::Sqlite, redis = super::StoreKind::Redis, redis_cluster = super::StoreKind::RedisCluster;
    appends_are_idempotent_per_writer,
    paging_never_skips_or_repeats_under_concurrent_writes,
    filters_counters_and_adoption,
    retention_trims_the_log,
    recent_reads_newest_first_for_one_customer,
);

mod gateway {
    #[tokio::test]
    async fn mixed_scenario_sqlite() {
        super::mixed_scenario_agrees_everywhere(super::StoreKind::Sqlite).await
    }

    #[tokio::test]
    async fn mixed_scenario_redis() {
        super::mixed_scenario_agrees_everywhere(super::StoreKind::Redis).await
    }
}

const RETENTION: Retention =
    Retention { max_age: Duration::from_secs(90 * 86_400), max_events: 1_000_000, report_days: 400 };

/// 2026-11-24T00:00:00Z in milliseconds.
const DAY_MS: u64 = 1_795_478_400_000;

fn subject(customer: &str, version: &str) -> Subject {
    Subject {
        customer: Some(customer.into()),
        product: Some("app".into()),
        version: Some(version.into()),
        filename: Some("app.tar.gz".into()),
        platform: Some("linux".into()),
    }
}

fn initiated(at: u64, customer: &str) -> Event {
    let detail = Detail::DownloadInitiated {
        grant: format!("g-{customer}-{at}"),
        client_ip: Some("192.0.2.7".into()),
        user_agent: Some("curl/8".into()),
        range: None,
        delivery: "proxy".into(),
        via: Some("customer_api".into()),
        by: None,
    };
    Event::new(at, subject(customer, "1.0.0"), detail)
}

fn completed(at: u64, customer: &str, result: Completion, bytes: u64, reached_end: bool) -> Event {
    let detail = Detail::DownloadCompleted {
        grant: Some(format!("g-{customer}")),
        result,
        bytes_sent: bytes,
        bytes_expected: bytes,
        duration_ms: 3,
        reached_end,
        range: None,
    };
    Event::new(at, subject(customer, "1.0.0"), detail)
}

fn denied(at: u64, customer: Option<&str>, reason: &str) -> Event {
    let detail = Detail::DownloadDenied {
        reason: reason.into(),
        status: 403,
        grant: None,
        client_ip: None,
        surface: "data_plane".into(),
        count: 1,
    };
    let subject = customer.map(|c| subject(c, "1.0.0")).unwrap_or_default();
    Event::new(at, subject, detail)
}

fn seq(writer: &str, from: u64, events: &[Event]) -> Vec<Sequenced> {
    events
        .iter()
        .enumerate()
        .map(|(i, e)| Sequenced { writer: writer.into(), seq: from + i as u64, event: e.clone() })
        .collect()
}

/// Every event in the log, paging `limit` at a time.
async fn read_all(log: &dyn EventLog, filter: &Filter, limit: usize) -> Vec<Event> {
    let mut out = Vec::new();
    let mut after: Option<String> = None;
    for _ in 0..10_000 {
        let page = log.read(after.as_deref(), filter, limit, 10_000).await.unwrap();
        out.extend(page.items.into_iter().map(|(_, e)| e));
        if page.next.is_some() {
            after = page.next;
        }
        if !page.more {
            return out;
        }
    }
    panic!("paging never ended");
}

async fn appends_are_idempotent_per_writer(kind: StoreKind) {
    let f = store_fixture(kind).await;
    let log = f.db.events.as_ref();
    let events: Vec<Event> = (0..7).map(|i| initiated(DAY_MS + i, "acme")).collect();
    assert_eq!(log.append(&seq("w1", 1, &events[..5]), &RETENTION).await.unwrap(), 5);
    // A batch whose answer was lost comes again, with more behind it: only
    // the new events are taken.
    assert_eq!(log.append(&seq("w1", 3, &events[2..]), &RETENTION).await.unwrap(), 2);
    assert_eq!(log.append(&seq("w1", 1, &events), &RETENTION).await.unwrap(), 0);
    // Another writer's sequence numbers are its own.
    let other = [initiated(DAY_MS + 100, "beta")];
    assert_eq!(log.append(&seq("w2", 1, &other), &RETENTION).await.unwrap(), 1);

    let all = read_all(log, &Filter::default(), 3).await;
    let mut expected = events.clone();
    expected.extend(other);
    assert_eq!(all, expected, "each event once, in order of appending");

    let days = Days { from: "2026-11-24".into(), to: "2026-11-24".into() };
    let (cells, seen) = log.cells(&days, Dimension::Customer).await.unwrap();
    let rows = report::rows(&cells, &seen);
    assert_eq!(rows.iter().map(|r| (r.group.as_str(), r.initiations)).collect::<Vec<_>>(), [("acme", 7), ("beta", 1)]);
}

/// `recent` (the portal's History): one customer's events, newest first,
/// at most `limit`; on Redis, within `scan` entries from the end.
async fn recent_reads_newest_first_for_one_customer(kind: StoreKind) {
    let f = store_fixture(kind).await;
    let log = f.db.events.as_ref();
    let events: Vec<Event> = (0..20).map(|i| initiated(DAY_MS + i, if i % 2 == 0 { "acme" } else { "beta" })).collect();
    log.append(&seq("w1", 1, &events), &RETENTION).await.unwrap();
    let acme = Filter { customer: Some("acme".into()), ..Filter::default() };
    let got = log.recent(&acme, 3, 1000).await.unwrap();
    let want: Vec<Event> =
        events.iter().rev().filter(|e| e.subject.customer.as_deref() == Some("acme")).take(3).cloned().collect();
    assert_eq!(got, want);
    let all = log.recent(&acme, 100, 1000).await.unwrap();
    assert_eq!(all.len(), 10);
    let nobody = Filter { customer: Some("nobody".into()), ..Filter::default() };
    assert!(log.recent(&nobody, 10, 1000).await.unwrap().is_empty());
}

async fn paging_never_skips_or_repeats_under_concurrent_writes(kind: StoreKind) {
    let f = store_fixture(kind).await;
    let store = f.db.clone();
    const PER_WRITER: u64 = 600;
    let writers: Vec<_> = ["wa", "wb"]
        .into_iter()
        .map(|w| {
            let store = store.clone();
            tokio::spawn(async move {
                let mut written = Vec::new();
                for batch in 0..PER_WRITER / 5 {
                    let events: Vec<Event> = (0..5).map(|i| initiated(DAY_MS + batch * 5 + i, w)).collect();
                    store.events.as_ref().append(&seq(w, batch * 5 + 1, &events), &RETENTION).await.unwrap();
                    written.extend(events.into_iter().map(|e| e.id));
                }
                written
            })
        })
        .collect();
    // Page through while the writers write, until they are done and the
    // log is drained.
    let mut seen = Vec::new();
    let mut after: Option<String> = None;
    let finished = |ws: &[tokio::task::JoinHandle<Vec<String>>]| ws.iter().all(|w| w.is_finished());
    loop {
        let done = finished(&writers);
        let page = store.events.as_ref().read(after.as_deref(), &Filter::default(), 7, 10_000).await.unwrap();
        seen.extend(page.items.into_iter().map(|(_, e)| e.id));
        if page.next.is_some() {
            after = page.next;
        }
        if done && !page.more {
            break;
        }
    }
    let mut written = Vec::new();
    for w in writers {
        written.push(w.await.unwrap());
    }
    let unique: HashSet<&String> = seen.iter().collect();
    assert_eq!(unique.len(), seen.len(), "an event was repeated");
    assert_eq!(seen.len() as u64, 2 * PER_WRITER, "an event was skipped");
    // Each writer's events appear in the order it wrote them.
    for w in &written {
        let order: Vec<&String> = seen.iter().filter(|id| w.contains(id)).collect();
        assert_eq!(order, w.iter().collect::<Vec<_>>());
    }
}

async fn filters_counters_and_adoption(kind: StoreKind) {
    let f = store_fixture(kind).await;
    let log = f.db.events.as_ref();
    let next_day = DAY_MS + 86_400_000;
    let events = vec![
        initiated(DAY_MS, "acme"),
        completed(DAY_MS + 1, "acme", Completion::Aborted, 400, false),
        completed(DAY_MS + 2, "acme", Completion::Complete, 600, true),
        initiated(DAY_MS + 3, "beta"),
        completed(DAY_MS + 4, "beta", Completion::Complete, 100, false),
        denied(DAY_MS + 5, None, "invalid_signature"),
        denied(DAY_MS + 6, Some("beta"), "quota_exceeded"),
        initiated(next_day, "acme"),
        Event::new(
            next_day + 1,
            Subject { product: Some("app".into()), ..Subject::default() },
            Detail::ReleaseYanked {},
        ),
    ];
    log.append(&seq("w", 1, &events), &RETENTION).await.unwrap();

    let only = |types: Vec<tollgate::events::EventType>, customer: Option<&str>| Filter {
        types,
        customer: customer.map(str::to_owned),
        product: None,
    };
    use tollgate::events::EventType as T;
    assert_eq!(read_all(log, &only(vec![T::DownloadInitiated], None), 2).await.len(), 3);
    assert_eq!(read_all(log, &only(vec![T::DownloadDenied, T::ReleaseYanked], None), 1).await.len(), 3);
    assert_eq!(read_all(log, &only(vec![], Some("beta")), 10).await.len(), 3);
    // Scanning stops at `scan` entries and says there is more.
    let page = log.read(None, &only(vec![T::ReleaseYanked], None), 10, 4).await.unwrap();
    if kind != StoreKind::Sqlite {
        assert!(page.items.is_empty() && page.more, "{page:?}");
    }

    let both = Days { from: "2026-11-24".into(), to: "2026-11-25".into() };
    let (cells, seen) = log.cells(&both, Dimension::Customer).await.unwrap();
    let rows = report::rows(&cells, &seen);
    let by: BTreeMap<&str, &tollgate::events::ReportRow> = rows.iter().map(|r| (r.group.as_str(), r)).collect();
    let acme = by["acme"];
    assert_eq!((acme.initiations, acme.completions, acme.aborted, acme.bytes, acme.customers), (2, 1, 1, 1000, 1));
    let beta = by["beta"];
    assert_eq!((beta.initiations, beta.completions, beta.bytes), (1, 0, 100), "a range short of the end");
    assert_eq!(beta.denials.get("quota_exceeded"), Some(&1));
    assert_eq!(by["-"].denials.get("invalid_signature"), Some(&1));

    let (cells, seen) = log.cells(&both, Dimension::Day).await.unwrap();
    let days = report::rows(&cells, &seen);
    assert_eq!(
        days.iter().map(|r| (r.group.as_str(), r.initiations, r.customers)).collect::<Vec<_>>(),
        [("2026-11-24", 2, 2), ("2026-11-25", 1, 1)]
    );
    let first = Days { from: "2026-11-24".into(), to: "2026-11-24".into() };
    let (cells, seen) = log.cells(&first, Dimension::Release).await.unwrap();
    let release = report::rows(&cells, &seen);
    assert_eq!(release.len(), 2, "app/1.0.0 and the unknown group of the forged URL");
    assert_eq!((release[1].group.as_str(), release[1].initiations, release[1].customers), ("app/1.0.0", 2, 2));

    let adoption = log.adoption("app", "1.0.0").await.unwrap();
    assert_eq!(adoption.len(), 2);
    assert_eq!(
        (adoption[0].customer.as_str(), adoption[0].first_initiated, adoption[0].first_completed),
        ("acme", Some(DAY_MS), Some(DAY_MS + 2))
    );
    assert_eq!((adoption[1].customer.as_str(), adoption[1].first_completed), ("beta", None));
    assert!(log.adoption("app", "2.0.0").await.unwrap().is_empty());
}

async fn retention_trims_the_log(kind: StoreKind) {
    let f = store_fixture(kind).await;
    let log = f.db.events.as_ref();
    let old: Vec<Event> = (0..600).map(|i| initiated(DAY_MS + i, "acme")).collect();
    let new: Vec<Event> = (0..5).map(|i| initiated(DAY_MS + 10 * 86_400_000 + i, "acme")).collect();
    log.append(&seq("w", 1, &old), &RETENTION).await.unwrap();
    log.append(&seq("w", 601, &new), &RETENTION).await.unwrap();
    // By count: Redis trims whole stream nodes (`~`), SQLite exactly.
    let keep_100 = Retention { max_events: 100, ..RETENTION };
    log.trim(&keep_100, DAY_MS + 10 * 86_400_000).await.unwrap();
    let left = read_all(log, &Filter::default(), 1000).await;
    assert!((100..605).contains(&left.len()), "{}", left.len());
    if kind == StoreKind::Sqlite {
        assert_eq!(left.len(), 100);
        // By age (on Redis, the age of an entry is the time it was appended,
        // which this test cannot move).
        let keep_a_week = Retention { max_age: Duration::from_secs(7 * 86_400), ..RETENTION };
        log.trim(&keep_a_week, DAY_MS + 10 * 86_400_000 + 10).await.unwrap();
        assert_eq!(read_all(log, &Filter::default(), 1000).await, new);
    }
    assert!(left.ends_with(&new), "the recent events stay");
}

// On a real gateway.

/// Start a download, take its first chunk, and hang up.
async fn abort_after_first_chunk(a: &Admin, url: &str, headers: &[(&str, &str)]) {
    let response = send(a.gw.public, "GET", url, headers).await;
    assert!(response.status().is_success(), "{:?}", response.status());
    let mut body = response.into_body();
    let first = body.frame().await.unwrap().unwrap();
    assert!(first.data_ref().is_some_and(|d| !d.is_empty()));
    drop(body);
}

/// Every event through the admin API, paging `limit` at a time.
async fn events_api(a: &Admin, query: &str, limit: usize) -> Vec<Value> {
    let mut out = Vec::new();
    let mut after = String::new();
    for _ in 0..1000 {
        let cursor = if after.is_empty() { String::new() } else { format!("&after={after}") };
        let r = a.call("GET", &format!("/admin/v1/events?limit={limit}{query}{cursor}"), None).await;
        assert_eq!(r.status, 200, "{r:?}");
        let page = Admin::json(&r);
        out.extend(page["items"].as_array().unwrap().iter().cloned());
        if let Some(n) = page["next"].as_str() {
            after = n.to_owned();
        }
        if page["more"] == false {
            return out;
        }
    }
    panic!("paging never ended");
}

/// Wait (bounded) until the streams have ended and the log holds `n` events
/// of `type`.
async fn settle(a: &Admin, ty: &str, n: usize) -> Vec<Value> {
    assert!(a.gw.wait_for_no_downloads().await, "streams did not end");
    for _ in 0..200 {
        a.gw.state.events.flush().await;
        let events = events_api(a, "", 1000).await;
        if events.iter().filter(|e| e["type"] == ty).count() >= n {
            return events;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("the log never reached {n} {ty} events");
}

fn count(events: &[Value], pred: impl Fn(&Value) -> bool) -> usize {
    events.iter().filter(|e| pred(e)).count()
}

async fn metrics(a: &Admin) -> String {
    let r = request(a.gw.admin, "GET", "/metrics", &[]).await;
    assert_eq!(r.status, 200, "{r:?}");
    assert!(r.header("content-type").unwrap().starts_with("text/plain; version=0.0.4"));
    String::from_utf8(r.bytes().to_vec()).unwrap()
}

fn metric(text: &str, series: &str) -> u64 {
    tollgate::metrics::sample(text, series).unwrap_or_else(|| panic!("no {series} in\n{text}")) as u64
}

/// Big enough that a client hanging up after the first chunk leaves most of it
/// unsent, whatever the loopback socket buffers hold.
const BIG: usize = 32 << 20;

/// Successful, resumed, aborted and refused downloads; then every view of them
/// is compared.
async fn mixed_scenario_agrees_everywhere(kind: StoreKind) {
    let a = Admin::start_tweaked(kind, Backend::Local, quick_webhooks).await;
    let receiver = Receiver::start().await;
    let download_types = ["download.initiated", "download.completed", "download.denied"];
    let secret = add_webhook(&a, "downloads", &format!("{}/hook", receiver.url), &download_types).await;
    release(&a, "1.0.0", "stable", &[("app.tar.gz", "linux")], "2026-01-01T00:00:00Z").await;
    a.blobs.put("app/1.0.0/big.bin", &test_bytes(BIG)).await;
    assert_eq!(a.call("PUT", &artifact_path("1.0.0", "big.bin", "linux"), None).await.status, 201);
    let acme = customer(&a, "acme", json!({})).await;
    let beta = customer(&a, "beta", json!({ "license": "subscription", "expires_at": "2021-01-01T00:00:00Z" })).await;
    customer(&a, "gamma", json!({})).await;
    let r = a
        .call("PUT", "/admin/v1/customers/acme", Some(json!({ "name": "acme", "quota": { "downloads_per_day": 3 } })))
        .await;
    assert_eq!(r.status, 200, "{r:?}");

    // Successful.
    let ok = url(&a, &acme, "app.tar.gz").await;
    let r = request(a.gw.public, "GET", &ok, &[]).await;
    assert_eq!((r.status, r.bytes().len()), (200, 10_000));
    // Resumed: cut off, then the rest by range.
    let resumed = url(&a, &acme, "big.bin").await;
    abort_after_first_chunk(&a, &resumed, &[]).await;
    let rest = request(a.gw.public, "GET", &resumed, &[("range", "bytes=1000-")]).await;
    assert_eq!((rest.status, rest.bytes().len()), (206, BIG - 1000));
    // Aborted for good.
    let aborted = url(&a, &acme, "big.bin").await;
    abort_after_first_chunk(&a, &aborted, &[]).await;
    // Refused: over the quota, an expired entitlement, a forged URL.
    let r = ask(&a, &acme, json!({ "product": "app", "version": "1.0.0", "filename": "app.tar.gz" })).await;
    assert_eq!((r.status, r.code().as_str()), (429, "quota_exceeded"), "{r:?}");
    let r = ask(&a, &beta, json!({ "product": "app", "version": "1.0.0", "filename": "app.tar.gz" })).await;
    assert_eq!((r.status, r.code().as_str()), (403, "entitlement_expired"), "{r:?}");
    let forged = ok.replacen("sig=", "sig=A", 1);
    let r = request(a.gw.public, "GET", &forged, &[]).await;
    assert_eq!(r.status, 403, "{r:?}");
    let forged_code = r.code();
    // Not downloads: a HEAD, a HEAD of a forged URL, and a missing file.
    assert_eq!(request(a.gw.public, "HEAD", &ok, &[]).await.status, 200);
    assert_eq!(request(a.gw.public, "HEAD", &forged, &[]).await.status, 403);
    let missing = a.gw.signed("app/1.0.0/missing.bin");
    assert_eq!(request(a.gw.public, "GET", &missing, &[]).await.status, 404);

    // The events API.
    let events = settle(&a, "download.completed", 4).await;
    let paged = events_api(&a, "", 2).await;
    assert_eq!(paged, events, "small pages see the same log");
    let ids: HashSet<&str> = events.iter().map(|e| e["id"].as_str().unwrap()).collect();
    assert_eq!(ids.len(), events.len(), "ids are unique");
    let initiations = count(&events, |e| e["type"] == "download.initiated");
    let completions = count(&events, |e| {
        e["type"] == "download.completed" && e["data"]["result"] == "complete" && e["data"]["reached_end"] == true
    });
    let aborts = count(&events, |e| e["type"] == "download.completed" && e["data"]["result"] == "aborted");
    let bytes: u64 = events
        .iter()
        .filter(|e| e["type"] == "download.completed")
        .map(|e| e["data"]["bytes_sent"].as_u64().unwrap())
        .sum();
    let denials: BTreeMap<String, usize> =
        events.iter().filter(|e| e["type"] == "download.denied").fold(BTreeMap::new(), |mut m, e| {
            *m.entry(e["data"]["reason"].as_str().unwrap().to_owned()).or_default() += 1;
            m
        });
    assert_eq!((initiations, completions, aborts), (3, 2, 2), "{events:#?}");
    assert!(bytes > (10_000 + BIG - 1000) as u64 && bytes < (10_000 + 3 * BIG) as u64, "{bytes}");
    let expected_denials: BTreeMap<String, usize> =
        [("quota_exceeded".to_owned(), 1), ("entitlement_expired".to_owned(), 1), (forged_code.clone(), 1)].into();
    assert_eq!(denials, expected_denials);
    let init = events.iter().find(|e| e["type"] == "download.initiated").unwrap();
    assert_eq!((init["customer"].as_str(), init["platform"].as_str()), (Some("acme"), Some("linux")));
    assert_eq!(init["data"]["delivery"], "proxy");
    assert!(init["data"]["client_ip"].as_str().unwrap().starts_with("127.0.0.1"));
    let forged_event = events.iter().find(|e| e["data"]["reason"] == forged_code.as_str()).unwrap();
    assert!(forged_event.get("customer").is_none(), "a forged URL names nobody: {forged_event}");
    // Admin events are in the log too, and filters work.
    for ty in ["release.published", "artifact.uploaded", "entitlement.changed"] {
        assert!(events.iter().any(|e| e["type"] == ty), "no {ty}");
    }
    let acme_denied = events_api(&a, "&type=download.denied&customer=acme", 1).await;
    assert_eq!(acme_denied.len(), 1);
    assert_eq!(acme_denied[0]["data"]["reason"], "quota_exceeded");

    // The report.
    let r = a.call("GET", "/admin/v1/reports/downloads?group_by=customer", None).await;
    assert_eq!(r.status, 200, "{r:?}");
    let report = Admin::json(&r);
    let total = &report["total"];
    assert_eq!(
        (total["initiations"].as_u64(), total["completions"].as_u64(), total["aborted"].as_u64()),
        (Some(3), Some(2), Some(2))
    );
    assert_eq!(total["bytes"].as_u64(), Some(bytes));
    assert_eq!(total["customers"].as_u64(), Some(1));
    for (reason, n) in &expected_denials {
        assert_eq!(total["denials"][reason].as_u64(), Some(*n as u64), "{reason}");
    }
    let rows = report["rows"].as_array().unwrap();
    let acme_row = rows.iter().find(|r| r["group"] == "acme").unwrap();
    assert_eq!((acme_row["initiations"].as_u64(), acme_row["denials"]["quota_exceeded"].as_u64()), (Some(3), Some(1)));
    let beta_row = rows.iter().find(|r| r["group"] == "beta").unwrap();
    assert_eq!(beta_row["denials"]["entitlement_expired"], 1);
    assert_eq!(rows.iter().find(|r| r["group"] == "-").unwrap()["denials"][&forged_code], 1);

    // The CSV says the same.
    let r = a.call("GET", "/admin/v1/reports/downloads?group_by=artifact&format=csv", None).await;
    assert_eq!(r.status, 200, "{r:?}");
    assert!(r.header("content-type").unwrap().starts_with("text/csv"));
    let text = String::from_utf8(r.bytes().to_vec()).unwrap();
    let mut lines = text.lines();
    let head: Vec<&str> = lines.next().unwrap().split(',').collect();
    let column = |name: &str| head.iter().position(|h| *h == name).unwrap_or_else(|| panic!("no {name}: {head:?}"));
    let mut sums = BTreeMap::<&str, u64>::new();
    for line in lines {
        let cells: Vec<&str> = line.split(',').collect();
        for name in ["initiations", "completions", "aborted", "bytes", "denied"] {
            *sums.entry(name).or_default() += cells[column(name)].parse::<u64>().unwrap();
        }
    }
    assert_eq!(sums["initiations"], 3);
    assert_eq!(sums["completions"], 2);
    assert_eq!(sums["aborted"], 2);
    assert_eq!(sums["bytes"], bytes);
    assert_eq!(sums["denied"], 3);

    // The metrics.
    let m = metrics(&a).await;
    assert_eq!(metric(&m, "tollgate_downloads_initiated_total"), 3);
    assert_eq!(metric(&m, "tollgate_downloads_completed_total"), 2);
    assert_eq!(metric(&m, "tollgate_downloads_aborted_total"), 2);
    assert_eq!(metric(&m, "tollgate_download_sent_bytes_total"), bytes);
    for (reason, n) in &expected_denials {
        assert_eq!(metric(&m, &format!("tollgate_downloads_denied_total{{reason=\"{reason}\"}}")), *n as u64);
    }
    assert_eq!(metric(&m, "tollgate_quota_rejections_total{surface=\"customer_api\"}"), 1);
    assert_eq!(metric(&m, "tollgate_events_spill_pending"), 0);
    assert!(
        metric(&m, "tollgate_http_requests_total{surface=\"data_plane\",route=\"/d/{*path}\",status_class=\"2xx\"}")
            >= 4
    );
    assert!(m.contains("tollgate_store_operation_duration_seconds_count{backend="));
    assert!(m.contains("tollgate_storage_operation_duration_seconds_count{backend=\"local\",op=\"get\"}"));
    // Routes are labelled by template, never by the path a client sent.
    assert!(!m.contains("/d/app/"), "a client's path in a label:\n{m}");

    // Adoption: acme took it, gamma has not, beta is not entitled any more.
    let r = a.call("GET", "/admin/v1/products/app/releases/1.0.0/adoption", None).await;
    assert_eq!(r.status, 200, "{r:?}");
    let adoption = Admin::json(&r);
    assert_eq!((adoption["entitled"].as_u64(), adoption["completed"].as_u64()), (Some(2), Some(1)));
    assert_eq!(adoption["downloaded"][0]["customer"], "acme");
    assert!(adoption["downloaded"][0]["first_completed"].is_string());
    assert_eq!(adoption["not_downloaded"][0]["customer"], "gamma");

    // The webhook receiver got the same download events, signed, each once.
    let downloads: Vec<&Value> =
        events.iter().filter(|e| download_types.contains(&e["type"].as_str().unwrap())).collect();
    let got = receiver.wait_for("/hook", downloads.len()).await;
    let delivered: Vec<Value> = got.iter().map(|d| verified(d, &secret)).collect();
    assert_eq!(delivered.len(), downloads.len());
    assert_eq!(delivered.iter().collect::<Vec<_>>(), downloads, "the same events, in log order");

    // Bad parameters are problems.
    let r = a.call("GET", "/admin/v1/events?after=zzz", None).await;
    assert_eq!((r.status, r.code().as_str()), (400, "invalid_cursor"));
    let r = a.call("GET", "/admin/v1/events?type=download.bogus", None).await;
    assert_eq!((r.status, r.code().as_str()), (400, "invalid_request"));
    let r = a.call("GET", "/admin/v1/reports/downloads?group_by=color", None).await;
    assert_eq!((r.status, r.code().as_str()), (400, "invalid_request"));
    let r = a.call("GET", "/admin/v1/reports/downloads?group_by=day&from=2026-12-01&to=2026-11-01", None).await;
    assert_eq!((r.status, r.code().as_str()), (400, "invalid_request"));
}

#[tokio::test]
async fn a_redis_outage_loses_and_duplicates_no_event() {
    let mut redis = durable_redis().await;
    let a = Admin::on_redis(&redis, |c| {
        no_rate_limits(c);
        c.downloads.lease_ttl = Duration::from_secs(3);
        // Grant URLs keep working on their signature while Redis is away.
        c.downloads.on_store_unavailable = tollgate::config::FailMode::Open;
        // Each forged request is an event here (the aggregation is tested
        // on its own).
        c.events.denial_window = Duration::ZERO;
    })
    .await;
    release(&a, "1.0.0", "stable", &[("app.tar.gz", "linux")], "2026-01-01T00:00:00Z").await;
    a.blobs.put("app/1.0.0/big.bin", &test_bytes(BIG)).await;
    assert_eq!(a.call("PUT", &artifact_path("1.0.0", "big.bin", "linux"), None).await.status, 201);
    let key = customer(&a, "acme", json!({})).await;
    let urls: Vec<String> = futures_util::future::join_all((0..6).map(|_| url(&a, &key, "app.tar.gz"))).await;
    let big = url(&a, &key, "big.bin").await;

    // Three downloads before the outage, one streaming through it.
    for u in &urls[..3] {
        assert_eq!(request(a.gw.public, "GET", u, &[]).await.status, 200);
    }
    let streaming = send(a.gw.public, "GET", &big, &[]).await;
    assert_eq!(streaming.status(), 200);
    redis.kill();

    // During the outage: the stream finishes, three more grant URLs are
    // served (fail open), and forged URLs are refused.
    let body = streaming.into_body().collect().await.unwrap().to_bytes();
    assert_eq!(body.len(), BIG);
    for u in &urls[3..] {
        assert_eq!(request(a.gw.public, "GET", u, &[]).await.status, 200);
    }
    for _ in 0..4 {
        let forged = urls[0].replacen("sig=", "sig=B", 1);
        assert_eq!(request(a.gw.public, "GET", &forged, &[]).await.status, 403);
    }
    assert!(a.gw.wait_for_no_downloads().await);
    let state = a.gw.state.clone();
    let mut spilled = 0;
    for _ in 0..200 {
        state.events.flush().await;
        spilled = state.events.spill().pending.load(std::sync::atomic::Ordering::Relaxed);
        if spilled >= 8 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(spilled >= 8, "completions and refusals during the outage are spilled: {spilled}");

    // Redis returns: the spill file is replayed.
    redis.restart().await;
    // Replays back off up to 30 s while Redis is away: wait up to a minute.
    let mut replayed = false;
    for _ in 0..600 {
        state.events.flush().await;
        if state.events.spill().pending.load(std::sync::atomic::Ordering::Relaxed) == 0 {
            replayed = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(replayed, "the spill file was not replayed");
    let events = events_api(&a, "&type=download.initiated,download.completed,download.denied", 50).await;
    let ids: HashSet<&str> = events.iter().map(|e| e["id"].as_str().unwrap()).collect();
    assert_eq!(ids.len(), events.len(), "an event was logged twice");
    // 4 initiations (3 before, the stream's), 7 completions, 4 refusals:
    // the three fail-open downloads are not counted, so not initiated.
    let completed = count(&events, |e| e["type"] == "download.completed" && e["data"]["result"] == "complete");
    let initiated = count(&events, |e| e["type"] == "download.initiated");
    let denied = count(&events, |e| e["type"] == "download.denied");
    assert_eq!((initiated, completed, denied), (4, 7, 4), "{events:#?}");
    // What the metrics counted as recorded is what the log holds.
    let m = metrics(&a).await;
    assert_eq!(metric(&m, "tollgate_downloads_completed_total"), 7);
    assert_eq!(metric(&m, "tollgate_events_lost_total"), 0);
    assert!(metric(&m, "tollgate_events_replayed_total") >= spilled);
    // The log's order is the order of recording: every completion of a
    // grant comes after its initiation.
    for (i, e) in events.iter().enumerate() {
        if e["type"] == "download.completed" && e["data"]["grant"].is_string() {
            let grant = &e["data"]["grant"];
            let started = events.iter().position(|x| x["type"] == "download.initiated" && x["data"]["grant"] == *grant);
            assert!(started.is_none_or(|s| s < i), "{e}");
        }
    }
}

#[tokio::test]
async fn a_spill_file_left_by_an_earlier_run_is_replayed_once() {
    let dir = tempfile::tempdir().unwrap();
    let store = tollgate::db::Db::of(tollgate::db::sqlite::SqliteDb::open(&dir.path().join("t.db")).unwrap());
    let events: Vec<Event> = (0..5).map(|i| initiated(DAY_MS + i, "acme")).collect();
    // The earlier run got the first two into the store (the answer was lost),
    // then spilled all five and died while writing a sixth line.
    store.events.as_ref().append(&seq("old", 1, &events[..2]), &RETENTION).await.unwrap();
    let spill = dir.path().join("events").join("spill.jsonl");
    std::fs::create_dir_all(spill.parent().unwrap()).unwrap();
    let mut text = String::new();
    for s in seq("old", 1, &events) {
        text.push_str(&serde_json::to_string(&s).unwrap());
        text.push('\n');
    }
    text.push_str("{\"w\":\"old\",\"s\":6,\"e\":{\"id\":");
    std::fs::write(&spill, text).unwrap();

    let metrics = Arc::new(tollgate::metrics::Metrics::default());
    let settings = tollgate::events::recorder::Settings { queue: 16, spill_path: spill.clone(), retention: RETENTION };
    let recorder = tollgate::events::Recorder::start(store.events.clone(), settings, metrics);
    let after = initiated(DAY_MS + 10, "acme");
    recorder.record(after.clone()).await;
    let mut drained = false;
    for _ in 0..100 {
        recorder.flush().await;
        if recorder.spill().pending.load(std::sync::atomic::Ordering::Relaxed) == 0 {
            drained = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(drained);
    recorder.stop().await;
    let mut expected = events.clone();
    expected.push(after);
    assert_eq!(read_all(store.events.as_ref(), &Filter::default(), 100).await, expected, "once each, in order");
    assert_eq!(std::fs::metadata(&spill).unwrap().len(), 0, "the replayed file is emptied");
}

// Webhooks.

/// One delivery a test receiver took.
#[derive(Debug, Clone)]
struct Delivery {
    path: String,
    id: String,
    timestamp: u64,
    signature: String,
    body: Vec<u8>,
}

/// A webhook receiver on a free loopback port. `/fail<N>/…` answers 503 to
/// the first N requests of each webhook id, `/down/…` always 500, anything
/// else 204. Only 2xx-answered deliveries are kept.
#[derive(Clone)]
struct Receiver {
    url: String,
    taken: Arc<std::sync::Mutex<Vec<Delivery>>>,
    tries: Arc<std::sync::Mutex<BTreeMap<(String, String), u32>>>,
}

impl Receiver {
    async fn start() -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let r = Receiver { url, taken: Arc::default(), tries: Arc::default() };
        let me = r.clone();
        tokio::spawn(async move {
            loop {
                let Ok((tcp, _)) = listener.accept().await else { break };
                let me = me.clone();
                tokio::spawn(async move {
                    let service = hyper::service::service_fn(move |req: hyper::Request<hyper::body::Incoming>| {
                        let me = me.clone();
                        async move { Ok::<_, std::convert::Infallible>(me.take(req).await) }
                    });
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(hyper_util::rt::TokioIo::new(tcp), service)
                        .await;
                });
            }
        });
        r
    }

    async fn take(
        &self,
        req: hyper::Request<hyper::body::Incoming>,
    ) -> hyper::Response<http_body_util::Full<bytes::Bytes>> {
        let path = req.uri().path().to_owned();
        let header = |n: &str| req.headers().get(n).and_then(|v| v.to_str().ok()).unwrap_or_default().to_owned();
        let (id, timestamp, signature) =
            (header("webhook-id"), header("webhook-timestamp"), header("webhook-signature"));
        let body = req.into_body().collect().await.unwrap().to_bytes().to_vec();
        let tries = {
            let mut t = self.tries.lock().unwrap();
            let n = t.entry((path.clone(), id.clone())).or_default();
            *n += 1;
            *n
        };
        let fail_first: u32 = path.strip_prefix("/fail").and_then(|r| r.split('/').next()?.parse().ok()).unwrap_or(0);
        let status = if path.starts_with("/down") {
            500
        } else if tries <= fail_first {
            503
        } else {
            self.taken.lock().unwrap().push(Delivery {
                path,
                id,
                timestamp: timestamp.parse().unwrap_or(0),
                signature,
                body,
            });
            204
        };
        let mut response = hyper::Response::new(http_body_util::Full::new(bytes::Bytes::new()));
        *response.status_mut() = hyper::StatusCode::from_u16(status).unwrap();
        response
    }

    fn taken(&self, path: &str) -> Vec<Delivery> {
        self.taken.lock().unwrap().iter().filter(|d| d.path == path).cloned().collect()
    }

    /// Wait (bounded) until `path` took `n` deliveries.
    async fn wait_for(&self, path: &str, n: usize) -> Vec<Delivery> {
        for _ in 0..300 {
            let got = self.taken(path);
            if got.len() >= n {
                return got;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!("{path} took {} of {n} deliveries", self.taken(path).len());
    }
}

/// Check a delivery's Standard Webhooks signature and return its event.
fn verified(d: &Delivery, secret: &str) -> Value {
    let expected = tollgate::events::webhooks::signature(secret, &d.id, d.timestamp, &d.body).unwrap();
    assert_eq!(d.signature, expected, "signature of {}", d.id);
    let other = tollgate::events::webhooks::signature(secret, &d.id, d.timestamp + 1, &d.body).unwrap();
    assert_ne!(d.signature, other);
    let event: Value = serde_json::from_slice(&d.body).unwrap();
    assert_eq!(event["id"], d.id.as_str(), "webhook-id is the event id");
    event
}

async fn add_webhook(a: &Admin, id: &str, url: &str, types: &[&str]) -> String {
    let r = a.call("PUT", &format!("/admin/v1/webhooks/{id}"), Some(json!({ "url": url, "types": types }))).await;
    assert_eq!(r.status, 201, "{r:?}");
    let secret = Admin::json(&r)["secret"].as_str().unwrap().to_owned();
    assert!(secret.starts_with("whsec_"));
    secret
}

fn quick_webhooks(c: &mut Config) {
    no_rate_limits(c);
    c.webhooks.first_retry = Duration::from_millis(20);
    c.webhooks.max_attempts = 3;
    c.webhooks.timeout = Duration::from_secs(5);
}

async fn webhooks_retry_filter_and_dead_letter(kind: StoreKind) {
    let a = Admin::start_tweaked(kind, Backend::Local, quick_webhooks).await;
    let receiver = Receiver::start().await;
    let flaky =
        add_webhook(&a, "flaky", &format!("{}/fail2/hook", receiver.url), &["release.published", "release.yanked"])
            .await;
    add_webhook(&a, "down", &format!("{}/down/hook", receiver.url), &["release.yanked"]).await;
    // The secret is shown once; the endpoint is listed without it.
    let r = a.call("GET", "/admin/v1/webhooks/flaky", None).await;
    assert_eq!(r.status, 200);
    assert!(Admin::json(&r).get("secret").is_none());
    let r = a.call("PUT", "/admin/v1/webhooks/x", Some(json!({ "url": "ftp://example.com/" }))).await;
    assert_eq!((r.status, r.code().as_str()), (422, "invalid_field"));

    release(&a, "1.0.0", "stable", &[("app.tar.gz", "linux")], "2026-01-01T00:00:00Z").await;
    release(&a, "1.1.0", "stable", &[("app.tar.gz", "linux")], "2026-02-01T00:00:00Z").await;
    assert_eq!(a.call("POST", "/admin/v1/products/app/releases/1.0.0/yank", None).await.status, 200);

    // Each event once, in log order, after two refusals each; artifact events
    // filtered out.
    let got = receiver.wait_for("/fail2/hook", 3).await;
    let events: Vec<Value> = got.iter().map(|d| verified(d, &flaky)).collect();
    let seen: Vec<(&str, &str)> =
        events.iter().map(|e| (e["type"].as_str().unwrap(), e["version"].as_str().unwrap())).collect();
    assert_eq!(seen, [("release.published", "1.0.0"), ("release.published", "1.1.0"), ("release.yanked", "1.0.0")]);
    assert!(got.iter().all(|d| receiver.tries.lock().unwrap()[&("/fail2/hook".to_owned(), d.id.clone())] == 3));

    // The endpoint that never answers well: dead-lettered after 3 attempts.
    let mut dead = Value::Null;
    for _ in 0..200 {
        let r = a.call("GET", "/admin/v1/webhooks/down/dead-letters", None).await;
        dead = Admin::json(&r);
        if !dead["items"].as_array().unwrap().is_empty() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let items = dead["items"].as_array().unwrap();
    assert_eq!(items.len(), 1, "{dead}");
    assert_eq!((items[0]["attempts"].as_u64(), items[0]["last_error"].as_str()), (Some(3), Some("answered 500")));
    assert_eq!(items[0]["event"]["type"], "release.yanked");
    assert!(receiver.taken("/down/hook").is_empty());

    // Deleting an endpoint takes its dead letters with it.
    assert_eq!(a.call("DELETE", "/admin/v1/webhooks/down", None).await.status, 204);
    assert_eq!(a.call("GET", "/admin/v1/webhooks/down/dead-letters", None).await.status, 404);
    let r = a.call("GET", "/admin/v1/webhooks", None).await;
    assert_eq!(Admin::json(&r)["items"].as_array().unwrap().len(), 1);

    // Created again under that id: a new secret, and only what happens from
    // now on.
    let again = add_webhook(&a, "down", &format!("{}/again/hook", receiver.url), &[]).await;
    assert_ne!(again, flaky);
    assert_eq!(a.call("POST", "/admin/v1/products/app/releases/1.0.0/restore", None).await.status, 200);
    let got = receiver.wait_for("/again/hook", 1).await;
    let first = verified(&got[0], &again);
    assert_eq!((first["type"].as_str(), first["version"].as_str()), (Some("release.published"), Some("1.0.0")));
}

/// The dead letters of `endpoint`, once `ready` holds for them (bounded).
async fn dead_letters(a: &Admin, endpoint: &str, ready: impl Fn(&[Value]) -> bool) -> Vec<Value> {
    let mut items = Vec::new();
    for _ in 0..300 {
        let r = a.call("GET", &format!("/admin/v1/webhooks/{endpoint}/dead-letters"), None).await;
        items = Admin::json(&r)["items"].as_array().unwrap().clone();
        if ready(&items) {
            return items;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("{endpoint}'s dead letters never got there: {items:?}");
}

/// A dead letter sent again on request: refused again, it stays with the
/// attempt counted; accepted, it goes, delivered signed as the first time.
/// Asked through the admin API and through the console's button.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dead_letters_are_sent_again_on_request() {
    let a = Admin::start_tweaked(StoreKind::Sqlite, Backend::Local, quick_webhooks).await;
    let receiver = Receiver::start().await;
    // The first 4 tries of each event are refused: 3 attempts, then 1 on request.
    let secret = add_webhook(&a, "late", &format!("{}/fail4/hook", receiver.url), &["release.published"]).await;
    release(&a, "1.0.0", "stable", &[("app.tar.gz", "linux")], "2026-01-01T00:00:00Z").await;
    let dead = dead_letters(&a, "late", |d| !d.is_empty()).await;
    assert_eq!((dead[0]["attempts"].as_u64(), dead[0]["last_error"].as_str()), (Some(3), Some("answered 503")));
    let event = dead[0]["event"]["id"].as_str().unwrap().to_owned();

    let redeliver = format!("/admin/v1/webhooks/late/dead-letters/{event}/redeliver");
    // Asked for with the CLI.
    let dir = tempfile::tempdir().unwrap();
    let token = dir.path().join("token");
    std::fs::write(&token, &a.token).unwrap();
    std::fs::set_permissions(&token, std::os::unix::fs::PermissionsExt::from_mode(0o600)).unwrap();
    let admin_url = format!("http://{}", a.gw.admin);
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_tollgate"))
        .args(["admin", "--url", &admin_url, "--token-file", token.to_str().unwrap()])
        .args(["webhook", "redeliver", "late", &event])
        .env_remove("TOLLGATE_CONFIG")
        .output()
        .unwrap();
    let printed = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success() && printed.contains(&event), "{printed} {}", String::from_utf8_lossy(&out.stderr));
    let dead = dead_letters(&a, "late", |d| d.first().is_some_and(|d| d["attempts"] == 4)).await;
    assert_eq!(dead[0]["last_error"], "answered 503", "refused again: kept, counted");
    assert!(receiver.taken("/fail4/hook").is_empty());

    // Unknown letters and endpoints; a disabled endpoint is not sent to.
    for (path, status) in [
        ("/admin/v1/webhooks/late/dead-letters/ev_00000000000000000000000000000000/redeliver", 404),
        (&*format!("/admin/v1/webhooks/nobody/dead-letters/{event}/redeliver"), 404),
        ("/admin/v1/webhooks/late/dead-letters/..%2F..%2Fwebhook%2Flate/redeliver", 404),
    ] {
        assert_eq!(a.call("POST", path, None).await.status, status, "{path}");
    }
    let off =
        json!({ "url": format!("{}/fail4/hook", receiver.url), "types": ["release.published"], "enabled": false });
    a.call("PUT", "/admin/v1/webhooks/late", Some(off)).await;
    let r = a.call("POST", &redeliver, None).await;
    assert_eq!((r.status, r.code().as_str()), (409, "webhook_disabled"));
    let on = json!({ "url": format!("{}/fail4/hook", receiver.url), "types": ["release.published"] });
    a.call("PUT", "/admin/v1/webhooks/late", Some(on)).await;

    // Through the console: accepted this time; the letter goes.
    let mut ops = common::jar::Browser::admin(&a);
    let page = common::jar::html(&ops.get("/console/sign-in").await);
    ops.post("/console/sign-in", &[("csrf", &common::jar::field(&page, "csrf")), ("token", &a.token)]).await;
    let page = common::jar::html(&ops.get("/console/webhooks").await);
    assert!(page.contains(&event) && page.contains("Send again"), "{page}");
    let csrf = common::jar::field(&page, "csrf");
    let r = ops.post(&format!("/console/webhooks/late/dead-letters/{event}/redeliver"), &[("csrf", &csrf)]).await;
    assert_eq!((r.status, r.header("location")), (303, Some("/console/webhooks?sent=1")));
    let got = receiver.wait_for("/fail4/hook", 1).await;
    assert_eq!(verified(&got[0], &secret)["type"], "release.published");
    dead_letters(&a, "late", <[Value]>::is_empty).await;
    assert_eq!(a.call("POST", &redeliver, None).await.status, 404, "nothing left to send");
}

mod webhooks {
    #[tokio::test]
    async fn retry_filter_and_dead_letter_sqlite() {
        super::webhooks_retry_filter_and_dead_letter(super::StoreKind::Sqlite).await
    }

    #[tokio::test]
    async fn retry_filter_and_dead_letter_redis() {
        super::webhooks_retry_filter_and_dead_letter(super::StoreKind::Redis).await
    }
}

/// Two gateways on one Redis share each endpoint's consumer group: every
/// event is delivered, none twice.
#[tokio::test]
async fn two_replicas_share_webhook_deliveries() {
    let redis = RedisServer::start().await;
    let a = Admin::on_redis(&redis, quick_webhooks).await;
    let mut config = a.blobs.config();
    quick_webhooks(&mut config);
    config.events.spill_path = Some(config.data_dir.join("events").join("second.jsonl"));
    let second = common::Gateway::start_on_redis(&config, &redis).await;
    let receiver = Receiver::start().await;
    let secret = add_webhook(&a, "all", &format!("{}/hook", receiver.url), &[]).await;
    // 60 events recorded through both replicas.
    for i in 0..30u64 {
        for state in [&a.gw.state, &second.state] {
            let subject = Subject { customer: Some(format!("c{i}")), ..Subject::default() };
            state
                .record(
                    subject,
                    Detail::EntitlementChanged { entitlement: "e".into(), change: tollgate::events::Change::Created },
                )
                .await;
        }
    }
    a.gw.state.events.flush().await;
    second.state.events.flush().await;
    let got = receiver.wait_for("/hook", 60).await;
    // Let any straggler (a duplicate) arrive before counting.
    tokio::time::sleep(Duration::from_millis(700)).await;
    assert_eq!(got.len(), 60);
    let got_all = receiver.taken("/hook");
    assert_eq!(got_all.len(), 60, "a delivery came twice");
    let ids: HashSet<String> =
        got_all.iter().map(|d| verified(d, &secret)["id"].as_str().unwrap().to_owned()).collect();
    assert_eq!(ids.len(), 60);
}

/// `tollgate admin events --follow` and `tollgate admin report`, the binary.
#[tokio::test]
async fn the_cli_tails_the_log_and_prints_reports() {
    let a = Admin::start_tweaked(StoreKind::Sqlite, Backend::Local, no_rate_limits).await;
    release(&a, "1.0.0", "stable", &[("app.tar.gz", "linux")], "2026-01-01T00:00:00Z").await;
    release(&a, "1.1.0", "stable", &[("app.tar.gz", "linux")], "2026-02-01T00:00:00Z").await;
    let key = customer(&a, "acme", json!({})).await;
    let u = url(&a, &key, "app.tar.gz").await;
    assert_eq!(request(a.gw.public, "GET", &u, &[]).await.status, 200);

    let cli = |args: &[&str]| {
        let mut c = std::process::Command::new(common::BIN);
        c.arg("admin")
            .args(args)
            .env("TOLLGATE_ADMIN_URL", format!("http://{}", a.gw.admin))
            .env("TOLLGATE_ADMIN_TOKEN", &a.token)
            .env_remove("TOLLGATE_CONFIG")
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped());
        c
    };
    // Following: two releases are in the log, the third is published while
    // the command waits for it.
    let follow = cli(&["events", "--follow", "--interval", "100ms", "--count", "3", "--type", "release.published"])
        .spawn()
        .unwrap();
    let pid = follow.id().to_string();
    tokio::time::sleep(Duration::from_millis(300)).await;
    release(&a, "1.2.0", "stable", &[("app.tar.gz", "linux")], "2026-03-01T00:00:00Z").await;
    let waiting = tokio::task::spawn_blocking(move || follow.wait_with_output());
    let Ok(waited) = tokio::time::timeout(Duration::from_secs(60), waiting).await else {
        let _ = std::process::Command::new("kill").args(["-9", &pid]).status();
        panic!("--follow --count 3 did not stop");
    };
    let waited = waited.unwrap().unwrap();
    assert!(waited.status.success(), "{}", String::from_utf8_lossy(&waited.stderr));
    let lines: Vec<Value> =
        String::from_utf8(waited.stdout).unwrap().lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    let versions: Vec<&str> = lines.iter().map(|e| e["version"].as_str().unwrap()).collect();
    assert_eq!(versions, ["1.0.0", "1.1.0", "1.2.0"]);
    assert!(lines.iter().all(|e| e["type"] == "release.published"));

    a.gw.state.events.flush().await;
    // The gateway runs on this test's thread: the binary is waited for on
    // the blocking pool.
    let run = |mut c: std::process::Command| async move {
        tokio::task::spawn_blocking(move || c.output().unwrap()).await.unwrap()
    };
    let table = run(cli(&["report", "--group-by", "customer"])).await;
    assert!(table.status.success(), "{}", String::from_utf8_lossy(&table.stderr));
    let text = String::from_utf8(table.stdout).unwrap();
    let acme: Vec<&str> =
        text.lines().find(|l| l.starts_with("acme")).expect("an acme row").split_whitespace().collect();
    assert_eq!(acme[..3], ["acme", "1", "1"], "{text}");
    let csv = run(cli(&["report", "--group-by", "release", "--csv"])).await;
    let csv = String::from_utf8(csv.stdout).unwrap();
    assert!(csv.starts_with("release,initiations,completions"), "{csv}");
    assert!(csv.contains("\r\napp/1.0.0,1,1,0,10000,1,0\r\n"), "{csv}");
    let bad = run(cli(&["events", "--after", "nope"])).await;
    assert_eq!(bad.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&bad.stderr).contains("invalid_cursor"));
}

/// Issue 14, item 4: a client hammering a refused URL writes one event per
/// window, not one per request; the summary's `count` makes the log, the
/// report and the metrics still count every refusal.
#[tokio::test]
async fn repeated_denials_are_one_event_per_window() {
    let a = Admin::start_tweaked(StoreKind::Sqlite, Backend::Local, |c| {
        no_rate_limits(c);
        c.events.denial_window = Duration::from_secs(1);
    })
    .await;
    release(&a, "1.0.0", "stable", &[("app.tar.gz", "linux")], "2026-01-01T00:00:00Z").await;
    let key = customer(&a, "acme", json!({})).await;
    let u = url(&a, &key, "app.tar.gz").await;
    a.call("PUT", "/admin/v1/customers/acme", Some(json!({ "name": "acme", "status": "suspended" }))).await;
    for _ in 0..50 {
        let r = request(a.gw.public, "GET", &u, &[]).await;
        assert_eq!((r.status, r.code().as_str()), (403, "customer_suspended"));
    }
    let denied = || async {
        a.gw.state.events.flush().await;
        events_api(&a, "&type=download.denied", 100).await
    };
    let first = denied().await;
    assert_eq!(first.len(), 1, "the first refusal is recorded at once, the repeats wait: {first:#?}");
    assert!(first[0]["data"].get("count").is_none(), "a single refusal carries no count: {first:#?}");
    // The window closes after a second; the summary follows.
    let mut events = Vec::new();
    for _ in 0..100 {
        events = denied().await;
        if events.len() == 2 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(events.len(), 2, "{events:#?}");
    assert_eq!(events[1]["data"]["count"], 49, "{events:#?}");
    assert_eq!(events[1]["data"]["reason"], "customer_suspended");
    // Every refusal counted: the report and the metrics.
    let r = a.call("GET", "/admin/v1/reports/downloads?group_by=customer", None).await;
    assert_eq!(r.status, 200, "{r:?}");
    let rows = Admin::json(&r)["rows"].clone();
    let acme = rows.as_array().unwrap().iter().find(|row| row["group"] == "acme").cloned().unwrap();
    assert_eq!(acme["denials"]["customer_suspended"], 50, "{acme:#}");
    let m = metrics(&a).await;
    assert_eq!(metric(&m, "tollgate_downloads_denied_total{reason=\"customer_suspended\"}"), 50);
}
