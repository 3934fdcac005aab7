//! The self-service web page served at `/` (docs/ui.md): server-rendered
//! HTML ([`pages`], escaped by maud) with a little plain JavaScript, every
//! asset embedded and served under `/ui/assets/`. Every operation goes
//! through the pool service, as the HTTP API's do.
//!
//! Sign-in: `POST /ui/login` checks a bearer token once and answers a random
//! session id in an HttpOnly, SameSite=Strict cookie ([`session`]). The
//! signed-in user reaches handlers as a [`Visitor`] (pages) or a [`Poster`]
//! (forms: same origin and the session's CSRF token checked). With no tokens
//! configured every visitor is admin.

pub mod pages;
pub mod samples;
pub mod session;
mod visitor;

use std::collections::HashMap;
use std::sync::Arc;

use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Extension, Form, Router};
use stockroom_protocol::api::{Holder, LeaseItem, LeaseRequest};
use stockroom_protocol::pool_config::Role;
use stockroom_protocol::{AttrValue, Attributes, LeaseStatus, Outcome};

use crate::http::AppState;
use crate::service::{Proof, ServiceError, Settle, redact};
use pages::Page;
use samples::Samples;
use session::Sessions;
use visitor::{CROSS_SITE, same_origin, session_of};
pub use visitor::{Poster, Visitor};

/// The web page's own state.
pub struct Ui {
    pub sessions: Sessions,
    pub samples: Arc<Samples>,
}

type UiExt = Extension<Arc<Ui>>;

/// The web page's routes; starts the stock sampler when a runtime is running.
pub fn routes(state: &AppState) -> Router<AppState> {
    let ui = Arc::new(Ui {
        sessions: Sessions::new(Arc::clone(state.service.store())),
        samples: Arc::new(Samples::new(samples::interval())),
    });
    if tokio::runtime::Handle::try_current().is_ok() {
        tokio::spawn(samples::run(
            Arc::clone(&ui.samples),
            Arc::clone(state.service.store()),
            state.service.shutdown_signal(),
        ));
    }
    Router::new()
        .route("/", get(catalog))
        .route("/ui/login", get(login_form).post(login))
        .route("/ui/logout", post(logout))
        .route("/ui/lease", get(lease_form).post(lease_create))
        .route("/ui/leases", get(leases))
        .route("/ui/leases/{id}", get(lease))
        .route("/ui/leases/{id}/release", post(release))
        .route("/ui/quarantine", get(quarantine))
        .route("/ui/datasets/{id}", get(dataset))
        .route("/ui/datasets/{id}/{action}", post(settle))
        .route("/ui/stock", get(stock))
        .route("/ui/assets/app.css", get(css))
        .route("/ui/assets/app.js", get(js))
        .layer(Extension(ui))
}

pub(crate) fn redirect(to: &str) -> Response {
    let mut r = StatusCode::SEE_OTHER.into_response();
    if let Ok(v) = HeaderValue::from_str(to) {
        r.headers_mut().insert(header::LOCATION, v);
    }
    r
}

/// A small error page without the session header.
pub(crate) fn refuse(status: StatusCode, message: &str) -> Response {
    pages::refusal(status, message)
}

/// The page for a refused or failed operation; the one mapping of
/// [`ServiceError`] for the web page (the API's is in `http::problem`).
fn failed(v: &Visitor, e: ServiceError) -> Response {
    let (status, title) = match &e {
        ServiceError::NotFound(_) => (StatusCode::NOT_FOUND, "Not found"),
        ServiceError::Invalid(_) | ServiceError::UnknownState { .. } => {
            (StatusCode::UNPROCESSABLE_ENTITY, "Not done")
        }
        ServiceError::WrongStatus { .. } | ServiceError::IdempotencyConflict(_) => {
            (StatusCode::CONFLICT, "Not done")
        }
        ServiceError::NotHolder(_) => (StatusCode::FORBIDDEN, "Not done"),
        ServiceError::LeaseGone { .. } => (StatusCode::GONE, "Lease ended"),
        ServiceError::NoStock { .. } => (StatusCode::CONFLICT, "Not enough stock"),
        ServiceError::ShuttingDown => (StatusCode::SERVICE_UNAVAILABLE, "Shutting down"),
        ServiceError::UnknownExtension { .. } | ServiceError::GeneratorFailed { .. } => {
            (StatusCode::BAD_GATEWAY, "Generator failed")
        }
        ServiceError::Store(_) => return store_failed(e),
    };
    render_with(v, status, Page::message(title, &e.to_string()))
}

