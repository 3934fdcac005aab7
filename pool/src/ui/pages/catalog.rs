//! The catalog: every type and state with how it is produced and its stock,
//! the problems found in generators' capabilities, and generators' health.

use maud::{Markup, html};
use stockroom_protocol::api::{Catalog, CatalogState, Production};

use super::fragments::{columns, legend, url_part};
use super::graph::{gauge, type_graph};
use super::layout::Page;

fn production(p: &Production) -> Markup {
    html! {
        @match p {
            Production::Generate { generator, requires } => {
                "generate (" (generator) ")"
                @if !requires.is_empty() {
                    "; requires "
                    @for (i, r) in requires.iter().enumerate() {
                        @if i > 0 { ", " }
                        (r.name) " = " (r.type_name) "/" (r.state)
                    }
                }
            }
            Production::Extend { generator, from, extension } => {
                "extend from " b { (from) } " by " code { (extension) } " (" (generator) ")"
            }
            Production::Registered => "registered by hand",
        }
    }
}

fn state_row(type_name: &str, s: &CatalogState) -> Markup {
    let key = format!("{type_name}/{}", s.state);
    html! {
        tr {
            th scope="row" {
                span class="state" { (s.state) }
                @if !s.available { " " span class="badge bad" { "unavailable" } }
                @if s.reusable { " " span class="badge" { "reusable" } }
                @if let Some(d) = &s.description { div class="desc" { (d) } }
            }
            td {
                @if s.attributes.is_empty() { "—" }
                @for (i, (k, vs)) in s.attributes.iter().enumerate() {
                    @if i > 0 { br; }
                    code { (k) } ": "
                    @for (j, v) in vs.iter().enumerate() {
                        @if j > 0 { " | " }
                        (v.as_str())
                    }
                }
            }
            td {
                @if s.fields.is_empty() { "—" }
                @for (i, f) in s.fields.iter().enumerate() {
                    @if i > 0 { ", " }
                    code { (f) }
                    @if stockroom_protocol::dataset::is_secret_path(&s.secret_fields, f) {
                        " " span class="badge secret" { "secret" }
                    }
                }
            }
            td {
                @for (i, p) in s.produced_by.iter().enumerate() {
                    @if i > 0 { br; }
                    (production(p))
                }
            }
            td { (gauge(&s.stock)) }
            td {
                a class="button" href={ "/ui/lease?state=" (url_part(&key)) } {
                    "Lease" span class="vh" { " " (key) }
                }
            }
        }
    }
}

fn generators(cat: &Catalog) -> Markup {
    html! {
        section aria-labelledby="gen-h" {
            h2 id="gen-h" { "Generators" }
            @if cat.generators.is_empty() {
                p { "No generators are configured." }
            } @else {
                table {
                    (columns(&["Generator", "Health", "Failure rate", "Median latency", "Last error"]))
                    tbody {
                        @for g in &cat.generators {
                            tr {
                                th scope="row" { (g.name) }
                                td {
                                    @if g.available {
                                        span class="badge ok" { "up" }
                                    } @else {
                                        span class="badge bad" { "down" }
                                    }
                                }
                                td {
                                    @match g.failure_rate {
                                        Some(r) => { (format!("{:.0}", r * 100.0)) "%" },
                                        None => "—",
                                    }
                                }
                                td {
                                    @match g.median_latency_ms {
                                        Some(m) => { (m) " ms" },
                                        None => "—",
                                    }
                                }
                                td { (g.last_error.as_deref().unwrap_or("—")) }
                            }
                        }
                    }
                }
            }
        }
    }
}

pub fn catalog(cat: &Catalog) -> Page {
    let body = html! {
        @if !cat.problems.is_empty() {
            section class="problems" aria-label="Problems" {
                h2 { "Problems" }
                ul { @for p in &cat.problems { li { (p) } } }
            }
        }
        @if cat.types.is_empty() {
            p {
                "The pool knows no states yet: configure generators or " code { "[[stock]]" }
                ", or register datasets."
            }
        }
        (legend(true))
        @for t in &cat.types {
            @let id = format!("type-{}", url_part(&t.type_name));
            section class="type" aria-labelledby=(id) {
                h2 id=(id) { (t.type_name) }
                (type_graph(&t.type_name, &t.states))
                table {
                    thead {
                        tr {
                            @for name in ["State", "Attributes", "Fields", "Produced by", "Stock"] {
                                th scope="col" { (name) }
                            }
                            th scope="col" { span class="vh" { "Actions" } }
                        }
                    }
                    tbody { @for s in &t.states { (state_row(&t.type_name, s)) } }
                }
            }
        }
        (generators(cat))
    };
    Page {
        title: "Catalog".into(),
        nav: "catalog",
        body,
    }
}
