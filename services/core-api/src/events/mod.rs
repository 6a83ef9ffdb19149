//! The `/events` routes: the merchant's events, newest first, one event,
//! and a redelivery to the merchant's webhook endpoints.
//!
//! Events are written by the status transition script
//! ([`platform::transaction::transition`]), never here. `data.object` is
//! the snapshot of the transaction that script took, so it is the
//! transaction as the change left it (docs/architecture.md "Events and
//! webhooks").

use std::collections::HashMap;

use axum::Router;
use axum::extract::{Path, State, rejection::PathRejection};
use axum::routing::{get, post};
use http::StatusCode;
use platform::ApiError;
use platform::auth::Caller;
use platform::event::{EventId, EventType};
use platform::http::ErrorCode;
use platform::http::{ErrorBody, Json, Query};
use platform::keyspace::{self, event_field};
use platform::webhook::{self, Schedule};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use crate::AppState;
use crate::transactions::model::Transaction;
use crate::transactions::store;

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/events", get(list_events))
        .route("/events/{id}", get(get_event))
        .route("/events/{id}/redeliver", post(redeliver_event))
}

/// A transaction status change, as `GET /events` shows it and as every
/// webhook delivers it (the body of each delivery).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, ToSchema)]
pub struct Event {
    /// `evt_` + UUIDv7: sorts by creation time; the `webhook-id` of every
    /// delivery of this event.
    #[schema(example = "evt_019aa2d6c3b07b3e9a1c2d3e4f506172")]
    pub id: String,
    #[serde(rename = "type")]
    pub kind: EventType,
    /// RFC 3339, UTC: when the status changed.
    pub created_at: String,
    pub data: EventData,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, ToSchema)]
pub struct EventData {
    /// The transaction as the status change (or the refund's settlement)
    /// left it.
    pub object: Transaction,
    /// The refund as its settlement left it (`refund.*` events only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub refund: Option<crate::refunds::Refund>,
}

/// A stored event and the merchant it belongs to.
pub struct StoredEvent {
    pub merchant_id: String,
    pub event: Event,
}

impl StoredEvent {
    /// Reads an event record. One that does not decode is a platform bug
    /// (only the transition script writes it), hence a 500.
    pub fn from_hash(mut hash: HashMap<String, String>) -> Result<Self, ApiError> {
        let refund_hash = hash.remove(event_field::REFUND);
        let mut take = |name: &str| {
            hash.remove(name)
                .ok_or_else(|| ApiError::internal(format!("event record lacks {name}")))
        };
        let id = take(event_field::ID)?;
        let corrupt = |name: &str| ApiError::internal(format!("event {id}: bad {name}"));
        let kind = take(event_field::TYPE)?
            .parse()
            .map_err(|_| corrupt(event_field::TYPE))?;
        let object: HashMap<String, String> = serde_json::from_str(&take(event_field::OBJECT)?)
            .map_err(|_| corrupt(event_field::OBJECT))?;
        let refund = match refund_hash {
            None => None,
            Some(refund) => {
                let refund: HashMap<String, String> =
                    serde_json::from_str(&refund).map_err(|_| corrupt(event_field::REFUND))?;
                Some(crate::refunds::Refund::from_hash(refund)?)
            }
        };
        Ok(Self {
            merchant_id: take(event_field::MERCHANT_ID)?,
            event: Event {
                kind,
                created_at: take(event_field::CREATED_AT)?,
                data: EventData {
                    object: Transaction::from_hash(object)?,
                    refund,
                },
                id,
            },
        })
    }
}

/// The record of `id`; empty when there is none.
pub async fn fetch<C: redis::aio::ConnectionLike + Send>(
    conn: &mut C,
    id: &EventId,
) -> redis::RedisResult<HashMap<String, String>> {
    redis::cmd("HGETALL")
        .arg(keyspace::event(id))
        .query_async(conn)
        .await
}

fn not_found() -> ApiError {
    ApiError::not_found(ErrorCode::NotFound, "no such event")
}

/// The caller's event `id`: a malformed, unknown or other merchant's id is
/// the same 404.
async fn caller_event(
    state: &AppState,
    caller: &Caller,
    id: Result<Path<String>, PathRejection>,
) -> Result<Event, ApiError> {
    let Ok(Path(id)) = id else {
        return Err(not_found());
    };
    let id = EventId::parse(&id).ok_or_else(not_found)?;
    let hash = fetch(&mut state.redis.conn(), &id).await?;
    if hash.is_empty() {
        return Err(not_found());
    }
    let stored = StoredEvent::from_hash(hash)?;
    if stored.merchant_id != caller.merchant {
        return Err(not_found());
    }
    if let Some(customers) = linked_customers(state, caller).await?
        && !visible(&stored.event, &customers)
    {
        return Err(not_found());
    }
    Ok(stored.event)
}

