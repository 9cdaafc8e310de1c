//! One behaviour suite for the state store, run against SQLite and a real
//! `redis-server` started on a free port.
#![allow(clippy::unwrap_used, clippy::expect_used, reason = "tests")]

#[macro_use]
mod common;

use std::time::Duration;

use common::{StoreKind as Backend, store_fixture as fixture};
use tollgate::catalog::store::{CasOutcome, Expect, Kind, RecordStore, StoreError, Written, get_json, put_json};

backend_suite!(
    sqlite = super::Backend::Sqlite, redis = super::Backend::Redis, redis_cluster = super::Backend::RedisCluster;
    put_reports_created_updated_unchanged,
    kinds_do_not_share_keys,
    get_many_answers_in_order_across_kinds,
    delete_removes_from_get_and_list,
    list_is_ordered_prefixed_and_pages,
    paging_survives_concurrent_writes,
    json_helpers_round_trip_and_detect_corruption,
    ping_answers,
    put_if_is_a_compare_and_set_on_the_revision,
    racing_read_modify_writes_lose_nothing,
);

async fn put_reports_created_updated_unchanged(b: Backend) {
    let f = fixture(b).await;
    let s = f.db.records.as_ref();
    assert_eq!(s.get(Kind::Product, "app").await.unwrap(), None);
    assert_eq!(s.put(Kind::Product, "app", b"v1").await.unwrap(), Written::Created);
    assert_eq!(s.put(Kind::Product, "app", b"v1").await.unwrap(), Written::Unchanged);
    assert_eq!(s.put(Kind::Product, "app", b"v2").await.unwrap(), Written::Updated);
    assert_eq!(s.get(Kind::Product, "app").await.unwrap().as_deref(), Some(&b"v2"[..]));
    assert!(s.put(Kind::Product, "", b"x").await.is_err());
}

async fn kinds_do_not_share_keys(b: Backend) {
    let f = fixture(b).await;
    let s = f.db.records.as_ref();
    s.put(Kind::Product, "acme", b"product").await.unwrap();
    s.put(Kind::Customer, "acme", b"customer").await.unwrap();
    assert_eq!(s.get(Kind::Product, "acme").await.unwrap().as_deref(), Some(&b"product"[..]));
    assert_eq!(s.get(Kind::Customer, "acme").await.unwrap().as_deref(), Some(&b"customer"[..]));
    assert_eq!(s.list(Kind::Customer, "", None, 10).await.unwrap().len(), 1);
}

async fn get_many_answers_in_order_across_kinds(b: Backend) {
    let f = fixture(b).await;
    let s = f.db.records.as_ref();
    s.put(Kind::Customer, "acme", b"c").await.unwrap();
    s.put(Kind::Grant, "acme/g1", b"g").await.unwrap();
    s.put(Kind::Release, "app/1.0.0", b"r").await.unwrap();
    let got = s
        .get_many(&[
            (Kind::Grant, "acme/g1"),
            (Kind::Customer, "nobody"),
            (Kind::Release, "app/1.0.0"),
            (Kind::Customer, "acme"),
        ])
        .await
        .unwrap();
    assert_eq!(got, [Some(b"g".to_vec()), None, Some(b"r".to_vec()), Some(b"c".to_vec())]);
    assert!(s.get_many(&[]).await.unwrap().is_empty());
}

async fn delete_removes_from_get_and_list(b: Backend) {
    let f = fixture(b).await;
    let s = f.db.records.as_ref();
    s.put(Kind::Release, "app/1.0.0", b"r").await.unwrap();
    s.put(Kind::Release, "app/2.0.0", b"r").await.unwrap();
    assert!(s.delete(Kind::Release, "app/1.0.0").await.unwrap());
    assert!(!s.delete(Kind::Release, "app/1.0.0").await.unwrap());
    assert_eq!(s.get(Kind::Release, "app/1.0.0").await.unwrap(), None);
    let keys: Vec<String> =
        s.list(Kind::Release, "app/", None, 10).await.unwrap().into_iter().map(|(k, _)| k).collect();
    assert_eq!(keys, ["app/2.0.0"]);
}

async fn list_is_ordered_prefixed_and_pages(b: Backend) {
    let f = fixture(b).await;
    let s = f.db.records.as_ref();
    for k in ["b/1", "app/é", "app/2.0", "apple/1", "app/1.10", "app/1.0", "ap"] {
        s.put(Kind::Release, k, k.as_bytes()).await.unwrap();
    }
    let all = s.list(Kind::Release, "app/", None, 100).await.unwrap();
    let keys: Vec<&str> = all.iter().map(|(k, _)| k.as_str()).collect();
    // Bytewise order; "apple/1" and "ap" are outside the prefix.
    assert_eq!(keys, ["app/1.0", "app/1.10", "app/2.0", "app/é"]);
    assert!(all.iter().all(|(k, v)| k.as_bytes() == v.as_slice()));

    let mut seen = Vec::new();
    let mut after: Option<String> = None;
    loop {
        let page = s.list(Kind::Release, "app/", after.as_deref(), 3).await.unwrap();
        if page.is_empty() {
            break;
        }
        after = page.last().map(|(k, _)| k.clone());
        seen.extend(page.into_iter().map(|(k, _)| k));
    }
    assert_eq!(seen, keys);
    assert_eq!(s.list(Kind::Release, "", None, 100).await.unwrap().len(), 7);
    // A cursor before the prefix starts at the prefix.
    assert_eq!(s.list(Kind::Release, "app/", Some("a"), 1).await.unwrap()[0].0, "app/1.0");
    assert!(s.list(Kind::Release, "app/", None, 0).await.unwrap().is_empty());
}

