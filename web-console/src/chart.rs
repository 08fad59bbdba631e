//! A hand-written SVG line chart: per-version series on a shared time axis, with markers
//! (scaling decisions) whose reasons show on hover. Pure: data in, markup out.

use std::fmt::Write as _;

/// One line of a chart. `x` is seconds relative to now (negative in the past); a `None`
/// `y` breaks the line (no data in that second).
#[derive(Debug, Clone)]
pub struct Series {
    pub label: String,
    pub points: Vec<(f64, Option<f64>)>,
}

/// A vertical mark at `x`, explained by `label` on hover.
#[derive(Debug, Clone)]
pub struct Marker {
    pub x: f64,
    pub label: String,
}

#[derive(Debug, Clone)]
pub struct Chart {
    /// Used as the id prefix and the accessible name.
    pub id: String,
    pub title: String,
    /// The current figure shown beside the title, e.g. `12.3 req/s`.
    pub headline: String,
    pub unit: String,
    /// Visible span, e.g. `(-300.0, 0.0)`.
    pub x_range: (f64, f64),
    pub series: Vec<Series>,
    pub markers: Vec<Marker>,
    /// Draw steps (instance counts) instead of straight segments.
    pub step: bool,
}

const W: f64 = 640.0;
const H: f64 = 180.0;
const LEFT: f64 = 44.0;
const RIGHT: f64 = 10.0;
const TOP: f64 = 10.0;
const BOTTOM: f64 = 22.0;

/// Escapes text for HTML and SVG content and attributes.
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

/// The smallest of 1, 2, 2.5, 5 × 10ⁿ at or above `v` (at least 1).
pub fn nice_ceiling(v: f64) -> f64 {
    if !v.is_finite() || v <= 1.0 {
        return 1.0;
    }
    let magnitude = 10f64.powf(v.log10().floor());
    for m in [1.0, 2.0, 2.5, 5.0, 10.0] {
        if m * magnitude >= v - 1e-9 {
            return m * magnitude;
        }
    }
    10.0 * magnitude
}

fn axis_label(v: f64) -> String {
    if v >= 1000.0 {
        format!("{:.1}k", v / 1000.0)
    } else if v.fract() == 0.0 {
        format!("{v:.0}")
    } else {
        format!("{v:.1}")
    }
}

fn time_label(secs: f64) -> String {
    if secs.abs() < 0.5 {
        "now".into()
    } else if secs.abs() >= 60.0 && (secs.abs().round() as i64) % 60 == 0 {
        format!("-{}m", (secs.abs() / 60.0).round())
    } else {
        format!("-{}s", secs.abs().round())
    }
}

impl Chart {
    fn y_max(&self) -> f64 {
        let max = self
            .series
            .iter()
            .flat_map(|s| s.points.iter().filter_map(|p| p.1))
            .fold(0.0f64, f64::max);
        nice_ceiling(max * 1.05)
    }

    fn sx(&self, x: f64) -> f64 {
        let (a, b) = self.x_range;
        let span = (b - a).max(1e-9);
        LEFT + (x.clamp(a, b) - a) / span * (W - LEFT - RIGHT)
    }

    fn sy(&self, y: f64, max: f64) -> f64 {
        TOP + (1.0 - (y / max).clamp(0.0, 1.0)) * (H - TOP - BOTTOM)
    }

    /// The path of one series: segments between gaps.
    fn path(&self, s: &Series, max: f64) -> String {
        let mut d = String::new();
        let mut pen_down = false;
        let mut last_y = 0.0;
        for &(x, y) in &s.points {
            match y {
                Some(y) => {
                    let (px, py) = (self.sx(x), self.sy(y, max));
                    if !pen_down {
                        let _ = write!(d, "M{px:.1} {py:.1}");
                    } else if self.step {
                        let _ = write!(d, "H{px:.1}V{py:.1}");
                    } else {
                        let _ = write!(d, "L{px:.1} {py:.1}");
                    }
                    pen_down = true;
                    last_y = py;
                }
                None => pen_down = false,
            }
        }
        if self.step && pen_down {
            let _ = write!(d, "H{:.1}V{last_y:.1}", self.sx(self.x_range.1));
        }
        d
    }

