//! `POST /transactions/{id}/refunds` and `GET /transactions/{id}/refunds`
//! (docs/architecture.md "Refunds").
//!
//! A refund is accepted only for a `succeeded` transaction, for at most
//! what is left of its amount: the amount held by its refunds that have
//! not failed (pending or succeeded) is kept on the transaction record
//! (`refund_reserved`), and [`CREATE_SCRIPT`] checks and raises it in the
//! same atomic step that writes the refund record, the transaction's
//! refund index, the queue message and the completed idempotency entry. So
//! concurrent refunds with different keys never add up to more than the
//! amount, and nothing is half-written. The connector makes the refund at
//! the PSP that charged and settles it ([`platform::refund::settle`]); a
//! failed refund gives its reservation back.
//!
//! The `Idempotency-Key` works as for `POST /transactions`
//! ([`crate::idempotency`]): claimed first, the first answer replayed
//! (`Idempotent-Replayed: true`), 409 `request_in_progress` while the
//! first is handled, 422 `idempotency_key_reused` for another body (or
//! another transaction: the fingerprint covers the transaction id).

use std::collections::HashMap;

use axum::extract::{FromRequest, Path, Request, State, rejection::PathRejection};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use platform::ApiError;
use platform::auth::Caller;
use platform::http::{ErrorBody, ErrorCode, ErrorType, Json, RequestId};
use platform::keyspace::{self, field, refund_field};
use platform::refund::{RefundId, RefundMessage, RefundStatus};
use platform::transaction::{Status, TransactionId, now_rfc3339};
use redis::aio::ConnectionLike;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::AppState;
use crate::domain::{Amount, IdempotencyKey};
use crate::idempotency::{self, Entry};
use crate::transactions::store;

/// The most refunds one transaction may have (failed ones included), so
/// that reading a transaction stays bounded.
pub const MAX_REFUNDS: usize = 100;

/// A refund of (part of) a transaction.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, ToSchema)]
pub struct Refund {
    /// `re_` + UUIDv7 (32 hex digits); sorts by creation time.
    #[schema(example = "re_019aa2d6c3b07b3e9a1c2d3e4f506172")]
    pub id: String,
    pub transaction_id: String,
    pub status: RefundStatus,
    /// Minor units of `currency`.
    #[schema(example = 500)]
    pub amount: u64,
    #[schema(example = "EUR")]
    pub currency: String,
    /// The PSP that charged the transaction, where the refund is made.
    #[schema(example = "psp-a")]
    pub psp: String,
    /// That PSP's id of the refund (status `succeeded` only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub psp_refund_id: Option<String>,
    /// Why it failed (status `failed` only): `psp_unavailable`,
    /// `charge_not_found`, `refund_exceeds_charge`, `psp_rejected_request`
    /// or `unknown_psp`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub failure_reason: Option<String>,
    /// The user (or API key) that asked for it.
    pub created_by: String,
    /// RFC 3339, UTC.
    pub created_at: String,
    /// RFC 3339, UTC.
    pub updated_at: String,
}

impl Refund {
    /// Reads a refund record; one that does not decode is a platform bug.
    pub fn from_hash(mut hash: HashMap<String, String>) -> Result<Self, ApiError> {
        let psp_refund_id = hash
            .remove(refund_field::PSP_REFUND_ID)
            .filter(|value| !value.is_empty());
        let failure_reason = hash
            .remove(refund_field::FAILURE_REASON)
            .filter(|value| !value.is_empty());
        let mut take = |name: &str| hash.remove(name).filter(|value| !value.is_empty());
        let id =
            take(refund_field::ID).ok_or_else(|| ApiError::internal("refund record lacks id"))?;
        let corrupt = |name: &str| ApiError::internal(format!("refund {id}: bad {name}"));
        let mut required = |name: &str| take(name).ok_or_else(|| corrupt(name));
        Ok(Self {
            transaction_id: required(refund_field::TRANSACTION_ID)?,
            status: required(refund_field::STATUS)?
                .parse()
                .map_err(|_| corrupt(refund_field::STATUS))?,
            amount: required(refund_field::AMOUNT)?
                .parse()
                .map_err(|_| corrupt(refund_field::AMOUNT))?,
            currency: required(refund_field::CURRENCY)?,
            psp: required(refund_field::PSP)?,
            psp_refund_id,
            failure_reason,
            created_by: required(refund_field::CREATED_BY)?,
            created_at: required(refund_field::CREATED_AT)?,
            updated_at: required(refund_field::UPDATED_AT)?,
            id,
        })
    }
}

