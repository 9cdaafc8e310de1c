//! The customer portal's people and sign-in: a customer's users (by e-mail
//! address), single-use sign-in links sent by e-mail, and sessions. Pages
//! are `http::portal`; what a signed-in user may download is decided by
//! `downloads` exactly as for an API key.
//!
//! Records (state store, both engines):
//! - `portal_user` by lower-case e-mail: the user's customer and role. An
//!   address belongs to one customer.
//! - `sign_in_link` by the SHA-256 of the link's token: whose it is and
//!   until when; deleted when used, so a link signs in once.
//! - `portal_session` by the SHA-256 of the session cookie: whose, since
//!   when, last seen, and the session's CSRF token.
//!
//! Only digests of links and session ids are stored: a copy of the store
//! signs nobody in.

pub mod notify;
pub mod oidc;

use serde::{Deserialize, Serialize};

use crate::catalog::store::{Kind, StoreError, get_json, put_json};
use crate::catalog::{CatalogError, Customer, CustomerStatus, Timestamp};
use crate::config::portal::Branding;
use crate::events::{Change, Detail, Subject};
use crate::services::Services;

/// A change to a portal user, as `portal.user_changed` records it.
#[derive(Debug, Clone, Copy)]
pub struct UserChange<'a> {
    pub customer: &'a str,
    pub email: &'a str,
    pub change: Change,
    /// The role after it; `None` when removed.
    pub role: Option<Role>,
    /// The portal user who made it; `None`: the vendor (admin API).
    pub by: Option<&'a str>,
    pub sessions_ended: bool,
}

/// How often each replica reads the branding the admin API set.
const BRANDING_EVERY: std::time::Duration = std::time::Duration::from_secs(10);

/// The branding the admin API set, if any.
pub async fn stored_branding(svc: &Services) -> Result<Option<Branding>, PortalError> {
    Ok(get_json(svc.catalog.records().as_ref(), Kind::PortalSetting, "branding").await?)
}

/// Set the portal's branding (every replica within [`BRANDING_EVERY`]; this
/// one at once); `None` goes back to the configuration's.
pub async fn set_branding(svc: &Services, branding: Option<Branding>) -> Result<Branding, PortalError> {
    let store = svc.catalog.records();
    let effective = match branding {
        Some(b) => {
            b.validate("").map_err(|reason| {
                let field = if reason.starts_with("accent") {
                    "accent_color"
                } else if reason.starts_with("logo") {
                    "logo_url"
                } else {
                    "vendor_name"
                };
                CatalogError::Invalid { field, reason }
            })?;
            put_json(store.as_ref(), Kind::PortalSetting, "branding", &b).await?;
            b
        }
        None => {
            store.delete(Kind::PortalSetting, "branding").await?;
            svc.portal.branding()
        }
    };
    apply_branding(svc, effective.clone());
    Ok(effective)
}

fn apply_branding(svc: &Services, b: Branding) {
    match svc.branding.write() {
        Ok(mut current) => *current = b,
        Err(poisoned) => *poisoned.into_inner() = b,
    }
}

/// Keep this replica's branding as stored, until dropped.
pub async fn branding_worker(svc: std::sync::Arc<Services>) {
    let mut tick = tokio::time::interval(BRANDING_EVERY);
    loop {
        tick.tick().await;
        match stored_branding(&svc).await {
            Ok(stored) => apply_branding(&svc, stored.unwrap_or_else(|| svc.portal.branding())),
            Err(e) => tracing::warn!(error = %e, "could not read the portal's branding"),
        }
    }
}

/// How often expired links, flows and sessions are swept away.
const SWEEP_EVERY: std::time::Duration = std::time::Duration::from_secs(600);

/// Sweep the portal's expired records every [`SWEEP_EVERY`], until dropped.
pub async fn sweep_worker(svc: std::sync::Arc<Services>) {
    let mut tick = tokio::time::interval(SWEEP_EVERY);
    loop {
        tick.tick().await;
        match Portal::new(&svc).sweep().await {
            Ok(0) => {}
            Ok(n) => tracing::info!(deleted = n, "expired portal links, sign-ins and sessions deleted"),
            Err(e) => tracing::warn!(error = %e, "could not sweep the portal's expired records"),
        }
    }
}

