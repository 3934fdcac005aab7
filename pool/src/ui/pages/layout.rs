//! The document around every page: head, header with navigation and the
//! signed-in user, footer; and the headers every page is sent with.

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use maud::{DOCTYPE, Markup, html};

use super::fragments::csrf;
use crate::ui::Visitor;

/// One page's title, navigation key and body.
pub struct Page {
    pub title: String,
    /// The [`NAV`] key marked as the current page; `""` for none.
    pub nav: &'static str,
    pub body: Markup,
}

impl Page {
    pub fn message(title: &str, text: &str) -> Page {
        Page {
            title: title.to_string(),
            nav: "",
            body: html! { p role="alert" { (text) } },
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

const CSP: &str = "default-src 'none'; style-src 'self'; script-src 'self'; img-src 'self' data:; connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'";

fn respond(status: StatusCode, doc: Markup) -> Response {
    let mut r = (status, doc).into_response();
    let h = r.headers_mut();
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    h.insert(
        "x-content-type-options",
        HeaderValue::from_static("nosniff"),
    );
    h.insert("referrer-policy", HeaderValue::from_static("same-origin"));
    h.insert("x-frame-options", HeaderValue::from_static("DENY"));
    h.insert("content-security-policy", HeaderValue::from_static(CSP));
    r
}

fn doc(title: &str, header: Markup, body: Markup) -> Markup {
    html! {
        (DOCTYPE)
        html lang="en" {
            head {
                meta charset="utf-8";
                meta name="viewport" content="width=device-width, initial-scale=1";
                title { (title) " — Stockroom pool" }
                link rel="stylesheet" href="/ui/assets/app.css";
                script src="/ui/assets/app.js" defer {}
            }
            body {
                a class="skip" href="#main" { "Skip to content" }
                (header)
                main id="main" {
                    h1 { (title) }
                    (body)
                }
                footer {
                    a href="/api/v1/openapi.json" { "API description" }
                    " · "
                    a href="/metrics" { "metrics" }
                    " · "
                    a href="/readyz" { "readiness" }
                }
            }
        }
    }
}

/// A page without navigation (sign-in, refusals).
pub fn bare(status: StatusCode, title: &str, body: Markup) -> Response {
    let header = html! { header { span class="brand" { "Stockroom pool" } } };
    respond(status, doc(title, header, body))
}

/// A refused request: the reason and the way back.
pub fn refusal(status: StatusCode, message: &str) -> Response {
    let body = html! {
        p class="error" role="alert" { (message) }
        p { a href="/" { "Back to the catalog" } }
    };
    bare(status, "Refused", body)
}

/// The store failed; the details are in the pool's log only.
pub fn store_failure() -> Response {
    let body = html! {
        p class="error" role="alert" { "The pool's store failed; the error is in the pool's log." }
    };
    bare(StatusCode::INTERNAL_SERVER_ERROR, "Store failure", body)
}

fn signed_in(v: &Visitor) -> Markup {
    let caller = &v.session.caller;
    html! {
        @if v.open {
            div class="who open" role="note" {
                strong { "No tokens configured:" }
                " every visitor acts as "
                b { "admin" }
                "."
                form method="post" action="/ui/logout" {
                    (csrf(v))
                    button type="submit" { "Forget session" }
                }
            }
        } @else {
            div class="who" {
                "Signed in as "
                b { (caller.name) }
                " "
                span class={ "role role-" (caller.role.as_str()) } { (caller.role.as_str()) }
                form method="post" action="/ui/logout" {
                    (csrf(v))
                    button type="submit" { "Sign out" }
                }
            }
        }
    }
}

/// A page with navigation and the signed-in user; sets the session cookie
/// when the session was just made.
pub fn layout(v: &Visitor, page: Page) -> Response {
    let header = html! {
        header {
            span class="brand" { "Stockroom pool" }
            nav aria-label="Main" {
                @for (key, href, label) in NAV {
                    a href=(href) aria-current=[(*key == page.nav).then_some("page")] { (label) }
                }
            }
            (signed_in(v))
        }
    };
    let mut r = respond(StatusCode::OK, doc(&page.title, header, page.body));
    if let Some(c) = &v.set_cookie
        && let Ok(value) = HeaderValue::from_str(c)
    {
        r.headers_mut().insert(header::SET_COOKIE, value);
    }
    r
}
