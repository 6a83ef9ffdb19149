//! `GET /openapi.json`: the OpenAPI 3.1 description of every route, body
//! and error, generated from the handlers' own annotations so it cannot
//! drift from the code.

use std::sync::LazyLock;

use axum::response::{IntoResponse, Response};
use platform::http::{ErrorBody, ErrorCode, ErrorDetail, ErrorType};
use platform::transaction::Status;
use utoipa::OpenApi;
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};

use crate::admin::{
    __path_queue, __path_requeue, ConsumerView, DeadLetterView, DeadView, GroupView, PendingView,
    QueueView, Requeued, RetriesView, RetryView, StreamView,
};
use crate::events::{
    __path_get_event, __path_list_events, __path_redeliver_event, Event, EventData, EventList,
    Redelivery,
};
use crate::psps::{__path_list_psps, BreakerView, Psp, PspList};
use crate::refunds::{
    __path_create_refund, __path_list_refunds, CreateRefundRequest, Refund, RefundList,
};
use crate::transactions::model::{PaymentMethod, Transaction};
use crate::transactions::request::{CreateTransactionRequest, PaymentMethodRequest};
use crate::transactions::{
    __path_create_transaction, __path_get_transaction, __path_list_transactions, TransactionList,
};
use crate::webhooks::{
    __path_create_endpoint, __path_delete_endpoint, __path_get_endpoint, __path_list_attempts,
    __path_list_endpoints, __path_rotate_secret, CreateEndpointRequest, DeletedEndpoint,
    DeliveryAttempt, DeliveryAttemptList, WebhookEndpoint, WebhookEndpointList,
};

#[derive(OpenApi)]
#[openapi(
    info(
        title = "core-api",
        description = "Accepts, records and queues card transactions; lists and filters them. \
                       Every error is `ErrorBody` with a stable `code`."
    ),
    paths(
        create_transaction, get_transaction, list_transactions, create_refund, list_refunds,
        list_events, get_event,
        redeliver_event, create_endpoint, list_endpoints, get_endpoint, delete_endpoint,
        rotate_secret, list_attempts, list_psps, healthz, readyz, openapi_json, queue, requeue
    ),
    components(schemas(
        Transaction, PaymentMethod, TransactionList, Refund, RefundList, CreateRefundRequest,
        platform::refund::RefundStatus, CreateTransactionRequest,
        PaymentMethodRequest, Status, ErrorBody, ErrorDetail, ErrorType, ErrorCode,
        QueueView, StreamView, GroupView, ConsumerView, PendingView, RetriesView, RetryView,
        DeadView, DeadLetterView, Requeued, Event, EventData, EventList, Redelivery,
        platform::event::EventType, CreateEndpointRequest, WebhookEndpoint, WebhookEndpointList,
        DeletedEndpoint, DeliveryAttempt, DeliveryAttemptList, Psp, PspList, BreakerView,
        platform::psp::BreakerState, platform::transaction::Attempt,
        platform::transaction::AttemptOutcome
    )),
    modifiers(&BearerAuth),
    tags(
        (name = "transactions"),
        (name = "refunds", description = "Full or partial refunds of succeeded transactions, made asynchronously at the PSP that charged"),
        (name = "events", description = "One event per transaction status change; each is delivered to the subscribed webhook endpoints"),
        (name = "webhooks", description = "Webhook endpoints, signed per Standard Webhooks, and their delivery log"),
        (name = "operations"),
        (name = "admin", description = "The dev dashboard's queue views; the gateway forwards them only from this machine")
    )
)]
pub struct ApiDoc;

struct BearerAuth;

impl utoipa::Modify for BearerAuth {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .description(Some(
                        "A token from the Auth API's POST /auth/token (a user: acts only for \
                         the customers linked to them), or an API key sk_test_… from POST \
                         /auth/api_keys (acts for every customer of its merchant)",
                    ))
                    .build(),
            ),
        );
    }
}

static DOCUMENT: LazyLock<String> = LazyLock::new(|| {
    ApiDoc::openapi()
        .to_json()
        .expect("the OpenAPI document serialises")
});

/// This document.
#[utoipa::path(get, path = "/openapi.json", tag = "operations",
    responses((status = 200, description = "OpenAPI 3.1 document", content_type = "application/json")))]
pub async fn openapi_json() -> Response {
    (
        [(http::header::CONTENT_TYPE, "application/json")],
        DOCUMENT.as_str(),
    )
        .into_response()
}

// The health routes are served by the shared runtime (platform::http);
// these stubs exist only to describe them.

/// Liveness: the process answers.
#[utoipa::path(get, path = "/healthz", tag = "operations",
    responses((status = 200, description = "`{\"status\":\"ok\"}`")))]
#[allow(dead_code)]
async fn healthz() {}

/// Readiness: Redis answers.
#[utoipa::path(get, path = "/readyz", tag = "operations",
    responses(
        (status = 200, description = "`{\"status\":\"ready\"}`"),
        (status = 503, description = "`not_ready`: Redis is unreachable", body = ErrorBody),
    ))]
#[allow(dead_code)]
async fn readyz() {}
