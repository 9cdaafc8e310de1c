//! Portal sign-in with OpenID Connect: the flows (a record each, in the
//! state store, under the SHA-256 of its `state`, used once and bound to the
//! browser that started it by a cookie holding `state`) and what a proven
//! identity may do. The protocol is [`crate::oidc`].
//!
//! The provider proves an e-mail address; who may sign in is still decided
//! by the portal's users: the address must be a user's, of a customer the
//! provider is trusted for, and verified by the provider (unless the
//! operator says otherwise).

use std::time::Duration;

use serde::{Deserialize, Serialize};
use serde_json::Value;
use subtle::ConstantTimeEq;

use super::{Portal, PortalError, PortalUser, new_token};
use crate::catalog::Timestamp;
use crate::catalog::store::{Kind, get_json, put_json};
use crate::oidc::{OidcError, Provider, printable};
use crate::services::Services;

/// How long a started sign-in waits for the provider's answer.
pub const FLOW_TTL: Duration = Duration::from_secs(600);

/// Why an SSO sign-in did not happen.
#[derive(Debug, thiserror::Error)]
pub enum SsoError {
    #[error("no such sign-in provider")]
    UnknownProvider,
    /// Started in another browser, used, expired, or forged.
    #[error("this sign-in was not started here, or has expired; start again")]
    InvalidFlow,
    /// The provider said no, could not be used, or its answer failed a
    /// check.
    #[error(transparent)]
    Oidc(#[from] OidcError),
    /// The proven address is not a user of a customer this provider may
    /// sign in (or not verified): one answer, whatever the reason.
    #[error("{0} cannot sign in to this portal with this provider")]
    NotAllowed(String),
    #[error(transparent)]
    Portal(#[from] PortalError),
}

/// A started sign-in, under the SHA-256 of its `state`.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct Flow {
    provider: String,
    verifier: String,
    nonce: String,
    expires_at: Timestamp,
}

/// The provider's answer at the callback.
#[derive(Debug, Default, Deserialize)]
pub struct Callback {
    #[serde(default)]
    pub code: Option<String>,
    #[serde(default)]
    pub state: Option<String>,
    #[serde(default)]
    pub error: Option<String>,
    #[serde(default)]
    pub error_description: Option<String>,
    /// RFC 9207: the issuer that answered.
    #[serde(default)]
    pub iss: Option<String>,
}

/// Where the browser goes to sign in, and the `state` its cookie keeps.
#[derive(Debug)]
pub struct Started {
    pub location: String,
    pub state: String,
}

/// Where the provider sends the browser back.
fn redirect_uri(svc: &Services) -> String {
    format!("{}/portal/sso/callback", svc.downloads.urls.public_url.trim_end_matches('/'))
}

/// Start signing in with provider `id`: a flow record, and the provider's
/// authorization URL to send the browser to.
pub async fn start(svc: &Services, id: &str) -> Result<Started, SsoError> {
    let (provider, http) = svc.sso.provider(id).ok_or(SsoError::UnknownProvider)?;
    let state = new_token()?;
    let nonce = new_token()?;
    let verifier = new_token()?;
    let location = provider.authorization_url(http, &redirect_uri(svc), &state, &nonce, &verifier).await?;
    let expires_at = Timestamp(svc.clock.now_unix() + FLOW_TTL.as_secs());
    let flow = Flow { provider: provider.id.clone(), verifier, nonce, expires_at };
    put_json(svc.catalog.records().as_ref(), Kind::SsoFlow, &super::digest(&state), &flow)
        .await
        .map_err(PortalError::from)?;
    Ok(Started { location, state })
}

/// The provider's answer: the flow it ends (which `cookie_state`, the
/// browser's, must name), the identity the code proves, and the portal user
/// it is.
pub async fn finish<'s>(
    svc: &'s Services,
    cookie_state: Option<&str>,
    answer: &Callback,
) -> Result<(PortalUser, &'s Provider), SsoError> {
    let state = answer.state.as_deref().unwrap_or("");
    // SECURITY: the answer must come back to the browser that asked
    // (login CSRF); the cookie holds the state this browser started.
    let same = cookie_state.is_some_and(|c| !c.is_empty() && bool::from(c.as_bytes().ct_eq(state.as_bytes())));
    if !same || state.len() > 64 {
        return Err(SsoError::InvalidFlow);
    }
    let store = svc.catalog.records();
    let key = super::digest(state);
    let flow: Flow =
        get_json(store.as_ref(), Kind::SsoFlow, &key).await.map_err(PortalError::from)?.ok_or(SsoError::InvalidFlow)?;
    // Used once: of two racing answers, one deletes it.
    if !store.delete(Kind::SsoFlow, &key).await.map_err(PortalError::from)? {
        return Err(SsoError::InvalidFlow);
    }
    let now = svc.clock.now_unix();
    if now >= flow.expires_at.0 {
        return Err(SsoError::InvalidFlow);
    }
    let (provider, http) = svc.sso.provider(&flow.provider).ok_or(SsoError::InvalidFlow)?;
    if let Some(error) = &answer.error {
        let text = answer.error_description.as_deref().unwrap_or(error);
        return Err(OidcError::Denied(printable(text, 200)).into());
    }
    // RFC 9207: an answer naming another issuer is a mix-up.
    if answer.iss.as_deref().is_some_and(|iss| iss.trim_end_matches('/') != provider.issuer()) {
        return Err(OidcError::InvalidToken("the answer names another issuer".into()).into());
    }
    let code = answer.code.as_deref().filter(|c| !c.is_empty()).ok_or(SsoError::InvalidFlow)?;
    let identity = provider.redeem(http, code, &flow.verifier, &flow.nonce, &redirect_uri(svc), now).await?;
    let email = identity.get("email").and_then(Value::as_str).unwrap_or("");
    let shown = printable(email, 254);
    let Some(email) = super::canonical_email(email) else {
        return Err(SsoError::NotAllowed(if shown.is_empty() { "(no e-mail address)".into() } else { shown }));
    };
    let verified = match identity.get("email_verified") {
        Some(Value::Bool(b)) => *b,
        // Some providers send it as a string.
        Some(Value::String(s)) => s == "true",
        _ => false,
    };
    if provider.require_verified_email() && !verified {
        tracing::info!(provider = %provider.id, "an SSO sign-in proved an address not verified by the provider");
        return Err(SsoError::NotAllowed(email));
    }
    let portal = Portal::new(svc);
    let user = portal.user(&email).await?;
    let allowed = match &user {
        Some(u) => provider.trusted_for(&u.customer) && portal.customer_active(&u.customer).await?,
        None => false,
    };
    match user {
        Some(u) if allowed => Ok((u, provider)),
        _ => Err(SsoError::NotAllowed(email)),
    }
}
