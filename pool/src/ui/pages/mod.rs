//! HTML rendering with maud, which escapes every value spliced into the
//! markup; nothing from the store, the catalog or the request is ever marked
//! pre-escaped. One module per page; the document around every page in
//! [`layout`], pieces several pages share in [`fragments`].

mod catalog;
mod dataset;
mod fragments;
mod graph;
mod layout;
mod lease;
mod lease_form;
mod leases;
mod login;
mod quarantine;
mod stock;

pub use catalog::catalog;
pub use dataset::dataset;
pub use fragments::url_part;
pub use layout::{Page, bare, layout, refusal, store_failure};
pub use lease::lease;
pub use lease_form::lease_form;
pub use leases::leases;
pub use login::login;
pub use quarantine::quarantine;
pub use stock::stock;
