//! Stock over time: one line chart per state from the recorded samples.

use std::time::Duration;

use maud::{Markup, html};

use super::fragments::legend;
use super::layout::Page;
use crate::ui::samples::Sample;

/// The lines, in the order of a sample's counts.
const SERIES: [&str; 4] = ["ready", "generating", "leased", "quarantined"];
/// At most this many points are drawn per line.
const MAX_POINTS: usize = 600;
const W: f64 = 640.0;
const H: f64 = 150.0;
const PAD_L: f64 = 36.0;
const PAD_B: f64 = 20.0;

/// `HH:MM:SS UTC` of a time in milliseconds.
fn clock(ms: i64) -> String {
    let t = crate::time::rfc3339(ms);
    t.get(11..19).map_or(t.clone(), |s| format!("{s} UTC"))
}

/// The chart of one `(type, state)` over the `picked` samples, from `t0` to `t1`.
fn chart(key: &(String, String), picked: &[&Sample], (t0, t1): (i64, i64)) -> Markup {
    let span = (t1 - t0).max(1) as f64;
    let ymax = picked
        .iter()
        .filter_map(|s| s.counts.get(key))
        .flat_map(|c| c.iter().copied())
        .max()
        .unwrap_or(0)
        .max(1);
    let points = |i: usize| -> String {
        picked
            .iter()
            .map(|s| {
                let v = s.counts.get(key).map_or(0, |c| c[i]) as f64;
                let x = PAD_L + (s.at_ms - t0) as f64 / span * (W - PAD_L - 4.0);
                let y = 4.0 + (H - PAD_B - 4.0) * (1.0 - v / ymax as f64);
                format!("{x:.1},{y:.1}")
            })
            .collect::<Vec<_>>()
            .join(" ")
    };
    let last = picked
        .last()
        .and_then(|s| s.counts.get(key))
        .copied()
        .unwrap_or_default();
    let label = format!(
        "{}/{} over time; now ready {}, generating {}, leased {}, quarantined {}",
        key.0, key.1, last[0], last[1], last[2], last[3]
    );
    let (yb, tx) = (H - PAD_B, PAD_L - 4.0);
    html! {
        figure class="chart" {
            figcaption { (key.0) "/" (key.1) }
            svg role="img" aria-label=(label) width=(W) height=(H) viewBox={ "0 0 " (W) " " (H) } {
                title { (label) }
                line class="axis" x1=(PAD_L) y1="4" x2=(PAD_L) y2=(yb) {}
                line class="axis" x1=(PAD_L) y1=(yb) x2=(W) y2=(yb) {}
                text class="tick" x=(tx) y="12" text-anchor="end" { (ymax) }
                text class="tick" x=(tx) y=(yb) text-anchor="end" { "0" }
                text class="tick" x=(PAD_L) y=(H) dy="-4" { (clock(t0)) }
                text class="tick" x=(W) y=(H) dy="-4" text-anchor="end" { (clock(t1)) }
                @for (i, name) in SERIES.iter().enumerate() {
                    polyline class={ "s-" (name) } points=(points(i)) {}
                }
            }
        }
    }
}

pub fn stock(samples: &[Sample], interval: Duration) -> Page {
    let mut keys: Vec<&(String, String)> = samples.iter().flat_map(|s| s.counts.keys()).collect();
    keys.sort();
    keys.dedup();
    let step = samples.len().div_ceil(MAX_POINTS).max(1);
    let picked: Vec<&Sample> = samples.iter().step_by(step).chain(samples.last()).collect();
    let span = (
        picked.first().map_or(0, |s| s.at_ms),
        picked.last().map_or(1, |s| s.at_ms),
    );
    let body = html! {
        p class="hint" {
            "Sampled every " (interval.as_secs()) " s; the last 24 h are kept in the pool's memory (a restart starts afresh). "
            (samples.len()) " sample(s)."
        }
        (legend(false))
        @if samples.is_empty() || keys.is_empty() {
            p { "No samples yet." }
        }
        div class="charts" {
            @for key in &keys { (chart(key, &picked, span)) }
        }
    };
    Page {
        title: "Stock over time".into(),
        nav: "stock",
        body,
    }
}