/// Record a change to a portal user (`portal.user_changed`).
pub async fn record_change(svc: &Services, c: UserChange<'_>) {
    let role = c.role.map(|r| r.as_str().to_owned());
    let subject = Subject { customer: Some(c.customer.to_owned()), ..Subject::default() };
    let detail = Detail::PortalUserChanged {
        email: c.email.to_owned(),
        change: c.change,
        role,
        by: c.by.map(str::to_owned),
        sessions_ended: c.sessions_ended,
    };
    svc.record(subject, detail).await;
}

/// What a user may do in its customer's portal.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// Also invites and removes the customer's users.
    Admin,
    Member,
}

impl Role {
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Admin => "admin",
            Role::Member => "member",
        }
    }
}

/// A person who signs in to a customer's portal.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct PortalUser {
    /// Lower case.
    pub email: String,
    pub customer: String,
    pub role: Role,
    pub created_at: Timestamp,
    #[serde(default)]
    pub last_sign_in_at: Option<Timestamp>,
    /// The generation of the user's sessions: random at creation, changed
    /// by "sign out everywhere"; a session of another generation is over.
    /// (Random, so that a user removed and added again does not bring back
    /// the sessions of before.)
    #[serde(default)]
    pub session_epoch: u32,
    /// E-mail me when a release my company may download is published (the
    /// Notifications page).
    #[serde(default)]
    pub notify_releases: bool,
    /// When the user last pressed a Download button ("what's new since my
    /// last download").
    #[serde(default)]
    pub last_download_at: Option<Timestamp>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
struct SignInLink {
    email: String,
    customer: String,
    expires_at: Timestamp,
    /// A vendor's read-only view of the customer's portal, by this console
    /// identity ([`Portal::new_view_link`]); `email` is empty.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    view_as: Option<String>,
    /// With `view_as`: the fingerprint of that admin token's secret.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    view_key: Option<String>,
}

/// How long a vendor's read-only view of a customer's portal lasts.
pub const VIEW_FOR: u64 = 15 * 60;
/// How long the console's link into such a view can be used.
const VIEW_LINK_TTL: u64 = 120;

/// A signed-in browser.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Session {
    pub email: String,
    pub customer: String,
    pub created_at: Timestamp,
    pub seen_at: Timestamp,
    /// Every form of the session carries it.
    pub csrf: String,
    /// The user's [`PortalUser::session_epoch`] when it started.
    #[serde(default)]
    pub epoch: u32,
    /// A vendor's read-only view of the customer's portal, opened from the
    /// console by this identity (`console:<token id>`): no user behind it,
    /// every change refused, over after [`VIEW_FOR`].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub view_as: Option<String>,
    /// With `view_as`: the fingerprint of that admin token's secret; the
    /// view ends when the token is removed, rotated or loses the right to
    /// change customers.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub view_key: Option<String>,
}

/// Why a portal request was refused.
#[derive(Debug, thiserror::Error)]
pub enum PortalError {
    #[error("{0:?} is not an e-mail address")]
    InvalidEmail(String),
    /// The link is unknown, used, expired, or its user is gone.
    #[error("this sign-in link is not valid any more; ask for a new one")]
    InvalidLink,
    #[error("no such user")]
    NoSuchUser,
    #[error("{0} belongs to another customer")]
    EmailTaken(String),
    #[error(transparent)]
    Catalog(#[from] CatalogError),
}

impl From<StoreError> for PortalError {
    fn from(e: StoreError) -> Self {
        PortalError::Catalog(e.into())
    }
}

/// What an e-mail address must look like ([`canonical_email`]'s rule, as
/// the OpenAPI document states it): a local part of RFC 5322 `atext` and
/// dots (1-64), `@`, two or more DNS labels; ASCII, at most 254 characters.
/// Internationalised addresses are not taken.
pub const EMAIL_PATTERN: &str = r"^[A-Za-z0-9.!#$%&'*+/=?^_`{|}~-]{1,64}@[A-Za-z0-9-]+(\.[A-Za-z0-9-]+)+$";
/// The longest address.
pub const MAX_EMAIL: usize = 254;

/// The canonical form of an e-mail address: lower case; `None`
/// when it is not one ([`EMAIL_PATTERN`]).
pub fn canonical_email(text: &str) -> Option<String> {
    let email = text.to_ascii_lowercase();
    let (local, domain) = email.split_once('@')?;
    let atext = |b: u8| b.is_ascii_alphanumeric() || b"!#$%&'*+/=?^_`{|}~-.".contains(&b);
    let label = |l: &str| !l.is_empty() && l.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-');
    let ok = email.len() <= MAX_EMAIL
        && (1..=64).contains(&local.len())
        && local.bytes().all(atext)
        && domain.split('.').count() >= 2
        && domain.split('.').all(label);
    ok.then_some(email)
}

fn digest(secret: &str) -> String {
    crate::catalog::api_keys::digest_hex(secret)
}

/// 256 random bits, base64url: sign-in links, session ids, CSRF tokens.
pub fn new_token() -> Result<String, PortalError> {
    let mut bytes = [0u8; 32];
    getrandom::fill(&mut bytes).map_err(|e| StoreError::Internal(format!("no randomness: {e}")))?;
    Ok(base64::Engine::encode(&base64::engine::general_purpose::URL_SAFE_NO_PAD, bytes))
}

/// The portal's records, over the catalog's store.
#[derive(Debug)]
pub struct Portal<'a> {
    svc: &'a Services,
}