/// A transaction's refunds, oldest first.
#[derive(Debug, Serialize, ToSchema)]
pub struct RefundList {
    pub data: Vec<Refund>,
    /// Minor units refunded so far (succeeded refunds).
    pub refunded_amount: u64,
}

/// A request to refund a `succeeded` transaction. An empty body (or `{}`)
/// refunds all that is left.
#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateRefundRequest {
    /// Positive integer, minor units of the transaction's currency, at
    /// most what is left to refund; omitted: all that is left.
    #[serde(default)]
    #[schema(value_type = Option<u64>, minimum = 1, example = 500)]
    pub amount: Option<serde_json::Value>,
}

pub fn routes() -> axum::Router<AppState> {
    axum::Router::new().route(
        "/transactions/{id}/refunds",
        get(list_refunds).post(create_refund),
    )
}

fn not_found() -> ApiError {
    ApiError::not_found(ErrorCode::NotFound, "no such transaction")
}

fn not_refundable(status: &str) -> ApiError {
    ApiError::new(
        StatusCode::CONFLICT,
        ErrorType::InvalidRequest,
        ErrorCode::TransactionNotRefundable,
        format!("only a succeeded transaction can be refunded; this one is {status}"),
    )
}

fn exceeds(left: u64) -> ApiError {
    ApiError::invalid_field(
        ErrorCode::RefundExceedsAmount,
        format!("the transaction has {left} minor units left to refund"),
        "amount",
    )
}

fn too_many() -> ApiError {
    ApiError::new(
        StatusCode::UNPROCESSABLE_ENTITY,
        ErrorType::InvalidRequest,
        ErrorCode::TooManyRefunds,
        format!("a transaction may have at most {MAX_REFUNDS} refunds"),
    )
}

/// The record of transaction `id` if `caller` may see it: same merchant,
/// and for a user token a customer linked to the user (else 404, as
/// `GET /transactions/{id}`).
async fn visible_record<C: ConnectionLike + Send>(
    conn: &mut C,
    caller: &Caller,
    id: &TransactionId,
) -> Result<HashMap<String, String>, ApiError> {
    let hash = match caller.user() {
        None => store::fetch(conn, id).await?,
        Some(user) => {
            let (hash, linked) = store::fetch_if_linked(conn, id, &caller.merchant, user).await?;
            if !linked {
                return Err(not_found());
            }
            hash
        }
    };
    if hash.is_empty() || hash.get(field::MERCHANT_ID) != Some(&caller.merchant) {
        return Err(not_found());
    }
    Ok(hash)
}

/// The refunds of transaction `id`, oldest first: one ZRANGE and one
/// pipelined HGETALL per refund (at most [`MAX_REFUNDS`]).
pub async fn refunds_of<C: ConnectionLike + Send>(
    conn: &mut C,
    id: &TransactionId,
) -> Result<Vec<Refund>, ApiError> {
    let ids: Vec<String> = redis::cmd("ZRANGE")
        .arg(keyspace::transaction_refunds(id))
        .arg(0)
        .arg(-1)
        .query_async(conn)
        .await?;
    if ids.is_empty() {
        return Ok(Vec::new());
    }
    let mut pipe = redis::pipe();
    for refund in &ids {
        let refund = RefundId::parse(refund)
            .map_err(|_| ApiError::internal(format!("bad refund id {refund:?} in index")))?;
        pipe.cmd("HGETALL").arg(keyspace::refund(&refund));
    }
    let hashes: Vec<HashMap<String, String>> = pipe.query_async(conn).await?;
    hashes
        .into_iter()
        .filter(|hash| !hash.is_empty())
        .map(Refund::from_hash)
        .collect()
}

