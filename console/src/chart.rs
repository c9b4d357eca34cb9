//! Charts as SVG, drawn on the server (`../shared/CONSOLE.md`, "Charts"): time on the x axis
//! at the window's own step, a y axis with units and a zero baseline, gaps where there was no
//! traffic (a missing point breaks the line; it is never drawn as a zero), a legend naming
//! every colour, and the same numbers as a table in a `<details>`.
//!
//! Invariant: a chart draws the values it is given; it never sums or derives them (stacked
//! bars stack the API's per-group amounts as given).

use maud::{html, Markup};

/// Series colours: distinguishable, and at least 3:1 against the card background. A chart
/// with more series than colours repeats them; its legend and data table still name each.
const PALETTE: [&str; 12] = [
    "#2563eb", "#d97706", "#059669", "#dc2626", "#7c3aed", "#0891b2", "#be185d", "#4b5563",
    "#65a30d", "#9333ea", "#c2410c", "#0f766e",
];

const WIDTH: f64 = 520.0;
const HEIGHT: f64 = 220.0;
const LEFT: f64 = 70.0;
const RIGHT: f64 = 12.0;
const TOP: f64 = 12.0;
const BOTTOM: f64 = 28.0;

/// One line or stack layer: a value per x position (`None`: nothing there).
#[derive(Debug, Clone)]
pub struct Series {
    pub name: String,
    pub values: Vec<Option<f64>>,
}

/// An x position: its axis label and its full label (tables and tooltips).
#[derive(Debug, Clone)]
pub struct Tick {
    pub short: String,
    pub full: String,
}

/// What is drawn and how its values are written.
pub struct Chart<'a> {
    /// Unique on the page (ids of the title and description).
    pub id: &'a str,
    pub title: &'a str,
    pub description: &'a str,
    pub x: &'a [Tick],
    pub series: &'a [Series],
    /// Writes a y value with its unit (axis ticks and the data table).
    pub format: &'a dyn Fn(f64) -> String,
    /// Per x position, where its bar leads (the drill-down of that step); bars charts only.
    pub links: Option<&'a [String]>,
}

/// The smallest "nice" number (1, 2, 2.5, 5 × 10ⁿ) at or above `max`.
pub fn nice_ceiling(max: f64) -> f64 {
    if max <= 0.0 || !max.is_finite() {
        return 1.0;
    }
    let magnitude = 10f64.powf(max.log10().floor());
    [1.0, 2.0, 2.5, 5.0, 10.0]
        .into_iter()
        .map(|m| m * magnitude)
        .find(|v| *v >= max * (1.0 - 1e-12))
        .unwrap_or(10.0 * magnitude)
}

fn x_at(i: usize, n: usize) -> f64 {
    let inner = WIDTH - LEFT - RIGHT;
    if n <= 1 {
        LEFT + inner / 2.0
    } else {
        LEFT + inner * i as f64 / (n - 1) as f64
    }
}

/// The centre of slot `i` of `n` (bars sit inside the plot, never over the axis labels).
fn slot_at(i: usize, n: usize) -> f64 {
    let inner = WIDTH - LEFT - RIGHT;
    LEFT + inner * (i as f64 + 0.5) / n.max(1) as f64
}

fn y_at(v: f64, top: f64) -> f64 {
    let inner = HEIGHT - TOP - BOTTOM;
    TOP + inner * (1.0 - (v / top).clamp(0.0, 1.0))
}

/// The path of a series: segments between gaps (a lone point becomes a dot elsewhere).
fn path(values: &[Option<f64>], top: f64) -> String {
    let n = values.len();
    let mut d = String::new();
    let mut pen_down = false;
    for (i, v) in values.iter().enumerate() {
        match v {
            Some(v) => {
                let cmd = if pen_down { 'L' } else { 'M' };
                d.push_str(&format!("{cmd}{:.1} {:.1} ", x_at(i, n), y_at(*v, top)));
                pen_down = true;
            }
            None => pen_down = false,
        }
    }
    d.trim_end().to_string()
}

/// Points with no neighbour on either side (drawn as dots so they are not lost).
fn lone_points(values: &[Option<f64>]) -> Vec<(usize, f64)> {
    (0..values.len())
        .filter_map(|i| {
            let v = values[i]?;
            let before = i > 0 && values[i - 1].is_some();
            let after = values.get(i + 1).is_some_and(Option::is_some);
            (!before && !after).then_some((i, v))
        })
        .collect()
}

/// Which x positions get an axis label (at most about six, evenly spread).
fn labelled(n: usize) -> Vec<usize> {
    if n == 0 {
        return Vec::new();
    }
    let every = n.div_ceil(6).max(1);
    (0..n).step_by(every).collect()
}

