//! The record store: records (products, releases, artifacts, customers,
//! entitlements, API keys, grants, uploads, webhooks) behind one small trait.
//! The engines (SQLite, the embedded default; Redis, shared by replicas)
//! implement it in `db`, beside the quota store and the event log.
//!
//! The trait is a sorted key-value map per [`Kind`]: `put`, `get`, `delete` and
//! an ordered `list` with a prefix and a cursor. Keys are hierarchical
//! (`app/1.4.2/app.tar.gz` for an artifact), so "the releases of a product" or
//! "the entitlements of a customer" are prefix listings, and cursor paging is
//! "keys after the last one seen". Values are JSON documents; typed access is in
//! [`get_json`] / [`put_json`].

use std::fmt;

use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::errors::{Classified, ErrorKind};

/// The record kinds. The name is part of the storage layout of both backends:
/// never rename one.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Kind {
    Product,
    Release,
    Artifact,
    Customer,
    Entitlement,
    ApiKey,
    Grant,
    /// A direct upload awaiting `complete`.
    Upload,
    /// A webhook endpoint.
    Webhook,
    /// An event a webhook endpoint never accepted: `<endpoint>/<event id>`.
    DeadLetter,
    /// An order to cut running downloads ([`crate::cuts`]): `release/<product>/<version>`
    /// or `customer/<id>`.
    Cut,
    /// A customer's feed token (its digest), by customer id.
    FeedToken,
    /// A portal user, by lower-case e-mail address.
    PortalUser,
    /// A portal sign-in link, by its token's SHA-256.
    SignInLink,
    /// A portal session, by its cookie's SHA-256.
    PortalSession,
    /// A portal sign-in started with an OpenID provider, by its `state`'s
    /// SHA-256.
    SsoFlow,
    /// A vendor console session, by its cookie's SHA-256.
    ConsoleSession,
    /// A portal setting made through the admin API (`branding`).
    PortalSetting,
    /// A request to send a dead letter again: `<endpoint>/<event id>`,
    /// taken (deleted) by the first replica's webhook deliverer to see it.
    Redelivery,
}

impl Kind {
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Product => "product",
            Kind::Release => "release",
            Kind::Artifact => "artifact",
            Kind::Customer => "customer",
            Kind::Entitlement => "entitlement",
            Kind::ApiKey => "api_key",
            Kind::Grant => "grant",
            Kind::Upload => "upload",
            Kind::Webhook => "webhook",
            Kind::DeadLetter => "dead_letter",
            Kind::Cut => "cut",
            Kind::FeedToken => "feed_token",
            Kind::PortalUser => "portal_user",
            Kind::SignInLink => "sign_in_link",
            Kind::PortalSession => "portal_session",
            Kind::SsoFlow => "sso_flow",
            Kind::ConsoleSession => "console_session",
            Kind::PortalSetting => "portal_setting",
            Kind::Redelivery => "redelivery",
        }
    }
}

impl fmt::Display for Kind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What a `put` did; lets an idempotent `PUT` answer 201, 200 or 200-unchanged.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Written {
    Created,
    Updated,
    Unchanged,
}

/// A record with its revision: `1` when first written (`0` for a record
/// written before revisions existed), higher after every change.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Versioned {
    pub value: Vec<u8>,
    pub revision: u64,
}

/// What a conditional write expects to find.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Expect {
    /// No record at the key.
    Absent,
    /// The record, at exactly this revision.
    Revision(u64),
}

/// What a conditional write did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CasOutcome {
    /// The expectation held: the value is stored (or was already the same)
    /// at `revision`.
    Written { written: Written, revision: u64 },
    /// The record is not what was expected: nothing was written.
    Conflict,
}

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The store cannot be reached or did not answer: worth retrying.
    #[error("store unavailable: {0}")]
    Unavailable(String),
    /// A stored document does not decode: a bug or a manual edit.
    #[error("stored {kind} {key:?} is corrupt: {detail}")]
    Corrupt { kind: Kind, key: String, detail: String },
    #[error("store error: {0}")]
    Internal(String),
}

