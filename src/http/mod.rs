//! The HTTP surfaces. Each module is one surface; [`problem`] is the error body
//! they share.

pub mod admin_api;
pub mod admin_artifacts;
pub mod admin_auth;
pub mod admin_events;
pub mod admin_webhooks;
pub mod byteranges;
pub mod chart;
pub mod conditional;
pub mod console;
pub mod customer_api;
pub mod download;
pub mod health;
pub mod notes;
pub mod openapi;
pub mod portal;
pub mod problem;
pub mod quota_view;
pub mod updates;

use std::net::IpAddr;
use std::sync::Arc;
use std::sync::atomic::Ordering;

use axum::Router;
use axum::extract::MatchedPath;
use axum::http::{HeaderMap, header};
use axum::response::IntoResponse as _;
use axum::routing::get;
use ipnet::IpNet;

pub use crate::server::PeerAddr;
use crate::services::Services;
use crate::signing::canonical_ip;

/// A whole (unpaged) listing: `{"items": [...]}`.
#[derive(Debug, serde::Serialize, utoipa::ToSchema)]
pub struct Items<T> {
    pub items: Vec<T>,
}

/// The token from `Authorization: Bearer <token>` (admin tokens and customer
/// API keys alike).
pub fn bearer(request: &axum::extract::Request) -> Option<&str> {
    let value = request.headers().get(header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, token) = value.split_once(' ')?;
    scheme.eq_ignore_ascii_case("bearer").then(|| token.trim())
}

/// The public listener: data plane, customer API and health.
pub fn public_router(state: Arc<Services>) -> Router {
    let routes = Router::new()
        .route("/healthz", get(health::healthz))
        .route("/d/", get(download::download))
        .route("/d/{*path}", get(download::download))
        .route("/feeds/{customer}/releases.atom", get(updates::atom))
        .merge(customer_api::routes(state.clone()));
    // Off, the portal's paths are unknown routes (404), signed in or not.
    let routes = if state.portal.enabled { routes.merge(portal::routes(state.clone())) } else { routes };
    with_common_layers(routes, state)
}

/// The admin listener. Every route under `/admin/v1` needs an admin token
/// (`admin_api::routes` applies the check to all of them); only the probes and
/// the API description listed here are exempt.
pub fn admin_router(state: Arc<Services>) -> Router {
    let exempt = Router::new()
        .route("/healthz", get(health::healthz))
        .route("/readyz", get(health::readyz))
        .route("/metrics", get(metrics))
        .route("/openapi.json", get(openapi::openapi_json));
    // The vendor console: its own sign-in (an admin token for a session),
    // on this listener only.
    let routes = exempt.merge(admin_api::routes(state.clone())).merge(console::routes());
    with_common_layers(routes, state)
}

/// What every listener shares: problem bodies for unknown routes and methods,
/// and the per-request span.
fn with_common_layers(routes: Router<Arc<Services>>, state: Arc<Services>) -> Router {
    routes
        .fallback(problem::not_found)
        .method_not_allowed_fallback(problem::method_not_allowed)
        .layer(axum::middleware::from_fn_with_state(state.clone(), count_request))
        .layer(axum::middleware::from_fn(crate::telemetry::request_span))
        .with_state(state)
}

/// Count every answered request by route template and status class.
async fn count_request(
    axum::extract::State(state): axum::extract::State<Arc<Services>>,
    request: axum::extract::Request,
    next: axum::middleware::Next,
) -> axum::response::Response {
    // The template, never the path: paths are the client's to choose.
    let route = request.extensions().get::<MatchedPath>().map_or("unmatched", MatchedPath::as_str).to_owned();
    let response = next.run(request).await;
    let code = response.extensions().get::<problem::ProblemCode>().map(|c| c.0);
    state.metrics.request(&route, response.status().as_u16(), code);
    response
}

/// `GET /metrics`: Prometheus text exposition.
pub async fn metrics(axum::extract::State(state): axum::extract::State<Arc<Services>>) -> axum::response::Response {
    let spill = state.events.spill();
    let gauges = crate::metrics::Gauges {
        active_downloads: state.active_downloads.get() as u64,
        events_queued: state.events.queued() as u64,
        events_spill_pending: spill.pending.load(Ordering::Relaxed),
        events_spilled: spill.spilled.load(Ordering::Relaxed),
        events_lost: spill.lost.load(Ordering::Relaxed),
    };
    let text = state.metrics.render(gauges);
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4; charset=utf-8")], text).into_response()
}

