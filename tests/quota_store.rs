//! The quota side of the state store (`QuotaStore`), run against SQLite, a
//! real `redis-server` and a real Redis Cluster: initiations count once,
//! refuse past a limit without changing anything, stay exact under
//! concurrency, and leases free their slots when released or expired.
#![allow(clippy::unwrap_used, clippy::expect_used, reason = "tests")]

#[macro_use]
mod common;

use std::sync::Arc;

use common::{StoreKind as Backend, second_handle, store_fixture as fixture, test_grant};
use tollgate::catalog::{Artifact, Grant};
use tollgate::quota::QuotaStore;
use tollgate::quota::{self, Acquired, Applied, Initiation, LeaseStep, LimitKind, Outcome, QuotaScope, Settings};

// Multi-threaded, so that racing initiations really run at once.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn initiations_are_exact_under_concurrency_on_sqlite() {
    initiations_are_exact_under_concurrency(Backend::Sqlite).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn initiations_are_exact_under_concurrency_on_redis() {
    initiations_are_exact_under_concurrency(Backend::Redis).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn initiations_are_exact_under_concurrency_on_redis_cluster() {
    initiations_are_exact_under_concurrency(Backend::RedisCluster).await;
}

backend_suite!(
    sqlite = super::Backend::Sqlite, redis = super::Backend::Redis, redis_cluster = super::Backend::RedisCluster;
    a_grant_is_counted_once,
    a_refusal_changes_nothing,
    leases_limit_concurrency_and_free_their_slots,
    usage_reads_what_was_counted,
    a_resume_takes_its_lease_within_the_limit,
    deliveries_charge_only_what_passes_the_file_size,
    a_grant_held_by_two_gateways_takes_one_slot,
);

/// 2026-11-24T10:00:00Z
const NOW: u64 = 1_795_514_400;

fn settings() -> Settings {
    Settings {
        defaults: Default::default(),
        resume_window: 3600,
        lease_ttl: 60,
        fail_open: false,
        deliveries_per_grant: 3,
    }
}

fn grant(n: usize, entitlement: &str) -> Grant {
    test_grant(n, entitlement, NOW)
}

fn artifact(size: u64) -> Artifact {
    Artifact {
        product: "app".into(),
        version: semver::Version::new(1, 0, 0),
        filename: "app.tar.gz".into(),
        platform: "any".into(),
        size,
        sha256: String::new(),
        sha512: None,
        content_type: None,
        storage_key: "app/1.0.0/app.tar.gz".into(),
        etag: None,
        status: Default::default(),
        signature: None,
    }
}

fn limit(kind: LimitKind, limit: u64) -> Applied {
    Applied { kind, limit, scope: QuotaScope::Customer }
}

fn plan(n: usize, limits: &[Applied], now: u64) -> Initiation {
    quota::plan(&grant(n, "main"), &artifact(100), limits, &settings(), now)
}

async fn initiate(s: &dyn QuotaStore, p: &Initiation) -> Outcome {
    s.initiate(p).await.unwrap()
}

async fn a_grant_is_counted_once(b: Backend) {
    let f = fixture(b).await;
    let s = f.db.quotas.as_ref();
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
    let s = f.db.quotas.as_ref();
    // Bytes: 100 per file, 250 a month; the third file would pass it.
    let limits = [limit(LimitKind::BytesPerMonth, 250), limit(LimitKind::DownloadsPerDay, 10)];
    assert_eq!(initiate(s, &plan(1, &limits, NOW)).await, Outcome::Started);
    assert_eq!(initiate(s, &plan(2, &limits, NOW)).await, Outcome::Started);
    assert!(matches!(initiate(s, &plan(3, &limits, NOW)).await, Outcome::Refused { used: 200, .. }));
    let (usage, _) = quota::usage(s, "acme", &limits, None, NOW).await.unwrap();
    assert_eq!(usage.iter().map(|u| u.used).collect::<Vec<_>>(), vec![200, 2], "the refused grant added nothing");
    // Nor was it marked started: once the limit allows it, it starts.
    let raised = [limit(LimitKind::BytesPerMonth, 300)];
    assert_eq!(initiate(s, &plan(3, &raised, NOW)).await, Outcome::Started);
}

async fn initiations_are_exact_under_concurrency(b: Backend) {
    let f = fixture(b).await;
    // Two handles, as two gateway processes would have (on SQLite: two
    // connections to one file).
    let handles: [Arc<dyn QuotaStore>; 2] = [f.db.quotas.clone(), second_handle(&f).await.quotas];
    let limits = [limit(LimitKind::DownloadsPerDay, 40)];
    // 200 grants, each asked for twice at once (a download manager's
    // segments), through alternating handles, on every worker thread.
    let tasks: Vec<_> = (0..400)
        .map(|i| {
            let (store, p) = (handles[i % 2].clone(), plan(i / 2, &limits, NOW));
            tokio::spawn(async move { store.initiate(&p).await.unwrap() })
        })
        .collect();
    let mut started = std::collections::HashSet::new();
    let (mut again, mut refused) = (0, 0);
    for (i, t) in tasks.into_iter().enumerate() {
        match t.await.unwrap() {
            Outcome::Started => assert!(started.insert(i / 2), "grant {} started twice", i / 2),
            Outcome::AlreadyStarted { .. } => again += 1,
            Outcome::Refused { .. } => refused += 1,
        }
    }
    // A grant refused once was refused twice (the limit was reached before
    // either ask); a started one was found started by its twin.
    assert_eq!((started.len(), again, refused), (40, 40, 320));
}

async fn leases_limit_concurrency_and_free_their_slots(b: Backend) {
    let f = fixture(b).await;
    let s = f.db.quotas.as_ref();
    let limits = [limit(LimitKind::ConcurrentDownloads, 1)];
    let first = plan(1, &limits, NOW);
    assert_eq!(initiate(s, &first).await, Outcome::Started);
    let p = plan(2, &limits, NOW + 1);
    let Outcome::Refused { index, used, oldest_lease_expires } = initiate(s, &p).await else { panic!("slot taken") };
    let e = p.exceeded(index, used, oldest_lease_expires).unwrap();
    assert_eq!((e.limit.kind, e.used, e.retry_after), (LimitKind::ConcurrentDownloads, 1, Some(59)));
    // Released: the slot is free at once.
    let sets: Vec<String> = first.leases.iter().map(|l| l.set.clone()).collect();
    s.release_leases("acme", &first.grant, &sets).await.unwrap();
    assert_eq!(initiate(s, &plan(2, &limits, NOW + 2)).await, Outcome::Started);
    // Renewed, a lease outlives its first expiry; not renewed, it lapses.
    let second = plan(2, &limits, NOW + 2);
    s.renew_leases("acme", &second.grant, &sets, NOW + 2, 498).await.unwrap();
    assert!(matches!(initiate(s, &plan(3, &limits, NOW + 300)).await, Outcome::Refused { .. }));
    assert_eq!(initiate(s, &plan(3, &limits, NOW + 501)).await, Outcome::Started);
}

async fn usage_reads_what_was_counted(b: Backend) {
    let f = fixture(b).await;
    let s = f.db.quotas.as_ref();
    let trial = QuotaScope::Entitlement("trial".into());
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
    let (usage, active) = quota::usage(s, "acme", &limits, Some("app/1.0.0/app.tar.gz"), NOW).await.unwrap();
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
    let (usage, active) = quota::usage(s, "acme", &limits, None, NOW + 61).await.unwrap();
    assert_eq!(usage.len(), 3);
    assert_eq!(active, 0);
}

/// A flushed script cache (a restarted or failed-over Redis) is reloaded.
#[tokio::test]
async fn the_script_is_reloaded_after_noscript() {
    let f = fixture(Backend::Redis).await;
    let s = f.db.quotas.as_ref();
    let limits = [limit(LimitKind::DownloadsPerDay, 5)];
    assert_eq!(initiate(s, &plan(1, &limits, NOW)).await, Outcome::Started);
    let port = f.redis.as_ref().unwrap().port.to_string();
    let out = std::process::Command::new("redis-cli").args(["-p", &port, "SCRIPT", "FLUSH"]).output().unwrap();
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "OK");
    assert_eq!(initiate(s, &plan(2, &limits, NOW)).await, Outcome::Started);
    assert_eq!(initiate(s, &plan(1, &limits, NOW)).await, Outcome::AlreadyStarted { at: NOW });
}

