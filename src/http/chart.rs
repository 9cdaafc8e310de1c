//! Charts drawn on the server as SVG, readable without script: bar charts
//! per day (stacked, or side by side) with axes and a legend, and
//! horizontal bars per name; each bar's numbers are in its `<title>` (a
//! tooltip, and what a screen reader reads) and `data-` attributes.

use std::fmt::Write as _;

/// Colours for the series, in order (repeating), each 3:1 against white.
const COLOURS: [&str; 8] = ["#1a4f8b", "#b3470c", "#2e7d32", "#6a3d9a", "#a0153e", "#00695c", "#795548", "#455a64"];

const WIDTH: f64 = 720.0;
const HEIGHT: f64 = 260.0;
const LEFT: f64 = 48.0;
const BOTTOM: f64 = 40.0;
const TOP: f64 = 16.0;

fn escape(text: &str) -> String {
    text.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;").replace('"', "&quot;")
}

/// A round top for the axis, and its step: 1, 2 or 5 times a power of ten.
fn scale(max: u64) -> (u64, u64) {
    let max = max.max(1);
    let mut step = 1;
    loop {
        for m in [1, 2, 5] {
            let s = step * m;
            if max.div_ceil(s) <= 5 {
                return (max.div_ceil(s) * s, s);
            }
        }
        step *= 10;
    }
}

/// Bars for each label (a day), stacked from `series` (name, one value
/// per label). `id` is unique on the page; `title` names the chart for
/// assistive technology.
pub fn stacked_bars(id: &str, title: &str, labels: &[String], series: &[(String, Vec<u64>)]) -> String {
    day_bars(id, title, labels, series, true)
}

/// Bars for each label (a day), one per series side by side: to compare
/// (downloads started against completed).
pub fn grouped_bars(id: &str, title: &str, labels: &[String], series: &[(String, Vec<u64>)]) -> String {
    day_bars(id, title, labels, series, false)
}

fn open_svg(id: &str, title: &str, height: f64) -> String {
    format!(
        r#"<svg xmlns="http://www.w3.org/2000/svg" class="chart" id="{id}" viewBox="0 0 {WIDTH} {height}" role="img" aria-labelledby="{id}-title"><title id="{id}-title">{}</title>"#,
        escape(title)
    )
}

fn day_bars(id: &str, title: &str, labels: &[String], series: &[(String, Vec<u64>)], stacked: bool) -> String {
    let value = |k: usize, i: usize| series.get(k).and_then(|(_, v)| v.get(i)).copied().unwrap_or(0);
    let highest = (0..labels.len())
        .map(|i| {
            let values = (0..series.len()).map(|k| value(k, i));
            if stacked { values.sum() } else { values.max().unwrap_or(0) }
        })
        .max()
        .unwrap_or(0);
    let (top, step) = scale(highest);
    let plot_h = HEIGHT - TOP - BOTTOM;
    let plot_w = WIDTH - LEFT - 8.0;
    let slot = plot_w / labels.len().max(1) as f64;
    let bar_w = (slot * 0.7).max(1.0);
    let y = |v: u64| TOP + plot_h - plot_h * v as f64 / top as f64;
    let legend_h = 20.0 * series.len().div_ceil(4) as f64;
    let mut svg = open_svg(id, title, HEIGHT + legend_h);
    // Grid lines and the value axis.
    let mut v = 0;
    while v <= top {
        let yy = y(v);
        let _ = write!(
            svg,
            r##"<line x1="{LEFT}" x2="{}" y1="{yy:.1}" y2="{yy:.1}" stroke="#d0d7de"/><text x="{}" y="{:.1}" text-anchor="end" font-size="11" fill="#4d5560">{v}</text>"##,
            WIDTH - 8.0,
            LEFT - 6.0,
            yy + 4.0
        );
        v += step;
    }
    for (i, label) in labels.iter().enumerate() {
        let x = LEFT + slot * i as f64 + (slot - bar_w) / 2.0;
        let one_w = if stacked { bar_w } else { bar_w / series.len().max(1) as f64 };
        let mut base = 0;
        for (k, (name, values)) in series.iter().enumerate() {
            let n = values.get(i).copied().unwrap_or(0);
            if n == 0 {
                continue;
            }
            let (y0, y1) = (y(base), y(base + n));
            let bx = if stacked { x } else { x + one_w * k as f64 };
            let _ = write!(
                svg,
                r#"<rect x="{bx:.1}" y="{y1:.1}" width="{one_w:.1}" height="{:.1}" fill="{}" data-label="{}" data-series="{}" data-value="{n}"><title>{}, {}: {n}</title></rect>"#,
                y0 - y1,
                COLOURS[k % COLOURS.len()],
                escape(label),
                escape(name),
                escape(label),
                escape(name)
            );
            if stacked {
                base += n;
            }
        }
        // Every label when there is room; else every seventh.
        if labels.len() <= 16 || i % 7 == 0 {
            let short = label.get(5..).unwrap_or(label);
            let _ = write!(
                svg,
                r##"<text x="{:.1}" y="{:.1}" text-anchor="middle" font-size="11" fill="#4d5560">{}</text>"##,
                x + bar_w / 2.0,
                HEIGHT - BOTTOM + 16.0,
                escape(short)
            );
        }
    }
    for (k, (name, _)) in series.iter().enumerate() {
        let (col, row) = (k % 4, k / 4);
        let (lx, ly) = (LEFT + 170.0 * col as f64, HEIGHT + 20.0 * row as f64);
        let _ = write!(
            svg,
            r##"<rect x="{lx}" y="{}" width="12" height="12" fill="{}"/><text x="{}" y="{}" font-size="12" fill="#1b1f24">{}</text>"##,
            ly - 10.0,
            COLOURS[k % COLOURS.len()],
            lx + 16.0,
            ly,
            escape(name)
        );
    }
    svg.push_str("</svg>");
    svg
}

