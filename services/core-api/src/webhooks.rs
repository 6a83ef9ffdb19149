//! The `/webhook_endpoints` routes: a merchant's webhook endpoints, their
//! signing secrets (shown once, at creation and at rotation) and their
//! delivery log. Deliveries themselves are webhook-dispatcher's
//! (docs/architecture.md "Events and webhooks").

use std::collections::BTreeSet;

use axum::Router;
use axum::extract::{Path, State, rejection::PathRejection};
use axum::routing::{get, post};
use http::StatusCode;
use platform::ApiError;
use platform::auth::Caller;
use platform::event::EventType;
use platform::http::{ErrorBody, ErrorCode, ErrorType, Json, Query};
use platform::keyspace::{self, attempt_field};
use platform::webhook::{self, Endpoint, EndpointId, Secret, Subscription};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use crate::AppState;

pub fn routes() -> Router<AppState> {
    Router::new()
        .route(
            "/webhook_endpoints",
            get(list_endpoints).post(create_endpoint),
        )
        .route(
            "/webhook_endpoints/{id}",
            get(get_endpoint).delete(delete_endpoint),
        )
        .route("/webhook_endpoints/{id}/rotate_secret", post(rotate_secret))
        .route("/webhook_endpoints/{id}/attempts", get(list_attempts))
}

/// The longest URL accepted.
pub const MAX_URL_LEN: usize = 2048;
/// The longest description accepted, in characters.
pub const MAX_DESCRIPTION_LEN: usize = 256;
/// Endpoints per merchant: each event is fanned out to every one.
pub const MAX_ENDPOINTS: usize = 16;
/// How long the previous secret is still sent after a rotation, by default
/// and at most.
pub const DEFAULT_GRACE_SECS: u64 = 24 * 3600;
pub const MAX_GRACE_SECS: u64 = 7 * 24 * 3600;

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateEndpointRequest {
    /// `http` or `https`, at most 2048 characters. Outside
    /// `WEBHOOK_PUBLIC_URLS=true` only loopback hosts (localhost,
    /// 127.0.0.0/8, ::1).
    #[schema(example = "http://127.0.0.1:7501/webhooks")]
    pub url: String,
    /// Event types, or `["*"]` for all.
    #[schema(example = json!(["transaction.succeeded", "transaction.declined"]))]
    pub events: Vec<String>,
    #[serde(default)]
    pub description: Option<String>,
}

/// A webhook endpoint. `secret` only in the answers of create and
/// rotate_secret: it is never shown again.
#[derive(Debug, Serialize, ToSchema)]
pub struct WebhookEndpoint {
    #[schema(example = "we_019aa2d6c3b07b3e9a1c2d3e4f506172")]
    pub id: String,
    pub url: String,
    pub events: Vec<String>,
    pub description: String,
    pub created_at: String,
    /// `whsec_…`: verify deliveries with it (Standard Webhooks).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub secret: Option<String>,
    /// While set, deliveries carry a signature with the previous secret
    /// too, until this RFC 3339 time.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub previous_secret_expires_at: Option<String>,
}

impl WebhookEndpoint {
    fn of(endpoint: &Endpoint, show_secret: bool) -> Self {
        let now = webhook::now_ms();
        Self {
            id: endpoint.id.to_string(),
            url: endpoint.url.clone(),
            events: endpoint.events.names(),
            description: endpoint.description.clone(),
            created_at: endpoint.created_at.clone(),
            secret: show_secret.then(|| endpoint.secret.expose().to_owned()),
            previous_secret_expires_at: endpoint
                .previous_secret
                .as_ref()
                .filter(|(_, until)| *until > now)
                .map(|(_, until)| rfc3339_of_ms(*until)),
        }
    }
}

fn rfc3339_of_ms(ms: u64) -> String {
    time::OffsetDateTime::from_unix_timestamp_nanos(i128::from(ms) * 1_000_000)
        .ok()
        .and_then(|t| {
            t.format(&time::format_description::well_known::Rfc3339)
                .ok()
        })
        .unwrap_or_default()
}

#[derive(Debug, Serialize, ToSchema)]
pub struct WebhookEndpointList {
    /// Oldest first; at most 16.
    pub data: Vec<WebhookEndpoint>,
}

fn invalid(param: &str, message: impl Into<String>) -> ApiError {
    ApiError::invalid_field(ErrorCode::InvalidField, message, param)
}

