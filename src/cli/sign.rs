//! `tollgate sign` and `tollgate verify`.

use std::net::IpAddr;
use std::process::ExitCode;
use std::time::{Duration, UNIX_EPOCH};

use anyhow::Context as _;
use ipnet::IpNet;

use crate::clock::{Clock, SystemClock};
use crate::config::Config;
use crate::signing::{Claims, Presented, RawToken, UrlScope, canonical_path, encode_path, signed_url};

#[derive(Debug, clap::Args)]
pub struct SignArgs {
    /// What to sign: `/d/{product}/{version}/{filename}` or just
    /// `{product}/{version}/{filename}`, written plainly (spaces and non-ASCII
    /// are percent-encoded for you). With --prefix, a directory ending in '/'.
    path: String,
    /// Lifetime of the URL, e.g. 90s, 15m, 2h, 7d. Default: signing.default_ttl.
    #[arg(long)]
    ttl: Option<humantime::Duration>,
    /// Customer id bound into the URL.
    #[arg(long)]
    customer: Option<String>,
    /// Grant id bound into the URL.
    #[arg(long)]
    grant: Option<String>,
    /// Sign the path as a prefix: the URL works for every file under it.
    #[arg(long)]
    prefix: bool,
    /// Only clients in this network may use the URL: 203.0.113.0/24, 2001:db8::/32
    /// or a single address.
    #[arg(long, value_name = "CIDR")]
    cidr: Option<String>,
    /// The URL is not valid before this delay from now, e.g. 10m.
    #[arg(long, value_name = "DELAY")]
    not_before: Option<humantime::Duration>,
    /// Scheme and host of the URL. Default: server.public_url.
    #[arg(long, value_name = "URL", conflicts_with = "profile")]
    base_url: Option<String>,
    /// Make the URL in this CDN profile's format ([[cdn.profiles]] id), for
    /// its base URL, with its active key and lifetime (unless --ttl).
    #[arg(long, value_name = "ID", conflicts_with = "customer")]
    profile: Option<String>,
}

#[derive(Debug, clap::Args)]
pub struct VerifyArgs {
    /// The URL to check: a full URL or a path with its query string.
    url: String,
    /// The client address the URL would be used from (for network-bound URLs).
    #[arg(long, value_name = "IP")]
    client_ip: Option<IpAddr>,
    /// Check as of this Unix time instead of now.
    #[arg(long, value_name = "UNIX_SECONDS")]
    at: Option<u64>,
    /// Check the URL as this CDN profile's format ([[cdn.profiles]] id).
    /// Without it, a URL with no native token is tried against every
    /// profile whose token it carries.
    #[arg(long, value_name = "ID")]
    profile: Option<String>,
    /// The request's `Cookie` header, for tokens that travel in cookies.
    #[arg(long, value_name = "COOKIES")]
    cookie: Option<String>,
    /// The token header's value, for Akamai tokens sent in a header.
    #[arg(long, value_name = "VALUE")]
    token_header: Option<String>,
}

pub fn sign(config: &Config, args: &SignArgs) -> anyhow::Result<()> {
    let path = download_path(&args.path);
    check_scope(&path, args.prefix)?;
    if let Some(id) = &args.profile {
        return sign_for_cdn(config, args, id, &path);
    }
    let ttl = args.ttl.map_or(config.signing.default_ttl, Duration::from);
    anyhow::ensure!(ttl.as_secs() > 0, "--ttl must be at least one second: the URL would have expired already");
    let client_net = args.cidr.as_deref().map(parse_cidr).transpose()?;
    let (keys, _) = crate::app::existing_key_ring(config)?;
    let scope = if args.prefix { UrlScope::Prefix(path) } else { UrlScope::Path(path) };
    let now = SystemClock.now_unix();
    let claims = Claims {
        scope,
        expires: now.saturating_add(ttl.as_secs().max(1)),
        not_before: args.not_before.map(|d| now.saturating_add(Duration::from(d).as_secs())),
        customer: args.customer.clone(),
        grant: args.grant.clone(),
        client_net,
    };
    let query = keys.sign(&claims).context("cannot sign")?;
    let base = args.base_url.as_deref().unwrap_or(&config.server.public_url);
    #[expect(clippy::print_stdout, reason = "the URL is the command's output")]
    {
        println!("{}", signed_url(base, claims.scope.as_str(), &query));
    }
    Ok(())
}

