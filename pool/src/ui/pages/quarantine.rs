//! Quarantined datasets with their reason, failing job and history, and the
//! buttons that settle them.

use std::collections::HashMap;

use maud::html;
use stockroom_protocol::DatasetStatus;
use stockroom_protocol::api::Holder;

use super::fragments::{columns, dataset_link, ext_link, settle_forms};
use super::layout::Page;
use crate::service::Quarantined;
use crate::ui::Visitor;

/// `q`: `settled` and `action` after a settle, for the notice.
pub fn quarantine(v: &Visitor, rows: &[Quarantined], q: &HashMap<String, String>) -> Page {
    let body = html! {
        @if let (Some(id), Some(action)) = (q.get("settled"), q.get("action")) {
            p class="notice" role="status" {
                "Dataset " code { (id) } " "
                (if action == "recycle" { "recycled (ready again)" } else { "discarded" })
                "."
            }
        }
        @if !v.is_admin() {
            p class="hint" { "You are signed in with a " code { "ci" } " token: discarding and recycling need an admin token." }
        }
        @if rows.is_empty() {
            p { "Nothing is quarantined." }
        } @else {
            table id="quarantine" {
                (columns(&["Dataset", "State", "Since", "Test", "Reason", "Failing job", "History", "Actions"]))
                tbody {
                    @for r in rows {
                        @let d = &r.view;
                        @let last = d.history.iter().rev().find(|h| h.to == DatasetStatus::Quarantined);
                        tr {
                            th scope="row" { (dataset_link(&d.dataset.id)) }
                            td { (d.dataset.type_name) "/" (d.dataset.state) }
                            td { (last.map_or(d.updated_at.as_str(), |h| h.at.as_str())) }
                            td class="test" {
                                @match last.and_then(|h| h.holder.as_deref()).and_then(Holder::test_in_label) {
                                    Some(t) => code { (t) },
                                    None => "—",
                                }
                            }
                            td { (last.map_or("—", |h| h.reason.as_str())) }
                            td {
                                @match &r.failing_job {
                                    Some(u) => (ext_link(u, "job")),
                                    None => "—",
                                }
                            }
                            td {
                                details {
                                    summary { (d.history.len()) " entries" }
                                    ol {
                                        @for h in &d.history {
                                            li {
                                                (h.at) " " (h.from.map_or("—", |f| f.as_str())) " → " (h.to.as_str()) ": " (h.reason)
                                            }
                                        }
                                    }
                                }
                            }
                            td { (settle_forms(v, &d.dataset.id, d.status)) }
                        }
                    }
                }
            }
        }
    };
    Page {
        title: "Quarantine".into(),
        nav: "quarantine",
        body,
    }
}
