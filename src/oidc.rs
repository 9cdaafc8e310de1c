//! OpenID Connect relying party: a provider's discovery document and keys,
//! the authorization request (code flow with PKCE, S256), the code
//! exchanged for tokens (`client_secret_basic`), and the ID token checked
//! in full: its signature (RS256, PS256 or ES256, against the provider's
//! published keys), issuer, audience, authorized party, expiry, issue time
//! and nonce (OpenID Connect Core 1.0 §3.1, RFC 7636). When the token
//! carries no `email`, the provider's userinfo endpoint is asked with the
//! access token, and its `sub` must be the token's.
//!
//! What the proven identity may do is not decided here: the portal
//! ([`crate::portal::oidc`]) keeps the flows and matches the address to
//! its users.

use std::time::{Duration, Instant};

use base64::Engine as _;
use bytes::Bytes;
use http_body_util::BodyExt as _;
use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, utf8_percent_encode};
use serde::Deserialize;
use serde_json::Value;
use sha2::Digest as _;
use subtle::ConstantTimeEq;

use crate::config::portal::SsoProviderConfig;
use crate::config::secret::{self, Secret};
use crate::http_client::{HttpClient, full};

/// How long the provider's metadata and keys are kept before being read
/// again (a key not among them is looked for at once, at most every
/// [`KEYS_REFRESH_MIN`]).
const METADATA_TTL: Duration = Duration::from_secs(3600);
const KEYS_REFRESH_MIN: Duration = Duration::from_secs(30);
/// The longest answer read from a provider.
const MAX_ANSWER: usize = 256 * 1024;
/// How long a provider may take to answer.
const PROVIDER_TIMEOUT: Duration = Duration::from_secs(10);
/// Clocks may differ by this much.
const SKEW: u64 = 120;

/// Why a provider's answer was not taken.
#[derive(Debug, thiserror::Error)]
pub enum OidcError {
    /// The provider said no (a used or expired code, …).
    #[error("the sign-in provider refused: {0}")]
    Denied(String),
    /// The provider could not be reached or answered nonsense.
    #[error("the sign-in provider could not be used: {0}")]
    Provider(String),
    /// The ID token or the userinfo answer failed a check.
    #[error("the sign-in provider's answer was not valid: {0}")]
    InvalidToken(String),
}

/// What the provider publishes about itself (OpenID Connect Discovery).
#[derive(Debug, Clone, Deserialize)]
struct Metadata {
    issuer: String,
    authorization_endpoint: String,
    token_endpoint: String,
    jwks_uri: String,
    #[serde(default)]
    userinfo_endpoint: Option<String>,
}

/// A JSON Web Key (RFC 7517), the fields used here.
#[derive(Debug, Clone, Deserialize)]
struct Jwk {
    kty: String,
    #[serde(default)]
    kid: Option<String>,
    #[serde(default, rename = "use")]
    usage: Option<String>,
    #[serde(default)]
    alg: Option<String>,
    #[serde(default)]
    n: Option<String>,
    #[serde(default)]
    e: Option<String>,
    #[serde(default)]
    crv: Option<String>,
    #[serde(default)]
    x: Option<String>,
    #[serde(default)]
    y: Option<String>,
}

#[derive(Debug, Deserialize)]
struct JwkSet {
    keys: Vec<Value>,
}

#[derive(Debug, Default)]
struct Cache {
    metadata: Option<(Instant, Metadata)>,
    keys: Option<(Instant, Vec<Jwk>)>,
}

/// One configured provider and what was read of it.
#[derive(Debug)]
pub struct Provider {
    pub id: String,
    pub name: String,
    issuer: String,
    client_id: String,
    client_secret: Secret,
    customers: Vec<String>,
    require_verified_email: bool,
    cache: tokio::sync::Mutex<Cache>,
}

/// The configured providers.
#[derive(Debug, Default)]
pub struct Providers {
    providers: Vec<Provider>,
    http: Option<HttpClient>,
}

impl Providers {
    pub fn from_config(list: &[SsoProviderConfig], allow_world_readable: bool) -> anyhow::Result<Self> {
        let mut providers = Vec::new();
        for (i, p) in list.iter().enumerate() {
            let key = format!("portal.sso[{i}].client_secret");
            let client_secret =
                secret::resolve(&key, p.client_secret.as_ref(), p.client_secret_file.as_deref(), allow_world_readable)?;
            providers.push(Provider {
                id: p.id.clone(),
                name: p.name.clone(),
                issuer: p.issuer.trim_end_matches('/').to_owned(),
                client_id: p.client_id.clone(),
                client_secret,
                customers: p.customers.clone(),
                require_verified_email: p.require_verified_email,
                cache: tokio::sync::Mutex::default(),
            });
        }
        let http = if providers.is_empty() { None } else { Some(HttpClient::new()?) };
        Ok(Self { providers, http })
    }

