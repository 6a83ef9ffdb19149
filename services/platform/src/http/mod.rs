//! What every service's HTTP surface shares: the JSON error shape
//! ([`ApiError`]), body extractors whose rejections use it ([`Json`],
//! [`Form`], [`JsonOrForm`], [`Query`]), the request-id and access-log layer
//! ([`request_id`]), and the router wrapper adding health routes, a JSON
//! 404/405 and the 64 KiB body limit ([`service_router`]).

mod error;
mod extract;
pub mod request_id;

pub use error::{ApiError, ErrorBody, ErrorCode, ErrorDetail, ErrorType};
pub use extract::{Form, Json, JsonOrForm, Query};
pub use request_id::RequestId;

use axum::Router;
use axum::extract::{DefaultBodyLimit, State};
use axum::response::{IntoResponse, Response};
use axum::routing::get;

use crate::health::Readiness;

/// Largest request body any service accepts.
pub const MAX_BODY_BYTES: usize = 64 * 1024;

/// Most header fields a request may have; more is a JSON 431
/// `too_many_headers` (hyper's own, empty 431 only comes far beyond).
pub const MAX_HEADERS: usize = 100;

/// How long reading a whole request body may take (the header-read
/// timeout): a client dripping its body cannot hold a connection busy,
/// where the idle and header timeouts do not reach it.
#[derive(Debug, Clone, Copy)]
pub(crate) struct BodyTimeout(pub std::time::Duration);

/// Wraps a service's routes with `/healthz`, `/readyz`, JSON answers for
/// unknown routes and methods, the body and header limits, panic capture
/// and the request-id/access-log layer.
pub fn service_router(
    routes: Router,
    readiness: Readiness,
    limits: &crate::connections::HttpLimits,
) -> Router {
    let health = Router::new()
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .with_state(readiness);
    routes
        .merge(health)
        .fallback(route_not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(DefaultBodyLimit::max(MAX_BODY_BYTES))
        .layer(axum::Extension(BodyTimeout(limits.header_timeout)))
        .layer(axum::middleware::from_fn(limit_headers))
        .layer(tower_http::catch_panic::CatchPanicLayer::custom(
            panic_response,
        ))
        .layer(axum::middleware::from_fn(request_id::trace_request))
}

async fn limit_headers(request: axum::extract::Request, next: axum::middleware::Next) -> Response {
    if request.headers().len() > MAX_HEADERS {
        return ApiError::new(
            http::StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
            ErrorType::InvalidRequest,
            ErrorCode::TooManyHeaders,
            format!("a request may have at most {MAX_HEADERS} header fields"),
        )
        .into_response();
    }
    next.run(request).await
}

async fn healthz() -> Response {
    axum::Json(serde_json::json!({"status": "ok"})).into_response()
}

async fn readyz(State(readiness): State<Readiness>) -> Response {
    match readiness.check().await {
        Ok(()) => axum::Json(serde_json::json!({"status": "ready"})).into_response(),
        Err(reason) => ApiError::service_unavailable(ErrorCode::NotReady, reason).into_response(),
    }
}

async fn route_not_found() -> ApiError {
    ApiError::not_found(ErrorCode::RouteNotFound, "no such route")
}

async fn method_not_allowed() -> ApiError {
    ApiError::new(
        http::StatusCode::METHOD_NOT_ALLOWED,
        ErrorType::InvalidRequest,
        ErrorCode::MethodNotAllowed,
        "this route does not accept that method",
    )
}

fn panic_response(_: Box<dyn std::any::Any + Send + 'static>) -> Response {
    tracing::error!("handler panicked");
    ApiError::internal("internal error").into_response()
}
