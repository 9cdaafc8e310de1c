//! `tollgate admin …`: the admin API from the command line, so a vendor can set
//! up products, releases, customers, entitlements and keys without writing
//! JSON. Every subcommand is one request; the answer is printed as JSON.

use std::process::ExitCode;

use anyhow::Context as _;
use serde_json::{Value, json};

use super::events::{EventsArgs, ReportArgs};
use super::http::AdminApi;
use crate::config::{Config, secret};
use crate::signing::encode_segment;

/// Where the admin API is and how to authenticate: shared by `admin` and
/// `publish`.
#[derive(Debug, clap::Args)]
pub struct ApiArgs {
    /// Admin API address. Default: http://<admin.listen> from the configuration.
    #[arg(long, global = true, env = "TOLLGATE_ADMIN_URL", value_name = "URL")]
    url: Option<String>,
    /// File holding the admin token (also $TOLLGATE_ADMIN_TOKEN_FILE).
    /// Default: $TOLLGATE_ADMIN_TOKEN, which holds the token itself, else
    /// the embedded default's generated token file.
    #[arg(long, global = true, env = "TOLLGATE_ADMIN_TOKEN_FILE", value_name = "FILE")]
    token_file: Option<std::path::PathBuf>,
}

#[derive(Debug, clap::Args)]
pub struct AdminArgs {
    #[command(flatten)]
    api: ApiArgs,
    #[command(subcommand)]
    command: AdminCommand,
}

#[derive(Debug, clap::Subcommand)]
enum AdminCommand {
    /// Products: put, get, list, delete.
    #[command(subcommand)]
    Product(ProductCmd),
    /// Releases: put, get, list, delete, publish, yank, restore, cut-downloads, eligible.
    #[command(subcommand)]
    Release(ReleaseCmd),
    /// Artifacts: register an object already in storage; get, list, delete.
    #[command(subcommand)]
    Artifact(ArtifactCmd),
    /// Customers: put, get, list, cut-downloads.
    #[command(subcommand)]
    Customer(CustomerCmd),
    /// Create or replace an entitlement of a customer.
    Entitle(EntitleArgs),
    /// Entitlements: get, list, delete.
    #[command(subcommand)]
    Entitlement(EntitlementCmd),
    /// Customer API keys: create, list, revoke.
    #[command(name = "api-key", subcommand)]
    ApiKey(ApiKeyCmd),
    /// The customer portal's users: put, get, list, delete, sign-out.
    #[command(subcommand)]
    User(UserCmd),
    /// The customer portal's branding and OpenID providers.
    #[command(subcommand)]
    Portal(PortalCmd),
    /// The download event log as JSON lines; --follow to keep tailing it.
    Events(EventsArgs),
    /// A download report as a table (or --csv).
    Report(ReportArgs),
    /// Who among the customers entitled to a release has downloaded it.
    Adoption { product: String, version: String },
    /// Webhook endpoints: put, get, list, delete, dead-letters, redeliver.
    #[command(subcommand)]
    Webhook(WebhookCmd),
}

#[derive(Debug, clap::Subcommand)]
enum WebhookCmd {
    /// Create an endpoint (the answer shows its signing secret, once) or
    /// replace one.
    Put {
        id: String,
        /// Where the events are POSTed (a positional argument: `--url` is the
        /// admin API's address).
        url: String,
        /// Event types to deliver (repeatable); none: all.
        #[arg(long = "type", value_name = "TYPE")]
        types: Vec<String>,
        /// Keep the endpoint but deliver nothing.
        #[arg(long)]
        disabled: bool,
    },
    /// Show an endpoint (never its secret).
    Get { id: String },
    /// List the endpoints.
    List,
    /// Delete an endpoint and its dead letters.
    Delete { id: String },
    /// Events the endpoint never accepted.
    DeadLetters { id: String },
    /// Send a dead letter again, once, within seconds (it goes when the
    /// endpoint accepts it).
    Redeliver {
        id: String,
        /// The dead letter's event id (`ev_…`).
        event: String,
    },
}

