//! The stored transaction, as far as more than one service touches it.
//!
//! core-api creates the record and its indexes; psp-connector moves its
//! status. Both go through this module: the key layout, the status machine
//! and the compare-and-set script that is the only way a status changes.
//!
//! Layout (all in one Redis):
//! - `tx:{id}` — hash: `id`, `merchant_id`, `status`, `amount`, `currency`,
//!   `customer_id`, `reference`, `created_by`, `brand`, `last4`, `metadata`
//!   (JSON), `attempts`, `decline_code`, `failure_reason`, `request_id`,
//!   `created_at`, `updated_at`. Never the card number or CVC.
//! - Per-merchant indexes, sorted sets whose members are ids, all with score
//!   0 so they sort by id — and ids are UUIDv7, so by creation time:
//!   [`keys::merchant_index`], and one per customer, reference, creating
//!   user and status ([`keys::filtered_index`]).

use std::fmt;
use std::str::FromStr;

use redis::aio::ConnectionLike;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

/// `tx_` followed by a UUIDv7 in 32 lower-case hex digits.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct TransactionId(String);

pub const ID_PREFIX: &str = "tx_";

impl TransactionId {
    /// A new, time-ordered id.
    pub fn generate() -> Self {
        Self(format!("{ID_PREFIX}{}", uuid::Uuid::now_v7().simple()))
    }

    /// Accepts exactly what [`generate`](Self::generate) produces; anything
    /// else (other prefixes, path segments, upper case) is not an id.
    pub fn parse(text: &str) -> Result<Self, InvalidTransactionId> {
        let hex = text.strip_prefix(ID_PREFIX).ok_or(InvalidTransactionId)?;
        if hex.len() != 32
            || !hex
                .bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
        {
            return Err(InvalidTransactionId);
        }
        let uuid = uuid::Uuid::parse_str(hex).map_err(|_| InvalidTransactionId)?;
        if uuid.get_version_num() != 7 {
            return Err(InvalidTransactionId);
        }
        Ok(Self(text.to_owned()))
    }

    /// The creation time in Unix milliseconds (from the UUIDv7).
    pub fn unix_millis(&self) -> u64 {
        let uuid = uuid::Uuid::parse_str(&self.0[ID_PREFIX.len()..]).expect("validated id");
        let (secs, nanos) = uuid.get_timestamp().expect("v7 has a timestamp").to_unix();
        secs * 1000 + u64::from(nanos) / 1_000_000
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// The smallest id string created at or after `unix_millis`, for range
/// queries over the indexes (`from=`/`to=` filters).
pub fn id_bound(unix_millis: u64) -> String {
    format!("{ID_PREFIX}{:012x}", unix_millis & 0xffff_ffff_ffff)
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("not a transaction id")]
pub struct InvalidTransactionId;

impl TryFrom<String> for TransactionId {
    type Error = InvalidTransactionId;
    fn try_from(value: String) -> Result<Self, Self::Error> {
        Self::parse(&value)
    }
}

impl From<TransactionId> for String {
    fn from(id: TransactionId) -> Self {
        id.0
    }
}

impl fmt::Display for TransactionId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// Where a transaction is in its life. Final statuses never change.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Status {
    Pending,
    Processing,
    Succeeded,
    Declined,
    Failed,
}

impl Status {
    pub const ALL: [Status; 5] = [
        Status::Pending,
        Status::Processing,
        Status::Succeeded,
        Status::Declined,
        Status::Failed,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Status::Pending => "pending",
            Status::Processing => "processing",
            Status::Succeeded => "succeeded",
            Status::Declined => "declined",
            Status::Failed => "failed",
        }
    }

    pub fn is_final(self) -> bool {
        matches!(self, Status::Succeeded | Status::Declined | Status::Failed)
    }
}

impl fmt::Display for Status {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Status {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Status::ALL
            .into_iter()
            .find(|status| status.as_str() == s)
            .ok_or_else(|| format!("unknown status {s:?}"))
    }
}

/// Redis key names. Nothing else builds a key by hand.
pub mod keys {
    use super::{Status, TransactionId};

    /// The record hash.
    pub fn record(id: &TransactionId) -> String {
        format!("tx:{id}")
    }

    /// Every transaction of a merchant.
    pub fn merchant_index(merchant: &str) -> String {
        format!("merchant:{merchant}:tx")
    }

    /// A filtered index of a merchant: `field` is one of `customer`,
    /// `reference`, `created_by`, `status`.
    pub fn filtered_index(merchant: &str, field: &str, value: &str) -> String {
        format!("merchant:{merchant}:{field}:{value}:tx")
    }

    pub fn status_index(merchant: &str, status: Status) -> String {
        filtered_index(merchant, "status", status.as_str())
    }
}