fn frame(chart: &Chart, top: f64, slots: bool, body: Markup) -> Markup {
    let title_id = format!("{}-title", chart.id);
    let desc_id = format!("{}-desc", chart.id);
    let n = chart.x.len();
    html! {
        svg class="chart" viewBox={"0 0 " (WIDTH) " " (HEIGHT)} role="img"
            aria-labelledby={(title_id) " " (desc_id)} preserveAspectRatio="xMidYMid meet" {
            title id=(title_id) { (chart.title) }
            desc id=(desc_id) { (chart.description) }
            @for step in 0..=4 {
                @let v = top * f64::from(step) / 4.0;
                @let y = y_at(v, top);
                line x1=(LEFT) x2=(WIDTH - RIGHT) y1=(y) y2=(y) class=(if step == 0 { "axis" } else { "grid" }) {}
                text x=(LEFT - 6.0) y=(y + 4.0) text-anchor="end" class="tick" { ((chart.format)(v)) }
            }
            @for i in labelled(n) {
                text x=(if slots { slot_at(i, n) } else { x_at(i, n) }) y=(HEIGHT - 8.0) text-anchor="middle" class="tick" { (chart.x[i].short) }
            }
            (body)
        }
    }
}

fn legend(series: &[Series]) -> Markup {
    html! {
        ul class="legend" {
            @for (i, s) in series.iter().enumerate() {
                li {
                    svg class="swatch" viewBox="0 0 12 12" aria-hidden="true" {
                        rect width="12" height="12" rx="2" fill=(PALETTE[i % PALETTE.len()]) {}
                    }
                    (s.name)
                }
            }
        }
    }
}

fn table(chart: &Chart) -> Markup {
    html! {
        details class="data" {
            summary { "Data" }
            div class="table-scroll" {
                table {
                    thead { tr { th scope="col" { "Time" } @for s in chart.series { th scope="col" { (s.name) } } } }
                    tbody {
                        @for (i, tick) in chart.x.iter().enumerate() {
                            tr {
                                th scope="row" { (tick.full) }
                                @for s in chart.series {
                                    td class="num" { @match s.values.get(i).copied().flatten() { Some(v) => ((chart.format)(v)), None => "—" } }
                                }
                            }
                        }
                    }
                }
            }
        }
    }
}

fn empty(chart: &Chart) -> bool {
    chart
        .series
        .iter()
        .all(|s| s.values.iter().all(Option::is_none))
}

fn no_data(chart: &Chart) -> Markup {
    html! { p class="empty" { "No traffic in this window, so nothing to draw for " (chart.title.to_lowercase()) "." } }
}

/// Lines (one per series) with a legend.
pub fn lines(chart: &Chart) -> Markup {
    if empty(chart) {
        return no_data(chart);
    }
    let max = chart
        .series
        .iter()
        .flat_map(|s| s.values.iter().flatten())
        .fold(0.0f64, |a, b| a.max(*b));
    let top = nice_ceiling(max);
    let n = chart.x.len();
    let body = html! {
        @for (i, s) in chart.series.iter().enumerate() {
            @let colour = PALETTE[i % PALETTE.len()];
            path d=(path(&s.values, top)) fill="none" stroke=(colour) stroke-width="2" {}
            @for (j, v) in lone_points(&s.values) {
                circle cx=(x_at(j, n)) cy=(y_at(v, top)) r="2.5" fill=(colour) {}
            }
        }
    };
    html! {
        figure class="chart-box" {
            (frame(chart, top, false, body))
            @if chart.series.len() > 1 { (legend(chart.series)) }
            (table(chart))
        }
    }
}

/// Bars (the first series; one bar per x position that has a value).
pub fn bars(chart: &Chart) -> Markup {
    if empty(chart) {
        return no_data(chart);
    }
    stack(chart, false)
}

/// Bars stacked by series (spend by model or provider), with a legend.
pub fn stacked(chart: &Chart) -> Markup {
    if empty(chart) {
        return no_data(chart);
    }
    stack(chart, true)
}