    /// The providers, for the sign-in page's buttons.
    pub fn list(&self) -> &[Provider] {
        &self.providers
    }

    /// Provider `id`, with the client to reach it.
    pub fn provider(&self, id: &str) -> Option<(&Provider, &HttpClient)> {
        let p = self.providers.iter().find(|p| p.id == id)?;
        Some((p, self.http.as_ref()?))
    }
}

impl Provider {
    pub fn issuer(&self) -> &str {
        &self.issuer
    }

    /// Whether users of `customer` may sign in with it.
    pub fn trusted_for(&self, customer: &str) -> bool {
        self.customers.is_empty() || self.customers.iter().any(|c| c == customer)
    }

    pub fn require_verified_email(&self) -> bool {
        self.require_verified_email
    }

    /// The provider's authorization URL for a sign-in with `state`, `nonce`
    /// and the PKCE `verifier` (sent as its S256 challenge).
    pub async fn authorization_url(
        &self,
        http: &HttpClient,
        redirect_uri: &str,
        state: &str,
        nonce: &str,
        verifier: &str,
    ) -> Result<String, OidcError> {
        let meta = self.metadata(http).await?;
        let challenge = b64url(&sha2::Sha256::digest(verifier.as_bytes()));
        let query = form(&[
            ("response_type", "code"),
            ("client_id", &self.client_id),
            ("redirect_uri", redirect_uri),
            ("scope", "openid email"),
            ("state", state),
            ("nonce", nonce),
            ("code_challenge", &challenge),
            ("code_challenge_method", "S256"),
        ]);
        let sep = if meta.authorization_endpoint.contains('?') { '&' } else { '?' };
        Ok(format!("{}{sep}{query}", meta.authorization_endpoint))
    }

    /// The identity an authorization `code` proves: the code exchanged with
    /// the PKCE `verifier`, the ID token checked (its `nonce` this
    /// sign-in's), and the claims about the user (the ID token's, or
    /// userinfo's when the token names no address).
    pub async fn redeem(
        &self,
        http: &HttpClient,
        code: &str,
        verifier: &str,
        nonce: &str,
        redirect_uri: &str,
        now: u64,
    ) -> Result<serde_json::Map<String, Value>, OidcError> {
        let meta = self.metadata(http).await?;
        let tokens = self.exchange(http, &meta, code, verifier, redirect_uri).await?;
        let id_token = tokens
            .get("id_token")
            .and_then(Value::as_str)
            .ok_or_else(|| OidcError::InvalidToken("the token endpoint answered without an id_token".into()))?;
        let claims = self.verify(http, id_token, nonce, now).await?;
        if claims.get("email").is_some() {
            return Ok(claims);
        }
        let access = tokens.get("access_token").and_then(Value::as_str);
        self.userinfo(http, &meta, access, &claims).await
    }
}

fn b64url(bytes: &[u8]) -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

fn unb64url(text: &str) -> Option<Vec<u8>> {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(text.trim_end_matches('=')).ok()
}

/// What a query or form escapes: every byte but RFC 3986's unreserved ones.
const ESCAPED: &AsciiSet = &NON_ALPHANUMERIC.remove(b'-').remove(b'.').remove(b'_').remove(b'~');

/// `application/x-www-form-urlencoded` (and a query string): every byte
/// but the unreserved ones escaped.
fn form(pairs: &[(&str, &str)]) -> String {
    pairs
        .iter()
        .map(|(k, v)| format!("{}={}", utf8_percent_encode(k, ESCAPED), utf8_percent_encode(v, ESCAPED)))
        .collect::<Vec<_>>()
        .join("&")
}

/// A provider's text, fit to show: control characters dropped, cut.
pub fn printable(text: &str, max: usize) -> String {
    text.chars().filter(|c| !c.is_control()).take(max).collect()
}

/// An endpoint the metadata names may be plain HTTP only when the issuer is
/// (which configuration allows on loopback alone).
fn endpoint_allowed(issuer: &str, url: &str) -> bool {
    url.starts_with("https://") || (issuer.starts_with("http://") && url.starts_with("http://"))
}

