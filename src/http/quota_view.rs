//! How quota usage is shown to clients: the `LimitView` in `GET /v1/usage`
//! and in a `quota_exceeded` problem, and the `RateLimit-Policy` /
//! `RateLimit` header fields.

#![allow(
    unused_qualifications,
    reason = "utoipa's generated schema code names types defined in this module by a qualified path"
)]

use serde::Serialize;
use utoipa::ToSchema;

use crate::catalog::Timestamp;
use crate::quota::{Applied, Exceeded, LimitKind, Periods, QuotaScope, Usage};

/// One limit as clients see it: in `GET /v1/usage`, and in a
/// `quota_exceeded` problem.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, ToSchema)]
pub struct LimitView {
    pub name: LimitKind,
    /// `customer`: counted over all of the customer's downloads;
    /// `entitlement`: over the downloads under `entitlement`.
    pub scope: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub entitlement: Option<String>,
    /// For `downloads_per_artifact`: `product/version/filename`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub artifact: Option<String>,
    pub limit: u64,
    pub used: u64,
    pub remaining: u64,
    /// When the period's counter starts again from zero (period limits).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub resets_at: Option<Timestamp>,
}

impl LimitView {
    pub fn new(applied: &Applied, used: u64, resets_at: Option<u64>, artifact: Option<&str>) -> Self {
        let (scope, entitlement) = match &applied.scope {
            QuotaScope::Customer => ("customer", None),
            QuotaScope::Entitlement(e) => ("entitlement", Some(e.clone())),
        };
        Self {
            name: applied.kind,
            scope,
            entitlement,
            artifact: artifact.filter(|_| applied.kind == LimitKind::DownloadsPerArtifact).map(str::to_owned),
            limit: applied.limit,
            used,
            remaining: applied.limit.saturating_sub(used),
            resets_at: resets_at.map(Timestamp),
        }
    }
}

/// The limit that refused a download.
pub fn of_exceeded(e: &Exceeded) -> LimitView {
    LimitView::new(&e.limit, e.used, e.resets_at, None)
}

/// Usage against one limit; `artifact` names the file of a per-artifact limit.
pub fn of_usage(u: &Usage, artifact: Option<&str>) -> LimitView {
    LimitView::new(&u.limit, u.used, u.resets_at, artifact)
}

/// The `RateLimit-Policy` and `RateLimit` field values (IETF httpapi
/// draft-ietf-httpapi-ratelimit-headers-10) for `usage`: one policy per
/// limit, named after it (`"downloads_per_day"`, or
/// `"downloads_per_day.<entitlement>"` for an entitlement's own), with its
/// quota `q`, window `w` and quota unit `qu` (bytes are `content-bytes`,
/// concurrency `concurrent-requests`, downloads the default `requests`);
/// `RateLimit` says what `r`emains and in how many seconds `t` it resets.
/// Per-artifact limits have no window and are left out. `None` when no limit
/// applies.
pub fn ratelimit_fields(usage: &[Usage], now: u64) -> Option<(String, String)> {
    let month_len = Periods::at(now).month_len;
    let (mut policy, mut current) = (Vec::new(), Vec::new());
    for u in usage {
        let name = match &u.limit.scope {
            QuotaScope::Customer => u.limit.kind.as_str().to_owned(),
            QuotaScope::Entitlement(e) => format!("{}.{e}", u.limit.kind),
        };
        let (window, unit) = match u.limit.kind {
            LimitKind::DownloadsPerDay => (Some(86_400), None),
            LimitKind::DownloadsPerMonth => (Some(month_len), None),
            LimitKind::BytesPerDay => (Some(86_400), Some("content-bytes")),
            LimitKind::BytesPerMonth => (Some(month_len), Some("content-bytes")),
            LimitKind::ConcurrentDownloads => (None, Some("concurrent-requests")),
            LimitKind::DownloadsPerArtifact => continue,
        };
        let mut p = format!("\"{name}\";q={}", u.limit.limit);
        if let Some(unit) = unit {
            p.push_str(&format!(";qu=\"{unit}\""));
        }
        if let Some(w) = window {
            p.push_str(&format!(";w={w}"));
        }
        policy.push(p);
        let mut c = format!("\"{name}\";r={}", u.limit.limit.saturating_sub(u.used));
        if let Some(at) = u.resets_at {
            c.push_str(&format!(";t={}", at.saturating_sub(now)));
        }
        current.push(c);
    }
    (!policy.is_empty()).then(|| (policy.join(", "), current.join(", ")))
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOW: u64 = 1_795_525_200;

    #[test]
    fn ratelimit_fields_follow_the_draft() {
        let usage = [
            Usage {
                limit: Applied { kind: LimitKind::DownloadsPerDay, limit: 5, scope: QuotaScope::Customer },
                used: 2,
                resets_at: Some(NOW + 100),
            },
            Usage {
                limit: Applied {
                    kind: LimitKind::BytesPerMonth,
                    limit: 1000,
                    scope: QuotaScope::Entitlement("e1".into()),
                },
                used: 1500,
                resets_at: Some(NOW + 200),
            },
            Usage {
                limit: Applied { kind: LimitKind::ConcurrentDownloads, limit: 2, scope: QuotaScope::Customer },
                used: 1,
                resets_at: None,
            },
        ];
        let (policy, current) = ratelimit_fields(&usage, NOW).unwrap();
        assert_eq!(
            policy,
            r#""downloads_per_day";q=5;w=86400, "bytes_per_month.e1";q=1000;qu="content-bytes";w=2592000, "concurrent_downloads";q=2;qu="concurrent-requests""#
        );
        assert_eq!(
            current,
            r#""downloads_per_day";r=3;t=100, "bytes_per_month.e1";r=0;t=200, "concurrent_downloads";r=1"#
        );
        assert_eq!(ratelimit_fields(&[], NOW), None);
    }
}