#[test]
fn a_plan_counts_both_scopes_and_limits_the_one_in_force() {
    let s = settings();
    let limits = vec![
        Applied { kind: LimitKind::DownloadsPerDay, limit: 2, scope: QuotaScope::Entitlement("trial".into()) },
        Applied { kind: LimitKind::BytesPerMonth, limit: 100, scope: QuotaScope::Customer },
        Applied { kind: LimitKind::ConcurrentDownloads, limit: 1, scope: QuotaScope::Customer },
    ];
    let plan = quota::plan(&grant(0, "trial"), &artifact(40), &limits, &s, NOW);
    let limited: Vec<(&str, &str, u64, u64)> = plan
        .steps
        .iter()
        .filter_map(|st| st.limit.map(|l| (st.counter.bucket.as_str(), st.counter.field.as_str(), st.add, l)))
        .collect();
    assert_eq!(limited, vec![("d:2026-11-24", "e:trial:n", 1, 2), ("m:2026-11", "b", 40, 100)]);
    // Every counter is kept in both scopes, limited or not.
    assert_eq!(plan.steps.len(), 10);
    assert!(plan.steps.iter().any(|st| st.counter.field == "app/1.0.0/app.tar.gz" && st.counter.ttl.is_none()));
    assert_eq!(
        plan.leases,
        vec![LeaseStep { set: "l".into(), limit: Some(1) }, LeaseStep { set: "l:trial".into(), limit: None }]
    );
    // Marked started until the grant is no longer resumable.
    assert_eq!(plan.started_ttl, 900 + 3600);

    let day = plan
        .steps
        .iter()
        .position(|st| st.counter.field == "e:trial:n" && st.counter.bucket.starts_with("d:"))
        .unwrap();
    let e = plan.exceeded(day, 2, None).unwrap();
    assert_eq!(e.limit.kind, LimitKind::DownloadsPerDay);
    assert_eq!(e.retry_after, Some(1_795_564_800 - NOW));
    let lease = plan.steps.len();
    assert_eq!(plan.exceeded(lease, 1, Some(NOW + 42)).unwrap().retry_after, Some(42));
    // Unlimited steps cannot be what refused.
    assert_eq!(plan.exceeded(0, 0, None), None);
}

