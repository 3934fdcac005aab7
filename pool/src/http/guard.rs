//! What every request passes before any route (docs/pool.md, "Cross-site
//! protection"): on a pool without tokens, a `Host` that is not a loopback
//! name or the configured `public_url` host (DNS rebinding) and an unsafe
//! method sent from another site are refused with 403; on every pool, a
//! body on a JSON route that is not `application/json` gets 415, and a
//! request line over [`MAX_URI_BYTES`] gets 414. The web page's forms use
//! the same cross-site rule ([`cross_site`]).

use axum::extract::{Request, State};
use axum::http::{HeaderMap, Method, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use stockroom_protocol::api::{API_PREFIX, MAX_BODY_BYTES, PROBLEM_CONTENT_TYPE, ProblemKind};
use stockroom_protocol::pool_config::url_authority;

use super::AppState;
use super::problem::ApiError;

/// Longest path and query answered; longer gets 414 (problem+json).
pub const MAX_URI_BYTES: usize = 8 * 1024;

/// Whether a request was sent by a page of another site: `Sec-Fetch-Site`
/// says `cross-site` or `same-site`, or an `Origin` is not this pool (as
/// reached: `http(s)://` + its `Host`, or the configured `public_url`).
/// The one rule of the API and the web page's forms.
pub fn cross_site(headers: &HeaderMap, public_url: Option<&str>) -> bool {
    if headers
        .get("sec-fetch-site")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|s| {
            s.eq_ignore_ascii_case("cross-site") || s.eq_ignore_ascii_case("same-site")
        })
    {
        return true;
    }
    let Some(origin) = headers.get(header::ORIGIN) else {
        return false;
    };
    let Ok(origin) = origin.to_str() else {
        return true;
    };
    let origin = origin.trim_end_matches('/').to_ascii_lowercase();
    let host = headers
        .get(header::HOST)
        .and_then(|v| v.to_str().ok())
        .map(str::to_ascii_lowercase);
    let own = |authority: &str| {
        origin == format!("http://{authority}") || origin == format!("https://{authority}")
    };
    let by_host = host.as_deref().is_some_and(own);
    let by_public = public_url.and_then(url_authority).is_some_and(|a| own(&a));
    !(by_host || by_public)
}

/// Whether `host` (a `Host` header: `name[:port]`) names this machine's
/// loopback: `localhost`, `*.localhost`, `127.x.x.x` or `[::1]`.
pub fn is_loopback_host(host: &str) -> bool {
    let name = if let Some(rest) = host.strip_prefix('[') {
        match rest.split_once(']') {
            Some((inside, port)) if port.is_empty() || port.starts_with(':') => inside,
            _ => return false,
        }
    } else {
        host.rsplit_once(':').map_or(host, |(n, _)| n)
    };
    let name = name.trim_end_matches('.').to_ascii_lowercase();
    if name == "localhost" || name.ends_with(".localhost") {
        return true;
    }
    name.parse::<std::net::IpAddr>()
        .is_ok_and(|ip| ip.is_loopback())
}

/// Whether the request's `Host` is one this pool answers to without tokens.
fn allowed_host(headers: &HeaderMap, public_url: Option<&str>) -> bool {
    let Some(host) = headers.get(header::HOST).and_then(|v| v.to_str().ok()) else {
        // HTTP/1.0 without Host: nothing a browser sends.
        return true;
    };
    if is_loopback_host(host) {
        return true;
    }
    public_url
        .and_then(url_authority)
        .is_some_and(|a| a == host.to_ascii_lowercase())
}

fn unsafe_method(m: &Method) -> bool {
    !matches!(*m, Method::GET | Method::HEAD | Method::OPTIONS)
}

fn has_body(headers: &HeaderMap) -> bool {
    headers.contains_key(header::TRANSFER_ENCODING)
        || headers
            .get(header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|l| l.trim() != "0")
}

fn is_json(headers: &HeaderMap) -> bool {
    headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .map(|v| {
            v.split(';')
                .next()
                .unwrap_or("")
                .trim()
                .to_ascii_lowercase()
        })
        .is_some_and(|t| {
            t == "application/json" || (t.starts_with("application/") && t.ends_with("+json"))
        })
}

fn refusal(status: u16, kind: ProblemKind, detail: String) -> Response {
    let mut e = ApiError::new(kind, detail);
    e.problem.status = status;
    e.into_response()
}

