//! Charts per topic over the last hour, drawn here as inline SVG from the per-minute rollup
//! (`vqs::stats`): attempts finished and failed per minute, latency percentiles (p50, p95,
//! p99) and the waiting messages sampled each minute. No script draws them and nothing is
//! loaded from elsewhere: the page's refresh redraws them with the rest of its live part.

use std::fmt::Write;

use vqs::QueueError;
use vqs::stats::{StatsPoint, TopicSeries};

use super::html::esc;
use crate::state::VqsState;

/// The window the overview's charts show, in minutes.
pub const CHART_MINUTES: u32 = 60;

const W: f64 = 300.0;
const H: f64 = 70.0;

/// One line of a chart: its name, colour and values (`None`: no value that minute).
struct Line<'a> {
    name: &'a str,
    colour: &'a str,
    values: Vec<Option<i64>>,
}

/// A chart: the lines over the window, scaled to their largest value, with that value as
/// the scale's label. `kind` names it for tests and styles.
fn chart(kind: &str, topic: &str, title: &str, unit: &str, lines: &[Line<'_>]) -> String {
    let max = lines.iter().flat_map(|l| l.values.iter().flatten()).copied().max().unwrap_or(0).max(1);
    let n = lines.first().map_or(0, |l| l.values.len()).max(2);
    let x = |i: usize| i as f64 * W / (n - 1) as f64;
    let y = |v: i64| H - (v as f64 / max as f64) * (H - 4.0) - 2.0;
    let points = lines.iter().map(|l| l.values.iter().filter(|v| v.is_some_and(|v| v > 0)).count()).sum::<usize>();
    let mut svg = format!(
        r##"<figure class="chart" data-chart="{kind}" data-topic="{topic}" data-points="{points}"><figcaption>{title} <span class="scale">max {max}{unit}</span></figcaption><svg viewBox="0 0 {W} {H}" width="{W}" height="{H}" role="img" aria-label="{title}"><line x1="0" y1="{H}" x2="{W}" y2="{H}" stroke="#d0d7de"/>"##,
        kind = esc(kind),
        topic = esc(topic),
        title = esc(title),
        unit = esc(unit),
    );
    for l in lines {
        let mut path = String::new();
        for (i, v) in l.values.iter().enumerate() {
            if let Some(v) = v {
                let _ = write!(path, "{:.1},{:.1} ", x(i), y(*v));
            }
        }
        let _ = write!(
            svg,
            r#"<polyline points="{}" fill="none" stroke="{}" stroke-width="1.5"><title>{}</title></polyline>"#,
            path.trim_end(),
            l.colour,
            esc(l.name)
        );
        // A dot on each minute with a value, so a lone minute shows too.
        for (i, v) in l.values.iter().enumerate() {
            if let Some(v) = v.filter(|v| *v > 0) {
                let _ = write!(
                    svg,
                    r#"<circle cx="{:.1}" cy="{:.1}" r="2" fill="{}"><title>{}: {v}</title></circle>"#,
                    x(i),
                    y(v),
                    l.colour,
                    esc(l.name)
                );
            }
        }
    }
    svg += "</svg><span class=\"legend\">";
    for l in lines {
        let _ = write!(
            svg,
            r#"<span class="key"><svg width="10" height="10"><rect width="10" height="10" fill="{}"/></svg> {}</span> "#,
            l.colour,
            esc(l.name)
        );
    }
    svg + "</span></figure>"
}

fn values(points: &[StatsPoint], f: impl Fn(&StatsPoint) -> Option<i64>) -> Vec<Option<i64>> {
    points.iter().map(f).collect()
}

fn topic_charts(s: &TopicSeries) -> String {
    let p = &s.points;
    let throughput = chart(
        "throughput",
        &s.topic,
        "Finished per minute",
        "",
        &[
            Line { name: "finished", colour: "#1a7f37", values: values(p, |x| Some(x.finished)) },
            Line { name: "failed", colour: "#cf222e", values: values(p, |x| Some(x.failed)) },
        ],
    );
    let latency = chart(
        "latency",
        &s.topic,
        "Latency",
        " ms",
        &[
            Line { name: "p50", colour: "#0969da", values: values(p, |x| x.p50_ms) },
            Line { name: "p95", colour: "#9a6700", values: values(p, |x| x.p95_ms) },
            Line { name: "p99", colour: "#cf222e", values: values(p, |x| x.p99_ms) },
        ],
    );
    let depth = chart(
        "depth",
        &s.topic,
        "Waiting",
        "",
        &[Line { name: "waiting", colour: "#57606a", values: values(p, |x| x.depth) }],
    );
    format!(
        r#"<div class="charts" data-topic="{}"><h3>{}</h3>{throughput}{latency}{depth}</div>"#,
        esc(&s.topic),
        esc(&s.topic)
    )
}

/// The overview's charts section: one row of charts per topic with figures in the window.
pub(super) async fn section(state: &VqsState) -> Result<String, QueueError> {
    let series = state.queue.stats_timeseries(None, CHART_MINUTES).await?;
    let mut out = String::from(r#"<section id="charts"><h2>Last hour <span class="count">per minute</span></h2>"#);
    let shown: Vec<&TopicSeries> =
        series.iter().filter(|s| s.points.iter().any(|p| p.finished > 0 || p.depth.is_some_and(|d| d > 0))).collect();
    if shown.is_empty() {
        out += r#"<p class="empty">No figures yet: they are rolled up from finished jobs each minute.</p>"#;
    }
    for s in shown {
        out += &topic_charts(s);
    }
    out += "</section>";
    Ok(out)
}