fn parse_id(id: Result<Path<String>, PathRejection>) -> Result<TransactionId, ApiError> {
    let Ok(Path(id)) = id else {
        return Err(not_found());
    };
    TransactionId::parse(&id).map_err(|_| not_found())
}

/// The refunds of one transaction, oldest first, with the amount refunded
/// so far. The same 404 as `GET /transactions/{id}` for a transaction the
/// caller cannot see.
#[utoipa::path(
    get,
    path = "/transactions/{id}/refunds",
    tag = "refunds",
    params(("id" = String, Path, description = "Transaction id (`tx_…`)")),
    security(("bearer" = [])),
    responses(
        (status = 200, description = "The refunds", body = RefundList),
        (status = 401, description = "Missing, invalid or expired token, or an unknown or revoked API key", body = ErrorBody),
        (status = 404, description = "`not_found`: unknown id, another merchant's, or (user token) a customer not linked to the user", body = ErrorBody),
        (status = 503, description = "`storage_unavailable`: Redis is unreachable", body = ErrorBody),
    )
)]
pub async fn list_refunds(
    State(state): State<AppState>,
    caller: Caller,
    id: Result<Path<String>, PathRejection>,
) -> Result<Json<RefundList>, ApiError> {
    let id = parse_id(id)?;
    let mut conn = state.redis.conn();
    let hash = visible_record(&mut conn, &caller, &id).await?;
    let refunded_amount = hash
        .get(field::REFUNDED_AMOUNT)
        .and_then(|amount| amount.parse().ok())
        .unwrap_or(0);
    Ok(Json(RefundList {
        data: refunds_of(&mut conn, &id).await?,
        refunded_amount,
    }))
}

/// Refunds a `succeeded` transaction, in full or in part. The refund is
/// `pending` until the PSP that charged has made it (`succeeded`) or
/// refused it (`failed`, and its amount can be refunded again); poll
/// `GET /transactions/{id}/refunds`.
#[utoipa::path(
    post,
    path = "/transactions/{id}/refunds",
    tag = "refunds",
    request_body(content = CreateRefundRequest, description = "May be empty: a refund of all that is left"),
    params(
        ("id" = String, Path, description = "Transaction id (`tx_…`)"),
        ("Idempotency-Key" = Option<String>, Header,
         description = "1–255 printable ASCII characters. Same key and body within 24 h: the first response again, with `Idempotent-Replayed: true`; exactly one refund is ever made under a key."),
    ),
    security(("bearer" = [])),
    responses(
        (status = 202, description = "Accepted and queued (or a replay of the first response)", body = Refund,
         headers(
            ("Location" = String, description = "`/transactions/{id}/refunds`"),
            ("Idempotent-Replayed" = String, description = "`true` on a replayed response"),
         )),
        (status = 400, description = "`malformed_body` (not JSON) or `invalid_idempotency_key` (malformed, or more than one `Idempotency-Key` header)", body = ErrorBody),
        (status = 401, description = "`missing_token`, `token_invalid`, `token_expired` or `api_key_invalid` (unknown or revoked key)", body = ErrorBody),
        (status = 404, description = "`not_found`: unknown id, another merchant's, or (user token) a customer not linked to the user", body = ErrorBody),
        (status = 409, description = "`transaction_not_refundable`: the transaction is not `succeeded`; or `request_in_progress`: the first request with this key is still being handled", body = ErrorBody),
        (status = 413, description = "`body_too_large`", body = ErrorBody),
        (status = 415, description = "`unsupported_media_type`: a body that is not application/json", body = ErrorBody),
        (status = 422, description = "`refund_exceeds_amount`: more than is left to refund (refunds pending or succeeded count); `too_many_refunds`; `invalid_amount`, `unknown_field`, `invalid_field`; or `idempotency_key_reused` (same key, different body or transaction)", body = ErrorBody),
        (status = 503, description = "`storage_unavailable`: Redis is unreachable; nothing was written, retry", body = ErrorBody),
    )
)]
pub async fn create_refund(
    State(state): State<AppState>,
    caller: Caller,
    request_id: RequestId,
    id: Result<Path<String>, PathRejection>,
    request: Request,
) -> Result<Response, ApiError> {
    let id = parse_id(id)?;
    let idempotency_key = IdempotencyKey::from_headers(request.headers()).map_err(|error| {
        ApiError::bad_request(error.code, error.message).with_param("Idempotency-Key")
    })?;
    let body = read_body(request, &state).await?;
    let amount = body
        .amount
        .as_ref()
        .map(|amount| Amount::parse(amount).map_err(|error| error.at("amount")))
        .transpose()?;
    let mut conn = state.redis.conn();
    let mut record = visible_record(&mut conn, &caller, &id).await?;

    let claim = match &idempotency_key {
        None => None,
        Some(key) => {
            let canonical = format!(
                "refund\0{id}\0{}",
                amount.map_or("rest".to_owned(), |a| a.minor_units().to_string())
            );
            let fingerprint = state.fingerprinter.fingerprint(canonical.as_bytes());
            let redis_key = idempotency::key(&caller.merchant, key);
            let marker = idempotency::new_marker(&fingerprint);
            let existing: Option<String> = idempotency::claim_command(&redis_key, &marker)
                .query_async(&mut conn)
                .await?;
            if let Some(existing) = existing {
                return idempotency::answer_from(&existing, &fingerprint)
                    .map(IntoResponse::into_response);
            }
            Some(Claim {
                redis_key,
                marker,
                fingerprint,
            })
        }
    };
    let created = create(
        &mut conn,
        &caller,
        request_id.as_str(),
        &id,
        amount,
        &mut record,
        claim.as_ref(),
    )
    .await;
    match created {
        Ok(accepted) => {
            tracing::info!(
                transaction_id = %id,
                refund_id = %accepted.refund.id,
                merchant_id = %caller.merchant,
                amount = accepted.refund.amount,
                "refund accepted"
            );
            Ok(idempotency::answer(
                StatusCode::ACCEPTED,
                &accepted.location,
                accepted.body,
            ))
        }
        Err(error) => {
            if let Some(claim) = &claim {
                idempotency::release(&mut conn, &claim.redis_key, &claim.marker).await;
            }
            Err(error)
        }
    }
}

