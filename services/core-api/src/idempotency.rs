//! `Idempotency-Key` handling (docs/architecture.md "Keyspace"): per merchant, kept 24 hours.
//!
//! Two phases around the transaction write:
//! 1. *claim*: `SET … NX GET` atomically reads `idem:{merchant}:{key}` and,
//!    if it is free, sets an *in-progress* marker (a random owner token and the
//!    request fingerprint) with a short TTL ([`CLAIM_TTL`]). A request
//!    finding the marker answers 409 `request_in_progress` (same body) or
//!    422 `idempotency_key_reused` (other body).
//! 2. *create* (see [`crate::transactions::store`]): checks the marker is
//!    still ours and, in the same atomic step as the record, indexes and
//!    queue message, replaces it with the *completed* entry: fingerprint
//!    plus the exact response, kept [`RETENTION`]. Later requests with the
//!    key get that response again (same body) or 422 (other body).
//!
//! Both commands go to Redis in one pipeline, so the protocol costs one
//! round trip; when the claim finds an entry, the create script finds the
//! marker is not ours and writes nothing. The marker is visible between
//! the two commands, so a duplicate sent through another core-api instance
//! at that moment gets the 409; through the same instance (one multiplexed
//! connection, pipelines sent whole) it gets the replay.
//!
//! If phase 2 fails (Redis error) the marker is deleted, best effort and
//! only if still ours, so the client can retry at once; if even that fails,
//! the short TTL frees the key. The record is never written without the
//! completed entry, so a replay can never miss a transaction that exists.
//!
//! The fingerprint is HMAC-SHA256 over the canonical parsed request, which
//! includes the card number and CVC. A plain hash of a card number is
//! brute-forceable (few unknown digits), so the MAC key is derived from
//! `JWT_SECRET`: without the secret, what is stored in Redis reveals
//! nothing about the card.

use std::time::Duration;

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use hmac::{Hmac, Mac};
use platform::ApiError;
use platform::http::ErrorCode;
use platform::http::ErrorType;
use redis::aio::ConnectionLike;
use serde::{Deserialize, Serialize};
use sha2::Sha256;

use crate::domain::IdempotencyKey;

/// How long an in-progress marker lives: bounds how long a key stays
/// locked if this process dies between the two phases.
pub const CLAIM_TTL: Duration = Duration::from_secs(60);
/// How long a completed response is replayed.
pub const RETENTION: Duration = Duration::from_secs(24 * 60 * 60);

pub const REPLAYED_HEADER: &str = "idempotent-replayed";

/// The Redis key of a merchant's idempotency entry.
pub fn key(merchant: &str, key: &IdempotencyKey) -> String {
    platform::keyspace::idempotency(merchant, key.as_str())
}

/// The keyed MAC over canonical request bytes.
#[derive(Clone)]
pub struct Fingerprinter {
    key: Vec<u8>,
}

impl Fingerprinter {
    /// Derives a key for this one purpose from the JWT secret, so the MAC
    /// can never be confused with a token signature.
    pub fn new(secret: &[u8]) -> Self {
        let mut mac = Hmac::<Sha256>::new_from_slice(secret).expect("HMAC takes any key size");
        mac.update(b"core-api idempotency fingerprint v1");
        Self {
            key: mac.finalize().into_bytes().to_vec(),
        }
    }

    pub fn fingerprint(&self, canonical: &[u8]) -> String {
        let mut mac = Hmac::<Sha256>::new_from_slice(&self.key).expect("HMAC takes any key size");
        mac.update(canonical);
        mac.finalize()
            .into_bytes()
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect()
    }
}

/// What is stored under the idempotency key.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "state", rename_all = "snake_case")]
pub enum Entry {
    InProgress {
        /// Random per request: only the claimer may complete or release.
        owner: String,
        fingerprint: String,
    },
    Completed {
        fingerprint: String,
        status: u16,
        location: String,
        /// The response body, byte for byte.
        body: String,
    },
}

impl Entry {
    pub fn encode(&self) -> String {
        serde_json::to_string(self).expect("entry serialises")
    }

    fn fingerprint(&self) -> &str {
        match self {
            Entry::InProgress { fingerprint, .. } | Entry::Completed { fingerprint, .. } => {
                fingerprint
            }
        }
    }
}