pub(crate) fn store_failed(e: impl std::fmt::Display) -> Response {
    tracing::error!(error = %e, "store failure while rendering the web page");
    pages::store_failure()
}

fn render(v: &Visitor, page: Page) -> Response {
    pages::layout(v, page)
}

fn render_with(v: &Visitor, status: StatusCode, page: Page) -> Response {
    let mut r = render(v, page);
    *r.status_mut() = status;
    r
}

async fn css() -> Response {
    (
        [
            (header::CONTENT_TYPE, "text/css; charset=utf-8"),
            (header::CACHE_CONTROL, "max-age=300"),
        ],
        include_str!("assets/app.css"),
    )
        .into_response()
}

async fn js() -> Response {
    (
        [
            (header::CONTENT_TYPE, "text/javascript; charset=utf-8"),
            (header::CACHE_CONTROL, "max-age=300"),
        ],
        include_str!("assets/app.js"),
    )
        .into_response()
}

async fn login_form(
    State(app): State<AppState>,
    Extension(ui): UiExt,
    headers: HeaderMap,
) -> Response {
    if !app.tokens.enabled() {
        return redirect("/");
    }
    match session_of(&app, &ui, &headers).await {
        Ok(Some(_)) => redirect("/"),
        Ok(None) => pages::login(StatusCode::OK, None),
        Err(r) => r,
    }
}

async fn login(
    State(app): State<AppState>,
    Extension(ui): UiExt,
    headers: HeaderMap,
    Form(form): Form<HashMap<String, String>>,
) -> Response {
    if !same_origin(&app, &headers) {
        return refuse(StatusCode::FORBIDDEN, CROSS_SITE);
    }
    if !app.tokens.enabled() {
        return redirect("/");
    }
    let token = form.get("token").map(|t| t.trim()).unwrap_or("");
    let caller = match app.tokens.check(Some(&format!("Bearer {token}")), Role::Ci) {
        Ok(caller) => caller,
        Err(_) => {
            return pages::login(
                StatusCode::UNAUTHORIZED,
                Some("That token is not known to this pool."),
            );
        }
    };
    tracing::info!(token = %caller.name, "signed in to the web page");
    let cookie = match ui.sessions.create(caller, app.service.now_ms()).await {
        Ok((cookie, _)) => cookie,
        Err(e) => return store_failed(e),
    };
    let mut r = redirect("/");
    if let Ok(v) = HeaderValue::from_str(&session::set_cookie(&cookie)) {
        r.headers_mut().insert(header::SET_COOKIE, v);
    }
    r
}

async fn logout(Extension(ui): UiExt, p: Poster) -> Response {
    if let Err(e) = ui.sessions.remove(&p.visitor.session).await {
        return store_failed(e);
    }
    let mut r = redirect(if p.visitor.open { "/" } else { "/ui/login" });
    if let Ok(v) = HeaderValue::from_str(&session::clear_cookie()) {
        r.headers_mut().insert(header::SET_COOKIE, v);
    }
    r
}

async fn catalog(State(app): State<AppState>, v: Visitor) -> Response {
    match app.service.catalog().await {
        Ok(mut cat) => {
            if !v.is_admin() {
                redact::summarize_catalog(&mut cat);
            }
            render(&v, pages::catalog(&cat))
        }
        Err(e) => failed(&v, e),
    }
}

async fn lease_form(
    State(app): State<AppState>,
    v: Visitor,
    Query(q): Query<HashMap<String, String>>,
) -> Response {
    match app.service.catalog().await {
        Ok(cat) => render(&v, pages::lease_form(&v, &cat, &q, None)),
        Err(e) => failed(&v, e),
    }
}

/// `a=1, b=2` (commas or new lines) → attributes.
fn parse_attributes(text: &str) -> Result<Attributes, String> {
    let mut out = Attributes::new();
    for part in text
        .split([',', '\n'])
        .map(str::trim)
        .filter(|p| !p.is_empty())
    {
        let Some((k, v)) = part.split_once('=') else {
            return Err(format!("attribute {part:?} is not key=value"));
        };
        let (k, v) = (k.trim(), v.trim());
        if k.is_empty() {
            return Err(format!("attribute {part:?} has no name"));
        }
        out.insert(k.to_string(), AttrValue::from(v));
    }
    Ok(out)
}

