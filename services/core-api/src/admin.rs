//! The queue as an operator sees it, for the dev dashboard (README
//! "Dashboard"): `GET /_admin/queue` and `POST /_admin/dead/{id}/requeue`.
//!
//! Who may call: the gateway forwards `/_admin/` only from this machine, to
//! a loopback `Host`, without a foreign `Origin` and with `X-Dashboard: 1`
//! (caddy/Caddyfile). The header is checked here too, because the gateway
//! is not the only way in: any web page can make a browser send a plain
//! POST to core-api's loopback port, but not one with a custom header,
//! which needs a CORS preflight that nothing here answers.
//!
//! Never card data: stream entries are shown by id only, and a dead
//! letter's fields are the connector's (reason, error, ids, attempts,
//! time) without any `payload`.
//!
//! Requeue puts a dead letter's message back on `transactions` only when
//! that is safe and possible, and otherwise answers 409 with the first
//! reason that applies:
//! - a letter naming a transaction (in its fields or in the kept message)
//!   is requeued only while that transaction is `pending` or `processing`:
//!   a final one answers `transaction_final` (a final status never changes;
//!   the connector would only acknowledge the message again), a missing one
//!   `unknown_transaction`;
//! - the letter must still hold the message (a `payload` field), else
//!   `message_not_kept`. The connector never keeps it today, since the
//!   message carries the card: there is nothing to send again for the
//!   letters it writes (their transaction is `failed` or missing, or the
//!   message could not be decoded), and the merchant creates a new payment;
//! - a kept message naming no transaction (it could not be decoded) is
//!   requeued as it is: what cannot be decoded charges nothing, and a fixed
//!   connector may now read it.
//!
//! The checks and the move (XADD to the queue, XDEL of the letter) run in
//! one script, so a letter is requeued at most once and never after its
//! transaction became final.

use axum::Router;
use axum::extract::{Path, State, rejection::PathRejection};
use axum::routing::{get, post};
use http::{HeaderMap, StatusCode};
use platform::ApiError;
use platform::http::ErrorCode;
use platform::http::{ErrorBody, ErrorType, Json};
use platform::keyspace::{
    self, DEAD_LETTER_STREAM, GROUP, PAYLOAD_FIELD, RETRY_SET, STREAM, dead_letter, field,
};
use platform::transaction::{Status, TransactionId};
use redis::Value;
use redis::aio::ConnectionLike;
use serde::Serialize;
use utoipa::ToSchema;

use crate::AppState;

/// Entries listed per section at most.
pub const LIST_LIMIT: usize = 50;
/// The header the dashboard sends on every admin call.
pub const DASHBOARD_HEADER: &str = "x-dashboard";

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/_admin/queue", get(queue))
        .route("/_admin/dead/{entry_id}/requeue", post(requeue))
}

fn forbidden() -> ApiError {
    ApiError::new(
        StatusCode::FORBIDDEN,
        ErrorType::InvalidRequest,
        ErrorCode::Forbidden,
        "the admin routes serve the dev dashboard only (X-Dashboard header)",
    )
}

fn from_dashboard(headers: &HeaderMap) -> Result<(), ApiError> {
    match headers.get(DASHBOARD_HEADER) {
        Some(value) if value == "1" => Ok(()),
        _ => Err(forbidden()),
    }
}

fn conflict(code: ErrorCode, message: impl Into<String>) -> ApiError {
    ApiError::new(
        StatusCode::CONFLICT,
        ErrorType::InvalidRequest,
        code,
        message,
    )
}

// ------------------------------------------------------------------- view