/// Writes a refund exactly as `POST /transactions/{id}/refunds` does
/// without an `Idempotency-Key` (the same checks, record, index,
/// reservation and queue message in the same script), with no ownership
/// check (that is the route's). For tests that need refunds in Redis
/// without the HTTP round trip, so no other code restates the record.
pub async fn accept<C: ConnectionLike + Send>(
    conn: &mut C,
    caller: &Caller,
    request_id: &str,
    id: &TransactionId,
    amount: Option<u64>,
) -> Result<Refund, ApiError> {
    let amount = amount
        .map(|amount| Amount::parse(&amount.into()).map_err(|error| error.at("amount")))
        .transpose()?;
    let mut record = store::fetch(conn, id).await?;
    create(conn, caller, request_id, id, amount, &mut record, None)
        .await
        .map(|accepted| accepted.refund)
}

/// The body: JSON, or nothing at all (no `Content-Type`, no length), which
/// is a refund of all that is left.
async fn read_body(request: Request, state: &AppState) -> Result<CreateRefundRequest, ApiError> {
    let headers = request.headers();
    let empty = !headers.contains_key(header::CONTENT_TYPE)
        && !headers.contains_key(header::TRANSFER_ENCODING)
        && headers
            .get(header::CONTENT_LENGTH)
            .is_none_or(|length| length.as_bytes() == b"0");
    if empty {
        return Ok(CreateRefundRequest::default());
    }
    let Json(body) = Json::<CreateRefundRequest>::from_request(request, state).await?;
    Ok(body)
}

struct Claim {
    redis_key: String,
    marker: String,
    fingerprint: String,
}

struct Accepted {
    refund: Refund,
    body: String,
    location: String,
}

/// How many times a refund of "all that is left" reads the transaction
/// again after another refund changed what is left.
const REST_TRIES: usize = 5;

