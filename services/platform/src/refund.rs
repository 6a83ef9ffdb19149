//! Refunds, as far as more than one service touches them.
//!
//! core-api creates a refund (record, the transaction's refund index, the
//! amount reserved on the transaction and the queue message, in one
//! script); psp-connector makes it at the PSP that charged and settles it
//! here, by compare-and-set: `pending` → `succeeded` | `failed`. A failed
//! refund gives its reservation back, so the amount can be refunded again;
//! the settlement writes the `refund.succeeded` / `refund.failed` event.
//! Names: [`crate::keyspace`] ([`keyspace::refund`],
//! [`keyspace::transaction_refunds`], [`keyspace::refund_field`],
//! [`keyspace::REFUND_STREAM`]).

use std::fmt;
use std::str::FromStr;

use redis::aio::ConnectionLike;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::event::{EventId, EventType};
use crate::keyspace::{self, event_field, field, refund_field};
use crate::transaction::TransactionId;

pub const ID_PREFIX: &str = "re_";

crate::id::prefixed_id!(
    /// `re_` followed by a UUIDv7 in 32 lower-case hex digits.
    RefundId,
    InvalidRefundId,
    ID_PREFIX,
    "not a refund id"
);

/// Where a refund is in its life. `succeeded` and `failed` never change.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
#[schema(as = RefundStatus)]
pub enum RefundStatus {
    Pending,
    Succeeded,
    Failed,
}

impl RefundStatus {
    pub const ALL: [RefundStatus; 3] = [
        RefundStatus::Pending,
        RefundStatus::Succeeded,
        RefundStatus::Failed,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            RefundStatus::Pending => "pending",
            RefundStatus::Succeeded => "succeeded",
            RefundStatus::Failed => "failed",
        }
    }
}

impl fmt::Display for RefundStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for RefundStatus {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        RefundStatus::ALL
            .into_iter()
            .find(|status| status.as_str() == s)
            .ok_or_else(|| format!("unknown refund status {s:?}"))
    }
}

/// `failure_reason` of a refund the connector failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RefundFailure {
    /// Every attempt within the retry budget met a retryable error.
    PspUnavailable,
    /// The PSP knows no such charge.
    ChargeNotFound,
    /// The PSP refused: its charge's refunds would exceed the charge.
    ExceedsCharge,
    /// The PSP refused the request as malformed.
    PspRejectedRequest,
    /// The transaction names a PSP this connector is not configured with.
    UnknownPsp,
}

impl RefundFailure {
    pub fn as_str(self) -> &'static str {
        match self {
            RefundFailure::PspUnavailable => "psp_unavailable",
            RefundFailure::ChargeNotFound => "charge_not_found",
            RefundFailure::ExceedsCharge => "refund_exceeds_charge",
            RefundFailure::PspRejectedRequest => "psp_rejected_request",
            RefundFailure::UnknownPsp => "unknown_psp",
        }
    }
}

/// What the connector needs to make one refund: everything else is in the
/// refund record.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RefundMessage {
    pub refund_id: RefundId,
    pub transaction_id: TransactionId,
    pub merchant_id: String,
    /// `X-Request-Id` of the HTTP request that created the refund.
    pub request_id: String,
    /// When the refund was created (Unix ms): its retry budget counts from
    /// here, whichever connector makes the next attempt.
    pub created_ms: u64,
}

impl RefundMessage {
    pub fn to_payload(&self) -> String {
        serde_json::to_string(self).expect("a refund message serialises")
    }

    pub fn from_payload(payload: &str) -> serde_json::Result<Self> {
        serde_json::from_str(payload)
    }
}

/// What [`settle`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SettleOutcome {
    Applied,
    /// Already final (settled by another worker): this status, unchanged.
    Refused {
        current: RefundStatus,
    },
    NotFound,
}

/// Moves a `pending` refund to `to` (`succeeded` or `failed`) with
/// `fields`, and in the same step the transaction's totals — a success adds
/// the amount to `refunded_amount`, a failure takes it off
/// `refund_reserved` — and the event of the change (`refund.succeeded` /
/// `refund.failed`: its record, with snapshots of the transaction and of
/// the refund, the merchant's event indexes and the events stream entry),
/// as the transition script does for transactions. Refused unless the
/// refund is still `pending`, so a duplicate delivery can never settle
/// twice, undo a settlement or write a second event.
///
/// KEYS: the refund record, the transaction record, the events stream, the
/// event record, the merchant's event index and its index of this event
/// type. ARGV: the refund's status, merchant, amount and updated-at field
/// names; merchant id; `to`; now; the transaction's reserved and refunded
/// field names; the succeeded and failed status names; event id; event
/// type; the event's id, merchant, type, created-at, transaction, object
/// and refund field names; the transaction id; then field/value pairs to
/// set.
const SETTLE_SCRIPT: &str = r#"
local refund = redis.call('HMGET', KEYS[1], ARGV[1], ARGV[2], ARGV[3])
local current = refund[1]
if not current or refund[2] ~= ARGV[5] then return {'not_found', ''} end
if current ~= 'pending' then return {'refused', current} end
redis.call('HSET', KEYS[1], ARGV[1], ARGV[6], ARGV[4], ARGV[7])
for i = 22, #ARGV, 2 do redis.call('HSET', KEYS[1], ARGV[i], ARGV[i + 1]) end
local amount = tonumber(refund[3]) or 0
if ARGV[6] == ARGV[10] then redis.call('HINCRBY', KEYS[2], ARGV[9], amount) end
if ARGV[6] == ARGV[11] then redis.call('HINCRBY', KEYS[2], ARGV[8], -amount) end
local function snapshot(key)
  local all = redis.call('HGETALL', key)
  local object = {}
  for i = 1, #all, 2 do object[all[i]] = all[i + 1] end
  return cjson.encode(object)
