//! `tollgate admin events` (read or tail the event log) and `tollgate admin
//! report` (a download report as a table or CSV).

use std::process::ExitCode;
use std::time::Duration;

use serde_json::Value;

use super::admin::query;
use super::http::AdminApi;

#[derive(Debug, Clone, clap::Args)]
pub struct EventsArgs {
    /// Event types, comma-separated (download.initiated, download.completed,
    /// download.denied, release.published, release.yanked, artifact.uploaded,
    /// entitlement.changed).
    #[arg(long = "type", value_name = "TYPES")]
    pub types: Option<String>,
    /// Only this customer's events.
    #[arg(long)]
    pub customer: Option<String>,
    /// Only this product's events.
    #[arg(long)]
    pub product: Option<String>,
    /// Start after this cursor (a `next` printed by an earlier run with
    /// --cursor); default: the oldest event kept.
    #[arg(long)]
    pub after: Option<String>,
    /// Events per request, 1 to 1000.
    #[arg(long, default_value_t = 500)]
    pub limit: usize,
    /// Keep polling for new events (until interrupted, or --count).
    #[arg(long, short = 'f')]
    pub follow: bool,
    /// Poll interval with --follow.
    #[arg(long, default_value = "2s", value_parser = humantime::parse_duration)]
    pub interval: Duration,
    /// Stop after printing this many events.
    #[arg(long)]
    pub count: Option<u64>,
    /// Print each page's cursor to stderr, to resume from later with --after.
    #[arg(long)]
    pub cursor: bool,
}

#[derive(Debug, Clone, clap::Args)]
pub struct ReportArgs {
    /// customer, product, release, artifact, platform or day.
    #[arg(long, default_value = "customer")]
    pub group_by: String,
    /// First UTC day (2026-11-01); default 29 days before --to.
    #[arg(long)]
    pub from: Option<String>,
    /// Last UTC day, inclusive; default today.
    #[arg(long)]
    pub to: Option<String>,
    /// Print the server's CSV instead of a table.
    #[arg(long)]
    pub csv: bool,
}

/// The events request for a page after `after`.
pub fn events_path(a: &EventsArgs, after: Option<&str>) -> String {
    let limit = a.limit.to_string();
    let q = query(&[
        ("limit", Some(&limit)),
        ("type", a.types.as_deref()),
        ("customer", a.customer.as_deref()),
        ("product", a.product.as_deref()),
        ("after", after),
    ]);
    format!("/admin/v1/events{q}")
}

pub fn report_path(a: &ReportArgs) -> String {
    let q = query(&[
        ("group_by", Some(&a.group_by)),
        ("from", a.from.as_deref()),
        ("to", a.to.as_deref()),
        ("format", a.csv.then_some("csv")),
    ]);
    format!("/admin/v1/reports/downloads{q}")
}

/// Print events as JSON lines, oldest first; with `--follow`, keep polling.
pub async fn events(api: &AdminApi, a: &EventsArgs) -> anyhow::Result<ExitCode> {
    let mut after = a.after.clone();
    let mut printed = 0u64;
    loop {
        let path = events_path(a, after.as_deref());
        let answer = api.call("GET", &path, None).await?;
        if answer.status >= 400 {
            eprintln!("tollgate: GET {path} refused: {}", answer.problem());
            return Ok(ExitCode::from(1));
        }
        let page = answer.body;
        for e in page["items"].as_array().map(Vec::as_slice).unwrap_or_default() {
            #[expect(clippy::print_stdout, reason = "the events are the command's output")]
            {
                println!("{e}");
            }
            printed += 1;
            if a.count.is_some_and(|n| printed >= n) {
                return Ok(ExitCode::SUCCESS);
            }
        }
        if let Some(next) = page["next"].as_str() {
            after = Some(next.to_owned());
            if a.cursor {
                eprintln!("next: {next}");
            }
        }
        if page["more"] != Value::Bool(true) {
            if !a.follow {
                return Ok(ExitCode::SUCCESS);
            }
            tokio::time::sleep(a.interval).await;
        }
    }
}