/// A resumed grant takes its lease again only where there is room: a set
/// that holds it already renews it, a full one refuses and writes nothing.
async fn take(s: &dyn QuotaStore, p: &Initiation, now: u64) -> Acquired {
    s.acquire_leases("acme", &p.grant, &p.leases, now, now + 60).await.unwrap()
}

async fn a_resume_takes_its_lease_within_the_limit(b: Backend) {
    let f = fixture(b).await;
    let s = f.db.quotas.as_ref();
    let limits = [limit(LimitKind::ConcurrentDownloads, 1)];
    let first = plan(1, &limits, NOW);
    let second = plan(2, &limits, NOW);
    let sets: Vec<String> = first.leases.iter().map(|l| l.set.clone()).collect();
    // Both were started once, and both gave their leases back.
    assert_eq!(initiate(s, &first).await, Outcome::Started);
    s.release_leases("acme", &first.grant, &sets).await.unwrap();
    assert_eq!(initiate(s, &second).await, Outcome::Started);
    s.release_leases("acme", &second.grant, &sets).await.unwrap();
    // Resumed: the first takes the only slot, the second is refused.
    assert_eq!(take(s, &first, NOW + 10).await, Acquired::Held);
    let refused = take(s, &second, NOW + 10).await;
    let Acquired::Refused { index, used, oldest_lease_expires } = refused else { panic!("{refused:?}") };
    assert_eq!((used, oldest_lease_expires), (1, Some(NOW + 70)));
    let e = second.exceeded(second.steps.len() + index, used, oldest_lease_expires).unwrap();
    assert_eq!(e.limit.kind, LimitKind::ConcurrentDownloads);
    // The first again (another segment, a renewal): still its slot.
    assert_eq!(take(s, &first, NOW + 20).await, Acquired::Held);
    let (_, held) = quota::usage(s, "acme", &limits, None, NOW + 20).await.unwrap();
    assert_eq!(held, 1, "the refusal wrote nothing");
    // Past the lease's expiry the slot is free for the second.
    assert_eq!(take(s, &second, NOW + 81).await, Acquired::Held);
    // No limit: always taken.
    let free = plan(3, &[], NOW);
    assert_eq!(s.acquire_leases("acme", &free.grant, &free.leases, NOW + 82, NOW + 142).await.unwrap(), Acquired::Held);
}