/// Checks an endpoint URL: http(s), a host, no credentials, bounded length,
/// and a loopback host unless `public_urls`.
pub fn parse_url(text: &str, public_urls: bool) -> Result<String, ApiError> {
    if text.len() > MAX_URL_LEN {
        return Err(invalid(
            "url",
            format!("url must be at most {MAX_URL_LEN} characters"),
        ));
    }
    let url = url::Url::parse(text).map_err(|_| invalid("url", "url must be an absolute URL"))?;
    if !matches!(url.scheme(), "http" | "https") {
        return Err(invalid("url", "url must be http:// or https://"));
    }
    if !url.username().is_empty() || url.password().is_some() {
        return Err(invalid("url", "url must not hold credentials"));
    }
    let loopback = match url.host() {
        None => return Err(invalid("url", "url must have a host")),
        Some(url::Host::Domain(name)) => name.eq_ignore_ascii_case("localhost"),
        Some(url::Host::Ipv4(ip)) => ip.is_loopback(),
        Some(url::Host::Ipv6(ip)) => ip.is_loopback(),
    };
    if !loopback && !public_urls {
        return Err(ApiError::bad_request(
            ErrorCode::UrlNotAllowed,
            "this platform delivers webhooks to loopback hosts only (WEBHOOK_PUBLIC_URLS)",
        )
        .with_param("url"));
    }
    Ok(url.to_string())
}

/// Checks the subscribed types: at least one, each known, or `*` alone.
pub fn parse_events(names: &[String]) -> Result<Subscription, ApiError> {
    if names.iter().any(|n| n == "*") {
        return if names.len() == 1 {
            Ok(Subscription::All)
        } else {
            Err(invalid("events", "\"*\" must be the only entry of events"))
        };
    }
    if names.is_empty() {
        return Err(invalid(
            "events",
            "events must name at least one type, or \"*\"",
        ));
    }
    let types: BTreeSet<usize> = names
        .iter()
        .map(|n| {
            EventType::ALL
                .iter()
                .position(|t| t.as_str() == n)
                .ok_or_else(|| invalid("events", format!("unknown event type {n:?}")))
        })
        .collect::<Result<_, _>>()?;
    Ok(Subscription::Only(
        types.into_iter().map(|i| EventType::ALL[i]).collect(),
    ))
}

/// Registers an endpoint; the answer holds its signing secret, shown only
/// this once.
#[utoipa::path(
    post,
    path = "/webhook_endpoints",
    tag = "webhooks",
    request_body = CreateEndpointRequest,
    security(("bearer" = [])),
    responses(
        (status = 201, description = "Created; `secret` is shown only here", body = WebhookEndpoint),
        (status = 400, description = "`malformed_body`, `url_not_allowed` (a non-loopback host where only loopback is allowed) or `too_many_endpoints`", body = ErrorBody),
        (status = 401, description = "Missing, invalid or expired token", body = ErrorBody),
        (status = 403, description = "`api_key_required`: endpoints receive every event of the merchant, so only an API key may manage them", body = ErrorBody),
        (status = 415, description = "`unsupported_media_type`", body = ErrorBody),
        (status = 422, description = "`missing_field`, `invalid_field` or `unknown_field`; `param` names it", body = ErrorBody),
        (status = 503, description = "`storage_unavailable`: Redis is unreachable", body = ErrorBody),
    )
)]
pub async fn create_endpoint(
    State(state): State<AppState>,
    caller: Caller,
    Json(request): Json<CreateEndpointRequest>,
) -> Result<(StatusCode, Json<WebhookEndpoint>), ApiError> {
    merchant_credential(&caller)?;
    let url = parse_url(&request.url, state.webhook_public_urls)?;
    let events = parse_events(&request.events)?;
    let description = request.description.unwrap_or_default();
    if description.chars().count() > MAX_DESCRIPTION_LEN
        || description.chars().any(char::is_control)
    {
        return Err(invalid(
            "description",
            format!("description must be at most {MAX_DESCRIPTION_LEN} printable characters"),
        ));
    }
    let mut conn = state.redis.conn();
    if webhook::endpoints_of(&mut conn, &caller.merchant)
        .await?
        .len()
        >= MAX_ENDPOINTS
    {
        return Err(ApiError::bad_request(
            ErrorCode::TooManyEndpoints,
            format!("a merchant has at most {MAX_ENDPOINTS} webhook endpoints"),
        ));
    }
    let endpoint = Endpoint {
        id: EndpointId::generate(),
        merchant_id: caller.merchant.clone(),
        url,
        events,
        description,
        secret: Secret::generate(),
        previous_secret: None,
        created_at: platform::transaction::now_rfc3339(),
    };
    webhook::create(&mut conn, &endpoint).await?;
    tracing::info!(endpoint = %endpoint.id, merchant = %caller.merchant, "webhook endpoint created");
    Ok((
        StatusCode::CREATED,
        Json(WebhookEndpoint::of(&endpoint, true)),
    ))
}