#[derive(Debug, clap::Subcommand)]
enum ProductCmd {
    /// Create or replace a product.
    Put {
        id: String,
        /// The name customers see.
        #[arg(long)]
        name: String,
        /// proxy (default: the gateway streams the file), redirect (a 303
        /// to a presigned S3 URL; S3 storage only) or edge (customers get
        /// the CDN's URL; needs --cdn-profile). See docs/delivery.md.
        #[arg(long)]
        delivery: Option<String>,
        /// For --delivery edge: the [[cdn.profiles]] id of the product's CDN.
        #[arg(long, value_name = "ID")]
        cdn_profile: Option<String>,
    },
    /// Show a product.
    Get { id: String },
    /// List the products.
    List,
    /// Delete a product that has no releases left.
    Delete { id: String },
}

#[derive(Debug, clap::Subcommand)]
enum ReleaseCmd {
    /// Create a release (a draft) or update one's channel, flags and notes
    /// (its status and publication time are kept).
    Put {
        product: String,
        version: String,
        /// stable, rc, beta, alpha or dev.
        #[arg(long, default_value = "stable")]
        channel: String,
        /// A critical release (a security fix, say): flagged to customers.
        #[arg(long)]
        critical: bool,
        /// Release notes (Markdown).
        #[arg(long)]
        notes: Option<String>,
    },
    /// Show a release.
    Get { product: String, version: String },
    /// List a product's releases, newest first.
    List { product: String },
    /// Delete a release that has no files left.
    Delete { product: String, version: String },
    /// Publish a draft: customers entitled to it can download it.
    Publish {
        product: String,
        version: String,
        /// Record this RFC 3339 time as the publication time.
        #[arg(long, value_name = "TIME")]
        backdated_to: Option<String>,
    },
    /// Withdraw a published release: new downloads and resumes are refused
    /// (running ones finish unless cut with `cut-downloads`).
    Yank { product: String, version: String },
    /// Publish a yanked release again.
    Restore { product: String, version: String },
    /// Cut the release's running downloads, on every gateway sharing the
    /// state store (yank it first, or clients' resumes are served again).
    CutDownloads { product: String, version: String },
    /// The customers a release reaches, before or after publishing.
    Eligible { product: String, version: String },
}

#[derive(Debug, clap::Subcommand)]
enum ArtifactCmd {
    /// Register an object that is already in storage; the gateway measures its
    /// size and SHA-256.
    Register {
        product: String,
        version: String,
        filename: String,
        /// e.g. linux-x86_64; default any.
        #[arg(long)]
        platform: Option<String>,
        /// Default: <product>/<version>/<filename>.
        #[arg(long)]
        storage_key: Option<String>,
        /// Default: guessed from the file name.
        #[arg(long)]
        content_type: Option<String>,
    },
    /// Show a file of a release.
    Get { product: String, version: String, filename: String },
    /// List a release's files.
    List { product: String, version: String },
    /// Remove a file from a release (the object stays in storage); a pending
    /// direct upload is abandoned.
    Delete {
        product: String,
        version: String,
        filename: String,
        /// Needed for a published or yanked release.
        #[arg(long)]
        force: bool,
    },
}

#[derive(Debug, clap::Subcommand)]
enum CustomerCmd {
    /// Create or update a customer; a status or networks not given are kept.
    Put {
        id: String,
        /// The customer's name.
        #[arg(long)]
        name: String,
        /// active or suspended.
        #[arg(long)]
        status: Option<String>,
        /// Only allow downloads from this network; repeatable.
        #[arg(long = "allow-cidr", value_name = "CIDR", conflicts_with = "any_address")]
        allow_cidrs: Vec<String>,
        /// Remove the network restriction.
        #[arg(long)]
        any_address: bool,
        /// A download limit, e.g. `downloads_per_day=100` or
        /// `concurrent_downloads=unlimited`; repeatable. Given, the customer's
        /// quota becomes exactly these; not given, it is kept.
        #[arg(long = "quota", value_name = "LIMIT=N", value_parser = parse_limit)]
        quota: Vec<(String, Value)>,
    },
    /// Show a customer.
    Get { id: String },
    /// List the customers.
    List,
    /// Cut the customer's running downloads, on every gateway sharing the
    /// state store (suspend it first, or its clients' resumes are served
    /// again).
    CutDownloads { id: String },
    /// A new read-only token for the customer's Atom feed of releases,
    /// printed with the feed's URL (replaces the one before); `--revoke`
    /// removes it.
    FeedToken {
        id: String,
        /// Revoke the customer's feed token instead (its feed URL stops
        /// working).
        #[arg(long)]
        revoke: bool,
    },
}

