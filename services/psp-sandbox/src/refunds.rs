//! `POST /charges/{charge_id}/refunds` and `GET /refunds/stats`: the PSP's
//! refund API.
//!
//! The same promise as charges: a refund needs an `Idempotency-Key`, the
//! first decision under a key is the answer for every later request with
//! it (same status, same body, plus `Idempotent-Replayed: true`), a key
//! reused for another body is refused (422 `idempotency_key_reused`), and
//! a decision is never made twice. A 503 (`PSP_FAILURE_RATE`, `PUT /faults`)
//! decides
//! nothing. An unknown charge is a 404 `charge_not_found`; a refund that
//! would take the charge's refunds above the charged amount is a 422
//! `refund_exceeds_charge`. Neither refusal is stored under the key: it
//! decided nothing, and asking again gets the same refusal (a charge's
//! refunded total only grows) or, for a charge approved since, a refund.
//!
//! Approved charges are registered here by the charge route (id, amount,
//! currency). Everything is in memory, bounded like the charge ledger: at
//! most `PSP_LEDGER_MAX_KEYS` charges and as many refund answers are kept,
//! the oldest leaving first (a charge forgotten is a 404). Decisions are
//! made under one lock, with no await inside, so two requests can never
//! decide under one key or overdraw one charge together; the latency is
//! spent outside it.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::hash::{Hash, Hasher};
use std::sync::{Arc, Mutex};

use axum::Router;
use axum::extract::{Path, State, rejection::PathRejection};
use axum::http::HeaderMap;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use http::{HeaderValue, StatusCode};
use platform::http::{ApiError, ErrorCode, ErrorType, Json};
use serde::{Deserialize, Serialize};

use crate::charges::{IDEMPOTENT_REPLAYED, idempotency_key};
use crate::faults::{self, Faults};

/// A charge that can be refunded.
#[derive(Debug, Clone)]
struct Balance {
    amount: u64,
    currency: String,
    refunded: u64,
}

/// The decision made under a key.
#[derive(Debug, Clone)]
struct StoredRefund {
    fingerprint: u64,
    body: serde_json::Value,
}

#[derive(Debug, Default)]
struct Inner {
    charges: HashMap<String, Balance>,
    /// Charge ids, oldest first, for the bound.
    charge_order: VecDeque<String>,
    answers: HashMap<String, StoredRefund>,
    answer_order: VecDeque<String>,
    /// Refunds made per key (kept apart from the answers, so the count
    /// stays exact after an answer is evicted).
    per_key: HashMap<String, u32>,
    stats: RefundStats,
}

/// `GET /refunds/stats`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct RefundStats {
    /// Refunds made, over all keys.
    pub total_refunds: u64,
    /// Minor units refunded, over all charges.
    pub refunded_amount: u64,
    /// The most refunds made under any one key: never more than one.
    pub max_refunds_per_key: u64,
    /// Keys with a refund.
    pub keys: u64,
    /// Refund requests that passed validation.
    pub requests: u64,
    /// Requests answered from a stored answer.
    pub replays: u64,
    /// Requests answered 503 (injected failures).
    pub unavailable: u64,
    /// Requests refused because the charge would be over-refunded.
    pub refused_exceeding: u64,
    /// Charges whose refunds exceed the charged amount, counted over every
    /// charge kept: the proof figure, never above zero.
    pub over_refunded_charges: u64,
}

#[derive(Debug)]
pub struct Refunds {
    inner: Mutex<Inner>,
    max_kept: usize,
    /// The latency and failure rate, shared with the charge route.
    faults: Arc<Faults>,
}

