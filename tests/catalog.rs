//! The catalog's typed layer over both state stores: references between
//! records, cursor pages, and the release lifecycle.
#![allow(clippy::unwrap_used, clippy::expect_used, reason = "tests")]

#[macro_use]
mod common;

use common::{StoreKind, store_fixture, test_grant};
use semver::Version;
use tollgate::catalog::store::{Kind, Written};
use tollgate::catalog::{
    CatalogError, CatalogRepo, Channel, Customer, CustomerStatus, Delivery, Entitlement, EntitlementStatus, License,
    Product, Release, ReleaseAction, ReleaseStatus, Timestamp,
};

const NOW: Timestamp = Timestamp(1_800_000_000);

backend_suite!(
    sqlite = super::StoreKind::Sqlite, redis = super::StoreKind::Redis, redis_cluster = super::StoreKind::RedisCluster;
    references_must_exist,
    products_page_with_opaque_cursors,
    release_lifecycle,
    entitlements_are_listed_per_customer,
    invalid_input_is_named,
    unusable_grants_are_purged,
);

fn product(id: &str) -> Product {
    Product {
        id: id.into(),
        name: format!("Product {id}"),
        delivery: Delivery::Proxy,
        cdn_profile: None,
        update_platforms: Default::default(),
    }
}

fn release(product: &str, v: &str) -> Release {
    Release {
        product: product.into(),
        version: Version::parse(v).unwrap(),
        channel: Channel::Stable,
        status: ReleaseStatus::Draft,
        published_at: None,
        critical: false,
        notes: None,
        rollout: None,
        minimum_system_version: None,
    }
}

fn customer(id: &str) -> Customer {
    Customer {
        id: id.into(),
        name: id.into(),
        status: CustomerStatus::Active,
        allowed_cidrs: vec![],
        quota: Default::default(),
    }
}

fn entitlement(customer: &str, id: &str) -> Entitlement {
    Entitlement {
        id: id.into(),
        customer: customer.into(),
        product: "app".into(),
        license: License::Term,
        starts_at: NOW,
        expires_at: Some(Timestamp(NOW.0 + 86_400)),
        maintenance_until: None,
        versions: semver::VersionReq::STAR,
        channels: vec![Channel::Stable],
        platforms: None,
        status: EntitlementStatus::Active,
        quota: Default::default(),
    }
}

async fn references_must_exist(kind: StoreKind) {
    let f = store_fixture(kind).await;
    let repo = CatalogRepo::new(f.db.records.clone());
    let err = repo.put_release(&release("app", "1.0.0"), NOW).await.unwrap_err();
    assert!(matches!(err, CatalogError::Missing { kind: "product", .. }), "{err:?}");
    repo.put_product(&product("app")).await.unwrap();
    assert_eq!(repo.put_release(&release("app", "1.0.0"), NOW).await.unwrap().0, Written::Created);
    let err = repo.put_entitlement(&entitlement("acme", "e1")).await.unwrap_err();
    assert!(matches!(err, CatalogError::Missing { kind: "customer", .. }), "{err:?}");
    // A product with releases cannot be deleted.
    assert!(matches!(repo.delete_product("app").await, Err(CatalogError::Conflict(_))));
    assert!(repo.delete_release("app", &Version::parse("1.0.0").unwrap()).await.unwrap());
    assert!(repo.delete_product("app").await.unwrap());
}

async fn products_page_with_opaque_cursors(kind: StoreKind) {
    let f = store_fixture(kind).await;
    let repo = CatalogRepo::new(f.db.records.clone());
    for i in 0..7 {
        repo.put_product(&product(&format!("p{i}"))).await.unwrap();
    }
    // Idempotent PUT: the same body again changes nothing.
    assert_eq!(repo.put_product(&product("p3")).await.unwrap(), Written::Unchanged);
    let mut ids = Vec::new();
    let mut cursor = None;
    loop {
        let page = repo.products(cursor.as_deref(), Some(3)).await.unwrap();
        assert!(page.items.len() <= 3);
        ids.extend(page.items.into_iter().map(|p| p.id));
        match page.next {
            Some(next) => cursor = Some(next),
            None => break,
        }
    }
    assert_eq!(ids, ["p0", "p1", "p2", "p3", "p4", "p5", "p6"]);
    let err = repo.products(Some("%%%"), None).await.unwrap_err();
    assert!(matches!(err, CatalogError::Invalid { field: "cursor", .. }));
    // Any base64url text is a place to start from (here, after "p3" with
    // its trailing bits set); page sizes are 1 to 999.
    let page = repo.products(Some("cDN"), Some(10)).await.unwrap();
    let after: Vec<&str> = page.items.iter().map(|p| p.id.as_str()).collect();
    assert_eq!(after, ["p4", "p5", "p6"]);
    for limit in [0, 1000] {
        let err = repo.products(None, Some(limit)).await.unwrap_err();
        assert!(matches!(err, CatalogError::Invalid { field: "limit", .. }), "{limit}");
    }
}