/// Print a report as an aligned table (or the server's CSV).
pub async fn report(api: &AdminApi, a: &ReportArgs) -> anyhow::Result<ExitCode> {
    let path = report_path(a);
    if a.csv {
        let req = api.request("GET", &path)?.body(super::http::full(bytes::Bytes::new()))?;
        let (status, bytes) = api.send_raw(req).await?;
        if status >= 400 {
            let problem = super::http::Answer { status, body: serde_json::from_slice(&bytes).unwrap_or(Value::Null) };
            eprintln!("tollgate: GET {path} refused: {}", problem.problem());
            return Ok(ExitCode::from(1));
        }
        #[expect(clippy::print_stdout, reason = "the report is the command's output")]
        {
            print!("{}", String::from_utf8_lossy(&bytes));
        }
        return Ok(ExitCode::SUCCESS);
    }
    let answer = api.call("GET", &path, None).await?;
    if answer.status >= 400 {
        eprintln!("tollgate: GET {path} refused: {}", answer.problem());
        return Ok(ExitCode::from(1));
    }
    #[expect(clippy::print_stdout, reason = "the report is the command's output")]
    {
        print!("{}", table(&answer.body));
    }
    Ok(ExitCode::SUCCESS)
}

const COLUMNS: [&str; 6] = ["initiations", "completions", "aborted", "bytes", "customers", "denied"];

/// The report as a table: a row per group, then the total.
pub fn table(report: &Value) -> String {
    let group_by = report["group_by"].as_str().unwrap_or("group");
    let mut rows: Vec<Vec<String>> = Vec::new();
    let row = |r: &Value| -> Vec<String> {
        let mut cells = vec![r["group"].as_str().unwrap_or("-").to_owned()];
        for c in COLUMNS {
            let n = if c == "denied" {
                r["denials"].as_object().map_or(0, |m| m.values().filter_map(Value::as_u64).sum())
            } else {
                r[c].as_u64().unwrap_or(0)
            };
            cells.push(n.to_string());
        }
        cells
    };
    for r in report["rows"].as_array().map(Vec::as_slice).unwrap_or_default() {
        rows.push(row(r));
    }
    rows.push(row(&report["total"]));
    let mut head = vec![group_by.to_owned()];
    head.extend(COLUMNS.iter().map(|c| (*c).to_owned()));
    let widths: Vec<usize> =
        (0..head.len()).map(|i| rows.iter().chain([&head]).map(|r| r[i].chars().count()).max().unwrap_or(0)).collect();
    let line = |cells: &[String]| -> String {
        let mut out = String::new();
        for (i, (cell, w)) in cells.iter().zip(&widths).enumerate() {
            if i == 0 {
                out.push_str(&format!("{cell:<w$}"));
            } else {
                out.push_str(&format!("  {cell:>w$}"));
            }
        }
        out.trim_end().to_owned() + "\n"
    };
    let mut out = line(&head);
    let total = rows.len() - 1;
    for (i, r) in rows.iter().enumerate() {
        if i == total {
            out.push_str(&line(&widths.iter().map(|w| "-".repeat(*w)).collect::<Vec<_>>()));
        }
        out.push_str(&line(r));
    }
    out.push_str(&format!(
        "{} to {} (UTC days)\n",
        report["from"].as_str().unwrap_or("?"),
        report["to"].as_str().unwrap_or("?")
    ));
    out
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn a_report_prints_as_an_aligned_table_with_its_total() {
        let report = json!({
            "from": "2026-11-01", "to": "2026-11-24", "group_by": "customer",
            "rows": [
                { "group": "acme", "initiations": 12, "completions": 11, "aborted": 1, "bytes": 123456, "customers": 1, "denials": { "quota_exceeded": 2 } },
                { "group": "b", "initiations": 0, "completions": 0, "aborted": 0, "bytes": 0, "customers": 0, "denials": { "entitlement_expired": 1, "x": 1 } },
            ],
            "total": { "group": "total", "initiations": 12, "completions": 11, "aborted": 1, "bytes": 123456, "customers": 1, "denials": { "quota_exceeded": 2, "entitlement_expired": 1, "x": 1 } },
        });
        let text = table(&report);
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines[0], "customer  initiations  completions  aborted   bytes  customers  denied");
        assert_eq!(lines[1], "acme               12           11        1  123456          1       2");
        assert_eq!(lines[2], "b                   0            0        0       0          0       2");
        assert!(lines[3].starts_with("--------  ---"));
        assert_eq!(lines[4], "total              12           11        1  123456          1       4");
        assert_eq!(lines[5], "2026-11-01 to 2026-11-24 (UTC days)");
    }
}