#[derive(Debug, Serialize, ToSchema)]
pub struct QueueView {
    pub stream: StreamView,
    /// Every consumer group of the stream (the connectors' is `psp-connector`).
    pub groups: Vec<GroupView>,
    /// The consumers of `psp-connector`.
    pub consumers: Vec<ConsumerView>,
    /// Delivered and not yet acknowledged in `psp-connector`, oldest first.
    pub pending: Vec<PendingView>,
    pub retries: RetriesView,
    pub dead: DeadView,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct StreamView {
    pub name: &'static str,
    pub length: u64,
    pub last_generated_id: Option<String>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct GroupView {
    pub name: String,
    pub consumers: u64,
    pub pending: u64,
    /// Entries not yet delivered to the group (`None` when Redis cannot
    /// tell, e.g. after entries were deleted mid-stream).
    pub lag: Option<u64>,
    pub last_delivered_id: Option<String>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct ConsumerView {
    pub name: String,
    pub pending: u64,
    /// Since the consumer last read or claimed.
    pub idle_ms: u64,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct PendingView {
    pub entry_id: String,
    pub consumer: String,
    pub idle_ms: u64,
    pub deliveries: u64,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct RetriesView {
    pub count: u64,
    /// Soonest first.
    pub next: Vec<RetryView>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct RetryView {
    pub transaction_id: String,
    pub due_at: Option<String>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct DeadView {
    pub name: &'static str,
    pub length: u64,
    /// Newest first.
    pub entries: Vec<DeadLetterView>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct DeadLetterView {
    /// The dead letter's own stream id (what requeue takes).
    pub id: String,
    pub dead_at: Option<String>,
    pub reason: Option<String>,
    pub error: Option<String>,
    /// The id the message had on `transactions`.
    pub entry_id: Option<String>,
    pub transaction_id: Option<String>,
    pub request_id: Option<String>,
    pub attempts: Option<u64>,
    /// The transaction's status now, when the letter names one that exists.
    pub transaction_status: Option<String>,
    pub message_kept: bool,
    /// What requeue would answer now: `None` if it would requeue, else the
    /// 409 code.
    pub requeue_refusal: Option<ErrorCode>,
}

/// The queue, its consumers, waiting retries and dead letters (dev
/// dashboard only: see the module documentation).
#[utoipa::path(
    get,
    path = "/_admin/queue",
    tag = "admin",
    params(("X-Dashboard" = String, Header, description = "`1`: the dev dashboard's header")),
    responses(
        (status = 200, description = "The queue as it is now", body = QueueView),
        (status = 403, description = "`forbidden`: not the dashboard (no `X-Dashboard: 1`, or refused by the gateway)", body = ErrorBody),
        (status = 503, description = "`storage_unavailable`: Redis is unreachable", body = ErrorBody),
    )
)]
pub async fn queue(
    State(state): State<AppState>,
    headers: HeaderMap,
) -> Result<Json<QueueView>, ApiError> {
    from_dashboard(&headers)?;
    let mut conn = state.redis.conn();
    Ok(Json(read_queue(&mut conn).await?))
}

pub async fn read_queue<C: ConnectionLike + Send>(conn: &mut C) -> redis::RedisResult<QueueView> {
    let (stream, groups, consumers, pending) = read_stream(conn).await?;
    Ok(QueueView {
        stream,
        groups,
        consumers,
        pending,
        retries: read_retries(conn).await?,
        dead: read_dead_letters(conn).await?,
    })
}

/// The stream, its groups, consumers and pending entries.
type StreamParts = (
    StreamView,
    Vec<GroupView>,
    Vec<ConsumerView>,
    Vec<PendingView>,
);

/// The queue stream, its groups, the connector group's consumers and its
/// oldest pending entries.
async fn read_stream<C: ConnectionLike + Send>(conn: &mut C) -> redis::RedisResult<StreamParts> {
    let exists: bool = redis::cmd("EXISTS").arg(STREAM).query_async(conn).await?;
    let parts = if exists {
        let info = fields(
            redis::cmd("XINFO")
                .arg("STREAM")
                .arg(STREAM)
                .query_async(conn)
                .await?,
        );
        let stream = StreamView {
            name: STREAM,
            length: number(&info, "length").unwrap_or(0),
            last_generated_id: text(&info, "last-generated-id"),
        };
        let reply: Vec<Value> = redis::cmd("XINFO")
            .arg("GROUPS")
            .arg(STREAM)
            .query_async(conn)
            .await?;
        let groups: Vec<GroupView> = reply
            .into_iter()
            .map(fields)
            .map(|group| GroupView {
                name: text(&group, "name").unwrap_or_default(),
                consumers: number(&group, "consumers").unwrap_or(0),
                pending: number(&group, "pending").unwrap_or(0),
                lag: number(&group, "lag"),
                last_delivered_id: text(&group, "last-delivered-id"),
            })
            .collect();
        let (consumers, pending) = if groups.iter().any(|g| g.name == GROUP) {
            let reply: Vec<Value> = redis::cmd("XINFO")
                .arg("CONSUMERS")
                .arg(STREAM)
                .arg(GROUP)
                .query_async(conn)
                .await?;
            let consumers = reply
                .into_iter()
                .map(fields)
                .map(|consumer| ConsumerView {
                    name: text(&consumer, "name").unwrap_or_default(),
                    pending: number(&consumer, "pending").unwrap_or(0),
                    idle_ms: number(&consumer, "idle").unwrap_or(0),
                })
                .collect();
            let reply: Vec<(String, String, u64, u64)> = redis::cmd("XPENDING")
                .arg(STREAM)
                .arg(GROUP)
                .arg("-")
                .arg("+")
                .arg(LIST_LIMIT)
                .query_async(conn)
                .await?;
            let pending = reply
                .into_iter()
                .map(|(entry_id, consumer, idle_ms, deliveries)| PendingView {
                    entry_id,
                    consumer,
                    idle_ms,
                    deliveries,
                })
                .collect();
            (consumers, pending)
        } else {
            (Vec::new(), Vec::new())
        };
        (stream, groups, consumers, pending)
    } else {
        let empty = StreamView {
            name: STREAM,
            length: 0,
            last_generated_id: None,
        };
        (empty, Vec::new(), Vec::new(), Vec::new())
    };
    Ok(parts)
}

/// How many retries wait, and the next ones due.
async fn read_retries<C: ConnectionLike + Send>(conn: &mut C) -> redis::RedisResult<RetriesView> {
    let (retry_count, due): (u64, Vec<(String, f64)>) = redis::pipe()
        .cmd("ZCARD")
        .arg(RETRY_SET)
        .cmd("ZRANGE")
        .arg(RETRY_SET)
        .arg(0)
        .arg(LIST_LIMIT - 1)
        .arg("WITHSCORES")
        .query_async(conn)
        .await?;
    Ok(RetriesView {
        count: retry_count,
        next: due
            .into_iter()
            .map(|(transaction_id, due_ms)| RetryView {
                transaction_id,
                due_at: rfc3339_from_millis(due_ms),
            })
            .collect(),
    })
}

/// The newest dead letters, each with its transaction's status now and
/// whether requeue would refuse it.
async fn read_dead_letters<C: ConnectionLike + Send>(conn: &mut C) -> redis::RedisResult<DeadView> {
    let (dead_length, letters): (u64, Vec<RawEntry>) = redis::pipe()
        .cmd("XLEN")
        .arg(DEAD_LETTER_STREAM)
        .cmd("XREVRANGE")
        .arg(DEAD_LETTER_STREAM)
        .arg("+")
        .arg("-")
        .arg("COUNT")
        .arg(LIST_LIMIT)
        .query_async(conn)
        .await?;
    let letters: Vec<Letter> = letters.into_iter().map(Letter::from_entry).collect();
    // The status of each named transaction, in one round trip.
    let named: Vec<&TransactionId> = letters
        .iter()
        .filter_map(|l| l.transaction.as_ref())
        .collect();
    let mut statuses: std::collections::HashMap<String, Option<String>> = Default::default();
    if !named.is_empty() {
        let mut pipe = redis::pipe();
        for id in &named {
            pipe.cmd("HGET")
                .arg(keyspace::record(id))
                .arg(field::STATUS);
        }
        let found: Vec<Option<String>> = pipe.query_async(conn).await?;
        statuses = named.iter().map(|id| id.to_string()).zip(found).collect();
    }
    let entries = letters
        .into_iter()
        .map(|letter| {
            let status = letter
                .transaction
                .as_ref()
                .and_then(|id| statuses.get(id.as_str()).cloned().flatten());
            let requeue_refusal = letter.refusal(status.as_deref()).map(|(code, _)| code);
            DeadLetterView {
                id: letter.id.clone(),
                dead_at: letter.field(dead_letter::DEAD_AT),
                reason: letter.field(dead_letter::REASON),
                error: letter.field(dead_letter::ERROR),
                entry_id: letter.field(dead_letter::ENTRY_ID),
                transaction_id: letter.transaction.as_ref().map(|id| id.to_string()),
                request_id: letter.field(dead_letter::REQUEST_ID),
                attempts: letter
                    .field(dead_letter::ATTEMPTS)
                    .and_then(|a| a.parse().ok()),
                transaction_status: status,
                message_kept: letter.payload.is_some(),
                requeue_refusal,
            }
        })
        .collect();
    Ok(DeadView {
        name: DEAD_LETTER_STREAM,
        length: dead_length,
        entries,
    })
}

/// A stream entry as Redis gives it: id, then field names and values.
type RawEntry = (String, Vec<(String, Value)>);

/// One dead letter as read from the stream.
struct Letter {
    id: String,
    fields: Vec<(String, Value)>,
    payload: Option<String>,
    /// From the letter, else from a kept message that names one.
    transaction: Option<TransactionId>,
}

impl Letter {
    fn from_entry((id, fields): RawEntry) -> Letter {
        let mut letter = Letter {
            id,
            fields,
            payload: None,
            transaction: None,
        };
        letter.payload = letter.field(PAYLOAD_FIELD);
        letter.transaction = letter
            .field(dead_letter::TRANSACTION_ID)
            .or_else(|| {
                // Read loosely: a message the connector could not decode may
                // still name its transaction.
                let payload = letter.payload.as_deref()?;
                let message: serde_json::Value = serde_json::from_str(payload).ok()?;
                message.get("transaction_id")?.as_str().map(str::to_owned)
            })
            .and_then(|id| TransactionId::parse(&id).ok());
        letter
    }

    fn field(&self, name: &str) -> Option<String> {
        self.fields
            .iter()
            .find(|(k, _)| k == name)
            .and_then(|(_, v)| redis::from_redis_value_ref::<String>(v).ok())
    }

    /// Why requeue must refuse, given the transaction's current status: the
    /// transaction first (a final status is the reason that matters most),
    /// then whether there is a message to send at all.
    fn refusal(&self, status: Option<&str>) -> Option<(ErrorCode, String)> {
        if let Some(id) = &self.transaction {
            match status.map(str::parse::<Status>) {
                None => {
                    return Some((
                        ErrorCode::UnknownTransaction,
                        format!(
                            "transaction {id} does not exist; its message would only be \
                             dead-lettered again"
                        ),
                    ));
                }
                Some(Ok(status)) if status.is_final() => {
                    return Some((
                        ErrorCode::TransactionFinal,
                        format!(
                            "transaction {id} is {status}, a final status, which never changes"
                        ),
                    ));
                }
                Some(_) => {}
            }
        }
        if self.payload.is_none() {
            return Some((
                ErrorCode::MessageNotKept,
                "this dead letter does not hold its message (the message carries the card, so \
                 the connector never keeps it): there is nothing to requeue; create a new payment"
                    .to_owned(),
            ));
        }
        None
    }
}

// ---------------------------------------------------------------- requeue

#[derive(Debug, Serialize, ToSchema)]
pub struct Requeued {
    pub requeued: bool,
    /// The dead letter that was moved (now gone from `transactions:dead`).
    pub dead_letter_id: String,
    /// The message's new id on `transactions`.
    pub entry_id: String,
    pub transaction_id: Option<String>,
}

/// Checks again, then moves: the letter still there, the transaction (when
/// the message names one) still not final. KEYS: dead-letter stream, queue,
/// and the record when there is one. ARGV: letter id, payload field, payload,
/// the record's status field, then the final statuses.
const REQUEUE_SCRIPT: &str = r#"
if #redis.call('XRANGE', KEYS[1], ARGV[1], ARGV[1]) == 0 then return {'dead_letter_not_found', ''} end
if KEYS[3] then
  local status = redis.call('HGET', KEYS[3], ARGV[4])
  if not status then return {'unknown_transaction', ''} end
  for i = 5, #ARGV do
    if status == ARGV[i] then return {'transaction_final', status} end
  end
end
local id = redis.call('XADD', KEYS[2], '*', ARGV[2], ARGV[3])
redis.call('XDEL', KEYS[1], ARGV[1])
return {'requeued', id}
"#;

/// A stream id: `<ms>-<seq>`, both decimal.
fn valid_entry_id(id: &str) -> bool {
    let Some((ms, seq)) = id.split_once('-') else {
        return false;
    };
    [ms, seq].iter().all(|part| {
        !part.is_empty() && part.len() <= 20 && part.bytes().all(|b| b.is_ascii_digit())
    })
}

/// Puts a dead letter's message back on the queue when that is safe (see
/// the module documentation for what is refused and why).
#[utoipa::path(
    post,
    path = "/_admin/dead/{entry_id}/requeue",
    tag = "admin",
    params(
        ("entry_id" = String, Path, description = "The dead letter's id on `transactions:dead` (`<ms>-<seq>`)"),
        ("X-Dashboard" = String, Header, description = "`1`: the dev dashboard's header"),
    ),
    responses(
        (status = 200, description = "Requeued: the message is on `transactions` again, the dead letter gone", body = Requeued),
        (status = 400, description = "`invalid_entry_id`: not a stream entry id", body = ErrorBody),
        (status = 403, description = "`forbidden`: not the dashboard", body = ErrorBody),
        (status = 404, description = "`dead_letter_not_found`", body = ErrorBody),
        (status = 409, description = "`message_not_kept`, `transaction_final` or `unknown_transaction`: not requeued", body = ErrorBody),
        (status = 503, description = "`storage_unavailable`: Redis is unreachable", body = ErrorBody),
    )
)]
pub async fn requeue(
    State(state): State<AppState>,
    headers: HeaderMap,
    entry_id: Result<Path<String>, PathRejection>,
) -> Result<Json<Requeued>, ApiError> {
    from_dashboard(&headers)?;
    let invalid = || {
        ApiError::bad_request(
            ErrorCode::InvalidEntryId,
            "not a stream entry id (`<ms>-<seq>`)",
        )
        .with_param("entry_id")
    };
    let Ok(Path(entry_id)) = entry_id else {
        return Err(invalid());
    };
    if !valid_entry_id(&entry_id) {
        return Err(invalid());
    }
    let mut conn = state.redis.conn();
    let not_found = || ApiError::not_found(ErrorCode::DeadLetterNotFound, "no such dead letter");
    let found: Vec<RawEntry> = redis::cmd("XRANGE")
        .arg(DEAD_LETTER_STREAM)
        .arg(&entry_id)
        .arg(&entry_id)
        .query_async(&mut conn)
        .await?;
    let Some(entry) = found.into_iter().next() else {
        return Err(not_found());
    };
    let letter = Letter::from_entry(entry);
    let status: Option<String> = match &letter.transaction {
        Some(id) => {
            redis::cmd("HGET")
                .arg(keyspace::record(id))
                .arg(field::STATUS)
                .query_async(&mut conn)
                .await?
        }
        None => None,
    };
    if let Some((code, message)) = letter.refusal(status.as_deref()) {
        return Err(conflict(code, message));
    }
    let payload = letter.payload.clone().expect("refusal checks the payload");

    static SCRIPT: std::sync::LazyLock<redis::Script> =
        std::sync::LazyLock::new(|| redis::Script::new(REQUEUE_SCRIPT));
    let mut invocation = SCRIPT.key(DEAD_LETTER_STREAM);
    invocation.key(STREAM);
    if let Some(id) = &letter.transaction {
        invocation.key(keyspace::record(id));
    }
    invocation
        .arg(&entry_id)
        .arg(PAYLOAD_FIELD)
        .arg(&payload)
        .arg(field::STATUS);
    for status in Status::ALL.into_iter().filter(|s| s.is_final()) {
        invocation.arg(status.as_str());
    }
    let (outcome, detail): (String, String) = invocation.invoke_async(&mut conn).await?;
    let transaction_id = letter.transaction.as_ref().map(|id| id.to_string());
    match outcome.as_str() {
        "requeued" => {
            tracing::info!(
                dead_letter_id = %entry_id,
                entry_id = %detail,
                transaction_id = transaction_id.as_deref().unwrap_or(""),
                "dead letter requeued"
            );
            Ok(Json(Requeued {
                requeued: true,
                dead_letter_id: entry_id,
                entry_id: detail,
                transaction_id,
            }))
        }
        // Between the read and the script: another requeue took it, or the
        // transaction became final.
        "dead_letter_not_found" => Err(not_found()),
        "transaction_final" => Err(conflict(
            ErrorCode::TransactionFinal,
            format!("the transaction is {detail}, a final status, which never changes"),
        )),
        _ => Err(conflict(
            ErrorCode::UnknownTransaction,
            "the transaction does not exist",
        )),
    }
}

// ---------------------------------------------------------------- helpers

/// A reply of alternating names and values (RESP2) or a map (RESP3).
fn fields(value: Value) -> Vec<(String, Value)> {
    match value {
        Value::Map(pairs) => pairs
            .into_iter()
            .filter_map(|(k, v)| Some((redis::from_redis_value::<String>(k).ok()?, v)))
            .collect(),
        Value::Array(items) => {
            let mut items = items.into_iter();
            let mut out = Vec::new();
            while let (Some(k), Some(v)) = (items.next(), items.next()) {
                if let Ok(k) = redis::from_redis_value::<String>(k) {
                    out.push((k, v));
                }
            }
            out
        }
        _ => Vec::new(),
    }
}

fn value<'a>(fields: &'a [(String, Value)], name: &str) -> Option<&'a Value> {
    fields.iter().find(|(k, _)| k == name).map(|(_, v)| v)
}

fn number(fields: &[(String, Value)], name: &str) -> Option<u64> {
    value(fields, name).and_then(|v| redis::from_redis_value_ref::<Option<u64>>(v).ok().flatten())
}

fn text(fields: &[(String, Value)], name: &str) -> Option<String> {
    value(fields, name).and_then(|v| {
        redis::from_redis_value_ref::<Option<String>>(v)
            .ok()
            .flatten()
    })
}

fn rfc3339_from_millis(ms: f64) -> Option<String> {
    let nanos = (ms as i128).checked_mul(1_000_000)?;
    time::OffsetDateTime::from_unix_timestamp_nanos(nanos)
        .ok()?
        .format(&time::format_description::well_known::Rfc3339)
        .ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entry_ids_are_two_decimal_numbers() {
        for ok in ["0-0", "1700000000000-0", "1-18446744073709551615"] {
            assert!(valid_entry_id(ok), "{ok}");
        }
        for bad in [
            "", "-", "1-", "-1", "1", "1-2-3", "a-1", "1-a", "$", "+", "1-0 ", "1.0-0",
        ] {
            assert!(!valid_entry_id(bad), "{bad}");
        }
    }

    fn letter(fields: &[(&str, &str)]) -> Letter {
        Letter::from_entry((
            "1-0".into(),
            fields
                .iter()
                .map(|(k, v)| ((*k).to_owned(), Value::BulkString(v.as_bytes().to_vec())))
                .collect(),
        ))
    }

    #[test]
    fn requeue_refuses_what_is_not_safe_or_not_possible() {
        let id = TransactionId::generate();
        let named = letter(&[
            ("reason", "max_attempts_exceeded"),
            ("transaction_id", id.as_str()),
        ]);
        assert_eq!(
            named.refusal(Some("failed")).unwrap().0,
            ErrorCode::TransactionFinal
        );
        assert_eq!(
            named.refusal(Some("pending")).unwrap().0,
            ErrorCode::MessageNotKept
        );
        let poison = letter(&[("reason", "undecodable"), ("error", "not JSON")]);
        assert_eq!(poison.refusal(None).unwrap().0, ErrorCode::MessageNotKept);

        let payload = format!(r#"{{"transaction_id":"{id}","amount":"not a number"}}"#);
        let kept = letter(&[("reason", "undecodable"), (PAYLOAD_FIELD, &payload)]);
        assert_eq!(kept.transaction.as_ref(), Some(&id), "named in the message");
        for final_status in ["succeeded", "declined", "failed"] {
            assert_eq!(
                kept.refusal(Some(final_status)).unwrap().0,
                ErrorCode::TransactionFinal
            );
        }
        assert_eq!(kept.refusal(None).unwrap().0, ErrorCode::UnknownTransaction);
        assert!(kept.refusal(Some("pending")).is_none());
        assert!(kept.refusal(Some("processing")).is_none());

        let kept_poison = letter(&[("reason", "undecodable"), (PAYLOAD_FIELD, "{not json")]);
        assert!(kept_poison.transaction.is_none());
        assert!(
            kept_poison.refusal(None).is_none(),
            "undecodable and kept: requeued as it is"
        );
    }
}
