//! The download lifecycle, one service layer under every door:
//!
//! 1. [`issue`]: a customer asks for a file; the entitlement decision, a look
//!    at the quota, then a grant and its signed URL ([`upgrade`] picks the
//!    newest entitled release first). Refusals are recorded.
//! 2. [`redeem`]: the URL is used; the token is verified, the grant
//!    re-checked, the resume window and the fail-open rule applied, the
//!    object looked up.
//! 3. [`Redemption::deliver`]: the grant's first `GET` is its initiation
//!    (counted once, atomically), every stream holds the grant's lease, and
//!    the bytes are handed to the door in the product's [`Delivery`] mode:
//!    streamed (`proxy`), or a short-lived presigned storage URL
//!    (`redirect`).
//! 4. The completion guard records `download.completed` when the bytes are
//!    done, cut or dropped.
//!
//! The HTTP surfaces (`http::download`, `http::customer_api`) only parse
//! requests and render these outcomes; a new door (a feed, a portal page, a
//! redirect) calls the same functions.

mod completion;
mod edge;
mod error;
mod issue;
mod redeem;
mod usage;

pub use edge::profile_for;
pub use error::DownloadError;
pub use issue::{Granted, IssueRequest, UpgradeRequest, issue, offers, upgrade};
pub use redeem::{DeliverRequest, Delivered, RedeemRequest, Redemption, Redirect, object_key_for_path, redeem};
pub use usage::{CustomerUsage, usage};

/// How the bytes of a redeemed grant reach the customer: the product's
/// mode. A new mode is an arm in [`Redemption::deliver`] and a variant of
/// [`Delivered`]; the checks before it are shared.
pub use crate::catalog::Delivery;

/// Why this gateway cannot serve `delivery` (with `cdn_profile`), if it
/// cannot: `redirect` needs storage that presigns (S3), `edge` a configured
/// CDN profile. The admin API refuses such a setting; a product stored with
/// one is streamed.
pub fn unavailable(svc: &crate::services::Services, delivery: Delivery, cdn_profile: Option<&str>) -> Option<String> {
    let storage = svc.storage.as_ref();
    match (delivery, cdn_profile) {
        (Delivery::Proxy | Delivery::Redirect, Some(_)) => {
            Some("`cdn_profile` is for `edge` delivery only; leave it out.".into())
        }
        (Delivery::Proxy, None) => None,
        (Delivery::Redirect, None) if storage.presigns_downloads() => None,
        (Delivery::Redirect, None) => Some(format!(
            "`redirect` sends customers to presigned storage URLs, which {} storage cannot make; use `proxy`, or S3 storage.",
            storage.backend()
        )),
        (Delivery::Edge, None) => {
            Some("`edge` delivery needs `cdn_profile`, the id of a [[cdn.profiles]] entry.".into())
        }
        (Delivery::Edge, Some(id)) if svc.cdn.get(id).is_none() => {
            let known: Vec<&str> = svc.cdn.iter().map(|p| p.id.as_str()).collect();
            Some(format!("no CDN profile {id:?} is configured (known: {known:?}); see docs/delivery.md."))
        }
        (Delivery::Edge, Some(_)) => None,
    }
}