/// Longest key accepted by every backend.
pub const MAX_KEY_LEN: usize = 1024;
/// Most records one `list` call returns.
pub const MAX_PAGE: usize = 1000;

#[async_trait::async_trait]
pub trait RecordStore: Send + Sync + fmt::Debug {
    /// `sqlite` or `redis`, for logs and metrics.
    fn backend(&self) -> &'static str;

    /// Insert or replace the record `key` of `kind`.
    async fn put(&self, kind: Kind, key: &str, value: &[u8]) -> Result<Written, StoreError>;

    async fn get(&self, kind: Kind, key: &str) -> Result<Option<Vec<u8>>, StoreError>;

    /// A record with its revision, for a read-modify-write ([`RecordStore::put_if`]).
    async fn get_versioned(&self, kind: Kind, key: &str) -> Result<Option<Versioned>, StoreError>;

    /// Write `value` only if the record is as `expect`ed, atomically (a
    /// compare-and-set on its revision). Writing the value it already holds
    /// changes nothing, not even the revision. Unconditional writes
    /// ([`RecordStore::put`]) move the revision too.
    async fn put_if(&self, kind: Kind, key: &str, value: &[u8], expect: Expect) -> Result<CasOutcome, StoreError>;

    /// Several records, of any kinds, in one round trip; answers in the order
    /// asked. The data plane's per-download re-check is one of these.
    async fn get_many(&self, items: &[(Kind, &str)]) -> Result<Vec<Option<Vec<u8>>>, StoreError>;

    /// Remove a record; `false` if there was none.
    async fn delete(&self, kind: Kind, key: &str) -> Result<bool, StoreError>;

    /// Records of `kind` whose key starts with `prefix`, in ascending byte order
    /// of key, strictly after `after` when given, at most `limit` (capped at
    /// [`MAX_PAGE`]). Records written or deleted concurrently may or may not
    /// appear, but paging by the last key seen never repeats or skips a record
    /// that exists throughout.
    async fn list(
        &self,
        kind: Kind,
        prefix: &str,
        after: Option<&str>,
        limit: usize,
    ) -> Result<Vec<(String, Vec<u8>)>, StoreError>;

    /// Is the store reachable? For readiness probes.
    async fn ping(&self) -> Result<(), StoreError>;
}

/// Store a serialisable value as JSON.
pub async fn put_json<T: Serialize + Sync>(
    store: &dyn RecordStore,
    kind: Kind,
    key: &str,
    value: &T,
) -> Result<Written, StoreError> {
    let bytes = serde_json::to_vec(value).map_err(|e| StoreError::Internal(e.to_string()))?;
    store.put(kind, key, &bytes).await
}

/// Read a JSON record into `T`.
pub async fn get_json<T: DeserializeOwned>(
    store: &dyn RecordStore,
    kind: Kind,
    key: &str,
) -> Result<Option<T>, StoreError> {
    store.get(kind, key).await?.map(|bytes| decode_json(kind, key, &bytes)).transpose()
}

/// A stored JSON document as `T`; one that does not decode is `Corrupt`.
pub fn decode_json<T: DeserializeOwned>(kind: Kind, key: &str, bytes: &[u8]) -> Result<T, StoreError> {
    serde_json::from_slice(bytes).map_err(|e| StoreError::Corrupt { kind, key: key.to_owned(), detail: e.to_string() })
}

pub(crate) fn check_key(key: &str) -> Result<(), StoreError> {
    if key.is_empty() || key.len() > MAX_KEY_LEN {
        return Err(StoreError::Internal(format!("record keys are 1 to {MAX_KEY_LEN} bytes")));
    }
    Ok(())
}

impl Classified for StoreError {
    fn kind(&self) -> ErrorKind {
        match self {
            StoreError::Unavailable(_) => ErrorKind::Unavailable,
            StoreError::Corrupt { .. } | StoreError::Internal(_) => ErrorKind::Internal,
        }
    }

    fn code(&self) -> &'static str {
        match self {
            StoreError::Unavailable(_) => "store_unavailable",
            StoreError::Corrupt { .. } | StoreError::Internal(_) => "internal",
        }
    }
}