/// `tollgate sign --profile`: a URL in a CDN's format.
#[expect(clippy::print_stdout, reason = "the URL is the command's output")]
fn sign_for_cdn(config: &Config, args: &SignArgs, id: &str, path: &str) -> anyhow::Result<()> {
    let profile = cdn_profile(config, id)?;
    let ttl = args.ttl.map_or(profile.lifetime, Duration::from);
    anyhow::ensure!(ttl.as_secs() > 0, "--ttl must be at least one second: the URL would have expired already");
    let now = SystemClock.now_unix();
    let client = args.cidr.as_deref().map(parse_cidr).transpose()?;
    // A prefix URL is made for the prefix itself; the path it names must
    // be one of the files under it.
    let file = if args.prefix { format!("{path}file") } else { path.to_owned() };
    let minted = profile
        .mint(&crate::cdn::Mint {
            path: &file,
            prefix: args.prefix.then_some(path),
            starts: args.not_before.map(|d| now.saturating_add(Duration::from(d).as_secs())),
            expires: now.saturating_add(ttl.as_secs()),
            client,
            session: args.grant.as_deref(),
        })
        .map_err(|e| super::UsageError(format!("profile {id:?} cannot sign this: {e}")))?;
    let url = if args.prefix { minted.url.replacen(&file, path, 1) } else { minted.url };
    println!("{url}");
    for (name, value) in &minted.cookies {
        println!("Set-Cookie: {name}={value}; Path=/; Secure; HttpOnly");
    }
    for (name, value) in &minted.headers {
        println!("{name}: {value}");
    }
    Ok(())
}

/// One configured CDN profile, its keys loaded.
fn cdn_profile(config: &Config, id: &str) -> anyhow::Result<crate::cdn::Profile> {
    let c = config.cdn.profile(id).ok_or_else(|| {
        let known: Vec<&str> = config.cdn.profiles.iter().map(|p| p.id.as_str()).collect();
        super::UsageError(format!("no CDN profile {id:?} in the configuration (known: {known:?})"))
    })?;
    Ok(crate::cdn::Profile::load(c, config.allow_world_readable_secrets)?)
}

/// `tollgate verify` for a CDN's URL: each field the token states, then the
/// verdict.
#[expect(clippy::print_stdout, reason = "the report is the command's output")]
fn verify_for_cdn(profile: &crate::cdn::Profile, offered: &crate::cdn::Offered<'_>) -> ExitCode {
    let now = offered.now;
    println!("path:        {}", offered.path);
    println!("profile:     {} ({}, {})", profile.id, profile.kind.as_str(), profile.base_url);
    match profile.verify(offered) {
        Ok(accepted) => {
            println!("key id:      {}", accepted.key);
            println!("expires:     {}", describe_time(accepted.expires, now));
            for (name, value) in &accepted.fields {
                println!("{:<12} {value}", format!("{name}:"));
            }
            println!("result:      VALID");
            ExitCode::SUCCESS
        }
        Err(e) => {
            println!("result:      INVALID ({}): {e}", e.code());
            ExitCode::from(1)
        }
    }
}

/// `app/1.0/x.zip` and `/d/app/1.0/x.zip` both mean `/d/app/1.0/x.zip`.
fn download_path(input: &str) -> String {
    let trimmed = input.trim_start_matches('/');
    let full = if trimmed.starts_with("d/") { format!("/{trimmed}") } else { format!("/d/{trimmed}") };
    encode_path(&full).into_owned()
}