/// A user token's linked customers (`None` for an API key, which sees the
/// whole merchant), as for transactions.
async fn linked_customers(
    state: &AppState,
    caller: &Caller,
) -> Result<Option<Vec<String>>, ApiError> {
    let Some(user) = caller.user() else {
        return Ok(None);
    };
    Ok(Some(
        platform::access::links::customers_of(&mut state.redis.conn(), &caller.merchant, user)
            .await?,
    ))
}

/// Whether a user linked to `customers` may see `event`: its
/// transaction's customer is one of them.
fn visible(event: &Event, customers: &[String]) -> bool {
    event
        .data
        .object
        .customer_id
        .as_ref()
        .is_some_and(|c| customers.contains(c))
}

/// Index entries one list request reads at most for a user token (whose
/// events are filtered by customer); then it answers with a cursor.
pub const MAX_SCANNED: usize = 2_000;

pub const DEFAULT_LIMIT: usize = 20;
pub const MAX_LIMIT: usize = 100;

/// Query parameters, as text, each parsed so that a bad one answers 400
/// `invalid_parameter` naming it.
#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct EventQuery {
    /// Only events of this type.
    #[param(value_type = Option<EventType>)]
    r#type: Option<String>,
    /// Page size, 1–100 (default 20).
    #[param(value_type = Option<u32>, minimum = 1, maximum = 100)]
    limit: Option<String>,
    /// The `next_cursor` of the previous page.
    starting_after: Option<String>,
}

/// A page of events, newest first.
#[derive(Debug, Serialize, ToSchema)]
pub struct EventList {
    pub data: Vec<Event>,
    pub has_more: bool,
    /// Pass as `starting_after` for the next page; null on the last page.
    pub next_cursor: Option<String>,
}

fn invalid(param: &str, message: impl Into<String>) -> ApiError {
    ApiError::bad_request(ErrorCode::InvalidParameter, message).with_param(param)
}

/// Lists the caller's merchant's events, newest first: one index read
/// (the per-type index when `type` is given) and one pipelined read of the
/// page's records, O(log N + limit). A user token sees only the events of
/// its linked customers' transactions (an API key sees all): its scan is
/// bounded by [`MAX_SCANNED`] entries, and a page that did not fill by then
/// answers `has_more` with a cursor to resume from.
#[utoipa::path(
    get,
    path = "/events",
    tag = "events",
    params(EventQuery),
    security(("bearer" = [])),
    responses(
        (status = 200, description = "A page, newest first", body = EventList),
        (status = 400, description = "`invalid_parameter` or `unknown_parameter`; `param` names it", body = ErrorBody),
        (status = 401, description = "Missing, invalid or expired token", body = ErrorBody),
        (status = 503, description = "`storage_unavailable`: Redis is unreachable", body = ErrorBody),
    )
)]
pub async fn list_events(
    State(state): State<AppState>,
    caller: Caller,
    Query(query): Query<EventQuery>,
) -> Result<Json<EventList>, ApiError> {
    let event_type = query
        .r#type
        .map(|t| t.parse::<EventType>())
        .transpose()
        .map_err(|_| {
            let names: Vec<_> = EventType::ALL.iter().map(|t| t.as_str()).collect();
            invalid("type", format!("type must be one of {}", names.join(", ")))
        })?;
    let limit = match query.limit {
        None => DEFAULT_LIMIT,
        Some(text) => text
            .parse::<usize>()
            .ok()
            .filter(|n| (1..=MAX_LIMIT).contains(n))
            .ok_or_else(|| {
                invalid(
                    "limit",
                    format!("limit must be an integer from 1 to {MAX_LIMIT}"),
                )
            })?,
    };
    let max = match query.starting_after {
        None => "+".to_owned(),
        Some(cursor) => {
            let cursor = EventId::parse(&cursor)
                .ok_or_else(|| invalid("starting_after", "starting_after must be an event id"))?;
            format!("({cursor}")
        }
    };
    let index = keyspace::merchant_events(&caller.merchant, event_type);
    let customers = linked_customers(&state, &caller).await?;
    let mut conn = state.redis.conn();
    let wanted = limit + 1;
    let mut page = Vec::with_capacity(wanted);
    let mut max = max;
    let mut scanned = 0;
    // Set when a user's scan reached MAX_SCANNED before the page filled.
    let mut resume_after: Option<String> = None;
    'scan: loop {
        let batch = match customers {
            None => wanted - page.len(),
            Some(_) => 200.min(MAX_SCANNED - scanned),
        };
        let ids = store::ids_newest_first(&mut conn, &index, &max, "-", batch).await?;
        let Some(last) = ids.last().cloned() else {
            break;
        };
        max = format!("({last}");
        scanned += ids.len();
        let exhausted = ids.len() < batch;
        let ids: Vec<EventId> = ids.iter().filter_map(|id| EventId::parse(id)).collect();
        let mut pipe = redis::pipe();
        for id in &ids {
            pipe.cmd("HGETALL").arg(keyspace::event(id));
        }
        let hashes: Vec<HashMap<String, String>> = if ids.is_empty() {
            Vec::new()
        } else {
            pipe.query_async(&mut conn).await?
        };
        for hash in hashes.into_iter().filter(|h| !h.is_empty()) {
            let stored = StoredEvent::from_hash(hash)?;
            let shown = stored.merchant_id == caller.merchant
                && customers
                    .as_ref()
                    .is_none_or(|customers| visible(&stored.event, customers));
            if shown {
                page.push(stored.event);
                if page.len() == wanted {
                    break 'scan;
                }
            }
        }
        if exhausted {
            break;
        }
        if customers.is_some() && scanned >= MAX_SCANNED {
            resume_after = Some(last);
            break;
        }
    }
    let (has_more, next_cursor) = if page.len() > limit {
        page.truncate(limit);
        (true, page.last().map(|e| e.id.clone()))
    } else {
        (resume_after.is_some(), resume_after)
    };
    Ok(Json(EventList {
        data: page,
        has_more,
        next_cursor,
    }))
}

