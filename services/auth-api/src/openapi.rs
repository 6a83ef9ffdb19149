//! `GET /openapi.json`: the machine-readable description of this API, built
//! from the handlers' own annotations so it cannot drift from them.

use axum::response::{IntoResponse, Response};
use platform::http::{ErrorBody, ErrorCode, ErrorDetail, ErrorType};
use utoipa::OpenApi;
use utoipa::openapi::path::{HttpMethod, OperationBuilder, PathItem};
use utoipa::openapi::{ContentBuilder, Ref, ResponseBuilder};

use crate::api_keys::{ApiKeyList, ApiKeyView, CreateApiKeyRequest, CreatedApiKey, RevokedApiKey};
use crate::credentials::TokenRequest;
use crate::links::UserCustomers;
use crate::token::TokenResponse;

#[derive(OpenApi)]
#[openapi(
    info(
        title = "Auth API",
        description = "Exchanges merchant credentials for short-lived HS256 access tokens, \
            manages the merchant's API keys (`sk_test_…`, with a user token of a user who \
            manages keys) and which customers each user may act for (with an API key). \
            Every error is `{\"error\": {\"type\", \"code\", \"message\", \"param\"?}}`; \
            unknown routes answer 404 `route_not_found`, wrong methods 405 `method_not_allowed`.",
    ),
    paths(
        crate::token::issue_token,
        crate::api_keys::create_api_key,
        crate::api_keys::list_api_keys,
        crate::api_keys::revoke_api_key,
        crate::links::list_customers,
        crate::links::link_customer,
        crate::links::unlink_customer,
    ),
    components(schemas(
        TokenRequest,
        TokenResponse,
        CreateApiKeyRequest,
        CreatedApiKey,
        ApiKeyView,
        ApiKeyList,
        RevokedApiKey,
        UserCustomers,
        ErrorBody,
        ErrorDetail,
        ErrorType,
        ErrorCode
    )),
    modifiers(&BearerAuth),
    tags(
        (name = "auth", description = "Tokens"),
        (name = "api_keys", description = "The merchant's API keys"),
        (name = "links", description = "Which customers a user may act for"),
        (name = "health", description = "Probes"),
    ),
)]
struct ApiDoc;

/// The `bearer` scheme the key and link routes name: a token from
/// `POST /token` or an API key.
struct BearerAuth;

impl utoipa::Modify for BearerAuth {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
        openapi
            .components
            .get_or_insert_default()
            .add_security_scheme(
                "bearer",
                SecurityScheme::Http(
                    HttpBuilder::new()
                        .scheme(HttpAuthScheme::Bearer)
                        .description(Some("A token from POST /token, or an API key sk_test_…"))
                        .build(),
                ),
            );
    }
}

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