    /// The chart as a `<figure>` with caption, SVG and legend.
    pub fn render(&self) -> String {
        let max = self.y_max();
        let mut svg = String::new();
        let title = escape(&self.title);
        let _ = write!(
            svg,
            r#"<figure class="chart" id="{id}"><figcaption><span class="chart-title">{title}</span> <span class="chart-headline" data-chart-headline>{headline}</span></figcaption><svg viewBox="0 0 {W} {H}" role="img" aria-label="{title}, {headline}" preserveAspectRatio="none">"#,
            id = escape(&self.id),
            headline = escape(&self.headline),
        );
        for i in 0..=2 {
            let v = max * f64::from(i) / 2.0;
            let y = self.sy(v, max);
            let _ = write!(
                svg,
                r#"<line class="grid" x1="{LEFT}" x2="{x2}" y1="{y:.1}" y2="{y:.1}"/><text class="axis" x="{lx}" y="{ty:.1}" text-anchor="end">{label}</text>"#,
                x2 = W - RIGHT,
                lx = LEFT - 6.0,
                ty = y + 4.0,
                label = escape(&format!(
                    "{}{}",
                    axis_label(v),
                    if i == 2 { &self.unit } else { "" }
                )),
            );
        }
        let (a, b) = self.x_range;
        for i in 0..=4 {
            let x = a + (b - a) * f64::from(i) / 4.0;
            let anchor = match i {
                0 => "start",
                4 => "end",
                _ => "middle",
            };
            let _ = write!(
                svg,
                r#"<text class="axis" x="{px:.1}" y="{y}" text-anchor="{anchor}">{label}</text>"#,
                px = self.sx(x),
                y = H - 6.0,
                label = time_label(x),
            );
        }
        for (i, s) in self.series.iter().enumerate() {
            let d = self.path(s, max);
            if d.is_empty() {
                continue;
            }
            let _ = write!(
                svg,
                r#"<path class="series s{n}" d="{d}" data-series="{label}"><title>{label}</title></path>"#,
                n = i % 6,
                label = escape(&s.label),
            );
        }
        for m in self.markers.iter().filter(|m| m.x >= a && m.x <= b) {
            let x = self.sx(m.x);
            let _ = write!(
                svg,
                r#"<g class="marker"><title>{label}</title><line x1="{x:.1}" x2="{x:.1}" y1="{TOP}" y2="{y2}"/><rect x="{rx:.1}" y="{TOP}" width="12" height="{h}"/><circle cx="{x:.1}" cy="{TOP}" r="4"/></g>"#,
                label = escape(&m.label),
                y2 = H - BOTTOM,
                rx = x - 6.0,
                h = H - TOP - BOTTOM,
            );
        }
        svg.push_str("</svg>");
        if !self.series.is_empty() {
            svg.push_str(r#"<ul class="legend">"#);
            for (i, s) in self.series.iter().enumerate() {
                let _ = write!(
                    svg,
                    r#"<li><span class="swatch s{n}"></span>{label}</li>"#,
                    n = i % 6,
                    label = escape(&s.label)
                );
            }
            if self.markers.iter().any(|m| m.x >= a && m.x <= b) {
                svg.push_str(r#"<li><span class="swatch marker-swatch"></span>scaling decision (hover for why)</li>"#);
            }
            svg.push_str("</ul>");
        } else {
            svg.push_str(r#"<p class="chart-empty">No traffic in this window.</p>"#);
        }
        svg.push_str("</figure>");
        svg
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn chart(series: Vec<Series>, markers: Vec<Marker>, step: bool) -> Chart {
        Chart {
            id: "rps".into(),
            title: "Requests/s".into(),
            headline: "3 req/s".into(),
            unit: "".into(),
            x_range: (-100.0, 0.0),
            series,
            markers,
            step,
        }
    }

    #[test]
    fn nice_ceilings() {
        assert_eq!(nice_ceiling(0.0), 1.0);
        assert_eq!(nice_ceiling(1.2), 2.0);
        assert_eq!(nice_ceiling(2.1), 2.5);
        assert_eq!(nice_ceiling(7.0), 10.0);
        assert_eq!(nice_ceiling(120.0), 200.0);
        assert_eq!(nice_ceiling(f64::NAN), 1.0);
    }

    #[test]
    fn draws_lines_with_gaps_and_scales_to_the_frame() {
        let s = Series {
            label: "v1".into(),
            points: vec![
                (-100.0, Some(0.0)),
                (-50.0, Some(10.0)),
                (-40.0, None),
                (0.0, Some(5.0)),
            ],
        };
        let svg = chart(vec![s], vec![], false).render();
        // max 10 → nice ceiling of 10.5 is 20; the frame is 44..630 × 10..158.
        assert!(
            svg.contains(r#"d="M44.0 158.0L337.0 84.0M630.0 121.0""#),
            "{svg}"
        );
        assert!(svg.contains(">20<"), "top label is the nice maximum: {svg}");
        assert!(svg.contains(">-100s<") && svg.contains(">-50s<") && svg.contains(">now<"));
        assert_eq!(time_label(-300.0), "-5m");
        assert_eq!(time_label(-225.0), "-225s");
        assert!(svg.contains(r#"<span class="swatch s0"></span>v1"#));
    }

    #[test]
    fn steps_run_to_the_right_edge() {
        let s = Series {
            label: "v2".into(),
            points: vec![(-100.0, Some(1.0)), (-50.0, Some(2.0))],
        };
        let svg = chart(vec![s], vec![], true).render();
        assert!(
            svg.contains(r#"d="M44.0 98.8H337.0V39.6H630.0V39.6""#),
            "{svg}"
        );
    }

    #[test]
    fn markers_explain_themselves_and_text_is_escaped() {
        let m = Marker {
            x: -10.0,
            label: "v1 1 → 3: panic <concurrency>".into(),
        };
        let outside = Marker {
            x: -500.0,
            label: "old".into(),
        };
        let svg = chart(vec![], vec![m, outside], false).render();
        assert!(
            svg.contains("<title>v1 1 → 3: panic &lt;concurrency&gt;</title>"),
            "{svg}"
        );
        assert!(!svg.contains("old"));
        assert!(svg.contains("No traffic"));
        assert_eq!(
            escape(r#"<a href="x">'&'</a>"#),
            "&lt;a href=&quot;x&quot;&gt;&#39;&amp;&#39;&lt;/a&gt;"
        );
    }
}
