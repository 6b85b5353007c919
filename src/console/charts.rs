//! Charts drawn on the server as inline SVG: no chart library, no script, nothing for the
//! strict CSP to allow (presentation attributes only, no `style`). Each chart is an image with
//! a title and a description for screen readers; the pages put the same numbers in a table.
//! Every label is escaped here: sources and campaigns come from visitors' URLs.

use std::fmt::Write;

/// One bar or point: its label, its value, and the value as the chart writes it.
pub struct Point {
    pub label: String,
    pub value: f64,
    pub text: String,
}

const INK: &str = "#1b1f24";
const MUTED: &str = "#4a5360";
const BAR: &str = "#1d4ed8";
const LINE: &str = "#b45309";
const GRID: &str = "#d4d9e0";

/// Text safe inside HTML or SVG markup and attribute values.
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

fn open(id: &str, class: &str, title: &str, desc: &str, width: u32, height: u32) -> String {
    let (id, title, desc) = (escape(id), escape(title), escape(desc));
    format!(
        "<svg xmlns=\"http://www.w3.org/2000/svg\" viewBox=\"0 0 {width} {height}\" \
         width=\"100%\" role=\"img\" aria-labelledby=\"{id}-t {id}-d\" class=\"chart {class}\">\
         <title id=\"{id}-t\">{title}</title><desc id=\"{id}-d\">{desc}</desc>"
    )
}

fn describe(points: &[Point]) -> String {
    points
        .iter()
        .map(|p| format!("{}: {}", p.label, p.text))
        .collect::<Vec<_>>()
        .join("; ")
}

/// Values over time: bars (`line: false`) or a line with dots. Labels on the x axis are
/// thinned to fit; the largest value sets the scale.
pub fn over_time(id: &str, title: &str, points: &[Point], line: bool) -> String {
    let (w, h, left, bottom, top) = (960.0_f64, 240.0_f64, 70.0_f64, 30.0_f64, 14.0_f64);
    let mut svg = open(id, "time", title, &describe(points), 960, 240);
    let max = points.iter().map(|p| p.value).fold(0.0_f64, f64::max);
    let scale = if max > 0.0 {
        (h - bottom - top) / max
    } else {
        0.0
    };
    let n = points.len().max(1);
    #[allow(clippy::cast_precision_loss)]
    let step = (w - left - 8.0) / n as f64;
    let base = h - bottom;
    // Axis and the top value.
    let top_text = points
        .iter()
        .find(|p| (p.value - max).abs() < f64::EPSILON)
        .map_or_else(|| "0".to_string(), |p| p.text.clone());
    let _ = write!(
        svg,
        "<line x1=\"{left}\" y1=\"{base}\" x2=\"{w}\" y2=\"{base}\" stroke=\"{GRID}\"/>\
         <line x1=\"{left}\" y1=\"{top}\" x2=\"{w}\" y2=\"{top}\" stroke=\"{GRID}\" stroke-dasharray=\"4 4\"/>\
         <text x=\"{}\" y=\"{}\" font-size=\"14\" text-anchor=\"end\" fill=\"{MUTED}\">{}</text>\
         <text x=\"{}\" y=\"{}\" font-size=\"14\" text-anchor=\"end\" fill=\"{MUTED}\">0</text>",
        left - 6.0,
        top + 4.0,
        escape(&top_text),
        left - 6.0,
        base + 4.0,
    );
    let every = n.div_ceil(8).max(1);
    let mut path = String::new();
    for (i, p) in points.iter().enumerate() {
        #[allow(clippy::cast_precision_loss)]
        let x = left + step * i as f64;
        let y = base - p.value * scale;
        if line {
            let cx = x + step / 2.0;
            let _ = write!(path, "{}{cx:.1},{y:.1}", if i == 0 { "M" } else { " L" });
            let _ = write!(
                svg,
                "<circle cx=\"{cx:.1}\" cy=\"{y:.1}\" r=\"3\" fill=\"{LINE}\"><title>{}: {}</title></circle>",
                escape(&p.label),
                escape(&p.text)
            );
        } else {
            let _ = write!(
                svg,
                "<rect x=\"{:.1}\" y=\"{y:.1}\" width=\"{:.1}\" height=\"{:.1}\" fill=\"{BAR}\">\
                 <title>{}: {}</title></rect>",
                x + step * 0.15,
                (step * 0.7).max(1.0),
                (base - y).max(0.0),
                escape(&p.label),
                escape(&p.text)
            );
        }
        if i % every == 0 {
            let _ = write!(
                svg,
                "<text x=\"{:.1}\" y=\"{}\" font-size=\"13\" text-anchor=\"middle\" fill=\"{MUTED}\">{}</text>",
                x + step / 2.0,
                h - 8.0,
                escape(p.label.get(5..).unwrap_or(&p.label))
            );
        }
    }
    if line && !path.is_empty() {
        let _ = write!(
            svg,
            "<path d=\"{path}\" fill=\"none\" stroke=\"{LINE}\" stroke-width=\"2\"/>"
        );
    }
    svg.push_str("</svg>");
    svg
}

/// A ranking: one horizontal bar per item, largest first as given, the value written beside it.
pub fn ranking(id: &str, title: &str, points: &[Point]) -> String {
    let row = 26.0_f64;
    let (w, label_w, value_w) = (560.0_f64, 170.0_f64, 120.0_f64);
    #[allow(clippy::cast_precision_loss)]
    let h = (points.len().max(1) as f64) * row + 8.0;
    #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
    let mut svg = open(id, "ranking", title, &describe(points), 560, h as u32);
    let max = points.iter().map(|p| p.value).fold(0.0_f64, f64::max);
    let room = w - label_w - value_w;
    for (i, p) in points.iter().enumerate() {
        #[allow(clippy::cast_precision_loss)]
        let y = 4.0 + row * i as f64;
        let len = if max > 0.0 {
            (p.value / max) * room
        } else {
            0.0
        };
        let label: String = p.label.chars().take(24).collect();
        let _ = write!(
            svg,
            "<text x=\"{:.1}\" y=\"{:.1}\" font-size=\"13\" text-anchor=\"end\" fill=\"{INK}\">{}</text>\
             <rect x=\"{label_w}\" y=\"{:.1}\" width=\"{:.1}\" height=\"16\" fill=\"{BAR}\"/>\
             <text x=\"{:.1}\" y=\"{:.1}\" font-size=\"13\" fill=\"{INK}\">{}</text>",
            label_w - 8.0,
            y + 13.0,
            escape(&label),
            y + 1.0,
            len.max(1.0),
            label_w + len + 6.0,
            y + 13.0,
            escape(&p.text)
        );
    }
    svg.push_str("</svg>");
    svg
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn labels_from_visitors_are_escaped() {
        let evil = Point {
            label: "<script>alert(1)</script>".into(),
            value: 3.0,
            text: "3\"><x".into(),
        };
        for svg in [
            over_time("a", "T", std::slice::from_ref(&evil), false),
            over_time("b", "T", std::slice::from_ref(&evil), true),
            ranking("c", "T", std::slice::from_ref(&evil)),
        ] {
            assert!(!svg.contains("<script>") && !svg.contains("\"><x"), "{svg}");
            assert!(svg.starts_with("<svg") && svg.ends_with("</svg>"));
            assert!(svg.contains("role=\"img\""));
        }
        // Nothing to draw still makes a valid image.
        assert!(ranking("d", "T", &[]).ends_with("</svg>"));
        assert!(over_time("e", "T", &[], true).ends_with("</svg>"));
    }
}