impl<'a> Portal<'a> {
    pub fn new(svc: &'a Services) -> Self {
        Portal { svc }
    }

    fn now(&self) -> Timestamp {
        Timestamp(self.svc.clock.now_unix())
    }

    /// Add `email` to `customer` with `role`, or change its role. An
    /// address already of another customer is refused.
    pub async fn put_user(&self, customer: &str, email: &str, role: Role) -> Result<(PortalUser, bool), PortalError> {
        let email = canonical_email(email).ok_or_else(|| PortalError::InvalidEmail(email.to_owned()))?;
        if self.svc.catalog.customer(customer).await?.is_none() {
            return Err(CatalogError::Missing { kind: "customer", id: customer.to_owned() }.into());
        }
        let now = self.now();
        let epoch = getrandom::u32().map_err(|e| StoreError::Internal(format!("no randomness: {e}")))?;
        let mut created = false;
        let mut taken = false;
        let updated = self
            .svc
            .catalog
            .update::<PortalUser, _>(Kind::PortalUser, &email, |current| match current {
                Some(u) if u.customer != customer => {
                    taken = true;
                    Ok(None)
                }
                Some(u) if u.role == role => Ok(None),
                Some(u) => Ok(Some(PortalUser { role, ..u.clone() })),
                None => {
                    created = true;
                    Ok(Some(PortalUser {
                        email: email.clone(),
                        customer: customer.to_owned(),
                        role,
                        created_at: now,
                        last_sign_in_at: None,
                        session_epoch: epoch,
                        notify_releases: false,
                        last_download_at: None,
                    }))
                }
            })
            .await?;
        if taken {
            return Err(PortalError::EmailTaken(email));
        }
        let user = match updated {
            Some(u) => u.record,
            None => self.user(&email).await?.ok_or(PortalError::NoSuchUser)?,
        };
        Ok((user, created))
    }

    pub async fn user(&self, email: &str) -> Result<Option<PortalUser>, PortalError> {
        let Some(email) = canonical_email(email) else { return Ok(None) };
        Ok(get_json(self.svc.catalog.records().as_ref(), Kind::PortalUser, &email).await?)
    }

    /// The users of `customer`, by address. (A walk over every user: the
    /// portal's user count is people, not downloads.)
    pub async fn users_of(&self, customer: &str) -> Result<Vec<PortalUser>, PortalError> {
        let mut users = self.all_users().await?;
        users.retain(|u| u.customer == customer);
        Ok(users)
    }

    /// Every customer's users, by address.
    pub async fn all_users(&self) -> Result<Vec<PortalUser>, PortalError> {
        let store = self.svc.catalog.records();
        let mut out = Vec::new();
        let mut after: Option<String> = None;
        loop {
            let page = store.list(Kind::PortalUser, "", after.as_deref(), crate::catalog::store::MAX_PAGE).await?;
            let Some((last, _)) = page.last() else { break };
            after = Some(last.clone());
            for (key, value) in &page {
                match serde_json::from_slice::<PortalUser>(value) {
                    Ok(u) => out.push(u),
                    Err(e) => tracing::warn!(key = %key, error = %e, "skipping a corrupt portal user"),
                }
            }
        }
        Ok(out)
    }

