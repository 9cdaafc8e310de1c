//! Signing keys: one active key that signs, any number of verify-only keys kept
//! so that URLs signed before a rotation stay valid until they expire.

use std::collections::HashMap;
use std::fmt;

use base64::Engine as _;
use base64::engine::general_purpose::{URL_SAFE, URL_SAFE_NO_PAD};
use hmac::{Hmac, KeyInit};
use sha2::Sha256;

use super::canonical::is_valid_id;

pub(crate) type HmacSha256 = Hmac<Sha256>;

/// Shortest key accepted: 256 bits, the HMAC-SHA256 block-size sweet spot.
pub const MIN_KEY_BYTES: usize = 32;
/// Length of keys made by [`generate_key`].
pub const GENERATED_KEY_BYTES: usize = 32;

#[derive(Debug, thiserror::Error)]
pub enum KeyRingError {
    #[error("key id {0:?} must be 1-128 characters of A-Z a-z 0-9 . _ -")]
    BadId(String),
    #[error("key {0:?} appears twice in the key ring")]
    Duplicate(String),
    #[error("key {id:?} is {len} bytes; keys must be at least {MIN_KEY_BYTES} bytes")]
    TooShort { id: String, len: usize },
    #[error("key {0:?} is not base64url text")]
    NotBase64(String),
    #[error("the active signing key {0:?} is not in the key ring, or is verify-only")]
    NoActiveKey(String),
}

/// One key of the ring, before it is prepared for use.
pub struct KeyMaterial {
    pub id: String,
    pub secret: Vec<u8>,
    pub verify_only: bool,
}

impl fmt::Debug for KeyMaterial {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("KeyMaterial")
            .field("id", &self.id)
            .field("secret", &"<redacted>")
            .field("verify_only", &self.verify_only)
            .finish()
    }
}

/// The prepared key ring. HMAC states are keyed once at load and cloned per use,
/// which saves re-hashing the key on every request.
#[derive(Clone)]
pub struct KeyRing {
    active: String,
    keys: HashMap<String, HmacSha256>,
}

impl fmt::Debug for KeyRing {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut ids: Vec<&String> = self.keys.keys().collect();
        ids.sort();
        f.debug_struct("KeyRing").field("active", &self.active).field("keys", &ids).finish()
    }
}

impl KeyRing {
    /// Build a ring from key material. `active` names the key that signs; it must
    /// be present and not verify-only.
    pub fn new(active: &str, material: Vec<KeyMaterial>) -> Result<Self, KeyRingError> {
        let mut keys = HashMap::with_capacity(material.len());
        let mut active_ok = false;
        for key in material {
            if !is_valid_id(&key.id) {
                return Err(KeyRingError::BadId(key.id));
            }
            if key.secret.len() < MIN_KEY_BYTES {
                return Err(KeyRingError::TooShort { id: key.id, len: key.secret.len() });
            }
            if key.id == active && !key.verify_only {
                active_ok = true;
            }
            let mac = HmacSha256::new_from_slice(&key.secret)
                .map_err(|_| KeyRingError::TooShort { id: key.id.clone(), len: key.secret.len() })?;
            if keys.insert(key.id.clone(), mac).is_some() {
                return Err(KeyRingError::Duplicate(key.id));
            }
        }
        if !active_ok {
            return Err(KeyRingError::NoActiveKey(active.to_owned()));
        }
        Ok(Self { active: active.to_owned(), keys })
    }

    /// The id of the key that signs new URLs.
    pub fn active_id(&self) -> &str {
        &self.active
    }

    /// Ids of every key that verifies, sorted.
    pub fn key_ids(&self) -> Vec<&str> {
        let mut ids: Vec<&str> = self.keys.keys().map(String::as_str).collect();
        ids.sort_unstable();
        ids
    }

    pub(crate) fn mac(&self, id: &str) -> Option<HmacSha256> {
        self.keys.get(id).cloned()
    }
}

/// Parse key text: base64url, padding optional, surrounding whitespace ignored.
pub fn decode_key(id: &str, text: &str) -> Result<Vec<u8>, KeyRingError> {
    let text = text.trim();
    URL_SAFE_NO_PAD.decode(text).or_else(|_| URL_SAFE.decode(text)).map_err(|_| KeyRingError::NotBase64(id.to_owned()))
}

/// A new random key, as base64url text without padding.
pub fn generate_key() -> Result<String, getrandom::Error> {
    let mut bytes = [0u8; GENERATED_KEY_BYTES];
    getrandom::fill(&mut bytes)?;
    Ok(URL_SAFE_NO_PAD.encode(bytes))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(id: &str, verify_only: bool) -> KeyMaterial {
        KeyMaterial { id: id.into(), secret: vec![7; 32], verify_only }
    }

    #[test]
    fn active_key_must_exist_and_sign() {
        assert!(KeyRing::new("k1", vec![key("k1", false)]).is_ok());
        assert!(matches!(KeyRing::new("k2", vec![key("k1", false)]), Err(KeyRingError::NoActiveKey(_))));
        assert!(matches!(KeyRing::new("k1", vec![key("k1", true)]), Err(KeyRingError::NoActiveKey(_))));
    }

    #[test]
    fn rejects_short_duplicate_and_badly_named_keys() {
        let short = KeyMaterial { id: "k1".into(), secret: vec![1; 31], verify_only: false };
        assert!(matches!(KeyRing::new("k1", vec![short]), Err(KeyRingError::TooShort { .. })));
        assert!(matches!(KeyRing::new("k1", vec![key("k1", false), key("k1", true)]), Err(KeyRingError::Duplicate(_))));
        assert!(matches!(KeyRing::new("k 1", vec![key("k 1", false)]), Err(KeyRingError::BadId(_))));
    }

    #[test]
    fn debug_never_shows_secrets() {
        let ring = KeyRing::new("k1", vec![key("k1", false)]).unwrap();
        assert_eq!(format!("{ring:?}"), "KeyRing { active: \"k1\", keys: [\"k1\"] }");
        assert!(!format!("{:?}", key("k1", false)).contains('7'));
    }

    #[test]
    fn generated_keys_decode_to_32_bytes_and_differ() {
        let a = generate_key().unwrap();
        let b = generate_key().unwrap();
        assert_ne!(a, b);
        assert_eq!(decode_key("k", &a).unwrap().len(), 32);
        assert_eq!(decode_key("k", &format!(" {a}=\n")).unwrap().len(), 32);
        assert!(decode_key("k", "not base64!").is_err());
    }
}
