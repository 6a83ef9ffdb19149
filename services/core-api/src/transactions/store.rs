//! Redis access for transactions: the atomic create script and the reads
//! behind `GET /transactions[/{id}]`. Key layout: [`platform::keyspace`].

use std::collections::HashMap;

use platform::keyspace;
use platform::queue::ChargeMessage;
use platform::transaction::TransactionId;
use redis::aio::ConnectionLike;

/// Writes a new transaction in one atomic step: the record hash, every
/// index, the queue message and (when the request had an
/// `Idempotency-Key`) the completed idempotency entry. Redis runs a script
/// to completion before anything else, and a script is replicated and
/// persisted as one unit, so a crash or disconnect leaves all or none.
///
/// Every check that could refuse comes before the first write (the
/// idempotency claim is still ours, the id is new, the stream key is a
/// stream), so a refusal never leaves a partial write either.
///
/// A user's request is also refused unless its customer is linked to the
/// user, checked in the same step, so an unlink is never raced past.
///
/// KEYS: record, stream, idempotency key (or the record key again when
/// there is none), the user's customer set (or the record key again for an
/// API key), then the indexes. ARGV: id, claim marker ('' when no
/// idempotency key), completed entry, its TTL in ms, the stream's payload
/// field, queue payload, the customer that must be linked ('' for an API
/// key), then the record's field/value pairs.
const CREATE_SCRIPT: &str = r#"
if ARGV[2] ~= '' and redis.call('GET', KEYS[3]) ~= ARGV[2] then return 'claim_lost' end
if ARGV[7] ~= '' and redis.call('SISMEMBER', KEYS[4], ARGV[7]) == 0 then return 'customer_not_permitted' end
if redis.call('EXISTS', KEYS[1]) == 1 then return 'id_taken' end
local stream_type = redis.call('TYPE', KEYS[2])['ok']
if stream_type ~= 'none' and stream_type ~= 'stream' then return 'bad_stream' end
redis.call('HSET', KEYS[1], unpack(ARGV, 8))
for i = 5, #KEYS do redis.call('ZADD', KEYS[i], 0, ARGV[1]) end
redis.call('XADD', KEYS[2], '*', ARGV[5], ARGV[6])
if ARGV[2] ~= '' then redis.call('SET', KEYS[3], ARGV[3], 'PX', ARGV[4]) end
return 'ok'
"#;

/// What the create script did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CreateOutcome {
    Created,
    /// The idempotency claim expired and was taken over: nothing written.
    ClaimLost,
    /// The user is not linked to the customer (any more): nothing written.
    CustomerNotPermitted,
    /// Refused before writing anything, for a reason that is a bug or a
    /// damaged store (id collision, wrong type at the stream key).
    Refused(String),
}

/// The idempotency part of a create: the key, our claim marker, and the
/// completed entry to replace it with.
pub struct IdempotencyWrite<'a> {
    pub redis_key: &'a str,
    pub marker: &'a str,
    pub completed: String,
}

/// The link a user's create requires: the user's customer set and the
/// customer.
pub struct RequiredLink {
    pub set_key: String,
    pub customer: String,
}

pub struct NewRecord<'a> {
    pub id: &'a TransactionId,
    pub fields: Vec<(&'static str, String)>,
    /// Index keys the id joins (merchant, status, customer, …).
    pub indexes: Vec<String>,
    pub message: &'a ChargeMessage,
}

/// The create script (see [`CREATE_SCRIPT`]), for [`run_scripts`].
pub static CREATE: std::sync::LazyLock<redis::Script> =
    std::sync::LazyLock::new(|| redis::Script::new(CREATE_SCRIPT));

/// The create script as one command, to run alone or pipelined after the
/// idempotency claim. Its reply decodes with [`CreateOutcome::from_reply`].
pub fn create_command(
    record: &NewRecord<'_>,
    idempotency: Option<&IdempotencyWrite<'_>>,
    link: Option<&RequiredLink>,
) -> redis::Cmd {
    let record_key = keyspace::record(record.id);
    let mut cmd = redis::cmd("EVALSHA");
    cmd.arg(CREATE.get_hash())
        .arg(4 + record.indexes.len())
        .arg(&record_key)
        .arg(keyspace::STREAM)
        .arg(idempotency.map_or(record_key.as_str(), |i| i.redis_key))
        .arg(link.map_or(record_key.as_str(), |l| l.set_key.as_str()));
    for index in &record.indexes {
        cmd.arg(index);
    }
    cmd.arg(record.id.as_str());
    match idempotency {
        Some(write) => cmd
            .arg(write.marker)
            .arg(&write.completed)
            .arg(crate::idempotency::RETENTION.as_millis() as u64),
        None => cmd.arg("").arg("").arg(0),
    };
    cmd.arg(keyspace::PAYLOAD_FIELD)
        .arg(record.message.to_payload())
        .arg(link.map_or("", |l| l.customer.as_str()));
    for (field, value) in &record.fields {
        cmd.arg(*field).arg(value);
    }
    cmd
}

impl CreateOutcome {
    pub fn from_reply(reply: &str) -> Self {
        match reply {
            "ok" => CreateOutcome::Created,
            "claim_lost" => CreateOutcome::ClaimLost,
            "customer_not_permitted" => CreateOutcome::CustomerNotPermitted,
            other => CreateOutcome::Refused(other.to_owned()),
        }
    }
}

