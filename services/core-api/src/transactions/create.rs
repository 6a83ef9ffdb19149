//! `POST /transactions`: validate, (claim the idempotency key), write the
//! record + indexes + queue message + idempotency entry atomically, 202.

use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use platform::ApiError;
use platform::auth::Caller;
use platform::crypto::CardKey;
use platform::http::{ErrorBody, ErrorCode, Json, RequestId};
use platform::keyspace::Index;
use platform::queue::{CardDetails, ChargeMessage};
use platform::transaction::{Status, TransactionId, now_rfc3339};

use super::model::{PaymentMethod, Transaction};
use super::request::{CreateTransactionRequest, NewTransaction};
use super::store::{self, CreateOutcome, IdempotencyWrite, NewRecord, RequiredLink};
use crate::AppState;
use crate::domain::IdempotencyKey;
use crate::idempotency::{self, Entry, Fingerprinter, Replay};
use redis::aio::ConnectionLike;

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
    let link = match (caller.user(), &new.customer_id) {
        (Some(user), Some(customer)) => Some(RequiredLink {
            set_key: platform::keyspace::user_customers(&caller.merchant, user),
            customer: customer.as_str().to_owned(),
        }),
        (Some(_), None) => return Err(customer_not_permitted()),
        (None, _) => None,
    };
    let accepted = Accepted::new(&state.card_key, &caller, request_id.as_str(), &new);
    let claim = idempotency_key
        .as_ref()
        .map(|key| Claim::new(&state.fingerprinter, &caller, key, &new));
    let written = write(
        &mut state.redis.conn(),
        &accepted,
        claim.as_ref(),
        link.as_ref(),
    )
    .await?;
    if let Some(replay) = written {
        return Ok(replay.into_response());
    }
    tracing::info!(
        transaction_id = %accepted.transaction.id,
        merchant_id = %caller.merchant,
        amount = new.amount.minor_units(),
        currency = new.currency.code(),
        card = %new.card,
        "transaction accepted"
    );
    Ok(idempotency::answer(
        StatusCode::ACCEPTED,
        &accepted.location,
        accepted.body,
    ))
}

/// Writes a validated transaction exactly as `POST /transactions` does
/// without an `Idempotency-Key` for an API key: the same record, indexes
/// and queue message in the same script, with no user-customer check (that
/// is the route's). For tests and benchmarks that need transactions in
/// Redis without the HTTP round trip, so no other code restates the record.
pub async fn accept<C: ConnectionLike + Send>(
    conn: &mut C,
    card_key: &CardKey,
    caller: &Caller,
    request_id: &str,
    new: &NewTransaction,
) -> Result<Transaction, ApiError> {
    let accepted = Accepted::new(card_key, caller, request_id, new);
    write(conn, &accepted, None, None).await?;
    Ok(accepted.transaction)
}

/// Everything a new transaction writes, built before anything is written.
struct Accepted {
    transaction: Transaction,
    /// The response body, which a completed idempotency entry replays.
    body: String,
    location: String,
    message: ChargeMessage,
    request_id: String,
}

impl Accepted {
    fn new(card_key: &CardKey, caller: &Caller, request_id: &str, new: &NewTransaction) -> Self {
        let id = TransactionId::generate();
        let transaction = new_transaction(&id, caller, new);
        let body = serde_json::to_string(&transaction).expect("transaction serialises");
        let card = CardDetails {
            number: new.card.expose().to_owned(),
            expiry_month: new.expiry.month(),
            expiry_year: new.expiry.year(),
            cvc: new.cvc.expose().to_owned(),
        };
        let message = ChargeMessage {
            transaction_id: id.to_string(),
            request_id: request_id.to_owned(),
            merchant_id: caller.merchant.clone(),
            amount: new.amount.minor_units(),
            currency: new.currency.code().to_owned(),
            card: card_key.seal(&card, id.as_str(), &caller.merchant),
            first_attempt_ms: None,
        };
        Accepted {
            location: format!("/transactions/{id}"),
            transaction,
            body,
            message,
            request_id: request_id.to_owned(),
        }
    }

    /// The completed idempotency entry that replaces `claim`'s marker.
    fn completed_entry(&self, claim: &Claim) -> String {
        Entry::Completed {
            fingerprint: claim.fingerprint.clone(),
            status: StatusCode::ACCEPTED.as_u16(),
            location: self.location.clone(),
            body: self.body.clone(),
        }
        .encode()
    }
}

/// A request's hold on its `Idempotency-Key`: the Redis key, our marker and
/// the body's fingerprint.
struct Claim {
    redis_key: String,
    marker: String,
    fingerprint: String,
}