/// The middleware: refuses what the module docs list, else passes on.
pub async fn guard(State(app): State<AppState>, req: Request, next: Next) -> Response {
    let uri_len = req.uri().path_and_query().map_or(0, |p| p.as_str().len());
    if uri_len > MAX_URI_BYTES {
        return refusal(
            414,
            ProblemKind::InvalidRequest,
            format!(
                "the request's path and query are {uri_len} bytes; at most {MAX_URI_BYTES} are answered"
            ),
        );
    }
    let public_url = app.service.config().public_url.as_deref();
    if !app.tokens.enabled() {
        if !allowed_host(req.headers(), public_url) {
            return refusal(
                403,
                ProblemKind::Forbidden,
                "this pool has no tokens and answers only to a loopback Host (localhost, 127.0.0.1, [::1]) \
                 or the host of public_url in its configuration"
                    .into(),
            );
        }
        if unsafe_method(req.method()) && cross_site(req.headers(), public_url) {
            return refusal(
                403,
                ProblemKind::Forbidden,
                "this request was sent by a page of another site (Origin or Sec-Fetch-Site); a pool without \
                 tokens refuses it. Nothing was done"
                    .into(),
            );
        }
    }
    if req.uri().path().starts_with(API_PREFIX)
        && unsafe_method(req.method())
        && has_body(req.headers())
        && !is_json(req.headers())
    {
        return refusal(
            415,
            ProblemKind::InvalidRequest,
            "request bodies must be JSON: send Content-Type: application/json".into(),
        );
    }
    as_problem(next.run(req).await).await
}

/// Any error answer that is not already problem+json (an axum rejection of
/// a path, query or body, a fallback, a plain-text operations answer)
/// becomes one, keeping its status, its text as the detail and its
/// `Retry-After`. The web page's own HTML answers stay as they are.
async fn as_problem(resp: Response) -> Response {
    let status = resp.status();
    if status.as_u16() < 400 {
        return resp;
    }
    let content_type = resp
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    if content_type.starts_with(PROBLEM_CONTENT_TYPE) || content_type.starts_with("text/html") {
        return resp;
    }
    let (parts, body) = resp.into_parts();
    let bytes = axum::body::to_bytes(body, 64 * 1024)
        .await
        .unwrap_or_default();
    let text = String::from_utf8_lossy(&bytes);
    let kind = match status.as_u16() {
        401 => ProblemKind::Unauthorized,
        403 => ProblemKind::Forbidden,
        404 => ProblemKind::NotFound,
        409 => ProblemKind::Conflict,
        413 => ProblemKind::TooLarge,
        500 => ProblemKind::Internal,
        503 => ProblemKind::Unavailable,
        _ => ProblemKind::InvalidRequest,
    };
    let detail = match (kind, text.trim()) {
        (ProblemKind::TooLarge, _) => {
            format!("request bodies are limited to {MAX_BODY_BYTES} bytes")
        }
        (_, "") => status.canonical_reason().unwrap_or("error").to_string(),
        (_, t) => t.to_string(),
    };
    let mut e = ApiError::new(kind, detail);
    e.problem.status = status.as_u16();
    let mut out = e.into_response();
    if let Some(r) = parts.headers.get(header::RETRY_AFTER) {
        out.headers_mut().insert(header::RETRY_AFTER, r.clone());
    }
    if let Some(a) = parts.headers.get(header::ALLOW) {
        out.headers_mut().insert(header::ALLOW, a.clone());
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.insert(*k, v.parse().unwrap_or_else(|_| panic!("header {v}")));
        }
        h
    }

    #[test]
    fn loopback_hosts() {
        for ok in [
            "localhost",
            "localhost:7878",
            "LOCALHOST.",
            "a.localhost:1",
            "127.0.0.1",
            "127.9.9.9:80",
            "[::1]",
            "[::1]:7878",
        ] {
            assert!(is_loopback_host(ok), "{ok}");
        }
        for bad in [
            "evil.example",
            "evil.example:7878",
            "10.0.0.1",
            "localhost.evil.example",
            "[::2]:1",
            "[::1]x",
            "0.0.0.0:1",
        ] {
            assert!(!is_loopback_host(bad), "{bad}");
        }
    }

    #[test]
    fn cross_site_by_origin_or_fetch_metadata() {
        let host = ("host", "127.0.0.1:7878");
        assert!(!cross_site(&headers(&[host]), None));
        assert!(!cross_site(
            &headers(&[host, ("origin", "http://127.0.0.1:7878")]),
            None
        ));
        assert!(cross_site(
            &headers(&[host, ("origin", "http://evil.example")]),
            None
        ));
        assert!(cross_site(&headers(&[host, ("origin", "null")]), None));
        assert!(cross_site(
            &headers(&[host, ("sec-fetch-site", "cross-site")]),
            None
        ));
        assert!(cross_site(
            &headers(&[host, ("sec-fetch-site", "same-site")]),
            None
        ));
        assert!(!cross_site(
            &headers(&[host, ("sec-fetch-site", "same-origin")]),
            None
        ));
        let proxied = [
            ("host", "10.0.0.5:7878"),
            ("origin", "https://stock.example.com"),
        ];
        assert!(cross_site(&headers(&proxied), None));
        assert!(!cross_site(
            &headers(&proxied),
            Some("https://stock.example.com/")
        ));
    }

    #[test]
    fn json_content_types() {
        assert!(is_json(&headers(&[("content-type", "application/json")])));
        assert!(is_json(&headers(&[(
            "content-type",
            "Application/JSON; charset=utf-8"
        )])));
        assert!(is_json(&headers(&[(
            "content-type",
            "application/merge-patch+json"
        )])));
        assert!(!is_json(&headers(&[("content-type", "text/plain")])));
        assert!(!is_json(&headers(&[])));
    }
}