/// An optional whole number from a form field: `None` when blank.
fn whole<T: std::str::FromStr>(text: &str) -> Result<Option<T>, ()> {
    match text.trim() {
        "" => Ok(None),
        t => t.parse().map(Some).map_err(|_| ()),
    }
}

async fn lease_create(State(app): State<AppState>, Extension(ui): UiExt, p: Poster) -> Response {
    let v = &p.visitor;
    let cat = match app.service.catalog().await {
        Ok(c) => c,
        Err(e) => return failed(v, e),
    };
    let fail = |status: StatusCode, msg: String| {
        render_with(v, status, pages::lease_form(v, &cat, &p.form, Some(&msg)))
    };
    let picked = p.field("state");
    let Some((type_name, state)) = picked.split_once('/') else {
        return fail(StatusCode::UNPROCESSABLE_ENTITY, "Pick a state.".into());
    };
    if cat.find(type_name, state).is_none() {
        return fail(
            StatusCode::UNPROCESSABLE_ENTITY,
            format!("The pool knows no state {picked}."),
        );
    }
    let where_ = match parse_attributes(p.field("attributes")) {
        Ok(a) => a,
        Err(m) => return fail(StatusCode::UNPROCESSABLE_ENTITY, m),
    };
    let Ok(count) = whole::<u32>(p.field("count")) else {
        return fail(
            StatusCode::UNPROCESSABLE_ENTITY,
            "Count must be a whole number.".into(),
        );
    };
    let Ok(ttl_seconds) = whole::<u64>(p.field("ttl")) else {
        return fail(
            StatusCode::UNPROCESSABLE_ENTITY,
            "TTL must be a whole number of seconds.".into(),
        );
    };
    let req = LeaseRequest {
        holder: Holder {
            ci: Some("web".into()),
            job: Some("by hand".into()),
            run_id: Some(v.session.caller.name.clone()),
            ..Holder::default()
        },
        ttl_seconds,
        wait_seconds: Some(15),
        idempotency_key: None,
        items: vec![LeaseItem {
            name: state.to_string(),
            type_name: type_name.to_string(),
            state: state.to_string(),
            where_,
            count: count.unwrap_or(1),
            on_failure: Default::default(),
        }],
    };
    match app.service.lease(req).await {
        Ok(leased) => {
            let id = leased.granted.lease_id;
            tracing::info!(lease_id = %id, token = %v.session.caller.name, "lease taken by hand on the web page");
            if let Err(e) = ui.sessions.add_lease(&v.session, &id).await {
                // The lease stands (it ends at its TTL); the page cannot show its data.
                tracing::error!(lease_id = %id, "the session could not remember its lease");
                return store_failed(e);
            }
            redirect(&format!("/ui/leases/{id}"))
        }
        Err(ServiceError::NoStock { shortfall, .. }) => {
            let s: Vec<String> = shortfall
                .iter()
                .map(|s| {
                    let held = if s.entities_held > 0 {
                        format!(" ({} share entities with other leases)", s.entities_held)
                    } else {
                        String::new()
                    };
                    format!(
                        "{}: wanted {}, ready {}{held}, generating {}",
                        s.name, s.wanted, s.ready, s.generating
                    )
                })
                .collect();
            fail(
                StatusCode::CONFLICT,
                format!("Not enough stock; nothing is held ({}).", s.join("; ")),
            )
        }
        Err(ServiceError::ShuttingDown) => fail(
            StatusCode::SERVICE_UNAVAILABLE,
            "The pool is shutting down.".into(),
        ),
        Err(ServiceError::Invalid(m)) => fail(StatusCode::UNPROCESSABLE_ENTITY, m),
        Err(e) => failed(v, e),
    }
}

async fn leases(State(app): State<AppState>, v: Visitor) -> Response {
    match app.service.leases(Some(LeaseStatus::Active), 500).await {
        Ok(list) => render(&v, pages::leases(&list.leases, app.service.now_ms())),
        Err(e) => failed(&v, e),
    }
}

async fn lease(State(app): State<AppState>, v: Visitor, Path(id): Path<String>) -> Response {
    // Real data only for the session that took the lease, while active.
    let taken_here = v.session.leases.contains(&id);
    let found = if taken_here {
        app.service.lease_with_secrets(id.clone()).await
    } else {
        app.service.lease_view(id.clone()).await
    };
    match found {
        Ok(mut lease) => {
            let mine = taken_here && lease.status == LeaseStatus::Active;
            if taken_here && !mine {
                for d in &mut lease.datasets {
                    d.dataset = d.dataset.redacted();
                }
            }
            render(&v, pages::lease(&v, &lease, mine, app.service.now_ms()))
        }
        Err(ServiceError::NotFound(_)) => render_with(
            &v,
            StatusCode::NOT_FOUND,
            Page::message("No such lease", &format!("No lease {id}.")),
        ),
        Err(e) => failed(&v, e),
    }
}

