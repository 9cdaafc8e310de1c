//! The quota side of the state store (`QuotaStore`), run against SQLite, a
//! real `redis-server` and a real Redis Cluster: initiations count once,
//! refuse past a limit without changing anything, stay exact under
//! concurrency, and leases free their slots when released or expired.
#![allow(clippy::unwrap_used, clippy::expect_used, reason = "tests")]

#[macro_use]
mod common;

use std::sync::Arc;

use common::{StoreKind as Backend, store_fixture as fixture};
use tollgate::catalog::{Artifact, Grant, Timestamp};
use tollgate::quota::{self, Applied, Initiation, LimitKind, Outcome, Scope, Settings};
use tollgate::store::Store;

backend_suite!(
    sqlite = super::Backend::Sqlite, redis = super::Backend::Redis, redis_cluster = super::Backend::RedisCluster;
    a_grant_is_counted_once,
    a_refusal_changes_nothing,
    initiations_are_exact_under_concurrency,
    leases_limit_concurrency_and_free_their_slots,
    usage_reads_what_was_counted,
);

/// 2026-11-24T10:00:00Z
const NOW: u64 = 1_795_514_400;

fn settings() -> Settings {
    Settings { defaults: Default::default(), resume_window: 3600, lease_ttl: 60, fail_open: false }
}

fn grant(n: usize, entitlement: &str) -> Grant {
    Grant {
        id: format!("{n:024x}.{entitlement}"),
        customer: "acme".into(),
        entitlement: entitlement.into(),
        product: "app".into(),
        version: semver::Version::new(1, 0, 0),
        filename: "app.tar.gz".into(),
        issued_at: Timestamp(NOW),
        expires_at: Timestamp(NOW + 900),
        started_at: None,
        requested_from: None,
    }
}

fn artifact(size: u64) -> Artifact {
    Artifact {
        product: "app".into(),
        version: semver::Version::new(1, 0, 0),
        filename: "app.tar.gz".into(),
        platform: "any".into(),
        size,
        sha256: String::new(),
        content_type: None,
        storage_key: "app/1.0.0/app.tar.gz".into(),
        etag: None,
    }
}

fn limit(kind: LimitKind, limit: u64) -> Applied {
    Applied { kind, limit, scope: Scope::Customer }
}

fn plan(n: usize, limits: &[Applied], now: u64) -> Initiation {
    quota::plan(&grant(n, "main"), &artifact(100), limits, &settings(), now)
}

async fn initiate(s: &dyn Store, p: &Initiation) -> Outcome {
    s.quotas().initiate(p).await.unwrap()
}

async fn a_grant_is_counted_once(b: Backend) {
    let f = fixture(b).await;
    let s = f.store.as_ref();
    let limits = [limit(LimitKind::DownloadsPerDay, 2)];
    assert_eq!(initiate(s, &plan(1, &limits, NOW)).await, Outcome::Started);
    // Resumes and parallel segments of the same grant: already started.
    for later in [NOW + 1, NOW + 60] {
        assert_eq!(initiate(s, &plan(1, &limits, later)).await, Outcome::AlreadyStarted { at: NOW });
    }
    assert_eq!(initiate(s, &plan(2, &limits, NOW)).await, Outcome::Started);
    let p = plan(3, &limits, NOW);
    let Outcome::Refused { index, used, .. } = initiate(s, &p).await else { panic!("a third grant must be refused") };
    let e = p.exceeded(index, used, None).unwrap();
    assert_eq!((e.limit.kind, e.used, e.limit.limit), (LimitKind::DownloadsPerDay, 2, 2));
    // The next UTC day has a fresh counter.
    assert_eq!(initiate(s, &plan(3, &limits, NOW + 86_400)).await, Outcome::Started);
}

async fn a_refusal_changes_nothing(b: Backend) {
    let f = fixture(b).await;
    let s = f.store.as_ref();
    // Bytes: 100 per file, 250 a month; the third file would pass it.
    let limits = [limit(LimitKind::BytesPerMonth, 250), limit(LimitKind::DownloadsPerDay, 10)];
    assert_eq!(initiate(s, &plan(1, &limits, NOW)).await, Outcome::Started);
    assert_eq!(initiate(s, &plan(2, &limits, NOW)).await, Outcome::Started);
    assert!(matches!(initiate(s, &plan(3, &limits, NOW)).await, Outcome::Refused { used: 200, .. }));
    let (usage, _) = quota::usage(s.quotas(), "acme", &limits, None, NOW).await.unwrap();
    assert_eq!(usage.iter().map(|u| u.used).collect::<Vec<_>>(), vec![200, 2], "the refused grant added nothing");
    // Nor was it marked started: once the limit allows it, it starts.
    let raised = [limit(LimitKind::BytesPerMonth, 300)];
    assert_eq!(initiate(s, &plan(3, &raised, NOW)).await, Outcome::Started);
}