#[derive(Debug, clap::Args)]
struct EntitleArgs {
    customer: String,
    /// The entitlement's id (your contract or order number, say).
    id: String,
    /// The product it entitles to.
    #[arg(long)]
    product: String,
    /// perpetual, term, subscription or trial.
    #[arg(long, default_value = "perpetual")]
    license: String,
    /// RFC 3339; default now.
    #[arg(long, value_name = "TIME")]
    starts_at: Option<String>,
    /// RFC 3339; the license ends then (no downloads after it); default
    /// never.
    #[arg(long, value_name = "TIME")]
    expires_at: Option<String>,
    /// Releases published up to this time are covered.
    #[arg(long, value_name = "TIME")]
    maintenance_until: Option<String>,
    /// Semver requirement, e.g. "^2" or ">=2.1, <3"; default any.
    #[arg(long)]
    versions: Option<String>,
    /// Repeatable; default stable.
    #[arg(long = "channel")]
    channels: Vec<String>,
    /// Repeatable; default every platform.
    #[arg(long = "platform")]
    platforms: Vec<String>,
    /// active (default), suspended or revoked.
    #[arg(long)]
    status: Option<String>,
    /// A download limit for this entitlement's downloads, e.g.
    /// `downloads_per_artifact=3`; repeatable.
    #[arg(long = "quota", value_name = "LIMIT=N", value_parser = parse_limit)]
    quota: Vec<(String, Value)>,
}

#[derive(Debug, clap::Subcommand)]
enum EntitlementCmd {
    /// Show an entitlement.
    Get { customer: String, id: String },
    /// List a customer's entitlements.
    List { customer: String },
    /// Delete an entitlement.
    Delete { customer: String, id: String },
}

#[derive(Debug, clap::Subcommand)]
enum ApiKeyCmd {
    /// Create a key; it is shown this once.
    Create {
        customer: String,
        /// What the key is for ("acme CI"), shown in listings.
        #[arg(long, default_value = "")]
        name: String,
        /// Print only the key (for `KEY=$(tollgate admin api-key create …)`).
        #[arg(long)]
        key_only: bool,
    },
    /// List a customer's keys (never the keys themselves).
    List { customer: String },
    /// Revoke a key: it stops working at once.
    Revoke { customer: String, id: String },
}

#[derive(Debug, clap::Subcommand)]
enum PortalCmd {
    /// Show the branding; with the three options, set it (for every
    /// replica); with --reset, go back to the configuration's.
    Branding {
        /// The vendor's name, in titles, the header and e-mails.
        #[arg(long, requires_all = ["accent_color"], conflicts_with = "reset")]
        vendor_name: Option<String>,
        /// `#rrggbb`, dark enough for white text.
        #[arg(long, requires_all = ["vendor_name"], conflicts_with = "reset")]
        accent_color: Option<String>,
        /// An https: URL or a path on the gateway.
        #[arg(long, requires_all = ["vendor_name"], conflicts_with = "reset")]
        logo_url: Option<String>,
        /// Go back to the configuration's branding.
        #[arg(long)]
        reset: bool,
    },
    /// List the OpenID providers (configuration: `[[portal.sso]]`).
    Sso,
}

#[derive(Debug, clap::Subcommand)]
enum UserCmd {
    /// Add a person to a customer's portal, or change their role. They sign
    /// in at /portal with a link mailed to the address.
    Put {
        customer: String,
        email: String,
        /// admin (also manages the customer's API keys and people) or member.
        #[arg(long, default_value = "member", value_parser = ["admin", "member"])]
        role: String,
    },
    /// Show a user.
    Get { customer: String, email: String },
    /// List a customer's users.
    List { customer: String },
    /// Remove a user; their sessions end at their next request.
    Delete { customer: String, email: String },
    /// Sign a user out everywhere (a lost laptop); they can sign in again.
    SignOut { customer: String, email: String },
}

