use semver::{Version, VersionReq};

use super::*;
use crate::catalog::{Channel, License};

const NOW: u64 = 1_800_000_000;

fn customer() -> Customer {
    Customer {
        id: "acme".into(),
        name: "Acme".into(),
        status: CustomerStatus::Active,
        allowed_cidrs: vec![],
        quota: Default::default(),
    }
}

fn release(version: &str, channel: Channel) -> Release {
    Release {
        product: "app".into(),
        version: Version::parse(version).unwrap(),
        channel,
        status: ReleaseStatus::Published,
        published_at: Some(Timestamp(NOW - 1000)),
        critical: false,
        notes: None,
        rollout: None,
        minimum_system_version: None,
    }
}

fn artifact(platform: &str) -> Artifact {
    Artifact {
        product: "app".into(),
        version: Version::parse("2.0.0").unwrap(),
        filename: "app.tar.gz".into(),
        platform: platform.into(),
        size: 1,
        sha256: "00".repeat(32),
        sha512: None,
        content_type: None,
        storage_key: "app/2.0.0/app.tar.gz".into(),
        etag: None,
        status: Default::default(),
        signature: None,
    }
}

fn entitlement() -> Entitlement {
    Entitlement {
        id: "e1".into(),
        customer: "acme".into(),
        product: "app".into(),
        license: License::Subscription,
        starts_at: Timestamp(NOW - 86_400),
        expires_at: Some(Timestamp(NOW + 86_400)),
        maintenance_until: None,
        versions: VersionReq::STAR,
        channels: vec![Channel::Stable],
        platforms: None,
        status: EntitlementStatus::Active,
        quota: Default::default(),
    }
}

struct Case {
    name: &'static str,
    customer: Customer,
    entitlements: Vec<Entitlement>,
    release: Release,
    artifact: Artifact,
    now: u64,
    want: Result<&'static str, Denial>,
}

fn case(name: &'static str) -> Case {
    Case {
        name,
        customer: customer(),
        entitlements: vec![entitlement()],
        release: release("2.0.0", Channel::Stable),
        artifact: artifact("linux-x86_64"),
        now: NOW,
        want: Ok("e1"),
    }
}

fn with_ent(name: &'static str, f: impl FnOnce(&mut Entitlement)) -> Case {
    let mut c = case(name);
    f(&mut c.entitlements[0]);
    c
}

fn req(s: &str) -> VersionReq {
    VersionReq::parse(s).unwrap()
}

