//! One lease: its datasets and, for who may, the form that ends it.

use maud::html;
use stockroom_protocol::LeaseStatus;
use stockroom_protocol::api::LeaseView;

use super::fragments::{attributes, csrf, data_table, dataset_link, entities, left, url_part};
use super::layout::Page;
use crate::ui::Visitor;

/// `mine`: the lease was taken by hand in this session and is active, so
/// its real data is shown.
pub fn lease(v: &Visitor, l: &LeaseView, mine: bool, now: i64) -> Page {
    let status = l.status.as_str();
    let active = l.status == LeaseStatus::Active;
    let body = html! {
        dl class="facts" {
            dt { "Lease" } dd { code id="lease-id" { (l.lease_id) } }
            dt { "Status" } dd { span class={ "badge status-" (status) } id="lease-status" { (status) } }
            dt { "Holder" } dd { (l.holder.job_only().label()) }
            @if let Some(t) = &l.holder.test {
                dt { "Test" } dd { code { (t) } }
            }
            @if let Some(w) = &l.holder.worker {
                dt { "Worker" } dd { (w) }
            }
            dt { "Taken" } dd { (l.created_at) }
            dt { "Time left" } dd { @if active { (left(&l.expires_at, now)) } @else { "—" } }
            @if let Some(r) = &l.reason {
                dt { "Reason" } dd { (r) }
            }
        }
        @if !mine {
            p class="hint" { "Secret values are redacted: real data is shown only to the session that leased by hand, while the lease is active." }
        }
        @for d in &l.datasets {
            @let ds = &d.dataset;
            section class="card dataset" {
                h2 {
                    (d.name) "[" (d.index) "] "
                    (dataset_link(&ds.id))
                }
                p { (ds.type_name) "/" (ds.state) " · attributes " (attributes(ds)) " · entities " (entities(ds)) }
                (data_table(ds, mine))
            }
        }
        @if active && (mine || v.is_admin()) {
            form method="post" action={ "/ui/leases/" (url_part(&l.lease_id)) "/release" } class="card" {
                (csrf(v))
                h2 { "End this lease" }
                p {
                    label for="reason" { "Reason " span class="hint" { "(needed to quarantine)" } }
                    input id="reason" name="reason" placeholder="what was wrong with the data";
                }
                p class="actions" {
                    button type="submit" name="outcome" value="passed" { "Release (passed)" }
                    " "
                    button type="submit" name="outcome" value="failed" class="danger" { "Quarantine (failed)" }
                }
            }
        }
    };
    Page {
        title: format!("Lease {}", l.lease_id),
        nav: "leases",
        body,
    }
}