/// An endpoint receives every subscribed event of its merchant, whichever
/// customer it is about, so only a merchant-level credential (an API key)
/// may see or manage endpoints: a user acts only for their linked
/// customers, and must not be able to subscribe to the others' events.
fn merchant_credential(caller: &Caller) -> Result<(), ApiError> {
    if caller.user().is_none() {
        return Ok(());
    }
    Err(ApiError::new(
        StatusCode::FORBIDDEN,
        ErrorType::InvalidRequest,
        ErrorCode::ApiKeyRequired,
        "webhook endpoints receive every event of the merchant: use an API key",
    ))
}

/// The caller's merchant's endpoints, oldest first (secrets not shown).
#[utoipa::path(
    get,
    path = "/webhook_endpoints",
    tag = "webhooks",
    security(("bearer" = [])),
    responses(
        (status = 200, description = "Every endpoint of the merchant", body = WebhookEndpointList),
        (status = 401, description = "Missing, invalid or expired token", body = ErrorBody),
        (status = 403, description = "`api_key_required`: endpoints receive every event of the merchant, so only an API key may manage them", body = ErrorBody),
        (status = 503, description = "`storage_unavailable`: Redis is unreachable", body = ErrorBody),
    )
)]
pub async fn list_endpoints(
    State(state): State<AppState>,
    caller: Caller,
) -> Result<Json<WebhookEndpointList>, ApiError> {
    merchant_credential(&caller)?;
    let endpoints = webhook::endpoints_of(&mut state.redis.conn(), &caller.merchant).await?;
    Ok(Json(WebhookEndpointList {
        data: endpoints
            .iter()
            .map(|e| WebhookEndpoint::of(e, false))
            .collect(),
    }))
}

fn not_found() -> ApiError {
    ApiError::not_found(ErrorCode::NotFound, "no such webhook endpoint")
}

/// The caller's endpoint `id`; malformed, unknown and another merchant's
/// ids are the same 404.
async fn caller_endpoint(
    state: &AppState,
    caller: &Caller,
    id: Result<Path<String>, PathRejection>,
) -> Result<Endpoint, ApiError> {
    merchant_credential(caller)?;
    let Ok(Path(id)) = id else {
        return Err(not_found());
    };
    let id = EndpointId::parse(&id).ok_or_else(not_found)?;
    webhook::endpoint(&mut state.redis.conn(), &id)
        .await?
        .filter(|e| e.merchant_id == caller.merchant)
        .ok_or_else(not_found)
}

/// One endpoint (secret not shown).
#[utoipa::path(
    get,
    path = "/webhook_endpoints/{id}",
    tag = "webhooks",
    params(("id" = String, Path, description = "Endpoint id (`we_…`)")),
    security(("bearer" = [])),
    responses(
        (status = 200, description = "The endpoint", body = WebhookEndpoint),
        (status = 400, description = "`invalid_path` (the gateway): an encoded slash, backslash or NUL in the path", body = ErrorBody),
        (status = 401, description = "Missing, invalid or expired token", body = ErrorBody),
        (status = 403, description = "`api_key_required`: endpoints receive every event of the merchant, so only an API key may manage them", body = ErrorBody),
        (status = 404, description = "`not_found`: unknown id or another merchant's", body = ErrorBody),
        (status = 503, description = "`storage_unavailable`: Redis is unreachable", body = ErrorBody),
    )
)]
pub async fn get_endpoint(
    State(state): State<AppState>,
    caller: Caller,
    id: Result<Path<String>, PathRejection>,
) -> Result<Json<WebhookEndpoint>, ApiError> {
    let endpoint = caller_endpoint(&state, &caller, id).await?;
    Ok(Json(WebhookEndpoint::of(&endpoint, false)))
}

