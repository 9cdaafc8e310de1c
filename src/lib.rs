//! Tollgate: an entitlement-aware content-download gateway for software vendors.
//!
//! The binary (`src/main.rs`) is a thin wrapper around [`cli::run`]; everything
//! else lives here so that tests drive the real server on port 0.
//!
//! Layout, one module per concern:
//! - [`config`]: typed configuration, layering (defaults < file < env < flags), secrets.
//! - [`catalog`]: products, releases, artifacts, customers, entitlements.
//! - [`entitlement`]: the pure entitlement decision.
//! - [`signing`]: the native signed-URL format and the key ring.
//! - [`storage`]: blob storage behind one trait (local directory, S3).
//! - [`store`]: the state store (SQLite, Redis) behind one trait.
//! - [`http`]: the HTTP surfaces (data plane, health) and RFC 9457 problems.
//! - [`quota`]: download quotas, grant initiation and leases.
//! - [`ratelimit`]: in-memory request-rate limits (per API key, per address).
//! - [`server`]: listeners, TLS, connection limits, timeouts and graceful shutdown.
//! - [`app`]: assembling a gateway from configuration.
//! - [`cli`]: the `tollgate` command line.
//! - [`telemetry`]: logging setup and the per-request span.

pub mod admin_tokens;
pub mod app;
pub mod catalog;
pub mod cli;
pub mod clock;
pub mod config;
pub mod downloads;
pub mod entitlement;
pub mod events;
pub mod http;
pub mod metrics;
pub mod quota;
pub mod ratelimit;
pub mod server;
pub mod services;
pub mod signing;
pub mod storage;
pub mod store;
pub mod telemetry;
pub mod uploads;
