//! HTML rendering: hand-written markup where every piece of text from the
//! store, the catalog or the request goes through [`esc`].

use std::collections::{BTreeMap, HashMap};
use std::fmt::Write as _;
use std::time::Duration;

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::Value;
use stockroom_protocol::api::{
    Catalog, CatalogState, DatasetView, LeaseView, Production, StockCounts,
};
use stockroom_protocol::pool_config::Role;
use stockroom_protocol::{Dataset, DatasetStatus};

use super::Who;
use super::samples::Sample;
use crate::service::Quarantined;
use crate::time::parse_rfc3339;

/// Escapes text for HTML element content and quoted attribute values.
pub fn esc(s: &str) -> String {
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

/// Percent-encodes a path segment or query value.
pub fn url_part(s: &str) -> String {
    let mut out = String::new();
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-_.~".contains(&b) {
            out.push(char::from(b));
        } else {
            let _ = write!(out, "%{b:02X}");
        }
    }
    out
}

/// A link only for http(s) URLs; anything else is shown as text.
fn ext_link(url: &str, text: &str) -> String {
    if url.starts_with("https://") || url.starts_with("http://") {
        format!(
            "<a href=\"{}\" rel=\"noopener noreferrer\">{}</a>",
            esc(url),
            esc(text)
        )
    } else {
        esc(url)
    }
}

/// One page's title, navigation key and body.
pub struct Page {
    pub title: String,
    pub nav: &'static str,
    pub body: String,
}

impl Page {
    pub fn message(title: &str, text: &str) -> Page {
        Page {
            title: title.to_string(),
            nav: "",
            body: format!("<p role=\"alert\">{}</p>", esc(text)),
        }
    }
}

const NAV: &[(&str, &str, &str)] = &[
    ("catalog", "/", "Catalog"),
    ("lease", "/ui/lease", "Lease by hand"),
    ("leases", "/ui/leases", "Active leases"),
    ("quarantine", "/ui/quarantine", "Quarantine"),
    ("stock", "/ui/stock", "Stock over time"),
];

fn headers(resp: &mut Response) {
    let h = resp.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/html; charset=utf-8"),
    );
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    h.insert(
        "x-content-type-options",
        HeaderValue::from_static("nosniff"),
    );
    h.insert("referrer-policy", HeaderValue::from_static("same-origin"));
    h.insert("x-frame-options", HeaderValue::from_static("DENY"));
    h.insert(
        "content-security-policy",
        HeaderValue::from_static("default-src 'none'; style-src 'self'; script-src 'self'; img-src 'self' data:; connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'"),
    );
}

fn doc(title: &str, header_html: &str, body: &str) -> String {
    format!(
        "<!doctype html>\n<html lang=\"en\"><head><meta charset=\"utf-8\"><meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\
<title>{} — Stockroom pool</title><link rel=\"stylesheet\" href=\"/ui/assets/app.css\"><script src=\"/ui/assets/app.js\" defer></script></head>\n\
<body><a class=\"skip\" href=\"#main\">Skip to content</a>{header_html}<main id=\"main\"><h1>{}</h1>\n{body}</main>\
<footer><a href=\"/api/v1/openapi.json\">API description</a> · <a href=\"/metrics\">metrics</a> · <a href=\"/readyz\">readiness</a></footer></body></html>\n",
        esc(title),
        esc(title)
    )
}

/// A page without navigation (sign-in, refusals).
pub fn bare(status: StatusCode, title: &str, body: &str) -> Response {
    let header_html = "<header><span class=\"brand\">Stockroom pool</span></header>";
    let mut r = (status, doc(title, header_html, body)).into_response();
    headers(&mut r);
    r
}

/// A hidden CSRF input for the session's forms.
fn csrf(who: &Who) -> String {
    format!(
        "<input type=\"hidden\" name=\"csrf\" value=\"{}\">",
        esc(&who.session.csrf)
    )
}

pub fn layout(who: &Who, page: Page) -> Response {
    let mut nav = String::new();
    for (key, href, label) in NAV {
        let current = if *key == page.nav {
            " aria-current=\"page\""
        } else {
            ""
        };
        let _ = write!(nav, "<a href=\"{href}\"{current}>{label}</a>");
    }
    let caller = &who.session.caller;
    let whoami = if who.open {
        format!(
            "<div class=\"who open\" role=\"note\"><strong>No tokens configured:</strong> every visitor acts as <b>admin</b>.\
<form method=\"post\" action=\"/ui/logout\">{}<button type=\"submit\">Forget session</button></form></div>",
            csrf(who)
        )
    } else {
        format!(
            "<div class=\"who\">Signed in as <b>{}</b> <span class=\"role role-{}\">{}</span>\
<form method=\"post\" action=\"/ui/logout\">{}<button type=\"submit\">Sign out</button></form></div>",
            esc(&caller.name),
            caller.role.as_str(),
            caller.role.as_str(),
            csrf(who)
        )
    };
    let header_html = format!(
        "<header><span class=\"brand\">Stockroom pool</span><nav aria-label=\"Main\">{nav}</nav>{whoami}</header>"
    );
    let mut r = doc(&page.title, &header_html, &page.body).into_response();
    headers(&mut r);
    if let Some(c) = &who.set_cookie
        && let Ok(v) = HeaderValue::from_str(c)
    {
        r.headers_mut().insert(header::SET_COOKIE, v);
    }
    r
}

