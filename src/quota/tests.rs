use super::*;
use crate::catalog::{CustomerStatus, EntitlementStatus, License, Timestamp};

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
            Applied { kind: LimitKind::DownloadsPerDay, limit: 5, scope: QuotaScope::Customer },
            Applied { kind: LimitKind::BytesPerDay, limit: 1000, scope: QuotaScope::Customer },
        ]
    );
    // "unlimited" on the entitlement lifts the default for its downloads.
    assert_eq!(
        limits_for(&defaults, &c, Some(&e)),
        vec![Applied { kind: LimitKind::DownloadsPerDay, limit: 2, scope: QuotaScope::Entitlement("trial".into()) }]
    );
}

#[test]
fn a_file_larger_than_the_period_allows_has_no_retry_after() {
    let usage = [Usage {
        limit: Applied { kind: LimitKind::BytesPerDay, limit: 100, scope: QuotaScope::Customer },
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
fn limits_read_numbers_or_unlimited() {
    let q: Quota = serde_json::from_str(r#"{"downloads_per_day": 3, "bytes_per_day": "unlimited"}"#).unwrap();
    assert_eq!((q.downloads_per_day, q.bytes_per_day), (Some(Limit::At(3)), Some(Limit::Unlimited)));
    assert_eq!(serde_json::to_string(&q).unwrap(), r#"{"downloads_per_day":3,"bytes_per_day":"unlimited"}"#);
    for bad in [r#"{"downloads_per_day": -1}"#, r#"{"downloads_per_day": "lots"}"#, r#"{"per_hour": 1}"#] {
        assert!(serde_json::from_str::<Quota>(bad).is_err(), "{bad}");
    }
}
