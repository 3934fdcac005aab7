//! The self-service web page served at `/` (issue 8): server-rendered HTML
//! with a little plain JavaScript, every asset embedded and served under
//! `/ui/assets/`. It calls the pool's internals (store, leasing, catalog)
//! directly, not its HTTP API.
//!
//! Sign-in: `POST /ui/login` checks a bearer token once and answers a random
//! session id in an HttpOnly, SameSite=Strict cookie ([`session`]). Every
//! form carries the session's CSRF token, checked on POST with the `Origin`
//! header (when sent). With no tokens configured every visitor is admin.

pub mod pages;
pub mod samples;
pub mod session;

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

use crate::auth::Caller;
use crate::http::AppState;
use crate::service::{ServiceError, Settle};
use pages::{Page, esc};
use samples::Samples;
use session::{Session, Sessions};

/// The web page's own state.
pub struct Ui {
    pub sessions: Sessions,
    pub samples: Arc<Samples>,
}

type UiExt = Extension<Arc<Ui>>;
type Fields = Form<HashMap<String, String>>;

/// The web page's routes; starts the stock sampler when a runtime is running.
pub fn routes(state: &AppState) -> Router<AppState> {
    let ui = Arc::new(Ui {
        sessions: Sessions::default(),
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

/// Who is asking, and the cookie to set when the session was just made.
pub struct Who {
    pub session: Session,
    pub set_cookie: Option<String>,
    /// No tokens configured: everybody is admin.
    pub open: bool,
}

fn session_of(ui: &Ui, headers: &HeaderMap) -> Option<Session> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .find_map(session::cookie_value)
        .and_then(|id| ui.sessions.get(id))
}

/// The visitor of a page, or a redirect to sign in.
// The error is the answer itself, made at most once per request.
#[allow(clippy::result_large_err)]
fn who(app: &AppState, ui: &Ui, headers: &HeaderMap) -> Result<Who, Response> {
    let open = !app.tokens.enabled();
    if let Some(session) = session_of(ui, headers) {
        return Ok(Who {
            session,
            set_cookie: None,
            open,
        });
    }
    if open {
        let session = ui.sessions.create(Caller {
            name: "anonymous".into(),
            role: Role::Admin,
        });
        let cookie = session::set_cookie(&session.id);
        return Ok(Who {
            session,
            set_cookie: Some(cookie),
            open,
        });
    }
    Err(redirect("/ui/login"))
}

fn redirect(to: &str) -> Response {
    let mut r = StatusCode::SEE_OTHER.into_response();
    if let Ok(v) = HeaderValue::from_str(to) {
        r.headers_mut().insert(header::LOCATION, v);
    }
    r
}

/// Refuses a POST from another site: an `Origin` (or `Sec-Fetch-Site`) that
/// is not this pool.
fn same_origin(headers: &HeaderMap) -> bool {
    if headers
        .get("sec-fetch-site")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|s| s == "cross-site" || s == "same-site")
    {
        return false;
    }
    let Some(origin) = headers.get(header::ORIGIN) else {
        return true;
    };
    let host = headers.get(header::HOST).and_then(|v| v.to_str().ok());
    match (origin.to_str().ok(), host) {
        (Some(o), Some(h)) => o == format!("http://{h}") || o == format!("https://{h}"),
        _ => false,
    }
}

/// The visitor of a POST: same origin, signed in, right CSRF token.
// The error is the answer itself, made at most once per request.
#[allow(clippy::result_large_err)]
fn poster(
    ui: &Ui,
    headers: &HeaderMap,
    form: &HashMap<String, String>,
    open: bool,
) -> Result<Who, Response> {
    if !same_origin(headers) {
        return Err(refuse(
            StatusCode::FORBIDDEN,
            "This form was sent from another site; nothing was done.",
        ));
    }
    let Some(session) = session_of(ui, headers) else {
        return Err(refuse(
            StatusCode::FORBIDDEN,
            "Your session has ended; sign in again. Nothing was done.",
        ));
    };
    let sent = form.get("csrf").map(String::as_str).unwrap_or("");
    if !session::same(sent, &session.csrf) {
        return Err(refuse(
            StatusCode::FORBIDDEN,
            "The form's security token is missing or stale; reload the page. Nothing was done.",
        ));
    }
    Ok(Who {
        session,
        set_cookie: None,
        open,
    })
}

/// A small error page without the session header.
fn refuse(status: StatusCode, message: &str) -> Response {
    pages::bare(
        status,
        "Refused",
        &format!(
            "<p class=\"error\" role=\"alert\">{}</p><p><a href=\"/\">Back to the catalog</a></p>",
            esc(message)
        ),
    )
}

/// The page for a refused or failed operation; the one mapping of
/// [`ServiceError`] for the web page (the API's is in `http::problem`).
fn failed(who: &Who, e: ServiceError) -> Response {
    let (status, title) = match &e {
        ServiceError::NotFound(_) => (StatusCode::NOT_FOUND, "Not found"),
        ServiceError::Invalid(_) | ServiceError::UnknownState { .. } => {
            (StatusCode::UNPROCESSABLE_ENTITY, "Not done")
        }
        ServiceError::WrongStatus { .. } | ServiceError::NotHolder(_) => {
            (StatusCode::CONFLICT, "Not done")
        }
        ServiceError::LeaseGone { .. } => (StatusCode::GONE, "Lease ended"),
        ServiceError::NoStock { .. } => (StatusCode::CONFLICT, "Not enough stock"),
        ServiceError::ShuttingDown => (StatusCode::SERVICE_UNAVAILABLE, "Shutting down"),
        ServiceError::UnknownExtension { .. } | ServiceError::GeneratorFailed { .. } => {
            (StatusCode::BAD_GATEWAY, "Generator failed")
        }
        ServiceError::Store(_) => return store_failed(e),
    };
    let mut r = render(who, Page::message(title, &e.to_string()));
    *r.status_mut() = status;
    r
}

fn store_failed(e: impl std::fmt::Display) -> Response {
    tracing::error!(error = %e, "store failure while rendering the web page");
    pages::bare(
        StatusCode::INTERNAL_SERVER_ERROR,
        "Store failure",
        "<p class=\"error\" role=\"alert\">The pool's store failed; the error is in the pool's log.</p>",
    )
}

fn render(who: &Who, page: Page) -> Response {
    pages::layout(who, page)
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
    if !app.tokens.enabled() || session_of(&ui, &headers).is_some() {
        return redirect("/");
    }
    pages::login(StatusCode::OK, None)
}

async fn login(
    State(app): State<AppState>,
    Extension(ui): UiExt,
    headers: HeaderMap,
    Form(form): Fields,
) -> Response {
    if !same_origin(&headers) {
        return refuse(
            StatusCode::FORBIDDEN,
            "This form was sent from another site; nothing was done.",
        );
    }
    if !app.tokens.enabled() {
        return redirect("/");
    }
    let token = form.get("token").map(|t| t.trim()).unwrap_or("");
    match app.tokens.check(Some(&format!("Bearer {token}")), Role::Ci) {
        Ok(caller) => {
            tracing::info!(token = %caller.name, "signed in to the web page");
            let s = ui.sessions.create(caller);
            let mut r = redirect("/");
            if let Ok(v) = HeaderValue::from_str(&session::set_cookie(&s.id)) {
                r.headers_mut().insert(header::SET_COOKIE, v);
            }
            r
        }
        Err(_) => pages::login(
            StatusCode::UNAUTHORIZED,
            Some("That token is not known to this pool."),
        ),
    }
}

async fn logout(
    State(app): State<AppState>,
    Extension(ui): UiExt,
    headers: HeaderMap,
    Form(form): Fields,
) -> Response {
    let who = match poster(&ui, &headers, &form, !app.tokens.enabled()) {
        Ok(w) => w,
        Err(r) => return r,
    };
    ui.sessions.remove(&who.session.id);
    let mut r = redirect(if who.open { "/" } else { "/ui/login" });
    if let Ok(v) = HeaderValue::from_str(&session::clear_cookie()) {
        r.headers_mut().insert(header::SET_COOKIE, v);
    }
    r
}

async fn catalog(
    State(app): State<AppState>,
    Extension(ui): UiExt,
    headers: HeaderMap,
) -> Response {
    let who = match who(&app, &ui, &headers) {
        Ok(w) => w,
        Err(r) => return r,
    };
    match app.service.catalog().await {
        Ok(cat) => render(&who, pages::catalog(&cat, &cat.problems)),
        Err(e) => failed(&who, e),
    }
}

async fn lease_form(
    State(app): State<AppState>,
    Extension(ui): UiExt,
    headers: HeaderMap,
    Query(q): Query<HashMap<String, String>>,
) -> Response {
    let who = match who(&app, &ui, &headers) {
        Ok(w) => w,
        Err(r) => return r,
    };
    match app.service.catalog().await {
        Ok(cat) => render(&who, pages::lease_form(&who, &cat, &q, None)),
        Err(e) => failed(&who, e),
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

async fn lease_create(
    State(app): State<AppState>,
    Extension(ui): UiExt,
    headers: HeaderMap,
    Form(form): Fields,
) -> Response {
    let who = match poster(&ui, &headers, &form, !app.tokens.enabled()) {
        Ok(w) => w,
        Err(r) => return r,
    };
    let cat = match app.service.catalog().await {
        Ok(c) => c,
        Err(e) => return failed(&who, e),
    };
    let fail = |status: StatusCode, msg: String| {
        let mut r = render(&who, pages::lease_form(&who, &cat, &form, Some(&msg)));
        *r.status_mut() = status;
        r
    };
    let picked = form.get("state").map(String::as_str).unwrap_or("");
    let Some((type_name, state)) = picked.split_once('/') else {
        return fail(StatusCode::UNPROCESSABLE_ENTITY, "Pick a state.".into());
    };
    if cat.find(type_name, state).is_none() {
        return fail(
            StatusCode::UNPROCESSABLE_ENTITY,
            format!("The pool knows no state {picked}."),
        );
    }
    let where_ = match parse_attributes(form.get("attributes").map(String::as_str).unwrap_or("")) {
        Ok(a) => a,
        Err(m) => return fail(StatusCode::UNPROCESSABLE_ENTITY, m),
    };
    let count = match form
        .get("count")
        .map(|c| c.trim())
        .filter(|c| !c.is_empty())
        .map(str::parse::<u32>)
    {
        None => 1,
        Some(Ok(c)) => c,
        Some(Err(_)) => {
            return fail(
                StatusCode::UNPROCESSABLE_ENTITY,
                "Count must be a whole number.".into(),
            );
        }
    };
    let ttl_seconds = match form
        .get("ttl")
        .map(|c| c.trim())
        .filter(|c| !c.is_empty())
        .map(str::parse::<u64>)
    {
        None => None,
        Some(Ok(t)) => Some(t),
        Some(Err(_)) => {
            return fail(
                StatusCode::UNPROCESSABLE_ENTITY,
                "TTL must be a whole number of seconds.".into(),
            );
        }
    };
    let req = LeaseRequest {
        holder: Holder {
            ci: Some("web".into()),
            job: Some("by hand".into()),
            run_id: Some(who.session.caller.name.clone()),
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
            count,
            on_failure: Default::default(),
        }],
    };
    match app.service.lease(req).await {
        Ok(leased) => {
            let id = leased.granted.lease_id;
            tracing::info!(lease_id = %id, token = %who.session.caller.name, "lease taken by hand on the web page");
            ui.sessions.add_lease(&who.session.id, &id);
            redirect(&format!("/ui/leases/{id}"))
        }
        Err(ServiceError::NoStock { shortfall, .. }) => {
            let s: Vec<String> = shortfall
                .iter()
                .map(|s| {
                    format!(
                        "{}: wanted {}, ready {}, generating {}",
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
        Err(e) => failed(&who, e),
    }
}

async fn leases(State(app): State<AppState>, Extension(ui): UiExt, headers: HeaderMap) -> Response {
    let who = match who(&app, &ui, &headers) {
        Ok(w) => w,
        Err(r) => return r,
    };
    match app.service.leases(Some(LeaseStatus::Active), 500).await {
        Ok(list) => render(&who, pages::leases(&list.leases, app.service.now_ms())),
        Err(e) => failed(&who, e),
    }
}

async fn lease(
    State(app): State<AppState>,
    Extension(ui): UiExt,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Response {
    let who = match who(&app, &ui, &headers) {
        Ok(w) => w,
        Err(r) => return r,
    };
    // Real data only for the session that took the lease, while active.
    let taken_here = who.session.leases.contains(&id);
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
            render(&who, pages::lease(&who, &lease, mine, app.service.now_ms()))
        }
        Err(ServiceError::NotFound(_)) => {
            let mut r = render(
                &who,
                Page::message("No such lease", &format!("No lease {id}.")),
            );
            *r.status_mut() = StatusCode::NOT_FOUND;
            r
        }
        Err(e) => failed(&who, e),
    }
}

async fn release(
    State(app): State<AppState>,
    Extension(ui): UiExt,
    headers: HeaderMap,
    Path(id): Path<String>,
    Form(form): Fields,
) -> Response {
    let who = match poster(&ui, &headers, &form, !app.tokens.enabled()) {
        Ok(w) => w,
        Err(r) => return r,
    };
    if !who.session.leases.contains(&id) && who.session.caller.role < Role::Admin {
        return refuse(
            StatusCode::FORBIDDEN,
            "Only the session that took this lease, or an admin, can end it here.",
        );
    }
    let outcome = match form.get("outcome").map(String::as_str) {
        Some("passed") => Outcome::Passed,
        Some("failed") => Outcome::Failed,
        _ => {
            return refuse(
                StatusCode::UNPROCESSABLE_ENTITY,
                "Pick release (passed) or quarantine (failed).",
            );
        }
    };
    let reason = form
        .get("reason")
        .map(|r| r.trim().to_string())
        .filter(|r| !r.is_empty());
    if outcome == Outcome::Failed && reason.is_none() {
        return refuse(
            StatusCode::UNPROCESSABLE_ENTITY,
            "Quarantining needs a reason.",
        );
    }
    let reason = reason.map(|r| {
        format!(
            "{r} — by hand on the web page by {}",
            who.session.caller.name
        )
    });
    match app.service.release(id.clone(), outcome, reason, None).await {
        Ok(_) => redirect(&format!("/ui/leases/{id}")),
        Err(ServiceError::LeaseGone {
            status: LeaseStatus::Expired,
            ..
        }) => render(
            &who,
            Page::message(
                "Lease expired",
                "The lease expired before this release; its datasets were quarantined.",
            ),
        ),
        Err(ServiceError::NotFound(_)) => refuse(StatusCode::NOT_FOUND, "No such lease."),
        Err(e) => failed(&who, e),
    }
}

async fn quarantine(
    State(app): State<AppState>,
    Extension(ui): UiExt,
    headers: HeaderMap,
    Query(q): Query<HashMap<String, String>>,
) -> Response {
    let who = match who(&app, &ui, &headers) {
        Ok(w) => w,
        Err(r) => return r,
    };
    let rows = match app.service.quarantined(200).await {
        Ok(rows) => rows,
        Err(e) => return failed(&who, e),
    };
    render(&who, pages::quarantine(&who, &rows, &q))
}

async fn dataset(
    State(app): State<AppState>,
    Extension(ui): UiExt,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Response {
    let who = match who(&app, &ui, &headers) {
        Ok(w) => w,
        Err(r) => return r,
    };
    match app.service.dataset(id.clone()).await {
        Ok(v) => render(&who, pages::dataset(&who, &v)),
        Err(ServiceError::NotFound(_)) => {
            let mut r = render(
                &who,
                Page::message("No such dataset", &format!("No dataset {id}.")),
            );
            *r.status_mut() = StatusCode::NOT_FOUND;
            r
        }
        Err(e) => failed(&who, e),
    }
}

async fn settle(
    State(app): State<AppState>,
    Extension(ui): UiExt,
    headers: HeaderMap,
    Path((id, action)): Path<(String, String)>,
    Form(form): Fields,
) -> Response {
    let who = match poster(&ui, &headers, &form, !app.tokens.enabled()) {
        Ok(w) => w,
        Err(r) => return r,
    };
    if who.session.caller.role < Role::Admin {
        return refuse(
            StatusCode::FORBIDDEN,
            "Discarding and recycling need an admin token; nothing was done.",
        );
    }
    let by = format!("{} (web page)", who.session.caller.name);
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
        Err(e) => failed(&who, e),
    }
}

async fn stock(State(app): State<AppState>, Extension(ui): UiExt, headers: HeaderMap) -> Response {
    let who = match who(&app, &ui, &headers) {
        Ok(w) => w,
        Err(r) => return r,
    };
    render(&who, pages::stock(&ui.samples.all(), ui.samples.interval))
}