#[derive(Debug, Serialize, ToSchema)]
pub struct DeletedEndpoint {
    pub id: String,
    pub deleted: bool,
}

/// Deletes an endpoint, its waiting deliveries and its delivery log.
#[utoipa::path(
    delete,
    path = "/webhook_endpoints/{id}",
    tag = "webhooks",
    params(("id" = String, Path, description = "Endpoint id (`we_…`)")),
    security(("bearer" = [])),
    responses(
        (status = 200, description = "Deleted", body = DeletedEndpoint),
        (status = 400, description = "`invalid_path` (the gateway): an encoded slash, backslash or NUL in the path", body = ErrorBody),
        (status = 401, description = "Missing, invalid or expired token", body = ErrorBody),
        (status = 403, description = "`api_key_required`: endpoints receive every event of the merchant, so only an API key may manage them", body = ErrorBody),
        (status = 404, description = "`not_found`: unknown id or another merchant's", body = ErrorBody),
        (status = 503, description = "`storage_unavailable`: Redis is unreachable", body = ErrorBody),
    )
)]
pub async fn delete_endpoint(
    State(state): State<AppState>,
    caller: Caller,
    id: Result<Path<String>, PathRejection>,
) -> Result<Json<DeletedEndpoint>, ApiError> {
    let endpoint = caller_endpoint(&state, &caller, id).await?;
    webhook::delete(&mut state.redis.conn(), &endpoint).await?;
    Ok(Json(DeletedEndpoint {
        id: endpoint.id.to_string(),
        deleted: true,
    }))
}

#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct RotateQuery {
    /// How long the old secret keeps being sent beside the new one, 0 to
    /// 604800 s (default 86400).
    #[param(value_type = Option<u64>, minimum = 0, maximum = 604800)]
    grace_period_secs: Option<String>,
}

/// Replaces the signing secret. The new one is in the answer (only here);
/// the old one is still sent beside it for the grace period, so a receiver
/// can switch without missing a delivery.
#[utoipa::path(
    post,
    path = "/webhook_endpoints/{id}/rotate_secret",
    tag = "webhooks",
    params(("id" = String, Path, description = "Endpoint id (`we_…`)"), RotateQuery),
    security(("bearer" = [])),
    responses(
        (status = 200, description = "Rotated; the new `secret` is shown only here", body = WebhookEndpoint),
        (status = 400, description = "`invalid_parameter` or `unknown_parameter`; `invalid_path` (the gateway): an encoded slash, backslash or NUL in the path", body = ErrorBody),
        (status = 401, description = "Missing, invalid or expired token", body = ErrorBody),
        (status = 403, description = "`api_key_required`: endpoints receive every event of the merchant, so only an API key may manage them", body = ErrorBody),
        (status = 404, description = "`not_found`: unknown id or another merchant's", body = ErrorBody),
        (status = 503, description = "`storage_unavailable`: Redis is unreachable", body = ErrorBody),
    )
)]
pub async fn rotate_secret(
    State(state): State<AppState>,
    caller: Caller,
    id: Result<Path<String>, PathRejection>,
    Query(query): Query<RotateQuery>,
) -> Result<Json<WebhookEndpoint>, ApiError> {
    let grace = match query.grace_period_secs {
        None => DEFAULT_GRACE_SECS,
        Some(text) => text
            .parse::<u64>()
            .ok()
            .filter(|s| *s <= MAX_GRACE_SECS)
            .ok_or_else(|| {
                ApiError::bad_request(
                    ErrorCode::InvalidParameter,
                    format!("grace_period_secs must be an integer from 0 to {MAX_GRACE_SECS}"),
                )
                .with_param("grace_period_secs")
            })?,
    };
    let mut endpoint = caller_endpoint(&state, &caller, id).await?;
    let previous = std::mem::replace(&mut endpoint.secret, Secret::generate());
    endpoint.previous_secret = Some((previous, webhook::now_ms() + grace * 1000));
    // Only the secret fields change; an endpoint deleted meanwhile is not
    // brought back (the hash is written only if it still exists).
    let fields = endpoint.to_fields();
    let written: i64 = redis::Script::new(
        "if redis.call('EXISTS', KEYS[1]) == 0 then return 0 end \
         redis.call('HSET', KEYS[1], unpack(ARGV)) return 1",
    )
    .key(keyspace::webhook_endpoint(&endpoint.id))
    .arg(
        fields
            .iter()
            .flat_map(|(k, v)| [k.to_string(), v.clone()])
            .collect::<Vec<_>>(),
    )
    .invoke_async(&mut state.redis.conn())
    .await?;
    if written == 0 {
        return Err(not_found());
    }
    tracing::info!(endpoint = %endpoint.id, grace_period_secs = grace, "webhook secret rotated");
    Ok(Json(WebhookEndpoint::of(&endpoint, true)))
}

