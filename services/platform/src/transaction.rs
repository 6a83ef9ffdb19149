//! The stored transaction, as far as more than one service touches it.
//!
//! core-api creates the record and its indexes; psp-connector moves its
//! status. Both go through this module: the status machine and the
//! compare-and-set script that is the only way a status changes.
//!
//! The record hash and its indexes are named by [`crate::keyspace`]
//! ([`keyspace::record`], [`keyspace::Index`], [`keyspace::field`]).

use std::fmt;
use std::str::FromStr;

use redis::aio::ConnectionLike;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::event::{EventId, EventType};
use crate::keyspace::{self, Index, event_field, field};

pub const ID_PREFIX: &str = "tx_";

crate::id::prefixed_id!(
    /// `tx_` followed by a UUIDv7 in 32 lower-case hex digits.
    TransactionId,
    InvalidTransactionId,
    ID_PREFIX,
    "not a transaction id"
);

impl TransactionId {
    /// The creation time in Unix milliseconds (from the UUIDv7).
    pub fn unix_millis(&self) -> u64 {
        let uuid = uuid::Uuid::parse_str(&self.0[ID_PREFIX.len()..]).expect("validated id");
        let (secs, nanos) = uuid.get_timestamp().expect("v7 has a timestamp").to_unix();
        secs * 1000 + u64::from(nanos) / 1_000_000
    }
}