pub fn login(status: StatusCode, error: Option<&str>) -> Response {
    let err = error
        .map(|e| format!("<p class=\"error\" role=\"alert\">{}</p>", esc(e)))
        .unwrap_or_default();
    let body = format!(
        "{err}<form method=\"post\" action=\"/ui/login\" class=\"card narrow\">\
<p><label for=\"token\">Token</label><input id=\"token\" name=\"token\" type=\"password\" autocomplete=\"current-password\" required autofocus></p>\
<p><button type=\"submit\">Sign in</button></p>\
<p class=\"hint\">A <code>ci</code> token may browse and lease; an <code>admin</code> token may also discard and recycle. \
The token is checked once; the browser keeps only a random session id (HttpOnly cookie). Sessions end when the pool restarts.</p></form>"
    );
    bare(status, "Sign in", &body)
}

fn stock_total(s: &StockCounts) -> u64 {
    s.ready + s.generating + s.leased + s.quarantined
}

/// A bar of ready / generating / leased / quarantined against min and max.
pub fn gauge(s: &StockCounts) -> String {
    let (w, h) = (220.0_f64, 16.0_f64);
    let max = f64::from(s.max_ready.unwrap_or(0))
        .max(stock_total(s) as f64)
        .max(1.0);
    let scale = w / max;
    let mut x = 0.0;
    let mut svg = String::new();
    for (n, class) in [
        (s.ready, "ready"),
        (s.generating, "generating"),
        (s.leased, "leased"),
        (s.quarantined, "quarantined"),
    ] {
        let width = n as f64 * scale;
        if width > 0.0 {
            let _ = write!(
                svg,
                "<rect class=\"g-{class}\" x=\"{x:.1}\" y=\"0\" width=\"{width:.1}\" height=\"{h}\"/>"
            );
        }
        x += width;
    }
    for (v, class) in [(s.min_ready, "min"), (s.max_ready, "max")] {
        if let Some(v) = v {
            let px = (f64::from(v) * scale).min(w - 1.0);
            let _ = write!(
                svg,
                "<line class=\"g-{class}\" x1=\"{px:.1}\" x2=\"{px:.1}\" y1=\"-3\" y2=\"{}\"/>",
                h + 3.0
            );
        }
    }
    let target = match (s.min_ready, s.max_ready) {
        (Some(a), Some(b)) => format!("target {a}–{b}"),
        _ => "no stock target".to_string(),
    };
    let label = format!(
        "ready {}, generating {}, leased {}, quarantined {}; {target}",
        s.ready, s.generating, s.leased, s.quarantined
    );
    format!(
        "<div class=\"gauge\"><svg role=\"img\" aria-label=\"{l}\" width=\"{w}\" height=\"22\" viewBox=\"0 -3 {w} 22\"><title>{l}</title>\
<rect class=\"g-bg\" x=\"0\" y=\"0\" width=\"{w}\" height=\"{h}\"/>{svg}</svg>\
<div class=\"gauge-text\"><span class=\"k-ready\">{}</span> ready · <span class=\"k-generating\">{}</span> gen · <span class=\"k-leased\">{}</span> leased · <span class=\"k-quarantined\">{}</span> quar. · {}</div></div>",
        s.ready,
        s.generating,
        s.leased,
        s.quarantined,
        esc(&target),
        l = esc(&label)
    )
}

fn production_text(p: &Production) -> String {
    match p {
        Production::Generate {
            generator,
            requires,
        } => {
            let mut t = format!("generate ({})", esc(generator));
            if !requires.is_empty() {
                let r: Vec<String> = requires
                    .iter()
                    .map(|r| format!("{} = {}/{}", esc(&r.name), esc(&r.type_name), esc(&r.state)))
                    .collect();
                let _ = write!(t, "; requires {}", r.join(", "));
            }
            t
        }
        Production::Extend {
            generator,
            from,
            extension,
        } => format!(
            "extend from <b>{}</b> by <code>{}</code> ({})",
            esc(from),
            esc(extension),
            esc(generator)
        ),
        Production::Registered => "registered by hand".to_string(),
    }
}

