//! The delivery loop: takes due deliveries endpoint by endpoint and sends
//! them, at most `WEBHOOK_ENDPOINT_CONCURRENCY` in flight per endpoint, so
//! a slow or dead endpoint holds its own slots and never another's.
//!
//! A claimed delivery's due time is pushed out by a lease (the attempt
//! timeout plus a margin) in the claim itself, so a delivery whose
//! dispatcher died mid-attempt comes due again for any dispatcher. After
//! the attempt one script settles it: delivered (removed), retrying (due
//! again after the backoff) or dead (removed, dead-lettered), and appends
//! the attempt to the endpoint's log.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use core_api::events::StoredEvent;
use platform::Shutdown;
use platform::event::EventId;
use platform::keyspace::{self, attempt_field, webhook_dead_field};
use platform::redis::Redis;
use platform::webhook::{self, Endpoint, EndpointId};
use tokio::sync::{Notify, OwnedSemaphorePermit, Semaphore};
use tokio::task::JoinSet;

use crate::{Liveness, RetryPolicy};

/// The delivery log keeps about this many attempts per endpoint.
pub const LOG_LENGTH: usize = 1_000;
/// Endpoints looked at per turn.
const ENDPOINTS_PER_TURN: usize = 512;
/// The longest the loop sleeps with nothing due (new work wakes it).
const IDLE_POLL: Duration = Duration::from_millis(250);
const ERROR_PAUSE: Duration = Duration::from_millis(500);
/// Added to the attempt timeout for the lease of a claimed delivery.
const LEASE_MARGIN: Duration = Duration::from_secs(2);

pub struct Settings {
    pub redis: Redis,
    pub timeout: Duration,
    pub retry: RetryPolicy,
    pub endpoint_concurrency: usize,
    pub concurrency: usize,
    pub drain_timeout: Duration,
    pub wake: Arc<Notify>,
    pub liveness: Arc<Liveness>,
}

pub struct Delivery {
    settings: Settings,
    client: reqwest::Client,
    /// Free delivery slots per endpoint in this process.
    slots: Mutex<HashMap<EndpointId, Arc<Semaphore>>>,
    total: Arc<Semaphore>,
}

/// How one attempt ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// 2xx.
    Delivered(u16),
    /// Any other status.
    Status(u16),
    /// No answer: `timeout`, `connect` or another transport error.
    NoAnswer(&'static str),
}

impl Delivery {
    pub fn new(settings: Settings) -> anyhow::Result<Arc<Self>> {
        let client = reqwest::Client::builder()
            .timeout(settings.timeout)
            .connect_timeout(settings.timeout.min(Duration::from_secs(5)))
            // A redirect is an answer other than 2xx: a failed attempt.
            .redirect(reqwest::redirect::Policy::none())
            .user_agent("payment-platform-webhooks/1")
            .build()?;
        Ok(Arc::new(Self {
            total: Arc::new(Semaphore::new(settings.concurrency)),
            settings,
            client,
            slots: Mutex::new(HashMap::new()),
        }))
    }

    pub async fn run(self: Arc<Self>, shutdown: Shutdown) {
        let mut tasks = JoinSet::new();
        while !shutdown.is_requested() {
            self.settings.liveness.delivery_beat();
            while tasks.try_join_next().is_some() {}
            let wait = match self.turn(&mut tasks).await {
                Ok(wait) => wait,
                Err(error) => {
                    tracing::warn!(%error, "taking due deliveries failed");
                    ERROR_PAUSE
                }
            };
            tokio::select! {
                () = self.settings.wake.notified() => {}
                () = tokio::time::sleep(wait) => {}
                () = shutdown.requested() => {}
            }
        }
        // In-flight attempts finish (bounded); an attempt cut off is
        // retried after its lease, like after a crash.
        let drained = tokio::time::timeout(self.settings.drain_timeout, async {
            while tasks.join_next().await.is_some() {}
        })
        .await;
        if drained.is_err() {
            tracing::warn!("deliveries still in flight at shutdown; their leases will expire");
        }
    }