/// The client's address. `X-Forwarded-For` is believed only when the peer is a
/// trusted proxy, and then read from the right, skipping trusted hops.
// SECURITY: anyone can send X-Forwarded-For; believing it from an untrusted peer
// would let a client pick the address that IP-bound URLs are checked against.
// SECURITY: a dual-stack listener sees IPv4 clients as IPv4-mapped IPv6
// addresses; unmapped, they would match no IPv4 trusted proxy, CIDR binding
// or allow-list, and would key rate limits apart from the same client over
// IPv4. Every address returned here is canonical.
pub fn client_ip(peer: IpAddr, headers: &HeaderMap, trusted: &[IpNet]) -> IpAddr {
    let peer = canonical_ip(peer);
    let is_trusted = |ip: &IpAddr| trusted.iter().any(|n| n.contains(ip));
    if !is_trusted(&peer) {
        return peer;
    }
    let mut client = peer;
    let hops = headers
        .get_all("x-forwarded-for")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(str::trim)
        .collect::<Vec<_>>();
    for hop in hops.iter().rev() {
        match hop.parse::<IpAddr>().map(canonical_ip) {
            Ok(ip) => {
                client = ip;
                if !is_trusted(&ip) {
                    break;
                }
            }
            Err(_) => break,
        }
    }
    client
}

#[cfg(test)]
mod tests {
    use axum::http::HeaderValue;

    use super::*;

    #[test]
    fn forwarded_for_is_only_believed_from_trusted_proxies() {
        let trusted: Vec<IpNet> = vec!["10.0.0.0/8".parse().unwrap()];
        let mut h = HeaderMap::new();
        h.insert("x-forwarded-for", HeaderValue::from_static("1.1.1.1, 203.0.113.5, 10.0.0.7"));
        let lb: IpAddr = "10.0.0.2".parse().unwrap();
        let stranger: IpAddr = "198.51.100.1".parse().unwrap();
        assert_eq!(client_ip(lb, &h, &trusted), "203.0.113.5".parse::<IpAddr>().unwrap());
        assert_eq!(client_ip(stranger, &h, &trusted), stranger);
        assert_eq!(client_ip(lb, &HeaderMap::new(), &trusted), lb);
        h.insert("x-forwarded-for", HeaderValue::from_static("junk, 10.0.0.9"));
        assert_eq!(client_ip(lb, &h, &trusted), "10.0.0.9".parse::<IpAddr>().unwrap());
    }

    #[test]
    fn ipv4_mapped_addresses_are_ipv4() {
        let trusted: Vec<IpNet> = vec!["127.0.0.1/32".parse().unwrap()];
        let mut h = HeaderMap::new();
        h.insert("x-forwarded-for", HeaderValue::from_static("::ffff:203.0.113.5"));
        // A balancer on loopback, seen by a dual-stack listener.
        let mapped_lb: IpAddr = "::ffff:127.0.0.1".parse().unwrap();
        assert_eq!(client_ip(mapped_lb, &h, &trusted), "203.0.113.5".parse::<IpAddr>().unwrap());
        let mapped_client: IpAddr = "::ffff:198.51.100.7".parse().unwrap();
        assert_eq!(client_ip(mapped_client, &HeaderMap::new(), &trusted), "198.51.100.7".parse::<IpAddr>().unwrap());
    }

    proptest::proptest! {
        /// Any `X-Forwarded-For` from a trusted peer yields an address, never a
        /// panic; from an untrusted peer it is ignored.
        #[test]
        fn any_forwarded_for_yields_an_address(value in "[ -~]{0,200}") {
            let trusted: Vec<IpNet> = vec!["10.0.0.0/8".parse().unwrap()];
            let mut h = HeaderMap::new();
            if let Ok(v) = HeaderValue::from_str(&value) {
                h.insert("x-forwarded-for", v);
            }
            let _ = client_ip("10.0.0.2".parse().unwrap(), &h, &trusted);
            let stranger: IpAddr = "198.51.100.1".parse().unwrap();
            proptest::prop_assert_eq!(client_ip(stranger, &h, &trusted), stranger);
        }
    }
}
