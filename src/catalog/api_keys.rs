//! Customer API keys: shown once at creation, stored only as a SHA-256 digest,
//! revocable, with a last-used time.
//!
//! Format: `tg_<customer>_<key id: 16 hex>_<secret: 64 hex>`. The customer and
//! key id locate the record (`{customer}/{key id}` in the store) without a
//! global index; the secret is 256 random bits, so a plain SHA-256 digest is as
//! good as a slow password hash here.

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use super::model::Timestamp;
use super::repo::{CatalogError, CatalogRepo, check_id};
use super::store::{Kind, StoreError, get_json, put_json};

pub const KEY_PREFIX: &str = "tg_";
const ID_HEX: usize = 16;
const SECRET_HEX: usize = 64;
/// `last_used_at` is written at most this often per key (seconds), so that
/// authenticating is not a store write per request.
pub const LAST_USED_GRANULARITY: u64 = 60;

/// The stored record; never holds the key itself.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ApiKey {
    pub id: String,
    pub customer: String,
    pub name: String,
    /// Lower-case hex SHA-256 of the whole key text.
    pub sha256: String,
    pub created_at: Timestamp,
    pub last_used_at: Option<Timestamp>,
    pub revoked_at: Option<Timestamp>,
}

/// What the admin API shows of a key: everything but the digest.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct ApiKeyView {
    pub id: String,
    pub customer: String,
    pub name: String,
    pub created_at: Timestamp,
    pub last_used_at: Option<Timestamp>,
    pub revoked_at: Option<Timestamp>,
}

impl From<&ApiKey> for ApiKeyView {
    fn from(k: &ApiKey) -> Self {
        Self {
            id: k.id.clone(),
            customer: k.customer.clone(),
            name: k.name.clone(),
            created_at: k.created_at,
            last_used_at: k.last_used_at,
            revoked_at: k.revoked_at,
        }
    }
}

/// A customer's feed token: read-only, for feed readers that cannot send
/// headers (it travels in the feed's URL), separate from API keys and
/// revocable on its own. Only its digest is stored.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize, utoipa::ToSchema)]
pub struct FeedToken {
    pub customer: String,
    /// Lower-case hex SHA-256 of the token text.
    #[serde(skip_serializing)]
    #[schema(ignore)]
    pub sha256: String,
    pub created_at: Timestamp,
}

/// What a feed token starts with.
pub const FEED_TOKEN_PREFIX: &str = "tgf_";

/// The stored form of a feed token (with the digest, which the API never
/// shows).
#[derive(serde::Serialize, serde::Deserialize)]
struct StoredFeedToken {
    customer: String,
    sha256: String,
    created_at: Timestamp,
}

/// Lower-case hex SHA-256 of a secret's text: how keys, feed tokens and the
/// portal's links and sessions are stored.
pub(crate) fn digest_hex(text: &str) -> String {
    hex::encode(Sha256::digest(text.as_bytes()))
}

fn random_hex(bytes: usize) -> Result<String, CatalogError> {
    let mut buf = vec![0u8; bytes];
    // An OS RNG failure is an internal error (500), not something the caller did.
    getrandom::fill(&mut buf).map_err(|e| CatalogError::Store(StoreError::Internal(format!("no randomness: {e}"))))?;
    Ok(hex::encode(buf))
}

/// Split a presented key into (customer, key id), if it has the shape of one.
pub fn parse_key(text: &str) -> Option<(&str, &str)> {
    let rest = text.strip_prefix(KEY_PREFIX)?;
    let tail = ID_HEX + 1 + SECRET_HEX;
    if rest.len() < tail + 2 || !rest.is_char_boundary(rest.len() - tail - 1) {
        return None;
    }
    let (head, tail_text) = rest.split_at(rest.len() - tail - 1);
    let tail_text = tail_text.strip_prefix('_')?;
    let (id, secret) = tail_text.split_at(ID_HEX);
    let secret = secret.strip_prefix('_')?;
    let hex_ok = |s: &str| s.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b));
    (hex_ok(id) && hex_ok(secret) && secret.len() == SECRET_HEX && !head.is_empty()).then_some((head, id))
}

impl CatalogRepo {
    /// A new feed token for an existing customer, replacing (revoking) any
    /// before it. Returns the record and the token text, shown once.
    pub async fn create_feed_token(&self, customer: &str, now: Timestamp) -> Result<(FeedToken, String), CatalogError> {
        check_id("customer", customer)?;
        if self.customer(customer).await?.is_none() {
            return Err(CatalogError::Missing { kind: "customer", id: customer.to_owned() });
        }
        let text = format!("{FEED_TOKEN_PREFIX}{}", random_hex(32)?);
        let stored = StoredFeedToken { customer: customer.to_owned(), sha256: digest_hex(&text), created_at: now };
        put_json(self.records().as_ref(), Kind::FeedToken, customer, &stored).await?;
        Ok((FeedToken { customer: customer.to_owned(), sha256: stored.sha256, created_at: now }, text))
    }

    /// A customer's feed token (its digest), if it has one.
    pub async fn feed_token(&self, customer: &str) -> Result<Option<FeedToken>, CatalogError> {
        check_id("customer", customer)?;
        let stored: Option<StoredFeedToken> = get_json(self.records().as_ref(), Kind::FeedToken, customer).await?;
        Ok(stored.map(|s| FeedToken { customer: s.customer, sha256: s.sha256, created_at: s.created_at }))
    }

    /// Revoke a customer's feed token; whether there was one.
    pub async fn revoke_feed_token(&self, customer: &str) -> Result<bool, CatalogError> {
        check_id("customer", customer)?;
        Ok(self.records().delete(Kind::FeedToken, customer).await?)
    }

