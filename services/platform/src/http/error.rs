//! The one error shape of docs/architecture.md "Errors":
//! `{"error": {"type", "code", "message", "param"?}}` with a stable `code`.

use std::borrow::Cow;

use axum::response::{IntoResponse, Response};
use http::{HeaderMap, HeaderName, HeaderValue, StatusCode};
use serde::Serialize;
use utoipa::ToSchema;

/// The broad class of an error, for clients that branch on it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum ErrorType {
    /// The request is wrong; retrying it unchanged will fail again.
    #[serde(rename = "invalid_request_error")]
    InvalidRequest,
    /// Missing, invalid or expired credentials.
    #[serde(rename = "authentication_error")]
    Authentication,
    /// Too many attempts; retry after `Retry-After`.
    #[serde(rename = "rate_limit_error")]
    RateLimit,
    /// An `Idempotency-Key` conflict.
    #[serde(rename = "idempotency_error")]
    Idempotency,
    /// The platform is at fault (a dependency is down); retrying may help.
    #[serde(rename = "api_error")]
    Api,
}

/// The JSON body of every error response.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct ErrorBody {
    pub error: ErrorDetail,
}

#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct ErrorDetail {
    #[serde(rename = "type")]
    pub kind: ErrorType,
    /// Stable, machine-readable code such as `invalid_credentials`.
    pub code: Cow<'static, str>,
    /// Human-readable explanation; wording may change.
    pub message: String,
    /// The request field at fault, when there is exactly one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub param: Option<String>,
}

/// An error answer: status, body and any extra headers. Boxed so that
/// `Result<T, ApiError>` stays one pointer wide on the happy path.
#[derive(Debug, Clone)]
pub struct ApiError(Box<Parts>);

#[derive(Debug, Clone)]
struct Parts {
    status: StatusCode,
    body: ErrorDetail,
    headers: HeaderMap,
}

impl ApiError {
    pub fn new(
        status: StatusCode,
        kind: ErrorType,
        code: impl Into<Cow<'static, str>>,
        message: impl Into<String>,
    ) -> Self {
        Self(Box::new(Parts {
            status,
            body: ErrorDetail {
                kind,
                code: code.into(),
                message: message.into(),
                param: None,
            },
            headers: HeaderMap::new(),
        }))
    }

    /// Names the one field at fault.
    pub fn with_param(mut self, param: impl Into<String>) -> Self {
        self.0.body.param = Some(param.into());
        self
    }

    pub fn with_header(mut self, name: HeaderName, value: HeaderValue) -> Self {
        self.0.headers.insert(name, value);
        self
    }

    /// 400: the request cannot be read at all.
    pub fn bad_request(code: impl Into<Cow<'static, str>>, message: impl Into<String>) -> Self {
        Self::new(
            StatusCode::BAD_REQUEST,
            ErrorType::InvalidRequest,
            code,
            message,
        )
    }

    /// 422: the request was read but a field is not acceptable.
    pub fn invalid_field(
        code: impl Into<Cow<'static, str>>,
        message: impl Into<String>,
        param: impl Into<String>,
    ) -> Self {
        Self::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            ErrorType::InvalidRequest,
            code,
            message,
        )
        .with_param(param)
    }

    /// 401 with the given code.
    pub fn unauthorized(code: impl Into<Cow<'static, str>>, message: impl Into<String>) -> Self {
        Self::new(
            StatusCode::UNAUTHORIZED,
            ErrorType::Authentication,
            code,
            message,
        )
    }

    /// 404.
    pub fn not_found(code: impl Into<Cow<'static, str>>, message: impl Into<String>) -> Self {
        Self::new(
            StatusCode::NOT_FOUND,
            ErrorType::InvalidRequest,
            code,
            message,
        )
    }

    /// 503: a dependency is unreachable; the request may be retried.
    pub fn service_unavailable(
        code: impl Into<Cow<'static, str>>,
        message: impl Into<String>,
    ) -> Self {
        Self::new(
            StatusCode::SERVICE_UNAVAILABLE,
            ErrorType::Api,
            code,
            message,
        )
    }

    /// 500: a bug. The detail goes to the log, never to the client.
    pub fn internal(detail: impl std::fmt::Display) -> Self {
        tracing::error!(%detail, "internal error");
        Self::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            ErrorType::Api,
            "internal_error",
            "the platform failed to handle this request",
        )
    }

    /// The same error with another status and code (e.g. a body error
    /// re-cast as a query-string error).
    pub fn recast(mut self, status: StatusCode, code: impl Into<Cow<'static, str>>) -> Self {
        self.0.status = status;
        self.0.body.code = code.into();
        self
    }

    pub fn status(&self) -> StatusCode {
        self.0.status
    }

    pub fn code(&self) -> &str {
        &self.0.body.code
    }

    pub fn param(&self) -> Option<&str> {
        self.0.body.param.as_deref()
    }

    pub fn message(&self) -> &str {
        &self.0.body.message
    }
}

impl From<redis::RedisError> for ApiError {
    /// Redis unreachable or timing out: the platform is degraded, not the
    /// request wrong, so 503 and a retryable code.
    fn from(error: redis::RedisError) -> Self {
        tracing::warn!(%error, "redis request failed");
        ApiError::service_unavailable("storage_unavailable", "storage is unavailable, retry later")
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let Parts {
            status,
            body,
            headers,
        } = *self.0;
        let mut response = (status, axum::Json(ErrorBody { error: body })).into_response();
        response.headers_mut().extend(headers);
        response
    }
}

impl std::fmt::Display for ApiError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} {}: {}",
            self.0.status.as_u16(),
            self.0.body.code,
            self.0.body.message
        )
    }
}

impl std::error::Error for ApiError {}