/// One horizontal bar per `(name, value)`, longest first as given:
/// denials by reason, downloads by platform.
pub fn bars(id: &str, title: &str, items: &[(String, u64)]) -> String {
    const ROW: f64 = 24.0;
    const NAMES: f64 = 200.0;
    let (top, step) = scale(items.iter().map(|(_, n)| *n).max().unwrap_or(0));
    let plot_w = WIDTH - NAMES - 16.0;
    let x = |v: u64| NAMES + plot_w * v as f64 / top as f64;
    let height = TOP + ROW * items.len().max(1) as f64 + 24.0;
    let mut svg = open_svg(id, title, height);
    let mut v = 0;
    while v <= top {
        let xx = x(v);
        let _ = write!(
            svg,
            r##"<line x1="{xx:.1}" x2="{xx:.1}" y1="{TOP}" y2="{:.1}" stroke="#d0d7de"/><text x="{xx:.1}" y="{:.1}" text-anchor="middle" font-size="11" fill="#4d5560">{v}</text>"##,
            height - 20.0,
            height - 6.0
        );
        v += step;
    }
    for (i, (name, n)) in items.iter().enumerate() {
        let yy = TOP + ROW * i as f64;
        let _ = write!(
            svg,
            r##"<text x="{:.1}" y="{:.1}" text-anchor="end" font-size="12" fill="#1b1f24">{}</text><rect x="{NAMES}" y="{:.1}" width="{:.1}" height="{:.1}" fill="{}" data-label="{}" data-value="{n}"><title>{}: {n}</title></rect>"##,
            NAMES - 6.0,
            yy + ROW * 0.65,
            escape(name),
            yy + 3.0,
            x(*n) - NAMES,
            ROW - 6.0,
            COLOURS[0],
            escape(name),
            escape(name)
        );
    }
    svg.push_str("</svg>");
    svg
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn axes_end_on_round_numbers() {
        assert_eq!(scale(0), (1, 1));
        assert_eq!(scale(3), (3, 1));
        assert_eq!(scale(7), (8, 2));
        assert_eq!(scale(23), (25, 5));
        assert_eq!(scale(101), (150, 50));
    }

    #[test]
    fn bars_carry_their_numbers_and_names_are_escaped() {
        let labels = vec!["2026-12-01".to_owned(), "2026-12-02".to_owned()];
        let series = vec![("app".to_owned(), vec![2, 0]), ("<b>x</b>".to_owned(), vec![1, 3])];
        let svg = stacked_bars("c", "Downloads", &labels, &series);
        assert_eq!(svg.matches("<rect x=").count() - series.len(), 3, "a bar per non-zero value: {svg}");
        assert!(svg.contains(r#"data-label="2026-12-01" data-series="app" data-value="2""#));
        assert!(svg.contains(r#"data-series="&lt;b&gt;x&lt;/b&gt;" data-value="3""#));
        assert!(!svg.contains("<b>"));
        assert!(svg.starts_with("<svg") && svg.ends_with("</svg>"));
    }

    #[test]
    fn grouped_bars_stand_side_by_side_on_one_scale() {
        let labels = vec!["2026-12-01".to_owned()];
        let series = vec![("started".to_owned(), vec![4]), ("completed".to_owned(), vec![3])];
        let svg = grouped_bars("g", "Started and completed", &labels, &series);
        let x_of = |series: &str| {
            let at = svg.find(&format!(r#"data-series="{series}""#)).unwrap();
            let rect = &svg[svg[..at].rfind("<rect").unwrap()..at];
            rect.split('"').nth(1).unwrap().parse::<f64>().unwrap()
        };
        assert!(x_of("completed") > x_of("started"), "side by side: {svg}");
        // The axis ends at the highest bar (4), not at the sum (7).
        assert!(svg.contains(">4</text>") && !svg.contains(">8</text>"), "{svg}");
    }

    #[test]
    fn horizontal_bars_name_each_value() {
        let svg = bars("d", "Denials", &[("quota_exceeded".into(), 5), ("<x>".into(), 2)]);
        assert!(svg.contains(r#"data-label="quota_exceeded" data-value="5""#));
        assert!(svg.contains("&lt;x&gt;: 2") && !svg.contains("<x>"));
        assert!(svg.contains(r#"id="d""#) && svg.contains(r#"aria-labelledby="d-title""#));
    }
}
