//! Pieces of markup that several pages share.

use std::fmt::Write as _;

use maud::{Markup, html};
use serde_json::Value;
use stockroom_protocol::{Dataset, DatasetStatus};

use crate::time::parse_rfc3339;
use crate::ui::Visitor;

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
pub fn ext_link(url: &str, text: &str) -> Markup {
    html! {
        @if url.starts_with("https://") || url.starts_with("http://") {
            a href=(url) rel="noopener noreferrer" { (text) }
        } @else {
            (url)
        }
    }
}

/// The hidden CSRF input every form of the session carries.
pub fn csrf(v: &Visitor) -> Markup {
    html! { input type="hidden" name="csrf" value=(v.session.csrf); }
}

/// A table's head row of column names.
pub fn columns(names: &[&str]) -> Markup {
    html! { thead { tr { @for name in names { th scope="col" { (name) } } } } }
}

/// A form's error message, when there is one.
pub fn error(message: Option<&str>) -> Markup {
    html! {
        @if let Some(e) = message {
            p class="error" role="alert" { (e) }
        }
    }
}

/// The colour key of the stock gauges and charts; `limits` adds the min/max marker.
pub fn legend(limits: bool) -> Markup {
    html! {
        p class="legend" {
            span class="sw g-ready" {} "ready "
            span class="sw g-generating" {} "generating "
            span class="sw g-leased" {} "leased "
            span class="sw g-quarantined" {} "quarantined"
            @if limits {
                " " span class="sw-line" {} "min / max ready"
            }
        }
    }
}

/// Time left until `expires_at`, counted down by the page's script.
pub fn left(expires_at: &str, now: i64) -> Markup {
    match parse_rfc3339(expires_at) {
        Some(t) if t > now => {
            let s = (t - now) / 1000;
            let text = if s >= 3600 {
                format!("{}h {:02}m", s / 3600, (s % 3600) / 60)
            } else {
                format!("{}m {:02}s", s / 60, s % 60)
            };
            html! { time class="left" datetime=(expires_at) data-expires=(t) { (text) } }
        }
        _ => html! { "expired" },
    }
}

/// A link to a lease page showing its id.
pub fn lease_link(lease_id: &str) -> Markup {
    html! { a href={ "/ui/leases/" (url_part(lease_id)) } { code { (lease_id) } } }
}

/// A link to a dataset page showing its id.
pub fn dataset_link(id: &str) -> Markup {
    html! { a href={ "/ui/datasets/" (url_part(id)) } { code { (id) } } }
}

/// A dataset's attributes as `key=value` codes, or a dash.
pub fn attributes(d: &Dataset) -> Markup {
    html! {
        @if d.attributes.is_empty() {
            "—"
        } @else {
            @for (i, (k, v)) in d.attributes.iter().enumerate() {
                @if i > 0 { " " }
                code { (k) "=" (v.as_str()) }
            }
        }
    }
}

/// A dataset's entities, comma separated, or a dash.
pub fn entities(d: &Dataset) -> String {
    if d.entities.is_empty() {
        "—".into()
    } else {
        d.entities.join(", ")
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

/// The data of a dataset as a table; with `real` secret values sit behind
/// `<details>`, without they are redacted.
pub fn data_table(d: &Dataset, real: bool) -> Markup {
    let mut rows = Vec::new();
    flatten("", &d.data, &mut rows);
    html! {
        @if rows.is_empty() {
            p { "No data." }
        } @else {
            table class="data" {
                thead { tr { th scope="col" { "Field" } th scope="col" { "Value" } } }
                tbody {
                    @for (k, v) in &rows {
                        tr {
                            th scope="row" { code { (k) } }
                            td {
                                @if !d.is_secret_path(k) {
                                    code class="v" data-field=(k) { (v) }
                                } @else if real {
                                    details class="secret" {
                                        summary { "Secret — reveal" span class="vh" { " " (k) } }
                                        code class="v" data-field=(k) { (v) }
                                    }
                                } @else {
                                    span class="badge secret" { "secret" }
                                    " "
                                    code { "[redacted]" }
                                }
                            }
                        }
                    }
                }
            }
        }
    }
}

/// Whether a dataset in `status` can be discarded or recycled by hand.
pub fn settleable(status: DatasetStatus) -> bool {
    matches!(
        status,
        DatasetStatus::Quarantined | DatasetStatus::Ready | DatasetStatus::Failed
    )
}

/// The recycle and discard buttons for an admin; a hint for anybody else.
pub fn settle_forms(v: &Visitor, id: &str, status: DatasetStatus) -> Markup {
    let form = |action: &str, label: &str, class: &str| {
        html! {
            form method="post" action={ "/ui/datasets/" (url_part(id)) "/" (action) } class="inline" {
                (csrf(v))
                button type="submit" class=(class) { (label) span class="vh" { " " (id) } }
            }
        }
    };
    html! {
        @if !v.is_admin() {
            span class="hint" { "admin only" }
        } @else {
            @if status == DatasetStatus::Quarantined { (form("recycle", "Recycle", "")) }
            @if settleable(status) { (form("discard", "Discard", "danger")) }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn links_and_url_parts() {
        assert_eq!(url_part("a/b c"), "a%2Fb%20c");
        assert_eq!(
            ext_link("javascript:alert(1)", "x").into_string(),
            "javascript:alert(1)"
        );
        assert!(
            ext_link("https://ci/x?a=1&b=2", "job")
                .into_string()
                .contains("href=\"https://ci/x?a=1&amp;b=2\"")
        );
        assert_eq!(
            ext_link("<b>", "x").into_string(),
            "&lt;b&gt;",
            "text is escaped too"
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
