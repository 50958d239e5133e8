//! What stands between a request and the handlers: the token for writes,
//! the host check of a loopback dashboard, and the headers every answer
//! carries (a strict Content-Security-Policy: no inline script, nothing
//! from elsewhere).

use std::net::IpAddr;
use std::sync::Arc;

use axum::extract::{Request, State};
use axum::http::{HeaderMap, HeaderName, HeaderValue, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use super::error::ApiError;
use super::state::App;

/// The page may run its own script and style only, and talk to its own
/// server only.
pub(crate) const CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; \
    img-src 'self' data:; connect-src 'self'; base-uri 'none'; form-action 'none'; \
    frame-ancestors 'none'";

/// Lets a write through only with `--allow-writes` and the token, given as
/// `Authorization: Bearer <token>`.
pub(crate) async fn require_token(
    State(app): State<Arc<App>>,
    request: Request,
    next: Next,
) -> Response {
    if !app.writes.allowed() {
        return ApiError::read_only().into_response();
    }
    let given = request
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .map(str::trim);
    match given {
        Some(token) if app.writes.accepts(token) => next.run(request).await,
        Some(_) => ApiError::unauthorized("wrong token").into_response(),
        None => ApiError::unauthorized(
            "changes need the dashboard's token: send `Authorization: Bearer <token>`",
        )
        .into_response(),
    }
}

/// The host part of a `Host` header: `localhost`, `127.0.0.1`, `::1`.
fn host_name(host: &str) -> &str {
    if let Some(rest) = host.strip_prefix('[') {
        return rest.split(']').next().unwrap_or(rest);
    }
    match host.rsplit_once(':') {
        Some((name, port)) if port.chars().all(|c| c.is_ascii_digit()) => name,
        _ => host,
    }
}

/// Whether a host name is this machine's.
pub(crate) fn is_local(host: &str) -> bool {
    let name = host_name(host);
    name.eq_ignore_ascii_case("localhost")
        || name.parse::<IpAddr>().is_ok_and(|ip| ip.is_loopback())
}

/// A dashboard on a loopback address answers only requests for a local
/// host name: a web page elsewhere cannot read it through a host name of
/// its own that resolves to 127.0.0.1 (DNS rebinding).
pub(crate) async fn check_host(
    State(app): State<Arc<App>>,
    request: Request,
    next: Next,
) -> Response {
    if app.loopback {
        if let Some(host) = request
            .headers()
            .get(header::HOST)
            .and_then(|h| h.to_str().ok())
        {
            if !is_local(host) {
                return secure(ApiError::wrong_host(host).into_response(), false);
            }
        }
    }
    next.run(request).await
}

fn set(headers: &mut HeaderMap, name: HeaderName, value: &'static str) {
    headers.insert(name, HeaderValue::from_static(value));
}

/// The headers of every answer.
fn secure(mut response: Response, cacheable: bool) -> Response {
    let h = response.headers_mut();
    set(h, header::CONTENT_SECURITY_POLICY, CSP);
    set(h, header::X_CONTENT_TYPE_OPTIONS, "nosniff");
    set(h, header::REFERRER_POLICY, "no-referrer");
    set(h, header::X_FRAME_OPTIONS, "DENY");
    set(
        h,
        header::CACHE_CONTROL,
        if cacheable { "no-cache" } else { "no-store" },
    );
    response
}

/// Adds the headers every answer carries; the page's assets may be cached
/// (and checked again), nothing else.
pub(crate) async fn headers(request: Request, next: Next) -> Response {
    let cacheable = request.uri().path().starts_with("/assets/");
    secure(next.run(request).await, cacheable)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn local_host_names() {
        for local in [
            "localhost",
            "localhost:8080",
            "127.0.0.1:8080",
            "127.1.2.3",
            "[::1]:80",
            "LOCALHOST:1",
        ] {
            assert!(is_local(local), "{local}");
        }
        for other in [
            "evil.example:8080",
            "10.0.0.1:8080",
            "localhost.evil.example",
            "[::2]:80",
            "",
        ] {
            assert!(!is_local(other), "{other}");
        }
    }
}
