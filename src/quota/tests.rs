use super::*;
use crate::catalog::{CustomerStatus, EntitlementStatus, License};

/// 2026-11-24T13:00:00Z
const NOW: u64 = 1_795_525_200;

fn customer(quota: Quota) -> Customer {
    Customer { id: "acme".into(), name: "Acme".into(), status: CustomerStatus::Active, allowed_cidrs: vec![], quota }
}

fn entitlement(quota: Quota) -> Entitlement {
    Entitlement {
        id: "trial".into(),
        customer: "acme".into(),
        product: "app".into(),
        license: License::Trial,
        starts_at: Timestamp(0),
        expires_at: None,
        maintenance_until: None,
        versions: semver::VersionReq::STAR,
        channels: vec![crate::catalog::Channel::Stable],
        platforms: None,
        status: EntitlementStatus::Active,
        quota,
    }
}

fn grant() -> Grant {
    Grant {
        id: "0123456789abcdef01234567.trial".into(),
        customer: "acme".into(),
        entitlement: "trial".into(),
        product: "app".into(),
        version: semver::Version::new(1, 0, 0),
        filename: "app.tar.gz".into(),
        issued_at: Timestamp(NOW),
        expires_at: Timestamp(NOW + 900),
        started_at: None,
        requested_from: None,
    }
}

fn artifact(size: u64) -> Artifact {
    Artifact {
        product: "app".into(),
        version: semver::Version::new(1, 0, 0),
        filename: "app.tar.gz".into(),
        platform: "any".into(),
        size,
        sha256: String::new(),
        content_type: None,
        storage_key: "app/1.0.0/app.tar.gz".into(),
        etag: None,
    }
}

fn settings(defaults: Quota) -> Settings {
    Settings { defaults, resume_window: 3600, lease_ttl: 60, fail_open: false }
}

#[test]
fn periods_are_utc_calendar_days_and_months() {
    let p = Periods::at(NOW);
    assert_eq!((p.day.as_str(), p.month.as_str()), ("2026-11-24", "2026-11"));
    assert_eq!(p.day_ends, 1_795_564_800); // 2026-11-25T00:00:00Z
    assert_eq!(p.month_ends, 1_796_083_200); // 2026-12-01T00:00:00Z
    assert_eq!(p.month_len, 30 * 86_400);
    let december = Periods::at(1_798_761_599); // 2026-12-31T23:59:59Z
    assert_eq!((december.day.as_str(), december.month.as_str()), ("2026-12-31", "2026-12"));
    assert_eq!(december.month_ends, 1_798_761_600); // 2027-01-01
    assert_eq!(december.day_ends, december.month_ends);
}

#[test]
fn limits_come_from_the_entitlement_then_the_customer_then_the_default() {
    let defaults =
        Quota { downloads_per_day: Some(Limit::At(10)), bytes_per_day: Some(Limit::At(1000)), ..Quota::default() };
    let c = customer(Quota { downloads_per_day: Some(Limit::At(5)), ..Quota::default() });
    let e = entitlement(Quota {
        downloads_per_day: Some(Limit::At(2)),
        bytes_per_day: Some(Limit::Unlimited),
        ..Quota::default()
    });
    assert_eq!(
        limits_for(&defaults, &c, None),
        vec![
            Applied { kind: LimitKind::DownloadsPerDay, limit: 5, scope: Scope::Customer },
            Applied { kind: LimitKind::BytesPerDay, limit: 1000, scope: Scope::Customer },
        ]
    );
    // "unlimited" on the entitlement lifts the default for its downloads.
    assert_eq!(
        limits_for(&defaults, &c, Some(&e)),
        vec![Applied { kind: LimitKind::DownloadsPerDay, limit: 2, scope: Scope::Entitlement("trial".into()) }]
    );
}