    /// Remove a user of `customer`. Its sessions end at their next request
    /// (each request looks the user up).
    pub async fn remove_user(&self, customer: &str, email: &str) -> Result<bool, PortalError> {
        match self.user(email).await? {
            Some(u) if u.customer == customer => {
                Ok(self.svc.catalog.records().delete(Kind::PortalUser, &u.email).await?)
            }
            _ => Ok(false),
        }
    }

    /// A sign-in link's token for `email`, if it is a user of an active
    /// customer; `None` otherwise (the caller answers the same either way).
    pub async fn new_link(&self, email: &str) -> Result<Option<(PortalUser, String)>, PortalError> {
        let Some(user) = self.user(email).await? else { return Ok(None) };
        if !self.customer_active(&user.customer).await? {
            return Ok(None);
        }
        let token = new_token()?;
        let expires_at = Timestamp(self.now().0 + self.svc.portal.link_ttl.as_secs());
        let link = SignInLink {
            email: user.email.clone(),
            customer: user.customer.clone(),
            expires_at,
            view_as: None,
            view_key: None,
        };
        put_json(self.svc.catalog.records().as_ref(), Kind::SignInLink, &digest(&token), &link).await?;
        Ok(Some((user, token)))
    }

    /// Use a sign-in link: once, before it expires, by a user still of the
    /// same, active customer. A new session ([`Self::start_session`]).
    pub async fn redeem_link(&self, token: &str) -> Result<(Session, String), PortalError> {
        let key = digest(token);
        let store = self.svc.catalog.records();
        let link: Option<SignInLink> = get_json(store.as_ref(), Kind::SignInLink, &key).await?;
        let link = link.ok_or(PortalError::InvalidLink)?;
        // SECURITY: the delete is the use. Of two racing requests for one
        // link, one deletes it; the other finds nothing to delete.
        if !store.delete(Kind::SignInLink, &key).await? {
            return Err(PortalError::InvalidLink);
        }
        let now = self.now();
        if now.0 >= link.expires_at.0 {
            return Err(PortalError::InvalidLink);
        }
        if let Some(actor) = link.view_as {
            let key = link.view_key.unwrap_or_default();
            if !self.viewer_still_allowed(&actor, &key) || !self.customer_active(&link.customer).await? {
                return Err(PortalError::InvalidLink);
            }
            return self.start_view(&link.customer, &actor, key).await;
        }
        match self.user(&link.email).await? {
            Some(u) if u.customer == link.customer && self.customer_active(&u.customer).await? => {
                self.start_session(&u).await
            }
            _ => Err(PortalError::InvalidLink),
        }
    }

    /// A single-use link (valid [`VIEW_LINK_TTL`] seconds) into a read-only
    /// view of `customer`'s portal for admin token `token_id`, opened from
    /// the console; `None` when the customer does not exist or is
    /// suspended.
    pub async fn new_view_link(&self, customer: &str, token_id: &str) -> Result<Option<String>, PortalError> {
        if !self.customer_active(customer).await? {
            return Ok(None);
        }
        let token = new_token()?;
        let link = SignInLink {
            email: String::new(),
            customer: customer.to_owned(),
            expires_at: Timestamp(self.now().0 + VIEW_LINK_TTL),
            view_as: Some(format!("console:{token_id}")),
            view_key: self.svc.admin_tokens.role_of(token_id).map(|(_, fingerprint)| fingerprint),
        };
        put_json(self.svc.catalog.records().as_ref(), Kind::SignInLink, &digest(&token), &link).await?;
        Ok(Some(token))
    }

    /// The console identity `actor` (`console:<token id>`) is still the
    /// token whose secret had fingerprint `key`, with a role that changes
    /// customers.
    fn viewer_still_allowed(&self, actor: &str, key: &str) -> bool {
        let Some(token_id) = actor.strip_prefix("console:") else { return false };
        match self.svc.admin_tokens.role_of(token_id) {
            Some((role, fingerprint)) => fingerprint == key && role.may(&http::Method::PUT, "/admin/v1/customers/-"),
            None => false,
        }
    }

