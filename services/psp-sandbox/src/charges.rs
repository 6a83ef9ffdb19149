//! `POST /charges`, `POST /charges/resolve` and `GET /charges/stats`: the
//! PSP's charge API.
//!
//! A charge needs an `Idempotency-Key`; the first decision made under a key
//! is the answer for every later request with it (same status, same body,
//! plus `Idempotent-Replayed: true`), and is never made twice. A 503 —
//! injected by `PSP_FAILURE_RATE` or asked for by the `…0119` test card —
//! decides nothing, so a retry with the same key can still succeed.
//! Approved charges answer 200, declined ones 402; both carry the charge
//! object with its `status` and, when declined, its `decline_code`.
//!
//! `POST /charges/resolve` asks what was decided under an `Idempotency-Key`
//! — what a caller does after a timeout. It takes the key's lock, so it is
//! ordered with any charge under the key: decided → 200 with the decision;
//! nothing decided → 404 `charge_not_found`, and the key is abandoned, so
//! a charge request still on its way under it is refused (409
//! `idempotency_key_abandoned`). Either way the caller knows for certain
//! whether it was charged. Lookups skip the injected latency and failures:
//! they stand for a PSP's cheap read path.

use std::collections::BTreeMap;
use std::hash::{Hash, Hasher};
use std::sync::Arc;

use axum::extract::State;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Router, http::HeaderMap};
use http::{HeaderName, HeaderValue, StatusCode};
use platform::http::{ApiError, ErrorCode, Json};
use serde::{Deserialize, Serialize};

use crate::cards::{self, Decision};
use crate::faults::{self, Faults};
use crate::ledger::{KeyState, Ledger, Stats, StoredAnswer};
use platform::psp::PspName;

pub static IDEMPOTENCY_KEY: HeaderName = HeaderName::from_static("idempotency-key");
pub static IDEMPOTENT_REPLAYED: HeaderName = HeaderName::from_static("idempotent-replayed");
const MAX_KEY_LEN: usize = 255;

/// Shared state of the charge routes.
#[derive(Debug)]
pub struct Charges {
    /// Which PSP this sandbox plays.
    pub name: PspName,
    pub ledger: Ledger,
    pub faults: Arc<Faults>,
    /// Where approved charges are registered, so they can be refunded.
    pub refunds: Arc<crate::refunds::Refunds>,
}

pub fn routes(state: Arc<Charges>) -> Router {
    Router::new()
        .route("/charges", post(create_charge))
        .route("/charges/resolve", post(resolve))
        .route("/charges/stats", get(stats))
        .with_state(state)
}

#[derive(Debug, Deserialize, Serialize)]
struct ChargeRequest {
    /// Minor units.
    amount: u64,
    currency: String,
    card: CardInput,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    reference: Option<String>,
    #[serde(default)]
    metadata: BTreeMap<String, String>,
}

#[derive(Deserialize, Serialize)]
struct CardInput {
    number: String,
    expiry_month: u8,
    expiry_year: u16,
    cvc: String,
}

impl std::fmt::Debug for CardInput {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("CardInput(..)")
    }
}

impl ChargeRequest {
    fn validate(&self) -> Result<(), ApiError> {
        if self.amount == 0 {
            return Err(ApiError::invalid_field(
                ErrorCode::InvalidAmount,
                "amount must be a positive integer in minor units",
                "amount",
            ));
        }
        if self.currency.len() != 3 || !self.currency.bytes().all(|b| b.is_ascii_uppercase()) {
            return Err(ApiError::invalid_field(
                ErrorCode::InvalidCurrency,
                "currency must be a three-letter ISO 4217 code such as EUR",
                "currency",
            ));
        }
        if !cards::is_valid_number(&self.card.number) {
            return Err(ApiError::invalid_field(
                ErrorCode::InvalidCardNumber,
                "the card number is not a valid card number",
                "card.number",
            ));
        }
        if !(1..=12).contains(&self.card.expiry_month) {
            return Err(ApiError::invalid_field(
                ErrorCode::InvalidExpiryMonth,
                "expiry_month must be 1 to 12",
                "card.expiry_month",
            ));
        }
        if !(3..=4).contains(&self.card.cvc.len())
            || !self.card.cvc.bytes().all(|b| b.is_ascii_digit())
        {
            return Err(ApiError::invalid_field(
                ErrorCode::InvalidCvc,
                "cvc must be 3 or 4 digits",
                "card.cvc",
            ));
        }
        Ok(())
    }

