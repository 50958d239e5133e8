//! What the JSON API answers when something goes wrong:
//! `{"error": {"kind": "...", "message": "..."}}` with a status code that
//! says whose fault it is.

use axum::Json;
use axum::extract::rejection::{PathRejection, QueryRejection};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::json;
use xnai_streams::StreamError;

/// An error of the JSON API.
#[derive(Debug)]
pub(crate) struct ApiError {
    status: StatusCode,
    kind: &'static str,
    message: String,
}

impl ApiError {
    fn new(status: StatusCode, kind: &'static str, message: impl Into<String>) -> Self {
        Self {
            status,
            kind,
            message: message.into(),
        }
    }

    /// 400: the request is wrong (a malformed filter, a bad id, ...).
    pub(crate) fn bad_request(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "bad_request", message)
    }

    /// 404: no such group, entry or page.
    pub(crate) fn not_found(message: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_FOUND, "not_found", message)
    }

    /// 401: a write without the right token.
    pub(crate) fn unauthorized(message: impl Into<String>) -> Self {
        Self::new(StatusCode::UNAUTHORIZED, "unauthorized", message)
    }

    /// 403: a write to a dashboard started without `--allow-writes`.
    pub(crate) fn read_only() -> Self {
        Self::new(
            StatusCode::FORBIDDEN,
            "read_only",
            "this dashboard is read-only: start it with --allow-writes (and a token) to change anything",
        )
    }

    /// 403: a request for another host name than the dashboard's own.
    pub(crate) fn wrong_host(host: &str) -> Self {
        Self::new(
            StatusCode::FORBIDDEN,
            "wrong_host",
            format!(
                "requests for host `{host}` are refused: a dashboard on a loopback address answers localhost only"
            ),
        )
    }

    /// 405: a method the path does not take.
    pub(crate) fn method_not_allowed() -> Self {
        Self::new(
            StatusCode::METHOD_NOT_ALLOWED,
            "method_not_allowed",
            "this path does not take that method (reads are GET, changes are POST)",
        )
    }

    /// 503: something the answer needs is not there yet, or not reachable.
    pub(crate) fn unavailable(message: impl Into<String>) -> Self {
        Self::new(StatusCode::SERVICE_UNAVAILABLE, "unavailable", message)
    }

    /// The status code, for tests.
    #[cfg(test)]
    pub(crate) fn status(&self) -> u16 {
        self.status.as_u16()
    }

    /// 500: a failure of the dashboard itself.
    pub(crate) fn internal(message: impl Into<String>) -> Self {
        Self::new(StatusCode::INTERNAL_SERVER_ERROR, "internal", message)
    }
}

impl From<StreamError> for ApiError {
    fn from(e: StreamError) -> Self {
        let (status, kind) = match &e {
            StreamError::GroupNotFound { .. } => (StatusCode::NOT_FOUND, "not_found"),
            StreamError::InvalidName { .. }
            | StreamError::InvalidId { .. }
            | StreamError::Config { .. }
            | StreamError::NotDelivered { .. }
            | StreamError::WrongGroup { .. } => (StatusCode::BAD_REQUEST, "bad_request"),
            StreamError::NotOwner { .. } => (StatusCode::CONFLICT, "conflict"),
            StreamError::PermissionDenied { .. } => (StatusCode::BAD_GATEWAY, "permission_denied"),
            StreamError::Connection { .. } | StreamError::Timeout { .. } => {
                (StatusCode::SERVICE_UNAVAILABLE, "unavailable")
            }
            StreamError::Unsupported { .. } | StreamError::DlqDisabled { .. } => {
                (StatusCode::CONFLICT, "unsupported")
            }
            _ => (StatusCode::INTERNAL_SERVER_ERROR, "internal"),
        };
        Self::new(status, kind, e.to_string())
    }
}

impl From<QueryRejection> for ApiError {
    fn from(e: QueryRejection) -> Self {
        Self::bad_request(format!("malformed query string: {}", e.body_text()))
    }
}

impl From<PathRejection> for ApiError {
    fn from(e: PathRejection) -> Self {
        Self::bad_request(format!("malformed path: {}", e.body_text()))
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = json!({ "error": { "kind": self.kind, "message": self.message } });
        let mut response = (self.status, Json(body)).into_response();
        if self.status == StatusCode::UNAUTHORIZED {
            response.headers_mut().insert(
                header::WWW_AUTHENTICATE,
                HeaderValue::from_static("Bearer realm=\"xnai-streams dashboard\""),
            );
        }
        response
    }
}

/// What a handler of the JSON API returns.
pub(crate) type ApiResult<T> = Result<T, ApiError>;