impl Claim {
    fn new(
        fingerprinter: &Fingerprinter,
        caller: &Caller,
        key: &IdempotencyKey,
        new: &NewTransaction,
    ) -> Self {
        let fingerprint = fingerprinter.fingerprint(&new.canonical_bytes());
        Claim {
            redis_key: idempotency::key(&caller.merchant, key),
            marker: idempotency::new_marker(&fingerprint),
            fingerprint,
        }
    }
}

/// The write, in one round trip: `[is linked,] [claim,] create`. `Some` is
/// the replay of an earlier request with the same key; an error leaves
/// nothing written and releases the claim. With `link` (a user's request)
/// the create script refuses unless the customer is linked, and a user not
/// linked gets 403 even when the key was used before (by whoever of the
/// merchant): a replay would show the transaction.
async fn write<C: ConnectionLike + Send>(
    conn: &mut C,
    accepted: &Accepted,
    claim: Option<&Claim>,
    link: Option<&RequiredLink>,
) -> Result<Option<Replay>, ApiError> {
    let transaction = &accepted.transaction;
    let id = TransactionId::parse(&transaction.id).expect("generated id");
    let record = NewRecord {
        id: &id,
        fields: transaction.to_hash_fields(&accepted.request_id),
        indexes: indexes(transaction),
        message: &accepted.message,
    };
    let completed = claim.map(|claim| IdempotencyWrite {
        redis_key: &claim.redis_key,
        marker: &claim.marker,
        completed: accepted.completed_entry(claim),
    });
    let create = store::create_command(&record, completed.as_ref(), link);
    let mut pipeline = redis::pipe();
    if let Some(link) = link {
        pipeline
            .cmd("SISMEMBER")
            .arg(&link.set_key)
            .arg(&link.customer);
    }
    if let Some(claim) = claim {
        pipeline.add_command(idempotency::claim_command(&claim.redis_key, &claim.marker));
    }
    pipeline.add_command(create);
    let replies =
        store::run_scripts::<_, Vec<redis::Value>>(conn, &pipeline, &[&*store::CREATE]).await;
    let decoded = replies.and_then(|mut replies| {
        let mut next = || replies.pop().unwrap_or(redis::Value::Nil);
        let outcome: String = redis::from_redis_value(next())?;
        let existing: Option<String> = match claim {
            Some(_) => redis::from_redis_value(next())?,
            None => None,
        };
        let linked: bool = match link {
            Some(_) => redis::from_redis_value(next())?,
            None => true,
        };
        Ok((linked, existing, CreateOutcome::from_reply(&outcome)))
    });
    let (linked, existing, outcome) = match decoded {
        Ok(decoded) => decoded,
        Err(error) => {
            release(conn, claim).await;
            return Err(error.into());
        }
    };
    match outcome {
        CreateOutcome::Created => Ok(None),
        CreateOutcome::CustomerNotPermitted => {
            release(conn, claim).await;
            Err(customer_not_permitted())
        }
        CreateOutcome::ClaimLost => match (claim, existing) {
            // The key was taken: the create wrote nothing; answer from
            // what is there, unless this user may not see it. (Our own
            // marker means a retried pipeline whose claim was lost since.)
            (Some(claim), Some(existing)) if existing != claim.marker => {
                if !linked {
                    return Err(customer_not_permitted());
                }
                idempotency::answer_from(&existing, &claim.fingerprint).map(Some)
            }
            _ => Err(idempotency::in_progress()),
        },
        CreateOutcome::Refused(reason) => {
            release(conn, claim).await;
            Err(ApiError::internal(format!("create refused: {reason}")))
        }
    }
}

fn customer_not_permitted() -> ApiError {
    ApiError::new(
        StatusCode::FORBIDDEN,
        platform::http::ErrorType::InvalidRequest,
        ErrorCode::CustomerNotPermitted,
        "this user may create transactions only for a customer_id linked to them",
    )
    .with_param("customer_id")
}

async fn release<C: ConnectionLike + Send>(conn: &mut C, claim: Option<&Claim>) {
    if let Some(claim) = claim {
        idempotency::release(conn, &claim.redis_key, &claim.marker).await;
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
        attempt_log: Vec::new(),
        psp: None,
        psp_reference: None,
        metadata: new.metadata.as_map().clone(),
        refunded_amount: 0,
        refunds: Some(Vec::new()),
        created_at: now.clone(),
        updated_at: now,
    }
}

/// The indexes a new transaction joins ([`platform::keyspace::Index`]).
fn indexes(tx: &Transaction) -> Vec<String> {
    let merchant = tx.merchant_id.as_str();
    [
        Some(Index::All),
        Some(Index::Status(tx.status)),
        Some(Index::CreatedBy(&tx.created_by)),
        tx.customer_id.as_deref().map(Index::Customer),
        tx.reference.as_deref().map(Index::Reference),
    ]
    .into_iter()
    .flatten()
    .map(|index| index.key(merchant))
    .collect()
}