impl Provider {
    async fn fetch(
        &self,
        http: &HttpClient,
        request: http::Request<crate::http_client::ReqBody>,
    ) -> Result<(http::StatusCode, Bytes), OidcError> {
        let what = request.uri().to_string();
        let answer = async {
            let response = http.send(request).await.map_err(|e| e.to_string())?;
            let status = response.status();
            let body = http_body_util::Limited::new(response.into_body(), MAX_ANSWER)
                .collect()
                .await
                .map_err(|e| e.to_string())?
                .to_bytes();
            Ok::<_, String>((status, body))
        };
        match tokio::time::timeout(PROVIDER_TIMEOUT, answer).await {
            Ok(Ok(answer)) => Ok(answer),
            Ok(Err(e)) => Err(OidcError::Provider(format!("{what}: {e}"))),
            Err(_) => Err(OidcError::Provider(format!("{what}: no answer within {PROVIDER_TIMEOUT:?}"))),
        }
    }

    async fn get_json(&self, http: &HttpClient, url: &str, bearer: Option<&str>) -> Result<Value, OidcError> {
        let mut request = http::Request::get(url).header(http::header::ACCEPT, "application/json");
        if let Some(token) = bearer {
            request = request.header(http::header::AUTHORIZATION, format!("Bearer {token}"));
        }
        let request = request.body(full(Bytes::new())).map_err(|e| OidcError::Provider(format!("{url}: {e}")))?;
        let (status, body) = self.fetch(http, request).await?;
        if !status.is_success() {
            return Err(OidcError::Provider(format!("{url} answered {status}")));
        }
        serde_json::from_slice(&body).map_err(|e| OidcError::Provider(format!("{url}: not JSON: {e}")))
    }

    /// The provider's metadata, read at first use and every hour.
    async fn metadata(&self, http: &HttpClient) -> Result<Metadata, OidcError> {
        let mut cache = self.cache.lock().await;
        if let Some((at, meta)) = &cache.metadata
            && at.elapsed() < METADATA_TTL
        {
            return Ok(meta.clone());
        }
        let url = format!("{}/.well-known/openid-configuration", self.issuer);
        let meta: Metadata = serde_json::from_value(self.get_json(http, &url, None).await?)
            .map_err(|e| OidcError::Provider(format!("{url}: {e}")))?;
        // Discovery §4.3: the issuer it states is the one configured.
        if meta.issuer.trim_end_matches('/') != self.issuer {
            return Err(OidcError::Provider(format!("{url} names another issuer: {:?}", meta.issuer)));
        }
        let endpoints = [&meta.authorization_endpoint, &meta.token_endpoint, &meta.jwks_uri];
        let userinfo = meta.userinfo_endpoint.iter();
        if let Some(bad) = endpoints.into_iter().chain(userinfo).find(|u| !endpoint_allowed(&self.issuer, u)) {
            return Err(OidcError::Provider(format!("{url}: endpoint {bad:?} is not https")));
        }
        cache.metadata = Some((Instant::now(), meta.clone()));
        Ok(meta)
    }

    /// The provider's signing keys; read again when `refresh` and the last
    /// read is older than [`KEYS_REFRESH_MIN`] (a rotated key).
    async fn keys(&self, http: &HttpClient, meta: &Metadata, refresh: bool) -> Result<Vec<Jwk>, OidcError> {
        let cache = self.cache.lock().await;
        if let Some((at, keys)) = &cache.keys {
            let fresh = at.elapsed() < METADATA_TTL && !(refresh && at.elapsed() >= KEYS_REFRESH_MIN);
            if fresh {
                return Ok(keys.clone());
            }
        }
        drop(cache);
        let set: JwkSet = serde_json::from_value(self.get_json(http, &meta.jwks_uri, None).await?)
            .map_err(|e| OidcError::Provider(format!("{}: {e}", meta.jwks_uri)))?;
        // Keys of kinds not known here are skipped, not fatal.
        let keys: Vec<Jwk> = set.keys.into_iter().filter_map(|k| serde_json::from_value(k).ok()).collect();
        self.cache.lock().await.keys = Some((Instant::now(), keys.clone()));
        Ok(keys)
    }