async fn release_lifecycle(kind: StoreKind) {
    let f = store_fixture(kind).await;
    let repo = CatalogRepo::new(f.db.records.clone());
    repo.put_product(&product("app")).await.unwrap();
    repo.put_release(&release("app", "1.0.0"), NOW).await.unwrap();
    let v = Version::parse("1.0.0").unwrap();
    assert!(matches!(repo.apply("app", &v, ReleaseAction::Yank, NOW).await, Err(CatalogError::Conflict(_))));
    let r = repo.apply("app", &v, ReleaseAction::Publish { backdated_to: None }, NOW).await.unwrap();
    assert_eq!((r.status, r.published_at), (ReleaseStatus::Published, Some(NOW)));
    // Publishing again (a CI retry) changes nothing, not even the stamp.
    let later = Timestamp(NOW.0 + 60);
    let again = repo.apply("app", &v, ReleaseAction::Publish { backdated_to: None }, later).await.unwrap();
    assert_eq!(again.published_at, Some(NOW));
    let y = repo.apply("app", &v, ReleaseAction::Yank, later).await.unwrap();
    assert_eq!(y.status, ReleaseStatus::Yanked);
    assert!(matches!(
        repo.apply("app", &v, ReleaseAction::Publish { backdated_to: None }, later).await,
        Err(CatalogError::Conflict(_))
    ));
    let back = repo.apply("app", &v, ReleaseAction::Restore, later).await.unwrap();
    assert_eq!((back.status, back.published_at), (ReleaseStatus::Published, Some(NOW)));
    assert_eq!(repo.release("app", &v).await.unwrap().unwrap(), back);

    // Backdating, and a release written as published gets stamped.
    repo.put_release(&release("app", "0.9.0"), NOW).await.unwrap();
    let old = Timestamp(1_600_000_000);
    let v09 = Version::parse("0.9.0").unwrap();
    let r = repo.apply("app", &v09, ReleaseAction::Publish { backdated_to: Some(old) }, NOW).await.unwrap();
    assert_eq!(r.published_at, Some(old));
    let mut published = release("app", "2.0.0");
    published.status = ReleaseStatus::Published;
    let (_, returned) = repo.put_release(&published, NOW).await.unwrap();
    let got = repo.release("app", &Version::parse("2.0.0").unwrap()).await.unwrap().unwrap();
    assert_eq!(got.published_at, Some(NOW));
    assert_eq!(returned, got, "put_release answers with the record as stored");
    let missing = repo.apply("app", &Version::parse("9.9.9").unwrap(), ReleaseAction::Yank, NOW).await;
    assert!(matches!(missing, Err(CatalogError::Missing { kind: "release", .. })));
    assert_eq!(repo.releases("app", None, None).await.unwrap().items.len(), 3);
}

async fn entitlements_are_listed_per_customer(kind: StoreKind) {
    let f = store_fixture(kind).await;
    let repo = CatalogRepo::new(f.db.records.clone());
    repo.put_product(&product("app")).await.unwrap();
    for c in ["acme", "acme-2", "globex"] {
        repo.put_customer(&customer(c)).await.unwrap();
    }
    repo.put_entitlement(&entitlement("acme", "e1")).await.unwrap();
    repo.put_entitlement(&entitlement("acme", "e2")).await.unwrap();
    repo.put_entitlement(&entitlement("acme-2", "e1")).await.unwrap();
    repo.put_entitlement(&entitlement("globex", "g1")).await.unwrap();
    let ids: Vec<String> = repo.entitlements_of("acme").await.unwrap().into_iter().map(|e| e.id).collect();
    // "acme-2" shares the prefix "acme" but not "acme/".
    assert_eq!(ids, ["e1", "e2"]);
    assert!(repo.entitlement("globex", "g1").await.unwrap().is_some());
    assert!(repo.delete_entitlement("acme", "e2").await.unwrap());
    assert_eq!(repo.entitlements_of("acme").await.unwrap().len(), 1);
}

async fn invalid_input_is_named(kind: StoreKind) {
    let f = store_fixture(kind).await;
    let repo = CatalogRepo::new(f.db.records.clone());
    let err = repo.put_product(&product("bad id")).await.unwrap_err();
    assert!(matches!(err, CatalogError::Invalid { field: "id", .. }), "{err:?}");
    let err = repo.put_product(&product(".hidden")).await.unwrap_err();
    assert!(matches!(err, CatalogError::Invalid { field: "id", .. }), "{err:?}");
    let mut p = product("app");
    p.name = " ".into();
    assert!(matches!(repo.put_product(&p).await, Err(CatalogError::Invalid { field: "name", .. })));
    repo.put_product(&product("app")).await.unwrap();
    repo.put_customer(&customer("acme")).await.unwrap();
    let mut e = entitlement("acme", "e1");
    e.expires_at = Some(e.starts_at);
    assert!(matches!(repo.put_entitlement(&e).await, Err(CatalogError::Invalid { field: "expires_at", .. })));
    let mut e = entitlement("acme", "e1");
    e.channels.clear();
    assert!(matches!(repo.put_entitlement(&e).await, Err(CatalogError::Invalid { field: "channels", .. })));
}

async fn unusable_grants_are_purged(kind: StoreKind) {
    let f = store_fixture(kind).await;
    let repo = CatalogRepo::new(f.db.records.clone());
    // 1 500 grants (more than a page): two in three expired beyond the
    // resume window of 100 s; the rest still usable.
    for n in 0..1500 {
        let expires = if n % 3 == 0 { NOW.0 - 50 } else { NOW.0 - 101 };
        repo.put_grant(&test_grant(n, "main", expires - 900)).await.unwrap();
    }
    f.db.records.put(Kind::Grant, "acme/corrupt", b"not json").await.unwrap();
    // The resume window (and skew) after expiry: 100 s.
    assert_eq!(repo.purge_grants(NOW.0, 100).await.unwrap(), 1000);
    let left = f.db.records.list(Kind::Grant, "acme/", None, 1000).await.unwrap();
    assert_eq!(left.len(), 501, "the usable 500 and the corrupt record");
    assert_eq!(repo.purge_grants(NOW.0, 100).await.unwrap(), 0);
}
