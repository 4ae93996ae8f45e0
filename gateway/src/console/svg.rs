//! Charts as SVG written on the server: no script, no fonts to fetch, colours from
//! the console's stylesheet (classes, never `style` attributes, which the
//! Content-Security-Policy forbids). Hand-written rather than `plotters`: two chart
//! kinds of some sixty lines do not need a drawing library and its dependencies.
//! The numbers are always printed beside a chart too (a table), for screen readers,
//! printing and exact values.

use std::fmt::Write as _;

/// Escape `s` for XML text and attribute values.
pub fn escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// Horizontal bars, one per `(label, value)`, longest the full width, drawn in
/// `class` (`bar`, `deny`, …).
pub fn bars(title: &str, class: &str, rows: &[(String, u64)]) -> String {
    let shown: Vec<(String, u64, String)> = rows
        .iter()
        .map(|(l, v)| (l.clone(), *v, v.to_string()))
        .collect();
    bars_shown(title, class, &shown)
}

/// [`bars`] with each value printed as given (`(label, value, shown)`): a share as
/// `99.50 %`, a latency in milliseconds, while the bar's length is `value`.
pub fn bars_shown(title: &str, class: &str, rows: &[(String, u64, String)]) -> String {
    const WIDTH: u64 = 560;
    const LABEL: u64 = 200;
    const ROW: u64 = 22;
    let max = rows.iter().map(|(_, v, _)| *v).max().unwrap_or(0).max(1);
    let height = ROW * rows.len().max(1) as u64 + 8;
    let mut svg = open(title, WIDTH, height);
    for (i, (label, value, shown)) in rows.iter().enumerate() {
        let y = ROW * i as u64 + 4;
        let w = (WIDTH - LABEL - 60) * value / max;
        let _ = write!(
            svg,
            r#"<text class="label" x="{x}" y="{ty}" text-anchor="end">{label}</text><rect class="{class}" x="{LABEL}" y="{y}" width="{w}" height="{h}"/><text class="value" x="{vx}" y="{ty}">{shown}</text>"#,
            x = LABEL - 6,
            ty = y + 14,
            label = escape(label),
            shown = escape(shown),
            h = ROW - 6,
            vx = LABEL + w + 4,
        );
    }
    svg.push_str("</svg>");
    svg
}

/// Stacked columns: one per `(label, counts)`, each count drawn in the class of
/// `series` at its position (`allow`, `deny`, `error`).
pub fn stacked(title: &str, series: &[&str], columns: &[(String, Vec<u64>)]) -> String {
    let named: Vec<(&str, &str)> = series.iter().map(|s| (*s, *s)).collect();
    stacked_named(title, &named, columns)
}

/// [`stacked`] with each series `(class, name)`: drawn in its class, named in the
/// tooltips (a consumer's identity, not its colour's class).
pub fn stacked_named(
    title: &str,
    series: &[(&str, &str)],
    columns: &[(String, Vec<u64>)],
) -> String {
    const HEIGHT: u64 = 180;
    const COL: u64 = 22;
    const BASE: u64 = HEIGHT - 24;
    let max = columns
        .iter()
        .map(|(_, c)| c.iter().sum::<u64>())
        .max()
        .unwrap_or(0)
        .max(1);
    // Wide enough for one column's date label too.
    let width = (COL * columns.len().max(1) as u64 + 40).max(120);
    let mut svg = open(title, width, HEIGHT);
    let _ = write!(
        svg,
        r#"<text class="value" x="2" y="12">{max}</text><line class="axis" x1="30" y1="{BASE}" x2="{width}" y2="{BASE}"/>"#
    );
    for (i, (label, counts)) in columns.iter().enumerate() {
        let x = 34 + COL * i as u64;
        let mut top = BASE;
        for ((class, name), n) in series.iter().zip(counts) {
            let h = (BASE - 16) * n / max;
            if h == 0 {
                continue;
            }
            top -= h;
            let _ = write!(
                svg,
                r#"<rect class="{class}" x="{x}" y="{top}" width="{w}" height="{h}"><title>{label} {name}: {n}</title></rect>"#,
                w = COL - 4,
                label = escape(label),
                name = escape(name),
            );
        }
        if i % 3 == 0 {
            let _ = write!(
                svg,
                r#"<text class="label" x="{x}" y="{y}">{label}</text>"#,
                y = HEIGHT - 8,
                label = escape(label),
            );
        }
    }
    svg.push_str("</svg>");
    svg
}

fn open(title: &str, width: u64, height: u64) -> String {
    format!(
        r#"<svg xmlns="http://www.w3.org/2000/svg" class="chart" role="img" viewBox="0 0 {width} {height}" width="{width}" height="{height}"><title>{}</title>"#,
        escape(title)
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn widths(svg: &str) -> Vec<u64> {
        svg.match_indices("width=\"")
            .skip(1) // the svg element's own
            .filter_map(|(i, m)| {
                let rest = &svg[i + m.len()..];
                rest[..rest.find('"')?].parse().ok()
            })
            .collect()
    }

    #[test]
    fn bars_are_proportional_and_labels_escaped() {
        let svg = bars(
            "t<&>",
            "bar",
            &[("<script>".into(), 10), ("b".into(), 5), ("c".into(), 0)],
        );
        assert!(svg.starts_with("<svg") && svg.ends_with("</svg>"));
        assert!(!svg.contains("<script>"), "{svg}");
        assert!(svg.contains("&lt;script&gt;") && svg.contains("t&lt;&amp;&gt;"));
        assert!(!svg.contains("style="), "the CSP forbids style attributes");
        assert_eq!(widths(&svg), vec![300, 150, 0]);
    }

    #[test]
    fn stacked_columns_stack_each_series_in_its_class() {
        let svg = stacked(
            "lookups",
            &["allow", "deny", "error"],
            &[("08".into(), vec![4, 2, 0]), ("09".into(), vec![1, 0, 1])],
        );
        assert_eq!(svg.matches("class=\"allow\"").count(), 2);
        assert_eq!(
            svg.matches("class=\"deny\"").count(),
            1,
            "zero bars are left out"
        );
        assert_eq!(svg.matches("class=\"error\"").count(), 1);
        assert!(svg.contains("<title>08 deny: 2</title>"));
        // The tallest column (6) spans the plot; 4 of it is allow.
        assert!(
            svg.contains(r#"class="allow" x="34" y="63" width="18" height="93""#),
            "{svg}"
        );
        // Empty data still draws a valid chart.
        let empty = stacked("none", &["allow"], &[]);
        assert!(empty.ends_with("</svg>"));
    }
}