/// Runs a pipeline ending in EVALSHA commands in one round trip. Redis
/// forgets scripts when it restarts; then the scripts are loaded and the
/// pipeline sent once more (a script that answered NOSCRIPT did not run,
/// and the claim/create pair is safe to repeat: a repeated claim finds our
/// own marker, which counts as ours, and the create checks the claim).
pub async fn run_scripts<C, T>(
    conn: &mut C,
    pipeline: &redis::Pipeline,
    scripts: &[&redis::Script],
) -> redis::RedisResult<T>
where
    C: ConnectionLike + Send,
    T: redis::FromRedisValue,
{
    match pipeline.query_async(conn).await {
        Err(error)
            if error.kind() == redis::ErrorKind::Server(redis::ServerErrorKind::NoScript) =>
        {
            for script in scripts {
                script.load_async(conn).await?;
            }
            pipeline.query_async(conn).await
        }
        result => result,
    }
}

/// The record hash of `id`; empty when there is none. O(fields).
pub async fn fetch<C: ConnectionLike + Send>(
    conn: &mut C,
    id: &TransactionId,
) -> redis::RedisResult<HashMap<String, String>> {
    redis::cmd("HGETALL")
        .arg(keyspace::record(id))
        .query_async(conn)
        .await
}

/// The record hash of `id` (empty when there is none), and whether its
/// customer is linked to `user`, in one round trip: a script, since the
/// customer is known only once the record is read. A record without a
/// customer is linked to no user.
pub async fn fetch_if_linked<C: ConnectionLike + Send>(
    conn: &mut C,
    id: &TransactionId,
    merchant: &str,
    user: &str,
) -> redis::RedisResult<(HashMap<String, String>, bool)> {
    let (fields, linked): (HashMap<String, String>, i64) = FETCH_IF_LINKED
        .key(keyspace::record(id))
        .key(keyspace::user_customers(merchant, user))
        .arg(keyspace::field::CUSTOMER_ID)
        .invoke_async(conn)
        .await?;
    Ok((fields, linked == 1))
}

/// KEYS: record, the user's customer set. ARGV: the record's customer field.
const FETCH_IF_LINKED_SCRIPT: &str = r#"
local customer = redis.call('HGET', KEYS[1], ARGV[1])
if not customer then return {{}, 0} end
if redis.call('SISMEMBER', KEYS[2], customer) == 0 then return {{}, 0} end
return {redis.call('HGETALL', KEYS[1]), 1}
"#;

static FETCH_IF_LINKED: std::sync::LazyLock<redis::Script> =
    std::sync::LazyLock::new(|| redis::Script::new(FETCH_IF_LINKED_SCRIPT));

/// The record hashes of `ids`, in order, in one round trip.
pub async fn fetch_many<C: ConnectionLike + Send>(
    conn: &mut C,
    ids: &[TransactionId],
) -> redis::RedisResult<Vec<HashMap<String, String>>> {
    if ids.is_empty() {
        return Ok(Vec::new());
    }
    let mut pipe = redis::pipe();
    for id in ids {
        pipe.cmd("HGETALL").arg(keyspace::record(id));
    }
    pipe.query_async(conn).await
}

/// Up to `count` ids of `index`, newest first, between `max` and `min`
/// (ZREVRANGEBYLEX bounds: `+`, `-`, `(x` exclusive, `[x` inclusive).
/// O(log N + count).
pub async fn ids_newest_first<C: ConnectionLike + Send>(
    conn: &mut C,
    index: &str,
    max: &str,
    min: &str,
    count: usize,
) -> redis::RedisResult<Vec<String>> {
    redis::cmd("ZREVRANGEBYLEX")
        .arg(index)
        .arg(max)
        .arg(min)
        .arg("LIMIT")
        .arg(0)
        .arg(count)
        .query_async(conn)
        .await
}

/// Up to `count` ids of the union of `indexes` (whose sets are disjoint:
/// one customer's each), newest first, between `max` and `min`: the first
/// `count` of each, in one round trip, merged. O(k · (log N + count)).
pub async fn ids_newest_first_of_all<C: ConnectionLike + Send>(
    conn: &mut C,
    indexes: &[String],
    max: &str,
    min: &str,
    count: usize,
) -> redis::RedisResult<Vec<String>> {
    if let [index] = indexes {
        return ids_newest_first(conn, index, max, min, count).await;
    }
    let mut pipe = redis::pipe();
    for index in indexes {
        pipe.cmd("ZREVRANGEBYLEX")
            .arg(index)
            .arg(max)
            .arg(min)
            .arg("LIMIT")
            .arg(0)
            .arg(count);
    }
    let per_index: Vec<Vec<String>> = pipe.query_async(conn).await?;
    let mut ids: Vec<String> = per_index.into_iter().flatten().collect();
    ids.sort_unstable_by(|a, b| b.cmp(a));
    ids.dedup();
    ids.truncate(count);
    Ok(ids)
}

/// Those of `ids` that are members of every one of `indexes`, in order:
/// one ZMSCORE per index, in one round trip. O(len(ids) · len(indexes)).
pub async fn members_of_all<C: ConnectionLike + Send>(
    conn: &mut C,
    indexes: &[String],
    ids: Vec<String>,
) -> redis::RedisResult<Vec<String>> {
    if indexes.is_empty() || ids.is_empty() {
        return Ok(ids);
    }
    let mut pipe = redis::pipe();
    for index in indexes {
        pipe.cmd("ZMSCORE").arg(index).arg(&ids);
    }
    let scores: Vec<Vec<Option<f64>>> = pipe.query_async(conn).await?;
    Ok(ids
        .into_iter()
        .enumerate()
        .filter(|(i, _)| {
            scores
                .iter()
                .all(|per_index| per_index.get(*i).is_some_and(Option::is_some))
        })
        .map(|(_, id)| id)
        .collect())
}
