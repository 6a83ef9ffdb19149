//! The connector's Redis stream operations, each one atomic.
//!
//! Besides the stream and its dead letters, retries are parked in
//! [`RETRY_SET`], a sorted set of transaction ids scored by the Unix
//! millisecond their retry is due, and [`RETRY_PAYLOADS`], a hash from
//! transaction id to the message to send again (names:
//! [`platform::keyspace`]). Scheduling a retry adds to both and acknowledges the stream entry
//! in one MULTI; [`move_due_retries`] moves due ones back onto the stream in
//! one script. So a pending retry is always in exactly one of the two
//! places, and survives any connector crash or restart.

use std::time::{SystemTime, UNIX_EPOCH};

use platform::keyspace::{
    DEAD_LETTER_STREAM, GROUP, PAYLOAD_FIELD, RETRY_PAYLOADS, RETRY_SET, STREAM,
    dead_letter as letter_field,
};
use platform::queue::DeadLetterReason;
use redis::aio::ConnectionLike;
use redis::streams::{StreamAutoClaimReply, StreamId, StreamReadReply};

/// How long one XREADGROUP waits for new entries. Below the shared Redis
/// connection's 2 s response timeout, and the longest SIGTERM waits before
/// reading stops.
pub const READ_BLOCK_MS: u64 = 1000;

/// A stream and the connectors' consumer group on it: the charge queue,
/// or the refund queue ([`crate::refunds`]). The reads, claims and
/// acknowledgements below are the same for both.
#[derive(Debug, Clone, Copy)]
pub struct Queue {
    pub stream: &'static str,
    pub group: &'static str,
}

impl Queue {
    /// `transactions`, group `psp-connector`.
    pub const CHARGES: Queue = Queue {
        stream: STREAM,
        group: GROUP,
    };
    /// `refunds`, group `psp-connector-refunds`.
    pub const REFUNDS: Queue = Queue {
        stream: platform::keyspace::REFUND_STREAM,
        group: platform::keyspace::REFUND_GROUP,
    };
}

/// One stream entry handed to a worker.
#[derive(Debug, Clone)]
pub struct Entry {
    pub id: String,
    /// The `payload` field, if present and text.
    pub payload: Option<String>,
}

impl From<StreamId> for Entry {
    fn from(entry: StreamId) -> Self {
        let payload = entry.get::<String>(PAYLOAD_FIELD);
        Entry {
            id: entry.id,
            payload,
        }
    }
}

/// Creates the stream and the group if missing. Several replicas may race
/// here: `BUSYGROUP` means another one won, which is success. The group
/// starts at `0` so entries queued before any connector ever ran are read.
pub async fn ensure_group<C: ConnectionLike + Send>(conn: &mut C) -> redis::RedisResult<()> {
    ensure_group_of(conn, Queue::CHARGES).await
}

/// [`ensure_group`] for `queue`.
pub async fn ensure_group_of<C: ConnectionLike + Send>(
    conn: &mut C,
    queue: Queue,
) -> redis::RedisResult<()> {
    let created: redis::RedisResult<()> = redis::cmd("XGROUP")
        .arg("CREATE")
        .arg(queue.stream)
        .arg(queue.group)
        .arg("0")
        .arg("MKSTREAM")
        .query_async(conn)
        .await;
    match created {
        Err(error) if error.code() == Some("BUSYGROUP") => Ok(()),
        other => other,
    }
}

/// New entries for `consumer`, at most `count`, waiting up to
/// [`READ_BLOCK_MS`] for the first.
pub async fn read_new<C: ConnectionLike + Send>(
    conn: &mut C,
    consumer: &str,
    count: usize,
) -> redis::RedisResult<Vec<Entry>> {
    read_group(
        conn,
        Queue::CHARGES,
        consumer,
        count,
        Some(READ_BLOCK_MS),
        ">",
    )
    .await
}

/// Up to `count` entries already delivered to `consumer` and not yet
/// acknowledged, after `after` (`0` for the first): work this consumer
/// name was given before a Redis outage or a restart of the process, which
/// it can resume at once instead of waiting for a reclaim.
pub async fn read_own_pending<C: ConnectionLike + Send>(
    conn: &mut C,
    consumer: &str,
    after: &str,
    count: usize,
) -> redis::RedisResult<Vec<Entry>> {
    read_group(conn, Queue::CHARGES, consumer, count, None, after).await
}

/// One XREADGROUP of `queue` for `consumer`: `from` is `>` for new
/// entries, or an id after which to read its own pending ones.
pub async fn read_group<C: ConnectionLike + Send>(
    conn: &mut C,
    queue: Queue,
    consumer: &str,
    count: usize,
    block_ms: Option<u64>,
    from: &str,
) -> redis::RedisResult<Vec<Entry>> {
    let mut command = redis::cmd("XREADGROUP");
    command
        .arg("GROUP")
        .arg(queue.group)
        .arg(consumer)
        .arg("COUNT")
        .arg(count);
    if let Some(block_ms) = block_ms {
        command.arg("BLOCK").arg(block_ms);
    }
    let reply: Option<StreamReadReply> = command
        .arg("STREAMS")
        .arg(queue.stream)
        .arg(from)
        .query_async(conn)
        .await?;
    Ok(entries(reply))
}

