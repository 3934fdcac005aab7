//! Leasing by hand: a state, attributes, count and TTL.

use std::collections::HashMap;

use maud::html;
use stockroom_protocol::api::Catalog;

use super::fragments::{csrf, error};
use super::layout::Page;
use crate::ui::Visitor;

/// `q`: the fields to fill in (the query, or the form sent back with `message`).
pub fn lease_form(
    v: &Visitor,
    cat: &Catalog,
    q: &HashMap<String, String>,
    message: Option<&str>,
) -> Page {
    let picked = q.get("state").map_or("", String::as_str);
    let val = |k: &str, default: &'static str| q.get(k).map_or(default, String::as_str).to_string();
    let hints: Vec<(String, String)> = cat
        .types
        .iter()
        .flat_map(|t| t.states.iter().map(move |s| (t, s)))
        .filter(|(_, s)| !s.attributes.is_empty())
        .map(|(t, s)| {
            let a: Vec<String> = s
                .attributes
                .iter()
                .map(|(k, vs)| {
                    let vs: Vec<&str> = vs.iter().map(|v| v.as_str()).collect();
                    format!("{k}={}", vs.join("|"))
                })
                .collect();
            (format!("{}/{}", t.type_name, s.state), a.join(", "))
        })
        .collect();
    let body = html! {
        (error(message))
        form method="post" action="/ui/lease" class="card" {
            (csrf(v))
            p {
                label for="state" { "State" }
                select id="state" name="state" required {
                    @for t in &cat.types {
                        optgroup label=(t.type_name) {
                            @for s in &t.states {
                                @let key = format!("{}/{}", t.type_name, s.state);
                                option value=(key) selected[key == picked] { (key) " (" (s.stock.ready) " ready)" }
                            }
                        }
                    }
                }
            }
            p {
                label for="attributes" {
                    "Attributes "
                    span class="hint" { "(optional, " code { "key=value" } ", comma separated)" }
                }
                input id="attributes" name="attributes" value=(val("attributes", "")) placeholder="country=DE";
            }
            div class="row" {
                p {
                    label for="count" { "Count" }
                    input id="count" name="count" type="number" min="1" max="100" value=(val("count", "1")) required;
                }
                p {
                    label for="ttl" { "TTL (seconds)" }
                    input id="ttl" name="ttl" type="number" min="1" value=(val("ttl", "600")) required;
                }
            }
            p { button type="submit" { "Lease" } }
            p class="hint" {
                "The lease is held by " code { "web" } " / " code { "by hand" }
                " and goes through the same leasing path as the API; it waits up to 15 s for stock."
            }
        }
        @if !hints.is_empty() {
            h2 { "Known attributes" }
            ul {
                @for (key, attrs) in &hints {
                    li { code { (key) } ": " (attrs) }
                }
            }
        }
    };
    Page {
        title: "Lease by hand".into(),
        nav: "lease",
        body,
    }
}
