//! `GET /openapi.json`: the machine-readable description of this API, built
//! from the handlers' own annotations so it cannot drift from them.

use axum::response::{IntoResponse, Response};
use platform::http::{ErrorBody, ErrorCode, ErrorDetail, ErrorType};
use utoipa::OpenApi;
use utoipa::openapi::path::{HttpMethod, OperationBuilder, PathItem};
use utoipa::openapi::{ContentBuilder, Ref, ResponseBuilder};

use crate::credentials::TokenRequest;
use crate::token::TokenResponse;

#[derive(OpenApi)]
#[openapi(
    info(
        title = "Auth API",
        description = "Exchanges merchant credentials for short-lived HS256 access tokens. \
            Every error is `{\"error\": {\"type\", \"code\", \"message\", \"param\"?}}`; \
            unknown routes answer 404 `route_not_found`, wrong methods 405 `method_not_allowed`.",
    ),
    paths(crate::token::issue_token),
    components(schemas(TokenRequest, TokenResponse, ErrorBody, ErrorDetail, ErrorType, ErrorCode)),
    tags((name = "auth", description = "Tokens"), (name = "health", description = "Probes")),
)]
struct ApiDoc;

/// The whole document, including the probes every service shares.
pub fn document() -> utoipa::openapi::OpenApi {
    let mut doc = ApiDoc::openapi();
    let json = |description: &str| {
        ResponseBuilder::new()
            .description(description)
            .content("application/json", ContentBuilder::new().build())
            .build()
    };
    let not_ready = ResponseBuilder::new()
        .description("`not_ready`: Redis does not answer")
        .content(
            "application/json",
            ContentBuilder::new()
                .schema(Some(Ref::from_schema_name("ErrorBody")))
                .build(),
        )
        .build();
    let probe = |summary: &str, extra: Option<utoipa::openapi::Response>| {
        let mut operation = OperationBuilder::new()
            .summary(Some(summary))
            .tag("health")
            .response("200", json("`{\"status\": ...}`"));
        if let Some(response) = extra {
            operation = operation.response("503", response);
        }
        PathItem::new(HttpMethod::Get, operation.build())
    };
    doc.paths
        .paths
        .insert("/healthz".into(), probe("The process is alive", None));
    doc.paths.paths.insert(
        "/readyz".into(),
        probe("Dependencies are reachable", Some(not_ready)),
    );
    doc.paths.paths.insert(
        "/openapi.json".into(),
        PathItem::new(
            HttpMethod::Get,
            OperationBuilder::new()
                .summary(Some("This document"))
                .response("200", json("OpenAPI 3.1 document"))
                .build(),
        ),
    );
    doc
}

pub async fn serve() -> Response {
    axum::Json(document()).into_response()
}
