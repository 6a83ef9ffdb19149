//! `POST /transactions`: validate, (claim the idempotency key), write the
//! record + indexes + queue message + idempotency entry atomically, 202.

use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use platform::ApiError;
use platform::auth::Caller;
use platform::http::{ErrorBody, Json, RequestId};
use platform::queue::{CardDetails, ChargeMessage};
use platform::transaction::{Status, TransactionId, keys, now_rfc3339};

use super::model::{PaymentMethod, Transaction};
use super::request::{CreateTransactionRequest, NewTransaction};
use super::store::{self, CreateOutcome, IdempotencyWrite, NewRecord};
use crate::AppState;
use crate::domain::IdempotencyKey;
use crate::idempotency::{self, Entry, Replay};

/// Accepts a transaction for charging. It is `pending` until a PSP
/// connector picks it up; poll `GET /transactions/{id}` for the outcome.
#[utoipa::path(
    post,
    path = "/transactions",
    tag = "transactions",
    request_body = CreateTransactionRequest,
    params(
        ("Idempotency-Key" = Option<String>, Header,
         description = "1–255 printable ASCII characters. Same key and body within 24 h: the first response again, with `Idempotent-Replayed: true`."),
    ),
    security(("bearer" = [])),
    responses(
        (status = 202, description = "Accepted and queued (or a replay of the first response)", body = Transaction,
         headers(
            ("Location" = String, description = "`/transactions/{id}`"),
            ("Idempotent-Replayed" = String, description = "`true` on a replayed response"),
         )),
        (status = 400, description = "`malformed_body` (not JSON) or `invalid_idempotency_key` (malformed, or more than one `Idempotency-Key` header)", body = ErrorBody),
        (status = 401, description = "`missing_token`, `token_invalid`, `token_expired` or `api_key_invalid` (unknown or revoked key)", body = ErrorBody),
        (status = 403, description = "`customer_not_permitted`: a user token, and `customer_id` missing or not linked to the user (an API key may use any customer)", body = ErrorBody),
        (status = 409, description = "`request_in_progress`: the first request with this key is still being handled", body = ErrorBody),
        (status = 413, description = "`body_too_large`", body = ErrorBody),
        (status = 415, description = "`unsupported_media_type`: not application/json", body = ErrorBody),
        (status = 422, description = "A field is invalid; `param` names it. Codes: `missing_field`, `unknown_field`, `invalid_field` (also: a field given twice), `invalid_amount`, `invalid_currency`, `invalid_customer_id`, `invalid_reference`, `invalid_payment_method_type`, `invalid_card_number`, `invalid_expiry`, `card_expired`, `invalid_cvc`, `invalid_metadata`, `card_number_not_allowed` (a card number in `customer_id`, `reference` or metadata); or `idempotency_key_reused` (same key, different body)", body = ErrorBody),
        (status = 503, description = "`storage_unavailable`: Redis is unreachable; nothing was written, retry", body = ErrorBody),
    )
)]
pub async fn create_transaction(
    State(state): State<AppState>,
    caller: Caller,
    request_id: RequestId,
    headers: HeaderMap,
    Json(request): Json<CreateTransactionRequest>,
) -> Result<Response, ApiError> {
    let idempotency_key = IdempotencyKey::from_headers(&headers).map_err(|error| {
        ApiError::bad_request(error.code, error.message).with_param("Idempotency-Key")
    })?;
    let new = request.validate()?;
    // A user acts only for the customers linked to them (an API key for
    // every customer of its merchant).
    let link_key = match caller.user() {
        Some(user) if new.customer_id.is_some() => Some(platform::access::keys::user_customers(
            &caller.merchant,
            user,
        )),
        Some(_) => return Err(customer_not_permitted()),
        None => None,
    };
    let mut conn = state.redis.conn();

    // With a key: the fingerprint of this body and a fresh claim marker.
    let claim = idempotency_key.as_ref().map(|key| {
        let fingerprint = state.fingerprinter.fingerprint(&new.canonical_bytes());
        let marker = idempotency::new_marker(&fingerprint);
        (idempotency::key(&caller.merchant, key), marker, fingerprint)
    });

    let id = TransactionId::generate();
    let transaction = new_transaction(&id, &caller, &new);
    let body = serde_json::to_string(&transaction).expect("transaction serialises");
    let location = format!("/transactions/{id}");
    let message = ChargeMessage {
        transaction_id: id.to_string(),
        request_id: request_id.as_str().to_owned(),
        merchant_id: caller.merchant.clone(),
        amount: new.amount.minor_units(),
        currency: new.currency.code().to_owned(),
        card: state.card_key.seal(
            &CardDetails {
                number: new.card.expose().to_owned(),
                expiry_month: new.expiry.month(),
                expiry_year: new.expiry.year(),
                cvc: new.cvc.expose().to_owned(),
            },
            id.as_str(),
            &caller.merchant,
        ),
        first_attempt_ms: None,
    };
    let record = NewRecord {
        id: &id,
        fields: transaction.to_hash_fields(request_id.as_str()),
        indexes: indexes(&transaction),
        message: &message,
    };
    let idempotency_write =
        claim
            .as_ref()
            .map(|(redis_key, marker, fingerprint)| IdempotencyWrite {
                redis_key,
                marker,
                completed: Entry::Completed {
                    fingerprint: fingerprint.clone(),
                    status: StatusCode::ACCEPTED.as_u16(),
                    location: location.clone(),
                    body: body.clone(),
                }
                .encode(),
            });
    let link = link_key.as_deref().map(|set_key| store::RequiredLink {
        set_key,
        customer: new.customer_id.as_ref().map_or("", |c| c.as_str()),
    });
    let create = store::create_command(&record, idempotency_write.as_ref(), link.as_ref());

    // One round trip: [is linked,] [claim,] create. A user not linked to
    // the customer gets 403 even when the key was used before (by whoever
    // of the merchant): a replay would show the transaction.
    let mut pipeline = redis::pipe();
    if let Some(link) = &link {
        pipeline
            .cmd("SISMEMBER")
            .arg(link.set_key)
            .arg(link.customer);
    }
    if let Some((redis_key, marker, _)) = &claim {
        pipeline.add_command(idempotency::claim_command(redis_key, marker));
    }
    pipeline.add_command(create);
    let result =
        store::run_scripts::<_, Vec<redis::Value>>(&mut conn, &pipeline, &[&*store::CREATE])
            .await
            .and_then(|mut replies| {
                let outcome: String =
                    redis::from_redis_value(replies.pop().unwrap_or(redis::Value::Nil))?;
                let existing: Option<String> = match &claim {
                    Some(_) => redis::from_redis_value(replies.pop().unwrap_or(redis::Value::Nil))?,
                    None => None,
                };
                let linked = match &link {
                    Some(_) => redis::from_redis_value(replies.pop().unwrap_or(redis::Value::Nil))?,
                    None => true,
                };
                Ok((linked, existing, CreateOutcome::from_reply(&outcome)))
            });
    let (linked, existing, outcome) = match result {
        Ok(replies) => replies,
        Err(error) => {
            release(&mut conn, claim.as_ref()).await;
            return Err(error.into());
        }
    };
    match outcome {
        CreateOutcome::Created => {}
        CreateOutcome::CustomerNotPermitted => {
            release(&mut conn, claim.as_ref()).await;
            return Err(customer_not_permitted());
        }
        CreateOutcome::ClaimLost => {
            // The key was taken: the create wrote nothing; answer from what
            // is there, unless this user may not see it. (Our own marker
            // means a retried pipeline, and then the claim was lost since.)
            if let (Some((_, marker, fingerprint)), Some(existing)) = (&claim, &existing)
                && existing != marker
            {
                if !linked {
                    return Err(customer_not_permitted());
                }
                let replay = idempotency::answer_from(existing, fingerprint)?;
                return Ok(replayed(replay));
            }
            return Err(idempotency::in_progress());
        }
        CreateOutcome::Refused(reason) => {
            release(&mut conn, claim.as_ref()).await;
            return Err(ApiError::internal(format!("create refused: {reason}")));
        }
    }
    tracing::info!(
        transaction_id = %id,
        merchant_id = %caller.merchant,
        amount = new.amount.minor_units(),
        currency = new.currency.code(),
        card = %new.card,
        "transaction accepted"
    );
    Ok(accepted(StatusCode::ACCEPTED, &location, body))
}