fn stack(chart: &Chart, all: bool) -> Markup {
    let n = chart.x.len();
    let layers = if all {
        chart.series
    } else {
        &chart.series[..1]
    };
    let heights: Vec<f64> = (0..n)
        .map(|i| {
            layers
                .iter()
                .filter_map(|s| s.values.get(i).copied().flatten())
                .sum()
        })
        .collect();
    let top = nice_ceiling(heights.iter().copied().fold(0.0, f64::max));
    let inner = WIDTH - LEFT - RIGHT;
    let width = (inner / n.max(1) as f64 * 0.7).clamp(1.0, 40.0);
    let mut rects = Vec::new();
    for i in 0..n {
        let mut base = 0.0f64;
        for (k, s) in layers.iter().enumerate() {
            if let Some(v) = s.values.get(i).copied().flatten() {
                let (y0, y1) = (y_at(base, top), y_at(base + v, top));
                base += v;
                rects.push((
                    format!("{:.1}", slot_at(i, n) - width / 2.0),
                    format!("{y1:.1}"),
                    format!("{:.1}", (y0 - y1).max(0.0)),
                    PALETTE[k % PALETTE.len()],
                    format!("{} · {}: {}", chart.x[i].full, s.name, (chart.format)(v)),
                    chart.links.and_then(|l| l.get(i)),
                ));
            }
        }
    }
    let width = format!("{width:.1}");
    let body = html! {
        @for (x, y, height, colour, label, link) in &rects {
            @if let Some(href) = link {
                a href=(href) aria-label=(label) {
                    rect x=(x) y=(y) width=(width) height=(height) fill=(colour) { title { (label) } }
                }
            } @else {
                rect x=(x) y=(y) width=(width) height=(height) fill=(colour) { title { (label) } }
            }
        }
    };
    html! {
        figure class="chart-box" {
            (frame(chart, top, true, body))
            @if all && layers.len() > 1 { (legend(layers)) }
            (table(chart))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ticks(n: usize) -> Vec<Tick> {
        (0..n)
            .map(|i| Tick {
                short: format!("{i}"),
                full: format!("t{i}"),
            })
            .collect()
    }

    #[test]
    fn axes_end_at_nice_numbers() {
        assert_eq!(nice_ceiling(0.0), 1.0);
        assert_eq!(nice_ceiling(0.7), 1.0);
        assert_eq!(nice_ceiling(1.0), 1.0);
        assert_eq!(nice_ceiling(1.3), 2.0);
        assert_eq!(nice_ceiling(2.2), 2.5);
        assert_eq!(nice_ceiling(420.0), 500.0);
        assert_eq!(nice_ceiling(501.0), 1000.0);
    }

    #[test]
    fn gaps_break_the_line_and_lone_points_are_dots() {
        let values = [Some(1.0), Some(2.0), None, Some(2.0), None, None];
        let d = path(&values, 2.0);
        assert_eq!(d.matches('M').count(), 2, "{d}");
        assert_eq!(d.matches('L').count(), 1, "{d}");
        assert_eq!(lone_points(&values), vec![(3, 2.0)]);
        // Top of the plot for the maximum, the baseline for zero.
        assert_eq!(y_at(2.0, 2.0), TOP);
        assert_eq!(y_at(0.0, 2.0), HEIGHT - BOTTOM);
    }

    #[test]
    fn charts_carry_a_title_a_description_and_their_data() {
        let x = ticks(3);
        let series = [Series {
            name: "p50".into(),
            values: vec![Some(100.0), None, Some(300.0)],
        }];
        let chart = Chart {
            id: "latency",
            title: "Response time",
            description: "p50 per 5 minutes",
            x: &x,
            series: &series,
            format: &|v| format!("{v:.0} ms"),
            links: None,
        };
        let svg = lines(&chart).into_string();
        assert!(svg.contains("<title id=\"latency-title\">Response time</title>"));
        assert!(svg.contains("<desc id=\"latency-desc\">p50 per 5 minutes</desc>"));
        assert!(svg.contains("<td class=\"num\">300 ms</td>"), "{svg}");
        assert!(svg.contains("<td class=\"num\">—</td>"), "a gap is no zero");
        let nothing = [Series {
            name: "p50".into(),
            values: vec![None, None, None],
        }];
        let quiet = Chart {
            series: &nothing,
            ..chart
        };
        assert!(lines(&quiet).into_string().contains("No traffic"));
    }

    #[test]
    fn stacks_add_layers_as_given() {
        let x = ticks(2);
        let series = [
            Series {
                name: "a".into(),
                values: vec![Some(1.0), Some(3.0)],
            },
            Series {
                name: "b".into(),
                values: vec![Some(1.0), None],
            },
        ];
        let chart = Chart {
            id: "spend",
            title: "Spend",
            description: "by model",
            x: &x,
            series: &series,
            format: &|v| format!("${v:.2}"),
            links: None,
        };
        let svg = stacked(&chart).into_string();
        // Three rectangles (b has no value at the second position), a legend of two.
        assert_eq!(svg.matches("<rect x=").count(), 3, "{svg}");
        assert_eq!(svg.matches("<li>").count(), 2);
    }
}