/// Checks and writes the refund (see [`CREATE_SCRIPT`]). `record` is the
/// transaction as read; it is read again when a concurrent refund of the
/// rest changed it.
async fn create<C: ConnectionLike + Send>(
    conn: &mut C,
    caller: &Caller,
    request_id: &str,
    id: &TransactionId,
    amount: Option<Amount>,
    record: &mut HashMap<String, String>,
    claim: Option<&Claim>,
) -> Result<Accepted, ApiError> {
    for _ in 0..REST_TRIES {
        let status = record.get(field::STATUS).map_or("unknown", String::as_str);
        if status != Status::Succeeded.as_str() {
            return Err(not_refundable(status));
        }
        let number = |name: &str| {
            record
                .get(name)
                .map_or(Ok(0), |value| value.parse::<u64>())
                .map_err(|_| ApiError::internal(format!("transaction {id}: bad {name}")))
        };
        let total = number(field::AMOUNT)?;
        let reserved = number(field::REFUND_RESERVED)?;
        let left = total.saturating_sub(reserved);
        // An amount given is checked against the reservation by the
        // script (what was read may be stale either way); the rest is
        // what was read, and the script checks it is still that.
        let wanted = amount.map_or(left, Amount::minor_units);
        if wanted == 0 || wanted > total {
            return Err(exceeds(left));
        }
        let Some(charge) = record.get(field::PSP_REFERENCE).cloned() else {
            // Charged before the PSP's charge id was kept: the PSP could
            // not be told which charge to refund.
            return Err(not_refundable("without a PSP charge id"));
        };
        // A record without `psp` was charged before there were several.
        let psp = record
            .get(field::PSP)
            .cloned()
            .unwrap_or_else(|| "psp-a".to_owned());
        let now = now_rfc3339();
        let refund = Refund {
            id: RefundId::generate().to_string(),
            transaction_id: id.to_string(),
            status: RefundStatus::Pending,
            amount: wanted,
            currency: record.get(field::CURRENCY).cloned().unwrap_or_default(),
            psp,
            psp_refund_id: None,
            failure_reason: None,
            created_by: caller.actor().to_owned(),
            created_at: now.clone(),
            updated_at: now,
        };
        let body = serde_json::to_string(&refund).expect("a refund serialises");
        let location = format!("/transactions/{id}/refunds");
        let message = RefundMessage {
            refund_id: RefundId::parse(&refund.id).expect("generated id"),
            transaction_id: id.clone(),
            merchant_id: caller.merchant.clone(),
            request_id: request_id.to_owned(),
            created_ms: now_ms(),
        };
        let completed = claim.map(|claim| {
            Entry::Completed {
                fingerprint: claim.fingerprint.clone(),
                status: StatusCode::ACCEPTED.as_u16(),
                location: location.clone(),
                body: body.clone(),
            }
            .encode()
        });
        let fields = [
            (refund_field::ID, refund.id.clone()),
            (refund_field::TRANSACTION_ID, refund.transaction_id.clone()),
            (refund_field::MERCHANT_ID, caller.merchant.clone()),
            (refund_field::STATUS, refund.status.as_str().to_owned()),
            (refund_field::AMOUNT, refund.amount.to_string()),
            (refund_field::CURRENCY, refund.currency.clone()),
            (refund_field::PSP, refund.psp.clone()),
            (refund_field::PSP_REFERENCE, charge.clone()),
            (refund_field::ATTEMPTS, "0".to_owned()),
            (refund_field::CREATED_BY, refund.created_by.clone()),
            (refund_field::REQUEST_ID, request_id.to_owned()),
            (refund_field::CREATED_AT, refund.created_at.clone()),
            (refund_field::UPDATED_AT, refund.updated_at.clone()),
        ];
        let refund_key = keyspace::refund(&message.refund_id);
        let mut invocation = CREATE.key(keyspace::record(id));
        invocation
            .key(&refund_key)
            .key(keyspace::transaction_refunds(id))
            .key(keyspace::REFUND_STREAM)
            .key(claim.map_or(refund_key.as_str(), |claim| claim.redis_key.as_str()))
            .arg(claim.map_or("", |claim| claim.marker.as_str()))
            .arg(completed.as_deref().unwrap_or(""))
            .arg(idempotency::RETENTION.as_millis() as u64)
            .arg(&caller.merchant)
            .arg(field::STATUS)
            .arg(field::MERCHANT_ID)
            .arg(field::AMOUNT)
            .arg(field::REFUND_RESERVED)
            .arg(field::PSP_REFERENCE)
            .arg(Status::Succeeded.as_str())
            .arg(wanted)
            .arg(if amount.is_none() {
                reserved.to_string()
            } else {
                String::new()
            })
            .arg(&charge)
            .arg(keyspace::PAYLOAD_FIELD)
            .arg(message.to_payload())
            .arg(&refund.id)
            .arg(MAX_REFUNDS);
        for (name, value) in &fields {
            invocation.arg(*name).arg(value);
        }
        let (outcome, detail): (String, String) = invocation.invoke_async(conn).await?;
        match outcome.as_str() {
            "ok" => {
                return Ok(Accepted {
                    refund,
                    body,
                    location,
                });
            }
            "changed" => {
                *record = store::fetch(conn, id).await?;
                continue;
            }
            "exceeds" => {
                let reserved: u64 = detail.parse().unwrap_or(total);
                return Err(exceeds(total.saturating_sub(reserved)));
            }
            "not_refundable" => return Err(not_refundable(&detail)),
            "too_many" => return Err(too_many()),
            "not_found" => return Err(not_found()),
            "claim_lost" => return Err(idempotency::in_progress()),
            other => return Err(ApiError::internal(format!("refund refused: {other}"))),
        }
    }
    Err(idempotency::in_progress())
}