fn customer_not_permitted() -> ApiError {
    ApiError::new(
        StatusCode::FORBIDDEN,
        platform::http::ErrorType::InvalidRequest,
        "customer_not_permitted",
        "this user may create transactions only for a customer_id linked to them",
    )
    .with_param("customer_id")
}

async fn release(
    conn: &mut redis::aio::ConnectionManager,
    claim: Option<&(String, String, String)>,
) {
    if let Some((redis_key, marker, _)) = claim {
        idempotency::release(conn, redis_key, marker).await;
    }
}

fn new_transaction(id: &TransactionId, caller: &Caller, new: &NewTransaction) -> Transaction {
    let now = now_rfc3339();
    Transaction {
        id: id.to_string(),
        status: Status::Pending,
        amount: new.amount.minor_units(),
        currency: new.currency.code().to_owned(),
        customer_id: new.customer_id.as_ref().map(|c| c.as_str().to_owned()),
        reference: new.reference.as_ref().map(|r| r.as_str().to_owned()),
        merchant_id: caller.merchant.clone(),
        created_by: caller.actor().to_owned(),
        payment_method: PaymentMethod {
            kind: "card".to_owned(),
            brand: new.card.brand().as_str().to_owned(),
            last4: new.card.last4().to_owned(),
        },
        decline_code: None,
        failure_reason: None,
        attempts: 0,
        metadata: new.metadata.as_map().clone(),
        created_at: now.clone(),
        updated_at: now,
    }
}

/// The indexes a new transaction joins (see [`platform::transaction`]).
fn indexes(tx: &Transaction) -> Vec<String> {
    let merchant = tx.merchant_id.as_str();
    let mut indexes = vec![
        keys::merchant_index(merchant),
        keys::status_index(merchant, tx.status),
        keys::filtered_index(merchant, "created_by", &tx.created_by),
    ];
    if let Some(customer) = &tx.customer_id {
        indexes.push(keys::filtered_index(merchant, "customer", customer));
    }
    if let Some(reference) = &tx.reference {
        indexes.push(keys::filtered_index(merchant, "reference", reference));
    }
    indexes
}

fn accepted(status: StatusCode, location: &str, body: String) -> Response {
    let mut response = (
        status,
        [(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        )],
        body,
    )
        .into_response();
    if let Ok(location) = HeaderValue::from_str(location) {
        response.headers_mut().insert(header::LOCATION, location);
    }
    response
}

fn replayed(replay: Replay) -> Response {
    let status = StatusCode::from_u16(replay.status).unwrap_or(StatusCode::ACCEPTED);
    let mut response = accepted(status, &replay.location, replay.body);
    response.headers_mut().insert(
        idempotency::REPLAYED_HEADER,
        HeaderValue::from_static("true"),
    );
    response
}