/// Refuse what no gateway would ever serve: a file path must name
/// `/d/{product}/{version}/{filename}`; a prefix must end in `/` and stop
/// at the product or the version (a file's path has exactly three segments,
/// so a deeper prefix matches nothing).
fn check_scope(path: &str, prefix: bool) -> anyhow::Result<()> {
    if !prefix {
        crate::downloads::object_key_for_path(path).map_err(|_| {
            anyhow::anyhow!("{path:?} is not a downloadable path: use {{product}}/{{version}}/{{filename}}")
        })?;
        return Ok(());
    }
    let inner = path.strip_prefix("/d/").and_then(|p| p.strip_suffix('/'));
    let depth = inner.map(|p| p.split('/').collect::<Vec<_>>());
    match depth {
        Some(segments) if (1..=2).contains(&segments.len()) && segments.iter().all(|s| !s.is_empty()) => {
            let mut probe = segments.clone();
            probe.resize(3, "probe");
            crate::downloads::object_key_for_path(&format!("/d/{}", probe.join("/")))
                .map(|_| ())
                .map_err(|_| anyhow::anyhow!("--prefix {path:?} holds a segment no file path can have"))
        }
        _ => anyhow::bail!(
            "--prefix {path:?} matches no file: use {{product}}/ or {{product}}/{{version}}/ (ending in '/')"
        ),
    }
}

fn parse_cidr(s: &str) -> anyhow::Result<IpNet> {
    let net = s
        .parse::<IpNet>()
        .or_else(|_| s.parse::<IpAddr>().map(IpNet::from))
        .with_context(|| format!("--cidr {s:?} is neither a network nor an address"))?;
    // Clients' IPv4-mapped addresses are compared as IPv4, so a mapped
    // network would never match.
    if let IpNet::V6(v6) = net
        && v6.addr().to_ipv4_mapped().is_some()
    {
        anyhow::bail!("--cidr {s:?} is an IPv4-mapped network: write it as IPv4");
    }
    Ok(net)
}

/// Split a URL into its path and query; the scheme and host are not signed.
fn split_url(url: &str) -> (&str, &str) {
    let without_fragment = url.split('#').next().unwrap_or(url);
    let after_scheme = match without_fragment.find("://") {
        Some(i) => {
            let rest = &without_fragment[i + 3..];
            rest.find('/').map_or("/", |j| &rest[j..])
        }
        None => without_fragment,
    };
    after_scheme.split_once('?').unwrap_or((after_scheme, ""))
}

/// The last second RFC 3339 can write (9999-12-31T23:59:59Z).
const LAST_RFC3339_SECOND: u64 = 253_402_300_799;

fn describe_time(t: u64, now: u64) -> String {
    // The spec allows 19 digits; a date past year 9999 cannot be written
    // (nor, on some systems, held by the clock).
    let when = match UNIX_EPOCH.checked_add(Duration::from_secs(t)) {
        Some(at) if t <= LAST_RFC3339_SECOND => humantime::format_rfc3339_seconds(at).to_string(),
        _ => "after the year 9999".to_owned(),
    };
    let rel = if t >= now {
        format!("in {}", humantime::format_duration(Duration::from_secs(t - now)))
    } else {
        format!("{} ago", humantime::format_duration(Duration::from_secs(now - t)))
    };
    format!("{t} = {when} ({rel})")
}