/// One admin API request.
#[derive(Debug, Clone, PartialEq)]
struct Call {
    method: &'static str,
    path: String,
    body: Option<Value>,
}

fn seg(s: &str) -> String {
    encode_segment(s).into_owned()
}

fn call(method: &'static str, path: String, body: Option<Value>) -> Call {
    Call { method, path, body }
}

fn release_path(product: &str, version: &str) -> String {
    format!("/admin/v1/products/{}/releases/{}", seg(product), seg(version))
}

/// Put `value` under `key` unless it is `None` or an empty list.
fn set(body: &mut Value, key: &str, value: impl Into<Value>) {
    let value = value.into();
    let empty = value.is_null() || value.as_array().is_some_and(Vec::is_empty);
    if !empty {
        body[key] = value;
    }
}

/// `downloads_per_day=100`: a quota field and its value (a number, or a word
/// such as `unlimited`, which the server judges).
fn parse_limit(text: &str) -> Result<(String, Value), String> {
    let (name, value) = text.split_once('=').ok_or_else(|| format!("{text:?} is not LIMIT=N"))?;
    let value = value.parse::<u64>().map_or_else(|_| json!(value), |n| json!(n));
    Ok((name.to_owned(), value))
}

fn set_quota(body: &mut Value, limits: &[(String, Value)]) {
    if !limits.is_empty() {
        body["quota"] = limits.iter().map(|(k, v)| (k.clone(), v.clone())).collect::<serde_json::Map<_, _>>().into();
    }
}

/// `?k=v&…` of the pairs with a value, values percent-encoded.
pub(super) fn query(pairs: &[(&str, Option<&str>)]) -> String {
    let parts: Vec<String> =
        pairs.iter().filter_map(|(k, v)| v.map(|v| format!("{k}={}", encode_segment(v)))).collect();
    if parts.is_empty() { String::new() } else { format!("?{}", parts.join("&")) }
}

