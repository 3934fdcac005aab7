//! The signed-in user as extractors, like the API's `Ci` and `Admin`:
//! [`Visitor`] for pages, [`Poster`] for forms posted to the pool. Their
//! rejections are the answers themselves (a redirect to sign in, a refusal).

use std::collections::HashMap;
use std::sync::Arc;

use axum::Form;
use axum::extract::{FromRequest, FromRequestParts, Request};
use axum::http::request::Parts;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use stockroom_protocol::pool_config::Role;

use super::session::{self, Session};
use super::{Ui, redirect, refuse, store_failed};
use crate::auth::Caller;
use crate::http::AppState;

/// Who is looking at a page, and the cookie to set when the session was just made.
pub struct Visitor {
    pub session: Session,
    pub set_cookie: Option<String>,
    /// No tokens configured: everybody is admin.
    pub open: bool,
}

impl Visitor {
    pub fn is_admin(&self) -> bool {
        self.session.caller.role >= Role::Admin
    }
}

/// The web page's state, put on every request by its router.
// The error is the answer itself, made at most once per request.
#[allow(clippy::result_large_err)]
pub(super) fn ui_of(extensions: &axum::http::Extensions) -> Result<Arc<Ui>, Response> {
    extensions.get::<Arc<Ui>>().cloned().ok_or_else(|| {
        tracing::error!("the web page's state is missing from a request");
        StatusCode::INTERNAL_SERVER_ERROR.into_response()
    })
}

/// The live session named by the request's cookie.
pub(super) async fn session_of(
    app: &AppState,
    ui: &Ui,
    headers: &HeaderMap,
) -> Result<Option<Session>, Response> {
    let Some(cookie) = headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .find_map(session::cookie_value)
    else {
        return Ok(None);
    };
    ui.sessions
        .get(cookie, app.service.now_ms())
        .await
        .map_err(store_failed)
}

/// The session from the cookie; on a pool without tokens a fresh anonymous
/// admin session; otherwise a redirect to sign in.
impl FromRequestParts<AppState> for Visitor {
    type Rejection = Response;

    async fn from_request_parts(parts: &mut Parts, app: &AppState) -> Result<Self, Response> {
        let ui = ui_of(&parts.extensions)?;
        let open = !app.tokens.enabled();
        if let Some(session) = session_of(app, &ui, &parts.headers).await? {
            return Ok(Visitor {
                session,
                set_cookie: None,
                open,
            });
        }
        if !open {
            return Err(redirect("/ui/login"));
        }
        let anonymous = Caller {
            name: "anonymous".into(),
            role: Role::Admin,
        };
        let (cookie, session) = ui
            .sessions
            .create(anonymous, app.service.now_ms())
            .await
            .map_err(store_failed)?;
        Ok(Visitor {
            session,
            set_cookie: Some(session::set_cookie(&cookie)),
            open,
        })
    }
}

/// Refuses a POST from another site: an `Origin` (or `Sec-Fetch-Site`) that
/// is not this pool. The API's rule ([`crate::http::guard::cross_site`]).
pub(super) fn same_origin(app: &AppState, headers: &HeaderMap) -> bool {
    !crate::http::guard::cross_site(headers, app.service.config().public_url.as_deref())
}

pub(super) const CROSS_SITE: &str = "This form was sent from another site; nothing was done.";

/// The sender of a form: same origin, signed in, the session's CSRF token
/// in the form; with the form's fields.
pub struct Poster {
    pub visitor: Visitor,
    pub form: HashMap<String, String>,
}

impl Poster {
    /// A field of the form, `""` when absent.
    pub fn field(&self, name: &str) -> &str {
        self.form.get(name).map_or("", String::as_str)
    }
}

impl FromRequest<AppState> for Poster {
    type Rejection = Response;

    async fn from_request(req: Request, app: &AppState) -> Result<Self, Response> {
        let ui = ui_of(req.extensions())?;
        let headers = req.headers().clone();
        let Form(form) = Form::<HashMap<String, String>>::from_request(req, app)
            .await
            .map_err(IntoResponse::into_response)?;
        if !same_origin(app, &headers) {
            return Err(refuse(StatusCode::FORBIDDEN, CROSS_SITE));
        }
        let Some(session) = session_of(app, &ui, &headers).await? else {
            return Err(refuse(
                StatusCode::FORBIDDEN,
                "Your session has ended; sign in again. Nothing was done.",
            ));
        };
        let sent = form.get("csrf").map_or("", String::as_str);
        if !session::same(sent, &session.csrf) {
            return Err(refuse(
                StatusCode::FORBIDDEN,
                "The form's security token is missing or stale; reload the page. Nothing was done.",
            ));
        }
        Ok(Poster {
            visitor: Visitor {
                session,
                set_cookie: None,
                open: !app.tokens.enabled(),
            },
            form,
        })
    }
}