    /// The authorization code for tokens.
    async fn exchange(
        &self,
        http: &HttpClient,
        meta: &Metadata,
        code: &str,
        verifier: &str,
        redirect_uri: &str,
    ) -> Result<serde_json::Map<String, Value>, OidcError> {
        let body = form(&[
            ("grant_type", "authorization_code"),
            ("code", code),
            ("redirect_uri", redirect_uri),
            ("code_verifier", verifier),
        ]);
        // RFC 6749 §2.3.1: the id and secret are form-encoded, then Basic.
        let basic = base64::engine::general_purpose::STANDARD.encode(format!(
            "{}:{}",
            utf8_percent_encode(&self.client_id, ESCAPED),
            utf8_percent_encode(self.client_secret.expose(), ESCAPED)
        ));
        let url = &meta.token_endpoint;
        let request = http::Request::post(url)
            .header(http::header::CONTENT_TYPE, "application/x-www-form-urlencoded")
            .header(http::header::ACCEPT, "application/json")
            .header(http::header::AUTHORIZATION, format!("Basic {basic}"))
            .body(full(body))
            .map_err(|e| OidcError::Provider(format!("{url}: {e}")))?;
        let (status, body) = self.fetch(http, request).await?;
        let json: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
        if !status.is_success() {
            // An error answer (RFC 6749 §5.2): a used or expired code, …
            let error = json.get("error").and_then(Value::as_str).unwrap_or("no error code");
            return Err(OidcError::Denied(format!("the token endpoint answered {status}: {}", printable(error, 100))));
        }
        match json {
            Value::Object(map) => Ok(map),
            _ => Err(OidcError::Provider(format!("{url}: the answer is not a JSON object"))),
        }
    }

    /// Check an ID token; its claims.
    async fn verify(
        &self,
        http: &HttpClient,
        token: &str,
        nonce: &str,
        now: u64,
    ) -> Result<serde_json::Map<String, Value>, OidcError> {
        let bad = |why: &str| OidcError::InvalidToken(why.to_owned());
        let mut parts = token.split('.');
        let (Some(head), Some(body), Some(sig), None) = (parts.next(), parts.next(), parts.next(), parts.next()) else {
            return Err(bad("the ID token is not a JWS in compact form"));
        };
        let header: Value =
            unb64url(head).and_then(|h| serde_json::from_slice(&h).ok()).ok_or_else(|| bad("unreadable header"))?;
        let claims: serde_json::Map<String, Value> =
            unb64url(body).and_then(|b| serde_json::from_slice(&b).ok()).ok_or_else(|| bad("unreadable claims"))?;
        let signature = unb64url(sig).ok_or_else(|| bad("unreadable signature"))?;
        let alg = header.get("alg").and_then(Value::as_str).unwrap_or("");
        let kid = header.get("kid").and_then(Value::as_str);
        let signed = &token.as_bytes()[..head.len() + 1 + body.len()];
        // SECURITY: only the asymmetric algorithms named here; `none` and
        // HMAC (which a public key would "verify") are refused.
        if !matches!(alg, "RS256" | "PS256" | "ES256") {
            return Err(OidcError::InvalidToken(format!("algorithm {:?} is not accepted", printable(alg, 20))));
        }
        let meta = self.metadata(http).await?;
        let mut verified = false;
        for refresh in [false, true] {
            let keys = self.keys(http, &meta, refresh).await?;
            let candidates: Vec<&Jwk> = keys.iter().filter(|k| fits(k, alg, kid)).collect();
            if candidates.is_empty() {
                continue;
            }
            verified = candidates.iter().any(|k| check_signature(k, alg, signed, &signature));
            break;
        }
        if !verified {
            return Err(bad("the signature does not verify with the provider's keys"));
        }
        let text = |name: &str| claims.get(name).and_then(Value::as_str);
        let number = |name: &str| claims.get(name).and_then(Value::as_u64);
        if text("iss").map(|i| i.trim_end_matches('/')) != Some(self.issuer.as_str()) {
            return Err(bad("issued by another issuer"));
        }
        let audiences: Vec<&str> = match claims.get("aud") {
            Some(Value::String(a)) => vec![a.as_str()],
            Some(Value::Array(list)) => list.iter().filter_map(Value::as_str).collect(),
            _ => vec![],
        };
        if !audiences.contains(&self.client_id.as_str()) {
            return Err(bad("issued for another client"));
        }
        if (audiences.len() > 1 || text("azp").is_some()) && text("azp") != Some(self.client_id.as_str()) {
            return Err(bad("authorized for another party"));
        }
        match number("exp") {
            Some(exp) if exp + SKEW > now => {}
            _ => return Err(bad("expired")),
        }
        if number("iat").is_none_or(|iat| iat > now + SKEW) {
            return Err(bad("issued in the future, or without an issue time"));
        }
        let same_nonce = text("nonce").is_some_and(|n| bool::from(n.as_bytes().ct_eq(nonce.as_bytes())));
        if !same_nonce {
            return Err(bad("the nonce is not this sign-in's"));
        }
        if text("sub").is_none_or(str::is_empty) {
            return Err(bad("no subject"));
        }
        Ok(claims)
    }

