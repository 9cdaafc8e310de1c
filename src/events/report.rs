//! Download reports, assembled from the daily counters the log keeps on write.

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::{Cell, Seen, metric};

/// What a report groups by.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum Dimension {
    Customer,
    Product,
    /// `product/version`
    Release,
    /// `product/version/filename`
    Artifact,
    Platform,
    /// The UTC day, `2026-11-24`.
    Day,
}

impl Dimension {
    pub const ALL: [Dimension; 6] = [
        Dimension::Customer,
        Dimension::Product,
        Dimension::Release,
        Dimension::Artifact,
        Dimension::Platform,
        Dimension::Day,
    ];

    /// The short name in storage keys; never rename one.
    pub fn as_str(self) -> &'static str {
        match self {
            Dimension::Customer => "customer",
            Dimension::Product => "product",
            Dimension::Release => "release",
            Dimension::Artifact => "artifact",
            Dimension::Platform => "platform",
            Dimension::Day => "day",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|d| d.as_str() == s)
    }
}

/// One group of a download report.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, ToSchema)]
pub struct ReportRow {
    /// The group: a customer id, product id, `product/version`,
    /// `product/version/filename`, platform or day; `-` where unknown.
    pub group: String,
    /// Downloads started (grants' first `GET`).
    pub initiations: u64,
    /// Responses that delivered a file's last byte.
    pub completions: u64,
    /// Responses cut before their end.
    pub aborted: u64,
    /// Bytes sent, complete and aborted responses alike.
    pub bytes: u64,
    /// Distinct customers who started a download.
    pub customers: u64,
    /// Refusals by reason code.
    pub denials: BTreeMap<String, u64>,
}

impl ReportRow {
    pub fn denied(&self) -> u64 {
        self.denials.values().sum()
    }
}

/// Sum the cells into one row per group, sorted by group.
pub fn rows(cells: &[Cell], seen: &[Seen]) -> Vec<ReportRow> {
    let mut rows: BTreeMap<&str, ReportRow> = BTreeMap::new();
    for c in cells {
        let row = rows.entry(&c.value).or_insert_with(|| ReportRow { group: c.value.clone(), ..ReportRow::default() });
        match c.metric.as_str() {
            metric::INITIATED => row.initiations += c.n,
            metric::COMPLETED => row.completions += c.n,
            metric::ABORTED => row.aborted += c.n,
            metric::BYTES => row.bytes += c.n,
            m => {
                if let Some(reason) = m.strip_prefix(metric::DENIED_PREFIX) {
                    *row.denials.entry(reason.to_owned()).or_default() += c.n;
                }
            }
        }
    }
    let mut distinct: BTreeMap<&str, BTreeSet<&str>> = BTreeMap::new();
    for s in seen {
        distinct.entry(&s.value).or_default().insert(&s.customer);
    }
    for (group, customers) in distinct {
        let row = rows.entry(group).or_insert_with(|| ReportRow { group: group.to_owned(), ..ReportRow::default() });
        row.customers = customers.len() as u64;
    }
    rows.into_values().collect()
}

/// The rows summed into one (`group` = `total`); its `customers` are the
/// distinct customers over every group.
pub fn total(rows: &[ReportRow], seen: &[Seen]) -> ReportRow {
    let mut total = ReportRow { group: "total".into(), ..ReportRow::default() };
    for r in rows {
        total.initiations += r.initiations;
        total.completions += r.completions;
        total.aborted += r.aborted;
        total.bytes += r.bytes;
        for (reason, n) in &r.denials {
            *total.denials.entry(reason.clone()).or_default() += n;
        }
    }
    total.customers = seen.iter().map(|s| s.customer.as_str()).collect::<BTreeSet<_>>().len() as u64;
    total
}