    /// A read-only session of `customer`'s portal for `actor`.
    async fn start_view(&self, customer: &str, actor: &str, key: String) -> Result<(Session, String), PortalError> {
        let now = self.now();
        let id = new_token()?;
        let session = Session {
            email: format!("{actor} (read-only view)"),
            customer: customer.to_owned(),
            created_at: now,
            seen_at: now,
            csrf: new_token()?,
            epoch: 0,
            view_as: Some(actor.to_owned()),
            view_key: Some(key),
        };
        put_json(self.svc.catalog.records().as_ref(), Kind::PortalSession, &digest(&id), &session).await?;
        Ok((session, id))
    }

    /// A new session for `user`, whose sign-in was proven (a link, an
    /// OpenID provider), with a new id: whatever cookie the browser had is
    /// not reused (no session fixation).
    pub async fn start_session(&self, user: &PortalUser) -> Result<(Session, String), PortalError> {
        let now = self.now();
        let id = new_token()?;
        let session = Session {
            email: user.email.clone(),
            customer: user.customer.clone(),
            created_at: now,
            seen_at: now,
            csrf: new_token()?,
            epoch: user.session_epoch,
            view_as: None,
            view_key: None,
        };
        put_json(self.svc.catalog.records().as_ref(), Kind::PortalSession, &digest(&id), &session).await?;
        let _ = self
            .svc
            .catalog
            .update::<PortalUser, _>(Kind::PortalUser, &user.email, |current| {
                Ok(current.map(|u| PortalUser { last_sign_in_at: Some(now), ..u.clone() }))
            })
            .await;
        Ok((session, id))
    }

    /// The session of cookie `id`, if it is live: within its idle and
    /// absolute limits, its user still of its customer, the customer
    /// active. A dead session is deleted.
    pub async fn session(&self, id: &str) -> Result<Option<(Session, PortalUser, Customer)>, PortalError> {
        let key = digest(id);
        let store = self.svc.catalog.records();
        let Some(session) = get_json::<Session>(store.as_ref(), Kind::PortalSession, &key).await? else {
            return Ok(None);
        };
        let now = self.now();
        let p = &self.svc.portal;
        let idle = now.0.saturating_sub(session.seen_at.0) > p.session_idle.as_secs();
        let absolute = if session.view_as.is_some() { VIEW_FOR } else { p.session_absolute.as_secs() };
        let mut old = now.0.saturating_sub(session.created_at.0) > absolute;
        if let Some(actor) = &session.view_as {
            old |= !self.viewer_still_allowed(actor, session.view_key.as_deref().unwrap_or_default());
        }
        let user = match &session.view_as {
            // A vendor's view: no user; it sees what the customer's admins see.
            Some(_) => Some(PortalUser {
                email: session.email.clone(),
                customer: session.customer.clone(),
                role: Role::Admin,
                created_at: session.created_at,
                last_sign_in_at: None,
                session_epoch: 0,
                notify_releases: false,
                last_download_at: None,
            }),
            None => self
                .user(&session.email)
                .await?
                .filter(|u| u.customer == session.customer && u.session_epoch == session.epoch),
        };
        let customer = self.svc.catalog.customer(&session.customer).await?;
        let live = match (&user, &customer) {
            (Some(_), Some(c)) => !idle && !old && c.status != CustomerStatus::Suspended,
            _ => false,
        };
        let (Some(user), Some(customer), true) = (user, customer, live) else {
            store.delete(Kind::PortalSession, &key).await?;
            return Ok(None);
        };
        // Seen: written at most once a minute, not on every request; a
        // compare-and-set, so a sign-out racing this request stays signed out.
        if now.0.saturating_sub(session.seen_at.0) >= 60 {
            self.svc
                .catalog
                .update::<Session, _>(Kind::PortalSession, &key, |current| {
                    Ok(current.map(|s| Session { seen_at: now, ..s.clone() }))
                })
                .await?;
        }
        Ok(Some((session, user, customer)))
    }

    /// Sign `email` (a user of `customer`) out everywhere: every session it
    /// has ends at its next request. `false`: no such user.
    pub async fn end_all_sessions(&self, customer: &str, email: &str) -> Result<bool, PortalError> {
        let Some(email) = canonical_email(email) else { return Ok(false) };
        if self.user(&email).await?.is_none_or(|u| u.customer != customer) {
            return Ok(false);
        }
        let updated = self
            .svc
            .catalog
            .update::<PortalUser, _>(Kind::PortalUser, &email, |current| {
                Ok(current
                    .filter(|u| u.customer == customer)
                    .map(|u| PortalUser { session_epoch: u.session_epoch.wrapping_add(1), ..u.clone() }))
            })
            .await?;
        Ok(updated.is_some())
    }