async fn paging_survives_concurrent_writes(b: Backend) {
    let f = fixture(b).await;
    let s = f.db.records.as_ref();
    for i in 0..10 {
        s.put(Kind::Customer, &format!("c{i:02}"), b"x").await.unwrap();
    }
    let first = s.list(Kind::Customer, "", None, 5).await.unwrap();
    let cursor = first.last().unwrap().0.clone();
    assert_eq!(cursor, "c04");
    // Written behind the cursor: not seen on this pass. Ahead of it: seen.
    s.put(Kind::Customer, "c00a", b"x").await.unwrap();
    s.put(Kind::Customer, "c07a", b"x").await.unwrap();
    s.delete(Kind::Customer, "c08").await.unwrap();
    let rest: Vec<String> =
        s.list(Kind::Customer, "", Some(&cursor), 100).await.unwrap().into_iter().map(|(k, _)| k).collect();
    assert_eq!(rest, ["c05", "c06", "c07", "c07a", "c09"]);
}

async fn json_helpers_round_trip_and_detect_corruption(b: Backend) {
    let f = fixture(b).await;
    let s = f.db.records.as_ref();
    let product = tollgate::catalog::Product {
        id: "app".into(),
        name: "App".into(),
        delivery: tollgate::catalog::Delivery::Edge,
        cdn_profile: Some("cf".into()),
        update_platforms: [("darwin-aarch64".to_owned(), "macos-universal".to_owned())].into(),
    };
    assert_eq!(put_json(s, Kind::Product, "app", &product).await.unwrap(), Written::Created);
    let back: tollgate::catalog::Product = get_json(s, Kind::Product, "app").await.unwrap().unwrap();
    assert_eq!(back, product);
    s.put(Kind::Product, "bad", b"{not json").await.unwrap();
    let err = get_json::<tollgate::catalog::Product>(s, Kind::Product, "bad").await.unwrap_err();
    assert!(matches!(err, StoreError::Corrupt { kind: Kind::Product, .. }), "{err:?}");
}

async fn ping_answers(b: Backend) {
    let f = fixture(b).await;
    f.db.records.ping().await.unwrap();
}

#[tokio::test]
async fn sqlite_keeps_records_across_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("state/t.db");
    let store = tollgate::db::sqlite::SqliteDb::open(&path).unwrap();
    store.put(Kind::Entitlement, "acme/e1", b"{}").await.unwrap();
    drop(store);
    let again = tollgate::db::sqlite::SqliteDb::open(&path).unwrap();
    assert_eq!(again.get(Kind::Entitlement, "acme/e1").await.unwrap().as_deref(), Some(&b"{}"[..]));
}