/// The stored response of a completed request with the same body.
#[derive(Debug)]
pub struct Replay {
    pub status: u16,
    pub location: String,
    pub body: String,
}

/// A first answer of a create endpoint: JSON `body` with its `Location`.
/// What is stored for a replay is exactly what this sends.
pub fn answer(status: StatusCode, location: &str, body: String) -> Response {
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

/// The first answer again, marked `Idempotent-Replayed: true`.
impl IntoResponse for Replay {
    fn into_response(self) -> Response {
        let status = StatusCode::from_u16(self.status).unwrap_or(StatusCode::ACCEPTED);
        let mut response = answer(status, &self.location, self.body);
        response
            .headers_mut()
            .insert(REPLAYED_HEADER, HeaderValue::from_static("true"));
        response
    }
}

const RELEASE_SCRIPT: &str = r#"
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
"#;

/// A fresh in-progress marker for a request with `fingerprint`.
pub fn new_marker(fingerprint: &str) -> String {
    Entry::InProgress {
        owner: uuid::Uuid::new_v4().simple().to_string(),
        fingerprint: fingerprint.to_owned(),
    }
    .encode()
}

/// Phase 1 as one native command: `SET key marker NX PX ttl GET` (Redis
/// 7.0 or later) sets the marker only if the key is free and answers what
/// was there before: nil when the claim is ours, else the existing entry.
pub fn claim_command(redis_key: &str, marker: &str) -> redis::Cmd {
    let mut cmd = redis::cmd("SET");
    cmd.arg(redis_key)
        .arg(marker)
        .arg("NX")
        .arg("PX")
        .arg(CLAIM_TTL.as_millis() as u64)
        .arg("GET");
    cmd
}

/// What an existing entry means for a request with `fingerprint`: a
/// replay, or a 409/422.
pub fn answer_from(existing: &str, fingerprint: &str) -> Result<Replay, ApiError> {
    let entry: Entry = serde_json::from_str(existing)
        .map_err(|e| ApiError::internal(format!("undecodable idempotency entry: {e}")))?;
    if entry.fingerprint() != fingerprint {
        return Err(key_reused());
    }
    match entry {
        Entry::InProgress { .. } => Err(in_progress()),
        Entry::Completed {
            status,
            location,
            body,
            ..
        } => Ok(Replay {
            status,
            location,
            body,
        }),
    }
}

/// Undoes a claim after a failed phase 2, if the marker is still ours.
/// Best effort: errors are logged, the TTL is the fallback.
pub async fn release<C: ConnectionLike + Send>(conn: &mut C, redis_key: &str, marker: &str) {
    static SCRIPT: std::sync::LazyLock<redis::Script> =
        std::sync::LazyLock::new(|| redis::Script::new(RELEASE_SCRIPT));
    let result: redis::RedisResult<i64> =
        SCRIPT.key(redis_key).arg(marker).invoke_async(conn).await;
    if let Err(error) = result {
        tracing::warn!(%error, "could not release idempotency key; it frees itself after its TTL");
    }
}

pub fn in_progress() -> ApiError {
    ApiError::new(
        http::StatusCode::CONFLICT,
        ErrorType::Idempotency,
        ErrorCode::RequestInProgress,
        "a request with this Idempotency-Key is still being handled; retry shortly",
    )
}

pub fn key_reused() -> ApiError {
    ApiError::new(
        http::StatusCode::UNPROCESSABLE_ENTITY,
        ErrorType::Idempotency,
        ErrorCode::IdempotencyKeyReused,
        "this Idempotency-Key was used with a different request body",
    )
    .with_param("Idempotency-Key")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fingerprint_is_keyed_and_stable() {
        let a = Fingerprinter::new(b"0123456789abcdef0123456789abcdef");
        let b = Fingerprinter::new(b"another-secret-another-secret-xx");
        assert_eq!(a.fingerprint(b"x"), a.fingerprint(b"x"));
        assert_ne!(a.fingerprint(b"x"), a.fingerprint(b"y"));
        assert_ne!(a.fingerprint(b"x"), b.fingerprint(b"x"));
        assert_eq!(a.fingerprint(b"x").len(), 64);
    }
}