impl Refunds {
    pub fn new(max_kept: usize, faults: Arc<Faults>) -> Self {
        Self {
            inner: Mutex::default(),
            max_kept: max_kept.max(1),
            faults,
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().expect("refund store lock poisoned")
    }

    /// Makes an approved charge refundable (the charge route calls this).
    pub fn register(&self, charge_id: &str, amount: u64, currency: &str) {
        let mut inner = self.lock();
        if inner.charges.contains_key(charge_id) {
            return;
        }
        inner.charges.insert(
            charge_id.to_owned(),
            Balance {
                amount,
                currency: currency.to_owned(),
                refunded: 0,
            },
        );
        inner.charge_order.push_back(charge_id.to_owned());
        while inner.charge_order.len() > self.max_kept {
            if let Some(oldest) = inner.charge_order.pop_front() {
                inner.charges.remove(&oldest);
            }
        }
    }

    pub fn stats(&self) -> RefundStats {
        let inner = self.lock();
        let mut stats = inner.stats;
        stats.keys = inner.per_key.len() as u64;
        stats.over_refunded_charges = inner
            .charges
            .values()
            .filter(|balance| balance.refunded > balance.amount)
            .count() as u64;
        stats
    }

    /// The whole decision for one request, under the lock.
    fn decide(&self, key: &str, charge_id: &str, request: &RefundRequest) -> Decided {
        let fingerprint = request.fingerprint(charge_id);
        let mut inner = self.lock();
        inner.stats.requests += 1;
        if let Some(stored) = inner.answers.get(key) {
            if stored.fingerprint != fingerprint {
                return Decided::KeyReused;
            }
            let body = stored.body.clone();
            inner.stats.replays += 1;
            return Decided::Replayed(body);
        }
        let rate = self.faults.failure_rate();
        if rate > 0.0 && fastrand::f64() < rate {
            inner.stats.unavailable += 1;
            return Decided::Unavailable;
        }
        let Some(balance) = inner.charges.get_mut(charge_id) else {
            return Decided::NoCharge;
        };
        let left = balance.amount - balance.refunded;
        if request.amount > left {
            inner.stats.refused_exceeding += 1;
            return Decided::Exceeds { left };
        }
        balance.refunded += request.amount;
        let currency = balance.currency.clone();
        let body = serde_json::json!({
            "id": format!("re_{}", uuid::Uuid::new_v4().simple()),
            "object": "refund",
            "status": "succeeded",
            "charge": charge_id,
            "amount": request.amount,
            "currency": currency,
            "metadata": request.metadata,
            "idempotency_key": key,
            "created_at": platform::transaction::now_rfc3339(),
        });
        inner.stats.total_refunds += 1;
        inner.stats.refunded_amount += request.amount;
        let count = inner.per_key.entry(key.to_owned()).or_insert(0);
        *count += 1;
        let count = u64::from(*count);
        inner.stats.max_refunds_per_key = inner.stats.max_refunds_per_key.max(count);
        inner.answers.insert(
            key.to_owned(),
            StoredRefund {
                fingerprint,
                body: body.clone(),
            },
        );
        inner.answer_order.push_back(key.to_owned());
        while inner.answer_order.len() > self.max_kept {
            if let Some(oldest) = inner.answer_order.pop_front() {
                inner.answers.remove(&oldest);
            }
        }
        Decided::Refunded(body)
    }
}

enum Decided {
    Refunded(serde_json::Value),
    Replayed(serde_json::Value),
    KeyReused,
    Unavailable,
    NoCharge,
    Exceeds { left: u64 },
}

pub fn routes(state: Arc<Refunds>) -> Router {
    Router::new()
        .route("/charges/{charge_id}/refunds", post(create_refund))
        .route("/refunds/stats", get(stats))
        .with_state(state)
}

#[derive(Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
struct RefundRequest {
    /// Minor units.
    amount: u64,
    #[serde(default)]
    metadata: BTreeMap<String, String>,
}

impl RefundRequest {
    fn fingerprint(&self, charge_id: &str) -> u64 {
        let canonical = serde_json::to_string(self).expect("a refund request serialises");
        let mut hasher = std::collections::hash_map::DefaultHasher::new();
        charge_id.hash(&mut hasher);
        canonical.hash(&mut hasher);
        hasher.finish()
    }
}

fn no_charge() -> ApiError {
    ApiError::not_found(ErrorCode::ChargeNotFound, "no such charge")
}

async fn create_refund(
    State(refunds): State<Arc<Refunds>>,
    charge_id: Result<Path<String>, PathRejection>,
    headers: HeaderMap,
    body: Result<Json<RefundRequest>, ApiError>,
) -> Result<Response, ApiError> {
    let Ok(Path(charge_id)) = charge_id else {
        return Err(no_charge());
    };
    let key = idempotency_key(&headers)?;
    let Json(request) = body?;
    if request.amount == 0 {
        return Err(ApiError::invalid_field(
            ErrorCode::InvalidAmount,
            "amount must be a positive integer in minor units",
            "amount",
        ));
    }
    // As for charges: half the latency before the decision, half after.
    let (before, after) = refunds.faults.latency_halves();
    faults::pause(before).await;
    let decided = refunds.decide(&key, &charge_id, &request);
    faults::pause(after).await;
    match decided {
        Decided::Refunded(body) => {
            tracing::debug!(idempotency_key = %key, charge_id, amount = request.amount, "refund made");
            Ok((StatusCode::OK, axum::Json(body)).into_response())
        }
        Decided::Replayed(body) => {
            let mut response = (StatusCode::OK, axum::Json(body)).into_response();
            response.headers_mut().insert(
                IDEMPOTENT_REPLAYED.clone(),
                HeaderValue::from_static("true"),
            );
            Ok(response)
        }
        Decided::KeyReused => Err(ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            ErrorType::Idempotency,
            ErrorCode::IdempotencyKeyReused,
            "this Idempotency-Key was used for a different refund",
        )),
        Decided::Unavailable => Err(ApiError::service_unavailable(
            ErrorCode::ProcessingError,
            "the refund could not be processed; retry with the same Idempotency-Key",
        )),
        Decided::NoCharge => Err(no_charge()),
        Decided::Exceeds { left } => Err(ApiError::invalid_field(
            ErrorCode::RefundExceedsCharge,
            format!("the charge has {left} minor units left to refund"),
            "amount",
        )),
    }
}

async fn stats(State(refunds): State<Arc<Refunds>>) -> axum::Json<RefundStats> {
    axum::Json(refunds.stats())
}