/// Takes over up to `count` entries pending longer than `min_idle_ms` with
/// any consumer (a crashed one, usually). Returns the entries and the
/// cursor for the next call (`0-0` once the whole pending list was seen).
pub async fn claim_stale<C: ConnectionLike + Send>(
    conn: &mut C,
    consumer: &str,
    min_idle_ms: u64,
    cursor: &str,
    count: usize,
) -> redis::RedisResult<(Vec<Entry>, String)> {
    claim_stale_of(conn, Queue::CHARGES, consumer, min_idle_ms, cursor, count).await
}

/// [`claim_stale`] for `queue`.
pub async fn claim_stale_of<C: ConnectionLike + Send>(
    conn: &mut C,
    queue: Queue,
    consumer: &str,
    min_idle_ms: u64,
    cursor: &str,
    count: usize,
) -> redis::RedisResult<(Vec<Entry>, String)> {
    let reply: StreamAutoClaimReply = redis::cmd("XAUTOCLAIM")
        .arg(queue.stream)
        .arg(queue.group)
        .arg(consumer)
        .arg(min_idle_ms)
        .arg(cursor)
        .arg("COUNT")
        .arg(count)
        .query_async(conn)
        .await?;
    let entries = reply.claimed.into_iter().map(Entry::from).collect();
    Ok((entries, reply.next_stream_id))
}

/// Adds the acknowledgement and deletion of `entry_id` to `pipe`: every way
/// an entry leaves the stream ends with these two, so its sealed card does
/// not stay in Redis.
fn ack_and_delete(pipe: &mut redis::Pipeline, entry_id: &str) {
    ack_and_delete_of(pipe, Queue::CHARGES, entry_id);
}

fn ack_and_delete_of(pipe: &mut redis::Pipeline, queue: Queue, entry_id: &str) {
    pipe.cmd("XACK")
        .arg(queue.stream)
        .arg(queue.group)
        .arg(entry_id)
        .ignore()
        .cmd("XDEL")
        .arg(queue.stream)
        .arg(entry_id)
        .ignore();
}

/// Acknowledges and deletes a finished entry, in one MULTI.
pub async fn finish<C: ConnectionLike + Send>(
    conn: &mut C,
    entry_id: &str,
) -> redis::RedisResult<()> {
    finish_of(conn, Queue::CHARGES, entry_id).await
}

/// [`finish`] for `queue`.
pub async fn finish_of<C: ConnectionLike + Send>(
    conn: &mut C,
    queue: Queue,
    entry_id: &str,
) -> redis::RedisResult<()> {
    let mut pipe = redis::pipe();
    ack_and_delete_of(pipe.atomic(), queue, entry_id);
    pipe.query_async(conn).await
}

/// What goes into the dead-letter stream. Never the payload (its card is
/// sealed, but a dead letter has no need of it). The original entry id,
/// transaction id and request id identify the transaction, whose record
/// holds everything else.
#[derive(Debug, Clone)]
pub struct DeadLetter {
    pub reason: DeadLetterReason,
    /// Human-readable detail (never card data).
    pub error: String,
    pub entry_id: String,
    pub transaction_id: Option<String>,
    pub request_id: Option<String>,
    pub attempts: Option<u32>,
}

impl DeadLetter {
    /// A letter for `entry_id` with nothing known beyond the reason.
    pub fn new(reason: DeadLetterReason, error: impl Into<String>, entry_id: &str) -> Self {
        DeadLetter {
            reason,
            error: error.into(),
            entry_id: entry_id.to_owned(),
            transaction_id: None,
            request_id: None,
            attempts: None,
        }
    }
}

/// Writes `letter` to the dead-letter stream and acknowledges and deletes
/// the original entry, in one MULTI.
pub async fn dead_letter<C: ConnectionLike + Send>(
    conn: &mut C,
    letter: &DeadLetter,
) -> redis::RedisResult<()> {
    let mut fields: Vec<(&str, String)> = vec![
        (letter_field::REASON, letter.reason.as_str().to_owned()),
        (letter_field::ERROR, letter.error.clone()),
        (letter_field::ENTRY_ID, letter.entry_id.clone()),
        (letter_field::DEAD_AT, platform::transaction::now_rfc3339()),
    ];
    if let Some(id) = &letter.transaction_id {
        fields.push((letter_field::TRANSACTION_ID, id.clone()));
    }
    if let Some(id) = &letter.request_id {
        fields.push((letter_field::REQUEST_ID, id.clone()));
    }
    if let Some(attempts) = letter.attempts {
        fields.push((letter_field::ATTEMPTS, attempts.to_string()));
    }
    let mut pipe = redis::pipe();
    pipe.atomic()
        .cmd("XADD")
        .arg(DEAD_LETTER_STREAM)
        .arg("*")
        .arg(&fields)
        .ignore();
    ack_and_delete(&mut pipe, &letter.entry_id);
    pipe.query_async(conn).await
}

