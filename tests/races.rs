//! Writers racing on one record: every read-modify-write is a compare-and-set
//! on the record's revision, so a decision taken by one writer is never undone
//! by another that read the record before it. Run on SQLite and on Redis,
//! enough rounds to show a lost update if there were one.
#![allow(clippy::unwrap_used, clippy::expect_used, reason = "tests")]

#[macro_use]
mod common;

use common::{Admin, Backend, StoreKind};
use futures_util::future::join_all;
use serde_json::json;

backend_suite!(
    sqlite = super::StoreKind::Sqlite, redis = super::StoreKind::Redis;
    a_revocation_is_never_undone_by_racing_authentications,
    a_rename_never_undoes_a_racing_suspension,
    racing_lifecycle_steps_end_in_one_state,
);

const ROUNDS: usize = 30;

async fn admin(kind: StoreKind) -> Admin {
    Admin::start_tweaked(kind, Backend::Local, common::no_rate_limits).await
}

/// Twelve requests authenticate with a fresh key (each wanting to record its
/// first use) while the key is revoked: once the revocation has answered, the
/// key is refused, every round.
async fn a_revocation_is_never_undone_by_racing_authentications(kind: StoreKind) {
    let a = admin(kind).await;
    a.call("PUT", "/admin/v1/customers/acme", Some(json!({ "name": "acme" }))).await;
    for round in 0..ROUNDS {
        let r = a.call("POST", "/admin/v1/customers/acme/api-keys", None).await;
        let created = Admin::json(&r);
        let (key, id) = (created["key"].as_str().unwrap().to_owned(), created["id"].as_str().unwrap().to_owned());
        let uses = join_all((0..12).map(|_| a.customer(&key, "GET", "/v1/entitlements", None)));
        let revoke_path = format!("/admin/v1/customers/acme/api-keys/{id}");
        let revoke = a.call("DELETE", &revoke_path, None);
        let (_, revoked) = tokio::join!(uses, revoke);
        assert!(revoked.status < 300, "round {round}: {revoked:?}");
        let after = a.customer(&key, "GET", "/v1/entitlements", None).await;
        assert_eq!(after.status, 401, "round {round}: the revoked key still works");
        let listed = Admin::json(&a.call("GET", "/admin/v1/customers/acme/api-keys", None).await);
        let record = listed["items"].as_array().unwrap().iter().find(|k| k["id"] == id.as_str()).unwrap().clone();
        assert!(record["revoked_at"].is_string(), "round {round}: {record}");
    }
}

/// A rename (which leaves the status out) races a suspension: the customer
/// ends suspended and renamed, every round, whichever lands first.
async fn a_rename_never_undoes_a_racing_suspension(kind: StoreKind) {
    let a = admin(kind).await;
    for round in 0..ROUNDS {
        let id = format!("c{round}");
        let path = format!("/admin/v1/customers/{id}");
        a.call("PUT", &path, Some(json!({ "name": "Old", "status": "active" }))).await;
        let rename = a.call("PUT", &path, Some(json!({ "name": "New" })));
        let suspend = a.call("PUT", &path, Some(json!({ "name": "New", "status": "suspended" })));
        let (r1, r2) = tokio::join!(rename, suspend);
        assert!(r1.status < 300 && r2.status < 300, "round {round}: {r1:?} {r2:?}");
        let c = Admin::json(&a.call("GET", &path, None).await);
        assert_eq!((c["status"].as_str(), c["name"].as_str()), (Some("suspended"), Some("New")), "round {round}");
    }
}

/// A yank and a restore racing each other from `published` end in one of the
/// two states, and the release record is whole either way; a publish racing a
/// yank of a draft never yields a yanked draft.
async fn racing_lifecycle_steps_end_in_one_state(kind: StoreKind) {
    let a = admin(kind).await;
    a.call("PUT", "/admin/v1/products/app", Some(json!({ "name": "App" }))).await;
    for round in 0..ROUNDS {
        let v = format!("1.0.{round}");
        let base = format!("/admin/v1/products/app/releases/{v}");
        a.call("PUT", &base, Some(json!({ "channel": "stable" }))).await;
        let (publish_path, yank_path) = (format!("{base}/publish"), format!("{base}/yank"));
        let publish = a.call("POST", &publish_path, None);
        let yank = a.call("POST", &yank_path, None);
        let (p, y) = tokio::join!(publish, yank);
        assert!(p.status < 300, "round {round}: {p:?}");
        let r = Admin::json(&a.call("GET", &base, None).await);
        // The yank either came first (refused: a draft) or after the publish.
        match y.status {
            409 => assert_eq!(r["status"], "published", "round {round}: {r}"),
            s if s < 300 => assert_eq!(r["status"], "yanked", "round {round}: {r}"),
            s => panic!("round {round}: yank answered {s}"),
        }
        assert!(r["published_at"].is_string(), "round {round}: {r}");
    }
}