/// The request a subcommand makes.
fn to_call(cmd: &AdminCommand, now: &str) -> Call {
    match cmd {
        AdminCommand::Product(c) => match c {
            ProductCmd::Put { id, name, delivery, cdn_profile } => {
                let mut body = json!({ "name": name });
                set(&mut body, "delivery", delivery.clone());
                set(&mut body, "cdn_profile", cdn_profile.clone());
                call("PUT", format!("/admin/v1/products/{}", seg(id)), Some(body))
            }
            ProductCmd::Get { id } => call("GET", format!("/admin/v1/products/{}", seg(id)), None),
            ProductCmd::List => call("GET", "/admin/v1/products".into(), None),
            ProductCmd::Delete { id } => call("DELETE", format!("/admin/v1/products/{}", seg(id)), None),
        },
        AdminCommand::Release(c) => match c {
            ReleaseCmd::Put { product, version, channel, critical, notes } => {
                let mut body = json!({ "channel": channel, "critical": critical });
                set(&mut body, "notes", notes.clone());
                call("PUT", release_path(product, version), Some(body))
            }
            ReleaseCmd::Get { product, version } => call("GET", release_path(product, version), None),
            ReleaseCmd::List { product } => call("GET", format!("/admin/v1/products/{}/releases", seg(product)), None),
            ReleaseCmd::Delete { product, version } => call("DELETE", release_path(product, version), None),
            ReleaseCmd::Publish { product, version, backdated_to } => {
                let mut body = json!({});
                set(&mut body, "backdated_to", backdated_to.clone());
                call("POST", format!("{}/publish", release_path(product, version)), Some(body))
            }
            ReleaseCmd::Yank { product, version } => {
                call("POST", format!("{}/yank", release_path(product, version)), None)
            }
            ReleaseCmd::Restore { product, version } => {
                call("POST", format!("{}/restore", release_path(product, version)), None)
            }
            ReleaseCmd::CutDownloads { product, version } => {
                call("POST", format!("{}/cut-downloads", release_path(product, version)), None)
            }
            ReleaseCmd::Eligible { product, version } => {
                call("GET", format!("{}/eligible-customers", release_path(product, version)), None)
            }
        },
        AdminCommand::Artifact(c) => match c {
            ArtifactCmd::Register { product, version, filename, platform, storage_key, content_type } => {
                let q = query(&[
                    ("source", Some("existing")),
                    ("platform", platform.as_deref()),
                    ("storage_key", storage_key.as_deref()),
                    ("content_type", content_type.as_deref()),
                ]);
                call("PUT", format!("{}/artifacts/{}{q}", release_path(product, version), seg(filename)), None)
            }
            ArtifactCmd::Get { product, version, filename } => {
                call("GET", format!("{}/artifacts/{}", release_path(product, version), seg(filename)), None)
            }
            ArtifactCmd::List { product, version } => {
                call("GET", format!("{}/artifacts", release_path(product, version)), None)
            }
            ArtifactCmd::Delete { product, version, filename, force } => {
                let q = query(&[("force", force.then_some("true"))]);
                call("DELETE", format!("{}/artifacts/{}{q}", release_path(product, version), seg(filename)), None)
            }
        },
        AdminCommand::Customer(c) => match c {
            CustomerCmd::Put { id, name, status, allow_cidrs, any_address, quota } => {
                let mut body = json!({ "name": name });
                set_quota(&mut body, quota);
                set(&mut body, "status", status.clone());
                set(&mut body, "allowed_cidrs", allow_cidrs.clone());
                if *any_address {
                    body["allowed_cidrs"] = json!([]);
                }
                call("PUT", format!("/admin/v1/customers/{}", seg(id)), Some(body))
            }
            CustomerCmd::Get { id } => call("GET", format!("/admin/v1/customers/{}", seg(id)), None),
            CustomerCmd::List => call("GET", "/admin/v1/customers".into(), None),
            CustomerCmd::CutDownloads { id } => {
                call("POST", format!("/admin/v1/customers/{}/cut-downloads", seg(id)), None)
            }
            CustomerCmd::FeedToken { id, revoke } => {
                let method = if *revoke { "DELETE" } else { "POST" };
                call(method, format!("/admin/v1/customers/{}/feed-token", seg(id)), None)
            }
        },
        AdminCommand::Entitle(e) => {
            let mut body = json!({
                "product": e.product,
                "license": e.license,
                "starts_at": e.starts_at.clone().unwrap_or_else(|| now.to_owned()),
            });
            set(&mut body, "expires_at", e.expires_at.clone());
            set(&mut body, "maintenance_until", e.maintenance_until.clone());
            set(&mut body, "versions", e.versions.clone());
            set(&mut body, "channels", e.channels.clone());
            set(&mut body, "platforms", e.platforms.clone());
            set(&mut body, "status", e.status.clone());
            set_quota(&mut body, &e.quota);
            let path = format!("/admin/v1/customers/{}/entitlements/{}", seg(&e.customer), seg(&e.id));
            call("PUT", path, Some(body))
        }
        AdminCommand::Entitlement(c) => match c {
            EntitlementCmd::Get { customer, id } => {
                call("GET", format!("/admin/v1/customers/{}/entitlements/{}", seg(customer), seg(id)), None)
            }
            EntitlementCmd::List { customer } => {
                call("GET", format!("/admin/v1/customers/{}/entitlements", seg(customer)), None)
            }
            EntitlementCmd::Delete { customer, id } => {
                call("DELETE", format!("/admin/v1/customers/{}/entitlements/{}", seg(customer), seg(id)), None)
            }
        },
        AdminCommand::Events(e) => call("GET", super::events::events_path(e, e.after.as_deref()), None),
        AdminCommand::Report(r) => call("GET", super::events::report_path(r), None),
        AdminCommand::Adoption { product, version } => {
            call("GET", format!("{}/adoption", release_path(product, version)), None)
        }
        AdminCommand::Webhook(c) => match c {
            WebhookCmd::Put { id, url, types, disabled } => {
                let body = json!({ "url": url, "types": types, "enabled": !disabled });
                call("PUT", format!("/admin/v1/webhooks/{}", seg(id)), Some(body))
            }
            WebhookCmd::Get { id } => call("GET", format!("/admin/v1/webhooks/{}", seg(id)), None),
            WebhookCmd::List => call("GET", "/admin/v1/webhooks".into(), None),
            WebhookCmd::Delete { id } => call("DELETE", format!("/admin/v1/webhooks/{}", seg(id)), None),
            WebhookCmd::DeadLetters { id } => call("GET", format!("/admin/v1/webhooks/{}/dead-letters", seg(id)), None),
            WebhookCmd::Redeliver { id, event } => {
                call("POST", format!("/admin/v1/webhooks/{}/dead-letters/{}/redeliver", seg(id), seg(event)), None)
            }
        },
        AdminCommand::ApiKey(c) => match c {
            ApiKeyCmd::Create { customer, name, .. } => {
                call("POST", format!("/admin/v1/customers/{}/api-keys", seg(customer)), Some(json!({ "name": name })))
            }
            ApiKeyCmd::List { customer } => {
                call("GET", format!("/admin/v1/customers/{}/api-keys", seg(customer)), None)
            }
            ApiKeyCmd::Revoke { customer, id } => {
                call("DELETE", format!("/admin/v1/customers/{}/api-keys/{}", seg(customer), seg(id)), None)
            }
        },
        AdminCommand::Portal(PortalCmd::Sso) => call("GET", "/admin/v1/portal/sso".to_owned(), None),
        AdminCommand::Portal(PortalCmd::Branding { reset: true, .. }) => {
            call("DELETE", "/admin/v1/portal/branding".to_owned(), None)
        }
        AdminCommand::Portal(PortalCmd::Branding { vendor_name: Some(name), accent_color, logo_url, .. }) => {
            let body = json!({ "vendor_name": name, "accent_color": accent_color, "logo_url": logo_url });
            call("PUT", "/admin/v1/portal/branding".to_owned(), Some(body))
        }
        AdminCommand::Portal(PortalCmd::Branding { .. }) => call("GET", "/admin/v1/portal/branding".to_owned(), None),
        AdminCommand::User(cmd) => {
            let user =
                |customer: &str, email: &str| format!("/admin/v1/customers/{}/users/{}", seg(customer), seg(email));
            match cmd {
                UserCmd::Put { customer, email, role } => {
                    call("PUT", user(customer, email), Some(json!({ "role": role })))
                }
                UserCmd::Get { customer, email } => call("GET", user(customer, email), None),
                UserCmd::List { customer } => call("GET", format!("/admin/v1/customers/{}/users", seg(customer)), None),
                UserCmd::Delete { customer, email } => call("DELETE", user(customer, email), None),
                UserCmd::SignOut { customer, email } => {
                    call("POST", format!("{}/sign-out", user(customer, email)), None)
                }
            }
        }
    }
}