    /// The userinfo claims, for a token that carried no address; the same
    /// subject or nothing (Core §5.3.2).
    async fn userinfo(
        &self,
        http: &HttpClient,
        meta: &Metadata,
        access: Option<&str>,
        claims: &serde_json::Map<String, Value>,
    ) -> Result<serde_json::Map<String, Value>, OidcError> {
        let (Some(url), Some(access)) = (&meta.userinfo_endpoint, access) else {
            return Ok(claims.clone());
        };
        let Value::Object(info) = self.get_json(http, url, Some(access)).await? else {
            return Err(OidcError::Provider(format!("{url}: the answer is not a JSON object")));
        };
        if info.get("sub") != claims.get("sub") {
            return Err(OidcError::InvalidToken("userinfo is about another subject".into()));
        }
        Ok(info)
    }
}

/// Whether key `k` may check a signature of `alg` by key id `kid`.
fn fits(k: &Jwk, alg: &str, kid: Option<&str>) -> bool {
    let kty = if alg == "ES256" { "EC" } else { "RSA" };
    k.kty == kty
        && k.usage.as_deref().is_none_or(|u| u == "sig")
        && k.alg.as_deref().is_none_or(|a| a == alg)
        && (kid.is_none() || k.kid.as_deref() == kid)
}

fn check_signature(k: &Jwk, alg: &str, signed: &[u8], signature: &[u8]) -> bool {
    use aws_lc_rs::signature as sig;
    let field = |f: &Option<String>| f.as_deref().and_then(unb64url);
    match alg {
        "RS256" | "PS256" => {
            let (Some(n), Some(e)) = (field(&k.n), field(&k.e)) else { return false };
            let params = if alg == "RS256" { &sig::RSA_PKCS1_2048_8192_SHA256 } else { &sig::RSA_PSS_2048_8192_SHA256 };
            sig::RsaPublicKeyComponents { n: &n, e: &e }.verify(params, signed, signature).is_ok()
        }
        "ES256" => {
            let (Some(x), Some(y)) = (field(&k.x), field(&k.y)) else { return false };
            if k.crv.as_deref() != Some("P-256") || x.len() != 32 || y.len() != 32 {
                return false;
            }
            let mut point = vec![4u8];
            point.extend_from_slice(&x);
            point.extend_from_slice(&y);
            sig::UnparsedPublicKey::new(&sig::ECDSA_P256_SHA256_FIXED, point).verify(signed, signature).is_ok()
        }
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use aws_lc_rs::rand::SystemRandom;
    use aws_lc_rs::signature::{self as sig, EcdsaKeyPair, KeyPair as _};

    use super::*;

    fn provider() -> Provider {
        Provider {
            id: "idp".into(),
            name: "IdP".into(),
            issuer: "https://id.example.com".into(),
            client_id: "tollgate".into(),
            client_secret: Secret::new("s"),
            customers: vec![],
            require_verified_email: true,
            cache: tokio::sync::Mutex::default(),
        }
    }

    /// A provider whose metadata and keys are already read: `verify` asks
    /// nothing over the network.
    fn primed(key: &EcdsaKeyPair) -> Provider {
        let p = provider();
        let public = key.public_key().as_ref();
        let jwk = Jwk {
            kty: "EC".into(),
            kid: Some("k1".into()),
            usage: Some("sig".into()),
            alg: None,
            n: None,
            e: None,
            crv: Some("P-256".into()),
            x: Some(b64url(&public[1..33])),
            y: Some(b64url(&public[33..65])),
        };
        let meta = Metadata {
            issuer: p.issuer.clone(),
            authorization_endpoint: "https://id.example.com/auth".into(),
            token_endpoint: "https://id.example.com/token".into(),
            jwks_uri: "https://id.example.com/jwks".into(),
            userinfo_endpoint: None,
        };
        {
            let mut cache = p.cache.try_lock().unwrap();
            cache.metadata = Some((Instant::now(), meta));
            cache.keys = Some((Instant::now(), vec![jwk]));
        }
        p
    }

    fn token(key: &EcdsaKeyPair, header: Value, claims: Value) -> String {
        let signed = format!("{}.{}", b64url(header.to_string().as_bytes()), b64url(claims.to_string().as_bytes()));
        let signature = key.sign(&SystemRandom::new(), signed.as_bytes()).unwrap();
        format!("{signed}.{}", b64url(signature.as_ref()))
    }

    const NOW: u64 = 1_800_000_000;

    fn good_claims() -> Value {
        serde_json::json!({ "iss": "https://id.example.com", "aud": "tollgate", "sub": "u1", "exp": NOW + 300, "iat": NOW, "nonce": "n0nce", "email": "ann@acme.example" })
    }

    /// Every rule of an ID token, each broken once: only the good token
    /// passes.
    #[tokio::test]
    async fn id_tokens_are_checked_in_full() {
        let rng = SystemRandom::new();
        let doc = EcdsaKeyPair::generate_pkcs8(&sig::ECDSA_P256_SHA256_FIXED_SIGNING, &rng).unwrap();
        let key = EcdsaKeyPair::from_pkcs8(&sig::ECDSA_P256_SHA256_FIXED_SIGNING, doc.as_ref()).unwrap();
        let other_doc = EcdsaKeyPair::generate_pkcs8(&sig::ECDSA_P256_SHA256_FIXED_SIGNING, &rng).unwrap();
        let other = EcdsaKeyPair::from_pkcs8(&sig::ECDSA_P256_SHA256_FIXED_SIGNING, other_doc.as_ref()).unwrap();
        let p = primed(&key);
        let http = HttpClient::new().unwrap();
        let header = serde_json::json!({ "alg": "ES256", "kid": "k1" });
        let good = token(&key, header.clone(), good_claims());
        let claims = p.verify(&http, &good, "n0nce", NOW).await.unwrap();
        assert_eq!(claims["email"], "ann@acme.example");

        let with = |field: &str, value: Value| {
            let mut c = good_claims();
            c[field] = value;
            token(&key, header.clone(), c)
        };
        let without = |field: &str| {
            let mut c = good_claims();
            c.as_object_mut().unwrap().remove(field);
            token(&key, header.clone(), c)
        };
        let (head, rest) = good.split_once('.').unwrap();
        let none_header = b64url(br#"{"alg":"none"}"#);
        let hs_header = b64url(br#"{"alg":"HS256","kid":"k1"}"#);
        let bad = [
            ("another key", token(&other, header.clone(), good_claims())),
            ("unknown kid", token(&key, serde_json::json!({ "alg": "ES256", "kid": "k2" }), good_claims())),
            ("alg none", format!("{none_header}.{}", rest.rsplit_once('.').unwrap().0) + "."),
            ("alg HS256", format!("{hs_header}.{rest}")),
            ("claims changed", format!("{head}.{}.{}", b64url(with("sub", "u2".into()).as_bytes()), "x")),
            ("issuer", with("iss", "https://evil.example.com".into())),
            ("audience", with("aud", "someone-else".into())),
            ("azp", with("aud", serde_json::json!(["tollgate", "other"]))),
            ("expired", with("exp", (NOW - 600).into())),
            ("no exp", without("exp")),
            ("future iat", with("iat", (NOW + 3600).into())),
            ("nonce", with("nonce", "other".into())),
            ("no nonce", without("nonce")),
            ("no sub", without("sub")),
            ("two parts", "a.b".to_owned()),
            ("garbage", "!!.??.**".to_owned()),
        ];
        for (what, t) in bad {
            assert!(p.verify(&http, &t, "n0nce", NOW).await.is_err(), "{what} was accepted");
        }
        // Several audiences with the right authorized party are fine.
        let mut c = good_claims();
        c["aud"] = serde_json::json!(["tollgate", "other"]);
        c["azp"] = "tollgate".into();
        assert!(p.verify(&http, &token(&key, header, c), "n0nce", NOW).await.is_ok());
    }

    #[test]
    fn forms_escape_all_but_unreserved_bytes() {
        assert_eq!(form(&[("a b", "x&y=z/é+"), ("c_d", "-._~")]), "a%20b=x%26y%3Dz%2F%C3%A9%2B&c_d=-._~");
    }

    #[test]
    fn plain_http_endpoints_only_for_a_plain_http_issuer() {
        assert!(endpoint_allowed("https://id.example.com", "https://id.example.com/token"));
        assert!(!endpoint_allowed("https://id.example.com", "http://id.example.com/token"));
        assert!(endpoint_allowed("http://127.0.0.1:4000", "http://127.0.0.1:4000/token"));
        assert!(!endpoint_allowed("https://id.example.com", "javascript:alert(1)"));
    }
}