    /// Note that `email` just downloaded (best effort: a lost write only
    /// makes "new since my last download" show more).
    pub async fn downloaded(&self, email: &str) {
        let now = self.now();
        let written = self
            .svc
            .catalog
            .update::<PortalUser, _>(Kind::PortalUser, email, |current| {
                Ok(current.map(|u| PortalUser { last_download_at: Some(now), ..u.clone() }))
            })
            .await;
        if let Err(e) = written {
            tracing::warn!(error = %e, "a portal user's last download was not noted");
        }
    }

    /// Turn `email`'s release notices on or off.
    pub async fn set_notify(&self, customer: &str, email: &str, on: bool) -> Result<(), PortalError> {
        self.svc
            .catalog
            .update::<PortalUser, _>(Kind::PortalUser, email, |current| {
                Ok(current
                    .filter(|u| u.customer == customer && u.notify_releases != on)
                    .map(|u| PortalUser { notify_releases: on, ..u.clone() }))
            })
            .await?;
        Ok(())
    }

    /// Sign out: the session is deleted.
    pub async fn end_session(&self, id: &str) -> Result<(), PortalError> {
        self.svc.catalog.records().delete(Kind::PortalSession, &digest(id)).await?;
        Ok(())
    }

    /// Delete the sign-in links, SSO flows and sessions that can no longer
    /// be used (expired by time); how many. Used ones are deleted as they
    /// are used, so this is what nobody came back for.
    pub async fn sweep(&self) -> Result<usize, PortalError> {
        #[derive(Deserialize)]
        struct Expiring {
            #[serde(default)]
            expires_at: Option<Timestamp>,
            #[serde(default)]
            created_at: Option<Timestamp>,
            #[serde(default)]
            seen_at: Option<Timestamp>,
        }
        let now = self.now().0;
        let p = &self.svc.portal;
        let store = self.svc.catalog.records();
        let mut deleted = 0;
        // Console sessions too (their own limits are shorter than the
        // portal's: they are refused earlier, and swept by these).
        for kind in [Kind::SignInLink, Kind::SsoFlow, Kind::PortalSession, Kind::ConsoleSession] {
            let mut after: Option<String> = None;
            loop {
                let page = store.list(kind, "", after.as_deref(), crate::catalog::store::MAX_PAGE).await?;
                let Some((last, _)) = page.last() else { break };
                after = Some(last.clone());
                for (key, value) in &page {
                    let dead = match serde_json::from_slice::<Expiring>(value) {
                        Ok(Expiring { expires_at: Some(t), .. }) => now >= t.0,
                        Ok(Expiring { created_at: Some(created), seen_at: Some(seen), .. }) => {
                            now.saturating_sub(seen.0) > p.session_idle.as_secs()
                                || now.saturating_sub(created.0) > p.session_absolute.as_secs()
                        }
                        // Unreadable: nothing could use it either.
                        _ => true,
                    };
                    if dead && store.delete(kind, key).await? {
                        deleted += 1;
                    }
                }
            }
        }
        Ok(deleted)
    }

    async fn customer_active(&self, id: &str) -> Result<bool, PortalError> {
        Ok(self.svc.catalog.customer(id).await?.is_some_and(|c| c.status != CustomerStatus::Suspended))
    }
}

#[cfg(test)]
mod tests {
    use super::canonical_email;

    #[test]
    fn e_mail_addresses_are_canonical_or_refused() {
        assert_eq!(canonical_email("Ann@Example.COM").as_deref(), Some("ann@example.com"));
        assert_eq!(
            canonical_email("o'brien+tag@mail.example.co.uk").as_deref(),
            Some("o'brien+tag@mail.example.co.uk")
        );
        for bad in [
            " ann@example.com",
            "ann@exa_mple.com",
            "änn@example.com",
            "",
            "ann",
            "@example.com",
            "ann@",
            "ann@example",
            "a b@example.com",
            "ann@@example.com",
            "<a@b.c>",
            "ann@.com",
            "ann@example.com.",
            "a\u{0}@b.c",
        ] {
            assert_eq!(canonical_email(bad), None, "{bad:?}");
        }
        assert_eq!(canonical_email(&format!("{}@example.com", "a".repeat(65))), None);
    }
}