    /// One pass over the endpoints with due deliveries; returns how long
    /// to wait before the next (until the earliest due time, bounded).
    async fn turn(self: &Arc<Self>, tasks: &mut JoinSet<()>) -> redis::RedisResult<Duration> {
        let mut conn = self.settings.redis.conn();
        let now = webhook::now_ms();
        let due: Vec<String> = redis::cmd("ZRANGEBYSCORE")
            .arg(keyspace::WEBHOOK_DUE)
            .arg("-inf")
            .arg(now)
            .arg("LIMIT")
            .arg(0)
            .arg(ENDPOINTS_PER_TURN)
            .query_async(&mut conn)
            .await?;
        for endpoint in due.iter().filter_map(|id| EndpointId::parse(id)) {
            let slots = self.slots_of(&endpoint);
            let free = slots
                .available_permits()
                .min(self.total.available_permits());
            if free == 0 {
                continue;
            }
            let lease = self.settings.timeout + LEASE_MARGIN;
            for event in claim(&mut conn, &endpoint, now, lease, free).await? {
                let (Ok(slot), Ok(total)) = (
                    slots.clone().try_acquire_owned(),
                    self.total.clone().try_acquire_owned(),
                ) else {
                    break;
                };
                let this = self.clone();
                let endpoint = endpoint.clone();
                tasks.spawn(async move { this.deliver(endpoint, event, slot, total).await });
            }
        }
        let next: Vec<(String, f64)> = redis::cmd("ZRANGE")
            .arg(keyspace::WEBHOOK_DUE)
            .arg(0)
            .arg(0)
            .arg("WITHSCORES")
            .query_async(&mut conn)
            .await?;
        Ok(match next.first() {
            Some((_, due)) if (*due as u64) > now => {
                Duration::from_millis(*due as u64 - now).min(IDLE_POLL)
            }
            // Due now, but every slot of those endpoints is taken: a
            // finishing attempt wakes the loop.
            Some(_) => IDLE_POLL,
            None => IDLE_POLL,
        })
    }

    fn slots_of(&self, endpoint: &EndpointId) -> Arc<Semaphore> {
        let mut slots = self.slots.lock().expect("slots lock");
        slots
            .entry(endpoint.clone())
            .or_insert_with(|| Arc::new(Semaphore::new(self.settings.endpoint_concurrency)))
            .clone()
    }

    /// One attempt, then its settlement. A Redis error leaves the delivery
    /// leased: it comes due again after the lease.
    async fn deliver(
        self: Arc<Self>,
        endpoint_id: EndpointId,
        event_id: EventId,
        _slot: OwnedSemaphorePermit,
        _total: OwnedSemaphorePermit,
    ) {
        if let Err(error) = self.attempt(&endpoint_id, &event_id).await {
            tracing::warn!(%error, endpoint = %endpoint_id, event = %event_id, "delivery attempt not settled; retried after its lease");
        }
        // A slot is free again.
        self.settings.wake.notify_one();
    }

    async fn attempt(&self, endpoint_id: &EndpointId, event_id: &EventId) -> anyhow::Result<()> {
        let mut conn = self.settings.redis.conn();
        let endpoint = webhook::endpoint(&mut conn, endpoint_id).await?;
        let event: HashMap<String, String> = core_api::events::fetch(&mut conn, event_id).await?;
        let (Some(endpoint), false) = (endpoint, event.is_empty()) else {
            // The endpoint was deleted or the event is gone: nothing to send.
            settle(&mut conn, endpoint_id, event_id, Settle::Drop).await?;
            return Ok(());
        };
        let stored = StoredEvent::from_hash(event).map_err(|e| anyhow::anyhow!("{e}"))?;
        let body = serde_json::to_vec(&stored.event)?;
        let attempt: u32 = redis::cmd("HINCRBY")
            .arg(keyspace::endpoint_tries(endpoint_id))
            .arg(event_id.as_str())
            .arg(1)
            .query_async(&mut conn)
            .await?;
        let started = Instant::now();
        let outcome = self.send(&endpoint, event_id, &body).await;
        let latency = started.elapsed();
        let record = AttemptRecord {
            event_id,
            attempt,
            outcome: &outcome,
            latency,
        };
        let settlement = match &outcome {
            Outcome::Delivered(_) => Settle::Delivered(record),
            _ => match self.settings.retry.delay_after(attempt) {
                Some(delay) => Settle::Retry(record, webhook::now_ms() + delay.as_millis() as u64),
                None => Settle::Dead(record, &endpoint.merchant_id),
            },
        };
        match &settlement {
            Settle::Dead(..) => {
                tracing::warn!(endpoint = %endpoint_id, event = %event_id, attempt, outcome = ?outcome, "webhook delivery dead-lettered")
            }
            Settle::Retry(..) => {
                tracing::info!(endpoint = %endpoint_id, event = %event_id, attempt, outcome = ?outcome, "webhook delivery failed; will retry")
            }
            _ => {
                tracing::debug!(endpoint = %endpoint_id, event = %event_id, attempt, "webhook delivered")
            }
        }
        settle(&mut conn, endpoint_id, event_id, settlement).await?;
        Ok(())
    }

