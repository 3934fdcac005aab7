//! The active leases.

use maud::{Markup, html};
use stockroom_protocol::api::LeaseView;

use super::fragments::{columns, ext_link, lease_link, left, url_part};
use super::layout::Page;

fn holder_cells(l: &LeaseView) -> Markup {
    let h = &l.holder;
    html! {
        td { (h.job_only().label()) }
        td class="test" {
            @match (&h.test, &h.worker) {
                (Some(t), Some(w)) => { code { (t) } " (" (w) ")" },
                (Some(t), None) => code { (t) },
                (None, Some(w)) => { "worker " (w) },
                (None, None) => "—",
            }
        }
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

/// The leases grouped by their CI job (holder without test and worker), in
/// the order each job first appears: a job's per-test takes stay together.
fn by_job(list: &[LeaseView]) -> Vec<(String, Vec<&LeaseView>)> {
    let mut groups: Vec<(String, Vec<&LeaseView>)> = Vec::new();
    for l in list {
        let job = l.holder.job_only().label();
        match groups.iter_mut().find(|(j, _)| *j == job) {
            Some((_, g)) => g.push(l),
            None => groups.push((job, vec![l])),
        }
    }
    groups
}

pub fn leases(list: &[LeaseView], now: i64) -> Page {
    let body = html! {
        @if list.is_empty() {
            p { "No active leases." }
        } @else {
            p { (list.len()) " active lease(s)." }
            table id="leases" {
                (columns(&["Lease", "Holder", "Test", "CI job", "Shard", "Datasets", "Time left"]))
                @for (job, group) in by_job(list) {
                    tbody class="job" {
                    @if group.len() > 1 {
                        tr class="job-head" {
                            th colspan="7" scope="rowgroup" { (job) ": " (group.len()) " leases (its per-test takes)" }
                        }
                    }
                    @for l in group {
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
        }
    };
    Page {
        title: "Active leases".into(),
        nav: "leases",
        body,
    }
}
