//! Writers racing on one record: every read-modify-write is a compare-and-set
//! on the record's revision, so a decision taken by one writer is never undone
//! by another that read the record before it. Run on SQLite and on Redis,
//! enough rounds to show a lost update if there were one.
#![allow(clippy::unwrap_used, clippy::expect_used, reason = "tests")]

#[macro_use]
mod common;

use bytes::Bytes;
use common::{Admin, Backend, Reply, StoreKind, request_with_body};
use futures_util::future::join_all;
use serde_json::json;

backend_suite!(
    sqlite = super::StoreKind::Sqlite, redis = super::StoreKind::Redis;
    a_revocation_is_never_undone_by_racing_authentications,
    a_rename_never_undoes_a_racing_suspension,
    racing_lifecycle_steps_end_in_one_state,
    if_match_makes_a_sync_safe,
    two_syncs_with_one_etag_one_wins,
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

/// An admin call with extra headers.
async fn call_with(a: &Admin, method: &str, path: &str, headers: &[(&str, &str)], body: serde_json::Value) -> Reply {
    let auth = format!("Bearer {}", a.token);
    let mut all = vec![("authorization", auth.as_str())];
    all.extend_from_slice(headers);
    request_with_body(a.gw.admin, method, path, &all, Bytes::from(body.to_string())).await
}

/// A system of record syncing into the gateway reads the `ETag`, and writes
/// with `If-Match`: a write made against a revision someone else has since
/// changed is refused with `412`, and nothing is written; `If-None-Match: *`
/// only creates. Products, releases, customers and entitlements alike.
async fn if_match_makes_a_sync_safe(kind: StoreKind) {
    let a = admin(kind).await;
    let paths = [
        ("/admin/v1/products/app", json!({ "name": "App" }), json!({ "name": "App 2" })),
        ("/admin/v1/products/app/releases/1.0.0", json!({ "channel": "stable" }), json!({ "channel": "beta" })),
        ("/admin/v1/customers/acme", json!({ "name": "Acme" }), json!({ "name": "Acme 2" })),
        (
            "/admin/v1/customers/acme/entitlements/e1",
            json!({ "product": "app", "license": "perpetual", "starts_at": "2020-01-01T00:00:00Z" }),
            json!({ "product": "app", "license": "term", "starts_at": "2020-01-01T00:00:00Z" }),
        ),
    ];
    for (path, first, second) in paths {
        let created = call_with(&a, "PUT", path, &[("if-none-match", "*")], first.clone()).await;
        assert_eq!(created.status, 201, "{path}: {created:?}");
        let tag = created.header("etag").unwrap().to_owned();
        let again = call_with(&a, "PUT", path, &[("if-none-match", "*")], first.clone()).await;
        assert_eq!((again.status, again.code().as_str()), (412, "precondition_failed"), "{path}");
        let read = a.call("GET", path, None).await;
        assert_eq!(read.header("etag"), Some(tag.as_str()), "{path}");
        let updated = call_with(&a, "PUT", path, &[("if-match", &tag)], second.clone()).await;
        assert_eq!(updated.status, 200, "{path}: {updated:?}");
        let new_tag = updated.header("etag").unwrap().to_owned();
        assert_ne!(new_tag, tag, "{path}");
        // The old tag is stale now: refused, and nothing changes.
        let stale = call_with(&a, "PUT", path, &[("if-match", &tag)], first.clone()).await;
        assert_eq!((stale.status, stale.code().as_str()), (412, "precondition_failed"), "{path}");
        let now = a.call("GET", path, None).await;
        assert_eq!(now.header("etag"), Some(new_tag.as_str()), "{path}");
        let any = call_with(&a, "PUT", path, &[("if-match", "*")], second.clone()).await;
        assert_eq!(any.status, 200, "{path}: {any:?}");
        for bad in ["W/\"1\"", "1", "\"x\""] {
            let r = call_with(&a, "PUT", path, &[("if-match", bad)], second.clone()).await;
            assert_eq!((r.status, r.code().as_str()), (400, "invalid_request"), "{path} {bad}");
        }
    }
    let missing =
        call_with(&a, "PUT", "/admin/v1/customers/nobody", &[("if-match", "*")], json!({ "name": "x" })).await;
    assert_eq!(missing.status, 412);
    assert_eq!(a.call("GET", "/admin/v1/customers/nobody", None).await.status, 404, "nothing half-written");
}

/// Two writers holding the same `ETag` race: one wins, the other gets `412`,
/// every round.
async fn two_syncs_with_one_etag_one_wins(kind: StoreKind) {
    let a = admin(kind).await;
    for round in 0..ROUNDS {
        let path = format!("/admin/v1/customers/s{round}");
        let created = a.call("PUT", &path, Some(json!({ "name": "v0" }))).await;
        let tag = created.header("etag").unwrap().to_owned();
        let headers = [("if-match", tag.as_str())];
        let one = call_with(&a, "PUT", &path, &headers, json!({ "name": "one" }));
        let two = call_with(&a, "PUT", &path, &headers, json!({ "name": "two", "status": "suspended" }));
        let (one, two) = tokio::join!(one, two);
        let mut statuses = [one.status, two.status];
        statuses.sort();
        assert_eq!(statuses, [200, 412], "round {round}: {one:?} {two:?}");
        let c = Admin::json(&a.call("GET", &path, None).await);
        let winner = if one.status == 200 { "one" } else { "two" };
        assert_eq!(c["name"], winner, "round {round}: the loser wrote nothing");
        assert_eq!(c["status"] == "suspended", winner == "two", "round {round}: {c}");
    }
}