#[test]
fn a_plan_counts_both_scopes_and_limits_the_one_in_force() {
    let s = settings(Quota::default());
    let limits = vec![
        Applied { kind: LimitKind::DownloadsPerDay, limit: 2, scope: Scope::Entitlement("trial".into()) },
        Applied { kind: LimitKind::BytesPerMonth, limit: 100, scope: Scope::Customer },
        Applied { kind: LimitKind::ConcurrentDownloads, limit: 1, scope: Scope::Customer },
    ];
    let plan = plan(&grant(), &artifact(40), &limits, &s, NOW);
    let limited: Vec<(&str, &str, u64, u64)> = plan
        .steps
        .iter()
        .filter_map(|st| st.limit.map(|l| (st.counter.bucket.as_str(), st.counter.field.as_str(), st.add, l)))
        .collect();
    assert_eq!(limited, vec![("d:2026-11-24", "e:trial:n", 1, 2), ("m:2026-11", "b", 40, 100)]);
    // Every counter is kept in both scopes, limited or not.
    assert_eq!(plan.steps.len(), 10);
    assert!(plan.steps.iter().any(|st| st.counter.field == "app/1.0.0/app.tar.gz" && st.counter.ttl.is_none()));
    assert_eq!(
        plan.leases,
        vec![LeaseStep { set: "l".into(), limit: Some(1) }, LeaseStep { set: "l:trial".into(), limit: None }]
    );
    // Marked started until the grant is no longer resumable.
    assert_eq!(plan.started_ttl, 900 + 3600);

    let day = plan
        .steps
        .iter()
        .position(|st| st.counter.field == "e:trial:n" && st.counter.bucket.starts_with("d:"))
        .unwrap();
    let e = plan.exceeded(day, 2, None).unwrap();
    assert_eq!(e.limit.kind, LimitKind::DownloadsPerDay);
    assert_eq!(e.retry_after, Some(1_795_564_800 - NOW));
    let lease = plan.steps.len();
    assert_eq!(plan.exceeded(lease, 1, Some(NOW + 42)).unwrap().retry_after, Some(42));
    // Unlimited steps cannot be what refused.
    assert_eq!(plan.exceeded(0, 0, None), None);
}

#[test]
fn a_file_larger_than_the_period_allows_has_no_retry_after() {
    let usage = [Usage {
        limit: Applied { kind: LimitKind::BytesPerDay, limit: 100, scope: Scope::Customer },
        used: 0,
        resets_at: Some(NOW + 10),
    }];
    assert_eq!(first_exceeded(&usage, 100, NOW), None);
    let e = first_exceeded(&usage, 101, NOW).unwrap();
    assert_eq!((e.used, e.retry_after), (0, None));
    let usage = [Usage { used: 60, ..usage[0].clone() }];
    assert_eq!(first_exceeded(&usage, 50, NOW).unwrap().retry_after, Some(10));
}

#[test]
fn ratelimit_fields_follow_the_draft() {
    let usage = [
        Usage {
            limit: Applied { kind: LimitKind::DownloadsPerDay, limit: 5, scope: Scope::Customer },
            used: 2,
            resets_at: Some(NOW + 100),
        },
        Usage {
            limit: Applied { kind: LimitKind::BytesPerMonth, limit: 1000, scope: Scope::Entitlement("e1".into()) },
            used: 1500,
            resets_at: Some(NOW + 200),
        },
        Usage {
            limit: Applied { kind: LimitKind::ConcurrentDownloads, limit: 2, scope: Scope::Customer },
            used: 1,
            resets_at: None,
        },
    ];
    let (policy, current) = ratelimit_fields(&usage, NOW).unwrap();
    assert_eq!(
        policy,
        r#""downloads_per_day";q=5;w=86400, "bytes_per_month.e1";q=1000;qu="content-bytes";w=2592000, "concurrent_downloads";q=2;qu="concurrent-requests""#
    );
    assert_eq!(current, r#""downloads_per_day";r=3;t=100, "bytes_per_month.e1";r=0;t=200, "concurrent_downloads";r=1"#);
    assert_eq!(ratelimit_fields(&[], NOW), None);
}

#[test]
fn limits_read_numbers_or_unlimited() {
    let q: Quota = serde_json::from_str(r#"{"downloads_per_day": 3, "bytes_per_day": "unlimited"}"#).unwrap();
    assert_eq!((q.downloads_per_day, q.bytes_per_day), (Some(Limit::At(3)), Some(Limit::Unlimited)));
    assert_eq!(serde_json::to_string(&q).unwrap(), r#"{"downloads_per_day":3,"bytes_per_day":"unlimited"}"#);
    for bad in [r#"{"downloads_per_day": -1}"#, r#"{"downloads_per_day": "lots"}"#, r#"{"per_hour": 1}"#] {
        assert!(serde_json::from_str::<Quota>(bad).is_err(), "{bad}");
    }
}