#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct AttemptsQuery {
    /// Page size, 1–100 (default 20).
    #[param(value_type = Option<u32>, minimum = 1, maximum = 100)]
    limit: Option<String>,
}

/// One delivery attempt.
#[derive(Debug, Serialize, ToSchema)]
pub struct DeliveryAttempt {
    pub event_id: String,
    /// 1 for the first attempt of a delivery.
    pub attempt: u32,
    /// The endpoint's HTTP status; absent when it did not answer.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub status_code: Option<u16>,
    /// Why there was no usable answer: `timeout`, `connect`, `status`, …
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    pub latency_ms: u64,
    /// `delivered`, `retrying` (another attempt is scheduled) or `dead`
    /// (given up: dead-lettered).
    pub outcome: String,
    /// RFC 3339, UTC.
    pub at: String,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct DeliveryAttemptList {
    /// Newest first; the log keeps about the last 1,000 attempts.
    pub data: Vec<DeliveryAttempt>,
}

/// The endpoint's delivery log, newest first.
#[utoipa::path(
    get,
    path = "/webhook_endpoints/{id}/attempts",
    tag = "webhooks",
    params(("id" = String, Path, description = "Endpoint id (`we_…`)"), AttemptsQuery),
    security(("bearer" = [])),
    responses(
        (status = 200, description = "The latest attempts", body = DeliveryAttemptList),
        (status = 400, description = "`invalid_parameter` or `unknown_parameter`; `invalid_path` (the gateway): an encoded slash, backslash or NUL in the path", body = ErrorBody),
        (status = 401, description = "Missing, invalid or expired token", body = ErrorBody),
        (status = 403, description = "`api_key_required`: endpoints receive every event of the merchant, so only an API key may manage them", body = ErrorBody),
        (status = 404, description = "`not_found`: unknown id or another merchant's", body = ErrorBody),
        (status = 503, description = "`storage_unavailable`: Redis is unreachable", body = ErrorBody),
    )
)]
pub async fn list_attempts(
    State(state): State<AppState>,
    caller: Caller,
    id: Result<Path<String>, PathRejection>,
    Query(query): Query<AttemptsQuery>,
) -> Result<Json<DeliveryAttemptList>, ApiError> {
    let limit = match query.limit {
        None => 20,
        Some(text) => text
            .parse::<usize>()
            .ok()
            .filter(|n| (1..=100).contains(n))
            .ok_or_else(|| {
                ApiError::bad_request(
                    ErrorCode::InvalidParameter,
                    "limit must be an integer from 1 to 100",
                )
                .with_param("limit")
            })?,
    };
    let endpoint = caller_endpoint(&state, &caller, id).await?;
    let entries: redis::streams::StreamRangeReply = redis::cmd("XREVRANGE")
        .arg(keyspace::endpoint_attempts(&endpoint.id))
        .arg("+")
        .arg("-")
        .arg("COUNT")
        .arg(limit)
        .query_async(&mut state.redis.conn())
        .await?;
    let data = entries
        .ids
        .iter()
        .map(|entry| {
            let text = |name: &str| entry.get::<String>(name);
            DeliveryAttempt {
                event_id: text(attempt_field::EVENT_ID).unwrap_or_default(),
                attempt: text(attempt_field::ATTEMPT)
                    .and_then(|a| a.parse().ok())
                    .unwrap_or(0),
                status_code: text(attempt_field::STATUS_CODE).and_then(|s| s.parse().ok()),
                error: text(attempt_field::ERROR),
                latency_ms: text(attempt_field::LATENCY_MS)
                    .and_then(|l| l.parse().ok())
                    .unwrap_or(0),
                outcome: text(attempt_field::OUTCOME).unwrap_or_default(),
                at: text(attempt_field::AT).unwrap_or_default(),
            }
        })
        .collect();
    Ok(Json(DeliveryAttemptList { data }))
}
