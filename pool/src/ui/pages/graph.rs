//! The catalog's drawings as inline SVG: how a type's states are produced,
//! and a state's stock against its targets.

use std::collections::{BTreeMap, HashMap};

use maud::{Markup, html};
use stockroom_protocol::api::{CatalogState, Production, StockCounts};

/// One decimal, as the drawings' coordinates are written.
fn f1(v: f64) -> String {
    format!("{v:.1}")
}

/// No decimals.
fn f0(v: f64) -> String {
    format!("{v:.0}")
}

/// A bar of ready / generating / leased / quarantined against min and max.
pub fn gauge(s: &StockCounts) -> Markup {
    let (w, h) = (220.0_f64, 16.0_f64);
    let total = s.ready + s.generating + s.leased + s.quarantined;
    let max = f64::from(s.max_ready.unwrap_or(0))
        .max(total as f64)
        .max(1.0);
    let scale = w / max;
    let mut x = 0.0;
    let mut bars = Vec::new();
    for (n, class) in [
        (s.ready, "ready"),
        (s.generating, "generating"),
        (s.leased, "leased"),
        (s.quarantined, "quarantined"),
    ] {
        let width = n as f64 * scale;
        if width > 0.0 {
            bars.push((class, x, width));
        }
        x += width;
    }
    let marks: Vec<(&str, f64)> = [
        ("min", s.min_ready),
        ("target", s.target.as_ref().map(|t| t.target)),
        ("max", s.max_ready),
    ]
    .into_iter()
    .filter_map(|(class, v)| v.map(|v| (class, (f64::from(v) * scale).min(w - 1.0))))
    .collect();
    let target = match (s.min_ready, s.max_ready, &s.target) {
        (Some(a), Some(b), Some(t)) => format!("target {} (min {a}, max {b})", t.target),
        (Some(a), Some(b), None) => format!("min {a}, max {b}"),
        _ => "no stock target".to_string(),
    };
    let label = format!(
        "ready {}, generating {}, leased {}, quarantined {}; {target}",
        s.ready, s.generating, s.leased, s.quarantined
    );
    html! {
        div class="gauge" {
            svg role="img" aria-label=(label) width=(w) height="22" viewBox={ "0 -3 " (w) " 22" } {
                title { (label) }
                rect class="g-bg" x="0" y="0" width=(w) height=(h) {}
                @for (class, x, width) in &bars {
                    rect class={ "g-" (class) } x=(f1(*x)) y="0" width=(f1(*width)) height=(h) {}
                }
                @for (class, px) in &marks {
                    line class={ "g-" (class) } x1=(f1(*px)) x2=(f1(*px)) y1="-3" y2=(h + 3.0) {}
                }
            }
            div class="gauge-text" {
                span class="k-ready" { (s.ready) } " ready · "
                span class="k-generating" { (s.generating) } " gen · "
                span class="k-leased" { (s.leased) } " leased · "
                span class="k-quarantined" { (s.quarantined) } " quar. · "
                (target)
            }
            @if let Some(t) = &s.target {
                div class="gauge-why" { (t.why) }
            }
        }
    }
}

fn truncate(s: &str, n: usize) -> String {
    if s.chars().count() <= n {
        s.to_string()
    } else {
        let mut t: String = s.chars().take(n - 1).collect();
        t.push('…');
        t
    }
}

/// An extension drawn as an arrow between two states' boxes.
struct Edge {
    x1: f64,
    y1: f64,
    x2: f64,
    y2: f64,
    extension: String,
}