/// The states of one type as boxes by depth, extensions as arrows.
fn type_graph(type_name: &str, states: &[CatalogState]) -> String {
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
    let mut edges = String::new();
    let mut nodes = String::new();
    let mut desc = Vec::new();
    for (i, s) in states.iter().enumerate() {
        let (x, y) = at(i);
        let mut sub = "registered".to_string();
        for p in &s.produced_by {
            match p {
                Production::Extend {
                    from, extension, ..
                } => {
                    if let Some(&f) = index.get(from.as_str()) {
                        let (fx, fy) = at(f);
                        let (x1, y1, x2, y2) = (fx + bw, fy + bh / 2.0, x, y + bh / 2.0);
                        let _ = write!(
                            edges,
                            "<line class=\"edge\" x1=\"{x1:.0}\" y1=\"{y1:.0}\" x2=\"{:.0}\" y2=\"{y2:.0}\" marker-end=\"url(#arrow-{})\"/>\
<text class=\"edge-label\" x=\"{:.0}\" y=\"{:.0}\" text-anchor=\"middle\">{}</text>",
                            x2 - 2.0,
                            esc(type_name),
                            (x1 + x2) / 2.0,
                            (y1 + y2) / 2.0 - 5.0,
                            esc(extension)
                        );
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
        let class = if s.available {
            "node"
        } else {
            "node unavailable"
        };
        let _ = write!(
            nodes,
            "<g class=\"{class}\"><rect x=\"{x:.0}\" y=\"{y:.0}\" width=\"{bw}\" height=\"{bh}\" rx=\"6\"/>\
<text x=\"{:.0}\" y=\"{:.0}\" text-anchor=\"middle\" class=\"node-title\">{}</text>\
<text x=\"{:.0}\" y=\"{:.0}\" text-anchor=\"middle\" class=\"node-sub\">{}</text></g>",
            x + bw / 2.0,
            y + 18.0,
            esc(&s.state),
            x + bw / 2.0,
            y + 35.0,
            esc(&truncate(&sub, 27))
        );
    }
    let label = format!("How {type_name} states are produced: {}", desc.join("; "));
    format!(
        "<svg class=\"graph\" role=\"img\" aria-label=\"{l}\" width=\"{width:.0}\" height=\"{height:.0}\" viewBox=\"0 0 {width:.0} {height:.0}\"><title>{l}</title>\
<defs><marker id=\"arrow-{t}\" viewBox=\"0 0 10 10\" refX=\"9\" refY=\"5\" markerWidth=\"7\" markerHeight=\"7\" orient=\"auto-start-reverse\"><path d=\"M 0 0 L 10 5 L 0 10 z\" class=\"arrow\"/></marker></defs>{edges}{nodes}</svg>",
        l = esc(&label),
        t = esc(type_name)
    )
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

pub fn catalog(cat: &Catalog, problems: &[String]) -> Page {
    let mut b = String::new();
    if !problems.is_empty() {
        b.push_str("<section class=\"problems\" aria-label=\"Problems\"><h2>Problems</h2><ul>");
        for p in problems {
            let _ = write!(b, "<li>{}</li>", esc(p));
        }
        b.push_str("</ul></section>");
    }
    if cat.types.is_empty() {
        b.push_str("<p>The pool knows no states yet: configure generators or <code>[[stock]]</code>, or register datasets.</p>");
    }
    b.push_str("<p class=\"legend\"><span class=\"sw g-ready\"></span>ready <span class=\"sw g-generating\"></span>generating <span class=\"sw g-leased\"></span>leased <span class=\"sw g-quarantined\"></span>quarantined <span class=\"sw-line\"></span>min / max ready</p>");
    for t in &cat.types {
        let _ = write!(
            b,
            "<section class=\"type\" aria-labelledby=\"type-{id}\"><h2 id=\"type-{id}\">{}</h2>",
            esc(&t.type_name),
            id = esc(&url_part(&t.type_name))
        );
        b.push_str(&type_graph(&t.type_name, &t.states));
        b.push_str("<table><thead><tr><th scope=\"col\">State</th><th scope=\"col\">Attributes</th><th scope=\"col\">Fields</th><th scope=\"col\">Produced by</th><th scope=\"col\">Stock</th><th scope=\"col\"><span class=\"vh\">Actions</span></th></tr></thead><tbody>");
        for s in &t.states {
            let desc = s
                .description
                .as_deref()
                .map(|d| format!("<div class=\"desc\">{}</div>", esc(d)))
                .unwrap_or_default();
            let unavailable = if s.available {
                ""
            } else {
                " <span class=\"badge bad\">unavailable</span>"
            };
            let reusable = if s.reusable {
                " <span class=\"badge\">reusable</span>"
            } else {
                ""
            };
            let attrs: Vec<String> = s
                .attributes
                .iter()
                .map(|(k, vs)| {
                    let v: Vec<String> = vs.iter().map(|v| esc(v.as_str())).collect();
                    format!("<code>{}</code>: {}", esc(k), v.join(" | "))
                })
                .collect();
            let fields: Vec<String> = s
                .fields
                .iter()
                .map(|f| {
                    if stockroom_protocol::dataset::is_secret_path(&s.secret_fields, f) {
                        format!(
                            "<code>{}</code> <span class=\"badge secret\">secret</span>",
                            esc(f)
                        )
                    } else {
                        format!("<code>{}</code>", esc(f))
                    }
                })
                .collect();
            let prod: Vec<String> = s.produced_by.iter().map(production_text).collect();
            let key = format!("{}/{}", t.type_name, s.state);
            let _ = write!(
                b,
                "<tr><th scope=\"row\"><span class=\"state\">{}</span>{unavailable}{reusable}{desc}</th><td>{}</td><td>{}</td><td>{}</td><td>{}</td>\
<td><a class=\"button\" href=\"/ui/lease?state={}\">Lease<span class=\"vh\"> {}</span></a></td></tr>",
                esc(&s.state),
                if attrs.is_empty() {
                    "—".into()
                } else {
                    attrs.join("<br>")
                },
                if fields.is_empty() {
                    "—".into()
                } else {
                    fields.join(", ")
                },
                prod.join("<br>"),
                gauge(&s.stock),
                esc(&url_part(&key)),
                esc(&key)
            );
        }
        b.push_str("</tbody></table></section>");
    }
    b.push_str("<section aria-labelledby=\"gen-h\"><h2 id=\"gen-h\">Generators</h2>");
    if cat.generators.is_empty() {
        b.push_str("<p>No generators are configured.</p>");
    } else {
        b.push_str("<table><thead><tr><th scope=\"col\">Generator</th><th scope=\"col\">Health</th><th scope=\"col\">Failure rate</th><th scope=\"col\">Median latency</th><th scope=\"col\">Last error</th></tr></thead><tbody>");
        for g in &cat.generators {
            let _ = write!(
                b,
                "<tr><th scope=\"row\">{}</th><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
                esc(&g.name),
                if g.available {
                    "<span class=\"badge ok\">up</span>"
                } else {
                    "<span class=\"badge bad\">down</span>"
                },
                g.failure_rate
                    .map_or("—".into(), |r| format!("{:.0}%", r * 100.0)),
                g.median_latency_ms
                    .map_or("—".into(), |m| format!("{m} ms")),
                g.last_error.as_deref().map_or("—".into(), esc)
            );
        }
        b.push_str("</tbody></table>");
    }
    b.push_str("</section>");
    Page {
        title: "Catalog".into(),
        nav: "catalog",
        body: b,
    }
}

pub fn lease_form(
    who: &Who,
    cat: &Catalog,
    q: &HashMap<String, String>,
    error: Option<&str>,
) -> Page {
    let picked = q.get("state").map(String::as_str).unwrap_or("");
    let mut options = String::new();
    let mut hints = String::new();
    for t in &cat.types {
        let _ = write!(options, "<optgroup label=\"{}\">", esc(&t.type_name));
        for s in &t.states {
            let key = format!("{}/{}", t.type_name, s.state);
            let sel = if key == picked { " selected" } else { "" };
            let _ = write!(
                options,
                "<option value=\"{k}\"{sel}>{k} ({} ready)</option>",
                s.stock.ready,
                k = esc(&key)
            );
            if !s.attributes.is_empty() {
                let a: Vec<String> = s
                    .attributes
                    .iter()
                    .map(|(k, vs)| {
                        format!(
                            "{}={}",
                            k,
                            vs.iter().map(|v| v.as_str()).collect::<Vec<_>>().join("|")
                        )
                    })
                    .collect();
                let _ = write!(
                    hints,
                    "<li><code>{}</code>: {}</li>",
                    esc(&key),
                    esc(&a.join(", "))
                );
            }
        }
        options.push_str("</optgroup>");
    }
    let err = error
        .map(|e| format!("<p class=\"error\" role=\"alert\">{}</p>", esc(e)))
        .unwrap_or_default();
    let val = |k: &str, d: &str| esc(q.get(k).map(String::as_str).unwrap_or(d));
    let body = format!(
        "{err}<form method=\"post\" action=\"/ui/lease\" class=\"card\">{}\
<p><label for=\"state\">State</label><select id=\"state\" name=\"state\" required>{options}</select></p>\
<p><label for=\"attributes\">Attributes <span class=\"hint\">(optional, <code>key=value</code>, comma separated)</span></label><input id=\"attributes\" name=\"attributes\" value=\"{}\" placeholder=\"country=DE\"></p>\
<div class=\"row\"><p><label for=\"count\">Count</label><input id=\"count\" name=\"count\" type=\"number\" min=\"1\" max=\"100\" value=\"{}\" required></p>\
<p><label for=\"ttl\">TTL (seconds)</label><input id=\"ttl\" name=\"ttl\" type=\"number\" min=\"1\" value=\"{}\" required></p></div>\
<p><button type=\"submit\">Lease</button></p>\
<p class=\"hint\">The lease is held by <code>web</code> / <code>by hand</code> and goes through the same leasing path as the API; it waits up to 15 s for stock.</p></form>\
{}",
        csrf(who),
        val("attributes", ""),
        val("count", "1"),
        val("ttl", "600"),
        if hints.is_empty() {
            String::new()
        } else {
            format!("<h2>Known attributes</h2><ul>{hints}</ul>")
        }
    );
    Page {
        title: "Lease by hand".into(),
        nav: "lease",
        body,
    }
}

fn left(expires_at: &str, now: i64) -> String {
    match parse_rfc3339(expires_at) {
        Some(t) if t > now => {
            let s = (t - now) / 1000;
            let text = if s >= 3600 {
                format!("{}h {:02}m", s / 3600, (s % 3600) / 60)
            } else {
                format!("{}m {:02}s", s / 60, s % 60)
            };
            format!(
                "<time class=\"left\" datetime=\"{}\" data-expires=\"{t}\">{text}</time>",
                esc(expires_at)
            )
        }
        _ => "expired".into(),
    }
}

fn holder_cells(l: &LeaseView) -> String {
    let h = &l.holder;
    let job = h.url.as_deref().map_or_else(
        || "—".to_string(),
        |u| ext_link(u, h.job.as_deref().unwrap_or("CI job")),
    );
    let shard = match (h.shard_index, h.shard_total) {
        (Some(i), Some(t)) => format!("{i} / {t}"),
        _ => "—".into(),
    };
    format!("<td>{}</td><td>{job}</td><td>{shard}</td>", esc(&h.label()))
}

pub fn leases(list: &[LeaseView], now: i64) -> Page {
    let mut b = String::new();
    if list.is_empty() {
        b.push_str("<p>No active leases.</p>");
    } else {
        let _ = write!(b, "<p>{} active lease(s).</p>", list.len());
        b.push_str("<table id=\"leases\"><thead><tr><th scope=\"col\">Lease</th><th scope=\"col\">Holder</th><th scope=\"col\">CI job</th><th scope=\"col\">Shard</th><th scope=\"col\">Datasets</th><th scope=\"col\">Time left</th></tr></thead><tbody>");
        for l in list {
            let ds: Vec<String> = l
                .datasets
                .iter()
                .map(|d| {
                    format!(
                        "<a href=\"/ui/datasets/{}\">{}/{}</a>",
                        esc(&url_part(&d.dataset.id)),
                        esc(&d.dataset.type_name),
                        esc(&d.dataset.state)
                    )
                })
                .collect();
            let _ = write!(
                b,
                "<tr><th scope=\"row\"><a href=\"/ui/leases/{}\"><code>{}</code></a></th>{}<td>{}</td><td>{}</td></tr>",
                esc(&url_part(&l.lease_id)),
                esc(&l.lease_id),
                holder_cells(l),
                ds.join("<br>"),
                left(&l.expires_at, now)
            );
        }
        b.push_str("</tbody></table>");
    }
    Page {
        title: "Active leases".into(),
        nav: "leases",
        body: b,
    }
}

/// Every leaf of `data` with its dotted path.
fn flatten(prefix: &str, v: &Value, out: &mut Vec<(String, String)>) {
    match v {
        Value::Object(m) if !m.is_empty() => {
            for (k, v) in m {
                let p = if prefix.is_empty() {
                    k.clone()
                } else {
                    format!("{prefix}.{k}")
                };
                flatten(&p, v, out);
            }
        }
        Value::String(s) => out.push((prefix.to_string(), s.clone())),
        other => out.push((prefix.to_string(), other.to_string())),
    }
}

/// The data of a dataset as a table; secret values behind `<details>`.
fn data_table(d: &Dataset, real: bool) -> String {
    let mut rows = Vec::new();
    flatten("", &d.data, &mut rows);
    if rows.is_empty() {
        return "<p>No data.</p>".into();
    }
    let mut b = String::from(
        "<table class=\"data\"><thead><tr><th scope=\"col\">Field</th><th scope=\"col\">Value</th></tr></thead><tbody>",
    );
    for (k, v) in rows {
        let value = if d.is_secret_path(&k) {
            if real {
                format!(
                    "<details class=\"secret\"><summary>Secret — reveal<span class=\"vh\"> {}</span></summary><code class=\"v\" data-field=\"{}\">{}</code></details>",
                    esc(&k),
                    esc(&k),
                    esc(&v)
                )
            } else {
                "<span class=\"badge secret\">secret</span> <code>[redacted]</code>".to_string()
            }
        } else {
            format!(
                "<code class=\"v\" data-field=\"{}\">{}</code>",
                esc(&k),
                esc(&v)
            )
        };
        let _ = write!(
            b,
            "<tr><th scope=\"row\"><code>{}</code></th><td>{value}</td></tr>",
            esc(&k)
        );
    }
    b.push_str("</tbody></table>");
    b
}

fn attrs_text(d: &Dataset) -> String {
    if d.attributes.is_empty() {
        return "—".into();
    }
    d.attributes
        .iter()
        .map(|(k, v)| format!("<code>{}={}</code>", esc(k), esc(v.as_str())))
        .collect::<Vec<_>>()
        .join(" ")
}

pub fn lease(who: &Who, l: &LeaseView, mine: bool, now: i64) -> Page {
    let mut b = String::new();
    let _ = write!(
        b,
        "<dl class=\"facts\"><dt>Lease</dt><dd><code id=\"lease-id\">{}</code></dd><dt>Status</dt><dd><span class=\"badge status-{s}\" id=\"lease-status\">{s}</span></dd>\
<dt>Holder</dt><dd>{}</dd><dt>Taken</dt><dd>{}</dd><dt>Time left</dt><dd>{}</dd>{}</dl>",
        esc(&l.lease_id),
        esc(&l.holder.label()),
        esc(&l.created_at),
        if l.status == stockroom_protocol::LeaseStatus::Active {
            left(&l.expires_at, now)
        } else {
            "—".into()
        },
        l.reason
            .as_deref()
            .map(|r| format!("<dt>Reason</dt><dd>{}</dd>", esc(r)))
            .unwrap_or_default(),
        s = esc(l.status.as_str()),
    );
    if !mine {
        b.push_str("<p class=\"hint\">Secret values are redacted: real data is shown only to the session that leased by hand, while the lease is active.</p>");
    }
    for d in &l.datasets {
        let ds = &d.dataset;
        let _ = write!(
            b,
            "<section class=\"card dataset\"><h2>{}[{}] <a href=\"/ui/datasets/{}\"><code>{}</code></a></h2><p>{}/{} · attributes {} · entities {}</p>{}</section>",
            esc(&d.name),
            d.index,
            esc(&url_part(&ds.id)),
            esc(&ds.id),
            esc(&ds.type_name),
            esc(&ds.state),
            attrs_text(ds),
            if ds.entities.is_empty() {
                "—".into()
            } else {
                esc(&ds.entities.join(", "))
            },
            data_table(ds, mine)
        );
    }
    let can_end = mine || who.session.caller.role >= Role::Admin;
    if l.status == stockroom_protocol::LeaseStatus::Active && can_end {
        let _ = write!(
            b,
            "<form method=\"post\" action=\"/ui/leases/{}/release\" class=\"card\">{}<h2>End this lease</h2>\
<p><label for=\"reason\">Reason <span class=\"hint\">(needed to quarantine)</span></label><input id=\"reason\" name=\"reason\" placeholder=\"what was wrong with the data\"></p>\
<p class=\"actions\"><button type=\"submit\" name=\"outcome\" value=\"passed\">Release (passed)</button> \
<button type=\"submit\" name=\"outcome\" value=\"failed\" class=\"danger\">Quarantine (failed)</button></p></form>",
            esc(&url_part(&l.lease_id)),
            csrf(who)
        );
    }
    Page {
        title: format!("Lease {}", l.lease_id),
        nav: "leases",
        body: b,
    }
}

fn history_table(v: &DatasetView) -> String {
    let mut b = String::from(
        "<table class=\"history\"><thead><tr><th scope=\"col\">At</th><th scope=\"col\">From</th><th scope=\"col\">To</th><th scope=\"col\">Lease</th><th scope=\"col\">Holder</th><th scope=\"col\">Reason</th></tr></thead><tbody>",
    );
    for h in &v.history {
        let _ = write!(
            b,
            "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
            esc(&h.at),
            h.from.map_or("—", |f| f.as_str()),
            h.to.as_str(),
            h.lease_id.as_deref().map_or("—".into(), |l| format!(
                "<a href=\"/ui/leases/{}\"><code>{}</code></a>",
                esc(&url_part(l)),
                esc(l)
            )),
            h.holder.as_deref().map_or("—".into(), esc),
            esc(&h.reason)
        );
    }
    b.push_str("</tbody></table>");
    b
}

fn settle_forms(who: &Who, id: &str, status: DatasetStatus) -> String {
    if who.session.caller.role < Role::Admin {
        return "<span class=\"hint\">admin only</span>".into();
    }
    let mut b = String::new();
    let form = |action: &str, label: &str, class: &str| {
        format!(
            "<form method=\"post\" action=\"/ui/datasets/{}/{action}\" class=\"inline\">{}<button type=\"submit\" class=\"{class}\">{label}<span class=\"vh\"> {}</span></button></form>",
            esc(&url_part(id)),
            csrf(who),
            esc(id)
        )
    };
    if status == DatasetStatus::Quarantined {
        b.push_str(&form("recycle", "Recycle", ""));
    }
    if matches!(
        status,
        DatasetStatus::Quarantined | DatasetStatus::Ready | DatasetStatus::Failed
    ) {
        b.push_str(&form("discard", "Discard", "danger"));
    }
    b
}

pub fn quarantine(who: &Who, rows: &[Quarantined], q: &HashMap<String, String>) -> Page {
    let mut b = String::new();
    if let (Some(id), Some(action)) = (q.get("settled"), q.get("action")) {
        let done = if action == "recycle" {
            "recycled (ready again)"
        } else {
            "discarded"
        };
        let _ = write!(
            b,
            "<p class=\"notice\" role=\"status\">Dataset <code>{}</code> {done}.</p>",
            esc(id)
        );
    }
    if who.session.caller.role < Role::Admin {
        b.push_str("<p class=\"hint\">You are signed in with a <code>ci</code> token: discarding and recycling need an admin token.</p>");
    }
    if rows.is_empty() {
        b.push_str("<p>Nothing is quarantined.</p>");
    } else {
        b.push_str("<table id=\"quarantine\"><thead><tr><th scope=\"col\">Dataset</th><th scope=\"col\">State</th><th scope=\"col\">Since</th><th scope=\"col\">Reason</th><th scope=\"col\">Failing job</th><th scope=\"col\">History</th><th scope=\"col\">Actions</th></tr></thead><tbody>");
        for r in rows {
            let v = &r.view;
            let last = v
                .history
                .iter()
                .rev()
                .find(|h| h.to == DatasetStatus::Quarantined);
            let mut hist = String::new();
            for h in &v.history {
                let _ = write!(
                    hist,
                    "<li>{} {} → {}: {}</li>",
                    esc(&h.at),
                    h.from.map_or("—", |f| f.as_str()),
                    h.to.as_str(),
                    esc(&h.reason)
                );
            }
            let _ = write!(
                b,
                "<tr><th scope=\"row\"><a href=\"/ui/datasets/{}\"><code>{}</code></a></th><td>{}/{}</td><td>{}</td><td>{}</td><td>{}</td>\
<td><details><summary>{} entries</summary><ol>{hist}</ol></details></td><td>{}</td></tr>",
                esc(&url_part(&v.dataset.id)),
                esc(&v.dataset.id),
                esc(&v.dataset.type_name),
                esc(&v.dataset.state),
                esc(last.map_or(v.updated_at.as_str(), |h| h.at.as_str())),
                esc(last.map_or("—", |h| h.reason.as_str())),
                r.failing_job
                    .as_deref()
                    .map_or("—".into(), |u| ext_link(u, "job")),
                v.history.len(),
                settle_forms(who, &v.dataset.id, v.status)
            );
        }
        b.push_str("</tbody></table>");
    }
    Page {
        title: "Quarantine".into(),
        nav: "quarantine",
        body: b,
    }
}

pub fn dataset(who: &Who, v: &DatasetView) -> Page {
    let d = &v.dataset;
    let mut b = format!(
        "<dl class=\"facts\"><dt>State</dt><dd>{}/{}</dd><dt>Status</dt><dd><span class=\"badge status-{s}\" id=\"dataset-status\">{s}</span></dd>\
<dt>Attributes</dt><dd>{}</dd><dt>Entities</dt><dd>{}</dd><dt>Created</dt><dd>{}</dd><dt>Updated</dt><dd>{}</dd>{}{}</dl>",
        esc(&d.type_name),
        esc(&d.state),
        attrs_text(d),
        if d.entities.is_empty() {
            "—".into()
        } else {
            esc(&d.entities.join(", "))
        },
        esc(&v.created_at),
        esc(&v.updated_at),
        v.lease_id
            .as_deref()
            .map(|l| format!(
                "<dt>Lease</dt><dd><a href=\"/ui/leases/{}\"><code>{}</code></a></dd>",
                esc(&url_part(l)),
                esc(l)
            ))
            .unwrap_or_default(),
        v.error
            .as_deref()
            .map(|e| format!("<dt>Error</dt><dd>{}</dd>", esc(e)))
            .unwrap_or_default(),
        s = v.status.as_str()
    );
    let forms = settle_forms(who, &d.id, v.status);
    if !forms.is_empty()
        && matches!(
            v.status,
            DatasetStatus::Quarantined | DatasetStatus::Ready | DatasetStatus::Failed
        )
    {
        let _ = write!(b, "<p class=\"actions\">{forms}</p>");
    }
    b.push_str("<h2>History</h2>");
    b.push_str(&history_table(v));
    b.push_str("<h2>Data</h2><p class=\"hint\">Secret fields are redacted here.</p>");
    b.push_str(&data_table(d, false));
    Page {
        title: format!("Dataset {}", d.id),
        nav: "",
        body: b,
    }
}

const SERIES: [&str; 4] = ["ready", "generating", "leased", "quarantined"];

/// One line chart per state from the recorded samples.
pub fn stock(samples: &[Sample], interval: Duration) -> Page {
    let mut b = format!(
        "<p class=\"hint\">Sampled every {} s; the last 24 h are kept in the pool's memory (a restart starts afresh). {} sample(s).</p>\
<p class=\"legend\"><span class=\"sw g-ready\"></span>ready <span class=\"sw g-generating\"></span>generating <span class=\"sw g-leased\"></span>leased <span class=\"sw g-quarantined\"></span>quarantined</p>",
        interval.as_secs(),
        samples.len()
    );
    let mut keys: Vec<(String, String)> = samples
        .iter()
        .flat_map(|s| s.counts.keys().cloned())
        .collect();
    keys.sort();
    keys.dedup();
    if samples.is_empty() || keys.is_empty() {
        b.push_str("<p>No samples yet.</p>");
    }
    b.push_str("<div class=\"charts\">");
    let step = samples.len().div_ceil(600).max(1);
    let picked: Vec<&Sample> = samples.iter().step_by(step).chain(samples.last()).collect();
    let (t0, t1) = (
        picked.first().map_or(0, |s| s.at_ms),
        picked.last().map_or(1, |s| s.at_ms),
    );
    let span = (t1 - t0).max(1) as f64;
    let (w, h, pad_l, pad_b) = (640.0_f64, 150.0_f64, 36.0_f64, 20.0_f64);
    for key in &keys {
        let ymax = picked
            .iter()
            .filter_map(|s| s.counts.get(key))
            .flat_map(|c| c.iter().copied())
            .max()
            .unwrap_or(0)
            .max(1) as f64;
        let mut lines = String::new();
        for (i, name) in SERIES.iter().enumerate() {
            let pts: Vec<String> = picked
                .iter()
                .map(|s| {
                    let v = s.counts.get(key).map_or(0, |c| c[i]) as f64;
                    let x = pad_l + (s.at_ms - t0) as f64 / span * (w - pad_l - 4.0);
                    let y = 4.0 + (h - pad_b - 4.0) * (1.0 - v / ymax);
                    format!("{x:.1},{y:.1}")
                })
                .collect();
            let _ = write!(
                lines,
                "<polyline class=\"s-{name}\" points=\"{}\"/>",
                pts.join(" ")
            );
        }
        let last = picked
            .last()
            .and_then(|s| s.counts.get(key))
            .copied()
            .unwrap_or_default();
        let label = format!(
            "{}/{} over time; now ready {}, generating {}, leased {}, quarantined {}",
            key.0, key.1, last[0], last[1], last[2], last[3]
        );
        let _ = write!(
            b,
            "<figure class=\"chart\"><figcaption>{}/{}</figcaption><svg role=\"img\" aria-label=\"{l}\" width=\"{w}\" height=\"{h}\" viewBox=\"0 0 {w} {h}\"><title>{l}</title>\
<line class=\"axis\" x1=\"{pad_l}\" y1=\"4\" x2=\"{pad_l}\" y2=\"{yb}\"/><line class=\"axis\" x1=\"{pad_l}\" y1=\"{yb}\" x2=\"{w}\" y2=\"{yb}\"/>\
<text class=\"tick\" x=\"{tx}\" y=\"12\" text-anchor=\"end\">{ymax}</text><text class=\"tick\" x=\"{tx}\" y=\"{yb}\" text-anchor=\"end\">0</text>\
<text class=\"tick\" x=\"{pad_l}\" y=\"{h}\" dy=\"-4\">{}</text><text class=\"tick\" x=\"{w}\" y=\"{h}\" dy=\"-4\" text-anchor=\"end\">{}</text>{lines}</svg></figure>",
            esc(&key.0),
            esc(&key.1),
            clock(t0),
            clock(t1),
            l = esc(&label),
            yb = h - pad_b,
            tx = pad_l - 4.0,
        );
    }
    b.push_str("</div>");
    Page {
        title: "Stock over time".into(),
        nav: "stock",
        body: b,
    }
}

/// `HH:MM:SS` UTC of a time in milliseconds.
fn clock(ms: i64) -> String {
    let t = crate::time::rfc3339(ms);
    t.get(11..19).map_or(t.clone(), |s| format!("{s} UTC"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escapes_markup() {
        assert_eq!(
            esc("<a href=\"x\">'&'</a>"),
            "&lt;a href=&quot;x&quot;&gt;&#39;&amp;&#39;&lt;/a&gt;"
        );
        assert_eq!(url_part("a/b c"), "a%2Fb%20c");
        assert_eq!(ext_link("javascript:alert(1)", "x"), "javascript:alert(1)");
        assert!(
            ext_link("https://ci/x?a=1&b=2", "job").contains("href=\"https://ci/x?a=1&amp;b=2\"")
        );
    }

    #[test]
    fn flattens_nested_data() {
        let mut out = Vec::new();
        flatten("", &serde_json::json!({"a": {"b": 1}, "c": "x"}), &mut out);
        assert_eq!(
            out,
            vec![
                ("a.b".to_string(), "1".to_string()),
                ("c".to_string(), "x".to_string())
            ]
        );
    }
}