/// One event of the caller's merchant. O(1).
#[utoipa::path(
    get,
    path = "/events/{id}",
    tag = "events",
    params(("id" = String, Path, description = "Event id (`evt_…`)")),
    security(("bearer" = [])),
    responses(
        (status = 200, description = "The event", body = Event),
        (status = 400, description = "`invalid_path` (the gateway): an encoded slash, backslash or NUL in the path", body = ErrorBody),
        (status = 401, description = "Missing, invalid or expired token", body = ErrorBody),
        (status = 404, description = "`not_found`: unknown id or another merchant's", body = ErrorBody),
        (status = 503, description = "`storage_unavailable`: Redis is unreachable", body = ErrorBody),
    )
)]
pub async fn get_event(
    State(state): State<AppState>,
    caller: Caller,
    id: Result<Path<String>, PathRejection>,
) -> Result<Json<Event>, ApiError> {
    caller_event(&state, &caller, id).await.map(Json)
}

/// The answer to a redelivery request.
#[derive(Debug, Serialize, ToSchema)]
pub struct Redelivery {
    pub event_id: String,
    /// The endpoints the event is sent to again (those subscribed to its
    /// type now).
    pub endpoints: Vec<String>,
}

/// Sends an event again to every endpoint of the merchant subscribed to
/// its type, at once, with the same `webhook-id` and attempts counted
/// from 1.
#[utoipa::path(
    post,
    path = "/events/{id}/redeliver",
    tag = "events",
    params(("id" = String, Path, description = "Event id (`evt_…`)")),
    security(("bearer" = [])),
    responses(
        (status = 202, description = "Scheduled for delivery now", body = Redelivery),
        (status = 400, description = "`invalid_path` (the gateway): an encoded slash, backslash or NUL in the path", body = ErrorBody),
        (status = 401, description = "Missing, invalid or expired token", body = ErrorBody),
        (status = 404, description = "`not_found`: unknown id or another merchant's", body = ErrorBody),
        (status = 503, description = "`storage_unavailable`: Redis is unreachable", body = ErrorBody),
    )
)]
pub async fn redeliver_event(
    State(state): State<AppState>,
    caller: Caller,
    id: Result<Path<String>, PathRejection>,
) -> Result<(StatusCode, Json<Redelivery>), ApiError> {
    let event = caller_event(&state, &caller, id).await?;
    let event_id = EventId::parse(&event.id).ok_or_else(not_found)?;
    let mut conn = state.redis.conn();
    let endpoints: Vec<_> = webhook::endpoints_of(&mut conn, &caller.merchant)
        .await?
        .into_iter()
        .filter(|e| e.events.includes(event.kind))
        .map(|e| e.id)
        .collect();
    webhook::schedule(
        &mut conn,
        &event_id,
        &endpoints,
        webhook::now_ms(),
        Schedule::Again,
    )
    .await?;
    Ok((
        StatusCode::ACCEPTED,
        Json(Redelivery {
            event_id: event.id,
            endpoints: endpoints.iter().map(|e| e.to_string()).collect(),
        }),
    ))
}