/// Parks a message until `due_ms` and acknowledges its stream entry, in one
/// MULTI.
pub async fn schedule_retry<C: ConnectionLike + Send>(
    conn: &mut C,
    entry_id: &str,
    transaction_id: &str,
    payload: &str,
    due_ms: u64,
) -> redis::RedisResult<()> {
    let mut pipe = redis::pipe();
    pipe.atomic()
        .zadd(RETRY_SET, transaction_id, due_ms)
        .ignore()
        .hset(RETRY_PAYLOADS, transaction_id, payload)
        .ignore();
    ack_and_delete(&mut pipe, entry_id);
    pipe.query_async(conn).await
}

/// Moves retries due by `now_ms` back onto the stream as new entries, at
/// most `limit` per call, atomically (every connector runs this loop; the
/// script makes sure each retry moves once).
const MOVE_DUE_SCRIPT: &str = r#"
local due = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', ARGV[1], 'LIMIT', 0, ARGV[2])
for _, id in ipairs(due) do
  local payload = redis.call('HGET', KEYS[2], id)
  if payload then redis.call('XADD', KEYS[3], '*', ARGV[3], payload) end
  redis.call('ZREM', KEYS[1], id)
  redis.call('HDEL', KEYS[2], id)
end
return #due
"#;

pub async fn move_due_retries<C: ConnectionLike + Send>(
    conn: &mut C,
    now_ms: u64,
    limit: usize,
) -> redis::RedisResult<usize> {
    static SCRIPT: std::sync::LazyLock<redis::Script> =
        std::sync::LazyLock::new(|| redis::Script::new(MOVE_DUE_SCRIPT));
    SCRIPT
        .key(RETRY_SET)
        .key(RETRY_PAYLOADS)
        .key(STREAM)
        .arg(now_ms)
        .arg(limit)
        .arg(PAYLOAD_FIELD)
        .invoke_async(conn)
        .await
}

/// What the connector reads of a transaction record before charging it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecordState {
    pub status: String,
    pub attempts: u32,
    /// The card brand, for routing rules.
    pub brand: Option<String>,
    /// The PSP last called for it, which may have charged.
    pub psp: Option<String>,
}

/// The [`RecordState`] of a transaction record (`None` if there is none).
pub async fn record_state<C: ConnectionLike + Send>(
    conn: &mut C,
    record_key: &str,
) -> redis::RedisResult<Option<RecordState>> {
    use platform::keyspace::field;
    let (status, attempts, brand, psp): (
        Option<String>,
        Option<u32>,
        Option<String>,
        Option<String>,
    ) = redis::cmd("HMGET")
        .arg(record_key)
        .arg(field::STATUS)
        .arg(field::ATTEMPTS)
        .arg(field::BRAND)
        .arg(field::PSP)
        .query_async(conn)
        .await?;
    Ok(status.map(|status| RecordState {
        status,
        attempts: attempts.unwrap_or(0),
        brand,
        psp,
    }))
}

/// Wall-clock Unix milliseconds, the clock retry due times are kept in.
pub fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

/// Removes consumers that hold nothing and have not touched the group for
/// `idle_ms` — processes that exited (every process, and every restart, is
/// a new consumer name). A live consumer reads at least every
/// [`READ_BLOCK_MS`], and one that was removed anyway is re-created by its
/// next read, so this can never lose a message. Returns the removed names.
pub async fn prune_departed_consumers<C: ConnectionLike + Send>(
    conn: &mut C,
    me: &str,
    idle_ms: u64,
) -> redis::RedisResult<Vec<String>> {
    let reply: redis::streams::StreamInfoConsumersReply = redis::cmd("XINFO")
        .arg("CONSUMERS")
        .arg(STREAM)
        .arg(GROUP)
        .query_async(conn)
        .await?;
    let mut removed = Vec::new();
    for consumer in reply.consumers {
        if consumer.name != me && consumer.pending == 0 && consumer.idle as u64 > idle_ms {
            redis::cmd("XGROUP")
                .arg("DELCONSUMER")
                .arg(STREAM)
                .arg(GROUP)
                .arg(&consumer.name)
                .query_async::<()>(conn)
                .await?;
            removed.push(consumer.name);
        }
    }
    Ok(removed)
}

/// The entries of an XREADGROUP reply (none when it timed out).
fn entries(reply: Option<StreamReadReply>) -> Vec<Entry> {
    reply
        .into_iter()
        .flat_map(|reply| reply.keys)
        .flat_map(|key| key.ids)
        .map(Entry::from)
        .collect()
}
