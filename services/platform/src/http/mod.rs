//! What every service's HTTP surface shares: the JSON error shape
//! ([`ApiError`]), body extractors whose rejections use it ([`Json`],
//! [`Form`], [`JsonOrForm`], [`Query`]), the request-id and access-log layer
//! ([`request_id`]), and the router wrapper adding health routes, a JSON
//! 404/405 and the 64 KiB body limit ([`service_router`]).

mod error;
mod extract;
pub mod request_id;

pub use error::{ApiError, ErrorBody, ErrorDetail, ErrorType};
pub use extract::{Form, Json, JsonOrForm, Query};
pub use request_id::RequestId;

use axum::Router;
use axum::extract::{DefaultBodyLimit, State};
use axum::response::{IntoResponse, Response};
use axum::routing::get;

use crate::health::Readiness;

/// Largest request body any service accepts.
pub const MAX_BODY_BYTES: usize = 64 * 1024;

/// Wraps a service's routes with `/healthz`, `/readyz`, JSON answers for
/// unknown routes and methods, the body limit, panic capture and the
/// request-id/access-log layer.
pub fn service_router(routes: Router, readiness: Readiness) -> Router {
    let health = Router::new()
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .with_state(readiness);
    routes
        .merge(health)
        .fallback(route_not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(DefaultBodyLimit::max(MAX_BODY_BYTES))
        .layer(tower_http::catch_panic::CatchPanicLayer::custom(
            panic_response,
        ))
        .layer(axum::middleware::from_fn(request_id::trace_request))
}

async fn healthz() -> Response {
    axum::Json(serde_json::json!({"status": "ok"})).into_response()
}

async fn readyz(State(readiness): State<Readiness>) -> Response {
    match readiness.check().await {
        Ok(()) => axum::Json(serde_json::json!({"status": "ready"})).into_response(),
        Err(reason) => ApiError::service_unavailable("not_ready", reason).into_response(),
    }
}

async fn route_not_found() -> ApiError {
    ApiError::not_found("route_not_found", "no such route")
}

async fn method_not_allowed() -> ApiError {
    ApiError::new(
        http::StatusCode::METHOD_NOT_ALLOWED,
        ErrorType::InvalidRequest,
        "method_not_allowed",
        "this route does not accept that method",
    )
}

fn panic_response(_: Box<dyn std::any::Any + Send + 'static>) -> Response {
    tracing::error!("handler panicked");
    ApiError::internal("internal error").into_response()
}