fn cases() -> Vec<Case> {
    use Denial::*;
    let mut v = vec![case("plain allow")];

    let mut c = case("suspended customer");
    c.customer.status = CustomerStatus::Suspended;
    c.want = Err(CustomerSuspended);
    v.push(c);

    let mut c = case("no entitlements");
    c.entitlements.clear();
    c.want = Err(NotEntitled);
    v.push(c);
    v.push(Case {
        want: Err(NotEntitled),
        ..with_ent("entitlement for another product", |e| e.product = "other".into())
    });
    v.push(Case {
        want: Err(NotEntitled),
        ..with_ent("entitlement of another customer", |e| e.customer = "globex".into())
    });

    let mut c = case("draft release");
    c.release.status = ReleaseStatus::Draft;
    c.want = Err(ReleaseNotPublished);
    v.push(c);
    let mut c = case("yanked release");
    c.release.status = ReleaseStatus::Yanked;
    c.want = Err(ReleaseYanked);
    v.push(c);
    let mut c = case("not entitled beats yanked (nothing revealed)");
    c.release.status = ReleaseStatus::Yanked;
    c.entitlements.clear();
    c.want = Err(NotEntitled);
    v.push(c);

    v.push(Case {
        want: Err(EntitlementInactive),
        ..with_ent("suspended", |e| e.status = EntitlementStatus::Suspended)
    });
    v.push(Case { want: Err(EntitlementInactive), ..with_ent("revoked", |e| e.status = EntitlementStatus::Revoked) });

    v.push(with_ent("starts exactly now", |e| e.starts_at = Timestamp(NOW)));
    v.push(Case { want: Err(EntitlementNotStarted), ..with_ent("starts in 1s", |e| e.starts_at = Timestamp(NOW + 1)) });
    v.push(with_ent("expires in 1s", |e| e.expires_at = Some(Timestamp(NOW + 1))));
    v.push(Case {
        want: Err(EntitlementExpired),
        ..with_ent("expires exactly now", |e| e.expires_at = Some(Timestamp(NOW)))
    });
    v.push(with_ent("perpetual, no expiry", |e| {
        e.license = License::Perpetual;
        e.expires_at = None;
    }));

    v.push(with_ent("^2 covers 2.0.0", |e| e.versions = req("^2")));
    let mut c = with_ent("^2 does not cover 3.0.0", |e| e.versions = req("^2"));
    c.release = release("3.0.0", Channel::Stable);
    c.want = Err(VersionNotCovered);
    v.push(c);
    let mut c = with_ent(">=2.1, <3 does not cover 2.0.9", |e| e.versions = req(">=2.1, <3"));
    c.release = release("2.0.9", Channel::Stable);
    c.want = Err(VersionNotCovered);
    v.push(c);
    let mut c = with_ent(">=2.1, <3 covers 2.1.0", |e| e.versions = req(">=2.1, <3"));
    c.release = release("2.1.0", Channel::Stable);
    v.push(c);
    let mut c = with_ent(">=2.1, <3 excludes 3.0.0", |e| e.versions = req(">=2.1, <3"));
    c.release = release("3.0.0", Channel::Stable);
    c.want = Err(VersionNotCovered);
    v.push(c);
    let mut c = with_ent("^2 does not match a pre-release (semver)", |e| {
        e.versions = req("^2");
        e.channels = vec![Channel::Beta];
    });
    c.release = release("2.1.0-beta.1", Channel::Beta);
    c.want = Err(VersionNotCovered);
    v.push(c);
    let mut c = with_ent("a pre-release comparator matches its pre-releases", |e| {
        e.versions = req(">=2.1.0-beta.1");
        e.channels = vec![Channel::Beta];
    });
    c.release = release("2.1.0-beta.2", Channel::Beta);
    v.push(c);
    let mut c = with_ent("default * covers pre-releases", |e| e.channels = vec![Channel::Rc]);
    c.release = release("3.0.0-rc.1", Channel::Rc);
    v.push(c);

    for (ent, rel, ok) in [
        (vec![Channel::Stable], Channel::Rc, false),
        (vec![Channel::Rc], Channel::Stable, true),
        (vec![Channel::Rc], Channel::Rc, true),
        (vec![Channel::Rc], Channel::Beta, false),
        (vec![Channel::Beta], Channel::Rc, true),
        (vec![Channel::Alpha], Channel::Beta, true),
        (vec![Channel::Alpha], Channel::Dev, false),
        (vec![Channel::Dev], Channel::Stable, false),
        (vec![Channel::Dev], Channel::Dev, true),
        (vec![Channel::Stable, Channel::Dev], Channel::Dev, true),
    ] {
        let mut c = with_ent("channel inclusion", |e| e.channels = ent);
        c.release.channel = rel;
        c.want = if ok { Ok("e1") } else { Err(ChannelNotCovered) };
        v.push(c);
    }

    let linux = || Some(vec!["linux-x86_64".to_owned()]);
    let mut c = with_ent("platform listed", |e| e.platforms = linux());
    c.artifact = artifact("linux-x86_64");
    v.push(c);
    let mut c = with_ent("platform not listed", |e| e.platforms = linux());
    c.artifact = artifact("windows-x86_64");
    c.want = Err(PlatformNotCovered);
    v.push(c);
    let mut c = with_ent("artifact for any platform", |e| e.platforms = linux());
    c.artifact = artifact("any");
    v.push(c);
    let mut c = with_ent("entitlement to any platform", |e| e.platforms = Some(vec!["any".into()]));
    c.artifact = artifact("macos-aarch64");
    v.push(c);

    v.push(with_ent("published exactly at maintenance end", |e| e.maintenance_until = Some(Timestamp(NOW - 1000))));
    v.push(Case {
        want: Err(OutsideMaintenance),
        ..with_ent("published 1s after maintenance end", |e| e.maintenance_until = Some(Timestamp(NOW - 1001)))
    });
    let mut c = with_ent("no publication time under maintenance", |e| e.maintenance_until = Some(Timestamp(NOW)));
    c.release.published_at = None;
    c.want = Err(OutsideMaintenance);
    v.push(c);

    let mut c = case("second entitlement allows");
    let mut expired = entitlement();
    expired.id = "old".into();
    expired.expires_at = Some(Timestamp(NOW - 1));
    let mut good = entitlement();
    good.id = "new".into();
    c.entitlements = vec![expired.clone(), good];
    c.want = Ok("new");
    v.push(c);
    let mut c = case("refusal names the entitlement that got furthest");
    let mut narrow = entitlement();
    narrow.id = "narrow".into();
    narrow.versions = req("^1");
    c.entitlements = vec![expired, narrow];
    c.want = Err(VersionNotCovered);
    v.push(c);
    v
}

#[test]
fn decision_table() {
    for c in cases() {
        let got =
            decide(&c.customer, &c.entitlements, &c.release, &c.artifact, Timestamp(c.now)).map(|e| e.id.as_str());
        assert_eq!(got, c.want, "{}", c.name);
    }
}

#[test]
fn every_denial_has_a_distinct_code() {
    use Denial::*;
    let all = [
        CustomerSuspended,
        NotEntitled,
        ReleaseNotPublished,
        ReleaseYanked,
        EntitlementInactive,
        EntitlementNotStarted,
        EntitlementExpired,
        VersionNotCovered,
        ChannelNotCovered,
        PlatformNotCovered,
        OutsideMaintenance,
    ];
    let codes: std::collections::HashSet<_> = all.iter().map(|d| d.code()).collect();
    assert_eq!(codes.len(), all.len());
}

#[test]
fn timestamps_round_trip_as_rfc3339() {
    let t = Timestamp(1_767_225_600);
    let json = serde_json::to_string(&t).unwrap();
    assert_eq!(json, "\"2026-01-01T00:00:00Z\"");
    assert_eq!(serde_json::from_str::<Timestamp>(&json).unwrap(), t);
    assert!(serde_json::from_str::<Timestamp>("\"yesterday\"").is_err());
}

#[test]
fn entitlement_defaults_from_json() {
    let e: Entitlement = serde_json::from_value(serde_json::json!({
        "id": "e1", "customer": "acme", "product": "app", "license": "term",
        "starts_at": "2026-01-01T00:00:00Z", "expires_at": null, "maintenance_until": null, "status": "active"
    }))
    .unwrap();
    assert_eq!(e.versions, VersionReq::STAR);
    assert_eq!(e.channels, vec![Channel::Stable]);
    assert_eq!(e.platforms, None);
}