#[expect(clippy::print_stdout, reason = "the report is the command's output")]
pub fn verify(config: &Config, args: &VerifyArgs) -> anyhow::Result<ExitCode> {
    let now = args.at.unwrap_or_else(|| SystemClock.now_unix());
    let (path, query) = split_url(&args.url);
    let offered = crate::cdn::Offered {
        path,
        query,
        cookies: args.cookie.as_deref(),
        header: args.token_header.as_deref(),
        client: args.client_ip,
        now,
        skew: config.signing.clock_skew.as_secs(),
    };
    if let Some(id) = &args.profile {
        return Ok(verify_for_cdn(&cdn_profile(config, id)?, &offered));
    }
    if RawToken::from_query(query).is_err() && !config.cdn.profiles.is_empty() {
        let profiles = crate::cdn::Profiles::load(&config.cdn, config.allow_world_readable_secrets)?;
        if let Some(profile) = profiles.iter().find(|p| p.offered(&offered)) {
            return Ok(verify_for_cdn(profile, &offered));
        }
    }
    let (keys, _) = crate::app::existing_key_ring(config)?;
    println!("path:        {path}");
    match RawToken::from_query(query) {
        Err(reason) => println!("token:       unreadable: {reason}"),
        Ok(t) => {
            let known = if keys.key_ids().contains(&t.kid) { "in the key ring" } else { "NOT in the key ring" };
            println!("key id:      {} ({known})", t.kid);
            match t.pfx {
                Some(p) => println!("scope:       every path under {p}"),
                None => println!("scope:       exactly this path"),
            }
            if let Ok(exp) = t.exp.parse() {
                println!("expires:     {}", describe_time(exp, now));
            }
            match t.nbf.and_then(|n| n.parse().ok()) {
                Some(nbf) => println!("not before:  {}", describe_time(nbf, now)),
                None => println!("not before:  -"),
            }
            println!("customer:    {}", t.cid.unwrap_or("-"));
            println!("grant:       {}", t.gid.unwrap_or("-"));
            println!("network:     {}", t.ip.unwrap_or("any"));
            if let Ok(canonical) = canonical_path(path) {
                println!("signed text:");
                for line in t.canonical_string(&canonical).lines() {
                    println!("    {line}");
                }
            }
        }
    }
    let presented =
        Presented { path, query, client_ip: args.client_ip, now, skew: config.signing.clock_skew.as_secs() };
    match keys.verify(&presented) {
        Ok(_) => {
            println!("result:      VALID");
            Ok(ExitCode::SUCCESS)
        }
        Err(e) => {
            println!("result:      INVALID ({}): {e}", e.code());
            Ok(ExitCode::from(1))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_and_urls() {
        assert_eq!(download_path("app/1.0/My App.dmg"), "/d/app/1.0/My%20App.dmg");
        assert_eq!(download_path("/d/app/1.0/x.zip"), "/d/app/1.0/x.zip");
        assert_eq!(split_url("https://h:8080/d/a/b/c?exp=1&sig=2#frag"), ("/d/a/b/c", "exp=1&sig=2"));
        assert_eq!(split_url("/d/a/b/c?x"), ("/d/a/b/c", "x"));
        assert_eq!(split_url("http://h"), ("/", ""));
        assert!(parse_cidr("10.0.0.1").is_ok());
        assert!(parse_cidr("10.0.0.0/33").is_err());
        assert!(parse_cidr("2001:db8::/32").is_ok());
        assert!(parse_cidr("::ffff:10.0.0.1").is_err());
        assert!(parse_cidr("::ffff:10.0.0.0/104").is_err());
    }

    #[test]
    fn only_servable_scopes_are_signed() {
        for ok in ["app/1.0/x.zip", "/d/app/1.0/My App.dmg"] {
            assert!(check_scope(&download_path(ok), false).is_ok(), "{ok}");
        }
        for bad in ["app/1.0", "app/1.0/x/y.zip", "app//x.zip", "app/../x/y", "app/1.0/.hidden"] {
            assert!(check_scope(&download_path(bad), false).is_err(), "{bad}");
        }
        for ok in ["app/", "app/1.0/", "/d/app/1.0/"] {
            assert!(check_scope(&download_path(ok), true).is_ok(), "{ok}");
        }
        for bad in ["app", "app/1.0", "app/1.0/sub/", "/d/", "app//", "../"] {
            assert!(check_scope(&download_path(bad), true).is_err(), "{bad}");
        }
    }

    #[test]
    fn any_timestamp_the_spec_allows_is_described() {
        for t in [0, 1, LAST_RFC3339_SECOND, LAST_RFC3339_SECOND + 1, 9_999_999_999_999_999_999, u64::MAX] {
            let text = describe_time(t, 1_800_000_000);
            assert!(text.starts_with(&t.to_string()), "{text}");
        }
        assert!(describe_time(LAST_RFC3339_SECOND + 1, 0).contains("after the year 9999"));
        assert!(describe_time(0, 0).contains("1970-01-01T00:00:00Z"));
    }
}