    /// POSTs `body` signed with every current secret of the endpoint.
    async fn send(&self, endpoint: &Endpoint, event_id: &EventId, body: &[u8]) -> Outcome {
        let timestamp = (webhook::now_ms() / 1000) as i64;
        let signature = endpoint
            .signing_secrets(webhook::now_ms())
            .iter()
            .map(|secret| secret.sign(event_id.as_str(), timestamp, body))
            .collect::<Vec<_>>()
            .join(" ");
        let sent = self
            .client
            .post(&endpoint.url)
            .header("content-type", "application/json")
            .header("webhook-id", event_id.as_str())
            .header("webhook-timestamp", timestamp.to_string())
            .header("webhook-signature", signature)
            .body(body.to_vec())
            .send()
            .await;
        match sent {
            Ok(response) if response.status().is_success() => {
                Outcome::Delivered(response.status().as_u16())
            }
            Ok(response) => Outcome::Status(response.status().as_u16()),
            Err(error) if error.is_timeout() => Outcome::NoAnswer("timeout"),
            Err(error) if error.is_connect() => Outcome::NoAnswer("connect"),
            Err(_) => Outcome::NoAnswer("transport"),
        }
    }
}

/// Claims up to `max` due deliveries of `endpoint`, leasing each.
///
/// KEYS: [`keyspace::WEBHOOK_DUE`], the endpoint's due set. ARGV: endpoint
/// id, now ms, lease ms, max.
async fn claim(
    conn: &mut redis::aio::ConnectionManager,
    endpoint: &EndpointId,
    now: u64,
    lease: Duration,
    max: usize,
) -> redis::RedisResult<Vec<EventId>> {
    static SCRIPT: std::sync::LazyLock<redis::Script> = std::sync::LazyLock::new(|| {
        redis::Script::new(
            r#"
local leased_until = tonumber(ARGV[2]) + tonumber(ARGV[3])
local items = redis.call('ZRANGEBYSCORE', KEYS[2], '-inf', ARGV[2], 'LIMIT', 0, ARGV[4])
for _, item in ipairs(items) do redis.call('ZADD', KEYS[2], leased_until, item) end
local first = redis.call('ZRANGE', KEYS[2], 0, 0, 'WITHSCORES')
if first[1] then redis.call('ZADD', KEYS[1], first[2], ARGV[1])
else redis.call('ZREM', KEYS[1], ARGV[1]) end
return items
"#,
        )
    });
    let items: Vec<String> = SCRIPT
        .key(keyspace::WEBHOOK_DUE)
        .key(keyspace::endpoint_due(endpoint))
        .arg(endpoint.as_str())
        .arg(now)
        .arg(lease.as_millis() as u64)
        .arg(max)
        .invoke_async(conn)
        .await?;
    Ok(items.iter().filter_map(|id| EventId::parse(id)).collect())
}

struct AttemptRecord<'a> {
    event_id: &'a EventId,
    attempt: u32,
    outcome: &'a Outcome,
    latency: Duration,
}