end
if redis.call('EXISTS', KEYS[2]) == 1 then
  redis.call('HSET', KEYS[4], ARGV[14], ARGV[12], ARGV[15], ARGV[5], ARGV[16], ARGV[13],
    ARGV[17], ARGV[7], ARGV[18], ARGV[21], ARGV[19], snapshot(KEYS[2]), ARGV[20], snapshot(KEYS[1]))
  redis.call('ZADD', KEYS[5], 0, ARGV[12])
  redis.call('ZADD', KEYS[6], 0, ARGV[12])
  redis.call('XADD', KEYS[3], '*', ARGV[14], ARGV[12], ARGV[15], ARGV[5], ARGV[16], ARGV[13])
end
return {'applied', ARGV[6]}
"#;

/// Settles refund `id` of transaction `transaction` of `merchant` (see
/// [`SETTLE_SCRIPT`]). `to` must be final.
pub async fn settle<C: ConnectionLike + Send>(
    conn: &mut C,
    id: &RefundId,
    transaction: &TransactionId,
    merchant: &str,
    to: RefundStatus,
    fields: &[(&'static str, String)],
) -> redis::RedisResult<SettleOutcome> {
    static SCRIPT: std::sync::LazyLock<redis::Script> =
        std::sync::LazyLock::new(|| redis::Script::new(SETTLE_SCRIPT));
    let event_type = EventType::of_refund(to).expect("a refund settles to a final status");
    let event_id = EventId::generate();
    let mut invocation = SCRIPT.key(keyspace::refund(id));
    invocation
        .key(keyspace::record(transaction))
        .key(keyspace::EVENT_STREAM)
        .key(keyspace::event(&event_id))
        .key(keyspace::merchant_events(merchant, None))
        .key(keyspace::merchant_events(merchant, Some(event_type)))
        .arg(refund_field::STATUS)
        .arg(refund_field::MERCHANT_ID)
        .arg(refund_field::AMOUNT)
        .arg(refund_field::UPDATED_AT)
        .arg(merchant)
        .arg(to.as_str())
        .arg(crate::transaction::now_rfc3339())
        .arg(field::REFUND_RESERVED)
        .arg(field::REFUNDED_AMOUNT)
        .arg(RefundStatus::Succeeded.as_str())
        .arg(RefundStatus::Failed.as_str())
        .arg(event_id.as_str())
        .arg(event_type.as_str())
        .arg(event_field::ID)
        .arg(event_field::MERCHANT_ID)
        .arg(event_field::TYPE)
        .arg(event_field::CREATED_AT)
        .arg(event_field::TRANSACTION_ID)
        .arg(event_field::OBJECT)
        .arg(event_field::REFUND)
        .arg(transaction.as_str());
    for (field, value) in fields {
        invocation.arg(*field).arg(value);
    }
    let (outcome, status): (String, String) = invocation.invoke_async(conn).await?;
    Ok(match outcome.as_str() {
        "applied" => SettleOutcome::Applied,
        "refused" => SettleOutcome::Refused {
            current: status.parse().map_err(|e: String| {
                redis::RedisError::from((redis::ErrorKind::Client, "bad refund status", e))
            })?,
        },
        _ => SettleOutcome::NotFound,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_checked() {
        let id = RefundId::generate();
        assert_eq!(RefundId::parse(id.as_str()).unwrap(), id);
        for bad in ["", "re_", "tx_0192", "re_../x", &id.as_str().to_uppercase()] {
            assert!(RefundId::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn messages_round_trip() {
        let message = RefundMessage {
            refund_id: RefundId::generate(),
            transaction_id: TransactionId::generate(),
            merchant_id: "acme".into(),
            request_id: "req-1".into(),
            created_ms: 1,
        };
        assert_eq!(
            RefundMessage::from_payload(&message.to_payload()).unwrap(),
            message
        );
    }
}