/// `record_delivery`: the grant's total grows by what each stream sent; the
/// byte counters get only what passes the file's size (the initiation
/// charged the size), exactly, even when streams end at the same time.
async fn deliveries_charge_only_what_passes_the_file_size(b: Backend) {
    let f = fixture(b).await;
    let s = f.db.quotas.clone();
    let p = plan(1, &[limit(LimitKind::BytesPerDay, 1_000_000)], NOW);
    assert_eq!(initiate(s.as_ref(), &p).await, Outcome::Started);
    let bytes = |s: Arc<dyn QuotaStore>, p: Initiation| async move {
        let (v, _) = s.read("acme", NOW, &p.byte_counters, &[]).await.unwrap();
        v[0]
    };
    assert_eq!(bytes(s.clone(), p.clone()).await, 100, "the initiation charged the size");
    // 60 + 30: within the size, nothing more charged.
    assert_eq!(s.record_delivery("acme", &p.delivered, 60, 100, &p.byte_counters, NOW).await.unwrap(), 60);
    assert_eq!(s.record_delivery("acme", &p.delivered, 30, 100, &p.byte_counters, NOW).await.unwrap(), 90);
    assert_eq!(bytes(s.clone(), p.clone()).await, 100);
    // Ten streams of 50 end at once: 590 delivered, 490 past the size.
    let ends = (0..10).map(|_| {
        let (s, p) = (s.clone(), p.clone());
        tokio::spawn(async move { s.record_delivery("acme", &p.delivered, 50, 100, &p.byte_counters, NOW).await })
    });
    for end in futures_util::future::join_all(ends).await {
        end.unwrap().unwrap();
    }
    let (delivered, _) = s.read("acme", NOW, std::slice::from_ref(&p.delivered), &[]).await.unwrap();
    assert_eq!(delivered, [590]);
    assert_eq!(bytes(s.clone(), p.clone()).await, 100 + 490);
}

/// Lease members of one grant held by two gateways count as one grant; one
/// gateway's release leaves the other's hold.
async fn a_grant_held_by_two_gateways_takes_one_slot(b: Backend) {
    let f = fixture(b).await;
    let s = f.db.quotas.as_ref();
    let limits = [limit(LimitKind::ConcurrentDownloads, 1)];
    let mut first = plan(1, &limits, NOW);
    first.lease_member = quota::lease_member(&first.grant, "gw-a");
    assert_eq!(initiate(s, &first).await, Outcome::Started);
    let sets: Vec<String> = first.leases.iter().map(|l| l.set.clone()).collect();
    let on_b = quota::lease_member(&first.grant, "gw-b");
    let taken = s.acquire_leases("acme", &on_b, &first.leases, NOW + 1, NOW + 61).await.unwrap();
    assert_eq!(taken, Acquired::Held, "the grant holds the slot already");
    let (_, held) = s.read("acme", NOW + 1, &[], &sets).await.unwrap();
    assert_eq!(held[0], 1, "one grant, two holders: one slot");
    s.release_leases("acme", &on_b, &sets).await.unwrap();
    let second = plan(2, &limits, NOW + 2);
    assert!(matches!(initiate(s, &second).await, Outcome::Refused { .. }), "gateway A still holds the grant's slot");
    s.release_leases("acme", &first.lease_member, &sets).await.unwrap();
    assert_eq!(initiate(s, &second).await, Outcome::Started);
}