enum Settle<'a> {
    /// Nothing to deliver any more: removed, not logged.
    Drop,
    Delivered(AttemptRecord<'a>),
    /// Due again at this Unix ms.
    Retry(AttemptRecord<'a>, u64),
    /// Given up: dead-lettered (with the merchant, for the letter).
    Dead(AttemptRecord<'a>, &'a str),
}

/// Settles one delivery in one step.
///
/// KEYS: [`keyspace::WEBHOOK_DUE`], the endpoint's due set, its tries hash,
/// its attempt log, the endpoint record, [`keyspace::WEBHOOK_DEAD`]. ARGV:
/// endpoint id, event id, `drop`/`delivered`/`retry`/`dead`, next due ms,
/// log length, n = the number of log field/value pairs, the pairs, then
/// the dead letter's field/value pairs.
async fn settle(
    conn: &mut redis::aio::ConnectionManager,
    endpoint: &EndpointId,
    event: &EventId,
    settlement: Settle<'_>,
) -> redis::RedisResult<()> {
    static SCRIPT: std::sync::LazyLock<redis::Script> = std::sync::LazyLock::new(|| {
        redis::Script::new(
            r#"
local mode = ARGV[3]
if mode == 'retry' then
  redis.call('ZADD', KEYS[2], 'XX', ARGV[4], ARGV[2])
else
  redis.call('ZREM', KEYS[2], ARGV[2])
  redis.call('HDEL', KEYS[3], ARGV[2])
end
local first = redis.call('ZRANGE', KEYS[2], 0, 0, 'WITHSCORES')
if first[1] then redis.call('ZADD', KEYS[1], first[2], ARGV[1])
else redis.call('ZREM', KEYS[1], ARGV[1]) end
local n = tonumber(ARGV[6])
if n > 0 and redis.call('EXISTS', KEYS[5]) == 1 then
  redis.call('XADD', KEYS[4], 'MAXLEN', '~', ARGV[5], '*', unpack(ARGV, 7, 6 + 2 * n))
end
if mode == 'dead' then
  redis.call('XADD', KEYS[6], 'MAXLEN', '~', ARGV[5], '*', unpack(ARGV, 7 + 2 * n))
end
return 1
"#,
        )
    });
    let (mode, due, record, merchant) = match &settlement {
        Settle::Drop => ("drop", 0, None, None),
        Settle::Delivered(record) => ("delivered", 0, Some(record), None),
        Settle::Retry(record, due) => ("retry", *due, Some(record), None),
        Settle::Dead(record, merchant) => ("dead", 0, Some(record), Some(*merchant)),
    };
    let mut log: Vec<(&str, String)> = Vec::new();
    if let Some(record) = record {
        log.push((attempt_field::EVENT_ID, record.event_id.to_string()));
        log.push((attempt_field::ATTEMPT, record.attempt.to_string()));
        match record.outcome {
            Outcome::Delivered(code) | Outcome::Status(code) => {
                log.push((attempt_field::STATUS_CODE, code.to_string()));
            }
            Outcome::NoAnswer(error) => log.push((attempt_field::ERROR, (*error).to_owned())),
        }
        if let Outcome::Status(_) = record.outcome {
            log.push((attempt_field::ERROR, "status".to_owned()));
        }
        log.push((
            attempt_field::LATENCY_MS,
            record.latency.as_millis().to_string(),
        ));
        log.push((
            attempt_field::OUTCOME,
            match mode {
                "retry" => "retrying",
                other => other,
            }
            .to_owned(),
        ));
        log.push((attempt_field::AT, platform::transaction::now_rfc3339()));
    }
    let mut invocation = SCRIPT.key(keyspace::WEBHOOK_DUE);
    invocation
        .key(keyspace::endpoint_due(endpoint))
        .key(keyspace::endpoint_tries(endpoint))
        .key(keyspace::endpoint_attempts(endpoint))
        .key(keyspace::webhook_endpoint(endpoint))
        .key(keyspace::WEBHOOK_DEAD)
        .arg(endpoint.as_str())
        .arg(event.as_str())
        .arg(mode)
        .arg(due)
        .arg(LOG_LENGTH)
        .arg(log.len());
    for (name, value) in &log {
        invocation.arg(*name).arg(value);
    }
    if let (Some(record), Some(merchant)) = (record, merchant) {
        let reason = match record.outcome {
            Outcome::Status(code) => format!("attempts_exhausted: last answer {code}"),
            Outcome::NoAnswer(error) => format!("attempts_exhausted: last attempt {error}"),
            Outcome::Delivered(_) => "attempts_exhausted".to_owned(),
        };
        for (name, value) in [
            (webhook_dead_field::ENDPOINT_ID, endpoint.to_string()),
            (webhook_dead_field::EVENT_ID, event.to_string()),
            (webhook_dead_field::MERCHANT_ID, merchant.to_owned()),
            (webhook_dead_field::REASON, reason),
            (webhook_dead_field::ATTEMPTS, record.attempt.to_string()),
            (
                webhook_dead_field::DEAD_AT,
                platform::transaction::now_rfc3339(),
            ),
        ] {
            invocation.arg(name).arg(value);
        }
    }
    let _: i64 = invocation.invoke_async(conn).await?;
    Ok(())
}