/// The report as CSV (RFC 4180): one column per denial reason seen in any row.
pub fn csv(dimension: Dimension, rows: &[ReportRow]) -> String {
    let reasons: BTreeSet<&str> = rows.iter().flat_map(|r| r.denials.keys().map(String::as_str)).collect();
    let mut out = String::new();
    out.push_str(dimension.as_str());
    out.push_str(",initiations,completions,aborted,bytes,customers,denied");
    for r in &reasons {
        out.push_str(",denied_");
        out.push_str(&csv_field(r));
    }
    out.push_str("\r\n");
    for row in rows {
        out.push_str(&csv_field(&row.group));
        for n in [row.initiations, row.completions, row.aborted, row.bytes, row.customers, row.denied()] {
            out.push(',');
            out.push_str(&n.to_string());
        }
        for r in &reasons {
            out.push(',');
            out.push_str(&row.denials.get(*r).copied().unwrap_or(0).to_string());
        }
        out.push_str("\r\n");
    }
    out
}

/// A CSV field, quoted when it holds a separator, a quote or a line break,
/// and defused when a spreadsheet would run it as a formula.
pub fn csv_field(s: &str) -> String {
    // SECURITY: a group is data a vendor controls only in part (file names);
    // a leading `=`, `+`, `-` or `@` would be a formula in a spreadsheet. A
    // lone `-` (unknown) is left as is.
    let formula = (s.len() > 1 && s.starts_with(['=', '+', '-', '@'])) || s.starts_with(['\t', '\r']);
    let defused = if formula { format!("'{s}") } else { s.to_owned() };
    if defused.contains([',', '"', '\r', '\n']) { format!("\"{}\"", defused.replace('"', "\"\"")) } else { defused }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cell(value: &str, metric: &str, n: u64) -> Cell {
        Cell { day: "2026-11-24".into(), dimension: Dimension::Customer, value: value.into(), metric: metric.into(), n }
    }

    fn seen(day: &str, value: &str, customer: &str) -> Seen {
        Seen { day: day.into(), dimension: Dimension::Customer, value: value.into(), customer: customer.into() }
    }

    #[test]
    fn cells_sum_into_rows_with_distinct_customers() {
        let cells = [
            cell("acme", "initiated", 2),
            cell("acme", "initiated", 1),
            cell("acme", "bytes", 300),
            cell("acme", "completed", 2),
            cell("acme", "aborted", 1),
            cell("acme", "denied:quota_exceeded", 4),
            cell("beta", "denied:entitlement_expired", 1),
        ];
        let seen = [seen("2026-11-23", "acme", "acme"), seen("2026-11-24", "acme", "acme")];
        let rows = rows(&cells, &seen);
        assert_eq!(rows.len(), 2);
        let acme = &rows[0];
        assert_eq!((acme.initiations, acme.completions, acme.aborted, acme.bytes), (3, 2, 1, 300));
        assert_eq!(acme.customers, 1, "one customer on two days is one customer");
        assert_eq!(acme.denials.get("quota_exceeded"), Some(&4));
        assert_eq!(rows[1].group, "beta");
        assert_eq!(rows[1].denied(), 1);
        assert_eq!(rows[1].customers, 0);
    }

    #[test]
    fn csv_has_a_column_per_reason_and_quotes_fields() {
        let mut a = ReportRow { group: "app/1.0/a,b.zip".into(), initiations: 1, ..ReportRow::default() };
        a.denials.insert("quota_exceeded".into(), 2);
        let b = ReportRow { group: "=cmd()".into(), bytes: 5, ..ReportRow::default() };
        let text = csv(Dimension::Artifact, &[a, b]);
        let lines: Vec<&str> = text.split("\r\n").collect();
        assert_eq!(lines[0], "artifact,initiations,completions,aborted,bytes,customers,denied,denied_quota_exceeded");
        assert_eq!(lines[1], "\"app/1.0/a,b.zip\",1,0,0,0,0,2,2");
        assert_eq!(lines[2], "'=cmd(),0,0,0,5,0,0,0");
        assert_eq!(lines[3], "");
    }
}