    /// Same body → same fingerprint; used to refuse a key reused for a
    /// different charge. Only the hash is kept, never the card.
    fn fingerprint(&self) -> u64 {
        let canonical = serde_json::to_string(self).expect("a charge request serialises");
        let mut hasher = std::collections::hash_map::DefaultHasher::new();
        canonical.hash(&mut hasher);
        hasher.finish()
    }

    fn is_expired(&self) -> bool {
        let now = time::OffsetDateTime::now_utc();
        let now = (now.year(), u8::from(now.month()));
        (i32::from(self.card.expiry_year), self.card.expiry_month) < now
    }
}

pub(crate) fn idempotency_key(headers: &HeaderMap) -> Result<String, ApiError> {
    let mut values = headers.get_all(&IDEMPOTENCY_KEY).iter();
    let Some(value) = values.next() else {
        return Err(ApiError::bad_request(
            ErrorCode::IdempotencyKeyMissing,
            "an Idempotency-Key header is required for charges",
        ));
    };
    if values.next().is_some() {
        return Err(ApiError::bad_request(
            ErrorCode::IdempotencyKeyInvalid,
            "send one Idempotency-Key header, not several",
        ));
    }
    let key = value.to_str().unwrap_or("");
    if key.is_empty() || key.len() > MAX_KEY_LEN || !key.bytes().all(|b| b.is_ascii_graphic()) {
        return Err(ApiError::bad_request(
            ErrorCode::IdempotencyKeyInvalid,
            "Idempotency-Key must be 1 to 255 printable ASCII characters",
        ));
    }
    Ok(key.to_owned())
}

async fn create_charge(
    State(charges): State<Arc<Charges>>,
    headers: HeaderMap,
    body: Result<Json<ChargeRequest>, ApiError>,
) -> Result<Response, ApiError> {
    let key = idempotency_key(&headers)?;
    let Json(request) = body?;
    request.validate()?;
    let fingerprint = request.fingerprint();

    // Half the latency before the decision (the request's way in), half
    // after it (the answer's way out): a caller that gives up or dies in
    // the second half has been charged without knowing it, which is exactly
    // what the idempotency key is for.
    //
    // The way in and the decision run on a task of their own: a PSP goes on
    // with a charge whose caller hung up, so a caller's timeout never
    // cancels the decision (only a lookup's fence can stop it).
    let (before, after) = charges.faults.latency_halves();
    let decision = tokio::spawn(async move {
        faults::pause(before).await;
        decide(&charges, &key, &request, fingerprint).await
    });
    let answer = decision.await.map_err(ApiError::internal)?;
    faults::pause(after).await;
    answer
}

/// Makes or replays the decision for `key`, holding the key's lock.
async fn decide(
    charges: &Charges,
    key: &str,
    request: &ChargeRequest,
    fingerprint: u64,
) -> Result<Response, ApiError> {
    let slot = charges.ledger.entry(key);
    let answer = decide_locked(charges, &slot, key, request, fingerprint).await;
    drop(slot);
    charges.ledger.release(key);
    answer
}

async fn decide_locked(
    charges: &Charges,
    slot: &tokio::sync::Mutex<KeyState>,
    key: &str,
    request: &ChargeRequest,
    fingerprint: u64,
) -> Result<Response, ApiError> {
    let mut state = slot.lock().await;
    if let Some(answer) = state.answer(charges.ledger.ttl()) {
        if answer.fingerprint != fingerprint {
            return Err(ApiError::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                platform::http::ErrorType::Idempotency,
                ErrorCode::IdempotencyKeyReused,
                "this Idempotency-Key was used for a different charge",
            ));
        }
        charges.ledger.record_replay();
        tracing::debug!(idempotency_key = %key, "replaying stored answer");
        let mut response =
            (answer.status, axum::Json(charge_body(request, key, answer))).into_response();
        response.headers_mut().insert(
            IDEMPOTENT_REPLAYED.clone(),
            HeaderValue::from_static("true"),
        );
        return Ok(response);
    }

    if charges.ledger.is_abandoned(key) {
        charges.ledger.record_refused_abandoned();
        tracing::debug!(idempotency_key = %key, "refusing a charge under an abandoned key");
        return Err(abandoned());
    }
    let rate = charges.faults.failure_rate();
    let injected = rate > 0.0 && fastrand::f64() < rate;
    let decision = if injected {
        Decision::ProcessingError
    } else {
        cards::decide(&request.card.number, request.is_expired())
    };
    let (status, decline_code) = match decision {
        Decision::ProcessingError => {
            charges.ledger.record_unavailable();
            tracing::debug!(idempotency_key = %key, injected, "answering 503");
            return Err(ApiError::service_unavailable(
                ErrorCode::ProcessingError,
                "the charge could not be processed; retry with the same Idempotency-Key",
            ));
        }
        Decision::Approved => (StatusCode::OK, None),
        Decision::Declined(code) => (StatusCode::PAYMENT_REQUIRED, Some(code)),
    };
    let answer = StoredAnswer {
        fingerprint,
        status,
        decline_code,
        charge_id: uuid::Uuid::new_v4(),
        created_at: now_millis(),
        decided: std::time::Instant::now(),
    };
    let body = charge_body(request, key, &answer);
    if status == StatusCode::OK {
        let charge_id = format!("ch_{}", answer.charge_id.simple());
        charges
            .refunds
            .register(&charge_id, request.amount, &request.currency);
    }
    tracing::debug!(idempotency_key = %key, status = body["status"].as_str(), decline_code, "charge decided");
    charges.ledger.record_charge(key, &mut state, answer);
    Ok((status, axum::Json(body)).into_response())
}

