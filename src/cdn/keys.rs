//! A CDN profile's keys, parsed once at start: HMAC secrets in each CDN's
//! own encoding, CloudFront's RSA and EC private keys from PEM.

use std::fmt;
use std::sync::Arc;

use aws_lc_rs::signature::{ECDSA_P256_SHA256_ASN1_SIGNING, EcdsaKeyPair, KeyPair as _};
use base64::Engine as _;
use base64::engine::general_purpose::{STANDARD, URL_SAFE};
use rsa::pkcs1::DecodeRsaPrivateKey as _;
use rsa::pkcs8::DecodePrivateKey as _;

use super::Kind;

#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    #[error("key {id:?}: {message}")]
    Bad { id: String, message: String },
}

/// What a key is, once parsed. `Debug` names the kind only.
pub enum Material {
    /// An HMAC secret, decoded from the CDN's text form.
    Hmac(Vec<u8>),
    /// A CloudFront RSA key pair.
    Rsa(Box<rsa::PrivateKey>),
    /// A CloudFront EC P-256 key pair, with its public key's SEC1 bytes.
    Ecdsa(Arc<EcdsaKeyPair>),
}

/// One key of a profile.
pub struct Key {
    /// The id the CDN knows it by (`Key-Pair-Id`, `KeyName`), or a name.
    pub id: String,
    pub material: Material,
    pub verify_only: bool,
}

impl fmt::Debug for Material {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Material::Hmac(_) => "Hmac(<redacted>)",
            Material::Rsa(_) => "Rsa(<redacted>)",
            Material::Ecdsa(_) => "Ecdsa(<redacted>)",
        })
    }
}

impl fmt::Debug for Key {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Key")
            .field("id", &self.id)
            .field("material", &self.material)
            .field("verify_only", &self.verify_only)
            .finish()
    }
}

impl Key {
    /// Parse `text` as a key of `kind`.
    pub fn parse(kind: Kind, id: &str, text: &str, verify_only: bool) -> Result<Key, KeyError> {
        let bad = |message: &str| KeyError::Bad { id: id.to_owned(), message: message.to_owned() };
        let text = text.trim();
        let material = match kind {
            Kind::Cloudfront => parse_pem(text).map_err(|m| bad(&m))?,
            // Cloud CDN shows keys as base64url with padding (16 bytes).
            Kind::CloudCdn => {
                let key = URL_SAFE.decode(text).map_err(|_| bad("not base64url text (as Cloud CDN shows keys)"))?;
                if key.len() != 16 {
                    return Err(bad("Cloud CDN keys are 128 bits (16 bytes)"));
                }
                Material::Hmac(key)
            }
            Kind::Akamai => {
                let key = hex::decode(text).map_err(|_| bad("not hexadecimal (as EdgeAuth keys are written)"))?;
                if key.len() < 16 {
                    return Err(bad("at least 16 bytes"));
                }
                Material::Hmac(key)
            }
            Kind::Cloudflare => {
                // Cloudflare's own examples use 13 characters.
                if text.len() < 12 {
                    return Err(bad("at least 12 characters"));
                }
                Material::Hmac(text.as_bytes().to_vec())
            }
            Kind::Fastly => {
                let key = STANDARD.decode(text).map_err(|_| bad("not base64 text (as the VCL's secret is written)"))?;
                if key.len() < 16 {
                    return Err(bad("at least 16 bytes"));
                }
                Material::Hmac(key)
            }
        };
        Ok(Key { id: id.to_owned(), material, verify_only })
    }

    /// The HMAC secret, for the HMAC formats.
    pub fn hmac(&self) -> Option<&[u8]> {
        match &self.material {
            Material::Hmac(k) => Some(k),
            _ => None,
        }
    }
}

/// An RSA key (PKCS#1 `RSA PRIVATE KEY`, as CloudFront's docs make with
/// `openssl genrsa`, or PKCS#8 `PRIVATE KEY`) or an EC P-256 key (PKCS#8, or
/// SEC1 `EC PRIVATE KEY` from `openssl ecparam -genkey`).
fn parse_pem(text: &str) -> Result<Material, String> {
    let (label, der) = pem_block(text)?;
    match label.as_str() {
        "RSA PRIVATE KEY" => {
            let key = rsa::PrivateKey::from_pkcs1_der(&der).map_err(|e| format!("not an RSA key: {e}"))?;
            Ok(Material::Rsa(Box::new(key)))
        }
        "EC PRIVATE KEY" => EcdsaKeyPair::from_private_key_der(&ECDSA_P256_SHA256_ASN1_SIGNING, &der)
            .map(|k| Material::Ecdsa(Arc::new(k)))
            .map_err(|_| "not an EC P-256 key".into()),
        "PRIVATE KEY" => {
            if let Ok(key) = rsa::PrivateKey::from_pkcs8_der(&der) {
                return Ok(Material::Rsa(Box::new(key)));
            }
            EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_ASN1_SIGNING, &der)
                .map(|k| Material::Ecdsa(Arc::new(k)))
                .map_err(|_| "neither an RSA nor an EC P-256 key".into())
        }
        other => Err(format!("a PEM {other:?} block; CloudFront keys are RSA or EC private keys")),
    }
}

/// The label and bytes of the first PEM block.
fn pem_block(text: &str) -> Result<(String, Vec<u8>), String> {
    let begin = text.find("-----BEGIN ").ok_or("not PEM text (no -----BEGIN line)")?;
    let rest = &text[begin + 11..];
    let label_end = rest.find("-----").ok_or("a broken BEGIN line")?;
    let label = rest[..label_end].to_owned();
    let body = &rest[label_end + 5..];
    let end_line = format!("-----END {label}-----");
    let end = body.find(&end_line).ok_or("no matching END line")?;
    let b64: String = body[..end].chars().filter(|c| !c.is_whitespace()).collect();
    let der = STANDARD.decode(b64).map_err(|_| "the PEM body is not base64")?;
    Ok((label, der))
}

/// The public half of an EC key pair, for verification.
pub(super) fn ec_public(k: &EcdsaKeyPair) -> Vec<u8> {
    k.public_key().as_ref().to_vec()
}
