//! The sign-in page.

use axum::http::StatusCode;
use axum::response::Response;
use maud::html;

use super::fragments::error;
use super::layout::bare;

pub fn login(status: StatusCode, message: Option<&str>) -> Response {
    let body = html! {
        (error(message))
        form method="post" action="/ui/login" class="card narrow" {
            p {
                label for="token" { "Token" }
                input id="token" name="token" type="password" autocomplete="current-password" required autofocus;
            }
            p { button type="submit" { "Sign in" } }
            p class="hint" {
                "A " code { "ci" } " token may browse and lease; an " code { "admin" }
                " token may also discard and recycle. The token is checked once; the browser keeps only a random session id (HttpOnly cookie). Sessions end after 12 hours unused or on sign-out."
            }
        }
    };
    bare(status, "Sign in", body)
}