    /// Whether `text` is `customer`'s live feed token.
    pub async fn check_feed_token(&self, customer: &str, text: &str) -> Result<bool, CatalogError> {
        if check_id("customer", customer).is_err() || !text.starts_with(FEED_TOKEN_PREFIX) {
            return Ok(false);
        }
        let stored: Option<StoredFeedToken> = get_json(self.records().as_ref(), Kind::FeedToken, customer).await?;
        // SECURITY: compared in constant time, digest against digest.
        Ok(stored.is_some_and(|s| bool::from(s.sha256.as_bytes().ct_eq(digest_hex(text).as_bytes()))))
    }

    /// Create a key for an existing customer. Returns the record and the key
    /// text, which is never stored and cannot be shown again.
    pub async fn create_api_key(
        &self,
        customer: &str,
        name: &str,
        now: Timestamp,
    ) -> Result<(ApiKey, String), CatalogError> {
        check_id("customer", customer)?;
        if self.customer(customer).await?.is_none() {
            return Err(CatalogError::Missing { kind: "customer", id: customer.to_owned() });
        }
        if name.len() > 200 || name.chars().any(char::is_control) {
            return Err(CatalogError::Invalid {
                field: "name",
                reason: "at most 200 characters, no control characters".into(),
            });
        }
        let id = random_hex(ID_HEX / 2)?;
        let text = format!("{KEY_PREFIX}{customer}_{id}_{}", random_hex(SECRET_HEX / 2)?);
        let key = ApiKey {
            id: id.clone(),
            customer: customer.to_owned(),
            name: name.to_owned(),
            sha256: digest_hex(&text),
            created_at: now,
            last_used_at: None,
            revoked_at: None,
        };
        put_json(self.records().as_ref(), Kind::ApiKey, &format!("{customer}/{id}"), &key).await?;
        Ok((key, text))
    }

    pub async fn api_keys(&self, customer: &str) -> Result<Vec<ApiKey>, CatalogError> {
        self.all(Kind::ApiKey, &format!("{customer}/")).await
    }

    /// Revoke a key (the record stays, for audit). Revoking twice is a no-op.
    /// A compare-and-set: a revocation is never undone by a write racing it
    /// (the authentication's `last_used_at`, say).
    pub async fn revoke_api_key(&self, customer: &str, id: &str, now: Timestamp) -> Result<ApiKey, CatalogError> {
        let store_key = format!("{customer}/{id}");
        let missing = || CatalogError::Missing { kind: "api key", id: id.to_owned() };
        let updated = self
            .update::<ApiKey, _>(Kind::ApiKey, &store_key, |current| {
                let key = current.ok_or_else(missing)?;
                Ok(key.revoked_at.is_none().then(|| ApiKey { revoked_at: Some(now), ..key.clone() }))
            })
            .await?;
        updated.map(|u| u.record).ok_or_else(missing)
    }

    /// The live key `text` is, if any: well-formed, known, digest equal
    /// (constant-time), not revoked. Records the use, coarsely.
    pub async fn authenticate(&self, text: &str, now: Timestamp) -> Result<Option<ApiKey>, CatalogError> {
        let Some((customer, id)) = parse_key(text) else {
            return Ok(None);
        };
        let presented = digest_hex(text);
        // SECURITY: constant-time digest comparison; a revoked key is refused
        // exactly like an unknown one.
        let live =
            |key: &ApiKey| bool::from(presented.as_bytes().ct_eq(key.sha256.as_bytes())) && key.revoked_at.is_none();
        // The use is bookkeeping: written only onto the record as it is now
        // (a compare-and-set), so it can never bring back a key revoked since
        // it was read; after a conflict the key is judged again.
        let updated = self
            .update::<ApiKey, _>(Kind::ApiKey, &format!("{customer}/{id}"), |current| {
                Ok(current
                    .filter(|k| live(k))
                    .filter(|k| k.last_used_at.is_none_or(|t| now.0 >= t.0 + LAST_USED_GRANULARITY))
                    .map(|k| ApiKey { last_used_at: Some(now), ..k.clone() }))
            })
            .await?;
        Ok(updated.map(|u| u.record).filter(live))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_keys_of_customers_with_any_id() {
        let id = "0123456789abcdef";
        let secret = "ab".repeat(32);
        for customer in ["acme", "acme_corp", "a_b_c", "x"] {
            let text = format!("tg_{customer}_{id}_{secret}");
            assert_eq!(parse_key(&text), Some((customer, id)), "{text}");
        }
        for bad in [
            String::new(),
            "tg_".into(),
            format!("tg__{id}_{secret}"),
            format!("tg_acme_{id}_{}", "AB".repeat(32)),
            format!("tg_acme_{id}{secret}"),
            format!("xx_acme_{id}_{secret}"),
            format!("tg_acme_{id}_{}", &secret[1..]),
            format!("tg_é{id}_{secret}"),
        ] {
            assert_eq!(parse_key(&bad), None, "{bad}");
        }
    }

    proptest::proptest! {
        /// Any presented key either parses into a customer and a 16-hex id,
        /// or is not a key; never a panic.
        #[test]
        fn any_presented_key_parses_or_is_refused(text in ".{0,120}", shaped in "tg_[ -~]{0,30}_[0-9a-f]{16}_[0-9a-fA-F]{60,68}") {
            for t in [&text, &shaped] {
                if let Some((customer, id)) = parse_key(t) {
                    proptest::prop_assert!(!customer.is_empty() && id.len() == 16);
                }
            }
        }
    }
}
