//! The active leases.

use maud::{Markup, html};
use stockroom_protocol::api::LeaseView;

use super::fragments::{columns, ext_link, lease_link, left, url_part};
use super::layout::Page;

fn holder_cells(l: &LeaseView) -> Markup {
    let h = &l.holder;
    html! {
        td { (h.label()) }
        td {
            @match &h.url {
                Some(u) => (ext_link(u, h.job.as_deref().unwrap_or("CI job"))),
                None => "—",
            }
        }
        td {
            @match (h.shard_index, h.shard_total) {
                (Some(i), Some(t)) => { (i) " / " (t) },
                _ => "—",
            }
        }
    }
}

pub fn leases(list: &[LeaseView], now: i64) -> Page {
    let body = html! {
        @if list.is_empty() {
            p { "No active leases." }
        } @else {
            p { (list.len()) " active lease(s)." }
            table id="leases" {
                (columns(&["Lease", "Holder", "CI job", "Shard", "Datasets", "Time left"]))
                tbody {
                    @for l in list {
                        tr {
                            th scope="row" { (lease_link(&l.lease_id)) }
                            (holder_cells(l))
                            td {
                                @for (i, d) in l.datasets.iter().enumerate() {
                                    @if i > 0 { br; }
                                    a href={ "/ui/datasets/" (url_part(&d.dataset.id)) } {
                                        (d.dataset.type_name) "/" (d.dataset.state)
                                    }
                                }
                            }
                            td { (left(&l.expires_at, now)) }
                        }
                    }
                }
            }
        }
    };
    Page {
        title: "Active leases".into(),
        nav: "leases",
        body,
    }
}