async fn release(State(app): State<AppState>, Path(id): Path<String>, p: Poster) -> Response {
    let v = &p.visitor;
    if !v.session.leases.contains(&id) && !v.is_admin() {
        return refuse(
            StatusCode::FORBIDDEN,
            "Only the session that took this lease, or an admin, can end it here.",
        );
    }
    let outcome = match p.field("outcome") {
        "passed" => Outcome::Passed,
        "failed" => Outcome::Failed,
        _ => {
            return refuse(
                StatusCode::UNPROCESSABLE_ENTITY,
                "Pick release (passed) or quarantine (failed).",
            );
        }
    };
    let reason = Some(p.field("reason").trim()).filter(|r| !r.is_empty());
    if outcome == Outcome::Failed && reason.is_none() {
        return refuse(
            StatusCode::UNPROCESSABLE_ENTITY,
            "Quarantining needs a reason.",
        );
    }
    let reason =
        reason.map(|r| format!("{r} — by hand on the web page by {}", v.session.caller.name));
    // The page's proof: the session that took the lease, or an admin.
    let proof = if v.session.leases.contains(&id) {
        Proof::TakenHere
    } else if v.is_admin() {
        Proof::Admin
    } else {
        Proof::Token(None)
    };
    match app
        .service
        .release(id.clone(), &proof, outcome, reason, None)
        .await
    {
        Ok(_) => redirect(&format!("/ui/leases/{id}")),
        Err(ServiceError::LeaseGone {
            status: LeaseStatus::Expired,
            ..
        }) => render(
            v,
            Page::message(
                "Lease expired",
                "The lease expired before this release; its datasets were quarantined.",
            ),
        ),
        Err(ServiceError::NotFound(_)) => refuse(StatusCode::NOT_FOUND, "No such lease."),
        Err(e) => failed(v, e),
    }
}

async fn quarantine(
    State(app): State<AppState>,
    v: Visitor,
    Query(q): Query<HashMap<String, String>>,
) -> Response {
    match app.service.quarantined(200).await {
        Ok(rows) => render(&v, pages::quarantine(&v, &rows, &q)),
        Err(e) => failed(&v, e),
    }
}

async fn dataset(State(app): State<AppState>, v: Visitor, Path(id): Path<String>) -> Response {
    match app.service.dataset(id.clone()).await {
        Ok(mut view) => {
            if !v.is_admin() {
                redact::summarize_view(&mut view);
            }
            render(&v, pages::dataset(&v, &view))
        }
        Err(ServiceError::NotFound(_)) => render_with(
            &v,
            StatusCode::NOT_FOUND,
            Page::message("No such dataset", &format!("No dataset {id}.")),
        ),
        Err(e) => failed(&v, e),
    }
}

async fn settle(
    State(app): State<AppState>,
    Path((id, action)): Path<(String, String)>,
    p: Poster,
) -> Response {
    let v = &p.visitor;
    if !v.is_admin() {
        return refuse(
            StatusCode::FORBIDDEN,
            "Discarding and recycling need an admin token; nothing was done.",
        );
    }
    let by = format!("{} (web page)", v.session.caller.name);
    let how = match action.as_str() {
        "discard" => Settle::Discard,
        "recycle" => Settle::Recycle,
        _ => return refuse(StatusCode::NOT_FOUND, "No such action."),
    };
    match app.service.settle(id.clone(), how, by).await {
        Ok(_) => redirect(&format!("/ui/quarantine?settled={id}&action={action}")),
        Err(ServiceError::WrongStatus { status, .. }) => refuse(
            StatusCode::CONFLICT,
            &format!("Dataset {id} is {status}; it cannot be settled so."),
        ),
        Err(ServiceError::NotFound(_)) => refuse(StatusCode::NOT_FOUND, "No such dataset."),
        Err(e) => failed(v, e),
    }
}

async fn stock(Extension(ui): UiExt, v: Visitor) -> Response {
    render(&v, pages::stock(&ui.samples.all(), ui.samples.interval))
}