/// The admin API's address and token, from flags, environment or the
/// configuration the gateway runs with.
pub fn endpoint(config: &Config, args: &ApiArgs) -> anyhow::Result<(String, String)> {
    let url = match &args.url {
        Some(u) => u.trim_end_matches('/').to_owned(),
        None => {
            let mut addr = config.admin.listen;
            if addr.ip().is_unspecified() {
                addr.set_ip(std::net::Ipv4Addr::LOCALHOST.into());
            }
            format!("http://{addr}")
        }
    };
    let token = if let Some(file) = &args.token_file {
        secret::read_secret_file("--token-file", file, config.allow_world_readable_secrets)?
    } else if let Ok(t) = std::env::var("TOLLGATE_ADMIN_TOKEN") {
        crate::config::Secret::new(t)
    } else {
        let file = config.default_admin_token_path();
        secret::read_secret_file("admin token", &file, config.allow_world_readable_secrets).with_context(|| {
            format!(
                "no admin token: set TOLLGATE_ADMIN_TOKEN (the token), TOLLGATE_ADMIN_TOKEN_FILE or --token-file \
                 (a file holding it) (tried {})",
                file.display()
            )
        })?
    };
    Ok((url, token.expose().trim().to_owned()))
}

/// Run an admin subcommand. Exit codes: 0 done, 1 the API refused (the problem
/// is printed), 2 no usable address or token, 3 the API could not be reached.
pub fn admin(config: &Config, args: &AdminArgs) -> anyhow::Result<ExitCode> {
    let (url, token) = match endpoint(config, &args.api) {
        Ok(found) => found,
        // No address or token to use: a usage problem (exit 2), like bad config.
        Err(e) => {
            eprintln!("tollgate: {e:#}");
            return Ok(ExitCode::from(2));
        }
    };
    let now = humantime::format_rfc3339_seconds(std::time::SystemTime::now()).to_string();
    let c = to_call(&args.command, &now);
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    match &args.command {
        AdminCommand::Events(e) => {
            return runtime.block_on(async { super::events::events(&AdminApi::new(&url, token)?, e).await });
        }
        AdminCommand::Report(r) => {
            return runtime.block_on(async { super::events::report(&AdminApi::new(&url, token)?, r).await });
        }
        _ => {}
    }
    let answer =
        runtime.block_on(async { AdminApi::new(&url, token)?.call(c.method, &c.path, c.body.as_ref()).await })?;
    if answer.status >= 400 {
        eprintln!("tollgate: {} {} refused: {}", c.method, c.path, answer.problem());
        return Ok(ExitCode::from(1));
    }
    let value = answer.body;
    let key_only = matches!(&args.command, AdminCommand::ApiKey(ApiKeyCmd::Create { key_only: true, .. }));
    #[expect(clippy::print_stdout, reason = "the answer is the command's output")]
    if key_only {
        println!("{}", value["key"].as_str().unwrap_or_default());
    } else if !value.is_null() {
        println!("{}", serde_json::to_string_pretty(&value)?);
    }
    Ok(ExitCode::SUCCESS)
}

