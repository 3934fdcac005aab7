//! One dataset: its facts, its full history and its data (secrets redacted).

use maud::{Markup, html};
use stockroom_protocol::api::DatasetView;

use super::fragments::{
    attributes, columns, data_table, dataset_link, entities, lease_link, settle_forms, settleable,
};
use super::layout::Page;
use crate::ui::Visitor;

fn history_table(v: &DatasetView) -> Markup {
    html! {
        table class="history" {
            (columns(&["At", "From", "To", "Lease", "Holder", "Reason"]))
            tbody {
                @for h in &v.history {
                    tr {
                        td { (h.at) }
                        td { (h.from.map_or("—", |f| f.as_str())) }
                        td { (h.to.as_str()) }
                        td {
                            @match &h.lease_id {
                                Some(l) => (lease_link(l)),
                                None => "—",
                            }
                        }
                        td { (h.holder.as_deref().unwrap_or("—")) }
                        td { (h.reason) }
                    }
                }
            }
        }
    }
}

pub fn dataset(v: &Visitor, view: &DatasetView) -> Page {
    let d = &view.dataset;
    let status = view.status.as_str();
    let body = html! {
        dl class="facts" {
            dt { "State" } dd { (d.type_name) "/" (d.state) }
            dt { "Status" } dd { span class={ "badge status-" (status) } id="dataset-status" { (status) } }
            dt { "Attributes" } dd { (attributes(d)) }
            dt { "Entities" } dd { (entities(d)) }
            // A composed dataset names the datasets it was made from.
            @if !d.inputs.is_empty() {
                dt { "Inputs" }
                dd id="dataset-inputs" {
                    @for (name, input) in &d.inputs {
                        div { (name) ": " (dataset_link(&input.id)) " " (input.type_name) "/" (input.state) }
                    }
                }
            }
            dt { "Created" } dd { (view.created_at) }
            dt { "Updated" } dd { (view.updated_at) }
            @if let Some(l) = &view.lease_id {
                dt { "Lease" } dd { (lease_link(l)) }
            }
            @if let Some(e) = &view.error {
                dt { "Error" } dd { (e) }
            }
        }
        @if settleable(view.status) {
            p class="actions" { (settle_forms(v, &d.id, view.status)) }
        }
        h2 { "History" }
        (history_table(view))
        h2 { "Data" }
        p class="hint" { "Secret fields are redacted here." }
        (data_table(d, false))
    };
    Page {
        title: format!("Dataset {}", d.id),
        nav: "",
        body,
    }
}