/// Writes a refund in one atomic step, after every check that could
/// refuse: the idempotency claim is still ours, the transaction exists,
/// is this merchant's and `succeeded` (with the charge id read before),
/// has fewer than the most refunds, and its reservation plus this amount
/// does not exceed its amount (for a refund of the rest: the reservation
/// is still what was read). Then: the refund record, the transaction's
/// refund index, the raised reservation, the queue message, and the
/// completed idempotency entry.
///
/// KEYS: the transaction record, the refund record, the transaction's
/// refund index, the refund stream, the idempotency key (or the refund
/// record again). ARGV: claim marker ('' for none), completed entry, its
/// TTL in ms, merchant id, the transaction's status, merchant, amount,
/// reservation and charge-id field names, the succeeded status, the
/// refund's amount, the reservation read ('' unless a refund of the rest),
/// the charge id read, the stream's payload field, the payload, the refund
/// id, the most refunds, then the refund record's field/value pairs.
const CREATE_SCRIPT: &str = r#"
if ARGV[1] ~= '' and redis.call('GET', KEYS[5]) ~= ARGV[1] then return {'claim_lost', ''} end
local tx = redis.call('HMGET', KEYS[1], ARGV[5], ARGV[6], ARGV[7], ARGV[8], ARGV[9])
if not tx[1] or tx[2] ~= ARGV[4] then return {'not_found', ''} end
if tx[1] ~= ARGV[10] then return {'not_refundable', tx[1]} end
if tx[5] ~= ARGV[13] then return {'not_refundable', 'without a PSP charge id'} end
local reserved = tonumber(tx[4]) or 0
if ARGV[12] ~= '' and reserved ~= tonumber(ARGV[12]) then return {'changed', tostring(reserved)} end
if reserved + tonumber(ARGV[11]) > tonumber(tx[3]) then return {'exceeds', tostring(reserved)} end
if redis.call('ZCARD', KEYS[3]) >= tonumber(ARGV[17]) then return {'too_many', ''} end
if redis.call('EXISTS', KEYS[2]) == 1 then return {'id_taken', ''} end
local stream_type = redis.call('TYPE', KEYS[4])['ok']
if stream_type ~= 'none' and stream_type ~= 'stream' then return {'bad_stream', ''} end
redis.call('HSET', KEYS[2], unpack(ARGV, 18))
redis.call('ZADD', KEYS[3], 0, ARGV[16])
redis.call('HINCRBY', KEYS[1], ARGV[8], ARGV[11])
redis.call('XADD', KEYS[4], '*', ARGV[14], ARGV[15])
if ARGV[1] ~= '' then redis.call('SET', KEYS[5], ARGV[2], 'PX', ARGV[3]) end
return {'ok', ''}
"#;

static CREATE: std::sync::LazyLock<redis::Script> =
    std::sync::LazyLock::new(|| redis::Script::new(CREATE_SCRIPT));

fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}
