//! Tollgate: an entitlement-aware content-download gateway for software vendors.
//!
//! The binary (`src/main.rs`) is a thin wrapper around [`cli::run`]; everything
//! else lives here so that tests drive the real server on port 0.
//!
//! Layout, one module per concern, listed top layer first; imports run
//! downwards only (`scripts/check-layers.py` checks it, see
//! `docs/ARCHITECTURE.md`):
//! - [`cli`]: the `tollgate` command line.
//! - [`app`]: assembling a gateway from configuration; spawning the workers.
//! - [`http`]: the HTTP surfaces; each parses, calls a service, renders.
//! - [`db`]: the state store's engines (SQLite, Redis), each implementing the
//!   record store, the quota store and the event log.
//! - [`downloads`]: the download lifecycle (issue, redeem, deliver, record).
//! - [`uploads`]: getting files in (streaming, registration, direct uploads).
//! - [`services`]: what every door shares, and the typed policies.
//! - [`entitlement`]: the pure entitlement decision and its application.
//! - [`events`]: the download event log, reports and webhooks.
//! - [`quota`]: download quotas, grant initiation and leases.
//! - [`catalog`]: products, releases, artifacts, customers, entitlements,
//!   grants; the record store trait.
//! - [`storage`]: blob storage behind one trait (local directory, S3).
//! - [`cdn`]: CDN-native signed URLs (CloudFront, Cloud CDN, Akamai,
//!   Cloudflare, Fastly) and the origin's check of the CDN.
//! - [`signing`]: the native signed-URL format and the key ring.
//! - [`ratelimit`], [`metrics`], [`server`], [`http_client`],
//!   [`admin_tokens`], [`telemetry`]: infrastructure.
//! - [`config`], [`quota_limits`], [`clock`]: configuration and plain data.
//! - [`errors`]: what every domain error says about itself (kind and code).
//! - [`table`]: structs read only from tables (objects), never from lists.

pub mod admin_tokens;
pub mod app;
pub mod catalog;
pub mod cdn;
pub mod cli;
pub mod clock;
pub mod config;
pub mod cuts;
pub mod db;
pub mod downloads;
pub mod entitlement;
pub mod errors;
pub mod events;
pub mod http;
pub mod http_client;
pub mod mail;
pub mod metrics;
pub mod oidc;
pub mod portal;
pub mod quota;
pub mod quota_limits;
pub mod ratelimit;
pub mod server;
pub mod services;
pub mod signing;
pub mod storage;
pub mod table;
pub mod telemetry;
pub mod uploads;