/// The states of one type as boxes by depth, extensions as arrows.
pub fn type_graph(type_name: &str, states: &[CatalogState]) -> Markup {
    let index: HashMap<&str, usize> = states
        .iter()
        .enumerate()
        .map(|(i, s)| (s.state.as_str(), i))
        .collect();
    let mut depth = vec![0usize; states.len()];
    for _ in 0..states.len() {
        for (i, s) in states.iter().enumerate() {
            for p in &s.produced_by {
                if let Production::Extend { from, .. } = p
                    && let Some(&f) = index.get(from.as_str())
                    && f != i
                {
                    depth[i] = depth[i].max(depth[f] + 1).min(states.len());
                }
            }
        }
    }
    let mut rows_in_col: BTreeMap<usize, usize> = BTreeMap::new();
    let mut pos = Vec::new();
    for d in &depth {
        let row = rows_in_col.entry(*d).or_insert(0);
        pos.push((*d, *row));
        *row += 1;
    }
    let (bw, bh, cx, cy) = (180.0_f64, 44.0_f64, 290.0_f64, 62.0_f64);
    let cols = depth.iter().max().map_or(1, |m| m + 1);
    let rows = rows_in_col.values().max().copied().unwrap_or(1);
    let width = cols as f64 * cx - (cx - bw) + 4.0;
    let height = rows as f64 * cy - (cy - bh) + 4.0;
    let at = |i: usize| {
        let (c, r) = pos[i];
        (2.0 + c as f64 * cx, 2.0 + r as f64 * cy)
    };
    let mut edges = Vec::new();
    let mut subtitles = Vec::new();
    let mut desc = Vec::new();
    for (i, s) in states.iter().enumerate() {
        let mut sub = "registered".to_string();
        for p in &s.produced_by {
            match p {
                Production::Extend {
                    from, extension, ..
                } => {
                    if let Some(&f) = index.get(from.as_str()) {
                        let ((fx, fy), (x, y)) = (at(f), at(i));
                        edges.push(Edge {
                            x1: fx + bw,
                            y1: fy + bh / 2.0,
                            x2: x,
                            y2: y + bh / 2.0,
                            extension: extension.clone(),
                        });
                    }
                    desc.push(format!("{} from {} by {}", s.state, from, extension));
                    sub = format!("by {extension}");
                }
                Production::Generate {
                    generator,
                    requires,
                } => {
                    sub = if requires.is_empty() {
                        format!("generate · {generator}")
                    } else {
                        let r: Vec<String> = requires
                            .iter()
                            .map(|r| format!("{}/{}", r.type_name, r.state))
                            .collect();
                        format!("needs {}", r.join(", "))
                    };
                    desc.push(format!("{} generated by {}", s.state, generator));
                }
                Production::Registered => desc.push(format!("{} registered by hand", s.state)),
            }
        }
        subtitles.push(truncate(&sub, 27));
    }
    let label = format!("How {type_name} states are produced: {}", desc.join("; "));
    let arrow = format!("arrow-{type_name}");
    html! {
        svg class="graph" role="img" aria-label=(label) width=(f0(width)) height=(f0(height))
            viewBox={ "0 0 " (f0(width)) " " (f0(height)) } {
            title { (label) }
            defs {
                marker id=(arrow) viewBox="0 0 10 10" refX="9" refY="5" markerWidth="7" markerHeight="7" orient="auto-start-reverse" {
                    path d="M 0 0 L 10 5 L 0 10 z" class="arrow" {}
                }
            }
            @for e in &edges {
                line class="edge" x1=(f0(e.x1)) y1=(f0(e.y1)) x2=(f0(e.x2 - 2.0)) y2=(f0(e.y2))
                    marker-end={ "url(#" (arrow) ")" } {}
                text class="edge-label" x=(f0((e.x1 + e.x2) / 2.0)) y=(f0((e.y1 + e.y2) / 2.0 - 5.0)) text-anchor="middle" {
                    (e.extension)
                }
            }
            @for (i, (s, sub)) in states.iter().zip(&subtitles).enumerate() {
                @let (x, y) = at(i);
                g class=(if s.available { "node" } else { "node unavailable" }) {
                    rect x=(f0(x)) y=(f0(y)) width=(bw) height=(bh) rx="6" {}
                    text x=(f0(x + bw / 2.0)) y=(f0(y + 18.0)) text-anchor="middle" class="node-title" { (s.state) }
                    text x=(f0(x + bw / 2.0)) y=(f0(y + 35.0)) text-anchor="middle" class="node-sub" { (sub) }
                }
            }
        }
    }
}