fn abandoned() -> ApiError {
    ApiError::new(
        StatusCode::CONFLICT,
        platform::http::ErrorType::Idempotency,
        ErrorCode::IdempotencyKeyAbandoned,
        "this Idempotency-Key was abandoned by a lookup that found no charge; \
         nothing is ever charged under it",
    )
}

/// `POST /charges/resolve`: the decision made under the request's
/// `Idempotency-Key`, or a fence that makes sure none ever will be.
async fn resolve(
    State(charges): State<Arc<Charges>>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let key = idempotency_key(&headers)?;
    charges.ledger.record_resolve();
    let slot = charges.ledger.slot(&key);
    let state = slot.lock().await;
    let found = state.answer(charges.ledger.ttl()).map(|answer| {
        serde_json::json!({
            "id": charge_id(answer),
            "object": "charge",
            "status": status_of(answer),
            "decline_code": answer.decline_code,
            "idempotency_key": key,
            "created_at": rfc3339(answer.created_at),
        })
    });
    if found.is_none() {
        charges.ledger.abandon(&key);
    }
    drop(state);
    drop(slot);
    charges.ledger.release(&key);
    match found {
        Some(body) => {
            tracing::debug!(idempotency_key = %key, "resolved: decided");
            Ok(axum::Json(body).into_response())
        }
        None => {
            tracing::debug!(idempotency_key = %key, "resolved: nothing decided; key abandoned");
            Err(ApiError::not_found(
                ErrorCode::ChargeNotFound,
                "nothing was charged under this Idempotency-Key, and now nothing will be: \
                 the key is abandoned",
            ))
        }
    }
}

fn charge_id(answer: &StoredAnswer) -> String {
    format!("ch_{}", answer.charge_id.simple())
}

fn status_of(answer: &StoredAnswer) -> &'static str {
    if answer.status == StatusCode::OK {
        "succeeded"
    } else {
        "declined"
    }
}

fn rfc3339(at: time::OffsetDateTime) -> String {
    at.format(&time::format_description::well_known::Rfc3339)
        .expect("formattable time")
}

/// The charge object: the decision's own fields from `answer`, the rest
/// from the request (a replayed request has the same fingerprint, so the
/// same fields, and gets the same body).
fn charge_body(request: &ChargeRequest, key: &str, answer: &StoredAnswer) -> serde_json::Value {
    let number = &request.card.number;
    serde_json::json!({
        "id": charge_id(answer),
        "object": "charge",
        "status": status_of(answer),
        "decline_code": answer.decline_code,
        "amount": request.amount,
        "currency": request.currency,
        "card": {
            "brand": cards::brand(number),
            "last4": &number[number.len() - 4..],
            "expiry_month": request.card.expiry_month,
            "expiry_year": request.card.expiry_year,
        },
        "reference": request.reference,
        "metadata": request.metadata,
        "idempotency_key": key,
        "created_at": rfc3339(answer.created_at),
    })
}

/// Now in UTC, at millisecond precision (as every other timestamp).
fn now_millis() -> time::OffsetDateTime {
    let now = time::OffsetDateTime::now_utc();
    now.replace_nanosecond(now.millisecond() as u32 * 1_000_000)
        .expect("valid nanos")
}

/// `GET /charges/stats`: the ledger's counts under the sandbox's name.
#[derive(Serialize)]
struct NamedStats {
    psp: PspName,
    #[serde(flatten)]
    stats: Stats,
}

async fn stats(State(charges): State<Arc<Charges>>) -> axum::Json<NamedStats> {
    axum::Json(NamedStats {
        psp: charges.name.clone(),
        stats: charges.ledger.stats(),
    })
}