/// The smallest id string created at or after `unix_millis`, for range
/// queries over the indexes (`from=`/`to=` filters).
pub fn id_bound(unix_millis: u64) -> String {
    format!("{ID_PREFIX}{:012x}", unix_millis & 0xffff_ffff_ffff)
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

/// One call to a PSP, as the record's `attempt_log` keeps it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct Attempt {
    /// The PSP's name, e.g. `psp-a`.
    #[schema(example = "psp-a")]
    pub psp: String,
    pub outcome: AttemptOutcome,
    /// From sending the request to knowing the outcome.
    pub latency_ms: u64,
    /// When the call started, RFC 3339 UTC.
    pub at: String,
    /// What went wrong, for the outcomes other than approved/declined.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// What one PSP call came to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum AttemptOutcome {
    Approved,
    Declined,
    /// The PSP provably charged nothing (connection refused, 503, 429, or
    /// its idempotency key was abandoned): the payment may move on.
    Unavailable,
    /// Timeout or unreadable answer whose charge the PSP could not be
    /// asked about: the payment stays with this PSP and is retried there.
    Unknown,
    /// The PSP refused the request as malformed.
    Rejected,
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
    /// An attempt to append to the record's `attempt_log`, with the change.
    pub log: Option<Attempt>,
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

/// Moves the record's status and its status index in one step, and, when
/// the status changes, writes the event of the change in that same step:
/// the event record (with a snapshot of the transaction record as it now
/// is), the merchant's event indexes and the events stream entry the
/// webhook dispatcher reads. So an event exists exactly when its change
/// happened, never one without the other. Final statuses are never in
/// `from` of any caller's transition, and the script refuses to leave one
/// regardless, so a stale or duplicate worker cannot overwrite a final
/// status or move one backwards. A record of another merchant than the
/// caller's is not found: the indexes passed in are that merchant's.
///
/// Every name comes in (docs/architecture.md "Keyspace"). KEYS: the record,
/// the events stream, the event record, the merchant's event index and its
/// index of this event type, the status index of each status in `from` (in
/// ARGV's order), the status index of `to`, and the stream of the queue
/// entry to acknowledge, if any. ARGV: the status, merchant,
/// updated-at and attempts field names; merchant id; transaction id; `to`;
/// now; attempts to add; the final statuses, comma-separated; event id;
/// event type; the event's id, merchant, type, created-at, transaction and
/// object field names; n = the number of `from` statuses; the n statuses;
/// the attempt log's field name and an attempt (JSON) to append, or ''; the
/// consumer group and entry id of a queue entry to acknowledge and delete
/// whatever the outcome, or '' and '';
/// then field/value pairs to set.
const TRANSITION_SCRIPT: &str = r#"
local status_field, merchant_field = ARGV[1], ARGV[2]
local n = tonumber(ARGV[19])
local function answer(outcome, status)
  if ARGV[22 + n] ~= '' then
    redis.call('XACK', KEYS[7 + n], ARGV[22 + n], ARGV[23 + n])
    redis.call('XDEL', KEYS[7 + n], ARGV[23 + n])
  end
  return {outcome, status}
end
local record = redis.call('HMGET', KEYS[1], status_field, merchant_field, ARGV[20 + n])
local current = record[1]
if not current or record[2] ~= ARGV[5] then return answer('not_found', '') end
for s in string.gmatch(ARGV[10], '[^,]+') do
  if s == current then return answer('refused', current) end
end
local from_index = nil
for i = 1, n do
  if ARGV[19 + i] == current then from_index = KEYS[5 + i] end
end
if not from_index then return answer('refused', current) end
if current ~= ARGV[7] then
  redis.call('ZREM', from_index, ARGV[6])
  redis.call('ZADD', KEYS[6 + n], 0, ARGV[6])
end
-- Every field the change sets, in one HSET.
local sets = {status_field, ARGV[7], ARGV[3], ARGV[8]}
if ARGV[21 + n] ~= '' then
  -- Appended as text: the log is a JSON array the script never re-encodes.
  local log = record[3]
  if log then log = string.sub(log, 1, -2) .. ',' .. ARGV[21 + n] .. ']'
  else log = '[' .. ARGV[21 + n] .. ']' end
  sets[#sets + 1] = ARGV[20 + n]
  sets[#sets + 1] = log
end
for i = 24 + n, #ARGV do sets[#sets + 1] = ARGV[i] end
redis.call('HSET', KEYS[1], unpack(sets))
if ARGV[9] ~= '0' then redis.call('HINCRBY', KEYS[1], ARGV[4], ARGV[9]) end
if current ~= ARGV[7] and ARGV[11] ~= '' then
  local all = redis.call('HGETALL', KEYS[1])
  local snapshot = {}
  for i = 1, #all, 2 do snapshot[all[i]] = all[i + 1] end
  redis.call('HSET', KEYS[3], ARGV[13], ARGV[11], ARGV[14], ARGV[5], ARGV[15], ARGV[12],
    ARGV[16], ARGV[8], ARGV[17], ARGV[6], ARGV[18], cjson.encode(snapshot))
  redis.call('ZADD', KEYS[4], 0, ARGV[11])
  redis.call('ZADD', KEYS[5], 0, ARGV[11])
  redis.call('XADD', KEYS[2], '*', ARGV[13], ARGV[11], ARGV[14], ARGV[5], ARGV[15], ARGV[12])
end
return answer('applied', ARGV[7])
"#;

/// A queue entry to acknowledge and delete in the same step as a
/// [`transition`] ([`transition_and_acknowledge`]): the worker that made the
/// change is done with the entry, whatever the outcome.
#[derive(Debug, Clone, Copy)]
pub struct QueueEntry<'a> {
    pub stream: &'a str,
    pub group: &'a str,
    pub entry_id: &'a str,
}

/// The final statuses, as the script takes them (comma-separated).
static FINAL_STATUSES: std::sync::LazyLock<String> = std::sync::LazyLock::new(|| {
    Status::ALL
        .into_iter()
        .filter(|s| s.is_final())
        .map(Status::as_str)
        .collect::<Vec<_>>()
        .join(",")
});

/// Applies `transition` to transaction `id` of `merchant`, with its event
/// ([`crate::event`]) when the status changes.
pub async fn transition<C: ConnectionLike + Send>(
    conn: &mut C,
    id: &TransactionId,
    merchant: &str,
    transition: &Transition,
) -> redis::RedisResult<TransitionOutcome> {
    apply(conn, id, merchant, transition, None).await
}

/// [`transition`], and in the same step acknowledges and deletes `entry`
/// whatever the outcome: one round trip, where a worker finishing a
/// payment needed two (and Redis a MULTI of its own).
pub async fn transition_and_acknowledge<C: ConnectionLike + Send>(
    conn: &mut C,
    id: &TransactionId,
    merchant: &str,
    transition: &Transition,
    entry: QueueEntry<'_>,
) -> redis::RedisResult<TransitionOutcome> {
    apply(conn, id, merchant, transition, Some(entry)).await
}

async fn apply<C: ConnectionLike + Send>(
    conn: &mut C,
    id: &TransactionId,
    merchant: &str,
    transition: &Transition,
    entry: Option<QueueEntry<'_>>,
) -> redis::RedisResult<TransitionOutcome> {
    static SCRIPT: std::sync::LazyLock<redis::Script> =
        std::sync::LazyLock::new(|| redis::Script::new(TRANSITION_SCRIPT));
    let event_id = EventId::generate();
    let event_type = EventType::of_status(transition.to);
    let mut invocation = SCRIPT.key(keyspace::record(id));
    invocation
        .key(keyspace::EVENT_STREAM)
        .key(keyspace::event(&event_id))
        .key(keyspace::merchant_events(merchant, None))
        // A move to `pending` has no event; the key is then unused.
        .key(keyspace::merchant_events(
            merchant,
            Some(event_type.unwrap_or(EventType::TransactionProcessing)),
        ));
    for status in &transition.from {
        invocation.key(Index::Status(*status).key(merchant));
    }
    let now = now_rfc3339();
    invocation.key(Index::Status(transition.to).key(merchant));
    if let Some(entry) = entry {
        invocation.key(entry.stream);
    }
    invocation
        .arg(field::STATUS)
        .arg(field::MERCHANT_ID)
        .arg(field::UPDATED_AT)
        .arg(field::ATTEMPTS)
        .arg(merchant)
        .arg(id.as_str())
        .arg(transition.to.as_str())
        .arg(&now)
        .arg(transition.add_attempts)
        .arg(FINAL_STATUSES.as_str())
        .arg(if event_type.is_some() {
            event_id.as_str()
        } else {
            ""
        })
        .arg(event_type.map_or("", EventType::as_str))
        .arg(event_field::ID)
        .arg(event_field::MERCHANT_ID)
        .arg(event_field::TYPE)
        .arg(event_field::CREATED_AT)
        .arg(event_field::TRANSACTION_ID)
        .arg(event_field::OBJECT)
        .arg(transition.from.len());
    for status in &transition.from {
        invocation.arg(status.as_str());
    }
    let log = transition.log.as_ref().map_or_else(String::new, |attempt| {
        serde_json::to_string(attempt).expect("an attempt serialises")
    });
    invocation.arg(field::ATTEMPT_LOG).arg(log);
    match entry {
        Some(entry) => invocation.arg(entry.group).arg(entry.entry_id),
        None => invocation.arg("").arg(""),
    };
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