#[cfg(test)]
mod tests {
    use clap::Parser as _;

    use super::*;

    fn parse(args: &[&str]) -> AdminCommand {
        let mut argv = vec!["tollgate", "admin"];
        argv.extend_from_slice(args);
        match crate::cli::Cli::try_parse_from(argv).unwrap().command {
            crate::cli::Command::Admin(a) => a.command,
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn subcommands_become_admin_api_requests() {
        let now = "2026-11-23T00:00:00Z";
        let c = to_call(&parse(&["product", "put", "app", "--name", "My App"]), now);
        assert_eq!(c, call("PUT", "/admin/v1/products/app".into(), Some(json!({ "name": "My App" }))));
        let c = to_call(&parse(&["artifact", "register", "app", "1.0.0", "My App.dmg", "--platform", "macos"]), now);
        assert_eq!(
            c.path,
            "/admin/v1/products/app/releases/1.0.0/artifacts/My%20App.dmg?source=existing&platform=macos"
        );
        let c = to_call(
            &parse(&["entitle", "acme", "e1", "--product", "app", "--versions", ">=2.1, <3", "--channel", "beta"]),
            now,
        );
        assert_eq!(c.path, "/admin/v1/customers/acme/entitlements/e1");
        assert_eq!(
            c.body.unwrap(),
            json!({ "product": "app", "license": "perpetual", "starts_at": now, "versions": ">=2.1, <3", "channels": ["beta"] })
        );
        let c = to_call(&parse(&["release", "publish", "app", "2.0.0", "--backdated-to", now]), now);
        assert_eq!(
            c,
            call("POST", "/admin/v1/products/app/releases/2.0.0/publish".into(), Some(json!({ "backdated_to": now })))
        );
        let c = to_call(&parse(&["artifact", "delete", "app", "1.0.0", "a.zip", "--force"]), now);
        assert_eq!(c.path, "/admin/v1/products/app/releases/1.0.0/artifacts/a.zip?force=true");
        let c = to_call(&parse(&["customer", "feed-token", "acme"]), now);
        assert_eq!(c, call("POST", "/admin/v1/customers/acme/feed-token".into(), None));
        let c = to_call(&parse(&["customer", "feed-token", "acme", "--revoke"]), now);
        assert_eq!(c, call("DELETE", "/admin/v1/customers/acme/feed-token".into(), None));
        let c = to_call(
            &parse(&["product", "put", "app", "--name", "A", "--delivery", "edge", "--cdn-profile", "cf"]),
            now,
        );
        assert_eq!(c.body.unwrap(), json!({ "name": "A", "delivery": "edge", "cdn_profile": "cf" }));
        let c = to_call(&parse(&["customer", "put", "acme", "--name", "Acme", "--allow-cidr", "10.0.0.0/8"]), now);
        assert_eq!(c.body.unwrap(), json!({ "name": "Acme", "allowed_cidrs": ["10.0.0.0/8"] }));
        let c = to_call(
            &parse(&[
                "customer",
                "put",
                "acme",
                "--name",
                "A",
                "--quota",
                "downloads_per_day=2",
                "--quota",
                "bytes_per_day=unlimited",
            ]),
            now,
        );
        assert_eq!(
            c.body.unwrap(),
            json!({ "name": "A", "quota": { "downloads_per_day": 2, "bytes_per_day": "unlimited" } })
        );
        assert!(
            crate::cli::Cli::try_parse_from([
                "tollgate", "admin", "customer", "put", "a", "--name", "A", "--quota", "x"
            ])
            .is_err()
        );
        let c = to_call(&parse(&["customer", "put", "acme", "--name", "Acme", "--any-address"]), now);
        assert_eq!(c.body.unwrap(), json!({ "name": "Acme", "allowed_cidrs": [] }));
        let c = to_call(&parse(&["customer", "put", "acme", "--name", "Acme", "--status", "suspended"]), now);
        assert_eq!(c.body.unwrap(), json!({ "name": "Acme", "status": "suspended" }));
        let c = to_call(&parse(&["events", "--type", "download.denied", "--customer", "acme", "--limit", "10"]), now);
        assert_eq!(c.path, "/admin/v1/events?limit=10&type=download.denied&customer=acme");
        let c = to_call(&parse(&["report", "--group-by", "release", "--from", "2026-11-01", "--csv"]), now);
        assert_eq!(c.path, "/admin/v1/reports/downloads?group_by=release&from=2026-11-01&format=csv");
        let c = to_call(&parse(&["adoption", "app", "1.0.0"]), now);
        assert_eq!(c.path, "/admin/v1/products/app/releases/1.0.0/adoption");
        let c = to_call(&parse(&["user", "put", "acme", "Ann@acme.example", "--role", "admin"]), now);
        assert_eq!(
            c,
            call("PUT", "/admin/v1/customers/acme/users/Ann%40acme.example".into(), Some(json!({ "role": "admin" })))
        );
        let c = to_call(&parse(&["user", "sign-out", "acme", "ann@acme.example"]), now);
        assert_eq!(c, call("POST", "/admin/v1/customers/acme/users/ann%40acme.example/sign-out".into(), None));
        let c =
            to_call(&parse(&["portal", "branding", "--vendor-name", "Acme Soft", "--accent-color", "#123456"]), now);
        assert_eq!(
            c,
            call(
                "PUT",
                "/admin/v1/portal/branding".into(),
                Some(json!({ "vendor_name": "Acme Soft", "accent_color": "#123456", "logo_url": null }))
            )
        );
        assert_eq!(to_call(&parse(&["portal", "branding", "--reset"]), now).method, "DELETE");
        assert_eq!(to_call(&parse(&["portal", "branding"]), now).method, "GET");
        let c = to_call(&parse(&["user", "list", "acme"]), now);
        assert_eq!(c, call("GET", "/admin/v1/customers/acme/users".into(), None));
        assert!(
            crate::cli::Cli::try_parse_from(["tollgate", "admin", "user", "put", "a", "b@c.d", "--role", "x"]).is_err()
        );
        let c = to_call(&parse(&["webhook", "put", "ops", "https://h/x", "--type", "download.denied"]), now);
        assert_eq!(
            c,
            call(
                "PUT",
                "/admin/v1/webhooks/ops".into(),
                Some(json!({ "url": "https://h/x", "types": ["download.denied"], "enabled": true }))
            )
        );
    }
}