async fn initiations_are_exact_under_concurrency(b: Backend) {
    let f = fixture(b).await;
    let store: Arc<dyn Store> = f.store.clone();
    let limits = [limit(LimitKind::DownloadsPerDay, 40)];
    // 200 grants, each asked for twice at once (a download manager's segments).
    let tasks: Vec<_> = (0..400)
        .map(|i| {
            let (store, p) = (store.clone(), plan(i % 200, &limits, NOW));
            tokio::spawn(async move { store.quotas().initiate(&p).await.unwrap() })
        })
        .collect();
    let mut started = std::collections::HashSet::new();
    let mut refused = 0;
    for (i, t) in tasks.into_iter().enumerate() {
        match t.await.unwrap() {
            Outcome::Started => assert!(started.insert(i % 200), "grant {} started twice", i % 200),
            Outcome::AlreadyStarted { .. } => {}
            Outcome::Refused { .. } => refused += 1,
        }
    }
    assert_eq!(started.len(), 40);
    assert!(refused >= 160, "{refused}");
}

async fn leases_limit_concurrency_and_free_their_slots(b: Backend) {
    let f = fixture(b).await;
    let s = f.store.as_ref();
    let limits = [limit(LimitKind::ConcurrentDownloads, 1)];
    let first = plan(1, &limits, NOW);
    assert_eq!(initiate(s, &first).await, Outcome::Started);
    let p = plan(2, &limits, NOW + 1);
    let Outcome::Refused { index, used, oldest_lease_expires } = initiate(s, &p).await else { panic!("slot taken") };
    let e = p.exceeded(index, used, oldest_lease_expires).unwrap();
    assert_eq!((e.limit.kind, e.used, e.retry_after), (LimitKind::ConcurrentDownloads, 1, Some(59)));
    // Released: the slot is free at once.
    let sets: Vec<String> = first.leases.iter().map(|l| l.set.clone()).collect();
    s.quotas().release_leases("acme", &first.grant, &sets).await.unwrap();
    assert_eq!(initiate(s, &plan(2, &limits, NOW + 2)).await, Outcome::Started);
    // Renewed, a lease outlives its first expiry; not renewed, it lapses.
    let second = plan(2, &limits, NOW + 2);
    s.quotas().renew_leases("acme", &second.grant, &sets, NOW + 500).await.unwrap();
    assert!(matches!(initiate(s, &plan(3, &limits, NOW + 300)).await, Outcome::Refused { .. }));
    assert_eq!(initiate(s, &plan(3, &limits, NOW + 501)).await, Outcome::Started);
}

async fn usage_reads_what_was_counted(b: Backend) {
    let f = fixture(b).await;
    let s = f.store.as_ref();
    let trial = Scope::Entitlement("trial".into());
    let limits = [
        Applied { kind: LimitKind::DownloadsPerDay, limit: 5, scope: trial.clone() },
        limit(LimitKind::DownloadsPerMonth, 50),
        limit(LimitKind::DownloadsPerArtifact, 3),
        limit(LimitKind::ConcurrentDownloads, 9),
    ];
    for n in 0..2 {
        let p = quota::plan(&grant(n, "trial"), &artifact(100), &limits, &settings(), NOW);
        assert_eq!(initiate(s, &p).await, Outcome::Started);
    }
    assert_eq!(initiate(s, &plan(7, &limits, NOW)).await, Outcome::Started);
    let (usage, active) = quota::usage(s.quotas(), "acme", &limits, Some("app/1.0.0/app.tar.gz"), NOW).await.unwrap();
    let used: Vec<(LimitKind, u64)> = usage.iter().map(|u| (u.limit.kind, u.used)).collect();
    assert_eq!(
        used,
        vec![
            (LimitKind::DownloadsPerDay, 2), // the trial's own
            (LimitKind::DownloadsPerMonth, 3),
            (LimitKind::DownloadsPerArtifact, 3),
            (LimitKind::ConcurrentDownloads, 3),
        ]
    );
    assert_eq!(active, 3);
    // Without an artifact, per-artifact limits are left out; leases past
    // their expiry are not active.
    let (usage, active) = quota::usage(s.quotas(), "acme", &limits, None, NOW + 61).await.unwrap();
    assert_eq!(usage.len(), 3);
    assert_eq!(active, 0);
}

/// A flushed script cache (a restarted or failed-over Redis) is reloaded.
#[tokio::test]
async fn the_script_is_reloaded_after_noscript() {
    let f = fixture(Backend::Redis).await;
    let s = f.store.as_ref();
    let limits = [limit(LimitKind::DownloadsPerDay, 5)];
    assert_eq!(initiate(s, &plan(1, &limits, NOW)).await, Outcome::Started);
    let port = f.redis.as_ref().unwrap().port.to_string();
    let out = std::process::Command::new("redis-cli").args(["-p", &port, "SCRIPT", "FLUSH"]).output().unwrap();
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "OK");
    assert_eq!(initiate(s, &plan(2, &limits, NOW)).await, Outcome::Started);
    assert_eq!(initiate(s, &plan(1, &limits, NOW)).await, Outcome::AlreadyStarted { at: NOW });
}
