//! Release notices by e-mail: when a release is published, each portal
//! user who asked for notices (the Notifications page) and whose customer
//! may download it gets one; with `portal.notify_critical_to_all`, every
//! user of such a customer gets one for a critical release.
//!
//! Sent in the background by the gateway that took the publish, one e-mail
//! at a time, after the answer; a gateway stopped meanwhile sends the rest
//! to nobody (the notice is a courtesy, the feed and the portal are the
//! record).

use std::collections::HashMap;
use std::sync::Arc;

use semver::Version;

use super::{Portal, PortalUser};
use crate::catalog::{Release, Timestamp};
use crate::entitlement::access::eligible_customers;
use crate::mail::Mail;
use crate::services::Services;

/// The longest part of the notes an e-mail quotes.
const NOTES_IN_MAIL: usize = 2000;

/// Whether `user` is told of `release`.
pub fn wants(user: &PortalUser, release: &Release, critical_to_all: bool) -> bool {
    user.notify_releases || (release.critical && critical_to_all)
}

/// Tell the users who should know that `product` `version` was published.
/// Returns how many e-mails the relay took.
pub async fn release_published(svc: Arc<Services>, product_id: String, version: Version) -> usize {
    let Some(mailer) = &svc.mail else { return 0 };
    let catalog = &svc.catalog;
    let found = async {
        let release = catalog.release(&product_id, &version).await?;
        let product = catalog.product(&product_id).await?;
        let artifacts = catalog.artifacts(&product_id, &version).await?;
        Ok::<_, crate::catalog::CatalogError>((release, product, artifacts))
    };
    let (Some(release), Some(product), artifacts) = (match found.await {
        Ok(found) => found,
        Err(e) => {
            tracing::warn!(error = %e, "release notices not sent: the catalog could not be read");
            return 0;
        }
    }) else {
        return 0;
    };
    let now = Timestamp(svc.clock.now_unix());
    let eligible = match eligible_customers(catalog, &release, &artifacts, now).await {
        Ok(eligible) => eligible,
        Err(e) => {
            tracing::warn!(error = %e, "release notices not sent: who may download it is unknown");
            return 0;
        }
    };
    let names: HashMap<String, String> = eligible.into_iter().map(|e| (e.customer, e.name)).collect();
    let users = match Portal::new(&svc).all_users().await {
        Ok(users) => users,
        Err(e) => {
            tracing::warn!(error = %e, "release notices not sent: the portal's users could not be read");
            return 0;
        }
    };
    let critical_to_all = svc.portal.notify_critical_to_all;
    let mut sent = 0;
    for user in users.iter().filter(|u| names.contains_key(&u.customer) && wants(u, &release, critical_to_all)) {
        let mail = notice(&svc, user, &names[&user.customer], &product.name, &release);
        match mailer.send(mail).await {
            Ok(()) => sent += 1,
            Err(e) => tracing::warn!(error = %e, "a release notice was not accepted by the SMTP relay"),
        }
    }
    tracing::info!(product = %product.id, version = %version, sent, "release notices sent");
    sent
}

fn notice(svc: &Services, user: &PortalUser, company: &str, product: &str, release: &Release) -> Mail {
    let base = svc.downloads.urls.public_url.trim_end_matches('/');
    let vendor = &svc.brand().vendor_name;
    let critical = if release.critical { " (a critical update)" } else { "" };
    let mut notes: String = release.notes.as_deref().unwrap_or("").chars().take(NOTES_IN_MAIL).collect();
    if release.notes.as_deref().is_some_and(|n| n.chars().count() > NOTES_IN_MAIL) {
        notes.push_str("\n…");
    }
    let notes = if notes.trim().is_empty() { String::new() } else { format!("Release notes:\n\n{notes}\n\n") };
    let why = if user.notify_releases {
        format!("You get this e-mail because you asked for release notices: {base}/portal/notifications")
    } else {
        format!("{vendor} sends critical updates to everyone who can download them.")
    };
    Mail {
        to: user.email.clone(),
        subject: format!("{product} {}{critical} is available", release.version),
        body: format!(
            "Hello,\n\n{product} {}{critical} is available to {company}.\n\n{notes}Download it: {base}/portal/downloads\n\n{why}\n",
            release.version
        ),
    }
}