#[tokio::test]
async fn redis_outage_is_unavailable_and_the_store_reconnects_by_itself() {
    let mut f = fixture(Backend::Redis).await;
    f.db.records.put(Kind::Product, "app", b"v1").await.unwrap();
    let server = f.redis.as_mut().unwrap();
    server.kill();
    let err = f.db.records.get(Kind::Product, "app").await.unwrap_err();
    assert!(matches!(err, StoreError::Unavailable(_)), "{err:?}");
    server.restart().await;
    // Same store object, no restart of ours: it reconnects (the data is gone,
    // since the test server keeps nothing on disk).
    let mut ok = false;
    for _ in 0..100 {
        if f.db.records.ping().await.is_ok() {
            ok = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(ok, "the store never reconnected");
    assert_eq!(f.db.records.put(Kind::Product, "app", b"v2").await.unwrap(), Written::Created);
}

/// On a cluster, the kinds' hash tags land on different nodes, and the store
/// still reads across them (MOVED redirects and cross-slot reads handled).
#[tokio::test]
async fn redis_cluster_spreads_kinds_over_nodes() {
    let f = fixture(Backend::RedisCluster).await;
    let s = f.db.records.as_ref();
    let kinds =
        [Kind::Product, Kind::Release, Kind::Artifact, Kind::Customer, Kind::Entitlement, Kind::ApiKey, Kind::Grant];
    for kind in kinds {
        s.put(kind, "k", kind.as_str().as_bytes()).await.unwrap();
    }
    let cluster = f.cluster.as_ref().unwrap();
    let mut holding = 0;
    for node in &cluster.nodes {
        let client = ::redis::Client::open(node.url()).unwrap();
        let mut conn = client.get_multiplexed_async_connection().await.unwrap();
        let n: i64 = ::redis::cmd("DBSIZE").query_async(&mut conn).await.unwrap();
        holding += usize::from(n > 0);
    }
    assert!(holding >= 2, "the kinds all landed on one node; the test proves nothing");
    let asked: Vec<(Kind, &str)> = kinds.iter().map(|k| (*k, "k")).collect();
    let got = s.get_many(&asked).await.unwrap();
    let expected: Vec<Option<Vec<u8>>> = kinds.iter().map(|k| Some(k.as_str().as_bytes().to_vec())).collect();
    assert_eq!(got, expected);
}

async fn put_if_is_a_compare_and_set_on_the_revision(b: Backend) {
    let f = fixture(b).await;
    let s = f.db.records.as_ref();
    let written = |written, revision| CasOutcome::Written { written, revision };
    assert_eq!(s.get_versioned(Kind::Customer, "acme").await.unwrap(), None);
    // Absent: only a first write passes.
    assert_eq!(s.put_if(Kind::Customer, "acme", b"v1", Expect::Absent).await.unwrap(), written(Written::Created, 1));
    assert_eq!(s.put_if(Kind::Customer, "acme", b"v9", Expect::Absent).await.unwrap(), CasOutcome::Conflict);
    let v = s.get_versioned(Kind::Customer, "acme").await.unwrap().unwrap();
    assert_eq!((v.value.as_slice(), v.revision), (&b"v1"[..], 1));
    // The revision read: passes once, and moves on.
    assert_eq!(
        s.put_if(Kind::Customer, "acme", b"v2", Expect::Revision(1)).await.unwrap(),
        written(Written::Updated, 2)
    );
    assert_eq!(s.put_if(Kind::Customer, "acme", b"v3", Expect::Revision(1)).await.unwrap(), CasOutcome::Conflict);
    assert_eq!(s.get(Kind::Customer, "acme").await.unwrap().as_deref(), Some(&b"v2"[..]));
    // The same value again changes nothing, not even the revision.
    assert_eq!(
        s.put_if(Kind::Customer, "acme", b"v2", Expect::Revision(2)).await.unwrap(),
        written(Written::Unchanged, 2)
    );
    // An unconditional write moves the revision too, so a stale holder fails.
    assert_eq!(s.put(Kind::Customer, "acme", b"v4").await.unwrap(), Written::Updated);
    assert_eq!(s.put_if(Kind::Customer, "acme", b"v5", Expect::Revision(2)).await.unwrap(), CasOutcome::Conflict);
    let v = s.get_versioned(Kind::Customer, "acme").await.unwrap().unwrap();
    assert!(v.revision > 2, "{v:?}");
    // Written records are listed like any other; a deleted one is absent again.
    assert_eq!(s.list(Kind::Customer, "", None, 10).await.unwrap().len(), 1);
    assert!(s.delete(Kind::Customer, "acme").await.unwrap());
    assert_eq!(
        s.put_if(Kind::Customer, "acme", b"v6", Expect::Revision(v.revision)).await.unwrap(),
        CasOutcome::Conflict
    );
    assert!(matches!(
        s.put_if(Kind::Customer, "acme", b"v6", Expect::Absent).await.unwrap(),
        CasOutcome::Written { written: Written::Created, .. }
    ));
    assert!(s.put_if(Kind::Customer, "", b"x", Expect::Absent).await.is_err());
}

/// Eight writers each add 25 to one counter by read-modify-write with
/// compare-and-set, two store handles (processes) among them: every increment
/// lands, none is lost to a stale read.
async fn racing_read_modify_writes_lose_nothing(b: Backend) {
    let f = fixture(b).await;
    let handles = [f.db.records.clone(), common::second_handle(&f).await.records];
    handles[0].put(Kind::Product, "counter", b"0").await.unwrap();
    let mut tasks = Vec::new();
    for w in 0..8 {
        let s = handles[w % 2].clone();
        tasks.push(tokio::spawn(async move {
            let mut conflicts = 0u32;
            for _ in 0..25 {
                loop {
                    let v = s.get_versioned(Kind::Product, "counter").await.unwrap().unwrap();
                    let n: u64 = String::from_utf8(v.value).unwrap().parse().unwrap();
                    let next = (n + 1).to_string();
                    match s
                        .put_if(Kind::Product, "counter", next.as_bytes(), Expect::Revision(v.revision))
                        .await
                        .unwrap()
                    {
                        CasOutcome::Written { .. } => break,
                        CasOutcome::Conflict => conflicts += 1,
                    }
                }
            }
            conflicts
        }));
    }
    let mut conflicts = 0;
    for t in tasks {
        conflicts += t.await.unwrap();
    }
    let total = handles[0].get(Kind::Product, "counter").await.unwrap().unwrap();
    assert_eq!(String::from_utf8(total).unwrap(), "200", "every increment lands ({conflicts} conflicts retried)");
}