/// A requested status change, applied only if the current status is one of
/// `from` (compare-and-set).
#[derive(Debug, Clone)]
pub struct Transition {
    pub from: Vec<Status>,
    pub to: Status,
    /// Charge attempts to add to `attempts`.
    pub add_attempts: u32,
    /// Other fields to set with the change (`decline_code`, `failure_reason`).
    pub fields: Vec<(&'static str, String)>,
}

/// What a [`Transition`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TransitionOutcome {
    Applied,
    /// The status was not one of `from`; it is this one (nothing changed).
    Refused {
        current: Status,
    },
    NotFound,
}

/// Moves the record's status and its status index in one step. Final
/// statuses are never in `from` of any caller's transition, and the script
/// refuses to leave one regardless, so a stale or duplicate worker cannot
/// overwrite a final status or move one backwards.
const TRANSITION_SCRIPT: &str = r#"
local current = redis.call('HGET', KEYS[1], 'status')
if not current then return {'not_found', ''} end
if current == 'succeeded' or current == 'declined' or current == 'failed' then
  return {'refused', current}
end
local allowed = false
for s in string.gmatch(ARGV[1], '[^,]+') do
  if s == current then allowed = true end
end
if not allowed then return {'refused', current} end
local fields = redis.call('HMGET', KEYS[1], 'merchant_id', 'id')
local prefix = 'merchant:' .. fields[1] .. ':status:'
if current ~= ARGV[2] then
  redis.call('ZREM', prefix .. current .. ':tx', fields[2])
  redis.call('ZADD', prefix .. ARGV[2] .. ':tx', 0, fields[2])
end
redis.call('HSET', KEYS[1], 'status', ARGV[2], 'updated_at', ARGV[3])
if ARGV[4] ~= '0' then redis.call('HINCRBY', KEYS[1], 'attempts', ARGV[4]) end
for i = 5, #ARGV, 2 do redis.call('HSET', KEYS[1], ARGV[i], ARGV[i + 1]) end
return {'applied', ARGV[2]}
"#;

/// Applies `transition` to transaction `id`.
pub async fn transition<C: ConnectionLike + Send>(
    conn: &mut C,
    id: &TransactionId,
    transition: &Transition,
) -> redis::RedisResult<TransitionOutcome> {
    static SCRIPT: std::sync::LazyLock<redis::Script> =
        std::sync::LazyLock::new(|| redis::Script::new(TRANSITION_SCRIPT));
    let from = transition
        .from
        .iter()
        .map(|s| s.as_str())
        .collect::<Vec<_>>()
        .join(",");
    let mut invocation = SCRIPT.key(keys::record(id));
    invocation
        .arg(from)
        .arg(transition.to.as_str())
        .arg(now_rfc3339())
        .arg(transition.add_attempts);
    for (field, value) in &transition.fields {
        invocation.arg(*field).arg(value);
    }
    let (outcome, status): (String, String) = invocation.invoke_async(conn).await?;
    Ok(match outcome.as_str() {
        "applied" => TransitionOutcome::Applied,
        "refused" => TransitionOutcome::Refused {
            current: status.parse().map_err(|e: String| {
                redis::RedisError::from((redis::ErrorKind::Client, "bad status in record", e))
            })?,
        },
        _ => TransitionOutcome::NotFound,
    })
}

/// Now, as RFC 3339 UTC with milliseconds (`2026-11-22T10:00:00.123Z`).
pub fn now_rfc3339() -> String {
    let now = time::OffsetDateTime::now_utc();
    let now = now
        .replace_nanosecond(now.millisecond() as u32 * 1_000_000)
        .expect("valid nanos");
    now.format(&time::format_description::well_known::Rfc3339)
        .expect("formattable time")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_round_trip_and_sort_by_time() {
        let a = TransactionId::generate();
        std::thread::sleep(std::time::Duration::from_millis(2));
        let b = TransactionId::generate();
        assert!(a < b);
        assert_eq!(TransactionId::parse(a.as_str()).unwrap(), a);
        assert!(id_bound(a.unix_millis()).as_str() <= a.as_str());
        assert!(id_bound(a.unix_millis() + 1).as_str() > a.as_str());
    }

    #[test]
    fn bad_ids_are_refused() {
        for text in [
            "",
            "tx_",
            "tx_../../etc/passwd",
            "TX_0192",
            "tx_0192f0c5e3b97c4a8e00000000000000x",
        ] {
            assert!(TransactionId::parse(text).is_err(), "{text}");
        }
        // A v4 uuid is well-formed hex but not an id we issue.
        let v4 = format!("tx_{}", uuid::Uuid::new_v4().simple());
        assert!(TransactionId::parse(&v4).is_err());
    }
}
